"""
Tests for L{vpnkit.protocols.tcp.state}: the TCP control block driven by
segment traces, smoltcp style.  Every segment is a template plus the fields
that change; time is an argument.

Every segment fed in and every dispatch also checks the invariant the
Twisted glue relies on never to spin: once the control block has been given
time C{now}, C{pollAt(now)} is C{None} or later than C{now}.
"""

from dataclasses import replace

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.log import debugEnabled, setDebug
from vpnkit.protocols.tcp import state as stateModule
from vpnkit.protocols.tcp.state import (
    TRANSITIONS,
    State,
    TCPConfig,
    TCPControlBlock,
    refuse,
    resetFor,
)
from vpnkit.wire.seq import seqAdd
from vpnkit.wire.tcp import ACK, FIN, NO_OPTIONS, PSH, RST, SYN, Segment, TCPOptions

LOCAL_PORT = 80
REMOTE_PORT = 49500
LOCAL_SEQ = 10000
REMOTE_SEQ = -10000 & 0xFFFFFFFF
CONFIG = TCPConfig(mss=1460, receiveBuffer=64 * 1024)
MSS = 1460
# With CONFIG and the guest's window scale option, our shift is 1: 64 KiB
# does not fit 16 bits.
FULL_WINDOW_FIELD = (64 * 1024) >> 1
# The RTO after tcbEstablished: the handshake's 10 ms sample gives
# 0.01 + 4 * 0.005 = 0.03 s, raised to the 200 ms minimum.
RTO = 0.2

# Segments the guest sends us, and segments we send the guest.  In RECV a
# window or options of None mean "not compared".
SEND = Segment(REMOTE_PORT, LOCAL_PORT, REMOTE_SEQ, 0, ACK, 1000)
RECV = Segment(LOCAL_PORT, REMOTE_PORT, LOCAL_SEQ, 0, ACK, None, None)
SYN_OPTIONS = TCPOptions(mss=1460, windowScale=0, sackPermitted=True)


def seq(base, n):
    return seqAdd(base, n)


def checkPoll(tcb, at):
    """
    The invariant the glue relies on: after the control block has done
    what was due at C{at}, it never asks to run again at or before C{at}.
    """
    nxt = tcb.pollAt(at)
    if nxt is not None and nxt <= at:
        raise AssertionError(f"pollAt({at}) is {nxt} in {tcb.state}: the glue would spin")


def send(tcb, segment, at=0.0):
    """
    Feed C{segment} to C{tcb}; return what it sends.  Unless the test let
    a deadline pass without dispatching (the glue never does), nothing may
    be due at C{at} afterwards.
    """
    before = tcb.pollAt(at)
    out = tcb.segmentReceived(segment, at)
    if before is None or before > at:
        checkPoll(tcb, at)
    return out


def dispatch(tcb, at):
    """
    C{tcb.dispatch(at)}, checking the poll invariant.
    """
    out = tcb.dispatch(at)
    checkPoll(tcb, at)
    return out


def segmentsOf(local, segments):
    """
    C{(offset, length)} of each segment, offsets from C{local}.
    """
    return [((s.seq - local) & 0xFFFFFFFF, len(s.payload)) for s in segments]


class TCPTestCase(SynchronousTestCase):
    localSeq = LOCAL_SEQ
    remoteSeq = REMOTE_SEQ

    def recv(self, segments, expected):
        """
        Assert C{segments} are exactly C{expected}, compared field by field
        (the window and options only where the expectation sets them).
        """
        self.assertEqual(
            [
                (
                    s.srcPort,
                    s.dstPort,
                    s.seq,
                    s.ack,
                    s.flags,
                    bytes(s.payload),
                    s.window if e.window is not None else None,
                    s.options if e.options is not None else None,
                )
                for s, e in zip(segments, expected)
            ]
            + [("unexpected", s) for s in segments[len(expected) :]],
            [
                (e.srcPort, e.dstPort, e.seq, e.ack, e.flags, bytes(e.payload), e.window, e.options)
                for e in expected
            ],
        )

    def recvNothing(self, tcb, at):
        self.assertEqual(dispatch(tcb, at), [])

    def ours(self, n, ack, flags=ACK, payload=b"", **fields):
        """
        A segment we send: at local offset C{n}, acknowledging remote offset
        C{ack} (C{None}: the field is 0, as in a bare RST).
        """
        return replace(
            RECV,
            seq=seq(self.localSeq, n),
            ack=0 if ack is None else seq(self.remoteSeq, ack),
            flags=flags,
            payload=payload,
            **fields,
        )

    def theirs(self, n, ack, flags=ACK, payload=b"", window=64240, **fields):
        """
        A segment from the guest at remote offset C{n} acknowledging local
        offset C{ack}.
        """
        return replace(
            SEND,
            seq=seq(self.remoteSeq, n),
            ack=seq(self.localSeq, ack),
            flags=flags,
            payload=payload,
            window=window,
            **fields,
        )

    def synSegment(self, **fields):
        fields.setdefault("options", SYN_OPTIONS)
        fields.setdefault("window", 64240)
        return replace(SEND, seq=self.remoteSeq, ack=0, flags=SYN, **fields)

    def tcbSynReceived(self, config=CONFIG, **synFields):
        """
        A control block that saw the guest's SYN and was accepted (SYN-ACK
        sent at t=0).
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(**synFields), self.localSeq, config)
        out = tcb.accept(0.0)
        self.assertEqual(len(out), 1)
        checkPoll(tcb, 0.0)
        return tcb

    def tcbEstablished(self, config=CONFIG, window=64240, **synFields):
        tcb = self.tcbSynReceived(config, **synFields)
        out = send(
            tcb,
            replace(SEND, seq=seq(self.remoteSeq, 1), ack=seq(self.localSeq, 1), window=window),
            0.01,
        )
        self.assertEqual(out, [])
        self.assertIs(tcb.state, State.ESTABLISHED)
        return tcb

    def tcbFinWait1(self, config=CONFIG):
        """
        Established, then we closed: our FIN (local offset 1) sent at t=1.
        """
        tcb = self.tcbEstablished(config)
        tcb.close()
        self.recv(dispatch(tcb, 1.0), [self.ours(1, 1, FIN | ACK)])
        self.assertIs(tcb.state, State.FIN_WAIT_1)
        return tcb

    def tcbFinWait2(self, config=CONFIG):
        """
        Our FIN acknowledged at t=1.1.
        """
        tcb = self.tcbFinWait1(config)
        self.assertEqual(send(tcb, self.theirs(1, 2), 1.1), [])
        self.assertIs(tcb.state, State.FIN_WAIT_2)
        return tcb

    def tcbCloseWait(self, config=CONFIG):
        """
        Established, then the guest's FIN (remote offset 1) at t=1; its ACK
        is delayed (our FIN or data usually carries it).
        """
        tcb = self.tcbEstablished(config)
        out = send(tcb, self.theirs(1, 1, FIN | ACK), 1.0)
        self.recv(out, [])
        self.assertAlmostEqual(tcb.pollAt(1.0), 1.0 + config.delayedAck)
        self.assertIs(tcb.state, State.CLOSE_WAIT)
        return tcb

    def tcbLastAck(self, config=CONFIG):
        """
        CLOSE-WAIT, then we closed: our FIN sent at t=1.1.
        """
        tcb = self.tcbCloseWait(config)
        tcb.close()
        self.recv(dispatch(tcb, 1.1), [self.ours(1, 2, FIN | ACK)])
        self.assertIs(tcb.state, State.LAST_ACK)
        return tcb

    def tcbClosing(self, config=CONFIG):
        """
        FIN-WAIT-1, then the guest's own FIN, crossing ours, at t=1.1.
        """
        tcb = self.tcbFinWait1(config)
        out = send(tcb, self.theirs(1, 1, FIN | ACK), 1.1)
        self.recv(out, [self.ours(2, 2)])
        self.assertIs(tcb.state, State.CLOSING)
        return tcb

    def tcbTimeWait(self, config=CONFIG):
        """
        FIN-WAIT-2, then the guest's FIN at t=1.2.
        """
        tcb = self.tcbFinWait2(config)
        out = send(tcb, self.theirs(1, 2, FIN | ACK), 1.2)
        self.recv(out, [self.ours(2, 2)])
        self.assertIs(tcb.state, State.TIME_WAIT)
        return tcb

    def guest(self, n=1, **fields):
        """
        A segment from the guest at remote offset C{n}; give C{ack}.
        """
        fields.setdefault("seq", seq(self.remoteSeq, n))
        fields.setdefault("window", 64240)
        return replace(SEND, **fields)


class HandshakeTests(TCPTestCase):
    def test_nothingBeforeAccept(self):
        """
        A SYN alone produces nothing: vpnkit answers only once the host
        connection exists (accept after dial).
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, CONFIG)
        self.assertIs(tcb.state, State.SYN_RECEIVED)
        self.assertIsNone(tcb.pollAt(0.0))
        self.assertEqual(tcb.dispatch(5.0), [])

    def test_synAck(self):
        """
        accept() sends SYN-ACK acknowledging the SYN, with our MSS, SACK
        permitted and window scaling because the guest offered them.
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, TCPConfig(mss=1460))
        [synAck] = tcb.accept(0.0)
        self.assertEqual(synAck.flags, SYN | ACK)
        self.assertEqual(synAck.seq, LOCAL_SEQ)
        self.assertEqual(synAck.ack, seq(REMOTE_SEQ, 1))
        self.assertEqual(synAck.options.mss, 1460)
        self.assertTrue(synAck.options.sackPermitted)
        self.assertEqual(synAck.options.windowScale, 5)

    def test_noWindowScaleUnlessOffered(self):
        """
        Without the guest's window-scale option, ours is not sent either.
        """
        syn = replace(self.synSegment(), options=TCPOptions(mss=1400))
        tcb = TCPControlBlock.fromSYN(syn, LOCAL_SEQ, CONFIG)
        [synAck] = tcb.accept(0.0)
        self.assertIsNone(synAck.options.windowScale)
        self.assertFalse(synAck.options.sackPermitted)
        self.assertEqual(tcb.sendMSS, 1400)

    def test_synAckRetransmitted(self):
        """
        An unanswered SYN-ACK is sent again after the initial RTO (1 s), then
        after 2 s more; after synRetries the connection is given up.
        """
        tcb = self.tcbSynReceived(TCPConfig(synRetries=2))
        self.assertEqual(tcb.pollAt(0.0), 1.0)
        self.recvNothing(tcb, 0.99)
        [again] = tcb.dispatch(1.0)
        self.assertEqual(again.flags, SYN | ACK)
        self.assertEqual(tcb.pollAt(1.0), 3.0)
        [third] = tcb.dispatch(3.0)
        self.assertEqual(third.flags, SYN | ACK)
        self.assertEqual(tcb.dispatch(7.0), [])
        self.assertIs(tcb.state, State.CLOSED)
        self.assertEqual(tcb.error, "timeout")

    def test_synAckRetriesDefault(self):
        """
        With the default configuration an unanswered SYN-ACK is sent again
        exactly 5 times, the RTO doubling from 1 s (at 1, 3, 7, 15 and
        31 s); when the sixth timeout fires (63 s) the connection is given
        up with the error "timeout" and without a RST, and a late ACK from
        the guest is then answered with RST.
        """
        config = TCPConfig()
        tcb = self.tcbSynReceived(config)
        sent = []
        at = 0.0
        for _ in range(10):
            at = tcb.pollAt(at)
            if at is None:
                break
            self.recvNothing(tcb, at - 0.001)
            out = dispatch(tcb, at)
            if not out:
                break
            [synAck] = out
            self.assertEqual((synAck.flags, synAck.seq), (SYN | ACK, LOCAL_SEQ))
            sent.append(at)
        self.assertEqual(sent, [1.0, 3.0, 7.0, 15.0, 31.0])
        self.assertEqual(at, 63.0)
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "timeout"))
        self.assertIsNone(tcb.pollAt(at))
        late = replace(SEND, seq=seq(REMOTE_SEQ, 1), ack=seq(LOCAL_SEQ, 1))
        self.recv(send(tcb, late, 64.0), [replace(RECV, seq=seq(LOCAL_SEQ, 1), flags=RST)])

    def test_retransmittedSynGetsSynAck(self):
        """
        The guest's SYN again (our SYN-ACK was lost) brings the SYN-ACK again
        at once.
        """
        tcb = self.tcbSynReceived()
        [again] = send(tcb, self.synSegment(), 0.5)
        self.assertEqual(again.flags, SYN | ACK)

    def test_badAckInSynReceived(self):
        """
        An ACK for something we never sent in SYN-RECEIVED gets a RST.
        """
        tcb = self.tcbSynReceived()
        out = send(tcb, self.guest(1, ack=seq(LOCAL_SEQ, 100)), 0.1)
        self.recv(out, [replace(RECV, seq=seq(LOCAL_SEQ, 100), ack=0, flags=RST)])

    def test_established(self):
        """
        The guest's ACK of our SYN-ACK establishes the connection and takes
        its (unscaled, here) window.
        """
        tcb = self.tcbEstablished(window=5000)
        self.assertEqual(tcb.sndWnd, 5000)
        self.assertIsNone(tcb.pollAt(0.01))

    def test_refuse(self):
        """
        refuse() is RST|ACK acknowledging the SYN, as a closed port answers.
        """
        self.recv(
            refuse(self.synSegment()),
            [replace(RECV, seq=0, ack=seq(REMOTE_SEQ, 1), flags=RST | ACK)],
        )


class EstablishedTests(TCPTestCase):
    def test_receiveData(self):
        """
        In-order data is queued for the application; a lone segment is
        acknowledged after the delayed-ACK time, two at once.
        """
        tcb = self.tcbEstablished()
        out = send(tcb, self.guest(1, ack=seq(LOCAL_SEQ, 1), payload=b"abc"), 1.0)
        self.assertEqual(out, [])
        self.assertEqual(tcb.pollAt(1.0), 1.0 + CONFIG.delayedAck)
        self.recv(tcb.dispatch(1.0 + CONFIG.delayedAck), [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 4))])
        out = send(tcb, self.guest(4, ack=seq(LOCAL_SEQ, 1), payload=b"d" * 100), 2.0)
        self.assertEqual(out, [])
        out = send(tcb, self.guest(104, ack=seq(LOCAL_SEQ, 1), payload=b"e" * 100), 2.0)
        self.recv(out, [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 204))])
        self.assertEqual(tcb.recv(), b"abc" + b"d" * 100 + b"e" * 100)

    def test_sendDataSegmentsByMSS(self):
        """
        Written bytes go out in MSS-sized segments within the guest's window;
        the last one carries PSH.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * 3000)
        out = tcb.dispatch(1.0)
        self.assertEqual([len(s.payload) for s in out], [1460, 1460, 80])
        self.assertEqual([s.flags for s in out], [ACK, ACK, ACK | PSH])
        self.assertEqual(out[1].seq, seq(LOCAL_SEQ, 1461))

    def test_outOfOrderReassembledWithSACK(self):
        """
        A segment after a hole is held and answered at once with a duplicate
        ACK carrying a SACK block; the hole's data delivers both.
        """
        tcb = self.tcbEstablished()
        out = send(tcb, self.guest(11, ack=seq(LOCAL_SEQ, 1), payload=b"B" * 10), 1.0)
        self.recv(out, [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 1))])
        self.assertEqual(out[0].options.sack, ((seq(REMOTE_SEQ, 11), seq(REMOTE_SEQ, 21)),))
        self.assertEqual(tcb.recvQueue, 0)
        out = send(tcb, self.guest(1, ack=seq(LOCAL_SEQ, 1), payload=b"A" * 10), 1.1)
        self.recv(out, [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 21))])
        self.assertEqual(out[0].options.sack, ())
        self.assertEqual(tcb.recv(), b"A" * 10 + b"B" * 10)


