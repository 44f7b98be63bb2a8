"""
Tests for L{vpnkit.protocols.dnsforward}: the C{--dns} and C{resolv.conf}
parsers, and the upstream L{Forwarder} (server selection, waiting, cache,
offline detection, truncation) over fake host sockets and a L{task.Clock}.
The reference's C{dns_forward_test} cases are here by name.
"""

import errno

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.names import dns
from twisted.names.error import DNSQueryTimeoutError
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import ConfigError
from vpnkit.counters import StackCounters
from vpnkit.protocols.dns import RcodeError
from vpnkit.protocols.dnsforward import (
    AnswerCache,
    DNSConfig,
    Forwarder,
    Nameserver,
    NoUpstreamError,
    parseDNSConfig,
    parseResolvConf,
)

from tests.fakesockets import FakeDatagramSockets, portUnreachable
from tests.helpers import FakeHostNetwork
from tests.test_dns import aRecord, soa

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


class ForwarderMixin:
    """
    A L{Forwarder} over fake sockets: the test plays the upstream servers.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.sockets = FakeDatagramSockets()
        self.network = FakeHostNetwork()
        self.counters = StackCounters()

    def forwarder(self, *servers, offlineAfter=5):
        import random

        return Forwarder(
            DNSConfig(tuple(servers), (), offlineAfter),
            self.sockets,
            self.network,
            self.clock,
            self.counters,
            rng=random.Random(1),
        )

    def asked(self, address):
        """
        The live sockets that have sent to C{address}, with the query each
        sent last.
        """
        result = []
        for sock in self.sockets.live():
            for sent in sock.sent:
                if sent.host == address:
                    message = dns.Message()
                    message.fromStr(sent.data)
                    result.append((sock, message, sent))
        return result

    def answer(self, address, answers=(), rCode=dns.OK, authority=(), trunc=False, port=53, **kw):
        """
        Every pending query to C{address} gets this reply.
        """
        for sock, message, sent in self.asked(address):
            reply = dns.Message(id=message.id, answer=1, rCode=rCode, trunc=trunc, maxSize=0)
            reply.queries = message.queries
            reply.answers = list(answers)
            reply.authority = list(authority)
            sock.deliver(reply.toStr(), kw.get("source", address), port)

    def query(self, forwarder, name=b"foo", type=dns.A):
        return forwarder.query(dns.Query(name, type, dns.IN))

    def addresses(self, result):
        return [r.payload.dottedQuad() for r in result[0]]


class SelectionTests(ForwarderMixin, SynchronousTestCase):
    """
    Which servers are asked, and whose answer wins.
    """

    def test_respondsCorrectly(self):
        """
        A server's answer is the result, with the records marked not
        authoritative (vpnkit relays) (reference "Server responds
        correctly").  The query carries RD and EDNS0.
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        d = self.query(f)
        [(sock, message, sent)] = self.asked("192.0.2.1")
        self.assertEqual((message.recDes, [r.type for r in message.additional]), (1, [dns.OPT]))
        record = aRecord(b"foo", "127.0.0.1")
        record.auth = True
        self.answer("192.0.2.1", [record])
        result = self.successResultOf(d)
        self.assertEqual(self.addresses(result), ["127.0.0.1"])
        self.assertFalse(result[0][0].auth)
        self.assertTrue(sock.closed)

    def test_zone(self):
        """
        A server whose zone matches is the only one asked (reference "Zone
        config respected").
        """
        f = self.forwarder(Nameserver("192.0.2.1", zones=("foo",)), Nameserver("192.0.2.2"))
        d = self.query(f, b"www.foo")
        self.assertEqual(len(self.asked("192.0.2.2")), 0)
        self.answer("192.0.2.1", [aRecord(b"www.foo", "192.168.1.1")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.168.1.1"])

    def test_zoneLabels(self):
        """
        Zones match whole labels: C{foo} does not match C{barfoo}.
        """
        f = self.forwarder(Nameserver("192.0.2.1", zones=("foo",)), Nameserver("192.0.2.2"))
        self.assertEqual([s.address for s in f.candidates("barfoo")], ["192.0.2.1", "192.0.2.2"])
        self.assertEqual([s.address for s in f.candidates("a.b.foo")], ["192.0.2.1"])

    def test_order(self):
        """
        Every candidate is asked at once; the earlier C{order} group's
        answer wins even when it comes second (reference "Server order").
        """
        f = self.forwarder(Nameserver("192.0.2.1", order=1), Nameserver("192.0.2.2", order=0))
        d = self.query(f)
        self.assertEqual((len(self.asked("192.0.2.1")), len(self.asked("192.0.2.2"))), (1, 1))
        self.answer("192.0.2.1", [aRecord(b"foo", "8.8.8.8")])
        self.assertNoResult(d)
        self.answer("192.0.2.2", [aRecord(b"foo", "192.168.1.1")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.168.1.1"])

    def test_laterGroupAfterFailure(self):
        """
        When the first group fails, the next group's answer is used.
        """
        f = self.forwarder(Nameserver("192.0.2.1", order=0), Nameserver("192.0.2.2", order=1))
        d = self.query(f)
        self.answer("192.0.2.1", rCode=dns.ESERVER)
        self.answer("192.0.2.2", [aRecord(b"foo", "192.0.2.99")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.0.2.99"])

    def test_toleratesBadServer(self):
        """
        A fast NXDOMAIN does not beat a slower answer from another server
        of the same group (reference "Tolerate bad server").
        """
        f = self.forwarder(Nameserver("192.0.2.1"), Nameserver("192.0.2.2"))
        d = self.query(f)
        self.answer("192.0.2.2", rCode=dns.ENAME)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.answer("192.0.2.1", [aRecord(b"foo", "192.0.2.7")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.0.2.7"])

    def test_bestFailure(self):
        """
        When nobody has an answer, NODATA beats NXDOMAIN beats SERVFAIL
        beats silence, and the failure keeps its rcode and authority.
        """
        servers = [Nameserver(f"192.0.2.{n}", timeout=1.0) for n in (1, 2, 3)]
        f = self.forwarder(*servers)
        d = self.query(f)
        self.answer("192.0.2.1", rCode=dns.ESERVER)
        self.answer("192.0.2.2", rCode=dns.ENAME, authority=[soa()])
        self.clock.advance(1)
        failure = self.failureResultOf(d, RcodeError)
        self.assertEqual((failure.value.rCode, len(failure.value.authority)), (dns.ENAME, 1))
        d = self.query(f, b"bar")
        self.answer("192.0.2.2", rCode=dns.ENAME)
        self.answer("192.0.2.3", authority=[soa()])
        self.answer("192.0.2.1", rCode=dns.ESERVER)
        self.assertEqual(self.failureResultOf(d, RcodeError).value.rCode, dns.OK)

    def test_noServers(self):
        """
        With no servers configured the query fails at once.
        """
        self.failureResultOf(self.query(self.forwarder()), NoUpstreamError)


class ExchangeTests(ForwarderMixin, SynchronousTestCase):
    """
    One server: retransmission, timeout, bad replies, errors, TCP.
    """

    def test_retransmission(self):
        """
        The query is sent at 0, 1 and 2 s within a 3 s timeout, on one
        fresh socket with one id; at 3 s the query fails and the socket is
        closed.
        """
        f = self.forwarder(Nameserver("192.0.2.1", timeout=3.0))
        d = self.query(f)
        [sock] = self.sockets.opened
        self.clock.advance(2.5)
        self.assertEqual(len(sock.sent), 3)
        self.assertEqual(len({s.data for s in sock.sent}), 1)
        self.clock.advance(0.5)
        self.failureResultOf(d, DNSQueryTimeoutError)
        self.assertTrue(sock.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((self.counters.dns.upstreamRetransmits, self.counters.dns.upstreamTimeouts), (2, 1))

    def test_queryBytes(self):
        """
        The exact query sent upstream: a random id (from the injected
        generator), RD, the question as asked, and an OPT record announcing
        4096 bytes; over TCP the same bytes, length-prefixed.
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        self.query(f, b"www.Example.test", dns.AAAA)
        [(_, _, sent)] = self.asked("192.0.2.1")
        expected = bytes.fromhex(
            "44cb0100000100000000000103777777074578616d706c65047465737400001c0001"
            "0000291000000000000000"
        )
        self.assertEqual((sent.data, sent.port), (expected, 53))
        self.answer("192.0.2.1", trunc=True)
        transport = self.network.succeed()
        self.assertEqual(transport.value(), len(expected).to_bytes(2, "big") + expected)

    def test_timeoutZero(self):
        """
        C{timeout 0} sends exactly once (reference "Per-server timeouts").
        """
        f = self.forwarder(Nameserver("192.0.2.1", timeout=0.0))
        d = self.query(f)
        self.clock.advance(0)
        self.failureResultOf(d, DNSQueryTimeoutError)
        self.assertEqual(len(self.sockets.opened[0].sent), 1)

    def test_badRepliesIgnored(self):
        """
        Replies from another address or port, with another id or another
        question, or not DNS at all, are ignored (reference "Bad server
        responses are ignored").
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        d = self.query(f)
        [(sock, message, _)] = self.asked("192.0.2.1")

        def reply(id=message.id, name=b"foo"):
            r = dns.Message(id=id, answer=1)
            r.queries = [dns.Query(name, dns.A, dns.IN)]
            r.answers = [aRecord(name, "192.0.2.66")]
            return r.toStr()

        sock.deliver(reply(), "192.0.2.9", 53)
        sock.deliver(reply(), "192.0.2.1", 5353)
        sock.deliver(reply(id=message.id ^ 1), "192.0.2.1", 53)
        sock.deliver(reply(name=b"this.is.a.bad.question"), "192.0.2.1", 53)
        sock.deliver(b"\x00", "192.0.2.1", 53)
        self.assertNoResult(d)
        self.assertEqual(self.counters.dns.upstreamBadReplies, 5)
        sock.deliver(reply(), "192.0.2.1", 53)
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.0.2.66"])

    def test_icmpEndsEarly(self):
        """
        ICMP port unreachable from the server ends its query at once.
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        d = self.query(f)
        [sock] = self.sockets.opened
        sock.fail(portUnreachable("192.0.2.1", 53))
        self.failureResultOf(d, ConnectionError)

    def test_socketUnavailable(self):
        """
        No socket for the query (descriptors exhausted): it fails at once.
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        self.sockets.openError = OSError(errno.EMFILE, "Too many open files")
        self.failureResultOf(self.query(f), OSError)

    def test_truncatedRetriedOverTCP(self):
        """
        A reply with TC set over UDP is asked again over TCP (same
        question and id, length-prefixed), within what is left of the
        timeout; the TCP answer is the result.
        """
        f = self.forwarder(Nameserver("192.0.2.1", timeout=4.0))
        d = self.query(f)
        self.clock.advance(1.5)
        self.answer("192.0.2.1", trunc=True)
        [connect] = self.network.connects
        self.assertEqual((connect.host, connect.port, connect.timeout), ("192.0.2.1", 53, 2.5))
        transport = self.network.succeed()
        sent = transport.value()
        message = dns.Message()
        message.fromStr(sent[2:])
        self.assertEqual(int.from_bytes(sent[:2], "big"), len(sent) - 2)
        reply = dns.Message(id=message.id, answer=1, maxSize=0)
        reply.queries = message.queries
        reply.answers = [aRecord(b"foo", f"198.51.100.{i}") for i in range(1, 61)]
        data = reply.toStr()
        connect.protocol.dataReceived(len(data).to_bytes(2, "big") + data)
        self.assertEqual(len(self.successResultOf(d)[0]), 60)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.dns.upstreamTCP, 1)

    def test_tcpConnectTimesOut(self):
        """
        A TCP retry still connecting when the time is up is cancelled, and
        a connection that completes anyway is closed at once, unused.
        """
        f = self.forwarder(Nameserver("192.0.2.1", timeout=2.0))
        d = self.query(f)
        self.answer("192.0.2.1", trunc=True)
        [connect] = self.network.connects
        self.clock.advance(2)
        self.failureResultOf(d, DNSQueryTimeoutError)
        self.assertTrue(connect.deferred.called)
        transport = StringTransport()
        connect.protocol.makeConnection(transport)
        self.assertEqual((transport.value(), transport.disconnecting), (b"", True))

    def test_tcpRefused(self):
        """
        A TCP retry the server refuses fails the query.
        """
        from twisted.internet.error import ConnectionRefusedError

        f = self.forwarder(Nameserver("192.0.2.1"))
        d = self.query(f)
        self.answer("192.0.2.1", trunc=True)
        self.network.fail(ConnectionRefusedError())
        self.failureResultOf(d, ConnectionRefusedError)


class OfflineTests(ForwarderMixin, SynchronousTestCase):
    """
    Servers that stop answering are not waited for.
    """

    def test_toleratesBrokenServer(self):
        """
        With C{assume-offline-after 1}, a server that let a query time out
        (two sends) is offline: the next query, which the good server
        answers with NXDOMAIN, is answered at once instead of waiting for
        it, though it is still asked; a reply brings it back (reference
        "Tolerate broken server").
        """
        good, dead = Nameserver("192.0.2.1", timeout=2.0), Nameserver("192.0.2.2", timeout=2.0)
        f = self.forwarder(good, dead, offlineAfter=1)
        d = self.query(f)
        self.answer("192.0.2.1", rCode=dns.ENAME)
        self.clock.advance(1)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertEqual(self.failureResultOf(d, RcodeError).value.rCode, dns.ENAME)
        self.assertTrue(f.isOffline(dead))
        d = self.query(f)
        self.assertEqual(len(self.asked("192.0.2.2")), 1)
        self.answer("192.0.2.1", rCode=dns.ENAME)
        self.assertEqual(self.failureResultOf(d, RcodeError).value.rCode, dns.ENAME)
        self.answer("192.0.2.2", [aRecord(b"foo", "192.0.2.10", ttl=0)])
        self.assertFalse(f.isOffline(dead))

    def test_allOfflineStillWaited(self):
        """
        When every candidate is offline they are all waited for, so a
        server that comes back answers the query.
        """
        f = self.forwarder(Nameserver("192.0.2.1", timeout=1.0), offlineAfter=0)
        first = self.query(f)
        self.clock.advance(1)
        self.failureResultOf(first, DNSQueryTimeoutError)
        d = self.query(f)
        self.answer("192.0.2.1", [aRecord(b"foo", "192.0.2.3")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.0.2.3"])


class CacheTests(ForwarderMixin, SynchronousTestCase):
    """
    Successes are cached for their smallest TTL.
    """

    def test_cached(self):
        """
        A second query is answered from the cache without asking
        (reference "Caching"), with the TTLs counted down; once the
        smallest TTL is over the server is asked again.
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        d = self.query(f)
        self.answer("192.0.2.1", [aRecord(b"foo", "192.0.2.4", ttl=60), aRecord(b"foo", "192.0.2.5", ttl=90)])
        self.successResultOf(d)
        self.clock.advance(20)
        cached = self.successResultOf(self.query(f, b"FOO."))
        self.assertEqual([r.ttl for r in cached[0]], [40, 70])
        self.assertEqual(len(self.sockets.opened), 1)
        self.assertEqual(self.counters.dns.cacheHits, 1)
        self.clock.advance(40)
        self.query(f)
        self.assertEqual(len(self.sockets.opened), 2)

    def test_notCached(self):
        """
        Failures and zero-TTL answers are not cached.
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        d = self.query(f)
        self.answer("192.0.2.1", rCode=dns.ENAME)
        self.failureResultOf(d, RcodeError)
        self.query(f, b"zero")
        self.answer("192.0.2.1", [aRecord(b"zero", "192.0.2.4", ttl=0)])
        self.query(f)
        self.query(f, b"zero")
        self.assertEqual(len(self.sockets.opened), 4)

    def test_newConfigEmptiesCache(self):
        """
        New servers empty the cache.
        """
        f = self.forwarder(Nameserver("192.0.2.1"))
        self.query(f)
        self.answer("192.0.2.1", [aRecord(b"foo", "192.0.2.4", ttl=60)])
        f.setConfig(DNSConfig((Nameserver("192.0.2.2"),)))
        self.query(f)
        self.assertEqual(len(self.asked("192.0.2.2")), 1)


class CacheBoundTests(ForwarderMixin, SynchronousTestCase):
    """
    The cache holds at most 1,024 questions and evicts the one stored
    first (not the one used least recently), as docs/dns.md says.
    """

    def key(self, n):
        return (f"q{n}.test", dns.A, dns.IN)

    def result(self, n):
        return ([aRecord(b"q%d.test" % n, "192.0.2.1", ttl=60)], [], [])

    def fill(self, cache, count):
        for n in range(count):
            cache.put(self.key(n), self.result(n), 0)

    def stored(self, cache, count):
        """
        Which of the first C{count} questions the cache still answers.
        """
        return [n for n in range(count) if cache.get(self.key(n), 1) is not None]

    def assertBound(self, cache):
        self.fill(cache, 1024)
        self.assertEqual((len(cache), self.stored(cache, 1024)), (1024, list(range(1024))))
        cache.put(self.key(1024), self.result(1024), 0)
        self.assertEqual((len(cache), self.stored(cache, 1025)), (1024, list(range(1, 1025))))

    def test_bound(self):
        """
        A default cache keeps 1,024 questions; a 1,025th evicts the first
        one stored, and the size stays 1,024.
        """
        self.assertBound(AnswerCache())

    def test_forwarderBound(self):
        """
        The upstream resolver's own cache has the same bound.
        """
        self.assertBound(self.forwarder(Nameserver("192.0.2.1")).cache)

    def test_oldestNotLeastRecentlyUsed(self):
        """
        Reading an entry does not save it from eviction; storing it again
        does (it becomes the newest).
        """
        cache = AnswerCache()
        self.fill(cache, 1024)
        self.assertIsNotNone(cache.get(self.key(0), 1))
        cache.put(self.key(1024), self.result(1024), 0)
        self.assertIsNone(cache.get(self.key(0), 1))
        cache.put(self.key(1), self.result(1), 0)
        cache.put(self.key(1025), self.result(1025), 0)
        self.assertEqual(len(cache), 1024)
        self.assertEqual([n for n in (1, 2, 3) if cache.get(self.key(n), 1) is not None], [1, 3])
