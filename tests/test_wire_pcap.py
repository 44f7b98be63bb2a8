"""
Tests for L{vpnkit.wire.pcap}: the bytes checked field by field, and every
capture we write read back by C{dpkt.pcap.Reader} (an independent reader)
as well as by our own parser.
"""

import io

import dpkt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import FRAMES, PCAP_PATH
from vpnkit.wire import MalformedError, ParseError, TruncatedError
from vpnkit.wire.pcap import (
    DEFAULT_SNAPLEN,
    FILE_HEADER_LENGTH,
    MAX_SNAPLEN,
    RECORD_HEADER_LENGTH,
    PcapFileHeader,
    PcapRecord,
    fileHeader,
    headerSnaplen,
    parseFileHeader,
    parsePcap,
    parseRecord,
    record,
)

_fuzz = settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# A frame of 300 bytes: long enough to be cut by the default snapshot length.
FRAME = bytes(range(256)) + bytes(44)
WHEN = 1700000000.25


def dpktRead(data):
    """
    C{(snaplen, datalink, [(timestamp, bytes), ...])} as dpkt reads C{data}.
    """
    reader = dpkt.pcap.Reader(io.BytesIO(data))
    return reader.snaplen, reader.datalink(), [(ts, bytes(buf)) for ts, buf in reader]


class FileHeaderTests(SynchronousTestCase):
    """
    The 24-byte file header.
    """

    def test_bytes(self):
        """
        The header is magic a1b2c3d4 stored little-endian, version 2.4,
        thiszone 0, sigfigs 0, the snapshot length and link type 1, each
        field little-endian.
        """
        self.assertEqual(
            fileHeader(128),
            bytes.fromhex("d4c3b2a1" "0200" "0400" "00000000" "00000000" "80000000" "01000000"),
        )

    def test_wholeFrames(self):
        """
        Snapshot length 0 (whole frames) announces the largest length
        readers accept, 262144.
        """
        self.assertEqual(parseFileHeader(fileHeader(0)).snaplen, MAX_SNAPLEN)
        self.assertEqual(headerSnaplen(0), 262144)
        self.assertEqual(headerSnaplen(65535), 65535)

    def test_default(self):
        """
        The default snapshot length is the reference vpnkit's, 128.
        """
        self.assertEqual(DEFAULT_SNAPLEN, 128)
        self.assertEqual(fileHeader(), fileHeader(128))

    def test_outOfRange(self):
        """
        A negative snapshot length, or one over 262144, is refused.
        """
        for bad in (-1, MAX_SNAPLEN + 1):
            self.assertRaises(MalformedError, fileHeader, bad)
            self.assertRaises(MalformedError, record, FRAME, WHEN, bad)

    def test_parse(self):
        """
        Our header parses back into its fields.
        """
        self.assertEqual(parseFileHeader(fileHeader(96)), PcapFileHeader(2, 4, 0, 0, 96, 1))

    def test_dpkt(self):
        """
        dpkt reads our header: Ethernet, and the snapshot length given.
        """
        self.assertEqual(dpktRead(fileHeader(200)), (200, dpkt.pcap.DLT_EN10MB, []))

    def test_truncated(self):
        """
        Every prefix of the header is a L{TruncatedError}.
        """
        header = fileHeader(128)
        for n in range(FILE_HEADER_LENGTH):
            self.assertRaises(TruncatedError, parseFileHeader, header[:n])

    def test_otherFlavours(self):
        """
        Big-endian, nanosecond and pcapng magics, another version and a
        zero snapshot length are refused.
        """
        header = fileHeader(128)
        for magic in ("a1b2c3d4", "4d3cb2a1", "0a0d0d0a"):
            self.assertRaises(MalformedError, parseFileHeader, bytes.fromhex(magic) + header[4:])
        self.assertRaises(MalformedError, parseFileHeader, header[:4] + b"\x01\x00" + header[6:])
        self.assertRaises(MalformedError, parseFileHeader, header[:16] + bytes(4) + header[20:])


