"""
Tests for L{vpnkit.host.network.HostNetwork} against real sockets on the
loopback interface, and the same cases against
L{tests.helpers.FakeHostNetwork}, so that the fake every other test dials
through is known to behave like the real thing (STYLE.md: a verified fake).

The real cases are pytest functions on the reactor pytest-twisted installs
and runs, so they run under pytest only (docs/testing.md); they skip when
127.0.0.1 cannot be bound, except as root.  The fake cases are trial test
cases and run under both.  (L{HostNetwork} makes its connections itself, a
socket each, so it has no memory-reactor cases: every one of its cases
is on loopback.)

Besides connecting, the real cases pin the write-through: a small write
reaches the peer before C{write} returns, without the transport
registering for writability; what the kernel does not take waits, in
order, behind it; a failed send and a half-close behave as Twisted's own
transport does.

Nothing here leaves the machine: the connect timeout is provoked with a
listening socket whose accept queue is full (Linux then drops further SYNs,
so the client keeps retrying until its timeout).
"""

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, error, tcp
from twisted.internet.address import IPv6Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import deferLater

# The reactor pytest-twisted installed when pytest started (before any test
# module is imported) and runs while a test waits on a Deferred.
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers import FakeHostNetwork
from vpnkit.host.network import READ_SIZE, HostNetwork
from vpnkit.interfaces import IHostNetwork
from vpnkit.protocols.tcp.layer import SelfConnectError


def _loopbackUsable():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
    except OSError:
        return False
    finally:
        s.close()
    return True


LOOPBACK = _loopbackUsable()


class Recorder(Protocol):
    """
    Records, in one list shared with the test, the order in which it is
    connected and the connect Deferred fires.
    """

    def __init__(self, events):
        self.events = events
        self.received = b""
        self.lost = defer.Deferred()
        self._waiting = None

    def connectionMade(self):
        self.events.append("connectionMade")

    def expect(self, size):
        """
        A Deferred that fires once C{size} bytes have arrived.
        """
        self._waiting = (size, defer.Deferred())
        self._check()
        return self._waiting[1]

    def _check(self):
        if self._waiting is not None and len(self.received) >= self._waiting[0]:
            d, self._waiting = self._waiting[1], None
            d.callback(self.received)

    def dataReceived(self, data):
        self.received += data
        self._check()

    def connectionLost(self, reason):
        self.events.append("connectionLost")
        self.reason = reason
        self.lost.callback(None)


def fired(events):
    def callback(result):
        events.append("fired")
        return result

    return callback


class Echo(Protocol):
    """
    Echoes; fires its factory's C{closed} Deferred when its connection ends.
    """

    def dataReceived(self, data):
        self.transport.write(data)

    def connectionLost(self, reason):
        self.factory.closed.callback(None)


