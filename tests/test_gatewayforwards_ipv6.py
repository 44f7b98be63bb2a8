"""
Tests for IPv6 in L{vpnkit.gatewayforwards}: IPv6 host (internal)
addresses in the flags and the file, and forwards reached on the gateway's
IPv6 addresses (the version-neutral UDP and TCP layers with recorders and
fake host sockets).
"""

import socket

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import ConfigError, StackConfig
from vpnkit.counters import StackCounters
from vpnkit.gatewayforwards import (
    GatewayForward,
    GatewayForwardRoute,
    GatewayForwardTable,
    GatewayUDPForwards,
    parseForwardsFlag,
    parseForwardsJSON,
)
from vpnkit.protocols.tcp.layer import Flow
from vpnkit.protocols.udp import UDPLayer, UDPSender
from vpnkit.wire.ipv4 import IPv4Header, packIP
from vpnkit.wire.ipv6 import IPv6Header, packIPv6
from vpnkit.wire.udp import emitUDP, parseUDP

from tests.fakesockets import FakeDatagramSockets
from tests.helpers import FakeHostNetwork, SenderRecorder

CONFIG = StackConfig()
GUEST6 = packIPv6("fd00:65::3")
GATEWAY6 = packIPv6("fd00:65::1")
ROUTER6 = CONFIG.ipv6.routerLinkLocalPacked
GUEST4 = packIP("192.168.65.3")
GATEWAY4 = packIP("192.168.65.1")
PROTO_UDP = 17


class ParseIPv6Tests(SynchronousTestCase):
    def test_flag(self):
        """
        An IPv6 host address goes in brackets in C{lport:[ip]:rport}, and
        is kept in canonical form.
        """
        self.assertEqual(
            parseForwardsFlag("53:[0:0::1]:5353,80:127.0.0.1:8080", "udp", "--udpv4-forwards"),
            [GatewayForward("udp", 53, "::1", 5353), GatewayForward("udp", 80, "127.0.0.1", 8080)],
        )

    def test_flagErrors(self):
        """
        An unbracketed IPv6 address is the reference's parse error; an
        address with a zone index is refused.
        """
        e = self.assertRaises(ConfigError, parseForwardsFlag, "53:::1:5353", "udp", "--udpv4-forwards")
        self.assertIn("--udpv4-forwards: Failed to parse forwards: expected", str(e))
        e = self.assertRaises(
            ConfigError, parseForwardsFlag, "53:[fe80::1%lo]:5353", "udp", "--udpv4-forwards"
        )
        self.assertIn("zone", str(e))

    def test_json(self):
        """
        The file's C{internal_ip} may be IPv6.
        """
        text = '[{"protocol":"tcp","external_port":80,"internal_ip":"::1","internal_port":8080}]'
        self.assertEqual(parseForwardsJSON(text), [GatewayForward("tcp", 80, "::1", 8080)])


class TCPRouteIPv6Tests(SynchronousTestCase):
    """
    L{GatewayForwardRoute} takes connections to the gateway's IPv4 and
    IPv6 addresses, and dials IPv6 host addresses.
    """

    def setUp(self):
        self.network = FakeHostNetwork()
        table = GatewayForwardTable([GatewayForward("tcp", 8888, "::1", 9999)])
        self.route = GatewayForwardRoute(CONFIG, table, self.network)

    def test_ipv6Gateway(self):
        """
        A guest's connection to the IPv6 gateway's forwarded port is
        dialled to the IPv6 host address; the IPv4 gateway's too.
        """
        for guest, gateway in ((GUEST6, GATEWAY6), (GUEST4, GATEWAY4)):
            self.assertIsNotNone(self.route.route(Flow(guest, 40000, gateway, 8888)))
        self.assertEqual(
            [(p.host, p.port) for p in self.network.connects], [("::1", 9999), ("::1", 9999)]
        )

    def test_otherAddresses(self):
        """
        Other addresses and ports are not the route's.
        """
        self.assertIsNone(self.route.route(Flow(GUEST6, 40000, packIPv6("2001:db8::1"), 8888)))
        self.assertIsNone(self.route.route(Flow(GUEST6, 40000, GATEWAY6, 8889)))

    def test_ipv6Off(self):
        """
        With IPv6 off only the IPv4 gateway is the route's.
        """
        table = GatewayForwardTable([GatewayForward("tcp", 8888, "127.0.0.1", 9999)])
        route = GatewayForwardRoute(StackConfig(ipv6Prefix=None), table, self.network)
        self.assertIsNone(route.route(Flow(GUEST6, 40000, GATEWAY6, 8888)))
        self.assertIsNotNone(route.route(Flow(GUEST4, 40000, GATEWAY4, 8888)))


