# -*- test-case-name: tests.test_wire_virtio -*-
"""
The virtio-net header a tap device carries with C{IFF_VNET_HDR}, and the
completion of the partial checksums it announces.

With checksum and TCP segmentation offload enabled on a tap, the guest's
kernel hands vpnkit TCP segments of up to 64 KiB (C{GSO_TCPV4}, or
C{GSO_TCPV6} over IPv6, to be cut into C{gsoSize} pieces on a real wire)
whose checksum holds only the pseudo-header sum (C{F_NEEDS_CSUM}).  Forty 1500-byte frames become one
read: the single largest saving for a user-space stack.
"""

from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError
from vpnkit.wire.checksum import onesComplementSum, pseudoHeaderSum

__all__ = [
    "LENGTH",
    "F_NEEDS_CSUM",
    "F_DATA_VALID",
    "GSO_NONE",
    "GSO_TCPV4",
    "GSO_TCPV6",
    "GSO_ECN",
    "NO_OFFLOAD",
    "VirtioNetHeader",
    "parseVirtioNetHeader",
    "emitVirtioNetHeader",
    "completeChecksum",
    "segmentationOffload",
    "partialChecksumHeader",
]

F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_ECN = 0x80

# Native byte order, as the tap device uses unless told otherwise.
_header = Struct("=BBHHHH")
LENGTH = _header.size  # 10
NO_OFFLOAD = bytes(LENGTH)


@dataclass(frozen=True, slots=True)
class VirtioNetHeader:
    flags: int = 0
    gsoType: int = GSO_NONE
    hdrLen: int = 0
    gsoSize: int = 0
    csumStart: int = 0
    csumOffset: int = 0


def parseVirtioNetHeader(data):
    """
    The header at the start of C{data} (the frame follows it).

    @raise TruncatedError: fewer than 10 bytes.
    """
    if len(data) < LENGTH:
        raise TruncatedError(f"virtio-net header of {len(data)} bytes")
    return VirtioNetHeader(*_header.unpack_from(data))


def emitVirtioNetHeader(header):
    return _header.pack(
        header.flags,
        header.gsoType,
        header.hdrLen,
        header.gsoSize,
        header.csumStart,
        header.csumOffset,
    )


def completeChecksum(frame, start, offset):
    """
    Finish a partial checksum: the 16-bit field at C{start + offset} holds
    the pseudo-header sum; the ones'-complement sum of everything from
    C{start} on (that field included) is complemented into it.

    @return: the frame with its checksum complete.
    @raise MalformedError: the field lies outside the frame.
    """
    position = start + offset
    if position + 2 > len(frame) or start >= len(frame):
        raise MalformedError(f"checksum field at {position} outside a {len(frame)}-byte frame")
    csum = ~onesComplementSum(frame[start:]) & 0xFFFF
    return b"".join((frame[:position], csum.to_bytes(2, "big"), frame[position + 2 :]))


def _tcpFrame(frame):
    """
    Where the TCP header of an IPv4/TCP or IPv6/TCP frame (no extension
    headers) starts, and the segmentation-offload type for it.

    @raise MalformedError: neither, or too short for the headers.
    """
    if len(frame) >= 14 + 20 + 20 and frame[12:14] == b"\x08\x00" and frame[23] == 6:
        tcpStart = 14 + (frame[14] & 0x0F) * 4
        kind = GSO_TCPV4
    elif len(frame) >= 14 + 40 + 20 and frame[12:14] == b"\x86\xdd" and frame[20] == 6:
        tcpStart = 14 + 40
        kind = GSO_TCPV6
    else:
        raise MalformedError("segmentation offload needs an IPv4/TCP or IPv6/TCP frame")
    if len(frame) < tcpStart + 20:
        raise MalformedError("segmentation offload needs the TCP header")
    return tcpStart, kind


def segmentationOffload(frame, mtu):
    """
    Hand an oversized IPv4/TCP or IPv6/TCP frame to a tap as one
    segmentation-offload super-segment, the way a kernel hands one to a
    NIC: a header asking for C{GSO_TCPV4} (C{GSO_TCPV6}) pieces that fit
    C{mtu}, and the TCP checksum turned back into the partial
    (pseudo-header) sum the receiver completes.

    @return: C{(header, frame)} to write together.
    @raise MalformedError: not IPv4/TCP or IPv6/TCP, or no room for
        payload in C{mtu}.
    """
    tcpStart, kind = _tcpFrame(frame)
    doff = (frame[tcpStart + 12] >> 4) * 4
    gsoSize = mtu - (tcpStart - 14) - doff
    if gsoSize <= 0 or len(frame) < tcpStart + doff:
        raise MalformedError("no room for TCP payload")
    if kind == GSO_TCPV4:
        src, dst = frame[26:30], frame[30:34]
    else:
        src, dst = frame[22:38], frame[38:54]
    partial = pseudoHeaderSum(src, dst, 6, len(frame) - tcpStart) % 0xFFFF or 0xFFFF
    position = tcpStart + 16
    frame = b"".join((frame[:position], partial.to_bytes(2, "big"), frame[position + 2 :]))
    header = _header.pack(F_NEEDS_CSUM, kind, tcpStart + doff, gsoSize, tcpStart, 16)
    return header, frame


def partialChecksumHeader(head, length, csumStart, csumOffset, mtu):
    """
    The virtio-net header for a frame of C{length} bytes whose checksum is
    left partial (the field at C{csumStart + csumOffset} holds the
    pseudo-header sum, see L{vpnkit.wire.tcp.emitTCPHeader}): one that
    fits C{mtu} goes as it is, a larger one as a C{GSO_TCPV4} (IPv6:
    C{GSO_TCPV6}) super-segment, C{head} being then its Ethernet, IP and
    TCP headers, all of them and nothing more (the frame's payload is not
    needed).

    @raise MalformedError: beyond C{mtu} but not IPv4/TCP or IPv6/TCP, or
        no room for payload in C{mtu}.
    """
    if length <= mtu + 14:
        return _header.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, csumStart, csumOffset)
    tcpStart, kind = _tcpFrame(head)
    if len(head) != tcpStart + (head[tcpStart + 12] >> 4) * 4:
        raise MalformedError("segmentation offload needs the headers, all of them")
    gsoSize = mtu - (len(head) - 14)
    if gsoSize <= 0:
        raise MalformedError("no room for TCP payload")
    return _header.pack(F_NEEDS_CSUM, kind, len(head), gsoSize, csumStart, csumOffset)
