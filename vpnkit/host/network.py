# -*- test-case-name: tests.test_host_network_real -*-
"""
L{HostNetwork}: the real L{IHostNetwork}, over the reactor's C{connectTCP}.

A dial to a port nothing listens on can connect to itself: when the
kernel picks an ephemeral local port equal to the destination port on the
same address (only possible on the host's own addresses, the host alias's
127.0.0.1 first of all), the SYN meets itself and TCP's simultaneous open
completes.  The guest would then see a closed port as open (nmap does).
Every connection is checked before its protocol is connected: one whose
local address is its peer address is aborted and the dial fails with
L{SelfConnectError}, a C{ConnectionRefusedError}, exactly as if the port
had refused.

Host connections also read more per C{recv} than Twisted's transports do
(L{READ_SIZE}).
"""

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

from vpnkit.interfaces import IHostNetwork
from vpnkit.protocols.tcp.layer import SelfConnectError

__all__ = ["HostNetwork", "SelfConnectError", "READ_SIZE"]

# The most a host connection takes from its socket in one read: the
# transport's public bufferSize, which Twisted reads with (64 KiB by
# default) and also uses as the write buffer that pauses its producer.
# For a download into a guest every read costs a reactor turn, a
# dataReceived and a TCP dispatch whatever its size, and a 64 KiB read
# went out as a 64 KiB segment and an 81-byte one; a read of many
# segments' worth goes out in full segments, one dispatch for all.  On
# the way up, the guest's connection is paused once 1 MiB waits for the
# host socket instead of 64 KiB.
READ_SIZE = 1 << 20


def connectedToItself(transport):
    """
    Whether C{transport}'s local address is its peer address.
    """
    host, peer = transport.getHost(), transport.getPeer()
    return (host.host, host.port) == (peer.host, peer.port)


class _Dialled(Protocol):
    """
    Stands between a new host connection and the protocol it is for until
    the connection is known not to be connected to itself, then passes
    every event on.
    """

    def __init__(self, dial, protocol):
        self._dial = dial
        self._protocol = protocol
        if IHalfCloseableProtocol.providedBy(protocol):
            directlyProvides(self, IHalfCloseableProtocol)

    def connectionMade(self):
        transport = self.transport
        if connectedToItself(transport):
            address = transport.getPeer()
            self._protocol = None
            transport.abortConnection()
            self._dial.failed(Failure(SelfConnectError(address.host, address.port)))
            return
        # Read up to READ_SIZE at a time (see its comment).
        transport.bufferSize = READ_SIZE
        self._protocol.makeConnection(transport)
        self._dial.connected(self._protocol)

    def dataReceived(self, data):
        self._protocol.dataReceived(data)

    def readConnectionLost(self):
        self._protocol.readConnectionLost()

    def writeConnectionLost(self):
        self._protocol.writeConnectionLost()

    def connectionLost(self, reason):
        if self._protocol is not None:
            self._protocol.connectionLost(reason)


class _Dial(ClientFactory):
    """
    One connect: a L{Deferred} that fires with the protocol once it is
    connected, or fails (refused, timed out, cancelled, connected to
    itself).  Quiet: vpnkit dials once per guest connection.
    """

    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol
        self._connector = None
        self.deferred = Deferred(self._cancel)

    def startedConnecting(self, connector):
        self._connector = connector

    def buildProtocol(self, addr):
        return _Dialled(self, self._protocol)

    def connected(self, protocol):
        if not self.deferred.called:
            self.deferred.callback(protocol)

    def failed(self, failure):
        if not self.deferred.called:
            self.deferred.errback(failure)

    def clientConnectionFailed(self, connector, reason):
        self.failed(reason)

    def _cancel(self, deferred):
        connector = self._connector
        deferred.errback(error.ConnectingCancelledError(connector.getDestination()))
        connector.stopConnecting()


@implementer(IHostNetwork)
class HostNetwork:
    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor

    def connectTCP(self, host, port, protocol, timeout):
        dial = _Dial(protocol)
        self._reactor.connectTCP(host, port, dial, timeout=timeout)
        return dial.deferred
