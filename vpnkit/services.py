# -*- test-case-name: tests.test_tap -*-
"""
The services L{vpnkit.tap.makeService} composes besides the listeners
(L{vpnkit.listeners}, re-exported here): tap devices in network namespaces,
the port forwarder with its C{--expose} forwards, the default connection
budget from the open-file limit, and L{VPNKitService}, the parent that
turns start-up failures into one line under twistd and leaves nothing
behind when stopped.
"""

import json
import signal
import sys
from dataclasses import replace

from twisted.application.service import MultiService, Service
from twisted.internet.error import CannotListenError

from vpnkit import __version__
from vpnkit.config import ConfigError
from vpnkit.forwards import ForwardError, PortForwarder
from vpnkit.host.taplink import TapLink
from vpnkit.host.tundev import LinuxTunSystem
from vpnkit.leases import AllocationError
from vpnkit.log import logger
from vpnkit.listeners import (  # noqa: F401 (re-exported)
    LinkListenService,
    ListenService,
    UnixDatagramLinkService,
    UnixLinkListenService,
    UnixListenService,
    clearStaleSocket,
    listenService,
)
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
            "{lowest}..{highest}, MTU {mtu}, IPv6 {ipv6}",
            version=__version__,
            ipv6=config.ipv6.prefix if config.ipv6 is not None else "off",
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

    def __init__(
        self, reactor, connector, hostAlias, gateway, allowed, exposes, backlog=None, ipv6=None
    ):
        super().__init__(reactor, connector, hostAlias, gateway, allowed, backlog, ipv6=ipv6)
        self._exposes = exposes

    def startService(self):
        super().startService()
        for spec in self._exposes:
            try:
                self.expose(spec)
            except ForwardError as e:
                raise ConfigError(f"--expose {spec}: {e}") from None

