"""
The real L{vpnkit.host.sockets.HostDatagramSockets} on loopback, checked
against what C{tests/fakesockets.py} (and every test that uses it) assumes:
datagrams both ways, the exact shape of the errors the kernel reports
through C{IP_RECVERR}, ping sockets answering with their own identifier,
and C{EACCES} when C{ping_group_range} excludes us.

Each test runs its sockets inside a private network namespace (made with
C{unshare(CLONE_NEWNET)} in a short-lived thread, as
L{vpnkit.host.tundev} does with C{setns}), so it can set the loopback MTU
and C{ping_group_range} without touching the machine.  Needs root; skipped
otherwise.  No reactor runs: the test polls the descriptor with C{select}
and calls C{doRead} itself, with a recording reactor.
"""

import ctypes
import ctypes.util
import errno
import fcntl
import os
import select
import socket
import struct
import threading

from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vpnkit.host.sockets import HostDatagramSockets
from vpnkit.interfaces import IDatagramReceiver, IDatagramSocket, IHostDatagramSockets
from vpnkit.wire.icmp import ECHO_REPLY, ECHO_REQUEST, ICMPMessage, echoID, emitICMP, parseICMP

from tests.fakes import FakeFDReactor
from tests.fakesockets import FakeDatagramSockets, portUnreachable

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922


def inPrivateNamespace(function, mtu=None, pingGroups=None):
    """
    Run C{function} in a thread that has its own network namespace with
    the loopback up (MTU C{mtu}) and C{ping_group_range} C{pingGroups}.
    Sockets it creates stay in that namespace.
    """
    outcome = {}

    def run():
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                name = b"lo".ljust(16, b"\0")
                if mtu is not None:
                    fcntl.ioctl(control, SIOCSIFMTU, struct.pack("16si", name, mtu).ljust(40, b"\0"))
                flags = struct.unpack_from(
                    "h", fcntl.ioctl(control, SIOCGIFFLAGS, name.ljust(40, b"\0")), 16
                )[0]
                fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack("16sh", name, flags | 1).ljust(40, b"\0"))
            finally:
                control.close()
            if pingGroups is not None:
                with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
                    f.write(pingGroups)
            outcome["value"] = function()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@implementer(IDatagramReceiver)
class Receiver:
    def __init__(self):
        self.datagrams = []
        self.errors = []

    def datagramReceived(self, data, host, port):
        self.datagrams.append((data, host, port))

    def errorReceived(self, error):
        self.errors.append(error)


