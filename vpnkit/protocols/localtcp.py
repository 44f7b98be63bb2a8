# -*- test-case-name: tests.test_localtcp -*-
"""
TCP services vpnkit serves itself on the gateway (DNS on port 53): the
route that takes guest connections to them.

L{LocalServiceRoute} splices a guest connection to the gateway's own port
with L{GuestSide}, exactly as the host route splices one to a real host
socket, but to a L{LocalConnection}: an in-memory stand-in for a host
socket whose far end is an ordinary Twisted protocol built by the
service's factory (for DNS, C{twisted.names}' C{DNSProtocol}, unmodified).
Bytes from the guest go straight to that protocol's C{dataReceived}; what
it writes goes to the guest connection, which provides C{ITCPTransport}.

A local connection idle for C{idleTimeout} seconds is closed (RFC 7766
asks DNS servers to close idle connections); after the guest's FIN a
protocol that cannot half-close keeps its write side for C{eofLinger}
seconds of quiet, so answers still in flight reach the guest.
"""

from twisted.internet import defer, error
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer, ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.interfaces import ITCPRoute
from vpnkit.protocols.ip import twistedAddress
from vpnkit.protocols.tcp.splice import GuestSide

__all__ = ["LocalServiceRoute", "LocalConnection"]


@implementer(ITransport)
class _ToGuest:
    """
    The local protocol's transport: writes go to the guest connection.
    """

    def __init__(self, connection):
        self._connection = connection

    def write(self, data):
        self._connection.touch()
        guest = self._connection.guest
        if guest is not None:
            guest.write(data)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        guest = self._connection.guest
        if guest is not None:
            guest.loseConnection()

    def abortConnection(self):
        guest = self._connection.guest
        if guest is not None:
            guest.abortConnection()

    def getPeer(self):
        return self._connection.guest.getPeer()

    def getHost(self):
        return self._connection.guest.getHost()

    def registerProducer(self, producer, streaming):
        self._connection.guest.registerProducer(producer, streaming)

    def unregisterProducer(self):
        guest = self._connection.guest
        if guest is not None:
            guest.unregisterProducer()


@implementer(IPushProducer)
class _ToService:
    """
    What the guest side sees as the host socket's transport: writes are the
    guest's bytes for the local protocol.
    """

    def __init__(self, connection):
        self._connection = connection

    def write(self, data):
        self._connection.dataFromGuest(data)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseWriteConnection(self):
        self._connection.eofFromGuest()

    def loseConnection(self):
        self._connection.closed(Failure(error.ConnectionDone()))

    def abortConnection(self):
        self._connection.closed(Failure(error.ConnectionLost("the guest reset the connection")))

    def registerProducer(self, producer, streaming):
        # The local protocol consumes at once; it never needs to pause the
        # guest.
        pass

    def unregisterProducer(self):
        pass

    # The guest pauses us when its send buffer is full; local services
    # only write in answer to requests, so there is nothing to pause.
    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        self.loseConnection()


class LocalConnection:
    """
    The host-side end of a guest connection to a local service.

    @ivar protocol: the service's protocol.
    @ivar guest: the guest's L{vpnkit.protocols.tcp.connection.TCPConnection},
        set by the TCP layer once it accepted the connection; setting it
        connects the protocol.
    """

    def __init__(self, protocol, clock, idleTimeout=30.0, eofLinger=2.0):
        self.protocol = protocol
        self.transport = _ToService(self)
        self._clock = clock
        self._idleTimeout = idleTimeout
        self._eofLinger = eofLinger
        self._guest = None
        self._timer = None
        self._eof = False
        self._done = False

    @property
    def guest(self):
        return self._guest

    @guest.setter
    def guest(self, connection):
        self._guest = connection
        self.protocol.makeConnection(_ToGuest(self))
        self.touch()

    def touch(self):
        """
        Traffic: restart the idle timer.
        """
        if self._done:
            return
        delay = self._eofLinger if self._eof else self._idleTimeout
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self._clock.callLater(delay, self._idle)

    def _idle(self):
        self._timer = None
        guest = self._guest
        if guest is not None:
            guest.loseConnection()

    def dataFromGuest(self, data):
        if self._done:
            return
        self.touch()
        self.protocol.dataReceived(data)

    def eofFromGuest(self):
        if self._done:
            return
        half = IHalfCloseableProtocol(self.protocol, None)
        if half is not None:
            half.readConnectionLost()
            return
        self._eof = True
        self.touch()

    def closed(self, reason):
        if self._done:
            return
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._guest is not None:
            self.protocol.connectionLost(reason)


@implementer(ITCPRoute)
class LocalServiceRoute:
    """
    Serve the gateway's own TCP ports locally.

    @param services: C{{port: IProtocolFactory}}.
    @param clock: the L{IReactorTime} for idle timeouts.
    """

    def __init__(self, config, services, clock):
        # The gateway's addresses: IPv4, and IPv6 when it is on.
        self._gateways = {config.gatewayPacked}
        if config.ipv6 is not None:
            self._gateways.add(config.ipv6.gatewayPacked)
        self._services = dict(services)
        self._clock = clock

    def serve(self, port, factory):
        """
        Serve C{factory}'s protocol on the gateway's TCP C{port}.
        """
        self._services[port] = factory

    def route(self, flow):
        if flow.localIP not in self._gateways:
            return None
        factory = self._services.get(flow.localPort)
        if factory is None:
            return None
        protocol = factory.buildProtocol(twistedAddress("TCP", flow.guestIP, flow.guestPort))
        if protocol is None:
            return defer.fail(error.ConnectionRefusedError("the service refused"))
        return defer.succeed(GuestSide(LocalConnection(protocol, self._clock)))
