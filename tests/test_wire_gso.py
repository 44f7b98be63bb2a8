"""
Tests for L{vpnkit.wire.gso}: cutting a TCP super-segment into frames that
fit a link, and L{vpnkit.wire.virtio}: the virtio-net header and partial
checksums.
"""

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.wire import MalformedError, TruncatedError
from vpnkit.wire.ethernet import parseEthernet
from vpnkit.wire.gso import segmentTCPv4
from vpnkit.wire.ipv4 import buildHeader, parseIPv4
from vpnkit.wire.tcp import ACK, CWR, FIN, PSH, Segment, emitTCP, parseTCP
from vpnkit.wire.virtio import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    VirtioNetHeader,
    completeChecksum,
    emitVirtioNetHeader,
    parseVirtioNetHeader,
)

SRC = bytes([192, 168, 65, 3])
DST = bytes([192, 168, 65, 4])
ETH = b"\x02\x50\x00\x00\x00\x02" + b"\x02\x50\x00\x00\x00\x01" + b"\x08\x00"


def superFrame(size, flags=ACK | PSH | FIN | CWR, seq=0xFFFFF000, ident=0xFFFE):
    payload = bytes(i % 253 for i in range(size))
    tcp = emitTCP(Segment(1234, 80, seq, 77, flags, 100, payload=payload), SRC, DST)
    return ETH + buildHeader(SRC, DST, 6, len(tcp), ident=ident) + tcp, payload


class SegmentTests(SynchronousTestCase):
    def test_piecesFitAndReassemble(self):
        """
        A 10,000-byte segment cut for a 1514-byte link gives frames of at most
        1514 bytes, valid IPv4 and TCP checksums, consecutive sequence
        numbers (wrapping past 2**32) and consecutive IP identifications,
        whose payloads join back into the original.
        """
        frame, payload = superFrame(10000)
        pieces = segmentTCPv4(frame, 1514)
        self.assertEqual(len(pieces), 7)
        joined = b""
        expectedSeq = 0xFFFFF000
        for index, piece in enumerate(pieces):
            self.assertLessEqual(len(piece), 1514)
            eth, rest = parseEthernet(piece)
            self.assertEqual(piece[:14], ETH)
            ip, data = parseIPv4(rest)
            self.assertEqual(ip.ident, (0xFFFE + index) & 0xFFFF)
            seg = parseTCP(data, ip.src, ip.dst)
            self.assertEqual(seg.seq, expectedSeq)
            expectedSeq = (expectedSeq + len(seg.payload)) & 0xFFFFFFFF
            joined += seg.payload
        self.assertEqual(joined, payload)

    def test_flagsPlacement(self):
        """
        FIN and PSH stay only on the last piece, CWR only on the first; ACK
        on all.
        """
        frame, _ = superFrame(5000)
        flags = [parseTCP(parseIPv4(p[14:])[1], SRC, DST).flags for p in segmentTCPv4(frame, 1514)]
        self.assertEqual(flags[0], ACK | CWR)
        self.assertEqual(flags[1:-1], [ACK] * (len(flags) - 2))
        self.assertEqual(flags[-1], ACK | PSH | FIN)

    def test_smallFrameUnchanged(self):
        """
        A frame that already fits comes back as one identical frame.
        """
        frame, _ = superFrame(100, flags=ACK)
        self.assertEqual(segmentTCPv4(frame, 1514), [frame])

    def test_notTCP(self):
        """
        Only IPv4/TCP can be segmented.
        """
        udp = ETH + buildHeader(SRC, DST, 17, 8) + bytes(8)
        self.assertRaises(MalformedError, segmentTCPv4, udp, 1514)
        self.assertRaises(MalformedError, segmentTCPv4, b"\x00" * 60, 1514)
        frame, _ = superFrame(10)
        self.assertRaises(TruncatedError, segmentTCPv4, frame[:40], 1514)
        self.assertRaises(MalformedError, segmentTCPv4, frame, 40)


class VirtioTests(SynchronousTestCase):
    def test_headerRoundTrip(self):
        """
        The 10-byte header parses and emits symmetrically.
        """
        header = VirtioNetHeader(F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16)
        data = emitVirtioNetHeader(header)
        self.assertEqual(len(data), 10)
        self.assertEqual(parseVirtioNetHeader(data + b"rest"), header)
        self.assertRaises(TruncatedError, parseVirtioNetHeader, data[:9])

    def test_completeChecksum(self):
        """
        Completing a partial checksum (the field holding the pseudo-header
        sum) gives the same bytes as computing the checksum outright.
        """
        from vpnkit.wire.checksum import pseudoHeaderSum

        frame, _ = superFrame(3001, flags=ACK)
        tcpStart = 14 + 20
        tcpLength = len(frame) - tcpStart
        partial = pseudoHeaderSum(SRC, DST, 6, tcpLength) % 0xFFFF
        broken = frame[: tcpStart + 16] + partial.to_bytes(2, "big") + frame[tcpStart + 18 :]
        self.assertNotEqual(broken, frame)
        self.assertEqual(completeChecksum(broken, tcpStart, 16), frame)
        self.assertRaises(MalformedError, completeChecksum, frame, tcpStart, 5000)


