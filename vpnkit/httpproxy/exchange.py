# -*- test-case-name: tests.test_httpproxy -*-
"""
One request from a guest and its upstream side: L{Exchange} decides what
the request becomes (an error vpnkit answers itself, a request sent on to
the upstream proxy or the origin, or a tunnel for C{CONNECT} and
protocol upgrades) and carries it out.

A request sent on goes through Twisted's HTTP/1.1 client protocol, its
body streamed as it arrives (L{_BodyStream}: the guest is paused while the
upstream cannot take more) and the response streamed back
(L{_BodyRelay}: the upstream is paused while the guest cannot take more),
so nothing buffers without bound.  A tunnel's upstream connection is a
L{vpnkit.httpproxy.tunnel.TunnelSide}, spliced to the guest connection
once it is ready.
"""

from twisted.internet import defer, error
from twisted.internet.protocol import Protocol
from twisted.web import http
from twisted.web.client import ResponseDone
from twisted.web.client import Request as ClientRequest
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from vpnkit.httpproxy.config import HTTPProxyConfig
from vpnkit.httpproxy.rewrite import (
    RewriteError,
    connectRequest,
    connectTarget,
    errorPage,
    forwardHeaders,
    requestTarget,
    serializeHead,
    upstreamURI,
)
from vpnkit.httpproxy.tunnel import TunnelSide, countFailure, tlsFailure
from vpnkit.log import logger
from vpnkit.protocols.ip import formatAddress

__all__ = ["Exchange"]

log = logger("vpnkit.httpproxy")

_NO_BODY_CODES = (204, 304)


@implementer(IBodyProducer)
class _BodyStream:
    """
    The guest's request body as Twisted's client reads it: chunks go to
    the upstream as they arrive; the guest is paused while the upstream
    cannot take more, or is not connected yet.
    """

    def __init__(self, reads, length):
        self.length = UNKNOWN_LENGTH if length is None else length
        self._reads = reads
        self._consumer = None
        self._held = []
        self._done = False
        self._discard = False
        self._finished = None

    def write(self, data):
        if self._discard:
            return
        if self._consumer is None:
            self._held.append(data)
            self._reads.pause("body")
            return
        self._consumer.write(data)

    def finish(self):
        self._done = True
        if self._finished is not None:
            d, self._finished = self._finished, None
            d.callback(None)

    def discard(self):
        """
        The upstream will not take the body: read and drop the rest.
        """
        self._discard = True
        self._held = []
        self._reads.resume("body")
        self._reads.resume("upload")

    def startProducing(self, consumer):
        self._consumer = consumer
        held, self._held = self._held, []
        for data in held:
            consumer.write(data)
        self._reads.resume("body")
        if self._done:
            return defer.succeed(None)
        self._finished = defer.Deferred()
        return self._finished

    def pauseProducing(self):
        self._reads.pause("upload")

    def resumeProducing(self):
        self._reads.resume("upload")

    def stopProducing(self):
        self.discard()
        if self._finished is not None:
            d, self._finished = self._finished, None
            d.errback(error.ConnectionAborted("the upstream stopped reading the body"))


class _BodyRelay(Protocol):
    """
    The upstream's response body, written to the guest's request as it
    arrives; the upstream is paused while the guest cannot take more.
    """

    def __init__(self, exchange):
        self._exchange = exchange

    def connectionMade(self):
        self._exchange.request.registerProducer(self.transport, True)

    def dataReceived(self, data):
        self._exchange.request.write(data)

    def connectionLost(self, reason):
        request = self._exchange.request
        if request.producer is not None:
            request.unregisterProducer()
        if reason.check(ResponseDone, http.PotentialDataLoss):
            self._exchange.responseComplete()
        else:
            self._exchange.responseBroken(reason)


