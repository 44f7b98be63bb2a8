"""
Tests for L{vpnkit.protocols.dnsexchange}: one query to one server
(retransmission, timeout, bad replies, errors, TCP), driven through the
L{vpnkit.protocols.dnsupstream.UpstreamResolver} over fake host sockets and
a L{task.Clock}.
"""

import errno

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.names import dns
from twisted.names.error import DNSQueryTimeoutError
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols.dnsconfig import Nameserver

from tests.fakesockets import portUnreachable
from tests.test_dns import aRecord
from tests.test_dnsupstream import UpstreamMixin


class ExchangeTests(UpstreamMixin, SynchronousTestCase):
    """
    One server: retransmission, timeout, bad replies, errors, TCP.
    """

    def test_retransmission(self):
        """
        The query is sent at 0, 1 and 2 s within a 3 s timeout, on one
        fresh socket with one id; at 3 s the query fails and the socket is
        closed.
        """
        f = self.resolver(Nameserver("192.0.2.1", timeout=3.0))
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
        f = self.resolver(Nameserver("192.0.2.1"))
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
        f = self.resolver(Nameserver("192.0.2.1", timeout=0.0))
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
        f = self.resolver(Nameserver("192.0.2.1"))
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
        f = self.resolver(Nameserver("192.0.2.1"))
        d = self.query(f)
        [sock] = self.sockets.opened
        sock.fail(portUnreachable("192.0.2.1", 53))
        self.failureResultOf(d, ConnectionError)

    def test_socketUnavailable(self):
        """
        No socket for the query (descriptors exhausted): it fails at once.
        """
        f = self.resolver(Nameserver("192.0.2.1"))
        self.sockets.openError = OSError(errno.EMFILE, "Too many open files")
        self.failureResultOf(self.query(f), OSError)

    def test_truncatedRetriedOverTCP(self):
        """
        A reply with TC set over UDP is asked again over TCP (same
        question and id, length-prefixed), within what is left of the
        timeout; the TCP answer is the result.
        """
        f = self.resolver(Nameserver("192.0.2.1", timeout=4.0))
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
        f = self.resolver(Nameserver("192.0.2.1", timeout=2.0))
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
        f = self.resolver(Nameserver("192.0.2.1"))
        d = self.query(f)
        self.answer("192.0.2.1", trunc=True)
        self.network.fail(ConnectionRefusedError())
        self.failureResultOf(d, ConnectionRefusedError)


