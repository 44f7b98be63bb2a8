# -*- test-case-name: tests.test_httpproxy_sni -*-
"""
The server name (RFC 6066 C{server_name}) of a TLS ClientHello, so a
transparently proxied HTTPS connection can be tunnelled with
C{CONNECT name:port} instead of the bare address.

Pure: L{serverName} takes the first bytes a guest sent and either returns
the name (or C{None}: a ClientHello without one), or raises
L{vpnkit.wire.TruncatedError} (a prefix of a ClientHello: wait for more) or
L{vpnkit.wire.MalformedError} (not a TLS ClientHello).  The handshake
message may span several records (RFC 8446 §5.1).
"""

import re
import struct

from vpnkit.wire import MalformedError, TruncatedError

__all__ = ["serverName", "MAX_HELLO"]

# Records of content type handshake; the ClientHello handshake type.
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0
_HOST_NAME = 0
# The largest ClientHello we wait for (post-quantum key shares make them a
# few KiB; the handshake length field allows 16 MiB).
MAX_HELLO = 1 << 16
_MAX_RECORD = (1 << 14) + 2048
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$")


def _handshakeMessage(data):
    """
    The ClientHello body, gathered from as many records as it spans.
    """
    if data[:1] and data[0] != _HANDSHAKE:
        raise MalformedError("not a TLS handshake record")
    if len(data) >= 2 and data[1] != 3:
        raise MalformedError("not a TLS record version")
    message = bytearray()
    pos = 0
    while True:
        if len(data) - pos < 5:
            raise TruncatedError("record header incomplete")
        kind, major, _minor, length = struct.unpack_from("!BBBH", data, pos)
        if kind != _HANDSHAKE or major != 3:
            raise MalformedError("not a TLS handshake record")
        if length == 0 or length > _MAX_RECORD:
            raise MalformedError(f"record length {length} out of range")
        fragment = data[pos + 5 : pos + 5 + length]
        message += fragment
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                raise MalformedError("not a ClientHello")
            size = int.from_bytes(message[1:4], "big")
            if size > MAX_HELLO:
                raise MalformedError(f"ClientHello of {size} bytes")
            if len(message) >= 4 + size:
                return bytes(message[4 : 4 + size])
        if len(fragment) < length:
            raise TruncatedError("record incomplete")
        pos += 5 + length


class _Reader:
    """
    A cursor over a complete message: running past its end is malformed.
    """

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise MalformedError("field runs past the end of the ClientHello")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def number(self, size):
        return int.from_bytes(self.take(size), "big")

    def vector(self, lengthSize):
        return self.take(self.number(lengthSize))

    @property
    def left(self):
        return len(self.data) - self.pos


def _hostName(names):
    reader = _Reader(names)
    while reader.left:
        kind = reader.number(1)
        name = reader.vector(2)
        if kind != _HOST_NAME:
            continue
        try:
            text = name.decode("ascii").lower().rstrip(".")
        except UnicodeDecodeError:
            raise MalformedError("server name is not ASCII") from None
        if not _NAME.match(text):
            raise MalformedError("server name is not a host name")
        return text
    return None


def serverName(data):
    """
    The host name a TLS ClientHello asks for.

    @param data: the first bytes the client sent.
    @return: the name (lower case, no trailing dot), or C{None} when the
        ClientHello carries none.
    @raise TruncatedError: C{data} is a prefix of a ClientHello.
    @raise MalformedError: C{data} does not start with a ClientHello.
    """
    hello = _Reader(_handshakeMessage(data))
    hello.take(2 + 32)  # legacy_version, random
    if len(hello.vector(1)) > 32:
        raise MalformedError("session id longer than 32 bytes")
    suites = hello.vector(2)
    if not suites or len(suites) % 2:
        raise MalformedError("bad cipher suite list")
    if not hello.vector(1):
        raise MalformedError("no compression methods")
    if not hello.left:
        return None
    extensions = _Reader(hello.vector(2))
    while extensions.left:
        kind = extensions.number(2)
        body = extensions.vector(2)
        if kind == _SERVER_NAME:
            names = _Reader(body)
            return _hostName(names.vector(2))
    return None
