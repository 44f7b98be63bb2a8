"""
Tests for L{vpnkit.protocols.dgramlinks} (QEMU C{-netdev dgram} and vfkit
guests on one Unix datagram socket), L{vpnkit.services.UnixDatagramLinkService},
the C{--qemu-dgram}/C{--vfkit} options and the gvproxy URL forms, and
C{vpnkit-tap-bridge}'s datagram protocols.

The peer logic runs in memory against a fake socket handle; the service and
the bridge run over real Unix datagram sockets in a temporary directory,
with a memory reactor whose C{doRead}/C{doWrite} the tests call.
"""

import errno
import io
import os
import socket
import stat
import sys
from ipaddress import IPv4Address

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.unix import DatagramPort
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.fakes import FakeTunSystem, arpReply, arpRequest, drainSocket, tempDir
from vpnkit.config import ConfigError, StackConfig
from vpnkit.counters import LinkCounters
from vpnkit.interfaces import ILink
from vpnkit.protocols.dgramlinks import (
    CLIENT_QUEUE_FRAMES,
    DatagramClientLink,
    QEMUDatagramProtocol,
    VfkitDatagramProtocol,
)
from vpnkit.services import UnixDatagramLinkService, VPNKitService
from vpnkit.stack import Stack
from vpnkit.tap import LinkSpec, Options, makeService
from vpnkit.tools.tapbridge import BridgeOptions, bridge
from vpnkit.wire.ethernet import formatMAC

MAC_A = bytes.fromhex("525400000a0a")
MAC_B = bytes.fromhex("525400000b0b")
BROADCAST = b"\xff" * 6
SERVER_MAC = bytes.fromhex("f61636bcf9c6")


def makeStack(clock=None, **config):
    for key in ("lowestIP", "highestIP"):
        if key in config:
            config[key] = IPv4Address(config[key])
    return Stack(StackConfig(**config), reactor=clock or task.Clock())


class FakeHandle:
    """
    The socket behind a fake datagram transport: records every C{sendto},
    or raises the error set for that address.

    @ivar sent: C{(datagram, address)} in order.
    @ivar errors: address -> the L{OSError} a send there raises.
    """

    def __init__(self):
        self.sent = []
        self.errors = {}

    def sendto(self, datagram, address):
        error = self.errors.get(address)
        if error is not None:
            raise error
        self.sent.append((datagram, address))
        return len(datagram)


class FakeDatagramTransport:
    def __init__(self):
        self.handle = FakeHandle()

    def getHandle(self):
        return self.handle


def oserror(code):
    return OSError(code, os.strerror(code))


class _PeerTestsMixin:
    protocolClass = None

    def setUp(self):
        self.clock = task.Clock()
        self.stack = makeStack(self.clock)
        self.paths = set()
        self.proto = self.protocolClass(
            self.stack.guests, self.clock, idleInterval=100.0, pathExists=self.paths.__contains__
        )
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)
        self.sent = self.transport.handle.sent
        self.counters = self.stack.counters.link

    def portFor(self, address):
        for port in self.stack.switch.ports():
            if port.link.address == address:
                return port
        return None

    def attach(self, address, mac=MAC_A, ip="192.168.65.3"):
        """
        Make C{address} a peer and have its guest ARP for the gateway.
        """
        if self.proto.magic is not None:
            self.proto.datagramReceived(self.proto.magic, address)
        self.proto.datagramReceived(arpRequest(mac, ip), address)
        return self.portFor(address)


