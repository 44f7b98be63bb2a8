# -*- test-case-name: tests.test_dnsexchange -*-
"""
One query to one upstream DNS server: L{UpstreamExchange}.

The question goes out over UDP through a fresh host socket (so each query
has its own source port), with a random transaction id, RD set and an
EDNS0 record announcing 4096 bytes.  It is sent at 0, 1, 2... seconds from
the start until the server's C{timeout} (L{DEFAULT_TIMEOUT} when it has
none).  Replies from another address or port, with another id, or for
another question are ignored (and counted); an ICMP error from the server
ends the exchange at once.  A reply with TC set is fetched again over TCP,
one connection for that answer, within what is left of the timeout.

What the exchange ends with, its I{outcome}, is the server's reply (a
C{dns.Message}, whatever its rcode) or the exception that ended it
(L{DNSQueryTimeoutError}, an C{OSError}, a connection error); its
C{deferred} fires with it, never errbacks.  Judging outcomes, and choosing
the servers, is L{vpnkit.protocols.dnsupstream}'s job.
"""

from ipaddress import ip_address

from twisted.internet import defer
from twisted.names import dns
from twisted.names.error import DNSQueryTimeoutError
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.interfaces import IDatagramReceiver
from vpnkit.protocols.dns import normalName, optRecord
from vpnkit.protocols.dnsconfig import DEFAULT_TIMEOUT

__all__ = ["UpstreamExchange", "RETRANSMIT_INTERVAL"]

RETRANSMIT_INTERVAL = 1.0


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
class UpstreamExchange:
    """
    One query to one server: UDP with retransmissions, then TCP if the
    answer was truncated, all within the server's timeout.  Nothing is sent
    before L{start}.

    @param server: the L{vpnkit.protocols.dnsconfig.Nameserver} to ask.
    @param query: the C{dns.Query} to ask it.
    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets} the UDP
        socket comes from.
    @param network: the L{vpnkit.interfaces.IHostNetwork} for TCP.
    @param clock: an L{IReactorTime}.
    @param rng: the source of the transaction id (a C{random.Random}).
    @param counters: the C{dns} counters.

    @ivar deferred: fires with the outcome (see the module docstring).
    @ivar sends: how many times the query went out over UDP.
    @ivar done: whether the outcome is known.
    """

    def __init__(self, server, query, sockets, network, clock, rng, counters):
        self.server = server
        self.query = query
        self.deferred = defer.Deferred()
        self.sends = 0
        self.done = False
        self._sockets = sockets
        self._network = network
        self._clock = clock
        self._rng = rng
        self._counters = counters
        self._socket = None
        self._tcp = None
        self._connecting = None
        self._timers = []
        self._id = None
        self._data = None

    # -- start -------------------------------------------------------------------

    def start(self):
        """
        Send the query; C{deferred} may fire before this returns (no socket
        to be had).
        """
        clock = self._clock
        timeout = self.server.timeout if self.server.timeout is not None else DEFAULT_TIMEOUT
        self._started = clock.seconds()
        self._deadline = self._started + timeout
        self._id = self._rng.randrange(0x10000)
        message = dns.Message(id=self._id, recDes=1)
        message.queries = [dns.Query(self.query.name.name, self.query.type, self.query.cls)]
        message.additional = [optRecord()]
        self._data = message.toStr()
        try:
            self._socket = self._sockets.openUDP(self, family=self.server.family)
        except OSError as e:
            self._finish(e)
            return
        self._timers.append(clock.callLater(timeout, self._timedOut))
        self._send()

    def _send(self):
        counters = self._counters
        if self.sends:
            counters.upstreamRetransmits += 1
        self.sends += 1
        counters.upstreamQueries += 1
        try:
            self._socket.sendTo(self._data, self.server.address, self.server.port)
        except OSError as e:
            self._finish(e)
            return
        clock = self._clock
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
        counters = self._counters
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
        self._counters.upstreamTCP += 1
        self._closeSocket()
        remaining = max(0.1, self._deadline - self._clock.seconds())
        for timer in self._timers[1:]:
            if timer.active():
                timer.cancel()
        del self._timers[1:]
        self._tcp = _TCPQuery(self, self._data)
        server = self.server
        d = self._network.connectTCP(server.address, server.port, self._tcp, remaining)
        self._connecting = d
        d.addErrback(self._finish)

    def tcpReply(self, data, protocol):
        """
        C{protocol}, this exchange's TCP connection, received C{data}.
        """
        if self.done or protocol is not self._tcp:
            return
        message = self._parse(data)
        if message is None:
            self._counters.upstreamBadReplies += 1
            return
        self._finish(message)

    def tcpLost(self, protocol, reason):
        """
        C{protocol}, this exchange's TCP connection, is closed.
        """
        if not self.done and protocol is self._tcp:
            self._tcp = None
            self._finish(reason.value)

    # -- end ------------------------------------------------------------------------------

    def abandon(self):
        """
        Give up now: close the socket or connection, cancel the timers, and
        fail with L{defer.CancelledError}.
        """
        self._finish(defer.CancelledError())

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
        self.deferred.callback(outcome)
        return None


def _sameAddress(a, b):
    try:
        return ip_address(a) == ip_address(b)
    except ValueError:
        return a == b
