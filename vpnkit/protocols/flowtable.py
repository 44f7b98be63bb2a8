# -*- test-case-name: tests.test_flowtable -*-
"""
L{FlowTable}: the bookkeeping shared by the UDP NAT and the ICMP echo
proxy (and the gateway forwards): flows by key, least recently used
first, with an idle timeout and a cap; and L{SocketFlow}, one flow's host
socket.

The table is pure (time is passed in); L{FlowExpiry} is the thin glue that
keeps one L{IDelayedCall} for a whole table.  Ordering by last use makes
both jobs cheap: the flow to evict at the cap and the next flow to expire
are both the first one.
"""

from collections import OrderedDict

from zope.interface import implementer

from vpnkit.interfaces import IDatagramReceiver

__all__ = ["FlowTable", "FlowExpiry", "SocketFlow", "QUOTES_PER_FLOW"]

# What a flow remembers of the guest's recent datagrams, for ICMP errors.
QUOTES_PER_FLOW = 16


class FlowTable:
    """
    @ivar maxFlows: at most this many flows; adding one more evicts the
        least recently used.
    @ivar idleTimeout: seconds without traffic after which a flow expires.
    """

    def __init__(self, maxFlows, idleTimeout):
        if maxFlows < 1:
            raise ValueError("a flow table needs room for one flow")
        self.maxFlows = maxFlows
        self.idleTimeout = idleTimeout
        self._flows = OrderedDict()

    def __len__(self):
        return len(self._flows)

    def __contains__(self, key):
        return key in self._flows

    def get(self, key):
        """
        The flow for C{key}, or C{None}; does not count as use.
        """
        entry = self._flows.get(key)
        return entry[0] if entry is not None else None

    def values(self):
        return [flow for flow, _ in self._flows.values()]

    def touch(self, key, now):
        """
        Record traffic on C{key}'s flow (in either direction).
        """
        entry = self._flows.get(key)
        if entry is not None:
            entry[1] = now
            self._flows.move_to_end(key)

    def makeRoom(self):
        """
        Evict least recently used flows until one more fits: call it
        before opening what the new flow needs, so the cap holds for host
        resources too.

        @return: the evicted flows, for the caller to close.
        """
        evicted = []
        while len(self._flows) >= self.maxFlows:
            _, (old, _) = self._flows.popitem(last=False)
            evicted.append(old)
        return evicted

    def add(self, key, flow, now):
        """
        Add a flow.

        @return: the flows evicted to make room (least recently used
            first), for the caller to close.
        """
        evicted = self.makeRoom()
        self._flows[key] = [flow, now]
        return evicted

    def remove(self, key):
        """
        Forget C{key}'s flow (already closed by the caller).
        """
        entry = self._flows.pop(key, None)
        return entry[0] if entry is not None else None

    def removeGuest(self, guestIP):
        """
        Forget every flow of the guest at C{guestIP} (the first element of
        each key).

        @return: the removed flows, for the caller to close.
        """
        keys = [key for key in self._flows if key[0] == guestIP]
        return [self._flows.pop(key)[0] for key in keys]

    def removeAll(self):
        """
        Forget every flow.

        @return: the removed flows, for the caller to close.
        """
        flows = [flow for flow, _ in self._flows.values()]
        self._flows.clear()
        return flows

    def lastUse(self, key):
        entry = self._flows.get(key)
        return entry[1] if entry is not None else None

    def pollAt(self):
        """
        When the next flow expires (if it stays idle), or C{None}.
        """
        for _, lastUse in self._flows.values():
            return lastUse + self.idleTimeout
        return None

    def expire(self, now):
        """
        Remove every flow idle for C{idleTimeout} or longer.

        @return: the removed flows, for the caller to close.
        """
        expired = []
        flows = self._flows
        while flows:
            key = next(iter(flows))
            flow, lastUse = flows[key]
            if lastUse + self.idleTimeout > now:
                break
            del flows[key]
            expired.append(flow)
        return expired


class FlowExpiry:
    """
    One timer for a L{FlowTable}: armed when the table has flows, fired at
    the earliest possible expiry, re-armed from L{FlowTable.pollAt}.  Traffic
    only moves a flow's deadline later, so a timer that fires early simply
    re-arms.

    @param onExpired: called with the list of expired flows.
    """

    def __init__(self, table, clock, onExpired):
        self._table = table
        self._clock = clock
        self._onExpired = onExpired
        self._timer = None

    def arm(self):
        """
        Make sure a timer runs if the table holds flows.
        """
        if self._timer is not None:
            return
        at = self._table.pollAt()
        if at is None:
            return
        self._timer = self._clock.callLater(max(0.0, at - self._clock.seconds()), self._fire)

    def stop(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self):
        self._timer = None
        expired = self._table.expire(self._clock.seconds())
        if expired:
            self._onExpired(expired)
        self.arm()


@implementer(IDatagramReceiver)
class SocketFlow:
    """
    One flow's host datagram socket, reporting to its owner: the owner's
    C{flowDatagram(flow, data, host, port)} and C{flowError(flow, error)}.

    @ivar quotes: what the guest sent lately (bounded, oldest first
        dropped), for quoting in the ICMP errors the host reports.
    """

    __slots__ = ("owner", "key", "socket", "quotes")

    def __init__(self, owner, key):
        self.owner = owner
        self.key = key
        self.socket = None
        self.quotes = OrderedDict()

    def remember(self, what, header, quote):
        """
        Keep C{(header, quote)} under C{what} (a destination, an echo
        sequence number), forgetting the oldest beyond C{QUOTES_PER_FLOW}.
        """
        quotes = self.quotes
        quotes[what] = (header, quote)
        quotes.move_to_end(what)
        if len(quotes) > QUOTES_PER_FLOW:
            quotes.popitem(last=False)

    def datagramReceived(self, data, host, port):
        self.owner.flowDatagram(self, data, host, port)

    def errorReceived(self, error):
        self.owner.flowError(self, error)

    def close(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None

