# -*- test-case-name: tests.test_wire_ipv4 -*-
"""
The IPv4 header (RFC 791): parsing with full length and checksum checks, and
emission with the checksum computed explicitly.
"""

from dataclasses import dataclass
from ipaddress import IPv4Address
from struct import Struct

from vpnkit.wire import ChecksumError, MalformedError, TruncatedError
from vpnkit.wire.checksum import internetChecksum, onesComplementSum

__all__ = [
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "FLAG_DF",
    "FLAG_MF",
    "IPv4Header",
    "parseIPv4",
    "emitIPv4",
    "buildHeader",
    "quoteHeader",
    "formatIP",
    "packIP",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

FLAG_DF = 0x2
FLAG_MF = 0x1

MIN_HEADER = 20

_fixed = Struct("!BBHHHBBH4s4s")
_noChecksum = Struct("!BBHHHBB")


# Not frozen (see L{vpnkit.wire.tcp.Segment}): a frozen dataclass's
# C{__init__} goes through C{object.__setattr__} per field, and this one is
# built for every datagram received.  Treat instances as immutable; derive
# variants with C{dataclasses.replace}.
@dataclass(slots=True)
class IPv4Header:
    """
    A parsed IPv4 header.  Addresses are 4-byte packed values.

    @ivar fragmentOffset: offset of this fragment in bytes (a multiple of 8).
    @ivar options: raw option bytes (vpnkit ignores them but keeps them so a
        header round-trips and can be quoted in ICMP errors).
    """

    tos: int
    totalLength: int
    ident: int
    flags: int
    fragmentOffset: int
    ttl: int
    protocol: int
    checksum: int
    src: bytes
    dst: bytes
    options: bytes = b""

    @property
    def headerLength(self):
        return MIN_HEADER + len(self.options)

    @property
    def isFragment(self):
        """
        Whether this datagram is a fragment (MF set or a non-zero offset).
        """
        return bool(self.flags & FLAG_MF) or self.fragmentOffset != 0


def parseIPv4(packet, verifyChecksum=True):
    """
    Parse an IPv4 datagram, honouring the IHL and total length fields.

    Bytes beyond the total length (Ethernet padding) are dropped from the
    payload.

    @return: C{(header, payload)}
    @raise TruncatedError: the buffer is shorter than a field says.
    @raise MalformedError: a version other than 4, or impossible lengths.
    @raise ChecksumError: the header checksum does not verify.
    """
    n = len(packet)
    if n < MIN_HEADER:
        raise TruncatedError(f"IPv4 datagram of {n} bytes")
    vihl = packet[0]
    if vihl >> 4 != 4:
        raise MalformedError(f"IP version {vihl >> 4}")
    hl = (vihl & 0x0F) * 4
    if hl < MIN_HEADER:
        raise MalformedError(f"IPv4 header length {hl}")
    if n < hl:
        raise TruncatedError(f"IPv4 header of {hl} bytes in {n}")
    (_, tos, total, ident, fragField, ttl, proto, csum, src, dst) = _fixed.unpack_from(
        packet
    )
    if total < hl:
        raise MalformedError(f"IPv4 total length {total} < header length {hl}")
    if total > n:
        raise TruncatedError(f"IPv4 total length {total} in {n} bytes")
    if verifyChecksum and onesComplementSum(packet[:hl]) != 0xFFFF:
        raise ChecksumError("IPv4 header checksum")
    header = IPv4Header(
        tos,
        total,
        ident,
        fragField >> 13,
        (fragField & 0x1FFF) << 3,
        ttl,
        proto,
        csum,
        src,
        dst,
        bytes(packet[MIN_HEADER:hl]) if hl > MIN_HEADER else b"",
    )
    return header, packet[hl:total]


def emitIPv4(header, payload):
    """
    The bytes of a datagram: C{header} (with its total length and checksum
    recomputed) followed by C{payload}.
    """
    options = header.options
    if len(options) % 4 or len(options) > 40:
        raise MalformedError(f"IPv4 options of {len(options)} bytes")
    hl = MIN_HEADER + len(options)
    first = _noChecksum.pack(
        0x40 | (hl // 4),
        header.tos,
        hl + len(payload),
        header.ident,
        (header.flags << 13) | (header.fragmentOffset >> 3),
        header.ttl,
        header.protocol,
    )
    rest = header.src + header.dst + options
    csum = internetChecksum(first + rest)
    return first + csum.to_bytes(2, "big") + rest + payload




def buildHeader(src, dst, protocol, payloadLength, ttl=64, ident=0, flags=FLAG_DF, tos=0):
    """
    A 20-byte IPv4 header without options, checksum filled in.

    This is the fast path used for every datagram vpnkit sends.
    """
    total = MIN_HEADER + payloadLength
    fragField = flags << 13
    s = (
        (0x4500 | tos)
        + total
        + ident
        + fragField
        + ((ttl << 8) | protocol)
        + int.from_bytes(src, "big")
        + int.from_bytes(dst, "big")
    ) % 0xFFFF
    csum = ~(s or 0xFFFF) & 0xFFFF
    return _fixed.pack(0x45, tos, total, ident, fragField, ttl, protocol, csum, src, dst)


def quoteHeader(header):
    """
    The header exactly as it was received (total length and checksum as
    parsed), for quoting in an ICMP error.
    """
    return (
        _fixed.pack(
            0x40 | (header.headerLength // 4),
            header.tos,
            header.totalLength,
            header.ident,
            (header.flags << 13) | (header.fragmentOffset >> 3),
            header.ttl,
            header.protocol,
            header.checksum,
            header.src,
            header.dst,
        )
        + header.options
    )


def formatIP(packed):
    """
    Dotted-quad text for a packed address.
    """
    return str(IPv4Address(packed))


def packIP(address):
    """
    Packed bytes for an L{IPv4Address} or dotted-quad text.
    """
    return IPv4Address(address).packed
