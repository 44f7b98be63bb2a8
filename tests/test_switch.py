"""
Tests for L{vpnkit.protocols.switch}: demultiplexing to vpnkit's layers,
switching between guests, flooding, MAC learning, and each port bound to
its guest's MAC and address.
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.interfaces import IChecksumOffloadLink, IFrameReceiver, ILink
from vpnkit.leases import AddressPool
from vpnkit.protocols.switch import EthernetSwitch, SwitchPort
from vpnkit.wire.ethernet import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_VLAN,
    EthernetHeader,
)

from vpnkit.wire.dhcp import DHCPDISCOVER, DHCPREQUEST
from vpnkit.wire.ipv4 import PROTO_TCP, PROTO_UDP
from vpnkit.wire.tcp import SYN, Segment, TCPOptions, emitTCP

from tests.helpers import (
    BROADCAST_IP,
    BROADCAST_MAC,
    GATEWAY_IP,
    REMOTE_IP,
    SERVER_MAC,
    ZERO_IP,
    FrameRecorder,
    PayloadRecorder,
    attachGuest,
    buildARPReply,
    buildARPRequest,
    buildDHCP,
    buildEthernet,
    buildICMPEcho,
    buildIPv4,
    buildUDP,
    capturedFrames,
    ip,
    mac,
    makeStack,
    nonZeroCounters,
    parseARPFrame,
)

MAC_A = mac("02:50:00:00:00:01")
MAC_B = mac("02:50:00:00:00:02")
MAC_C = mac("02:50:00:00:00:03")
LEARNED = mac("52:54:00:12:34:56")
PAYLOAD = b"0123456789" * 5


class SwitchTestMixin:
    """
    A switch with IPv4 and ARP receivers, and helpers to plug guests in.
    """

    def setUp(self):
        self.config = StackConfig()
        self.counters = StackCounters()
        self.pool = AddressPool(self.config)
        self.switch = EthernetSwitch(self.config, self.counters)
        self.ipv4 = PayloadRecorder()
        self.arp = PayloadRecorder()
        self.switch.addProto(ETHERTYPE_IPV4, self.ipv4)
        self.switch.addProto(ETHERTYPE_ARP, self.arp)

    def plug(self, name, mac):
        """
        Attach a L{FrameRecorder} with a new ephemeral lease.

        @return: C{(recorder, port)}
        """
        link = FrameRecorder(name, self.config.maxFrameSize)
        port = self.switch.attach(link, self.pool.ephemeralLease(), mac)
        return link, port

    def threeGuests(self):
        self.linkA, self.portA = self.plug("a", MAC_A)
        self.linkB, self.portB = self.plug("b", MAC_B)
        self.linkC, self.portC = self.plug("c", MAC_C)

    def assertNoFrames(self, *links):
        for link in links:
            self.assertEqual(link.frames, [], link.description)


class InterfaceTests(SwitchTestMixin, SynchronousTestCase):
    """
    The switch and its ports provide the interfaces the links use.
    """

    def test_interfaces(self):
        """
        L{SwitchPort} provides L{IFrameReceiver}, and the test link
        provides L{ILink}.
        """
        link, port = self.plug("a", MAC_A)
        self.assertTrue(verifyObject(IFrameReceiver, port))
        self.assertTrue(verifyObject(ILink, link))

    def test_portRepr(self):
        """
        A port's repr names its link, address and MAC (C{?} before one is
        learned).
        """
        _, port = self.plug("vmnet:x", MAC_A)
        self.assertEqual(repr(port), "<SwitchPort vmnet:x 192.168.65.3 02:50:00:00:00:01>")
        _, port = self.plug("qemu", None)
        self.assertEqual(repr(port), "<SwitchPort qemu 192.168.65.4 ?>")

    def test_addProtoTwice(self):
        """
        Registering a second receiver for one EtherType is refused.
        """
        self.assertRaises(ValueError, self.switch.addProto, ETHERTYPE_IPV4, PayloadRecorder())

    def test_attachCounts(self):
        """
        Attaching a port counts C{linksOpened}, records its routes and lists
        it in L{EthernetSwitch.ports}.
        """
        link, port = self.plug("a", MAC_A)
        self.assertIsInstance(port, SwitchPort)
        self.assertIs(port.link, link)
        self.assertEqual(self.switch.ports(), [port])
        self.assertIs(self.switch.portForIP(ip("192.168.65.3")), port)
        self.assertIs(self.switch.portForMAC(MAC_A), port)
        self.assertEqual(nonZeroCounters(self.counters), {"link.linksOpened": 1})


class LocalDeliveryTests(SwitchTestMixin, SynchronousTestCase):
    """
    Frames addressed to the server MAC go to the receiver registered for
    their EtherType.
    """

    def setUp(self):
        super().setUp()
        self.threeGuests()

    def test_ipv4ToServerMAC(self):
        """
        An IPv4 frame to the server MAC reaches the IPv4 receiver with its
        typed header and the bytes after the 14-byte header, and no guest.
        """
        frame = buildEthernet(SERVER_MAC, MAC_A, ETHERTYPE_IPV4, PAYLOAD)
        self.portA.frameReceived(frame)
        self.assertEqual(
            self.ipv4.received,
            [(EthernetHeader(SERVER_MAC, MAC_A, ETHERTYPE_IPV4), PAYLOAD)],
        )
        self.assertEqual(self.arp.received, [])
        self.assertNoFrames(self.linkA, self.linkB, self.linkC)
        self.assertEqual(
            nonZeroCounters(self.counters), {"link.linksOpened": 3, "ethernet.received": 1}
        )

    def test_headerShared(self):
        """
        Every frame of one guest to the server MAC reaches its receiver with
        the same (immutable) header for its EtherType: none is built per
        frame.  A broadcast frame's header names the broadcast address.
        """
        frame = buildEthernet(SERVER_MAC, MAC_A, ETHERTYPE_IPV4, PAYLOAD)
        self.portA.frameReceived(frame)
        self.portA.frameReceived(frame)
        self.portA.frameReceived(buildEthernet(SERVER_MAC, MAC_A, ETHERTYPE_ARP, PAYLOAD))
        self.portA.frameReceived(buildEthernet(BROADCAST_MAC, MAC_A, ETHERTYPE_ARP, PAYLOAD))
        [(first, _), (second, _)] = self.ipv4.received
        self.assertIs(first, second)
        self.assertEqual(first, EthernetHeader(SERVER_MAC, MAC_A, ETHERTYPE_IPV4))
        self.assertEqual(
            [header for header, _ in self.arp.received],
            [
                EthernetHeader(SERVER_MAC, MAC_A, ETHERTYPE_ARP),
                EthernetHeader(BROADCAST_MAC, MAC_A, ETHERTYPE_ARP),
            ],
        )

    def test_arpToServerMAC(self):
        """
        An ARP frame to the server MAC reaches the ARP receiver.
        """
        frame = buildEthernet(SERVER_MAC, MAC_B, ETHERTYPE_ARP, PAYLOAD)
        self.portB.frameReceived(frame)
        self.assertEqual(
            self.arp.received, [(EthernetHeader(SERVER_MAC, MAC_B, ETHERTYPE_ARP), PAYLOAD)]
        )
        self.assertEqual(self.ipv4.received, [])

    def test_unknownEthertype(self):
        """
        A frame of an EtherType nobody registered (here LLDP) is counted as
        C{unsupportedEthertype} and dropped.
        """
        self.portA.frameReceived(buildEthernet(SERVER_MAC, MAC_A, 0x88CC, PAYLOAD))
        self.assertEqual((self.ipv4.received, self.arp.received), ([], []))
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ethernet.unsupportedEthertype": 1},
        )

    def test_ipv6(self):
        """
        An IPv6 frame to the server MAC is counted as C{ipv6} and dropped.
        """
        self.portA.frameReceived(buildEthernet(SERVER_MAC, MAC_A, ETHERTYPE_IPV6, PAYLOAD))
        self.assertEqual((self.ipv4.received, self.arp.received), ([], []))
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ethernet.ipv6": 1},
        )

    def test_vlan(self):
        """
        An 802.1Q-tagged frame to the server MAC is counted as C{vlan} and
        dropped.
        """
        tagged = b"\x00\x05" + ETHERTYPE_IPV4.to_bytes(2, "big") + PAYLOAD
        self.portA.frameReceived(buildEthernet(SERVER_MAC, MAC_A, ETHERTYPE_VLAN, tagged))
        self.assertEqual((self.ipv4.received, self.arp.received), ([], []))
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ethernet.vlan": 1},
        )

    def test_capturedIPv6Multicast(self):
        """
        The multicast-listener report a real Linux guest sends on link-up is
        flooded to the other guests and counted as C{ipv6} locally.
        """
        frame = capturedFrames()[1]
        self.assertEqual(frame[:6], mac("33:33:00:00:00:16"))
        self.portA.frameReceived(frame)
        self.assertEqual(self.linkB.frames, [frame])
        self.assertEqual(self.linkC.frames, [frame])
        self.assertNoFrames(self.linkA)
        self.assertEqual(
            nonZeroCounters(self.counters),
            {
                "link.linksOpened": 3,
                "ethernet.received": 1,
                "ethernet.flooded": 2,
                "ethernet.ipv6": 1,
            },
        )

    def test_shortFrames(self):
        """
        Frames shorter than an Ethernet header are counted as C{shortFrames}
        and dropped; one of exactly 14 bytes is accepted.
        """
        frame = buildEthernet(SERVER_MAC, MAC_A, ETHERTYPE_IPV4, b"")
        for n in range(14):
            self.portA.frameReceived(frame[:n])
        self.assertEqual(self.ipv4.received, [])
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 14, "link.shortFrames": 14},
        )
        self.portA.frameReceived(frame)
        self.assertEqual(
            self.ipv4.received, [(EthernetHeader(SERVER_MAC, MAC_A, ETHERTYPE_IPV4), b"")]
        )

    def test_oversizeFrames(self):
        """
        A frame longer than C{maxFrameSize} is counted as C{oversizeFrames}
        and dropped, even a broadcast; one of exactly C{maxFrameSize} bytes
        is accepted.
        """
        limit = self.config.maxFrameSize
        self.assertEqual(limit, 1550)
        big = buildEthernet(BROADCAST_MAC, MAC_A, ETHERTYPE_IPV4, b"x" * (limit - 13))
        self.portA.frameReceived(big)
        self.assertEqual(self.ipv4.received, [])
        self.assertNoFrames(self.linkA, self.linkB, self.linkC)
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "link.oversizeFrames": 1},
        )
        self.portA.frameReceived(big[:limit])
        self.assertEqual(len(self.ipv4.received), 1)
        self.assertEqual(self.linkB.frames, [big[:limit]])


class SwitchingTests(SwitchTestMixin, SynchronousTestCase):
    """
    Frames between guests.
    """

    def setUp(self):
        super().setUp()
        self.threeGuests()

    def test_unicastToGuest(self):
        """
        A frame to another guest's MAC is handed, unchanged, to that guest's
        link only, and not to vpnkit's layers.
        """
        frame = buildEthernet(MAC_B, MAC_A, ETHERTYPE_IPV4, PAYLOAD)
        self.portA.frameReceived(frame)
        self.assertEqual(self.linkB.frames, [frame])
        self.assertNoFrames(self.linkA, self.linkC)
        self.assertEqual(self.ipv4.received, [])
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ethernet.switched": 1},
        )

    def test_broadcastFlooded(self):
        """
        A broadcast is flooded to every other guest, never back to the
        sender, and also delivered to vpnkit's receiver.
        """
        frame = buildARPRequest(MAC_A, ip("192.168.65.3"), ip("192.168.65.1"))
        self.portA.frameReceived(frame)
        self.assertEqual(self.linkB.frames, [frame])
        self.assertEqual(self.linkC.frames, [frame])
        self.assertNoFrames(self.linkA)
        self.assertEqual(
            self.arp.received,
            [(EthernetHeader(BROADCAST_MAC, MAC_A, ETHERTYPE_ARP), frame[14:])],
        )
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ethernet.flooded": 2},
        )

    def test_multicastFlooded(self):
        """
        An IPv4 multicast frame (01:00:5e:...) is flooded and delivered
        locally like a broadcast.
        """
        group = mac("01:00:5e:00:00:fb")
        frame = buildEthernet(group, MAC_C, ETHERTYPE_IPV4, PAYLOAD)
        self.portC.frameReceived(frame)
        self.assertEqual(self.linkA.frames, [frame])
        self.assertEqual(self.linkB.frames, [frame])
        self.assertNoFrames(self.linkC)
        self.assertEqual(
            self.ipv4.received, [(EthernetHeader(group, MAC_C, ETHERTYPE_IPV4), PAYLOAD)]
        )

    def test_broadcastAlone(self):
        """
        A broadcast from the only guest reaches vpnkit and no link.
        """
        switch = EthernetSwitch(self.config, StackCounters())
        receiver = PayloadRecorder()
        switch.addProto(ETHERTYPE_IPV4, receiver)
        link = FrameRecorder("alone")
        port = switch.attach(link, self.pool.ephemeralLease(), MAC_A)
        port.frameReceived(buildEthernet(BROADCAST_MAC, MAC_A, ETHERTYPE_IPV4, PAYLOAD))
        self.assertEqual(len(receiver.received), 1)
        self.assertEqual(link.frames, [])

    def test_unknownUnicast(self):
        """
        A frame to a MAC no port owns is counted as C{notForUs} and dropped.
        """
        frame = buildEthernet(mac("02:50:00:00:00:99"), MAC_A, ETHERTYPE_IPV4, PAYLOAD)
        self.portA.frameReceived(frame)
        self.assertNoFrames(self.linkA, self.linkB, self.linkC)
        self.assertEqual(self.ipv4.received, [])
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ethernet.notForUs": 1},
        )

    def test_unicastToSelf(self):
        """
        A frame a guest addresses to its own MAC is not echoed back.
        """
        self.portA.frameReceived(buildEthernet(MAC_A, MAC_A, ETHERTYPE_IPV4, PAYLOAD))
        self.assertNoFrames(self.linkA, self.linkB, self.linkC)
        self.assertEqual(
            nonZeroCounters(self.counters),
            {"link.linksOpened": 3, "ethernet.received": 1, "ethernet.notForUs": 1},
        )


class LearningTests(SwitchTestMixin, SynchronousTestCase):
    """
    Ports attached without a MAC learn it from the first frame.
    """

    def test_learn(self):
        """
        A port attached with C{mac=None} takes the source MAC of its first
        frame, and unicast to that MAC then reaches it.
        """
        linkA, portA = self.plug("a", MAC_A)
        linkQ, portQ = self.plug("qemu", None)
        self.assertIsNone(portQ.mac)
        self.assertIsNone(self.switch.portForMAC(LEARNED))
        portQ.frameReceived(buildEthernet(SERVER_MAC, LEARNED, ETHERTYPE_IPV4, PAYLOAD))
        self.assertEqual(portQ.mac, LEARNED)
        self.assertIs(self.switch.portForMAC(LEARNED), portQ)
        frame = buildEthernet(LEARNED, MAC_A, ETHERTYPE_IPV4, PAYLOAD)
        portA.frameReceived(frame)
        self.assertEqual(linkQ.frames, [frame])
        self.assertEqual(self.counters.ethernet.switched, 1)

    def test_learnedHeader(self):
        """
        Frames from a port that learned its MAC reach the receivers with
        that MAC as their source.
        """
        _, port = self.plug("qemu", None)
        port.frameReceived(buildEthernet(SERVER_MAC, LEARNED, ETHERTYPE_IPV4, PAYLOAD))
        port.frameReceived(buildEthernet(SERVER_MAC, LEARNED, ETHERTYPE_IPV4, PAYLOAD))
        self.assertEqual(
            [header for header, _ in self.ipv4.received],
            [EthernetHeader(SERVER_MAC, LEARNED, ETHERTYPE_IPV4)] * 2,
        )

    def test_learnOnce(self):
        """
        A learned MAC sticks: a later frame from another source MAC does not
        change it.
        """
        _, port = self.plug("qemu", None)
        port.frameReceived(buildEthernet(SERVER_MAC, LEARNED, ETHERTYPE_IPV4, PAYLOAD))
        port.frameReceived(buildEthernet(SERVER_MAC, MAC_C, ETHERTYPE_IPV4, PAYLOAD))
        self.assertEqual(port.mac, LEARNED)
        self.assertIsNone(self.switch.portForMAC(MAC_C))

    def test_notFromGroupSource(self):
        """
        A group address in the source field is never learned.
        """
        _, port = self.plug("qemu", None)
        port.frameReceived(buildEthernet(SERVER_MAC, BROADCAST_MAC, ETHERTYPE_IPV4, PAYLOAD))
        self.assertIsNone(port.mac)
        self.assertIsNone(self.switch.portForMAC(BROADCAST_MAC))

    def test_notFromShortFrame(self):
        """
        A frame too short to carry a header teaches nothing.
        """
        _, port = self.plug("qemu", None)
        port.frameReceived(LEARNED + MAC_A)
        self.assertIsNone(port.mac)

    def test_noStealing(self):
        """
        A port cannot learn a MAC another port already owns: the first
        owner keeps receiving its frames.
        """
        linkA, portA = self.plug("a", MAC_A)
        linkB, portB = self.plug("b", MAC_B)
        linkQ, portQ = self.plug("qemu", None)
        portQ.frameReceived(buildEthernet(SERVER_MAC, MAC_A, ETHERTYPE_IPV4, PAYLOAD))
        self.assertIsNone(portQ.mac)
        self.assertIs(self.switch.portForMAC(MAC_A), portA)
        frame = buildEthernet(MAC_A, MAC_B, ETHERTYPE_IPV4, PAYLOAD)
        portB.frameReceived(frame)
        self.assertEqual(linkA.frames, [frame])
        self.assertEqual(linkQ.frames, [])


class DetachTests(SwitchTestMixin, SynchronousTestCase):
    """
    L{EthernetSwitch.detach} unplugs a port.
    """

    def test_detach(self):
        """
        A detached port loses its IP and MAC routes, is no longer flooded
        to, and C{linksClosed} is counted once even if detached twice.
        """
        linkA, portA = self.plug("a", MAC_A)
        linkB, portB = self.plug("b", MAC_B)
        self.switch.detach(portB)
        self.switch.detach(portB)
        self.assertEqual(self.switch.ports(), [portA])
        self.assertIsNone(self.switch.portForIP(ip("192.168.65.4")))
        self.assertIsNone(self.switch.portForMAC(MAC_B))
        portA.frameReceived(buildEthernet(MAC_B, MAC_A, ETHERTYPE_IPV4, PAYLOAD))
        portA.frameReceived(buildEthernet(BROADCAST_MAC, MAC_A, ETHERTYPE_IPV4, PAYLOAD))
        self.assertEqual(linkB.frames, [])
        self.assertEqual(
            nonZeroCounters(self.counters),
            {
                "link.linksOpened": 2,
                "link.linksClosed": 1,
                "ethernet.received": 2,
                "ethernet.notForUs": 1,
            },
        )

    def test_detachLearned(self):
        """
        Detaching a port removes the MAC it learned.
        """
        _, port = self.plug("qemu", None)
        port.frameReceived(buildEthernet(SERVER_MAC, LEARNED, ETHERTYPE_IPV4, PAYLOAD))
        self.switch.detach(port)
        self.assertIsNone(self.switch.portForMAC(LEARNED))

    def test_detachKeepsNewerOwner(self):
        """
        When a guest reconnects with the same lease before its old link is
        detached, detaching the old port leaves the new port's routes alone.
        """
        lease = self.pool.leaseForUUID("00000000-0000-0000-0000-000000000001")
        old = self.switch.attach(FrameRecorder("old"), lease, lease.mac)
        new = self.switch.attach(FrameRecorder("new"), lease, lease.mac)
        self.switch.detach(old)
        self.assertIs(self.switch.portForIP(lease.ip.packed), new)
        self.assertIs(self.switch.portForMAC(lease.mac), new)
        self.assertEqual(self.switch.ports(), [new])


class SendFrameTests(SwitchTestMixin, SynchronousTestCase):
    """
    L{EthernetSwitch.sendFrame} carries vpnkit's own frames to guests.
    """

    def setUp(self):
        super().setUp()
        self.threeGuests()

    def test_unicast(self):
        """
        A frame is routed by its destination MAC to that guest only.
        """
        frame = buildEthernet(MAC_B, SERVER_MAC, ETHERTYPE_IPV4, PAYLOAD)
        self.switch.sendToMAC(frame)
        self.assertEqual(self.linkB.frames, [frame])
        self.assertNoFrames(self.linkA, self.linkC)
        self.assertEqual(nonZeroCounters(self.counters), {"link.linksOpened": 3})

    def test_broadcast(self):
        """
        A broadcast reaches every guest.
        """
        frame = buildEthernet(BROADCAST_MAC, SERVER_MAC, ETHERTYPE_IPV4, PAYLOAD)
        self.switch.sendToMAC(frame)
        for link in (self.linkA, self.linkB, self.linkC):
            self.assertEqual(link.frames, [frame])

    def test_multicast(self):
        """
        A multicast destination reaches every guest.
        """
        frame = buildEthernet(mac("01:00:5e:00:00:01"), SERVER_MAC, ETHERTYPE_IPV4, PAYLOAD)
        self.switch.sendToMAC(frame)
        for link in (self.linkA, self.linkB, self.linkC):
            self.assertEqual(link.frames, [frame])

    def test_noRoute(self):
        """
        A frame for a MAC no guest owns is counted as C{noRoute} and dropped.
        """
        self.switch.sendToMAC(buildEthernet(LEARNED, SERVER_MAC, ETHERTYPE_IPV4, PAYLOAD))
        self.assertNoFrames(self.linkA, self.linkB, self.linkC)
        self.assertEqual(
            nonZeroCounters(self.counters), {"link.linksOpened": 3, "ethernet.noRoute": 1}
        )


class OffloadForwardingTests(SynchronousTestCase):
    """
    A tap guest with segmentation offload may send TCP super-segments of up
    to 64 KiB; the switch never hands another guest a frame beyond the MTU.
    """

    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2)
        # Guest A's link accepts 64 KiB frames, as a tap with offload does.
        self.a.port.maxFrame = 14 + 0xFFFF

    def test_superSegmentCutForTheOtherGuest(self):
        """
        A 20,000-byte TCP frame from A to B's MAC reaches B as MTU-sized
        frames carrying the same bytes (C{ethernet.segmented}).
        """
        from vpnkit.wire.ipv4 import buildHeader, parseIPv4
        from vpnkit.wire.tcp import ACK, Segment, emitTCP, parseTCP

        payload = bytes(i % 249 for i in range(20000))
        tcp = emitTCP(Segment(1, 2, 100, 200, ACK, 50, payload=payload), self.a.ip, self.b.ip)
        frame = self.b.mac + self.a.mac + b"\x08\x00" + buildHeader(self.a.ip, self.b.ip, 6, len(tcp)) + tcp
        self.a.send(frame)
        frames = self.b.link.frames
        self.assertEqual(len(frames), 14)
        self.assertTrue(all(len(f) <= 1514 for f in frames))
        joined = b"".join(
            parseTCP(parseIPv4(f[14:])[1], self.a.ip, self.b.ip).payload for f in frames
        )
        self.assertEqual(joined, payload)
        self.assertEqual(self.stack.counters.ethernet.segmented, 1)

    def test_ipv6SuperSegmentCut(self):
        """
        So is an IPv6 one (from vpnkit's own TCP to a guest without offload,
        or forwarded): MTU-sized frames carrying the same bytes.
        """
        from vpnkit.wire.ipv6 import buildHeader, parseIPv6
        from vpnkit.wire.tcp import ACK, Segment, emitTCP, parseTCP

        from tests.ipv6helpers import GATEWAY6, ip6

        src, dst = GATEWAY6, ip6("fd00:65::b")
        payload = bytes(i % 249 for i in range(20000))
        tcp = emitTCP(Segment(1, 2, 100, 200, ACK, 50, payload=payload), src, dst)
        self.b.port.transmit(
            self.b.mac + SERVER_MAC + b"\x86\xdd" + buildHeader(src, dst, 6, len(tcp)) + tcp
        )
        frames = self.b.link.frames
        self.assertTrue(all(len(f) <= 1514 for f in frames))
        joined = b"".join(parseTCP(parseIPv6(f[14:])[1], src, dst).payload for f in frames)
        self.assertEqual(joined, payload)
        self.assertEqual(self.stack.counters.ethernet.segmented, 1)

    def test_oversizeNonTCPDropped(self):
        """
        An oversize frame that is not TCP cannot be cut and is counted
        C{ethernet.tooBigForLink}.
        """
        frame = self.b.mac + self.a.mac + b"\x08\x00" + bytes(3000)
        self.a.send(frame)
        self.assertEqual(self.b.link.frames, [])
        self.assertEqual(self.stack.counters.ethernet.tooBigForLink, 1)


class FrameObserver:
    """
    Keeps every frame a switch shows it.
    """

    def __init__(self):
        self.frames = []

    def frameObserved(self, frame):
        self.frames.append(bytes(frame))


class FramePathTests(SynchronousTestCase):
    """
    Every frame a guest sends and every frame vpnkit or another guest sends
    it passes through the guest's switch port, where observers see it.
    """

    def test_observerSeesEverything(self):
        """
        Across ARP, ICMP echo, DHCP, UDP to a closed gateway port (ICMP
        back), guest-to-guest unicast, a broadcast flood and a TCP
        connection to the host, an observer sees exactly the frames the
        guests sent plus exactly the frames their links were handed, no
        more and no fewer.
        """
        from tests.helpers import (
            GATEWAY_IP,
            REMOTE_IP,
            buildARPRequest,
            buildDHCP,
            buildICMPEcho,
            buildIPv4,
            buildUDP,
            makeStack,
        )
        from vpnkit.wire.dhcp import DHCPDISCOVER
        from vpnkit.wire.ipv4 import PROTO_TCP
        from vpnkit.wire.tcp import SYN, Segment, TCPOptions, emitTCP

        stack, (a, b) = makeStack(2)
        observer = FrameObserver()
        stack.switch.addObserver(observer)
        sent = [
            buildARPRequest(a.mac, a.ip, GATEWAY_IP),
            buildICMPEcho(a.mac, a.ip, GATEWAY_IP),
            buildDHCP(b.mac, DHCPDISCOVER),
            buildUDP(a.mac, a.ip, 5000, GATEWAY_IP, 9, b"x"),
            buildUDP(a.mac, a.ip, 5000, b.ip, 7, b"to b", dstMAC=b.mac),
            buildUDP(b.mac, b.ip, 68, bytes([255] * 4), 999, b"everyone", dstMAC=BROADCAST_MAC),
            buildIPv4(
                a.mac,
                a.ip,
                REMOTE_IP,
                PROTO_TCP,
                emitTCP(Segment(40000, 80, 1, 0, SYN, 65535, TCPOptions(mss=1460)), a.ip, REMOTE_IP),
            ),
        ]
        guestOf = {bytes(a.mac): a, bytes(b.mac): b}
        for frame in sent:
            guestOf[frame[6:12]].send(frame)
        stack.hostNetwork.succeed()
        delivered = a.takeFrames() + b.takeFrames()
        self.assertGreaterEqual(len(delivered), 7)
        self.assertEqual(sorted(observer.frames), sorted(sent + delivered))

    def test_removeObserver(self):
        """
        A removed observer sees nothing more.
        """
        from tests.helpers import GATEWAY_IP, buildICMPEcho, makeStack

        stack, (a,) = makeStack(1)
        observer = FrameObserver()
        stack.switch.addObserver(observer)
        stack.switch.removeObserver(observer)
        a.send(buildICMPEcho(a.mac, a.ip, GATEWAY_IP))
        self.assertEqual(len(a.takeFrames()), 1)
        self.assertEqual(observer.frames, [])

    def test_oneCallSite(self):
        """
        Exactly one place in vpnkit's server code hands a frame to a link:
        L{SwitchPort._deliver}.  (The bridge tool's own client links are
        not the switch's.)
        """
        import ast
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent / "vpnkit"
        sites = []
        for path in sorted(root.rglob("*.py")):
            if "tools" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef):
                    for inner in ast.walk(node):
                        if (
                            isinstance(inner, ast.Call)
                            and isinstance(inner.func, ast.Attribute)
                            and inner.func.attr == "sendFrame"
                        ):
                            sites.append(f"{path.relative_to(root)}:{node.name}")
        self.assertEqual(sites, ["protocols/switch.py:_deliver"])


    def test_oneCallSiteForParts(self):
        """
        Exactly one place hands a link a frame in parts:
        L{SwitchPort._deliverParts}.
        """
        import ast
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent / "vpnkit"
        sites = []
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef):
                    for inner in ast.walk(node):
                        if (
                            isinstance(inner, ast.Call)
                            and isinstance(inner.func, ast.Attribute)
                            and inner.func.attr == "sendFrameParts"
                        ):
                            sites.append(f"{path.relative_to(root)}:{node.name}")
        self.assertEqual(sites, ["protocols/switch.py:_deliverParts"])


@implementer(IChecksumOffloadLink)
class OffloadRecorder(FrameRecorder):
    """
    A L{FrameRecorder} for a link with checksum offload, keeping the parts
    it is handed as they are.
    """

    checksumOffload = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.parts = []

    def sendFrameParts(self, head, payload, checksumStart, checksumOffset):
        self.parts.append((head, payload, checksumStart, checksumOffset))


class PartialChecksumTests(SwitchTestMixin, SynchronousTestCase):
    """
    L{SwitchPort.sendPayload} with a checksum left partial: handed on in
    parts to a link whose guest's kernel completes it, completed here for
    any other link, and whenever frames are observed.
    """

    def setUp(self):
        super().setUp()
        self.offload = OffloadRecorder("offload", 14 + 0xFFFF)
        self.offloadPort = self.switch.attach(self.offload, self.pool.ephemeralLease(), MAC_A)
        self.plain, self.plainPort = self.plug("plain", MAC_B)

    def segment(self, size):
        """
        The IPv4 and TCP headers (the checksum partial) and the payload (a
        view of a larger buffer) of a segment, and the same datagram with
        its checksum complete.
        """
        from vpnkit.wire.ipv4 import buildHeader
        from vpnkit.wire.tcp import ACK, emitTCPHeader

        buffer = bytes(i % 241 for i in range(size + 10))
        payload = memoryview(buffer)[5 : 5 + size]
        seg = Segment(80, 40000, 7, 9, ACK, 100, payload=payload)
        tcp = emitTCPHeader(seg, REMOTE_IP, GATEWAY_IP, partial=True)
        ip = buildHeader(REMOTE_IP, GATEWAY_IP, PROTO_TCP, len(tcp) + size)
        return ip + tcp, payload, ip + emitTCP(seg, REMOTE_IP, GATEWAY_IP)

    def test_interface(self):
        """
        The test's offload link provides L{IChecksumOffloadLink}.
        """
        self.assertTrue(verifyObject(IChecksumOffloadLink, self.offload))

    def test_partsToOffloadLink(self):
        """
        A link with checksum offload is handed the headers, joined behind
        the Ethernet header, and the very payload object given, with where
        the checksum starts in the frame.
        """
        header, payload, _ = self.segment(3000)
        self.assertTrue(self.offloadPort.sendPayload(b"\x08\x00", header, payload, (20, 16)))
        [(head, sent, start, offset)] = self.offload.parts
        self.assertEqual(head, MAC_A + SERVER_MAC + b"\x08\x00" + header)
        self.assertIs(sent, payload)
        self.assertEqual((start, offset), (34, 16))
        self.assertEqual(self.offload.frames, [])

    def test_completedForPlainLink(self):
        """
        Any other link gets one whole frame, its checksum completed.
        """
        header, payload, complete = self.segment(1400)
        self.assertTrue(self.plainPort.sendPayload(b"\x08\x00", header, payload, (20, 16)))
        self.assertEqual(self.plain.frames, [MAC_B + SERVER_MAC + b"\x08\x00" + complete])

    def test_completedWhileObserved(self):
        """
        While frames are observed, even a link with offload gets whole
        frames with complete checksums, the ones the observer sees.
        """
        observer = FrameObserver()
        self.switch.addObserver(observer)
        header, payload, complete = self.segment(1400)
        self.offloadPort.sendPayload(b"\x08\x00", header, payload, (20, 16))
        frame = MAC_A + SERVER_MAC + b"\x08\x00" + complete
        self.assertEqual((self.offload.parts, self.offload.frames, observer.frames), ([], [frame], [frame]))

    def test_completedBeyondLink(self):
        """
        A frame larger than even the offload link takes is completed and
        cut like any whole frame.
        """
        self.offloadPort.maxFrame = 1514
        header, payload, _ = self.segment(3000)
        self.offloadPort.sendPayload(b"\x08\x00", header, payload, (20, 16))
        self.assertEqual(self.offload.parts, [])
        self.assertEqual(len(self.offload.frames), 3)
        self.assertEqual(self.counters.ethernet.segmented, 1)

    def test_detached(self):
        """
        Nothing reaches the link of a detached port.
        """
        self.switch.detach(self.offloadPort)
        header, payload, _ = self.segment(100)
        self.offloadPort.sendPayload(b"\x08\x00", header, payload, (20, 16))
        self.assertEqual((self.offload.parts, self.offload.frames), ([], []))

class BindingTests(SynchronousTestCase):
    """
    Each port is bound to its guest's MAC and leased address: a guest
    cannot pass itself off as another guest or as the gateway, whether its
    frame is for vpnkit, switched to one guest or flooded to all.
    """

    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2)
        self.counters = self.stack.counters

    def assertDropped(self, ethernet=0, arp=0, ipv4=0, port=None):
        """
        Nobody received anything, and the drops are counted in total and
        on B's port (or C{port}).
        """
        self.assertEqual((self.a.takeFrames(), self.b.takeFrames()), ([], []))
        self.assertEqual(
            (
                self.counters.ethernet.spoofedSource,
                self.counters.arp.spoofedSender,
                self.counters.ipv4.spoofedSource,
            ),
            (ethernet, arp, ipv4),
        )
        port = port or self.b.port
        self.assertEqual(
            (port.spoofedMAC, port.spoofedARP, port.spoofedIP), (ethernet, arp, ipv4)
        )

    def test_otherGuestsMAC(self):
        """
        B pinging the gateway with A's MAC and address: dropped at B's
        port, so A gets no reply it never asked for.
        """
        self.b.send(buildICMPEcho(self.a.mac, self.a.ip, GATEWAY_IP))
        self.assertDropped(ethernet=1)
        self.assertEqual(self.counters.icmp.echoRequests, 0)

    def test_otherGuestsAddressPing(self):
        """
        B pinging the gateway from A's address with its own MAC: dropped,
        A gets no echo reply.
        """
        self.b.send(buildICMPEcho(self.b.mac, self.a.ip, GATEWAY_IP))
        self.assertDropped(ipv4=1)
        self.assertEqual(self.counters.icmp.echoRequests, 0)

    def test_otherGuestsAddressSYN(self):
        """
        A SYN from A's address sent by B dials nothing, and A gets no
        SYN-ACK.
        """
        from vpnkit.wire.ipv4 import PROTO_TCP

        syn = emitTCP(Segment(40000, 80, 1, 0, SYN, 65535, TCPOptions(mss=1460)), self.a.ip, REMOTE_IP)
        self.b.send(buildIPv4(self.b.mac, self.a.ip, REMOTE_IP, PROTO_TCP, syn))
        self.assertEqual(self.stack.hostNetwork.connects, [])
        self.assertDropped(ipv4=1)

    def test_otherGuestsAddressUDP(self):
        """
        A UDP datagram from A's address sent by B opens no NAT mapping for
        A.
        """
        self.b.send(buildUDP(self.b.mac, self.a.ip, 5000, REMOTE_IP, 53, b"q"))
        self.assertEqual(self.stack.sockets.opened, [])
        self.assertEqual(len(self.stack.udpNAT.flows), 0)
        self.assertDropped(ipv4=1)

    def test_gatewayImpersonatedWithServerMAC(self):
        """
        B sending A a datagram from the gateway's address and vpnkit's MAC:
        never reaches A.
        """
        self.b.send(buildUDP(SERVER_MAC, GATEWAY_IP, 53, self.a.ip, 5000, b"forged", dstMAC=self.a.mac))
        self.assertDropped(ethernet=1)

    def test_gatewayAddressSwitched(self):
        """
        B sending A a datagram from the gateway's address with its own MAC
        (switched straight to A's MAC): dropped.
        """
        self.b.send(buildUDP(self.b.mac, GATEWAY_IP, 53, self.a.ip, 5000, b"forged", dstMAC=self.a.mac))
        self.assertDropped(ipv4=1)

    def test_forgedBroadcast(self):
        """
        A broadcast from another address is flooded to nobody.
        """
        self.b.send(buildUDP(self.b.mac, self.a.ip, 68, BROADCAST_IP, 999, b"x", dstMAC=BROADCAST_MAC))
        self.assertDropped(ipv4=1)

    def test_gratuitousARPForGateway(self):
        """
        B's gratuitous ARP "192.168.65.1 is-at B" is flooded to nobody (A's
        cache is not poisoned).
        """
        self.b.send(buildARPReply(self.b.mac, GATEWAY_IP, BROADCAST_MAC, GATEWAY_IP))
        self.b.send(buildARPRequest(self.b.mac, GATEWAY_IP, GATEWAY_IP))
        self.assertDropped(arp=2)

    def test_arpForOtherGuest(self):
        """
        B claiming A's address by ARP, even to A alone, is dropped.
        """
        self.b.send(buildARPRequest(self.b.mac, self.a.ip, self.a.ip, dstMAC=self.a.mac))
        self.assertDropped(arp=1)

    def test_arpOtherHardwareAddress(self):
        """
        An ARP packet whose sender hardware address is not the port's MAC
        ("my address is at A's MAC") is dropped.
        """
        frame = bytearray(buildARPReply(self.b.mac, self.b.ip, BROADCAST_MAC, self.b.ip))
        frame[22:28] = self.a.mac
        self.b.send(bytes(frame))
        self.assertDropped(arp=1)

    def test_arpProbe(self):
        """
        An ARP probe (sender 0.0.0.0, RFC 5227) is allowed: flooded, and
        nobody answers for the prober's own address.
        """
        probe = buildARPRequest(self.b.mac, ZERO_IP, self.b.ip)
        self.b.send(probe)
        self.assertEqual(self.a.takeFrames(), [probe])
        self.assertEqual(self.counters.arp.spoofedSender, 0)

    def test_dhcpFromZero(self):
        """
        DHCP from 0.0.0.0 to the limited broadcast (a client with no
        address yet) is allowed.
        """
        self.b.send(buildDHCP(self.b.mac, DHCPDISCOVER))
        self.assertEqual(self.counters.dhcp.offer, 1)
        self.assertEqual(len(self.a.takeFrames()), 1)
        self.assertEqual(self.counters.ipv4.spoofedSource, 0)

    def test_dhcpRenewFromOldAddress(self):
        """
        A DHCP REQUEST from an address the guest no longer holds (renewing
        a lease from before vpnkit restarted) still reaches the server,
        which NAKs it; anything else from that address is dropped, even a
        fragment whose data looks like the DHCP port.
        """
        from vpnkit.wire.ipv4 import PROTO_UDP

        old = ip("192.168.65.99")
        self.b.send(
            buildDHCP(self.b.mac, DHCPREQUEST, ciaddr=old, src=old, dst=GATEWAY_IP, dstMAC=SERVER_MAC)
        )
        self.assertEqual(self.counters.dhcp.nak, 1)
        self.assertEqual(len(self.b.takeFrames()), 1)
        self.a.takeFrames()
        fragment = b"\x00\x44\x00\x43" + bytes(12)
        self.b.send(buildIPv4(self.b.mac, old, GATEWAY_IP, PROTO_UDP, fragment, flags=0, fragmentOffset=8))
        self.assertDropped(ipv4=1)

    def test_dhcpForOtherClient(self):
        """
        A DHCP message naming another guest's MAC as the client (chaddr),
        from B's own address or from 0.0.0.0, is dropped: B cannot renew,
        release or get NAKed A's lease.
        """
        self.b.send(
            buildDHCP(self.b.mac, DHCPREQUEST, chaddr=self.a.mac, ciaddr=ip("192.168.65.99"),
                      src=self.b.ip, dst=GATEWAY_IP, dstMAC=SERVER_MAC)
        )  # fmt: skip
        self.b.send(buildDHCP(self.b.mac, DHCPDISCOVER, chaddr=self.a.mac))
        self.assertDropped(ipv4=2)
        self.assertEqual(self.counters.dhcp.received, 0)

    def test_zeroSourceUnicast(self):
        """
        0.0.0.0 to anything but the limited broadcast is dropped.
        """
        self.b.send(buildICMPEcho(self.b.mac, ZERO_IP, GATEWAY_IP))
        self.assertDropped(ipv4=1)

    def test_guestsStillTalk(self):
        """
        Guests reach each other as before: ARP between them, unicast to
        the other's MAC, broadcast, and datagrams routed through the
        gateway's MAC.
        """
        request = buildARPRequest(self.a.mac, self.a.ip, self.b.ip)
        self.a.send(request)
        self.assertEqual(self.b.takeFrames(), [request])
        [answer] = self.a.takeFrames()
        self.assertEqual(parseARPFrame(answer)[1].sha, self.b.mac)

        reply = buildARPReply(self.b.mac, self.b.ip, self.a.mac, self.a.ip)
        self.b.send(reply)
        self.assertEqual(self.a.takeFrames(), [reply])
        direct = buildUDP(self.a.mac, self.a.ip, 1, self.b.ip, 2, b"direct", dstMAC=self.b.mac)
        self.a.send(direct)
        self.assertEqual(self.b.takeFrames(), [direct])
        flood = buildUDP(self.b.mac, self.b.ip, 1, BROADCAST_IP, 2, b"all", dstMAC=BROADCAST_MAC)
        self.b.send(flood)
        self.assertEqual(self.a.takeFrames(), [flood])
        self.a.send(buildUDP(self.a.mac, self.a.ip, 1, self.b.ip, 2, b"routed"))
        [routed] = self.b.takeFrames()
        self.assertEqual(routed[-6:], b"routed")
        self.assertEqual(self.counters.ipv4.forwarded, 1)
        self.assertEqual(nonZeroCounters(self.counters).get("ethernet.spoofedSource"), None)
        self.assertEqual(
            (self.counters.arp.spoofedSender, self.counters.ipv4.spoofedSource), (0, 0)
        )

    def test_learnedMACBound(self):
        """
        A port that learns its MAC (QEMU) is bound to it from then on.
        """
        q = attachGuest(self.stack, 3, learnMAC=True)
        q.send(buildICMPEcho(LEARNED, q.ip, GATEWAY_IP))
        self.assertEqual(len(q.takeFrames()), 1)
        q.send(buildICMPEcho(MAC_C, q.ip, GATEWAY_IP))
        self.assertEqual(q.takeFrames(), [])
        self.assertEqual((q.port.spoofedMAC, self.counters.ethernet.spoofedSource), (1, 1))

    def test_serverMACNotLearned(self):
        """
        A port cannot learn vpnkit's own MAC; its frames from that MAC are
        dropped.
        """
        q = attachGuest(self.stack, 3, learnMAC=True)
        q.send(buildUDP(SERVER_MAC, GATEWAY_IP, 53, self.a.ip, 5000, b"forged", dstMAC=self.a.mac))
        self.assertIsNone(q.port.mac)
        self.assertDropped(ethernet=1, port=q.port)

    def test_stats(self):
        """
        The drops of each port appear with it in the stack's stats.
        """
        self.b.send(buildICMPEcho(self.b.mac, self.a.ip, GATEWAY_IP))
        self.b.send(buildICMPEcho(self.a.mac, self.b.ip, GATEWAY_IP))
        self.b.send(buildARPRequest(self.b.mac, GATEWAY_IP, GATEWAY_IP))
        guests = self.stack.stats()["guests"]
        self.assertEqual(
            [g["dropped"] for g in guests],
            [
                {"spoofedMAC": 0, "spoofedARP": 0, "spoofedIP": 0},
                {"spoofedMAC": 1, "spoofedARP": 1, "spoofedIP": 1},
            ],
        )
        self.assertEqual(guests[1]["mac"], "02:50:00:00:00:02")


class IPv6BindingTests(SynchronousTestCase):
    """
    IPv6 sources: what a guest may use, what its port learns, and the
    Neighbor Advertisements that would take another's address.
    """

    def setUp(self):
        from tests.ipv6helpers import GATEWAY6, ip6

        self.ip6 = ip6
        self.gateway = GATEWAY6
        self.stack, (self.a, self.b) = makeStack(2)
        self.counters = self.stack.counters
        self.switch = self.stack.switch

    def sendFrom(self, guest, src, dst=None):
        from tests.ipv6helpers import buildIPv6

        guest.send(buildIPv6(guest.mac, src, dst or self.gateway, 59, b""))

    def test_learned(self):
        """
        A link-local or in-prefix source is learned on the port and finds
        it; the unspecified address is let through, not learned.
        """
        from vpnkit.wire.ipv6 import linkLocalAddress

        link = linkLocalAddress(self.a.mac)
        address = self.ip6("fd00:65::a")
        for src in (link, address, bytes(16)):
            self.sendFrom(self.a, src)
        self.assertEqual(list(self.a.port.ipv6), [link, address])
        self.assertIs(self.switch.portForIP(address), self.a.port)
        self.assertEqual(self.counters.ipv6.received, 3)
        self.assertTrue(self.a.port.speaksIPv6)
        self.assertFalse(self.b.port.speaksIPv6)

    def test_spoofed(self):
        """
        Another port's address, one of vpnkit's, or an address outside the
        prefix and link-local scope is dropped and counted.
        """
        self.sendFrom(self.b, self.ip6("fd00:65::b"))
        for src in ("fd00:65::b", "fd00:65::1", "fd00:65::2", "2001:db8::1", "::1"):
            self.sendFrom(self.a, self.ip6(src))
        self.sendFrom(self.a, self.stack.config.ipv6.routerLinkLocalPacked)
        self.assertEqual(self.a.port.spoofedIP, 6)
        self.assertEqual(self.counters.ipv6.spoofedSource, 6)
        self.assertEqual(self.a.port.ipv6, {})

    def test_bounded(self):
        """
        A port holds at most 16 addresses; the oldest is forgotten.
        """
        from vpnkit.protocols.switch import MAX_IPV6_PER_PORT

        addresses = [self.ip6(f"fd00:65::100:{n:x}") for n in range(MAX_IPV6_PER_PORT + 2)]
        for address in addresses:
            self.sendFrom(self.a, address)
        self.assertEqual(list(self.a.port.ipv6), addresses[2:])
        self.assertIsNone(self.switch.portForIP(addresses[0]))
        self.sendFrom(self.b, addresses[0])
        self.assertIs(self.switch.portForIP(addresses[0]), self.b.port)

    def test_advertisementForOther(self):
        """
        A Neighbor Advertisement claiming another guest's address (or
        vpnkit's) is dropped; one for the guest's own teaches it.
        """
        from vpnkit.wire.icmpv6 import NA_OVERRIDE, NeighborAdvertisement

        from tests.ipv6helpers import buildICMPv6

        self.sendFrom(self.b, self.ip6("fd00:65::b"))
        source = self.ip6("fd00:65::a")
        for target in ("fd00:65::b", "fd00:65::1", "fd00:65::c"):
            advertisement = NeighborAdvertisement(self.ip6(target), NA_OVERRIDE)
            self.a.send(buildICMPv6(self.a.mac, source, self.ip6("ff02::1"), advertisement))
        self.assertEqual(self.counters.ipv6.spoofedNDP, 2)
        self.assertIs(self.switch.portForIP(self.ip6("fd00:65::c")), self.a.port)

    def test_detachForgets(self):
        """
        A detached port's addresses are free again.
        """
        address = self.ip6("fd00:65::a")
        self.sendFrom(self.a, address)
        self.stack.guests.detach(self.a.port)
        self.assertIsNone(self.switch.portForIP(address))
        self.sendFrom(self.b, address)
        self.assertIs(self.switch.portForIP(address), self.b.port)

    def test_stableAddressReserved(self):
        """
        From attach on, the stable address of a port's lease (the one
        DHCPv6 hands its guest: fd00:65::3 for the first) finds the port
        before the guest has sent from it, another guest may not use it,
        and detach frees it.
        """
        stable = self.ip6("fd00:65::3")
        self.assertEqual(self.a.ip, bytes([192, 168, 65, 3]))
        self.assertEqual(self.a.port.ipv6Lease, stable)
        self.assertIs(self.switch.portForIP(stable), self.a.port)
        self.sendFrom(self.b, stable)
        self.assertEqual(self.b.port.spoofedIP, 1)
        self.sendFrom(self.a, stable)
        self.assertEqual(self.a.port.spoofedIP, 0)
        self.stack.guests.detach(self.a.port)
        self.assertIsNone(self.switch.portForIP(stable))

    def test_ipv6Off(self):
        """
        With IPv6 off, IPv6 frames are counted and dropped, unchecked.
        """
        stack, (guest,) = makeStack(1, ipv6Prefix=None)
        from tests.ipv6helpers import buildIPv6

        guest.send(buildIPv6(guest.mac, self.ip6("2001:db8::1"), self.gateway, 59, b""))
        self.assertEqual(stack.counters.ethernet.ipv6, 1)
        self.assertEqual((guest.port.spoofedIP, guest.port.ipv6), (0, {}))