class QEMUDatagramPeerTests(_PeerTestsMixin, SynchronousTestCase):
    """
    L{QEMUDatagramProtocol}: each sender address is its own guest.
    """

    protocolClass = QEMUDatagramProtocol

    def test_twoPeersTwoGuests(self):
        """
        Two sender addresses become two guests with ephemeral leases .3 and
        .4, each with the MAC of its first frame; each ARP reply goes to
        the address that asked, the second guest's broadcast request to
        the first guest's.
        """
        a = self.attach("/run/a.sock", MAC_A, "192.168.65.3")
        b = self.attach("/run/b.sock", MAC_B, "192.168.65.4")
        self.assertEqual((str(a.lease.ip), a.mac), ("192.168.65.3", MAC_A))
        self.assertEqual((str(b.lease.ip), b.mac), ("192.168.65.4", MAC_B))
        self.assertTrue(a.lease.ephemeral and b.lease.ephemeral)
        self.assertEqual(
            self.sent,
            [
                (arpReply(MAC_A), "/run/a.sock"),
                (arpRequest(MAC_B, "192.168.65.4"), "/run/a.sock"),
                (arpReply(MAC_B, "192.168.65.4"), "/run/b.sock"),
            ],
        )
        self.assertEqual((self.counters.framesIn, self.counters.framesOut), (2, 3))
        self.assertEqual(self.counters.bytesOut, 42 * 3)

    def test_peerIsALink(self):
        """
        A peer provides L{ILink}: it names its kind and address, carries
        MTU-sized frames and no offload.
        """
        peer = self.attach("/run/a.sock").link
        verifyObject(ILink, peer)
        self.assertEqual(peer.description, "qemu-dgram:/run/a.sock")
        self.assertEqual(peer.maxFrameSize, 1550)
        self.assertEqual(peer.segmentLimit, 0)
        self.assertEqual(self.proto.maxDatagram, 1551)
        self.assertEqual(self.proto.peers(), [peer])

    def test_guestToGuest(self):
        """
        A frame from one peer to another's MAC is switched to that peer's
        address.
        """
        self.attach("/run/a.sock", MAC_A, "192.168.65.3")
        self.attach("/run/b.sock", MAC_B, "192.168.65.4")
        del self.sent[:]
        frame = MAC_B + MAC_A + b"\x08\x00" + bytes(46)
        self.proto.datagramReceived(frame, "/run/a.sock")
        self.assertEqual(self.sent, [(frame, "/run/b.sock")])

    def test_unboundSender(self):
        """
        A datagram from an unbound socket (no address to reply to) is
        ignored and counted as a handshake failure.
        """
        self.proto.datagramReceived(arpRequest(MAC_A), None)
        self.proto.datagramReceived(arpRequest(MAC_A), "")
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.counters.handshakeFailures, 2)
        self.assertEqual(self.sent, [])

    def test_abstractAddress(self):
        """
        A sender bound to an abstract name (bytes) is a peer like any
        other, and is described with C{@}.
        """
        port = self.attach(b"\0guest")
        self.assertEqual(port.link.description, "qemu-dgram:@guest")
        self.assertEqual(self.sent, [(arpReply(MAC_A), b"\0guest")])

    def test_shortAndOversize(self):
        """
        A datagram shorter than an Ethernet header or longer than the
        largest frame is counted and dropped; the peer stays.
        """
        port = self.attach("/run/a.sock")
        self.proto.datagramReceived(b"x" * 13, "/run/a.sock")
        self.proto.datagramReceived(b"x" * 1551, "/run/a.sock")
        self.assertEqual((self.counters.shortFrames, self.counters.oversizeFrames), (1, 1))
        self.assertEqual(self.counters.framesIn, 1)
        self.assertEqual(self.stack.switch.ports(), [port])

    def test_peerGoneRefused(self):
        """
        A send refused (the peer's socket file is left but closed) detaches
        the peer once the frame is done with: its lease is released and the
        next sender gets the address.
        """
        port = self.attach("/run/a.sock")
        self.transport.handle.errors["/run/a.sock"] = oserror(errno.ECONNREFUSED)
        port.transmit(arpReply(MAC_A))
        self.assertTrue(port.link.closed)
        self.assertEqual(self.stack.switch.ports(), [port])
        port.transmit(arpReply(MAC_A))
        self.clock.advance(0)
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertEqual(self.counters.linksClosed, 1)
        self.assertEqual(self.counters.txErrors, 0)
        self.assertEqual(str(self.attach("/run/b.sock", MAC_B).lease.ip), "192.168.65.3")

    def test_peerGoneMissing(self):
        """
        A send finding no socket file (ENOENT) detaches the peer too, and
        nothing is left scheduled.
        """
        port = self.attach("/run/a.sock")
        self.transport.handle.errors["/run/a.sock"] = oserror(errno.ENOENT)
        port.transmit(arpReply(MAC_A))
        self.clock.advance(0)
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_goneDuringBroadcast(self):
        """
        Peers found gone while a broadcast walks the switch's ports are
        detached afterwards, so every peer is still offered the frame.
        """
        self.attach("/run/a.sock", MAC_A, "192.168.65.3")
        self.attach("/run/b.sock", MAC_B, "192.168.65.4")
        self.attach("/run/c.sock", bytes.fromhex("525400000c0c"), "192.168.65.5")
        del self.sent[:]
        self.transport.handle.errors["/run/a.sock"] = oserror(errno.ECONNREFUSED)
        self.transport.handle.errors["/run/b.sock"] = oserror(errno.ENOENT)
        frame = BROADCAST + SERVER_MAC + b"\x08\x06" + bytes(28)
        self.stack.switch.sendToMAC(frame)
        self.assertEqual(self.sent, [(frame, "/run/c.sock")])
        self.clock.advance(0)
        self.assertEqual([p.link.address for p in self.stack.switch.ports()], ["/run/c.sock"])
        self.assertEqual(self.counters.linksClosed, 2)

    def test_datagramsFromGoneIgnored(self):
        """
        Until its detach runs, a gone peer's datagrams are ignored rather
        than start a second guest.
        """
        port = self.attach("/run/a.sock")
        self.transport.handle.errors["/run/a.sock"] = oserror(errno.ECONNREFUSED)
        port.transmit(arpReply(MAC_A))
        self.proto.datagramReceived(arpRequest(MAC_A), "/run/a.sock")
        self.assertEqual(self.stack.switch.ports(), [port])
        self.assertEqual(self.counters.framesIn, 1)

    def test_queueFull(self):
        """
        EAGAIN or ENOBUFS (the peer's queue is full) drops the frame and
        counts C{txQueueFull}; the peer stays attached.
        """
        port = self.attach("/run/a.sock")
        for code in (errno.EAGAIN, errno.ENOBUFS):
            self.transport.handle.errors["/run/a.sock"] = oserror(code)
            port.transmit(arpReply(MAC_A))
        self.clock.advance(0)
        self.assertEqual(self.counters.txQueueFull, 2)
        self.assertEqual(self.counters.framesOut, 1)
        self.assertEqual(self.stack.switch.ports(), [port])
        self.assertFalse(port.link.closed)

    def test_otherSendError(self):
        """
        Any other send error drops the frame and counts C{txErrors}.
        """
        port = self.attach("/run/a.sock")
        self.transport.handle.errors["/run/a.sock"] = oserror(errno.EACCES)
        port.transmit(arpReply(MAC_A))
        self.clock.advance(0)
        self.assertEqual(self.counters.txErrors, 1)
        self.assertEqual(self.stack.switch.ports(), [port])

    def test_peerLimit(self):
        """
        Beyond C{maxPeers}, a new sender is refused (counted as
        C{allocationFailures}) until a peer goes.
        """
        proto = QEMUDatagramProtocol(self.stack.guests, self.clock, maxPeers=2)
        proto.makeConnection(self.transport)
        proto.datagramReceived(arpRequest(MAC_A), "/a")
        proto.datagramReceived(arpRequest(MAC_B, "192.168.65.4"), "/b")
        proto.datagramReceived(arpRequest(MAC_B, "192.168.65.5"), "/c")
        self.assertEqual([p.link.address for p in self.stack.switch.ports()], ["/a", "/b"])
        self.assertEqual(self.counters.allocationFailures, 1)
        proto.peers()[0].closeLink("test")
        proto.datagramReceived(arpRequest(MAC_B, "192.168.65.3"), "/c")
        self.assertEqual([p.link.address for p in self.stack.switch.ports()], ["/b", "/c"])

    def test_rangeExhausted(self):
        """
        With no address left, a new sender is refused and counted.
        """
        stack = makeStack(self.clock, lowestIP="192.168.65.4", highestIP="192.168.65.4")
        proto = QEMUDatagramProtocol(stack.guests, self.clock)
        proto.makeConnection(self.transport)
        proto.datagramReceived(arpRequest(MAC_A, "192.168.65.4"), "/a")
        proto.datagramReceived(arpRequest(MAC_B, "192.168.65.4"), "/b")
        self.assertEqual(len(stack.switch.ports()), 1)
        self.assertEqual(stack.counters.link.allocationFailures, 1)

    def test_idlePathGone(self):
        """
        A peer that sent nothing for a whole interval is detached once its
        socket file is gone; while the file is there, or while it sends,
        it stays.  An abstract address has no file and stays.
        """
        self.paths.add("/run/a.sock")
        a = self.attach("/run/a.sock")
        self.attach(b"\0b", MAC_B, "192.168.65.4")
        self.clock.advance(100)
        self.clock.advance(100)
        self.assertEqual(len(self.stack.switch.ports()), 2)
        self.paths.clear()
        self.proto.datagramReceived(arpRequest(MAC_A), "/run/a.sock")
        self.clock.advance(100)
        self.assertIn(a, self.stack.switch.ports())
        self.clock.advance(100)
        self.assertNotIn(a, self.stack.switch.ports())
        self.assertEqual(self.stack.pool.leases()[0].ip, IPv4Address("192.168.65.4"))
        self.clock.advance(300)
        self.assertEqual(len(self.stack.switch.ports()), 1)

    def test_sweepOnlyWithPeers(self):
        """
        The idle sweep is armed only while there are peers.
        """
        self.assertEqual(self.clock.getDelayedCalls(), [])
        port = self.attach("/run/a.sock")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        port.link.closeLink("test")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeLinks(self):
        """
        C{stopProtocol} (the socket closing) detaches every peer, those
        found gone included, and cancels every timer.
        """
        a = self.attach("/run/a.sock", MAC_A, "192.168.65.3")
        self.attach("/run/b.sock", MAC_B, "192.168.65.4")
        self.transport.handle.errors["/run/a.sock"] = oserror(errno.ECONNREFUSED)
        a.transmit(arpReply(MAC_A))
        self.proto.doStop()
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.proto.peers(), [])


