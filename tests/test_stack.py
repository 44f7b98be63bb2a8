"""
Tests for L{vpnkit.stack} and L{vpnkit.counters}: the layers wired
together, guests coming and going, and whole conversations checked against
the complete counters (PyTCP's golden stats).
"""

from dataclasses import asdict, fields
from ipaddress import IPv4Address

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import StackConfig
from vpnkit.counters import (
    ARPCounters,
    CaptureCounters,
    HTTPProxyCounters,
    DHCPCounters,
    DNSCounters,
    EthernetCounters,
    ICMPCounters,
    ICMPv6Counters,
    IPv4Counters,
    IPv6Counters,
    DHCPv6Counters,
    LinkCounters,
    TCPCounters,
    StackCounters,
    UDPCounters,
)
from vpnkit.protocols.dhcp import DHCPSettings
from vpnkit.stack import Stack
from vpnkit.wire import dhcp as wire
from vpnkit.wire.arp import ARP_REPLY
from vpnkit.wire.icmp import ECHO_REPLY
from vpnkit.wire.ipv4 import PROTO_TCP

from tests.helpers import (
    GATEWAY_IP,
    REMOTE_IP,
    FrameRecorder,
    attachGuest,
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
    parseDHCPFrame,
    parseICMPFrame,
)

A = IPv4Address


class CountersTests(SynchronousTestCase):
    """
    L{StackCounters} gathers one counter group per layer.
    """

    def test_asDictHasEveryLayer(self):
        """
        C{asDict} has a group for every layer, each with every field of that
        layer's counters, all zero at first.
        """
        groups = {
            "link": LinkCounters,
            "ethernet": EthernetCounters,
            "arp": ARPCounters,
            "ipv4": IPv4Counters,
            "icmp": ICMPCounters,
            "udp": UDPCounters,
            "dhcp": DHCPCounters,
            "tcp": TCPCounters,
            "dns": DNSCounters,
            "capture": CaptureCounters,
            "http": HTTPProxyCounters,
            "ipv6": IPv6Counters,
            "icmpv6": ICMPv6Counters,
            "dhcpv6": DHCPv6Counters,
        }
        result = StackCounters().asDict()
        self.assertEqual(set(result), set(groups))
        for name, cls in groups.items():
            self.assertEqual(result[name], {f.name: 0 for f in fields(cls)}, name)

    def test_asDictIsACopy(self):
        """
        C{asDict} is a snapshot: later counting does not change it.
        """
        counters = StackCounters()
        counters.arp.requests += 1
        snapshot = counters.asDict()
        counters.arp.requests += 1
        self.assertEqual(snapshot["arp"]["requests"], 1)
        self.assertEqual(counters.asDict()["arp"]["requests"], 2)

    def test_groupsIndependent(self):
        """
        Two stacks' counters are separate objects (no global state).
        """
        self.assertIsNot(StackCounters().link, StackCounters().link)


