"""
Tests for L{vpnkit.gatewayforwards} (gateway ports forwarded to host
addresses) and for UDP flows into a guest (L{vpnkit.protocols.udp.UDPLayer.openInbound}),
through a real L{Stack} with fake host sockets and network.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import GATEWAY_IP, buildIPv4, buildUDP, makeStack, parseUDPFrame
from vpnkit.config import ConfigError
from vpnkit.gatewayforwards import (
    GatewayForward,
    GatewayForwardTable,
    parseForwardsFlag,
    parseForwardsJSON,
)
from vpnkit.wire.ipv4 import PROTO_TCP, packIP
from vpnkit.wire.tcp import SYN, Segment, TCPOptions, emitTCP


class ParseTests(SynchronousTestCase):
    def test_flag(self):
        """
        C{lport:ip:rport,...} parses into forwards of the given protocol.
        """
        self.assertEqual(
            parseForwardsFlag("8888:127.0.0.1:8888, 53:10.0.0.2:5353", "tcp", "--tcpv4-forwards"),
            [
                GatewayForward("tcp", 8888, "127.0.0.1", 8888),
                GatewayForward("tcp", 53, "10.0.0.2", 5353),
            ],
        )
        self.assertEqual(parseForwardsFlag("", "udp", "--udpv4-forwards"), [])

    def test_flagErrors(self):
        """
        A malformed entry is the reference's message, naming the flag.
        """
        e = self.assertRaises(ConfigError, parseForwardsFlag, "8888:127.0.0.1", "tcp", "--tcpv4-forwards")
        self.assertIn("--tcpv4-forwards: Failed to parse forwards: expected", str(e))
        e = self.assertRaises(ConfigError, parseForwardsFlag, "x:127.0.0.1:1", "tcp", "--tcpv4-forwards")
        self.assertIn("not a port number", str(e))
        e = self.assertRaises(ConfigError, parseForwardsFlag, "1:host:1", "udp", "--udpv4-forwards")
        self.assertIn("not an IPv4 address", str(e))

    def test_json(self):
        """
        The reference's JSON list parses; errors name the file and entry.
        """
        text = '[{"protocol":"udp","external_port":53,"internal_ip":"127.0.0.1","internal_port":64463}]'
        self.assertEqual(
            parseForwardsJSON(text, "gf.json"), [GatewayForward("udp", 53, "127.0.0.1", 64463)]
        )
        for bad, fragment in [
            ("{", "not valid JSON"),
            ("{}", "expected a JSON list"),
            ('[{"protocol":"sctp"}]', "protocol"),
            ('[{"protocol":"tcp","external_port":0,"internal_ip":"1.2.3.4","internal_port":1}]', "out of range"),
        ]:
            e = self.assertRaises(ConfigError, parseForwardsJSON, bad, "gf.json")
            self.assertIn("gf.json", str(e))
            self.assertIn(fragment, str(e))

    def test_tablePrecedence(self):
        """
        Command-line forwards come before the file's; the file can be
        replaced and removed.
        """
        table = GatewayForwardTable([GatewayForward("tcp", 80, "127.0.0.1", 8080)])
        table.setFile(
            [GatewayForward("tcp", 80, "10.0.0.1", 1), GatewayForward("udp", 80, "10.0.0.1", 2)]
        )
        self.assertEqual(table.lookup("tcp", 80).internalPort, 8080)
        self.assertEqual(table.lookup("udp", 80).internalPort, 2)
        table.setFile(None)
        self.assertIsNone(table.lookup("udp", 80))


class StackForwardTests(SynchronousTestCase):
    def setUp(self):
        self.stack, (self.guest,) = makeStack(1)

    def test_tcpForwardDialsHost(self):
        """
        A guest SYN to a forwarded gateway port is dialled to the forward's
        host address and port.
        """
        self.stack.gatewayForwards.setFile([GatewayForward("tcp", 8888, "127.0.0.1", 9999)])
        syn = Segment(40000, 8888, 1, 0, SYN, 64240, TCPOptions(mss=1460))
        g = self.guest
        g.send(buildIPv4(g.mac, g.ip, GATEWAY_IP, PROTO_TCP, emitTCP(syn, g.ip, GATEWAY_IP)))
        [pending] = self.stack.hostNetwork.connects
        self.assertEqual((pending.host, pending.port), ("127.0.0.1", 9999))

    def test_udpForwardOverridesDNS(self):
        """
        A UDP forward of port 53 takes the gateway's DNS traffic: the query
        goes to the forward's host address, and the answer comes back from
        the gateway's port 53.
        """
        self.stack.gatewayForwards.setFile([GatewayForward("udp", 53, "127.0.0.1", 5353)])
        g = self.guest
        g.send(buildUDP(g.mac, g.ip, 40000, GATEWAY_IP, 53, b"query"))
        [sock] = self.stack.sockets.live("udp")
        [sent] = sock.takeSent()
        self.assertEqual((sent.data, sent.host, sent.port), (b"query", "127.0.0.1", 5353))
        self.assertEqual(self.stack.counters.dns.udpQueries, 0)
        sock.deliver(b"answer", "127.0.0.1", 5353)
        [frame] = g.takeFrames()
        _, ip, udp, payload = parseUDPFrame(frame)
        self.assertEqual((ip.src, udp.srcPort, udp.dstPort, payload), (GATEWAY_IP, 53, 40000, b"answer"))

    def test_udpForwardFlowsExpire(self):
        """
        A forward's flow is closed after 60 s without traffic.
        """
        self.stack.gatewayForwards.setFile([GatewayForward("udp", 123, "127.0.0.1", 123)])
        g = self.guest
        g.send(buildUDP(g.mac, g.ip, 40000, GATEWAY_IP, 123, b"ntp"))
        self.assertEqual(len(self.stack.sockets.live("udp")), 1)
        self.stack.reactor.advance(61)
        self.assertEqual(self.stack.sockets.live("udp"), [])

    def test_ntpAnnouncedOnlyWithForward(self):
        """
        DHCP option 42 (NTP = gateway) appears only once UDP 123 is
        forwarded.
        """
        self.assertFalse(self.stack.dhcpSettings().ntp)
        self.stack.gatewayForwards.setFile([GatewayForward("udp", 123, "127.0.0.1", 123)])
        self.assertTrue(self.stack.dhcpSettings().ntp)


class InboundUDPTests(SynchronousTestCase):
    def test_inboundFlow(self):
        """
        A flow into the guest sends from the given address and port, and
        the guest's reply to that address reaches the flow, not the NAT.
        """
        stack, (g,) = makeStack(1)
        received = []
        alias = packIP("192.168.65.2")
        flow = stack.udp.openInbound(g.ip, 53, alias, 5555, received.append)
        flow.send(b"hello")
        [frame] = g.takeFrames()
        _, ip, udp, payload = parseUDPFrame(frame)
        self.assertEqual((ip.src, udp.srcPort, udp.dstPort, payload), (alias, 5555, 53, b"hello"))
        g.send(buildUDP(g.mac, g.ip, 53, alias, 5555, b"reply"))
        self.assertEqual(received, [b"reply"])
        self.assertEqual(stack.sockets.live("udp"), [])
        flow.close()
        g.send(buildUDP(g.mac, g.ip, 53, alias, 5555, b"late"))
        self.assertEqual(received, [b"reply"])
