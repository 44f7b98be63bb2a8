"""
Tests for the IP-version-neutral layers: TCP, UDP, the UDP NAT and the TCP
routes take IPv6 datagrams (16-byte addresses) through the same code as
IPv4 ones, and send through the one L{vpnkit.interfaces.IIPSender} and
L{vpnkit.interfaces.IICMPErrors}.  Driven with in-memory fakes and
L{task.Clock}; the IPv6 layer itself is not involved.
"""

import socket

from twisted.internet import defer, error, task
from twisted.internet.address import IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.host.proxy import HostRoute
from vpnkit.interfaces import IICMPErrors
from vpnkit.protocols.ip import Unreachable
from vpnkit.protocols.localtcp import LocalServiceRoute
from vpnkit.protocols.tcp.layer import ENETUNREACH, TCPLayer
from vpnkit.protocols.tcp.splice import GuestSide
from vpnkit.protocols.udp import UDPLayer, UDPSender
from vpnkit.protocols.udpnat import UDPNAT
from vpnkit.wire.ipv6 import IPv6Header, packIPv6
from vpnkit.wire.tcp import ACK, SYN, Segment, TCPOptions, emitTCP, parseTCP
from vpnkit.wire.udp import emitUDP, parseUDP

from tests.fakesockets import FakeDatagramSockets
from tests.helpers import SenderRecorder, ServiceRecorder
from tests.test_tcp_layer import FakeRouter, HostProtocol

CONFIG = StackConfig()
GUEST6 = packIPv6("fd00:65::3")
GATEWAY6 = packIPv6("fd00:65::1")
ALIAS6 = packIPv6("fd00:65::2")
REMOTE6 = packIPv6("2001:db8::1")
PROTO_TCP = 6
PROTO_UDP = 17


def header6(src, dst, nextHeader, payload, hopLimit=64):
    return IPv6Header(0, 0, len(payload), nextHeader, hopLimit, src, dst)


@implementer(IICMPErrors)
class ErrorsRecorder:
    def __init__(self):
        self.unreachable = []
        self.hostErrors = []

    def sendUnreachable(self, reason, header, quote):
        self.unreachable.append((reason, header, bytes(quote)))
        return True

    def sendHostError(self, error, header, quote):
        self.hostErrors.append((error, header, bytes(quote)))
        return True


class TCPOverIPv6Tests(SynchronousTestCase):
    def setUp(self):
        self.ip = SenderRecorder()
        self.errors = ErrorsRecorder()
        self.router = FakeRouter()
        self.clock = task.Clock()
        self.layer = TCPLayer(
            CONFIG, self.ip, self.errors, StackCounters(), self.router, self.clock
        )

    def syn(self):
        seg = Segment(40000, 80, 1000, 0, SYN, 64800, TCPOptions(mss=1440, sackPermitted=True))
        payload = emitTCP(seg, GUEST6, REMOTE6)
        self.layer.ipPayloadReceived(header6(GUEST6, REMOTE6, PROTO_TCP, payload), payload)

    def test_synDialsWithIPv6Flow(self):
        """
        A guest's SYN over IPv6 asks the router for a flow holding the
        16-byte addresses, printed in brackets.
        """
        self.syn()
        [(flow, _)] = self.router.requests
        self.assertEqual((flow.guestIP, flow.localIP), (GUEST6, REMOTE6))
        self.assertEqual(str(flow), "[fd00:65::3]:40000 -> [2001:db8::1]:80")

    def test_synAckFromDialledAddressWithSmallerMSS(self):
        """
        Once dialled, the SYN-ACK goes to the guest's IPv6 address from the
        one it dialled, its checksum over the IPv6 pseudo-header, with an
        MSS of the MTU less 60 (IPv6 and TCP headers); the connection's
        peer is a Twisted L{IPv6Address}.
        """
        self.syn()
        [(flow, d)] = self.router.requests
        d.callback(GuestSide(HostProtocol()))
        [(src, dst, proto, payload, _, _)] = self.ip.sent
        self.assertEqual((src, dst, proto), (REMOTE6, GUEST6, PROTO_TCP))
        seg = parseTCP(payload, src, dst)
        self.assertEqual(seg.flags, SYN | ACK)
        self.assertEqual(seg.options.mss, CONFIG.mtu - 60)
        [connection] = self.layer.connections()
        self.assertEqual(connection.getPeer(), IPv6Address("TCP", "fd00:65::3", 40000))
        self.assertEqual(connection.getHost(), IPv6Address("TCP", "2001:db8::1", 80))

    def test_unreachableDial(self):
        """
        A dial the host cannot route is reported through the ICMP errors
        with the guest's IPv6 header, as network unreachable.
        """
        self.syn()
        [(_, d)] = self.router.requests
        failure = error.ConnectError(osError=ENETUNREACH)
        d.errback(Failure(failure))
        [(reason, header, _)] = self.errors.unreachable
        self.assertEqual((reason, header.src, header.dst), (Unreachable.NETWORK, GUEST6, REMOTE6))
        self.assertEqual(self.ip.sent, [])


