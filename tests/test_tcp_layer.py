"""
Tests for L{vpnkit.protocols.tcp.layer}: TCP segments from the guest
through a whole L{vpnkit.stack.Stack} (L{tests.helpers.makeStack}), with the
host dialled through a L{tests.helpers.FakeHostNetwork} the tests complete
by hand; and the layer alone, with fakes, for its limits and corner cases.
"""

from twisted.internet import defer, error, task
from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.helpers import (
    GATEWAY_IP,
    HOST_IP,
    REMOTE_IP,
    SenderRecorder,
    buildIPv4,
    ip,
    makeStack,
    parseIPv4Frame,
)
from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.interfaces import ITCPRouter
from vpnkit.protocols.tcp.splice import GuestSide
from vpnkit.protocols.tcp.layer import EHOSTUNREACH, ENETUNREACH, Flow, SelfConnectError, TCPLayer
from vpnkit.protocols.tcp.config import TCPLimits
from vpnkit.protocols.tcp.state import State
from vpnkit.wire.icmp import DEST_UNREACHABLE, parseICMP
from vpnkit.wire.ipv4 import PROTO_ICMP, PROTO_TCP, parseIPv4
from vpnkit.wire.seq import seqAdd
from vpnkit.wire.tcp import ACK, FIN, PSH, RST, SYN, Segment, TCPOptions, emitTCP, parseTCP

GUEST_PORT = 40000
ISN = 3_000_000_000
SYN_OPTIONS = TCPOptions(mss=1460, windowScale=7, sackPermitted=True)


class StackTestCase(SynchronousTestCase):
    def setUp(self):
        self.stack, (self.guest,) = makeStack(1)
        self.clock = self.stack.reactor
        self.network = self.stack.hostNetwork
        self.counters = self.stack.counters.tcp

    def sendSegment(self, seg, dst=REMOTE_IP):
        """
        The guest sends C{seg} to C{dst}; return the frame.
        """
        frame = buildIPv4(
            self.guest.mac, self.guest.ip, dst, PROTO_TCP, emitTCP(seg, self.guest.ip, dst)
        )
        self.guest.send(frame)
        return frame

    def syn(self, port=80, sport=GUEST_PORT, isn=ISN):
        return Segment(sport, port, isn, 0, SYN, 64240, SYN_OPTIONS)

    def fromGuest(self, n, ack, flags=ACK, payload=b"", port=80, window=502):
        """
        A guest segment at offset C{n} from its ISN acknowledging C{ack}
        (an absolute sequence number).
        """
        return Segment(GUEST_PORT, port, seqAdd(ISN, n), ack, flags, window, payload=payload)

    def received(self):
        """
        What reached the guest: C{(IPv4Header, Segment or ICMPMessage)}.
        """
        out = []
        for frame in self.guest.takeFrames():
            _, header, payload = parseIPv4Frame(frame)
            if header.protocol == PROTO_TCP:
                out.append((header, parseTCP(payload, header.src, header.dst)))
            elif header.protocol == PROTO_ICMP:
                out.append((header, parseICMP(payload)))
        return out

    def segments(self):
        return [seg for _, seg in self.received()]

    def establish(self, dst=REMOTE_IP, port=80):
        """
        SYN, host connect, SYN-ACK, ACK.

        @return: C{(synAck, hostTransport, hostProtocol)}.
        """
        self.sendSegment(self.syn(port), dst)
        transport = self.network.succeed()
        protocol = self.network.connects[-1].protocol
        [(header, synAck)] = self.received()
        self.sendSegment(self.fromGuest(1, seqAdd(synAck.seq, 1), port=port), dst)
        self.assertEqual(self.received(), [])
        return synAck, transport, protocol


