# -*- test-case-name: tests.test_dnsupstream -*-
"""
Upstream DNS policy: L{UpstreamResolver}, the resolver that asks the
servers of a L{vpnkit.protocols.dnsconfig.DNSConfig} (the C{--dns} file,
or the host's C{resolv.conf}).

It chains the L{vpnkit.protocols.dnscache.AnswerCache} and one
L{vpnkit.protocols.dnsexchange.UpstreamExchange} per server asked, and
decides, as the reference's C{dns_forward}:

 - B{selection}: the servers whose C{zone} list holds a suffix of the
   query name (label-wise) are the only candidates; when none does, every
   server is;
 - B{all candidates asked at once}, grouped by C{order}: the first success
   (NOERROR with at least one answer) of the earliest group wins as soon as
   it arrives; a group without one keeps its best failure and the next
   group is awaited; so a fast NXDOMAIN from one server does not beat a
   slower answer from another;
 - B{offline servers}: a server that has left more than
   C{assume-offline-after} (5) requests unanswered in a row is offline:
   still asked (so a reply brings it back) but not waited for, unless every
   candidate is offline;
 - B{cache}: successes are answered from the cache until their smallest
   TTL runs out; new servers empty it.

Where it differs from the reference, it keeps more of the truth: the
upstream's rcode and every section are relayed (via
L{vpnkit.protocols.dns.RcodeError}), and the records relayed are not marked
authoritative.
"""

import random

from twisted.internet import defer
from twisted.internet.interfaces import IResolver
from twisted.names import dns
from twisted.names.error import DNSQueryTimeoutError
from zope.interface import implementer

from vpnkit.log import GuestLog, logger
from vpnkit.protocols.dns import NameResolver, RcodeError, normalName
from vpnkit.protocols.dnscache import AnswerCache
from vpnkit.protocols.dnsconfig import DNSConfig
from vpnkit.protocols.dnsexchange import UpstreamExchange

__all__ = ["UpstreamResolver", "NoUpstreamError", "MAX_IN_FLIGHT"]

# The namespace is older than this module; kept so log lines do not change.
log = logger("vpnkit.dnsupstream")

MAX_IN_FLIGHT = 1024


class NoUpstreamError(Exception):
    """
    No server to ask (none configured, or too many queries in flight).
    """


class _ServerState:
    """
    What the resolver knows about one server's health.
    """

    __slots__ = ("missing", "offline")

    def __init__(self):
        self.missing = 0
        self.offline = False


def _isSuccess(message):
    return message.rCode == dns.OK and len(message.answers) > 0


def _failureRank(outcome):
    """
    How good a failed outcome is: a name that exists with no data, then a
    name that does not exist, then other rcodes, then no answer at all.
    """
    if isinstance(outcome, dns.Message):
        if outcome.rCode == dns.OK:
            return 3
        if outcome.rCode == dns.ENAME:
            return 2
        return 1
    return 0


def _relayed(records):
    """
    C{records} as vpnkit relays them: not authoritative.
    """
    return [dns.RRHeader(r.name.name, r.type, r.cls, r.ttl, r.payload, auth=False) for r in records]


class _Decision:
    """
    Which of a query's exchanges answers it: see the module docstring.

    @param exchanges: every L{UpstreamExchange} of the query.
    @param waited: those whose outcome is waited for (the online ones).
    @ivar deferred: fires with the winning outcome.
    """

    def __init__(self, exchanges, waited):
        self.exchanges = exchanges
        self.waited = waited
        self.outcomes = {}
        self.arrival = {}
        self.deferred = defer.Deferred()
        self.groups = sorted({e.server.order for e in exchanges})

    def arrived(self, exchange, outcome):
        self.outcomes[exchange] = outcome
        self.arrival[exchange] = len(self.arrival)
        self.evaluate()

    def evaluate(self):
        if self.deferred.called:
            return
        best = None
        for group in self.groups:
            members = [e for e in self.exchanges if e.server.order == group]
            done = sorted((e for e in members if e in self.outcomes), key=self.arrival.get)
            for e in done:
                outcome = self.outcomes[e]
                if isinstance(outcome, dns.Message) and _isSuccess(outcome):
                    self.deferred.callback(outcome)
                    return
            if any(e not in self.outcomes and e in self.waited for e in members):
                return
            for e in done:
                rank = _failureRank(self.outcomes[e])
                if best is None or rank > best[0]:
                    best = (rank, self.outcomes[e])
        self.deferred.callback(best[1] if best is not None else DNSQueryTimeoutError(None))


