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
otherwise (as root it never skips).

The sockets are read by the real reactor pytest-twisted installs and runs
(epoll on Linux), so what is checked is also how that reactor drives them,
an error-only wake-up included.  These tests are plain pytest functions and
run under pytest only, not under trial (docs/testing.md).
"""

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
import subprocess
import threading

import pytest
import pytest_twisted
from twisted.internet import defer

# The reactor pytest-twisted installed when pytest started (before any test
# module is imported) and runs while a test waits on a Deferred.
from twisted.internet import reactor
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vpnkit.host.sockets import HostDatagramSockets
from vpnkit.interfaces import IDatagramReceiver, IDatagramSocket, IHostDatagramSockets
from vpnkit.wire.icmp import ECHO_REPLY, ECHO_REQUEST, ICMPMessage, echoID, emitICMP, parseICMP
from vpnkit.wire.icmpv6 import EchoReply, EchoRequest, emitICMPv6, parseICMPv6

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

    The caller (the reactor's thread) waits for the thread to end, so what
    C{function} does to the reactor (C{addReader}) happens while the reactor
    is stopped in that wait, as if the reactor's thread did it.
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


TIMEOUT = 5.0
LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
LOOPBACK6 = socket.inet_pton(socket.AF_INET6, "::1")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root for a private network namespace"
)


@implementer(IDatagramReceiver)
class Receiver:
    """
    Records what a socket delivers; L{until} waits, on the running reactor,
    for a condition on what was recorded.
    """

    def __init__(self):
        self.datagrams = []
        self.errors = []
        self._waiting = []

    def datagramReceived(self, data, host, port):
        self.datagrams.append((data, host, port))
        self._check()

    def errorReceived(self, error):
        self.errors.append(error)
        self._check()

    def until(self, condition):
        """
        A Deferred that fires once C{condition()} is true, or fails with
        C{TimeoutError} after L{TIMEOUT} seconds.

        It fires on a later turn of the reactor, not from inside the
        socket's callback, so the test sees the socket as the reactor
        left it.
        """
        if condition():
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append((condition, d))
        return d.addTimeout(TIMEOUT, reactor)

    def _check(self):
        for entry in list(self._waiting):
            condition, d = entry
            if d.called:
                self._waiting.remove(entry)
            elif condition():
                self._waiting.remove(entry)
                reactor.callLater(0, _fire, d)


def _fire(d):
    if not d.called:
        d.callback(None)


@pytest.fixture
def receiver():
    return Receiver()


@pytest.fixture
def sockets():
    """
    The real sockets, on the reactor pytest-twisted runs.
    """
    return HostDatagramSockets(reactor)


@pytest.fixture
def openPair(sockets, receiver):
    """
    A function that opens a host socket (C{"udp"} or C{"icmp"}, of
    C{family}) and a plain UDP peer bound to the family's loopback address
    (127.0.0.1 or ::1) in a private namespace, both closed after the test.
    """
    opened = []

    def openPair(kind="udp", family=socket.AF_INET, **namespace):
        opener = sockets.openUDP if kind == "udp" else sockets.openICMP

        def make():
            sock = opener(receiver, family)
            opened.append(sock)
            peer = socket.socket(family, socket.SOCK_DGRAM)
            opened.append(peer)
            peer.bind((LOOPBACK[family], 0))
            return sock, peer

        sock, peer = inPrivateNamespace(make, **namespace)
        peer.settimeout(TIMEOUT)
        return sock, peer

    yield openPair
    for each in reversed(opened):
        each.close()


def test_interfaces(openPair, sockets):
    """
    Real and fake provide the same interfaces; an open socket is read by
    the reactor.
    """
    sock, _ = openPair()
    assert verifyObject(IHostDatagramSockets, sockets)
    assert verifyObject(IHostDatagramSockets, FakeDatagramSockets())
    assert verifyObject(IDatagramSocket, sock)
    assert verifyObject(IDatagramSocket, FakeDatagramSockets().openUDP(Receiver()))
    assert sock in reactor.getReaders()


@pytest_twisted.inlineCallbacks
def test_exchange(openPair, receiver):
    """
    C{sendTo} reaches the peer from the socket's port with the TTL
    asked for; the peer's answer arrives as C{datagramReceived(data,
    host, port)}.
    """
    sock, peer = openPair()
    peer.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTTL", 12), 1)
    sock.sendTo(b"ping", "127.0.0.1", peer.getsockname()[1], ttl=7, dontFragment=True)
    data, ancillary, _, source = peer.recvmsg(100, socket.CMSG_SPACE(4))
    assert (data, source) == (b"ping", ("127.0.0.1", sock.port))
    [(_, _, ttl)] = ancillary
    assert int.from_bytes(ttl, "little") == 7
    peer.sendto(b"pong", ("127.0.0.1", sock.port))
    yield receiver.until(lambda: receiver.datagrams)
    assert receiver.datagrams == [(b"pong", "127.0.0.1", peer.getsockname()[1])]


@pytest_twisted.inlineCallbacks
def test_portUnreachable(openPair, receiver):
    """
    A datagram to a closed port comes back as exactly the
    L{HostSocketError} C{fakesockets.portUnreachable} builds, and the
    next send still goes (the pending error does not eat it).
    """
    sock, peer = openPair()
    closed = peer.getsockname()[1]
    peer.close()
    sock.sendTo(b"knock", "127.0.0.1", closed)
    yield receiver.until(lambda: receiver.errors)
    assert receiver.errors == [portUnreachable("127.0.0.1", closed, b"knock")]
    sock.sendTo(b"again", "127.0.0.1", closed)
    yield receiver.until(lambda: len(receiver.errors) == 2)


@pytest_twisted.inlineCallbacks
def test_errorOnlyWakeUp(openPair, receiver):
    """
    When only an error is pending, the reactor stops reading
    (C{EPOLLERR} without C{EPOLLIN}) and calls C{readConnectionLost}:
    the error is delivered there, the socket is read again, and a later
    datagram arrives.
    """
    sock, peer = openPair()
    lost = []
    readConnectionLost = sock.readConnectionLost

    def spy(reason):
        lost.append(reason)
        readConnectionLost(reason)

    sock.readConnectionLost = spy
    closed = peer.getsockname()[1]
    peer.close()
    sock.sendTo(b"knock", "127.0.0.1", closed)
    yield receiver.until(lambda: receiver.errors)
    assert len(lost) == 1
    assert len(receiver.errors) == 1
    assert sock in reactor.getReaders()
    sock.sendTo(b"ping", "127.0.0.1", sock.port)
    yield receiver.until(lambda: receiver.datagrams)
    assert receiver.datagrams == [(b"ping", "127.0.0.1", sock.port)]


def errorBesideDatagramSockets(sockets, receiver, opened):
    """
    In a private namespace: a host socket, a port nothing listens on, and
    a plain peer socket.
    """

    def make():
        sock = sockets.openUDP(receiver)
        opened.append(sock)
        gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        gone.bind(("127.0.0.1", 0))
        closed = gone.getsockname()[1]
        gone.close()
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        opened.append(peer)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(TIMEOUT)
        return sock, closed, peer

    return inPrivateNamespace(make)


@pytest_twisted.inlineCallbacks
def test_errorBesideDatagram(sockets, receiver):
    """
    An ICMP error and a datagram pending together (the reactor sees
    C{EPOLLIN} with C{EPOLLERR}): the pending error the read reports
    first leads to the error queue, and both arrive.
    """
    opened = []
    try:
        sock, closed, peer = errorBesideDatagramSockets(sockets, receiver, opened)
        sock.sendTo(b"knock", "127.0.0.1", closed)
        peer.sendto(b"pong", ("127.0.0.1", sock.port))
        yield receiver.until(lambda: receiver.errors and receiver.datagrams)
        assert receiver.errors == [portUnreachable("127.0.0.1", closed, b"knock")]
        assert receiver.datagrams == [(b"pong", "127.0.0.1", peer.getsockname()[1])]
    finally:
        for each in reversed(opened):
            each.close()


@pytest_twisted.inlineCallbacks
def test_errorTakenBySend(sockets, receiver):
    """
    A send that meets the pending error of an earlier ICMP error (and goes
    on the retry) leaves its details in the queue: they arrive with the
    next datagram read, which no longer reports the error.
    """
    opened = []
    try:
        sock, closed, peer = errorBesideDatagramSockets(sockets, receiver, opened)
        sock.sendTo(b"knock", "127.0.0.1", closed)
        sock.sendTo(b"ping", "127.0.0.1", peer.getsockname()[1])
        assert peer.recv(16) == b"ping"
        peer.sendto(b"pong", ("127.0.0.1", sock.port))
        yield receiver.until(lambda: receiver.errors and receiver.datagrams)
        assert receiver.errors == [portUnreachable("127.0.0.1", closed, b"knock")]
        assert receiver.datagrams == [(b"pong", "127.0.0.1", peer.getsockname()[1])]
    finally:
        for each in reversed(opened):
            each.close()


@pytest_twisted.inlineCallbacks
def test_fragmentationNeeded(openPair, receiver):
    """
    A DF datagram larger than the path MTU (loopback at 1280 here) is
    refused at once with C{EMSGSIZE}, and also reported as the local
    error test_udpnat feeds its NAT: origin C{"local"}, the MTU in
    C{info}, the destination address but port 0 (an unconnected
    socket has no destination port to report); without DF it is sent
    (fragmented by the host).
    """
    sock, peer = openPair(mtu=1280)
    port = peer.getsockname()[1]
    with pytest.raises(OSError) as e:
        sock.sendTo(b"x" * 1400, "127.0.0.1", port, 64, True)
    assert e.value.errno == errno.EMSGSIZE
    yield receiver.until(lambda: receiver.errors)
    [error] = receiver.errors
    assert (error.origin, error.errno, error.info, error.offender, error.host, error.port) == (
        "local",
        errno.EMSGSIZE,
        1280,
        None,
        "127.0.0.1",
        0,
    )
    sock.sendTo(b"x" * 1400, "127.0.0.1", port, 64, False)
    assert len(peer.recv(2000)) == 1400


def test_close(openPair):
    """
    After C{close} the socket is out of the reactor and C{sendTo}
    raises C{OSError}, as the fake's does.
    """
    sock, peer = openPair()
    sock.close()
    assert sock not in reactor.getReaders()
    assert sock.fileno() == -1
    with pytest.raises(OSError):
        sock.sendTo(b"x", "127.0.0.1", 9)
    fake = FakeDatagramSockets().openUDP(Receiver())
    fake.close()
    with pytest.raises(OSError):
        fake.sendTo(b"x", "127.0.0.1", 9)


@pytest_twisted.inlineCallbacks
def test_pingSocket(openPair, receiver):
    """
    With C{ping_group_range} open, an ICMP socket's echo request is
    answered by the kernel with the socket's own identifier (C{port}),
    as C{test_icmp}'s fake replies are built, from the host pinged,
    port 0.
    """
    sock, _ = openPair("icmp", pingGroups="0 2147483647")
    request = emitICMP(ICMPMessage(ECHO_REQUEST, 0, 0, b"\x12\x34\x00\x07", b"payload"))
    sock.sendTo(request, "127.0.0.1", 0, ttl=9)
    yield receiver.until(lambda: receiver.datagrams)
    [(data, host, port)] = receiver.datagrams
    message = parseICMP(data)
    assert (message.type, echoID(message), message.payload) == (
        ECHO_REPLY,
        (sock.port, 7),
        b"payload",
    )
    assert (host, port) == ("127.0.0.1", 0)


def test_pingRefused(openPair):
    """
    With C{ping_group_range} closed ("1 0", the default), opening an
    ICMP socket raises C{PermissionError} (C{EACCES}), which the fake's
    C{icmpError} stands for in C{test_icmp}.
    """
    with pytest.raises(OSError) as e:
        openPair("icmp", pingGroups="1 0")
    assert e.value.errno == errno.EACCES


# -- IPv6 ------------------------------------------------------------------------


def test_family(openPair):
    """
    Each socket is of the family it was opened for, as the fake records
    it: UDP and ICMP, IPv4 and IPv6, IPv4 the default.
    """
    fake = FakeDatagramSockets()
    for kind in ("udp", "icmp"):
        for family in (socket.AF_INET, socket.AF_INET6):
            sock, _ = openPair(kind, family, pingGroups="0 2147483647")
            faked = (fake.openUDP if kind == "udp" else fake.openICMP)(Receiver(), family)
            assert (sock.family, faked.family) == (family, family)
            assert verifyObject(IDatagramSocket, sock)
    assert fake.openUDP(Receiver()).family == socket.AF_INET
    assert fake.openICMP(Receiver()).family == socket.AF_INET


def test_ipv6Only(openPair):
    """
    An IPv6 UDP socket carries no IPv4: a send to an IPv4-mapped address
    (here the host's 127.0.0.1) is refused, so only the IPv4 sockets reach
    IPv4 destinations.
    """
    sock, _ = openPair(family=socket.AF_INET6)
    with pytest.raises(OSError):
        sock.sendTo(b"x", "::ffff:127.0.0.1", 9)


@pytest_twisted.inlineCallbacks
def test_exchange6(openPair, receiver):
    """
    Over IPv6: C{sendTo} reaches the peer on ::1 from the socket's port
    with the hop limit asked for (C{ttl}); the answer arrives as
    C{datagramReceived(data, "::1", port)}.
    """
    sock, peer = openPair(family=socket.AF_INET6)
    peer.setsockopt(socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVHOPLIMIT", 51), 1)
    sock.sendTo(b"ping", "::1", peer.getsockname()[1], ttl=7, dontFragment=True)
    data, ancillary, _, source = peer.recvmsg(100, socket.CMSG_SPACE(4))
    assert (data, source[:2]) == (b"ping", ("::1", sock.port))
    [(_, _, hopLimit)] = ancillary
    assert int.from_bytes(hopLimit, "little") == 7
    peer.sendto(b"pong", ("::1", sock.port))
    yield receiver.until(lambda: receiver.datagrams)
    assert receiver.datagrams == [(b"pong", "::1", peer.getsockname()[1])]


@pytest_twisted.inlineCallbacks
def test_portUnreachable6(openPair, receiver):
    """
    A datagram to a closed port on ::1 comes back as ICMPv6 destination
    unreachable, port unreachable (type 1, code 4), origin C{"icmp6"},
    from ::1: exactly the L{HostSocketError} C{fakesockets.portUnreachable}
    builds for an IPv6 address.  The next send still goes.
    """
    sock, peer = openPair(family=socket.AF_INET6)
    closed = peer.getsockname()[1]
    peer.close()
    sock.sendTo(b"knock", "::1", closed)
    yield receiver.until(lambda: receiver.errors)
    [error] = receiver.errors
    assert (error.origin, error.icmpType, error.icmpCode, error.offender) == ("icmp6", 1, 4, "::1")
    assert receiver.errors == [portUnreachable("::1", closed, b"knock")]
    sock.sendTo(b"again", "::1", closed)
    yield receiver.until(lambda: len(receiver.errors) == 2)


@pytest_twisted.inlineCallbacks
def test_errorOnlyWakeUp6(openPair, receiver):
    """
    Over IPv6 too, an error alone wakes the reactor as C{EPOLLERR}: it is
    delivered from C{readConnectionLost}, and the socket is read again.
    """
    sock, peer = openPair(family=socket.AF_INET6)
    lost = []
    readConnectionLost = sock.readConnectionLost

    def spy(reason):
        lost.append(reason)
        readConnectionLost(reason)

    sock.readConnectionLost = spy
    closed = peer.getsockname()[1]
    peer.close()
    sock.sendTo(b"knock", "::1", closed)
    yield receiver.until(lambda: receiver.errors)
    assert (len(lost), len(receiver.errors)) == (1, 1)
    assert sock in reactor.getReaders()
    sock.sendTo(b"ping", "::1", sock.port)
    yield receiver.until(lambda: receiver.datagrams)
    assert receiver.datagrams == [(b"ping", "::1", sock.port)]


@pytest_twisted.inlineCallbacks
def test_packetTooBig6(openPair, receiver):
    """
    Over IPv6 with C{dontFragment}, a datagram larger than the path MTU
    (loopback at 1280 here) is refused at once with C{EMSGSIZE} and
    reported as a local error with the MTU in C{info} and no offender;
    the kernel reports its destination address and port.  Without
    C{dontFragment} the host fragments it, and it arrives whole.
    """
    sock, peer = openPair(family=socket.AF_INET6, mtu=1280)
    port = peer.getsockname()[1]
    with pytest.raises(OSError) as e:
        sock.sendTo(b"x" * 1400, "::1", port, 64, True)
    assert e.value.errno == errno.EMSGSIZE
    yield receiver.until(lambda: receiver.errors)
    [error] = receiver.errors
    assert (error.origin, error.errno, error.info, error.offender, error.host, error.port) == (
        "local",
        errno.EMSGSIZE,
        1280,
        None,
        "::1",
        port,
    )
    sock.sendTo(b"x" * 1400, "::1", port, 64, False)
    assert len(peer.recv(2000)) == 1400


@pytest_twisted.inlineCallbacks
def test_pingSocket6(openPair, receiver):
    """
    With C{ping_group_range} open, an ICMPv6 socket's echo request to ::1
    is answered with the socket's own identifier (C{port}); the reply is
    delivered from its ICMPv6 header on (checksum valid for ::1 to ::1),
    from ::1, port 0.
    """
    sock, _ = openPair("icmp", socket.AF_INET6, pingGroups="0 2147483647")
    request = emitICMPv6(EchoRequest(0x1234, 7, b"payload"), LOOPBACK6, LOOPBACK6)
    sock.sendTo(request, "::1", 0, ttl=9)
    yield receiver.until(lambda: receiver.datagrams)
    [(data, host, port)] = receiver.datagrams
    reply = parseICMPv6(data, LOOPBACK6, LOOPBACK6)
    assert reply == EchoReply(sock.port, 7, b"payload")
    assert (host, port) == ("::1", 0)


def test_pingRefused6(openPair):
    """
    The same C{ping_group_range} governs ICMPv6 ping sockets: closed, the
    open raises C{EACCES}, as for IPv4.
    """
    with pytest.raises(OSError) as e:
        openPair("icmp", socket.AF_INET6, pingGroups="1 0")
    assert e.value.errno == errno.EACCES


# -- IPv6 errors from a router ------------------------------------------------------

_ROUTER = "2001:db8:1::1"
_BEYOND = "2001:db8:2::2"


def _ip(*argv):
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


@pytest.fixture
def routed():
    """
    Two namespaces of our own: a host (2001:db8:1::2, default route via
    2001:db8:1::1) and a router between 2001:db8:1::/64 and
    2001:db8:2::/64, whose link onwards has an MTU of 1280 and nothing
    beyond it.  A function running its argument in the host namespace;
    both namespaces are deleted after the test.
    """
    suffix = f"{os.getpid()}-{threading.get_ident() % 10000}"
    host, router = f"vpkh6-{suffix}", f"vpkr6-{suffix}"
    made = []
    try:
        for name in (host, router):
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", host, "link", "add", "h0", "type", "veth", "peer", "name", "r0", "netns", router)
        _ip("-n", router, "link", "add", "r1", "mtu", "1280", "type", "veth", "peer", "name", "r2")
        _ip("-n", host, "addr", "add", "2001:db8:1::2/64", "dev", "h0", "nodad")
        _ip("-n", router, "addr", "add", f"{_ROUTER}/64", "dev", "r0", "nodad")
        _ip("-n", router, "addr", "add", "2001:db8:2::1/64", "dev", "r1", "nodad")
        for name, device in ((host, "h0"), (router, "r0"), (router, "r1"), (router, "r2")):
            _ip("-n", name, "link", "set", device, "up")
        _ip("-n", host, "-6", "route", "add", "default", "via", _ROUTER)
        # Neighbour entries both ways, so that the first datagram is not
        # held behind a Neighbour Solicitation that may go out before the
        # veth is ready, and be retried only a second later.
        _ip("-n", host, "neigh", "replace", _ROUTER, "lladdr", _mac(router, "r0"), "dev", "h0")
        _ip("-n", router, "neigh", "replace", "2001:db8:1::2", "lladdr", _mac(host, "h0"), "dev", "r0")
        for setting in ("net.ipv6.conf.all.forwarding=1",):
            _ip("netns", "exec", router, "sysctl", "-qw", setting)
        _ip("netns", "exec", host, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
        yield lambda function: _inNamedNamespace(host, function)
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _mac(namespace, device):
    output = subprocess.run(
        ["ip", "-n", namespace, "-o", "link", "show", device],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return output.split("link/ether ")[1].split()[0]


def _inNamedNamespace(name, function):
    """
    Run C{function} in a thread that has joined the named namespace; its
    sockets stay there (see L{inPrivateNamespace}).
    """
    outcome = {}

    def run():
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            with open(f"/var/run/netns/{name}") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            outcome["value"] = function()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest_twisted.inlineCallbacks
def test_hopLimitExceeded6(sockets, receiver, routed):
    """
    A datagram sent with hop limit 1 beyond a router comes back as the
    router's ICMPv6 time exceeded (type 3, code 0): origin C{"icmp6"},
    the router's address as offender, the datagram's destination, port and
    payload.
    """
    sock = routed(lambda: sockets.openUDP(receiver, socket.AF_INET6))
    try:
        sock.sendTo(b"hop", _BEYOND, 9, ttl=1)
        yield receiver.until(lambda: receiver.errors)
        [error] = receiver.errors
        assert (error.origin, error.icmpType, error.icmpCode, error.offender) == (
            "icmp6",
            3,
            0,
            _ROUTER,
        )
        assert (error.errno, error.host, error.port, error.payload) == (
            errno.EHOSTUNREACH,
            _BEYOND,
            9,
            b"hop",
        )
    finally:
        sock.close()


@pytest_twisted.inlineCallbacks
def test_packetTooBigFromRouter6(sockets, receiver, routed):
    """
    A datagram with C{dontFragment} too big for the router's next link
    comes back as its ICMPv6 Packet Too Big (type 2) with that link's MTU
    in C{info}; the host learns the path MTU, so the next such send is
    refused at once with a local error carrying it.
    """
    sock = routed(lambda: sockets.openUDP(receiver, socket.AF_INET6))
    try:
        sock.sendTo(b"x" * 1400, _BEYOND, 9, ttl=64, dontFragment=True)
        yield receiver.until(lambda: receiver.errors)
        [error] = receiver.errors
        assert (error.origin, error.icmpType, error.icmpCode, error.info, error.offender) == (
            "icmp6",
            2,
            0,
            1280,
            _ROUTER,
        )
        assert (error.errno, error.host, error.port) == (errno.EMSGSIZE, _BEYOND, 9)
        with pytest.raises(OSError) as e:
            sock.sendTo(b"x" * 1400, _BEYOND, 9, ttl=64, dontFragment=True)
        assert e.value.errno == errno.EMSGSIZE
        yield receiver.until(lambda: len(receiver.errors) == 2)
        local = receiver.errors[1]
        assert (local.origin, local.info, local.offender) == ("local", 1280, None)
    finally:
        sock.close()


@pytest_twisted.inlineCallbacks
def test_pingHopLimitExceeded6(sockets, receiver, routed):
    """
    An ICMPv6 ping socket's echo request sent with hop limit 1 beyond a
    router comes back as the router's time exceeded, port 0, with the
    echo request (as the socket sent it: its identifier set) as payload.
    """
    sock = routed(lambda: sockets.openICMP(receiver, socket.AF_INET6))
    try:
        request = emitICMPv6(EchoRequest(0x1234, 3, b"ttl"), LOOPBACK6, LOOPBACK6)
        sock.sendTo(request, _BEYOND, 0, ttl=1)
        yield receiver.until(lambda: receiver.errors)
        [error] = receiver.errors
        assert (error.origin, error.icmpType, error.icmpCode, error.offender) == (
            "icmp6",
            3,
            0,
            _ROUTER,
        )
        assert (error.host, error.port) == (_BEYOND, 0)
        echo = parseICMPv6(error.payload, LOOPBACK6, LOOPBACK6, verifyChecksum=False)
        assert echo == EchoRequest(sock.port, 3, b"ttl")
    finally:
        sock.close()
