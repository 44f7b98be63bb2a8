# -*- test-case-name: tests.test_wire_tcp -*-
"""
TCP segments (RFC 9293): the header, the options vpnkit uses (MSS, window
scale, SACK-permitted, SACK blocks, timestamps) and the checksum.

L{Segment} is what the TCP state machine consumes and produces; its
C{window} is the raw 16-bit header field (scaling is the state machine's
business).  Sequence numbers are plain ints modulo 2**32 (see
L{vpnkit.wire.seq}).
"""

import enum
from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import ChecksumError, MalformedError, TruncatedError
from vpnkit.wire.checksum import internetChecksum, onesComplementSum, pseudoHeaderSum

__all__ = [
    "FIN",
    "SYN",
    "RST",
    "PSH",
    "ACK",
    "URG",
    "ECE",
    "CWR",
    "TCPFlags",
    "TCPOptions",
    "Segment",
    "parseTCP",
    "emitTCP",
    "emitTCPHeader",
    "CHECKSUM_OFFSET",
    "formatSegment",
]

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

_PROTO = 6
HEADER_LENGTH = 20
# Where the checksum field is in the header.
CHECKSUM_OFFSET = 16

OPT_END = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

_header = Struct("!HHIIBBHHH")


class TCPFlags(enum.IntFlag):
    """
    The flag bits, for readable test failures and logs; segments carry a
    plain C{int}.
    """

    FIN = FIN
    SYN = SYN
    RST = RST
    PSH = PSH
    ACK = ACK
    URG = URG
    ECE = ECE
    CWR = CWR


@dataclass(frozen=True, slots=True)
class TCPOptions:
    """
    The options of one segment.

    @ivar sack: SACK blocks as C{((left, right), ...)}.
    @ivar timestamp: C{(tsval, tsecr)} or C{None}.
    """

    mss: int | None = None
    windowScale: int | None = None
    sackPermitted: bool = False
    sack: tuple = ()
    timestamp: tuple | None = None


NO_OPTIONS = TCPOptions()


# Not frozen: a frozen dataclass costs five times as much to build (about
# 1 us against 0.2 us here) and a segment is built for every frame.  Treat
# instances as immutable; tests derive variants with dataclasses.replace.
@dataclass(slots=True)
class Segment:
    srcPort: int
    dstPort: int
    seq: int
    ack: int
    flags: int
    window: int
    options: TCPOptions = NO_OPTIONS
    payload: bytes = b""
    urgent: int = 0

    def __repr__(self):
        return f"<Segment {formatSegment(self)}>"


def formatSegment(seg):
    """
    tcpdump-like text for a segment.
    """
    names = "".join(
        letter
        for bit, letter in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."))
        if seg.flags & bit
    )
    text = f"{seg.srcPort}>{seg.dstPort} [{names}] seq {seg.seq}"
    if seg.flags & ACK:
        text += f" ack {seg.ack}"
    text += f" win {seg.window}"
    if seg.payload:
        text += f" len {len(seg.payload)}"
    if seg.options is not NO_OPTIONS and seg.options != NO_OPTIONS:
        text += f" {seg.options}"
    return text


