"""
Tests for L{vpnkit.protocols.ipv6}: which datagrams vpnkit takes, extension
headers, reassembly, demultiplexing, routing between guests and the
datagrams vpnkit sends (fragmented beyond the MTU).
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.interfaces import IEthernetPayloadReceiver, IIPSender
from vpnkit.protocols.ipv6 import REASSEMBLY_TIMEOUT, IPv6Layer
from vpnkit.wire.icmpv6 import (
    DestinationUnreachable,
    EchoRequest,
    PacketTooBig,
    ParameterProblem,
    TimeExceeded,
)
from vpnkit.wire.ipv6 import (
    NEXT_DESTINATION,
    NEXT_FRAGMENT,
    NEXT_HOP_BY_HOP,
    NEXT_ROUTING,
    NEXT_TCP,
    NEXT_UDP,
    FragmentHeader,
    emitFragmentHeader,
    parseExtensions,
    parseIPv6,
)
from vpnkit.wire.tcp import Segment, emitTCPHeader

from tests.helpers import SERVER_MAC, DatagramRecorder, makeStack, nonZeroCounters
from tests.ipv6helpers import (
    ALL_NODES_MAC,
    GATEWAY6,
    REMOTE6,
    ROUTER6,
    buildICMPv6,
    buildIPv6,
    ip6,
    linkLocal,
    parseICMPv6Frame,
    parseIPv6Frame,
)

PAYLOAD = b"an upper-layer payload, 8-aligned"


def _options(nextHeader, length=8):
    """
    A hop-by-hop or destination options header of C{length} bytes holding
    only padding.
    """
    body = bytes((1, length - 4)) + bytes(length - 4)
    return bytes((nextHeader, length // 8 - 1)) + body


class IPv6TestMixin:
    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2)
        self.ipv6 = self.stack.ipv6
        self.clock = self.stack.reactor
        # No Router Advertisements in the way of the frames looked at.
        self.stack.icmpv6.stop()
        self.received = DatagramRecorder()
        self.ipv6.addProto(253, self.received)
        self.aAddress = ip6("fd00:65::a")
        self.bAddress = ip6("fd00:65::b")
        # The guests use addresses the switch learns.
        self.a.send(buildIPv6(self.a.mac, self.aAddress, GATEWAY6, 59, b""))
        self.b.send(buildIPv6(self.b.mac, self.bAddress, GATEWAY6, 59, b""))
        self.a.takeFrames()
        self.b.takeFrames()

    def send(self, dst, nextHeader, payload, src=None, **kw):
        self.a.send(buildIPv6(self.a.mac, src or self.aAddress, dst, nextHeader, payload, **kw))

    def counters(self):
        return self.stack.counters.ipv6


class ReceiveTests(IPv6TestMixin, SynchronousTestCase):
    """
    Which datagrams vpnkit takes, and what the receivers are handed.
    """

    def test_interfaces(self):
        """
        The layer is an Ethernet payload receiver and an IP sender.
        """
        self.assertTrue(verifyObject(IEthernetPayloadReceiver, self.ipv6))
        self.assertTrue(verifyObject(IIPSender, self.ipv6))

    def test_addProtoTwice(self):
        """
        A protocol may be registered once.
        """
        self.assertRaises(ValueError, self.ipv6.addProto, 253, DatagramRecorder())

    def test_gatewayAndRemote(self):
        """
        Datagrams for the gateway and for any remote address reach the
        receiver of their next header, with their header.
        """
        self.send(GATEWAY6, 253, PAYLOAD)
        self.send(REMOTE6, 253, PAYLOAD)
        [(first, p1), (second, p2)] = self.received.received
        self.assertEqual((first.src, first.dst, first.nextHeader), (self.aAddress, GATEWAY6, 253))
        self.assertEqual(second.dst, REMOTE6)
        self.assertEqual((p1, p2), (PAYLOAD, PAYLOAD))

    def test_extensionHeadersSkipped(self):
        """
        Hop-by-hop and destination options are skipped: the receiver gets
        the header with C{nextHeader} the upper layer and C{payloadLength}
        its payload's.
        """
        payload = _options(NEXT_DESTINATION) + _options(253, 16) + PAYLOAD
        self.send(GATEWAY6, NEXT_HOP_BY_HOP, payload)
        [(header, data)] = self.received.received
        self.assertEqual(data, PAYLOAD)
        self.assertEqual((header.nextHeader, header.payloadLength), (253, len(PAYLOAD)))

    def test_routingType0(self):
        """
        A type 0 routing header with segments left is dropped and answered
        with Parameter Problem (code 0) pointing at its routing type.
        """
        routing = bytes((253, 2, 0, 1)) + bytes(4) + GATEWAY6
        self.send(REMOTE6, NEXT_ROUTING, routing + PAYLOAD)
        self.assertEqual(self.received.received, [])
        [frame] = self.a.takeFrames()
        _, header, message = parseICMPv6Frame(frame)
        self.assertIsInstance(message, ParameterProblem)
        self.assertEqual((message.code, message.pointer), (0, 42))
        self.assertEqual((header.src, header.dst), (GATEWAY6, self.aAddress))
        self.assertEqual(self.counters().routingType0, 1)

    def test_unknownNextHeader(self):
        """
        An upper layer nobody serves is answered with Parameter Problem
        code 1 pointing at the next header field; No Next Header is
        silently dropped.
        """
        self.send(GATEWAY6, 200, PAYLOAD)
        self.send(GATEWAY6, 59, b"")
        [frame] = self.a.takeFrames()
        _, _, message = parseICMPv6Frame(frame)
        self.assertEqual((message.code, message.pointer), (1, 6))
        self.assertEqual(message.invoking[40:], PAYLOAD)
        self.assertEqual(self.counters().unsupportedProtocol, 2 + 2)

    def test_groupsAndScopes(self):
        """
        vpnkit takes all-nodes, all-routers, solicited-node groups and the
        DHCPv6 group, and the router's link-local address; not other
        groups (MLD's), another link-local address, or a multicast
        source.
        """
        for dst in ("ff02::1", "ff02::2", "ff02::1:ff00:1", "ff02::1:2"):
            self.send(ip6(dst), 253, PAYLOAD, dstMAC=ALL_NODES_MAC)
        self.send(ROUTER6, 253, PAYLOAD)
        self.assertEqual(len(self.received.received), 5)
        self.send(ip6("ff02::16"), 253, PAYLOAD, dstMAC=ALL_NODES_MAC)
        self.send(ip6("fe80::99"), 253, PAYLOAD)
        self.assertEqual(self.counters().notForUs, 2)
        self.assertEqual(len(self.received.received), 5)

    def test_truncated(self):
        """
        A datagram shorter than its payload length is counted and dropped.
        """
        frame = buildIPv6(self.a.mac, self.aAddress, GATEWAY6, 253, PAYLOAD)
        self.a.send(frame[:-4])
        self.assertEqual(self.counters().truncated, 1)
        self.assertEqual(self.received.received, [])


def _fragment(offset, more, ident, data, nextHeader=253):
    return emitFragmentHeader(FragmentHeader(nextHeader, offset, more, ident)) + data


class ReassemblyTests(IPv6TestMixin, SynchronousTestCase):
    """
    Fragments for vpnkit are put back together under IPv4's bounds, with
    IPv6's timeout.
    """

    def test_reassembled(self):
        """
        Two fragments, in any order, make one datagram for the receiver.
        """
        whole = bytes(range(256)) * 8
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(1024, False, 7, whole[1024:]))
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(0, True, 7, whole[:1024]))
        [(header, data)] = self.received.received
        self.assertEqual(data, whole)
        self.assertEqual((header.nextHeader, header.payloadLength), (253, len(whole)))
        self.assertEqual((self.counters().fragmentsQueued, self.counters().reassembled), (1, 1))

    def test_atomicFragment(self):
        """
        An atomic fragment (offset 0, no more) is a whole datagram.
        """
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(0, False, 9, PAYLOAD))
        self.assertEqual(self.received.received[0][1], PAYLOAD)
        self.assertEqual(self.counters().atomicFragments, 1)

    def test_timeoutWithFirst(self):
        """
        A datagram incomplete after 60 s is dropped; when its first
        fragment had arrived, the sender gets Time Exceeded (code 1) from
        the address it wrote to.
        """
        self.send(REMOTE6, NEXT_FRAGMENT, _fragment(0, True, 7, bytes(1024)))
        self.clock.advance(REASSEMBLY_TIMEOUT - 1)
        self.assertEqual(self.a.takeFrames(), [])
        self.clock.advance(1)
        [frame] = self.a.takeFrames()
        _, header, message = parseICMPv6Frame(frame)
        self.assertIsInstance(message, TimeExceeded)
        self.assertEqual((message.code, header.src), (1, REMOTE6))
        self.assertEqual(self.counters().reassemblyTimeout, 1)

    def test_timeoutWithoutFirst(self):
        """
        Without the first fragment, the timeout is silent.
        """
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(1024, False, 7, bytes(8)))
        self.clock.advance(REASSEMBLY_TIMEOUT)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.counters().reassemblyTimeout, 1)

    def test_overlapDiscards(self):
        """
        Overlapping fragments discard the datagram (RFC 5722).
        """
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(0, True, 7, bytes(16)))
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(8, False, 7, bytes(16)))
        self.assertEqual(self.received.received, [])
        self.assertEqual(self.counters().fragmentOverlap, 1)

    def test_badFragmentProblems(self):
        """
        A middle fragment whose length is not a multiple of 8 draws
        Parameter Problem at the payload length; one reaching beyond 65,535
        bytes, at its fragment offset.
        """
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(0, True, 7, bytes(12)))
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(65528, False, 8, bytes(16)))
        pointers = [parseICMPv6Frame(f)[2].pointer for f in self.a.takeFrames()]
        self.assertEqual(pointers, [4, 42])
        self.assertEqual(self.counters().fragmentMalformed, 2)

    def test_boundedAsIPv4(self):
        """
        The reassembler has IPv4's bounds and a 60 s timeout.
        """
        reassembler = self.ipv6.reassembler
        ipv4 = self.stack.ipv4.reassembler
        self.assertEqual(reassembler.timeout, 60.0)
        self.assertEqual(
            (reassembler.maxBytes, reassembler.maxBytesPerSource, reassembler.maxDatagrams),
            (ipv4.maxBytes, ipv4.maxBytesPerSource, ipv4.maxDatagrams),
        )

    def test_stop(self):
        """
        Stopping drops partial datagrams and the timer.
        """
        self.send(GATEWAY6, NEXT_FRAGMENT, _fragment(0, True, 7, bytes(16)))
        self.ipv6.stop()
        self.assertEqual(len(self.ipv6.reassembler), 0)
        self.assertFalse(
            [c for c in self.clock.getDelayedCalls() if c.func == self.ipv6._reassembly.expire]
        )


class ForwardTests(IPv6TestMixin, SynchronousTestCase):
    """
    Datagrams one guest sends another through the router.
    """

    def test_forwarded(self):
        """
        A datagram to another guest's address sent to vpnkit's MAC goes to
        that guest from vpnkit's MAC, its hop limit one less.
        """
        self.send(self.bAddress, NEXT_UDP, PAYLOAD)
        [frame] = self.b.takeFrames()
        eth, header, upper, data = parseIPv6Frame(frame)
        self.assertEqual((eth.src, eth.dst), (SERVER_MAC, self.b.mac))
        self.assertEqual((header.hopLimit, upper, data), (63, NEXT_UDP, PAYLOAD))
        self.assertEqual(self.counters().forwarded, 1)

    def test_hopLimitExpired(self):
        """
        Hop limit 1 draws Time Exceeded (code 0) from the gateway.
        """
        self.send(self.bAddress, NEXT_UDP, PAYLOAD, hopLimit=1)
        self.assertEqual(self.b.takeFrames(), [])
        [frame] = self.a.takeFrames()
        _, header, message = parseICMPv6Frame(frame)
        self.assertEqual((type(message), message.code, header.src), (TimeExceeded, 0, GATEWAY6))

    def test_tooBig(self):
        """
        Beyond the MTU, Packet Too Big with the MTU (routers do not
        fragment IPv6).
        """
        self.a.port.maxFrame = 9000
        self.send(self.bAddress, NEXT_UDP, bytes(1600))
        [frame] = self.a.takeFrames()
        _, _, message = parseICMPv6Frame(frame)
        self.assertIsInstance(message, PacketTooBig)
        self.assertEqual(message.mtu, 1500)
        self.assertEqual(len(message.invoking), 1232)

    def test_notToOurMAC(self):
        """
        A multicast-flooded or directly switched datagram is not routed
        again.
        """
        self.send(self.bAddress, NEXT_UDP, PAYLOAD, dstMAC=self.b.mac)
        self.assertEqual(len(self.b.takeFrames()), 1)
        self.assertEqual(self.counters().forwarded, 0)


class SendTests(IPv6TestMixin, SynchronousTestCase):
    """
    L{IPv6Layer.sendIP}.
    """

    def test_unicast(self):
        """
        A datagram to a guest's address goes to its port with a 40-byte
        header: the hop limit is the C{ttl}.
        """
        self.assertTrue(self.ipv6.sendIP(GATEWAY6, self.aAddress, 253, PAYLOAD, ttl=7))
        [frame] = self.a.takeFrames()
        eth, header, upper, data = parseIPv6Frame(frame)
        self.assertEqual((eth.dst, eth.src), (self.a.mac, SERVER_MAC))
        self.assertEqual((header.src, header.dst, header.hopLimit), (GATEWAY6, self.aAddress, 7))
        self.assertEqual((upper, data), (253, PAYLOAD))

    def test_multicast(self):
        """
        A datagram to a group goes to every guest, to the group's 33:33
        MAC.
        """
        self.assertTrue(self.ipv6.sendIP(ROUTER6, ip("ff02::1"), 253, PAYLOAD))
        for guest in (self.a, self.b):
            [frame] = guest.takeFrames()
            self.assertEqual(frame[:6], ALL_NODES_MAC)

    def test_noRoute(self):
        """
        An address no guest holds: nothing sent, counted.
        """
        self.assertFalse(self.ipv6.sendIP(GATEWAY6, ip6("fd00:65::99"), 253, PAYLOAD))
        self.assertEqual(self.counters().noRoute, 1)

    def test_partialChecksum(self):
        """
        A partial TCP checksum (at 40 + its offset) is completed for a link
        without offload, the tail appended.
        """
        segment = Segment(80, 4000, 1, 2, 0x18, 1000, payload=b"data")
        header = emitTCPHeader(segment, GATEWAY6, self.aAddress, partial=True)
        self.assertTrue(
            self.ipv6.sendIP(
                GATEWAY6, self.aAddress, NEXT_TCP, header, tail=b"data", partialChecksum=16
            )
        )
        [frame] = self.a.takeFrames()
        _, ip, upper, data = parseIPv6Frame(frame)
        from vpnkit.wire.tcp import parseTCP

        segment = parseTCP(data, ip.src, ip.dst)
        self.assertEqual(bytes(segment.payload), b"data")

    def test_fragmented(self):
        """
        A datagram beyond the MTU goes as fragments (vpnkit is its source):
        each fits the MTU, all share an identification, and together they
        hold the datagram.
        """
        payload = bytes(range(256)) * 12
        self.assertTrue(self.ipv6.sendIP(GATEWAY6, self.aAddress, 253, payload))
        frames = self.a.takeFrames()
        self.assertEqual(len(frames), 3)
        pieces = {}
        idents = set()
        for frame in frames:
            self.assertLessEqual(len(frame) - 14, 1500)
            header, data = parseIPv6(frame[14:])
            self.assertEqual(header.nextHeader, NEXT_FRAGMENT)
            fragment = parseExtensions(header.nextHeader, data).fragment
            idents.add(fragment.ident)
            self.assertEqual(fragment.nextHeader, 253)
            pieces[fragment.offset] = (fragment.more, data[8:])
        self.assertEqual(len(idents), 1)
        self.assertEqual(b"".join(pieces[o][1] for o in sorted(pieces)), payload)
        self.assertEqual([pieces[o][0] for o in sorted(pieces)], [True, True, False])
        self.assertEqual(self.counters().fragmentsSent, 3)

    def test_superSegment(self):
        """
        A TCP segment beyond the MTU goes whole to a guest whose link takes
        segmentation-offload super-segments.
        """
        self.a.port.segmentLimit = 0xFFFF - 80
        self.a.port.maxFrame = 0xFFFF + 14
        self.assertTrue(self.ipv6.sendIP(GATEWAY6, self.aAddress, NEXT_TCP, bytes(20 + 8000)))
        [frame] = self.a.takeFrames()
        self.assertEqual(len(frame), 14 + 40 + 20 + 8000)

    def test_tooBigForIPv6(self):
        """
        Beyond 65,535 bytes of payload, nothing is sent.
        """
        self.assertFalse(self.ipv6.sendIP(GATEWAY6, self.aAddress, 253, bytes(0x10000)))
        self.assertEqual(self.counters().tooBig, 1)


def ip(text):
    return ip6(text)


class EchoErrorsTests(IPv6TestMixin, SynchronousTestCase):
    """
    The error rules hold for what the IPv6 layer itself reports.
    """

    def test_noErrorAboutMulticast(self):
        """
        A datagram to a group draws no Parameter Problem for an unknown
        next header.
        """
        self.send(ip6("ff02::1"), 200, PAYLOAD, dstMAC=ALL_NODES_MAC)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.icmpv6.errorsSuppressed, 1)

    def test_counters(self):
        """
        Only the expected counters move for an echo to the gateway.
        """
        before = nonZeroCounters(self.stack.counters)
        self.a.send(buildICMPv6(self.a.mac, self.aAddress, GATEWAY6, EchoRequest(1, 1, b"x")))
        after = nonZeroCounters(self.stack.counters)
        self.assertEqual(after["ipv6.received"] - before["ipv6.received"], 1)
        self.assertEqual(after["icmpv6.echoReplies"], 1)
        self.assertEqual(after["ipv6.sent"] - before.get("ipv6.sent", 0), 1)

    def test_linkLocalSource(self):
        """
        A guest's link-local address is learned and answered.
        """
        source = linkLocal(self.a.mac)
        self.a.send(buildICMPv6(self.a.mac, source, ROUTER6, EchoRequest(1, 1, b"x")))
        [frame] = self.a.takeFrames()
        _, header, _ = parseICMPv6Frame(frame)
        self.assertEqual((header.src, header.dst), (ROUTER6, source))

    def test_unreachableQuote(self):
        """
        Upper layers' unreachable goes out quoting the header they were
        handed (checked through the stack's ICMPv6 layer).
        """
        self.send(GATEWAY6, 253, PAYLOAD)
        [(header, data)] = self.received.received
        from vpnkit.protocols.ip import Unreachable

        self.assertTrue(self.stack.icmpv6.sendUnreachable(Unreachable.PORT, header, data[:8]))
        [frame] = self.a.takeFrames()
        _, _, message = parseICMPv6Frame(frame)
        self.assertIsInstance(message, DestinationUnreachable)
        self.assertEqual(message.code, 4)
        self.assertEqual(message.invoking[40:], PAYLOAD[:8])
        self.assertEqual(message.invoking[8:24], self.aAddress)


class WiringTests(IPv6TestMixin, SynchronousTestCase):
    """
    The stack hands IPv6 to the same TCP and UDP layers as IPv4, and their
    errors come back as ICMPv6.
    """

    def test_tcpDials(self):
        """
        A SYN over IPv6 to a remote address makes the host dial it.
        """
        from vpnkit.wire.tcp import SYN, emitTCP

        syn = emitTCP(Segment(40000, 80, 1000, 0, SYN, 65535), self.aAddress, REMOTE6)
        self.send(REMOTE6, NEXT_TCP, syn)
        [pending] = self.stack.hostNetwork.connects
        self.assertEqual((pending.host, pending.port), ("2001:db8::10", 80))

    def test_udpPortUnreachable(self):
        """
        UDP to a port of the gateway nothing serves draws ICMPv6 port
        unreachable (code 4) from the gateway, through the stack's
        family-neutral errors.
        """
        from vpnkit.wire.udp import emitUDP

        self.send(GATEWAY6, NEXT_UDP, emitUDP(40000, 9, b"hello", self.aAddress, GATEWAY6))
        [frame] = self.a.takeFrames()
        _, header, message = parseICMPv6Frame(frame)
        self.assertEqual((type(message), message.code, header.src), (DestinationUnreachable, 4, GATEWAY6))
