"""
Tests for L{vpnkit.wire.virtio.partialChecksumHeader}: the virtio-net header
that hands a frame with a partial TCP checksum to a tap's guest kernel.
(The rest of the module is tested through the tap link, in
C{test_taplink.py}.)
"""

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.wire import MalformedError
from vpnkit.wire.ipv4 import buildHeader
from vpnkit.wire.tcp import ACK, Segment, TCPOptions, emitTCPHeader
from vpnkit.wire.virtio import (
    F_NEEDS_CSUM,
    GSO_NONE,
    GSO_TCPV4,
    VirtioNetHeader,
    parseVirtioNetHeader,
    partialChecksumHeader,
)

SRC = bytes([192, 168, 65, 2])
DST = bytes([192, 168, 65, 3])
ETHERNET = b"\x02\x50\x00\x00\x00\x01" + b"\xf6\x16\x36\xbc\xf9\xc6" + b"\x08\x00"


def head(payloadLength, options=TCPOptions()):
    """
    The Ethernet, IPv4 and TCP headers of a segment carrying
    C{payloadLength} bytes.
    """
    seg = Segment(5201, 40000, 1, 2, ACK, 100, options, bytes(payloadLength))
    tcp = emitTCPHeader(seg, SRC, DST, partial=True)
    return ETHERNET + buildHeader(SRC, DST, 6, len(tcp) + payloadLength) + tcp


class PartialChecksumHeaderTests(SynchronousTestCase):
    def test_fitsMTU(self):
        """
        A frame that fits the MTU only asks for its checksum to be
        completed: no segmentation.
        """
        h = head(1460)
        header = parseVirtioNetHeader(partialChecksumHeader(h, len(h) + 1460, 34, 16, 1500))
        self.assertEqual(header, VirtioNetHeader(F_NEEDS_CSUM, GSO_NONE, 0, 0, 34, 16))

    def test_superSegment(self):
        """
        A larger one is a TCPv4 super-segment: the header length is that of
        all the headers, the segment size what fits the MTU after the IPv4
        and TCP headers (options included).
        """
        h = head(60000, TCPOptions(timestamp=(1, 2)))
        header = parseVirtioNetHeader(partialChecksumHeader(h, len(h) + 60000, 34, 16, 1500))
        self.assertEqual(header, VirtioNetHeader(F_NEEDS_CSUM, GSO_TCPV4, 14 + 20 + 32, 1500 - 52, 34, 16))

    def test_superSegmentNeedsTCP(self):
        """
        A frame beyond the MTU that is not IPv4/TCP with all its headers in
        C{head}, or leaves no room for payload, is refused.
        """
        h = head(3000)
        udp = h[:23] + b"\x11" + h[24:]
        for bad in (udp, h[:-4], h + b"\0\0\0\0", h[:12] + b"\x86\xdd" + h[14:], h[:40]):
            self.assertRaises(MalformedError, partialChecksumHeader, bad, len(bad) + 3000, 34, 16, 1500)
        self.assertRaises(MalformedError, partialChecksumHeader, h, len(h) + 3000, 34, 16, 40)
