# -*- test-case-name: tests.test_host_sockets_real -*-
"""
Host datagram sockets for the UDP NAT, the ICMP echo proxy and upstream
DNS: the real L{IHostDatagramSockets}.

Every socket is non-blocking, read by the reactor, and (IPv4) has
C{IP_RECVERR} set, so the ICMP errors the host receives for what we sent
(port or host unreachable, fragmentation needed, time exceeded) are
readable from the socket's error queue (C{MSG_ERRQUEUE}), each with the
address of the router or host that sent it.  That is how vpnkit passes
real errors back to guests without a raw socket.

A socket whose only news is an error makes C{epoll} report C{EPOLLERR}
without C{EPOLLIN}, which Twisted's reactors treat as the end of reading;
we provide L{IHalfCloseableDescriptor}, so that arrives as
C{readConnectionLost}, where we drain the error queue and start reading
again.  Reading datagrams looks at the error queue only when there is
news there: an ICMP error also leaves the socket's pending error, which
the next C{recvfrom} reports before any datagram, and a send the host
refused (possibly queueing a local error) raised; otherwise a datagram
costs no more than its C{recvfrom} (and the one that finds the socket
empty).  An error nothing announced this way still wakes the reactor
with C{EPOLLERR} once the datagrams are read.

ICMP sockets are Linux's unprivileged "ping" sockets
(C{socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)}), allowed for the groups in
C{net.ipv4.ping_group_range}: the kernel puts the socket's own identifier
in every echo request and delivers to it only the replies that carry it.
"""

import errno
import socket
import struct
from dataclasses import dataclass

from twisted.internet.interfaces import IHalfCloseableDescriptor, IReadDescriptor
from zope.interface import implementer

from vpnkit.interfaces import IDatagramSocket, IHostDatagramSockets
from vpnkit.log import logger

__all__ = ["HostSocketError", "HostDatagramSockets", "parseExtendedError"]

log = logger("vpnkit.host.sockets")

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_DO = 2
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
READ_BATCH = 64
MAX_DATAGRAM = 65536

_extendedError = struct.Struct("=IBBBBII")

# Errors an earlier ICMP message leaves pending on the socket (with
# IP_RECVERR, sk_err is set for unconnected sockets too): the next recv or
# send reports it instead of doing its work.  The details are in the error
# queue, so such a report is consumed and a send retried once.  (Not
# EMSGSIZE: a send refused for its size would only be refused, and queue
# its error, again.)
_ASYNC_ERRORS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EPROTO,
        errno.ETIMEDOUT,
    }
)
_PENDING_READ_ERRORS = _ASYNC_ERRORS | {errno.EMSGSIZE, errno.ENETDOWN}


@dataclass(frozen=True)
class HostSocketError:
    """
    An error the host reported for a datagram we sent.

    @ivar origin: C{"icmp"} (an ICMP message came back) or C{"local"} (the
        host itself refused, e.g. C{EMSGSIZE} with DF set).
    @ivar errno: the errno the kernel derived from it.
    @ivar icmpType: the ICMP type (for C{"icmp"}).
    @ivar icmpCode: the ICMP code (for C{"icmp"}).
    @ivar info: the next-hop MTU for "fragmentation needed" and local
        C{EMSGSIZE}, else 0.
    @ivar offender: dotted-quad address of the host that sent the ICMP
        message, or C{None}.
    @ivar host: the destination of the datagram that failed.
    @ivar port: its destination port (0 for ICMP sockets).
    @ivar payload: as much of the failed datagram's payload as came back
        (for ICMP sockets: its ICMP header and data).
    """

    origin: str
    errno: int
    icmpType: int
    icmpCode: int
    info: int
    offender: str | None
    host: str
    port: int
    payload: bytes


def parseExtendedError(cmsgData):
    """
    Decode a C{struct sock_extended_err} (and the offender address after
    it) from an C{IP_RECVERR} control message.

    @return: C{(origin, errno, type, code, info, offender)}, origin one of
        C{"icmp"}, C{"local"}, C{"other"}.
    @raise ValueError: too short.
    """
    if len(cmsgData) < _extendedError.size:
        raise ValueError("short sock_extended_err")
    eeErrno, origin, type_, code, _, info, _ = _extendedError.unpack_from(cmsgData)
    offender = None
    rest = cmsgData[_extendedError.size :]
    if len(rest) >= 8 and int.from_bytes(rest[:2], "little") == socket.AF_INET:
        offender = socket.inet_ntoa(rest[4:8])
    kind = {SO_EE_ORIGIN_ICMP: "icmp", SO_EE_ORIGIN_LOCAL: "local"}.get(origin, "other")
    return kind, eeErrno, type_, code, info, offender


