# -*- test-case-name: tests.test_wire_vmnet -*-
"""
The vpnkit "vmnet" handshake, protocol version 22: the 49-byte Init message,
the 41-byte Command and the 258-byte Response.  After the handshake each
Ethernet frame travels behind a little-endian u16 length.
"""

import re
import uuid as _uuid
from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError

__all__ = [
    "MAGIC",
    "VERSION",
    "INIT_LENGTH",
    "COMMAND_LENGTH",
    "RESPONSE_LENGTH",
    "DEFAULT_COMMIT",
    "ZERO_UUID",
    "NIL_UUID_TEXT",
    "Init",
    "EthernetCommand",
    "PreferredIPv4Command",
    "BindIPv4Command",
    "UnknownCommand",
    "Vif",
    "Disconnect",
    "parseInit",
    "emitInit",
    "parseCommand",
    "emitCommand",
    "parseResponse",
    "emitResponse",
]

MAGIC = b"VMN3T"
VERSION = 22
INIT_LENGTH = 49
COMMAND_LENGTH = 41
RESPONSE_LENGTH = 258
DEFAULT_COMMIT = b"0123456789012345678901234567890123456789"
ZERO_UUID = b"\0" * 36
NIL_UUID_TEXT = b"00000000-0000-0000-0000-000000000000"

CMD_ETHERNET = 1
CMD_BIND_IPV4 = 6
CMD_PREFERRED_IPV4 = 8

RESP_VIF = 1
RESP_DISCONNECT = 2

_init = Struct("<5sI40s")
# The only form the reference (Uuidm.of_string) accepts in 36 bytes.
# uuid.UUID alone is far laxer: it drops every "-", strips "{}", and int()
# takes whitespace, "+" and "_", so "1234...5678----" would pass.
_canonicalUUID = re.compile(rb"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_vif = Struct("<BHH6s")


@dataclass(frozen=True, slots=True)
class Init:
    magic: bytes = MAGIC
    version: int = VERSION
    commit: bytes = DEFAULT_COMMIT


@dataclass(frozen=True, slots=True)
class EthernetCommand:
    """
    Connect a VM.  C{uuid} is the 36 raw bytes sent (ASCII text, or 36 NULs
    for "invent one").
    """

    uuid: bytes


@dataclass(frozen=True, slots=True)
class PreferredIPv4Command:
    """
    Connect a VM asking for a specific address (packed IPv4).
    """

    uuid: bytes
    ip: bytes


@dataclass(frozen=True, slots=True)
class BindIPv4Command:
    """
    The vmnetd privileged-bind request; vpnkit itself does not serve it.
    """

    ip: bytes
    port: int
    udp: bool


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    type: int


@dataclass(frozen=True, slots=True)
class Vif:
    mtu: int
    maxPacketSize: int
    mac: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: str


def parseInit(data):
    """
    Parse a 49-byte Init message (the magic and version are not judged here).
    """
    if len(data) < INIT_LENGTH:
        raise TruncatedError(f"vmnet Init of {len(data)} bytes")
    magic, version, commit = _init.unpack_from(data)
    return Init(magic, version, commit)


def emitInit(init=Init()):
    return _init.pack(init.magic, init.version, init.commit)


def _reversedIP(packed):
    # The wire carries the address as a little-endian u32 of its numeric
    # value: the octets in reverse order.
    return packed[::-1]


def parseUUID(raw):
    """
    Validate the 36 UUID bytes of a command.

    @return: the canonical lower-case UUID text, or C{None} for all NULs
        and for the nil UUID as text (it names no guest either: given a
        permanent lease, every client sending it would share one address).
    @raise MalformedError: not a UUID.
    """
    if raw == ZERO_UUID or raw == NIL_UUID_TEXT:
        return None
    if _canonicalUUID.fullmatch(raw) is None:
        raise MalformedError(f"bad UUID {raw!r}")
    try:
        return str(_uuid.UUID(raw.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        raise MalformedError(f"bad UUID {raw!r}") from None


def parseCommand(data):
    """
    Parse a 41-byte Command message.  An unknown type parses as
    L{UnknownCommand}; the UUID text is not validated here (see
    L{parseUUID}).
    """
    if len(data) < COMMAND_LENGTH:
        raise TruncatedError(f"vmnet Command of {len(data)} bytes")
    kind = data[0]
    if kind == CMD_ETHERNET:
        return EthernetCommand(bytes(data[1:37]))
    if kind == CMD_PREFERRED_IPV4:
        return PreferredIPv4Command(bytes(data[1:37]), _reversedIP(bytes(data[37:41])))
    if kind == CMD_BIND_IPV4:
        return BindIPv4Command(
            _reversedIP(bytes(data[1:5])),
            int.from_bytes(data[5:7], "little"),
            data[7] == 1,
        )
    return UnknownCommand(kind)


def emitCommand(command):
    if isinstance(command, EthernetCommand):
        body = bytes((CMD_ETHERNET,)) + command.uuid
    elif isinstance(command, PreferredIPv4Command):
        body = bytes((CMD_PREFERRED_IPV4,)) + command.uuid + _reversedIP(command.ip)
    elif isinstance(command, BindIPv4Command):
        body = (
            bytes((CMD_BIND_IPV4,))
            + _reversedIP(command.ip)
            + command.port.to_bytes(2, "little")
            + bytes((1 if command.udp else 0,))
        )
    elif isinstance(command, UnknownCommand):
        body = bytes((command.type,))
    else:
        raise TypeError(command)
    if len(body) > COMMAND_LENGTH:
        raise MalformedError("vmnet command too long")
    return body.ljust(COMMAND_LENGTH, b"\0")


def parseResponse(data):
    """
    Parse a 258-byte Response.  Any type other than Vif is a Disconnect
    (as the Go client treats it).
    """
    if len(data) < RESPONSE_LENGTH:
        raise TruncatedError(f"vmnet Response of {len(data)} bytes")
    if data[0] == RESP_VIF:
        _, mtu, maxPacketSize, mac = _vif.unpack_from(data)
        return Vif(mtu, maxPacketSize, mac)
    length = data[1]
    return Disconnect(bytes(data[2 : 2 + length]).decode("ascii", "replace"))


def emitResponse(response):
    if isinstance(response, Vif):
        body = _vif.pack(RESP_VIF, response.mtu, response.maxPacketSize, response.mac)
    elif isinstance(response, Disconnect):
        reason = response.reason.encode("ascii", "replace")[:255]
        body = bytes((RESP_DISCONNECT, len(reason))) + reason
    else:
        raise TypeError(response)
    return body.ljust(RESPONSE_LENGTH, b"\0")
