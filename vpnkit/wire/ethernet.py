# -*- test-case-name: tests.test_wire_ethernet -*-
"""
Ethernet II framing (no FCS), and MAC address helpers.
"""

from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError

__all__ = [
    "ETHERTYPE_IPV4",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_VLAN",
    "BROADCAST",
    "HEADER_LENGTH",
    "EthernetHeader",
    "parseEthernet",
    "emitEthernet",
    "parseMAC",
    "formatMAC",
    "isMulticast",
]

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD

HEADER_LENGTH = 14
BROADCAST = b"\xff" * 6

_header = Struct("!6s6sH")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    """
    An Ethernet II header.

    @ivar dst: 6-byte destination MAC.
    @ivar src: 6-byte source MAC.
    @ivar ethertype: the EtherType of the payload.
    """

    dst: bytes
    src: bytes
    ethertype: int


def parseEthernet(frame):
    """
    Split a frame into its header and payload.

    @raise TruncatedError: fewer than 14 bytes.
    """
    if len(frame) < HEADER_LENGTH:
        raise TruncatedError(f"ethernet frame of {len(frame)} bytes")
    dst, src, ethertype = _header.unpack_from(frame)
    return EthernetHeader(dst, src, ethertype), frame[HEADER_LENGTH:]


def emitEthernet(header, payload):
    """
    The bytes of a frame with this header and payload.
    """
    return _header.pack(header.dst, header.src, header.ethertype) + payload


def parseMAC(text):
    """
    Parse C{"f6:16:36:bc:f9:c6"} (or with C{-} separators) into 6 bytes.

    @raise MalformedError: anything else.
    """
    parts = text.replace("-", ":").split(":")
    # int(p, 16) alone would also take " a", "+a" and "a_"-style digit runs.
    if len(parts) != 6 or not all(
        1 <= len(p) <= 2 and all(c in _HEXDIGITS for c in p) for p in parts
    ):
        raise MalformedError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise MalformedError(f"not a MAC address: {text!r}") from None


def formatMAC(mac):
    """
    Format 6 bytes as C{"f6:16:36:bc:f9:c6"}.
    """
    return ":".join(f"{b:02x}" for b in mac)


def isMulticast(mac):
    """
    Whether a MAC is a group (multicast or broadcast) address.
    """
    return bool(mac[0] & 1)
