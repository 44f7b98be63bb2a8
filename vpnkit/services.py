# -*- test-case-name: tests.test_tap -*-
"""
The services L{vpnkit.tap.makeService} composes: listeners (on Unix
sockets they clear a stale socket file from first; for guest links they
take their guests off the switch when stopped), the Unix datagram socket
of QEMU C{-netdev dgram} and vfkit guests, tap devices in network
namespaces, the port forwarder with its C{--expose} forwards, and
L{VPNKitService}, the parent that turns start-up failures into one line
under twistd and leaves nothing behind when stopped.
"""

import json
import os
import signal
import socket
import stat
import sys
from dataclasses import replace

from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure

from vpnkit import __version__
from vpnkit.config import ConfigError
from vpnkit.forwards import ForwardError, PortForwarder
from vpnkit.host.taplink import TapLink
from vpnkit.host.tundev import LinuxTunSystem
from vpnkit.leases import AllocationError
from vpnkit.log import logger
from vpnkit.protocols.dgramlinks import SOCKET_BUFFER, sizeBuffers
from vpnkit.protocols.dnsupstream import MAX_IN_FLIGHT

__all__ = [
    "ListenService",
    "LinkListenService",
    "UnixListenService",
    "UnixLinkListenService",
    "listenService",
    "UnixDatagramLinkService",
    "clearStaleSocket",
    "NetnsTapService",
    "ExposeService",
    "VPNKitService",
    "raiseFileLimit",
    "softFileLimit",
    "connectionBudget",
    "FILE_RESERVE",
]

log = logger("vpnkit.tap")


def _reason(error):
    """
    Why a listener could not be bound, as plain words (no reprs).
    """
    error = getattr(error, "socketError", None) or error
    return getattr(error, "strerror", None) or str(error)


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
            UNIXServerEndpoint(reactor, path, backlog=backlog, mode=mode),
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
        clearStaleSocket(self._path, socket.SOCK_STREAM, self.where)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.bind(self._path)
        except OSError as e:
            raise ConfigError(f"{self.where}: cannot listen: {_reason(e)}") from None
        finally:
            probe.close()
        os.unlink(self._path)

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
        endpoint = AdoptedStreamServerEndpoint(reactor, address[1], socket.AF_UNIX)
        return cls(endpoint, factory, f"{flag} fd:{address[1]}", address)
    host, port = address[1], address[2]
    endpoint = TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=host)
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
        clearStaleSocket(self.path, socket.SOCK_DGRAM, self.where)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.bind(self.path)
        except OSError as e:
            raise ConfigError(f"{self.where}: cannot listen: {_reason(e)}") from None
        finally:
            probe.close()
        os.unlink(self.path)

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


class NetnsTapService(Service):
    """
    A tap device vpnkit creates in a guest's network namespace: the guest
    only has to run DHCP on it.
    """

    def __init__(self, guests, netns, ifname, system=None, reactor=None):
        self._guests = guests
        self._reactor = reactor
        self._netns = netns
        self._ifname = ifname
        self._system = system if system is not None else LinuxTunSystem()
        self.link = None
        self._description = f"netns:{netns}:{ifname}"

    def startService(self):
        super().startService()
        guests = self._guests
        config = guests.config
        try:
            lease = guests.ephemeralLease()
        except AllocationError as e:
            raise ConfigError(f"--netns {self._netns}: {e}") from None
        try:
            fd = self._system.openTap(self._netns, self._ifname, lease.mac, config.mtu, offload=True)
        except OSError as e:
            guests.release(lease)
            raise ConfigError(f"--netns {self._netns}: cannot create {self._ifname}: {e}") from None
        port = None

        def closed(reason):
            if self.running:
                log.warn(
                    "{link} is gone: {reason}",
                    link=self._description,
                    reason=reason.getErrorMessage(),
                )
            guests.detach(port)

        self.link = TapLink(
            fd,
            self._system,
            None,
            guests.linkCounters,
            config.maxFrameSize,
            self._description,
            reactor=self._reactor,
            onClose=closed,
            offload=True,
        )
        port = guests.attach(self.link, lease, lease.mac)
        self.link.start(port)

    def stopService(self):
        super().stopService()
        if self.link is not None:
            self.link.closeLink("vpnkit is stopping")
            self.link = None


def raiseFileLimit(resource=None):
    """
    Raise the soft limit on open files to the hard limit: every guest
    connection and UDP flow holds a host socket, and the usual soft limit of
    1024 is soon reached (the reference's "too many open files" reports).

    @return: the soft limit now in force.
    """
    if resource is None:
        import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warn("cannot raise the open-file limit from {soft}: {e}", soft=soft, e=e)
    return soft


class StartupError(Exception):
    """
    vpnkit could not start (the message is the one line to show).  Raised
    instead of C{SystemExit} in a twistd daemon, so twistd reports it to
    the parent through its status pipe (and removes its pid file) rather
    than leaving the parent waiting for ever.
    """


def _listeners(service):
    """
    Every L{ListenService} at or below C{service}.
    """
    if isinstance(service, (ListenService, UnixDatagramLinkService)):
        yield service
    if isinstance(service, MultiService):
        for child in service:
            yield from _listeners(child)


# Descriptors kept beyond what the flow tables may hold: listeners, API
# and capture connections, configuration files being re-read, the
# reactor's own, the upstream DNS TCP fallback.
FILE_RESERVE = 256
# What an unlimited open-file limit is taken to be.
_UNLIMITED = 1 << 20


