"""
Tests for L{vpnkit.protocols.tcp.connection}: the Twisted glue around the
control block, under a L{task.Clock}, with a fake layer that records the
segments sent to the guest and a recording protocol on top.
"""

from dataclasses import replace

from twisted.internet import error, task
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vpnkit.protocols.tcp.connection import TCPConnection
from vpnkit.protocols.tcp.layer import Flow
from vpnkit.protocols.tcp.state import State, TCPConfig, TCPControlBlock
from vpnkit.wire.seq import seqAdd
from vpnkit.wire.tcp import ACK, FIN, PSH, RST, SYN, Segment, TCPOptions

LOCAL_SEQ = 5000
REMOTE_SEQ = 900000
FLOW = Flow(bytes((192, 168, 65, 3)), 49500, bytes((198, 51, 100, 10)), 80)
CONFIG = TCPConfig(mss=1000, receiveBuffer=8000)
MSS = 1000


def local(n):
    return seqAdd(LOCAL_SEQ, n)


def remote(n):
    return seqAdd(REMOTE_SEQ, n)


def fromGuest(n, ack, flags=ACK, payload=b"", window=64000):
    """
    A guest segment at remote offset C{n} acknowledging local offset C{ack}.
    """
    return Segment(49500, 80, remote(n), local(ack), flags, window, payload=payload)


class FakeLayer:
    """
    Stands in for L{vpnkit.protocols.tcp.layer.TCPLayer}: keeps the
    segments sent and the connections reported closed.
    """

    def __init__(self):
        self.segments = []
        self.closed = []

    def sendSegments(self, flow, segments):
        assert flow is FLOW
        self.segments.extend(segments)

    def take(self):
        out, self.segments = self.segments, []
        return out

    def connectionClosed(self, connection):
        self.closed.append(connection)

    def peerAddress(self, flow):
        return ("peer", flow.guestPort)

    def hostAddress(self, flow):
        return ("host", flow.localPort)


@implementer(IHalfCloseableProtocol)
class RecordingProtocol(Protocol):
    """
    Keeps every callback, in order.
    """

    def __init__(self):
        self.events = []

    def connectionMade(self):
        self.events.append("connectionMade")

    def dataReceived(self, data):
        self.events.append(("data", data))

    def readConnectionLost(self):
        self.events.append("readConnectionLost")

    def writeConnectionLost(self):
        self.events.append("writeConnectionLost")

    def connectionLost(self, reason):
        self.events.append(("connectionLost", reason))

    def received(self):
        return b"".join(e[1] for e in self.events if isinstance(e, tuple) and e[0] == "data")


class PlainProtocol(Protocol):
    """
    A protocol that cannot half-close.
    """

    def __init__(self):
        self.lost = []

    def connectionLost(self, reason):
        self.lost.append(reason)


class ConnectionTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.layer = FakeLayer()

    def checkTimer(self):
        """
        Exactly one delayed call while the connection wants to run again,
        never one that is already due (the glue must not spin).
        """
        calls = self.clock.getDelayedCalls()
        self.assertLessEqual(len(calls), 1)
        for call in calls:
            self.assertGreater(call.getTime(), self.clock.seconds())
        return calls

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.checkTimer()

    def feed(self, segment):
        self.connection.segmentReceived(segment)
        self.checkTimer()

    def connect(
        self, config=CONFIG, protocol=None, highWater=1 << 20, lowWater=1 << 18, window=64000
    ):
        """
        An established connection: the guest's SYN, accept, SYN-ACK at
        t=0, the guest's ACK (with C{window}) at t=0.01.
        """
        options = TCPOptions(mss=1000, windowScale=0, sackPermitted=True)
        synSegment = Segment(49500, 80, REMOTE_SEQ, 0, SYN, 64000, options)
        tcb = TCPControlBlock.fromSYN(synSegment, LOCAL_SEQ, config)
        self.protocol = protocol if protocol is not None else RecordingProtocol()
        self.connection = TCPConnection(
            self.layer, FLOW, tcb, self.clock, highWater=highWater, lowWater=lowWater
        )
        self.connection.makeConnection(self.protocol)
        self.assertEqual(self.layer.take(), [])
        self.connection.start()
        [synAck] = self.layer.take()
        self.assertEqual((synAck.flags, synAck.seq, synAck.ack), (SYN | ACK, LOCAL_SEQ, remote(1)))
        self.checkTimer()
        self.advance(0.01)
        self.feed(fromGuest(1, 1, window=window))
        self.assertIs(tcb.state, State.ESTABLISHED)
        self.assertEqual(self.layer.take(), [])
        return self.connection


