# -*- test-case-name: tests.test_udpnat -*-
"""
L{UDPNAT}: guests' UDP to the host alias and to remote hosts, through host
sockets.

Each guest source (address, port) gets one host UDP socket, whatever it
sends to (endpoint-independent mapping, as the reference and RFC 4787 ask),
and every datagram that socket receives, from any peer, goes back to that
guest source with the peer's real address and port (endpoint-independent
filtering: hole punching works).  The host alias stands for the host's
127.0.0.1; replies from 127.0.0.1 appear to come from the alias.

The guest's TTL and DF flag travel with each datagram (C{IP_TTL} and
C{IP_MTU_DISCOVER} on the host socket), so traceroute and path MTU
discovery see the real network: the ICMP errors the host receives for a
flow (C{IP_RECVERR}) are passed back to the guest from the router or host
that sent them, quoting the guest's own datagram.  A send the host refuses
at once (no route: C{ENETUNREACH}, C{EHOSTUNREACH}; policy: C{EACCES},
C{EPERM}) becomes ICMP destination unreachable from the gateway with a
code the guest's kernel reports as the same errno (see L{unreachableFor}),
so a resolver asking an unreachable server hears at once instead of
waiting out its timeout; vpnkit's own errors are limited
per guest by a L{GuestRateLimit}.  The ICMP echo forwarder does the same.

Flows idle for C{idleTimeout} seconds (60, on the injected reactor's
monotonic clock) are closed, and at most C{maxFlows} (1024) exist: a new
one evicts the least recently used.  A host socket that cannot be opened
(descriptor exhaustion, ...) costs the datagram, a counter and a
rate-limited log line, never the daemon.
"""

from socket import AF_INET6

from vpnkit.log import RateLimitedLog, logger
from vpnkit.protocols.destinations import forwardable
from vpnkit.protocols.flowtable import FlowExpiry, FlowTable, SocketFlow
from vpnkit.protocols.ip import forSendError, formatAddress, packAddress
from vpnkit.wire.ipv4 import FLAG_DF

__all__ = [
    "UDPNAT",
    "DEFAULT_MAX_FLOWS",
    "DEFAULT_IDLE_TIMEOUT",
    "forwardable",
    "GuestRateLimit",
    "reportSendError",
]

log = logger("vpnkit.udpnat")

DEFAULT_MAX_FLOWS = 1024
DEFAULT_IDLE_TIMEOUT = 60.0
LOCALHOST = "127.0.0.1"
LOCALHOST6 = "::1"
# vpnkit's own ICMP errors to one guest: a burst, then a steady rate.
ERROR_BURST = 10
ERROR_RATE = 10.0


