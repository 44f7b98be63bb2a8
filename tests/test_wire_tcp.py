"""
Tests for L{vpnkit.wire.tcp}: parsing and emitting TCP segments, against
the TCP segments of C{tests/fixtures/linux-guest.pcap} (a real Linux guest
talking to slirp4netns), plus malformed options and fuzzing.
"""

import struct
from dataclasses import replace

import dpkt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    GATEWAY_IP,
    GUEST_IP,
    IPV4_FRAMES,
    TCP_RST,
    TCP_SYN,
    ipPacket,
    ipPayload,
    referenceSum,
)
from vpnkit.wire import ChecksumError, MalformedError, ParseError, TruncatedError
from vpnkit.wire.tcp import (
    ACK,
    FIN,
    NO_OPTIONS,
    PSH,
    RST,
    SYN,
    Segment,
    TCPFlags,
    TCPOptions,
    CHECKSUM_OFFSET,
    emitTCP,
    emitTCPHeader,
    encodeOptions,
    formatSegment,
    parseTCP,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def _addresses(frame):
    packet = ipPacket(frame)
    return packet[12:16], packet[16:20]


def _tcpFrames():
    """
    Every TCP frame of the capture, chosen with dpkt (independently of the
    code under test).
    """
    out = []
    for frame in IPV4_FRAMES:
        ip = dpkt.ethernet.Ethernet(frame).data
        if ip.p == dpkt.ip.IP_PROTO_TCP:
            out.append(frame)
    return out


TCP_FRAMES = _tcpFrames()
# (segment bytes, src, dst) for every captured TCP segment.
CORPUS = [(ipPayload(f),) + _addresses(f) for f in TCP_FRAMES]


def _first(predicate):
    for frame in TCP_FRAMES:
        tcp = dpkt.ethernet.Ethernet(frame).data.data
        if predicate(tcp):
            return frame
    raise LookupError("no such TCP frame in the capture")


# The guest's first data segment (an HTTP request, PSH|ACK), the first
# full-sized segment towards the guest, the guest's FIN and the SYN-ACK.
DATA = _first(lambda t: t.flags == dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK and t.dport == 8099)
FULL = _first(lambda t: len(t.data) == 1440)
GUEST_FIN = _first(lambda t: t.flags & dpkt.tcp.TH_FIN and t.sport == 34326)
SYN_ACK = _first(lambda t: t.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)


def withChecksum(segment, src, dst):
    """
    C{segment} with its checksum (bytes 16-17) recomputed by the
    independent L{referenceSum}, for deliberately odd but valid segments.
    """
    data = bytearray(segment)
    data[16:18] = b"\0\0"
    pseudo = src + dst + bytes((0, 6)) + len(data).to_bytes(2, "big")
    data[16:18] = (~referenceSum(pseudo + bytes(data)) & 0xFFFF).to_bytes(2, "big")
    return bytes(data)


def rawSegment(options=b"", payload=b"", offsetWords=None, flags=ACK, src=GUEST_IP, dst=GATEWAY_IP):
    """
    A hand-built segment with the given raw option bytes (not padded) and a
    valid checksum.
    """
    if offsetWords is None:
        offsetWords = (20 + len(options) + 3) // 4
        options = options.ljust(offsetWords * 4 - 20, b"\0")
    header = struct.pack("!HHIIBBHHH", 1234, 80, 1000, 2000, offsetWords << 4, flags, 512, 0, 0)
    return withChecksum(header + options + payload, src, dst)


class ParseTests(SynchronousTestCase):
    def test_corpus(self):
        """
        The capture holds the segments the tests below rely on: 51 TCP
        segments of three connections (HTTP, DNS over TCP, a refused SYN).
        """
        self.assertEqual(len(TCP_FRAMES), 51)

    def test_parseSYN(self):
        """
        The Linux SYN: MSS 1460, SACK permitted, timestamps and window
        scale 10, no payload.
        """
        src, dst = _addresses(TCP_SYN)
        seg = parseTCP(ipPayload(TCP_SYN), src, dst)
        self.assertEqual(
            seg,
            Segment(
                34326,
                8099,
                84404889,
                0,
                SYN,
                64240,
                TCPOptions(mss=1460, windowScale=10, sackPermitted=True, timestamp=(61573193, 0)),
                b"",
            ),
        )

    def test_parseSYNACK(self):
        """
        slirp's SYN-ACK carries only an MSS.
        """
        src, dst = _addresses(SYN_ACK)
        seg = parseTCP(ipPayload(SYN_ACK), src, dst)
        self.assertEqual(
            (seg.srcPort, seg.dstPort, seg.seq, seg.ack, seg.flags, seg.window, seg.options),
            (8099, 34326, 64001, 84404890, SYN | ACK, 65535, TCPOptions(mss=1460)),
        )

    def test_parseData(self):
        """
        The guest's request: PSH|ACK with 85 bytes of HTTP.
        """
        src, dst = _addresses(DATA)
        seg = parseTCP(ipPayload(DATA), src, dst)
        self.assertEqual(
            (seg.seq, seg.ack, seg.flags, seg.window, seg.options),
            (84404890, 64002, PSH | ACK, 64240, NO_OPTIONS),
        )
        self.assertEqual(len(seg.payload), 85)
        self.assertTrue(bytes(seg.payload).startswith(b"GET /"))

    def test_parseFIN(self):
        """
        The guest's FIN|ACK.
        """
        src, dst = _addresses(GUEST_FIN)
        seg = parseTCP(ipPayload(GUEST_FIN), src, dst)
        self.assertEqual(
            (seg.seq, seg.ack, seg.flags, seg.payload), (84404975, 84192, FIN | ACK, b"")
        )

    def test_parseRST(self):
        """
        The RST|ACK from a closed port acknowledges the SYN.
        """
        src, dst = _addresses(TCP_RST)
        seg = parseTCP(ipPayload(TCP_RST), src, dst)
        self.assertEqual(
            (seg.srcPort, seg.dstPort, seg.seq, seg.ack, seg.flags),
            (9, 50732, 0, 1641554396, RST | ACK),
        )

    def test_parseAgreesWithDpkt(self):
        """
        Every captured segment parses to what dpkt (an independent parser)
        reads from it.
        """
        for data, src, dst in CORPUS:
            ours = parseTCP(data, src, dst)
            theirs = dpkt.tcp.TCP(data)
            self.assertEqual(
                (ours.srcPort, ours.dstPort, ours.seq, ours.ack, ours.flags, ours.window),
                (theirs.sport, theirs.dport, theirs.seq, theirs.ack, theirs.flags, theirs.win),
            )
            self.assertEqual(bytes(ours.payload), bytes(theirs.data))

    def test_trailingPaddingIsPayload(self):
        """
        The parser takes the segment it is given as a whole: cutting it to
        the IP total length is the IP layer's job.
        """
        data = rawSegment(payload=b"abc")
        self.assertEqual(parseTCP(data, GUEST_IP, GATEWAY_IP).payload, b"abc")

    def test_unknownOptionSkipped(self):
        """
        An option of an unknown kind is skipped by its length.
        """
        data = rawSegment(bytes((99, 4, 0xAB, 0xCD, 2, 4, 0x05, 0xB4)))
        self.assertEqual(parseTCP(data, GUEST_IP, GATEWAY_IP).options, TCPOptions(mss=1460))

    def test_endOfOptions(self):
        """
        End-of-options stops parsing: what follows it is ignored.
        """
        data = rawSegment(bytes((1, 0, 2, 1)))
        self.assertEqual(parseTCP(data, GUEST_IP, GATEWAY_IP).options, TCPOptions())

    def test_sackBlocks(self):
        """
        A SACK option of one to four blocks is read as (left, right) pairs.
        """
        for count in range(1, 5):
            blocks = tuple((1000 * i, 1000 * i + 500) for i in range(1, count + 1))
            body = b"".join(l.to_bytes(4, "big") + r.to_bytes(4, "big") for l, r in blocks)
            data = rawSegment(bytes((1, 1, 5, 2 + 8 * count)) + body)
            self.assertEqual(parseTCP(data, GUEST_IP, GATEWAY_IP).options.sack, blocks)

    def test_verifyChecksumOff(self):
        """
        With verifyChecksum=False a segment with a wrong checksum parses.
        """
        data = bytearray(ipPayload(DATA))
        data[16] ^= 0xFF
        src, dst = _addresses(DATA)
        self.assertEqual(parseTCP(bytes(data), src, dst, verifyChecksum=False).seq, 84404890)


class EmitTests(SynchronousTestCase):
    def test_emitExact(self):
        """
        Every captured segment without options other than an MSS (the
        SYN-ACKs, data, FINs, RST: all but the 3 SYNs) is emitted back to exactly
        the captured bytes.
        """
        exact = 0
        for data, src, dst in CORPUS:
            seg = parseTCP(data, src, dst)
            if seg.options in (NO_OPTIONS, TCPOptions(mss=seg.options.mss)):
                self.assertEqual(emitTCP(seg, src, dst), bytes(data))
                exact += 1
        self.assertEqual(exact, 48)

    def test_emitSYN(self):
        """
        The SYN's options come out in our canonical order (MSS, NOP NOP
        SACK-permitted, NOP NOP timestamp, NOP window scale), with a valid
        checksum, and parse back to the same segment.
        """
        src, dst = _addresses(TCP_SYN)
        seg = parseTCP(ipPayload(TCP_SYN), src, dst)
        out = emitTCP(seg, src, dst)
        self.assertEqual(
            out[20:],
            bytes.fromhex("020405b4" "01010402" "0101080a")
            + (61573193).to_bytes(4, "big")
            + bytes(4)
            + bytes.fromhex("0103030a"),
        )
        self.assertEqual(out[12] >> 4, 11)
        self.assertEqual(parseTCP(out, src, dst), seg)
        # The header beyond the options is the captured one.
        self.assertEqual(out[:12], bytes(ipPayload(TCP_SYN))[:12])
        self.assertEqual(out[13:16], bytes(ipPayload(TCP_SYN))[13:16])

    def test_roundTripCapture(self):
        """
        parse(emit(parse(x))) == parse(x) for every captured segment.
        """
        for data, src, dst in CORPUS:
            seg = parseTCP(data, src, dst)
            self.assertEqual(parseTCP(emitTCP(seg, src, dst), src, dst), seg)

    def test_emitOddPayload(self):
        """
        An odd-length payload is checksummed with the implicit zero pad,
        which the independent reference sum agrees with.
        """
        seg = Segment(1, 2, 3, 4, ACK | PSH, 5, NO_OPTIONS, b"abcde")
        out = emitTCP(seg, GUEST_IP, GATEWAY_IP)
        self.assertEqual(out, withChecksum(out, GUEST_IP, GATEWAY_IP))
        self.assertEqual(parseTCP(out, GUEST_IP, GATEWAY_IP), seg)

    def test_emitSACK(self):
        """
        SACK blocks are emitted after two NOPs, and four blocks still fit.
        """
        blocks = ((1, 2), (3, 4), (0xFFFFFFF0, 0x10), (7, 8))
        seg = Segment(1, 2, 3, 4, ACK, 5, TCPOptions(sack=blocks))
        out = emitTCP(seg, GUEST_IP, GATEWAY_IP)
        self.assertEqual(out[20:24], bytes((1, 1, 5, 34)))
        self.assertEqual(len(out), 20 + 36)
        self.assertEqual(parseTCP(out, GUEST_IP, GATEWAY_IP).options.sack, blocks)

    def test_emitTooManyOptions(self):
        """
        Options over the 40 bytes a header can hold are refused.
        """
        options = TCPOptions(timestamp=(1, 2), sack=((1, 2), (3, 4), (5, 6), (7, 8)))
        self.assertRaises(MalformedError, encodeOptions, options)
        self.assertRaises(
            MalformedError, emitTCP, Segment(1, 2, 3, 4, ACK, 5, options), GUEST_IP, GATEWAY_IP
        )

    def test_emitHeader(self):
        """
        emitTCPHeader is emitTCP without the payload: for every captured
        segment, the header followed by the payload is exactly what
        emitTCP gives, and a payload given as a view of a larger buffer
        changes nothing.
        """
        for data, src, dst in CORPUS:
            seg = parseTCP(data, src, dst)
            header = emitTCPHeader(seg, src, dst)
            self.assertEqual(header + seg.payload, emitTCP(seg, src, dst))
            view = replace(seg, payload=memoryview(b"x" + bytes(seg.payload) + b"y")[1:-1])
            self.assertEqual(emitTCPHeader(view, src, dst), header)
            self.assertEqual(emitTCP(view, src, dst), emitTCP(seg, src, dst))

    def test_emitPartialHeader(self):
        """
        With C{partial}, the checksum field holds the folded pseudo-header
        sum for the whole segment's length and the payload is not read:
        summing the header and payload into it, as a kernel completes a
        checksum left for offload (the word-by-word reference here), gives
        the full checksum emitTCP computes.
        """
        for data, src, dst in CORPUS:
            seg = parseTCP(data, src, dst)
            full = emitTCP(seg, src, dst)
            header = emitTCPHeader(seg, src, dst, partial=True)
            # All but the checksum is the full header.
            field = slice(CHECKSUM_OFFSET, CHECKSUM_OFFSET + 2)
            self.assertEqual(
                header[: field.start] + header[field.stop :],
                full[: field.start] + full[field.stop : len(header)],
            )
            pseudo = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + 6 + len(full)
            self.assertEqual(int.from_bytes(header[field], "big"), pseudo % 0xFFFF or 0xFFFF)
            csum = ~referenceSum(header + seg.payload) & 0xFFFF
            completed = header[: field.start] + csum.to_bytes(2, "big") + header[field.stop :]
            self.assertEqual(completed + seg.payload, full)

    def test_formatSegment(self):
        """
        formatSegment reads like tcpdump: ports, flags, seq, ack, window,
        length and non-default options.
        """
        seg = Segment(80, 1234, 7, 9, SYN | ACK, 100, TCPOptions(mss=1460), b"xy")
        self.assertEqual(
            formatSegment(seg),
            "80>1234 [S.] seq 7 ack 9 win 100 len 2 " + str(TCPOptions(mss=1460)),
        )
        self.assertEqual(formatSegment(Segment(1, 2, 3, 0, RST, 0)), "1>2 [R] seq 3 win 0")
        self.assertIn("80>1234", repr(seg))
        self.assertEqual(str(TCPFlags(SYN | ACK)), str(TCPFlags.SYN | TCPFlags.ACK))


class MalformedTests(SynchronousTestCase):
    def test_truncated(self):
        """
        Every prefix of every captured segment fails with a ParseError:
        shorter than its header a TruncatedError, longer a ChecksumError,
        never an IndexError or struct.error.
        """
        for data, src, dst in CORPUS:
            headerLength = (data[12] >> 4) * 4
            for n in range(len(data)):
                with self.assertRaises(ParseError):
                    parseTCP(data[:n], src, dst)
                if n < headerLength:
                    self.assertRaises(TruncatedError, parseTCP, data[:n], src, dst)
                    self.assertRaises(TruncatedError, parseTCP, data[:n], src, dst, False)

    def test_badChecksum(self):
        """
        Changing any single byte of a captured segment is a ChecksumError
        (the Internet checksum catches every single-byte change), and so
        are the wrong addresses.
        """
        for frame in (TCP_SYN, DATA, FULL, TCP_RST):
            src, dst = _addresses(frame)
            data = bytes(ipPayload(frame))
            for i in range(0, len(data), 7):
                broken = bytearray(data)
                broken[i] ^= 0x5A
                self.assertRaises(ChecksumError, parseTCP, bytes(broken), src, dst)
            self.assertRaises(ChecksumError, parseTCP, data, dst, bytes((10, 0, 2, 99)))

    def test_offsetBelowFive(self):
        """
        A data offset under 5 words is malformed.
        """
        for words in range(5):
            data = rawSegment(offsetWords=words)
            self.assertRaises(MalformedError, parseTCP, data, GUEST_IP, GATEWAY_IP)

    def test_offsetBeyondSegment(self):
        """
        A data offset past the end of the segment is truncation.
        """
        data = rawSegment(offsetWords=6)
        self.assertRaises(TruncatedError, parseTCP, data, GUEST_IP, GATEWAY_IP)

    def test_badOptionLengths(self):
        """
        Option lengths under 2, running past the header, or wrong for the
        option's kind are malformed.
        """
        cases = [
            bytes((2, 0)),  # length 0
            bytes((2, 1, 0, 0)),  # length 1
            bytes((99, 9, 0, 0)),  # beyond the 4 option bytes
            bytes((2, 3, 5, 0)),  # MSS of length 3
            bytes((2, 5, 5, 0xB4, 0, 0, 0, 0)),  # MSS of length 5
            bytes((3, 4, 7, 0)),  # window scale of length 4
            bytes((4, 3, 0, 0)),  # SACK-permitted of length 3
            bytes((5, 6, 0, 0, 0, 0, 0, 0)),  # SACK not 2 + 8n
            bytes((8, 6, 0, 0, 0, 0, 0, 0)),  # timestamp of length 6
        ]
        for options in cases:
            data = rawSegment(options)
            self.assertRaises(MalformedError, parseTCP, data, GUEST_IP, GATEWAY_IP)

    def test_optionWithoutLength(self):
        """
        An option kind in the header's last byte, with no room for its
        length, is truncation.
        """
        data = rawSegment(bytes((1, 1, 1, 2)))
        self.assertRaises(TruncatedError, parseTCP, data, GUEST_IP, GATEWAY_IP)


# -- fuzzing -------------------------------------------------------------------


@st.composite
def mutatedSegment(draw):
    """
    A captured segment with a few edits, mostly in its header and options.
    """
    data, src, dst = draw(st.sampled_from(CORPUS))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        limit = min(len(data), 64) or 1
        i = draw(st.integers(0, limit - 1))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[i] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x05, 0x08, 0x0A, 0x50, 0xF0, 0xFF]))
        elif kind == "insert":
            data[i:i] = bytes([draw(st.integers(0, 255))])
        elif kind == "delete" and data:
            del data[i]
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data), src, dst


