# -*- test-case-name: tests.test_httpproxy -*-
"""
The HTTP proxy's Twisted glue: L{HTTPProxy}, the route
(L{vpnkit.interfaces.ITCPRoute}) that takes guests' connections to
transparent HTTP/HTTPS ports and to the gateway's explicit proxy ports,
and L{GuestHTTP}, the protocol on such a connection.

Requests from the guest are parsed by twisted.web's L{HTTPChannel}
(keep-alive, pipelining, chunked bodies, C{Expect: 100-continue}); each
one is sent on by Twisted's HTTP/1.1 client protocol, to the upstream
proxy or straight to the origin, with its body streamed as it arrives and
the response streamed back: the guest's reads pause while the upstream
cannot take more, and the upstream's while the guest cannot, so nothing
buffers without bound.  C{CONNECT} and protocol upgrades (WebSocket)
become raw tunnels (L{vpnkit.httpproxy.tunnel}).
"""

import io

from twisted.internet import defer, error
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import http
from twisted.web.client import HTTP11ClientProtocol, ResponseDone
from twisted.web.client import Request as ClientRequest
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from vpnkit.counters import HTTPProxyCounters
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
from vpnkit.httpproxy.tunnel import (
    TransparentTLS,
    TunnelSide,
    countFailure,
    splice,
    tlsFailure,
)
from vpnkit.interfaces import ITCPRoute
from vpnkit.log import RateLimitedLog, logger
from vpnkit.wire.ipv4 import formatIP

__all__ = ["HTTPProxy", "GuestHTTP", "EXPLICIT_HTTP_PORT", "EXPLICIT_HTTPS_PORT"]

log = logger("vpnkit.httpproxy")

EXPLICIT_HTTP_PORT = 3128
EXPLICIT_HTTPS_PORT = 3129
_NO_BODY_CODES = (204, 304)


class _OneProtocol(Factory):
    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol


@implementer(ITCPRoute)
class HTTPProxy:
    """
    The proxy's policy: which guest connections it takes, where their
    requests go, and the connections it opens for them.

    @ivar config: the L{HTTPProxyConfig} in force, or C{None} (no C{--http}
        file, or it was removed): the proxy takes nothing.
    @ivar counters: its L{HTTPProxyCounters}.

    @param stackConfig: the L{vpnkit.config.StackConfig} (the gateway, the
        host alias and its names).
    @param network: the L{vpnkit.interfaces.IHostNetwork} upstream
        connections are made through.
    @param trustRoot: what certificates of C{https://} upstreams are checked
        against (an C{IOpenSSLTrustRoot}); the platform's by default.
    @param helloTimeout: seconds a transparent HTTPS connection waits for
        the guest's ClientHello before tunnelling to the bare address.
    @param idleTimeout: seconds a guest's idle keep-alive connection is kept.
    """

    def __init__(
        self,
        stackConfig,
        network,
        clock,
        trustRoot=None,
        counters=None,
        connectTimeout=30.0,
        helloTimeout=5.0,
        idleTimeout=300.0,
    ):
        self._stackConfig = stackConfig
        self._gateway = stackConfig.gatewayPacked
        self._hostAlias = stackConfig.hostPacked
        self._localNames = {name.lower() for name in stackConfig.hostNames}
        if stackConfig.hostIP is not None:
            self._localNames.add(str(stackConfig.hostIP))
        self._network = network
        self.clock = clock
        self._trustRoot = trustRoot
        self.counters = counters if counters is not None else HTTPProxyCounters()
        self.connectTimeout = connectTimeout
        self.helloTimeout = helloTimeout
        self.idleTimeout = idleTimeout
        self.config = None
        self.failureLog = RateLimitedLog(log, clock)

    def setConfig(self, config):
        """
        Use C{config} (an L{HTTPProxyConfig}, or C{None} to stop proxying)
        for every connection from now on.
        """
        self.config = config
        if config is None:
            log.info("HTTP proxy disabled")
        else:
            log.info(
                "HTTP proxy: http {http}, https {https}, transparent ports {ports}",
                http=str(config.http) if config.http else "direct",
                https=str(config.https) if config.https else "direct",
                ports=sorted(config.transparentHTTPPorts | config.transparentHTTPSPorts),
            )

    # -- ITCPRoute ---------------------------------------------------------

    def route(self, flow):
        config = self.config
        if config is None:
            return None
        port = flow.localPort
        if flow.localIP == self._gateway:
            if port in (EXPLICIT_HTTP_PORT, EXPLICIT_HTTPS_PORT):
                return defer.succeed(GuestHTTP(self, flow, explicitPort=port))
            return None
        if flow.localIP == self._hostAlias:
            return None
        address = formatIP(flow.localIP)
        if config.excluded(address, port):
            return None
        if port in config.transparentHTTPPorts and config.http is not None:
            return defer.succeed(GuestHTTP(self, flow))
        if port in config.transparentHTTPSPorts and config.https is not None:
            return defer.succeed(TransparentTLS(self, flow))
        return None

    # -- upstream connections ----------------------------------------------

    def nextHop(self, host):
        """
        The address dialled for C{host}: the host's names (C{--host-names},
        the host alias) mean its loopback, as in the reference.
        """
        if host.lower() in self._localNames:
            return "127.0.0.1"
        return host

    def connect(self, host, port, protocol, tlsName=None):
        """
        Connect C{protocol} to C{host:port} (over TLS, checking the
        certificate for C{tlsName}, when given).

        @return: a L{Deferred} firing with C{protocol} once connected.
        """
        wrapped = protocol
        if tlsName is not None:
            from twisted.internet.ssl import optionsForClientTLS

            options = optionsForClientTLS(tlsName, trustRoot=self._trustRoot)
            wrapped = TLSMemoryBIOFactory(options, True, _OneProtocol(protocol)).buildProtocol(None)
        d = self._network.connectTCP(self.nextHop(host), port, wrapped, self.connectTimeout)
        return d.addCallback(lambda _: protocol)

    def connectUpstream(self, uri, protocol):
        """
        Connect C{protocol} to the upstream proxy C{uri} (a
        L{vpnkit.httpproxy.config.ProxyURI}).
        """
        return self.connect(uri.host, uri.port, protocol, uri.host if uri.tls else None)


