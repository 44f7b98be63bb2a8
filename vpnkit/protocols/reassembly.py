# -*- test-case-name: tests.test_fragments -*-
"""
L{Reassembly}: what the IPv4 and IPv6 layers share around their pure
L{vpnkit.protocols.fragments.Reassembler}: the counting of each fragment's
outcome, and the one timer that gives up on datagrams whose fragments did
not all arrive in time.  Each layer says what it tells the sender when
that happens (ICMP or ICMPv6 time exceeded).
"""

from vpnkit.protocols import fragments

__all__ = ["Reassembly"]

def _count(counters, outcome):
    if outcome is fragments.QUEUED:
        counters.fragmentsQueued += 1
    elif outcome is fragments.COMPLETE:
        counters.reassembled += 1
    elif outcome is fragments.DUPLICATE:
        counters.fragmentsDuplicate += 1
    elif outcome is fragments.OVERLAP:
        counters.fragmentOverlap += 1
    elif outcome is fragments.LIMIT:
        counters.fragmentLimit += 1
    elif outcome is fragments.MALFORMED:
        counters.fragmentMalformed += 1
    else:
        counters.fragmentsDropped += 1


class Reassembly:
    """
    A reassembler in a reactor.

    @param reassembler: the L{fragments.Reassembler}.
    @param counters: the layer's counters (C{fragmentsQueued},
        C{reassembled}, ..., C{reassemblyEvicted}, C{reassemblyTimeout}).
    @param clock: the L{IReactorTime}, or C{None} for the global reactor
        (looked up when first needed).
    @param gaveUp: called with each L{fragments.Expired} datagram the timer
        abandons.
    """

    def __init__(self, reassembler, counters, clock, gaveUp):
        self.reassembler = reassembler
        self._counters = counters
        self._clock = clock
        self._gaveUp = gaveUp
        self._timer = None
        self._timerAt = None

    def _reactor(self):
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    def now(self):
        return self._reactor().seconds()

    def settled(self, outcome, evictedBefore):
        """
        Count what the reassembler did with one fragment (C{outcome}; it
        had evicted C{evictedBefore} datagrams before it) and re-arm the
        timer for the earliest deadline.
        """
        counters = self._counters
        _count(counters, outcome)
        counters.reassemblyEvicted += self.reassembler.evicted - evictedBefore
        self._rearm()

    def _rearm(self):
        at = self.reassembler.pollAt()
        if at is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timerAt = None
            return
        if self._timer is not None:
            if self._timerAt <= at:
                return
            self._timer.cancel()
        clock = self._reactor()
        self._timerAt = at
        self._timer = clock.callLater(max(0.0, at - clock.seconds()), self.expire)

    def expire(self):
        """
        Give up on every datagram past its deadline (the timer calls this).
        """
        self._timer = self._timerAt = None
        for expired in self.reassembler.expire(self.now()):
            self._counters.reassemblyTimeout += 1
            self._gaveUp(expired)
        self._rearm()

    def stop(self):
        """
        Drop every partial datagram and the timer.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timerAt = None
        self.reassembler.clear()
