"""
Tests for L{vpnkit.httpproxy.config}: the proxy JSON, upstream addresses,
host matching for C{exclude} and C{allow}, and re-reading the file with
L{vpnkit.watch.WatchedFile}.
"""

import json
import os

from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import tempDir
from vpnkit.config import ConfigError
from vpnkit.httpproxy.config import (
    DEFAULT_ALLOW_ERROR_MSG,
    HTTPProxyConfig,
    ProxyURI,
    parseHostPatterns,
    parseHTTPConfig,
    parseProxyURI,
)
from vpnkit.watch import WatchedFile


class ProxyURITests(SynchronousTestCase):
    def test_hostPort(self):
        """
        A bare C{host:port} is a plain HTTP proxy.
        """
        self.assertEqual(parseProxyURI("proxy.corp:3128"), ProxyURI("http", "proxy.corp", 3128))

    def test_credentials(self):
        """
        Credentials in the URI (percent-decoded) become a Basic
        C{Proxy-Authorization} value.
        """
        uri = parseProxyURI("http://user:pass%40word@127.0.0.1:3128")
        self.assertEqual((uri.username, uri.password), ("user", "pass@word"))
        self.assertEqual(uri.authorization, b"Basic dXNlcjpwYXNzQHdvcmQ=")
        self.assertEqual(
            parseProxyURI("http://user:password@127.0.0.1:1").authorization,
            b"Basic dXNlcjpwYXNzd29yZA==",
        )

    def test_noCredentials(self):
        """
        Without credentials there is no C{Proxy-Authorization}.
        """
        self.assertIsNone(parseProxyURI("http://127.0.0.1:3128").authorization)

    def test_https(self):
        """
        An C{https://} upstream is reached over TLS; the host is kept for
        certificate checks.
        """
        uri = parseProxyURI("https://Proxy.Corp:3129/")
        self.assertTrue(uri.tls)
        self.assertEqual((uri.host, uri.port), ("proxy.corp", 3129))
        self.assertFalse(parseProxyURI("proxy:1").tls)

    def test_none(self):
        """
        C{null} and empty strings are no proxy.
        """
        self.assertIsNone(parseProxyURI(None))
        self.assertIsNone(parseProxyURI("  "))

    def test_bad(self):
        """
        Other schemes, missing ports, paths and non-strings are errors
        naming the key.
        """
        for bad in ["socks5://h:1", "http://h", "h", "http://h:99999", "http://h:1/path", 3128, "http://:1"]:
            with self.assertRaises(ConfigError, msg=bad) as e:
                parseProxyURI(bad, "http")
            self.assertIn("http", str(e.exception))

    def test_strHidesPassword(self):
        """
        The URI's string (for logs) leaves out the credentials.
        """
        self.assertEqual(str(parseProxyURI("http://u:secret@h:1")), "http://h:1")
        self.assertNotIn("secret", repr(parseProxyURI("http://u:secret@h:1")))