# -- the guest connection ----------------------------------------------------


class _Reads:
    """
    Why the guest connection's reads are paused: paused while any reason
    holds (the channel's own pipelining limit, an upload the upstream
    cannot take, a connection being made).
    """

    def __init__(self, transport):
        self._transport = transport
        self._reasons = set()

    def pause(self, reason):
        if not self._reasons:
            self._transport.pauseProducing()
        self._reasons.add(reason)

    def resume(self, reason):
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons:
            self._transport.resumeProducing()


@implementer(IPushProducer)
class _WriteFlow:
    """
    What the guest connection pauses when its send buffer is full: the
    channel, which pauses the response body's producer.
    """

    def __init__(self, channel):
        self._channel = channel
        self.paused = False

    def pauseProducing(self):
        self.paused = True
        self._channel.pauseProducing()

    def resumeProducing(self):
        self.paused = False
        self._channel.resumeProducing()

    def stopProducing(self):
        self._channel.stopProducing()


@implementer(ITCPTransport, IPushProducer, IConsumer)
class _ChannelTransport:
    """
    The channel's transport: the guest connection, with reads paused
    through L{_Reads} and bytes counted.
    """

    def __init__(self, guest):
        self._guest = guest
        self.writeFlow = None

    @property
    def _tcp(self):
        return self._guest.transport

    @property
    def disconnecting(self):
        return self._tcp.disconnecting

    def write(self, data):
        self._guest.counters.bytesToGuest += len(data)
        self._tcp.write(data)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        self._tcp.loseConnection()

    def abortConnection(self):
        self._tcp.abortConnection()

    def loseWriteConnection(self):
        self._tcp.loseWriteConnection()

    def getPeer(self):
        return self._tcp.getPeer()

    def getHost(self):
        return self._tcp.getHost()

    def setTcpNoDelay(self, enabled):
        pass

    def getTcpNoDelay(self):
        return True

    def setTcpKeepAlive(self, enabled):
        pass

    def getTcpKeepAlive(self):
        return False

    def registerProducer(self, producer, streaming):
        self.writeFlow = _WriteFlow(producer)
        self._tcp.registerProducer(self.writeFlow, True)

    def unregisterProducer(self):
        self.writeFlow = None
        self._tcp.unregisterProducer()

    def pauseProducing(self):
        self._guest.reads.pause("channel")

    def resumeProducing(self):
        self._guest.reads.resume("channel")

    def stopProducing(self):
        self._tcp.abortConnection()


class _ProxyChannel(http.HTTPChannel):
    """
    twisted.web's request parser, handing each request to its
    L{_Exchange} as soon as its head is complete, so the body can stream.
    """

    def __init__(self, guest):
        super().__init__()
        self.guest = guest
        self.timeOut = guest.proxy.idleTimeout
        self.callLater = guest.proxy.clock.callLater

    def requestFactory(self, channel, queued):
        return _ProxyRequest(channel, queued)

    def allHeadersReceived(self):
        # The request line is known to the channel only (HTTPChannel keeps
        # it until the body is complete): give it to the request now.
        request = self.requests[-1]
        request.method, request.uri, request.clientproto = self._command, self._path, self._version
        super().allHeadersReceived()


