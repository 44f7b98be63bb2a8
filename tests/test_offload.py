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


class WritevRecorder:
    """
    The write side of an L{vpnkit.interfaces.ITunSystem}: every C{writev}
    is kept as the very objects it was handed, nothing copied.
    """

    def __init__(self):
        self.writes = []

    def writev(self, fd, buffers):
        self.writes.append(tuple(buffers))
        return sum(len(b) for b in buffers)

    def write(self, fd, frame):
        self.writes.append((frame,))
        return len(frame)


class TapDownloadTests(SynchronousTestCase):
    """
    Host to guest through a real L{TapLink} with offload: a host read's
    bytes reach the tap's C{writev} without being copied on the way, and
    the guest's kernel, completing each checksum as vpnkit asks it to,
    gets exactly the segments a full checksum would have made.
    """

    def download(self, mtu, data, observer=None):
        from vpnkit.host.taplink import TapLink

        stack, _ = makeStack(0, mtu=mtu)
        if observer is not None:
            stack.switch.addObserver(observer)
        system = WritevRecorder()
        config = stack.config
        link = TapLink(
            -1,
            system,
            None,
            stack.counters.link,
            config.maxFrameSize,
            "tap",
            stack.reactor,
            offload=True,
            mtu=mtu,
        )
        lease = stack.guests.leaseForUUID(None)
        port = stack.guests.attach(link, lease, lease.mac)
        guest = lease.ip.packed

        def send(seg):
            tcp = emitTCP(seg, guest, REMOTE_IP)
            port.frameReceived(buildIPv4(lease.mac, guest, REMOTE_IP, PROTO_TCP, tcp))

        send(Segment(40000, 80, 1000, 0, SYN, 65535, TCPOptions(mss=mtu - 40, windowScale=7)))
        stack.hostNetwork.succeed()
        protocol = stack.hostNetwork.connects[-1].protocol
        [connection] = stack.tcp.connections()
        tcb = connection.tcb
        send(Segment(40000, 80, 1001, tcb.sndNxt, ACK, 65535))
        system.writes.clear()
        if observer is not None:
            observer.frames.clear()
        protocol.dataReceived(data)
        for _ in range(100):
            if not tcb.sendQueue:
                break
            send(Segment(40000, 80, 1001, tcb.sndNxt, ACK, 65535))
        self.assertEqual(tcb.sendQueue, 0)
        return system.writes

    def completeAsKernel(self, pieces):
        """
        The frame the guest's kernel takes from one C{writev}: the
        virtio-net header says where the partial checksum is, and the sum
        from there on (by the pure-Python sum) is complemented into it.
        """
        from vpnkit.wire.checksum import pythonOnesComplementSum
        from vpnkit.wire.virtio import F_NEEDS_CSUM, parseVirtioNetHeader

        written = b"".join(pieces)
        header = parseVirtioNetHeader(written)
        frame = written[10:]
        self.assertEqual(header.flags, F_NEEDS_CSUM)
        position = header.csumStart + header.csumOffset
        csum = ~pythonOnesComplementSum(frame[header.csumStart :]) & 0xFFFF
        return header, frame[:position] + csum.to_bytes(2, "big") + frame[position + 2 :]

    def assertDelivered(self, writes, data):
        """
        The data segments written, completed as the kernel does, verify
        and carry C{data} in order.
        """
        payloads = []
        for pieces in writes:
            _, frame = self.completeAsKernel(pieces)
            _, ip, tcpBytes = parseIPv4Frame(frame)
            seg = parseTCP(tcpBytes, ip.src, ip.dst)
            payloads.append(bytes(seg.payload))
        self.assertEqual(b"".join(payloads), data)

    def test_noCopyAtMTU65520(self):
        """
        At MTU 65520, a 64 KiB host read goes out in segments that each fit
        the MTU, each handed to C{writev} as the virtio-net header, the
        headers, and a view of the very bytes the host read returned.
        """
        from vpnkit.wire.virtio import GSO_NONE

        data = bytes(i % 251 for i in range(65536))
        writes = self.download(65520, data)
        self.assertGreater(len(writes), 1)
        for pieces in writes:
            self.assertEqual(len(pieces), 3)
            self.assertIsInstance(pieces[2], memoryview)
            self.assertIs(pieces[2].obj, data)
            header, _ = self.completeAsKernel(pieces)
            self.assertEqual(header.gsoType, GSO_NONE)
        self.assertDelivered(writes, data)

    def test_noCopyAtMTU1500(self):
        """
        At MTU 1500 the segments are super-segments for the guest's kernel
        to cut, their payloads views of the host's bytes just the same.
        """
        from vpnkit.wire.virtio import GSO_TCPV4

        data = bytes(i % 249 for i in range(65536))
        writes = self.download(1500, data)
        self.assertTrue(all(pieces[2].obj is data for pieces in writes))
        self.assertEqual(self.completeAsKernel(writes[0])[0].gsoType, GSO_TCPV4)
        self.assertDelivered(writes, data)

    def test_observedFramesComplete(self):
        """
        While frames are observed (a capture), the tap gets whole frames,
        their checksums complete, exactly the ones the observer sees.
        """
        from tests.test_switch import FrameObserver
        from vpnkit.wire.virtio import parseVirtioNetHeader

        observer = FrameObserver()
        data = bytes(i % 247 for i in range(65536))
        writes = self.download(65520, data, observer)
        frames = []
        for pieces in writes:
            written = b"".join(pieces)
            self.assertEqual(parseVirtioNetHeader(written).flags, 0)
            frames.append(written[10:])
        guestMAC = frames[0][:6]
        self.assertEqual(frames, [f for f in observer.frames if f[:6] == guestMAC])
        payloads = []
        for frame in frames:
            _, ip, tcpBytes = parseIPv4Frame(frame)
            payloads.append(bytes(parseTCP(tcpBytes, ip.src, ip.dst).payload))
        self.assertEqual(b"".join(payloads), data)
