# -*- test-case-name: tests.test_dnsforward -*-
"""
Upstream DNS: the C{--dns} file (L{parseDNSConfig}), the host's
C{resolv.conf} (L{parseResolvConf}) and L{Forwarder}, the resolver that asks
the servers they name.

The forwarder follows the reference's C{dns_forward}:

 - B{selection}: the servers whose C{zone} list holds a suffix of the
   query name (label-wise) are the only candidates; when none does, every
   server is;
 - B{all candidates asked at once}, grouped by C{order}: the first success
   (NOERROR with at least one answer) of the earliest group wins as soon as
   it arrives; a group without one keeps its best failure and the next
   group is awaited; so a fast NXDOMAIN from one server does not beat a
   slower answer from another;
 - B{retransmission}: each server is asked at 0, 1, 2... seconds until its
   C{timeout} (default 5 s), through a fresh UDP socket per query with a
   random transaction id; replies from anywhere else, with another id or
   another question, are ignored;
 - B{offline servers}: a server that has left more than
   C{assume-offline-after} (5) requests unanswered in a row is offline:
   still asked (so a reply brings it back) but not waited for, unless every
   candidate is offline;
 - B{cache}: successes, for the smallest TTL of their answers, served with
   the TTLs counted down; at most 1024 questions, oldest evicted.

Where it differs from the reference, it keeps more of the truth: the
upstream's rcode and every section are relayed (via
L{vpnkit.protocols.dns.RcodeError}); an upstream answer with TC set over
UDP is fetched again over TCP, so the guest gets the whole answer over TCP
and a correctly truncated one over UDP; an ICMP error from the server ends
its query at once; queries announce EDNS0 (4096 bytes) upstream.
"""

import random
import socket
from collections import OrderedDict
from dataclasses import dataclass, replace
from ipaddress import ip_address

from twisted.internet import defer
from twisted.internet.interfaces import IResolver
from twisted.names import dns
from twisted.names.error import DNSQueryTimeoutError
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.config import ConfigError
from vpnkit.interfaces import IDatagramReceiver
from vpnkit.log import logger
from vpnkit.protocols.dns import NameResolver, RcodeError, normalName, optRecord
from vpnkit.wire import ParseError
from vpnkit.wire.dhcp import encodeDomainSearch

__all__ = [
    "Nameserver",
    "DNSConfig",
    "parseDNSConfig",
    "parseResolvConf",
    "AnswerCache",
    "Forwarder",
    "NoUpstreamError",
    "DEFAULT_TIMEOUT",
]

log = logger("vpnkit.dnsforward")

DEFAULT_TIMEOUT = 5.0
DEFAULT_ASSUME_OFFLINE_AFTER = 5
RETRANSMIT_INTERVAL = 1.0
MAX_IN_FLIGHT = 1024


class NoUpstreamError(Exception):
    """
    No server to ask (none configured, or too many queries in flight).
    """


@dataclass(frozen=True)
class Nameserver:
    """
    One upstream server.

    @ivar address: its address, as text.
    @ivar zones: lower-case names without trailing dots; empty for a
        server of last resort.
    @ivar timeout: seconds to wait for it, or C{None} for the default.
    """

    address: str
    port: int = 53
    zones: tuple = ()
    timeout: float | None = None
    order: int = 0

    def __str__(self):
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def family(self):
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET


@dataclass(frozen=True)
class DNSConfig:
    """
    The upstream servers and the settings that come with them.
    """

    servers: tuple = ()
    search: tuple = ()
    assumeOfflineAfter: int = DEFAULT_ASSUME_OFFLINE_AFTER


