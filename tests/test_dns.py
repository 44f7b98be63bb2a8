"""
Tests for L{vpnkit.protocols.dns}: the gateway's DNS server, with
C{twisted.names}' framing (L{DNSDatagramServer}, a C{DNSDatagramProtocol},
on the gateway's virtual UDP port 53 and L{DNSStreamServer}, a
C{DNSProtocol}, on guest TCP connections) in front of the resolver chain
(builtin names, hosts file, upstream).
"""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from ipaddress import ip_address

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.internet.interfaces import IResolver
from twisted.logger import globalLogPublisher
from twisted.names import dns, error
from twisted.names.error import DNSQueryTimeoutError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.protocols.dns import (
    BuiltinResolver,
    GatewayDNSFactory,
    HostsResolver,
    NameResolver,
    RcodeError,
    ednsPayloadSize,
    optRecord,
    parseHosts,
)
from vpnkit.protocols.udp import UDPLayer
from vpnkit.wire.ipv4 import PROTO_UDP, IPv4Header
from vpnkit.wire.udp import emitUDP, parseUDP

from tests.helpers import GATEWAY_IP, SenderRecorder, buildUDP, ip, makeStack, parseUDPFrame

GUEST_IP = ip("192.168.65.3")
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def query(name, type=dns.A, id=0x1234, edns=None, queries=None):
    message = dns.Message(id=id, recDes=1)
    message.queries = queries if queries is not None else [dns.Query(name, type, dns.IN)]
    if edns is not None:
        message.additional = [optRecord(edns)]
    return message


def aRecord(name, address, ttl=300):
    return dns.RRHeader(name, dns.A, dns.IN, ttl, dns.Record_A(address, ttl))


def soa(zone=b"example.test"):
    record = dns.Record_SOA(b"ns." + zone, b"root." + zone, 1, 60, 60, 60, 60)
    return dns.RRHeader(zone, dns.SOA, dns.IN, 60, record)


@implementer(IResolver)
class FakeUpstream:
    """
    The end of the chain: answers from a table, or fails as told, and
    records what it was asked.

    @ivar answers: C{{(name, type): (answers, authority, additional) or an
        exception or a Deferred}}.
    """

    def __init__(self):
        self.answers = {}
        self.asked = []

    def query(self, q, timeout=None):
        self.asked.append((q.name.name, q.type))
        result = self.answers.get((q.name.name, q.type))
        if result is None:
            return defer.fail(RcodeError(dns.ENAME, authority=[soa()]))
        if isinstance(result, Exception):
            return defer.fail(result)
        if isinstance(result, defer.Deferred):
            return result
        return defer.succeed(result)


class ServerMixin:
    """
    The gateway's UDP port 53 on a L{UDPLayer} whose datagrams a
    L{SenderRecorder} keeps: queries go in as datagrams, answers are taken
    apart with C{dns.Message}.
    """

    def setUp(self):
        self.config = StackConfig(hostNames=("host.internal", "builtins.should.be.higher.priority"))
        self.counters = StackCounters()
        self.clock = task.Clock()
        self.sender = SenderRecorder()
        self.udp = UDPLayer(self.config, self.sender, self.counters)
        self.hosts = HostsResolver(self.counters)
        self.upstream = FakeUpstream()
        self.factory = GatewayDNSFactory(
            [BuiltinResolver(self.config.builtinNames(), self.counters), self.hosts, self.upstream],
            self.counters,
            self.clock,
        )
        self.udp.listen(53, self.factory.datagramProtocol(self.clock))

    def ask(self, message, sport=33333):
        """
        Send C{message} from the guest; return the parsed answers sent
        back (usually one), checking each went to the asking port.
        """
        self.sender.sent = []
        datagram = emitUDP(sport, 53, message.toStr(), GUEST_IP, GATEWAY_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, GATEWAY_IP)
        self.udp.ipPayloadReceived(header, datagram)
        return self.answers(sport)

    def answers(self, sport=33333):
        result = []
        for src, dst, protocol, data, _, _ in self.sender.sent:
            self.assertEqual((src, dst, protocol), (GATEWAY_IP, GUEST_IP, PROTO_UDP))
            udp, payload = parseUDP(data, src, dst)
            self.assertEqual((udp.srcPort, udp.dstPort), (53, sport))
            message = dns.Message()
            message.fromStr(payload)
            message.size = len(payload)
            result.append(message)
        self.sender.sent = []
        return result

    def askOne(self, name, type=dns.A, **kwargs):
        [answer] = self.ask(query(name, type, **kwargs))
        return answer