def closedPort():
    """
    A loopback port nothing listens on (bound, then closed at once).
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def network():
    """
    L{HostNetwork} on the reactor pytest-twisted runs.  Without a usable
    loopback the real cases skip, except as root (CI), where nothing may
    skip quietly.
    """
    if not LOOPBACK:
        if os.geteuid() == 0:
            pytest.fail("cannot bind 127.0.0.1: the loopback interface is not usable")
        pytest.skip("cannot bind 127.0.0.1")
    before = _descriptors()
    yield HostNetwork(reactor)
    # What trial's clean-reactor check did: a test leaves no socket behind.
    left = _descriptors() - before
    assert not left, f"left in the reactor: {left}"


def _descriptors():
    return {
        each
        for each in reactor.getReaders() + reactor.getWriters()
        if isinstance(each, (tcp.Connection, tcp.Port))
    }


@pytest.fixture
def cleanups():
    """
    Callables run after the test, last first.
    """
    calls = []
    yield calls
    for call in reversed(calls):
        call()


def fullListener(cleanups):
    """
    A listening socket whose accept queue is already full, so the kernel
    drops further SYNs to it: its address.
    """
    listener = socket.socket()
    cleanups.append(listener.close)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    for _ in range(4):
        s = socket.socket()
        cleanups.append(s.close)
        s.setblocking(False)
        s.connect_ex(address)
    return address


def test_realInterface(network):
    """
    HostNetwork provides IHostNetwork.
    """
    assert verifyObject(IHostNetwork, network)


@pytest_twisted.inlineCallbacks
def test_realConnect(network):
    """
    Connecting to a listening port: the protocol is connected, then the
    Deferred fires with that very protocol, and bytes flow.
    """
    factory = Factory.forProtocol(Echo)
    factory.closed = defer.Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        events = []
        protocol = Recorder(events)
        result = yield network.connectTCP(
            "127.0.0.1", port.getHost().port, protocol, 5.0
        ).addCallback(fired(events))
        assert result is protocol
        assert events == ["connectionMade", "fired"]
        assert protocol.transport.getPeer().port == port.getHost().port
        protocol.transport.write(b"ping")
        echoed = yield protocol.expect(4)
        assert echoed == b"ping"
        protocol.transport.loseConnection()
        yield protocol.lost
        yield factory.closed
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_realRefused(network):
    """
    Connecting to a closed port fails with ConnectionRefusedError; the
    protocol is never connected.
    """
    events = []
    with pytest.raises(error.ConnectionRefusedError):
        yield network.connectTCP("127.0.0.1", closedPort(), Recorder(events), 5.0)
    assert events == []


@pytest_twisted.inlineCallbacks
def test_realTimeout(network, cleanups):
    """
    A connect that gets no answer fails with TimeoutError after the
    timeout: here a listener whose accept queue is full, so the kernel
    drops our SYNs (Linux does; a kernel that accepted would fail here).
    """
    address = fullListener(cleanups)
    events = []
    protocol = Recorder(events)
    cleanups.append(lambda: protocol.transport and protocol.transport.abortConnection())
    start = reactor.seconds()
    with pytest.raises(error.TimeoutError):
        yield network.connectTCP("127.0.0.1", address[1], protocol, 0.3)
    assert reactor.seconds() - start >= 0.29
    assert events == []


@pytest_twisted.inlineCallbacks
def test_realCancel(network, cleanups):
    """
    Cancelling a connect in progress fails it (with Twisted's
    ConnectingCancelledError; the fake's is a plain CancelledError, a
    difference L{TCPLayer} does not look at) and never connects the
    protocol.
    """
    address = fullListener(cleanups)
    events = []
    d = network.connectTCP("127.0.0.1", address[1], Recorder(events), 5.0)
    d.cancel()
    with pytest.raises(error.ConnectingCancelledError):
        yield d
    assert events == []


class _BindToDestination(HostNetwork):
    """
    L{HostNetwork}, except that every connection is bound to the port it
    dials: how a host dial whose ephemeral port happens to equal the
    destination port (nothing listening there) is made on purpose.
    """

    def localAddress(self, host, port):
        return (host, port)


@pytest_twisted.inlineCallbacks
def test_realSelfConnectRefused(network):
    """
    A dial that connects to itself (TCP simultaneous open on loopback:
    local address == peer address) is refused as ConnectionRefusedError
    (L{SelfConnectError}); the protocol is never connected and no socket
    is left, so a closed port does not look open.
    """
    port = closedPort()
    events = []
    selfDialling = _BindToDestination(reactor)
    with pytest.raises(SelfConnectError) as raised:
        yield selfDialling.connectTCP("127.0.0.1", port, Recorder(events), 5.0)
    assert isinstance(raised.value, error.ConnectionRefusedError)
    assert events == []
    # The aborted socket leaves the reactor on its next iteration.
    for _ in range(100):
        if not _selfConnected(port):
            break
        yield deferLater(reactor, 0.01, lambda: None)
    assert not _selfConnected(port)


def _selfConnected(port):
    return any(
        isinstance(each, tcp.Connection) and each.getHost().port == port
        for each in reactor.getReaders() + reactor.getWriters()
    )


class _WatchedReactor:
    """
    The reactor, recording every C{addWriter} and C{removeWriter} (what
    C{startWriting} and C{stopWriting} do: an C{epoll_ctl} each).
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self.writers = []

    def addWriter(self, writer):
        self.writers.append("addWriter")
        self._reactor.addWriter(writer)

    def removeWriter(self, writer):
        self.writers.append("removeWriter")
        self._reactor.removeWriter(writer)

    def __getattr__(self, name):
        return getattr(self._reactor, name)


def plainListener(cleanups):
    """
    A listening socket on loopback that the reactor does not watch, so a
    test can look at what arrives without running the reactor.
    """
    listener = socket.socket()
    cleanups.append(listener.close)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


