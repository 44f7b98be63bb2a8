# -*- test-case-name: tests.test_wire_gso -*-
"""
Software segmentation: cut an oversized IPv4/TCP or IPv6/TCP frame (a
segmentation offload "super-segment" from a tap guest, or vpnkit's own to
one) into frames that fit a link.

Only needed where such a frame must go to a guest whose link has no
offload; the pieces are exactly what the sender's NIC would have put on a
wire: consecutive sequence numbers, FIN and PSH only on the last piece, CWR
only on the first, fresh lengths, identifications and checksums.  IPv6
super-segments carry no extension headers (the kernel hands none to
segmentation offload for TCP), so the TCP header follows the fixed header.
"""

from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError
from vpnkit.wire.checksum import internetChecksum, pseudoHeaderSum

__all__ = ["segmentTCPv4", "segmentTCPv6", "segmentTCP"]

_ETHERTYPE_IPV4 = b"\x08\x00"
_ETHERTYPE_IPV6 = b"\x86\xdd"
_FIN = 0x01
_PSH = 0x08
_CWR = 0x80
_ip = Struct("!BBHHHBBH4s4s")


def _tcpBounds(frame, tcpStart, maxFrame):
    """
    The TCP header length, where the payload starts, and how much payload
    each piece of at most C{maxFrame} bytes takes, for the TCP header at
    C{tcpStart}.

    @raise TruncatedError: the TCP header does not fit the frame.
    @raise MalformedError: no room for any payload.
    """
    if len(frame) < tcpStart + 20:
        raise TruncatedError("TCP header")
    doff = (frame[tcpStart + 12] >> 4) * 4
    payloadStart = tcpStart + doff
    if doff < 20 or len(frame) < payloadStart:
        raise TruncatedError("TCP header")
    room = maxFrame - payloadStart
    if room <= 0:
        raise MalformedError("no room for payload")
    return doff, payloadStart, room


def segmentTCPv4(frame, maxFrame):
    """
    Split C{frame} (Ethernet + IPv4 + TCP) into frames of at most
    C{maxFrame} bytes.

    @raise MalformedError: not IPv4/TCP, or no room for any payload.
    @raise TruncatedError: the headers do not fit the frame.
    """
    if len(frame) < 14 + 20 or frame[12:14] != _ETHERTYPE_IPV4:
        raise MalformedError("not an IPv4 frame")
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 6:
        raise MalformedError("not TCP")
    tcpStart = 14 + ihl
    doff, payloadStart, room = _tcpBounds(frame, tcpStart, maxFrame)
    eth = frame[:14]
    vihl, tos, _, ident, fragField, ttl, proto, _, src, dst = _ip.unpack_from(frame, 14)
    ipOptions = frame[14 + 20 : tcpStart]
    tcpHeader = bytearray(frame[tcpStart:payloadStart])
    seq = int.from_bytes(tcpHeader[4:8], "big")
    flags = tcpHeader[13]
    payload = frame[payloadStart:]
    pieces = range(0, len(payload), room)
    frames = []
    for index, offset in enumerate(pieces):
        chunk = payload[offset : offset + room]
        last = offset + room >= len(payload)
        pieceFlags = flags
        if not last:
            pieceFlags &= ~(_FIN | _PSH)
        if index:
            pieceFlags &= ~_CWR
        tcpHeader[4:8] = ((seq + offset) & 0xFFFFFFFF).to_bytes(4, "big")
        tcpHeader[13] = pieceFlags
        tcpHeader[16:18] = b"\0\0"
        length = doff + len(chunk)
        csum = internetChecksum(
            bytes(tcpHeader) + chunk, pseudoHeaderSum(src, dst, 6, length)
        )
        tcpHeader[16:18] = csum.to_bytes(2, "big")
        total = ihl + length
        head = _ip.pack(vihl, tos, total, (ident + index) & 0xFFFF, fragField, ttl, proto, 0, src, dst)
        ipcsum = internetChecksum(head + ipOptions)
        head = head[:10] + ipcsum.to_bytes(2, "big") + head[12:]
        frames.append(b"".join((eth, head, ipOptions, bytes(tcpHeader), chunk)))
    return frames


def _pieces(tcpHeader, payload, room):
    """
    The TCP header and payload of each piece: C{(header, chunk, index)},
    the header a fresh copy with its sequence number and flags set and
    its checksum zeroed.
    """
    seq = int.from_bytes(tcpHeader[4:8], "big")
    flags = tcpHeader[13]
    for index, offset in enumerate(range(0, len(payload), room)):
        chunk = payload[offset : offset + room]
        last = offset + room >= len(payload)
        pieceFlags = flags
        if not last:
            pieceFlags &= ~(_FIN | _PSH)
        if index:
            pieceFlags &= ~_CWR
        header = bytearray(tcpHeader)
        header[4:8] = ((seq + offset) & 0xFFFFFFFF).to_bytes(4, "big")
        header[13] = pieceFlags
        header[16:18] = b"\0\0"
        yield header, chunk


def segmentTCPv6(frame, maxFrame):
    """
    Split C{frame} (Ethernet + IPv6 + TCP, no extension headers) into
    frames of at most C{maxFrame} bytes.

    @raise MalformedError: not IPv6/TCP, or no room for any payload.
    @raise TruncatedError: the headers do not fit the frame.
    """
    if len(frame) < 14 + 40 or frame[12:14] != _ETHERTYPE_IPV6:
        raise MalformedError("not an IPv6 frame")
    if frame[14 + 6] != 6:
        raise MalformedError("not TCP")
    tcpStart = 14 + 40
    doff, payloadStart, room = _tcpBounds(frame, tcpStart, maxFrame)
    head = frame[:18]
    src = frame[22:38]
    dst = frame[38:54]
    middle = frame[20:54]
    frames = []
    for tcpHeader, chunk in _pieces(frame[tcpStart:payloadStart], frame[payloadStart:], room):
        length = doff + len(chunk)
        csum = internetChecksum(bytes(tcpHeader) + chunk, pseudoHeaderSum(src, dst, 6, length))
        tcpHeader[16:18] = csum.to_bytes(2, "big")
        frames.append(
            b"".join((head, length.to_bytes(2, "big"), middle, bytes(tcpHeader), chunk))
        )
    return frames


def segmentTCP(frame, maxFrame):
    """
    L{segmentTCPv4} or L{segmentTCPv6}, by the frame's EtherType.
    """
    if frame[12:14] == _ETHERTYPE_IPV6:
        return segmentTCPv6(frame, maxFrame)
    return segmentTCPv4(frame, maxFrame)
