"""
Tests for L{vpnkit.httpproxy.proxy}, L{vpnkit.httpproxy.guest},
L{vpnkit.httpproxy.exchange} and L{vpnkit.httpproxy.tunnel}: which
guest connections the proxy takes, what a request becomes upstream, the
answers vpnkit gives itself, streaming with backpressure both ways, and
tunnels (C{CONNECT}, upgrades, transparent HTTPS by server name).

The guest connection is a L{FakeGuest} (a C{StringTransport} that, like
L{vpnkit.protocols.tcp.connection.TCPConnection}, holds what the guest
sends while paused); upstream connections are made by hand through
L{tests.helpers.FakeHostNetwork}.
"""

import json
from pathlib import Path

from twisted.internet import error, task
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.helpers import FakeHostNetwork, ip
from vpnkit.config import StackConfig
from vpnkit.httpproxy.config import parseHTTPConfig
from vpnkit.httpproxy.guest import GuestHTTP
from vpnkit.httpproxy.proxy import HTTPProxy
from vpnkit.httpproxy.tunnel import TransparentTLS
from vpnkit.interfaces import ITCPRoute
from vpnkit.protocols.tcp.layer import Flow

GUEST = ip("192.168.65.3")
ORIGIN = "203.0.113.5"
HELLO = (Path(__file__).with_name("fixtures") / "clienthello-curl.bin").read_bytes()
HELLO_NO_SNI = (Path(__file__).with_name("fixtures") / "clienthello-curl-ip.bin").read_bytes()


def flow(dst=ORIGIN, port=80):
    return Flow(GUEST, 40000, ip(dst), port)


class FakeGuest(StringTransport):
    """
    A guest TCP connection: what the guest sends while reads are paused is
    held and delivered on resume; C{makeConnection} re-attaches a protocol
    (as a splice does).
    """

    def __init__(self):
        super().__init__()
        self.protocol = None
        self.held = []
        self.halfClosed = False
        self.aborted = False

    def makeConnection(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self)

    def receive(self, data):
        if self.producerState == "paused":
            self.held.append(data)
        else:
            self.protocol.dataReceived(data)

    def resumeProducing(self):
        super().resumeProducing()
        while self.held and self.producerState == "producing":
            self.protocol.dataReceived(self.held.pop(0))

    def unregisterProducer(self):
        # TCPConnection allows it with none registered.
        if self.producer is not None:
            super().unregisterProducer()

    def loseWriteConnection(self):
        self.halfClosed = True

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()

    def take(self):
        data = self.value()
        self.clear()
        return data


class ProxyMixin:
    config = {"http": "http://user:password@proxy.corp:3128", "https": "http://proxy.corp:3129"}

    def setUp(self):
        self.network = FakeHostNetwork()
        self.clock = task.Clock()
        self.proxy = HTTPProxy(StackConfig(), self.network, self.clock)
        self.proxy.setConfig(parseHTTPConfig(json.dumps(self.config)))
        self.counters = self.proxy.counters

    def attach(self, f=None, explicit=None):
        """
        Route a guest connection and attach its protocol to a L{FakeGuest}.
        """
        f = f or (flow("192.168.65.1", explicit) if explicit else flow())
        results = []
        self.proxy.route(f).addCallback(results.append)
        guest = FakeGuest()
        guest.makeConnection(results[0])
        return guest

    def upstream(self, index=-1):
        """
        Complete a connect; return its transport.
        """
        return self.network.succeed(index)

    def answer(self, transport, data, index=-1):
        self.network.connects[index].protocol.dataReceived(data)


