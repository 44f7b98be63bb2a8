"""
Tests for L{vpnkit.api}: the HTTP control API's resources, driven with
in-memory requests, and its limits, driven through its HTTP channel over a
L{StringTransport}.
"""

import io
import json

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.helpers import makeStack
from tests.test_forwards import FakeConnector, ListenReactor
from vpnkit.api import MAX_CONNECTIONS, jsonDepth, makeAPI
from vpnkit.forwards import PortForwarder


class APITests(SynchronousTestCase):
    def setUp(self):
        self.stack, (self.guest,) = makeStack(1)
        self.reactor = ListenReactor()
        self.forwarder = PortForwarder(self.reactor, FakeConnector(), "192.168.65.2", "192.168.65.1")
        self.site = makeAPI(self.stack, self.forwarder)

    def request(self, method, path, body=None):
        """
        Run one request; return C{(status, body bytes)}.
        """
        request = DummyRequest(path.lstrip(b"/").split(b"/"))
        request.method = method
        request.path = path
        if body is None:
            body = b""
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        request.content = io.BytesIO(body)
        resource = self.site.getResourceFor(request)
        result = resource.render(request)
        return request.responseCode or 200, result

    def test_exposeListUnexpose(self):
        """
        expose answers the forward in force; all lists it; unexpose removes
        it and all is empty again.
        """
        body = {"local": "127.0.0.1:0", "remote": "192.168.65.3:80", "protocol": "tcp"}
        status, result = self.request(b"POST", b"/services/forwarder/expose", body)
        self.assertEqual(status, 200)
        self.assertEqual(
            json.loads(result),
            {"local": "127.0.0.1:40001", "remote": "192.168.65.3:80", "protocol": "tcp"},
        )
        status, result = self.request(b"GET", b"/services/forwarder/all")
        self.assertEqual(
            json.loads(result),
            [{"local": "127.0.0.1:40001", "remote": "192.168.65.3:80", "protocol": "tcp"}],
        )
        status, result = self.request(
            b"POST", b"/services/forwarder/unexpose", {"local": "127.0.0.1:40001", "protocol": "tcp"}
        )
        self.assertEqual((status, result), (200, b""))
        self.assertEqual(json.loads(self.request(b"GET", b"/services/forwarder/all")[1]), [])

    def test_allSorted(self):
        """
        C{GET /services/forwarder/all} lists the forwards sorted by local
        address (numerically), then port, then protocol, not in the order
        they were exposed.
        """
        made = [
            {"local": "127.0.0.1:8080", "remote": "192.168.65.3:80", "protocol": "udp"},
            {"local": "127.0.0.1:9000", "remote": "192.168.65.3:90", "protocol": "tcp"},
            {"local": "10.0.0.1:7000", "remote": "192.168.65.3:70", "protocol": "tcp"},
            {"local": "127.0.0.1:8080", "remote": "192.168.65.3:81", "protocol": "tcp"},
            {"local": "9.0.0.1:7001", "remote": "192.168.65.3:71", "protocol": "tcp"},
        ]
        for body in made:
            self.assertEqual(self.request(b"POST", b"/services/forwarder/expose", body)[0], 200)
        status, result = self.request(b"GET", b"/services/forwarder/all")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(result), [made[4], made[2], made[3], made[0], made[1]])

    def test_malformedJSON(self):
        """
        A body that is not JSON is a 400 saying so.
        """
        status, result = self.request(b"POST", b"/services/forwarder/expose", b"{not json")
        self.assertEqual(status, 400)
        self.assertIn(b"malformed JSON", result)

    def test_badSpec(self):
        """
        A spec that does not parse is a 400 naming the field.
        """
        status, result = self.request(
            b"POST", b"/services/forwarder/expose", {"local": "127.0.0.1:1", "remote": "nowhere"}
        )
        self.assertEqual(status, 400)
        self.assertIn(b"remote", result)

    def test_secondExposeConflict(self):
        """
        Exposing the same local address twice is a 409 with the reference's
        message.
        """
        body = {"local": "127.0.0.1:8080", "remote": "192.168.65.3:80"}
        self.assertEqual(self.request(b"POST", b"/services/forwarder/expose", body)[0], 200)
        status, result = self.request(b"POST", b"/services/forwarder/expose", body)
        self.assertEqual(
            (status, result), (409, b"Bind for 127.0.0.1:8080 failed: port is already allocated\n")
        )

    def test_unexposeUnknown(self):
        """
        Unexposing what is not forwarded is a 404.
        """
        status, _ = self.request(
            b"POST", b"/services/forwarder/unexpose", {"local": "127.0.0.1:1", "protocol": "tcp"}
        )
        self.assertEqual(status, 404)

    def test_wrongMethod(self):
        """
        GET on expose is a 405 naming the allowed method.
        """
        status, result = self.request(b"GET", b"/services/forwarder/expose")
        self.assertEqual(status, 405)

    def test_leases(self):
        """
        The leases map each held address to its guest's MAC, under both
        paths.
        """
        expected = {"192.168.65.3": "02:50:00:00:00:01"}
        self.assertEqual(json.loads(self.request(b"GET", b"/services/dhcp/leases")[1]), expected)
        self.assertEqual(json.loads(self.request(b"GET", b"/leases")[1]), expected)

    def test_stats(self):
        """
        /stats is the stack's statistics.
        """
        self.assertEqual(json.loads(self.request(b"GET", b"/stats")[1]), self.stack.stats())