def _address(text):
    """
    C{A.B.C.D}, C{A.B.C.D#PORT}, or an IPv6 address (optionally C{#PORT}).

    @return: C{(address text, port)}
    @raise ValueError: not an address.
    """
    host, sep, port = text.rpartition("#")
    if not sep:
        host, port = text, "53"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = ip_address(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return str(address), int(port)


def _arguments(rest):
    """
    A line's arguments, up to a C{#} comment that starts a word.
    """
    words = []
    for word in rest.split():
        if word.startswith("#"):
            break
        words.append(word)
    return words


def _zone(name):
    return name.rstrip(".").lower()


def parseDNSConfig(text, path="dns"):
    """
    Parse the reference's C{--dns} file: C{nameserver IP[#PORT]}, then
    C{zone NAME...}, C{timeout MS} and C{order N} for the nameserver above
    them, C{search NAME...} (the first line counts) and
    C{assume-offline-after N}.  Blank lines, comments and unknown keywords
    are ignored.

    @return: a L{DNSConfig}.
    @raise ConfigError: naming C{path}, the line and the problem.
    """
    servers = []
    search = None
    offlineAfter = DEFAULT_ASSUME_OFFLINE_AFTER
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        keyword, _, rest = line.partition(" ")
        if not keyword or keyword.startswith("#"):
            continue
        words = _arguments(rest)

        def fail(problem):
            raise ConfigError(f"{path}: line {number}: {problem}: {line!r}")

        def number_(minimum=0):
            if len(words) != 1:
                fail(f"{keyword} takes one number")
            try:
                value = int(words[0])
            except ValueError:
                fail(f"{keyword} takes one number")
            if value < minimum:
                fail(f"{keyword} must be at least {minimum}")
            return value

        if keyword == "nameserver":
            if len(words) != 1:
                fail("nameserver takes one address")
            try:
                address, port = _address(words[0])
            except ValueError:
                fail("not an address (IP or IP#PORT)")
            servers.append(Nameserver(address, port))
        elif keyword in ("zone", "timeout", "order"):
            if not servers:
                # As the reference: these describe the nameserver above.
                continue
            if keyword == "zone":
                change = {"zones": servers[-1].zones + tuple(_zone(w) for w in words)}
            elif keyword == "timeout":
                change = {"timeout": number_() / 1000.0}
            else:
                change = {"order": number_(-(2**31))}
            servers[-1] = replace(servers[-1], **change)
        elif keyword == "search":
            if search is None:
                search = tuple(_zone(w) for w in words if _zone(w))
                try:
                    # It goes to guests in DHCP option 119.
                    encodeDomainSearch(search)
                except (ParseError, UnicodeError) as e:
                    fail(f"search: {e}")
        elif keyword == "assume-offline-after":
            offlineAfter = number_()
    return DNSConfig(tuple(servers), search or (), offlineAfter)


def parseResolvConf(text, path="/etc/resolv.conf"):
    """
    The servers, search list and timeout of a C{resolv.conf}, leniently:
    what does not parse (a link-local address with a zone index, an
    unknown option) is skipped, as the C library skips it.

    @return: a L{DNSConfig}.
    """
    servers = []
    search = ()
    timeout = None
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        keyword, args = words[0], words[1:]
        if keyword == "nameserver" and len(args) == 1:
            try:
                address = ip_address(args[0])
            except ValueError:
                continue
            if not getattr(address, "scope_id", None):
                servers.append(Nameserver(str(address)))
        elif keyword in ("search", "domain"):
            search = tuple(_zone(a) for a in args if _zone(a))
        elif keyword == "options":
            for option in args:
                name, _, value = option.partition(":")
                if name == "timeout" and value.isdigit():
                    timeout = max(1, int(value))
    if timeout is not None:
        servers = [replace(s, timeout=float(timeout)) for s in servers]
    return DNSConfig(tuple(servers), search)


class AnswerCache:
    """
    Successful answers by question, each kept for the smallest TTL among
    its answer records and served with the TTLs counted down.
    """

    def __init__(self, maxEntries=1024):
        self.maxEntries = maxEntries
        self._entries = OrderedDict()

    def __len__(self):
        return len(self._entries)

    def clear(self):
        self._entries.clear()

    def put(self, key, result, now):
        answers = result[0]
        if not answers:
            return
        ttl = min(r.ttl for r in answers)
        if ttl <= 0:
            return
        self._entries.pop(key, None)
        while len(self._entries) >= self.maxEntries:
            self._entries.popitem(last=False)
        self._entries[key] = (now, now + ttl, result)

    def get(self, key, now):
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, expires, (answers, authority, additional) = entry
        if now >= expires:
            del self._entries[key]
            return None
        elapsed = int(now - stored)

        def aged(records):
            return [
                dns.RRHeader(r.name.name, r.type, r.cls, max(0, r.ttl - elapsed), r.payload, r.auth)
                for r in records
            ]

        return aged(answers), aged(authority), aged(additional)


class _ServerState:
    """
    What the forwarder knows about one server's health.
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


class _TCPQuery(Int16StringReceiver):
    """
    One query over a TCP connection to an upstream server.
    """

    def __init__(self, exchange, data):
        self._exchange = exchange
        self._data = data

    def connectionMade(self):
        if self._exchange.done:
            # Connected after the exchange gave up.
            self.transport.loseConnection()
            return
        self.sendString(self._data)

    def stringReceived(self, data):
        self._exchange.tcpReply(data, self)

    def connectionLost(self, reason):
        self._exchange.tcpLost(self, reason)


@implementer(IDatagramReceiver)
class _Exchange:
    """
    One query to one server: UDP with retransmissions, then TCP if the
    answer was truncated, all within the server's timeout.
    """

    def __init__(self, forwarder, server, query, family):
        self.forwarder = forwarder
        self.server = server
        self.query = query
        self.deferred = defer.Deferred()
        self.sends = 0
        self.done = False
        self._family = family
        self._socket = None
        self._tcp = None
        self._connecting = None
        self._timers = []
        self._id = None
        self._data = None

    # -- start -------------------------------------------------------------------

    def start(self):
        forwarder = self.forwarder
        clock = forwarder.clock
        timeout = self.server.timeout if self.server.timeout is not None else DEFAULT_TIMEOUT
        self._started = clock.seconds()
        self._deadline = self._started + timeout
        self._id = forwarder.rng.randrange(0x10000)
        message = dns.Message(id=self._id, recDes=1)
        message.queries = [dns.Query(self.query.name.name, self.query.type, self.query.cls)]
        message.additional = [optRecord()]
        self._data = message.toStr()
        try:
            self._socket = forwarder.sockets.openUDP(self, self._family)
        except OSError as e:
            self._finish(e)
            return
        self._timers.append(clock.callLater(timeout, self._timedOut))
        self._send()

    def _send(self):
        forwarder = self.forwarder
        if self.sends:
            forwarder.counters.upstreamRetransmits += 1
        self.sends += 1
        forwarder.counters.upstreamQueries += 1
        try:
            self._socket.sendTo(self._data, self.server.address, self.server.port)
        except OSError as e:
            self._finish(e)
            return
        clock = forwarder.clock
        # At 0, 1, 2... seconds from the start, while before the deadline.
        nextSend = self._started + self.sends * RETRANSMIT_INTERVAL
        if nextSend < self._deadline:
            delay = max(0.0, nextSend - clock.seconds())
            self._timers.append(clock.callLater(delay, self._send))

    # -- replies ---------------------------------------------------------------------

    def _parse(self, data):
        """
        The reply in C{data} if it answers our question, else C{None}.
        """
        message = dns.Message()
        try:
            message.fromStr(data)
        except Exception:
            return None
        if message.id != self._id or not message.answer or len(message.queries) != 1:
            return None
        asked, got = self.query, message.queries[0]
        if (
            normalName(got.name) != normalName(asked.name)
            or got.type != asked.type
            or got.cls != asked.cls
        ):
            return None
        return message

    def datagramReceived(self, data, host, port):
        counters = self.forwarder.counters
        if self.done or self._tcp is not None:
            return
        if not (_sameAddress(host, self.server.address) and port == self.server.port):
            counters.upstreamBadReplies += 1
            return
        message = self._parse(data)
        if message is None:
            counters.upstreamBadReplies += 1
            return
        if message.trunc:
            self._switchToTCP()
            return
        self._finish(message)

    def errorReceived(self, error):
        if self.done or self._tcp is not None:
            return
        if _sameAddress(error.host, self.server.address) and error.port == self.server.port:
            self._finish(
                ConnectionError(f"{self.server}: ICMP type {error.icmpType} code {error.icmpCode}")
            )

    def _switchToTCP(self):
        forwarder = self.forwarder
        forwarder.counters.upstreamTCP += 1
        self._closeSocket()
        remaining = max(0.1, self._deadline - forwarder.clock.seconds())
        for timer in self._timers[1:]:
            if timer.active():
                timer.cancel()
        del self._timers[1:]
        self._tcp = _TCPQuery(self, self._data)
        server = self.server
        d = forwarder.network.connectTCP(server.address, server.port, self._tcp, remaining)
        self._connecting = d
        d.addErrback(self._finish)

    def tcpReply(self, data, protocol):
        if self.done or protocol is not self._tcp:
            return
        message = self._parse(data)
        if message is None:
            self.forwarder.counters.upstreamBadReplies += 1
            return
        self._finish(message)

    def tcpLost(self, protocol, reason):
        if not self.done and protocol is self._tcp:
            self._tcp = None
            self._finish(reason.value)

    # -- end ------------------------------------------------------------------------------

    def _timedOut(self):
        self._finish(DNSQueryTimeoutError(self.server))

    def _closeSocket(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _finish(self, outcome):
        if self.done:
            return None
        self.done = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        self._closeSocket()
        tcp, self._tcp = self._tcp, None
        if tcp is not None and tcp.transport is not None:
            tcp.transport.loseConnection()
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.called:
            connecting.cancel()
        if isinstance(outcome, Failure):
            outcome = outcome.value  # from connectTCP
        self.forwarder._exchangeDone(self, outcome)
        self.deferred.callback(outcome)
        return None


def _relayed(records):
    return [dns.RRHeader(r.name.name, r.type, r.cls, r.ttl, r.payload, auth=False) for r in records]


def _sameAddress(a, b):
    try:
        return ip_address(a) == ip_address(b)
    except ValueError:
        return a == b


class _Decision:
    """
    Which of a query's exchanges answers it: see the module docstring.
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
class Forwarder(NameResolver):
    """
    The upstream resolver.

    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets} queries go
        through.
    @param network: the L{vpnkit.interfaces.IHostNetwork} for TCP queries.
    @param clock: an L{IReactorTime}.
    @param rng: the source of transaction ids (a C{random.Random}).
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
            log.warn("there are no online DNS servers for {name}", name=name)
        exchanges = [_Exchange(self, s, query, s.family) for s in servers]
        waited = {e for e in exchanges if not online or e.server in online}
        decision = _Decision(exchanges, waited)
        for exchange in exchanges:
            self.inFlight += 1
            exchange.deferred.addCallback(lambda outcome, e=exchange: decision.arrived(e, outcome))
        for exchange in exchanges:
            exchange.start()
        return decision.deferred.addCallback(self._decided, key)

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
        return self._state(server).offline