class CloseTests(TCPTestCase):
    def test_guestClosesFirst(self):
        """
        Guest FIN: CLOSE-WAIT and EOF, its ACK delayed; our close sends FIN
        (LAST-ACK), which carries that ACK; its ACK closes.
        """
        tcb = self.tcbEstablished()
        out = send(tcb, self.guest(1, ack=seq(LOCAL_SEQ, 1), flags=FIN | ACK), 1.0)
        self.recv(out, [])
        self.assertIs(tcb.state, State.CLOSE_WAIT)
        self.assertTrue(tcb.eofReceived)
        tcb.close()
        self.recv(tcb.dispatch(1.1), [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 2), flags=FIN | ACK)])
        self.assertIs(tcb.state, State.LAST_ACK)
        send(tcb, self.guest(2, ack=seq(LOCAL_SEQ, 2)), 1.2)
        self.assertIs(tcb.state, State.CLOSED)
        self.assertIsNone(tcb.error)

    def test_weCloseFirstThenTimeWait(self):
        """
        Our FIN: FIN-WAIT-1, its ACK FIN-WAIT-2, the guest's FIN TIME-WAIT,
        which ends after the TIME-WAIT time.
        """
        tcb = self.tcbEstablished()
        tcb.close()
        self.recv(tcb.dispatch(1.0), [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 1), flags=FIN | ACK)])
        self.assertIs(tcb.state, State.FIN_WAIT_1)
        send(tcb, self.guest(1, ack=seq(LOCAL_SEQ, 2)), 1.1)
        self.assertIs(tcb.state, State.FIN_WAIT_2)
        out = send(tcb, self.guest(1, ack=seq(LOCAL_SEQ, 2), flags=FIN | ACK), 1.2)
        self.recv(out, [replace(RECV, seq=seq(LOCAL_SEQ, 2), ack=seq(REMOTE_SEQ, 2))])
        self.assertIs(tcb.state, State.TIME_WAIT)
        self.assertEqual(tcb.pollAt(1.2), 1.2 + CONFIG.timeWait)
        self.assertEqual(tcb.dispatch(1.2 + CONFIG.timeWait), [])
        self.assertIs(tcb.state, State.CLOSED)

    def test_rstInWindowButNotExactGetsChallengeAck(self):
        """
        A RST whose sequence number is in the window but not exactly the
        next expected one gets a challenge ACK (RFC 5961); an exact one
        resets.
        """
        tcb = self.tcbEstablished()
        out = send(tcb, self.guest(5, ack=seq(LOCAL_SEQ, 1), flags=RST), 1.0)
        self.recv(out, [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 1))])
        self.assertIs(tcb.state, State.ESTABLISHED)
        self.assertEqual(send(tcb, self.guest(1, flags=RST), 1.1), [])
        self.assertIs(tcb.state, State.CLOSED)
        self.assertEqual(tcb.error, "reset")

    def test_resetFor(self):
        """
        A segment for no connection: RST at its ACK number, or RST|ACK
        covering it when it has no ACK; nothing for a RST.
        """
        self.recv(resetFor(self.guest(1, ack=77)), [replace(RECV, seq=77, ack=0, flags=RST)])
        self.recv(
            resetFor(self.guest(1, flags=FIN, payload=b"ab")),
            [replace(RECV, seq=0, ack=seq(REMOTE_SEQ, 4), flags=RST | ACK)],
        )
        self.assertEqual(resetFor(self.guest(1, flags=RST)), [])


class RetransmissionTests(TCPTestCase):
    def test_rtoRetransmitsOnceThenBacksOff(self):
        """
        Unacknowledged data is sent again when the RTO expires, and the next
        timeout is twice as long.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * 100)
        [first] = tcb.dispatch(1.0)
        rto = tcb.pollAt(1.0) - 1.0
        self.recvNothing(tcb, 1.0 + rto - 0.001)
        [again] = tcb.dispatch(1.0 + rto)
        self.assertEqual((again.seq, again.payload), (first.seq, first.payload))
        self.assertAlmostEqual(tcb.pollAt(1.0 + rto) - (1.0 + rto), 2 * rto)
        self.assertEqual(tcb.retransmits, 1)

    def test_fastRetransmitOnThirdDuplicate(self):
        """
        Three duplicate ACKs retransmit the first unacknowledged segment
        without waiting for the timer.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * 1460 * 5)
        out = tcb.dispatch(1.0)
        self.assertEqual(len(out), 5)
        ack = self.guest(1, ack=seq(LOCAL_SEQ, 1461))
        self.assertEqual(send(tcb, ack, 1.01), [])
        self.assertEqual(send(tcb, ack, 1.02), [])
        self.assertEqual(send(tcb, ack, 1.03), [])
        [retransmit] = send(tcb, ack, 1.04)
        self.assertEqual(retransmit.seq, seq(LOCAL_SEQ, 1461))
        self.assertEqual(len(retransmit.payload), 1460)


class TransitionTableTests(SynchronousTestCase):
    def test_table(self):
        """
        The transition table is the RFC 9293 diagram for the events the
        control block knows, and nothing else (a close in SYN-RECEIVED is
        deferred until the handshake completes); the abnormal ends lead
        from every state to CLOSED.
        """
        S = State
        self.assertEqual(
            TRANSITIONS,
            {
                (S.CLOSED, "open"): S.SYN_SENT,
                (S.CLOSED, "synReceived"): S.SYN_RECEIVED,
                (S.SYN_SENT, "synReceived"): S.SYN_RECEIVED,
                (S.SYN_SENT, "close"): S.CLOSED,
                (S.SYN_SENT, "refused"): S.CLOSED,
                **{
                    (state, event): S.CLOSED
                    for state in S
                    if state is not S.CLOSED
                    for event in ("reset", "timeout", "aborted")
                },
                (S.SYN_SENT, "synAcked"): S.ESTABLISHED,
                (S.SYN_RECEIVED, "synAcked"): S.ESTABLISHED,
                (S.ESTABLISHED, "close"): S.FIN_WAIT_1,
                (S.CLOSE_WAIT, "close"): S.LAST_ACK,
                (S.FIN_WAIT_1, "finAcked"): S.FIN_WAIT_2,
                (S.CLOSING, "finAcked"): S.TIME_WAIT,
                (S.LAST_ACK, "finAcked"): S.CLOSED,
                (S.ESTABLISHED, "finReceived"): S.CLOSE_WAIT,
                (S.FIN_WAIT_1, "finReceived"): S.CLOSING,
                (S.FIN_WAIT_2, "finReceived"): S.TIME_WAIT,
                (S.TIME_WAIT, "timeWaitExpired"): S.CLOSED,
            },
        )

    def test_stateNames(self):
        """
        States print with their RFC spelling.
        """
        self.assertEqual(str(State.SYN_RECEIVED), "SYN-RECEIVED")
        self.assertEqual(str(State.TIME_WAIT), "TIME-WAIT")


