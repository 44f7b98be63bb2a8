"""
Tests for L{vpnkit.tools.tapbridge}: its options, the vmnet command it
sends, and L{bridge} run against a real L{Stack} over an in-memory
connection with a L{FakeTunSystem} for the tap.
"""

import io
import sys
from ipaddress import IPv4Address

import twisted.logger
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.python import usage
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import GUEST_MAC, FakeTunSystem, arpReply, arpRequest, drainSocket
from vpnkit.config import StackConfig
from vpnkit.host.taplink import TapLink
from vpnkit.protocols.links import HandshakeRefused, QEMUServerFactory, VMNetServerFactory
from vpnkit.stack import Stack
from vpnkit.tools import tapbridge
from vpnkit.tools.tapbridge import BridgeOptions, bridge, main
from vpnkit.wire import vmnet

UUID = "5B2F6B6E-4E8C-4C8E-9A3E-4F1C2D3E4F50"
QEMU_MAC = bytes.fromhex("525400123456")


def parse(*args):
    options = BridgeOptions()
    options.parseOptions(list(args))
    return options


class BridgeOptionsTests(SynchronousTestCase):
    """
    L{BridgeOptions} checks every value up front.
    """

    def assertUsageError(self, args, expected):
        e = self.assertRaises(usage.UsageError, parse, *args)
        self.assertEqual(str(e), expected)

    def test_defaults(self):
        """
        By default: vmnet, tap0 in our own namespace, an all-zero UUID, no
        preferred address.
        """
        options = parse("--connect", "/run/vpnkit.sock")
        self.assertEqual(options["protocol"], "vmnet")
        self.assertEqual(options["tap"], "tap0")
        self.assertEqual(options.rawUUID, b"\0" * 36)
        self.assertIsNone(options.preferred)
        self.assertIsNone(options.mac)
        self.assertEqual(options.mtu, 1500)
        self.assertIsNone(options.netns)

    def test_missingConnect(self):
        """
        C{--connect} is required.
        """
        self.assertUsageError([], "--connect: which socket? (vpnkit's --ethernet or --qemu path)")

    def test_badProtocol(self):
        """
        Only vmnet, qemu, qemu-dgram and vfkit are protocols.
        """
        self.assertUsageError(
            ["-c", "s", "--protocol", "tcp"], "--protocol: 'tcp' is not vmnet, qemu, qemu-dgram or vfkit"
        )

    def test_badUUID(self):
        """
        A UUID that does not parse is refused.
        """
        self.assertUsageError(["-c", "s", "--uuid", "nope"], "--uuid: 'nope' is not a UUID")

    def test_badPreferredIP(self):
        """
        A preferred address that is not IPv4 is refused.
        """
        self.assertUsageError(
            ["-c", "s", "--preferred-ip", "192.168.65.256"], "--preferred-ip: '192.168.65.256' is not IPv4"
        )

    def test_badMAC(self):
        """
        A MAC that does not parse is refused.
        """
        self.assertUsageError(["-c", "s", "--mac", "52:54:00"], "--mac: '52:54:00' is not a MAC address")

    def test_badMTU(self):
        """
        A non-numeric MTU is refused.
        """
        self.assertUsageError(["-c", "s", "--mtu", "jumbo"], "--mtu: 'jumbo' is not a number")

    def test_values(self):
        """
        The UUID is canonicalised, the address packed, the MAC parsed and
        an C{ip netns} name turned into its path.
        """
        options = parse(
            "-c", "s", "--uuid", UUID, "--preferred-ip", "192.168.65.250",
            "--mac", "52:54:00:12:34:56", "--mtu", "9000", "--netns", "guest",
        )  # fmt: skip
        self.assertEqual(options.rawUUID, UUID.lower().encode())
        self.assertEqual(options.preferred, bytes([192, 168, 65, 250]))
        self.assertEqual(options.mac, QEMU_MAC)
        self.assertEqual(options.mtu, 9000)
        self.assertEqual(options.netns, "/var/run/netns/guest")
        self.assertEqual(parse("-c", "s", "--netns", "/proc/1/ns/net").netns, "/proc/1/ns/net")

    def test_defaultCommand(self):
        """
        The default command is Ethernet with 36 NULs: C{01} and 40 zero
        bytes on the wire.
        """
        command = parse("-c", "s").command()
        self.assertEqual(command, vmnet.EthernetCommand(b"\0" * 36))
        self.assertEqual(vmnet.emitCommand(command), b"\x01" + bytes(40))

    def test_uuidCommand(self):
        """
        With C{--uuid}, the Ethernet command carries the canonical text.
        """
        command = parse("-c", "s", "--uuid", UUID).command()
        self.assertEqual(vmnet.emitCommand(command), b"\x01" + UUID.lower().encode() + bytes(4))

    def test_preferredCommand(self):
        """
        With C{--preferred-ip}, the command is Preferred_ipv4 with the
        address's octets reversed.
        """
        command = parse("-c", "s", "--uuid", UUID, "--preferred-ip", "192.168.65.250").command()
        self.assertEqual(command, vmnet.PreferredIPv4Command(UUID.lower().encode(), bytes([192, 168, 65, 250])))
        self.assertEqual(
            vmnet.emitCommand(command), b"\x08" + UUID.lower().encode() + bytes.fromhex("FA41A8C0")
        )