class TransportTests(ConnectionTestCase):
    def test_interfaces(self):
        """
        TCPConnection is a TCP transport, a consumer and a push producer.
        """
        connection = self.connect()
        for iface in (ITCPTransport, IConsumer, IPushProducer):
            self.assertTrue(verifyObject(iface, connection))

    def test_connectionMade(self):
        """
        The protocol is connected before the SYN-ACK goes out.
        """
        self.connect()
        self.assertEqual(self.protocol.events, ["connectionMade"])
        self.assertIs(self.protocol.transport, self.connection)

    def test_addresses(self):
        """
        getPeer and getHost come from the layer.
        """
        connection = self.connect()
        self.assertEqual(connection.getPeer(), ("peer", 49500))
        self.assertEqual(connection.getHost(), ("host", 80))
        self.assertTrue(connection.getTcpNoDelay())
        self.assertFalse(connection.getTcpKeepAlive())

    def test_synAckTimerIsTheOnlyCall(self):
        """
        While the SYN-ACK is unanswered there is one delayed call, at the
        initial RTO; it retransmits the SYN-ACK.
        """
        tcb = TCPControlBlock.fromSYN(
            Segment(49500, 80, REMOTE_SEQ, 0, SYN, 64000, TCPOptions(mss=1000)), LOCAL_SEQ, CONFIG
        )
        connection = TCPConnection(self.layer, FLOW, tcb, self.clock)
        connection.makeConnection(RecordingProtocol())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        connection.start()
        [call] = self.checkTimer()
        self.assertEqual(call.getTime(), 1.0)
        self.layer.take()
        self.advance(1.0)
        [again] = self.layer.take()
        self.assertEqual(again.flags, SYN | ACK)

    def test_writeSendsData(self):
        """
        write() sends at once, segmented by the guest's MSS.
        """
        connection = self.connect()
        connection.write(b"h" * 1500)
        out = self.layer.take()
        self.assertEqual([(s.seq, len(s.payload), s.flags) for s in out], [
            (local(1), 1000, ACK),
            (local(1001), 500, ACK | PSH),
        ])
        connection.writeSequence([b"a", b"b"])
        [seg] = self.layer.take()
        self.assertEqual(seg.payload, b"ab")
        connection.write(b"")
        self.assertEqual(self.layer.take(), [])

    def test_oneRetransmissionPerRTO(self):
        """
        clock.advance(rto) produces exactly one retransmission, and one
        delayed call stays armed for the next.
        """
        connection = self.connect()
        connection.write(b"x" * 3000)
        self.assertEqual(len(self.layer.take()), 3)
        [call] = self.checkTimer()
        rto = call.getTime() - self.clock.seconds()
        self.assertAlmostEqual(rto, 0.2)
        self.advance(rto)
        [again] = self.layer.take()
        self.assertEqual((again.seq, len(again.payload)), (local(1), 1000))
        [call] = self.checkTimer()
        self.assertAlmostEqual(call.getTime() - self.clock.seconds(), 2 * rto)

    def test_delayedAckTimer(self):
        """
        A lone segment from the guest is acknowledged by the timer after
        the delayed-ACK time.
        """
        self.connect()
        self.feed(fromGuest(1, 1, payload=b"abc"))
        self.assertEqual(self.layer.take(), [])
        [call] = self.checkTimer()
        self.assertAlmostEqual(call.getTime() - self.clock.seconds(), CONFIG.delayedAck)
        self.advance(CONFIG.delayedAck)
        [ack] = self.layer.take()
        self.assertEqual((ack.flags, ack.ack), (ACK, remote(4)))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dataDelivered(self):
        """
        In-order bytes reach the protocol as they arrive.
        """
        self.connect()
        self.feed(fromGuest(1, 1, payload=b"hello "))
        self.feed(fromGuest(7, 1, payload=b"world"))
        self.assertEqual(self.protocol.received(), b"hello world")

    def test_timerReplaced(self):
        """
        A later deadline replaces nothing; an earlier one replaces the
        armed call: there is never more than one.
        """
        connection = self.connect()
        connection.write(b"x")
        [rto] = self.checkTimer()
        self.feed(fromGuest(1, 1, payload=b"d"))
        [call] = self.checkTimer()
        self.assertAlmostEqual(call.getTime(), self.clock.seconds() + CONFIG.delayedAck)
        self.assertFalse(rto.active())


