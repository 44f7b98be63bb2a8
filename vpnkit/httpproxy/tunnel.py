# -*- test-case-name: tests.test_httpproxy -*-
"""
Raw tunnels: a guest connection handed over, mid-stream, to a byte
splice with an upstream connection (after C{CONNECT}, a protocol upgrade,
or the ClientHello of a transparently proxied HTTPS connection), and
L{TransparentTLS}, the protocol on a guest's HTTPS connection that reads
the ClientHello's server name and opens the tunnel for it.

The splice is the one every route uses (L{GuestSide} on the guest
connection, a L{HostSide} on the upstream one: each side the other's
producer), so bytes flow with backpressure both ways.
"""

from twisted.internet import defer, error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.host.proxy import HostSide
from vpnkit.httpproxy.config import HTTPProxyConfig
from vpnkit.httpproxy.rewrite import MAX_HEAD, RewriteError, Target, connectRequest, parseResponseHead
from vpnkit.httpproxy.sni import MAX_HELLO, serverName
from vpnkit.log import logger
from vpnkit.protocols.ip import formatAddress
from vpnkit.protocols.tcp.splice import GuestSide
from vpnkit.wire import MalformedError, TruncatedError

__all__ = ["TunnelSide", "TunnelRefused", "splice", "TransparentTLS", "countFailure", "tlsFailure"]

log = logger("vpnkit.httpproxy")


class TunnelRefused(Exception):
    """
    The upstream proxy answered C{CONNECT} with something other than 2xx.

    @ivar code: its status code.
    """

    def __init__(self, code, reason):
        super().__init__(f"{code} {reason}")
        self.code = code


def tlsFailure(failure):
    """
    The TLS error (a failed handshake, a certificate that does not verify)
    behind C{failure}, looking inside Twisted's wrapped client failures,
    or C{None}.
    """
    seen = [failure]
    while seen:
        current = seen.pop()
        value = current.value
        if type(value).__module__.startswith(("OpenSSL", "service_identity")):
            return value
        seen.extend(getattr(value, "reasons", None) or ())
    return None


def countFailure(counters, failure, upstream):
    """
    Count a failed connection to C{upstream} (C{"host:port"}): refused
    C{CONNECT}s were counted when their answer was read.
    """
    if failure.check(TunnelRefused):
        return
    if tlsFailure(failure) is not None:
        counters.tlsFailures += 1
    elif failure.check(error.ConnectError, error.DNSLookupError):
        counters.connectFailures += 1
    else:
        counters.upstreamErrors += 1
    counters.failed(upstream)


class TunnelSide(HostSide):
    """
    The protocol on an upstream connection that becomes a tunnel.

    Until it is spliced to the guest (L{splice}) what arrives is held, and
    the upstream paused once more than L{MAX_HEAD} bytes wait.

    @param first: bytes written as soon as the connection is made (a
        C{CONNECT} request, or the head of an upgraded request).
    @param head: C{None} (nothing to read first), C{"consume"} (a
        C{CONNECT} answer vpnkit reads and keeps from the guest: L{ready}
        fails with L{TunnelRefused} unless it is 2xx) or C{"relay"} (the
        answer is passed on to the guest, and only counted).
    @ivar ready: fires with this protocol once the tunnel may be spliced.
    """

    def __init__(self, counters, upstream, first=b"", head=None):
        self._counters = counters
        self._upstream = upstream
        self._first = first
        self._head = head
        self._held = []
        self._heldSize = 0
        self._headBuffer = b""
        self._paused = False
        self.ready = defer.Deferred()

    def connectionMade(self):
        if self._first:
            self.transport.write(self._first)
        if self._head != "consume":
            self.ready.callback(self)

    def dataReceived(self, data):
        if self._head is not None:
            data = self._readHead(data)
            if not data:
                return
        if self.guest is not None:
            self._counters.bytesToGuest += len(data)
            self.guest.write(data)
            return
        self._held.append(data)
        self._heldSize += len(data)
        if self._heldSize > MAX_HEAD and not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _readHead(self, data):
        """
        Look at the upstream's answer to C{CONNECT}; return the bytes that
        go on to the guest.
        """
        self._headBuffer += data
        try:
            parsed = parseResponseHead(self._headBuffer)
        except RewriteError as e:
            parsed = (502, str(e), len(self._headBuffer))
        if parsed is None:
            return b"" if self._head == "consume" else self._passHead(data)
        code, reason, length = parsed
        mode, self._head = self._head, None
        buffered, self._headBuffer = self._headBuffer, b""
        if not 200 <= code < 300:
            self._counters.failed(self._upstream)
            self._counters.upstreamErrors += 1
        if mode == "relay":
            return data
        if not 200 <= code < 300:
            self.ready.errback(Failure(TunnelRefused(code, reason)))
            self.transport.loseConnection()
            return b""
        self.ready.callback(self)
        return buffered[length:]

    def _passHead(self, data):
        return data

    def flush(self):
        """
        Spliced: hand the guest what arrived before.
        """
        held, self._held, self._heldSize = self._held, [], 0
        for data in held:
            self._counters.bytesToGuest += len(data)
            self.guest.write(data)
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()

    def connectionLost(self, reason):
        if not self.ready.called:
            # The owner counts this failure.
            self.ready.errback(reason)
            return
        HostSide.connectionLost(self, reason)


