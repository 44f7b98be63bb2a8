# -*- test-case-name: tests.test_wire_arp -*-
"""
ARP for IPv4 over Ethernet (RFC 826).
"""

from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError

__all__ = ["ARP_REQUEST", "ARP_REPLY", "ARPPacket", "parseARP", "emitARP"]

ARP_REQUEST = 1
ARP_REPLY = 2

_packet = Struct("!HHBBH6s4s6s4s")
LENGTH = _packet.size  # 28


@dataclass(frozen=True, slots=True)
class ARPPacket:
    """
    An Ethernet/IPv4 ARP packet.  Addresses are packed bytes.
    """

    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


def parseARP(payload):
    """
    Parse an ARP payload; trailing Ethernet padding is ignored.

    @raise TruncatedError: fewer than 28 bytes.
    @raise MalformedError: not Ethernet/IPv4 ARP.
    """
    if len(payload) < LENGTH:
        raise TruncatedError(f"ARP packet of {len(payload)} bytes")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _packet.unpack_from(payload)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        raise MalformedError(f"ARP for htype={htype} ptype={ptype:#06x}")
    return ARPPacket(op, sha, spa, tha, tpa)


def emitARP(packet):
    """
    The 28 bytes of an ARP packet (unpadded).
    """
    return _packet.pack(
        1, 0x0800, 6, 4, packet.op, packet.sha, packet.spa, packet.tha, packet.tpa
    )
