"""
Tests for L{vpnkit.tap}: the C{twistd vpnkit} options, L{makeService} and
the services it builds.
"""

import errno
import grp
import io
import json
import os
import socket
import sys
from ipaddress import IPv4Address

from twisted.application.service import MultiService
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor, StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import GUEST_MAC, FakeTunSystem, arpReply, arpRequest, drainSocket, tempDir
from vpnkit import services, tap
from vpnkit.config import ConfigError, StackConfig
from vpnkit.log import debugEnabled, setDebug
from vpnkit.protocols.links import QEMUServerFactory, VMNetServerFactory
from vpnkit.services import connectionBudget
from vpnkit.stack import Stack
from vpnkit.tap import LinkSpec, NetnsTapService, Options, VPNKitService, makeService
from vpnkit.watch import WatchedFile
from vpnkit.wire.virtio import NO_OFFLOAD

INIT = b"VMN3T" + b"\x16\x00\x00\x00" + b"0123456789012345678901234567890123456789"


def staleSocket(path):
    """
    Leave a Unix socket file at C{path} that nobody listens on.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


class _OptionsMixin:
    def setUp(self):
        self.dir = tempDir(self)
        self.sock = os.path.join(self.dir, "vpnkit.eth.sock")
        self.patch(os, "environ", {})
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def parse(self, *args):
        options = Options()
        options.parseOptions(list(args))
        return options

    def assertUsageError(self, args, *fragments):
        """
        Parsing C{args} raises a L{usage.UsageError} whose message contains
        each of C{fragments}.
        """
        e = self.assertRaises(usage.UsageError, self.parse, *args)
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        return str(e)

    def writeFile(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class OptionsTests(_OptionsMixin, SynchronousTestCase):
    """
    L{Options} parses and checks the command line up front.
    """

    def test_defaults(self):
        """
        With only C{--ethernet PATH}, the configuration is the reference's
        defaults and one vmnet Unix listener is asked for.
        """
        options = self.parse("--ethernet", self.sock)
        self.assertEqual(options.config, StackConfig())
        self.assertEqual(options.links, [LinkSpec("vmnet", ("unix", self.sock))])
        self.assertFalse(options["debug"])
        self.assertIsNone(options.dhcpSettings)
        self.assertIsNone(options["domain"])
        self.assertEqual(options["tap"], "tap0")
        self.assertFalse(options.underTwistd)

    def test_addressing(self):
        """
        The addressing flags reach the L{StackConfig}.
        """
        options = self.parse(
            "--ethernet", self.sock,
            "--mtu", "9000",
            "--gateway-ip", "10.0.0.1",
            "--host-ip", "10.0.0.2",
            "--lowest-ip", "10.0.0.10",
            "--highest-ip", "10.0.0.200",
            "--server-macaddr", "02:00:00:00:00:01",
            "--domain", "example.com",
        )  # fmt: skip
        self.assertEqual(
            options.config,
            StackConfig(
                mtu=9000,
                gatewayIP=IPv4Address("10.0.0.1"),
                hostIP=IPv4Address("10.0.0.2"),
                lowestIP=IPv4Address("10.0.0.10"),
                highestIP=IPv4Address("10.0.0.200"),
                serverMAC=b"\x02\x00\x00\x00\x00\x01",
                domain="example.com",
            ),
        )

    def test_mtuOutOfRange(self):
        """
        An MTU outside 576..65520 is refused, naming C{--mtu}.
        """
        self.assertUsageError(["--ethernet", self.sock, "--mtu", "575"], "--mtu", "575")
        self.assertUsageError(["--ethernet", self.sock, "--mtu", "65521"], "--mtu", "65521")
        self.assertEqual(self.parse("--ethernet", self.sock, "--mtu", "65520").config.mtu, 65520)

    def test_mtuNotANumber(self):
        """
        A non-numeric MTU is refused, naming C{--mtu}.
        """
        msg = self.assertUsageError(["--ethernet", self.sock, "--mtu", "big"], "--mtu")
        self.assertEqual(msg, "--mtu: 'big' is not a number")

    def test_badAddresses(self):
        """
        Each address flag that does not hold an IPv4 address is named.
        """
        for flag in ("gateway-ip", "host-ip", "lowest-ip", "highest-ip"):
            msg = self.assertUsageError(["--ethernet", self.sock, f"--{flag}", "192.168.65.300"])
            self.assertEqual(msg, f"--{flag}: '192.168.65.300' is not an IPv4 address")

    def test_inconsistentAddresses(self):
        """
        Addresses that do not fit together are refused, naming the flag.
        """
        self.assertUsageError(["--ethernet", self.sock, "--gateway-ip", "192.168.65.10"], "--gateway-ip")
        self.assertUsageError(["--ethernet", self.sock, "--host-ip", "192.168.65.1"], "--host-ip")
        self.assertUsageError(
            ["--ethernet", self.sock, "--lowest-ip", "192.168.65.9", "--highest-ip", "192.168.65.5"],
            "--lowest-ip",
        )

    def test_hostIPDisabled(self):
        """
        C{--host-ip 0.0.0.0} disables the host alias.
        """
        self.assertIsNone(self.parse("--ethernet", self.sock, "--host-ip", "0.0.0.0").config.hostIP)

    def test_badServerMAC(self):
        """
        A server MAC that does not parse, or is a group address, is refused
        naming C{--server-macaddr}.
        """
        msg = self.assertUsageError(["--ethernet", self.sock, "--server-macaddr", "f6:16:36"])
        self.assertEqual(msg, "--server-macaddr: 'f6:16:36' is not a MAC address")
        self.assertUsageError(
            ["--ethernet", self.sock, "--server-macaddr", "01:00:5e:00:00:01"], "--server-macaddr"
        )

    def test_noLink(self):
        """
        Without any link the reference's message is given.
        """
        self.assertUsageError([], "Please provide an --ethernet argument")

    def test_unknownOption(self):
        """
        An unknown option is a usage error.
        """
        self.assertUsageError(["--ethernet", self.sock, "--bogus"], "bogus")

    def test_ethernetMissingDirectory(self):
        """
        A socket path in a directory that does not exist is refused.
        """
        path = os.path.join(self.dir, "missing", "s.sock")
        msg = self.assertUsageError(["--ethernet", path])
        self.assertEqual(msg, f"--ethernet: directory {os.path.dirname(path)} does not exist")

    def test_ethernetRegularFile(self):
        """
        A socket path that exists as a regular file is refused (vpnkit
        would otherwise delete it).
        """
        path = self.writeFile("precious", "data")
        msg = self.assertUsageError(["--ethernet", path])
        self.assertEqual(msg, f"--ethernet: {path} exists and is not a socket")

    def test_ethernetStaleSocket(self):
        """
        A socket path that exists as a socket is accepted (start-up decides
        whether it is stale).
        """
        staleSocket(self.sock)
        self.assertEqual(self.parse("--ethernet", self.sock).links, [LinkSpec("vmnet", ("unix", self.sock))])

    def test_ethernetURI(self):
        """
        Hyper-V and other URIs are refused as unsupported.
        """
        self.assertUsageError(
            ["--ethernet", "hyperv-connect://vm/svc"], "--ethernet", "only Unix socket paths and fd:N"
        )

    def test_fdNotOpen(self):
        """
        C{fd:N} naming a descriptor that is not open is refused.
        """
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        msg = self.assertUsageError([f"--ethernet=fd:{r}"])
        self.assertEqual(msg, f"--ethernet: fd:{r}: Bad file descriptor")

    def test_fdNotASocket(self):
        """
        C{fd:N} naming a descriptor that is not a socket is refused.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        msg = self.assertUsageError([f"--ethernet=fd:{r}"])
        self.assertEqual(msg, f"--ethernet: fd:{r} is not a socket")

    def test_fdNotANumber(self):
        """
        C{fd:} followed by something else than a number is refused.
        """
        self.assertUsageError(["--ethernet", "fd:three"], "--ethernet", "fd:three")

    def test_fdSocket(self):
        """
        C{fd:N} naming a socket is accepted, for vmnet and QEMU alike.
        """
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        options = self.parse(f"--ethernet=fd:{a.fileno()}", f"--qemu=fd:{b.fileno()}")
        self.assertEqual(
            options.links,
            [LinkSpec("vmnet", ("fd", a.fileno())), LinkSpec("qemu", ("fd", b.fileno()))],
        )

    def test_qemuTCP(self):
        """
        C{--qemu tcp:HOST:PORT} parses into a TCP listener; an empty host
        means 127.0.0.1.
        """
        links = self.parse("--qemu", "tcp:127.0.0.1:5555", "--qemu", "tcp::1234", "--qemu", "tcp:4321").links
        self.assertEqual(
            links,
            [
                LinkSpec("qemu", ("tcp", "127.0.0.1", 5555)),
                LinkSpec("qemu", ("tcp", "127.0.0.1", 1234)),
                LinkSpec("qemu", ("tcp", "127.0.0.1", 4321)),
            ],
        )
        self.assertEqual(links[0].describe(), "qemu on tcp:127.0.0.1:5555")

    def test_qemuTCPErrors(self):
        """
        A bad port or host in C{--qemu tcp:} is refused, naming C{--qemu}.
        """
        self.assertEqual(
            self.assertUsageError(["--qemu", "tcp:127.0.0.1:65536"]), "--qemu: port 65536 is out of range"
        )
        self.assertEqual(
            self.assertUsageError(["--qemu", "tcp:127.0.0.1:http"]), "--qemu: 'http' is not a number"
        )
        self.assertUsageError(["--qemu", "tcp:localhost:80"], "--qemu", "localhost")

    def test_qemuUnix(self):
        """
        C{--qemu PATH} and C{--qemu unix:PATH} are Unix listeners, checked
        like C{--ethernet} paths.
        """
        other = os.path.join(self.dir, "q2.sock")
        self.assertEqual(
            self.parse("--qemu", self.sock, "--qemu", "unix:" + other).links,
            [LinkSpec("qemu", ("unix", self.sock)), LinkSpec("qemu", ("unix", other))],
        )
        self.assertUsageError(["--qemu", "unix:/nonexistent-vpnkit-dir/q.sock"], "--qemu", "does not exist")

    def test_netnsMissing(self):
        """
        A network namespace that does not exist is refused, naming
        C{--netns} and the path looked for.
        """
        msg = self.assertUsageError(["--netns", "vpnkit-no-such-namespace"])
        self.assertEqual(msg, "--netns: network namespace /var/run/netns/vpnkit-no-such-namespace does not exist")
        missing = os.path.join(self.dir, "ns")
        self.assertUsageError(["--netns", missing], "--netns", missing)

    def test_netnsInterfaceName(self):
        """
        C{--netns NAME:IFNAME} names the tap; without it C{--tap} (default
        C{tap0}) is used.
        """
        ns = self.writeFile("ns", "")
        links = self.parse("--netns", ns + ":eth1", "--netns", ns).links
        self.assertEqual(
            links, [LinkSpec("netns", ("netns", ns, "eth1")), LinkSpec("netns", ("netns", ns, "tap0"))]
        )
        links = self.parse("--tap", "vk0", "--netns", ns).links
        self.assertEqual(links, [LinkSpec("netns", ("netns", ns, "vk0"))])

    def test_netnsBadInterfaceName(self):
        """
        An empty or too long interface name is refused.
        """
        ns = self.writeFile("ns", "")
        self.assertUsageError(["--netns", ns + ":"], "--netns", "interface name")
        self.assertUsageError(["--netns", ns + ":" + "x" * 16], "--netns", "x" * 16)

    def test_repeatable(self):
        """
        C{--ethernet}, C{--qemu} and C{--netns} may each be repeated; the
        links are vmnet, then QEMU, then netns, each in command-line order.
        """
        ns = self.writeFile("ns", "")
        other = os.path.join(self.dir, "b.sock")
        links = self.parse(
            "--netns", ns, "--ethernet", self.sock, "--qemu", "tcp::1", "--ethernet", other
        ).links
        self.assertEqual(
            links,
            [
                LinkSpec("vmnet", ("unix", self.sock)),
                LinkSpec("vmnet", ("unix", other)),
                LinkSpec("qemu", ("tcp", "127.0.0.1", 1)),
                LinkSpec("netns", ("netns", ns, "tap0")),
            ],
        )

    def test_dhcpPath(self):
        """
        C{--dhcp-path} is read at start-up; the reference's abbreviation
        C{--dhcp} (Docker Desktop passes it) works too.
        """
        path = self.writeFile("dhcp.json", json.dumps({"domainName": "example.com", "searchDomains": ["a.example"]}))
        expected = ("example.com", ("a.example",))
        self.assertEqual(self.parse("--ethernet", self.sock, "--dhcp-path", path).dhcpSettings, expected)
        self.assertEqual(self.parse("--ethernet", self.sock, "--dhcp", path).dhcpSettings, expected)

    def test_dhcpPathInvalid(self):
        """
        A C{--dhcp-path} file that is not valid JSON, or missing, is refused
        naming the flag and the file.
        """
        path = self.writeFile("dhcp.json", "{nope")
        msg = self.assertUsageError(["--ethernet", self.sock, "--dhcp-path", path], "--dhcp-path", path)
        self.assertIn("not valid JSON", msg)
        missing = os.path.join(self.dir, "none.json")
        self.assertUsageError(["--ethernet", self.sock, "--dhcp-path", missing], "--dhcp-path", missing)

    def test_debugFlag(self):
        """
        C{--debug} turns debug logging on.
        """
        self.assertTrue(self.parse("--ethernet", self.sock, "--debug").get("debug"))

    def test_debugEnvironment(self):
        """
        C{VPNKIT_DEBUG} in the environment turns debug logging on.
        """
        self.patch(os, "environ", {"VPNKIT_DEBUG": "1"})
        self.assertTrue(self.parse("--ethernet", self.sock)["debug"])

    def test_usageErrorUnderTwistd(self):
        """
        Under twistd (the options have a parent), a usage error is one line
        on standard error and exit status 2, not a traceback or a usage
        screen.
        """
        options = Options()
        options.parent = object()
        e = self.assertRaises(SystemExit, options.parseOptions, ["--ethernet", self.sock, "--mtu", "1"])
        self.assertEqual(e.code, 2)
        self.assertEqual(self.stderr.getvalue(), "vpnkit: --mtu: 1 is outside 576..65520\n")
        self.assertTrue(options.underTwistd)

    def test_unknownOptionUnderTwistd(self):
        """
        An unknown option under twistd is also exactly one line.
        """
        options = Options()
        options.parent = object()
        e = self.assertRaises(SystemExit, options.parseOptions, ["--bogus"])
        self.assertEqual(e.code, 2)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("vpnkit: "))
        self.assertIn("bogus", lines[0])


