# -*- test-case-name: tests.test_wire_dhcp -*-
"""
DHCP messages (RFC 2131) and their options (RFC 2132), including the
domain-search list encoding of RFC 3397.
"""

from dataclasses import dataclass, field
from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError

__all__ = [
    "BOOTREQUEST",
    "BOOTREPLY",
    "DHCPDISCOVER",
    "DHCPOFFER",
    "DHCPREQUEST",
    "DHCPDECLINE",
    "DHCPACK",
    "DHCPNAK",
    "DHCPRELEASE",
    "DHCPINFORM",
    "MESSAGE_TYPE_NAMES",
    "OPT_PAD",
    "OPT_END",
    "DHCPMessage",
    "parseDHCP",
    "emitDHCP",
    "encodeOptions",
    "encodeDomainSearch",
    "decodeDomainSearch",
]

BOOTREQUEST = 1
BOOTREPLY = 2

DHCPDISCOVER = 1
DHCPOFFER = 2
DHCPREQUEST = 3
DHCPDECLINE = 4
DHCPACK = 5
DHCPNAK = 6
DHCPRELEASE = 7
DHCPINFORM = 8

MESSAGE_TYPE_NAMES = {
    DHCPDISCOVER: "DISCOVER",
    DHCPOFFER: "OFFER",
    DHCPREQUEST: "REQUEST",
    DHCPDECLINE: "DECLINE",
    DHCPACK: "ACK",
    DHCPNAK: "NAK",
    DHCPRELEASE: "RELEASE",
    DHCPINFORM: "INFORM",
}

OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN_NAME = 15
OPT_MTU = 26
OPT_BROADCAST = 28
OPT_NTP = 42
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_MESSAGE = 56
OPT_MAX_MESSAGE_SIZE = 57
OPT_RENEWAL_TIME = 58
OPT_REBINDING_TIME = 59
OPT_CLIENT_ID = 61
OPT_DOMAIN_SEARCH = 119
OPT_END = 255

MAGIC_COOKIE = b"\x63\x82\x53\x63"

_fixed = Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
FIXED_LENGTH = _fixed.size  # 240, including the magic cookie


@dataclass(frozen=True, slots=True)
class DHCPMessage:
    """
    A BOOTP/DHCP message.

    @ivar options: C{(code, value)} pairs in wire order, PAD included as
        C{(0, b"")}; END is not listed.
    @ivar padding: the bytes after the END option (usually zeros), or
        C{None} when the message had no END option.
    """

    op: int
    xid: int
    chaddr: bytes
    options: tuple = ()
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: bytes = b"\0\0\0\0"
    yiaddr: bytes = b"\0\0\0\0"
    siaddr: bytes = b"\0\0\0\0"
    giaddr: bytes = b"\0\0\0\0"
    sname: bytes = field(default=b"\0" * 64)
    file: bytes = field(default=b"\0" * 128)
    padding: bytes | None = b""

    def option(self, code):
        """
        The value of option C{code} (RFC 3396: repeated instances are
        concatenated), or C{None}.
        """
        parts = [value for c, value in self.options if c == code]
        if not parts:
            return None
        return b"".join(parts)

    @property
    def messageType(self):
        """
        The DHCP message type (option 53), or C{None} for plain BOOTP.
        """
        value = self.option(OPT_MESSAGE_TYPE)
        if value is None or len(value) != 1:
            return None
        return value[0]

    @property
    def clientMAC(self):
        """
        The client's hardware address (C{chaddr} cut to C{hlen}).
        """
        return self.chaddr[: min(self.hlen, 16)]

    @property
    def broadcastFlag(self):
        return bool(self.flags & 0x8000)