def addresses(message):
    return [r.payload.dottedQuad() if r.type == dns.A else str(ip_address(r.payload.address)) for r in message.answers]


class BuiltinTests(ServerMixin, SynchronousTestCase):
    """
    C{--host-names}, C{--gateway-names} and C{--vm-names}.
    """

    def test_interfaces(self):
        """
        The resolvers provide C{IResolver}.
        """
        self.assertTrue(verifyObject(IResolver, BuiltinResolver({}, self.counters)))
        self.assertTrue(verifyObject(IResolver, self.hosts))

    def test_names(self):
        """
        Each builtin name is answered with its address, TTL 0, marked
        authoritative, with the query's id and RD, RA set; upstream is
        never asked.
        """
        for name, expected in [
            (b"host.internal", "192.168.65.2"),
            (b"gateway.internal", "192.168.65.1"),
            (b"vm.internal", "192.168.65.3"),
            (b"HOST.Internal.", "192.168.65.2"),
        ]:
            answer = self.askOne(name, id=77)
            self.assertEqual(addresses(answer), [expected])
            self.assertEqual(
                (answer.id, answer.answer, answer.rCode, answer.auth, answer.recDes, answer.recAv),
                (77, 1, dns.OK, 1, 1, 1),
            )
            self.assertEqual(answer.answers[0].ttl, 0)
        self.assertEqual(self.upstream.asked, [])
        self.assertEqual(self.counters.dns.builtin, 4)

    def test_otherTypesNoData(self):
        """
        AAAA (and MX, TXT) for a builtin name is NOERROR with no records:
        the name exists, it has no such data (the reference's NXDOMAIN
        would make resolvers that ask A and AAAA together give up on A).
        """
        for type in (dns.AAAA, dns.MX, dns.TXT):
            answer = self.askOne(b"host.internal", type)
            self.assertEqual((answer.rCode, answer.answers), (dns.OK, []))
        self.assertEqual(self.upstream.asked, [])

    def test_hostAliasDisabled(self):
        """
        With the host alias disabled, the host names are not builtin.
        """
        config = StackConfig(hostIP=None)
        self.assertNotIn("host.internal", config.builtinNames())
        self.assertIn("gateway.internal", config.builtinNames())


