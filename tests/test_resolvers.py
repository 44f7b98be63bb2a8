"""
Tests for L{vpnkit.host.resolvers}: A and AAAA from the host's resolver
(a fake C{getaddrinfo}: tests never use the real one), other types from
the C{resolv.conf} servers.
"""

import socket

from twisted.internet import defer
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.counters import StackCounters
from vpnkit.host.resolvers import SystemResolver, lookupError
from vpnkit.protocols.dns import RcodeError

from tests.test_dns import FakeUpstream, aRecord


class FakeLookup:
    """
    C{lookup(name, family)} answering from a table of addresses or
    C{socket.gaierror}s.
    """

    def __init__(self, table):
        self.table = table
        self.calls = []

    def __call__(self, name, family):
        self.calls.append((name, family))
        result = self.table.get((name, family), socket.gaierror(socket.EAI_NONAME, "unknown"))
        if isinstance(result, Exception):
            return defer.fail(result)
        return defer.succeed(result)


class SystemResolverTests(SynchronousTestCase):
    """
    L{SystemResolver} over a fake lookup and a fake upstream.
    """

    def setUp(self):
        self.lookup = FakeLookup(
            {
                ("www.example.test", socket.AF_INET): ["192.0.2.1", "192.0.2.1", "192.0.2.2"],
                ("www.example.test", socket.AF_INET6): ["2001:db8::1", "fe80::1%eth0"],
                ("v4only.test", socket.AF_INET6): socket.gaierror(socket.EAI_NODATA, "no data"),
                ("flaky.test", socket.AF_INET): socket.gaierror(socket.EAI_AGAIN, "try again"),
            }
        )
        self.others = FakeUpstream()
        self.counters = StackCounters()
        self.resolver = SystemResolver(self.lookup, self.others, self.counters)

    def ask(self, name, type):
        return self.resolver.query(dns.Query(name, type, dns.IN))

    def test_a(self):
        """
        A records come from C{getaddrinfo(name, AF_INET)}, de-duplicated,
        TTL 0; the name is asked lower-case without the final dot.
        """
        answers, authority, additional = self.successResultOf(self.ask(b"WWW.example.test.", dns.A))
        self.assertEqual([r.payload.dottedQuad() for r in answers], ["192.0.2.1", "192.0.2.2"])
        self.assertEqual({r.ttl for r in answers}, {0})
        self.assertEqual(self.lookup.calls, [("www.example.test", socket.AF_INET)])

    def test_aaaa(self):
        """
        AAAA is answered properly from C{AF_INET6} (the reference always
        answered it with nothing); a scoped address is not usable and left
        out.
        """
        answers, _, _ = self.successResultOf(self.ask(b"www.example.test", dns.AAAA))
        self.assertEqual([r.type for r in answers], [dns.AAAA])
        self.assertEqual(socket.inet_ntop(socket.AF_INET6, answers[0].payload.address), "2001:db8::1")

    def test_noData(self):
        """
        C{EAI_NODATA} (the name has no address of that family) is NOERROR
        with no records.
        """
        self.assertEqual(self.successResultOf(self.ask(b"v4only.test", dns.AAAA)), ([], [], []))

    def test_unknownName(self):
        """
        C{EAI_NONAME} is NXDOMAIN.
        """
        failure = self.failureResultOf(self.ask(b"nope.test", dns.A), RcodeError)
        self.assertEqual(failure.value.rCode, dns.ENAME)

    def test_temporaryFailure(self):
        """
        C{EAI_AGAIN} is SERVFAIL.
        """
        failure = self.failureResultOf(self.ask(b"flaky.test", dns.A), RcodeError)
        self.assertEqual(failure.value.rCode, dns.ESERVER)

    def test_otherTypes(self):
        """
        MX, TXT, SRV, PTR go to the C{resolv.conf} servers, not to
        C{getaddrinfo}.
        """
        self.others.answers[(b"example.test", dns.MX)] = ([aRecord(b"example.test", "192.0.2.1")], [], [])
        self.successResultOf(self.ask(b"example.test", dns.MX))
        for type in (dns.TXT, dns.SRV, dns.PTR):
            self.failureResultOf(self.ask(b"x.test", type))
        self.assertEqual([t for _, t in self.others.asked], [dns.MX, dns.TXT, dns.SRV, dns.PTR])
        self.assertEqual(self.lookup.calls, [])

    def test_lookupError(self):
        """
        L{lookupError} maps C{gaierror} codes to rcodes; anything else is
        SERVFAIL.
        """
        self.assertEqual(lookupError(socket.gaierror(socket.EAI_NONAME, "")), dns.ENAME)
        self.assertEqual(lookupError(socket.gaierror(socket.EAI_NODATA, "")), dns.OK)
        self.assertEqual(lookupError(socket.gaierror(socket.EAI_FAIL, "")), dns.ESERVER)
        self.assertEqual(lookupError(RuntimeError()), dns.ESERVER)
