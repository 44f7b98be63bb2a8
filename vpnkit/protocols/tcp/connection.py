# -*- test-case-name: tests.test_tcp_connection -*-
"""
L{TCPConnection}: a guest's TCP connection presented exactly like a Twisted
TCP transport, so any protocol (a host proxy, a DNS server) can sit on it.

This is the thin glue around the sans-I/O L{TCPControlBlock}: every event
(a segment, a write, a timer) is handed to the control block, the segments
it returns go to the guest, and one L{IDelayedCall} is re-armed from
C{pollAt}.  Flow control is Twisted's producer/consumer model both ways:

 - guest to host: whoever consumes our data registers us as its producer;
   while it is paused we stop reading the control block's receive buffer,
   so the window we advertise shrinks to zero and the guest stops;
 - host to guest: whoever writes to us registers as our producer; we pause
   it while more than C{highWater} bytes wait for the guest's ACKs and
   resume it below C{lowWater}.
"""

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.log import logger
from vpnkit.protocols.tcp.state import State

__all__ = ["TCPConnection"]

_SYNCHRONIZED = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING}
)

log = logger("vpnkit.tcp")


@implementer(ITCPTransport, IConsumer, IPushProducer)
class TCPConnection:
    """
    @ivar protocol: the protocol reading from and writing to the guest.
    @ivar flow: the connection's L{vpnkit.protocols.tcp.layer.Flow}.
    """

    disconnecting = False

    def __init__(self, layer, flow, tcb, reactor, highWater=1 << 20, lowWater=1 << 18):
        self._layer = layer
        self.flow = flow
        self.tcb = tcb
        self._clock = reactor
        self._highWater = highWater
        self._lowWater = lowWater
        self.protocol = None
        self._timer = None
        self._timerAt = None
        # Counts _reschedule and _closed calls: an event's re-arming from
        # its pollAt is skipped when another event (re-entering from the
        # protocol or a producer) re-armed after it.
        self._rearmed = 0
        # Host -> guest: the producer writing to us, and whether we paused it.
        self._producer = None
        self._producerPaused = False
        # Guest -> host: why delivery to the protocol is held back.
        self._readPaused = False
        self._eofDelivered = False
        self._closedNotified = False
        self._connected = False
        # An active open (into the guest) waiting for the handshake: the
        # Deferred to fire and the protocol to attach once established.
        self._established = None
        self._pendingProtocol = None

    def whenEstablished(self, protocol):
        """
        For a connection vpnkit opens into the guest: attach C{protocol}
        once the guest completes the handshake.

        @return: a L{Deferred} firing with this connection then, or failing
            with C{ConnectionRefusedError} (the guest answered RST) or
            C{TimeoutError} (it never answered).
        """
        self._established = Deferred()
        self._pendingProtocol = protocol
        return self._established

    # -- wiring --------------------------------------------------------------

    def makeConnection(self, protocol):
        """
        Attach C{protocol} and tell it it is connected.
        """
        self.protocol = protocol
        self._connected = True
        protocol.makeConnection(self)
        self._afterEvent(self._clock.seconds())

    # -- events from the layer -------------------------------------------------

    def start(self):
        """
        Send whatever the control block has ready (the SYN-ACK of an
        accepted connection, or our SYN).
        """
        now = self._clock.seconds()
        self._emit(self.tcb.accept(now) if not self.tcb.accepted else self.tcb.dispatch(now))
        self._afterEvent(now)

    def segmentReceived(self, seg):
        now = self._clock.seconds()
        self._emit(self.tcb.segmentReceived(seg, now))
        self._afterEvent(now)

    def _timerFired(self):
        self._timer = None
        self._timerAt = None
        now = self._clock.seconds()
        self._emit(self.tcb.dispatch(now))
        self._afterEvent(now)

    def _emit(self, segments):
        if segments:
            self._layer.sendSegments(self.flow, segments)

    def _afterEvent(self, now):
        tcb = self.tcb
        if self._established is not None and tcb.state in _SYNCHRONIZED:
            d, self._established = self._established, None
            protocol, self._pendingProtocol = self._pendingProtocol, None
            self.makeConnection(protocol)
            d.callback(self)
            return
        self._deliver()
        # One pollAt per event: the event's own dispatch already ran, so
        # work is due now only when delivering made some (a window update).
        at = tcb.pollAt(now)
        if at == now:
            self._emit(tcb.dispatch(now))
            at = tcb.pollAt(now)
        rearmed = self._rearmed
        self._checkWriteFlow()
        state = tcb.state
        if state is State.CLOSED:
            self._closed()
            return
        if state is State.TIME_WAIT:
            # Both directions are finished; only the control block lingers.
            self._notifyProtocol()
        if self._rearmed == rearmed:
            # (Otherwise a producer or the protocol acted on us since the
            # pollAt above, and that event already re-armed from a later
            # one.)
            self._reschedule(now, at)

    def _reschedule(self, now, at):
        """
        Arm the one timer for C{at} (the control block's C{pollAt}).
        """
        self._rearmed += 1
        if at is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timerAt = None
            return
        if at <= now:
            # The control block promised work dispatch() did not do; never
            # spin on it.
            at = now + 0.001
        if self._timer is not None:
            if self._timerAt <= at:
                # Firing early is harmless: it re-arms.
                return
            self._timer.cancel()
        self._timerAt = at
        self._timer = self._clock.callLater(at - now, self._timerFired)

    def _deliver(self):
        """
        Hand the guest's in-order bytes, then its EOF, to the protocol,
        unless the protocol's consumer paused us.
        """
        protocol = self.protocol
        if protocol is None:
            return
        tcb = self.tcb
        while tcb.recvQueue and not self._readPaused:
            protocol.dataReceived(tcb.recv())
            if self.protocol is None:
                return
        if tcb.eofReceived and not tcb.recvQueue and not self._eofDelivered:
            self._eofDelivered = True
            half = IHalfCloseableProtocol(protocol, None)
            if half is not None:
                half.readConnectionLost()
            else:
                self.loseConnection()

    def _checkWriteFlow(self):
        producer = self._producer
        if producer is None:
            return
        queued = self.tcb.sendQueue
        if not self._producerPaused and queued >= self._highWater:
            self._producerPaused = True
            producer.pauseProducing()
        elif self._producerPaused and queued <= self._lowWater:
            self._producerPaused = False
            producer.resumeProducing()

    def _closed(self):
        self._rearmed += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timerAt = None
        if self._closedNotified:
            return
        self._closedNotified = True
        self._layer.connectionClosed(self)
        if self._established is not None:
            d, self._established = self._established, None
            self._pendingProtocol = None
            if self.tcb.error == "timeout":
                d.errback(error.TimeoutError("the guest did not answer"))
            else:
                d.errback(error.ConnectionRefusedError("the guest refused the connection"))
            return
        self._notifyProtocol()

    def _notifyProtocol(self):
        self._connected = False
        protocol, self.protocol = self.protocol, None
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        if protocol is not None:
            reason = self.tcb.error
            if reason is None:
                failure = Failure(error.ConnectionDone())
            elif reason == "timeout":
                failure = Failure(error.TimeoutError("the guest stopped answering"))
            else:
                failure = Failure(error.ConnectionLost(f"connection {reason}"))
            protocol.connectionLost(failure)

    # -- ITransport / ITCPTransport --------------------------------------------

    def write(self, data):
        if not data or self.tcb.send(data) == 0:
            return
        now = self._clock.seconds()
        self._emit(self.tcb.dispatch(now))
        self._afterEvent(now)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseWriteConnection(self):
        """
        Send FIN once everything written has been sent.
        """
        tcb = self.tcb
        if tcb.closeRequested:
            # Already asked (a host's EOF, then its close): nothing new.
            return
        tcb.close()
        now = self._clock.seconds()
        self._emit(self.tcb.dispatch(now))
        self._afterEvent(now)

    def loseConnection(self):
        """
        Close our direction gracefully; whatever the guest still sends is
        acknowledged and discarded.
        """
        self.disconnecting = True
        paused, self._readPaused = self._readPaused, False
        if not self.tcb.closeRequested:
            self.loseWriteConnection()
        elif paused:
            # Already closed our side: only the held bytes to hand over.
            self._afterEvent(self._clock.seconds())

    def abortConnection(self):
        """
        Reset the connection (RST to the guest).
        """
        self._emit(self.tcb.abort())
        self._closed()

    def getPeer(self):
        return self._layer.peerAddress(self.flow)

    def getHost(self):
        return self._layer.hostAddress(self.flow)

    def setTcpNoDelay(self, enabled):
        pass

    def getTcpNoDelay(self):
        return True

    def setTcpKeepAlive(self, enabled):
        pass

    def getTcpKeepAlive(self):
        return False

    # -- IConsumer (host -> guest) -------------------------------------------

    def registerProducer(self, producer, streaming):
        if not streaming:
            raise ValueError("TCPConnection only accepts streaming producers")
        self._producer = producer
        self._producerPaused = False
        self._checkWriteFlow()

    def unregisterProducer(self):
        self._producer = None
        self._producerPaused = False

    # -- IPushProducer (guest -> host) ---------------------------------------

    def pauseProducing(self):
        self._readPaused = True

    def resumeProducing(self):
        if not self._readPaused:
            return
        self._readPaused = False
        if self._connected:
            self._afterEvent(self._clock.seconds())

    def stopProducing(self):
        if self._connected:
            self.abortConnection()

    def __repr__(self):
        return f"<TCPConnection {self.flow} {self.tcb.state}>"