class TransitionLogTests(TCPTestCase):
    """
    Every state change goes through L{TRANSITIONS} and is logged at debug
    level as C{old -[event]-> new}.
    """

    def setUp(self):
        self.addCleanup(setDebug, debugEnabled())
        setDebug(True)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def changes(self):
        """
        The state changes logged so far, each checked against the table.
        """
        found = []
        for event in self.events:
            if event.get("log_format") == "{old} -[{event}]-> {new}":
                key = (event["old"], event["event"])
                self.assertIs(TRANSITIONS.get(key), event["new"])
                self.assertEqual(event["log_namespace"], "vpnkit.tcp")
                found.append(formatEvent(event))
        return found

    def test_passiveOpen(self):
        """
        The guest's SYN puts a new control block in SYN-RECEIVED, its ACK
        of our SYN-ACK in ESTABLISHED.
        """
        self.tcbEstablished()
        self.assertEqual(
            self.changes(),
            ["CLOSED -[synReceived]-> SYN-RECEIVED", "SYN-RECEIVED -[synAcked]-> ESTABLISHED"],
        )

    def test_simultaneousOpen(self):
        """
        An active open enters SYN-SENT; the guest's bare SYN crossing ours
        moves it to SYN-RECEIVED, through the table.
        """
        tcb, _ = TCPControlBlock.connect(LOCAL_PORT, REMOTE_PORT, LOCAL_SEQ, 0.0, CONFIG)
        send(tcb, self.synSegment(), 0.1)
        self.assertIs(tcb.state, State.SYN_RECEIVED)
        self.assertEqual(
            self.changes(),
            ["CLOSED -[open]-> SYN-SENT", "SYN-SENT -[synReceived]-> SYN-RECEIVED"],
        )

    def test_closeInSynSent(self):
        """
        A close before the handshake ends the connection: SYN-SENT to
        CLOSED by the table's close.
        """
        tcb, _ = TCPControlBlock.connect(LOCAL_PORT, REMOTE_PORT, LOCAL_SEQ, 0.0, CONFIG)
        tcb.close()
        self.assertEqual(self.changes()[1:], ["SYN-SENT -[close]-> CLOSED"])

    def test_refused(self):
        """
        RST|ACK for our SYN: SYN-SENT to CLOSED by "refused".
        """
        tcb, _ = TCPControlBlock.connect(LOCAL_PORT, REMOTE_PORT, LOCAL_SEQ, 0.0, CONFIG)
        send(tcb, self.theirs(0, 1, RST | ACK), 0.1)
        self.assertEqual(self.changes()[1:], ["SYN-SENT -[refused]-> CLOSED"])
        self.assertEqual(tcb.error, "refused")

    def test_resetBeforeAccept(self):
        """
        The guest's RST while the host dial is pending: SYN-RECEIVED to
        CLOSED by "reset".
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, CONFIG)
        send(tcb, self.guest(1, flags=RST), 0.1)
        self.assertEqual(self.changes()[1:], ["SYN-RECEIVED -[reset]-> CLOSED"])

    def test_reset(self):
        """
        An exact RST in ESTABLISHED: to CLOSED by "reset".
        """
        tcb = self.tcbEstablished()
        send(tcb, self.theirs(1, 1, RST), 0.5)
        self.assertEqual(self.changes()[2:], ["ESTABLISHED -[reset]-> CLOSED"])
        self.assertEqual(tcb.error, "reset")

    def test_synAckGivenUp(self):
        """
        Retransmissions of the SYN-ACK run out: SYN-RECEIVED to CLOSED by
        "timeout".
        """
        tcb = self.tcbSynReceived(TCPConfig(synRetries=0))
        dispatch(tcb, 1.0)
        self.assertEqual(self.changes()[1:], ["SYN-RECEIVED -[timeout]-> CLOSED"])

    def test_abort(self):
        """
        Our RST: to CLOSED by "aborted".
        """
        tcb = self.tcbEstablished()
        tcb.abort()
        self.assertEqual(self.changes()[2:], ["ESTABLISHED -[aborted]-> CLOSED"])

    def test_activeClose(self):
        """
        Our FIN, the guest's ACK and FIN, the TIME-WAIT timer: each step a
        logged transition, the last into CLOSED.
        """
        tcb = self.tcbTimeWait()
        dispatch(tcb, 1.2 + CONFIG.timeWait)
        self.assertEqual(
            self.changes()[2:],
            [
                "ESTABLISHED -[close]-> FIN-WAIT-1",
                "FIN-WAIT-1 -[finAcked]-> FIN-WAIT-2",
                "FIN-WAIT-2 -[finReceived]-> TIME-WAIT",
                "TIME-WAIT -[timeWaitExpired]-> CLOSED",
            ],
        )

    def test_passiveClose(self):
        """
        The guest's FIN, our close, the guest's ACK of our FIN: LAST-ACK to
        CLOSED through the table.
        """
        tcb = self.tcbLastAck()
        send(tcb, self.theirs(2, 2), 1.2)
        self.assertEqual(
            self.changes()[2:],
            [
                "ESTABLISHED -[finReceived]-> CLOSE-WAIT",
                "CLOSE-WAIT -[close]-> LAST-ACK",
                "LAST-ACK -[finAcked]-> CLOSED",
            ],
        )

    def test_closeDeferredInSynReceived(self):
        """
        A close in SYN-RECEIVED waits for the handshake, then both changes
        are logged: to ESTABLISHED, then to FIN-WAIT-1.
        """
        tcb = self.tcbSynReceived()
        tcb.close()
        self.assertEqual(self.changes()[1:], [])
        send(tcb, self.theirs(1, 1), 0.01)
        self.assertEqual(
            self.changes()[1:],
            ["SYN-RECEIVED -[synAcked]-> ESTABLISHED", "ESTABLISHED -[close]-> FIN-WAIT-1"],
        )

    def test_notLoggedWithoutDebug(self):
        """
        With debug off, a state change does not even call the logger.
        """
        setDebug(False)

        class Refuse:
            def debug(self, *args, **kwargs):
                raise AssertionError("logged with debug off")

        self.patch(stateModule, "log", Refuse())
        tcb = self.tcbEstablished()
        tcb.abort()
        self.assertIs(tcb.state, State.CLOSED)
        self.assertEqual(self.changes(), [])


class PassiveOpenTests(TCPTestCase):
    def test_synAckExact(self):
        """
        The whole SYN-ACK: our ISS, the guest's ISN + 1, the unscaled window
        (at most 65535), our MSS, our window-scale shift and SACK-permitted.
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, CONFIG)
        self.assertEqual(
            tcb.accept(0.0),
            [
                Segment(
                    LOCAL_PORT,
                    REMOTE_PORT,
                    LOCAL_SEQ,
                    seq(REMOTE_SEQ, 1),
                    SYN | ACK,
                    65535,
                    TCPOptions(mss=1460, windowScale=1, sackPermitted=True),
                )
            ],
        )

    def test_mssNegotiation(self):
        """
        We send segments of the guest's MSS, never above ours, 536 when it
        gave none (RFC 9293 3.7.1) and never below 64.
        """
        for offered, expected in ((1200, 1200), (9000, 1460), (None, 536), (10, 64)):
            tcb = TCPControlBlock.fromSYN(
                self.synSegment(options=TCPOptions(mss=offered)), LOCAL_SEQ, CONFIG
            )
            self.assertEqual(tcb.sendMSS, expected, offered)

    def test_segmentsOfGuestMSS(self):
        """
        Data goes out in segments of the negotiated MSS.
        """
        tcb = self.tcbEstablished(options=TCPOptions(mss=536))
        tcb.send(b"x" * 1200)
        self.recv(
            dispatch(tcb, 1.0),
            [
                self.ours(1, 1, payload=b"x" * 536),
                self.ours(537, 1, payload=b"x" * 536),
                self.ours(1073, 1, ACK | PSH, b"x" * 128),
            ],
        )

    def test_windowScaleFromGuest(self):
        """
        The guest's shift scales every window after the SYN, never the
        SYN's own.
        """
        tcb = self.tcbSynReceived(options=TCPOptions(mss=1460, windowScale=7))
        self.assertEqual(tcb.sndWnd, 64240)
        send(tcb, self.theirs(1, 1, window=100), 0.01)
        self.assertEqual(tcb.sndWnd, 12800)

    def test_windowScaledSending(self):
        """
        With a scaled window of 12800 bytes we send 8 full segments and hold
        the 1120-byte remainder back while more data waits (sender SWS).
        """
        tcb = self.tcbSynReceived(options=TCPOptions(mss=1460, windowScale=7))
        send(tcb, self.theirs(1, 1, window=100), 0.01)
        tcb.send(b"x" * 20000)
        out = dispatch(tcb, 1.0)
        self.assertEqual([len(s.payload) for s in out], [1460] * 8)
        self.assertEqual(out[-1].seq, seq(LOCAL_SEQ, 1 + 7 * 1460))

    def test_ourWindowScaled(self):
        """
        With a 1 MiB buffer our shift is 5 and the advertised field is the
        free space over 32.
        """
        config = TCPConfig(mss=1460, receiveBuffer=1 << 20)
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, config)
        [synAck] = tcb.accept(0.0)
        self.assertEqual((synAck.window, synAck.options.windowScale), (65535, 5))
        send(tcb, self.theirs(1, 1), 0.01)
        send(tcb, self.theirs(1, 1, payload=b"a" * 1000), 0.02)
        [ack] = dispatch(tcb, 0.02 + config.delayedAck)
        self.assertEqual(ack.window, ((1 << 20) - 1000) >> 5)

    def test_rttFromHandshake(self):
        """
        The SYN-ACK is timed: an ACK 0.3 s later gives SRTT 0.3, RTTVAR
        0.15 and an RTO of 0.9 s for the first data.
        """
        tcb = self.tcbSynReceived()
        send(tcb, self.theirs(1, 1), 0.3)
        tcb.send(b"x")
        dispatch(tcb, 1.0)
        self.assertAlmostEqual(tcb.pollAt(1.0), 1.9)

    def test_dataOnHandshakeACK(self):
        """
        The ACK that completes the handshake may carry data: it is queued.
        """
        tcb = self.tcbSynReceived()
        self.assertEqual(send(tcb, self.theirs(1, 1, payload=b"hello"), 0.01), [])
        self.assertIs(tcb.state, State.ESTABLISHED)
        self.assertEqual(tcb.recv(), b"hello")

    def test_dataOnSYNIgnored(self):
        """
        Data on the SYN itself is not taken (the guest sends it again after
        the handshake): the SYN-ACK acknowledges only the SYN.
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(payload=b"early"), LOCAL_SEQ, CONFIG)
        [synAck] = tcb.accept(0.0)
        self.assertEqual(synAck.ack, seq(REMOTE_SEQ, 1))

    def test_rstBeforeAccept(self):
        """
        A RST while the host is dialled ends the control block silently;
        accepting it afterwards sends nothing.
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, CONFIG)
        self.assertEqual(send(tcb, self.guest(1, flags=RST), 0.5), [])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "reset"))
        self.assertEqual(tcb.accept(1.0), [])

    def test_segmentsBeforeAcceptIgnored(self):
        """
        Before accept, a retransmitted SYN or stray data get no answer.
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, CONFIG)
        self.assertEqual(send(tcb, self.synSegment(), 1.0), [])
        self.assertEqual(send(tcb, self.theirs(1, 1, payload=b"x"), 1.1), [])
        self.assertIs(tcb.state, State.SYN_RECEIVED)
        self.assertIsNone(tcb.pollAt(1.1))

    def test_closeBeforeHandshakeCompletes(self):
        """
        Data written and a close requested while our SYN-ACK is still
        unacknowledged wait for the guest's ACK: nothing is sent before it,
        then all the data from the first byte, then FIN.  (The send buffer
        counts from just after the SYN, so sending earlier would skip a
        byte and let our FIN overtake the handshake.)
        """
        tcb = self.tcbSynReceived()
        tcb.send(b"hello\n")
        tcb.close()
        self.recvNothing(tcb, 0.001)
        self.assertIs(tcb.state, State.SYN_RECEIVED)
        out = send(tcb, self.theirs(1, 1), 0.01)
        self.recv(
            out,
            [self.ours(1, 1, ACK | PSH, b"hello\n"), self.ours(7, 1, FIN | ACK)],
        )
        self.assertIs(tcb.state, State.FIN_WAIT_1)
        send(tcb, self.theirs(1, 8), 0.02)
        self.assertIs(tcb.state, State.FIN_WAIT_2)

    def test_synAckRetransmittedSame(self):
        """
        The retransmitted SYN-ACK is the same segment as the first.
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), LOCAL_SEQ, CONFIG)
        first = tcb.accept(0.0)
        self.assertEqual(dispatch(tcb, 1.0), first)

    def test_rstInSynReceived(self):
        """
        After SYN-ACK, an exact RST resets; one elsewhere in the window gets
        a challenge ACK (RFC 5961 3.2).
        """
        tcb = self.tcbSynReceived()
        self.recv(send(tcb, self.theirs(5, 0, RST), 0.1), [self.ours(1, 1)])
        self.assertIs(tcb.state, State.SYN_RECEIVED)
        self.assertEqual(send(tcb, self.theirs(1, 0, RST), 0.2), [])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "reset"))

    def test_abortInSynReceived(self):
        """
        abort() after SYN-ACK sends RST|ACK at our next sequence number.
        """
        tcb = self.tcbSynReceived()
        self.recv(tcb.abort(), [self.ours(1, 1, RST | ACK)])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "aborted"))
        self.assertEqual(tcb.abort(), [])

    def test_closedAnswersWithReset(self):
        """
        A closed control block answers any segment as a closed port does.
        """
        tcb = self.tcbSynReceived()
        tcb.abort()
        self.recv(send(tcb, self.theirs(1, 1, payload=b"x"), 1.0), [self.ours(1, None, RST)])