class HostsTests(ServerMixin, SynchronousTestCase):
    """
    The hosts file, between the builtin names and upstream.
    """

    def setUp(self):
        super().setUp()
        self.hosts.setEntries(
            parseHosts(
                "192.0.2.7 myhost.test alias.test\n"
                "192.0.2.8 myhost.test\n"
                "2001:db8::7 myhost.test\n"
                "192.0.2.9 v4only.test\n"
                "127.0.0.2 builtins.should.be.higher.priority\n"
            )
        )

    def test_answers(self):
        """
        A gets every IPv4 address of the name, in file order; AAAA every
        IPv6 one; aliases on a line work; TTL 0.
        """
        self.assertEqual(addresses(self.askOne(b"myhost.test")), ["192.0.2.7", "192.0.2.8"])
        self.assertEqual(addresses(self.askOne(b"alias.test")), ["192.0.2.7"])
        answer = self.askOne(b"myhost.test", dns.AAAA)
        self.assertEqual([r.payload.address for r in answer.answers], [ip_address("2001:db8::7").packed])
        self.assertEqual({r.ttl for r in answer.answers}, {0})
        self.assertEqual(self.upstream.asked, [])

    def test_otherFamilyNoData(self):
        """
        AAAA for a name the file gives only an IPv4 address is NODATA,
        without asking upstream.
        """
        answer = self.askOne(b"v4only.test", dns.AAAA)
        self.assertEqual((answer.rCode, answer.answers), (dns.OK, []))
        self.assertEqual(self.upstream.asked, [])

    def test_otherTypesUpstream(self):
        """
        Types a hosts file cannot hold (MX) go upstream.
        """
        self.upstream.answers[(b"myhost.test", dns.MX)] = (
            [dns.RRHeader(b"myhost.test", dns.MX, dns.IN, 60, dns.Record_MX(10, b"mail.test"))],
            [],
            [],
        )
        answer = self.askOne(b"myhost.test", dns.MX)
        self.assertEqual(answer.answers[0].payload.name.name, b"mail.test")
        self.assertEqual(self.upstream.asked, [(b"myhost.test", dns.MX)])

    def test_builtinFirst(self):
        """
        A name both builtin and in the hosts file gets exactly one answer,
        the builtin one (the reference's C{_etc_hosts_priority}).
        """
        answer = self.askOne(b"builtins.should.be.higher.priority")
        self.assertEqual(addresses(answer), ["192.168.65.2"])

    def test_hostsBeforeUpstream(self):
        """
        A name in the hosts file is answered from it even when upstream
        knows it too.
        """
        self.upstream.answers[(b"myhost.test", dns.A)] = ([aRecord(b"myhost.test", "198.51.100.1")], [], [])
        self.assertEqual(addresses(self.askOne(b"myhost.test")), ["192.0.2.7", "192.0.2.8"])
        self.assertEqual(self.upstream.asked, [])

    def test_reloaded(self):
        """
        New entries take effect at once; a name removed goes upstream.
        """
        self.hosts.setEntries(parseHosts("192.0.2.99 added.test\n"))
        self.assertEqual(addresses(self.askOne(b"added.test")), ["192.0.2.99"])
        self.assertEqual(self.askOne(b"myhost.test").rCode, dns.ENAME)
        self.hosts.setEntries(None)
        self.assertEqual(self.askOne(b"added.test").rCode, dns.ENAME)


class UpstreamAnswerTests(ServerMixin, SynchronousTestCase):
    """
    What the server makes of upstream's answers.
    """

    def test_success(self):
        """
        Upstream's answer, authority and additional records are relayed
        with NOERROR.
        """
        glue = aRecord(b"ns.example.test", "192.0.2.53")
        self.upstream.answers[(b"www.example.test", dns.A)] = (
            [aRecord(b"www.example.test", "192.0.2.1")],
            [soa()],
            [glue],
        )
        answer = self.askOne(b"www.example.test")
        self.assertEqual(answer.rCode, dns.OK)
        self.assertEqual(addresses(answer), ["192.0.2.1"])
        self.assertEqual([r.type for r in answer.authority], [dns.SOA])
        self.assertEqual([r.name.name for r in answer.additional], [b"ns.example.test"])

    def test_nxdomainKept(self):
        """
        Upstream's NXDOMAIN stays NXDOMAIN, with its SOA (the reference
        turns it into NOERROR over UDP).
        """
        answer = self.askOne(b"missing.example.test")
        self.assertEqual(answer.rCode, dns.ENAME)
        self.assertEqual([r.type for r in answer.authority], [dns.SOA])
        self.assertEqual(self.counters.dns.nxdomain, 1)

    def test_otherRcodes(self):
        """
        REFUSED and NODATA (NOERROR with only an SOA) are relayed as they
        are.
        """
        self.upstream.answers[(b"r.test", dns.A)] = RcodeError(dns.EREFUSED)
        self.upstream.answers[(b"n.test", dns.A)] = RcodeError(dns.OK, authority=[soa()])
        self.assertEqual(self.askOne(b"r.test").rCode, dns.EREFUSED)
        answer = self.askOne(b"n.test")
        self.assertEqual((answer.rCode, answer.answers, len(answer.authority)), (dns.OK, [], 1))

    def test_failureIsServfail(self):
        """
        Upstream failing altogether (every server timed out) is SERVFAIL,
        not silence.
        """
        self.upstream.answers[(b"t.test", dns.A)] = DNSQueryTimeoutError(None)
        self.upstream.answers[(b"e.test", dns.A)] = ConnectionError("boom")
        self.assertEqual(self.askOne(b"t.test").rCode, dns.ESERVER)
        self.assertEqual(self.askOne(b"e.test").rCode, dns.ESERVER)
        self.assertEqual(self.counters.dns.servfail, 2)

    def test_chainExhausted(self):
        """
        A chain whose every resolver passes is NXDOMAIN.
        """
        self.upstream.answers[(b"d.test", dns.A)] = error.DomainError()
        self.assertEqual(self.askOne(b"d.test").rCode, dns.ENAME)

    def test_later(self):
        """
        The answer goes out when upstream answers, to the port that asked.
        """
        d = defer.Deferred()
        self.upstream.answers[(b"slow.test", dns.A)] = d
        self.assertEqual(self.ask(query(b"slow.test"), sport=4000), [])
        d.callback(([aRecord(b"slow.test", "192.0.2.2")], [], []))
        [answer] = self.answers(sport=4000)
        self.assertEqual(addresses(answer), ["192.0.2.2"])