def _parseOrError(testCase, data, src, dst, verify):
    try:
        seg = parseTCP(data, src, dst, verify)
    except ParseError:
        return None
    testCase.assertIsInstance(seg, Segment)
    return seg


class FuzzTests(SynchronousTestCase):
    @FUZZ
    @given(st.binary(max_size=120), st.booleans())
    def test_randomBytes(self, data, verify):
        """
        Random bytes give a Segment or a ParseError, nothing else.
        """
        _parseOrError(self, data, GUEST_IP, GATEWAY_IP, verify)

    @FUZZ
    @given(st.binary(min_size=0, max_size=40), st.integers(5, 15), st.binary(max_size=20))
    def test_randomOptions(self, options, words, payload):
        """
        A valid header with random option bytes and any data offset, with
        the checksum made right so the option parser is reached: a Segment
        or a ParseError; a parsed one emits to bytes that parse back equal.
        """
        header = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, words << 4, ACK, 5, 0, 0)
        data = withChecksum(header + options + payload, GUEST_IP, GATEWAY_IP)
        seg = _parseOrError(self, data, GUEST_IP, GATEWAY_IP, True)
        if seg is not None:
            seg = replace(seg, payload=bytes(seg.payload))
            try:
                out = emitTCP(seg, GUEST_IP, GATEWAY_IP)
            except MalformedError:
                return  # more options than we would ever emit together
            self.assertEqual(parseTCP(out, GUEST_IP, GATEWAY_IP), seg)

    @FUZZ
    @given(mutatedSegment(), st.booleans())
    def test_mutatedCapture(self, case, verify):
        """
        Mutated captured segments give a Segment or a ParseError.
        """
        data, src, dst = case
        _parseOrError(self, data, src, dst, verify)

    @FUZZ
    @given(mutatedSegment())
    def test_mutatedCaptureRepaired(self, case):
        """
        Mutated captured segments with their checksum repaired (so the
        header and options are really parsed) give a Segment or a
        ParseError.
        """
        data, src, dst = case
        if len(data) >= 18:
            data = withChecksum(data, src, dst)
        _parseOrError(self, data, src, dst, True)