class GuestRateLimit:
    """
    A token bucket per guest address, pure: the time is passed in (the
    reactor's C{seconds()}).  Each guest may take C{burst} tokens at once,
    refilled at C{rate} a second.  At most C{maxGuests} buckets are kept;
    forgetting a bucket gives that guest a full one, so the cap (and
    L{forget} when a guest goes) only bounds memory.
    """

    def __init__(self, rate=ERROR_RATE, burst=ERROR_BURST, maxGuests=4096):
        self.rate = rate
        self.burst = burst
        self.maxGuests = maxGuests
        self._buckets = {}

    def allow(self, guest, now):
        """
        Take a token for C{guest} at time C{now}.

        @return: whether there was one.
        """
        bucket = self._buckets.pop(guest, None)
        if bucket is None:
            tokens = self.burst
            if len(self._buckets) >= self.maxGuests:
                del self._buckets[next(iter(self._buckets))]
        else:
            tokens, then = bucket
            tokens = min(self.burst, tokens + (now - then) * self.rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[guest] = (tokens, now)
        return allowed

    def forget(self, guest):
        self._buckets.pop(guest, None)


def reportSendError(errors, limit, clock, error, header, quote):
    """
    Tell a guest, from the gateway (the router that gave up), that the host
    refused to send its datagram at once (see
    L{vpnkit.protocols.ip.forSendError}), if its L{GuestRateLimit} allows.

    @param errors: the L{vpnkit.interfaces.IICMPErrors} to send through.
    @return: C{None} when the error says nothing about the destination,
        else whether the message was sent (C{False}: rate-limited).
    """
    reason = forSendError(error)
    if reason is None:
        return None
    if not limit.allow(header.src, clock.seconds()):
        return False
    errors.sendUnreachable(reason, header, quote)
    return True


class UDPNAT:
    """
    @param udp: the L{vpnkit.protocols.udp.UDPSender} replies go through.
    @param errors: the L{vpnkit.interfaces.IICMPErrors} (both families).
    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets}.
    @param clock: the L{IReactorTime} whose monotonic C{seconds()} times
        flows out.
    """

    def __init__(
        self,
        config,
        udp,
        errors,
        sockets,
        clock,
        counters,
        maxFlows=DEFAULT_MAX_FLOWS,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
    ):
        self._config = config
        ipv6 = config.ipv6
        # The host alias of each family, and the host's loopback it stands for.
        self._aliases = {}
        if config.hostIP is not None:
            self._aliases[config.hostPacked] = LOCALHOST
        if ipv6 is not None and ipv6.hostAlias is not None:
            self._aliases[ipv6.hostAliasPacked] = LOCALHOST6
        self._fromLoopback = {text: packed for packed, text in self._aliases.items()}
        self._udp = udp
        self._errors = errors
        self._sockets = sockets
        self._clock = clock
        self._counters = counters.udp
        self.flows = FlowTable(maxFlows, idleTimeout)
        self._expiry = FlowExpiry(self.flows, clock, self._expired)
        self._bindLog = RateLimitedLog(log, clock)
        self._errorLimit = GuestRateLimit()

    # -- from guests ------------------------------------------------------------

    def datagramFromGuest(self, header, udp, payload, quote):
        """
        Send a guest's datagram on to the host.

        @param quote: the first 8 bytes of the UDP datagram (its header),
            kept to quote in ICMP errors.
        """
        counters = self._counters
        dst = header.dst
        loopback = self._aliases.get(dst)
        if udp.dstPort == 0 or not (loopback or forwardable(self._config, dst)):
            counters.natNotForwarded += 1
            return
        key = (header.src, udp.srcPort)
        now = self._clock.seconds()
        flow = self.flows.get(key)
        if flow is None:
            flow = self._open(key, now)
            if flow is None:
                return
        else:
            self.flows.touch(key, now)
        host = loopback or formatAddress(dst)
        flow.remember((host, udp.dstPort), header, quote)
        if len(dst) == 4:
            ttl, dontFragment = header.ttl, bool(header.flags & FLAG_DF)
        else:
            # IPv6 routers never fragment: every datagram is "DF".
            ttl, dontFragment = header.hopLimit, True
        try:
            flow.socket.sendTo(payload, host, udp.dstPort, ttl=ttl, dontFragment=dontFragment)
        except OSError as e:
            # Errors the host reports later come back through errorReceived.
            counters.natSendFailed += 1
            sent = reportSendError(self._errors, self._errorLimit, self._clock, e, header, quote)
            if sent:
                counters.natSendUnreachable += 1
            elif sent is False:
                counters.natSendErrorsLimited += 1
            log.debug(
                "sending from {flow} to {host}:{port} failed: {error}",
                flow=_describe(key),
                host=host,
                port=udp.dstPort,
                error=e,
            )
            return
        counters.natSent += 1

    def _open(self, key, now):
        counters = self._counters
        # Room first, so the host never holds more sockets than the cap.
        for old in self.flows.makeRoom():
            counters.natFlowsEvicted += 1
            old.close()
        flow = SocketFlow(self, key)
        try:
            if len(key[0]) == 4:
                flow.socket = self._sockets.openUDP(flow)
            else:
                flow.socket = self._sockets.openUDP(flow, family=AF_INET6)
        except OSError as e:
            counters.natBindFailed += 1
            self._bindLog.warn(
                "cannot open a host UDP socket for {flow}: {error}", flow=_describe(key), error=e
            )
            return None
        counters.natFlowsOpened += 1
        self.flows.add(key, flow, now)
        self._expiry.arm()
        return flow

    def _expired(self, flows):
        for flow in flows:
            self._counters.natFlowsExpired += 1
            flow.close()

    # -- from the host ------------------------------------------------------------

    def flowDatagram(self, flow, data, host, port):
        if self.flows.get(flow.key) is not flow:
            return
        self.flows.touch(flow.key, self._clock.seconds())
        guestIP, guestPort = flow.key
        source = self._fromLoopback.get(host)
        if source is None:
            try:
                source = packAddress(host)
            except ValueError:
                source = None
        if source is None or len(source) != len(guestIP):
            # Not an address of the guest's family: nothing to send it from.
            self._counters.natErrorsDropped += 1
            return
        self._counters.natReceived += 1
        self._udp.sendDatagram(source, port, guestIP, guestPort, data)

    def flowError(self, flow, error):
        counters = self._counters
        if self.flows.get(flow.key) is not flow:
            return
        remembered = flow.quotes.get((error.host, error.port))
        if remembered is None and error.origin == "local":
            # The host's own refusals name no port (an unconnected socket
            # has none): the latest datagram to that address is the one.
            for (host, _), quoted in reversed(flow.quotes.items()):
                if host == error.host:
                    remembered = quoted
                    break
        if remembered is not None and self._errors.sendHostError(error, *remembered):
            counters.natErrorsTranslated += 1
        else:
            counters.natErrorsDropped += 1

    # -- lifetime -------------------------------------------------------------------

    def guestDetached(self, guestIP):
        """
        Close the flows of a guest that went away.
        """
        self._errorLimit.forget(guestIP)
        for flow in self.flows.removeGuest(guestIP):
            flow.close()

    def close(self):
        self._expiry.stop()
        for flow in self.flows.removeAll():
            flow.close()


def _describe(key):
    address = formatAddress(key[0])
    return f"[{address}]:{key[1]}" if ":" in address else f"{address}:{key[1]}"
