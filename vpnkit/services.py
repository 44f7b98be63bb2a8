# -*- test-case-name: tests.test_tap -*-
"""
The services L{vpnkit.tap.makeService} composes: listeners (on Unix
sockets they clear a stale socket file from first; for guest links they
take their guests off the switch when stopped), tap devices in network
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
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure

from vpnkit import __version__
from vpnkit.config import ConfigError
from vpnkit.forwards import ForwardError, PortForwarder
from vpnkit.host.taplink import TapLink
from vpnkit.host.tundev import LinuxTunSystem
from vpnkit.leases import AllocationError
from vpnkit.log import logger
from vpnkit.protocols.dnsupstream import MAX_IN_FLIGHT

__all__ = [
    "ListenService",
    "LinkListenService",
    "UnixListenService",
    "UnixLinkListenService",
    "NetnsTapService",
    "ExposeService",
    "VPNKitService",
    "raiseFileLimit",
    "softFileLimit",
    "connectionBudget",
    "FILE_RESERVE",
]

log = logger("vpnkit.tap")


class ListenService(Service):
    """
    Listen on C{endpoint} with C{factory} while running.

    Unlike Twisted's C{StreamServerEndpointService}, a listener that
    cannot be bound raises from C{startService} at once (the reactor's
    listeners bind synchronously), so start-up stops with that error.
    """

    def __init__(self, endpoint, factory):
        self.endpoint = endpoint
        self.factory = factory
        self.port = None

    def _listen(self):
        if self.port is not None:
            return
        outcome = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"{self.endpoint} did not listen at once")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
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

    def __init__(self, path, factory, reactor, mode=0o600, group=None):
        super().__init__(UNIXServerEndpoint(reactor, path, mode=mode), factory)
        self._path = path
        self._group = group

    def _listen(self):
        bound = self.port is None
        super()._listen()
        if bound and self._group is not None:
            os.chown(self._path, -1, self._group)

    def privilegedStartService(self):
        if os.path.lexists(self._path):
            # connect() to a regular file also fails with ECONNREFUSED:
            # only ever remove a socket.
            if not stat.S_ISSOCK(os.lstat(self._path).st_mode):
                raise ConfigError(f"{self._path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self._path)
            except ConnectionRefusedError:
                os.unlink(self._path)
            except OSError:
                pass
            else:
                raise ConfigError(f"{self._path} is in use by another process")
            finally:
                probe.close()
        super().privilegedStartService()


class UnixLinkListenService(UnixListenService, LinkListenService):
    """
    Guest links on a Unix socket path (vmnet, QEMU stream).
    """


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
    """

    def __init__(self, stack, exitOnError=False):
        super().__init__()
        self.stack = stack
        self.exitOnError = exitOnError

    def _statsSignal(self, signum, frame):
        self.stack.reactor.callFromThread(self.logStats)

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
            if not self.exitOnError:
                raise
            sys.stderr.write(f"vpnkit: {e}\n")
            raise SystemExit(1)

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
            signal.signal(signal.SIGUSR1, self._statsSignal)
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


class ExposeService(PortForwarder):
    """
    The port forwarder, starting the C{--expose} forwards with vpnkit; one
    that cannot be bound stops start-up.
    """

    def __init__(self, reactor, connector, hostAlias, gateway, allowed, exposes):
        super().__init__(reactor, connector, hostAlias, gateway, allowed)
        self._exposes = exposes

    def startService(self):
        super().startService()
        for spec in self._exposes:
            try:
                self.expose(spec)
            except ForwardError as e:
                raise ConfigError(f"--expose {spec}: {e}") from None