class GuestToHostFlowTests(ConnectionTestCase):
    """
    The host side (a StringTransport consumer) pauses us: the guest's data
    waits in the control block, the window closes, and reopens on resume.
    """

    def connectWithConsumer(self):
        connection = self.connect()
        self.consumer = StringTransport()
        self.consumer.registerProducer(connection, True)
        return connection

    def test_pausedDataStaysInControlBlock(self):
        """
        While paused, nothing reaches the protocol and the window shrinks.
        """
        connection = self.connectWithConsumer()
        connection.pauseProducing()
        self.feed(fromGuest(1, 1, payload=b"a" * 1000))
        self.feed(fromGuest(1001, 1, payload=b"b" * 1000))
        self.assertEqual(self.protocol.received(), b"")
        self.assertEqual(connection.tcb.recvQueue, 2000)
        [ack] = self.layer.take()
        self.assertEqual((ack.ack, ack.window), (remote(2001), 6000))

    def test_windowClosesToZero(self):
        """
        A paused consumer and a guest that keeps sending: the window falls
        to zero and data beyond it is dropped, not buffered.
        """
        connection = self.connectWithConsumer()
        connection.pauseProducing()
        for i in range(8):
            self.feed(fromGuest(1 + 1000 * i, 1, payload=b"c" * 1000))
        self.feed(fromGuest(8001, 1, payload=b"d" * 1000))
        last = self.layer.take()[-1]
        self.assertEqual((last.ack, last.window), (remote(8001), 0))
        self.assertEqual(connection.tcb.recvQueue, 8000)

    def test_resumeDeliversAndUpdatesWindow(self):
        """
        resumeProducing hands the held bytes over and sends a window update
        at once.
        """
        connection = self.connectWithConsumer()
        connection.pauseProducing()
        for i in range(8):
            self.feed(fromGuest(1 + 1000 * i, 1, payload=b"c" * 1000))
        self.layer.take()
        connection.resumeProducing()
        self.assertEqual(self.protocol.received(), b"c" * 8000)
        [update] = self.layer.take()
        self.assertEqual((update.flags, update.ack, update.window), (ACK, remote(8001), 8000))
        self.checkTimer()

    def test_resumeWithoutPauseDoesNothing(self):
        """
        A resume that balances no pause sends nothing.
        """
        connection = self.connectWithConsumer()
        connection.resumeProducing()
        self.assertEqual(self.layer.take(), [])

    def test_eofWaitsForData(self):
        """
        The guest's FIN while paused: readConnectionLost only after the
        held data was delivered, on resume.
        """
        connection = self.connectWithConsumer()
        connection.pauseProducing()
        self.feed(fromGuest(1, 1, FIN | ACK, b"tail"))
        self.assertEqual(self.protocol.events, ["connectionMade"])
        connection.resumeProducing()
        self.assertEqual(
            self.protocol.events, ["connectionMade", ("data", b"tail"), "readConnectionLost"]
        )

    def test_pauseFromProtocolStopsDelivery(self):
        """
        A consumer that pauses us from inside dataReceived stops further
        delivery at once.
        """

        class Pauser(RecordingProtocol):
            def dataReceived(self, data):
                super().dataReceived(data)
                self.transport.pauseProducing()

        connection = self.connect(protocol=Pauser())
        connection.pauseProducing()
        self.feed(fromGuest(1, 1, payload=b"one"))
        connection.resumeProducing()
        self.feed(fromGuest(4, 1, payload=b"two"))
        self.assertEqual(self.protocol.received(), b"one")
        self.assertEqual(connection.tcb.recvQueue, 3)


