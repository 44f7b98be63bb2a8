"""
Tests for L{vpnkit.protocols.dnscache}: the answer cache, on its own and
as the L{vpnkit.protocols.dnsupstream.UpstreamResolver} uses it.
"""

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols.dns import RcodeError
from vpnkit.protocols.dnscache import AnswerCache
from vpnkit.protocols.dnsconfig import DNSConfig, Nameserver

from tests.test_dns import aRecord
from tests.test_dnsupstream import UpstreamMixin


class CacheTests(UpstreamMixin, SynchronousTestCase):
    """
    Successes are cached for their smallest TTL.
    """

    def test_cached(self):
        """
        A second query is answered from the cache without asking
        (reference "Caching"), with the TTLs counted down; once the
        smallest TTL is over the server is asked again.
        """
        f = self.resolver(Nameserver("192.0.2.1"))
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
        f = self.resolver(Nameserver("192.0.2.1"))
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
        f = self.resolver(Nameserver("192.0.2.1"))
        self.query(f)
        self.answer("192.0.2.1", [aRecord(b"foo", "192.0.2.4", ttl=60)])
        f.setConfig(DNSConfig((Nameserver("192.0.2.2"),)))
        self.query(f)
        self.assertEqual(len(self.asked("192.0.2.2")), 1)


class CacheBoundTests(UpstreamMixin, SynchronousTestCase):
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

    def test_resolverBound(self):
        """
        The upstream resolver's own cache has the same bound.
        """
        self.assertBound(self.resolver(Nameserver("192.0.2.1")).cache)

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
