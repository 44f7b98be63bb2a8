"""
Tests for L{vpnkit.host.network.HostNetwork} against real sockets on the
loopback interface, and the same cases against
L{tests.helpers.FakeHostNetwork}, so that the fake every other test dials
through is known to behave like the real thing (STYLE.md: a verified fake).

The real cases are pytest functions on the reactor pytest-twisted installs
and runs, so they run under pytest only (docs/testing.md); they skip when
127.0.0.1 cannot be bound, except as root.  The fake and L{MemoryReactorClock}
cases are trial test cases and run under both.

Nothing here leaves the machine: the connect timeout is provoked with a
listening socket whose accept queue is full (Linux then drops further SYNs,
so the client keeps retrying until its timeout), and is also checked on a
L{MemoryReactorClock}, which needs no kernel behaviour at all.
"""

import os
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, error, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.task import deferLater

# The reactor pytest-twisted installed when pytest started (before any test
# module is imported) and runs while a test waits on a Deferred.
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
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


class _BindToDestination:
    """
    The reactor, except that every TCP connect is bound to the port it
    dials: how a host dial whose ephemeral port happens to equal the
    destination port (nothing listening there) is made on purpose.
    """

    def __init__(self, reactor):
        self._reactor = reactor

    def connectTCP(self, host, port, factory, timeout=30, bindAddress=None):
        return self._reactor.connectTCP(host, port, factory, timeout, bindAddress=(host, port))

    def __getattr__(self, name):
        return getattr(self._reactor, name)


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
    selfDialling = HostNetwork(_BindToDestination(reactor))
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


class MemoryReactorTests(SynchronousTestCase):
    """
    HostNetwork over a L{MemoryReactorClock}: what it asks of the reactor,
    and the timeout without any kernel involved.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.network = HostNetwork(self.reactor)

    def test_connectArguments(self):
        """
        connectTCP asks the reactor for the host, port and timeout given.
        """
        self.network.connectTCP("203.0.113.9", 443, Protocol(), 12.5)
        [(host, port, factory, timeout, bindAddress)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout, bindAddress), ("203.0.113.9", 443, 12.5, None))

    def test_timeoutFails(self):
        """
        The connector's timeout reaches the Deferred as TimeoutError.
        """
        events = []
        d = self.network.connectTCP("203.0.113.9", 443, Recorder(events), 12.5)
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        connector = self.reactor.connectors[0]
        factory.clientConnectionFailed(connector, Failure(error.TimeoutError()))
        self.failureResultOf(d, error.TimeoutError)
        self.assertEqual(events, [])

    def test_selfConnectRefused(self):
        """
        A connection whose local address is its peer address fails with
        L{SelfConnectError} (a C{ConnectionRefusedError}), is aborted, and
        the protocol is never connected.
        """
        events = []
        d = self.network.connectTCP("127.0.0.1", 45000, Recorder(events), 12.5)
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        address = IPv4Address("TCP", "127.0.0.1", 45000)
        transport = StringTransport(hostAddress=address, peerAddress=address)
        built = factory.buildProtocol(address)
        built.makeConnection(transport)
        failure = self.failureResultOf(d, SelfConnectError)
        self.assertIsInstance(failure.value, error.ConnectionRefusedError)
        self.assertEqual(events, [])
        self.assertTrue(transport.disconnecting)

    def test_otherLocalPortConnects(self):
        """
        The same addresses with another local port are a normal connection.
        """
        protocol = Protocol()
        d = self.network.connectTCP("127.0.0.1", 45000, protocol, 12.5)
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 45001),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 45000),
        )
        factory.buildProtocol(None).makeConnection(transport)
        self.assertIs(self.successResultOf(d), protocol)
        self.assertFalse(transport.disconnecting)

    def test_successBuildsGivenProtocol(self):
        """
        The factory hands out the very protocol given.
        """
        protocol = Protocol()
        d = self.network.connectTCP("203.0.113.9", 443, protocol, 12.5)
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        built = factory.buildProtocol(None)
        built.makeConnection(StringTransport())
        self.assertIs(self.successResultOf(d), protocol)


@pytest_twisted.inlineCallbacks
def test_realLargeReads(network):
    """
    A host connection reads up to L{READ_SIZE} (1 MiB) at a time, its
    transport's public C{bufferSize}, and bytes still flow.
    """
    factory = Factory.forProtocol(Echo)
    factory.closed = defer.Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        protocol = Recorder([])
        yield network.connectTCP("127.0.0.1", port.getHost().port, protocol, 5.0)
        assert READ_SIZE == 1 << 20
        assert protocol.transport.bufferSize == READ_SIZE
        sizes = []
        real = protocol.transport.socket

        class Watched:
            def recv(self, size):
                sizes.append(size)
                return real.recv(size)

            def __getattr__(self, name):
                return getattr(real, name)

        protocol.transport.socket = Watched()
        protocol.transport.write(b"x" * 200000)
        echoed = yield protocol.expect(200000)
        assert echoed == b"x" * 200000
        assert sizes and set(sizes) == {READ_SIZE}
        protocol.transport.socket = real
        protocol.transport.loseConnection()
        yield protocol.lost
        yield factory.closed
    finally:
        yield port.stopListening()
