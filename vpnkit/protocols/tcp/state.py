# -*- test-case-name: tests.test_tcp_state -*-
"""
The TCP control block: a sans-I/O state machine (RFC 9293) for one
connection between vpnkit and a guest.

Three verbs drive it, as in smoltcp: L{TCPControlBlock.segmentReceived}
(a segment from the guest), L{TCPControlBlock.dispatch} (time passed; emit
what is due) and L{TCPControlBlock.pollAt} (when to call C{dispatch} next).
Each returns the segments to send.  Time is always an argument; nothing
here reads a clock or touches a socket (Twisted only logs the state
changes, at debug level).

"Local" is vpnkit's end (the address it impersonates), "remote" the guest.
The states and the one table of changes between them live in
L{transitions}, the receive half in L{receiver}, loss recovery and the
congestion window in L{recovery}; what is and is not implemented is listed in
C{docs/tcp.md}.
"""

from vpnkit.log import debugEnabled, logger
from vpnkit.protocols.tcp.buffers import SendBuffer
from vpnkit.protocols.tcp.config import TCPConfig, windowShift
from vpnkit.protocols.tcp.receiver import FILLED, IN_ORDER, Receiver
from vpnkit.protocols.tcp.recovery import FIRST, NEXT, NewReno, Scoreboard
from vpnkit.protocols.tcp.resets import refuse, resetFor
from vpnkit.protocols.tcp.rtt import RTTEstimator
from vpnkit.protocols.tcp.transitions import (
    FIN_STATES,
    RECEIVING,
    SENDABLE,
    SYNCHRONIZED,
    TRANSITIONS,
    WRITABLE,
    S,
    State,
)
from vpnkit.wire.seq import seqSub
from vpnkit.wire.tcp import ACK, FIN, PSH, RST, SYN, Segment, TCPOptions

__all__ = ["State", "TCPConfig", "TCPControlBlock", "TRANSITIONS", "refuse", "resetFor"]

_MASK = 0xFFFFFFFF

log = logger("vpnkit.tcp")