class MakeServiceTests(_OptionsMixin, SynchronousTestCase):
    """
    L{makeService} builds one named child per link around a L{Stack}.
    """

    def setUp(self):
        super().setUp()
        self.reactor = MemoryReactorClock()
        self.addCleanup(setDebug, False)
        self.ns = self.writeFile("ns", "")
        self.dhcp = self.writeFile("dhcp.json", json.dumps({"domainName": "example.com"}))

    def makeAll(self, *extra):
        options = self.parse(
            "--ethernet", self.sock,
            "--qemu", "tcp:127.0.0.1:5555",
            "--netns", self.ns + ":eth1",
            "--dhcp-path", self.dhcp,
            *extra,
        )  # fmt: skip
        return options, makeService(options, self.reactor)

    def test_logStats(self):
        """
        L{VPNKitService.logStats} (what C{kill -USR1} triggers under
        twistd) logs the stack's statistics as one JSON event.
        """
        from twisted.logger import globalLogPublisher

        options, service = self.makeAll()
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service.logStats()
        [event] = [e for e in events if e.get("log_format", "").startswith("stats:")]
        self.assertEqual(json.loads(event["stats"]), service.stack.stats())

    def test_children(self):
        """
        The service is a L{VPNKitService} (a L{MultiService}) with one child
        per link, named after it, a L{WatchedFile} for C{--dhcp-path}, the
        hosts file and (without C{--dns}) the host's C{resolv.conf}, and the
        port forwarder.
        """
        options, service = self.makeAll()
        self.assertIsInstance(service, VPNKitService)
        self.assertIsInstance(service, MultiService)
        names = sorted(child.name for child in service)
        self.assertEqual(
            names,
            sorted(
                [
                    f"vmnet on unix:{self.sock}",
                    "qemu on tcp:127.0.0.1:5555",
                    f"netns on netns:{self.ns}:eth1",
                    "dhcp-path",
                    "hosts",
                    "resolv.conf",
                    "forwards",
                ]
            ),
        )
        unix = service.getServiceNamed(f"vmnet on unix:{self.sock}")
        self.assertIsInstance(unix, tap.UnixLinkListenService)
        self.assertIsInstance(unix.factory, VMNetServerFactory)
        qemu = service.getServiceNamed("qemu on tcp:127.0.0.1:5555")
        self.assertIsInstance(qemu, tap.LinkListenService)
        self.assertIsInstance(qemu.factory, QEMUServerFactory)
        self.assertIsInstance(service.getServiceNamed(f"netns on netns:{self.ns}:eth1"), NetnsTapService)
        watcher = service.getServiceNamed("dhcp-path")
        self.assertIsInstance(watcher, WatchedFile)
        self.assertEqual(watcher.path, self.dhcp)
        self.assertIs(unix.factory.guests, service.stack.guests)
        self.assertIs(qemu.factory.guests, service.stack.guests)
        self.assertEqual(service.stack.config, options.config)
        self.assertIs(service.stack.reactor, self.reactor)
        self.assertFalse(service.exitOnError)

    def test_dhcpFileApplied(self):
        """
        The C{--dhcp-path} settings read at start-up are in force.
        """
        _, service = self.makeAll()
        self.assertEqual(service.stack.dhcpSettings().domainName, "example.com")

    def test_workingStack(self):
        """
        A guest connected through the vmnet listener's factory is served by
        the stack: it gets a Vif and its ARP request is answered.
        """
        _, service = self.makeAll()
        factory = service.getServiceNamed(f"vmnet on unix:{self.sock}").factory
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(INIT + b"\x01" + bytes(40) + b"\x2a\x00" + arpRequest())
        self.assertEqual(
            transport.value()[49 + 258 :], b"\x2a\x00" + arpReply()
        )

    def test_debug(self):
        """
        C{--debug} turns debug logging on for every vpnkit logger; without
        it, it is off.
        """
        self.makeAll("--debug")
        self.assertTrue(debugEnabled())
        self.makeAll()
        self.assertFalse(debugEnabled())

    def test_underTwistd(self):
        """
        Built from options parsed under twistd, the service exits on a
        start-up error instead of raising.
        """
        options = Options()
        options.parent = object()
        options.parseOptions(["--ethernet", self.sock])
        self.assertTrue(makeService(options, self.reactor).exitOnError)

    def test_startAndStop(self):
        """
        Starting the service listens on the Unix path and the TCP port and
        starts polling the watched files (C{--dhcp-path}, the hosts file,
        C{resolv.conf}); stopping it undoes that.
        """
        options = self.parse("--ethernet", self.sock, "--qemu", "tcp:127.0.0.1:5555", "--dhcp-path", self.dhcp)
        service = makeService(options, self.reactor)
        service.privilegedStartService()
        service.startService()
        self.assertEqual([s[0] for s in self.reactor.unixServers], [self.sock])
        self.assertEqual([(s[0], s[3]) for s in self.reactor.tcpServers], [(5555, "127.0.0.1")])
        self.assertEqual(len(self.reactor.getDelayedCalls()), 3)
        self.assertTrue(service.running)
        service.stopService()
        self.assertFalse(service.running)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class SocketModeTests(_OptionsMixin, SynchronousTestCase):
    """
    Guest link sockets are for vpnkit's user only (0600), or for a group
    named with C{--socket-group} (0660, owned by it).
    """

    def setUp(self):
        super().setUp()
        self.reactor = MemoryReactorClock()
        self.chowned = []
        self.patch(os, "chown", lambda path, uid, gid: self.chowned.append((path, uid, gid)))

    def start(self, *extra):
        qemu = os.path.join(self.dir, "qemu.sock")
        options = self.parse("--ethernet", self.sock, "--qemu", qemu, "--hosts", "", *extra)
        service = makeService(options, self.reactor)
        service.privilegedStartService()
        self.addCleanup(service.stopService)
        return {address: mode for address, _, _, mode, _ in self.reactor.unixServers}, qemu

    def test_ownerOnlyByDefault(self):
        """
        Without C{--socket-group} the vmnet and QEMU sockets are mode 0600
        and their group is left alone.
        """
        modes, qemu = self.start()
        self.assertEqual(modes, {self.sock: 0o600, qemu: 0o600})
        self.assertEqual(self.chowned, [])

    def test_group(self):
        """
        C{--socket-group} (a name or a number) makes them 0660 and gives
        them to that group once bound.
        """
        gid = os.getegid()
        name = grp.getgrgid(gid).gr_name
        for value in (name, str(gid)):
            self.reactor = MemoryReactorClock()
            self.chowned = []
            modes, qemu = self.start("--socket-group", value)
            self.assertEqual(modes, {self.sock: 0o660, qemu: 0o660})
            self.assertEqual(sorted(self.chowned), sorted([(self.sock, -1, gid), (qemu, -1, gid)]))

    def test_unknownGroup(self):
        """
        A group that does not exist stops start-up with one line.
        """
        self.assertUsageError(
            ["--ethernet", self.sock, "--socket-group", "no-such-group-vpnkit"],
            "--socket-group", "no group named 'no-such-group-vpnkit'",
        )
        self.assertUsageError(
            ["--ethernet", self.sock, "--socket-group", "-3"], "--socket-group", "not a group id"
        )

    def test_notMember(self):
        """
        Without root, a group vpnkit's user is not in is refused: it could
        not give the sockets to it.
        """
        self.patch(os, "geteuid", lambda: 1000)
        self.patch(os, "getegid", lambda: 1000)
        self.patch(os, "getgroups", lambda: [1000])
        self.assertUsageError(
            ["--ethernet", self.sock, "--socket-group", "0"], "--socket-group", "not a member"
        )


