"""
Tests for L{vpnkit.httpproxy.rewrite}: where a request goes and what it
becomes for the next hop, the C{CONNECT} vpnkit sends, and the head of
the answer it reads.
"""

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.httpproxy.config import parseProxyURI
from vpnkit.httpproxy.rewrite import (
    RewriteError,
    Target,
    connectRequest,
    connectTarget,
    errorPage,
    forwardHeaders,
    hostHeader,
    parseRequestLine,
    parseResponseHead,
    requestTarget,
    upstreamURI,
)

PROXY = parseProxyURI("http://user:password@proxy:3128")


class TargetTests(SynchronousTestCase):
    def test_absolute(self):
        """
        An absolute URI gives host, port (80 by default) and path.
        """
        self.assertEqual(requestTarget(b"http://A.Example/x?y"), Target("a.example", 80, b"/x?y"))
        self.assertEqual(requestTarget(b"http://a.example:8080"), Target("a.example", 8080, b"/"))
        self.assertEqual(requestTarget(b"http://u:p@a.example/"), Target("a.example", 80, b"/"))

    def test_hostHeader(self):
        """
        An origin-form request goes to its C{Host}; its port, else the
        default.
        """
        self.assertEqual(requestTarget(b"/p", b"a.example:81"), Target("a.example", 81, b"/p"))
        self.assertEqual(requestTarget(b"/p", b"a.example", None, 8080), Target("a.example", 8080, b"/p"))

    def test_defaultHost(self):
        """
        With no C{Host}, the default host (the dialled address) is used;
        without one, the reference's 400 text.
        """
        self.assertEqual(requestTarget(b"/", None, "192.0.2.1", 80), Target("192.0.2.1", 80, b"/"))
        e = self.assertRaises(RewriteError, requestTarget, b"/")
        self.assertEqual(str(e), "request must contain an absolute URI")

    def test_bad(self):
        """
        Other schemes, bad hosts and ports are refused.
        """
        for uri, host in [
            (b"https://a/", None),
            (b"/", b"a b"),
            (b"/", b"a:99999"),
            (b"x", b"a"),
            (b"/\xff", b"\xff"),
        ]:
            self.assertRaises(RewriteError, requestTarget, uri, host)

    def test_connect(self):
        """
        A C{CONNECT} target is C{host:port}, the port required.
        """
        self.assertEqual(connectTarget(b"Origin.Test:443"), Target("origin.test", 443, b""))
        self.assertRaises(RewriteError, connectTarget, b"origin.test")


class RequestLineTests(SynchronousTestCase):
    def test_parts(self):
        """
        A request line gives its method, request-target and version.
        """
        self.assertEqual(
            parseRequestLine(b"GET http://a.example/x?y HTTP/1.1"),
            (b"GET", b"http://a.example/x?y", b"HTTP/1.1"),
        )
        self.assertEqual(
            parseRequestLine(b"CONNECT a.example:443 HTTP/1.0"),
            (b"CONNECT", b"a.example:443", b"HTTP/1.0"),
        )

    def test_notThreeParts(self):
        """
        A line without exactly three parts separated by single spaces has
        none.
        """
        for line in [b"", b"GET", b"GET /", b"GET  / HTTP/1.1", b"GET / HTTP/1.1 x", b"GET /\tHTTP/1.1"]:
            self.assertIsNone(parseRequestLine(line), line)


class RewriteTests(SynchronousTestCase):
    def test_hostHeader(self):
        """
        C{Host} leaves out port 80.
        """
        self.assertEqual(hostHeader(Target("a", 80)), b"a")
        self.assertEqual(hostHeader(Target("a", 81)), b"a:81")

    def test_uri(self):
        """
        A proxy gets the absolute form with the port, an origin the path.
        """
        target = Target("www.mobyproject.org", 80, b"/x?y")
        self.assertEqual(upstreamURI(target, True), b"http://www.mobyproject.org:80/x?y")
        self.assertEqual(upstreamURI(target, False), b"/x?y")

    def test_headers(self):
        """
        Hop-by-hop headers and those C{Connection} names are dropped, the
        guest's C{Proxy-Authorization} replaced, C{Host} set first; the
        rest kept in order.
        """
        headers = [
            (b"Host", [b"old"]),
            (b"User-Agent", [b"whatever"]),
            (b"Connection", [b"keep-alive, X-Private"]),
            (b"X-Private", [b"1"]),
            (b"Keep-Alive", [b"300"]),
            (b"Proxy-Authorization", [b"Basic guest"]),
            (b"Transfer-Encoding", [b"chunked"]),
            (b"Expect", [b"100-continue"]),
            (b"Authorization", [b"basic foobar"]),
        ]
        self.assertEqual(
            forwardHeaders(headers, Target("a", 80), PROXY),
            [
                (b"Host", [b"a"]),
                (b"User-Agent", [b"whatever"]),
                (b"Authorization", [b"basic foobar"]),
                (b"Proxy-Authorization", [b"Basic dXNlcjpwYXNzd29yZA=="]),
            ],
        )
        self.assertEqual(forwardHeaders(headers, Target("a", 80))[-1], (b"Authorization", [b"basic foobar"]))

    def test_upgradeKeepsItsHeaders(self):
        """
        For an upgrade, C{Connection} and C{Upgrade} are kept.
        """
        headers = [(b"Connection", [b"Upgrade"]), (b"Upgrade", [b"websocket"])]
        self.assertEqual(
            forwardHeaders(headers, Target("a", 80), None, (b"connection", b"upgrade"))[1:],
            headers,
        )

    def test_connectRequest(self):
        """
        vpnkit's C{CONNECT} names the target in the line and C{Host}, with
        the proxy's credentials.
        """
        self.assertEqual(
            connectRequest(Target("origin.test", 8443), PROXY),
            b"CONNECT origin.test:8443 HTTP/1.1\r\nHost: origin.test:8443\r\n"
            b"Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==\r\n\r\n",
        )

    def test_responseHead(self):
        """
        The head of an answer is read once complete.
        """
        self.assertIsNone(parseResponseHead(b"HTTP/1.1 200 Conn"))
        self.assertEqual(parseResponseHead(b"HTTP/1.0 200 OK\r\nX: y\r\n\r\nrest"), (200, "OK", 25))
        self.assertEqual(parseResponseHead(b"HTTP/1.1 407\r\n\r\n"), (407, "", 16))
        for bad in [b"SSH-2.0", b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200" + b"x" * 20000]:
            self.assertRaises(RewriteError, parseResponseHead, bad)

    def test_errorPage(self):
        """
        Error pages escape the message.
        """
        page = errorPage(403, "Forbidden", "no <script>")
        self.assertIn(b"403 Forbidden", page)
        self.assertIn(b"no &lt;script&gt;", page)