_u32 = st.integers(0, 2**32 - 1)
_u16 = st.integers(0, 0xFFFF)


@st.composite
def segments(draw):
    timestamp = draw(st.none() | st.tuples(_u32, _u32))
    # At most 40 bytes of options: with a timestamp, one SACK block.
    options = TCPOptions(
        mss=draw(st.none() | _u16),
        windowScale=draw(st.none() | st.integers(0, 14)),
        sackPermitted=draw(st.booleans()),
        sack=tuple(draw(st.lists(st.tuples(_u32, _u32), max_size=1 if timestamp else 2))),
        timestamp=timestamp,
    )
    return Segment(
        draw(_u16),
        draw(_u16),
        draw(_u32),
        draw(_u32),
        draw(st.integers(0, 0xFF)),
        draw(_u16),
        options,
        draw(st.binary(max_size=64)),
        draw(_u16),
    )


class RoundTripTests(SynchronousTestCase):
    @PROPERTY
    @given(segments(), st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4))
    def test_roundTrip(self, seg, src, dst):
        """
        Any segment we can emit parses back to itself, and its checksum is
        what the independent reference sum computes.
        """
        out = emitTCP(seg, src, dst)
        self.assertEqual(out, withChecksum(out, src, dst))
        self.assertEqual(parseTCP(out, src, dst), seg)
