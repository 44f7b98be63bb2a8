"""
Tests for IPv6 in the gateway's DNS: AAAA for the builtin names
(L{vpnkit.protocols.dns.builtinAddresses}), hosts files, the host-resolver
and upstream modes passing AAAA, and upstream servers at IPv6 addresses
(over fake host sockets and a fake host network).
"""

import errno
import socket
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

from twisted.internet import task
from twisted.internet.error import ConnectionRefusedError
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.host.sockets import HostSocketError
from vpnkit.protocols.dns import BuiltinResolver, builtinAddresses, parseHosts
from vpnkit.protocols.dnsconfig import DNSConfig, Nameserver, parseDNSConfig

from tests.helpers import makeStack
from tests.test_dnsupstream import UpstreamMixin
from tests.test_resolvers import FakeLookup


def aaaaRecord(name, address, ttl=300):
    return dns.RRHeader(name, dns.AAAA, dns.IN, ttl, dns.Record_AAAA(address, ttl))


def texts(records):
    """
    The addresses of A and AAAA records, as text, in order.
    """
    result = []
    for record in records:
        if record.type == dns.A:
            result.append(record.payload.dottedQuad())
        else:
            result.append(str(ip_address(record.payload.address)))
    return result


class BuiltinAddressesTests(SynchronousTestCase):
    """
    L{builtinAddresses}: each builtin name's IPv4 address and, with IPv6
    on, its IPv6 counterpart.
    """

    def test_default(self):
        """
        The host names get the IPv6 host alias, the gateway names the
        IPv6 gateway, the VM names the first guest's stable IPv6 address.
        """
        names = builtinAddresses(StackConfig())
        self.assertEqual(
            names,
            {
                "host.internal": (IPv4Address("192.168.65.2"), IPv6Address("fd00:65::2")),
                "gateway.internal": (IPv4Address("192.168.65.1"), IPv6Address("fd00:65::1")),
                "vm.internal": (IPv4Address("192.168.65.3"), IPv6Address("fd00:65::3")),
            },
        )

    def test_prefix(self):
        """
        The IPv6 addresses follow C{--ipv6-prefix}.
        """
        names = builtinAddresses(StackConfig(ipv6Prefix=IPv6Network("fd12:1::/64")))
        self.assertEqual(names["vm.internal"][1], IPv6Address("fd12:1::3"))

    def test_ipv6Off(self):
        """
        With IPv6 off (C{--no-ipv6}, or an MTU under 1280) only the IPv4
        addresses remain.
        """
        for config in (StackConfig(ipv6Prefix=None), StackConfig(mtu=1000)):
            names = builtinAddresses(config)
            self.assertEqual(
                {name: len(addresses) for name, addresses in names.items()},
                {"host.internal": 1, "gateway.internal": 1, "vm.internal": 1},
            )

    def test_hostAliasDisabled(self):
        """
        With C{--host-ip 0.0.0.0} the host names stay out, as they do for
        A: A answers are what they were.
        """
        names = builtinAddresses(StackConfig(hostIP=None))
        self.assertNotIn("host.internal", names)
        self.assertEqual(len(names["gateway.internal"]), 2)


class StackDNSMixin:
    def ask(self, stack, name, type):
        """
        The stack's resolver chain's C{(answers, authority, additional)}
        for C{name}, or the failure.
        """
        d = stack.dns.resolver.query(dns.Query(name, type, dns.IN))
        results = []
        d.addBoth(results.append)
        return results[0]


class BuiltinAAAATests(StackDNSMixin, SynchronousTestCase):
    """
    The stack's builtin names answer AAAA when IPv6 is on, and A as they
    always did.
    """

    def test_aaaa(self):
        """
        AAAA for the host, gateway and VM names: the IPv6 host alias,
        gateway and first guest address, TTL 0, authoritative.
        """
        stack, _ = makeStack()
        for name, expected in [
            (b"host.internal", "fd00:65::2"),
            (b"gateway.internal", "fd00:65::1"),
            (b"vm.internal", "fd00:65::3"),
            (b"Host.Internal.", "fd00:65::2"),
        ]:
            answers, authority, additional = self.ask(stack, name, dns.AAAA)
            self.assertEqual(texts(answers), [expected])
            self.assertEqual((answers[0].ttl, answers[0].auth), (0, True))

    def test_aUnchanged(self):
        """
        A answers are the IPv4 addresses alone.
        """
        stack, _ = makeStack()
        answers, _, _ = self.ask(stack, b"host.internal", dns.A)
        self.assertEqual(texts(answers), ["192.168.65.2"])
        answers, _, _ = self.ask(stack, b"vm.internal", dns.A)
        self.assertEqual(texts(answers), ["192.168.65.3"])

    def test_any(self):
        """
        ANY gets both.
        """
        stack, _ = makeStack()
        answers, _, _ = self.ask(stack, b"gateway.internal", dns.ALL_RECORDS)
        self.assertEqual(texts(answers), ["192.168.65.1", "fd00:65::1"])

    def test_ipv6OffNoData(self):
        """
        With IPv6 off, AAAA for a builtin name is NOERROR with no records
        (the name exists), not NXDOMAIN.
        """
        stack, _ = makeStack(ipv6Prefix=None)
        self.assertEqual(self.ask(stack, b"host.internal", dns.AAAA), ([], [], []))
        answers, _, _ = self.ask(stack, b"host.internal", dns.A)
        self.assertEqual(texts(answers), ["192.168.65.2"])

    def test_plainMapping(self):
        """
        L{BuiltinResolver} still takes C{{name: IPv4Address}} (one
        address a name), answering AAAA with NODATA.
        """
        resolver = BuiltinResolver({"a.test": IPv4Address("192.0.2.1")}, StackCounters())
        self.assertEqual(
            self.successResultOf(resolver.query(dns.Query(b"a.test", dns.AAAA, dns.IN))), ([], [], [])
        )