class AcceptAfterDialTests(StackTestCase):
    def test_noAnswerUntilConnected(self):
        """
        A SYN is answered by nothing until the host connection exists: it
        dials the address and port the guest asked for, with the stack's
        connect timeout.
        """
        self.sendSegment(self.syn())
        self.assertEqual(self.received(), [])
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port, pending.timeout), ("198.51.100.10", 80, 30.0))
        self.assertEqual(self.stack.tcp.pendingCount, 1)
        self.clock.advance(10)
        self.assertEqual(self.received(), [])

    def test_synAckFromDialledAddress(self):
        """
        Once connected: SYN-ACK from the dialled address and port to the
        guest's port, acknowledging its SYN, with our MSS (MTU - 40),
        window scale and SACK-permitted.
        """
        self.sendSegment(self.syn())
        self.network.succeed()
        [(header, synAck)] = self.received()
        self.assertEqual((header.src, header.dst), (REMOTE_IP, self.guest.ip))
        self.assertEqual(
            (synAck.srcPort, synAck.dstPort, synAck.ack, synAck.flags, synAck.window),
            (80, GUEST_PORT, ISN + 1, SYN | ACK, 65535),
        )
        self.assertEqual(synAck.options, TCPOptions(mss=1460, windowScale=5, sackPermitted=True))
        self.assertEqual((self.counters.synReceived, self.counters.connectionsOpened), (1, 1))
        self.assertEqual(self.stack.tcp.pendingCount, 0)

    def test_retransmittedSynAbsorbed(self):
        """
        The guest's SYN again while the host is dialled: counted, not
        dialled twice, not answered.
        """
        self.sendSegment(self.syn())
        self.sendSegment(self.syn())
        self.assertEqual(len(self.network.connects), 1)
        self.assertEqual(self.counters.synAbsorbed, 1)
        self.assertEqual(self.received(), [])
        self.network.succeed()
        self.assertEqual([s.flags for s in self.segments()], [SYN | ACK])

    def test_refused(self):
        """
        The host refuses: RST|ACK acknowledging the SYN, from the address
        the guest dialled.
        """
        self.sendSegment(self.syn())
        self.network.fail(error.ConnectionRefusedError())
        [(header, rst)] = self.received()
        self.assertEqual(header.src, REMOTE_IP)
        self.assertEqual(rst, Segment(80, GUEST_PORT, 0, ISN + 1, RST | ACK, 0))
        self.assertEqual((self.counters.connectRefused, self.counters.resetsSent), (1, 1))
        self.assertEqual(self.stack.tcp.pendingCount, 0)

    def assertUnreachable(self, failure, code):
        frame = self.sendSegment(self.syn())
        self.network.fail(failure)
        [(header, message)] = self.received()
        self.assertEqual((header.src, header.dst), (GATEWAY_IP, self.guest.ip))
        self.assertEqual((message.type, message.code), (DEST_UNREACHABLE, code))
        # The quote: the SYN's IP header as sent, and the first 8 bytes of
        # its TCP header (the ports and the sequence number).
        sent = frame[14:]
        self.assertEqual(bytes(message.payload), sent[:28])
        self.assertEqual(self.counters.connectUnreachable, 1)
        self.assertEqual(self.counters.resetsSent, 0)

    def test_noRoute(self):
        """
        NoRouteError: ICMP network unreachable (type 3, code 0) from the
        gateway, quoting the SYN.
        """
        self.assertUnreachable(error.NoRouteError(), 0)

    def test_networkUnreachable(self):
        """
        A connect error with ENETUNREACH: code 0.
        """
        self.assertUnreachable(error.ConnectError(osError=ENETUNREACH), 0)

    def test_hostUnreachable(self):
        """
        A connect error with EHOSTUNREACH: ICMP host unreachable (code 1).
        """
        self.assertUnreachable(error.ConnectError(osError=EHOSTUNREACH), 1)

    def test_timeout(self):
        """
        A connect timeout (either kind) is a RST.
        """
        for i, failure in enumerate((error.TimeoutError(), error.TCPTimedOutError())):
            self.sendSegment(self.syn(sport=GUEST_PORT + i))
            self.network.fail(failure)
            [rst] = self.segments()
            self.assertEqual((rst.flags, rst.dstPort), (RST | ACK, GUEST_PORT + i))
        self.assertEqual(self.counters.connectTimeout, 2)

    def test_otherFailure(self):
        """
        Any other connect failure is a RST too, counted apart.
        """
        self.sendSegment(self.syn())
        self.network.fail(error.ConnectError(osError=13))
        [rst] = self.segments()
        self.assertEqual(rst.flags, RST | ACK)
        self.assertEqual(self.counters.connectFailed, 1)

    def test_guestResetWhilePending(self):
        """
        The guest's RST while the host is dialled cancels the connect (its
        Deferred has fired); a success reported afterwards makes no
        connection and sends nothing; a later SYN dials afresh.
        """
        self.sendSegment(self.syn())
        pending = self.network.connects[0]
        self.sendSegment(self.fromGuest(1, 0, RST))
        self.assertEqual(self.counters.pendingReset, 1)
        self.assertEqual(self.stack.tcp.pendingCount, 0)
        self.assertTrue(pending.deferred.called)
        self.network.succeed(0)
        self.assertEqual(self.received(), [])
        self.assertEqual(self.stack.tcp.connections(), [])
        self.sendSegment(self.syn())
        self.assertEqual(len(self.network.connects), 2)

    def test_hostAlias(self):
        """
        The host alias 192.168.65.2 dials the host's 127.0.0.1, same port;
        the SYN-ACK still comes from the alias.
        """
        self.sendSegment(self.syn(8080), HOST_IP)
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), ("127.0.0.1", 8080))
        self.network.succeed()
        [(header, synAck)] = self.received()
        self.assertEqual((header.src, synAck.srcPort), (HOST_IP, 8080))

    def test_gatewayPortRefused(self):
        """
        A gateway port nothing serves is refused at once, without dialling.
        """
        self.sendSegment(self.syn(80), GATEWAY_IP)
        self.assertEqual(self.network.connects, [])
        [(header, rst)] = self.received()
        self.assertEqual((header.src, rst.flags, rst.ack), (GATEWAY_IP, RST | ACK, ISN + 1))


