"""
Tests for L{vpnkit.api}: the HTTP control API's resources, driven with
in-memory requests.
"""

import io
import json

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.helpers import makeStack
from tests.test_forwards import FakeConnector, ListenReactor
from vpnkit.api import makeAPI
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