class RouteTests(ProxyMixin, SynchronousTestCase):
    def route(self, dst, port):
        return self.proxy.route(flow(dst, port))

    def test_interface(self):
        """
        L{HTTPProxy} is a route.
        """
        self.assertTrue(verifyObject(ITCPRoute, self.proxy))

    def test_transparentPorts(self):
        """
        Remote port 80 gets the HTTP protocol, 443 the TLS one; others are
        not the proxy's.
        """
        self.assertIsInstance(self.successResultOf(self.route(ORIGIN, 80)), GuestHTTP)
        self.assertIsInstance(self.successResultOf(self.route(ORIGIN, 443)), TransparentTLS)
        self.assertIsNone(self.route(ORIGIN, 22))

    def test_noUpstreamNoTransparency(self):
        """
        Without an C{http} (C{https}) upstream, port 80 (443) goes straight
        to the host route.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        self.assertIsNone(self.route(ORIGIN, 80))
        self.assertIsNone(self.route(ORIGIN, 443))

    def test_explicitPorts(self):
        """
        The gateway's 3128 and 3129 are the explicit proxy whenever a
        configuration exists, even C{{}}; its other ports are not.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        self.assertIsInstance(self.successResultOf(self.route("192.168.65.1", 3128)), GuestHTTP)
        self.assertIsInstance(self.successResultOf(self.route("192.168.65.1", 3129)), GuestHTTP)
        self.assertIsNone(self.route("192.168.65.1", 80))

    def test_noConfig(self):
        """
        Without a configuration the proxy takes nothing.
        """
        self.proxy.setConfig(None)
        self.assertIsNone(self.route("192.168.65.1", 3128))
        self.assertIsNone(self.route(ORIGIN, 80))

    def test_hostAliasAndExcludedAddresses(self):
        """
        The host alias and excluded addresses are not proxied.
        """
        self.proxy.setConfig(parseHTTPConfig(json.dumps(dict(self.config, exclude="203.0.113.0/24"))))
        self.assertIsNone(self.route("192.168.65.2", 80))
        self.assertIsNone(self.route(ORIGIN, 80))
        self.assertIsNotNone(self.route("198.51.100.7", 80))

    def test_ipv6Flows(self):
        """
        Over IPv6 the same rules hold: a remote address's port 80 is
        proxied transparently, the IPv6 gateway's 3128 is the explicit
        proxy, the IPv6 host alias and excluded IPv6 networks are not
        proxied.
        """
        from vpnkit.protocols.tcp.layer import Flow
        from vpnkit.wire.ipv6 import packIPv6

        def route6(dst, port):
            return self.proxy.route(Flow(packIPv6("fd00:65::3"), 40000, packIPv6(dst), port))

        self.assertIsInstance(self.successResultOf(route6("2001:db8::1", 80)), GuestHTTP)
        self.assertIsInstance(self.successResultOf(route6("fd00:65::1", 3128)), GuestHTTP)
        self.assertIsNone(route6("fd00:65::2", 80))
        self.proxy.setConfig(parseHTTPConfig(json.dumps(dict(self.config, exclude="2001:db8::/32"))))
        self.assertIsNone(route6("2001:db8::1", 80))
        self.assertIsNotNone(route6("2001:db9::1", 80))

    def test_configuredPorts(self):
        """
        C{transparent_http_ports} and C{transparent_https_ports} choose the
        ports.
        """
        config = dict(self.config, transparent_http_ports=[8080], transparent_https_ports=[8443])
        self.proxy.setConfig(parseHTTPConfig(json.dumps(config)))
        self.assertIsNone(self.route(ORIGIN, 80))
        self.assertIsInstance(self.successResultOf(self.route(ORIGIN, 8080)), GuestHTTP)
        self.assertIsInstance(self.successResultOf(self.route(ORIGIN, 8443)), TransparentTLS)

    def test_tlsUpstream(self):
        """
        An C{https://} upstream is dialled through TLS; names in
        C{--host-names} mean the host's loopback.
        """
        self.proxy.setConfig(parseHTTPConfig('{"http": "https://host.internal:3443"}'))
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), ("127.0.0.1", 3443))
        self.assertIsInstance(pending.protocol, TLSMemoryBIOProtocol)