class StackTests(SynchronousTestCase):
    """
    L{Stack} wiring and guests.
    """

    def test_reactor(self):
        """
        The stack keeps the reactor it was given.
        """
        clock = task.Clock()
        stack = Stack(StackConfig(), reactor=clock)
        self.assertIs(stack.reactor, clock)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_sharedCounters(self):
        """
        Every layer counts into the stack's one L{StackCounters}.
        """
        stack, (a,) = makeStack(1)
        a.send(b"short")
        a.send(buildARPRequest(a.mac, a.ip, GATEWAY_IP))
        a.send(buildICMPEcho(a.mac, a.ip, GATEWAY_IP))
        a.send(buildUDP(a.mac, a.ip, 5353, GATEWAY_IP, 9, b""))
        a.send(buildDHCP(a.mac, wire.DHCPINFORM))
        a.send(buildIPv4(a.mac, a.ip, REMOTE_IP, PROTO_TCP, bytes(20)))
        counters = stack.counters.asDict()
        self.assertEqual(
            [name for name, group in counters.items() if any(group.values())],
            ["link", "ethernet", "arp", "ipv4", "icmp", "udp", "dhcp", "tcp"],
        )

    def test_leaseForUUIDPreferred(self):
        """
        L{Stack.leaseForUUID} takes the preferred address packed, as the
        vmnet handshake carries it.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        lease = stack.guests.leaseForUUID("00000000-0000-0000-0000-000000000005", ip("192.168.65.250"))
        self.assertEqual(lease.ip, A("192.168.65.250"))
        self.assertFalse(lease.ephemeral)
        plain = stack.guests.leaseForUUID("00000000-0000-0000-0000-000000000006", None)
        self.assertEqual(plain.ip, A("192.168.65.3"))

    def test_attach(self):
        """
        An attached link is reachable by its lease's IP and MAC.
        """
        stack, (a,) = makeStack(1)
        self.assertIs(stack.switch.portForIP(a.ip), a.port)
        self.assertIs(stack.switch.portForMAC(a.mac), a.port)
        self.assertEqual(nonZeroCounters(stack.counters), {"link.linksOpened": 1})

    def test_detachEphemeral(self):
        """
        Detaching a link with an ephemeral lease gives its address back: the
        next guest gets it.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        lease = stack.guests.ephemeralLease()
        port = stack.guests.attach(FrameRecorder("qemu"), lease, None)
        stack.guests.detach(port)
        self.assertEqual(stack.pool.leases(), [])
        self.assertIsNone(stack.switch.portForIP(lease.ip.packed))
        self.assertEqual(stack.guests.ephemeralLease().ip, lease.ip)
        self.assertEqual(
            nonZeroCounters(stack.counters), {"link.linksOpened": 1, "link.linksClosed": 1}
        )

    def test_detachAllZeroUUID(self):
        """
        An all-zero UUID's address is given back when its link goes.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        lease = stack.guests.leaseForUUID(None)
        stack.guests.detach(stack.guests.attach(FrameRecorder("vmnet"), lease, lease.mac))
        self.assertEqual(stack.guests.leaseForUUID(None).ip, lease.ip)

    def test_detachPermanent(self):
        """
        Detaching a link with a UUID lease keeps the address for that UUID;
        the guest gets it again on reconnecting.
        """
        stack, (a,) = makeStack(1)
        stack.guests.detach(a.port)
        self.assertIsNone(stack.switch.portForIP(a.ip))
        self.assertIsNone(stack.switch.portForMAC(a.mac))
        self.assertEqual(stack.pool.leases(), [a.lease])
        self.assertEqual(stack.guests.ephemeralLease().ip, A("192.168.65.4"))
        again = attachGuest(stack, 1)
        self.assertEqual((again.ip, again.mac), (a.ip, a.mac))

    def test_detachedGuestUnreachable(self):
        """
        After detaching, frames a late link still feeds to the old port are
        ignored (nothing learnt, nothing answered), and the DHCP server no
        longer finds a client with the guest's MAC.
        """
        stack, (a, b) = makeStack(2)
        stack.guests.detach(b.port)
        b.send(buildDHCP(b.mac, wire.DHCPDISCOVER))
        self.assertEqual(b.takeFrames(), [])
        self.assertEqual(stack.counters.ethernet.received, 0)
        self.assertIsNone(stack.switch.portForMAC(b.mac))

    def test_dhcpSettings(self):
        """
        L{Stack.dhcpSettings} applies C{--domain}, then C{dhcp.json}, then
        C{localdomain}; an empty name is left out.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        self.assertEqual(stack.dhcpSettings(), DHCPSettings("localdomain", ()))
        stack.setDHCPFile(("file.example", ("a.example",)))
        self.assertEqual(stack.dhcpSettings(), DHCPSettings("file.example", ("a.example",)))
        stack.setDHCPFile(("", ()))
        self.assertEqual(stack.dhcpSettings(), DHCPSettings(None, ()))
        stack.setDHCPFile(None)
        self.assertEqual(stack.dhcpSettings(), DHCPSettings("localdomain", ()))
        cli = Stack(StackConfig(domain="cli.example"), reactor=task.Clock())
        cli.setDHCPFile(("file.example", ("a.example",)))
        self.assertEqual(cli.dhcpSettings(), DHCPSettings("cli.example", ("a.example",)))
        empty = Stack(StackConfig(domain=""), reactor=task.Clock())
        self.assertEqual(empty.dhcpSettings(), DHCPSettings(None, ()))


