# -*- test-case-name: tests.test_host_proxy -*-
"""
The two ends of a proxied TCP connection: where a guest's connection goes
(L{HostTCPForwarder}), the protocol on the host socket (L{HostSide}) and
the protocol on the guest connection (L{GuestSide}).
"""

from twisted.internet import error
from twisted.internet.defer import fail
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from vpnkit.interfaces import ITCPForwarder

__all__ = ["HostSide", "GuestSide", "HostTCPForwarder"]

LOCALHOST = "127.0.0.1"


@implementer(IHalfCloseableProtocol)
class HostSide(Protocol):
    """
    The protocol on a host socket, passing bytes to and from the guest's
    L{vpnkit.protocols.tcp.connection.TCPConnection} (C{guest}), half-close
    aware: the host's EOF becomes a FIN to the guest.
    """

    guest = None

    def dataReceived(self, data):
        self.guest.write(data)

    def readConnectionLost(self):
        if self.guest is not None:
            self.guest.loseWriteConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        guest, self.guest = self.guest, None
        if guest is None:
            return
        guest.unregisterProducer()
        if reason.check(error.ConnectionDone):
            guest.loseConnection()
        else:
            guest.abortConnection()


@implementer(IHalfCloseableProtocol)
class GuestSide(Protocol):
    """
    The protocol on a guest connection that hands its bytes to a host-side
    protocol's transport (Twisted's portforward model, half-close aware):
    each side is registered as the other's producer, so nothing buffers
    without bound.  Used for guest connections to the host (the host side
    is a L{HostSide} on a real socket) and for port forwards (a host client
    on a forward's listener).
    """

    def __init__(self, host):
        self.host = host
        self._producing = False

    def connectionMade(self):
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
        transport = self.host.transport
        if transport is None:
            return
        self._stopProducing(transport)
        if reason.check(error.ConnectionDone):
            transport.loseConnection()
        else:
            transport.abortConnection()


@implementer(ITCPForwarder)
class HostTCPForwarder:
    """
    Dial the host for a guest's connection: the host alias means the host's
    127.0.0.1 (same port), any other address is dialled as it is.  The
    gateway's own ports are not forwarded here (C{ConnectionRefusedError}).

    @param timeout: seconds before a connect that gets no answer fails (the
        guest then sees a reset).
    """

    def __init__(self, config, network, timeout=30.0):
        self._gateway = config.gatewayPacked
        self._hostAlias = config.hostPacked
        self._network = network
        self._timeout = timeout

    def target(self, flow):
        """
        The host address and port dialled for C{flow}, or C{None}.
        """
        if flow.localIP == self._gateway:
            return None
        if flow.localIP == self._hostAlias:
            return LOCALHOST, flow.localPort
        return ".".join(str(b) for b in flow.localIP), flow.localPort

    def connectionRequested(self, flow):
        target = self.target(flow)
        if target is None:
            return fail(error.ConnectionRefusedError("no service on the gateway"))
        host, port = target
        return self._network.connectTCP(host, port, HostSide(), self._timeout)