class HostsAndHostResolverTests(StackDNSMixin, SynchronousTestCase):
    """
    Hosts files with IPv6 entries, and the host's resolver, answer AAAA
    through the stack's chain.
    """

    def test_hostsFile(self):
        """
        An IPv6 entry of the hosts file answers AAAA; its IPv4 entry A.
        """
        stack, _ = makeStack()
        stack.setHosts(parseHosts("192.0.2.7 dual.test\n2001:db8::7 dual.test\n"))
        answers, _, _ = self.ask(stack, b"dual.test", dns.AAAA)
        self.assertEqual(texts(answers), ["2001:db8::7"])
        answers, _, _ = self.ask(stack, b"dual.test", dns.A)
        self.assertEqual(texts(answers), ["192.0.2.7"])

    def test_systemLookup(self):
        """
        In host-resolver mode AAAA is asked of the host for C{AF_INET6}
        and answered with what it gives.
        """
        lookup = FakeLookup({("www.example.test", socket.AF_INET6): ["2001:db8::1"]})
        stack, _ = makeStack(systemLookup=lookup)
        answers, _, _ = self.ask(stack, b"www.example.test", dns.AAAA)
        self.assertEqual(texts(answers), ["2001:db8::1"])
        self.assertEqual(lookup.calls, [("www.example.test", socket.AF_INET6)])

    def test_systemLookupIPv6Off(self):
        """
        Host-resolver mode passes AAAA with IPv6 off too (guests may reach
        IPv6 hosts by other ways; what DNS says of the world is not
        vpnkit's plan).
        """
        lookup = FakeLookup({("www.example.test", socket.AF_INET6): ["2001:db8::1"]})
        stack, _ = makeStack(systemLookup=lookup, ipv6Prefix=None)
        answers, _, _ = self.ask(stack, b"www.example.test", dns.AAAA)
        self.assertEqual(texts(answers), ["2001:db8::1"])


class UpstreamIPv6Tests(UpstreamMixin, SynchronousTestCase):
    """
    Upstream mode passes AAAA, and servers at IPv6 addresses are asked
    over C{AF_INET6} sockets, with TCP to the IPv6 literal after TC.
    """

    def test_aaaaRelayed(self):
        """
        AAAA is asked upstream as it is, and the answer relayed.
        """
        f = self.resolver(Nameserver("192.0.2.1"))
        d = self.query(f, b"www.example.test", dns.AAAA)
        [(sock, message, _)] = self.asked("192.0.2.1")
        self.assertEqual(message.queries[0].type, dns.AAAA)
        self.answer("192.0.2.1", [aaaaRecord(b"www.example.test", "2001:db8::5")])
        answers, _, _ = self.successResultOf(d)
        self.assertEqual(texts(answers), ["2001:db8::5"])

    def test_ipv6Server(self):
        """
        C{nameserver ::1}: the query goes out of an C{AF_INET6} socket to
        C{::1} port 53, and its reply is taken.
        """
        config = parseDNSConfig("nameserver ::1\n")
        f = self.resolver(*config.servers)
        d = self.query(f, b"foo", dns.A)
        [sock] = self.sockets.opened
        self.assertEqual(sock.family, socket.AF_INET6)
        [(_, _, sent)] = self.asked("::1")
        self.assertEqual((sent.host, sent.port), ("::1", 53))
        self.answer("::1", [dns.RRHeader(b"foo", dns.A, dns.IN, 60, dns.Record_A("192.0.2.9", 60))])
        self.assertEqual(texts(self.successResultOf(d)[0]), ["192.0.2.9"])

    def test_ipv6ServerPort(self):
        """
        C{nameserver [2001:db8::53]#5353} and the unbracketed form name
        the port; the reply's source may be written another way.
        """
        config = parseDNSConfig("nameserver [2001:db8::53]#5353\nnameserver 2001:db8::54#5300\n")
        self.assertEqual(
            [(s.address, s.port, s.family) for s in config.servers],
            [("2001:db8::53", 5353, socket.AF_INET6), ("2001:db8::54", 5300, socket.AF_INET6)],
        )
        f = self.resolver(config.servers[0])
        d = self.query(f)
        [sock] = self.sockets.opened
        [sent] = sock.sent
        self.assertEqual((sent.host, sent.port), ("2001:db8::53", 5353))
        message = dns.Message()
        message.fromStr(sent.data)
        reply = dns.Message(id=message.id, answer=1, maxSize=0)
        reply.queries = message.queries
        reply.answers = [dns.RRHeader(b"foo", dns.A, dns.IN, 60, dns.Record_A("192.0.2.9", 60))]
        sock.deliver(reply.toStr(), "2001:0db8:0:0::53", 5353)
        self.assertEqual(texts(self.successResultOf(d)[0]), ["192.0.2.9"])

    def test_ipv6ServerTCP(self):
        """
        A truncated reply from an IPv6 server is fetched again over TCP,
        dialled to the IPv6 literal.
        """
        f = self.resolver(Nameserver("2001:db8::53"))
        self.query(f)
        self.answer("2001:db8::53", trunc=True)
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port), ("2001:db8::53", 53))

    def test_ipv6ServerICMPError(self):
        """
        An ICMPv6 error from the IPv6 server ends its exchange at once.
        """
        f = self.resolver(Nameserver("2001:db8::53"))
        d = self.query(f)
        [sock] = self.sockets.opened
        sock.fail(
            HostSocketError("icmp6", errno.ECONNREFUSED, 1, 4, 0, "2001:db8::53", "2001:db8::53", 53, b"")
        )
        self.failureResultOf(d)
        self.assertTrue(sock.closed)