class MatchTests(SynchronousTestCase):
    """
    The reference's C{no_proxy} cases, then wildcards and ports.
    """

    def matches(self, patterns, host, port=None):
        return parseHostPatterns(patterns, "exclude").matches(host, port)

    def test_address(self):
        """
        An address matches itself.
        """
        self.assertTrue(self.matches("10.0.0.1", "10.0.0.1"))

    def test_cidr(self):
        """
        A CIDR matches the addresses inside it only.
        """
        self.assertTrue(self.matches("10.0.0.0/24", "10.0.0.1"))
        self.assertFalse(self.matches("10.0.0.0/24", "192.168.0.1"))

    def test_nameSuffix(self):
        """
        A name matches itself and every name below it, by whole labels.
        """
        self.assertTrue(self.matches("mit.edu", "dave.mit.edu"))
        self.assertTrue(self.matches("mit.edu", "MIT.EDU."))
        self.assertFalse(self.matches("mit.edu", "www.mobyproject.org"))
        self.assertFalse(self.matches("mit.edu", "summit.edu"))

    def test_wildcardLabel(self):
        """
        C{*.mit.edu} and C{.mit.edu} match a name below C{mit.edu}, not
        C{mit.edu} itself; a star in the middle matches one label.
        """
        self.assertTrue(self.matches("*.mit.edu", "dave.mit.edu"))
        self.assertTrue(self.matches(".mit.edu", "dave.mit.edu"))
        self.assertTrue(self.matches("*.mit.edu", "a.dave.mit.edu"))
        self.assertFalse(self.matches("*.mit.edu", "mit.edu"))
        self.assertTrue(self.matches("www.*.org", "www.mobyproject.org"))
        self.assertFalse(self.matches("www.*.org", "ftp.mobyproject.org"))

    def test_list(self):
        """
        C{exclude} is separated by commas and/or white space.
        """
        patterns = "*.local, 169.254.0.0/16 10.0.0.1"
        self.assertTrue(self.matches(patterns, "dave.local"))
        self.assertTrue(self.matches(patterns, "169.254.0.1"))
        self.assertFalse(self.matches(patterns, "10.0.0.2"))
        self.assertFalse(self.matches(patterns, "www.mobyproject.org"))

    def test_addressesOnlyMatchAddresses(self):
        """
        Address patterns never match names, and name patterns never match
        addresses.
        """
        self.assertFalse(self.matches("10.0.0.0/8", "ten.example"))
        self.assertFalse(self.matches("0.1", "10.0.0.1"))

    def test_star(self):
        """
        C{*} matches every host.
        """
        self.assertTrue(self.matches("*", "anything.example"))
        self.assertTrue(self.matches("*", "192.0.2.1"))

    def test_ports(self):
        """
        A pattern ending in C{:PORT} matches that port only; without a port
        it matches any.
        """
        self.assertTrue(self.matches("example.com:8080", "www.example.com", 8080))
        self.assertFalse(self.matches("example.com:8080", "www.example.com", 80))
        self.assertTrue(self.matches("10.0.0.0/8:443", "10.1.2.3", 443))
        self.assertFalse(self.matches("10.0.0.0/8:443", "10.1.2.3", 80))
        self.assertTrue(self.matches("example.com", "example.com", 1))

    def test_ipv6(self):
        """
        IPv6 addresses and networks match IPv6 addresses (bare, or in
        brackets with a port); an IPv4 network never matches an IPv6
        address.
        """
        self.assertTrue(self.matches("2001:db8::/32", "2001:db8::1"))
        self.assertFalse(self.matches("2001:db8::/32", "2001:db9::1"))
        self.assertTrue(self.matches("2001:db8::1", "[2001:db8::1]", 80))
        self.assertTrue(self.matches("[2001:db8::1]:443", "2001:db8::1", 443))
        self.assertFalse(self.matches("[2001:db8::1]:443", "2001:db8::1", 80))
        self.assertFalse(self.matches("0.0.0.0/0", "2001:db8::1"))
        self.assertRaises(ConfigError, parseHostPatterns, "[2001:db8::1", "exclude")
        self.assertRaises(ConfigError, parseHostPatterns, "[2001:db8::1]x", "exclude")

    def test_allowList(self):
        """
        C{allow} is a list of patterns.
        """
        matcher = parseHostPatterns(["localhost", "*.corp"], "allow")
        self.assertTrue(matcher.matches("localhost"))
        self.assertTrue(matcher.matches("git.corp"))
        self.assertFalse(matcher.matches("example.com"))

    def test_badPattern(self):
        """
        A pattern that is not a name, address or CIDR is an error naming
        the key.
        """
        for bad in ["exa mple:99999", "a..b/c", "bad!name", ".", ["ok", 3]]:
            with self.assertRaises(ConfigError, msg=bad) as e:
                parseHostPatterns(bad, "exclude")
            self.assertIn("exclude", str(e.exception))

    def test_noneMatchesNothing(self):
        """
        An empty list matches nothing, not even a missing host.
        """
        self.assertFalse(parseHostPatterns(None, "exclude").matches("x"))
        self.assertFalse(parseHostPatterns("*", "exclude").matches(None))


