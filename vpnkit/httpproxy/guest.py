# -*- test-case-name: tests.test_httpproxy -*-
"""
The guest side of the HTTP proxy: L{GuestHTTP}, the protocol on a guest
connection the proxy serves with HTTP (a transparently proxied port, or
the gateway's explicit proxy ports), and the twisted.web channel that
parses the guest's requests on it.

Requests are parsed by twisted.web's L{HTTPChannel} (keep-alive,
pipelining, chunked bodies, C{Expect: 100-continue}).  Each one is handed
to its L{vpnkit.httpproxy.exchange.Exchange} as soon as its head is
complete, so its body can stream; the guest's reads are paused while any
reason holds (the channel's pipelining limit, an upload the upstream
cannot take, a connection being made).  A request that becomes a tunnel
(C{CONNECT}, an upgrade) ends HTTP on the connection: the bytes the
channel read after it go to the tunnel first.
"""

import io

from twisted.internet import defer, error
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.web import http
from twisted.web.client import HTTP11ClientProtocol
from zope.interface import implementer

from vpnkit.httpproxy.exchange import Exchange
from vpnkit.httpproxy.rewrite import parseRequestLine
from vpnkit.httpproxy.tunnel import splice
from vpnkit.protocols.ip import formatAddress

__all__ = ["GuestHTTP", "EXPLICIT_HTTP_PORT", "EXPLICIT_HTTPS_PORT"]

EXPLICIT_HTTP_PORT = 3128
EXPLICIT_HTTPS_PORT = 3129


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
    L{Exchange} as soon as its head is complete, so the body can stream.
    """

    def __init__(self, guest):
        super().__init__()
        self.guest = guest
        self.timeOut = guest.proxy.idleTimeout
        self.callLater = guest.proxy.clock.callLater
        self._line = None
        self._afterHTTP = None

    def lineReceived(self, line):
        # The channel makes each request (requestFactory) while it holds
        # the request's first line, and keeps the parts of that line to
        # itself until the body is complete: read them from the line.
        self._line = line
        return super().lineReceived(line)

    def requestFactory(self, channel, queued):
        request = _ProxyRequest(channel, queued)
        parts = parseRequestLine(self._line)
        if parts is not None:
            # (A line that is not well formed is answered 400 by the
            # channel before any header.)
            request.method, request.uri, request.clientproto = parts
        return request

    def dataReceived(self, data):
        if self._afterHTTP is not None:
            self._afterHTTP.append(data)
            return
        super().dataReceived(data)

    def endHTTP(self):
        """
        The request in progress is the last one (the connection becomes a
        tunnel): stop parsing, and return every byte read after it.

        What the channel read while the request was handled it holds, and
        hands back to its parser (through L{dataReceived}) once the
        request is done: it is done here, and those bytes kept.
        """
        self._afterHTTP = []
        # Persistent, or requestDone would close the connection instead.
        self.persistent = True
        self.requestDone(self.requests[0])
        self.setTimeout(None)
        return b"".join(self._afterHTTP) + self.clearLineBuffer()


class _ProxyRequest(http.Request):
    """
    One request from the guest; its L{Exchange} does the work.
    """

    exchange = None

    def gotLength(self, length):
        # Nothing is kept: the body streams to the upstream.
        self.content = io.BytesIO()
        self.exchange = Exchange(self.channel.guest, self, length)

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

    @ivar reads: the L{_Reads} that pauses the guest's reads.
    @ivar handedOver: the connection became a tunnel.
    @ivar lost: the connection is gone.
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
        if self.transparent and config.excluded(formatAddress(self.flow.localIP), self.flow.localPort):
            return None
        return proxy

    def originFor(self, target):
        """
        Where a request for C{target} that goes to the origin is dialled:
        a transparently proxied one to the address the guest dialled.
        """
        if self.transparent:
            return formatAddress(self.flow.localIP), self.flow.localPort
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
        self.dropClient()

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
        self.dropClient()
        client = HTTP11ClientProtocol()

        def connected(_):
            if self.handedOver or self.lost:
                client.transport.loseConnection()
                raise error.ConnectionAborted()
            self.dropClient()
            self._client, self._clientKey = client, key
            return client

        return connect(client).addCallback(connected)

    def dropClient(self):
        """
        Close the kept upstream client connection, if any.
        """
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
        self.dropClient()
        pending = self.channel.endHTTP()
        splice(self.transport, side, self.counters, pending)