def acceptPlain(listener, cleanups):
    """
    The peer of a connection already made to C{listener}: non-blocking.
    """
    listener.settimeout(5)
    peer, _ = listener.accept()
    cleanups.append(peer.close)
    peer.setblocking(False)
    return peer


def accepting(build):
    """
    A factory of C{build()} protocols, and a L{Deferred} that fires with
    the first once it is connected (a host dial on loopback is connected
    before the listening side, on the reactor, has accepted).
    """
    accepted = defer.Deferred()
    factory = Factory()

    def buildProtocol(addr):
        protocol = build()
        connectionMade = protocol.connectionMade

        def made():
            connectionMade()
            if not accepted.called:
                accepted.callback(protocol)

        protocol.connectionMade = made
        return protocol

    factory.buildProtocol = buildProtocol
    return factory, accepted


class Collector(Protocol):
    """
    Keeps what arrives (in a list: megabytes arrive in pieces) and fires
    C{done} once C{size} bytes have.
    """

    def __init__(self, size):
        self.size = size
        self.chunks = []
        self.count = 0
        self.done = defer.Deferred()
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.chunks.append(data)
        self.count += len(data)
        if self.count >= self.size and not self.done.called:
            self.done.callback(b"".join(self.chunks))

    def connectionLost(self, reason):
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def test_realDialledStepsAside(network):
    """
    Once connected, the transport talks to the given protocol itself:
    nothing stands between them for every event.
    """
    factory = Factory.forProtocol(Echo)
    factory.closed = defer.Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        protocol = Recorder([])
        yield network.connectTCP("127.0.0.1", port.getHost().port, protocol, 5.0)
        assert protocol.transport.protocol is protocol
        protocol.transport.loseConnection()
        yield protocol.lost
        yield factory.closed
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_realLoopbackConnectsAtOnce(network):
    """
    A dial to a listening port on the host's own address is connected
    within the connectTCP call (its handshake is done when connect()
    returns): the Deferred has fired, the protocol is connected, before
    the reactor runs again.  A closed port there is refused as promptly.
    """
    factory = Factory.forProtocol(Echo)
    factory.closed = defer.Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        events = []
        protocol = Recorder(events)
        d = network.connectTCP("127.0.0.1", port.getHost().port, protocol, 5.0)
        d.addCallback(fired(events))
        assert events == ["connectionMade", "fired"]
        yield d
        refused = []
        network.connectTCP("127.0.0.1", closedPort(), Recorder([]), 5.0).addErrback(
            refused.append
        )
        [failure] = refused
        assert failure.check(error.ConnectionRefusedError)
        protocol.transport.loseConnection()
        yield protocol.lost
        yield factory.closed
    finally:
        yield port.stopListening()


def test_realNamesNotResolved(network):
    """
    The host is an address literal (the stack never asks for a name): a
    name fails the dial at once, with nothing connected.
    """
    events = []
    d = network.connectTCP("localhost", 80, Recorder(events), 5.0)
    failures = []
    d.addErrback(failures.append)
    [failure] = failures
    assert failure.check(error.ConnectError)
    assert events == []


@pytest_twisted.inlineCallbacks
def test_realWriteThrough(cleanups):
    """
    A small write to a connected host socket with room in its kernel buffer
    is sent before C{write} returns (on loopback it is then already
    readable at the peer, without the reactor running), and the transport
    never registers for writability: no C{epoll_ctl} add and remove, no
    wait for the next reactor turn.  So is a C{writeSequence}.
    """
    watched = _WatchedReactor(reactor)
    network = HostNetwork(watched)
    listener = plainListener(cleanups)
    protocol = Recorder([])
    yield network.connectTCP("127.0.0.1", listener.getsockname()[1], protocol, 5.0)
    peer = acceptPlain(listener, cleanups)
    try:
        del watched.writers[:]
        protocol.transport.write(b"x")
        assert peer.recv(16) == b"x"
        protocol.transport.writeSequence([b"y", b"z"])
        assert peer.recv(16) == b"yz"
        assert watched.writers == []
    finally:
        protocol.transport.loseConnection()
        yield protocol.lost


