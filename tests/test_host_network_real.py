"""
Tests for L{vpnkit.host.network.HostNetwork} against real sockets on the
loopback interface (skipped when 127.0.0.1 cannot be bound), and the same
cases against L{tests.helpers.FakeHostNetwork}, so that the fake every
other test dials through is known to behave like the real thing (STYLE.md:
a verified fake).

Nothing here leaves the machine: the connect timeout is provoked with a
listening socket whose accept queue is full (Linux then drops further SYNs,
so the client keeps retrying until its timeout), and is also checked on a
L{MemoryReactorClock}, which needs no kernel behaviour at all.
"""

import socket

from twisted.internet import defer, error, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.helpers import FakeHostNetwork
from vpnkit.host.network import HostNetwork
from vpnkit.interfaces import IHostNetwork


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
    def dataReceived(self, data):
        self.transport.write(data)


def closedPort():
    """
    A loopback port nothing listens on (bound, then closed at once).
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RealNetworkTests(TestCase):
    if not LOOPBACK:
        skip = "cannot bind 127.0.0.1"

    def setUp(self):
        self.network = HostNetwork(reactor)

    def test_interface(self):
        """
        HostNetwork provides IHostNetwork.
        """
        self.assertTrue(verifyObject(IHostNetwork, self.network))

    @defer.inlineCallbacks
    def test_connect(self):
        """
        Connecting to a listening port: the protocol is connected, then the
        Deferred fires with that very protocol, and bytes flow.
        """
        port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        events = []
        protocol = Recorder(events)
        result = yield self.network.connectTCP(
            "127.0.0.1", port.getHost().port, protocol, 5.0
        ).addCallback(fired(events))
        self.assertIs(result, protocol)
        self.assertEqual(events, ["connectionMade", "fired"])
        self.assertEqual(protocol.transport.getPeer().port, port.getHost().port)
        protocol.transport.write(b"ping")
        echoed = yield protocol.expect(4)
        self.assertEqual(echoed, b"ping")
        protocol.transport.loseConnection()
        yield protocol.lost

    @defer.inlineCallbacks
    def test_refused(self):
        """
        Connecting to a closed port fails with ConnectionRefusedError; the
        protocol is never connected.
        """
        events = []
        d = self.network.connectTCP("127.0.0.1", closedPort(), Recorder(events), 5.0)
        yield self.assertFailure(d, error.ConnectionRefusedError)
        self.assertEqual(events, [])

    @defer.inlineCallbacks
    def test_timeout(self):
        """
        A connect that gets no answer fails with TimeoutError after the
        timeout: here a listener whose accept queue is full, so the kernel
        drops our SYNs.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(address)
            fillers.append(s)
            self.addCleanup(s.close)
        events = []
        protocol = Recorder(events)
        d = self.network.connectTCP("127.0.0.1", address[1], protocol, 0.3)
        start = reactor.seconds()
        try:
            yield d
        except error.TimeoutError:
            pass
        else:
            protocol.transport.abortConnection()
            yield protocol.lost
            raise self.skipTest("the kernel accepted beyond the backlog")
        self.assertGreaterEqual(reactor.seconds() - start, 0.29)
        self.assertEqual(events, [])

    @defer.inlineCallbacks
    def test_cancel(self):
        """
        Cancelling a connect in progress fails it (with Twisted's
        ConnectingCancelledError; the fake's is a plain CancelledError, a
        difference L{TCPLayer} does not look at) and never connects the
        protocol.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(address)
            self.addCleanup(s.close)
        events = []
        d = self.network.connectTCP("127.0.0.1", address[1], Recorder(events), 5.0)
        d.cancel()
        yield self.assertFailure(d, error.ConnectingCancelledError)
        self.assertEqual(events, [])


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
