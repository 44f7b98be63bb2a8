"""
Tests for L{vpnkit.protocols.dnsconfig}: the C{--dns} file and the host's
C{resolv.conf}.  The reference's C{dns_forward_test} config cases are here
by name.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import ConfigError
from vpnkit.protocols.dnsconfig import DNSConfig, Nameserver, parseDNSConfig, parseResolvConf

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None)


class ParserTests(SynchronousTestCase):
    """
    L{parseDNSConfig}: the reference's file syntax.
    """

    def test_portsAndSearch(self):
        """
        C{nameserver IP} is port 53, C{IP#PORT} another; C{search} lists
        the domains (reference config test 1).
        """
        config = parseDNSConfig("nameserver 10.0.0.2\nnameserver 1.2.3.4#54\nsearch a b c\n")
        self.assertEqual(
            config, DNSConfig((Nameserver("10.0.0.2"), Nameserver("1.2.3.4", 54)), ("a", "b", "c"))
        )

    def test_one(self):
        """
        One line, one server (reference config test 2).
        """
        self.assertEqual(parseDNSConfig("nameserver 10.0.0.2\n").servers, (Nameserver("10.0.0.2"),))

    def test_zoneTimeoutOrder(self):
        """
        C{zone}, C{timeout} (ms) and C{order} describe the nameserver above
        them; comments and blank lines are ignored (reference config test
        3).
        """
        text = (
            "# a pretend VPN zone with a private nameserver\n"
            "nameserver 1.2.3.4\n"
            "zone mirage.io foo.com\n"
            "timeout 5000\n"
            "order 1\n"
            "\n"
            "# a default nameserver\n"
            "nameserver 8.8.8.8\n"
        )
        self.assertEqual(
            parseDNSConfig(text).servers,
            (
                Nameserver("1.2.3.4", 53, ("mirage.io", "foo.com"), 5.0, 1),
                Nameserver("8.8.8.8"),
            ),
        )

    def test_extras(self):
        """
        IPv6 servers, trailing comments, zone names with a final dot or
        capitals, C{assume-offline-after}, unknown keywords and settings
        before any nameserver (ignored), and only the first C{search}.
        """
        text = (
            "timeout 10\n"
            "nameserver 2001:db8::53\n"
            "nameserver [2001:db8::54]#5353\n"
            "zone Corp.Example. # the VPN\n"
            "search one.test\n"
            "search two.test\n"
            "assume-offline-after 2\n"
            "options whatever\n"
        )
        config = parseDNSConfig(text)
        self.assertEqual(
            config.servers,
            (Nameserver("2001:db8::53"), Nameserver("2001:db8::54", 5353, ("corp.example",))),
        )
        self.assertEqual((config.search, config.assumeOfflineAfter), (("one.test",), 2))

    def test_errors(self):
        """
        A bad address, port or number stops with the file name, the line
        and the problem.
        """
        for text, problem in [
            ("nameserver 1.2.3\n", "line 1: not an address"),
            ("\nnameserver 1.2.3.4#99999\n", "line 2: not an address"),
            ("nameserver 1.2.3.4 5.6.7.8\n", "takes one address"),
            ("nameserver 1.2.3.4\ntimeout soon\n", "line 2: timeout takes one number"),
            ("nameserver 1.2.3.4\ntimeout -1\n", "timeout must be at least 0"),
            ("assume-offline-after many\n", "assume-offline-after takes one number"),
            ("search " + "x" * 64 + ".test\n", "line 1: search: "),
            ("search caf\u00e9.test\n", "line 1: search: "),
        ]:
            e = self.assertRaises(ConfigError, parseDNSConfig, text, "/etc/vpnkit/dns")
            self.assertIn("/etc/vpnkit/dns: ", str(e))
            self.assertIn(problem, str(e))

    @FUZZ
    @given(st.text(max_size=300))
    def test_fuzz(self, text):
        """
        Any text parses to a L{DNSConfig} or raises L{ConfigError}, nothing
        else.
        """
        try:
            config = parseDNSConfig(text)
        except ConfigError:
            return
        self.assertIsInstance(config, DNSConfig)

    @FUZZ
    @given(
        st.lists(
            st.sampled_from(
                ["nameserver", "zone", "timeout", "order", "search", "assume-offline-after", "#"]
            ).flatmap(
                lambda k: st.tuples(
                    st.just(k),
                    st.lists(
                        st.sampled_from(["1.2.3.4", "1.2.3.4#53", "::1", "5", "-3", "a.b", "x#", "#"]),
                        max_size=3,
                    ),
                )
            ),
            max_size=12,
        )
    )
    def test_fuzzKeywords(self, lines):
        """
        Keyword lines with arguments of every kind parse or raise
        L{ConfigError}; parsed servers have valid ports and non-negative
        timeouts.
        """
        text = "\n".join(" ".join([k, *args]) for k, args in lines)
        try:
            config = parseDNSConfig(text)
        except ConfigError:
            return
        for server in config.servers:
            self.assertTrue(0 < server.port < 65536)
            self.assertTrue(server.timeout is None or server.timeout >= 0)


class ResolvConfTests(SynchronousTestCase):
    """
    L{parseResolvConf}: the host's resolver configuration, leniently.
    """

    def test_parse(self):
        """
        Nameservers, the search list (or domain) and C{options timeout:N}
        are read; scoped addresses and garbage are skipped.
        """
        text = (
            "# generated\n"
            "nameserver 127.0.0.53\n"
            "nameserver fe80::1%eth0\n"
            "nameserver bogus\n"
            "nameserver 2001:db8::1 ; comment\n"
            "search corp.example home.example\n"
            "options edns0 timeout:2 attempts:3\n"
        )
        config = parseResolvConf(text)
        self.assertEqual(
            [(s.address, s.port, s.timeout) for s in config.servers],
            [("127.0.0.53", 53, 2.0), ("2001:db8::1", 53, 2.0)],
        )
        self.assertEqual(config.search, ("corp.example", "home.example"))

    @FUZZ
    @given(st.text(max_size=300))
    def test_fuzz(self, text):
        """
        Any text gives a L{DNSConfig}; it never raises.
        """
        self.assertIsInstance(parseResolvConf(text), DNSConfig)