class RecordTests(SynchronousTestCase):
    """
    One record per frame.
    """

    def test_bytes(self):
        """
        A record is ts_sec, ts_usec, incl_len and orig_len, little-endian,
        then the kept bytes.
        """
        self.assertEqual(
            record(b"\xaa" * 20, 1.5, 16),
            (1).to_bytes(4, "little")
            + (500000).to_bytes(4, "little")
            + (16).to_bytes(4, "little")
            + (20).to_bytes(4, "little")
            + b"\xaa" * 16,
        )

    def test_cut(self):
        """
        A frame longer than the snapshot length keeps its first bytes and
        its original length.
        """
        rec, end = parseRecord(record(FRAME, WHEN, 128))
        self.assertEqual(rec, PcapRecord(1700000000, 250000, 300, FRAME[:128]))
        self.assertEqual(end, RECORD_HEADER_LENGTH + 128)

    def test_short(self):
        """
        A frame no longer than the snapshot length is kept whole.
        """
        for frame in (FRAME[:60], FRAME[:128]):
            rec, _ = parseRecord(record(frame, WHEN, 128))
            self.assertEqual((rec.data, rec.originalLength), (frame, len(frame)))

    def test_wholeFrames(self):
        """
        Snapshot length 0 keeps every byte of a frame, even a 64 KiB
        segmentation-offload super-segment.
        """
        big = FRAME * 230
        rec, _ = parseRecord(record(big, WHEN, 0))
        self.assertEqual((rec.data, rec.originalLength), (big, len(big)))

    def test_memoryview(self):
        """
        A frame may be a C{memoryview}; the record holds the same bytes.
        """
        self.assertEqual(record(memoryview(FRAME), WHEN, 64), record(FRAME, WHEN, 64))

    def test_timestamps(self):
        """
        The time splits into seconds and rounded microseconds; a time that
        rounds up to the next second carries; times before the epoch (or
        NaN) are 0 and times past 2106 the largest the format holds.
        """

        def stamp(when):
            rec, _ = parseRecord(record(b"x", when, 0))
            return rec.seconds, rec.microseconds

        self.assertEqual(stamp(0.0), (0, 0))
        self.assertEqual(stamp(12.000001), (12, 1))
        self.assertEqual(stamp(12.9999999), (13, 0))
        self.assertEqual(stamp(1700000000.123456), (1700000000, 123456))
        self.assertEqual(stamp(-5.0), (0, 0))
        self.assertEqual(stamp(float("nan")), (0, 0))
        self.assertEqual(stamp(float("inf")), (0xFFFFFFFF, 999999))
        self.assertEqual(stamp(2.0**40), (0xFFFFFFFF, 999999))
        self.assertEqual(stamp(0xFFFFFFFF - 0.0000001), (0xFFFFFFFF, 999999))

    def test_truncated(self):
        """
        Every prefix of a record is a L{TruncatedError}.
        """
        data = record(FRAME, WHEN, 64)
        for n in range(len(data)):
            self.assertRaises(TruncatedError, parseRecord, data[:n])

    def test_malformed(self):
        """
        Microseconds over 999999, more bytes kept than the frame had, or
        more than the snapshot length, are L{MalformedError}s.
        """
        data = record(FRAME, WHEN, 64)
        self.assertRaises(
            MalformedError, parseRecord, data[:4] + (10**6).to_bytes(4, "little") + data[8:]
        )
        self.assertRaises(
            MalformedError, parseRecord, data[:12] + (63).to_bytes(4, "little") + data[16:]
        )
        self.assertRaises(MalformedError, parseRecord, data, 0, 32)


class CaptureTests(SynchronousTestCase):
    """
    Whole captures, checked against dpkt.
    """

    def test_dpktReadsOurCapture(self):
        """
        dpkt reads a capture of every frame of the fixture, cut to 128
        bytes, with each frame's kept bytes and its timestamp.
        """
        data = fileHeader(128) + b"".join(
            record(frame, WHEN + i * 0.001, 128) for i, frame in enumerate(FRAMES)
        )
        snaplen, datalink, packets = dpktRead(data)
        self.assertEqual((snaplen, datalink), (128, 1))
        self.assertEqual([buf for _, buf in packets], [frame[:128] for frame in FRAMES])
        for i, (ts, _) in enumerate(packets):
            self.assertAlmostEqual(ts, WHEN + i * 0.001, places=6)

    def test_dpktWholeFrames(self):
        """
        With snapshot length 0 dpkt reads every frame whole.
        """
        data = fileHeader(0) + b"".join(record(frame, WHEN, 0) for frame in FRAMES)
        snaplen, _, packets = dpktRead(data)
        self.assertEqual(snaplen, MAX_SNAPLEN)
        self.assertEqual([buf for _, buf in packets], FRAMES)

    def test_parseFixture(self):
        """
        Our parser reads the capture a real guest left in the fixtures (a
        file tcpdump wrote) exactly as dpkt does.
        """
        with open(PCAP_PATH, "rb") as f:
            data = f.read()
        header, records = parsePcap(data)
        self.assertEqual(header.linktype, 1)
        _, _, packets = dpktRead(data)
        self.assertEqual([r.data for r in records], [buf for _, buf in packets])
        for r, (ts, _) in zip(records, packets):
            self.assertAlmostEqual(r.seconds + r.microseconds / 1e6, ts, places=6)

    def test_rewriteFixture(self):
        """
        Rewriting the fixture's records with our writer gives back the
        fixture's bytes.
        """
        with open(PCAP_PATH, "rb") as f:
            data = f.read()
        header, records = parsePcap(data)
        again = fileHeader(0 if header.snaplen == MAX_SNAPLEN else header.snaplen) + b"".join(
            record(r.data, r.seconds + r.microseconds / 1e6, 0) for r in records
        )
        self.assertEqual(again, data)

    def test_truncatedCapture(self):
        """
        A capture cut inside its last record is a L{TruncatedError}.
        """
        data = fileHeader(0) + record(FRAME, WHEN, 0)
        self.assertRaises(TruncatedError, parsePcap, data[:-1])
        self.assertEqual(len(parsePcap(data)[1]), 1)


class FuzzTests(SynchronousTestCase):
    """
    Any input: the parser raises only L{ParseError}; the writer round-trips.
    """

    @_fuzz
    @given(st.binary(max_size=200))
    def test_parseAnything(self, data):
        """
        Arbitrary bytes after a valid header parse or raise L{ParseError}.
        """
        for candidate in (data, fileHeader(64) + data):
            try:
                parsePcap(candidate)
            except ParseError:
                pass

    @_fuzz
    @given(
        st.binary(max_size=2000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=0, max_value=MAX_SNAPLEN),
    )
    def test_roundTrip(self, frame, when, snaplen):
        """
        Any frame, time and snapshot length make a record that parses back
        to the frame's first bytes and its length, and that dpkt reads.
        """
        data = fileHeader(snaplen) + record(frame, when, snaplen)
        _, (rec,) = parsePcap(data)
        kept = frame[: snaplen or MAX_SNAPLEN]
        self.assertEqual((rec.data, rec.originalLength), (kept, len(frame)))
        _, _, [(_, buf)] = dpktRead(data)
        self.assertEqual(buf, kept)