EXPOSE = b"/services/forwarder/expose"


class LimitTests(SynchronousTestCase):
    """
    What a misbehaving client gets: 400 for JSON of any shape that is not
    a spec, 413 for a body past 64 KiB, 408 for a request that takes more
    than 10 seconds to arrive, and no more than 64 connections.
    """

    def setUp(self):
        self.stack, (self.guest,) = makeStack(1)
        self.clock = self.stack.reactor
        self.forwarder = PortForwarder(ListenReactor(), FakeConnector(), "192.168.65.2", "192.168.65.1")
        self.site = makeAPI(self.stack, self.forwarder)

    def request(self, method, path, body=b""):
        request = DummyRequest(path.lstrip(b"/").split(b"/"))
        request.method = method
        request.path = path
        request.content = io.BytesIO(body)
        result = self.site.getResourceFor(request).render(request)
        return request.responseCode or 200, result

    def connect(self):
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(lambda: transport.disconnected or channel.connectionLost(None))
        return channel, transport

    def status(self, transport):
        return int(transport.value().split(b" ", 2)[1])

    def test_deeplyNested(self):
        """
        Deeply nested JSON (ten thousand levels and more, which the
        parser's recursion would fail on) is a 400, not a 500 with a
        traceback.
        """
        for body in (b"[" * 20000 + b"]" * 20000, b'{"a":' * 10000 + b"1" + b"}" * 10000):
            status, result = self.request(b"POST", EXPOSE, body)
            self.assertEqual(status, 400)
            self.assertIn(b"malformed JSON", result)

    def test_depthCounted(self):
        """
        Brackets inside strings do not count; 32 levels are accepted.
        """
        self.assertEqual(jsonDepth(b'{"a": "[[[[\\"[["}'), 1)
        self.assertEqual(jsonDepth(b"[" * 32 + b"]" * 32), 32)
        status, result = self.request(b"POST", EXPOSE, b"[" * 32 + b"]" * 32)
        self.assertNotIn(b"nested", result)
        status, result = self.request(b"POST", EXPOSE, b"[" * 33 + b"]" * 33)
        self.assertEqual(status, 400)
        self.assertIn(b"nested deeper than 32", result)

    def test_largeBody(self):
        """
        A body past 64 KiB is a 413.
        """
        status, _ = self.request(b"POST", EXPOSE, b" " * (64 * 1024 + 1))
        self.assertEqual(status, 413)

    def test_contentLengthTooLarge(self):
        """
        A Content-Length of 10 MB is answered 413 as soon as the headers
        are in, and the connection closes without reading the body.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /services/forwarder/expose HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 10485760\r\n\r\n" + b"x" * 65536
        )
        self.assertEqual(self.status(transport), 413)
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"x" * 65536)
        self.assertEqual(self.forwarder.forwards(), [])

    def test_chunkedTooLarge(self):
        """
        A chunked body is cut off with 413 once it grows past 64 KiB.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /services/forwarder/expose HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(3):
            channel.dataReceived(b"8000\r\n" + b" " * 0x8000 + b"\r\n")
        self.assertEqual(self.status(transport), 413)
        self.assertTrue(transport.disconnecting)

    def test_smallRequestServed(self):
        """
        A request within the limits is answered over the channel, and the
        connection stays open for the next.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET /leases HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 200)
        self.assertFalse(transport.disconnecting)

    def test_slowHeaders(self):
        """
        A client sending its headers a byte every few seconds (which keeps
        an idle timeout from firing) is answered 408 and closed once 10
        seconds have passed since it connected.
        """
        channel, transport = self.connect()
        for byte in b"GET /leases HTTP/1.1\r\nX-Slow: yes":
            self.clock.advance(0.5)
            if transport.disconnecting:
                break
            channel.dataReceived(bytes([byte]))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.status(transport), 408)
        self.assertLessEqual(self.clock.seconds(), 10.5)

    def test_idleAfterResponse(self):
        """
        After a response, the next request must arrive within 10 seconds
        too: an idle kept-alive connection is closed.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET /leases HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_connectionLimit(self):
        """
        At most 64 connections at once: the 65th is refused; once one
        closes another is accepted.
        """
        channels = [self.connect()[0] for _ in range(MAX_CONNECTIONS)]
        self.assertIsNone(self.site.buildProtocol(None))
        channels[0].connectionLost(None)
        self.assertIsNotNone(self.site.buildProtocol(None))