class _ProxyRequest(http.Request):
    """
    One request from the guest; its L{_Exchange} does the work.
    """

    exchange = None

    def gotLength(self, length):
        # Nothing is kept: the body streams to the upstream.
        self.content = io.BytesIO()
        self.exchange = _Exchange(self.channel.guest, self, length)

    def handleContentChunk(self, data):
        self.exchange.bodyReceived(data)

    def requestReceived(self, command, path, version):
        self.method, self.uri, self.clientproto = command, path, version
        self.path = path.split(b"?", 1)[0]
        self.args = {}
        self.exchange.requestComplete()

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.exchange is not None:
            self.exchange.guestLost()


@implementer(IHalfCloseableProtocol)
class GuestHTTP(Protocol):
    """
    The protocol on a guest connection the proxy serves with HTTP: a
    transparently proxied port (C{explicitPort} is C{None}), or the
    gateway's port 3128 (the C{http} upstream) or 3129 (the C{https} one).
    """

    def __init__(self, proxy, flow, explicitPort=None):
        self.proxy = proxy
        self.flow = flow
        self.explicitPort = explicitPort
        self.counters = proxy.counters
        self.reads = None
        self.channel = None
        self._channelTransport = None
        self._client = None
        self._clientKey = None
        self.handedOver = False
        self.lost = False

    @property
    def transparent(self):
        return self.explicitPort is None

    def upstreamFor(self, config, target, tunnel):
        """
        The upstream proxy for a request to C{target}, or C{None} (the
        origin): explicit port 3128 uses C{http}, 3129 C{https}; a
        transparently proxied request uses C{http} (C{https} for a tunnel).
        Excluded hosts go to the origin.
        """
        if self.transparent:
            proxy = config.https if tunnel else config.http
        else:
            proxy = config.http if self.explicitPort == EXPLICIT_HTTP_PORT else config.https
        if proxy is None or config.excluded(target.host, target.port):
            return None
        if self.transparent and config.excluded(formatIP(self.flow.localIP), self.flow.localPort):
            return None
        return proxy

    def originFor(self, target):
        """
        Where a request for C{target} that goes to the origin is dialled:
        a transparently proxied one to the address the guest dialled.
        """
        if self.transparent:
            return formatIP(self.flow.localIP), self.flow.localPort
        return target.host, target.port

    # -- the connection ------------------------------------------------------

    def connectionMade(self):
        self.counters.connections += 1
        self.reads = _Reads(self.transport)
        self.channel = _ProxyChannel(self)
        self._channelTransport = _ChannelTransport(self)
        self.channel.makeConnection(self._channelTransport)

    def dataReceived(self, data):
        self.counters.bytesFromGuest += len(data)
        self.channel.dataReceived(data)

    def readConnectionLost(self):
        """
        The guest half-closed: answer the request in flight, then close.
        """
        requests = self.channel.requests
        if requests and requests[-1].exchange is not None and requests[-1].exchange.received:
            self.channel.persistent = False
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.lost = True
        self.channel.connectionLost(reason)
        self._dropClient()

    def guestWritePaused(self):
        flow = self._channelTransport.writeFlow
        return flow is not None and flow.paused

    # -- upstream HTTP clients -----------------------------------------------

    def client(self, key, connect):
        """
        An idle HTTP/1.1 client connection for C{key}, kept from the last
        request when it is still open, else a new one made with
        C{connect(protocol)}.
        """
        client = self._client
        if client is not None and self._clientKey == key and client.state == "QUIESCENT":
            return defer.succeed(client)
        self._dropClient()
        client = HTTP11ClientProtocol()

        def connected(_):
            if self.handedOver or self.lost:
                client.transport.loseConnection()
                raise error.ConnectionAborted()
            self._dropClient()
            self._client, self._clientKey = client, key
            return client

        return connect(client).addCallback(connected)

    def _dropClient(self):
        client, self._client, self._clientKey = self._client, None, None
        if client is not None and client.transport is not None:
            client.transport.loseConnection()

    # -- tunnels ---------------------------------------------------------------

    def handOver(self, side):
        """
        Make this connection a raw tunnel with C{side}: the bytes the
        channel read after the request go upstream first.
        """
        self.handedOver = True
        self._dropClient()
        channel = self.channel
        pending = b"".join(channel._dataBuffer)
        channel._dataBuffer = []
        channel.setTimeout(None)
        splice(self.transport, side, self.counters, pending)


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


class _Exchange:
    """
    One request from the guest and what vpnkit does with it: refuse it,
    send it on (to the upstream proxy or the origin) and stream the answer
    back, or turn the connection into a tunnel (C{CONNECT}, upgrades).
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
                        formatIP(guest.flow.localIP),
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
            guest._dropClient()

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