@pytest_twisted.inlineCallbacks
def test_realWriteBuffersWhatDoesNotFit(network):
    """
    A write larger than the kernel takes is sent in part at once; the rest
    waits in the transport (which registers for writability) and so does
    every later write, so the peer gets everything, in order.  Once that
    is out, small writes go straight through again.
    """
    big = bytes(range(256)) * (32 * 4096)  # 32 MiB
    factory, accepted = accepting(lambda: Collector(len(big) + 4))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    collector = None
    try:
        watched = _WatchedReactor(reactor)
        protocol = Recorder([])
        yield HostNetwork(watched).connectTCP(
            "127.0.0.1", port.getHost().port, protocol, 5.0
        )
        collector = yield accepted
        del watched.writers[:]
        protocol.transport.write(big)
        protocol.transport.write(b"tail")
        # (Twisted's write asks again each time; the reactor adds it once.)
        assert set(watched.writers) == {"addWriter"}
        received = yield collector.done
        assert received == big + b"tail"
        # The last send and the end of writing were one doWrite, before
        # the peer could read the last byte.
        assert watched.writers[-1] == "removeWriter"
        before = list(watched.writers)
        collector.size += 4
        collector.done = defer.Deferred()
        protocol.transport.write(b"more")
        assert watched.writers == before
        assert (yield collector.done).endswith(b"tailmore")
    finally:
        protocol.transport.loseConnection()
        yield protocol.lost
        if collector is not None:
            yield collector.lost
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_realWriteAfterResetLosesConnection(network, cleanups):
    """
    A write the peer's reset makes fail loses the connection (as
    C{ConnectionLost}, not a clean close) a reactor turn later, as a
    buffered write meeting the error would have.
    """
    listener = plainListener(cleanups)
    protocol = Recorder([])
    yield network.connectTCP("127.0.0.1", listener.getsockname()[1], protocol, 5.0)
    peer = acceptPlain(listener, cleanups)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    protocol.transport.write(b"x")
    assert protocol.events == ["connectionMade"]
    yield protocol.lost
    assert protocol.reason.check(error.ConnectionLost)


@implementer(IHalfCloseableProtocol)
class HalfClosePeer(Protocol):
    """
    The far end of a half-close: keeps what arrives, fires C{eof} with it
    at the EOF, then answers C{b"back"} and closes.
    """

    def __init__(self):
        self.chunks = []
        self.eof = defer.Deferred()
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.chunks.append(data)

    def readConnectionLost(self):
        self.eof.callback(b"".join(self.chunks))
        self.transport.write(b"back")
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def test_realHalfCloseAfterWriteThrough(network):
    """
    loseWriteConnection after written-through bytes: the peer reads them,
    then EOF; the connection still reads what the peer sends after, and
    closes cleanly; asking twice changes nothing.
    """
    factory, accepted = accepting(HalfClosePeer)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        protocol = Recorder([])
        yield network.connectTCP("127.0.0.1", port.getHost().port, protocol, 5.0)
        protocol.transport.write(b"x")
        protocol.transport.loseWriteConnection()
        protocol.transport.loseWriteConnection()
        peer = yield accepted
        assert (yield peer.eof) == b"x"
        assert (yield protocol.expect(4)) == b"back"
        yield protocol.lost
        assert protocol.reason.check(error.ConnectionDone)
        yield peer.lost
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_realHalfCloseAfterQueuedWrites(network):
    """
    loseWriteConnection while written bytes wait in the transport (more
    than the kernel took): the peer reads all of them, then EOF; asking
    again changes nothing.
    """
    big = bytes(range(256)) * (16 * 4096)  # 16 MiB
    factory, accepted = accepting(HalfClosePeer)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        protocol = Recorder([])
        yield network.connectTCP("127.0.0.1", port.getHost().port, protocol, 5.0)
        protocol.transport.write(big)
        protocol.transport.loseWriteConnection()
        protocol.transport.loseWriteConnection()
        peer = yield accepted
        assert (yield peer.eof) == big
        assert (yield protocol.expect(4)) == b"back"
        yield protocol.lost
        assert protocol.reason.check(error.ConnectionDone)
        yield peer.lost
    finally:
        yield port.stopListening()


# -- IPv6 --------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914