class GoldenCountersTests(SynchronousTestCase):
    """
    A whole conversation, checked frame by frame and against every counter.
    """

    def test_conversation(self):
        """
        Guest A brings its interface up (an IPv6 report), gets an address by
        DHCP, resolves the gateway by ARP, pings it twice, pings a remote
        host, sends a DNS query and a TCP SYN that nothing serves yet, a
        runt frame, and a frame straight to guest B.  A receives the OFFER,
        the ACK, the ARP reply and two echo replies; B receives the four
        broadcasts and the frame for it; the counters account for every
        frame.
        """
        stack, (a, b) = makeStack(2)
        mld = capturedFrames()[1]
        toB = buildEthernet(b.mac, a.mac, 0x0800, b"\x45" + bytes(11) + a.ip + bytes(25))
        sent = [
            mld,
            buildDHCP(a.mac, wire.DHCPDISCOVER, xid=1),
            buildDHCP(
                a.mac,
                wire.DHCPREQUEST,
                xid=2,
                options=((wire.OPT_REQUESTED_IP, a.ip), (wire.OPT_SERVER_ID, GATEWAY_IP)),
            ),
            buildARPRequest(a.mac, a.ip, GATEWAY_IP),
            buildICMPEcho(a.mac, a.ip, GATEWAY_IP, seq=1),
            buildICMPEcho(a.mac, a.ip, GATEWAY_IP, seq=2),
            buildICMPEcho(a.mac, a.ip, REMOTE_IP, seq=3),
            buildUDP(a.mac, a.ip, 40000, GATEWAY_IP, 53, b"\x12\x34" + bytes(10)),
            buildIPv4(a.mac, a.ip, REMOTE_IP, PROTO_TCP, bytes(20)),
            b"\x02" * 10,
            toB,
        ]
        for frame in sent:
            a.send(frame)

        offer, ack, arp, echo1, echo2 = a.takeFrames()
        self.assertEqual(parseDHCPFrame(offer)[3].messageType, wire.DHCPOFFER)
        self.assertEqual(parseDHCPFrame(ack)[3].messageType, wire.DHCPACK)
        self.assertEqual(parseARPFrame(arp)[1].op, ARP_REPLY)
        self.assertEqual(
            [(m.type, m.rest) for _, _, m in map(parseICMPFrame, [echo1, echo2])],
            [(ECHO_REPLY, b"\x12\x34\x00\x01"), (ECHO_REPLY, b"\x12\x34\x00\x02")],
        )
        self.assertEqual(b.takeFrames(), [sent[0], sent[1], sent[2], sent[3], toB])

        self.assertEqual(
            stack.counters.asDict(),
            {
                "link": {
                    "framesIn": 0,
                    "framesOut": 0,
                    "bytesIn": 0,
                    "bytesOut": 0,
                    "shortFrames": 1,
                    "oversizeFrames": 0,
                    "truncatedPrefix": 0,
                    "handshakeFailures": 0,
                    "allocationFailures": 0,
                    "txQueueFull": 0,
                    "txErrors": 0,
                    "unsupportedOffload": 0,
                    "linksOpened": 2,
                    "linksClosed": 0,
                },
                "ethernet": {
                    "received": 11,
                    "notForUs": 0,
                    "switched": 1,
                    "flooded": 4,
                    "unsupportedEthertype": 0,
                    "ipv6": 0,
                    "vlan": 0,
                    "noRoute": 0,
                    "segmented": 0,
                    "tooBigForLink": 0,
                    "spoofedSource": 0,
                },
                "arp": {
                    "requests": 1,
                    "replies": 1,
                    "malformed": 0,
                    "unknownTarget": 0,
                    "ignored": 0,
                    "spoofedSender": 0,
                },
                "ipv4": dict(asdict(IPv4Counters()), received=7, sent=4),
                "icmp": dict(
                    asdict(ICMPCounters()),
                    echoRequests=2,
                    echoReplies=2,
                    echoForwarded=1,
                    flowsOpened=1,
                ),
                "udp": dict(asdict(UDPCounters()), received=3, sent=2),
                "dns": dict(asdict(DNSCounters()), udpQueries=1, ignored=1),
                "capture": asdict(CaptureCounters()),
                "http": asdict(HTTPProxyCounters()),
                "dhcp": {
                    "received": 2,
                    "discover": 1,
                    "offer": 1,
                    "request": 1,
                    "ack": 1,
                    "nak": 0,
                    "release": 0,
                    "inform": 0,
                    "decline": 0,
                    "malformed": 0,
                    "unknownClient": 0,
                    "ignored": 0,
                },
                "tcp": dict(asdict(TCPCounters()), segmentsIn=1, malformed=1),
                # The interface's MLD report: to a group vpnkit is not in.
                "ipv6": dict(asdict(IPv6Counters()), received=1, notForUs=1),
                "icmpv6": asdict(ICMPv6Counters()),
                "dhcpv6": asdict(DHCPv6Counters()),
            },
        )