class TruncationTests(ServerMixin, SynchronousTestCase):
    """
    UDP answers fit 512 bytes or the client's EDNS0 size; TCP never
    truncates (see L{TCPTests}).
    """

    def setUp(self):
        super().setUp()
        self.big = [aRecord(b"very.big.name", f"198.51.100.{i}") for i in range(1, 61)]
        self.upstream.answers[(b"very.big.name", dns.A)] = (self.big, [soa()], [])

    def test_512(self):
        """
        Without EDNS0, 60 A records are cut to the 30 that fit 512 bytes
        (12 + 19 + 30 x 16 = 511; the reference's encoder fits 29), the
        authority section goes, and TC is set; every record sent is whole.
        """
        answer = self.askOne(b"very.big.name")
        self.assertEqual((answer.trunc, len(answer.answers), answer.authority), (1, 30, []))
        self.assertLessEqual(answer.size, 512)
        self.assertEqual(self.counters.dns.truncated, 1)

    def test_edns(self):
        """
        A client announcing 1232 bytes gets all 60 records (about 1000
        bytes), with an OPT record of its own.
        """
        answer = self.askOne(b"very.big.name", edns=1232)
        self.assertEqual((answer.trunc, len(answer.answers)), (0, 60))
        self.assertEqual([r.type for r in answer.additional], [dns.OPT])
        self.assertGreater(answer.size, 512)

    def test_ednsSmall(self):
        """
        A client announcing 700 bytes gets what fits 700, with TC.
        """
        answer = self.askOne(b"very.big.name", edns=700)
        self.assertEqual(answer.trunc, 1)
        self.assertLessEqual(answer.size, 700)
        self.assertGreater(len(answer.answers), 30)

    def test_additionalDroppedFirst(self):
        """
        When leaving out the additional section is enough, it goes without
        TC (RFC 2181 9).
        """
        extra = [aRecord(b"x%d.test" % i, "192.0.2.1") for i in range(30)]
        self.upstream.answers[(b"a.test", dns.A)] = ([aRecord(b"a.test", "192.0.2.1")], [], extra)
        answer = self.askOne(b"a.test")
        self.assertEqual((answer.trunc, len(answer.answers), answer.additional), (0, 1, []))