class UDPForwardIPv6Tests(SynchronousTestCase):
    """
    L{GatewayUDPForwards} behind the version-neutral L{UDPLayer}.
    """

    def setUp(self):
        self.ip = SenderRecorder()
        self.sockets = FakeDatagramSockets()
        self.counters = StackCounters()
        self.clock = task.Clock()
        self.table = GatewayForwardTable(
            [GatewayForward("udp", 53, "::1", 5353), GatewayForward("udp", 123, "127.0.0.1", 1123)]
        )
        sender = UDPSender(self.ip, self.counters)
        self.forwards = GatewayUDPForwards(
            CONFIG, self.table, sender, self.sockets, self.clock, self.counters
        )
        self.layer = UDPLayer(
            CONFIG, self.ip, self.counters, gatewayForwards=self.forwards, sender=sender
        )

    def send6(self, src, dst, srcPort, dstPort, payload, hopLimit=64):
        datagram = emitUDP(srcPort, dstPort, payload, src, dst)
        header = IPv6Header(0, 0, len(datagram), PROTO_UDP, hopLimit, src, dst)
        self.layer.ipPayloadReceived(header, datagram)

    def send4(self, srcPort, dstPort, payload):
        datagram = emitUDP(srcPort, dstPort, payload, GUEST4, GATEWAY4)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST4, GATEWAY4)
        self.layer.ipPayloadReceived(header, datagram)

    def replies(self):
        result = []
        for src, dst, protocol, data, _, _ in self.ip.sent:
            udp, payload = parseUDP(data, src, dst)
            result.append((src, udp.srcPort, dst, udp.dstPort, payload))
        self.ip.sent = []
        return result

    def test_ipv6GuestToIPv6Host(self):
        """
        UDP to the IPv6 gateway's forwarded port goes out of an
        C{AF_INET6} socket to the IPv6 host address with the guest's hop
        limit; the reply comes back from the IPv6 gateway's port.
        """
        self.send6(GUEST6, GATEWAY6, 40000, 53, b"query", hopLimit=17)
        [sock] = self.sockets.live("udp")
        self.assertEqual(sock.family, socket.AF_INET6)
        [sent] = sock.takeSent()
        self.assertEqual((sent.data, sent.host, sent.port, sent.ttl), (b"query", "::1", 5353, 17))
        sock.deliver(b"answer", "::1", 5353)
        self.assertEqual(self.replies(), [(GATEWAY6, 53, GUEST6, 40000, b"answer")])

    def test_routerLinkLocal(self):
        """
        Sent to the router's link-local address, the reply comes from it.
        """
        guest = packIPv6("fe80::50:ff:fe00:1")
        self.send6(guest, ROUTER6, 40000, 53, b"query")
        [sock] = self.sockets.live("udp")
        sock.deliver(b"answer", "::1", 5353)
        self.assertEqual(self.replies(), [(ROUTER6, 53, guest, 40000, b"answer")])

    def test_ipv6GuestToIPv4Host(self):
        """
        A forward whose host address is IPv4 serves IPv6 guests through
        an C{AF_INET} socket.
        """
        self.send6(GUEST6, GATEWAY6, 40000, 123, b"ntp")
        [sock] = self.sockets.live("udp")
        self.assertEqual(sock.family, socket.AF_INET)
        sock.deliver(b"time", "127.0.0.1", 1123)
        self.assertEqual(self.replies(), [(GATEWAY6, 123, GUEST6, 40000, b"time")])

    def test_ipv4GuestToIPv6Host(self):
        """
        An IPv4 guest reaches an IPv6 host address; the reply comes from
        the IPv4 gateway.
        """
        self.send4(40000, 53, b"query")
        [sock] = self.sockets.live("udp")
        self.assertEqual(sock.family, socket.AF_INET6)
        [sent] = sock.takeSent()
        self.assertEqual((sent.host, sent.ttl), ("::1", 64))
        sock.deliver(b"answer", "::1", 5353)
        self.assertEqual(self.replies(), [(GATEWAY4, 53, GUEST4, 40000, b"answer")])

    def test_guestDetached(self):
        """
        An IPv6 guest's flows close when it goes.
        """
        self.send6(GUEST6, GATEWAY6, 40000, 53, b"query")
        self.forwards.guestDetached(GUEST6)
        self.assertEqual(self.sockets.live("udp"), [])
