"""
Tests for the DNS and UDP options of C{twistd vpnkit} (L{vpnkit.tap}):
C{--dns}, C{--hosts}, C{--host-names}, C{--gateway-names},
C{--vm-names}, C{--udp-max-flows}, and the files they watch.
"""

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import tempDir
from vpnkit import options, tap
from vpnkit.protocols.dnsconfig import Nameserver
from vpnkit.tap import Options, makeService


class _FilesMixin:
    def setUp(self):
        self.dir = tempDir(self)
        self.sock = os.path.join(self.dir, "e.sock")
        self.dns = self.write("dns", "nameserver 192.0.2.53#5353\nzone corp.test\nsearch corp.test\n")
        self.hosts = self.write("hosts", "192.0.2.7 myhost.test\n")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, *args):
        options = Options()
        options.parseOptions(["--ethernet", self.sock, *args])
        return options

    def assertUsageError(self, args, *fragments):
        e = self.assertRaises(usage.UsageError, self.parse, *args)
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        self.assertNotIn("\n", str(e))


class DNSOptionsTests(_FilesMixin, SynchronousTestCase):
    """
    Parsing the options; every error is one line naming the flag and file.
    """

    def test_defaults(self):
        """
        Without options: the reference's builtin names, 1,024 UDP flows, no
        C{--dns} (the host's resolver), C{/etc/hosts}.
        """
        options = self.parse()
        config = options.config
        self.assertEqual(
            (config.hostNames, config.gatewayNames, config.vmNames, config.maxUDPFlows),
            (("host.internal",), ("gateway.internal",), ("vm.internal",), 1024),
        )
        self.assertEqual((options.dnsConfig, options.hostsPath), (None, "/etc/hosts"))

    def test_names(self):
        """
        The name options are comma-separated lists.
        """
        options = self.parse(
            "--host-names", "host.docker.internal, docker.for.mac.localhost",
            "--gateway-names", "gw.test",
            "--vm-names", "",
        )  # fmt: skip
        self.assertEqual(
            options.config.hostNames, ("host.docker.internal", "docker.for.mac.localhost")
        )
        self.assertEqual((options.config.gatewayNames, options.config.vmNames), (("gw.test",), ()))

    def test_badName(self):
        """
        A name with a space is refused, naming the flag.
        """
        self.assertUsageError(["--host-names", "a b"], "--host-names", "'a b'")

    def test_dnsFile(self):
        """
        C{--dns} is read and parsed at start-up.
        """
        options = self.parse("--dns", self.dns)
        self.assertEqual(options.dnsConfig.servers, (Nameserver("192.0.2.53", 5353, ("corp.test",)),))

    def test_dnsErrors(self):
        """
        A missing or unparsable C{--dns} file stops start-up, naming it.
        """
        self.assertUsageError(["--dns", self.dns + ".missing"], "--dns: ", "dns.missing")
        bad = self.write("bad", "nameserver 300.1.1.1\n")
        self.assertUsageError(["--dns", bad], "--dns: ", bad, "line 1")

    def test_hosts(self):
        """
        An explicit C{--hosts} must exist; C{--hosts ''} disables the hosts
        file; a missing default is tolerated.
        """
        self.assertUsageError(["--hosts", self.hosts + ".missing"], "--hosts: ", "hosts.missing")
        self.assertEqual(self.parse("--hosts", "").hostsPath, "")
        self.patch(options, "DEFAULT_HOSTS", self.hosts + ".missing")
        parsed = self.parse()
        self.assertEqual((parsed.hostsPath, parsed.hostsText), (self.hosts + ".missing", None))

    def test_maxFlows(self):
        """
        C{--udp-max-flows} must be a positive number.
        """
        self.assertEqual(self.parse("--udp-max-flows", "64").config.maxUDPFlows, 64)
        self.assertUsageError(["--udp-max-flows", "0"], "--udp-max-flows")
        self.assertUsageError(["--udp-max-flows", "many"], "--udp-max-flows")


class DNSServiceTests(_FilesMixin, SynchronousTestCase):
    """
    What L{makeService} builds from them.
    """

    def test_watchers(self):
        """
        With C{--dns}: watchers named C{dns} and C{hosts}, no
        C{resolv.conf}; the servers, the hosts entries and the search list
        (DHCP option 119) are in use at once.
        """
        reactor = MemoryReactorClock()
        service = makeService(self.parse("--dns", self.dns, "--hosts", self.hosts), reactor)
        names = {child.name for child in service}
        self.assertTrue({"dns", "hosts"} <= names)
        self.assertNotIn("resolv.conf", names)
        stack = service.stack
        self.assertEqual(stack.dnsUpstream.config.servers[0].port, 5353)
        self.assertEqual(stack.dhcpSettings().searchDomains, ("corp.test",))
        answers = self.successResultOf(stack.hosts.query(dns.Query(b"myhost.test")))
        self.assertEqual(answers[0][0].payload.dottedQuad(), "192.0.2.7")

    def test_reread(self):
        """
        Changed files take effect at the next poll: new servers and search
        list from C{--dns}, new names from C{--hosts}.
        """
        reactor = MemoryReactorClock()
        service = makeService(self.parse("--dns", self.dns, "--hosts", self.hosts), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.write("dns", "nameserver 192.0.2.54\nsearch other.test\n")
        self.write("hosts", "192.0.2.8 added.test\n")
        reactor.advance(1)
        stack = service.stack
        self.assertEqual(stack.dnsUpstream.config.servers, (Nameserver("192.0.2.54"),))
        self.assertEqual(stack.dhcpSettings().searchDomains, ("other.test",))
        answers = self.successResultOf(stack.hosts.query(dns.Query(b"added.test")))
        self.assertEqual(answers[0][0].payload.dottedQuad(), "192.0.2.8")

    def test_noHosts(self):
        """
        C{--hosts ''} watches no hosts file.
        """
        service = makeService(self.parse("--dns", self.dns, "--hosts", ""), MemoryReactorClock())
        self.assertNotIn("hosts", {child.name for child in service})

    def test_systemResolver(self):
        """
        Without C{--dns}, the host's C{resolv.conf} is watched and its
        servers answer the types C{getaddrinfo} cannot.
        """
        resolv = self.write("resolv.conf", "nameserver 192.0.2.1\n")
        self.patch(tap, "RESOLV_CONF", resolv)
        service = makeService(self.parse("--hosts", self.hosts), MemoryReactorClock())
        self.assertIn("resolv.conf", {child.name for child in service})
        self.assertEqual(service.stack.dnsUpstream.config.servers, (Nameserver("192.0.2.1"),))
        self.assertEqual(service.stack.dhcpSettings().searchDomains, ())
