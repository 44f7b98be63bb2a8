"""
Tests for L{vpnkit.host.proxy}: where a guest's TCP connection is dialled
(L{HostRoute}) and the protocol on the host socket (L{HostSide}); and
L{vpnkit.protocols.tcp.splice.GuestSide}, the guest end.
"""

from ipaddress import IPv4Address

from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.helpers import FakeHostNetwork, ip
from vpnkit.config import StackConfig
from vpnkit.host.proxy import HostRoute, HostSide
from vpnkit.protocols.tcp.splice import GuestSide
from vpnkit.interfaces import ITCPRoute
from vpnkit.protocols.tcp.layer import Flow

GUEST = ip("192.168.65.3")


def flow(dst, port=80):
    return Flow(GUEST, 40000, ip(dst), port)


class FakeGuest:
    """
    Records the calls a L{HostSide} makes on the guest connection.
    """

    def __init__(self):
        self.calls = []

    def write(self, data):
        self.calls.append(("write", data))

    def loseWriteConnection(self):
        self.calls.append("loseWriteConnection")

    def loseConnection(self):
        self.calls.append("loseConnection")

    def abortConnection(self):
        self.calls.append("abortConnection")

    def unregisterProducer(self):
        self.calls.append("unregisterProducer")


class ForwarderTests(SynchronousTestCase):
    def setUp(self):
        self.network = FakeHostNetwork()
        self.forwarder = HostRoute(StackConfig(), self.network, timeout=12.5)

    def test_interface(self):
        """
        HostRoute provides ITCPRoute.
        """
        self.assertTrue(verifyObject(ITCPRoute, self.forwarder))

    def test_targets(self):
        """
        The host alias is the host's 127.0.0.1, same port; any other
        address is dialled as it is; the gateway is not forwarded.
        """
        self.assertEqual(self.forwarder.target(flow("192.168.65.2", 8080)), ("127.0.0.1", 8080))
        self.assertEqual(self.forwarder.target(flow("203.0.113.9", 443)), ("203.0.113.9", 443))
        self.assertIsNone(self.forwarder.target(flow("192.168.65.1", 80)))

    def test_noHostAlias(self):
        """
        With the alias disabled, its address is an unused address of the
        subnet and is not dialled, nor is the host's loopback.
        """
        forwarder = HostRoute(StackConfig(hostIP=None), self.network)
        self.assertIsNone(forwarder.target(flow("192.168.65.2", 80)))
        self.assertIsNone(forwarder.target(flow("127.0.0.1", 80)))
        self.assertEqual(forwarder.target(flow("203.0.113.9", 443)), ("203.0.113.9", 443))

    def test_refusedDestinations(self):
        """
        Loopback (reachable only through the host alias), 0/8, multicast,
        the broadcasts, 240/4 and the subnet's other addresses are never
        dialled: C{route} returns C{None}, so the router refuses.
        """
        for dst in (
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.168.65.255",
            "192.168.65.0",
            "192.168.65.77",
        ):
            self.assertIsNone(self.forwarder.target(flow(dst, 22)), dst)
            self.assertIsNone(self.forwarder.route(flow(dst, 22)), dst)
        self.assertEqual(self.network.connects, [])


    def test_connect(self):
        """
        route dials the target with the configured timeout and a fresh
        HostSide; the Deferred fires with the GuestSide spliced to it.
        """
        d = self.forwarder.route(flow("192.168.65.2", 22))
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port, pending.timeout), ("127.0.0.1", 22, 12.5))
        self.assertIsInstance(pending.protocol, HostSide)
        transport = self.network.succeed()
        guestSide = self.successResultOf(d)
        self.assertIsInstance(guestSide, GuestSide)
        self.assertIs(guestSide.host, pending.protocol)
        self.assertIs(pending.protocol.transport, transport)

    def test_gatewayRefused(self):
        """
        The gateway's ports are not this route's (C{None}, for the router
        to refuse), and nothing is dialled.
        """
        self.assertIsNone(self.forwarder.route(flow("192.168.65.1", 80)))
        self.assertEqual(self.network.connects, [])

    def test_failurePassedOn(self):
        """
        A failed connect fails the Deferred with the same error.
        """
        d = self.forwarder.route(flow("203.0.113.9"))
        self.network.fail(error.ConnectionRefusedError())
        self.failureResultOf(d, error.ConnectionRefusedError)

    def test_configAddresses(self):
        """
        The forwarder follows a configured gateway and host alias.
        """
        config = StackConfig(
            gatewayIP=IPv4Address("10.1.0.1"),
            hostIP=IPv4Address("10.1.0.254"),
            lowestIP=IPv4Address("10.1.0.2"),
            highestIP=IPv4Address("10.1.0.200"),
        )
        forwarder = HostRoute(config, self.network)
        self.assertEqual(forwarder.target(flow("10.1.0.254", 5)), ("127.0.0.1", 5))
        self.assertIsNone(forwarder.target(flow("10.1.0.1", 5)))


