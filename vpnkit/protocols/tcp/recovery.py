# -*- test-case-name: tests.test_tcp_state,tests.test_netsim -*-
"""
The sender's side of loss recovery, pure: what the guest reported holding
(L{Scoreboard}, from its SACK blocks) and the congestion window
(L{NewReno}).  The control block owns one of each and acts on what they
decide: which segment to send again, and how much may be in flight.

Sequence numbers are ints modulo 2**32, compared only through
L{vpnkit.wire.seq.seqSub}.
"""

from vpnkit.wire.seq import seqSub

__all__ = ["FIRST", "NEXT", "Scoreboard", "NewReno"]

# What to retransmit now: the first unacknowledged segment, or the next
# hole the SACK blocks reveal.
FIRST = "first"
NEXT = "next"

# At most this many separate ranges are remembered.
MAX_RANGES = 16


class Scoreboard:
    """
    The guest's SACK information: the data beyond C{snd.una} it said it
    holds, as sorted, disjoint C{[left, right)} ranges.
    """

    __slots__ = ("ranges",)

    def __init__(self):
        self.ranges = []

    def __bool__(self):
        return bool(self.ranges)

    def total(self):
        """
        How many bytes the guest reported holding.
        """
        return sum(seqSub(right, left) for left, right in self.ranges)

    def record(self, blocks, una, sndMax):
        """
        Merge a segment's SACK blocks (ignoring any outside C{una..sndMax}).

        @return: how many bytes they newly reported held.
        """
        before = self.total()
        ranges = self.ranges
        for left, right in blocks:
            if seqSub(right, left) <= 0 or seqSub(right, una) <= 0 or seqSub(right, sndMax) > 0:
                continue
            if seqSub(left, una) < 0:
                left = una
            ranges.append([left, right])
        if not ranges:
            return 0
        ranges.sort(key=lambda r: seqSub(r[0], una))
        merged = [ranges[0]]
        for left, right in ranges[1:]:
            last = merged[-1]
            if seqSub(left, last[1]) <= 0:
                if seqSub(right, last[1]) > 0:
                    last[1] = right
            else:
                merged.append([left, right])
        self.ranges = merged[:MAX_RANGES]
        return max(0, self.total() - before)

    def acknowledged(self, ack):
        """
        C{snd.una} moved to C{ack}: forget what it covers.  A cumulative ACK
        that stops at data the guest said it held means it dropped that
        data (reneged, RFC 2018 8): its SACK information is forgotten, or
        skipping it would leave the hole at C{snd.una} unsent forever.
        """
        if not self.ranges:
            return
        ranges = [r for r in self.ranges if seqSub(r[1], ack) > 0]
        if ranges and seqSub(ranges[0][0], ack) <= 0:
            ranges = []
        self.ranges = ranges

    def firstStart(self):
        """
        Where the first reported range starts, or C{None}.
        """
        return self.ranges[0][0] if self.ranges else None

    def skipAt(self, seq):
        """
        For a retransmission starting at C{seq}: how many bytes from there
        the guest already holds (to skip), and how many may be sent before
        the next range it holds (or C{None}).
        """
        for left, right in self.ranges:
            start = seqSub(left, seq)
            if start <= 0 < seqSub(right, seq):
                return seqSub(right, seq), None
            if start > 0:
                return 0, start
        return 0, None

    def nextHole(self, start):
        """
        The lowest hole at or after C{start} below data the guest holds.

        @return: C{(seq, length)}, or C{None}.
        """
        for left, right in self.ranges:
            if seqSub(right, start) <= 0:
                continue
            if seqSub(left, start) > 0:
                return start, seqSub(left, start)
            start = right
        return None

    def clear(self):
        self.ranges = []


class NewReno:
    """
    The congestion window: slow start and congestion avoidance counting the
    bytes each ACK covers (RFC 3465; a guest's kernel coalesces ACKs), fast
    retransmit and NewReno recovery (RFC 5681, 6582) entered on the third
    duplicate ACK or three segments' worth SACKed above the first hole
    (RFC 6675), and limited transmit (RFC 3042).

    @ivar highRxt: how far the current recovery has retransmitted.
    """

    __slots__ = ("cwnd", "ssthresh", "dupAcks", "recover", "inRecovery", "highRxt")

    def __init__(self, iss):
        self.cwnd = 0
        self.ssthresh = 1 << 30
        self.dupAcks = 0
        self.recover = iss
        self.inRecovery = False
        self.highRxt = iss

    def start(self, mss, segments):
        """
        The initial window, once the MSS is known.
        """
        self.cwnd = segments * mss

    def window(self, mss, sendingNew):
        """
        How much may be in flight: the congestion window, plus one segment
        for each of the first two duplicate ACKs when what goes out is new
        data (limited transmit keeps the ACKs coming that fast retransmit
        needs when little is in flight).
        """
        if sendingNew and not self.inRecovery and 0 < self.dupAcks < 3:
            return self.cwnd + self.dupAcks * mss
        return self.cwnd

    def newAck(self, ack, acked, sndMax, mss, sacking):
        """
        C{acked} new bytes were acknowledged, up to C{ack}.

        @return: L{FIRST} or L{NEXT} to retransmit now (a partial
            acknowledgement during recovery), else C{None}.
        """
        if self.inRecovery:
            if seqSub(ack, self.recover) >= 0:
                # Full acknowledgement: leave recovery (RFC 6582 3.2 step 3).
                flight = seqSub(sndMax, ack)
                self.cwnd = min(self.ssthresh, max(flight, mss) + mss)
                self.inRecovery = False
                self.dupAcks = 0
                return None
            # Partial acknowledgement: deflate, and fill the next hole.
            self.cwnd = max(self.cwnd - acked + mss, mss)
            if sacking:
                if seqSub(self.highRxt, ack) < 0:
                    self.highRxt = ack
                return NEXT
            return FIRST
        self.dupAcks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd += acked
        else:
            self.cwnd += max(1, mss * acked // self.cwnd)
        return None

    def duplicate(self, una, sndMax, mss, sackedBytes, sacking):
        """
        A duplicate ACK arrived.

        @return: L{FIRST} when it starts a recovery, L{NEXT} when, during
            one, SACK information may reveal the next hole, else C{None}.
        """
        self.dupAcks += 1
        if self.inRecovery:
            # Each further duplicate means a segment left the network.
            self.cwnd += mss
            return NEXT if sacking else None
        # RFC 6582 3.2: a new recovery only once everything sent before the
        # last one (or before a timeout) has been acknowledged.
        lost = self.dupAcks >= 3 or sackedBytes >= 3 * mss
        if lost and seqSub(una, self.recover) >= 0:
            flight = seqSub(sndMax, una)
            self.ssthresh = max(flight // 2, 2 * mss)
            self.cwnd = self.ssthresh + 3 * mss
            self.recover = sndMax
            self.inRecovery = True
            self.highRxt = una
            return FIRST
        return None

    def retransmitted(self, end):
        """
        Data up to C{end} was sent again in this recovery.
        """
        if seqSub(end, self.highRxt) > 0:
            self.highRxt = end

    def timeout(self, flight, sndMax, mss):
        """
        The retransmission timer fired: one segment in flight, slow start up
        to half of what was in flight (RFC 5681 3.1).
        """
        self.ssthresh = max(flight // 2, 2 * mss)
        self.cwnd = mss
        self.inRecovery = False
        self.dupAcks = 0
        self.recover = sndMax
