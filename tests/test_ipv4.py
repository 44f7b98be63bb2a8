"""
Tests for L{vpnkit.protocols.ipv4}: header checks, demultiplexing,
forwarding between guests and building outgoing datagrams.
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.interfaces import IEthernetPayloadReceiver, IIPSender
from vpnkit.leases import AddressPool
from vpnkit.protocols.ipv4 import IPv4Layer
from vpnkit.protocols.switch import EthernetSwitch
from vpnkit.wire.ethernet import ETHERTYPE_IPV4, EthernetHeader, parseEthernet
from vpnkit.wire.ipv4 import (
    FLAG_DF,
    FLAG_MF,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Header,
    parseIPv4,
)

from twisted.internet import task

from tests.helpers import (
    BROADCAST_IP,
    BROADCAST_MAC,
    REMOTE_IP,
    SERVER_MAC,
    DatagramRecorder,
    FrameRecorder,
    buildEthernet,
    buildIPv4,
    capturedFrames,
    ip,
    mac,
    nonZeroCounters,
    parseICMPFrame,
)

PAYLOAD = b"some transport payload"


def parseQuote(data):
    """
    The datagram header and payload bytes an ICMP error quotes (its total
    length describes the original, not the quote).
    """
    hl = (data[0] & 0x0F) * 4
    patched = data[:2] + len(data).to_bytes(2, "big") + data[4:]
    header, _ = parseIPv4(patched, verifyChecksum=False)
    from dataclasses import replace

    return replace(header, totalLength=int.from_bytes(data[2:4], "big")), bytes(data[hl:])


class IPv4TestMixin:
    """
    An L{IPv4Layer} on a switch with two guests, A (192.168.65.3) and B
    (192.168.65.4), and recorders for UDP and ICMP.
    """

    mtu = 1500

    def setUp(self):
        self.config = StackConfig(mtu=self.mtu)
        self.counters = StackCounters()
        self.pool = AddressPool(self.config)
        self.switch = EthernetSwitch(self.config, self.counters)
        self.clock = task.Clock()
        self.layer = IPv4Layer(self.config, self.switch, self.counters, self.clock)
        self.switch.addProto(ETHERTYPE_IPV4, self.layer)
        self.udp = DatagramRecorder()
        self.icmp = DatagramRecorder()
        self.layer.addProto(PROTO_UDP, self.udp)
        self.layer.addProto(PROTO_ICMP, self.icmp)
        self.linkA, self.portA, self.leaseA = self.plug("a")
        self.linkB, self.portB, self.leaseB = self.plug("b")
        self.ipA, self.ipB = self.leaseA.ip.packed, self.leaseB.ip.packed

    def plug(self, name, learn=False):
        link = FrameRecorder(name, self.config.maxFrameSize)
        lease = self.pool.ephemeralLease()
        port = self.switch.attach(link, lease, None if learn else lease.mac)
        return link, port, lease

    def fromA(self, dst, protocol=PROTO_UDP, payload=PAYLOAD, **kwargs):
        self.portA.frameReceived(
            buildIPv4(self.leaseA.mac, self.ipA, dst, protocol, payload, **kwargs)
        )

    def assertCounters(self, expected):
        base = {"link.linksOpened": 2, "ethernet.received": 1, "ipv4.received": 1}
        base.update(expected)
        self.assertEqual(nonZeroCounters(self.counters), base)

    def assertNothingDelivered(self):
        self.assertEqual(self.udp.received, [])
        self.assertEqual(self.icmp.received, [])
        self.assertEqual(self.linkA.frames, [])
        self.assertEqual(self.linkB.frames, [])


class ReceiveTests(IPv4TestMixin, SynchronousTestCase):
    """
    Datagrams from guests to vpnkit.
    """

    def test_interfaces(self):
        """
        The layer provides L{IEthernetPayloadReceiver} and L{IIPSender}.
        """
        self.assertTrue(verifyObject(IEthernetPayloadReceiver, self.layer))
        self.assertTrue(verifyObject(IIPSender, self.layer))

    def test_addProtoTwice(self):
        """
        A second receiver for one protocol number is refused.
        """
        self.assertRaises(ValueError, self.layer.addProto, PROTO_UDP, DatagramRecorder())

    def test_deliver(self):
        """
        A valid datagram to a remote address reaches the receiver for its
        protocol with the parsed header and exactly its payload.
        """
        self.fromA(REMOTE_IP, ttl=17, ident=0x4242)
        [(header, payload)] = self.udp.received
        self.assertEqual(
            header,
            IPv4Header(
                0,
                20 + len(PAYLOAD),
                0x4242,
                FLAG_DF,
                0,
                17,
                PROTO_UDP,
                header.checksum,
                self.ipA,
                REMOTE_IP,
            ),
        )
        self.assertEqual(payload, PAYLOAD)
        self.assertEqual(self.icmp.received, [])
        self.assertCounters({})

    def test_byProtocol(self):
        """
        ICMP goes to the ICMP receiver, not the UDP one.
        """
        self.fromA(REMOTE_IP, PROTO_ICMP)
        self.assertEqual(len(self.icmp.received), 1)
        self.assertEqual(self.udp.received, [])

    def test_ethernetPadding(self):
        """
        Ethernet padding after the datagram's total length is not part of
        the payload.
        """
        frame = buildIPv4(self.leaseA.mac, self.ipA, REMOTE_IP, PROTO_UDP, b"tiny")
        self.portA.frameReceived(frame.ljust(60, b"\0"))
        [(header, payload)] = self.udp.received
        self.assertEqual(header.totalLength, 24)
        self.assertEqual(payload, b"tiny")

    def test_options(self):
        """
        IP options are skipped by the header length (they are kept on the
        header, not given as payload).
        """
        options = b"\x94\x04\x00\x00"  # router alert
        self.fromA(REMOTE_IP, options=options)
        [(header, payload)] = self.udp.received
        self.assertEqual(header.options, options)
        self.assertEqual(payload, PAYLOAD)

    def test_badChecksum(self):
        """
        A header whose checksum does not verify is counted as
        C{badChecksum} and dropped.
        """
        frame = bytearray(buildIPv4(self.leaseA.mac, self.ipA, REMOTE_IP, PROTO_UDP, PAYLOAD))
        frame[24] ^= 0x01
        self.portA.frameReceived(bytes(frame))
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.badChecksum": 1})

    def test_truncatedHeader(self):
        """
        Fewer than 20 bytes of header are counted as C{truncated}.
        """
        frame = buildIPv4(self.leaseA.mac, self.ipA, REMOTE_IP, PROTO_UDP, PAYLOAD)
        self.portA.frameReceived(frame[: 14 + 19])
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.truncated": 1})

    def test_truncatedPayload(self):
        """
        A datagram shorter than its total length field is counted as
        C{truncated}.
        """
        frame = buildIPv4(self.leaseA.mac, self.ipA, REMOTE_IP, PROTO_UDP, PAYLOAD)
        self.portA.frameReceived(frame[:-1])
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.truncated": 1})

    def test_badVersion(self):
        """
        A version other than 4 under the IPv4 EtherType is counted as
        C{malformed}.
        """
        frame = bytearray(buildIPv4(self.leaseA.mac, self.ipA, REMOTE_IP, PROTO_UDP, PAYLOAD))
        frame[14] = 0x65
        self.portA.frameReceived(bytes(frame))
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.malformed": 1})

    def test_shortHeaderLength(self):
        """
        A header length under 20 bytes is counted as C{malformed}.
        """
        frame = bytearray(buildIPv4(self.leaseA.mac, self.ipA, REMOTE_IP, PROTO_UDP, PAYLOAD))
        frame[14] = 0x44
        self.portA.frameReceived(bytes(frame))
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.malformed": 1})

    def test_firstFragment(self):
        """
        A first fragment (more-fragments set) is held for reassembly
        (C{fragmentsQueued}); nothing is delivered yet.
        """
        self.fromA(REMOTE_IP, flags=FLAG_MF, payload=b"x" * 16)
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.fragmentsQueued": 1})

    def test_lastFragment(self):
        """
        A last fragment alone is held too.
        """
        self.fromA(REMOTE_IP, flags=0, fragmentOffset=1480)
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.fragmentsQueued": 1})

    def test_reassembled(self):
        """
        Both fragments of a datagram, last first, reach the receiver as one
        datagram: MF clear, offset 0, the whole payload.
        """
        self.fromA(REMOTE_IP, flags=0, fragmentOffset=16, payload=b"tail", ident=5)
        self.fromA(REMOTE_IP, flags=FLAG_MF, payload=b"h" * 16, ident=5)
        [(header, payload)] = self.udp.received
        self.assertEqual((header.flags, header.fragmentOffset, header.ident), (0, 0, 5))
        self.assertEqual(payload, b"h" * 16 + b"tail")
        self.assertEqual(self.counters.ipv4.fragmentsQueued, 1)
        self.assertEqual(self.counters.ipv4.reassembled, 1)

    def test_capturedFragments(self):
        """
        The three fragments of a 4,000-byte UDP datagram a real Linux guest
        sent reach the UDP receiver as one datagram of 4,008 bytes.
        """
        frames = capturedFrames()[65:68]
        for frame in frames:
            eth, payload = parseEthernet(frame)
            self.layer.ethernetPayloadReceived(eth, payload)
        [(header, payload)] = self.udp.received
        self.assertEqual(len(payload), 4008)
        self.assertEqual(
            nonZeroCounters(self.counters),
            {
                "link.linksOpened": 2,
                "ipv4.received": 3,
                "ipv4.fragmentsQueued": 2,
                "ipv4.reassembled": 1,
            },
        )

    def test_reassemblyTimeout(self):
        """
        A datagram still incomplete 30 seconds after its first fragment is
        dropped, and the guest gets ICMP time exceeded (code 1, fragment
        reassembly) from the address it wrote to, quoting that fragment.
        """
        self.fromA(REMOTE_IP, flags=FLAG_MF, payload=b"q" * 16, ident=9)
        self.clock.advance(29.9)
        self.assertEqual(self.linkA.frames, [])
        self.clock.advance(0.1)
        [frame] = self.linkA.frames
        eth, header, message = parseICMPFrame(frame)
        self.assertEqual((header.src, header.dst), (REMOTE_IP, self.ipA))
        self.assertEqual((message.type, message.code), (11, 1))
        quoted, rest = parseQuote(message.payload)
        self.assertEqual((quoted.ident, quoted.flags, rest), (9, FLAG_MF, b"q" * 8))
        self.assertEqual(self.counters.ipv4.reassemblyTimeout, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_overlapDropped(self):
        """
        Overlapping fragments with different data drop the datagram
        (C{fragmentOverlap}); its remaining fragment is dropped too.
        """
        self.fromA(REMOTE_IP, flags=FLAG_MF, payload=b"a" * 16, ident=3)
        self.fromA(REMOTE_IP, flags=FLAG_MF, fragmentOffset=8, payload=b"b" * 16, ident=3)
        self.fromA(REMOTE_IP, flags=0, fragmentOffset=24, payload=b"c", ident=3)
        self.assertNothingDelivered()
        self.assertEqual(self.counters.ipv4.fragmentOverlap, 1)
        self.assertEqual(self.counters.ipv4.fragmentsDropped, 1)

    def test_reassemblyEvicted(self):
        """
        A datagram evicted to make room for a newer one (the global bound
        on datagrams being reassembled) is counted C{reassemblyEvicted},
        and its remaining fragment no longer completes anything.
        """
        self.layer.reassembler.maxDatagrams = 2
        for ident in (1, 2, 3):
            self.fromA(ident=ident, dst=REMOTE_IP, flags=FLAG_MF, payload=b"a" * 16)
        self.assertEqual(self.counters.ipv4.reassemblyEvicted, 1)
        self.assertEqual(len(self.layer.reassembler), 2)
        self.fromA(REMOTE_IP, flags=0, fragmentOffset=16, payload=b"z", ident=1)
        self.fromA(REMOTE_IP, flags=0, fragmentOffset=16, payload=b"z", ident=3)
        self.assertEqual(len(self.udp.received), 1)
        self.assertEqual(self.counters.ipv4.reassemblyEvicted, 2)

    def test_unknownProtocol(self):
        """
        A protocol nobody registered (here TCP) is counted as
        C{unsupportedProtocol}.
        """
        self.fromA(REMOTE_IP, PROTO_TCP)
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.unsupportedProtocol": 1})


class ForwardTests(IPv4TestMixin, SynchronousTestCase):
    """
    A guest that sends a datagram for another guest to the gateway's MAC.
    """

    def test_forward(self):
        """
        The datagram goes to the other guest from the server MAC, with its
        TTL one lower and a correct header checksum; nothing else changes.
        """
        self.fromA(self.ipB, ttl=64, ident=0x1234)
        [frame] = self.linkB.frames
        eth, payload = parseEthernet(frame)
        self.assertEqual(eth, EthernetHeader(self.leaseB.mac, SERVER_MAC, ETHERTYPE_IPV4))
        header, data = parseIPv4(payload)
        self.assertEqual(
            header,
            IPv4Header(
                0,
                20 + len(PAYLOAD),
                0x1234,
                FLAG_DF,
                0,
                63,
                PROTO_UDP,
                header.checksum,
                self.ipA,
                self.ipB,
            ),
        )
        self.assertEqual(data, PAYLOAD)
        sent = buildIPv4(self.leaseA.mac, self.ipA, self.ipB, PROTO_UDP, PAYLOAD, ident=0x1234)
        self.assertEqual(payload[:8], sent[14:22])
        self.assertEqual(payload[12:], sent[26:])
        self.assertEqual(self.linkA.frames, [])
        self.assertEqual(self.udp.received, [])
        self.assertCounters({"ipv4.forwarded": 1})

    def test_forwardKeepsOptions(self):
        """
        A forwarded datagram keeps its IP options.
        """
        options = b"\x94\x04\x00\x00"
        self.fromA(self.ipB, options=options)
        [frame] = self.linkB.frames
        header, data = parseIPv4(frame[14:])
        self.assertEqual((header.options, header.ttl, data), (options, 63, PAYLOAD))

    def test_broadcastFrameNotRoutedAgain(self):
        """
        A broadcast frame whose IP destination is another guest already
        reached that guest through the switch's flooding; the IP layer does
        not route a second copy (C{ipv4.notRouted}).
        """
        self.fromA(self.ipB, dstMAC=b"\xff" * 6)
        self.assertEqual(len(self.linkB.frames), 1)
        self.assertEqual(self.linkB.frames[0][:6], b"\xff" * 6)
        self.assertEqual(self.counters.ipv4.notRouted, 1)
        self.assertEqual(self.counters.ipv4.forwarded, 0)

    def test_forwardFragmented(self):
        """
        A datagram for another guest larger than the MTU (the link allows
        a little more) without DF is forwarded in fragments.
        """
        self.fromA(self.ipB, flags=0, payload=b"z" * 1500, ident=77)
        frames = self.linkB.frames
        self.assertEqual(len(frames), 2)
        headers = [parseIPv4(f[14:])[0] for f in frames]
        self.assertEqual([(h.flags, h.fragmentOffset, h.ttl) for h in headers], [(1, 0, 63), (0, 1480, 63)])
        self.assertEqual(self.counters.ipv4.forwarded, 1)

    def test_forwardDontFragment(self):
        """
        The same datagram with DF set is not forwarded: the sender gets
        ICMP fragmentation needed from the gateway with the next-hop MTU
        (RFC 1191), quoting its datagram.
        """
        self.fromA(self.ipB, payload=b"z" * 1500, ident=78)
        self.assertEqual(self.linkB.frames, [])
        [frame] = self.linkA.frames
        eth, header, message = parseICMPFrame(frame)
        self.assertEqual((header.src, header.dst), (ip("192.168.65.1"), self.ipA))
        self.assertEqual((message.type, message.code, message.rest), (3, 4, b"\x00\x00\x05\xdc"))
        quoted, rest = parseQuote(message.payload)
        self.assertEqual((quoted.ident, quoted.totalLength, quoted.ttl), (78, 1520, 64))
        self.assertEqual(rest, b"z" * 8)
        self.assertEqual(self.counters.ipv4.fragNeededSent, 1)

    def test_ttlOne(self):
        """
        A datagram with TTL 1 is not forwarded and counted as
        C{ttlExpired}.
        """
        self.fromA(self.ipB, ttl=1)
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.ttlExpired": 1})

    def test_ttlZero(self):
        """
        A datagram with TTL 0 is not forwarded either.
        """
        self.fromA(self.ipB, ttl=0)
        self.assertNothingDelivered()
        self.assertCounters({"ipv4.ttlExpired": 1})

    def test_unlearnedPeer(self):
        """
        A datagram for a guest whose MAC is not known yet is counted as
        C{noRoute}.
        """
        linkQ, _, leaseQ = self.plug("q", learn=True)
        self.fromA(leaseQ.ip.packed)
        self.assertEqual(linkQ.frames, [])
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ipv4.received": 1, "ipv4.noRoute": 1},
        )


class SendTests(IPv4TestMixin, SynchronousTestCase):
    """
    L{IPv4Layer.sendIP} builds datagrams for guests.
    """

    def test_header(self):
        """
        The datagram has a 20-byte header with DF set, identification 0,
        TTL 64, the given protocol and addresses, and a valid checksum, and
        goes to the guest owning the destination from the server MAC.
        """
        self.assertTrue(self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_UDP, PAYLOAD))
        [frame] = self.linkA.frames
        eth, payload = parseEthernet(frame)
        self.assertEqual(eth, EthernetHeader(self.leaseA.mac, SERVER_MAC, ETHERTYPE_IPV4))
        header, data = parseIPv4(payload)
        self.assertEqual(
            header,
            IPv4Header(
                0,
                20 + len(PAYLOAD),
                0,
                FLAG_DF,
                0,
                64,
                PROTO_UDP,
                header.checksum,
                REMOTE_IP,
                self.ipA,
            ),
        )
        self.assertEqual(data, PAYLOAD)
        self.assertEqual(self.linkB.frames, [])
        self.assertEqual(nonZeroCounters(self.counters), {"link.linksOpened": 2, "ipv4.sent": 1})

    def test_headerBytes(self):
        """
        The header bytes are exactly what RFC 791 says for this datagram
        (checksum worked out by hand).
        """
        self.layer.sendIP(ip("192.168.65.1"), self.ipA, PROTO_ICMP, b"\0" * 8, ttl=64)
        [frame] = self.linkA.frames
        self.assertEqual(
            frame[14:34].hex(),
            "4500001c" "00004000" "4001" "378c" "c0a84101" "c0a84103",
        )

    def test_ttl(self):
        """
        The TTL passed in is the one sent.
        """
        self.layer.sendIP(REMOTE_IP, self.ipB, PROTO_ICMP, PAYLOAD, ttl=3)
        [frame] = self.linkB.frames
        self.assertEqual(parseIPv4(frame[14:])[0].ttl, 3)

    def test_noRoute(self):
        """
        A destination no guest holds is counted as C{noRoute} and nothing
        is sent.
        """
        self.assertFalse(self.layer.sendIP(REMOTE_IP, ip("192.168.65.99"), PROTO_UDP, PAYLOAD))
        self.assertNothingDelivered()
        self.assertEqual(nonZeroCounters(self.counters), {"link.linksOpened": 2, "ipv4.noRoute": 1})

    def test_unlearnedGuest(self):
        """
        A guest whose MAC is not known yet cannot be sent to.
        """
        linkQ, _, leaseQ = self.plug("q", learn=True)
        self.assertFalse(self.layer.sendIP(REMOTE_IP, leaseQ.ip.packed, PROTO_UDP, PAYLOAD))
        self.assertEqual(linkQ.frames, [])
        self.assertEqual(self.counters.ipv4.noRoute, 1)

    def test_dstMAC(self):
        """
        With C{dstMAC} the frame goes to that MAC whatever the destination
        address (a DHCP reply to a guest without an address yet).
        """
        self.assertTrue(
            self.layer.sendIP(
                ip("192.168.65.1"), ip("192.168.65.200"), PROTO_UDP, PAYLOAD, dstMAC=self.leaseB.mac
            )
        )
        [frame] = self.linkB.frames
        self.assertEqual(frame[:12], self.leaseB.mac + SERVER_MAC)
        self.assertEqual(parseIPv4(frame[14:])[0].dst, ip("192.168.65.200"))
        self.assertEqual(self.linkA.frames, [])
        self.assertEqual(nonZeroCounters(self.counters), {"link.linksOpened": 2, "ipv4.sent": 1})

    def test_broadcastMAC(self):
        """
        A broadcast C{dstMAC} reaches every guest.
        """
        self.layer.sendIP(
            ip("192.168.65.1"), BROADCAST_IP, PROTO_UDP, PAYLOAD, dstMAC=BROADCAST_MAC
        )
        self.assertEqual(len(self.linkA.frames), 1)
        self.assertEqual(self.linkA.frames, self.linkB.frames)

    def test_fragmented(self):
        """
        A datagram larger than the MTU goes out in fragments (DF clear, one
        identification, each at most the MTU) that reassemble to it; one of
        exactly the MTU goes out whole with DF set.
        """
        self.assertTrue(self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_UDP, b"x" * 1480))
        [frame] = self.linkA.takeFrames()
        self.assertEqual(len(frame), 14 + 1500)
        self.assertEqual(parseIPv4(frame[14:])[0].flags, FLAG_DF)
        payload = bytes(range(256)) * 12
        self.assertTrue(self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_UDP, payload, ttl=9))
        frames = self.linkA.takeFrames()
        self.assertEqual([len(f) for f in frames], [1514, 1514, 14 + 20 + 112])
        headers = [parseIPv4(f[14:])[0] for f in frames]
        self.assertEqual({(h.ident, h.ttl, h.src, h.dst) for h in headers}, {(1, 9, REMOTE_IP, self.ipA)})
        self.assertEqual([(h.flags, h.fragmentOffset) for h in headers], [(1, 0), (1, 1480), (0, 2960)])
        self.assertEqual(b"".join(bytes(parseIPv4(f[14:])[1]) for f in frames), payload)
        self.assertEqual(self.counters.ipv4.fragmentedDatagrams, 1)
        self.assertEqual(self.counters.ipv4.fragmentsSent, 3)
        self.assertEqual(self.counters.ipv4.sent, 2)

    def tcpParts(self, dst, size):
        """
        A TCP header with its checksum left partial, a payload that is a
        view of a larger buffer, and the whole segment with its checksum
        computed.
        """
        from vpnkit.wire.tcp import ACK, Segment, emitTCP, emitTCPHeader

        payload = memoryview(bytes(i % 239 for i in range(size + 2)))[1:-1]
        seg = Segment(80, 40000, 7, 9, ACK, 100, payload=payload)
        return emitTCPHeader(seg, REMOTE_IP, dst, partial=True), payload, emitTCP(seg, REMOTE_IP, dst)

    def test_tailAndPartialChecksum(self):
        """
        A payload given as a header and a tail, its checksum left partial,
        reaches a link without checksum offload as one datagram, its
        checksum completed.
        """
        header, tail, complete = self.tcpParts(self.ipA, 1000)
        self.assertTrue(
            self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_TCP, header, tail=tail, partialChecksum=16)
        )
        [frame] = self.linkA.frames
        ip, data = parseIPv4(frame[14:])
        self.assertEqual((ip.totalLength, ip.flags, bytes(data)), (20 + len(complete), FLAG_DF, complete))

    def test_partialChecksumToMAC(self):
        """
        The same, sent to a MAC.
        """
        header, tail, complete = self.tcpParts(self.ipB, 100)
        self.layer.sendIP(
            REMOTE_IP, self.ipB, PROTO_TCP, header, dstMAC=self.leaseB.mac, tail=tail, partialChecksum=16
        )
        [frame] = self.linkB.frames
        self.assertEqual(bytes(parseIPv4(frame[14:])[1]), complete)

    def test_partialChecksumFragmented(self):
        """
        The same, larger than the MTU of a link without segmentation
        offload: the fragments carry the completed segment.
        """
        header, tail, complete = self.tcpParts(self.ipA, 2000)
        self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_TCP, header, tail=tail, partialChecksum=16)
        frames = self.linkA.takeFrames()
        self.assertEqual(len(frames), 2)
        self.assertEqual(b"".join(bytes(parseIPv4(f[14:])[1]) for f in frames), complete)

    def test_tooBig(self):
        """
        A payload no IPv4 datagram can carry is refused (C{tooBig}).
        """
        self.assertFalse(self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_UDP, b"x" * 65516))
        self.assertEqual(self.linkA.frames, [])
        self.assertEqual(nonZeroCounters(self.counters), {"link.linksOpened": 2, "ipv4.tooBig": 1})


class JumboSendTests(IPv4TestMixin, SynchronousTestCase):
    """
    The MTU limit follows the configuration.
    """

    mtu = 9000

    def test_jumbo(self):
        """
        With MTU 9000, a 9000-byte datagram is sent whole and a 9001-byte
        one in two fragments (the first carrying 8,976 bytes, the largest
        multiple of 8 that fits).
        """
        self.assertTrue(self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_UDP, b"x" * 8980))
        self.assertTrue(self.layer.sendIP(REMOTE_IP, self.ipA, PROTO_UDP, b"x" * 8981))
        self.assertEqual([len(f) for f in self.linkA.frames], [9014, 14 + 20 + 8976, 14 + 20 + 5])
        self.assertEqual(self.counters.ipv4.fragmentsSent, 2)
        self.assertEqual(self.counters.ipv4.sent, 2)


class SwitchPathTests(IPv4TestMixin, SynchronousTestCase):
    """
    How IPv4 frames reach the layer through the switch.
    """

    def test_broadcastDelivered(self):
        """
        A broadcast IPv4 frame (a DHCP DISCOVER) is delivered to the layer
        and flooded to the other guest.
        """
        frame = buildIPv4(
            self.leaseA.mac, b"\0" * 4, BROADCAST_IP, PROTO_UDP, PAYLOAD, dstMAC=BROADCAST_MAC
        )
        self.portA.frameReceived(frame)
        self.assertEqual(len(self.udp.received), 1)
        self.assertEqual(self.linkB.frames, [frame])
        self.assertCounters({"ethernet.flooded": 1})

    def test_unicastToGuestBypasses(self):
        """
        A frame addressed to the other guest's MAC is switched without the
        IPv4 layer seeing it (no TTL change).
        """
        frame = buildIPv4(
            self.leaseA.mac, self.ipA, self.ipB, PROTO_UDP, PAYLOAD, dstMAC=self.leaseB.mac
        )
        self.portA.frameReceived(frame)
        self.assertEqual(self.linkB.frames, [frame])
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 2, "ethernet.received": 1, "ethernet.switched": 1},
        )

    def test_emptyPayload(self):
        """
        An IPv4 frame with no payload is counted as C{truncated}.
        """
        self.portA.frameReceived(buildEthernet(SERVER_MAC, self.leaseA.mac, ETHERTYPE_IPV4, b""))
        self.assertCounters({"ipv4.truncated": 1})

    def test_learnedSender(self):
        """
        A reply to a guest whose MAC was learned from its datagram goes to
        that MAC.
        """
        linkQ, portQ, leaseQ = self.plug("q", learn=True)
        qmac = mac("52:54:00:00:00:07")
        portQ.frameReceived(buildIPv4(qmac, leaseQ.ip.packed, REMOTE_IP, PROTO_UDP, PAYLOAD))
        self.assertTrue(self.layer.sendIP(REMOTE_IP, leaseQ.ip.packed, PROTO_UDP, PAYLOAD))
        [frame] = linkQ.frames
        self.assertEqual(frame[:6], qmac)
