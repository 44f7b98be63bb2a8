# -*- test-case-name: tests.test_tap -*-
"""
The listeners vpnkit opens: L{listenService} builds one for an address a
flag gave (a Unix path, whose stale socket file is removed first; an
inherited descriptor; a loopback TCP port).  A listener that cannot be
bound raises at once with one line naming the flag and the address; link
listeners close their links when stopped; every listener can be probed
before twistd forks and abandoned when start-up fails.
L{UnixDatagramLinkService} serves the datagram links (C{--qemu-dgram},
C{--vfkit}).

The endpoints are the reactor's own calls (L{ReactorEndpoint},
L{AdoptedEndpoint}) rather than C{twisted.internet.endpoints}, which
imports pyOpenSSL and Twisted's plugin system for TLS and string
endpoints that vpnkit never uses (docs/performance.md, "Start-up and
footprint").
"""

import os
import socket
import stat

from twisted.application.service import Service
from twisted.internet import fdesc
from twisted.internet.defer import DeferredList, execute, fail, maybeDeferred, succeed
from twisted.internet.error import AlreadyListened, CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.config import ConfigError
from vpnkit.log import logger
from vpnkit.protocols.dgramlinks import SOCKET_BUFFER, sizeBuffers

__all__ = [
    "ReactorEndpoint",
    "AdoptedEndpoint",
    "ListenService",
    "LinkListenService",
    "UnixListenService",
    "UnixLinkListenService",
    "listenService",
    "UnixDatagramLinkService",
    "clearStaleSocket",
]

log = logger("vpnkit.tap")


def _reason(error):
    """
    Why a listener could not be bound, as plain words (no reprs).
    """
    error = getattr(error, "socketError", None) or error
    return getattr(error, "strerror", None) or str(error)


@implementer(IStreamServerEndpoint)
class ReactorEndpoint:
    """
    Listen with one call to the reactor, as Twisted's UNIX and TCP server
    endpoints do.

    @param listen: C{listen(factory)} returns the listening port
        (C{lambda f: reactor.listenUNIX(path, f)}).
    """

    def __init__(self, listen):
        self._listen = listen

    def listen(self, factory):
        return execute(self._listen, factory)


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """
    Listen on an inherited listening socket C{fd} of C{family} (as
    Twisted's C{AdoptedStreamServerEndpoint}): the reactor adopts a copy
    and C{fd} itself is closed.  Once only.
    """

    def __init__(self, reactor, fd, family):
        self._reactor = reactor
        self._fd = fd
        self._family = family
        self._used = False

    def listen(self, factory):
        if self._used:
            return fail(AlreadyListened())
        self._used = True
        try:
            fdesc.setNonBlocking(self._fd)
            port = self._reactor.adoptStreamPort(self._fd, self._family, factory)
            os.close(self._fd)
        except BaseException:
            return fail()
        return succeed(port)


class ListenService(Service):
    """
    Listen on C{endpoint} with C{factory} while running.

    Unlike Twisted's C{StreamServerEndpointService}, a listener that
    cannot be bound raises from C{startService} at once (the reactor's
    listeners bind synchronously), so start-up stops with one line naming
    the flag and the address.

    @param where: the flag and address, for errors (C{"--api /run/x.sock"}).
    """

    def __init__(self, endpoint, factory, where="listener", address=None):
        self.endpoint = endpoint
        self.factory = factory
        self.where = where
        self.address = address
        self.port = None

    def _listen(self):
        if self.port is not None:
            return
        outcome = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"{self.where} did not listen at once")
        if isinstance(outcome[0], Failure):
            raise ConfigError(f"{self.where}: cannot listen: {_reason(outcome[0].value)}")
        self.port = outcome[0]

    def privilegedStartService(self):
        # Bind before twistd drops privileges, as Twisted's services do.
        super().privilegedStartService()
        self._listen()

    def startService(self):
        super().startService()
        self._listen()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else succeed(None)

    def abandon(self):
        """
        Start-up failed elsewhere: stop listening at once.
        """
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()

    def probe(self):
        """
        Check, before twistd forks into the background, that the listener
        can be bound: bind a plain socket to its address and let it go, so
        a daemon that could not start says why in the foreground.  A
        listener on an inherited descriptor has nothing to check.

        @raise ConfigError: naming the flag and the address.
        """
        if self.address is None or self.address[0] != "tcp":
            return
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((self.address[1], self.address[2]))
        except OSError as e:
            raise ConfigError(f"{self.where}: cannot listen: {_reason(e)}") from None
        finally:
            probe.close()


class LinkListenService(ListenService):
    """
    A listener for guest links: stopping it also closes every link its
    factory (a L{vpnkit.protocols.links} factory) made, so their guests
    leave the switch and their addresses return to the pool.
    """

    def stopService(self):
        stopped = super().stopService()
        self.factory.closeLinks("vpnkit is stopping")
        return DeferredList([stopped, self.factory.whenClosed()])


