"""
Tests for L{vpnkit.protocols.tcp.state}: the TCP control block driven by
segment traces, smoltcp style.  Every segment is a template plus the fields
that change; time is an argument.
"""

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols.tcp.state import State, TCPConfig, TCPControlBlock, refuse, resetFor
from vpnkit.wire.seq import seqAdd
from vpnkit.wire.tcp import ACK, FIN, PSH, RST, SYN, Segment, TCPOptions

LOCAL_PORT = 80
REMOTE_PORT = 49500
LOCAL_SEQ = 10000
REMOTE_SEQ = -10000 & 0xFFFFFFFF
CONFIG = TCPConfig(mss=1460, receiveBuffer=64 * 1024)

# Segments the guest sends us, and segments we send the guest.
SEND = Segment(REMOTE_PORT, LOCAL_PORT, REMOTE_SEQ, 0, ACK, 1000)
RECV = Segment(LOCAL_PORT, REMOTE_PORT, LOCAL_SEQ, 0, ACK, 0)
SYN_OPTIONS = TCPOptions(mss=1460, windowScale=0, sackPermitted=True)


def seq(base, n):
    return seqAdd(base, n)


def send(tcb, segment, at=0.0):
    """
    Feed C{segment} to C{tcb}; return what it sends.
    """
    return tcb.segmentReceived(segment, at)


class TCPTestCase(SynchronousTestCase):
    localSeq = LOCAL_SEQ
    remoteSeq = REMOTE_SEQ

    def recv(self, segments, expected):
        """
        Assert C{segments} are exactly C{expected}, compared field by field
        (the window is compared only where the expectation sets it).
        """
        self.assertEqual(
            [(s.seq, s.ack, s.flags, s.payload) for s in segments],
            [(e.seq, e.ack, e.flags, e.payload) for e in expected],
        )

    def recvNothing(self, tcb, at):
        self.assertEqual(tcb.dispatch(at), [])

    def synSegment(self):
        return replace(SEND, seq=self.remoteSeq, ack=0, flags=SYN, window=64240, options=SYN_OPTIONS)

    def tcbSynReceived(self, config=CONFIG):
        """
        A control block that saw the guest's SYN and was accepted (SYN-ACK
        sent at t=0).
        """
        tcb = TCPControlBlock.fromSYN(self.synSegment(), self.localSeq, config)
        out = tcb.accept(0.0)
        self.assertEqual(len(out), 1)
        return tcb

    def tcbEstablished(self, config=CONFIG, window=64240):
        tcb = self.tcbSynReceived(config)
        out = send(
            tcb,
            replace(SEND, seq=seq(self.remoteSeq, 1), ack=seq(self.localSeq, 1), window=window),
            0.01,
        )
        self.assertEqual(out, [])
        self.assertIs(tcb.state, State.ESTABLISHED)
        return tcb

    def guest(self, n=1, **fields):
        """
        A segment from the guest at remote offset C{n} acknowledging
        everything so far unless told otherwise.
        """
        fields.setdefault("seq", seq(self.remoteSeq, n))
        return replace(SEND, window=64240, **fields)


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
        Guest FIN: CLOSE-WAIT and EOF; our close sends FIN (LAST-ACK); its
        ACK closes.
        """
        tcb = self.tcbEstablished()
        out = send(tcb, self.guest(1, ack=seq(LOCAL_SEQ, 1), flags=FIN | ACK), 1.0)
        self.recv(out, [replace(RECV, seq=seq(LOCAL_SEQ, 1), ack=seq(REMOTE_SEQ, 2))])
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
