# -*- test-case-name: tests.test_host_sockets_real -*-
"""
Host datagram sockets for the UDP NAT, the ICMP echo proxy and upstream
DNS: the real L{IHostDatagramSockets}.

Every socket is non-blocking, read by the reactor, and has C{IP_RECVERR}
(IPv4) or C{IPV6_RECVERR} (IPv6) set, so the ICMP and ICMPv6 errors the
host receives for what we sent (port or host unreachable, fragmentation
needed or packet too big, time exceeded) are readable from the socket's
error queue (C{MSG_ERRQUEUE}), each with the address of the router or host
that sent it.  That is how vpnkit passes real errors back to guests
without a raw socket.  Sockets are bound to the wildcard address of their
family and a port the kernel picks; an IPv6 UDP socket is IPv6 only
(C{IPV6_V6ONLY}), so it never carries IPv4 through a mapped address.

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
(C{socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)}, and for IPv6
C{socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6)}), allowed for the groups in
C{net.ipv4.ping_group_range} (both families): the kernel puts the socket's
own identifier in every echo request and delivers to it only the replies
that carry it, from their ICMP (ICMPv6) header on.

The hop limit (C{ttl}) and "don't fragment" of a send are the socket's
C{IP_TTL} and C{IP_MTU_DISCOVER} for IPv4, C{IPV6_UNICAST_HOPS} and
C{IPV6_MTU_DISCOVER} for IPv6; with "don't fragment", a datagram larger
than the path MTU is refused with C{EMSGSIZE} and a local error carrying
that MTU is queued (IPv6 routers never fragment: the host's own
fragmentation is what C{dontFragment=False} allows).
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
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_UNICAST_HOPS = getattr(socket, "IPV6_UNICAST_HOPS", 16)
IPV6_V6ONLY = getattr(socket, "IPV6_V6ONLY", 26)
IPV6_PMTUDISC_DONT = 0
IPV6_PMTUDISC_DO = 2
IPPROTO_ICMPV6 = getattr(socket, "IPPROTO_ICMPV6", 58)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
READ_BATCH = 64
MAX_DATAGRAM = 65536

_extendedError = struct.Struct("=IBBBBII")
_ORIGINS = {SO_EE_ORIGIN_ICMP: "icmp", SO_EE_ORIGIN_ICMP6: "icmp6", SO_EE_ORIGIN_LOCAL: "local"}


@dataclass(frozen=True)
class _FamilyOptions:
    """
    The socket options a family's hop limit, "don't fragment" and error
    queue are set and read with.
    """

    level: int
    hopLimit: int
    mtuDiscover: int
    fragment: int
    dontFragment: int
    recverr: int
    wildcard: str


_OPTIONS = {
    socket.AF_INET: _FamilyOptions(
        socket.IPPROTO_IP,
        socket.IP_TTL,
        IP_MTU_DISCOVER,
        IP_PMTUDISC_DONT,
        IP_PMTUDISC_DO,
        IP_RECVERR,
        "0.0.0.0",
    ),
    socket.AF_INET6: _FamilyOptions(
        socket.IPPROTO_IPV6,
        IPV6_UNICAST_HOPS,
        IPV6_MTU_DISCOVER,
        IPV6_PMTUDISC_DONT,
        IPV6_PMTUDISC_DO,
        IPV6_RECVERR,
        "::",
    ),
}

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

    @ivar origin: C{"icmp"} (an ICMP message came back), C{"icmp6"} (an
        ICMPv6 message came back) or C{"local"} (the host itself refused,
        e.g. C{EMSGSIZE} with "don't fragment").
    @ivar errno: the errno the kernel derived from it.
    @ivar icmpType: the ICMP or ICMPv6 type (for C{"icmp"}, C{"icmp6"}).
    @ivar icmpCode: the ICMP or ICMPv6 code (for C{"icmp"}, C{"icmp6"}).
    @ivar info: the next-hop MTU for "fragmentation needed", the MTU of an
        ICMPv6 Packet Too Big, and the path MTU of a local C{EMSGSIZE};
        else what the kernel put there (0, or an ICMPv6 Parameter
        Problem's pointer).
    @ivar offender: the address (text, IPv4 or IPv6) of the host that sent
        the ICMP message, or C{None} (local errors).
    @ivar host: the destination (text) of the datagram that failed.
    @ivar port: its destination port (0 for ICMP sockets, and for an IPv4
        local error, where the kernel reports none).
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
    it, a C{sockaddr_in} or C{sockaddr_in6}) from an C{IP_RECVERR} or
    C{IPV6_RECVERR} control message.

    @return: C{(origin, errno, type, code, info, offender)}, origin one of
        C{"icmp"}, C{"icmp6"}, C{"local"}, C{"other"}; offender the address
        text, or C{None} when the kernel gave none (C{AF_UNSPEC}).
    @raise ValueError: too short.
    """
    if len(cmsgData) < _extendedError.size:
        raise ValueError("short sock_extended_err")
    eeErrno, origin, type_, code, _, info, _ = _extendedError.unpack_from(cmsgData)
    offender = None
    rest = cmsgData[_extendedError.size :]
    if len(rest) >= 2:
        family = int.from_bytes(rest[:2], "little")
        if family == socket.AF_INET and len(rest) >= 8:
            offender = socket.inet_ntoa(rest[4:8])
        elif family == socket.AF_INET6 and len(rest) >= 24:
            # sockaddr_in6: family, port, flow information, then the address.
            offender = socket.inet_ntop(socket.AF_INET6, rest[8:24])
    return _ORIGINS.get(origin, "other"), eeErrno, type_, code, info, offender


