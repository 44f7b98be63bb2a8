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