class SynSentTests(TCPTestCase):
    def tcbSynSent(self, config=CONFIG):
        tcb, out = TCPControlBlock.connect(LOCAL_PORT, REMOTE_PORT, LOCAL_SEQ, 0.0, config)
        self.assertEqual(
            out,
            [
                Segment(
                    LOCAL_PORT,
                    REMOTE_PORT,
                    LOCAL_SEQ,
                    0,
                    SYN,
                    65535,
                    TCPOptions(mss=1460, windowScale=1, sackPermitted=True),
                )
            ],
        )
        self.assertIs(tcb.state, State.SYN_SENT)
        checkPoll(tcb, 0.0)
        return tcb

    def synAck(self, **fields):
        fields.setdefault("options", TCPOptions(mss=1460, windowScale=7, sackPermitted=True))
        return self.theirs(0, 1, SYN | ACK, **fields)

    def test_synAckEstablishes(self):
        """
        The guest's SYN-ACK establishes the connection: we ACK it at once,
        advertising our whole buffer (scaled by our shift of 1).
        """
        tcb = self.tcbSynSent()
        out = send(tcb, self.synAck(), 0.1)
        self.recv(out, [self.ours(1, 1, window=FULL_WINDOW_FIELD, options=NO_OPTIONS)])
        self.assertIs(tcb.state, State.ESTABLISHED)
        self.assertEqual(tcb.advertisedWindow, 64 * 1024)

    def test_synAckWindowNotScaled(self):
        """
        The window in a SYN-ACK is never scaled (RFC 7323 2.2); the next
        segment's is.
        """
        tcb = self.tcbSynSent()
        send(tcb, self.synAck(window=1000), 0.1)
        self.assertEqual(tcb.sndWnd, 1000)
        send(tcb, self.theirs(1, 1, window=1000), 0.2)
        self.assertEqual(tcb.sndWnd, 128000)

    def test_noWindowScaleFromGuest(self):
        """
        Without the guest's window-scale option neither side scales: our
        window field is the buffer, capped at 65535.
        """
        tcb = self.tcbSynSent()
        out = send(tcb, self.synAck(options=TCPOptions(mss=1000)), 0.1)
        self.recv(out, [self.ours(1, 1, window=65535)])
        self.assertEqual(tcb.sendMSS, 1000)

    def test_queuedDataFollowsHandshake(self):
        """
        Data written in SYN-SENT goes out with the ACK of the SYN-ACK.
        """
        tcb = self.tcbSynSent()
        tcb.send(b"early")
        self.recvNothing(tcb, 0.05)
        out = send(tcb, self.synAck(), 0.1)
        self.recv(out, [self.ours(1, 1, ACK | PSH, b"early")])

    def test_synRetransmittedThenGivenUp(self):
        """
        The SYN is sent again after 1 s, then 2 s more; after synRetries
        the connection is given up, without a RST.
        """
        tcb = self.tcbSynSent(TCPConfig(mss=1460, receiveBuffer=64 * 1024, synRetries=2))
        self.recvNothing(tcb, 0.999)
        [again] = dispatch(tcb, 1.0)
        self.assertEqual((again.flags, again.seq), (SYN, LOCAL_SEQ))
        self.assertEqual(tcb.pollAt(1.0), 3.0)
        [third] = dispatch(tcb, 3.0)
        self.assertEqual(third.flags, SYN)
        self.assertEqual(tcb.pollAt(3.0), 7.0)
        self.assertEqual(dispatch(tcb, 7.0), [])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "timeout"))

    def test_rstWithAcceptableAck(self):
        """
        RST|ACK acknowledging our SYN: the guest refused.
        """
        tcb = self.tcbSynSent()
        self.assertEqual(send(tcb, self.theirs(0, 1, RST | ACK), 0.1), [])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "refused"))

    def test_rstWithoutAckIgnored(self):
        """
        A RST without ACK cannot be matched to our SYN: ignored.
        """
        tcb = self.tcbSynSent()
        self.assertEqual(send(tcb, self.guest(0, flags=RST), 0.1), [])
        self.assertIs(tcb.state, State.SYN_SENT)

    def test_badAck(self):
        """
        An ACK of something we never sent gets a RST at that number; a
        RST carrying one is ignored.
        """
        tcb = self.tcbSynSent()
        self.recv(send(tcb, self.theirs(0, 5, SYN | ACK), 0.1), [self.ours(5, None, RST)])
        self.assertEqual(send(tcb, self.theirs(0, 5, RST | ACK), 0.1), [])
        self.assertIs(tcb.state, State.SYN_SENT)

    def test_ackWithoutSynIgnored(self):
        """
        A plain ACK of our SYN without the guest's SYN is dropped.
        """
        tcb = self.tcbSynSent()
        self.assertEqual(send(tcb, self.theirs(0, 1), 0.1), [])
        self.assertIs(tcb.state, State.SYN_SENT)

    def test_simultaneousOpen(self):
        """
        A bare SYN from the guest (simultaneous open): SYN-RECEIVED and
        SYN-ACK; its ACK establishes.
        """
        tcb = self.tcbSynSent()
        out = send(tcb, self.synSegment(), 0.1)
        self.recv(out, [self.ours(0, 1, SYN | ACK)])
        self.assertIs(tcb.state, State.SYN_RECEIVED)
        self.assertEqual(send(tcb, self.theirs(1, 1), 0.2), [])
        self.assertIs(tcb.state, State.ESTABLISHED)

    def test_closeAndAbort(self):
        """
        Closing in SYN-SENT forgets the connection (RFC 9293 3.10.4);
        aborting sends nothing (the guest never answered).
        """
        tcb = self.tcbSynSent()
        tcb.close()
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, None))
        self.assertIsNone(tcb.pollAt(0.5))
        tcb = self.tcbSynSent()
        self.assertEqual(tcb.abort(), [])
        self.assertEqual(tcb.error, "aborted")


class DataTests(TCPTestCase):
    def test_delayedAckExactTime(self):
        """
        A lone segment is acknowledged exactly config.delayedAck later, not
        a moment before.
        """
        tcb = self.tcbEstablished()
        self.assertEqual(send(tcb, self.theirs(1, 1, payload=b"abc"), 1.0), [])
        self.assertEqual(tcb.pollAt(1.0), 1.02)
        self.recvNothing(tcb, 1.0199)
        self.recv(dispatch(tcb, 1.02), [self.ours(1, 4)])
        self.assertIsNone(tcb.pollAt(1.02))

    def test_everySecondSegmentAcked(self):
        """
        A bulk sender gets an ACK for every second full segment at once and
        for a trailing odd one after the delay: it is never stalled longer
        than config.delayedAck.
        """
        tcb = self.tcbEstablished()
        acks = []
        for i in range(7):
            out = send(tcb, self.theirs(1 + i * MSS, 1, payload=b"d" * MSS), 1.0 + i * 0.001)
            acks.append([s.ack for s in out])
            tcb.recv()
        self.assertEqual(
            acks,
            [
                [],
                [seq(REMOTE_SEQ, 1 + 2 * MSS)],
                [],
                [seq(REMOTE_SEQ, 1 + 4 * MSS)],
                [],
                [seq(REMOTE_SEQ, 1 + 6 * MSS)],
                [],
            ],
        )
        self.assertAlmostEqual(tcb.pollAt(1.006), 1.006 + CONFIG.delayedAck)
        self.recv(dispatch(tcb, 1.026), [self.ours(1, 1 + 7 * MSS)])

    def test_largeSegmentAckedAtOnce(self):
        """
        A segment of two MSS or more (GRO on the guest) is acknowledged at
        once.
        """
        tcb = self.tcbEstablished()
        out = send(tcb, self.theirs(1, 1, payload=b"g" * (2 * MSS)), 1.0)
        self.recv(out, [self.ours(1, 1 + 2 * MSS)])

    def test_ackPiggybacked(self):
        """
        Data we send carries the pending ACK; no separate ACK follows.
        """
        tcb = self.tcbEstablished()
        send(tcb, self.theirs(1, 1, payload=b"q"), 1.0)
        tcb.send(b"answer")
        self.recv(dispatch(tcb, 1.001), [self.ours(1, 2, ACK | PSH, b"answer")])
        self.recvNothing(tcb, 1.1)

    def test_duplicateDataAcked(self):
        """
        Data already received is acknowledged at once (the guest missed our
        ACK) and not delivered twice.
        """
        tcb = self.tcbEstablished()
        send(tcb, self.theirs(1, 1, payload=b"abc"), 1.0)
        dispatch(tcb, 1.02)
        self.recv(send(tcb, self.theirs(1, 1, payload=b"abc"), 1.5), [self.ours(1, 4)])
        self.assertEqual(tcb.recv(), b"abc")

    def test_partlyOldSegment(self):
        """
        A segment that starts before rcv.nxt and runs past it: only the new
        bytes are taken.
        """
        tcb = self.tcbEstablished()
        send(tcb, self.theirs(1, 1, payload=b"abc"), 1.0)
        send(tcb, self.theirs(2, 1, payload=b"bcdef"), 1.001)
        self.assertEqual(tcb.recv(), b"abcdef")

    def test_keepAliveAnswered(self):
        """
        A keep-alive (one byte, or none, just behind rcv.nxt) is answered
        with an ACK and changes nothing: idle connections live on.
        """
        tcb = self.tcbEstablished()
        self.recv(send(tcb, self.theirs(0, 1), 100.0), [self.ours(1, 1)])
        self.recv(send(tcb, self.theirs(0, 1, payload=b"\0"), 200.0), [self.ours(1, 1)])
        self.assertEqual((tcb.state, tcb.recvQueue), (State.ESTABLISHED, 0))
        self.assertIsNone(tcb.pollAt(200.0))

    def test_noAckBitDropped(self):
        """
        A data segment without ACK is dropped (RFC 9293 3.10.7.4).
        """
        tcb = self.tcbEstablished()
        self.assertEqual(send(tcb, self.guest(1, ack=0, flags=PSH, payload=b"x"), 1.0), [])
        self.assertEqual(tcb.recvQueue, 0)

    def test_ackOfUnsentDataDropped(self):
        """
        A segment acknowledging data we never sent gets an ACK and is
        dropped, data and all.
        """
        tcb = self.tcbEstablished()
        out = send(tcb, self.theirs(1, 100, payload=b"x"), 1.0)
        self.recv(out, [self.ours(1, 1)])
        self.assertEqual(tcb.recvQueue, 0)

    def test_oldAckStillDeliversData(self):
        """
        A reordered segment with an old ACK number still delivers its data,
        and does not move the window.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * 100)
        dispatch(tcb, 1.0)
        send(tcb, self.theirs(1, 101, window=5000), 1.1)
        send(tcb, self.theirs(1, 1, payload=b"late", window=9999), 1.2)
        self.assertEqual(tcb.recv(), b"late")
        self.assertEqual(tcb.sndWnd, 5000)

    def test_pshOnlyOnLastSegment(self):
        """
        Bytes written go out in MSS-sized segments; the last one carries
        PSH, even when it is small (there is no Nagle delay).
        """
        tcb = self.tcbEstablished()
        tcb.send(b"y" * (2 * MSS + 100))
        self.recv(
            dispatch(tcb, 1.0),
            [
                self.ours(1, 1, payload=b"y" * MSS),
                self.ours(1 + MSS, 1, payload=b"y" * MSS),
                self.ours(1 + 2 * MSS, 1, ACK | PSH, b"y" * 100),
            ],
        )

    def test_initialWindowSegments(self):
        """
        The first flight is ten segments (RFC 6928); each ACK of a full
        segment opens the congestion window by one more (slow start).
        """
        tcb = self.tcbEstablished()
        tcb.send(b"z" * (20 * MSS))
        self.assertEqual(len(dispatch(tcb, 1.0)), 10)
        out = send(tcb, self.theirs(1, 1 + MSS), 1.1)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(1 + 10 * MSS, MSS), (1 + 11 * MSS, MSS)])

    def test_senderSillyWindowAvoidance(self):
        """
        A guest window of 3000 bytes takes two full segments; the 80 bytes
        left are not sent while more data waits and some is in flight, but
        are once the window slides.
        """
        tcb = self.tcbEstablished(window=3000)
        tcb.send(b"s" * 5000)
        out = dispatch(tcb, 1.0)
        self.assertEqual([len(s.payload) for s in out], [MSS, MSS])
        out = send(tcb, self.theirs(1, 1 + MSS, window=3000), 1.1)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(1 + 2 * MSS, MSS)])
        self.recvNothing(tcb, 1.11)

    def test_sendAfterCloseRefused(self):
        """
        After close() the application can write nothing more.
        """
        tcb = self.tcbEstablished()
        tcb.close()
        self.assertFalse(tcb.canSend)
        self.assertEqual(tcb.send(b"late"), 0)

    def test_statistics(self):
        """
        bytesSent counts acknowledged bytes, bytesReceived in-order ones.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * 10)
        dispatch(tcb, 1.0)
        send(tcb, self.theirs(1, 11, payload=b"abc"), 1.1)
        self.assertEqual((tcb.bytesSent, tcb.bytesReceived), (10, 3))


