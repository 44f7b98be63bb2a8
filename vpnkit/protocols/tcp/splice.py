# -*- test-case-name: tests.test_host_proxy -*-
"""
L{GuestSide}: the protocol on a guest's TCP connection that splices it to
another protocol's transport (a host socket, a port forward's client, a
service vpnkit runs itself), Twisted's C{portforward} model made
half-close aware.

It lives below the host layer so that everything that hands a guest
connection somewhere (L{vpnkit.protocols.tcp.routing} routes, port
forwards) shares it without an import from C{protocols} up to C{host}.
"""

from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from zope.interface import implementer

__all__ = ["GuestSide"]


@implementer(IHalfCloseableProtocol)
class GuestSide(Protocol):
    """
    The protocol on a guest connection that hands its bytes to C{host}'s
    transport: each side is registered as the other's producer, so nothing
    buffers without bound.

    @ivar host: the protocol on the other end; once the guest connection is
        made, its C{guest} attribute is the guest connection (an
        L{vpnkit.protocols.tcp.connection.TCPConnection}), which it writes
        the other end's bytes to.
    """

    def __init__(self, host):
        self.host = host
        self._producing = False

    def connectionMade(self):
        self.host.guest = self.transport
        hostTransport = self.host.transport
        # Each side throttles the other: nothing buffers without bound.
        hostTransport.registerProducer(self.transport, True)
        self._producing = True
        self.transport.registerProducer(hostTransport, True)

    def _stopProducing(self, transport):
        """
        The guest will send nothing more: stop being the host transport's
        producer.  Twisted half-closes (or closes) a transport only once no
        paused producer is registered: with one, FileDescriptor.doWrite
        resumes it instead, and the FIN never reaches the host.
        """
        if self._producing:
            self._producing = False
            transport.unregisterProducer()

    def dataReceived(self, data):
        self.host.transport.write(data)

    def readConnectionLost(self):
        transport = self.host.transport
        self._stopProducing(transport)
        if hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        """
        The guest connection is gone (or, when it was never made, vpnkit
        gave up on it: the guest reset while the other end was dialled):
        close the other end the same way.
        """
        transport = self.host.transport
        if transport is None:
            return
        self._stopProducing(transport)
        if reason.check(error.ConnectionDone):
            transport.loseConnection()
        else:
            transport.abortConnection()