def _inNamespace(function, loopbackUp):
    """
    Run C{function} in a thread with a network namespace of its own (its
    loopback up, with ::1 and 127.0.0.1, or down: no address and no route
    at all), and return its result.  Sockets it makes (connects included)
    stay in that namespace, and are read by the reactor afterwards; the
    reactor's thread waits for the thread meanwhile, so what C{function}
    does to the reactor happens as if the reactor's thread did it.
    """
    outcome = {}

    def run():
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            if loopbackUp:
                control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    name = b"lo".ljust(40, b"\0")
                    flags = struct.unpack_from("h", fcntl.ioctl(control, SIOCGIFFLAGS, name), 16)[0]
                    request = struct.pack("16sh", b"lo", flags | 1).ljust(40, b"\0")
                    fcntl.ioctl(control, SIOCSIFFLAGS, request)
                finally:
                    control.close()
            outcome["value"] = function()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _ipv6LoopbackUsable():
    s = socket.socket(socket.AF_INET6)
    try:
        s.bind(("::1", 0))
    except OSError:
        return False
    finally:
        s.close()
    return True


@pytest.fixture
def onIPv6Loopback(network):
    """
    A function running its argument where ::1 is usable: as root in a
    private namespace (whatever the machine's own IPv6 set-up), else on
    the machine's loopback, skipping when ::1 is not there.
    """
    if os.geteuid() == 0:
        return lambda function: _inNamespace(function, loopbackUp=True)
    if not _ipv6LoopbackUsable():
        pytest.skip("::1 is not usable on this machine's loopback (root would use a namespace)")
    return lambda function: function()


def test_realLiterals(network):
    """
    The addresses dialled are IPv4 or IPv6 literals: names, scoped or
    malformed IPv6 text fail at once, with nothing connected.
    """
    for host in ("localhost", "fe80::1%lo", "::1::2", "2001:db8::1/64", ""):
        events = []
        failures = []
        network.connectTCP(host, 80, Recorder(events), 5.0).addErrback(failures.append)
        [failure] = failures
        assert failure.check(error.ConnectError), host
        assert events == []


@pytest_twisted.inlineCallbacks
def test_realConnect6(network, onIPv6Loopback):
    """
    Dialling an IPv6 literal: a listener on ::1 is connected (the
    protocol first, then the Deferred), the peer is an L{IPv6Address},
    and bytes flow.
    """
    factory = Factory.forProtocol(Echo)
    factory.closed = defer.Deferred()
    events = []
    protocol = Recorder(events)

    def dial():
        port = reactor.listenTCP(0, factory, interface="::1")
        d = network.connectTCP("::1", port.getHost().port, protocol, 5.0)
        return port, d.addCallback(fired(events))

    port, d = onIPv6Loopback(dial)
    try:
        result = yield d
        assert result is protocol
        assert events == ["connectionMade", "fired"]
        peer = protocol.transport.getPeer()
        assert isinstance(peer, IPv6Address)
        assert (peer.host, peer.port) == ("::1", port.getHost().port)
        protocol.transport.write(b"ping")
        echoed = yield protocol.expect(4)
        assert echoed == b"ping"
        protocol.transport.loseConnection()
        yield protocol.lost
        yield factory.closed
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_realRefused6(network, onIPv6Loopback):
    """
    A closed port on ::1 refuses as a closed IPv4 port does:
    C{ConnectionRefusedError}, nothing connected.
    """
    events = []

    def dial():
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        closed = s.getsockname()[1]
        s.close()
        return network.connectTCP("::1", closed, Recorder(events), 5.0)

    d = onIPv6Loopback(dial)
    with pytest.raises(error.ConnectionRefusedError):
        yield d
    assert events == []


@pytest_twisted.inlineCallbacks
def test_realSelfConnectRefused6(network, onIPv6Loopback):
    """
    A dial to ::1 that connects to itself is refused with
    L{SelfConnectError}, as on 127.0.0.1: the check compares IPv6
    addresses too.
    """
    events = []

    def dial():
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        s.close()
        return port, _BindToDestination(reactor).connectTCP("::1", port, Recorder(events), 5.0)

    port, d = onIPv6Loopback(dial)
    with pytest.raises(SelfConnectError):
        yield d
    assert events == []
    for _ in range(100):
        if not _selfConnected(port):
            break
        yield deferLater(reactor, 0.01, lambda: None)
    assert not _selfConnected(port)


