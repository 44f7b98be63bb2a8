"""
Tests for L{vpnkit.httpproxy.api} (the C{--http-api-path} answers, over a
real twisted.web channel) and the C{--http}, C{--http-api-path} and
C{--http-ca} options of L{vpnkit.tap}.
"""

import io
import json
import os
import subprocess
import sys

from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.fakes import tempDir
from tests.helpers import FakeHostNetwork, ip
from vpnkit.config import StackConfig
from vpnkit.httpproxy.api import makeHTTPConfigAPI
from vpnkit.httpproxy.config import parseHTTPConfig
from vpnkit.httpproxy.proxy import HTTPProxy
from vpnkit.protocols.tcp.layer import Flow
from vpnkit.tap import Options, makeService


class APITests(SynchronousTestCase):
    def setUp(self):
        self.proxy = HTTPProxy(StackConfig(), FakeHostNetwork(), task.Clock())
        self.site = makeHTTPConfigAPI(self.proxy)

    def exchange(self, data):
        """
        Send raw request bytes; return the raw answer.
        """
        protocol = self.site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        protocol.connectionLost(None)
        return transport.value()

    def post(self, body, chunked=False):
        if chunked:
            framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            head = b"POST /http_proxy.json HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            return self.exchange(head + framed)
        return self.exchange(
            b"POST /http_proxy.json HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    def test_getNone(self):
        """
        With no configuration, GET answers C{404 None set}.
        """
        answer = self.exchange(b"GET /http_proxy.json HTTP/1.0\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.0 404 None set\r\n"), answer)
        self.assertTrue(answer.endswith(b"None set"))

    def test_postThenGet(self):
        """
        A posted configuration is in force at once and reads back as
        minified JSON.
        """
        answer = self.post(b'{"http": "proxy:3128", "exclude": "*.local"}')
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertEqual(self.proxy.config.http.host, "proxy")
        answer = self.exchange(b"GET /http_proxy.json HTTP/1.0\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.0 200 OK\r\n"), answer)
        self.assertTrue(answer.endswith(b'{"http":"proxy:3128","exclude":"*.local"}'), answer)

    def test_postChunked(self):
        """
        A chunked body is accepted.
        """
        self.assertIn(b" 200 OK", self.post(b'{"https": "proxy:3129"}', chunked=True))
        self.assertEqual(self.proxy.config.https.port, 3129)

    def test_postBad(self):
        """
        A body that does not parse is refused with the reference's text and
        the configuration in force is kept.
        """
        self.post(b'{"http": "proxy:3128"}')
        answer = self.post(b'{"http": "nope"')
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad_request\r\n"), answer)
        self.assertIn(b"Failed to parse .json: ", answer)
        self.assertEqual(self.proxy.config.http.host, "proxy")

    def test_postEnablesExplicitProxy(self):
        """
        A configuration posted when none existed turns the gateway's proxy
        ports on.
        """
        flow = Flow(ip("192.168.65.3"), 40000, ip("192.168.65.1"), 3128)
        self.assertIsNone(self.proxy.route(flow))
        self.post(b"{}")
        self.assertIsNotNone(self.proxy.route(flow))

    def test_unknown(self):
        """
        Other paths and methods answer C{404 Unknown} with a hint.
        """
        for request in [
            b"GET /other HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"DELETE /http_proxy.json HTTP/1.0\r\n\r\n",
            b"GET /http_proxy.json/x HTTP/1.0\r\n\r\n",
        ]:
            answer = self.exchange(request)
            self.assertTrue(answer.startswith(b"HTTP/1.0 404 Unknown\r\n"), answer)
            self.assertTrue(answer.endswith(b"Try {GET,POST} /http_proxy.json"), answer)


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempDir(self)
        self.sock = os.path.join(self.dir, "eth.sock")
        self.patch(os, "environ", {})
        self.patch(sys, "stderr", io.StringIO())

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, *args):
        options = Options()
        options.parseOptions(["--ethernet", self.sock, *args])
        return options

    def test_httpFile(self):
        """
        C{--http} is read at start-up.
        """
        options = self.parse("--http", self.write("http.json", '{"http": "p:1"}'))
        self.assertEqual(options.httpConfig.http.host, "p")

    def test_httpFileBad(self):
        """
        A C{--http} file that does not parse stops start-up naming the flag.
        """
        path = self.write("http.json", '{"http": 1}')
        e = self.assertRaises(usage.UsageError, self.parse, "--http", path)
        self.assertIn("--http", str(e))

    def test_httpFileMissing(self):
        """
        A missing C{--http} file is tolerated (picked up when it appears).
        """
        options = self.parse("--http", os.path.join(self.dir, "none.json"))
        self.assertIsNone(options.httpConfig)

    def test_apiPath(self):
        """
        C{--http-api-path} in a missing directory stops start-up.
        """
        e = self.assertRaises(usage.UsageError, self.parse, "--http-api-path", "/nonexistent/d/s")
        self.assertIn("--http-api-path", str(e))

    def test_caBad(self):
        """
        A C{--http-ca} file with no certificate stops start-up.
        """
        path = self.write("ca.pem", "not a certificate")
        e = self.assertRaises(usage.UsageError, self.parse, "--http-ca", path)
        self.assertIn("--http-ca", str(e))

    def test_ca(self):
        """
        C{--http-ca} loads the PEM certificates as the trust root.
        """
        key = os.path.join(self.dir, "ca.key")
        cert = os.path.join(self.dir, "ca.pem")
        try:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                 "-out", cert, "-days", "1", "-subj", "/CN=test CA"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as e:
            raise SkipTest(f"openssl cannot make a test CA: {e}")
        self.assertIsNotNone(self.parse("--http-ca", cert).httpTrustRoot)

    def test_makeService(self):
        """
        With C{--http} the stack routes through the proxy with the file's
        configuration, the file is watched, and C{--http-api-path} listens.
        """
        options = self.parse(
            "--http", self.write("http.json", '{"http": "p:1"}'),
            "--http-api-path", os.path.join(self.dir, "http.sock"),
        )  # fmt: skip
        service = makeService(options, MemoryReactorClock())
        proxy = service.stack.httpProxy
        self.assertIn(proxy, service.stack.tcpRouter.routes)
        self.assertEqual(proxy.config.http.host, "p")
        self.assertIs(service.stack.counters.http, proxy.counters)
        self.assertIsNotNone(service.getServiceNamed("http"))
        self.assertIsNotNone(service.getServiceNamed("http-api"))

    def test_noProxyByDefault(self):
        """
        Without C{--http} or C{--http-api-path} there is no proxy route.
        """
        service = makeService(self.parse(), MemoryReactorClock())
        self.assertIsNone(service.stack.httpProxy)
        json.dumps(service.stack.stats())