class NoConnectionTests(StackTestCase):
    def test_ackGetsReset(self):
        """
        An ACK for no connection: RST at its ACK number (RFC 9293 3.10.7.1).
        """
        self.sendSegment(self.fromGuest(1, 777, ACK, b"data"))
        self.assertEqual(self.segments(), [Segment(80, GUEST_PORT, 777, 0, RST, 0)])
        self.assertEqual(self.counters.rstNoConnection, 1)

    def test_noAckGetsResetAck(self):
        """
        A FIN without ACK for no connection: RST|ACK covering it.
        """
        self.sendSegment(self.fromGuest(1, 0, FIN, b"ab"))
        self.assertEqual(
            self.segments(), [Segment(80, GUEST_PORT, 0, seqAdd(ISN, 4), RST | ACK, 0)]
        )

    def test_synAckGetsReset(self):
        """
        A SYN-ACK for no connection is not a new connection: RST.
        """
        self.sendSegment(self.fromGuest(0, 5, SYN | ACK))
        self.assertEqual([s.flags for s in self.segments()], [RST])
        self.assertEqual(self.network.connects, [])

    def test_resetIgnored(self):
        """
        A RST for no connection gets nothing.
        """
        self.sendSegment(self.fromGuest(1, 5, RST | ACK))
        self.assertEqual(self.received(), [])
        self.assertEqual(self.counters.rstNoConnection, 0)

    def test_badSegments(self):
        """
        A bad checksum or a truncated header is counted and dropped.
        """
        data = bytearray(emitTCP(self.syn(), self.guest.ip, REMOTE_IP))
        data[16] ^= 0xFF
        self.guest.send(buildIPv4(self.guest.mac, self.guest.ip, REMOTE_IP, PROTO_TCP, bytes(data)))
        self.guest.send(buildIPv4(self.guest.mac, self.guest.ip, REMOTE_IP, PROTO_TCP, bytes(12)))
        self.assertEqual((self.counters.badChecksum, self.counters.malformed), (1, 1))
        self.assertEqual((self.received(), self.network.connects), ([], []))