@implementer(IDatagramSocket, IReadDescriptor, IHalfCloseableDescriptor)
class _DatagramSocket:
    """
    One host datagram socket, read by the reactor.

    @ivar family: C{socket.AF_INET} or C{socket.AF_INET6}.
    """

    def __init__(self, sock, receiver, reactor, description):
        self._sock = sock
        self._receiver = receiver
        self._reactor = reactor
        self._description = description
        self._ttl = None
        self._df = None
        self._options = _OPTIONS[sock.family]
        self.family = sock.family
        # Whether the error queue may hold something (see the module's
        # docstring).
        self._errorsQueued = False
        self.port = sock.getsockname()[1]
        self.closed = False
        reactor.addReader(self)

    # -- IDatagramSocket -------------------------------------------------------

    def sendTo(self, data, host, port, ttl=None, dontFragment=False):
        sock = self._sock
        options = self._options
        if ttl is not None and ttl != self._ttl:
            sock.setsockopt(options.level, options.hopLimit, ttl)
            self._ttl = ttl
        if dontFragment != self._df:
            mode = options.dontFragment if dontFragment else options.fragment
            sock.setsockopt(options.level, options.mtuDiscover, mode)
            self._df = dontFragment
        try:
            sock.sendto(data, (host, port))
        except OSError as e:
            # A refusal may have queued a local error; an earlier ICMP
            # error reported late has its details in the queue.
            self._errorsQueued = True
            if e.errno not in _ASYNC_ERRORS:
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
                    self._errorsQueued = True
                    continue
                log.debug("{socket}: {error}", socket=self._description, error=e)
                break
            receiver.datagramReceived(data, address[0], address[1])
        if self._errorsQueued:
            self._readErrors()
        return None

    def _readErrors(self):
        self._errorsQueued = False
        sock = self._sock
        options = self._options
        level, recverr = options.level, options.recverr
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
            for cmsgLevel, kind, cmsg in ancillary:
                if (cmsgLevel, kind) != (level, recverr):
                    continue
                try:
                    origin, eeErrno, type_, code, info, offender = parseExtendedError(cmsg)
                except ValueError:
                    continue
                host, port = (address[0], address[1]) if address else (options.wildcard, 0)
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
        options = _OPTIONS.get(family)
        if options is None:
            raise OSError(errno.EAFNOSUPPORT, f"address family {family!r} not supported")
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(options.level, options.recverr, 1)
            if family == socket.AF_INET6 and proto == 0:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_V6ONLY, 1)
            sock.bind((options.wildcard, 0))
        except BaseException:
            sock.close()
            raise
        return _DatagramSocket(sock, receiver, self._reactor, description)

    def openUDP(self, receiver, family=socket.AF_INET):
        description = "host UDP socket" if family == socket.AF_INET else "host UDPv6 socket"
        return self._open(family, 0, receiver, description)

    def openICMP(self, receiver, family=socket.AF_INET):
        if family == socket.AF_INET6:
            return self._open(family, IPPROTO_ICMPV6, receiver, "host ICMPv6 socket")
        return self._open(family, socket.IPPROTO_ICMP, receiver, "host ICMP socket")