class ReceiveWindowTests(TCPTestCase):
    """
    Our own window, when the application does not read.
    """

    config = TCPConfig(mss=1000, receiveBuffer=4000)

    def tcb(self):
        tcb = self.tcbEstablished(self.config)
        return tcb

    def test_windowShrinks(self):
        """
        Unread data shrinks the advertised window byte for byte.
        """
        tcb = self.tcb()
        self.assertEqual(tcb.advertisedWindow, 4000)
        send(tcb, self.theirs(1, 1, payload=b"a" * 1000), 1.0)
        out = send(tcb, self.theirs(1001, 1, payload=b"b" * 1000), 1.001)
        self.recv(out, [self.ours(1, 2001, window=2000)])
        self.assertEqual(tcb.advertisedWindow, 2000)

    def test_zeroWindowAndBeyond(self):
        """
        Filling the buffer closes the window; data beyond it is dropped and
        answered with a zero-window ACK.
        """
        tcb = self.tcb()
        for i in range(4):
            send(tcb, self.theirs(1 + 1000 * i, 1, payload=b"f" * 1000), 1.0)
        self.recv(dispatch(tcb, 1.1), [])
        self.assertEqual(tcb.advertisedWindow, 0)
        out = send(tcb, self.theirs(4001, 1, payload=b"X" * 500), 1.2)
        self.recv(out, [self.ours(1, 4001, window=0)])
        self.assertEqual(tcb.recvQueue, 4000)

    def test_zeroWindowProbeAnswered(self):
        """
        A zero-window probe (one byte at rcv.nxt) is not taken but answered
        with the current, closed, window.
        """
        tcb = self.tcb()
        send(tcb, self.theirs(1, 1, payload=b"f" * 4000), 1.0)
        out = send(tcb, self.theirs(4001, 1, payload=b"p"), 2.0)
        self.recv(out, [self.ours(1, 4001, window=0)])
        self.assertEqual(tcb.recvQueue, 4000)

    def test_dataTrimmedAtWindowEdge(self):
        """
        A segment running past the right edge is cut there.
        """
        tcb = self.tcb()
        out = send(tcb, self.theirs(1, 1, payload=b"e" * 4500), 1.0)
        self.recv(out, [self.ours(1, 4001, window=0)])
        self.assertEqual(tcb.recv(), b"e" * 4000)

    def test_windowUpdateAfterRead(self):
        """
        Reading a closed window's data announces the reopened window at
        once.
        """
        tcb = self.tcb()
        send(tcb, self.theirs(1, 1, payload=b"f" * 4000), 1.0)
        self.assertEqual(tcb.recv(), b"f" * 4000)
        self.assertEqual(tcb.pollAt(1.5), 1.5)
        self.recv(dispatch(tcb, 1.5), [self.ours(1, 4001, window=4000)])
        self.recvNothing(tcb, 1.6)

    def test_noTinyWindowIncrease(self):
        """
        Receiver SWS avoidance (RFC 1122 4.2.3.3): reading less than
        min(buffer/2, MSS) neither sends a window update nor grows the
        window any ACK advertises.
        """
        tcb = self.tcb()
        send(tcb, self.theirs(1, 1, payload=b"f" * 4000), 1.0)
        self.assertEqual(len(tcb.recv(999)), 999)
        self.assertIsNone(tcb.pollAt(1.5))
        out = send(tcb, self.theirs(4001, 1, payload=b"p"), 2.0)
        self.recv(out, [self.ours(1, 4001, window=0)])
        tcb.recv(1)
        self.assertEqual(tcb.pollAt(2.5), 2.5)
        self.recv(dispatch(tcb, 2.5), [self.ours(1, 4001, window=1000)])

    def test_noUpdateWhenWindowLarge(self):
        """
        Reading while the guest still knows a large window sends no update
        (the next ACK carries the new one).
        """
        tcb = self.tcb()
        send(tcb, self.theirs(1, 1, payload=b"f" * 1000), 1.0)
        tcb.recv()
        self.assertEqual(tcb.pollAt(1.0), 1.0 + self.config.delayedAck)
        self.recv(dispatch(tcb, 1.02), [self.ours(1, 1001, window=4000)])

    def test_bigBufferWindowUpdate(self):
        """
        With a 1 MiB buffer and a window that fell under half of it, a read
        that at least doubles the window is announced.
        """
        config = TCPConfig(mss=1460, receiveBuffer=1 << 20)
        tcb = self.tcbEstablished(config)
        data = b"b" * 1460
        for i in range(500):
            send(tcb, self.theirs(1 + i * 1460, 1, payload=data), 1.0)
        dispatch(tcb, 1.1)
        self.assertLess(tcb.advertisedWindow, (1 << 19))
        tcb.recv()
        [update] = dispatch(tcb, 1.2)
        self.assertEqual(update.window, ((1 << 20) >> 5))


    def test_firstReadUpdateAtOnce(self):
        """
        The first read after the handshake opens the SYN-ACK's 65535 bytes
        to the whole buffer: the update goes at once, acknowledging the
        guest's first segment without the delayed-ACK wait (Linux's quick
        ACKs at the start of a connection), so a guest whose Nagle holds a
        second write for that ACK is not stalled.
        """
        config = TCPConfig(mss=1460, receiveBuffer=1 << 20)
        tcb = self.tcbEstablished(config)
        self.assertEqual(send(tcb, self.theirs(1, 1, payload=b"q"), 1.0), [])
        self.assertEqual(tcb.recv(), b"q")
        self.assertEqual(tcb.pollAt(1.0), 1.0)
        self.recv(dispatch(tcb, 1.0), [self.ours(1, 2, window=(1 << 20) >> 5)])

    def test_readUpdateAtOnceWhenGuestMayStall(self):
        """
        With less than two full segments of window left, the update after
        a read goes at once, even with a delayed ACK pending.
        """
        config = TCPConfig(mss=1000, receiveBuffer=4000)
        tcb = self.tcbEstablished(config)
        for i in range(2):
            send(tcb, self.theirs(1 + i * 1000, 1, payload=b"f" * 1000), 1.0)
        self.assertEqual(send(tcb, self.theirs(2001, 1, payload=b"f" * 500), 1.0), [])
        self.assertEqual(tcb.advertisedWindow, 1500)
        tcb.recv()
        self.assertEqual(tcb.pollAt(1.0), 1.0)
        self.recv(dispatch(tcb, 1.0), [self.ours(1, 2501, window=4000)])