class EchoProtocol(DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.received = (data, addr)
        self.transport.write(data.upper(), addr)


class UDPOverIPv6Tests(SynchronousTestCase):
    def setUp(self):
        self.ip = SenderRecorder()
        self.errors = ErrorsRecorder()
        self.counters = StackCounters()
        self.layer = UDPLayer(CONFIG, self.ip, self.counters, self.errors)

    def deliver(self, src, dst, sport, dport, data, checksum=True):
        datagram = emitUDP(sport, dport, data, src, dst)
        if not checksum:
            datagram = datagram[:6] + b"\0\0" + datagram[8:]
        self.layer.ipPayloadReceived(header6(src, dst, PROTO_UDP, datagram), datagram)

    def test_zeroChecksumDropped(self):
        """
        A UDP datagram over IPv6 with checksum zero is dropped and counted
        (the checksum is mandatory over IPv6).
        """
        self.layer.listen(53, EchoProtocol())
        self.deliver(GUEST6, GATEWAY6, 5353, 53, b"q", checksum=False)
        self.assertEqual(self.counters.udp.zeroChecksum6, 1)
        self.assertEqual(self.ip.sent, [])

    def test_gatewayServiceAnswersFromIPv6Gateway(self):
        """
        A protocol listening on a gateway port gets IPv6 datagrams with the
        guest's address as text, and its reply leaves from the IPv6 gateway.
        """
        protocol = EchoProtocol()
        self.layer.listen(53, protocol)
        self.deliver(GUEST6, GATEWAY6, 5353, 53, b"query")
        self.assertEqual(protocol.received, (b"query", ("fd00:65::3", 5353)))
        [(src, dst, proto, payload, _, _)] = self.ip.sent
        self.assertEqual((src, dst, proto), (GATEWAY6, GUEST6, PROTO_UDP))
        udp, data = parseUDP(payload, src, dst)
        self.assertEqual((udp.srcPort, udp.dstPort, bytes(data)), (53, 5353, b"QUERY"))

    def test_unboundGatewayPortUnreachable(self):
        """
        A datagram to an unbound port of the IPv6 gateway is answered port
        unreachable through the ICMP errors.
        """
        self.deliver(GUEST6, GATEWAY6, 5353, 9999, b"x")
        [(reason, header, quote)] = self.errors.unreachable
        self.assertEqual((reason, header.src), (Unreachable.PORT, GUEST6))
        self.assertEqual(len(quote), 8)

    def test_servicesPerFamily(self):
        """
        A service bound for IPv4 (DHCP on 67) never sees an IPv6 datagram to
        that port, and one bound for IPv6 (DHCPv6 on 547) takes datagrams
        to the DHCPv6 servers' multicast group.
        """
        v4, v6 = ServiceRecorder(), ServiceRecorder()
        self.layer.bindService(67, v4)
        self.layer.bindService(547, v6, ipv6=True)
        self.deliver(GUEST6, GATEWAY6, 68, 67, b"dhcp")
        self.deliver(packIPv6("fe80::1"), packIPv6("ff02::1:2"), 546, 547, b"dhcpv6")
        self.assertEqual(v4.received, [])
        self.assertEqual([bytes(p) for _, _, p in v6.received], [b"dhcpv6"])


class NATOverIPv6Tests(SynchronousTestCase):
    def setUp(self):
        self.ip = SenderRecorder()
        self.errors = ErrorsRecorder()
        self.counters = StackCounters()
        self.sockets = FakeDatagramSockets()
        self.clock = task.Clock()
        self.nat = UDPNAT(
            CONFIG,
            UDPSender(self.ip, self.counters),
            self.errors,
            self.sockets,
            self.clock,
            self.counters,
        )

    def send(self, dst, dport, data=b"hello"):
        datagram = emitUDP(5000, dport, data, GUEST6, dst)
        header = header6(GUEST6, dst, PROTO_UDP, datagram, hopLimit=7)
        udp, payload = parseUDP(datagram, GUEST6, dst)
        self.nat.datagramFromGuest(header, udp, payload, datagram[:8])

    def test_hostAliasIsIPv6Loopback(self):
        """
        A datagram to the IPv6 host alias leaves an C{AF_INET6} host socket
        for C{::1} with the guest's hop limit; the reply from C{::1} comes
        back from the alias.
        """
        self.send(ALIAS6, 7)
        [sock] = self.sockets.opened
        self.assertEqual(sock.family, socket.AF_INET6)
        [sent] = sock.takeSent()
        self.assertEqual(
            (sent.data, sent.host, sent.port, sent.ttl, sent.dontFragment),
            (b"hello", "::1", 7, 7, True),
        )
        sock.deliver(b"back", "::1", 7)
        [(src, dst, _, payload, _, _)] = self.ip.sent
        self.assertEqual((src, dst), (ALIAS6, GUEST6))
        self.assertEqual(bytes(parseUDP(payload, src, dst)[1]), b"back")

    def test_remoteAndForeignFamilyReplies(self):
        """
        A remote IPv6 peer's reply comes from its own address; a source
        that is not an IPv6 address cannot reach an IPv6 guest and is
        dropped and counted.
        """
        self.send(REMOTE6, 7)
        [sock] = self.sockets.opened
        sock.deliver(b"a", "2001:db8::1", 7)
        sock.deliver(b"b", "192.0.2.1", 7)
        self.assertEqual([s for s, *_ in self.ip.sent], [REMOTE6])
        self.assertEqual(self.counters.udp.natErrorsDropped, 1)

    def test_sendErrorReported(self):
        """
        A send the host refuses at once (no IPv6 route) becomes an
        unreachable through the ICMP errors, quoting the guest's datagram.
        """
        self.send(REMOTE6, 7)
        [sock] = self.sockets.opened
        sock.sendError = OSError(101, "Network is unreachable")
        self.send(REMOTE6, 7)
        [(reason, header, _)] = self.errors.unreachable
        self.assertEqual((reason, header.dst), (Unreachable.NO_ROUTE, REMOTE6))


class RoutesOverIPv6Tests(SynchronousTestCase):
    def test_hostAliasDialsIPv6Loopback(self):
        """
        The host route dials C{::1} for the IPv6 host alias and a remote
        IPv6 address as its text.
        """
        from vpnkit.protocols.tcp.layer import Flow

        route = HostRoute(CONFIG, network=None)
        self.assertEqual(route.target(Flow(GUEST6, 1, ALIAS6, 80)), ("::1", 80))
        self.assertEqual(route.target(Flow(GUEST6, 1, REMOTE6, 80)), ("2001:db8::1", 80))

    def test_localServicesOnIPv6Gateway(self):
        """
        The gateway's own TCP services (DNS) answer on its IPv6 address,
        their protocol built for the guest's IPv6 address.
        """
        from twisted.internet.protocol import Factory, Protocol

        from vpnkit.protocols.tcp.layer import Flow

        built = []

        class Recording(Factory):
            def buildProtocol(self, addr):
                built.append(addr)
                return Protocol()

        route = LocalServiceRoute(CONFIG, {53: Recording()}, task.Clock())
        d = route.route(Flow(GUEST6, 40000, GATEWAY6, 53))
        self.assertIsInstance(d, defer.Deferred)
        self.assertEqual(built, [IPv6Address("TCP", "fd00:65::3", 40000)])
        self.assertIsNone(route.route(Flow(GUEST6, 40000, ALIAS6, 53)))
