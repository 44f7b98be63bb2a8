"""
Tests for L{vpnkit.protocols.localtcp}: the gateway's own TCP services
(DNS on port 53) spliced to guest connections, and everything else handed
to the host forwarder; DNS over TCP end to end through a whole L{Stack}.
"""

from twisted.internet.protocol import Factory, Protocol
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.interfaces import ITCPRoute, ITCPRouter
from vpnkit.protocols.dnsconfig import DNSConfig, Nameserver
from vpnkit.protocols.localtcp import LocalConnection, LocalServiceRoute
from vpnkit.protocols.tcp.splice import GuestSide
from vpnkit.protocols.tcp.layer import Flow
from vpnkit.wire.ipv4 import PROTO_TCP
from vpnkit.wire.tcp import ACK, FIN, PSH, RST, SYN, Segment, TCPOptions, emitTCP, parseTCP

from tests.helpers import GATEWAY_IP, REMOTE_IP, buildIPv4, makeStack, parseIPv4Frame
from tests.test_dns import aRecord, query


class GuestTCP:
    """
    A scripted guest TCP client, segment by segment.
    """

    def __init__(self, test, guest, dst, dport, sport=40000):
        self.test = test
        self.guest = guest
        self.dst = dst
        self.dport = dport
        self.sport = sport
        self.seq = 1000
        self.ack = 0
        self.data = b""
        self.fin = False
        self.rst = False

    def segment(self, flags, payload=b"", options=TCPOptions()):
        seg = Segment(self.sport, self.dport, self.seq, self.ack, flags, 65535, options, payload)
        segment = emitTCP(seg, self.guest.ip, self.dst)
        self.guest.send(buildIPv4(self.guest.mac, self.guest.ip, self.dst, PROTO_TCP, segment))
        self.seq += len(payload) + (1 if flags & (SYN | FIN) else 0)

    def receive(self):
        """
        Take the guest's frames: collect data, note FIN and RST, and
        acknowledge whatever needs it.

        @return: the segments received.
        """
        segments = []
        for frame in self.guest.takeFrames():
            _, header, payload = parseIPv4Frame(frame)
            if header.protocol != PROTO_TCP:
                continue
            seg = parseTCP(payload, header.src, header.dst)
            segments.append(seg)
            if seg.flags & RST:
                self.rst = True
                continue
            if seg.flags & SYN:
                self.ack = seg.seq + 1
                continue
            if seg.payload and seg.seq == self.ack:
                self.data += seg.payload
                self.ack += len(seg.payload)
            if seg.flags & FIN:
                self.fin = True
                self.ack += 1
        if segments and not self.rst and any(s.payload or s.flags & FIN for s in segments):
            self.segment(ACK)
        return segments

    def connect(self):
        self.segment(SYN, options=TCPOptions(mss=1460))
        [synAck] = self.receive()
        self.test.assertEqual(synAck.flags & (SYN | ACK), SYN | ACK)
        self.segment(ACK)

    def sendDNS(self, message):
        data = message.toStr()
        self.segment(ACK | PSH, len(data).to_bytes(2, "big") + data)

    def answers(self):
        """
        The DNS messages received so far (length-prefixed), parsed.
        """
        result, data = [], self.data
        while len(data) >= 2:
            n = int.from_bytes(data[:2], "big")
            if len(data) < 2 + n:
                break
            message = dns.Message()
            message.fromStr(data[2 : 2 + n])
            result.append(message)
            data = data[2 + n :]
        return result


class DispatchTests(SynchronousTestCase):
    """
    The stack's router chooses between local services and the host.
    """

    def setUp(self):
        self.stack, (self.a,) = makeStack(1)

    def test_interface(self):
        """
        The router provides L{ITCPRouter}, the local services route
        L{ITCPRoute}.
        """
        self.assertTrue(verifyObject(ITCPRouter, self.stack.tcpRouter))
        self.assertTrue(verifyObject(ITCPRoute, self.stack.localServices))

    def test_local(self):
        """
        Port 53 of the gateway gets a L{GuestSide} spliced to a
        L{LocalConnection} at once, without dialling the host.
        """
        flow = Flow(self.a.ip, 40000, GATEWAY_IP, 53)
        result = self.successResultOf(self.stack.tcpRouter.connectionRequested(flow))
        self.assertIsInstance(result, GuestSide)
        self.assertIsInstance(result.host, LocalConnection)
        self.assertEqual(self.stack.hostNetwork.connects, [])

    def test_elsewhere(self):
        """
        Port 53 of a remote host goes to the host forwarder, which dials
        it.
        """
        flow = Flow(self.a.ip, 40000, REMOTE_IP, 53)
        self.stack.tcpRouter.connectionRequested(flow)
        [connect] = self.stack.hostNetwork.connects
        self.assertEqual((connect.host, connect.port), ("198.51.100.10", 53))

    def test_otherGatewayPort(self):
        """
        Another port of the gateway is refused (no route takes it), and
        the guest gets RST.
        """
        client = GuestTCP(self, self.a, GATEWAY_IP, 8080)
        client.segment(SYN, options=TCPOptions(mss=1460))
        [reply] = client.receive()
        self.assertTrue(reply.flags & RST)

    def test_refusingFactory(self):
        """
        A service factory that builds no protocol refuses the connection.
        """

        class Refusing(Factory):
            def buildProtocol(self, addr):
                return None

        route = LocalServiceRoute(self.stack.config, {7: Refusing()}, self.stack.reactor)
        d = route.route(Flow(self.a.ip, 1, GATEWAY_IP, 7))
        from twisted.internet.error import ConnectionRefusedError as Refused

        self.failureResultOf(d, Refused)