class RealSocketsTests(SynchronousTestCase):
    """
    The real sockets behave as the fake is written to behave.
    """

    def setUp(self):
        if os.geteuid() != 0:
            raise SkipTest("needs root for a private network namespace")
        self.reactor = FakeFDReactor()
        self.sockets = HostDatagramSockets(self.reactor)
        self.receiver = Receiver()

    def open(self, kind="udp", **namespace):
        opener = self.sockets.openUDP if kind == "udp" else self.sockets.openICMP

        def make():
            sock = opener(self.receiver)
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind(("127.0.0.1", 0))
            return sock, peer

        sock, peer = inPrivateNamespace(make, **namespace)
        self.addCleanup(sock.close)
        self.addCleanup(peer.close)
        peer.settimeout(5)
        return sock, peer

    def pump(self, sock, until, timeout=5.0):
        """
        Read the socket as the reactor would until C{until()} is true.
        """
        import time

        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("nothing arrived")
            select.select([sock.fileno()], [], [], left)
            sock.doRead()

    def test_interfaces(self):
        """
        Real and fake provide the same interfaces.
        """
        sock, _ = self.open()
        self.assertTrue(verifyObject(IHostDatagramSockets, self.sockets))
        self.assertTrue(verifyObject(IHostDatagramSockets, FakeDatagramSockets()))
        self.assertTrue(verifyObject(IDatagramSocket, sock))
        self.assertTrue(verifyObject(IDatagramSocket, FakeDatagramSockets().openUDP(Receiver())))
        self.assertIn(("addReader", sock), self.reactor.calls)

    def test_exchange(self):
        """
        C{sendTo} reaches the peer from the socket's port with the TTL
        asked for; the peer's answer arrives as C{datagramReceived(data,
        host, port)}.
        """
        sock, peer = self.open()
        peer.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTTL", 12), 1)
        sock.sendTo(b"ping", "127.0.0.1", peer.getsockname()[1], ttl=7, dontFragment=True)
        data, ancillary, _, source = peer.recvmsg(100, socket.CMSG_SPACE(4))
        self.assertEqual((data, source), (b"ping", ("127.0.0.1", sock.port)))
        [(_, _, ttl)] = ancillary
        self.assertEqual(int.from_bytes(ttl, "little"), 7)
        peer.sendto(b"pong", ("127.0.0.1", sock.port))
        self.pump(sock, lambda: self.receiver.datagrams)
        self.assertEqual(self.receiver.datagrams, [(b"pong", "127.0.0.1", peer.getsockname()[1])])

    def test_portUnreachable(self):
        """
        A datagram to a closed port comes back as exactly the
        L{HostSocketError} C{fakesockets.portUnreachable} builds, and the
        next send still goes (the pending error does not eat it).
        """
        sock, peer = self.open()
        closed = peer.getsockname()[1]
        peer.close()
        sock.sendTo(b"knock", "127.0.0.1", closed)
        self.pump(sock, lambda: self.receiver.errors)
        self.assertEqual(self.receiver.errors, [portUnreachable("127.0.0.1", closed, b"knock")])
        sock.sendTo(b"again", "127.0.0.1", closed)
        self.pump(sock, lambda: len(self.receiver.errors) == 2)

    def test_errorOnlyWakeUp(self):
        """
        When only an error is pending the reactor stops reading
        (C{EPOLLERR} without C{EPOLLIN}) and calls C{readConnectionLost}:
        the error is delivered and reading starts again.
        """
        sock, peer = self.open()
        closed = peer.getsockname()[1]
        peer.close()
        sock.sendTo(b"knock", "127.0.0.1", closed)
        select.select([sock.fileno()], [], [], 5)
        self.reactor.removeReader(sock)
        sock.readConnectionLost(None)
        self.assertEqual(len(self.receiver.errors), 1)
        self.assertIn(sock, self.reactor.readers)

    def test_fragmentationNeeded(self):
        """
        A DF datagram larger than the path MTU (loopback at 1280 here) is
        refused at once with C{EMSGSIZE}, and also reported as the local
        error test_udpnat feeds its NAT: origin C{"local"}, the MTU in
        C{info}, the destination address but port 0 (an unconnected
        socket has no destination port to report); without DF it is sent
        (fragmented by the host).
        """
        sock, peer = self.open(mtu=1280)
        port = peer.getsockname()[1]
        e = self.assertRaises(OSError, sock.sendTo, b"x" * 1400, "127.0.0.1", port, 64, True)
        self.assertEqual(e.errno, errno.EMSGSIZE)
        self.pump(sock, lambda: self.receiver.errors)
        [error] = self.receiver.errors
        self.assertEqual(
            (error.origin, error.errno, error.info, error.offender, error.host, error.port),
            ("local", errno.EMSGSIZE, 1280, None, "127.0.0.1", 0),
        )
        sock.sendTo(b"x" * 1400, "127.0.0.1", port, 64, False)
        self.assertEqual(len(peer.recv(2000)), 1400)

    def test_close(self):
        """
        After C{close} the socket is out of the reactor and C{sendTo}
        raises C{OSError}, as the fake's does.
        """
        sock, peer = self.open()
        sock.close()
        self.assertNotIn(sock, self.reactor.readers)
        self.assertEqual(sock.fileno(), -1)
        self.assertRaises(OSError, sock.sendTo, b"x", "127.0.0.1", 9)
        fake = FakeDatagramSockets().openUDP(Receiver())
        fake.close()
        self.assertRaises(OSError, fake.sendTo, b"x", "127.0.0.1", 9)

    def test_pingSocket(self):
        """
        With C{ping_group_range} open, an ICMP socket's echo request is
        answered by the kernel with the socket's own identifier (C{port}),
        as C{test_icmp}'s fake replies are built, from the host pinged,
        port 0.
        """
        sock, _ = self.open("icmp", pingGroups="0 2147483647")
        request = emitICMP(ICMPMessage(ECHO_REQUEST, 0, 0, b"\x12\x34\x00\x07", b"payload"))
        sock.sendTo(request, "127.0.0.1", 0, ttl=9)
        self.pump(sock, lambda: self.receiver.datagrams)
        [(data, host, port)] = self.receiver.datagrams
        message = parseICMP(data)
        self.assertEqual(
            (message.type, echoID(message), message.payload), (ECHO_REPLY, (sock.port, 7), b"payload")
        )
        self.assertEqual((host, port), ("127.0.0.1", 0))

    def test_pingRefused(self):
        """
        With C{ping_group_range} closed ("1 0", the default), opening an
        ICMP socket raises C{PermissionError} (C{EACCES}), which the fake's
        C{icmpError} stands for in C{test_icmp}.
        """
        e = self.assertRaises(OSError, self.open, "icmp", pingGroups="1 0")
        self.assertEqual(e.errno, errno.EACCES)