class TransparentHTTPTests(ProxyMixin, SynchronousTestCase):
    def test_viaProxy(self):
        """
        A request is sent to the upstream in absolute form (port always
        written), with the guest's headers, its C{Proxy-Authorization}
        replaced by the configured credentials; the answer is relayed.
        """
        guest = self.attach()
        guest.receive(
            b"GET /a?b=1 HTTP/1.1\r\nHost: www.mobyproject.org\r\nUser-Agent: whatever\r\n"
            b"X-Dave-Is-Cool: true\r\nAuthorization: basic foobar\r\n"
            b"Proxy-Authorization: Basic guest\r\n\r\n"
        )
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), ("proxy.corp", 3128))
        upstream = self.upstream()
        sent = upstream.value()
        self.assertTrue(sent.startswith(b"GET http://www.mobyproject.org:80/a?b=1 HTTP/1.1\r\n"), sent)
        for header in [
            b"Host: www.mobyproject.org\r\n",
            b"User-Agent: whatever\r\n",
            b"X-Dave-Is-Cool: true\r\n",
            b"Authorization: basic foobar\r\n",
            b"Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==\r\n",
        ]:
            self.assertIn(header, sent)
        self.assertNotIn(b"Basic guest", sent)
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello")
        reply = guest.take()
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply)
        self.assertIn(b"X-Up: 1\r\n", reply)
        self.assertIn(b"Content-Length: 5\r\n", reply)
        self.assertTrue(reply.endswith(b"\r\n\r\nhello"))
        self.assertEqual((self.counters.requests, self.counters.requestsViaProxy), (1, 1))

    def test_keepAlive(self):
        """
        A second request on the connection reuses the upstream connection.
        """
        guest = self.attach()
        guest.receive(b"GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        upstream = self.upstream()
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        upstream.clear()
        guest.take()
        guest.receive(b"GET /2 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(len(self.network.connects), 1)
        self.assertTrue(upstream.value().startswith(b"GET http://a.example:80/2 "))
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        self.assertTrue(guest.take().endswith(b"2"))

    def test_pipelining(self):
        """
        Pipelined requests are answered in order, one after the other.
        """
        guest = self.attach()
        guest.receive(
            b"GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.example\r\n\r\n"
        )
        upstream = self.upstream()
        self.assertNotIn(b"/2", upstream.value())
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        self.assertIn(b"GET http://a.example:80/2 ", upstream.value())
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        reply = guest.take()
        self.assertLess(reply.index(b"one"), reply.index(b"two"))

    def test_emptyLineBeforeRequest(self):
        """
        An empty line after a request (as some clients send after a POST
        body) is skipped: the next request line is still the one its
        exchange is made for, as soon as its head is read.
        """
        guest = self.attach()
        guest.receive(b"POST /1 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\n\r\nx\r\n")
        upstream = self.upstream()
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        upstream.clear()
        guest.receive(b"PUT /2 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\n")
        self.assertTrue(upstream.value().startswith(b"PUT http://a.example:80/2 HTTP/1.1\r\n"))
        guest.receive(b"abc")
        self.assertTrue(upstream.value().endswith(b"\r\n\r\nabc"))

    def test_noHostHeader(self):
        """
        A request with no C{Host} goes to the address the guest dialled.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.0\r\n\r\n")
        upstream = self.upstream()
        self.assertTrue(upstream.value().startswith(b"GET http://203.0.113.5:80/ HTTP/1.1"))
        self.assertIn(b"Host: 203.0.113.5\r\n", upstream.value())

    def test_absoluteURI(self):
        """
        An absolute URI from the guest is kept (scheme http).
        """
        guest = self.attach()
        guest.receive(b"GET http://b.example:8080/x HTTP/1.1\r\nHost: b.example:8080\r\n\r\n")
        self.assertTrue(self.upstream().value().startswith(b"GET http://b.example:8080/x "))

    def test_excludedName(self):
        """
        A request whose host is excluded goes straight to the address the
        guest dialled, in origin form, without proxy credentials.
        """
        self.proxy.setConfig(parseHTTPConfig(json.dumps(dict(self.config, exclude="*.local"))))
        guest = self.attach()
        guest.receive(b"GET /p HTTP/1.1\r\nHost: printer.local\r\n\r\n")
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), (ORIGIN, 80))
        sent = self.upstream().value()
        self.assertTrue(sent.startswith(b"GET /p HTTP/1.1\r\n"), sent)
        self.assertNotIn(b"Proxy-Authorization", sent)
        self.assertEqual(self.counters.requestsDirect, 1)

    def test_forbidden(self):
        """
        A host outside the allow list gets 403 with the configured message,
        and no connection is made.
        """
        config = dict(self.config, allow_enabled=True, allow=["*.corp"], allow_error_msg="no %s")
        self.proxy.setConfig(parseHTTPConfig(json.dumps(config)))
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        reply = guest.take()
        self.assertTrue(reply.startswith(b"HTTP/1.1 403 Forbidden\r\n"), reply)
        self.assertIn(b"no evil.example", reply)
        self.assertEqual(self.network.connects, [])
        self.assertEqual(self.counters.forbidden, 1)

    def test_forbiddenBodyDropped(self):
        """
        The body of a refused request is read and dropped; the connection
        stays usable.
        """
        config = dict(self.config, allow_enabled=True, allow=["ok.example"])
        self.proxy.setConfig(parseHTTPConfig(json.dumps(config)))
        guest = self.attach()
        guest.receive(b"POST / HTTP/1.1\r\nHost: no.example\r\nContent-Length: 4\r\n\r\n")
        self.assertEqual(guest.value(), b"")
        guest.receive(b"body")
        self.assertIn(b" 403 ", guest.take())
        guest.receive(b"GET / HTTP/1.1\r\nHost: ok.example\r\n\r\n")
        self.assertEqual(len(self.network.connects), 1)

    def test_proxyDown(self):
        """
        An upstream that cannot be reached gives 503 with the reference's
        text, counted against that upstream.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.network.fail(error.ConnectionRefusedError())
        reply = guest.take()
        self.assertTrue(reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), reply)
        self.assertIn(b"unable to connect to HTTP proxy proxy.corp:3128", reply)
        self.assertEqual(self.counters.connectFailures, 1)
        self.assertEqual(self.counters.upstreamFailures, {"proxy.corp:3128": 1})

    def test_originDown(self):
        """
        An origin that cannot be reached gives the reference's other text.
        """
        self.proxy.setConfig(parseHTTPConfig(json.dumps(dict(self.config, exclude="a.example"))))
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.network.fail(error.ConnectionRefusedError())
        self.assertIn(
            b"unable to connect to 203.0.113.5:80. Do you need an HTTP proxy?", guest.take()
        )

    def test_upstreamClosesWithoutAnswer(self):
        """
        An upstream that closes without answering gives 502.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.upstream()
        self.network.connects[-1].protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertIn(b" 502 Bad Gateway", guest.take())

    def test_tlsFailure(self):
        """
        An upstream whose certificate does not verify gives 502 naming it,
        counted as a TLS failure.
        """
        from service_identity.exceptions import VerificationError

        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.upstream()
        self.network.connects[-1].protocol.connectionLost(Failure(VerificationError(errors=[])))
        reply = guest.take()
        self.assertIn(b" 502 Bad Gateway", reply)
        self.assertIn(b"TLS connection to HTTP proxy proxy.corp:3128 failed", reply)
        self.assertEqual(self.counters.tlsFailures, 1)

    def test_badRequest(self):
        """
        A request vpnkit cannot forward gets 400.
        """
        guest = self.attach()
        guest.receive(b"GET https://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertIn(b" 400 Bad Request", guest.take())
        self.assertEqual(self.counters.badRequests, 1)

    def test_head(self):
        """
        The answer to HEAD has its headers and no body.
        """
        guest = self.attach()
        guest.receive(b"HEAD / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        upstream = self.upstream()
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        reply = guest.take()
        self.assertIn(b"Content-Length: 1000\r\n", reply)
        self.assertTrue(reply.endswith(b"\r\n\r\n"))
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertIn(b"GET http://a.example:80/ ", upstream.value())

    def test_unknownLengthChunked(self):
        """
        An answer that ends when the upstream closes reaches an HTTP/1.1
        guest chunked, so its connection stays open.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        upstream = self.upstream()
        protocol = self.network.connects[-1].protocol
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc")
        protocol.connectionLost(Failure(error.ConnectionDone()))
        reply = guest.take()
        self.assertIn(b"Transfer-Encoding: chunked\r\n", reply)
        self.assertTrue(reply.endswith(b"3\r\nabc\r\n0\r\n\r\n"), reply)
        self.assertFalse(guest.disconnecting)

    def test_http10Closes(self):
        """
        An HTTP/1.0 request's connection is closed after the answer.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.0\r\nHost: a.example\r\n\r\n")
        upstream = self.upstream()
        self.answer(upstream, b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n")
        self.network.connects[-1].protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertTrue(guest.take().startswith(b"HTTP/1.0 200 OK"))
        self.assertTrue(guest.disconnecting)

    def test_expectContinue(self):
        """
        C{Expect: 100-continue} is answered by vpnkit and not passed on.
        """
        guest = self.attach()
        guest.receive(
            b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        self.assertEqual(guest.take(), b"HTTP/1.1 100 Continue\r\n\r\n")
        upstream = self.upstream()
        guest.receive(b"hi")
        self.assertNotIn(b"Expect", upstream.value())
        self.assertTrue(upstream.value().endswith(b"\r\n\r\nhi"))


class StreamingTests(ProxyMixin, SynchronousTestCase):
    def test_bodyHeldUntilConnected(self):
        """
        Body bytes that arrive before the upstream connection exists are
        held, and the guest paused; they go on once connected.
        """
        guest = self.attach()
        guest.receive(b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 6\r\n\r\nabc")
        self.assertEqual(guest.producerState, "paused")
        guest.receive(b"def")
        upstream = self.upstream()
        self.assertEqual(guest.producerState, "producing")
        self.assertIn(b"Content-Length: 6\r\n", upstream.value())
        self.assertTrue(upstream.value().endswith(b"\r\n\r\nabcdef"))

    def test_chunkedUpload(self):
        """
        A chunked body streams upstream chunked.
        """
        guest = self.attach()
        guest.receive(b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n")
        upstream = self.upstream()
        guest.receive(b"3\r\nabc\r\n")
        self.assertIn(b"Transfer-Encoding: chunked\r\n", upstream.value())
        self.assertTrue(upstream.value().endswith(b"3\r\nabc\r\n"))
        guest.receive(b"0\r\n\r\n")
        self.assertTrue(upstream.value().endswith(b"0\r\n\r\n"))

    def test_uploadBackpressure(self):
        """
        While the upstream cannot take more, the guest is paused.
        """
        guest = self.attach()
        guest.receive(b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 100\r\n\r\n")
        upstream = self.upstream()
        guest.receive(b"x" * 10)
        upstream.producer.pauseProducing()
        self.assertEqual(guest.producerState, "paused")
        guest.receive(b"q" * 10)
        self.assertNotIn(b"q", upstream.value())
        upstream.producer.resumeProducing()
        self.assertEqual(guest.producerState, "producing")
        self.assertTrue(upstream.value().endswith(b"q" * 10))

    def test_downloadBackpressure(self):
        """
        While the guest cannot take more, the upstream is paused.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        upstream = self.upstream()
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        guest.producer.pauseProducing()
        self.assertEqual(upstream.producerState, "paused")
        guest.producer.resumeProducing()
        self.assertEqual(upstream.producerState, "producing")

    def test_downloadPausedBeforeBody(self):
        """
        A guest already full when the answer starts pauses the upstream at
        once.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        upstream = self.upstream()
        guest.producer.pauseProducing()
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        self.assertEqual(upstream.producerState, "paused")

    def test_guestGoneAbortsUpstream(self):
        """
        When the guest goes mid-answer, the upstream connection is closed.
        """
        guest = self.attach()
        guest.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        upstream = self.upstream()
        self.answer(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        guest.protocol.connectionLost(Failure(error.ConnectionLost()))
        self.assertTrue(upstream.disconnecting)

    def test_bytesCounted(self):
        """
        Bytes each way are counted.
        """
        guest = self.attach()
        request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
        guest.receive(request)
        self.answer(self.upstream(), b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        self.assertEqual(self.counters.bytesFromGuest, len(request))
        self.assertEqual(self.counters.bytesToGuest, len(guest.value()))


class ExplicitTests(ProxyMixin, SynchronousTestCase):
    def test_getViaHTTPUpstream(self):
        """
        The gateway's 3128 sends absolute-form requests to the C{http}
        upstream.
        """
        guest = self.attach(explicit=3128)
        guest.receive(b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(self.network.connects[0].port, 3128)
        self.assertTrue(self.upstream().value().startswith(b"GET http://a.example:80/ "))

    def test_getDirect(self):
        """
        With no upstream, the explicit proxy fetches from the origin by
        name; a name in C{--host-names} is the host's loopback.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        guest = self.attach(explicit=3128)
        guest.receive(b"GET http://host.internal:8000/x HTTP/1.1\r\nHost: host.internal:8000\r\n\r\n")
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), ("127.0.0.1", 8000))
        sent = self.upstream().value()
        self.assertTrue(sent.startswith(b"GET /x HTTP/1.1\r\n"))
        self.assertIn(b"Host: host.internal:8000\r\n", sent)

    def test_originFormNeedsHost(self):
        """
        The explicit proxy answers 400 to an origin-form request with no
        C{Host}.
        """
        guest = self.attach(explicit=3128)
        guest.receive(b"GET / HTTP/1.0\r\n\r\n")
        self.assertIn(b"request must contain an absolute URI", guest.take())

    def test_connectDirect(self):
        """
        C{CONNECT} with no upstream dials the target, answers
        C{HTTP/1.1 200 OK}, then splices bytes both ways.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        guest = self.attach(explicit=3129)
        guest.receive(b"CONNECT origin.example:8443 HTTP/1.1\r\nHost: origin.example:8443\r\n\r\nearly")
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), ("origin.example", 8443))
        upstream = self.upstream()
        self.assertEqual(guest.take(), b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertEqual(upstream.value(), b"early")
        guest.receive(b"more")
        self.assertEqual(upstream.value(), b"earlymore")
        pending.protocol.dataReceived(b"back")
        self.assertEqual(guest.take(), b"back")
        self.assertEqual(self.counters.tunnels, 1)

    def test_connectHTTP10(self):
        """
        An HTTP/1.0 C{CONNECT} (not a persistent connection for HTTP) is
        tunnelled all the same, the bytes sent right after it first.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        guest = self.attach(explicit=3129)
        guest.receive(b"CONNECT origin.example:443 HTTP/1.0\r\n\r\nearly")
        upstream = self.upstream()
        self.assertEqual(guest.take(), b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertFalse(guest.disconnecting)
        self.assertEqual(upstream.value(), b"early")
        guest.receive(b"more")
        self.assertEqual(upstream.value(), b"earlymore")

    def test_connectWithBody(self):
        """
        The body of a C{CONNECT} (it has no meaning) is read and dropped;
        the bytes after it start the tunnel, whether they came with the
        request, with its body, or while the tunnel was being dialled.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        guest = self.attach(explicit=3129)
        guest.receive(b"CONNECT origin.example:443 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbo")
        guest.receive(b"dyearly")
        guest.receive(b"-later")
        upstream = self.upstream()
        self.assertEqual(guest.take(), b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertEqual(upstream.value(), b"early-later")

    def test_connectChunkedBody(self):
        """
        A chunked C{CONNECT} body is dropped the same way.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        guest = self.attach(explicit=3129)
        guest.receive(
            b"CONNECT origin.example:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nbo\r\n0\r\n\r\nearly"
        )
        upstream = self.upstream()
        self.assertEqual(guest.take(), b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertEqual(upstream.value(), b"early")

    def test_connectAfterRequest(self):
        """
        A C{CONNECT} pipelined behind a plain request on a keep-alive
        connection is tunnelled once that request is answered, with the
        bytes that followed it.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        guest = self.attach(explicit=3128)
        guest.receive(
            b"GET http://a.example/ HTTP/1.1\r\n\r\n"
            b"CONNECT origin.example:443 HTTP/1.1\r\n\r\nearly"
        )
        origin = self.upstream()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        self.assertEqual(self.network.connects[-1].port, 443)
        tunnel = self.upstream()
        self.assertTrue(guest.take().endswith(b"\r\n\r\n1HTTP/1.1 200 OK\r\n\r\n"))
        self.assertEqual(tunnel.value(), b"early")

    def test_connectViaUpstream(self):
        """
        C{CONNECT} to 3129 is sent on to the C{https} upstream, whose answer
        the guest reads itself.
        """
        guest = self.attach(explicit=3129)
        guest.receive(b"CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n\r\n")
        self.assertEqual(self.network.connects[0].port, 3129)
        upstream = self.upstream()
        self.assertEqual(
            upstream.value(),
            b"CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n\r\n",
        )
        self.network.connects[0].protocol.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\nsrv")
        self.assertEqual(guest.take(), b"HTTP/1.1 200 Connection established\r\n\r\nsrv")

    def test_connectForbidden(self):
        """
        A C{CONNECT} outside the allow list gets 403.
        """
        config = {"allow_enabled": True, "allow": ["localhost"], "allow_error_msg": "stop connecting to %s"}
        self.proxy.setConfig(parseHTTPConfig(json.dumps(config)))
        guest = self.attach(explicit=3128)
        guest.receive(b"CONNECT not-localhost:1234 HTTP/1.1\r\n\r\n")
        reply = guest.take()
        self.assertIn(b" 403 ", reply)
        self.assertIn(b"stop connecting to not-localhost", reply)

    def test_connectFails(self):
        """
        A C{CONNECT} whose target cannot be reached gets 503.
        """
        self.proxy.setConfig(parseHTTPConfig("{}"))
        guest = self.attach(explicit=3128)
        guest.receive(b"CONNECT localhost:25 HTTP/1.1\r\n\r\n")
        self.network.fail(error.ConnectionRefusedError())
        reply = guest.take()
        self.assertIn(b" 503 ", reply)
        self.assertIn(b"unable to connect to localhost:25", reply)
        self.assertEqual(guest.producerState, "producing")


class UpgradeTests(ProxyMixin, SynchronousTestCase):
    def test_websocket(self):
        """
        An upgrade request is passed on raw with its C{Upgrade} and
        C{Connection} headers, then bytes flow both ways unparsed,
        including those the guest sent right after the request.
        """
        guest = self.attach()
        guest.receive(
            b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: k\r\n\r\n\x81\x02hi"
        )
        upstream = self.upstream()
        sent = upstream.value()
        self.assertTrue(sent.startswith(b"GET http://a.example:80/ws HTTP/1.1\r\n"), sent)
        self.assertIn(b"Upgrade: websocket\r\n", sent)
        self.assertIn(b"Connection: Upgrade\r\n", sent)
        self.assertIn(b"Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==\r\n", sent)
        self.assertTrue(sent.endswith(b"\r\n\r\n\x81\x02hi"))
        self.network.connects[-1].protocol.dataReceived(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02yo"
        )
        self.assertEqual(
            guest.take(), b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02yo"
        )
        guest.receive(b"\x88\x00")
        self.assertTrue(upstream.value().endswith(b"\x88\x00"))
        self.assertEqual(self.counters.upgrades, 1)


class TransparentTLSTests(ProxyMixin, SynchronousTestCase):
    def test_connectByName(self):
        """
        The ClientHello's server name is the C{CONNECT} target, with the
        port the guest dialled; after 2xx the hello goes through and bytes
        flow.
        """
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(HELLO[:100])
        self.assertEqual(self.network.connects, [])
        guest.receive(HELLO[100:])
        self.assertEqual(guest.producerState, "paused")
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), ("proxy.corp", 3129))
        upstream = self.upstream()
        self.assertEqual(
            upstream.value(),
            b"CONNECT www.example.test:443 HTTP/1.1\r\nHost: www.example.test:443\r\n\r\n",
        )
        upstream.clear()
        pending.protocol.dataReceived(b"HTTP/1.0 200 OK\r\n\r\nserverhello")
        self.assertEqual(upstream.value(), HELLO)
        self.assertEqual(guest.take(), b"serverhello")
        self.assertEqual(guest.producerState, "producing")
        guest.receive(b"finished")
        self.assertTrue(upstream.value().endswith(b"finished"))
        self.assertEqual((self.counters.sniNames, self.counters.tunnels), (1, 1))

    def test_destinationPort(self):
        """
        The C{CONNECT} port is the one the guest dialled.
        """
        config = dict(self.config, transparent_https_ports=[8443])
        self.proxy.setConfig(parseHTTPConfig(json.dumps(config)))
        guest = self.attach(flow(ORIGIN, 8443))
        guest.receive(HELLO)
        self.assertTrue(self.upstream().value().startswith(b"CONNECT www.example.test:8443 "))

    def test_noName(self):
        """
        Without a server name the target is the address.
        """
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(HELLO_NO_SNI)
        self.assertTrue(self.upstream().value().startswith(b"CONNECT 203.0.113.5:443 "))
        self.assertEqual(self.counters.sniMissing, 1)

    def test_silentGuest(self):
        """
        A guest that sends nothing is tunnelled to the address after the
        hello timeout.
        """
        self.attach(flow(ORIGIN, 443))
        self.clock.advance(self.proxy.helloTimeout)
        self.assertTrue(self.upstream().value().startswith(b"CONNECT 203.0.113.5:443 "))

    def test_notTLS(self):
        """
        Bytes that are not a ClientHello are tunnelled to the address at
        once.
        """
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(b"SSH-2.0-x\r\n")
        upstream = self.upstream()
        self.assertTrue(upstream.value().startswith(b"CONNECT 203.0.113.5:443 "))

    def test_refused(self):
        """
        An upstream that refuses the tunnel resets the guest.
        """
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(HELLO)
        self.upstream()
        self.network.connects[-1].protocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        self.assertTrue(guest.aborted)
        self.assertEqual(self.counters.upstreamFailures, {"proxy.corp:3129": 1})

    def test_proxyDown(self):
        """
        An upstream that cannot be reached resets the guest.
        """
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(HELLO)
        self.network.fail(error.ConnectionRefusedError())
        self.assertTrue(guest.aborted)
        self.assertEqual(self.counters.connectFailures, 1)

    def test_excludedName(self):
        """
        A server name that is excluded goes straight to the address.
        """
        self.proxy.setConfig(parseHTTPConfig(json.dumps(dict(self.config, exclude="example.test"))))
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(HELLO)
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), (ORIGIN, 443))
        upstream = self.upstream()
        self.assertEqual(upstream.value(), HELLO)
        self.assertEqual(guest.producerState, "producing")

    def test_forbiddenName(self):
        """
        A server name outside the allow list is reset.
        """
        config = dict(self.config, allow_enabled=True, allow=["*.corp"])
        self.proxy.setConfig(parseHTTPConfig(json.dumps(config)))
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(HELLO)
        self.assertTrue(guest.aborted)
        self.assertEqual(self.network.connects, [])
        self.assertEqual(self.counters.forbidden, 1)

    def test_guestGoneWhileDialling(self):
        """
        A guest that goes while the tunnel is made has its upstream closed.
        """
        guest = self.attach(flow(ORIGIN, 443))
        guest.receive(HELLO)
        pending = self.network.connects[-1]
        guest.protocol.connectionLost(Failure(error.ConnectionLost()))
        upstream = self.upstream()
        pending.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertTrue(upstream.disconnecting or upstream.disconnected)