class WireBytesTests(ServerMixin, SynchronousTestCase):
    """
    The exact bytes of replies, with and without EDNS0, so that a change in
    how a response or its OPT record is built cannot go unnoticed.  Queries
    are given as bytes too, independent of any helper.
    """

    def rawAsk(self, data, sport=33333):
        """
        Send the query C{data} from the guest; return the reply payloads.
        """
        self.sender.sent = []
        datagram = emitUDP(sport, 53, data, GUEST_IP, GATEWAY_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, GATEWAY_IP)
        self.udp.ipPayloadReceived(header, datagram)
        replies = [parseUDP(data, src, dst)[1] for src, dst, _, data, _, _ in self.sender.sent]
        self.sender.sent = []
        return replies

    def test_plain(self):
        """
        A for a builtin name without EDNS0: id and RD copied, QR, AA and RA
        set, the question and one A record (TTL 0, the name compressed), no
        additional section.
        """
        request = bytes.fromhex("12340100000100000000000004686f737408696e7465726e616c0000010001")
        self.assertEqual(
            self.rawAsk(request),
            [
                bytes.fromhex(
                    "12348580000100010000000004686f737408696e7465726e616c0000010001"
                    "c00c00010001000000000004c0a84102"
                )
            ],
        )

    def test_edns(self):
        """
        The same question with an OPT record announcing 1232 bytes: the
        reply ends with vpnkit's own OPT record (root name, type 41, class
        4096, TTL 0, no options).
        """
        request = bytes.fromhex(
            "12340100000100000000000104686f737408696e7465726e616c000001000100002904d0000000000000"
        )
        self.assertEqual(
            self.rawAsk(request),
            [
                bytes.fromhex(
                    "12348580000100010000000104686f737408696e7465726e616c0000010001"
                    "c00c00010001000000000004c0a84102"
                    "0000291000000000000000"
                )
            ],
        )

    def test_ednsNXDOMAIN(self):
        """
        An upstream NXDOMAIN to an EDNS0 query: rcode 3, not authoritative,
        the SOA in the authority section, then the OPT record.
        """
        request = bytes.fromhex(
            "beef01000001000000000001076d697373696e67076578616d706c65047465737400001c0001"
            "00002904d0000000000000"
        )
        self.assertEqual(
            self.rawAsk(request),
            [
                bytes.fromhex(
                    "beef81830001000000010001076d697373696e67076578616d706c65047465737400001c0001"
                    "c014000600010000003c0020026e73c01404726f6f74c014000000010000003c0000003c"
                    "0000003c0000003c"
                    "0000291000000000000000"
                )
            ],
        )

    def test_truncated(self):
        """
        Sixty A records cut to fit 512 bytes (no EDNS0) and 700 bytes
        (EDNS0): the digests of the exact replies.
        """
        big = [aRecord(b"very.big.name", f"198.51.100.{i}") for i in range(1, 61)]
        self.upstream.answers[(b"very.big.name", dns.A)] = (big, [soa()], [])
        for request, size, digest in [
            (
                "123401000001000000000000047665727903626967046e616d650000010001",
                511,
                "08f43f789a4adbb42d3db69413dddc09e79729de31d101b34d641090cd50f02a",
            ),
            (
                "123401000001000000000001047665727903626967046e616d65000001000100002902bc000000000000",
                698,
                "9304f2f265414537d42ca4237539c2736ae412faad587e8b4a81a492b51afbfe",
            ),
        ]:
            [reply] = self.rawAsk(bytes.fromhex(request))
            self.assertEqual((len(reply), hashlib.sha256(reply).hexdigest()), (size, digest))

    def test_tcp(self):
        """
        Over TCP (C{DNSProtocol}) the whole answer goes back, length-prefixed,
        with the OPT record for an EDNS0 query.
        """
        big = [aRecord(b"very.big.name", f"198.51.100.{i}") for i in range(1, 61)]
        self.upstream.answers[(b"very.big.name", dns.A)] = (big, [soa()], [])
        request = bytes.fromhex(
            "123401000001000000000001047665727903626967046e616d65000001000100002902bc000000000000"
        )
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(len(request).to_bytes(2, "big") + request)
        reply = transport.value()
        self.assertEqual(
            (len(reply), hashlib.sha256(reply).hexdigest()),
            (1060, "be4611907745ec78c331577cf56f6d826b3d5fbbc0050d5d45c3a6598ee37cba"),
        )