class TCPControlBlock:
    """
    One connection's state.

    @ivar error: why the connection ended abnormally: C{None}, C{"reset"}
        (the guest's RST), C{"refused"} (its RST for our SYN), C{"timeout"}
        (it stopped answering) or C{"aborted"} (we sent RST).
    @ivar eofReceived: the guest's FIN arrived (all its data is in L{recvQueue} or was read).
    @ivar accepted: the host side exists (L{accept} was called, or we opened).
    """

    def __init__(self, localPort, remotePort, iss, config=TCPConfig()):
        self.localPort = localPort
        self.remotePort = remotePort
        self.config = config
        self.state = S.CLOSED
        self.error = None

        # Send side.
        self.iss = iss
        self.sndUna = self.sndNxt = self.sndMax = iss
        self.sndWnd = self._sndWl1 = self._sndWl2 = 0
        self._sndShift = 0
        self._sendMSS = 536
        self._sndBuf = SendBuffer()
        self._closeRequested = self._finSent = self._synAcked = False
        self._sackPermitted = self._windowScaling = False
        self._ourFinSeq = None
        self._sacked = Scoreboard()

        # Receive side.
        self.irs = 0
        self._rx = Receiver(config.receiveBuffer, config.mss, config.maxOutOfOrderRanges)
        self._finSeq = None
        self.eofReceived = False

        # Congestion control and loss recovery (recovery.py).
        self._cc = NewReno(iss)

        # Timers: absolute deadlines, or None.
        self._rtt = RTTEstimator(config.initialRTO, config.minRTO, config.maxRTO)
        self._rtoAt = self._ackAt = self._timeWaitAt = None
        self._retries = 0
        self._timing = None  # (seq that ends the timed segment, time sent)
        self._ackNow = False
        # What loss recovery asked to send again: the first unacknowledged
        # segment, or (with SACK, one per arriving ACK) the next hole.
        self._retransmitFirst = self._retransmitNext = False
        self._unackedSegments = 0
        self.accepted = False

        # The most payload one segment may carry: the MSS, unless the link
        # takes segmentation-offload super-segments (set by the layer).
        self.segmentLimit = 0

        # Statistics, for diagnostics.
        self.bytesSent = self.retransmits = self.segmentsIn = self.segmentsOut = 0

    # -- construction ----------------------------------------------------------

    @classmethod
    def fromSYN(cls, syn, iss, config=TCPConfig()):
        """
        The control block for a guest's SYN, in SYN-RECEIVED.  Nothing is
        sent until L{accept} (accept after dial: the host connection must
        exist first).
        """
        tcb = cls(syn.dstPort, syn.srcPort, iss, config)
        tcb._transition("synReceived")
        tcb.irs = syn.seq
        tcb._rx.nxt = (syn.seq + 1) & _MASK
        tcb._negotiate(syn)
        tcb._sndWl1 = syn.seq
        tcb._sndWl2 = iss
        # The window of a SYN is never scaled (RFC 7323 2.2).
        tcb.sndWnd = syn.window
        return tcb

    @classmethod
    def connect(cls, localPort, remotePort, iss, now, config=TCPConfig()):
        """
        An active open towards the guest, in SYN-SENT.

        @return: C{(tcb, segments)}: the control block and the SYN to send.
        """
        tcb = cls(localPort, remotePort, iss, config)
        tcb._transition("open")
        tcb.accepted = True
        tcb._rx.shift = windowShift(config.receiveBuffer)
        return tcb, tcb.dispatch(now)

    def _negotiate(self, syn):
        options = syn.options
        mss = options.mss if options.mss else 536
        self._sendMSS = max(64, min(mss, self.config.mss))
        self._windowScaling = options.windowScale is not None
        if self._windowScaling:
            self._sndShift = min(options.windowScale, 14)
            self._rx.shift = windowShift(self.config.receiveBuffer)
        else:
            self._sndShift = 0
            self._rx.shift = 0
        self._sackPermitted = self._rx.sackPermitted = options.sackPermitted
        self._cc.start(self._sendMSS, self.config.initialWindowSegments)

    def accept(self, now):
        """
        The host connection exists: answer the SYN with SYN-ACK.
        """
        self.accepted = True
        return self.dispatch(now)

    # -- application side ------------------------------------------------------

    @property
    def sendQueue(self):
        """
        Bytes written and not yet acknowledged by the guest.
        """
        return len(self._sndBuf)

    @property
    def recvQueue(self):
        """
        In-order bytes from the guest not yet read.
        """
        return len(self._rx.buffer)

    @property
    def advertisedWindow(self):
        return self._rx.window

    @property
    def rcvNxt(self):
        """
        The next sequence number expected from the guest.
        """
        return self._rx.nxt

    @property
    def bytesReceived(self):
        return self._rx.bytesReceived

    @property
    def cwnd(self):
        """
        The congestion window in bytes.
        """
        return self._cc.cwnd

    @cwnd.setter
    def cwnd(self, value):
        self._cc.cwnd = value

    @property
    def ssthresh(self):
        return self._cc.ssthresh

    @property
    def sendMSS(self):
        return self._sendMSS

    @property
    def closeRequested(self):
        """
        Whether the application closed its side (L{close} was called).
        """
        return self._closeRequested

    @property
    def canSend(self):
        """
        Whether L{send} still takes data (the application has not closed).
        """
        return not self._closeRequested and self.state in WRITABLE

    def send(self, data):
        """
        Queue bytes for the guest.

        @return: how many were taken (all, unless the connection can no
            longer send).
        """
        if not self.canSend:
            return 0
        self._sndBuf.append(data)
        return len(data)

    def recv(self, size=None):
        """
        Take in-order bytes from the guest.  A window update is scheduled
        when reading opened the window enough to be worth announcing.
        """
        data, announce = self._rx.take(size)
        if announce and self.state in RECEIVING:
            # At once.  The first read after the handshake opens the 64 KiB
            # of the SYN-ACK: its update also acknowledges the guest's first
            # segment at once, as Linux's quick-ACK mode does at the start
            # of a connection, so a guest that writes twice before it reads
            # (Nagle holding its second write for that ACK) never waits out
            # the delayed-ACK time.
            self._ackNow = True
        return data

    def close(self):
        """
        The application will send nothing more: FIN once the queue drains.
        """
        if self._closeRequested:
            return
        self._closeRequested = True
        if self.state is S.SYN_RECEIVED:
            # Our SYN is not acknowledged yet, and the send buffer counts
            # from just after it: FIN (and any data) waits for the ACK.
            return
        self._transition("close")

    def abort(self):
        """
        Reset the connection.

        @return: the RST to send (none if the guest never heard of us).
        """
        if self.state is S.CLOSED:
            return []
        out = []
        # No RST from TIME-WAIT (RFC 9293 3.10.5): the guest has finished
        # both ways, and a RST could only hit a new connection on the pair.
        if self.state not in (S.SYN_SENT, S.TIME_WAIT) and (
            self.accepted or self.state in SYNCHRONIZED
        ):
            out.append(self._make(self._acceptableSeq(), RST | ACK))
        self._enterClosed("aborted")
        return out

    # -- segments from the guest ------------------------------------------------

    def segmentReceived(self, seg, now):
        """
        Process one segment from the guest as RFC 9293 3.10.7 says for the
        state.  Past SYN-SENT, its steps (3.10.7.4) one method each, in
        order, but for the third (security) and sixth (urgent data); a step
        that returns segments ends the processing, C{None} goes on.

        @return: the segments to send now.
        """
        self.segmentsIn += 1
        state = self.state
        if state is S.CLOSED:
            return resetFor(seg)
        if state is S.SYN_SENT:
            return self._synSentReceived(seg, now)
        if state is S.SYN_RECEIVED:
            out = self._checkSynReceived(seg, now)
            if out is not None:
                return out
        flags = seg.flags
        offset = seqSub(seg.seq, self._rx.nxt)
        out = self._checkSequence(seg, offset, now)
        if out is not None:
            return out
        if flags & RST:
            return self._checkReset(offset, now)
        if flags & SYN:
            return self._checkSyn(now)
        if not flags & ACK:
            return []
        out = self._processAck(seg, now)
        if out is not None:
            return out
        if seg.payload:
            self._processText(seg.payload, offset, now)
        if flags & FIN:
            self._processFin(seg, now)
        if self._finSeq is not None:
            self._checkFin(now)
        return self.dispatch(now)

    def _checkSynReceived(self, seg, now):
        """
        SYN-RECEIVED, before the steps: until L{accept} a RST ends it and
        all else is absorbed; after it, the guest's SYN again means our
        SYN-ACK was lost.
        """
        flags = seg.flags
        if not self.accepted:
            if flags & RST:
                self._enterClosed("reset")
            return []
        if flags & SYN and not flags & ACK and seg.seq == self.irs:
            if self.sndMax != self.iss:
                self._rtoAt = now
            return self.dispatch(now)
        return None

    def _checkSequence(self, seg, offset, now):
        """
        RFC 9293 3.10.7.4, first step: check the sequence number.  Outside
        the window: ACK it (drop a RST).  In TIME-WAIT a new SYN is left to
        the caller; the guest's FIN again (just behind rcv.nxt: our ACK was
        lost) restarts the timer.
        """
        flags = seg.flags
        seqLen = len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if self._rx.acceptable(offset, seqLen):
            return None
        if flags & RST:
            return []
        if self.state is S.TIME_WAIT:
            if flags & SYN:
                return []
            if flags & FIN:
                self._timeWaitAt = now + self.config.timeWait
        self._ackNow = True
        return self.dispatch(now)

    def _checkReset(self, offset, now):
        """
        RFC 9293 3.10.7.4, second step: check the RST bit.  Only one at
        exactly rcv.nxt resets (RFC 5961 3.2), others get a challenge ACK;
        TIME-WAIT ignores it (RFC 1337: no assassination).
        """
        if self.state is S.TIME_WAIT:
            return []
        if offset == 0:
            self._enterClosed("reset")
            return []
        self._ackNow = True
        return self.dispatch(now)

    def _checkSyn(self, now):
        """
        RFC 9293 3.10.7.4, fourth step: check the SYN bit.  A SYN here gets
        a challenge ACK (RFC 5961 4.2).
        """
        self._ackNow = True
        return self.dispatch(now)

    def _processAck(self, seg, now):
        """
        RFC 9293 3.10.7.4, fifth step: check the ACK field.  It completes
        the handshake (or gets a RST), updates the window and SACK
        scoreboard, frees acknowledged data or counts a duplicate ACK.
        """
        if self.state is S.SYN_RECEIVED:
            if seqSub(seg.ack, self.iss) <= 0 or seqSub(seg.ack, self.sndMax) > 0:
                return [Segment(self.localPort, self.remotePort, seg.ack, 0, RST, 0)]
            self.sndUna = (self.iss + 1) & _MASK
            self._handshakeDone(now)
            if self._closeRequested:
                self._transition("close")
            self._updateWindow(seg)
        ack = seg.ack
        acked = seqSub(ack, self.sndUna)
        if seqSub(ack, self.sndMax) > 0:
            # It acknowledges something we never sent.
            self._ackNow = True
            return self.dispatch(now)
        self._retries = 0
        newlySacked = 0
        if seg.options.sack and self._sackPermitted:
            newlySacked = self._sacked.record(seg.options.sack, self.sndUna, self.sndMax)
        if acked < 0:
            # An old, reordered ACK: nothing to learn from it.
            return None
        oldWindow = self.sndWnd
        self._updateWindow(seg)
        if oldWindow == 0 and self.sndWnd:
            # The window reopened.  What we sent into it while it was
            # closed (a probe) was dropped unless this ACK covers it: send
            # from snd.una again rather than leave a hole (BSD pulls snd.nxt
            # back the same way).  Karn: what is resent is not timed.
            if self.sndNxt != self.sndUna:
                self.sndNxt = self.sndUna
                self._timing = None
        if acked == 0:
            # A duplicate ACK (RFC 5681, widened by RFC 6675): nothing new
            # acknowledged, no data, and either the window unchanged or new
            # SACK information (a Linux guest nudges its window in almost
            # every ACK, so the window test alone would hide the losses).
            if (
                not seg.payload
                and not seg.flags & (SYN | FIN)
                and self.sndMax != self.sndUna
                and (self.sndWnd == oldWindow or newlySacked)
            ):
                self._duplicateAck(now)
            return None
        self._newAck(ack, acked, now)
        return [] if self.state is S.CLOSED else None

    def _processText(self, payload, offset, now):
        """
        RFC 9293 3.10.7.4, seventh step: process the segment text (in the
        receiving states).  ACK at once anything out of order, a filled
        hole, nothing usable, or every second segment (or one of two MSS);
        else after the delayed-ACK time.
        """
        if self.state not in RECEIVING:
            return
        what, length = self._rx.accept(offset, payload)
        if what is IN_ORDER or what is FILLED:
            self._unackedSegments += 1
            if what is FILLED or self._unackedSegments >= 2 or length >= 2 * self.config.mss:
                self._ackNow = True
            elif self._ackAt is None:
                self._ackAt = now + self.config.delayedAck
        else:
            self._ackNow = True

    def _processFin(self, seg, now):
        """
        RFC 9293 3.10.7.4, eighth step: check the FIN bit: note the first
        (L{_checkFin} takes it in order); a FIN again means our ACK was lost.
        """
        state = self.state
        if self._finSeq is None and state in RECEIVING:
            self._finSeq = (seg.seq + len(seg.payload)) & _MASK
        elif state in (S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT):
            self._ackNow = True
            if state is S.TIME_WAIT:
                self._timeWaitAt = now + self.config.timeWait

    def _checkFin(self, now):
        """
        Take the guest's FIN once everything before it has arrived.
        """
        rx = self._rx
        if self.eofReceived or self._finSeq != rx.nxt:
            return
        rx.nxt = (rx.nxt + 1) & _MASK
        self.eofReceived = True
        if self.state is S.ESTABLISHED:
            # To CLOSE-WAIT: the application usually answers an EOF by
            # closing, and our FIN then carries the ACK (a delayed ACK, as
            # Linux's after a FIN in ESTABLISHED; the guest retransmits its
            # FIN only after its RTO, 200 ms at least).
            if self._ackAt is None:
                self._ackAt = now + self.config.delayedAck
        else:
            # FIN-WAIT: the guest is waiting for nothing else from us.
            self._ackNow = True
        self._transition("finReceived", now)

    def _synSentReceived(self, seg, now):
        """
        RFC 9293 3.10.7.3: a segment in SYN-SENT.  A SYN-ACK for our SYN
        establishes the connection, a bare SYN is a simultaneous open.
        """
        flags = seg.flags
        if flags & ACK:
            if seqSub(seg.ack, self.iss) <= 0 or seqSub(seg.ack, self.sndMax) > 0:
                if flags & RST:
                    return []
                return [Segment(self.localPort, self.remotePort, seg.ack, 0, RST, 0)]
        if flags & RST:
            if flags & ACK:
                self._enterClosed("refused")
            return []
        if not flags & SYN:
            return []
        self.irs = seg.seq
        self._rx.nxt = (seg.seq + 1) & _MASK
        # The window our SYN offered starts at the guest's first byte.
        self._rx.synWindow()
        self._negotiate(seg)
        # The window of a SYN-ACK is never scaled (RFC 7323 2.2).
        self.sndWnd = seg.window
        if flags & ACK:
            self.sndUna = seg.ack
            self._sndWl1 = seg.seq
            self._sndWl2 = seg.ack
            self._handshakeDone(now)
            self._ackNow = True
        else:
            self._transition("synReceived")
            self._rtoAt = now
        return self.dispatch(now)

    def _handshakeDone(self, now):
        """
        Our SYN is acknowledged: sample the RTT (Karn), ESTABLISHED.
        """
        self._synAcked = True
        if self._timing is not None:
            self._rtt.sample(now - self._timing[1])
            self._timing = None
        self._retries = 0
        self._rtoAt = None
        self._transition("synAcked")

    def _updateWindow(self, seg):
        if seqSub(seg.seq, self._sndWl1) > 0 or (
            seg.seq == self._sndWl1 and seqSub(seg.ack, self._sndWl2) >= 0
        ):
            self.sndWnd = seg.window << self._sndShift
            self._sndWl1 = seg.seq
            self._sndWl2 = seg.ack

    def _newAck(self, ack, acked, now):
        mss = self._sendMSS
        finAcked = False
        dataAcked = acked
        if self._ourFinSeq is not None and seqSub(ack, self._ourFinSeq) > 0:
            finAcked = True
            dataAcked -= 1
        if dataAcked > len(self._sndBuf):
            dataAcked = len(self._sndBuf)
        self._sndBuf.drop(dataAcked)
        self.bytesSent += dataAcked
        self.sndUna = ack
        if seqSub(self.sndNxt, ack) < 0:
            self.sndNxt = ack
        self._sacked.acknowledged(ack)
        # RTT sample (Karn: the timed segment was never retransmitted).
        if self._timing is not None and seqSub(ack, self._timing[0]) >= 0:
            self._rtt.sample(now - self._timing[1])
            self._timing = None
        self._rtt.resetBackoff()
        action = self._cc.newAck(ack, acked, self.sndMax, mss, bool(self._sacked))
        if action is FIRST:
            self._retransmitFirst = True
        elif action is NEXT:
            self._retransmitNext = True
        # Retransmission timer (RFC 6298 5.2/5.3).
        self._rtoAt = None if self.sndMax == self.sndUna else now + self._rtt.rto
        if finAcked:
            self._transition("finAcked", now)

    def _duplicateAck(self, now):
        action = self._cc.duplicate(
            self.sndUna, self.sndMax, self._sendMSS, self._sacked.total(), bool(self._sacked)
        )
        if action is FIRST:
            # Retransmit the first unacknowledged segment now.
            self._retransmitFirst = True
            self._timing = None
            self._rtoAt = now + self._rtt.rto
        elif action is NEXT:
            self._retransmitNext = True

    # -- what to send ------------------------------------------------------------

    def pollAt(self, now):
        """
        When L{dispatch} next has something to do: C{now}, a later time, or
        C{None} (nothing until a segment arrives or the application acts).
        """
        if self.state is S.CLOSED:
            return None
        if self._ackNow or self._retransmitFirst or self._retransmitNext:
            return now
        if self.accepted and self._canSendNow():
            return now
        at = self._rtoAt
        t = self._ackAt
        if t is not None and (at is None or t < at):
            at = t
        t = self._timeWaitAt
        if t is not None and (at is None or t < at):
            at = t
        return at

    def _canSendNow(self):
        """
        Whether L{_sendData} would emit something now, in step with it so
        that L{pollAt} never promises work that L{dispatch} does not do.
        """
        state = self.state
        if state is S.SYN_RECEIVED or state is S.SYN_SENT:
            return self.sndMax == self.iss
        if state not in SENDABLE:
            return False
        total = len(self._sndBuf)
        offset = seqSub(self.sndNxt, self.sndUna)
        if offset >= total:
            return self._closeRequested and not self._finSent and state in FIN_STATES
        if self.sndWnd == 0:
            return offset == 0 and self._rtoAt is None
        window = min(self.sndWnd, self._congestionWindow())
        if offset >= window:
            return False
        size = min(self._sendMSS, total - offset, window - offset)
        retransmission = seqSub(self.sndNxt, self.sndMax) < 0
        return not (size < self._sendMSS and offset + size < total and offset > 0) or retransmission

    def dispatch(self, now):
        """
        Everything due at C{now}: retransmissions, new data, FIN, ACKs.
        """
        state = self.state
        if state is S.CLOSED:
            return []
        out = []
        if self._timeWaitAt is not None and now >= self._timeWaitAt:
            self._timeWaitAt = None
            self._transition("timeWaitExpired")
            return []
        if self._rtoAt is not None and now >= self._rtoAt:
            if not self._retransmissionTimeout(now):
                return [self._make(self._acceptableSeq(), RST | ACK)] if self._synAcked else []
            state = self.state
        if not self.accepted:
            return out
        if state is S.SYN_RECEIVED or state is S.SYN_SENT:
            if self.sndMax == self.iss:
                out.append(self._synSegment(state, now))
        else:
            if self._retransmitFirst:
                self._retransmitFirst = False
                self._resendFirst(out)
            elif self._retransmitNext:
                self._retransmitNext = False
                self._resendNextHole(out)
            self._sendData(now, out)
        if self._ackAt is not None and now >= self._ackAt:
            self._ackNow = True
        if self._ackNow and state is not S.SYN_SENT:
            out.append(self._make(self._acceptableSeq(), ACK))
            self._ackSent()
        self.segmentsOut += len(out)
        return out

    def _synSegment(self, state, now):
        # Our SYN offers everything; a SYN-ACK only what the guest offered.
        active = state is S.SYN_SENT
        options = TCPOptions(
            mss=self.config.mss,
            windowScale=self._rx.shift if active or self._windowScaling else None,
            sackPermitted=active or self._sackPermitted,
        )
        flags = SYN if active else SYN | ACK
        ack = 0 if active else self.rcvNxt
        seg = Segment(
            self.localPort, self.remotePort, self.iss, ack, flags, self._rx.synWindow(), options
        )
        self.sndNxt = self.sndMax = (self.iss + 1) & _MASK
        if self._rtoAt is None:
            self._rtoAt = now + self._rtt.rto
        if self._timing is None and self._retries == 0:
            self._timing = (self.sndNxt, now)
        if flags & ACK:
            self._ackSent()
        return seg

    def _sendData(self, now, out):
        state = self.state
        if state not in SENDABLE:
            return
        buf = self._sndBuf
        una = self.sndUna
        total = len(buf)
        offset = seqSub(self.sndNxt, una)
        if offset >= total and (self._finSent or not self._closeRequested):
            # Nothing new to send (most calls: a segment arrived).
            return
        mss = self._sendMSS
        if self.sndWnd == 0:
            # Zero window: probe with one byte once nothing is in flight,
            # again on every timeout (with backoff) until the guest opens
            # its window.  The guest's answers keep the retry count at zero,
            # so a guest that is alive but not reading is never given up.
            window = 1 if offset == 0 and self._rtoAt is None else 0
        else:
            window = min(self.sndWnd, self._congestionWindow())
        sent = False
        largest = max(mss, self.segmentLimit)
        while offset < total and offset < window:
            seq = (una + offset) & _MASK
            retransmission = seqSub(seq, self.sndMax) < 0
            size = min(mss if retransmission else largest, total - offset, window - offset)
            if retransmission and self._sacked:
                skip, limit = self._sacked.skipAt(seq)
                if skip:
                    # Never past the data: a block can end with our FIN,
                    # which is then sent again at its own sequence number.
                    offset = min(offset + skip, total)
                    continue
                if limit is not None:
                    size = min(size, limit)
            elif not retransmission and size < mss and offset + size < total and offset > 0:
                # Sender silly-window avoidance: with data in flight, wait
                # for room for a full segment (not for data already sent
                # once, as _canSendNow says).
                break
            flags = ACK | PSH if offset + size == total else ACK
            out.append(self._make(seq, flags, buf.peek(offset, size)))
            if retransmission:
                self.retransmits += 1
            elif self._timing is None:
                self._timing = ((seq + size) & _MASK, now)
            offset += size
            sent = True
            end = (una + offset) & _MASK
            if seqSub(end, self.sndMax) > 0:
                self.sndMax = end
        self.sndNxt = (una + offset) & _MASK
        if offset >= total and self._closeRequested and not self._finSent and state in FIN_STATES:
            out.append(self._make(self.sndNxt, FIN | ACK))
            self._finSent = True
            self._ourFinSeq = self.sndNxt
            self.sndNxt = (self.sndNxt + 1) & _MASK
            if seqSub(self.sndNxt, self.sndMax) > 0:
                self.sndMax = self.sndNxt
            sent = True
        if sent:
            self._ackSent()
            if self._rtoAt is None:
                self._rtoAt = now + self._rtt.rto

    def _resendFirst(self, out):
        """
        Fast retransmit: send the first unacknowledged segment again (or
        our FIN, if that is all that is outstanding), without touching what
        else is in flight.
        """
        if self.sndMax == self.sndUna:
            return
        buf = self._sndBuf
        una = self.sndUna
        if len(buf):
            size = min(self._sendMSS, len(buf), seqSub(self.sndMax, una))
            if self._sacked:
                limit = seqSub(self._sacked.firstStart(), una)
                if limit > 0:
                    size = min(size, limit)
            flags = ACK | PSH if size == len(buf) else ACK
            out.append(self._make(una, flags, buf.peek(0, size)))
            self._cc.retransmitted((una + size) & _MASK)
        elif self._finSent:
            out.append(self._make(una, FIN | ACK))
        else:
            return
        self.retransmits += 1
        self._ackSent()

    def _congestionWindow(self):
        return self._cc.window(self._sendMSS, self.sndNxt == self.sndMax)

    def _resendNextHole(self, out):
        """
        SACK recovery: send the next segment of the lowest hole (data the
        guest has not reported, below data it has) not yet retransmitted in
        this recovery.
        """
        una = self.sndUna
        highRxt = self._cc.highRxt
        hole = self._sacked.nextHole(highRxt if seqSub(highRxt, una) > 0 else una)
        if hole is None:
            return
        start, length = hole
        offset = seqSub(start, una)
        size = min(self._sendMSS, length, len(self._sndBuf) - offset)
        if size <= 0:
            return
        out.append(self._make(start, ACK, self._sndBuf.peek(offset, size)))
        self._cc.retransmitted((start + size) & _MASK)
        self.retransmits += 1
        self._ackSent()

    def _retransmissionTimeout(self, now):
        """
        The retransmission timer fired: C{False} if the connection was
        given up.
        """
        self._rtoAt = None
        self._retries += 1
        limit = self.config.synRetries if not self._synAcked else self.config.maxRetries
        if self._retries > limit:
            self._enterClosed("timeout")
            return False
        self._rtt.backoff()
        self._timing = None
        if not self._synAcked:
            # Send the SYN (or SYN-ACK) again.
            self.sndNxt = self.sndMax = self.iss
            return True
        self._cc.timeout(seqSub(self.sndMax, self.sndUna), self.sndMax, self._sendMSS)
        self._retransmitFirst = self._retransmitNext = False
        self.sndNxt = self.sndUna
        if self._finSent and seqSub(self.sndMax, self.sndUna) > 0:
            self._finSent = False
        return True

    def _acceptableSeq(self):
        """
        The sequence number for an ACK or RST that the guest accepts: not
        snd.nxt, which a timeout winds back below its rcv.nxt (an ACK war),
        but snd.max, never past the right edge of its window (where a
        zero-window probe leaves it), as Linux's tcp_acceptable_seq().
        """
        if not self._synAcked:
            return self.sndMax
        edge = (self.sndUna + self.sndWnd) & _MASK
        return edge if seqSub(self.sndMax, edge) > 0 else self.sndMax

    def _make(self, seq, flags, payload=b""):
        rx = self._rx
        window = rx.windowField()
        return Segment(
            self.localPort, self.remotePort, seq, rx.nxt, flags, window, rx.sackOption(), payload
        )

    def _ackSent(self):
        self._ackNow = False
        self._ackAt = None
        self._unackedSegments = 0

    def _enterClosed(self, error):
        """
        End abnormally: C{error} (the first one stays) is also the event.
        """
        if self.error is None:
            self.error = error
        self._transition(error)

    def _transition(self, event, now=None):
        """
        Apply L{TRANSITIONS}: the one place the state changes, logged at
        debug level.  TIME-WAIT starts its timer; CLOSED stops all timers
        and drops both buffers.  Returns the new state (C{None}: no change).
        """
        old = self.state
        new = TRANSITIONS.get((old, event))
        if new is None:
            return None
        self.state = new
        if debugEnabled():
            ports = (self.localPort, self.remotePort)
            log.debug("{old} -[{event}]-> {new}", old=old, event=event, new=new, ports=ports)
        if new is S.TIME_WAIT:
            self._timeWaitAt = now + self.config.timeWait
        elif new is S.CLOSED:
            self._rtoAt = self._ackAt = self._timeWaitAt = None
            self._ackNow = self._retransmitFirst = self._retransmitNext = False
            self._sndBuf.clear()
            self._rx.clear()
        return new