def parseDHCP(data):
    """
    Parse a DHCP message (the payload of a UDP datagram).

    @raise TruncatedError: shorter than the fixed part, or an option runs
        past the end.
    @raise MalformedError: no DHCP magic cookie.
    """
    if len(data) < FIXED_LENGTH:
        raise TruncatedError(f"DHCP message of {len(data)} bytes")
    (
        op,
        htype,
        hlen,
        hops,
        xid,
        secs,
        flags,
        ciaddr,
        yiaddr,
        siaddr,
        giaddr,
        chaddr,
        sname,
        file,
        cookie,
    ) = _fixed.unpack_from(data)
    if cookie != MAGIC_COOKIE:
        raise MalformedError("no DHCP magic cookie")
    options = []
    offset = FIXED_LENGTH
    n = len(data)
    padding = None
    while offset < n:
        code = data[offset]
        if code == OPT_END:
            padding = bytes(data[offset + 1 :])
            break
        if code == OPT_PAD:
            options.append((OPT_PAD, b""))
            offset += 1
            continue
        if offset + 2 > n:
            raise TruncatedError(f"DHCP option {code} has no length")
        length = data[offset + 1]
        end = offset + 2 + length
        if end > n:
            raise TruncatedError(f"DHCP option {code} of {length} bytes runs past the end")
        options.append((code, bytes(data[offset + 2 : end])))
        offset = end
    return DHCPMessage(
        op=op,
        xid=xid,
        chaddr=chaddr,
        options=tuple(options),
        htype=htype,
        hlen=hlen,
        hops=hops,
        secs=secs,
        flags=flags,
        ciaddr=ciaddr,
        yiaddr=yiaddr,
        siaddr=siaddr,
        giaddr=giaddr,
        sname=sname,
        file=file,
        padding=padding,
    )


def encodeOptions(options):
    """
    Encode C{(code, value)} pairs, splitting values longer than 255 bytes
    into consecutive instances (RFC 3396).
    """
    out = bytearray()
    for code, value in options:
        if code == OPT_PAD:
            out.append(OPT_PAD)
            continue
        if not 0 < code < 255:
            raise MalformedError(f"DHCP option code {code}")
        if not value:
            out += bytes((code, 0))
        for start in range(0, len(value), 255):
            chunk = value[start : start + 255]
            out += bytes((code, len(chunk)))
            out += chunk
    return bytes(out)


def emitDHCP(message):
    """
    The bytes of C{message}.  The END option is written unless
    C{message.padding} is C{None}.
    """
    fixed = _fixed.pack(
        message.op,
        message.htype,
        message.hlen,
        message.hops,
        message.xid,
        message.secs,
        message.flags,
        message.ciaddr,
        message.yiaddr,
        message.siaddr,
        message.giaddr,
        message.chaddr,
        message.sname,
        message.file,
        MAGIC_COOKIE,
    )
    body = fixed + encodeOptions(message.options)
    if message.padding is not None:
        body += bytes((OPT_END,)) + message.padding
    return body


def encodeDomainSearch(domains):
    """
    The RFC 3397 encoding of a search list: DNS names in wire form, with
    a suffix shared with an earlier name replaced by a compression pointer
    (offsets relative to the start of the option data).

    @raise MalformedError: a label longer than 63 bytes or an empty label.
    """
    out = bytearray()
    suffixes = {}
    for domain in domains:
        labels = [label for label in domain.strip(".").split(".")]
        if labels == [""]:
            raise MalformedError(f"empty search domain {domain!r}")
        for i in range(len(labels)):
            suffix = tuple(label.lower() for label in labels[i:])
            pointer = suffixes.get(suffix)
            if pointer is not None:
                out += (0xC000 | pointer).to_bytes(2, "big")
                break
            if len(out) < 0x3FFF:
                suffixes[suffix] = len(out)
            try:
                label = labels[i].encode("ascii")
            except UnicodeEncodeError:
                raise MalformedError(f"non-ASCII search domain {domain!r}") from None
            if not 0 < len(label) < 64:
                raise MalformedError(f"bad label in search domain {domain!r}")
            out.append(len(label))
            out += label
        else:
            out.append(0)
    return bytes(out)


def decodeDomainSearch(data):
    """
    Decode an RFC 3397 search list into names (for tests and logs).

    @raise MalformedError: a bad pointer, a loop, or a truncated name.
    """
    names = []
    offset = 0
    while offset < len(data):
        labels = []
        position = offset
        jumped = False
        seen = set()
        while True:
            if position >= len(data):
                raise MalformedError("truncated search list")
            length = data[position]
            if length & 0xC0 == 0xC0:
                if position + 1 >= len(data):
                    raise MalformedError("truncated pointer")
                target = ((length & 0x3F) << 8) | data[position + 1]
                if target in seen or target >= len(data):
                    raise MalformedError("bad pointer in search list")
                seen.add(target)
                if not jumped:
                    offset = position + 2
                    jumped = True
                position = target
                continue
            if length & 0xC0:
                raise MalformedError("bad label length in search list")
            if length == 0:
                if not jumped:
                    offset = position + 1
                break
            labels.append(bytes(data[position + 1 : position + 1 + length]).decode("ascii", "replace"))
            position += 1 + length
        names.append(".".join(labels))
    return names