def _parseOptions(data):
    mss = windowScale = timestamp = None
    sackPermitted = False
    sack = ()
    i = 0
    n = len(data)
    while i < n:
        kind = data[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise TruncatedError("TCP option without a length")
        length = data[i + 1]
        if length < 2 or i + length > n:
            raise MalformedError(f"TCP option {kind} of length {length}")
        body = data[i + 2 : i + length]
        if kind == OPT_MSS:
            if length != 4:
                raise MalformedError("TCP MSS option length")
            mss = int.from_bytes(body, "big")
        elif kind == OPT_WSCALE:
            if length != 3:
                raise MalformedError("TCP window scale option length")
            windowScale = body[0]
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise MalformedError("TCP SACK-permitted option length")
            sackPermitted = True
        elif kind == OPT_SACK:
            if (length - 2) % 8:
                raise MalformedError("TCP SACK option length")
            sack = tuple(
                (int.from_bytes(body[j : j + 4], "big"), int.from_bytes(body[j + 4 : j + 8], "big"))
                for j in range(0, length - 2, 8)
            )
        elif kind == OPT_TIMESTAMP:
            if length != 10:
                raise MalformedError("TCP timestamp option length")
            timestamp = (int.from_bytes(body[:4], "big"), int.from_bytes(body[4:], "big"))
        i += length
    return TCPOptions(mss, windowScale, sackPermitted, sack, timestamp)


def encodeOptions(options):
    """
    The option bytes for C{options}, NOP-padded to a multiple of 4.
    """
    if options is NO_OPTIONS:
        return b""
    out = bytearray()
    if options.mss is not None:
        out += bytes((OPT_MSS, 4)) + options.mss.to_bytes(2, "big")
    if options.sackPermitted:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
    if options.timestamp is not None:
        out += bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10))
        out += options.timestamp[0].to_bytes(4, "big") + options.timestamp[1].to_bytes(4, "big")
    if options.windowScale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, options.windowScale))
    if options.sack:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(options.sack)))
        for left, right in options.sack:
            out += left.to_bytes(4, "big") + right.to_bytes(4, "big")
    if len(out) > 40:
        raise MalformedError(f"TCP options of {len(out)} bytes")
    return bytes(out)


def parseTCP(data, src, dst, verifyChecksum=True):
    """
    Parse a TCP segment carried between packed IPv4 addresses.

    @raise TruncatedError: shorter than its data offset says.
    @raise MalformedError: a data offset under 5, bad options.
    @raise ChecksumError: the checksum does not verify.
    """
    n = len(data)
    if n < HEADER_LENGTH:
        raise TruncatedError(f"TCP segment of {n} bytes")
    srcPort, dstPort, seq, ack, offsetByte, flags, window, csum, urgent = _header.unpack_from(data)
    offset = (offsetByte >> 4) * 4
    if offset < HEADER_LENGTH:
        raise MalformedError(f"TCP data offset {offset}")
    if offset > n:
        raise TruncatedError(f"TCP header of {offset} bytes in {n}")
    if verifyChecksum and onesComplementSum(data, pseudoHeaderSum(src, dst, _PROTO, n)) != 0xFFFF:
        raise ChecksumError("TCP checksum")
    options = _parseOptions(data[HEADER_LENGTH:offset]) if offset > HEADER_LENGTH else NO_OPTIONS
    return Segment(srcPort, dstPort, seq, ack, flags, window, options, data[offset:], urgent)


def emitTCPHeader(seg, src, dst, partial=False):
    """
    The header of C{seg} (options included) between packed addresses
    C{src} and C{dst}, to be followed on the wire by C{seg.payload}.

    @param partial: leave the checksum partial, the way a kernel hands a
        segment to a NIC with checksum offload (Linux's
        C{CHECKSUM_PARTIAL}): the field holds only the folded
        pseudo-header sum and the payload is not read; whoever sends it
        on sums everything from the header's first byte into the field
        (L{vpnkit.wire.checksum.finishChecksum}, or the guest's kernel).
        Otherwise the checksum is complete.
    """
    opts = encodeOptions(seg.options)
    offset = HEADER_LENGTH + len(opts)
    payload = seg.payload
    length = offset + len(payload)
    if partial:
        csum = pseudoHeaderSum(src, dst, _PROTO, length) % 0xFFFF or 0xFFFF
    else:
        offsetWord = ((offset // 4) << 12) | seg.flags
        initial = (
            pseudoHeaderSum(src, dst, _PROTO, length)
            + seg.srcPort
            + seg.dstPort
            + seg.seq
            + seg.ack
            + offsetWord
            + seg.window
            + seg.urgent
        )
        if opts:
            initial += int.from_bytes(opts, "big")
        csum = internetChecksum(payload, initial)
    header = _header.pack(
        seg.srcPort, seg.dstPort, seg.seq, seg.ack, offset // 4 << 4, seg.flags, seg.window, csum, seg.urgent
    )
    return header + opts if opts else header


def emitTCP(seg, src, dst):
    """
    The bytes of C{seg} between packed addresses C{src} and C{dst}, with
    the checksum computed.
    """
    return emitTCPHeader(seg, src, dst) + seg.payload
