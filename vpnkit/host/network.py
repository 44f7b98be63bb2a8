# -*- test-case-name: tests.test_host_network_real -*-
"""
L{HostNetwork}: the real L{IHostNetwork}, host TCP connections on the
reactor.

Each connection is a L{HostConnection}, Twisted's TCP client transport
with two differences that matter when a guest exchanges small messages
(every frame of the guest's becomes a write here, often of a few bytes):

 - it dials at once, in the call that asks for it: the address is always
   a literal, so there is nothing to resolve (Twisted's C{connectTCP}
   waits a reactor turn and runs a L{Deferred} chain to find that out),
   and a dial to the host's own addresses, complete when C{connect()}
   returns, is connected in that same call, without waiting a reactor turn
   for the socket to become writable;
 - it writes through: a write that finds nothing waiting in the transport's
   buffer goes to the socket at once, in the same reactor turn, and only
   what the kernel does not take is buffered (C{startWriting}, a turn
   later, as Twisted does for every write).  A small write to a host
   socket with room in its kernel buffer thus costs one C{send}, instead
   of registering for writability, waiting for the next turn, sending and
   unregistering again.  A half-close with nothing waiting is likewise a
   C{shutdown} at once.

A dial to a port nothing listens on can connect to itself: when the
kernel picks an ephemeral local port equal to the destination port on the
same address (only possible on the host's own addresses, the host
aliases' 127.0.0.1 and ::1 first of all), the SYN meets itself and TCP's
simultaneous open completes.  The guest would then see a closed port as open (nmap does).
Every connection is checked before its protocol is connected: one whose
local address is its peer address is aborted and the dial fails with
L{SelfConnectError}, a C{ConnectionRefusedError}, exactly as if the port
had refused.

Host connections also read more per C{recv} than Twisted's transports do
(L{READ_SIZE}).

Addresses are IPv4 or IPv6 literals (C{"::1"}, C{"2001:db8::1"}; no scope
identifiers): Twisted's client makes an C{AF_INET6} socket for the latter,
and the self-connect check compares IPv6 addresses as it does IPv4 ones.
A dial the host has no route for fails at once, in the call, as it does for
IPv4: C{ENETUNREACH} as C{NoRouteError}, C{EHOSTUNREACH} as a
C{ConnectError} whose C{osError} says so (what
L{vpnkit.protocols.tcp.layer.TCPLayer} turns into an unreachable error for
the guest); refusals are C{ConnectionRefusedError} for both families.
"""

from socket import AF_INET, AF_INET6, inet_pton

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

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


def isLiteral(host):
    """
    Whether C{host} is an IPv4 or IPv6 address literal (text, without an
    IPv6 scope identifier).
    """
    for family in (AF_INET, AF_INET6):
        try:
            inet_pton(family, host)
        except (OSError, TypeError, ValueError):
            continue
        return True
    return False


def connectedToItself(transport):
    """
    Whether C{transport}'s local address is its peer address.
    """
    host, peer = transport.getHost(), transport.getPeer()
    return (host.host, host.port) == (peer.host, peer.port)


class _Dialled(Protocol):
    """
    Stands between a new host connection and the protocol it is for until
    the connection is known not to be connected to itself, then hands the
    transport over to that protocol and steps aside.
    """

    def __init__(self, dial, protocol):
        self._dial = dial
        self._protocol = protocol

    def connectionMade(self):
        transport = self.transport
        if connectedToItself(transport):
            address = transport.getPeer()
            transport.abortConnection()
            self._dial.failed(Failure(SelfConnectError(address.host, address.port)))
            return
        # Read up to READ_SIZE at a time (see its comment).
        transport.bufferSize = READ_SIZE
        protocol = self._protocol
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self._dial.connected(protocol)


class _Dial:
    """
    One connect, and the connector of its L{HostConnection}: a
    L{Deferred} that fires with the protocol once it is connected, or fails
    (refused, timed out, cancelled, connected to itself).
    """

    def __init__(self, protocol, host, port, reactor):
        self._protocol = protocol
        self._destination = (host, port)
        self._reactor = reactor
        self._timeout = None
        self.transport = None
        self.deferred = Deferred(self._cancel)

    def start(self, host, port, timeout, bindAddress):
        # Imported here: it is a twisted.internet.tcp transport, and that
        # module imports pyOpenSSL when imported before the reactor is
        # installed (vpnkit installs it without, see vpnkit.tap).
        from vpnkit.host.hostconnection import HostConnection

        self.transport = HostConnection(host, port, bindAddress, self, self._reactor)
        if not self.deferred.called:
            self._timeout = self._reactor.callLater(timeout, self._timedOut)

    def _stopTimeout(self):
        if self._timeout is not None:
            if self._timeout.active():
                self._timeout.cancel()
            self._timeout = None

    def _timedOut(self):
        self._timeout = None
        self.transport.failIfNotConnected(error.TimeoutError())

    def _cancel(self, deferred):
        self._stopTimeout()
        host, port = self._destination
        address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
        deferred.errback(error.ConnectingCancelledError(address))
        self.transport.stopConnecting()

    # -- what the transport asks of its connector ----------------------------------

    def buildProtocol(self, addr):
        self._stopTimeout()
        return _Dialled(self, self._protocol)

    def connectionFailed(self, reason):
        self.failed(reason)

    def connectionLost(self, reason):
        pass

    # -- outcome ---------------------------------------------------------------------

    def connected(self, protocol):
        if not self.deferred.called:
            self.deferred.callback(protocol)

    def failed(self, failure):
        self._stopTimeout()
        if not self.deferred.called:
            self.deferred.errback(failure)


@implementer(IHostNetwork)
class HostNetwork:
    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor

    def connectTCP(self, host, port, protocol, timeout):
        if not isLiteral(host):
            return fail(error.ConnectError(string=f"not an IPv4 or IPv6 address: {host!r}"))
        dial = _Dial(protocol, host, port, self._reactor)
        dial.start(host, port, timeout, self.localAddress(host, port))
        return dial.deferred

    def localAddress(self, host, port):
        """
        The C{(host, port)} a new connection to C{host}:C{port} binds to
        before it dials, or C{None}: the kernel picks (always; a hook for
        tests).
        """
        return None
