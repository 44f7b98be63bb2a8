"""
L{FakeDatagramSockets}: an in-memory L{IHostDatagramSockets} for the UDP
NAT, the ICMP echo proxy and upstream DNS.

The test plays the host network: it sees every datagram a socket sends
(C{socket.sent}), and makes datagrams and errors arrive with
L{FakeDatagramSocket.deliver} and L{FakeDatagramSocket.fail}.  Like the
kernel's ping sockets, the fake ICMP socket has its own identifier
(C{port}); what it means for the real one is checked in
C{tests/test_host_sockets_real.py}, which runs the same contract against
both.
"""

import errno
import socket
from dataclasses import dataclass

from zope.interface import implementer

from vpnkit.host.sockets import HostSocketError
from vpnkit.interfaces import IDatagramSocket, IHostDatagramSockets

__all__ = ["FakeDatagramSockets", "FakeDatagramSocket", "Sent", "portUnreachable"]

# ICMPv6 destination unreachable, code 4: port unreachable (RFC 4443 3.1).
_ICMPV6_UNREACHABLE = 1
_ICMPV6_PORT_UNREACHABLE = 4


@dataclass(frozen=True)
class Sent:
    """
    One C{sendTo}.
    """

    data: bytes
    host: str
    port: int
    ttl: int | None
    dontFragment: bool


@implementer(IDatagramSocket)
class FakeDatagramSocket:
    """
    @ivar kind: C{"udp"} or C{"icmp"}.
    @ivar family: C{socket.AF_INET} or C{socket.AF_INET6}, as opened.
    @ivar sent: every L{Sent}, in order.
    @ivar sendError: when set, C{sendTo} raises it.
    """

    def __init__(self, kind, receiver, port, family=socket.AF_INET):
        self.kind = kind
        self.receiver = receiver
        self.port = port
        self.family = family
        self.sent = []
        self.closed = False
        self.sendError = None

    def sendTo(self, data, host, port, ttl=None, dontFragment=False):
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if self.sendError is not None:
            raise self.sendError
        self.sent.append(Sent(bytes(data), host, port, ttl, dontFragment))

    def close(self):
        self.closed = True

    def takeSent(self):
        sent, self.sent = self.sent, []
        return sent

    def deliver(self, data, host, port=0):
        """
        A datagram arrives (as the reactor would report it).
        """
        if not self.closed:
            self.receiver.datagramReceived(data, host, port)

    def fail(self, error):
        """
        The host reports a L{HostSocketError}.
        """
        if not self.closed:
            self.receiver.errorReceived(error)


@implementer(IHostDatagramSockets)
class FakeDatagramSockets:
    """
    @ivar opened: every L{FakeDatagramSocket}, in order.
    @ivar openError: when set, C{openUDP} raises it.
    @ivar icmpError: when set, C{openICMP} raises it.
    """

    def __init__(self, firstPort=40000):
        self.opened = []
        self.openError = None
        self.icmpError = None
        self._nextPort = firstPort

    def _open(self, kind, receiver, family):
        socket_ = FakeDatagramSocket(kind, receiver, self._nextPort, family)
        self._nextPort += 1
        self.opened.append(socket_)
        return socket_

    def openUDP(self, receiver, family=socket.AF_INET):
        if self.openError is not None:
            raise self.openError
        return self._open("udp", receiver, family)

    def openICMP(self, receiver, family=socket.AF_INET):
        if self.icmpError is not None:
            raise self.icmpError
        return self._open("icmp", receiver, family)

    def live(self, kind=None):
        """
        The sockets not closed (of C{kind}, when given).
        """
        return [s for s in self.opened if not s.closed and (kind is None or s.kind == kind)]


def portUnreachable(host, port, payload=b"", offender=None):
    """
    The error the kernel reports when C{host}:C{port} answers ICMP port
    unreachable (ICMPv6 port unreachable when C{host} is an IPv6 address).
    """
    if ":" in host:
        return HostSocketError(
            "icmp6",
            errno.ECONNREFUSED,
            _ICMPV6_UNREACHABLE,
            _ICMPV6_PORT_UNREACHABLE,
            0,
            offender or host,
            host,
            port,
            payload,
        )
    return HostSocketError(
        "icmp", errno.ECONNREFUSED, 3, 3, 0, offender or host, host, port, payload
    )
