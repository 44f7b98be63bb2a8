# -*- test-case-name: tests.test_wire_udp -*-
"""
UDP (RFC 768) with the IPv4 pseudo-header checksum.
"""

from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import ChecksumError, MalformedError, TruncatedError
from vpnkit.wire.checksum import internetChecksum, onesComplementSum, pseudoHeaderSum

__all__ = ["UDPHeader", "parseUDP", "emitUDP"]

_header = Struct("!HHHH")
HEADER_LENGTH = 8
_PROTO = 17


# Not frozen, for the same reason as L{vpnkit.wire.ipv4.IPv4Header}: one
# is built per datagram.  Treat instances as immutable (C{replace}).
@dataclass(slots=True)
class UDPHeader:
    """
    A UDP header.  C{checksum} is as received (0 means "not computed").
    """

    srcPort: int
    dstPort: int
    length: int
    checksum: int


def parseUDP(data, src, dst, verifyChecksum=True):
    """
    Parse a UDP datagram carried between packed IPv4 addresses C{src} and
    C{dst}.  Bytes beyond the UDP length field are ignored.

    @return: C{(header, payload)}
    @raise TruncatedError: shorter than the header or its length field.
    @raise MalformedError: a length field under 8.
    @raise ChecksumError: a non-zero checksum that does not verify.
    """
    n = len(data)
    if n < HEADER_LENGTH:
        raise TruncatedError(f"UDP datagram of {n} bytes")
    srcPort, dstPort, length, csum = _header.unpack_from(data)
    if length < HEADER_LENGTH:
        raise MalformedError(f"UDP length {length}")
    if length > n:
        raise TruncatedError(f"UDP length {length} in {n} bytes")
    if length < n:
        data = data[:length]
    if verifyChecksum and csum != 0:
        if onesComplementSum(data, pseudoHeaderSum(src, dst, _PROTO, length)) != 0xFFFF:
            raise ChecksumError("UDP checksum")
    return UDPHeader(srcPort, dstPort, length, csum), data[HEADER_LENGTH:]


def emitUDP(srcPort, dstPort, payload, src, dst):
    """
    The bytes of a UDP datagram with its checksum computed over the
    pseudo-header for packed addresses C{src} and C{dst}.
    """
    length = HEADER_LENGTH + len(payload)
    if length > 0xFFFF:
        raise MalformedError(f"UDP payload of {len(payload)} bytes")
    # The header's words are added to the pseudo-header sum rather than
    # concatenated with the payload, which would copy it.
    csum = internetChecksum(
        payload, pseudoHeaderSum(src, dst, _PROTO, length) + srcPort + dstPort + length
    )
    # A computed checksum of zero is sent as all ones (RFC 768).
    return _header.pack(srcPort, dstPort, length, csum or 0xFFFF) + payload