@implementer(IResolver)
class UpstreamResolver(NameResolver):
    """
    The upstream resolver: see the module docstring.

    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets} queries go
        through.
    @param network: the L{vpnkit.interfaces.IHostNetwork} for TCP queries.
    @param clock: an L{IReactorTime}.
    @param rng: the source of transaction ids (a C{random.Random}).
    @param cache: the L{AnswerCache} (a new one by default).

    @ivar inFlight: how many exchanges are under way, at most
        L{MAX_IN_FLIGHT}.
    """

    def __init__(self, config, sockets, network, clock, counters, rng=None, cache=None):
        super().__init__()
        self.sockets = sockets
        self.network = network
        self.clock = clock
        self.counters = counters.dns
        self.rng = rng or random.SystemRandom()
        self.cache = cache if cache is not None else AnswerCache()
        self._states = {}
        self._live = set()
        self._guestLog = GuestLog(log, clock)
        self.inFlight = 0
        self.config = DNSConfig()
        self.setConfig(config)

    def setConfig(self, config):
        """
        Use new servers (the C{--dns} file changed).  Health is kept for
        servers that stay; the cache is emptied, since answers may differ.
        """
        if config is not None and not config.servers:
            log.warn("no upstream DNS servers are configured")
        if config is None:
            config = DNSConfig()
        self.config = config
        keep = {(s.address, s.port) for s in config.servers}
        self._states = {k: v for k, v in self._states.items() if k in keep}
        self.cache.clear()

    def _state(self, server):
        key = (server.address, server.port)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _ServerState()
        return state

    def candidates(self, name):
        """
        The servers to ask about C{name} (normalised text).
        """
        labels = name.split(".") if name else []
        suffixes = {".".join(labels[i:]) for i in range(len(labels))} | {""}
        servers = self.config.servers
        zoned = [s for s in servers if any(z in suffixes for z in s.zones)]
        return zoned or list(servers)

    def query(self, query, timeout=None):
        name = normalName(query.name)
        if name is None:
            name = query.name.name.decode("latin-1").rstrip(".").lower()
        key = (name, query.type, query.cls)
        now = self.clock.seconds()
        cached = self.cache.get(key, now)
        if cached is not None:
            self.counters.cacheHits += 1
            return defer.succeed(cached)
        servers = self.candidates(name)
        if not servers:
            return defer.fail(NoUpstreamError("no upstream DNS servers are configured"))
        if self.inFlight + len(servers) > MAX_IN_FLIGHT:
            self.counters.upstreamErrors += 1
            return defer.fail(NoUpstreamError("too many upstream DNS queries in flight"))
        online = [s for s in servers if not self._state(s).offline]
        if not online:
            self._guestLog.warn("there are no online DNS servers for {name}", name=name)
        exchanges = [
            UpstreamExchange(s, query, self.sockets, self.network, self.clock, self.rng, self.counters)
            for s in servers
        ]
        waited = {e for e in exchanges if not online or e.server in online}
        decision = _Decision(exchanges, waited)

        def arrived(outcome, exchange):
            self._live.discard(exchange)
            self._exchangeDone(exchange, outcome)
            decision.arrived(exchange, outcome)

        for exchange in exchanges:
            self.inFlight += 1
            self._live.add(exchange)
            exchange.deferred.addCallback(arrived, exchange)
        for exchange in exchanges:
            exchange.start()
        return decision.deferred.addCallback(self._decided, key)

    def close(self):
        """
        Abandon every exchange under way (vpnkit is stopping): their
        sockets and timers go, and their queries fail.
        """
        for exchange in list(self._live):
            exchange.abandon()

    def _decided(self, outcome, key):
        if isinstance(outcome, dns.Message):
            # vpnkit relays; it is not the authority for what it relays.
            result = (
                _relayed(outcome.answers),
                _relayed(outcome.authority),
                _relayed(r for r in outcome.additional if r.type != dns.OPT),
            )
            if _isSuccess(outcome):
                self.cache.put(key, result, self.clock.seconds())
                return result
            raise RcodeError(outcome.rCode, *result)
        if isinstance(outcome, BaseException):
            raise outcome
        raise DNSQueryTimeoutError(None)

    def _exchangeDone(self, exchange, outcome):
        self.inFlight -= 1
        counters = self.counters
        state = self._state(exchange.server)
        server = exchange.server
        if isinstance(outcome, dns.Message):
            counters.upstreamReplies += 1
            state.missing = 0
            if state.offline:
                state.offline = False
                log.info("upstream DNS server {server} answers again", server=str(server))
            return
        if isinstance(outcome, DNSQueryTimeoutError):
            counters.upstreamTimeouts += 1
        else:
            counters.upstreamErrors += 1
        state.missing += max(1, exchange.sends)
        if not state.offline and state.missing > self.config.assumeOfflineAfter:
            state.offline = True
            log.warn(
                "upstream DNS server {server} has dropped {n} packets in a row: "
                "assuming it is offline",
                server=str(server),
                n=state.missing,
            )

    def isOffline(self, server):
        """
        Whether C{server} is taken to be offline.
        """
        return self._state(server).offline