class EDNSTests(SynchronousTestCase):
    """
    L{optRecord} and L{ednsPayloadSize}: the EDNS0 OPT pseudo-record vpnkit
    writes and reads itself.
    """

    def test_encoding(self):
        """
        The record is the root name, type 41, the payload size as its
        class, TTL 0 and no data.
        """
        message = dns.Message(id=1)
        message.additional = [optRecord()]
        self.assertEqual(message.toStr()[12:], bytes.fromhex("0000291000000000000000"))
        message.additional = [optRecord(1232)]
        self.assertEqual(message.toStr()[12:], bytes.fromhex("00002904d0000000000000"))

    def test_payloadSize(self):
        """
        The size a parsed message announces, never below 512; C{None}
        without an OPT record.
        """
        for announced, expected in [(None, None), (1232, 1232), (4096, 4096), (100, 512)]:
            message = dns.Message(id=1)
            message.queries = [dns.Query(b"a.test")]
            if announced is not None:
                message.additional = [optRecord(announced)]
            parsed = dns.Message()
            parsed.fromStr(message.toStr())
            self.assertEqual(ednsPayloadSize(parsed), expected)


class NameResolverTests(SynchronousTestCase):
    """
    L{NameResolver}: C{IResolver}'s lookup methods over one C{query}.
    """

    def test_lookupGoesThroughQuery(self):
        """
        C{lookupAddress}, C{lookupMailExchange} and the rest ask C{query}
        with the question they stand for.
        """
        asked = []

        class Recorder(NameResolver):
            def query(self, query, timeout=None):
                asked.append(query)
                return defer.succeed(([], [], []))

        resolver = Recorder()
        self.assertTrue(verifyObject(IResolver, resolver))
        resolver.lookupAddress(b"a.test")
        resolver.lookupMailExchange(b"b.test")
        self.assertEqual(asked, [dns.Query(b"a.test", dns.A), dns.Query(b"b.test", dns.MX)])


class IgnoredTests(ServerMixin, SynchronousTestCase):
    """
    Messages the server does not answer, as the reference.
    """

    def test_notQueries(self):
        """
        A response (QR set), a query without a question and one with two
        questions get no answer, and are counted as C{ignored}.
        """
        response = query(b"host.internal")
        response.answer = 1
        self.assertEqual(self.ask(response), [])
        self.assertEqual(self.ask(query(None, queries=[])), [])
        two = [dns.Query(b"a.test"), dns.Query(b"b.test")]
        self.assertEqual(self.ask(query(None, queries=two)), [])
        self.assertEqual(self.counters.dns.ignored, 3)
        self.assertEqual(self.upstream.asked, [])

    def test_garbage(self):
        """
        Bytes that are not a DNS message get no answer.
        """
        datagram = emitUDP(1234, 53, b"\x00\x01garbage", GUEST_IP, GATEWAY_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, GATEWAY_IP)
        self.udp.ipPayloadReceived(header, datagram)
        self.assertEqual(self.sender.sent, [])