class ConnectionBudgetTests(_OptionsMixin, SynchronousTestCase):
    """
    The TCP connection budget: C{--max-half-open},
    C{--max-half-open-per-guest}, and C{--max-connections} derived from
    the open-file limit when not given.
    """

    def setUp(self):
        super().setUp()
        self.reactor = MemoryReactorClock()

    def build(self, *extra):
        options = self.parse("--ethernet", self.sock, "--hosts", "", *extra)
        return makeService(options, self.reactor)

    def test_defaults(self):
        """
        By default a guest may have 1,024 half-open connections, all guests
        4,096, and the total is left for the open-file limit to decide.
        """
        limits = self.build().stack.tcp.limits
        self.assertEqual(
            (limits.maxConnections, limits.maxHalfOpen, limits.maxHalfOpenPerGuest), (None, 4096, 1024)
        )

    def test_flags(self):
        """
        The flags set the limits.
        """
        limits = self.build(
            "--max-connections", "500", "--max-half-open", "64", "--max-half-open-per-guest", "8"
        ).stack.tcp.limits
        self.assertEqual(
            (limits.maxConnections, limits.maxHalfOpen, limits.maxHalfOpenPerGuest), (500, 64, 8)
        )

    def test_badFlags(self):
        """
        Half-open budgets below 1 or not numbers stop start-up.
        """
        for flag in ("--max-half-open", "--max-half-open-per-guest"):
            self.assertUsageError(["--ethernet", self.sock, flag, "0"], flag, "at least 1")
            self.assertUsageError(["--ethernet", self.sock, flag, "x"], flag, "not a number")

    def test_budgetFromFileLimit(self):
        """
        Without C{--max-connections}, starting caps connections at the
        open-file limit less the reserve (256, one per guest address, and
        the UDP, ICMP, gateway-forward and DNS tables' caps); with a small
        limit, at half of it.
        """
        service = self.build()
        reserve = 256 + 252 + 1024 + 1024 + 256 + 1024
        self.assertEqual(connectionBudget(100000, service.stack), 100000 - reserve)
        self.assertEqual(connectionBudget(4096, service.stack), 2048)
        service.applyConnectionBudget(100000)
        self.assertEqual(service.stack.tcp.limits.maxConnections, 100000 - reserve)

    def test_explicitKept(self):
        """
        A C{--max-connections} given is never replaced, and the start-up
        applies the budget for the limit in force.
        """
        service = self.build("--max-connections", "7")
        service.applyConnectionBudget(100000)
        self.assertEqual(service.stack.tcp.limits.maxConnections, 7)
        derived = self.build()
        self.patch(services, "softFileLimit", lambda: 8000)
        derived.privilegedStartService()
        self.addCleanup(derived.stopService)
        self.assertEqual(
            derived.stack.tcp.limits.maxConnections, connectionBudget(8000, derived.stack)
        )