def softFileLimit(resource=None):
    """
    The soft limit on open files now in force (an unlimited one as 2**20).
    """
    if resource is None:
        import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED if soft == resource.RLIM_INFINITY else soft


def connectionBudget(softLimit, stack):
    """
    The default C{--max-connections}: each guest TCP connection holds one
    host socket, so what the open-file limit leaves once everything else
    vpnkit may hold at most is set aside: L{FILE_RESERVE}, one descriptor
    per guest address (its link), the UDP NAT, ICMP echo and gateway UDP
    forward flow tables and the upstream DNS queries in flight.  With a
    small limit (less than twice that reserve) guest TCP gets half of it:
    the other tables then fail (and log) before vpnkit itself runs out.
    """
    config = stack.config
    reserve = (
        FILE_RESERVE
        + (int(config.highestIP) - int(config.lowestIP) + 1)
        + stack.udpNAT.flows.maxFlows
        + stack.icmp.flows.maxFlows
        + stack.udpGatewayForwards.flows.maxFlows
        + MAX_IN_FLIGHT
    )
    return max(softLimit // 2, softLimit - reserve)


class VPNKitService(MultiService):
    """
    vpnkit as one service.

    @ivar stack: the L{Stack}.
    @ivar exitOnError: when started by twistd, a start-up failure is one
        line on standard error and exit status 1, not a traceback.
    @ivar daemon: twistd forks into the background (no C{-n}): a start-up
        failure is raised as L{StartupError} for twistd to report.
    @ivar ready: called once every listener is bound and vpnkit serves
        (C{--ready-fd}, systemd's C{READY=1}).
    """

    def __init__(self, stack, exitOnError=False, daemon=False, ready=None):
        super().__init__()
        self.stack = stack
        self.exitOnError = exitOnError
        self.daemon = daemon
        self.ready = ready

    def probe(self):
        """
        Check every listener can be bound (see L{ListenService.probe}).

        @raise ConfigError: for the first that cannot.
        """
        for listener in _listeners(self):
            listener.probe()

    def _statsSignal(self, signum, frame):
        self.stack.reactor.callFromThread(self.logStats)

    def installStatsSignal(self):
        """
        Make C{kill -USR1} log the statistics (for a process that owns its
        signals: twistd, the C{vpnkit} command; embedders keep theirs).
        """
        signal.signal(signal.SIGUSR1, self._statsSignal)

    def logStats(self):
        """
        Log every counter and the live connections as one JSON event.
        """
        log.info("stats: {stats}", stats=json.dumps(self.stack.stats(), sort_keys=True))

    def _guarded(self, start):
        try:
            start()
        except (ConfigError, OSError, CannotListenError) as e:
            # CannotListenError (a listener's path or port cannot be bound)
            # is not an OSError, but is just as much a start-up error.
            self._undo()
            if not self.exitOnError:
                raise
            line = f"vpnkit: {e}"
            log.error("{line}", line=line)
            if self.daemon:
                raise StartupError(line) from None
            sys.stderr.write(line + "\n")
            raise SystemExit(1)

    def _undo(self):
        """
        Start-up failed: close what was already bound, so no socket file is
        left behind.
        """
        for listener in _listeners(self):
            listener.abandon()

    def privilegedStartService(self):
        if self.exitOnError:
            raiseFileLimit()
        self.applyConnectionBudget(softFileLimit())
        self._guarded(super().privilegedStartService)

    def applyConnectionBudget(self, softLimit):
        """
        Without C{--max-connections}, cap guest TCP connections at
        L{connectionBudget} for this open-file limit, so that a flood of
        connections leaves vpnkit the descriptors its listeners, API and
        configuration files need.
        """
        tcp = self.stack.tcp
        if tcp.limits.maxConnections is not None:
            return
        budget = connectionBudget(softLimit, self.stack)
        tcp.limits = replace(tcp.limits, maxConnections=budget)
        log.info(
            "guest TCP connections: at most {n} (open-file limit {soft}; see --max-connections)",
            n=budget,
            soft=softLimit,
        )

    def stopService(self):
        """
        Stop the listeners, links and forwards, then let go of every host
        socket and timer the stack holds: an embedder that stops vpnkit
        finds nothing of it left in its reactor.
        """
        d = super().stopService()
        d.addCallback(lambda _: self.stack.stop())
        return d

    def startService(self):
        self._guarded(super().startService)
        if self.exitOnError:
            # Run by twistd: `kill -USR1` logs the statistics.  Embedders
            # keep their own signal handlers.
            self.installStatsSignal()
        config = self.stack.config
        log.info(
            "vpnkit {version} ready: gateway {gateway}, host alias {host}, guests "
            "{lowest}..{highest}, MTU {mtu}",
            version=__version__,
            gateway=config.gatewayIP,
            host=config.hostIP or "disabled",
            lowest=config.lowestIP,
            highest=config.highestIP,
            mtu=config.mtu,
        )
        if self.ready is not None:
            self.ready()


class ExposeService(PortForwarder):
    """
    The port forwarder, starting the C{--expose} forwards with vpnkit; one
    that cannot be bound stops start-up.
    """

    def __init__(self, reactor, connector, hostAlias, gateway, allowed, exposes, backlog=None):
        super().__init__(reactor, connector, hostAlias, gateway, allowed, backlog)
        self._exposes = exposes

    def startService(self):
        super().startService()
        for spec in self._exposes:
            try:
                self.expose(spec)
            except ForwardError as e:
                raise ConfigError(f"--expose {spec}: {e}") from None