class HostToGuestFlowTests(ConnectionTestCase):
    """
    A producer (the host transport) writing to us is paused at highWater
    bytes unacknowledged and resumed at lowWater.
    """

    def test_pauseAtHighWater(self):
        """
        Queued bytes reaching highWater pause the registered producer; its
        producerState says so.
        """
        connection = self.connect(highWater=4000, lowWater=1000, window=0)
        producer = StringTransport()
        connection.registerProducer(producer, True)
        connection.write(b"x" * 3999)
        self.assertEqual(producer.producerState, "producing")
        connection.write(b"x")
        self.assertEqual(producer.producerState, "paused")

    def test_resumeAtLowWater(self):
        """
        ACKs that bring the queue to lowWater resume the producer; in
        between nothing changes (hysteresis).
        """
        connection = self.connect(highWater=4000, lowWater=1000)
        producer = StringTransport()
        connection.registerProducer(producer, True)
        connection.write(b"x" * 5000)
        self.assertEqual(producer.producerState, "paused")
        self.feed(fromGuest(1, 2001))
        self.assertEqual((connection.tcb.sendQueue, producer.producerState), (3000, "paused"))
        self.feed(fromGuest(1, 4000))
        self.assertEqual((connection.tcb.sendQueue, producer.producerState), (1001, "paused"))
        self.feed(fromGuest(1, 4001))
        self.assertEqual(producer.producerState, "producing")

    def test_registerWhileFull(self):
        """
        A producer registered while the queue is already above highWater is
        paused at once.
        """
        connection = self.connect(highWater=4000, lowWater=1000, window=0)
        connection.write(b"x" * 5000)
        producer = StringTransport()
        connection.registerProducer(producer, True)
        self.assertEqual(producer.producerState, "paused")

    def test_unregister(self):
        """
        After unregisterProducer the old producer is left alone.
        """
        connection = self.connect(highWater=4000, lowWater=1000, window=0)
        producer = StringTransport()
        connection.registerProducer(producer, True)
        connection.unregisterProducer()
        connection.write(b"x" * 5000)
        self.assertEqual(producer.producerState, "producing")

    def test_streamingOnly(self):
        """
        Pull producers are refused.
        """
        connection = self.connect()
        self.assertRaises(ValueError, connection.registerProducer, StringTransport(), False)

    def test_producerStoppedWhenConnectionEnds(self):
        """
        When the connection is lost, the producer is stopped.
        """
        connection = self.connect()
        producer = StringTransport()
        connection.registerProducer(producer, True)
        connection.abortConnection()
        self.assertEqual(producer.producerState, "stopped")


class TimerTests(ConnectionTestCase):
    """
    The one timer follows the control block's C{pollAt}, asked once per
    event.
    """

    def countPolls(self, tcb):
        calls = []
        pollAt = tcb.pollAt

        def counting(now):
            calls.append(now)
            return pollAt(now)

        tcb.pollAt = counting
        return calls

    def test_onePollPerEvent(self):
        """
        A segment, a write and a timer each cost one C{pollAt}, unless the
        event leaves work due at once (then one more after dispatching it).
        """
        connection = self.connect()
        calls = self.countPolls(connection.tcb)
        self.feed(fromGuest(1, 1, payload=b"q"))
        self.assertEqual(len(calls), 1)
        connection.write(b"a")
        self.assertEqual(len(calls), 2)
        self.advance(CONFIG.delayedAck)
        self.assertEqual(len(calls), 3)
        # A read that reopens a closed window: the update is due at once.
        connection.pauseProducing()
        for i in range(8):
            self.feed(fromGuest(2 + 1000 * i, 2, payload=b"c" * 1000))
        del calls[:]
        connection.resumeProducing()
        self.assertEqual(len(calls), 2)

    def test_reentrantWriteKeepsTimer(self):
        """
        A producer that writes from C{resumeProducing} (inside the event
        that drained the queue) leaves the timer armed for what it wrote:
        the outer event does not re-arm from its earlier C{pollAt}.
        """
        connection = self.connect(highWater=4000, lowWater=1000)

        class WritingProducer(StringTransport):
            def resumeProducing(self):
                super().resumeProducing()
                connection.write(b"more")

        producer = WritingProducer()
        connection.registerProducer(producer, True)
        connection.write(b"x" * 4000)
        self.assertEqual(producer.producerState, "paused")
        self.layer.take()
        self.feed(fromGuest(1, 4001))
        [more] = self.layer.take()
        self.assertEqual(more.payload, b"more")
        [call] = self.checkTimer()
        self.assertEqual(call.getTime(), connection.tcb.pollAt(self.clock.seconds()))


