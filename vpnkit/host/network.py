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
same address (only possible on the host's own addresses, the host alias's
127.0.0.1 first of all), the SYN meets itself and TCP's simultaneous open
completes.  The guest would then see a closed port as open (nmap does).
Every connection is checked before its protocol is connected: one whose
local address is its peer address is aborted and the dial fails with
L{SelfConnectError}, a C{ConnectionRefusedError}, exactly as if the port
had refused.
"""

from errno import EAGAIN, EALREADY, EINPROGRESS, EINTR, EISCONN, ENOBUFS, EWOULDBLOCK
from os import strerror
from socket import AF_INET, SHUT_WR, inet_pton

from twisted.internet import error, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.interfaces import IHostNetwork
from vpnkit.protocols.tcp.layer import SelfConnectError

__all__ = ["HostNetwork", "HostConnection", "SelfConnectError"]

# What a send that took nothing reports without anything being wrong (as
# Twisted's own writeSomeData reads them).
_TRY_AGAIN = frozenset({EAGAIN, EWOULDBLOCK, EINTR, ENOBUFS})
# What connect() says of a dial that is under way or done.
_IN_PROGRESS = frozenset({EINPROGRESS, EALREADY, EWOULDBLOCK, EISCONN})


def connectedToItself(transport):
    """
    Whether C{transport}'s local address is its peer address.
    """
    host, peer = transport.getHost(), transport.getPeer()
    return (host.host, host.port) == (peer.host, peer.port)


class HostConnection(tcp.Client):
    """
    A host TCP connection that dials at once and writes through (see the
    module's docstring).  Everything else, reading, half-close, producers
    and closing, is Twisted's C{tcp.Client}.

    @param dial: the connector: told C{buildProtocol(address)} once
        connected, C{connectionFailed(reason)} when the dial fails and
        C{connectionLost(reason)} at the end.
    @param bindAddress: C{(host, port)} to bind to before dialling, or
        C{None}.
    """

    def __init__(self, host, port, bindAddress, dial, reactor):
        # Whether a write may go straight to the socket: nothing waits in
        # Twisted's buffer, and nobody asked to close.
        self._direct = True
        self._closing = False
        self._writeShut = False
        self._dialling = False
        super().__init__(host, port, bindAddress, dial, reactor)
        self.resolveAddress()

    def resolveAddress(self):
        """
        Dial now (also called, uselessly, by Twisted a turn later): the
        address is a literal.
        """
        if self._dialling:
            return
        self._dialling = True
        if not hasattr(self, "socket"):
            # The socket could not be made: Twisted fails the dial a turn
            # later.
            return
        self.realAddress = self.addr
        # A dial to the host's own addresses (the host alias's 127.0.0.1)
        # has its handshake done by the time connect() returns: a second
        # look finds it made, and Twisted's doConnect then completes it at
        # once instead of waiting a reactor turn for writability.  (A
        # remote dial is still in progress: doConnect waits for it.)
        try:
            result = self.socket.connect_ex(self.realAddress)
            if result == EINPROGRESS:
                result = self.socket.connect_ex(self.realAddress)
        except OSError as e:
            result = e.errno
        if result and result not in _IN_PROGRESS:
            self.failIfNotConnected(error.getConnectError((result, strerror(result))))
            return
        self.doConnect()

    # -- writing through ------------------------------------------------------

    def write(self, data):
        if self._writeShut:
            # Half-closed (as Twisted drops what is written then).
            return
        if not self._direct or not self.connected or not isinstance(data, bytes) or not data:
            super().write(data)
            return
        try:
            sent = self.socket.send(data)
        except OSError as e:
            if e.errno not in _TRY_AGAIN:
                self._sendFailed(e)
                return
            sent = 0
        if sent == len(data):
            return
        # The kernel's buffer is full: the rest waits in Twisted's, and
        # goes (with whatever follows) once the socket is writable.
        self._direct = False
        super().write(data[sent:])

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def stopWriting(self):
        # Twisted stops watching for writability once its buffer is empty
        # (or the connection is going): writes may go straight out again.
        if not self._closing:
            self._direct = True
        super().stopWriting()

    def _sendFailed(self, reason):
        """
        A send failed for good (the peer reset, ...): lose the connection a
        turn later, as C{FileDescriptor.doWrite} would have had the write
        been buffered; nothing more is read or written meanwhile.
        """
        self._direct = False
        self._closing = True
        self.stopReading()
        self.stopWriting()
        self.reactor.callLater(0, self._lostOnSend, reason)

    def _lostOnSend(self, reason):
        if self.connected:
            self.connectionLost(Failure(error.ConnectionLost(str(reason))))

    def loseWriteConnection(self):
        """
        Half-close: at once when nothing waits to be written and no
        producer is registered (what Twisted does a reactor turn later,
        after a C{send} of nothing), else as Twisted does.
        """
        if self._writeShut:
            return
        direct = self._direct and self.producer is None and self.connected
        self._direct = False
        self._closing = True
        if not direct:
            super().loseWriteConnection()
            return
        self._writeShut = True
        try:
            self.socket.shutdown(SHUT_WR)
        except OSError:
            pass
        protocol = IHalfCloseableProtocol(self.protocol, None)
        if protocol is not None:
            try:
                protocol.writeConnectionLost()
            except BaseException:
                self.connectionLost(Failure())

    def loseConnection(self):
        self._direct = False
        self._closing = True
        if self._writeShut and self.connected and not self.disconnecting:
            # What Twisted's own loseConnection does once the write side
            # is closed.
            self.stopReading()
            self.stopWriting()
            self.connectionLost(Failure(error.ConnectionDone("Connection done")))
            return
        super().loseConnection()

    def abortConnection(self):
        self._direct = False
        self._closing = True
        super().abortConnection()


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
        deferred.errback(error.ConnectingCancelledError(IPv4Address("TCP", *self._destination)))
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
        try:
            inet_pton(AF_INET, host)
        except (OSError, TypeError):
            return fail(error.ConnectError(string=f"not an IPv4 address: {host!r}"))
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