class UnixListenServiceTests(SynchronousTestCase):
    """
    L{tap.UnixLinkListenService} removes a stale socket before listening but
    never takes over one in use.
    """

    def setUp(self):
        self.path = os.path.join(tempDir(self), "s.sock")
        self.reactor = MemoryReactorClock()
        self.service = tap.UnixLinkListenService(self.path, VMNetServerFactory(None), self.reactor)

    def test_noFile(self):
        """
        With nothing at the path, it just listens there.
        """
        self.service.privilegedStartService()
        self.assertEqual([s[0] for s in self.reactor.unixServers], [self.path])

    def test_staleSocket(self):
        """
        A socket file nobody listens on is removed, then listened on.
        """
        staleSocket(self.path)
        self.service.privilegedStartService()
        self.assertFalse(os.path.lexists(self.path))
        self.assertEqual([s[0] for s in self.reactor.unixServers], [self.path])

    def test_regularFile(self):
        """
        A regular file at the path (which also refuses connections) is
        never removed: start-up fails naming it.
        """
        with open(self.path, "w") as f:
            f.write("precious")
        e = self.assertRaises(ConfigError, self.service.privilegedStartService)
        self.assertEqual(str(e), f"--ethernet {self.path}: exists and is not a socket")
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(self.reactor.unixServers, [])

    def test_inUse(self):
        """
        A socket another process listens on is left alone and start-up
        fails with a L{ConfigError} naming it.
        """
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(live.close)
        live.bind(self.path)
        live.listen(1)
        e = self.assertRaises(ConfigError, self.service.privilegedStartService)
        self.assertEqual(str(e), f"--ethernet {self.path}: in use by another process")
        self.assertTrue(os.path.lexists(self.path))
        self.assertEqual(self.reactor.unixServers, [])