@pytest_twisted.inlineCallbacks
def test_realCancel6(network, onIPv6Loopback, cleanups):
    """
    Cancelling an IPv6 dial in progress (to a listener on ::1 whose accept
    queue is full) fails it with C{ConnectingCancelledError} naming an
    L{IPv6Address}; nothing is connected.
    """
    events = []

    def dial():
        listener = socket.socket(socket.AF_INET6)
        cleanups.append(listener.close)
        listener.bind(("::1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):
            s = socket.socket(socket.AF_INET6)
            cleanups.append(s.close)
            s.setblocking(False)
            s.connect_ex(address)
        return network.connectTCP("::1", address[1], Recorder(events), 5.0)

    d = onIPv6Loopback(dial)
    assert not d.called
    d.cancel()
    with pytest.raises(error.ConnectingCancelledError) as raised:
        yield d
    assert isinstance(raised.value.address, IPv6Address)
    assert raised.value.address.host == "::1"
    assert events == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a namespace without IPv6 routes")
def test_realNoRoute6(network):
    """
    On a host without an IPv6 route, a dial to a remote IPv6 address
    (2001:db8::1, in a namespace whose only IPv6 route is ::1's) fails at
    once, in the call that asks for it, with C{NoRouteError}
    (C{ENETUNREACH}), which L{vpnkit.protocols.tcp.layer.TCPLayer} answers
    with an unreachable error instead of waiting for the timeout; nothing
    is connected.
    """
    events = []
    failures = []

    def dial():
        d = network.connectTCP("2001:db8::1", 443, Recorder(events), 30.0)
        d.addErrback(failures.append)
        return d

    _inNamespace(dial, loopbackUp=True)
    [failure] = failures
    assert failure.check(error.NoRouteError)
    assert failure.value.osError == errno.ENETUNREACH
    assert events == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a namespace without IPv6 addresses")
def test_realNoAddress6(network):
    """
    On a host with no IPv6 address at all (a namespace whose loopback is
    down), the dial fails at once too, as a C{ConnectError} saying
    C{EADDRNOTAVAIL} (no source address), which the TCP layer answers with
    a reset: prompt either way, never a wait for the timeout.
    """
    events = []
    failures = []

    def dial():
        d = network.connectTCP("2001:db8::1", 443, Recorder(events), 30.0)
        d.addErrback(failures.append)
        return d

    _inNamespace(dial, loopbackUp=False)
    [failure] = failures
    assert failure.check(error.ConnectError)
    assert failure.value.osError == errno.EADDRNOTAVAIL
    assert events == []

class FakeNetworkTests(SynchronousTestCase):
    """
    The same cases through L{FakeHostNetwork}: the same order of events and
    the same failures as the real network above.
    """

    def setUp(self):
        self.network = FakeHostNetwork()

    def test_interface(self):
        """
        FakeHostNetwork provides IHostNetwork.
        """
        self.assertTrue(verifyObject(IHostNetwork, self.network))

    def test_connect(self):
        """
        succeed(): the protocol is connected, then the Deferred fires with
        it, as with the real network.
        """
        events = []
        protocol = Recorder(events)
        d = self.network.connectTCP("127.0.0.1", 80, protocol, 5.0)
        d.addCallback(fired(events))
        self.assertNoResult(d)
        transport = self.network.succeed()
        self.assertIs(self.successResultOf(d), protocol)
        self.assertEqual(events, ["connectionMade", "fired"])
        self.assertIs(protocol.transport, transport)
        [pending] = self.network.connects
        self.assertEqual((pending.host, pending.port, pending.timeout), ("127.0.0.1", 80, 5.0))

    def test_refused(self):
        """
        fail(ConnectionRefusedError()): the Deferred fails with it and the
        protocol is never connected.
        """
        events = []
        d = self.network.connectTCP("127.0.0.1", 80, Recorder(events), 5.0)
        self.network.fail(error.ConnectionRefusedError())
        self.failureResultOf(d, error.ConnectionRefusedError)
        self.assertEqual(events, [])

    def test_timeout(self):
        """
        fail(TimeoutError()) is how a test plays the real timeout.
        """
        events = []
        d = self.network.connectTCP("127.0.0.1", 80, Recorder(events), 0.3)
        self.network.fail(error.TimeoutError())
        self.failureResultOf(d, error.TimeoutError)
        self.assertEqual(events, [])

    def test_cancel(self):
        """
        Cancelling fails the Deferred (with CancelledError, where the real
        network says ConnectingCancelledError) and connects nothing.
        """
        events = []
        d = self.network.connectTCP("127.0.0.1", 80, Recorder(events), 5.0)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(events, [])