class Exchange:
    """
    One request from the guest and what vpnkit does with it: refuse it,
    send it on (to the upstream proxy or the origin) and stream the answer
    back, or turn the connection into a tunnel (C{CONNECT}, upgrades).

    @param guest: the L{vpnkit.httpproxy.guest.GuestHTTP} the request came
        on.
    @param request: the twisted.web request, its head complete.
    @param length: its body's length: C{None} (chunked) or bytes.
    @ivar received: the whole request (body included) has been read.
    """

    def __init__(self, guest, request, length):
        self.guest = guest
        self.request = request
        self.counters = guest.counters
        self.received = False
        self._length = length
        self._error = None
        self._body = None
        self._responded = False
        self._responseDone = False
        self._kind = "http"
        self.target = None
        self.upstream = None
        self._clientRequest = None
        self._lost = False
        self._start()

    # -- what to do ------------------------------------------------------------

    def _start(self):
        guest, request = self.guest, self.request
        config = guest.proxy.config or HTTPProxyConfig()
        headers = request.requestHeaders
        try:
            if request.method == b"CONNECT":
                self._kind = "connect"
                target = connectTarget(request.uri)
            else:
                host = headers.getRawHeaders(b"host", [None])[0]
                if guest.transparent:
                    target = requestTarget(
                        request.uri,
                        host,
                        formatAddress(guest.flow.localIP),
                        guest.flow.localPort,
                    )
                else:
                    target = requestTarget(request.uri, host)
                connection = b",".join(headers.getRawHeaders(b"connection", [])).lower()
                if headers.hasHeader(b"upgrade") and b"upgrade" in connection:
                    self._kind = "upgrade"
        except RewriteError as e:
            self.counters.badRequests += 1
            self._fail(400, "Bad Request", str(e))
            return
        self.target = target
        if not config.allowed(target.host, target.port):
            self.counters.forbidden += 1
            log.info("refusing {host}:{port}: not in the allow list", host=target.host, port=target.port)
            self._fail(403, "Forbidden", config.forbiddenMessage(target.host))
            return
        self.upstream = guest.upstreamFor(config, target, self._kind == "connect")
        if self._kind == "http":
            self._sendOn()

    def _fail(self, code, reason, message):
        """
        Answer with an error once the request is read (its body dropped).
        """
        self._error = (code, reason, message)
        if self._body is not None:
            self._body.discard()
        if self.received:
            self._respondError()

    def _respondError(self):
        if self._responded or self._lost:
            return
        self._responded = True
        code, reason, message = self._error
        request = self.request
        body = errorPage(code, reason, message)
        request.setResponseCode(code, reason.encode("ascii"))
        request.responseHeaders.setRawHeaders(b"content-type", [b"text/html; charset=utf-8"])
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
        request.write(body)
        request.finish()

    def _label(self):
        if self.upstream is not None:
            return f"{self.upstream.host}:{self.upstream.port}"
        host, port = self.guest.originFor(self.target)
        return f"{host}:{port}"

    def _connectError(self, failure):
        """
        The reference's 503 texts for a connection that could not be made.
        """
        if failure.check(error.DNSLookupError):
            return f"unable to resolve {self._label().rpartition(':')[0]}"
        if self.upstream is not None:
            return f"unable to connect to HTTP proxy {self._label()}"
        return f"unable to connect to {self._label()}. Do you need an HTTP proxy?"

    # -- plain requests ----------------------------------------------------

    def _sendOn(self):
        guest, request, target = self.guest, self.request, self.target
        viaProxy = self.upstream is not None
        headers = Headers()
        for name, values in forwardHeaders(
            list(request.requestHeaders.getAllRawHeaders()), target, self.upstream
        ):
            headers.setRawHeaders(name, values)
        if self._length != 0:
            self._body = _BodyStream(guest.reads, self._length)
        try:
            self._clientRequest = ClientRequest(
                request.method, upstreamURI(target, viaProxy), headers, self._body, persistent=True
            )
        except ValueError as e:
            self.counters.badRequests += 1
            self._fail(400, "Bad Request", str(e))
            return
        self.counters.requests += 1
        if viaProxy:
            self.counters.requestsViaProxy += 1
            key = ("proxy", self.upstream)

            def connect(protocol):
                return guest.proxy.connectUpstream(self.upstream, protocol)

        else:
            self.counters.requestsDirect += 1
            host, port = guest.originFor(target)
            key = ("origin", host, port)

            def connect(protocol):
                return guest.proxy.connect(host, port, protocol)

        guest.client(key, connect).addCallbacks(self._connected, self._connectFailed)

    def _connectFailed(self, failure):
        if self._lost:
            return None
        if failure.check(error.ConnectionAborted):
            return None
        countFailure(self.counters, failure, self._label())
        self._logFailure(failure)
        self._fail(503, "Service Unavailable", self._connectError(failure))
        return None

    def _logFailure(self, failure):
        self.guest.proxy.failureLog.warn(
            "HTTP request for {host}:{port} through {label} failed: {why}",
            host=self.target.host,
            port=self.target.port,
            label=self._label(),
            why=failure.getErrorMessage(),
        )

    def _connected(self, client):
        if self._lost:
            return None
        d = client.request(self._clientRequest)
        d.addCallbacks(self._gotResponse, self._requestFailed)
        return None

    def _requestFailed(self, failure):
        if self._lost:
            return None
        countFailure(self.counters, failure, self._label())
        self._logFailure(failure)
        if self._body is not None:
            self._body.discard()
        if self._responded:
            self.guest.transport.abortConnection()
            return None
        tls = tlsFailure(failure)
        where = f"HTTP proxy {self._label()}" if self.upstream is not None else self._label()
        if tls is not None:
            self._fail(502, "Bad Gateway", f"TLS connection to {where} failed: {_tlsReason(tls)}")
        else:
            self._fail(502, "Bad Gateway", f"{where} closed the connection without a response")
        return None

    def _gotResponse(self, response):
        if self._lost:
            return None
        request = self.request
        self._responded = True
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            request.responseHeaders.setRawHeaders(name, values)
        if (
            response.length is not UNKNOWN_LENGTH
            and request.method != b"HEAD"
            and response.code not in _NO_BODY_CODES
        ):
            request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % response.length])
        relay = _BodyRelay(self)
        response.deliverBody(relay)
        # deliverBody resumes the upstream once the relay is connected: a
        # guest already full pauses it again.
        if self.guest.guestWritePaused() and relay.transport is not None:
            relay.transport.pauseProducing()
        return None

    def responseComplete(self):
        self._responseDone = True
        self._maybeFinish()

    def responseBroken(self, reason):
        if self._lost:
            return
        self.counters.upstreamErrors += 1
        self.counters.failed(self._label())
        self.guest.transport.abortConnection()

    def _maybeFinish(self):
        request = self.request
        if self.received and self._responseDone and not request.finished and not self._lost:
            request.finish()

    # -- events from the channel --------------------------------------------

    def bodyReceived(self, data):
        if self._body is not None:
            self._body.write(data)

    def requestComplete(self):
        self.received = True
        if self._error is not None:
            self._respondError()
            return
        if self._body is not None:
            self._body.finish()
        if self._kind != "http":
            self._openTunnel()
            return
        self._maybeFinish()

    def guestLost(self):
        self._lost = True
        if self._body is not None:
            self._body.discard()
        guest = self.guest
        if self._clientRequest is not None and not self._responseDone:
            guest.dropClient()

    # -- tunnels -------------------------------------------------------------

    def _openTunnel(self):
        guest, request, target = self.guest, self.request, self.target
        counters = self.counters
        label = self._label()
        viaProxy = self.upstream is not None
        if self._kind == "connect":
            if viaProxy:
                counters.tunnelsViaProxy += 1
                side = TunnelSide(counters, label, connectRequest(target, self.upstream), "relay")
            else:
                side = TunnelSide(counters, label)
        else:
            counters.upgrades += 1
            keep = (b"connection", b"upgrade")
            head = serializeHead(
                request.method,
                upstreamURI(target, viaProxy),
                forwardHeaders(
                    list(request.requestHeaders.getAllRawHeaders()), target, self.upstream, keep
                ),
            )
            side = TunnelSide(counters, label, head)
        if viaProxy:
            d = guest.proxy.connectUpstream(self.upstream, side)
        else:
            host, port = guest.originFor(target)
            d = guest.proxy.connect(host, port, side)
        guest.reads.pause("tunnel")
        d.addCallback(lambda _: side.ready)
        d.addCallbacks(self._tunnelReady, self._tunnelFailed)

    def _tunnelReady(self, side):
        guest = self.guest
        if self._lost:
            side.transport.abortConnection()
            return None
        if self._kind == "connect" and self.upstream is None:
            guest.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
            self.counters.bytesToGuest += 19
        guest.handOver(side)
        return None

    def _tunnelFailed(self, failure):
        if self._lost:
            return None
        self.guest.reads.resume("tunnel")
        countFailure(self.counters, failure, self._label())
        self._logFailure(failure)
        tls = tlsFailure(failure)
        if tls is not None:
            self._error = (502, "Bad Gateway", f"TLS connection to {self._label()} failed: {_tlsReason(tls)}")
        else:
            self._error = (503, "Service Unavailable", self._connectError(failure))
        self._respondError()
        return None


def _tlsReason(exception):
    """
    A short text for a TLS error: a certificate for another name, or
    OpenSSL's first reason string.
    """
    if type(exception).__module__.startswith("service_identity"):
        return "the certificate does not match its name"
    args = getattr(exception, "args", ())
    try:
        return args[0][0][2]
    except (IndexError, TypeError):
        return str(exception) or type(exception).__name__
