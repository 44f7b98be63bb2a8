"""
Tests for L{vpnkit.protocols.dnsupstream}: the upstream L{UpstreamResolver}
(server selection, waiting, offline detection) over fake host sockets and a
L{task.Clock}.  The reference's C{dns_forward_test} cases are here by name;
L{UpstreamMixin} is shared with the exchange and cache tests.
"""

import random

from twisted.internet import task
from twisted.names import dns
from twisted.names.error import DNSQueryTimeoutError
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.counters import StackCounters
from vpnkit.protocols.dns import RcodeError
from vpnkit.protocols.dnsconfig import DNSConfig, Nameserver
from vpnkit.protocols.dnsupstream import NoUpstreamError, UpstreamResolver

from tests.fakesockets import FakeDatagramSockets
from tests.helpers import FakeHostNetwork
from tests.test_dns import aRecord, soa


class UpstreamMixin:
    """
    An L{UpstreamResolver} over fake sockets: the test plays the upstream
    servers.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.sockets = FakeDatagramSockets()
        self.network = FakeHostNetwork()
        self.counters = StackCounters()

    def resolver(self, *servers, offlineAfter=5):
        return UpstreamResolver(
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

    def query(self, resolver, name=b"foo", type=dns.A):
        return resolver.query(dns.Query(name, type, dns.IN))

    def addresses(self, result):
        return [r.payload.dottedQuad() for r in result[0]]


class SelectionTests(UpstreamMixin, SynchronousTestCase):
    """
    Which servers are asked, and whose answer wins.
    """

    def test_respondsCorrectly(self):
        """
        A server's answer is the result, with the records marked not
        authoritative (vpnkit relays) (reference "Server responds
        correctly").  The query carries RD and EDNS0.
        """
        f = self.resolver(Nameserver("192.0.2.1"))
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
        f = self.resolver(Nameserver("192.0.2.1", zones=("foo",)), Nameserver("192.0.2.2"))
        d = self.query(f, b"www.foo")
        self.assertEqual(len(self.asked("192.0.2.2")), 0)
        self.answer("192.0.2.1", [aRecord(b"www.foo", "192.168.1.1")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.168.1.1"])

    def test_zoneLabels(self):
        """
        Zones match whole labels: C{foo} does not match C{barfoo}.
        """
        f = self.resolver(Nameserver("192.0.2.1", zones=("foo",)), Nameserver("192.0.2.2"))
        self.assertEqual([s.address for s in f.candidates("barfoo")], ["192.0.2.1", "192.0.2.2"])
        self.assertEqual([s.address for s in f.candidates("a.b.foo")], ["192.0.2.1"])

    def test_order(self):
        """
        Every candidate is asked at once; the earlier C{order} group's
        answer wins even when it comes second (reference "Server order").
        """
        f = self.resolver(Nameserver("192.0.2.1", order=1), Nameserver("192.0.2.2", order=0))
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
        f = self.resolver(Nameserver("192.0.2.1", order=0), Nameserver("192.0.2.2", order=1))
        d = self.query(f)
        self.answer("192.0.2.1", rCode=dns.ESERVER)
        self.answer("192.0.2.2", [aRecord(b"foo", "192.0.2.99")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.0.2.99"])

    def test_toleratesBadServer(self):
        """
        A fast NXDOMAIN does not beat a slower answer from another server
        of the same group (reference "Tolerate bad server").
        """
        f = self.resolver(Nameserver("192.0.2.1"), Nameserver("192.0.2.2"))
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
        f = self.resolver(*servers)
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
        self.failureResultOf(self.query(self.resolver()), NoUpstreamError)


class OfflineTests(UpstreamMixin, SynchronousTestCase):
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
        f = self.resolver(good, dead, offlineAfter=1)
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
        f = self.resolver(Nameserver("192.0.2.1", timeout=1.0), offlineAfter=0)
        first = self.query(f)
        self.clock.advance(1)
        self.failureResultOf(first, DNSQueryTimeoutError)
        d = self.query(f)
        self.answer("192.0.2.1", [aRecord(b"foo", "192.0.2.3")])
        self.assertEqual(self.addresses(self.successResultOf(d)), ["192.0.2.3"])


