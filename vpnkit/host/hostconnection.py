# -*- test-case-name: tests.test_host_network_real -*-
"""
L{HostConnection}: the transport of a host TCP connection (see
L{vpnkit.host.network}, which imports this module only once the reactor
is installed).

IPv6 literals need nothing of their own here: Twisted's C{tcp.Client}
makes an C{AF_INET6} socket for them, keeps the address as the
C{(host, port, flow, scope)} its numeric C{getaddrinfo} gives, and reports
L{IPv6Address}es; the dial below uses that address as it is.
"""

from errno import EAGAIN, EALREADY, EINPROGRESS, EINTR, EISCONN, ENOBUFS, EWOULDBLOCK
from os import strerror
from socket import SHUT_WR

from twisted.internet import error, tcp
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python.failure import Failure

__all__ = ["HostConnection"]

# What a send that took nothing reports without anything being wrong (as
# Twisted's own writeSomeData reads them).
_TRY_AGAIN = frozenset({EAGAIN, EWOULDBLOCK, EINTR, ENOBUFS})
# What connect() says of a dial that is under way or done.
_IN_PROGRESS = frozenset({EINPROGRESS, EALREADY, EWOULDBLOCK, EISCONN})


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
        # A dial to the host's own addresses (the host aliases' 127.0.0.1
        # and ::1) has its handshake done by the time connect() returns: a
        # second look finds it made, and Twisted's doConnect then completes
        # it at once instead of waiting a reactor turn for writability.  (A
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