class VfkitDatagramPeerTests(_PeerTestsMixin, SynchronousTestCase):
    """
    L{VfkitDatagramProtocol}: a new peer's first datagram must be C{VFKT}.
    """

    protocolClass = VfkitDatagramProtocol

    def test_magicAttaches(self):
        """
        C{VFKT} attaches the peer (no frame yet, so no MAC); its next
        datagram is its first frame.
        """
        self.proto.datagramReceived(b"VFKT", "/run/v.sock")
        port = self.portFor("/run/v.sock")
        self.assertIsNone(port.mac)
        self.assertEqual(self.counters.framesIn, 0)
        self.assertEqual(port.link.description, "vfkit:/run/v.sock")
        self.proto.datagramReceived(arpRequest(MAC_A), "/run/v.sock")
        self.assertEqual(port.mac, MAC_A)
        self.assertEqual(self.sent, [(arpReply(MAC_A), "/run/v.sock")])

    def test_magicRequired(self):
        """
        A sender whose first datagram is not C{VFKT} is ignored (counted as
        a handshake failure) until it sends it.
        """
        self.proto.datagramReceived(arpRequest(MAC_A), "/run/v.sock")
        self.proto.datagramReceived(b"VFK", "/run/v.sock")
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.counters.handshakeFailures, 2)
        self.assertEqual(self.sent, [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertIsNotNone(self.attach("/run/v.sock"))

    def test_greetingAgain(self):
        """
        C{VFKT} from a known peer (the client started again on the same
        path) replaces its guest: the old one is detached, the new one
        learns its MAC afresh.
        """
        old = self.attach("/run/v.sock", MAC_A)
        new = self.attach("/run/v.sock", MAC_B)
        self.assertNotEqual(old, new)
        self.assertEqual(self.stack.switch.ports(), [new])
        self.assertEqual(new.mac, MAC_B)
        self.assertEqual(str(new.lease.ip), "192.168.65.3")
        self.assertEqual(self.counters.shortFrames, 0)


# -- real sockets ----------------------------------------------------------


class DatagramReactor(MemoryReactorClock):
    """
    A memory reactor that binds real Unix datagram ports (the test calls
    their C{doRead}).
    """

    def __init__(self):
        super().__init__()
        self.datagramPorts = []

    def listenUNIXDatagram(self, address, protocol, maxPacketSize=8192, mode=0o666):
        port = DatagramPort(address, protocol, maxPacketSize, mode, reactor=self)
        port.startListening()
        self.datagramPorts.append(port)
        return port


def boundSocket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    return s


class _RealSocketMixin:
    def setUp(self):
        self.dir = tempDir(self)
        self.path = os.path.join(self.dir, "vpnkit.sock")
        self.reactor = DatagramReactor()
        self.stack = makeStack(self.reactor)
        self.counters = self.stack.counters.link

    def service(self, protocolClass=QEMUDatagramProtocol, flag="--qemu-dgram"):
        service = UnixDatagramLinkService(
            flag, self.path, protocolClass(self.stack.guests, self.reactor), self.reactor
        )
        self.addCleanup(self.stop, service)
        return service

    def stop(self, service):
        if service.running or service.port is not None:
            service.stopService()
        self.reactor.advance(0)

    def client(self, name="guest.sock"):
        s = boundSocket(os.path.join(self.dir, name))
        s.settimeout(5)
        self.addCleanup(s.close)
        return s


class DatagramServiceTests(_RealSocketMixin, SynchronousTestCase):
    """
    L{UnixDatagramLinkService} over a real socket.
    """

    def test_framesBothWays(self):
        """
        The service binds the path (mode 0600, as every link socket; buffers
        sized for bursts);
        a frame a client sends attaches it and the reply comes back to the
        client's own path.
        """
        service = self.service()
        service.privilegedStartService()
        service.startService()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        (port,) = self.reactor.datagramPorts
        self.assertEqual(port.maxPacketSize, 1551)
        handle = port.getHandle()
        for option, limit in ((socket.SO_RCVBUF, "rmem_max"), (socket.SO_SNDBUF, "wmem_max")):
            expected = 1 << 20
            if os.geteuid() != 0:
                # Without CAP_NET_ADMIN the system maximum caps the request.
                with open(f"/proc/sys/net/core/{limit}") as f:
                    expected = min(expected, int(f.read()))
            self.assertGreaterEqual(handle.getsockopt(socket.SOL_SOCKET, option), expected)
        client = self.client()
        client.sendto(arpRequest(MAC_A), self.path)
        port.doRead()
        self.assertEqual(client.recv(2000), arpReply(MAC_A))
        (guest,) = self.stack.switch.ports()
        self.assertEqual(guest.link.address, client.getsockname())

    def test_oversizeTruncatedAndCounted(self):
        """
        A datagram beyond the largest frame is read one byte too long,
        counted as oversize and dropped.
        """
        service = self.service()
        service.startService()
        client = self.client()
        client.sendto(arpRequest(MAC_A), self.path)
        client.sendto(b"\xff" * 1600, self.path)
        self.reactor.datagramPorts[0].doRead()
        self.assertEqual(self.counters.oversizeFrames, 1)
        self.assertEqual(self.counters.framesIn, 1)

    def test_fullPeerQueue(self):
        """
        A peer that does not read fills its queue: further frames are
        dropped and counted as C{txQueueFull}, without blocking, and the
        peer stays attached.
        """
        service = self.service()
        service.startService()
        client = self.client()
        client.sendto(arpRequest(MAC_A), self.path)
        self.reactor.datagramPorts[0].doRead()
        (port,) = self.stack.switch.ports()
        for _ in range(5000):
            port.transmit(arpReply(MAC_A))
            if self.counters.txQueueFull:
                break
        self.assertEqual(self.counters.txQueueFull, 1)
        self.reactor.advance(0)
        self.assertEqual(self.stack.switch.ports(), [port])

    def test_peerClosed(self):
        """
        A peer whose socket is closed (its file left) or removed is found
        gone at the next send: detached, its lease released.
        """
        service = self.service()
        service.startService()
        first, second = self.client("a.sock"), self.client("b.sock")
        first.sendto(arpRequest(MAC_A), self.path)
        second.sendto(arpRequest(MAC_B, "192.168.65.4"), self.path)
        self.reactor.datagramPorts[0].doRead()
        first.close()
        second.close()
        os.unlink(os.path.join(self.dir, "b.sock"))
        for port in self.stack.switch.ports():
            port.transmit(arpReply(port.mac))
        self.reactor.advance(0)
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertEqual(self.counters.linksClosed, 2)

    def test_stop(self):
        """
        Stopping detaches every peer, closes the socket and removes its
        file, leaving nothing scheduled.
        """
        service = self.service()
        service.startService()
        client = self.client()
        client.sendto(arpRequest(MAC_A), self.path)
        self.reactor.datagramPorts[0].doRead()
        service.stopService()
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertFalse(os.path.lexists(self.path))
        self.reactor.advance(0)
        self.assertFalse(self.reactor.datagramPorts[0].connected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_staleSocket(self):
        """
        A socket file nobody serves is removed, then bound.
        """
        boundSocket(self.path).close()
        self.service().startService()
        self.assertEqual(len(self.reactor.datagramPorts), 1)

    def test_inUse(self):
        """
        A datagram socket another process serves is left alone; start-up
        fails naming the flag and the path.
        """
        live = boundSocket(self.path)
        self.addCleanup(live.close)
        e = self.assertRaises(ConfigError, self.service(VfkitDatagramProtocol, "--vfkit").startService)
        self.assertEqual(str(e), f"--vfkit {self.path}: in use by another process")
        self.assertEqual(self.reactor.datagramPorts, [])

    def test_regularFile(self):
        """
        A regular file at the path is never removed.
        """
        with open(self.path, "w") as f:
            f.write("precious")
        e = self.assertRaises(ConfigError, self.service().startService)
        self.assertEqual(str(e), f"--qemu-dgram {self.path}: exists and is not a socket")
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious")

    def test_cannotBind(self):
        """
        A path that cannot be bound is one start-up line under twistd,
        naming the flag and the reason.
        """
        self.path = os.path.join(self.dir, "missing", "v.sock")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        top = VPNKitService(self.stack, exitOnError=True)
        self.service(VfkitDatagramProtocol, "--vfkit").setServiceParent(top)
        e = self.assertRaises(SystemExit, top.privilegedStartService)
        self.assertEqual(e.code, 1)
        self.assertEqual(
            stderr.getvalue(), f"vpnkit: --vfkit {self.path}: cannot listen: No such file or directory\n"
        )


# -- options -------------------------------------------------------------------


class DatagramOptionsTests(SynchronousTestCase):
    """
    C{--qemu-dgram}, C{--vfkit} and the gvproxy URL forms of every link
    flag.
    """

    def setUp(self):
        self.dir = tempDir(self)
        self.sock = os.path.join(self.dir, "s.sock")
        self.patch(os, "environ", {})

    def parse(self, *args):
        options = Options()
        options.parseOptions(list(args))
        return options.links

    def refused(self, *args):
        return str(self.assertRaises(usage.UsageError, self.parse, *args))

    def test_datagramFlags(self):
        """
        C{--qemu-dgram} and C{--vfkit} take a path or C{unixgram:///PATH},
        repeatable, after the stream links.
        """
        other = os.path.join(self.dir, "o.sock")
        links = self.parse(
            "--vfkit", "unixgram://" + other,
            "--qemu-dgram", self.sock,
            "--qemu", self.sock,
            "--qemu-dgram", "unixgram://" + other,
        )  # fmt: skip
        self.assertEqual(
            links,
            [
                LinkSpec("qemu", ("unix", self.sock)),
                LinkSpec("qemu-dgram", ("unixgram", self.sock)),
                LinkSpec("qemu-dgram", ("unixgram", other)),
                LinkSpec("vfkit", ("unixgram", other)),
            ],
        )
        self.assertEqual(links[3].describe(), f"vfkit on unixgram:{other}")

    def test_streamURLs(self):
        """
        gvproxy's C{unix:///PATH} and C{tcp://HOST:PORT} are accepted by
        C{--qemu}, C{unix:///PATH} by C{--ethernet}; escapes are decoded.
        """
        self.assertEqual(
            self.parse(
                "--qemu", "unix://" + self.sock,
                "--qemu", "tcp://127.0.0.1:5555",
                "--qemu", "tcp://:1234",
                "--ethernet", "unix://" + self.sock,
                "--vfkit", f"unixgram://{self.dir}/a%20b.sock",
            ),  # fmt: skip
            [
                LinkSpec("vmnet", ("unix", self.sock)),
                LinkSpec("qemu", ("unix", self.sock)),
                LinkSpec("qemu", ("tcp", "127.0.0.1", 5555)),
                LinkSpec("qemu", ("tcp", "127.0.0.1", 1234)),
                LinkSpec("vfkit", ("unixgram", f"{self.dir}/a b.sock")),
            ],
        )

    def test_urlFormsThatDoNotApply(self):
        """
        A URL form of another kind of socket is refused in one line naming
        the flag and the forms to use.
        """
        self.assertEqual(
            self.refused("--qemu", "unixgram:///x.sock"),
            "--qemu: 'unixgram:///x.sock' does not apply here: use PATH, unix:///PATH, "
            "tcp://HOST:PORT or fd:N (a datagram socket is --qemu-dgram unixgram:///x.sock)",
        )
        self.assertEqual(
            self.refused("--vfkit", "tcp://127.0.0.1:5555"),
            "--vfkit: 'tcp://127.0.0.1:5555' does not apply here: use PATH or unixgram:///PATH "
            "(TCP is --qemu tcp://127.0.0.1:5555)",
        )
        self.assertEqual(
            self.refused("--qemu-dgram", "unix:///x.sock"),
            "--qemu-dgram: 'unix:///x.sock' does not apply here: use PATH or unixgram:///PATH "
            "(a stream socket is --qemu unix:///x.sock)",
        )
        self.assertEqual(
            self.refused("--ethernet", "unixgram:///x.sock"),
            "--ethernet: 'unixgram:///x.sock': only Unix socket paths and fd:N are supported "
            "(PATH, unix:///PATH or fd:N); a datagram socket is --qemu-dgram or --vfkit",
        )
        self.assertIn("--vfkit", self.refused("--vfkit", "vsock://2:1024"))

    def test_datagramPathErrors(self):
        """
        A relative URL path, an inherited descriptor, a missing directory
        and a regular file are refused, naming the flag.
        """
        self.assertEqual(
            self.refused("--vfkit", "unixgram://x.sock"),
            "--vfkit: 'unixgram://x.sock' names no absolute path: use PATH or unixgram:///PATH",
        )
        self.assertEqual(
            self.refused("--qemu-dgram", "fd:3"),
            "--qemu-dgram: 'fd:3': inherited sockets are not supported: use PATH or unixgram:///PATH",
        )
        missing = os.path.join(self.dir, "missing", "v.sock")
        self.assertEqual(
            self.refused("--vfkit", missing),
            f"--vfkit: directory {os.path.dirname(missing)} does not exist",
        )
        with open(self.sock, "w"):
            pass
        self.assertEqual(
            self.refused("--qemu-dgram", "unixgram://" + self.sock),
            f"--qemu-dgram: {self.sock} exists and is not a socket",
        )

    def test_aloneIsEnough(self):
        """
        A datagram link alone is a link; with none at all the message
        names the datagram flags too.
        """
        self.assertEqual(len(self.parse("--vfkit", self.sock)), 1)
        self.assertEqual(
            self.refused(),
            "Please provide an --ethernet argument (or --qemu, --qemu-dgram, --vfkit, --netns)",
        )

    def test_makeService(self):
        """
        Each datagram link is a L{UnixDatagramLinkService} named after it,
        with the protocol of its kind on the stack's guests.
        """
        options = Options()
        options.parseOptions(["--qemu-dgram", self.sock, "--vfkit", "unixgram://" + self.sock + "2"])
        top = makeService(options, MemoryReactorClock())
        qemu = top.getServiceNamed(f"qemu-dgram on unixgram:{self.sock}")
        vfkit = top.getServiceNamed(f"vfkit on unixgram:{self.sock}2")
        self.assertIsInstance(qemu, UnixDatagramLinkService)
        self.assertIsInstance(qemu.protocol, QEMUDatagramProtocol)
        self.assertIsInstance(vfkit.protocol, VfkitDatagramProtocol)
        self.assertEqual((qemu.flag, vfkit.flag), ("--qemu-dgram", "--vfkit"))
        self.assertIs(qemu.protocol.guests, top.stack.guests)


# -- the bridge ---------------------------------------------------------------


class BridgeDatagramOptionsTests(SynchronousTestCase):
    """
    C{vpnkit-tap-bridge --protocol qemu-dgram|vfkit [--local PATH]}.
    """

    def parse(self, *args):
        options = BridgeOptions()
        options.parseOptions(list(args))
        return options

    def test_protocols(self):
        """
        Both datagram protocols are accepted, with an optional C{--local}.
        """
        self.assertEqual(self.parse("-c", "s", "--protocol", "vfkit")["local"], None)
        options = self.parse("-c", "s", "--protocol", "qemu-dgram", "--local", "/run/g.sock")
        self.assertEqual(options["local"], "/run/g.sock")

    def test_localOnlyForDatagrams(self):
        """
        C{--local} with a stream protocol is refused.
        """
        e = self.assertRaises(usage.UsageError, self.parse, "-c", "s", "--local", "/run/g.sock")
        self.assertEqual(str(e), "--local: only for --protocol qemu-dgram or vfkit")


class FakeClientSocket:
    """
    The bridge's connected socket: C{send} records, or raises the next of
    C{errors}.
    """

    def __init__(self):
        self.sent = []
        self.errors = []
        self.closed = False

    def send(self, datagram):
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error
        self.sent.append(datagram)
        return len(datagram)

    def fileno(self):
        return 99

    def close(self):
        self.closed = True


class FakeProducer:
    def __init__(self):
        self.events = []

    def pauseProducing(self):
        self.events.append("pause")

    def resumeProducing(self):
        self.events.append("resume")


class DatagramClientLinkTests(SynchronousTestCase):
    """
    L{DatagramClientLink}, the bridge's end, over a fake socket.
    """

    def setUp(self):
        self.sock = FakeClientSocket()
        self.reactor = MemoryReactorClock()
        self.counters = LinkCounters()
        self.closed = []
        self.link = DatagramClientLink(
            self.sock, self.reactor, self.counters, magic=b"VFKT", onClose=self.closed.append
        )
        self.producer = FakeProducer()
        self.link.registerProducer(self.producer, True)

    def test_magicFirst(self):
        """
        Starting sends the magic before any frame and starts reading.
        """
        self.link.start()
        self.link.sendFrame(b"f" * 60)
        self.assertEqual(self.sock.sent, [b"VFKT", b"f" * 60])
        self.assertIn(self.link, self.reactor.readers)
        self.assertEqual(self.counters.framesOut, 1)

    def test_waitsForRoom(self):
        """
        A full queue at vpnkit keeps the frame, pauses the producer and
        waits to write; once there is room the frames go in order and the
        producer resumes.
        """
        self.link.start()
        self.sock.errors = [oserror(errno.EAGAIN)]
        self.link.sendFrame(b"1" * 60)
        self.link.sendFrame(b"2" * 60)
        self.assertEqual(self.producer.events, ["pause"])
        self.assertIn(self.link, self.reactor.writers)
        self.sock.errors = [oserror(errno.EAGAIN)]
        self.link.doWrite()
        self.assertEqual(self.sock.sent, [b"VFKT"])
        self.link.doWrite()
        self.assertEqual(self.sock.sent, [b"VFKT", b"1" * 60, b"2" * 60])
        self.assertEqual(self.producer.events, ["pause", "resume"])
        self.assertNotIn(self.link, self.reactor.writers)

    def test_boundedWhileWaiting(self):
        """
        While waiting, at most C{CLIENT_QUEUE_FRAMES} frames are held; the
        rest are dropped and counted.
        """
        self.sock.errors = [oserror(errno.ENOBUFS)]
        for _ in range(CLIENT_QUEUE_FRAMES + 3):
            self.link.sendFrame(b"x" * 60)
        self.assertEqual(self.counters.txQueueFull, 3)
        self.link.doWrite()
        self.assertEqual(len(self.sock.sent), CLIENT_QUEUE_FRAMES)

    def test_vpnkitGone(self):
        """
        A refused send (vpnkit's socket is gone) closes the link once and
        tells its owner.
        """
        self.link.start()
        self.sock.errors = [oserror(errno.ECONNREFUSED)]
        self.link.sendFrame(b"x" * 60)
        self.link.sendFrame(b"x" * 60)
        (reason,) = self.closed
        self.assertIn("vpnkit is gone", reason.getErrorMessage())
        self.assertTrue(self.sock.closed)
        self.assertEqual(self.reactor.readers, set())


class DatagramBridgeTests(_RealSocketMixin, SynchronousTestCase):
    """
    L{bridge} with a datagram protocol against a real vpnkit socket.
    """

    def setUp(self):
        super().setUp()
        self.system = FakeTunSystem()
        self.addCleanup(self.system.cleanup)
        self.out = io.StringIO()

    def startBridge(self, protocol, protocolClass, *args):
        service = self.service(protocolClass)
        service.startService()
        self.local = os.path.join(self.dir, "bridge.sock")
        options = BridgeOptions()
        options.parseOptions(
            ["--connect", self.path, "--protocol", protocol, "--local", self.local, *args]
        )
        done = Deferred.fromCoroutine(bridge(self.reactor, options, system=self.system, out=self.out))
        return service, done

    def pump(self):
        """
        Move datagrams until neither side has any: vpnkit's port, the
        bridge's link, the tap.
        """
        for _ in range(10):
            for reader in list(self.reactor.readers):
                reader.doRead()

    def test_vfkit(self):
        """
        Over vfkit the bridge greets vpnkit, opens the tap with C{--mac}
        and C{--mtu}, and a guest's ARP on the tap is answered on it.
        """
        mac = "52:54:00:12:34:56"
        _, done = self.startBridge("vfkit", VfkitDatagramProtocol, "--mac", mac, "--mtu", "4000")
        self.assertNoResult(done)
        (opened,) = self.system.opened
        self.assertEqual((opened.mac, opened.mtu), (bytes.fromhex("525400123456"), 4000))
        self.assertEqual(self.out.getvalue(), f"ready tap0 mac={mac} mtu=4000\n")
        self.pump()
        (port,) = self.stack.switch.ports()
        self.assertEqual(port.link.address, self.local)
        self.assertEqual(self.counters.handshakeFailures, 0)
        opened.guest.send(arpRequest(opened.mac))
        self.pump()
        self.assertEqual(drainSocket(opened.guest), [arpReply(opened.mac)])

    def test_qemuDgram(self):
        """
        Over qemu-dgram the first frame attaches the guest, whose MAC is
        learnt from it.
        """
        _, done = self.startBridge("qemu-dgram", QEMUDatagramProtocol)
        (opened,) = self.system.opened
        self.pump()
        self.assertEqual(self.stack.switch.ports(), [])
        opened.guest.send(arpRequest(opened.mac))
        self.pump()
        (port,) = self.stack.switch.ports()
        self.assertEqual(formatMAC(port.mac), formatMAC(opened.mac))
        self.assertEqual(drainSocket(opened.guest), [arpReply(opened.mac)])

    def test_vpnkitStops(self):
        """
        When vpnkit goes, the bridge's next send fails: the tap is closed,
        its socket file removed and the bridge finishes.
        """
        service, done = self.startBridge("vfkit", VfkitDatagramProtocol)
        (opened,) = self.system.opened
        self.pump()
        service.stopService()
        self.reactor.advance(0)
        opened.guest.send(arpRequest(opened.mac))
        self.pump()
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.system.closed, [opened.fd])
        self.assertFalse(os.path.lexists(self.local))
        self.assertEqual(self.reactor.readers, set())

    def test_noVPNKit(self):
        """
        With nothing at C{--connect} the bridge fails with a
        L{ConnectError} naming the path, and leaves no socket file.
        """
        options = BridgeOptions()
        local = os.path.join(self.dir, "bridge.sock")
        options.parseOptions(["-c", self.path, "--protocol", "vfkit", "--local", local])
        done = Deferred.fromCoroutine(bridge(self.reactor, options, system=self.system, out=self.out))
        failure = self.failureResultOf(done, ConnectError)
        self.assertIn(self.path, str(failure.value))
        self.assertFalse(os.path.lexists(local))
        self.assertEqual(self.system.opened, [])
