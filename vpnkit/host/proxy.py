# -*- test-case-name: tests.test_host_proxy -*-
"""
A guest's TCP connection to the host: L{HostRoute} dials it (the last
route of the chain, L{vpnkit.protocols.tcp.routing}) and L{HostSide} is
the protocol on the host socket.  The guest end is a
L{vpnkit.protocols.tcp.splice.GuestSide}.
"""


from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from vpnkit.interfaces import ITCPRoute
from vpnkit.protocols.destinations import forwardable
from vpnkit.protocols.ip import formatAddress
from vpnkit.protocols.tcp.splice import GuestSide

__all__ = ["HostSide", "HostRoute"]

LOCALHOST = "127.0.0.1"
LOCALHOST6 = "::1"


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


@implementer(ITCPRoute)
class HostRoute:
    """
    Dial the host for a guest's connection: the host alias means the host's
    127.0.0.1 (same port), the IPv6 host alias the host's C{::1}, any other
    address the shared rule allows
    (L{vpnkit.protocols.destinations}) is dialled as it is.  The rest
    (loopback, 0/8, group addresses, 240/4, the subnet's addresses) is not
    this route's, and neither are the gateway's ports: the router refuses
    them with a reset when no earlier route took them.

    @param timeout: seconds before a connect that gets no answer fails (the
        guest then sees a reset).
    """

    def __init__(self, config, network, timeout=30.0):
        self._config = config
        self._aliases = {}
        if config.hostIP is not None:
            self._aliases[config.hostPacked] = LOCALHOST
        if config.ipv6 is not None and config.ipv6.hostAlias is not None:
            self._aliases[config.ipv6.hostAliasPacked] = LOCALHOST6
        self._network = network
        self._timeout = timeout

    def target(self, flow):
        """
        The host address and port dialled for C{flow}, or C{None}.
        """
        loopback = self._aliases.get(flow.localIP)
        if loopback is not None:
            return loopback, flow.localPort
        if not forwardable(self._config, flow.localIP):
            return None
        return formatAddress(flow.localIP), flow.localPort

    def route(self, flow):
        target = self.target(flow)
        if target is None:
            return None
        host, port = target
        return self._network.connectTCP(host, port, HostSide(), self._timeout).addCallback(
            GuestSide
        )