class ProxyTests(StackTestCase):
    def test_guestToHost(self):
        """
        The guest's bytes reach the host transport, in order.  The first
        read opens the window far beyond the 65535 bytes of the SYN-ACK, so
        it is announced at once (acknowledging the guest's first segment at
        once, as Linux's quick ACKs at the start of a connection do); the
        next segment is acknowledged after the delayed-ACK time.
        """
        synAck, transport, _ = self.establish()
        ours = seqAdd(synAck.seq, 1)
        self.sendSegment(self.fromGuest(1, ours, ACK | PSH, b"GET / HTTP/1.0\r\n"))
        [update] = self.segments()
        self.assertEqual((update.ack, update.window), (seqAdd(ISN, 17), (1 << 20) >> 5))
        self.sendSegment(self.fromGuest(17, ours, ACK | PSH, b"\r\n"))
        self.assertEqual(transport.value(), b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(self.segments(), [])
        self.clock.advance(0.02)
        [ack] = self.segments()
        self.assertEqual(ack.ack, seqAdd(ISN, 19))

    def test_hostToGuest(self):
        """
        The host's bytes become segments to the guest from the dialled
        address.
        """
        synAck, transport, protocol = self.establish()
        protocol.dataReceived(b"HTTP/1.0 200 OK\r\n")
        [(header, seg)] = self.received()
        self.assertEqual((header.src, seg.srcPort, seg.dstPort), (REMOTE_IP, 80, GUEST_PORT))
        self.assertEqual(
            (seg.seq, seg.flags, seg.payload),
            (seqAdd(synAck.seq, 1), ACK | PSH, b"HTTP/1.0 200 OK\r\n"),
        )

    def test_producersRegistered(self):
        """
        Each side is registered as the other's producer (portforward
        style), so neither buffers without bound.
        """
        _, transport, protocol = self.establish()
        [connection] = self.stack.tcp.connections()
        self.assertIs(transport.producer, connection)
        self.assertTrue(transport.streaming)
        self.assertIs(connection._producer, transport)

    def test_shortConnectionFourSegments(self):
        """
        A short connection (connect, 1 byte each way, the guest closes
        first, then the host) costs the guest exactly four segments from
        us: the SYN-ACK, the ACK of its first byte (at once: it opens the
        window), the echo and our FIN (carrying the ACK of the guest's FIN);
        no bare ACK for the FIN, not even when the delayed-ACK timer runs
        out afterwards.
        """
        synAck, transport, protocol = self.establish()
        ours = seqAdd(synAck.seq, 1)
        self.sendSegment(self.fromGuest(1, ours, ACK | PSH, b"x"))
        self.assertEqual(transport.value(), b"x")
        [ack] = self.segments()
        self.assertEqual((ack.flags, ack.ack, ack.payload), (ACK, seqAdd(ISN, 2), b""))
        protocol.dataReceived(b"x")
        [echo] = self.segments()
        self.assertEqual(
            (echo.flags, echo.seq, echo.ack, echo.payload),
            (ACK | PSH, ours, seqAdd(ISN, 2), b"x"),
        )
        self.sendSegment(self.fromGuest(2, seqAdd(ours, 1), FIN | ACK))
        self.assertTrue(transport.disconnecting)
        protocol.readConnectionLost()
        [fin] = self.segments()
        self.assertEqual((fin.flags, fin.seq, fin.ack), (FIN | ACK, seqAdd(ours, 1), seqAdd(ISN, 3)))
        self.sendSegment(self.fromGuest(3, seqAdd(ours, 2)))
        self.assertEqual(self.stack.tcp.connections(), [])
        self.clock.advance(1.0)
        self.assertEqual(self.segments(), [])

    def test_roundTripOneSegment(self):
        """
        On an established connection, past the first exchange (whose read
        opens the window, acknowledged at once), a request from the guest
        and the host's answer cost the guest one segment: the answer,
        carrying the ACK; the delayed-ACK timer then finds nothing to send.
        """
        synAck, transport, protocol = self.establish()
        ours = seqAdd(synAck.seq, 1)
        self.sendSegment(self.fromGuest(1, ours, ACK | PSH, b"q"))
        protocol.dataReceived(b"a")
        self.assertEqual(len(self.segments()), 2)
        for i in range(1, 4):
            self.sendSegment(self.fromGuest(1 + i, seqAdd(ours, i), ACK | PSH, b"q"))
            protocol.dataReceived(b"a")
            [answer] = self.segments()
            self.assertEqual((answer.ack, answer.payload), (seqAdd(ISN, 2 + i), b"a"))
        self.clock.advance(0.05)
        self.assertEqual(self.segments(), [])

    def test_hostEOF(self):
        """
        The host's EOF (half-close) becomes our FIN after the data.
        """
        synAck, transport, protocol = self.establish()
        protocol.dataReceived(b"bye")
        protocol.readConnectionLost()
        out = self.segments()
        self.assertEqual([s.flags for s in out], [ACK | PSH, FIN | ACK])
        self.assertEqual(out[1].seq, seqAdd(synAck.seq, 4))

    def test_guestFIN(self):
        """
        The guest's FIN closes the host's write side (the fake's string
        transport has no half-close, so it is closed), after the guest
        connection stopped being the host transport's producer.
        """
        synAck, transport, _ = self.establish()
        self.sendSegment(self.fromGuest(1, seqAdd(synAck.seq, 1), FIN | ACK))
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)
        [connection] = self.stack.tcp.connections()
        self.assertIs(connection.tcb.state, State.CLOSE_WAIT)

    def test_hostReset(self):
        """
        The host connection lost abnormally resets the guest.
        """
        synAck, transport, protocol = self.establish()
        protocol.connectionLost(Failure(error.ConnectionLost()))
        [rst] = self.segments()
        self.assertEqual((rst.flags, rst.seq), (RST | ACK, seqAdd(synAck.seq, 1)))
        self.assertEqual(self.stack.tcp.connections(), [])
        self.assertEqual(self.counters.connectionsClosed, 1)

    def test_guestReset(self):
        """
        The guest's RST aborts the host transport.
        """
        synAck, transport, _ = self.establish()
        self.sendSegment(self.fromGuest(1, seqAdd(synAck.seq, 1), RST))
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.stack.tcp.connections(), [])
        self.assertEqual(self.counters.resetsReceived, 1)

    def test_fullCloseAndTimeWaitReuse(self):
        """
        A clean close both ways leaves TIME-WAIT; a new SYN on the same
        ports reuses the pair at once: no RST for the old connection, a new
        dial, a new SYN-ACK.
        """
        synAck, transport, protocol = self.establish()
        ours = seqAdd(synAck.seq, 1)
        protocol.readConnectionLost()
        [fin] = self.segments()
        self.assertEqual(fin.flags, FIN | ACK)
        self.sendSegment(self.fromGuest(1, seqAdd(ours, 1), FIN | ACK))
        [ack] = self.segments()
        self.assertEqual(ack.ack, seqAdd(ISN, 2))
        [connection] = self.stack.tcp.connections()
        self.assertIs(connection.tcb.state, State.TIME_WAIT)
        self.sendSegment(self.syn(isn=ISN + 100000))
        self.assertEqual(self.received(), [])
        self.assertEqual(self.counters.timeWaitReused, 1)
        self.assertEqual(len(self.network.connects), 2)
        self.network.succeed()
        [synAck2] = self.segments()
        self.assertEqual((synAck2.flags, synAck2.ack), (SYN | ACK, ISN + 100001))

    def test_timeWaitExpires(self):
        """
        TIME-WAIT ends after two seconds; the connection is gone.
        """
        synAck, transport, protocol = self.establish()
        protocol.readConnectionLost()
        self.segments()
        self.sendSegment(self.fromGuest(1, seqAdd(synAck.seq, 2), FIN | ACK))
        self.segments()
        self.clock.advance(2.0)
        self.assertEqual(self.stack.tcp.connections(), [])
        self.assertEqual(self.counters.connectionsClosed, 1)

    def test_guestDetached(self):
        """
        Unplugging the guest resets its connections (the host transport is
        aborted) and cancels its pending connects.
        """
        _, transport, _ = self.establish()
        self.sendSegment(self.syn(443))
        pending = self.network.connects[-1]
        self.stack.guests.detach(self.guest.port)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.stack.tcp.connections(), [])
        self.assertEqual(self.stack.tcp.pendingCount, 0)
        self.assertTrue(pending.deferred.called)
        pending.deferred.addErrback(lambda f: f.trap(defer.CancelledError))

    def test_stats(self):
        """
        The stack's stats list the connection with its state and bytes.
        """
        synAck, transport, protocol = self.establish()
        self.sendSegment(self.fromGuest(1, seqAdd(synAck.seq, 1), ACK, b"12345"))
        [entry] = self.stack.stats()["tcp"]["connections"]
        self.assertEqual(entry["state"], "ESTABLISHED")
        self.assertEqual(entry["bytesFromGuest"], 5)