def clearStaleSocket(path, socketType=socket.SOCK_STREAM, where=None):
    """
    Remove the socket file at C{path} if nobody serves it any more (a
    C{connect} of a C{socketType} socket is refused).

    @param where: the flag and path for errors (C{path} by default).
    @raise ConfigError: C{path} is not a socket, or another process serves
        it.
    """
    where = where or path
    if not os.path.lexists(path):
        return
    # connect() to a regular file also fails with ECONNREFUSED: only ever
    # remove a socket.
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise ConfigError(f"{where}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socketType)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    else:
        raise ConfigError(f"{where}: in use by another process")
    finally:
        probe.close()


def probeUnixPath(path, socketType, where):
    """
    Check a Unix socket path can be bound (a stale socket file is removed
    first): bind a plain socket of C{socketType} there and let it go.

    @raise ConfigError: naming C{where}.
    """
    clearStaleSocket(path, socketType, where)
    probe = socket.socket(socket.AF_UNIX, socketType)
    try:
        probe.bind(path)
    except OSError as e:
        raise ConfigError(f"{where}: cannot listen: {_reason(e)}") from None
    finally:
        probe.close()
    os.unlink(path)


class UnixListenService(ListenService):
    """
    Listen on a Unix socket path, first removing a stale socket file left by
    a process that is gone (the reference always unlinks it).

    @param mode: the socket file's mode: 0600 (only vpnkit's user may
        connect) unless told otherwise.
    @param group: a group id to give the socket file once bound (with a
        mode such as 0660, what lets that group's members connect), or
        C{None}.
    """

    def __init__(
        self, path, factory, reactor, mode=0o600, flag="--ethernet", backlog=50, group=None
    ):
        super().__init__(
            ReactorEndpoint(
                lambda factory: reactor.listenUNIX(path, factory, backlog=backlog, mode=mode)
            ),
            factory,
            f"{flag} {path}",
            ("unix", path),
        )
        self._path = path
        self._group = group

    def _listen(self):
        bound = self.port is None
        super()._listen()
        if bound and self._group is not None:
            os.chown(self._path, -1, self._group)

    def probe(self):
        probeUnixPath(self._path, socket.SOCK_STREAM, self.where)

    def privilegedStartService(self):
        clearStaleSocket(self._path, socket.SOCK_STREAM, self.where)
        super().privilegedStartService()

    def abandon(self):
        bound = self.port is not None
        super().abandon()
        # The reactor would remove the file on its next turn, which a
        # process exiting at start-up never reaches.
        if bound and os.path.lexists(self._path):
            os.unlink(self._path)


class UnixLinkListenService(UnixListenService, LinkListenService):
    """
    Guest links on a Unix socket path (vmnet, QEMU stream).
    """


def listenService(
    address, factory, reactor, flag, mode=0o600, links=False, backlog=None, group=None
):
    """
    The listener for an address parsed from a flag: C{("unix", path)}
    (stale socket removed first), C{("fd", n)} (an inherited listening Unix
    socket, already listening with its own backlog) or C{("tcp", host,
    port)}.

    @param links: C{factory} makes guest links; stopping the listener
        closes them.
    @param backlog: C{--listen-backlog} (Twisted's 50 when C{None}).
    @param group: for a Unix path, the group id the socket file is given
        (C{--socket-group}).
    """
    kind = address[0]
    backlog = backlog if backlog is not None else 50
    if kind == "unix":
        cls = UnixLinkListenService if links else UnixListenService
        return cls(
            address[1], factory, reactor, mode=mode, flag=flag, backlog=backlog, group=group
        )
    cls = LinkListenService if links else ListenService
    if kind == "fd":
        endpoint = AdoptedEndpoint(reactor, address[1], socket.AF_UNIX)
        return cls(endpoint, factory, f"{flag} fd:{address[1]}", address)
    host, port = address[1], address[2]
    endpoint = ReactorEndpoint(
        lambda factory: reactor.listenTCP(port, factory, backlog=backlog, interface=host)
    )
    return cls(endpoint, factory, f"{flag} tcp:{host}:{port}", address)


class UnixDatagramLinkService(Service):
    """
    Guests on a Unix datagram socket (C{--qemu-dgram}, C{--vfkit}): bind
    C{path} for C{protocol} (a L{vpnkit.protocols.dgramlinks}
    L{DatagramLinkProtocol}) with buffers sized for bursts.  A stale
    socket file is removed first; a path in use or that cannot be bound
    stops start-up with one line naming C{flag}.  Stopping takes every
    peer's guest off the switch, closes the socket and removes its file.

    @param reactor: an C{IReactorUNIXDatagram}.
    """

    def __init__(
        self, flag, path, protocol, reactor, mode=0o600, bufferSize=SOCKET_BUFFER, group=None
    ):
        self.flag = flag
        self.path = path
        self.where = f"{flag} {path}"
        self.protocol = protocol
        self.port = None
        self._reactor = reactor
        self._mode = mode
        self._group = group
        self._bufferSize = bufferSize

    def _listen(self):
        if self.port is not None:
            return
        clearStaleSocket(self.path, socket.SOCK_DGRAM, self.where)
        try:
            port = self._reactor.listenUNIXDatagram(
                self.path, self.protocol, maxPacketSize=self.protocol.maxDatagram, mode=self._mode
            )
        except CannotListenError as e:
            raise ConfigError(f"{self.where}: cannot listen: {_reason(e)}") from None
        self.port = port
        if self._group is not None:
            os.chown(self.path, -1, self._group)
        receive, send = sizeBuffers(port.getHandle(), self._bufferSize)
        log.info(
            "{flag}: guests on {path} (buffers: {receive} bytes in, {send} out)",
            flag=self.flag,
            path=self.path,
            receive=receive,
            send=send,
        )

    def privilegedStartService(self):
        # Bind before twistd drops privileges, as the stream listeners do.
        super().privilegedStartService()
        self._listen()

    def startService(self):
        super().startService()
        self._listen()

    def probe(self):
        """
        See L{ListenService.probe}.
        """
        probeUnixPath(self.path, socket.SOCK_DGRAM, self.where)

    def abandon(self):
        """
        See L{ListenService.abandon}.
        """
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()
            if os.path.lexists(self.path):
                os.unlink(self.path)

    def stopService(self):
        super().stopService()
        self.protocol.closeLinks("vpnkit is stopping")
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except OSError:
            pass
        return maybeDeferred(port.stopListening)