class HostSideTests(SynchronousTestCase):
    def setUp(self):
        self.side = HostSide()
        self.side.makeConnection(StringTransport())
        self.guest = FakeGuest()
        self.side.guest = self.guest

    def test_halfCloseable(self):
        """
        HostSide wants to hear about each half of a close.
        """
        self.assertTrue(IHalfCloseableProtocol.providedBy(self.side))

    def test_dataToGuest(self):
        """
        The host's bytes are written to the guest connection.
        """
        self.side.dataReceived(b"abc")
        self.assertEqual(self.guest.calls, [("write", b"abc")])

    def test_eofToGuest(self):
        """
        The host's EOF closes the guest connection's write side.
        """
        self.side.readConnectionLost()
        self.side.writeConnectionLost()
        self.assertEqual(self.guest.calls, ["loseWriteConnection"])

    def test_cleanClose(self):
        """
        A clean close of the host socket closes the guest connection
        gracefully, once.
        """
        self.side.connectionLost(Failure(error.ConnectionDone()))
        self.side.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.guest.calls, ["unregisterProducer", "loseConnection"])
        self.assertIsNone(self.side.guest)

    def test_abnormalClose(self):
        """
        A reset or any other loss of the host socket resets the guest.
        """
        self.side.connectionLost(Failure(error.ConnectionLost()))
        self.assertEqual(self.guest.calls, ["unregisterProducer", "abortConnection"])

    def test_noGuestYet(self):
        """
        Losing the connection before a guest was attached is harmless.
        """
        side = HostSide()
        side.makeConnection(StringTransport())
        side.connectionLost(Failure(error.ConnectionLost()))


class RefusedSYNTests(SynchronousTestCase):
    """
    Through a whole stack, a SYN to a refused destination is answered with
    RST and dials nothing, with the host alias on and off.
    """

    def refused(self, dst, **config):
        from tests.helpers import buildIPv4, makeStack, parseIPv4Frame
        from vpnkit.wire.ipv4 import PROTO_TCP
        from vpnkit.wire.tcp import ACK, RST, SYN, Segment, TCPOptions, emitTCP, parseTCP

        stack, (a,) = makeStack(1, **config)
        syn = emitTCP(Segment(40000, 8080, 1000, 0, SYN, 65535, TCPOptions(mss=1460)), a.ip, ip(dst))
        a.send(buildIPv4(a.mac, a.ip, ip(dst), PROTO_TCP, syn))
        self.assertEqual(stack.hostNetwork.connects, [])
        [frame] = a.takeFrames()
        _, header, data = parseIPv4Frame(frame)
        seg = parseTCP(data, header.src, header.dst)
        self.assertEqual((header.src, seg.flags, seg.ack), (ip(dst), RST | ACK, 1001))
        self.assertEqual(stack.counters.tcp.connectRefused, 1)
        self.assertEqual(stack.counters.tcp.resetsSent, 1)

    def test_loopback(self):
        """
        127.0.0.1 is refused.
        """
        self.refused("127.0.0.1")

    def test_loopbackAliasDisabled(self):
        """
        127.0.0.1 is refused with the alias disabled too.
        """
        self.refused("127.0.0.1", hostIP=None)

    def test_thisHost(self):
        """
        0.0.0.0 (which the host would take for its own addresses) is
        refused.
        """
        self.refused("0.0.0.0", hostIP=None)

    def test_unusedSubnetAddress(self):
        """
        An address of the subnet nobody holds is refused.
        """
        self.refused("192.168.65.77")