class SegmentationOffloadTests(SynchronousTestCase):
    def test_headerAndPartialChecksum(self):
        """
        An oversized TCP frame becomes a GSO_TCPV4 header asking for pieces
        that fit the MTU, and the frame with the partial checksum the
        receiving kernel completes: completing it gives back the original.
        """
        from vpnkit.wire.virtio import segmentationOffload

        frame, _ = superFrame(30000, flags=ACK)
        header, partial = segmentationOffload(frame, 1500)
        self.assertEqual(
            parseVirtioNetHeader(header), VirtioNetHeader(F_NEEDS_CSUM, GSO_TCPV4, 54, 1460, 34, 16)
        )
        self.assertEqual(len(partial), len(frame))
        self.assertNotEqual(partial, frame)
        self.assertEqual(completeChecksum(partial, 34, 16), frame)

    def test_onlyTCP(self):
        """
        Anything but IPv4/TCP cannot be offloaded.
        """
        from vpnkit.wire.virtio import segmentationOffload

        udp = ETH + buildHeader(SRC, DST, 17, 8) + bytes(8)
        self.assertRaises(MalformedError, segmentationOffload, udp, 1500)


SRC6 = bytes.fromhex("fd000065000000000000000000000003")
DST6 = bytes.fromhex("fd000065000000000000000000000001")
ETH6 = ETH[:12] + b"\x86\xdd"


def superFrame6(size, flags=ACK | PSH | FIN | CWR, seq=0xFFFFF000):
    from vpnkit.wire.ipv6 import buildHeader as buildHeader6

    payload = bytes(i % 251 for i in range(size))
    tcp = emitTCP(Segment(1234, 80, seq, 77, flags, 100, payload=payload), SRC6, DST6)
    return ETH6 + buildHeader6(SRC6, DST6, 6, len(tcp), 64, 0, 0x12345) + tcp, payload


class SegmentIPv6Tests(SynchronousTestCase):
    """
    L{vpnkit.wire.gso.segmentTCPv6} and the family dispatch.
    """

    def test_piecesFitAndReassemble(self):
        """
        A 10,000-byte IPv6 segment cut for a 1514-byte link gives frames of
        at most 1514 bytes with the fixed header kept (flow label, hop
        limit), fresh payload lengths, valid TCP checksums, consecutive
        sequence numbers, FIN and PSH on the last only, CWR on the first
        only; the payloads join back into the original.
        """
        from vpnkit.wire.gso import segmentTCP, segmentTCPv6
        from vpnkit.wire.ipv6 import parseIPv6

        frame, payload = superFrame6(10000)
        pieces = segmentTCPv6(frame, 1514)
        self.assertEqual(pieces, segmentTCP(frame, 1514))
        joined = b""
        seq = 0xFFFFF000
        for index, piece in enumerate(pieces):
            self.assertLessEqual(len(piece), 1514)
            self.assertEqual(piece[:18], frame[:18])
            header, data = parseIPv6(piece[14:])
            self.assertEqual((header.flowLabel, header.hopLimit), (0x12345, 64))
            segment = parseTCP(data, SRC6, DST6)
            self.assertEqual(segment.seq, seq & 0xFFFFFFFF)
            last = index == len(pieces) - 1
            self.assertEqual(bool(segment.flags & FIN), last)
            self.assertEqual(bool(segment.flags & PSH), last)
            self.assertEqual(bool(segment.flags & CWR), index == 0)
            seq += len(segment.payload)
            joined += bytes(segment.payload)
        self.assertEqual(joined, payload)
        self.assertEqual(len(pieces), 7)

    def test_refused(self):
        """
        Not IPv6/TCP, or truncated headers, are refused.
        """
        from vpnkit.wire.gso import segmentTCPv6

        frame, _ = superFrame6(3000)
        udp = frame[:20] + b"\x11" + frame[21:]
        self.assertRaises(MalformedError, segmentTCPv6, udp, 1514)
        self.assertRaises(MalformedError, segmentTCPv6, superFrame(3000)[0], 1514)
        self.assertRaises(TruncatedError, segmentTCPv6, frame[:60], 1514)
        self.assertRaises(MalformedError, segmentTCPv6, frame, 60)

    def test_offloadHeader(self):
        """
        To a tap, an IPv6 super-segment goes with C{GSO_TCPV6}, the segment
        size what fits the MTU after 40 + 20 bytes of headers, its
        checksum partial: completed, it verifies.
        """
        from vpnkit.wire.virtio import GSO_TCPV6, segmentationOffload

        frame, payload = superFrame6(10000)
        header, partial = segmentationOffload(frame, 1500)
        self.assertEqual(
            parseVirtioNetHeader(header),
            VirtioNetHeader(F_NEEDS_CSUM, GSO_TCPV6, 14 + 40 + 20, 1500 - 60, 54, 16),
        )
        completed = completeChecksum(partial, 54, 16)
        self.assertEqual(completed, frame)

    def test_partialChecksumHeader(self):
        """
        A frame in parts beyond the MTU gets a C{GSO_TCPV6} header when its
        headers are IPv6 and TCP.
        """
        from vpnkit.wire.virtio import GSO_TCPV6, partialChecksumHeader

        frame, _ = superFrame6(10000)
        head = frame[:74]
        header = parseVirtioNetHeader(partialChecksumHeader(head, len(frame), 54, 16, 1500))
        self.assertEqual(header, VirtioNetHeader(F_NEEDS_CSUM, GSO_TCPV6, 74, 1440, 54, 16))