# -- the layer alone -----------------------------------------------------------

GUEST_B = ip("192.168.65.4")
GUEST_C = ip("192.168.65.5")


@implementer(ITCPRouter)
class FakeRouter:
    """
    An L{ITCPRouter} whose Deferreds the test fires; C{canceller} is
    given to each.
    """

    def __init__(self, canceller=None):
        self.requests = []
        self.canceller = canceller

    def connectionRequested(self, flow):
        d = defer.Deferred(self.canceller)
        self.requests.append((flow, d))
        return d


class FakeICMP:
    def __init__(self):
        self.unreachable = []

    def sendUnreachable(self, code, header, quote):
        self.unreachable.append((code, header, quote))


class HostProtocol:
    """
    What a host forwarder hands back: a protocol with a transport.
    """

    def __init__(self):
        self.transport = StringTransport()
        self.guest = None

    def dataReceived(self, data):
        self.guest.write(data)


GUEST = ip("192.168.65.3")


class LayerTests(SynchronousTestCase):
    def setUp(self):
        self.ipv4 = SenderRecorder()
        self.icmp = FakeICMP()
        self.counters = StackCounters()
        self.clock = task.Clock()

    def layer(self, **kw):
        forwarder = kw.pop("forwarder", None) or FakeRouter()
        layer = TCPLayer(
            StackConfig(), self.ipv4, self.icmp, self.counters, forwarder, self.clock, **kw
        )
        return layer, forwarder

    def syn(self, layer, sport=GUEST_PORT, src=GUEST):
        self.segment(layer, Segment(sport, 80, ISN, 0, SYN, 64240, SYN_OPTIONS), src)

    def segment(self, layer, seg, src=GUEST):
        payload = emitTCP(seg, src, REMOTE_IP)
        header, _ = parseIPv4(
            _ipPacket(src, REMOTE_IP, payload)
        )
        layer.ipPayloadReceived(header, payload)

    def sent(self):
        out = [parseTCP(p, s, d) for s, d, proto, p, _, _ in self.ipv4.sent if proto == PROTO_TCP]
        self.ipv4.sent = []
        return out

    def test_maxPending(self):
        """
        Beyond maxPending connects in flight a SYN is refused (RST|ACK)
        and counted.
        """
        layer, forwarder = self.layer(maxPending=2)
        for i in range(3):
            self.syn(layer, GUEST_PORT + i)
        self.assertEqual(len(forwarder.requests), 2)
        [rst] = self.sent()
        self.assertEqual((rst.flags, rst.dstPort, rst.ack), (RST | ACK, GUEST_PORT + 2, ISN + 1))
        self.assertEqual(self.counters.tcp.limitPending, 1)

    def test_maxConnections(self):
        """
        Connections and connects in flight together are capped by
        maxConnections.
        """
        layer, forwarder = self.layer(maxConnections=2)
        self.syn(layer, GUEST_PORT)
        forwarder.requests[0][1].callback(GuestSide(HostProtocol()))
        self.syn(layer, GUEST_PORT + 1)
        self.sent()
        self.syn(layer, GUEST_PORT + 2)
        [rst] = self.sent()
        self.assertEqual((rst.flags, rst.dstPort), (RST | ACK, GUEST_PORT + 2))
        self.assertEqual(self.counters.tcp.limitConnections, 1)
        self.assertEqual(len(forwarder.requests), 2)

    def connectAll(self, forwarder, hosts=None):
        """
        Complete every dial not yet answered; return the host protocols.
        """
        made = []
        for flow, d in forwarder.requests:
            if not d.called:
                host = HostProtocol()
                d.callback(GuestSide(host))
                made.append(host)
        if hosts is not None:
            hosts.extend(made)
        return made

    def test_halfOpenPerGuestEvictsOldestDial(self):
        """
        A guest's SYN beyond its half-open budget evicts its oldest
        half-open connection (a dial in flight is cancelled), and is
        dialled itself; nothing is sent to the guest.
        """
        layer, forwarder = self.layer(limits=TCPLimits(maxHalfOpenPerGuest=3))
        for i in range(4):
            self.syn(layer, GUEST_PORT + i)
        self.assertEqual(len(forwarder.requests), 4)
        self.assertEqual([d.called for _, d in forwarder.requests], [True] + [False] * 3)
        self.assertEqual(layer.pendingCount, 3)
        self.assertEqual(self.counters.tcp.halfOpenEvicted, 1)
        self.assertEqual(self.sent(), [])

    def test_synReceivedEvicted(self):
        """
        A connection left in SYN-RECEIVED (the guest never ACKs the
        SYN-ACK) is the one evicted by a later SYN beyond the budget: reset
        to the guest, its host socket closed.
        """
        layer, forwarder = self.layer(limits=TCPLimits(maxHalfOpenPerGuest=2))
        hosts = []
        for i in range(2):
            self.syn(layer, GUEST_PORT + i)
            self.connectAll(forwarder, hosts)
        self.assertEqual(len(self.sent()), 2)
        self.syn(layer, GUEST_PORT + 2)
        [rst] = self.sent()
        self.assertEqual((rst.flags & RST, rst.dstPort), (RST, GUEST_PORT))
        self.assertTrue(hosts[0].transport.disconnecting)
        self.assertFalse(hosts[1].transport.disconnecting)
        self.assertEqual(len(layer.connections()), 1)
        self.assertEqual(layer.pendingCount, 1)

    def test_establishedNotHalfOpen(self):
        """
        Once the guest completes the handshake the connection no longer
        counts against the half-open budget and is never evicted.
        """
        layer, forwarder = self.layer(limits=TCPLimits(maxHalfOpenPerGuest=1))
        self.syn(layer)
        self.connectAll(forwarder)
        [synAck] = self.sent()
        self.segment(layer, Segment(GUEST_PORT, 80, ISN + 1, synAck.seq + 1, ACK, 64240))
        [established] = layer.connections()
        self.assertEqual(established.tcb.state, State.ESTABLISHED)
        for i in range(1, 5):
            self.syn(layer, GUEST_PORT + i)
        self.assertIn(established, layer.connections())
        self.assertEqual(established.tcb.state, State.ESTABLISHED)
        self.assertEqual(self.counters.tcp.halfOpenEvicted, 3)

    def test_floodLeavesOtherGuestAlone(self):
        """
        A thousand SYNs from one guest whose dials all succeed and which
        never ACKs: at most its budget of host sockets stays open, and
        another guest's connection, opened in the middle of the flood, is
        answered and never evicted.
        """
        layer, forwarder = self.layer(limits=TCPLimits(maxHalfOpenPerGuest=8, maxHalfOpen=16))
        hosts = []
        for i in range(1000):
            self.syn(layer, 1024 + i)
            self.connectAll(forwarder, hosts)
            if i == 500:
                self.syn(layer, GUEST_PORT, src=GUEST_B)
                [other] = self.connectAll(forwarder)
        self.assertEqual(sum(not h.transport.disconnecting for h in hosts), 8)
        self.assertFalse(other.transport.disconnecting)
        flows = [c.flow for c in layer.connections()]
        self.assertIn(Flow(GUEST_B, GUEST_PORT, REMOTE_IP, 80), flows)
        self.assertEqual(len(flows), 9)
        self.assertEqual(self.counters.tcp.halfOpenEvicted, 1000 - 8)

    def test_totalEvictsFromLargestHolder(self):
        """
        When the half-open total is full, a SYN from a guest within its own
        budget evicts the oldest half-open connection of the guest holding
        the most.
        """
        layer, forwarder = self.layer(limits=TCPLimits(maxHalfOpenPerGuest=3, maxHalfOpen=4))
        self.syn(layer, 2000, src=GUEST_B)
        for i in range(3):
            self.syn(layer, GUEST_PORT + i)
        self.syn(layer, 3000, src=GUEST_C)
        cancelled = [flow for flow, d in forwarder.requests if d.called]
        self.assertEqual(cancelled, [Flow(GUEST, GUEST_PORT, REMOTE_IP, 80)])
        self.assertEqual(layer.pendingCount, 4)

    def test_synNotFromAGuest(self):
        """
        A SYN from an address no guest holds (a spoofed source: no answer
        could reach it) is dropped and counted, never dialled.
        """
        layer, forwarder = self.layer(guestPresent=lambda ip: ip == GUEST)
        self.syn(layer, src=GUEST_B)
        self.assertEqual(forwarder.requests, [])
        self.assertEqual(self.sent(), [])
        self.assertEqual(self.counters.tcp.synNotFromGuest, 1)
        self.syn(layer)
        self.assertEqual(len(forwarder.requests), 1)

    def test_limitsFromArguments(self):
        """
        Without C{limits}, C{maxConnections} and C{maxPending} make the
        budget (the default half-open budgets apply).
        """
        layer, _ = self.layer(maxConnections=10, maxPending=5)
        self.assertEqual(layer.limits, TCPLimits(maxConnections=10, maxPending=5))

    def test_successAfterGuestGaveUp(self):
        """
        A connect that completes as the guest's RST cancels it (the
        canceller fires the Deferred with the protocol) aborts the host
        transport and sends the guest nothing.
        """
        host = HostProtocol()
        forwarder = FakeRouter(canceller=lambda d: d.callback(GuestSide(host)))
        layer, _ = self.layer(forwarder=forwarder)
        self.syn(layer)
        rst = Segment(GUEST_PORT, 80, ISN + 1, 0, RST, 0)
        payload = emitTCP(rst, GUEST, REMOTE_IP)
        header, _ = parseIPv4(_ipPacket(GUEST, REMOTE_IP, payload))
        layer.ipPayloadReceived(header, payload)
        self.assertTrue(host.transport.disconnected)
        self.assertEqual(self.sent(), [])
        self.assertEqual(layer.connections(), [])

    def test_synchronousFailure(self):
        """
        A forwarder that fails at once (before returning) is handled like a
        later failure.
        """

        @implementer(ITCPRouter)
        class Refuser:
            def connectionRequested(self, flow):
                return defer.fail(error.ConnectionRefusedError())

        layer, _ = self.layer(forwarder=Refuser())
        self.syn(layer)
        [rst] = self.sent()
        self.assertEqual(rst.flags, RST | ACK)
        self.assertEqual(layer.pendingCount, 0)

    def test_selfConnectRefused(self):
        """
        A dial that connected to itself is a refusal: RST|ACK to the guest,
        counted as C{connectRefused} and C{selfConnects}.
        """
        layer, forwarder = self.layer()
        self.syn(layer)
        forwarder.requests[0][1].errback(SelfConnectError("127.0.0.1", 80))
        [rst] = self.sent()
        self.assertEqual((rst.flags, rst.ack), (RST | ACK, ISN + 1))
        self.assertEqual((self.counters.tcp.connectRefused, self.counters.tcp.selfConnects), (1, 1))
        self.assertEqual(layer.pendingCount, 0)

    def test_flowAddresses(self):
        """
        A flow prints as guest -> destination; the connection's peer is
        the guest, its host the destination.
        """
        flow = Flow(GUEST, GUEST_PORT, REMOTE_IP, 80)
        self.assertEqual(str(flow), "192.168.65.3:40000 -> 198.51.100.10:80")
        layer, _ = self.layer()
        self.assertEqual(
            (layer.peerAddress(flow).host, layer.peerAddress(flow).port), ("192.168.65.3", 40000)
        )
        self.assertEqual(
            (layer.hostAddress(flow).host, layer.hostAddress(flow).port), ("198.51.100.10", 80)
        )

    def test_isnRandom(self):
        """
        Each connection's ISS comes from the layer's random source.
        """
        import random

        layer, forwarder = self.layer(rng=random.Random(7))
        self.syn(layer)
        forwarder.requests[0][1].callback(GuestSide(HostProtocol()))
        [synAck] = self.sent()
        self.assertEqual(synAck.seq, random.Random(7).getrandbits(32))


    def test_systemISS(self):
        """
        Without a random source given, ISSs come from the system's (RFC
        6528: unpredictable), also once the first read of it (1,024 values)
        is used up: 1,500 connections, 32-bit values, high bits included,
        (nearly) all different: by chance one pair in about 4,000 runs
        repeats, two pairs practically never.
        """
        layer, forwarder = self.layer(limits=TCPLimits(maxHalfOpenPerGuest=2000))
        values = []
        for i in range(1500):
            self.syn(layer, GUEST_PORT + i)
            forwarder.requests[-1][1].callback(GuestSide(HostProtocol()))
            [synAck] = self.sent()
            values.append(synAck.seq)
        self.assertGreaterEqual(len(set(values)), 1499)
        self.assertTrue(all(0 <= v < 2**32 for v in values))
        self.assertTrue(any(v >= 2**31 for v in values))