def header(ident=0x4242, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return ident.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"".join(
        n.to_bytes(2, "big") for n in (qd, an, ns, ar)
    )


def question(labels, type=dns.A, cls=dns.IN):
    """
    A question section with the given labels, encoded by hand (so labels
    longer than 63 can be built).
    """
    name = b"".join(len(label).to_bytes(1, "big") + label for label in labels) + b"\0"
    return name + type.to_bytes(2, "big") + cls.to_bytes(2, "big")


class MalformedTests(ServerMixin, SynchronousTestCase):
    """
    Malformed queries are answered FORMERR by vpnkit itself, never asked
    upstream, and logged at most once per interval.
    """

    def setUp(self):
        super().setUp()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def rawAsk(self, data, sport=33333):
        self.sender.sent = []
        datagram = emitUDP(sport, 53, data, GUEST_IP, GATEWAY_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, GATEWAY_IP)
        self.udp.ipPayloadReceived(header, datagram)
        return self.answers(sport)

    def assertFormErr(self, data):
        [reply] = self.rawAsk(data)
        self.assertEqual((reply.id, reply.answer, reply.rCode), (0x4242, 1, dns.EFORMAT))
        self.assertEqual((reply.recDes, reply.queries), (1, []))
        return reply

    def test_longName(self):
        """
        A name of 512 characters (labels of 63 or fewer) is FORMERR and is
        not asked upstream.
        """
        labels = [b"a" * 63] * 8 + [b"b" * 7]
        self.assertEqual(len(b".".join(labels)), 519)
        self.assertFormErr(header() + question(labels))
        self.assertEqual(self.upstream.asked, [])
        self.assertEqual((self.counters.dns.malformed, self.counters.dns.formerr), (1, 1))

    def test_nameLimits(self):
        """
        253 characters and labels of 63 are well formed and go upstream;
        254 characters, or a label of 64, are not.
        """
        good = [b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61]
        self.assertEqual(len(b".".join(good)), 253)
        [reply] = self.rawAsk(header() + question(good))
        self.assertEqual(reply.rCode, dns.ENAME)
        self.assertEqual(len(self.upstream.asked), 1)
        self.assertFormErr(header() + question(good[:3] + [b"d" * 62]))
        self.assertFormErr(header() + question([b"x" * 64, b"test"]))
        self.assertEqual(len(self.upstream.asked), 1)

    def test_unknownClass(self):
        """
        A class other than IN, CS, CH, HS or ANY is FORMERR.
        """
        self.assertFormErr(header() + question([b"example", b"test"], cls=77))
        [reply] = self.rawAsk(header() + question([b"host", b"internal"], cls=dns.ANY))
        self.assertEqual(reply.rCode, dns.OK)
        self.assertEqual(self.upstream.asked, [])

    def test_bogusCounts(self):
        """
        A header announcing more records than the message holds is FORMERR
        with the query's id, and twisted.names logs nothing about it.
        """
        self.assertFormErr(header(qd=3, an=9) + question([b"example", b"test"]))
        self.assertEqual(self.upstream.asked, [])
        self.assertEqual(
            [e for e in self.events if e.get("log_namespace", "").startswith("twisted.names")], []
        )

    def test_noAnswerWithoutHeader(self):
        """
        Fewer bytes than a header, or a message with QR set, is counted but
        not answered.
        """
        self.assertEqual(self.rawAsk(b"\x42\x42\x01"), [])
        self.assertEqual(self.rawAsk(header(flags=0x8100, qd=4)), [])
        self.assertEqual((self.counters.dns.malformed, self.counters.dns.formerr), (2, 0))

    def test_floodLogsOneLine(self):
        """
        1,200 invalid packets make one log line within the interval, then
        one that says how many were suppressed.
        """
        for _ in range(1200):
            self.assertFormErr(header(qd=2) + question([b"a"]))
        mine = [e for e in self.events if "malformed DNS" in (e.get("log_format") or "")]
        self.assertEqual(len(mine), 1)
        self.assertEqual(len(self.events), 1)
        self.clock.advance(30)
        self.assertFormErr(header(qd=2) + question([b"a"]))
        self.assertEqual(self.events[-1]["suppressed"], 1199)

    def test_tcp(self):
        """
        Over TCP a malformed query gets a length-prefixed FORMERR too.
        """
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        data = header(qd=5) + question([b"a"])
        protocol.dataReceived(len(data).to_bytes(2, "big") + data)
        reply = transport.value()
        self.assertEqual(int.from_bytes(reply[:2], "big"), len(reply) - 2)
        message = dns.Message()
        message.fromStr(reply[2:])
        self.assertEqual((message.id, message.rCode), (0x4242, dns.EFORMAT))
        self.assertEqual(self.upstream.asked, [])


class StackMalformedTests(SynchronousTestCase):
    """
    The stack's own UDP port 53 is served by L{DNSDatagramServer}.
    """

    def test_formErrFromStack(self):
        """
        A guest's query whose header announces two questions but holds
        one gets FORMERR from the gateway, counted; nothing is resolved.
        """
        stack, (guest,) = makeStack(1)
        data = header(qd=2) + question([b"example", b"test"])
        guest.send(buildUDP(guest.mac, guest.ip, 40000, GATEWAY_IP, 53, data))
        [frame] = guest.takeFrames()
        payload = parseUDPFrame(frame)[-1]
        message = dns.Message()
        message.fromStr(payload)
        self.assertEqual((message.id, message.rCode), (0x4242, dns.EFORMAT))
        counters = stack.counters.dns
        self.assertEqual((counters.malformed, counters.formerr, counters.udpQueries), (1, 1, 0))


class FuzzTests(ServerMixin, SynchronousTestCase):
    """
    Mutated queries never break the server.
    """

    @FUZZ
    @given(
        st.lists(
            st.tuples(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255)),
            max_size=6,
        ),
        st.integers(min_value=0, max_value=80),
    )
    def test_mutatedQueries(self, flips, cut):
        """
        A real query with bytes changed and cut short either gets no answer
        or an answer that parses; nothing raises and no service error is
        counted.
        """
        data = bytearray(query(b"host.internal", edns=1232).toStr())
        for offset, value in flips:
            if offset < len(data):
                data[offset] = value
        data = bytes(data[: len(data) - cut])
        self.sender.sent = []
        datagram = emitUDP(1234, 53, data, GUEST_IP, GATEWAY_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, GATEWAY_IP)
        self.udp.ipPayloadReceived(header, datagram)
        self.answers(sport=1234)
        self.assertEqual(self.counters.udp.serviceErrors, 0)