class CapturedGuestTests(SynchronousTestCase):
    """
    The frames a real Linux guest sent (C{tests/fixtures/linux-guest.pcap}),
    replayed into a stack configured with the capture's addressing plan:
    gateway 10.0.2.2 at 52:55:0a:00:02:02, the guest at 10.0.2.15.
    """

    def setUp(self):
        self.frames = capturedFrames()
        self.stack, (self.guest,) = makeStack(
            1,
            gatewayIP=A("10.0.2.2"),
            hostIP=A("10.0.2.3"),
            lowestIP=A("10.0.2.15"),
            highestIP=A("10.0.2.254"),
            serverMAC=mac("52:55:0a:00:02:02"),
        )
        self.assertEqual(self.guest.mac, mac("02:50:00:00:00:01"))
        self.assertEqual(self.guest.ip, ip("10.0.2.15"))

    def test_replay(self):
        """
        udhcpc's DISCOVER and REQUEST are answered with an OFFER and an ACK
        of 10.0.2.15; the ARP reply is byte for byte the one the capture
        holds (less its padding); the echo replies carry the very ICMP
        bytes the capture's replies do; of the IPv6 frames, the MLD reports
        are for no group vpnkit is in and the duplicate address probe for
        the guest's own address is left to the guest.
        """
        guest, frames = self.guest, self.frames
        for n in (0, 1, 2, 4, 6, 7, 8, 10, 12):
            guest.send(frames[n])
        offer, ack, arp, echo1, echo2 = guest.takeFrames()

        for frame, kind in ((offer, wire.DHCPOFFER), (ack, wire.DHCPACK)):
            eth, header, udp, message = parseDHCPFrame(frame)
            self.assertEqual((eth.dst, eth.src), (guest.mac, mac("52:55:0a:00:02:02")))
            self.assertEqual((header.src, header.dst), (ip("10.0.2.2"), ip("10.0.2.15")))
            self.assertEqual(message.messageType, kind)
            self.assertEqual(message.xid, 3400757099)
            self.assertEqual(message.yiaddr, ip("10.0.2.15"))
            self.assertEqual(message.option(wire.OPT_SERVER_ID), ip("10.0.2.2"))
            self.assertEqual(message.option(wire.OPT_ROUTER), ip("10.0.2.2"))
            self.assertEqual(message.option(wire.OPT_SUBNET_MASK), ip("255.255.255.0"))
            self.assertEqual(message.option(wire.OPT_BROADCAST), ip("10.0.2.255"))

        self.assertEqual(arp, self.frames[9][:42])
        self.assertEqual(echo1[34:], self.frames[11][34:])
        self.assertEqual(echo2[34:], self.frames[13][34:])
        self.assertEqual(echo1[:14], self.frames[11][:14])

        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {
                "link.linksOpened": 1,
                "ethernet.received": 9,
                "ipv6.received": 4,
                "ipv6.notForUs": 3,
                "icmpv6.received": 1,
                "icmpv6.neighborSolicitations": 1,
                "icmpv6.ndpNotOurs": 1,
                "arp.requests": 1,
                "arp.replies": 1,
                "ipv4.received": 4,
                "ipv4.sent": 4,
                "icmp.echoRequests": 2,
                "icmp.echoReplies": 2,
                "udp.received": 2,
                "udp.sent": 2,
                "dhcp.received": 2,
                "dhcp.discover": 1,
                "dhcp.offer": 1,
                "dhcp.request": 1,
                "dhcp.ack": 1,
            },
        )

    def test_fragmentsReassembled(self):
        """
        The three fragments of the guest's 4,000-byte datagram (to
        10.0.2.2, the capture's gateway, port 9) are reassembled; the
        gateway serves nothing there and answers ICMP port unreachable,
        quoting the reassembled datagram's header.
        """
        for frame in self.frames[65:68]:
            self.guest.send(frame)
        [frame] = self.guest.takeFrames()
        _, header, message = parseICMPFrame(frame)
        self.assertEqual((message.type, message.code), (3, 3))
        self.assertEqual(int.from_bytes(message.payload[2:4], "big"), 4028)
        self.assertEqual(self.stack.counters.ipv4.reassembled, 1)
        self.assertEqual(self.stack.counters.ipv4.fragmentsQueued, 2)


class StatsTests(SynchronousTestCase):
    """
    L{Stack.stats}: counters and live state as plain data.
    """

    def test_stats(self):
        """
        The stats hold every counter, each attached guest, and the TCP
        connections in flight and established; they serialise to JSON.
        """
        import json

        stack, (a,) = makeStack(1)
        a.send(buildIPv4(a.mac, a.ip, REMOTE_IP, PROTO_TCP, buildSYN()))
        stats = stack.stats()
        self.assertEqual(stats["counters"], stack.counters.asDict())
        self.assertEqual(
            stats["guests"],
            [
                {
                    "link": a.link.description,
                    "ip": "192.168.65.3",
                    "mac": "02:50:00:00:00:01",
                    "ipv6": {"lease": "fd00:65::3", "seen": []},
                    "dropped": {"spoofedMAC": 0, "spoofedARP": 0, "spoofedIP": 0},
                }
            ],
        )
        self.assertEqual(stats["tcp"], {"connections": [], "pending": 1})
        stack.hostNetwork.succeed()
        [connection] = stack.stats()["tcp"]["connections"]
        self.assertEqual(connection["state"], "SYN-RECEIVED")
        self.assertEqual(connection["flow"], "192.168.65.3:40000 -> 198.51.100.10:80")
        json.dumps(stack.stats())


def buildSYN():
    from vpnkit.wire.tcp import SYN, Segment, TCPOptions, emitTCP

    seg = Segment(40000, 80, 1000, 0, SYN, 64240, TCPOptions(mss=1460))
    return emitTCP(seg, ip("192.168.65.3"), REMOTE_IP)
