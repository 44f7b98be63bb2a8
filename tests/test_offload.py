"""
Segmentation offload through the whole stack: TCP to a guest whose link
takes super-segments (a tap with offload) goes out in segments larger than
the MSS; a plain link never sees a frame beyond the MTU.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import REMOTE_IP, buildIPv4, makeStack, parseIPv4Frame
from vpnkit.wire.ipv4 import PROTO_TCP
from vpnkit.wire.seq import seqAdd
from vpnkit.wire.tcp import ACK, SYN, Segment, TCPOptions, emitTCP, parseTCP


class OffloadStackTests(SynchronousTestCase):
    def connect(self, segmentLimit):
        stack, (guest,) = makeStack(1)
        if segmentLimit:
            # What a tap with offload declares: super-segments, whole.
            guest.port.segmentLimit = segmentLimit
            guest.port.maxFrame = 14 + 0xFFFF
        syn = Segment(40000, 80, 1000, 0, SYN, 65535, TCPOptions(mss=1460, windowScale=7))
        guest.send(buildIPv4(guest.mac, guest.ip, REMOTE_IP, PROTO_TCP, emitTCP(syn, guest.ip, REMOTE_IP)))
        stack.hostNetwork.succeed()
        protocol = stack.hostNetwork.connects[-1].protocol
        [synAck] = [parseTCP(p, h.src, h.dst) for _, h, p in map(parseIPv4Frame, guest.takeFrames())]
        ack = Segment(40000, 80, 1001, seqAdd(synAck.seq, 1), ACK, 4000)
        guest.send(buildIPv4(guest.mac, guest.ip, REMOTE_IP, PROTO_TCP, emitTCP(ack, guest.ip, REMOTE_IP)))
        protocol.dataReceived(b"d" * 100000)
        return [(h, parseTCP(p, h.src, h.dst)) for _, h, p in map(parseIPv4Frame, guest.takeFrames())]

    def test_superSegmentsToOffloadLink(self):
        """
        With a segment limit on the guest's link, host data goes out in
        segments beyond the MSS (as large as the congestion window allows),
        in datagrams beyond the MTU.
        """
        sent = self.connect(0xFFFF - 80)
        self.assertGreater(max(len(s.payload) for _, s in sent), 1460)
        self.assertGreater(max(h.totalLength for h, _ in sent), 1500)

    def test_plainLinkKeepsMSS(self):
        """
        Without one, no segment exceeds the MSS.
        """
        sent = self.connect(0)
        self.assertEqual(max(len(s.payload) for _, s in sent), 1460)


class RoutedSuperSegmentTests(SynchronousTestCase):
    def test_routedSuperSegmentCut(self):
        """
        A TCP super-segment from an offload guest, routed by IP through the
        gateway's MAC to a plain guest, arrives cut to the MTU (not refused
        with fragmentation-needed).
        """
        stack, (a, b) = makeStack(2)
        a.port.maxFrame = 14 + 0xFFFF
        payload = bytes(range(256)) * 40
        tcp = emitTCP(Segment(5, 6, 10, 20, ACK, 100, payload=payload), a.ip, b.ip)
        a.send(buildIPv4(a.mac, a.ip, b.ip, PROTO_TCP, tcp))
        frames = b.takeFrames()
        self.assertGreater(len(frames), 1)
        self.assertTrue(all(len(f) <= 1514 for f in frames))
        joined = b"".join(parseTCP(p, h.src, h.dst).payload for _, h, p in map(parseIPv4Frame, frames))
        self.assertEqual(joined, payload)
        self.assertEqual([h.ttl for _, h, _ in map(parseIPv4Frame, frames)], [63] * len(frames))
        self.assertEqual(a.takeFrames(), [])