class HostsParserTests(SynchronousTestCase):
    """
    L{parseHosts}, including the reference's two hosts-file tests.
    """

    def test_windowsStyle(self):
        """
        Comment lines and trailing comments are ignored (reference "hosts
        Windows-style").
        """
        text = (
            "# Copyright (c) 1993-2009 Microsoft Corp.\n"
            "#\n"
            "      1.2.3.4     www.docker.com       # web server\n"
            "      4.5.6.7     staging.docker.com   # staging web server\n"
        )
        self.assertEqual(
            parseHosts(text),
            (
                ("www.docker.com", ip_address("1.2.3.4")),
                ("staging.docker.com", ip_address("4.5.6.7")),
            ),
        )

    def test_macStyle(self):
        """
        Tabs, several names on a line, IPv6 (reference "hosts Mac-style";
        names keep file order here).
        """
        text = "127.0.0.1\tlocalhost mylocalhostalias\n255.255.255.255\tbroadcasthost\n::1 localhost\n"
        self.assertEqual(
            parseHosts(text),
            (
                ("localhost", ip_address("127.0.0.1")),
                ("mylocalhostalias", ip_address("127.0.0.1")),
                ("broadcasthost", ip_address("255.255.255.255")),
                ("localhost", ip_address("::1")),
            ),
        )

    def test_badLinesSkipped(self):
        """
        Lines with an address that does not parse (a zone index, garbage)
        or no name are skipped; names are lower-cased and lose a trailing
        dot.
        """
        text = "fe80::1%lo0 localhost\nnot-an-ip name\n192.0.2.1\n192.0.2.2 Upper.Case.\n"
        self.assertEqual(parseHosts(text), (("upper.case", ip_address("192.0.2.2")),))

    @FUZZ
    @given(st.text(max_size=400))
    def test_fuzz(self, text):
        """
        Any text parses to (name, address) pairs without raising, every
        name lower-case and non-empty.
        """
        for name, address in parseHosts(text):
            self.assertTrue(name)
            self.assertEqual(name, name.lower())
            self.assertIn(address.version, (4, 6))