class MainTests(SynchronousTestCase):
    """
    L{main} turns a usage error into one line and exit status 2.
    """

    def test_usageError(self):
        """
        Bad arguments: one line on standard error naming the tool, status 2.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, main, ["--protocol", "qemu"])
        self.assertEqual(e.code, 2)
        self.assertEqual(
            stderr.getvalue(), "vpnkit-tap-bridge: --connect: which socket? (vpnkit's --ethernet or --qemu path)\n"
        )


class _FakeLogBeginner:
    def __init__(self):
        self.observers = []

    def beginLoggingTo(self, observers, *args, **kwargs):
        self.observers.extend(observers)


class MainRunTests(SynchronousTestCase):
    """
    L{main} turns the common run-time failures into one line on standard
    error and exit status 1.
    """

    def setUp(self):
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)
        self.patch(twisted.logger, "globalLogBeginner", _FakeLogBeginner())
        self.results = []

    def runMain(self, reactor, argv):
        def fakeReact(function):
            function(reactor).addBoth(self.results.append)

        self.patch(tapbridge, "react", fakeReact)
        main(argv)

    def test_cannotConnect(self):
        """
        vpnkit's socket missing: one line naming the problem, status 1.
        """
        reactor = RaisingMemoryReactor(connectException=ConnectError(string="No such file or directory"))
        self.runMain(reactor, ["--connect", "/run/none.sock"])
        (result,) = self.results
        self.assertEqual(result.check(SystemExit), SystemExit)
        self.assertEqual(result.value.code, 1)
        self.assertEqual(
            self.stderr.getvalue(),
            "vpnkit-tap-bridge: An error occurred while connecting: No such file or directory.\n",
        )

    def test_refused(self):
        """
        A refused handshake: one line with vpnkit's reason, status 1.
        """
        reactor = MemoryReactorClock()
        self.runMain(reactor, ["--connect", "/run/vpnkit.sock", "--preferred-ip", "10.0.0.1"])
        self.assertEqual(self.results, [])
        ((_, factory, _, _),) = reactor.unixClients
        client = factory.buildProtocol(None)
        server = VMNetServerFactory(Stack(StackConfig(), reactor=task.Clock()).guests).buildProtocol(None)
        iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
        (result,) = self.results
        self.assertEqual(result.value.code, 1)
        self.assertEqual(
            self.stderr.getvalue(),
            "vpnkit-tap-bridge: vpnkit refused the connection: Preferred IP address out of range.\n",
        )


class BridgeTests(SynchronousTestCase):
    """
    L{bridge} against a real L{Stack}, over an in-memory connection.
    """

    def setUp(self):
        self.system = FakeTunSystem()
        self.addCleanup(self.system.cleanup)
        self.reactor = MemoryReactorClock()
        self.out = io.StringIO()

    def startBridge(self, serverFactory, *args):
        """
        Run L{bridge} with C{args} and connect it to a protocol from
        C{serverFactory}.

        @return: C{(Deferred of bridge, pump, server protocol)}
        """
        options = parse("--connect", "/run/vpnkit.sock", *args)
        done = Deferred.fromCoroutine(bridge(self.reactor, options, system=self.system, out=self.out))
        ((address, factory, _, _),) = self.reactor.unixClients
        self.assertEqual(address, "/run/vpnkit.sock")
        client = factory.buildProtocol(None)
        server = serverFactory.buildProtocol(None)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
        return done, pump, server

    def tapLink(self):
        (link,) = self.reactor.readers
        self.assertIsInstance(link, TapLink)
        return link

    def test_vmnet(self):
        """
        Over vmnet, the tap is opened with the MAC and MTU from the Vif, a
        "ready" line is printed, and frames flow both ways: a guest's ARP
        request on the tap is answered on the tap.
        """
        stack = Stack(StackConfig(mtu=9000), reactor=task.Clock())
        done, pump, _ = self.startBridge(VMNetServerFactory(stack.guests), "--netns", "guest", "--tap", "vk0")
        self.assertNoResult(done)
        (opened,) = self.system.opened
        self.assertEqual(
            (opened.netns, opened.name, opened.mac, opened.mtu),
            ("/var/run/netns/guest", "vk0", GUEST_MAC, 9000),
        )
        self.assertEqual(self.out.getvalue(), "ready vk0 mac=02:50:00:00:00:01 mtu=9000\n")
        link = self.tapLink()
        self.assertEqual(link._maxFrame, 9050)
        opened.guest.send(arpRequest())
        link.doRead()
        pump.flush()
        self.assertEqual(drainSocket(opened.guest), [arpReply()])
        self.assertEqual(stack.counters.arp.replies, 1)

    def test_vmnetPreferred(self):
        """
        C{--uuid} and C{--preferred-ip} reach the server.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        self.startBridge(VMNetServerFactory(stack.guests), "--uuid", UUID, "--preferred-ip", "192.168.65.250")
        (port,) = stack.switch.ports()
        self.assertEqual(port.lease.ip, IPv4Address("192.168.65.250"))
        self.assertEqual(port.lease.uuid, UUID.lower())

    def test_vmnetRefused(self):
        """
        A refused handshake fails the bridge with L{HandshakeRefused} and
        opens no tap.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        done, _, _ = self.startBridge(VMNetServerFactory(stack.guests), "--preferred-ip", "10.0.0.1")
        failure = self.failureResultOf(done, HandshakeRefused)
        self.assertEqual(str(failure.value), "Preferred IP address out of range.")
        self.assertEqual(self.system.opened, [])
        self.assertEqual(self.out.getvalue(), "")

    def test_serverCloses(self):
        """
        When vpnkit closes the connection, the tap is closed and the bridge
        finishes.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        done, pump, server = self.startBridge(VMNetServerFactory(stack.guests))
        server.transport.loseConnection()
        pump.flush()
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.system.closed, [self.system.opened[0].fd])
        self.assertEqual(self.reactor.readers, set())
        self.assertEqual(stack.switch.ports(), [])

    def test_tapCloses(self):
        """
        When the tap goes away, the connection to vpnkit is closed and the
        bridge finishes.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        done, pump, _ = self.startBridge(VMNetServerFactory(stack.guests))
        self.tapLink().closeLink("gone")
        pump.flush()
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(stack.switch.ports(), [])
        self.assertEqual(stack.pool.leases(), [])

    def test_qemu(self):
        """
        Over QEMU framing the tap takes C{--mac} and C{--mtu}, and frames
        flow both ways.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        done, pump, server = self.startBridge(
            QEMUServerFactory(stack.guests), "--protocol", "qemu", "--mac", "52:54:00:12:34:56", "--mtu", "4000"
        )
        (opened,) = self.system.opened
        self.assertEqual((opened.netns, opened.name, opened.mac, opened.mtu), (None, "tap0", QEMU_MAC, 4000))
        self.assertEqual(self.out.getvalue(), "ready tap0 mac=52:54:00:12:34:56 mtu=4000\n")
        opened.guest.send(arpRequest(QEMU_MAC))
        self.tapLink().doRead()
        pump.flush()
        self.assertEqual(drainSocket(opened.guest), [arpReply(QEMU_MAC)])

    def test_qemuRandomMAC(self):
        """
        Without C{--mac}, QEMU mode makes up a locally administered unicast
        MAC.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        self.startBridge(QEMUServerFactory(stack.guests), "--protocol", "qemu")
        mac = self.system.opened[0].mac
        self.assertEqual(len(mac), 6)
        self.assertEqual(mac[0] & 0x03, 0x02)

    def test_backpressure(self):
        """
        The tap is registered as a streaming producer on the connection, so
        a full socket to vpnkit pauses reading from the tap.
        """
        stack = Stack(StackConfig(), reactor=task.Clock())
        _, pump, _ = self.startBridge(VMNetServerFactory(stack.guests))
        link = self.tapLink()
        self.assertIs(pump.clientIO.producer, link)
        self.assertTrue(pump.clientIO.streamingProducer)