class NetnsTapServiceTests(SynchronousTestCase):
    """
    L{NetnsTapService} over a L{FakeTunSystem}.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.stack = Stack(StackConfig(mtu=9000), reactor=self.reactor)
        self.system = FakeTunSystem()
        self.addCleanup(self.system.cleanup)
        self.service = NetnsTapService(self.stack.guests, "/var/run/netns/guest", "eth1", system=self.system, reactor=self.stack.reactor)
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def test_start(self):
        """
        Starting opens the tap in the namespace with the lease's MAC and the
        configured MTU, attaches a port with that MAC and starts reading.
        """
        self.service.startService()
        (opened,) = self.system.opened
        self.assertEqual((opened.netns, opened.name, opened.mac, opened.mtu), ("/var/run/netns/guest", "eth1", GUEST_MAC, 9000))
        (port,) = self.stack.switch.ports()
        self.assertIs(port.link, self.service.link)
        self.assertEqual(port.mac, GUEST_MAC)
        self.assertEqual(str(port.lease.ip), "192.168.65.3")
        self.assertTrue(port.lease.ephemeral)
        self.assertIn(self.service.link, self.reactor.readers)
        self.assertIs(self.service.link._reactor, self.reactor)

    def test_frames(self):
        """
        The tap is opened with offload (a virtio-net header before every
        frame): a frame the guest writes behind its header reaches the
        stack, and the reply comes back as one frame behind an all-zero
        header (no offload asked of the guest).
        """
        self.service.startService()
        opened = self.system.opened[0]
        self.assertTrue(opened.offload)
        opened.guest.send(NO_OFFLOAD + arpRequest())
        self.service.link.doRead()
        self.assertEqual(drainSocket(opened.guest), [NO_OFFLOAD + arpReply()])
        self.assertEqual(self.stack.counters.link.framesIn, 1)

    def test_stop(self):
        """
        Stopping closes the tap, detaches the port and gives the address
        back.
        """
        self.service.startService()
        fd = self.system.opened[0].fd
        self.service.stopService()
        self.assertEqual(self.system.closed, [fd])
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertIsNone(self.service.link)
        self.assertEqual(self.reactor.readers, set())

    def test_deviceGone(self):
        """
        When the device goes away the port is detached and the address
        given back.
        """
        self.service.startService()
        link = self.service.link
        self.system.opened[0].guest.close()
        why = link.doRead()
        self.assertIsInstance(why, ConnectionDone)
        link.connectionLost(Failure(why))
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])

    def test_openFails(self):
        """
        A failing C{openTap} becomes a L{ConfigError} naming C{--netns} and
        the interface, and the lease is given back.
        """
        self.system.openError = OSError(errno.EPERM, "Operation not permitted")
        e = self.assertRaises(ConfigError, self.service.startService)
        self.assertEqual(
            str(e), "--netns /var/run/netns/guest: cannot create eth1: [Errno 1] Operation not permitted"
        )
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertEqual(self.stack.switch.ports(), [])

    def test_rangeExhausted(self):
        """
        With no address left, start-up fails naming C{--netns}.
        """
        stack = Stack(
            StackConfig(lowestIP=IPv4Address("192.168.65.4"), highestIP=IPv4Address("192.168.65.4")),
            reactor=self.reactor,
        )
        stack.guests.ephemeralLease()
        service = NetnsTapService(stack.guests, "/var/run/netns/guest", "eth1", system=self.system, reactor=stack.reactor)
        e = self.assertRaises(ConfigError, service.startService)
        self.assertEqual(str(e), "--netns /var/run/netns/guest: No IP addresses available.")
        self.assertEqual(self.system.opened, [])

    def test_exitOnError(self):
        """
        Inside a L{VPNKitService} started by twistd, the failure is one line
        on standard error and exit status 1.
        """
        self.system.openError = OSError(errno.EPERM, "Operation not permitted")
        top = VPNKitService(self.stack, exitOnError=True)
        self.service.setServiceParent(top)
        e = self.assertRaises(SystemExit, top.startService)
        self.assertEqual(e.code, 1)
        self.assertEqual(
            self.stderr.getvalue(),
            "vpnkit: --netns /var/run/netns/guest: cannot create eth1: [Errno 1] Operation not permitted\n",
        )

    def test_raiseWithoutExitOnError(self):
        """
        Embedded (not under twistd), the L{ConfigError} propagates and
        nothing is written to standard error.
        """
        self.system.openError = OSError(errno.EPERM, "Operation not permitted")
        top = VPNKitService(self.stack)
        self.service.setServiceParent(top)
        self.assertRaises(ConfigError, top.startService)
        self.assertEqual(self.stderr.getvalue(), "")


class ListenErrorTests(SynchronousTestCase):
    """
    A listener that cannot be bound at start-up is one line and exit status
    1 under twistd.
    """

    def setUp(self):
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)
        self.path = os.path.join(tempDir(self), "s.sock")
        error = CannotListenError(None, self.path, OSError(errno.EACCES, "Permission denied"))
        self.reactor = RaisingMemoryReactor(listenException=error)
        self.stack = Stack(StackConfig(), reactor=MemoryReactorClock())

    def test_exitOnError(self):
        """
        Under twistd, a L{CannotListenError} from the Unix listener exits
        with status 1 and one line naming the flag, the path and the reason,
        with no Python repr in it.
        """
        top = VPNKitService(self.stack, exitOnError=True)
        tap.UnixLinkListenService(self.path, VMNetServerFactory(self.stack.guests), self.reactor).setServiceParent(top)
        e = self.assertRaises(SystemExit, top.privilegedStartService)
        self.assertEqual(e.code, 1)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(
            lines[0], f"vpnkit: --ethernet {self.path}: cannot listen: Permission denied"
        )

    def test_daemonRaisesStartupError(self):
        """
        In a twistd daemon the failure is a L{StartupError} carrying the one
        line (twistd reports an C{Exception} through its status pipe and
        removes its pid file; a C{SystemExit} would leave the parent
        waiting), and listeners already bound are closed.
        """
        from vpnkit.services import StartupError, UnixLinkListenService

        top = VPNKitService(self.stack, exitOnError=True, daemon=True)
        reactor = MemoryReactorClock()
        first = UnixLinkListenService(os.path.join(tempDir(self), "ok.sock"), VMNetServerFactory(self.stack.guests), reactor)
        first.setServiceParent(top)
        tap.UnixLinkListenService(self.path, VMNetServerFactory(self.stack.guests), self.reactor).setServiceParent(top)
        e = self.assertRaises(StartupError, top.privilegedStartService)
        self.assertEqual(str(e), f"vpnkit: --ethernet {self.path}: cannot listen: Permission denied")
        self.assertEqual(self.stderr.getvalue(), "")
        self.assertIsNone(first.port)

    def test_raiseWithoutExitOnError(self):
        """
        Embedded, the error propagates as a L{ConfigError} with the same
        words.
        """
        top = VPNKitService(self.stack)
        tap.UnixLinkListenService(self.path, VMNetServerFactory(self.stack.guests), self.reactor).setServiceParent(top)
        e = self.assertRaises(ConfigError, top.privilegedStartService)
        self.assertEqual(str(e), f"--ethernet {self.path}: cannot listen: Permission denied")


class EndpointTests(SynchronousTestCase):
    """
    The listeners' endpoints (L{vpnkit.listeners.ReactorEndpoint},
    L{vpnkit.listeners.AdoptedEndpoint}) make the reactor calls Twisted's
    endpoints would.
    """

    def test_tcp(self):
        """
        C{("tcp", host, port)} listens with C{listenTCP} on that interface,
        with the backlog asked for.
        """
        reactor = MemoryReactorClock()
        service = services.listenService(
            ("tcp", "127.0.0.1", 5555), VMNetServerFactory(None), reactor, "--qemu", backlog=7
        )
        service.startService()
        ((port, factory, backlog, interface),) = reactor.tcpServers
        self.assertEqual((port, backlog, interface), (5555, 7, "127.0.0.1"))
        self.assertIsInstance(factory, VMNetServerFactory)

    def test_adoptedOnce(self):
        """
        An inherited descriptor is adopted once and then closed (the
        reactor holds a copy); a second listen fails with
        L{AlreadyListened}.
        """
        from twisted.internet.error import AlreadyListened

        from vpnkit.listeners import AdoptedEndpoint

        class Adopting(MemoryReactorClock):
            def adoptStreamPort(self, fileno, family, factory):
                self.adopted = (fileno, family, factory)
                return object()

        reactor = Adopting()
        fd = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).detach()
        endpoint = AdoptedEndpoint(reactor, fd, socket.AF_UNIX)
        factory = VMNetServerFactory(None)
        self.assertIsNotNone(self.successResultOf(endpoint.listen(factory)))
        self.assertEqual(reactor.adopted, (fd, socket.AF_UNIX, factory))
        self.assertRaises(OSError, os.fstat, fd)
        self.failureResultOf(endpoint.listen(factory), AlreadyListened)


class ForwardingOptionsTests(_OptionsMixin, SynchronousTestCase):
    """
    The port-forwarding, API and gateway-forward options.
    """

    def test_expose(self):
        """
        --expose is repeatable and parsed into specs; a bad one names the
        flag.
        """
        options = self.parse(
            "--ethernet", self.sock,
            "--expose", "tcp:127.0.0.1:8080:tcp:192.168.65.3:80",
            "--expose", "udp:0.0.0.0:0:udp:192.168.65.3:53",
        )  # fmt: skip
        self.assertEqual(
            [str(s) for s in options.exposes],
            ["tcp:127.0.0.1:8080:tcp:192.168.65.3:80", "udp:0.0.0.0:0:udp:192.168.65.3:53"],
        )
        self.assertUsageError(["--ethernet", self.sock, "--expose", "tcp:1:2"], "--expose", "expected")

    def test_gatewayForwardFlags(self):
        """
        --tcpv4-forwards and --udpv4-forwards parse; a bad entry is the
        reference's message naming the flag.
        """
        options = self.parse(
            "--ethernet", self.sock, "--tcpv4-forwards", "8888:127.0.0.1:8888",
            "--udpv4-forwards", "123:127.0.0.1:1123",
        )  # fmt: skip
        self.assertEqual(
            [(f.protocol, f.externalPort) for f in options.gatewayForwards],
            [("tcp", 8888), ("udp", 123)],
        )
        self.assertUsageError(
            ["--ethernet", self.sock, "--tcpv4-forwards", "8888"],
            "--tcpv4-forwards: Failed to parse forwards",
        )

    def test_gatewayForwardsFile(self):
        """
        A missing --gateway-forwards file is tolerated (picked up when it
        appears); one that does not parse stops start-up naming it.
        """
        missing = os.path.join(self.dir, "gf.json")
        self.assertIsNone(
            self.parse("--ethernet", self.sock, "--gateway-forwards", missing).gatewayForwardsFile
        )
        bad = self.writeFile("bad.json", "[{")
        self.assertUsageError(
            ["--ethernet", self.sock, "--gateway-forwards", bad], "--gateway-forwards", "bad.json"
        )

    def test_allowedBindAddresses(self):
        """
        --allowed-bind-addresses takes a comma list of IPv4 addresses.
        """
        options = self.parse(
            "--ethernet", self.sock, "--allowed-bind-addresses", "127.0.0.1, 10.0.0.1"
        )  # fmt: skip
        self.assertEqual(options.allowedBindAddresses, ["127.0.0.1", "10.0.0.1"])
        self.assertUsageError(
            ["--ethernet", self.sock, "--allowed-bind-addresses", "localhost"],
            "--allowed-bind-addresses",
        )

    def test_apiPath(self):
        """
        --api in a missing directory stops start-up.
        """
        self.assertUsageError(
            ["--ethernet", self.sock, "--api", "/nonexistent/dir/api.sock"], "--api", "does not exist"
        )

    def test_exposeFailureStopsStartup(self):
        """
        An --expose that cannot bind is a start-up error naming it.
        """
        from tests.test_forwards import ListenReactor
        from vpnkit.tap import ExposeService

        reactor = ListenReactor()
        reactor.listenTCP(8080, None)
        options = self.parse(
            "--ethernet", self.sock, "--expose", "tcp:127.0.0.1:8080:tcp:192.168.65.3:80"
        )  # fmt: skip
        service = ExposeService(reactor, None, "192.168.65.2", "192.168.65.1", None, options.exposes)
        e = self.assertRaises(ConfigError, service.startService)
        self.assertIn("--expose tcp:127.0.0.1:8080", str(e))
        self.assertIn("port is already allocated", str(e))


class FileLimitTests(SynchronousTestCase):
    """
    L{tap.raiseFileLimit} lifts the soft open-file limit to the hard one.
    """

    class FakeResource:
        RLIMIT_NOFILE = 7
        RLIM_INFINITY = -1

        def __init__(self, soft, hard, fail=False):
            self.limits = (soft, hard)
            self.fail = fail

        def getrlimit(self, which):
            return self.limits

        def setrlimit(self, which, limits):
            if self.fail:
                raise ValueError("not permitted")
            self.limits = limits

    def test_raised(self):
        """
        A soft limit under the hard one is raised to it.
        """
        fake = self.FakeResource(1024, 524288)
        self.assertEqual(tap.raiseFileLimit(fake), 524288)
        self.assertEqual(fake.limits, (524288, 524288))

    def test_refusedKeepsSoft(self):
        """
        If the kernel refuses, the soft limit stays (and it is logged).
        """
        fake = self.FakeResource(1024, 4096, fail=True)
        self.assertEqual(tap.raiseFileLimit(fake), 1024)