class CloseTests(ConnectionTestCase):
    def test_guestFinReadConnectionLost(self):
        """
        The guest's FIN after data: the data, then readConnectionLost; the
        connection stays up for writing (CLOSE-WAIT), and what is written
        carries the ACK of the data and the FIN.
        """
        connection = self.connect()
        self.feed(fromGuest(1, 1, payload=b"req"))
        self.feed(fromGuest(4, 1, FIN | ACK))
        self.assertEqual(
            self.protocol.events, ["connectionMade", ("data", b"req"), "readConnectionLost"]
        )
        self.assertEqual(self.layer.take(), [])
        self.assertIs(connection.tcb.state, State.CLOSE_WAIT)
        connection.write(b"resp")
        [seg] = self.layer.take()
        self.assertEqual((seg.payload, seg.ack), (b"resp", remote(5)))

    def test_plainProtocolClosesOnEOF(self):
        """
        A protocol that cannot half-close: the guest's FIN closes our side
        too (FIN back, carrying the ACK of theirs: one segment).
        """
        self.connect(protocol=PlainProtocol())
        self.feed(fromGuest(1, 1, FIN | ACK))
        out = self.layer.take()
        self.assertEqual([(s.flags, s.ack) for s in out], [(FIN | ACK, remote(2))])
        self.assertTrue(self.connection.disconnecting)

    def test_loseWriteConnectionAfterQueueDrains(self):
        """
        loseWriteConnection: FIN after everything written, once the window
        lets it all out.
        """
        connection = self.connect(window=0)
        connection.write(b"q" * 1500)
        connection.loseWriteConnection()
        [probe] = self.layer.take()
        self.assertEqual(len(probe.payload), 1)
        self.feed(fromGuest(1, 1, window=64000))
        out = self.layer.take()
        self.assertEqual(
            [(s.seq, len(s.payload), s.flags) for s in out],
            [(local(1), 1000, ACK), (local(1001), 500, ACK | PSH), (local(1501), 0, FIN | ACK)],
        )
        self.assertIs(connection.tcb.state, State.FIN_WAIT_1)

    def test_closeAgainSendsNothing(self):
        """
        The host's EOF, then its close (loseWriteConnection, then
        loseConnection): one FIN, and nothing more for the second.
        """
        connection = self.connect()
        connection.loseWriteConnection()
        [fin] = self.layer.take()
        self.assertEqual(fin.flags, FIN | ACK)
        connection.loseWriteConnection()
        connection.loseConnection()
        self.assertEqual(self.layer.take(), [])
        self.assertTrue(connection.disconnecting)
        self.assertIs(connection.tcb.state, State.FIN_WAIT_1)
        self.checkTimer()

    def test_loseConnectionAfterHalfCloseDeliversHeld(self):
        """
        loseConnection after loseWriteConnection while the consumer paused
        us: the held bytes still reach the protocol (and their window is
        announced), no second FIN.
        """
        connection = self.connect()
        connection.pauseProducing()
        for i in range(8):
            self.feed(fromGuest(1 + 1000 * i, 1, payload=b"c" * 1000))
        connection.loseWriteConnection()
        self.layer.take()
        connection.loseConnection()
        self.assertEqual(self.protocol.received(), b"c" * 8000)
        [update] = self.layer.take()
        self.assertEqual((update.flags, update.ack, update.window), (ACK, remote(8001), 8000))

    def test_bothClosedTimeWait(self):
        """
        Our FIN, its ACK, the guest's FIN: TIME-WAIT.  The protocol is told
        at once (connectionLost, ConnectionDone), the layer only when
        TIME-WAIT expires.
        """
        connection = self.connect()
        connection.loseWriteConnection()
        self.layer.take()
        self.feed(fromGuest(1, 2))
        self.feed(fromGuest(1, 2, FIN | ACK))
        self.assertIs(connection.tcb.state, State.TIME_WAIT)
        self.assertEqual(self.protocol.events[-2], "readConnectionLost")
        kind, reason = self.protocol.events[-1]
        self.assertEqual(kind, "connectionLost")
        self.assertTrue(reason.check(error.ConnectionDone))
        self.assertEqual(self.layer.closed, [])
        self.advance(CONFIG.timeWait)
        self.assertEqual(self.layer.closed, [connection])
        self.assertIs(connection.tcb.state, State.CLOSED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len([e for e in self.protocol.events if e[0] == "connectionLost"]), 1)

    def test_lastAckCloses(self):
        """
        The guest closes first, we close, its ACK: closed; the protocol and
        the layer are told together.
        """
        connection = self.connect()
        self.feed(fromGuest(1, 1, FIN | ACK))
        connection.loseConnection()
        out = self.layer.take()
        self.assertEqual(out[-1].flags, FIN | ACK)
        self.feed(fromGuest(2, 2))
        self.assertEqual(self.layer.closed, [connection])
        self.assertTrue(self.protocol.events[-1][1].check(error.ConnectionDone))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_abortConnection(self):
        """
        abortConnection: RST to the guest, connectionLost(ConnectionLost),
        the layer told, no timer left.
        """
        connection = self.connect()
        connection.write(b"pending")
        self.layer.take()
        connection.abortConnection()
        [rst] = self.layer.take()
        self.assertEqual((rst.flags, rst.seq, rst.ack), (RST | ACK, local(8), remote(1)))
        kind, reason = self.protocol.events[-1]
        self.assertTrue(reason.check(error.ConnectionLost))
        self.assertEqual(self.layer.closed, [connection])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        connection.abortConnection()
        self.assertEqual(self.layer.take(), [])
        self.assertEqual(self.layer.closed, [connection])

    def test_stopProducingAborts(self):
        """
        stopProducing (the host transport went away) resets the guest.
        """
        connection = self.connect()
        connection.stopProducing()
        [rst] = self.layer.take()
        self.assertEqual(rst.flags, RST | ACK)
        connection.stopProducing()
        self.assertEqual(self.layer.take(), [])

    def test_guestReset(self):
        """
        The guest's RST: connectionLost with ConnectionLost, layer told.
        """
        connection = self.connect()
        self.feed(fromGuest(1, 1, RST))
        kind, reason = self.protocol.events[-1]
        self.assertTrue(reason.check(error.ConnectionLost))
        self.assertEqual(self.layer.closed, [connection])
        self.assertEqual(self.layer.take(), [])

    def test_guestStopsAnswering(self):
        """
        Retransmissions that go unanswered end with TimeoutError and a RST.
        """
        config = replace(CONFIG, maxRetries=2)
        connection = self.connect(config=config)
        connection.write(b"x")
        self.layer.take()
        self.advance(0.2)
        self.advance(0.4)
        self.assertEqual(len(self.layer.take()), 2)
        self.advance(0.8)
        [rst] = self.layer.take()
        self.assertEqual(rst.flags, RST | ACK)
        self.assertTrue(self.protocol.events[-1][1].check(error.TimeoutError))
        self.assertEqual(self.layer.closed, [connection])

    def test_writeAfterCloseIgnored(self):
        """
        Writes after loseWriteConnection send nothing.
        """
        connection = self.connect()
        connection.loseWriteConnection()
        self.layer.take()
        connection.write(b"late")
        self.assertEqual(self.layer.take(), [])

    def test_abortFromDataReceived(self):
        """
        A protocol that aborts from inside dataReceived gets nothing more
        (not the EOF that came with the data); the RST carries the ACK
        (delayed until then).
        """

        class Aborter(RecordingProtocol):
            def dataReceived(self, data):
                super().dataReceived(data)
                self.transport.abortConnection()

        self.connect(protocol=Aborter())
        self.feed(fromGuest(1, 1, FIN | ACK, b"x"))
        self.assertEqual(
            [e if isinstance(e, str) else e[0] for e in self.protocol.events],
            ["connectionMade", "data", "connectionLost"],
        )
        self.assertEqual([s.flags for s in self.layer.take()], [RST | ACK])