@implementer(IDatagramSocket, IReadDescriptor, IHalfCloseableDescriptor)
class _DatagramSocket:
    """
    One host datagram socket, read by the reactor.
    """

    def __init__(self, sock, receiver, reactor, description):
        self._sock = sock
        self._receiver = receiver
        self._reactor = reactor
        self._description = description
        self._ttl = None
        self._df = None
        self._recverr = sock.family == socket.AF_INET
        # Whether the error queue may hold something (see the module's
        # docstring).
        self._errorsQueued = False
        self.port = sock.getsockname()[1]
        self.closed = False
        reactor.addReader(self)

    # -- IDatagramSocket -------------------------------------------------------

    def sendTo(self, data, host, port, ttl=None, dontFragment=False):
        sock = self._sock
        if self._recverr:
            if ttl is not None and ttl != self._ttl:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                self._ttl = ttl
            if dontFragment != self._df:
                mode = IP_PMTUDISC_DO if dontFragment else IP_PMTUDISC_DONT
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, mode)
                self._df = dontFragment
        try:
            sock.sendto(data, (host, port))
        except OSError as e:
            # A refusal may have queued a local error; an earlier ICMP
            # error reported late has its details in the queue.
            self._errorsQueued = self._recverr
            if e.errno not in _ASYNC_ERRORS or not self._recverr:
                raise
            # Most likely an earlier ICMP error reported late; once
            # consumed, the send can go.
            sock.sendto(data, (host, port))

    def close(self):
        if self.closed:
            return
        self.closed = True
        self._reactor.removeReader(self)
        self._sock.close()

    # -- IReadDescriptor --------------------------------------------------------

    def fileno(self):
        return -1 if self.closed else self._sock.fileno()

    def logPrefix(self):
        return self._description

    def doRead(self):
        sock = self._sock
        receiver = self._receiver
        for _ in range(READ_BATCH):
            if self.closed:
                return None
            try:
                data, address = sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in _PENDING_READ_ERRORS:
                    # The pending error; its details are in the queue.
                    self._errorsQueued = self._recverr
                    continue
                log.debug("{socket}: {error}", socket=self._description, error=e)
                break
            receiver.datagramReceived(data, address[0], address[1])
        if self._errorsQueued:
            self._readErrors()
        return None

    def _readErrors(self):
        self._errorsQueued = False
        if not self._recverr:
            return
        sock = self._sock
        for _ in range(READ_BATCH):
            if self.closed:
                return
            try:
                data, ancillary, _, address = sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(512), MSG_ERRQUEUE
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            for level, kind, cmsg in ancillary:
                if level != socket.IPPROTO_IP or kind != IP_RECVERR:
                    continue
                try:
                    origin, eeErrno, type_, code, info, offender = parseExtendedError(cmsg)
                except ValueError:
                    continue
                host, port = (address[0], address[1]) if address else ("0.0.0.0", 0)
                self._receiver.errorReceived(
                    HostSocketError(origin, eeErrno, type_, code, info, offender, host, port, data)
                )
        if not self.closed:
            # Clear any error left pending, so the descriptor stops polling
            # as failed.
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    # -- IHalfCloseableDescriptor ---------------------------------------------

    def readConnectionLost(self, reason):
        """
        The reactor saw only an error condition (C{EPOLLERR}) and stopped
        reading: take the errors and read on.
        """
        if self.closed:
            return
        self._readErrors()
        if not self.closed:
            self._reactor.addReader(self)

    def writeConnectionLost(self, reason):
        pass

    def connectionLost(self, reason):
        if not self.closed:
            log.warn(
                "{socket} failed: {reason}",
                socket=self._description,
                reason=reason.getErrorMessage(),
            )
            self.closed = True
            self._sock.close()


@implementer(IHostDatagramSockets)
class HostDatagramSockets:
    """
    The real operating system's datagram sockets.
    """

    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor

    def _open(self, family, proto, receiver, description):
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, proto)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
                sock.bind(("0.0.0.0", 0))
            else:
                sock.bind(("::", 0))
        except BaseException:
            sock.close()
            raise
        return _DatagramSocket(sock, receiver, self._reactor, description)

    def openUDP(self, receiver, family=socket.AF_INET):
        return self._open(family, 0, receiver, "host UDP socket")

    def openICMP(self, receiver):
        return self._open(socket.AF_INET, socket.IPPROTO_ICMP, receiver, "host ICMP socket")