class _CountingGuestSide(GuestSide):
    def __init__(self, host, counters):
        super().__init__(host)
        self._counters = counters

    def dataReceived(self, data):
        self._counters.bytesFromGuest += len(data)
        GuestSide.dataReceived(self, data)


def splice(guest, side, counters, pending=b"", eof=False):
    """
    Hand the guest connection C{guest} (a
    L{vpnkit.protocols.tcp.connection.TCPConnection} whose reads are
    paused) to a raw tunnel with the connected L{TunnelSide} C{side}.

    @param pending: guest bytes read before, sent upstream first.
    @param eof: the guest already half-closed.
    """
    if pending:
        side.transport.write(pending)
    guest.unregisterProducer()
    guestSide = _CountingGuestSide(side, counters)
    guest.makeConnection(guestSide)
    side.flush()
    if eof:
        guestSide.readConnectionLost()
    guest.resumeProducing()
    counters.tunnels += 1


@implementer(IHalfCloseableProtocol)
class TransparentTLS(Protocol):
    """
    A guest's connection to a C{transparent_https_ports} port: wait for its
    ClientHello (at most C{proxy.helloTimeout} seconds), then tunnel it with
    C{CONNECT name:port} (the server name, else the address it dialled) to
    the C{https} upstream, or straight to the address when the name or the
    address is excluded.  A host the allow list forbids is reset: there is
    no way to answer 403 inside TLS.
    """

    def __init__(self, proxy, flow):
        self._proxy = proxy
        self._flow = flow
        self._counters = proxy.counters
        self._pending = b""
        self._timer = None
        self._decided = False
        self._eof = False
        self._lost = False
        self._side = None

    def connectionMade(self):
        self._counters.connections += 1
        self._timer = self._proxy.clock.callLater(self._proxy.helloTimeout, self._decide, None)

    def dataReceived(self, data):
        self._counters.bytesFromGuest += len(data)
        self._pending += data
        if self._decided:
            return
        try:
            name = serverName(self._pending)
        except TruncatedError:
            if len(self._pending) <= MAX_HELLO + 1024:
                return
            name = None
        except MalformedError:
            name = None
        self._decide(name)

    def readConnectionLost(self):
        self._eof = True
        self._decide(None)

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self._lost = True
        self._cancelTimer()
        side, self._side = self._side, None
        if side is not None and side.transport is not None:
            side.transport.abortConnection()

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _decide(self, name):
        if self._decided or self._lost:
            return
        self._decided = True
        self._cancelTimer()
        guest = self.transport
        guest.pauseProducing()
        counters = self._counters
        if name is not None:
            counters.sniNames += 1
        else:
            counters.sniMissing += 1
        address, port = formatAddress(self._flow.localIP), self._flow.localPort
        host = name or address
        config = self._proxy.config or HTTPProxyConfig()
        if not config.allowed(host, port):
            counters.forbidden += 1
            log.info("refusing HTTPS to {host}:{port}: not in the allow list", host=host, port=port)
            guest.abortConnection()
            return
        upstream = config.https
        if upstream is None or config.excluded(host, port) or config.excluded(address, port):
            label = f"{address}:{port}"
            side = TunnelSide(counters, label)
            d = self._proxy.connect(address, port, side)
        else:
            label = f"{upstream.host}:{upstream.port}"
            side = TunnelSide(counters, label, connectRequest(Target(host, port), upstream), "consume")
            counters.tunnelsViaProxy += 1
            d = self._proxy.connectUpstream(upstream, side)
        self._side = side
        d.addCallback(lambda _: side.ready)
        d.addCallbacks(self._established, self._failed, errbackArgs=(label,))

    def _established(self, side):
        self._side = None
        if self._lost:
            side.transport.abortConnection()
            return
        splice(self.transport, side, self._counters, self._pending, self._eof)
        self._pending = b""

    def _failed(self, failure, label):
        self._side = None
        countFailure(self._counters, failure, label)
        self._proxy.failureLog.warn(
            "HTTPS tunnel for {flow} through {label} failed: {why}",
            flow=str(self._flow),
            label=label,
            why=failure.getErrorMessage(),
        )
        if not self._lost:
            self.transport.abortConnection()