def _ipPacket(src, dst, payload):
    from vpnkit.wire.ipv4 import IPv4Header, emitIPv4

    return emitIPv4(IPv4Header(0, 0, 1, 2, 0, 64, PROTO_TCP, 0, src, dst), payload)


class HalfCloseTransport(FileDescriptor):
    """
    Twisted's own write buffer, producer and half-close logic
    (L{FileDescriptor}) over a fake socket that takes every byte.
    """

    def __init__(self):
        super().__init__(reactor=MemoryReactor())
        self.connected = True
        self.written = b""
        self.halfClosed = False

    def writeSomeData(self, data):
        self.written += bytes(data)
        return len(data)

    def _closeWriteConnection(self):
        self.halfClosed = True


class HalfCloseTests(SynchronousTestCase):
    """
    The guest's EOF reaching a real Twisted transport.
    """

    def setUp(self):
        self.ipv4 = SenderRecorder()
        self.clock = task.Clock()
        self.forwarder = FakeRouter()
        self.layer = TCPLayer(
            StackConfig(), self.ipv4, FakeICMP(), StackCounters(), self.forwarder, self.clock
        )

    def segment(self, seg):
        payload = emitTCP(seg, GUEST, REMOTE_IP)
        header, _ = parseIPv4(_ipPacket(GUEST, REMOTE_IP, payload))
        self.layer.ipPayloadReceived(header, payload)

    def test_eofAfterHostPausedUs(self):
        """
        The guest uploads more than the host transport buffers (so it
        pauses the guest connection), then sends FIN: once the buffer
        drains the host socket is half-closed.  (FileDescriptor.doWrite
        resumes a paused producer instead of half-closing, so the guest
        connection must stop being the host transport's producer when the
        guest has nothing more to send.)
        """
        host = HostProtocol()
        host.transport = HalfCloseTransport()
        self.segment(Segment(GUEST_PORT, 80, ISN, 0, SYN, 64240, SYN_OPTIONS))
        self.forwarder.requests[0][1].callback(GuestSide(host))
        [synAck] = [
            parseTCP(p, s, d) for s, d, _, p, _, _ in self.ipv4.sent
        ]
        ours = seqAdd(synAck.seq, 1)
        self.segment(Segment(GUEST_PORT, 80, ISN + 1, ours, ACK, 502))
        # 47 segments of 1400 bytes: the last one takes the transport's
        # buffer past its 64 KiB, so it pauses us with nothing left to
        # deliver, and the FIN is handed on at once.
        data = (bytes(range(256)) * 260)[: 47 * 1400]
        for offset in range(0, len(data), 1400):
            piece = data[offset : offset + 1400]
            self.segment(Segment(GUEST_PORT, 80, ISN + 1 + offset, ours, ACK, 502, payload=piece))
        [connection] = self.layer.connections()
        self.assertTrue(host.transport.producerPaused)
        self.assertEqual(connection.tcb.recvQueue, 0)
        self.segment(Segment(GUEST_PORT, 80, ISN + 1 + len(data), ours, FIN | ACK, 502))
        self.assertIs(connection.tcb.state, State.CLOSE_WAIT)
        # The reactor writes while the transport asks to.
        writers = host.transport.reactor.writers
        for _ in range(10):
            if host.transport not in writers:
                break
            host.transport.doWrite()
        self.assertEqual(host.transport.written, data)
        self.assertTrue(host.transport.halfClosed)