class OutOfOrderTests(TCPTestCase):
    def sack(self, *blocks):
        return tuple((seq(REMOTE_SEQ, a), seq(REMOTE_SEQ, b)) for a, b in blocks)

    def test_severalHolesMostRecentFirst(self):
        """
        Each out-of-order segment gets an immediate duplicate ACK whose
        first SACK block holds that segment (RFC 2018 4), the other blocks
        following.
        """
        tcb = self.tcbEstablished()
        blocks = []
        for start in (51, 11, 31):
            [ack] = send(tcb, self.theirs(start, 1, payload=b"o" * 10), 1.0)
            self.assertEqual(ack.ack, seq(REMOTE_SEQ, 1))
            blocks.append(ack.options.sack)
        self.assertEqual(
            blocks,
            [
                self.sack((51, 61)),
                self.sack((11, 21), (51, 61)),
                self.sack((31, 41), (11, 21), (51, 61)),
            ],
        )

    def test_partialFillKeepsMostRecentFirst(self):
        """
        In-order data that fills only the first hole delivers what became
        contiguous; the ACK still lists the most recently received block
        first (its offsets follow rcv.nxt).
        """
        tcb = self.tcbEstablished()
        for start in (11, 51, 31):
            send(tcb, self.theirs(start, 1, payload=b"o" * 10), 1.0)
        [ack] = send(tcb, self.theirs(1, 1, payload=b"i" * 10), 1.1)
        self.assertEqual(ack.ack, seq(REMOTE_SEQ, 21))
        self.assertEqual(ack.options.sack, self.sack((31, 41), (51, 61)))
        self.assertEqual(tcb.recv(), b"i" * 10 + b"o" * 10)

    def test_onlyFourBlocks(self):
        """
        At most four SACK blocks fit beside the rest of the header.
        """
        tcb = self.tcbEstablished()
        for start in (11, 31, 51, 71, 91):
            [ack] = send(tcb, self.theirs(start, 1, payload=b"o" * 10), 1.0)
        self.assertEqual(ack.options.sack, self.sack((91, 101), (11, 21), (31, 41), (51, 61)))

    def test_overlapsMerged(self):
        """
        Overlapping and touching out-of-order segments become one block;
        filling the hole delivers the stream exactly.
        """
        tcb = self.tcbEstablished()
        stream = bytes(range(100))
        send(tcb, self.theirs(21, 1, payload=stream[20:40]), 1.0)
        send(tcb, self.theirs(31, 1, payload=stream[30:50]), 1.0)
        [ack] = send(tcb, self.theirs(51, 1, payload=stream[50:60]), 1.0)
        self.assertEqual(ack.options.sack, self.sack((21, 61)))
        [ack] = send(tcb, self.theirs(1, 1, payload=stream[0:25]), 1.1)
        self.assertEqual((ack.ack, ack.options), (seq(REMOTE_SEQ, 61), NO_OPTIONS))
        self.assertEqual(tcb.recv(), stream[:60])

    def test_duplicateOutOfOrder(self):
        """
        The same out-of-order segment twice: the same duplicate ACK twice,
        the data held once.
        """
        tcb = self.tcbEstablished()
        first = send(tcb, self.theirs(11, 1, payload=b"B" * 10), 1.0)
        second = send(tcb, self.theirs(11, 1, payload=b"B" * 10), 1.1)
        self.assertEqual(first, second)
        send(tcb, self.theirs(1, 1, payload=b"A" * 10), 1.2)
        self.assertEqual(tcb.recv(), b"A" * 10 + b"B" * 10)

    def test_outOfOrderBeyondWindowTrimmed(self):
        """
        An out-of-order segment that runs past the right edge is kept only
        up to it.
        """
        config = TCPConfig(mss=1000, receiveBuffer=4000)
        tcb = self.tcbEstablished(config)
        [ack] = send(tcb, self.theirs(3001, 1, payload=b"t" * 2000), 1.0)
        self.assertEqual(ack.options.sack, self.sack((3001, 4001)))

    def test_entirelyBeyondWindow(self):
        """
        A segment wholly beyond the window is not acceptable: an ACK, and
        nothing held.
        """
        config = TCPConfig(mss=1000, receiveBuffer=4000)
        tcb = self.tcbEstablished(config)
        [ack] = send(tcb, self.theirs(5001, 1, payload=b"t" * 100), 1.0)
        self.assertEqual((ack.ack, ack.options), (seq(REMOTE_SEQ, 1), NO_OPTIONS))

    def test_maxRangesRefused(self):
        """
        A segment that would open a hole beyond maxOutOfOrderRanges is
        dropped (but answered), so filling the holes delivers only what was
        kept.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxOutOfOrderRanges=2)
        tcb = self.tcbEstablished(config)
        send(tcb, self.theirs(11, 1, payload=b"b" * 10), 1.0)
        send(tcb, self.theirs(31, 1, payload=b"d" * 10), 1.0)
        [ack] = send(tcb, self.theirs(51, 1, payload=b"f" * 10), 1.0)
        self.assertEqual(ack.options.sack, self.sack((31, 41), (11, 21)))
        send(tcb, self.theirs(1, 1, payload=b"a" * 10), 1.1)
        [ack] = send(tcb, self.theirs(21, 1, payload=b"c" * 10), 1.1)
        self.assertEqual(ack.ack, seq(REMOTE_SEQ, 41))
        # Nothing is held any more: a lone in-order segment, delayed ACK.
        self.assertEqual(send(tcb, self.theirs(41, 1, payload=b"e" * 10), 1.1), [])
        self.recv(dispatch(tcb, 1.12), [self.ours(1, 51)])
        self.assertEqual(tcb.recv(), b"a" * 10 + b"b" * 10 + b"c" * 10 + b"d" * 10 + b"e" * 10)

    def test_noSackWithoutPermission(self):
        """
        A guest that did not offer SACK gets plain duplicate ACKs.
        """
        tcb = self.tcbEstablished(options=TCPOptions(mss=1460))
        [ack] = send(tcb, self.theirs(11, 1, payload=b"B" * 10), 1.0)
        self.assertEqual((ack.ack, ack.options), (seq(REMOTE_SEQ, 1), NO_OPTIONS))

    def test_finAheadOfHole(self):
        """
        A FIN that arrives before the data ahead of it is held until the
        hole is filled; only then is the EOF seen and acknowledged.
        """
        tcb = self.tcbEstablished()
        [ack] = send(tcb, self.theirs(11, 1, FIN | ACK, b"B" * 10), 1.0)
        self.assertEqual(ack.ack, seq(REMOTE_SEQ, 1))
        self.assertFalse(tcb.eofReceived)
        self.assertIs(tcb.state, State.ESTABLISHED)
        [ack] = send(tcb, self.theirs(1, 1, payload=b"A" * 10), 1.1)
        self.assertEqual(ack.ack, seq(REMOTE_SEQ, 22))
        self.assertTrue(tcb.eofReceived)
        self.assertIs(tcb.state, State.CLOSE_WAIT)
        self.assertEqual(tcb.recv(), b"A" * 10 + b"B" * 10)


class RetransmissionTimeoutTests(TCPTestCase):
    def test_backoffExactTimesThenGiveUp(self):
        """
        The first unacknowledged segment is sent again at 1.2, 1.6, 2.4 and
        4.0 s (the RTO doubling from 0.2 s); after maxRetries timeouts the
        connection is reset with error "timeout".
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRetries=4)
        tcb = self.tcbEstablished(config)
        tcb.send(b"r" * 100)
        first = dispatch(tcb, 1.0)
        self.recv(first, [self.ours(1, 1, ACK | PSH, b"r" * 100)])
        times = []
        at = 1.0
        for _ in range(4):
            at = tcb.pollAt(at)
            times.append(at)
            self.recvNothing(tcb, at - 0.0001)
            self.assertEqual(dispatch(tcb, at), first)
        for got, expected in zip(times, [1.2, 1.6, 2.4, 4.0]):
            self.assertAlmostEqual(got, expected)
        at = tcb.pollAt(at)
        self.assertAlmostEqual(at, 7.2)
        self.recv(dispatch(tcb, at), [self.ours(101, 1, RST | ACK)])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "timeout"))
        self.assertEqual(tcb.retransmits, 4)

    def test_backoffCappedAtMaxRTO(self):
        """
        The backed-off RTO never exceeds maxRTO.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRTO=0.5)
        tcb = self.tcbEstablished(config)
        tcb.send(b"r")
        dispatch(tcb, 1.0)
        gaps = []
        at = 1.0
        for _ in range(5):
            nxt = tcb.pollAt(at)
            gaps.append(round(nxt - at, 6))
            dispatch(tcb, nxt)
            at = nxt
        self.assertEqual(gaps, [0.2, 0.4, 0.5, 0.5, 0.5])

    def test_oneSegmentThenSlowStart(self):
        """
        After a timeout only the first segment is sent again (cwnd = 1
        MSS); its ACK lets two more go.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"w" * (5 * MSS))
        self.assertEqual(len(dispatch(tcb, 1.0)), 5)
        self.assertEqual(segmentsOf(LOCAL_SEQ, dispatch(tcb, 1.2)), [(1, MSS)])
        out = send(tcb, self.theirs(1, 1 + MSS), 1.3)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(1 + MSS, MSS), (1 + 2 * MSS, MSS)])
        self.assertEqual(tcb.retransmits, 3)

    def test_newAckResetsBackoff(self):
        """
        An ACK of new data drops the backoff: the next timer runs for the
        computed RTO again.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"a")
        dispatch(tcb, 1.0)
        dispatch(tcb, 1.2)
        dispatch(tcb, 1.6)
        send(tcb, self.theirs(1, 2), 1.7)
        tcb.send(b"b")
        dispatch(tcb, 2.0)
        self.assertAlmostEqual(tcb.pollAt(2.0), 2.2)

    def test_karn(self):
        """
        The ACK of a retransmitted segment gives no RTT sample (Karn): with
        no minimum RTO, the RTO after it is still the handshake's 30 ms,
        not one computed from a 50 ms sample.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, minRTO=0.0)
        tcb = self.tcbEstablished(config)
        tcb.send(b"a")
        dispatch(tcb, 1.0)
        self.assertEqual(len(dispatch(tcb, 1.03)), 1)
        send(tcb, self.theirs(1, 2), 1.05)
        tcb.send(b"b")
        dispatch(tcb, 2.0)
        self.assertAlmostEqual(tcb.pollAt(2.0), 2.03)

    def test_rttSampled(self):
        """
        The ACK of a segment sent once is a sample: 50 ms after a 10 ms
        handshake gives SRTT 0.015, RTTVAR 0.01375 and an RTO of 0.07 s.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, minRTO=0.0)
        tcb = self.tcbEstablished(config)
        tcb.send(b"a")
        dispatch(tcb, 1.0)
        send(tcb, self.theirs(1, 2), 1.05)
        tcb.send(b"b")
        dispatch(tcb, 2.0)
        self.assertAlmostEqual(tcb.pollAt(2.0), 2.07)

    def test_retransmissionIntoSmallWindow(self):
        """
        Going back after a timeout, a segment already sent once is sent
        again even when the window only has room for part of it, and the
        control block does not ask to run again at once (which would make
        the glue spin).
        """
        tcb = self.tcbEstablished(window=14600)
        tcb.send(b"x" * (20 * MSS))
        self.assertEqual(len(dispatch(tcb, 1.0)), 10)
        self.assertEqual(segmentsOf(LOCAL_SEQ, dispatch(tcb, 1.2)), [(1, MSS)])
        out = send(tcb, self.theirs(1, 1 + MSS, window=2000), 1.21)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(1 + MSS, MSS), (1 + 2 * MSS, 540)])

    def test_pureAckAtHighestSequence(self):
        """
        While snd.nxt is wound back after a timeout, an ACK for the guest's
        data carries the highest sequence number sent, which the guest
        expects; one below its rcv.nxt would be unacceptable to it.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (3 * MSS))
        dispatch(tcb, 1.0)
        dispatch(tcb, 1.2)
        out = send(tcb, self.theirs(1, 1, payload=b"q" * 10), 1.25)
        self.assertEqual(out, [])
        self.recv(dispatch(tcb, 1.27), [self.ours(1 + 3 * MSS, 11)])


    def test_resetsAtHighestSequence(self):
        """
        A RST sent while snd.nxt is wound back after a timeout (abort, or
        giving up) carries the highest sequence number sent: the guest may
        have everything up to it, and would silently drop a RST below its
        rcv.nxt.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRetries=1)
        tcb = self.tcbEstablished(config)
        tcb.send(b"x" * (3 * MSS))
        dispatch(tcb, 1.0)
        dispatch(tcb, 1.2)
        self.recv(tcb.abort(), [self.ours(1 + 3 * MSS, 1, RST | ACK)])
        tcb = self.tcbEstablished(config)
        tcb.send(b"x" * (3 * MSS))
        dispatch(tcb, 1.0)
        dispatch(tcb, 1.2)
        self.recv(dispatch(tcb, tcb.pollAt(1.2)), [self.ours(1 + 3 * MSS, 1, RST | ACK)])


class CongestionWindowTests(TCPTestCase):
    def test_slowStartCountsBytes(self):
        """
        In slow start the congestion window grows by the bytes an ACK
        covers (RFC 3465, as Linux counts packets): a guest whose kernel
        coalesces ACKs still opens it as fast as one acknowledging every
        segment.
        """
        tcb = self.tcbEstablished(window=65535)
        before = tcb.cwnd
        tcb.send(b"c" * (10 * MSS))
        dispatch(tcb, 1.0)
        send(tcb, self.theirs(1, 1 + 10 * MSS, window=65535), 1.01)
        self.assertEqual(tcb.cwnd, before + 10 * MSS)

    def test_segmentLimit(self):
        """
        With a segment limit above the MSS (a link taking offload
        super-segments), new data goes out in segments of up to that size;
        retransmissions stay MSS-sized.
        """
        tcb = self.tcbEstablished(window=65535)
        tcb.segmentLimit = 8 * MSS
        tcb.send(b"g" * (9 * MSS))
        out = dispatch(tcb, 1.0)
        self.assertEqual([len(s.payload) for s in out], [8 * MSS, MSS])
        again = dispatch(tcb, tcb.pollAt(1.0))
        self.assertEqual([len(s.payload) for s in again], [MSS])


class FastRecoveryTests(TCPTestCase):
    def offsets(self, n):
        return 1 + n * MSS

    def test_fastRetransmitExactlyOnce(self):
        """
        The third duplicate ACK retransmits exactly the first unacknowledged
        segment; further duplicates send nothing (no new data to send).
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (5 * MSS))
        dispatch(tcb, 1.0)
        dup = self.theirs(1, 1)
        self.assertEqual(send(tcb, dup, 1.01), [])
        self.assertEqual(send(tcb, dup, 1.02), [])
        self.recv(send(tcb, dup, 1.03), [self.ours(1, 1, payload=b"x" * MSS)])
        self.assertEqual(send(tcb, dup, 1.04), [])
        self.assertEqual(send(tcb, dup, 1.05), [])
        self.assertEqual(tcb.retransmits, 1)

    def sackOf(self, *segments):
        """
        SACK blocks holding the given segment numbers (each a whole MSS).
        """
        return TCPOptions(
            sack=tuple(
                (seq(LOCAL_SEQ, self.offsets(n)), seq(LOCAL_SEQ, self.offsets(n + 1)))
                for n in segments
            )
        )

    def test_sackWithWindowChangeIsDuplicate(self):
        """
        An ACK that moves the window but brings new SACK information still
        counts as a duplicate (RFC 6675): a Linux guest nudges its window in
        almost every ACK, and those ACKs must still trigger fast retransmit.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (6 * MSS))
        dispatch(tcb, 1.0)
        out = []
        for i, window in enumerate((60000, 60100, 60200)):
            out = send(tcb, self.theirs(1, 1, window=window, options=self.sackOf(*range(1, 2 + i))), 1.01 + i / 100)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(1, MSS)])
        self.assertEqual(tcb.retransmits, 1)

    def test_threeSegmentsSackedIsLoss(self):
        """
        Three segments' worth SACKed above the first hole is a loss even
        after a single duplicate ACK (RFC 6675 IsLost).
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (6 * MSS))
        dispatch(tcb, 1.0)
        out = send(tcb, self.theirs(1, 1, options=self.sackOf(1, 2, 3)), 1.01)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(1, MSS)])

    def test_holesFilledOnePerACK(self):
        """
        With several holes, each further duplicate ACK retransmits the next
        hole the SACK blocks reveal, instead of one hole per round trip.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (8 * MSS))
        dispatch(tcb, 1.0)
        # Segments 0, 2 and 4 are lost; 1, 3, 5, 6 and 7 arrive.
        out = send(tcb, self.theirs(1, 1, options=self.sackOf(1, 3, 5, 6)), 1.01)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(self.offsets(0), MSS)])
        out = send(tcb, self.theirs(1, 1, options=self.sackOf(1, 3, 5, 6, 7)), 1.02)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(self.offsets(2), MSS)])
        out = send(tcb, self.theirs(1, 1, options=self.sackOf(1, 3, 5, 6, 7)), 1.03)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(self.offsets(4), MSS)])
        out = send(tcb, self.theirs(1, 1, options=self.sackOf(1, 3, 5, 6, 7)), 1.04)
        self.assertEqual(out, [])

    def test_limitedTransmit(self):
        """
        The first two duplicate ACKs each let one new segment out beyond the
        congestion window (RFC 3042), so a short flight still earns the
        third duplicate.
        """
        tcb = self.tcbEstablished()
        tcb.cwnd = 3 * MSS
        tcb.send(b"x" * (6 * MSS))
        self.assertEqual(len(dispatch(tcb, 1.0)), 3)
        dup = self.theirs(1, 1)
        self.assertEqual(segmentsOf(LOCAL_SEQ, send(tcb, dup, 1.01)), [(self.offsets(3), MSS)])
        self.assertEqual(segmentsOf(LOCAL_SEQ, send(tcb, dup, 1.02)), [(self.offsets(4), MSS)])
        self.assertEqual(segmentsOf(LOCAL_SEQ, send(tcb, dup, 1.03)), [(1, MSS)])

    def test_windowUpdateIsNotDuplicate(self):
        """
        ACKs that change the window, or carry data, are not duplicates.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (5 * MSS))
        dispatch(tcb, 1.0)
        for i, window in enumerate((60000, 61000, 62000, 63000)):
            self.assertEqual(send(tcb, self.theirs(1, 1, window=window), 1.01 + i / 100), [])
        for i in range(3):
            out = send(tcb, self.theirs(1 + i, 1, payload=b"d"), 1.1 + i / 100)
            self.assertEqual([s.payload for s in out], [b""] * len(out))
        self.assertEqual(tcb.retransmits, 0)

    def test_newRenoPartialAndFullAck(self):
        """
        Segments 1 and 4 of 6 lost: the third duplicate ACK resends 1
        (ssthresh 3 MSS, cwnd 6 MSS); the partial ACK up to 4 resends 4 at
        once; the full ACK ends recovery with cwnd min(ssthresh, flight +
        MSS) = 2 MSS.
        """
        tcb = self.tcbEstablished(options=TCPOptions(mss=1460, windowScale=0))
        tcb.send(b"n" * (6 * MSS))
        dispatch(tcb, 1.0)
        dup = self.theirs(1, 1)
        send(tcb, dup, 1.01)
        send(tcb, dup, 1.02)
        self.assertEqual(segmentsOf(LOCAL_SEQ, send(tcb, dup, 1.03)), [(1, MSS)])
        self.assertEqual((tcb.ssthresh, tcb.cwnd), (3 * MSS, 6 * MSS))
        self.assertEqual(send(tcb, dup, 1.04), [])
        self.assertEqual(tcb.cwnd, 7 * MSS)
        out = send(tcb, self.theirs(1, self.offsets(3)), 1.05)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(self.offsets(3), MSS)])
        self.assertEqual(tcb.cwnd, 7 * MSS - 3 * MSS + MSS)
        self.assertAlmostEqual(tcb.pollAt(1.05), 1.25)
        self.assertEqual(send(tcb, self.theirs(1, self.offsets(6)), 1.06), [])
        self.assertEqual((tcb.ssthresh, tcb.cwnd), (3 * MSS, 2 * MSS))
        self.assertIsNone(tcb.pollAt(1.06))
        self.assertEqual(tcb.retransmits, 2)

    def test_noNewRecoveryBeforeRecover(self):
        """
        Duplicate ACKs for data sent before the last recovery started do
        not start another (RFC 6582 3.2 step 1).
        """
        tcb = self.tcbEstablished(options=TCPOptions(mss=1460, windowScale=0))
        tcb.send(b"n" * (8 * MSS))
        dispatch(tcb, 1.0)
        dup = self.theirs(1, 1)
        for i in range(3):
            send(tcb, dup, 1.01 + i / 100)
        # Full ACK of segment 1 only would be partial; instead a timeout
        # ends recovery and marks everything sent so far.
        dispatch(tcb, tcb.pollAt(1.03))
        dup = self.theirs(1, self.offsets(1))
        send(tcb, dup, 1.3)
        retransmits = tcb.retransmits
        for i in range(4):
            send(tcb, dup, 1.31 + i / 100)
        self.assertEqual(tcb.retransmits, retransmits)

    def test_sackLimitsFastRetransmit(self):
        """
        With SACK, the fast retransmit stops where the guest's first SACK
        block starts: only the lost 100 bytes go again, not 1460.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"a" * 100)
        dispatch(tcb, 1.0)
        tcb.send(b"b" * (3 * MSS))
        dispatch(tcb, 1.0)
        for i, end in enumerate((101 + MSS, 101 + 2 * MSS, 101 + 3 * MSS)):
            sack = TCPOptions(sack=((seq(LOCAL_SEQ, 101), seq(LOCAL_SEQ, end)),))
            out = send(tcb, self.theirs(1, 1, options=sack), 1.01 + i / 100)
        self.recv(out, [self.ours(1, 1, payload=b"a" * 100)])

    def test_timeoutSkipsSackedRanges(self):
        """
        Going back after a timeout skips what the guest reported holding:
        of five segments with 2 and 4 SACKed, 1, 3 and 5 are sent again.
        (The ACK of two segments opens the congestion window by two, as
        Linux's slow start does, so 3 and 5 go out together.)
        """
        tcb = self.tcbEstablished()
        tcb.send(b"s" * (5 * MSS))
        dispatch(tcb, 1.0)
        o = self.offsets
        blocks = ((seq(LOCAL_SEQ, o(1)), seq(LOCAL_SEQ, o(2))),)
        send(tcb, self.theirs(1, 1, options=TCPOptions(sack=blocks)), 1.01)
        blocks = ((seq(LOCAL_SEQ, o(3)), seq(LOCAL_SEQ, o(4))),) + blocks
        send(tcb, self.theirs(1, 1, options=TCPOptions(sack=blocks)), 1.02)
        self.assertEqual(segmentsOf(LOCAL_SEQ, dispatch(tcb, 1.2)), [(o(0), MSS)])
        out = send(tcb, self.theirs(1, o(2)), 1.25)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(o(2), MSS), (o(4), MSS)])
        send(tcb, self.theirs(1, o(5)), 1.35)
        self.assertEqual((tcb.sendQueue, tcb.retransmits), (0, 3))

    def test_renegingForgetsSack(self):
        """
        When the guest's cumulative ACK stops at data it had SACKed, it has
        dropped that data (reneged): the SACK information is forgotten and
        the timeout resends from snd.una, instead of skipping the range and
        leaving the connection with nothing to send and no timer.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (5 * MSS))
        dispatch(tcb, 1.0)
        o = self.offsets
        sack = TCPOptions(sack=((seq(LOCAL_SEQ, o(2)), seq(LOCAL_SEQ, o(5))),))
        send(tcb, self.theirs(1, o(1), options=sack), 1.01)
        send(tcb, self.theirs(1, o(2)), 1.02)
        at = tcb.pollAt(1.02)
        self.assertAlmostEqual(at, 1.22)
        self.assertEqual(segmentsOf(LOCAL_SEQ, dispatch(tcb, at)), [(o(2), MSS)])

    def test_sackedFinSentAgainAtItsSequence(self):
        """
        A SACK block may cover our FIN.  Going back after a timeout, the
        FIN is sent again at its own sequence number, so the guest's ACK of
        it still moves us to FIN-WAIT-2.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"a" * 100)
        dispatch(tcb, 1.0)
        tcb.send(b"b" * (2 * MSS))
        tcb.close()
        out = dispatch(tcb, 1.0)
        finAt = 101 + 2 * MSS
        self.recv(out[-1:], [self.ours(finAt, 1, FIN | ACK)])
        sack = TCPOptions(sack=((seq(LOCAL_SEQ, 101), seq(LOCAL_SEQ, finAt + 1)),))
        send(tcb, self.theirs(1, 1, options=sack), 1.01)
        self.recv(
            dispatch(tcb, 1.2),
            [self.ours(1, 1, payload=b"a" * 100), self.ours(finAt, 1, FIN | ACK)],
        )
        send(tcb, self.theirs(1, finAt + 1), 1.3)
        self.assertIs(tcb.state, State.FIN_WAIT_2)


class ZeroWindowTests(TCPTestCase):
    """
    The guest's window closes: we probe it.
    """

    def test_probeWithOneByte(self):
        """
        Data for a zero window: a one-byte probe at once, then nothing until
        the timer.
        """
        tcb = self.tcbEstablished(window=0)
        tcb.send(b"x" * 3000)
        self.recv(dispatch(tcb, 1.0), [self.ours(1, 1, payload=b"x")])
        self.assertAlmostEqual(tcb.pollAt(1.0), 1.2)

    def test_probesBackOffAndNeverGiveUp(self):
        """
        Probes follow the backed-off RTO (0.2, 0.4, 0.8 s ...); as long as
        the guest answers them the connection lives on, well past
        maxRetries.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRetries=3)
        tcb = self.tcbEstablished(config, window=0)
        tcb.send(b"x" * 3000)
        dispatch(tcb, 1.0)
        times = []
        at = 1.0
        for _ in range(8):
            at = tcb.pollAt(at)
            times.append(at)
            self.recv(dispatch(tcb, at), [self.ours(1, 1, payload=b"x")])
            self.assertEqual(send(tcb, self.theirs(1, 1, window=0), at + 0.001), [])
        expected = [1.2, 1.6, 2.4, 4.0, 7.2, 13.6, 26.4, 52.0]
        for got, want in zip(times, expected):
            self.assertAlmostEqual(got, want)
        self.assertIs(tcb.state, State.ESTABLISHED)
        self.assertEqual(tcb.retransmits, 8)

    def test_probesCappedAtMaxRTO(self):
        """
        The probe interval stops growing at maxRTO.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRTO=1.0)
        tcb = self.tcbEstablished(config, window=0)
        tcb.send(b"x")
        dispatch(tcb, 1.0)
        at = 1.0
        gaps = []
        for _ in range(6):
            nxt = tcb.pollAt(at)
            gaps.append(round(nxt - at, 6))
            dispatch(tcb, nxt)
            send(tcb, self.theirs(1, 1, window=0), nxt)
            at = nxt
        self.assertEqual(gaps, [0.2, 0.4, 0.8, 1.0, 1.0, 1.0])

    def test_unansweredProbesGiveUp(self):
        """
        A guest that answers no probe is given up after maxRetries; the
        RST sits at the right edge of its (zero) window, not after the
        probe byte, where it would not be acceptable.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRetries=3)
        tcb = self.tcbEstablished(config, window=0)
        tcb.send(b"x" * 3000)
        dispatch(tcb, 1.0)
        at = 1.0
        for expected in (1.2, 1.6, 2.4):
            at = tcb.pollAt(at)
            self.assertAlmostEqual(at, expected)
            self.assertEqual(len(dispatch(tcb, at)), 1)
        at = tcb.pollAt(at)
        self.assertAlmostEqual(at, 4.0)
        self.recv(dispatch(tcb, at), [self.ours(1, 1, RST | ACK)])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "timeout"))

    def test_ackDuringProbeWithinWindow(self):
        """
        While a probe byte is out past the guest's zero window, an ACK for
        the guest's own data is sent at the window's edge (snd.una), where
        a zero-window receiver accepts it (RFC 9293 3.10.7.4), not after
        the probe; a RST too.
        """
        tcb = self.tcbEstablished(window=0)
        tcb.send(b"x" * 3000)
        dispatch(tcb, 1.0)
        send(tcb, self.theirs(1, 1, payload=b"q" * 10, window=0), 1.05)
        self.recv(dispatch(tcb, 1.07), [self.ours(1, 11)])
        self.recv(tcb.abort(), [self.ours(1, 11, RST | ACK)])

    def test_ourAckAcceptedByZeroWindowPeer(self):
        """
        Cross-check with a second control block in the guest's place: with
        its window closed by data it does not read, and our probe
        outstanding, the ACK we send for its own data is acceptable to it,
        so its data is acknowledged at once (not only by the next probe).
        """

        def deliver(segments, to, at):
            return [out for seg in segments for out in send(to, seg, at)]

        small = TCPConfig(mss=1460, receiveBuffer=2000)
        ours, [syn] = TCPControlBlock.connect(80, 49500, LOCAL_SEQ, 0.0, CONFIG)
        peer = TCPControlBlock.fromSYN(syn, REMOTE_SEQ, small)
        [ack] = deliver(peer.accept(0.0), ours, 0.01)
        self.assertEqual(deliver([ack], peer, 0.02), [])
        ours.send(b"f" * 2000)
        acks = deliver(dispatch(ours, 0.1), peer, 0.11)
        self.assertEqual(deliver(acks, ours, 0.12), [])
        self.assertEqual(ours.sndWnd, 0)
        ours.send(b"g" * 100)
        [probe] = dispatch(ours, 0.3)
        self.assertEqual(len(probe.payload), 1)
        self.assertEqual(deliver([deliver([probe], peer, 0.31)[0]], ours, 0.32), [])
        peer.send(b"data from the guest")
        [data] = dispatch(peer, 0.4)
        self.assertEqual(deliver([data], ours, 0.41), [])
        [ack] = dispatch(ours, 0.45)
        deliver([ack], peer, 0.46)
        self.assertEqual(peer.sendQueue, 0)

    def test_windowReopensAfterDroppedProbe(self):
        """
        The guest dropped the probe byte; when its window opens, sending
        resumes from snd.una (the probe's byte first), leaving no hole.
        """
        tcb = self.tcbEstablished(window=0)
        tcb.send(b"x" * 3000)
        dispatch(tcb, 1.0)
        self.assertEqual(send(tcb, self.theirs(1, 1, window=0), 1.001), [])
        out = send(tcb, self.theirs(1, 1, window=64240), 1.1)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(1, MSS), (1 + MSS, MSS), (1 + 2 * MSS, 80)])

    def test_windowReopensProbeTaken(self):
        """
        The guest took the probe byte: sending resumes after it.
        """
        tcb = self.tcbEstablished(window=0)
        tcb.send(b"x" * 3000)
        dispatch(tcb, 1.0)
        out = send(tcb, self.theirs(1, 2, window=64240), 1.1)
        self.assertEqual(segmentsOf(LOCAL_SEQ, out), [(2, MSS), (2 + MSS, MSS), (2 + 2 * MSS, 79)])

    def test_windowClosesWithDataInFlight(self):
        """
        The window closes while data is in flight: nothing new is sent;
        the timeout probes with one byte from snd.una.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"x" * (4 * MSS))
        dispatch(tcb, 1.0)
        self.assertEqual(send(tcb, self.theirs(1, 1 + MSS, window=0), 1.1), [])
        self.recvNothing(tcb, 1.2)
        self.recv(dispatch(tcb, 1.3), [self.ours(1 + MSS, 1, payload=b"x")])


class FinWait1Tests(TCPTestCase):
    def test_finAfterQueuedData(self):
        """
        close() with data queued: the data first, then FIN after it.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"d" * 100)
        tcb.close()
        self.recv(
            dispatch(tcb, 1.0),
            [self.ours(1, 1, ACK | PSH, b"d" * 100), self.ours(101, 1, FIN | ACK)],
        )

    def test_finRetransmitted(self):
        """
        An unacknowledged FIN is sent again on the RTO, with backoff.
        """
        tcb = self.tcbFinWait1()
        self.recv(dispatch(tcb, 1.2), [self.ours(1, 1, FIN | ACK)])
        self.assertAlmostEqual(tcb.pollAt(1.2), 1.6)

    def test_finAcked(self):
        """
        The ACK of our FIN: FIN-WAIT-2, with no timer left.
        """
        tcb = self.tcbFinWait2()
        self.assertIsNone(tcb.pollAt(1.1))

    def test_dataStillReceived(self):
        """
        The guest may still send after our FIN.
        """
        tcb = self.tcbFinWait1()
        send(tcb, self.theirs(1, 2, payload=b"more"), 1.1)
        self.assertEqual(tcb.recv(), b"more")
        self.assertIs(tcb.state, State.FIN_WAIT_2)

    def test_finAndAckTogether(self):
        """
        The guest's FIN acknowledging ours: straight to TIME-WAIT.
        """
        tcb = self.tcbFinWait1()
        self.recv(send(tcb, self.theirs(1, 2, FIN | ACK), 1.1), [self.ours(2, 2)])
        self.assertIs(tcb.state, State.TIME_WAIT)

    def test_giveUp(self):
        """
        A FIN never acknowledged ends the connection after maxRetries.
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRetries=1)
        tcb = self.tcbFinWait1(config)
        self.assertEqual(len(dispatch(tcb, 1.2)), 1)
        self.recv(dispatch(tcb, tcb.pollAt(1.2)), [self.ours(2, 1, RST | ACK)])
        self.assertEqual(tcb.error, "timeout")


class FinWait2Tests(TCPTestCase):
    def test_dataReceived(self):
        """
        Data still arrives in FIN-WAIT-2 and is acknowledged.
        """
        tcb = self.tcbFinWait2()
        send(tcb, self.theirs(1, 2, payload=b"a"), 2.0)
        self.recv(dispatch(tcb, 2.02), [self.ours(2, 2)])
        self.assertEqual(tcb.recv(), b"a")

    def test_finToTimeWait(self):
        """
        The guest's FIN: acknowledged at once, TIME-WAIT.
        """
        tcb = self.tcbTimeWait()
        self.assertTrue(tcb.eofReceived)

    def test_dataWithFin(self):
        """
        Data and FIN in one segment: the data, then EOF, one ACK for both.
        """
        tcb = self.tcbFinWait2()
        self.recv(send(tcb, self.theirs(1, 2, FIN | ACK, b"bye"), 2.0), [self.ours(2, 5)])
        self.assertEqual(tcb.recv(), b"bye")
        self.assertIs(tcb.state, State.TIME_WAIT)


class CloseWaitTests(TCPTestCase):
    def test_canStillSend(self):
        """
        After the guest's FIN we may still send.
        """
        tcb = self.tcbCloseWait()
        self.assertTrue(tcb.canSend)
        tcb.send(b"reply")
        self.recv(dispatch(tcb, 1.1), [self.ours(1, 2, ACK | PSH, b"reply")])

    def test_retransmittedFinAcked(self):
        """
        The guest's FIN again (our ACK was lost): ACK it again.
        """
        tcb = self.tcbCloseWait()
        self.recv(send(tcb, self.theirs(1, 1, FIN | ACK), 1.5), [self.ours(1, 2)])
        self.assertIs(tcb.state, State.CLOSE_WAIT)

    def test_dataAfterFinIgnored(self):
        """
        Bytes after the guest's FIN are not delivered.
        """
        tcb = self.tcbCloseWait()
        send(tcb, self.theirs(2, 1, payload=b"ghost"), 1.5)
        self.assertEqual(tcb.recvQueue, 0)

    def test_closeSendsFinAfterData(self):
        """
        close() in CLOSE-WAIT: LAST-ACK, FIN after queued data.
        """
        tcb = self.tcbCloseWait()
        tcb.send(b"last")
        tcb.close()
        self.recv(
            dispatch(tcb, 1.1),
            [self.ours(1, 2, ACK | PSH, b"last"), self.ours(5, 2, FIN | ACK)],
        )
        self.assertIs(tcb.state, State.LAST_ACK)


class ClosingTests(TCPTestCase):
    """
    Simultaneous close: both FINs cross.
    """

    def test_ackOfFinToTimeWait(self):
        """
        In CLOSING, the ACK of our FIN: TIME-WAIT.
        """
        tcb = self.tcbClosing()
        self.assertEqual(send(tcb, self.theirs(2, 2), 1.2), [])
        self.assertIs(tcb.state, State.TIME_WAIT)
        self.assertAlmostEqual(tcb.pollAt(1.2), 1.2 + CONFIG.timeWait)

    def test_finRetransmitted(self):
        """
        Our FIN is sent again while unacknowledged.
        """
        tcb = self.tcbClosing()
        self.recv(dispatch(tcb, 1.2), [self.ours(1, 2, FIN | ACK)])

    def test_guestFinAgain(self):
        """
        The guest's FIN again: acknowledged again.
        """
        tcb = self.tcbClosing()
        self.recv(send(tcb, self.theirs(1, 1, FIN | ACK), 1.15), [self.ours(2, 2)])
        self.assertIs(tcb.state, State.CLOSING)


class LastAckTests(TCPTestCase):
    def test_ackCloses(self):
        """
        The ACK of our FIN closes the connection cleanly.
        """
        tcb = self.tcbLastAck()
        self.assertEqual(send(tcb, self.theirs(2, 2), 1.2), [])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, None))
        self.assertIsNone(tcb.pollAt(1.2))

    def test_finRetransmitted(self):
        """
        Our FIN is sent again on the RTO.
        """
        tcb = self.tcbLastAck()
        self.recv(dispatch(tcb, 1.3), [self.ours(1, 2, FIN | ACK)])

    def test_giveUp(self):
        """
        A FIN never acknowledged in LAST-ACK ends with "timeout".
        """
        config = TCPConfig(mss=1460, receiveBuffer=64 * 1024, maxRetries=1)
        tcb = self.tcbLastAck(config)
        self.assertEqual(len(dispatch(tcb, tcb.pollAt(1.1))), 1)
        at = tcb.pollAt(1.3)
        self.assertAlmostEqual(at, 1.7)
        self.recv(dispatch(tcb, at), [self.ours(2, 2, RST | ACK)])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "timeout"))


class TimeWaitTests(TCPTestCase):
    def test_expiry(self):
        """
        TIME-WAIT lasts config.timeWait, then the control block is closed
        without sending anything.
        """
        tcb = self.tcbTimeWait()
        self.assertAlmostEqual(tcb.pollAt(1.2), 3.2)
        self.recvNothing(tcb, 3.1999)
        self.assertIs(tcb.state, State.TIME_WAIT)
        self.recvNothing(tcb, 3.2)
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, None))

    def test_retransmittedFinRestartsTimer(self):
        """
        The guest's FIN again (our ACK was lost) is acknowledged and
        restarts the timer (RFC 9293 3.10.7.4), so the guest's next try
        does not meet a RST.
        """
        tcb = self.tcbTimeWait()
        self.recv(send(tcb, self.theirs(1, 2, FIN | ACK), 3.0), [self.ours(2, 2)])
        self.assertAlmostEqual(tcb.pollAt(3.0), 5.0)
        self.recvNothing(tcb, 3.2)
        self.assertIs(tcb.state, State.TIME_WAIT)

    def test_newSynLeftToCaller(self):
        """
        A new SYN on the pair gets no answer from the old control block:
        the layer decides whether to reuse the pair.
        """
        tcb = self.tcbTimeWait()
        syn = replace(self.synSegment(), seq=seq(REMOTE_SEQ, 100000))
        self.assertEqual(send(tcb, syn, 2.0), [])
        self.assertIs(tcb.state, State.TIME_WAIT)

    def test_abortSendsNothing(self):
        """
        Aborting in TIME-WAIT (a new SYN reuses the pair) sends no RST: the
        guest is done with the old connection (RFC 9293 3.10.5).
        """
        tcb = self.tcbTimeWait()
        self.assertEqual(tcb.abort(), [])
        self.assertIs(tcb.state, State.CLOSED)

    def test_noMoreData(self):
        """
        Nothing can be sent in TIME-WAIT.
        """
        tcb = self.tcbTimeWait()
        self.assertEqual(tcb.send(b"x"), 0)


class ResetTests(TCPTestCase):
    """
    RST in every state that has heard from the guest: an exact one resets
    (RFC 5961 3.2), one elsewhere in the window gets a challenge ACK, one
    outside the window is ignored.
    """

    # builder, our next sequence offset, remote rcv.nxt offset, and a time
    # after the builder's last event and before any timer it set.
    CASES = [
        ("tcbSynReceived", 1, 1, 0.5),
        ("tcbEstablished", 1, 1, 1.15),
        ("tcbFinWait1", 2, 1, 1.15),
        ("tcbFinWait2", 2, 1, 1.15),
        ("tcbCloseWait", 1, 2, 1.15),
        ("tcbClosing", 2, 2, 1.15),
        ("tcbLastAck", 2, 2, 1.15),
    ]

    def test_timeWaitIgnoresResets(self):
        """
        In TIME-WAIT every RST is ignored and the timer runs out as usual
        (RFC 1337: a RST provoked by a late duplicate must not "assassinate"
        the finished connection, nor mark it as reset).
        """
        for rcv in (2, 7, 100000):
            tcb = self.tcbTimeWait()
            self.assertEqual(send(tcb, self.theirs(rcv, 0, RST), 1.25), [])
            self.assertIs(tcb.state, State.TIME_WAIT)
        tcb.dispatch(1.25 + 60)
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, None))

    def test_exactResets(self):
        """
        A RST at rcv.nxt closes the connection with error "reset", silently.
        """
        for name, _, rcv, at in self.CASES:
            for flags in (RST, RST | ACK):
                tcb = getattr(self, name)()
                self.assertEqual(send(tcb, self.theirs(rcv, 0, flags), at), [], name)
                self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "reset"), name)
                self.assertIsNone(tcb.pollAt(at))

    def test_inWindowChallenged(self):
        """
        A RST in the window but not at rcv.nxt gets a challenge ACK and
        changes nothing.
        """
        for name, snd, rcv, at in self.CASES:
            tcb = getattr(self, name)()
            state = tcb.state
            out = send(tcb, self.theirs(rcv + 5, 0, RST), at)
            self.recv(out, [self.ours(snd, rcv)])
            self.assertIs(tcb.state, state, name)

    def test_outOfWindowIgnored(self):
        """
        A RST outside the window is dropped without a word.
        """
        for name, _, rcv, at in self.CASES:
            tcb = getattr(self, name)()
            state = tcb.state
            self.assertEqual(send(tcb, self.theirs(rcv + 100000, 0, RST), at), [], name)
            self.assertEqual(send(tcb, self.theirs(rcv - 1, 0, RST), at), [], name)
            self.assertIs(tcb.state, state, name)

    def test_abortSendsReset(self):
        """
        abort() in a synchronized state sends RST|ACK at snd.nxt.
        """
        for name, snd, rcv, _ in self.CASES[1:-1]:
            tcb = getattr(self, name)()
            self.recv(tcb.abort(), [self.ours(snd, rcv, RST | ACK)])
            self.assertEqual((tcb.state, tcb.error), (State.CLOSED, "aborted"))


class ChallengeAckTests(TCPTestCase):
    def test_synInWindow(self):
        """
        A SYN in a synchronized state gets a challenge ACK (RFC 5961 4.2),
        and the connection carries on.
        """
        tcb = self.tcbEstablished()
        syn = self.theirs(5, 0, SYN)
        self.recv(send(tcb, syn, 1.0), [self.ours(1, 1)])
        self.assertIs(tcb.state, State.ESTABLISHED)

    def test_synOutsideWindow(self):
        """
        A SYN outside the window is not acceptable: an ACK, nothing else.
        """
        tcb = self.tcbEstablished()
        syn = self.theirs(-5000, 0, SYN)
        self.recv(send(tcb, syn, 1.0), [self.ours(1, 1)])
        self.assertIs(tcb.state, State.ESTABLISHED)

    def test_retransmittedHandshakeSyn(self):
        """
        In SYN-RECEIVED the guest's own SYN again brings the SYN-ACK again.
        """
        tcb = self.tcbSynReceived()
        self.recv(send(tcb, self.synSegment(), 0.5), [self.ours(0, 1, SYN | ACK)])


class LifecycleTests(TCPTestCase):
    """
    A whole connection: handshake, data both ways with loss and reordering,
    both FINs, TIME-WAIT.  Run again below with sequence numbers about to
    wrap.
    """

    def test_wholeConnection(self):
        """
        3000 bytes each way, an out-of-order segment from the guest, a lost
        segment of ours recovered on the timeout, a clean close.
        """
        tcb = self.tcbEstablished()
        data = bytes(range(256)) * 12
        tcb.send(data[:3000])
        out = dispatch(tcb, 1.0)
        self.recv(
            out,
            [
                self.ours(1, 1, payload=data[:MSS]),
                self.ours(1 + MSS, 1, payload=data[MSS : 2 * MSS]),
                self.ours(1 + 2 * MSS, 1, ACK | PSH, data[2 * MSS : 3000]),
            ],
        )
        # The guest got the last two, not the first: SACK-carrying dupacks.
        sack = TCPOptions(sack=((seq(self.localSeq, 1 + MSS), seq(self.localSeq, 3001)),))
        self.assertEqual(send(tcb, self.theirs(1, 1, options=sack), 1.01), [])
        self.recv(dispatch(tcb, 1.2), [self.ours(1, 1, payload=data[:MSS])])
        self.assertEqual(send(tcb, self.theirs(1, 3001), 1.25), [])
        self.assertEqual(tcb.sendQueue, 0)
        # The guest's 3000 bytes, second half first.
        [dup] = send(tcb, self.theirs(1501, 3001, payload=data[1500:3000]), 1.3)
        self.assertEqual(
            dup.options.sack, ((seq(self.remoteSeq, 1501), seq(self.remoteSeq, 3001)),)
        )
        out = send(tcb, self.theirs(1, 3001, payload=data[:1500]), 1.31)
        self.recv(out, [self.ours(3001, 3001)])
        self.assertEqual(tcb.recv(), data[:3000])
        # Close: ours first, then the guest's.
        tcb.close()
        self.recv(dispatch(tcb, 1.4), [self.ours(3001, 3001, FIN | ACK)])
        self.recv(send(tcb, self.theirs(3001, 3002, FIN | ACK), 1.41), [self.ours(3002, 3002)])
        self.assertIs(tcb.state, State.TIME_WAIT)
        self.recvNothing(tcb, 1.41 + CONFIG.timeWait)
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, None))

    def test_fastRetransmitAcrossWrap(self):
        """
        Fast retransmit and the recovery's full ACK, wherever the numbers
        sit.
        """
        tcb = self.tcbEstablished()
        tcb.send(b"f" * (4 * MSS))
        dispatch(tcb, 1.0)
        for i in range(2):
            self.assertEqual(send(tcb, self.theirs(1, 1), 1.01 + i / 100), [])
        self.recv(send(tcb, self.theirs(1, 1), 1.03), [self.ours(1, 1, payload=b"f" * MSS)])
        send(tcb, self.theirs(1, 1 + 4 * MSS), 1.05)
        self.assertEqual((tcb.sendQueue, tcb.pollAt(1.05)), (0, None))

    def test_guestClosesFirst(self):
        """
        The guest's FIN, our data and FIN, its ACK: CLOSED.
        """
        tcb = self.tcbCloseWait()
        tcb.send(b"bye")
        tcb.close()
        self.recv(
            dispatch(tcb, 1.1), [self.ours(1, 2, ACK | PSH, b"bye"), self.ours(4, 2, FIN | ACK)]
        )
        self.assertEqual(send(tcb, self.theirs(2, 5), 1.2), [])
        self.assertEqual((tcb.state, tcb.error), (State.CLOSED, None))


class SequenceWraparoundTests(LifecycleTests):
    """
    The lifecycle with both sequence spaces wrapping past 2**32 during the
    connection.
    """

    localSeq = 2**32 - 3
    remoteSeq = 2**32 - 2