class _Recorder(Protocol):
    def __init__(self):
        self.data = b""
        self.lost = None

    def dataReceived(self, data):
        self.data += data
        self.transport.write(data.upper())

    def connectionLost(self, reason):
        self.lost = reason


class LocalConnectionTests(SynchronousTestCase):
    """
    A plain protocol served locally, spliced to a guest connection.
    """

    def setUp(self):
        self.stack, (self.a,) = makeStack(1)
        self.protocol = _Recorder()
        factory = Factory.forProtocol(lambda: self.protocol)
        self.stack.localServices.serve(7, factory)
        self.client = GuestTCP(self, self.a, GATEWAY_IP, 7)
        self.client.connect()

    def test_bytesBothWays(self):
        """
        The guest's bytes reach the protocol; what it writes reaches the
        guest; its transport names both ends.
        """
        self.client.segment(ACK | PSH, b"hello")
        self.client.receive()
        self.assertEqual((self.protocol.data, self.client.data), (b"hello", b"HELLO"))
        self.assertEqual(self.protocol.transport.getPeer().port, 40000)
        self.assertEqual(self.protocol.transport.getHost().port, 7)

    def test_idleClose(self):
        """
        A connection idle for 30 s is closed with FIN.
        """
        self.stack.reactor.advance(29)
        self.client.receive()
        self.assertFalse(self.client.fin)
        self.stack.reactor.advance(1)
        self.client.receive()
        self.assertTrue(self.client.fin)

    def test_guestCloses(self):
        """
        When the guest closes, the protocol hears about it (once the
        connection is done) and no timer is left.
        """
        self.client.segment(FIN | ACK)
        self.stack.reactor.advance(2)
        self.client.receive()
        self.assertTrue(self.client.fin)
        self.client.receive()
        self.stack.reactor.advance(120)
        self.assertIsNotNone(self.protocol.lost)

    def test_reset(self):
        """
        A guest RST ends the protocol's connection.
        """
        self.client.segment(RST | ACK)
        self.assertIsNotNone(self.protocol.lost)


class DNSOverTCPTests(SynchronousTestCase):
    """
    DNS over TCP on the gateway through the whole stack: C{twisted.names}'
    C{DNSProtocol} on the guest connection.
    """

    def setUp(self):
        config = DNSConfig((Nameserver("192.0.2.53"),))
        self.stack, (self.a,) = makeStack(1, dnsConfig=config)
        self.client = GuestTCP(self, self.a, GATEWAY_IP, 53)
        self.client.connect()

    def test_builtin(self):
        """
        A length-prefixed query for a builtin name gets its answer on the
        same connection.
        """
        self.client.sendDNS(query(b"host.internal", id=9))
        self.client.receive()
        [answer] = self.client.answers()
        self.assertEqual((answer.id, answer.answers[0].payload.dottedQuad()), (9, "192.168.65.2"))
        self.assertEqual(self.stack.counters.dns.tcpQueries, 1)

    def test_bigAnswerWhole(self):
        """
        A 60-record upstream answer reaches a TCP client whole: no TC, all
        60 records (over UDP it would be truncated).
        """
        self.client.sendDNS(query(b"very.big.name", id=10))
        [upstream] = self.stack.sockets.opened
        sent = dns.Message()
        sent.fromStr(upstream.sent[0].data)
        reply = dns.Message(id=sent.id, answer=1, maxSize=0)
        reply.queries = sent.queries
        reply.answers = [aRecord(b"very.big.name", f"198.51.100.{i}") for i in range(1, 61)]
        upstream.deliver(reply.toStr(), "192.0.2.53", 53)
        self.client.receive()
        [answer] = self.client.answers()
        self.assertEqual((answer.id, answer.trunc, len(answer.answers)), (10, 0, 60))

    def test_halfCloseStillAnswered(self):
        """
        A guest that half-closes after its query still gets the answer,
        then the connection closes once quiet.
        """
        self.client.sendDNS(query(b"late.test", id=11))
        self.client.segment(FIN | ACK)
        [upstream] = self.stack.sockets.opened
        sent = dns.Message()
        sent.fromStr(upstream.sent[0].data)
        self.stack.reactor.advance(0.5)
        reply = dns.Message(id=sent.id, answer=1)
        reply.queries = sent.queries
        reply.answers = [aRecord(b"late.test", "192.0.2.9")]
        upstream.deliver(reply.toStr(), "192.0.2.53", 53)
        self.client.receive()
        [answer] = self.client.answers()
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.9")
        self.stack.reactor.advance(2)
        self.client.receive()
        self.assertTrue(self.client.fin)