class ParseConfigTests(SynchronousTestCase):
    def test_defaults(self):
        """
        C{{}} is a configuration with no upstreams, ports 80 and 443, and
        no allow list.
        """
        config = parseHTTPConfig("{}")
        self.assertEqual(config, HTTPProxyConfig())
        self.assertEqual(config.transparentHTTPPorts, {80})
        self.assertEqual(config.transparentHTTPSPorts, {443})
        self.assertTrue(config.allowed("anything"))

    def test_full(self):
        """
        Every key of the reference's JSON is read.
        """
        text = json.dumps(
            {
                "http": "proxy:3128",
                "https": "https://u:p@proxy:3129",
                "exclude": "*.local",
                "transparent_http_ports": [80, 8080],
                "transparent_https_ports": [443, 8443],
                "allow_enabled": True,
                "allow": ["*.corp"],
                "allow_error_msg": "no %s, %s!",
            }
        )
        config = parseHTTPConfig(text)
        self.assertEqual(config.http, ProxyURI("http", "proxy", 3128))
        self.assertEqual(config.https, ProxyURI("https", "proxy", 3129, "u", "p"))
        self.assertTrue(config.excluded("printer.local"))
        self.assertEqual(config.transparentHTTPPorts, {80, 8080})
        self.assertEqual(config.transparentHTTPSPorts, {443, 8443})
        self.assertTrue(config.allowed("git.corp"))
        self.assertFalse(config.allowed("example.com"))
        self.assertEqual(config.forbiddenMessage("x.org"), "no x.org, x.org!")

    def test_defaultMessage(self):
        """
        Without C{allow_error_msg} the reference's message is used.
        """
        self.assertEqual(parseHTTPConfig("{}").allowErrorMsg, DEFAULT_ALLOW_ERROR_MSG)

    def test_asJSON(self):
        """
        The configuration reads back as minified JSON of what was given.
        """
        config = parseHTTPConfig('{ "http" : "proxy:3128", "x": [1, 2] }')
        self.assertEqual(config.asJSON(), '{"http":"proxy:3128","x":[1,2]}')

    def test_errors(self):
        """
        Bad JSON and bad values are errors naming the file and key.
        """
        cases = {
            "{": "not valid JSON",
            "[]": "expected a JSON object",
            '{"http": "ftp://x:1"}': "http",
            '{"transparent_http_ports": [0]}': "transparent_http_ports",
            '{"transparent_https_ports": "443"}': "transparent_https_ports",
            '{"allow_enabled": "yes"}': "allow_enabled",
            '{"allow": [1]}': "allow",
            '{"allow_error_msg": 3}': "allow_error_msg",
        }
        for text, expected in cases.items():
            with self.assertRaises(ConfigError, msg=text) as e:
                parseHTTPConfig(text, "/etc/http.json")
            self.assertIn("/etc/http.json", str(e.exception))
            self.assertIn(expected, str(e.exception))


class RereadTests(SynchronousTestCase):
    """
    C{--http} is re-read with L{WatchedFile}: a change applies, a bad file
    keeps the previous configuration with one log line, removal disables.
    """

    def setUp(self):
        self.path = os.path.join(tempDir(self), "http.json")
        self.write({"http": "a:1"})
        self.clock = task.Clock()
        self.values = []
        self.watcher = WatchedFile(self.path, parseHTTPConfig, self.values.append, self.clock)
        self.watcher.startService()
        self.addCleanup(self.watcher.stopService)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def write(self, value):
        with open(self.path, "w") as f:
            f.write(value if isinstance(value, str) else json.dumps(value))

    def test_change(self):
        """
        A changed file is parsed and applied at the next poll.
        """
        self.write({"http": "b:2"})
        self.clock.advance(1)
        self.assertEqual([c.http.host for c in self.values], ["b"])

    def test_badKeepsPrevious(self):
        """
        A file that no longer parses is not applied, and is logged once.
        """
        self.write({"http": "nope"})
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.values, [])
        errors = [e for e in self.events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(errors), 1)

    def test_removed(self):
        """
        A removed file disables the proxy (C{None}).
        """
        os.unlink(self.path)
        self.clock.advance(1)
        self.assertEqual(self.values, [None])
