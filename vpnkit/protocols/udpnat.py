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

import errno
from socket import inet_aton, inet_ntoa

from vpnkit.log import RateLimitedLog, logger
from vpnkit.protocols.destinations import forwardable
from vpnkit.protocols.flowtable import FlowExpiry, FlowTable, SocketFlow
from vpnkit.wire.icmp import DEST_UNREACHABLE, TIME_EXCEEDED, ICMPMessage, emitICMP
from vpnkit.wire.ipv4 import FLAG_DF, PROTO_ICMP, formatIP, packIP, quoteHeader

__all__ = [
    "UDPNAT",
    "DEFAULT_MAX_FLOWS",
    "DEFAULT_IDLE_TIMEOUT",
    "forwardable",
    "GuestRateLimit",
    "unreachableFor",
    "sendUnreachable",
]

log = logger("vpnkit.udpnat")

DEFAULT_MAX_FLOWS = 1024
DEFAULT_IDLE_TIMEOUT = 60.0
LOCALHOST = "127.0.0.1"
_FRAG_NEEDED = 4
# Destination unreachable codes for the errors a host socket's send
# reports at once, chosen so that the guest's socket reports the same
# errno at once: Linux takes net (0) and host (1) unreachable for soft
# errors that a UDP socket without IP_RECVERR ignores (glibc's resolver
# and dig then wait out their timeout), while destination network unknown
# (6) is ENETUNREACH and host administratively prohibited (10, RFC 1122)
# EHOSTUNREACH, both hard.  A host firewall's EACCES or EPERM has no ICMP
# of its own: communication administratively prohibited (13, RFC 1812
# 5.2.7.1), EHOSTUNREACH in the guest.
_SEND_ERROR_CODES = {
    errno.ENETUNREACH: 6,
    errno.EHOSTUNREACH: 10,
    errno.EACCES: 13,
    errno.EPERM: 13,
}
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


def unreachableFor(error, header, quote):
    """
    The ICMP destination unreachable telling a guest the host would not
    send its datagram, or C{None} for an error that says nothing about
    the destination.

    @param error: the C{OSError} the host socket's send raised.
    @param header: the guest's datagram's L{IPv4Header} as it sent it.
    @param quote: its first 8 payload bytes as it sent them.
    @return: the ICMP message's bytes, or C{None}.
    """
    code = _SEND_ERROR_CODES.get(error.errno)
    if code is None:
        return None
    message = ICMPMessage(DEST_UNREACHABLE, code, 0, b"\0\0\0\0", quoteHeader(header) + bytes(quote[:8]))
    return emitICMP(message)


def sendUnreachable(ipv4, limit, clock, gateway, error, header, quote):
    """
    Tell a guest, from the gateway (the router that gave up), that the host
    refused to send its datagram at once (see L{unreachableFor}), if its
    L{GuestRateLimit} allows.

    @return: C{None} when the error says nothing about the destination,
        else whether the message was sent (C{False}: rate-limited).
    """
    message = unreachableFor(error, header, quote)
    if message is None:
        return None
    if not limit.allow(header.src, clock.seconds()):
        return False
    ipv4.sendIP(gateway, header.src, PROTO_ICMP, message)
    return True


def icmpErrorFor(error, header, quote, gateway, hostAlias):
    """
    The ICMP message (and its source) telling a guest what the host heard
    about one of its datagrams, or C{None} when there is nothing to pass
    on.

    @param error: the L{vpnkit.host.sockets.HostSocketError}.
    @param header: the guest's datagram's L{IPv4Header} as it sent it.
    @param quote: its first 8 payload bytes as it sent them.
    @return: C{(source, icmpBytes)} or C{None}.
    """
    if error.origin == "local":
        if error.info <= 0:
            return None
        # The host would not send it unfragmented: the gateway is the
        # router that says so.
        type_, code, source = DEST_UNREACHABLE, _FRAG_NEEDED, gateway
    elif error.origin == "icmp" and error.icmpType in (DEST_UNREACHABLE, TIME_EXCEEDED):
        type_, code = error.icmpType, error.icmpCode
        source = gateway
        if error.offender is not None:
            source = packIP(error.offender)
            if error.offender == LOCALHOST and hostAlias is not None:
                source = hostAlias
    else:
        return None
    rest = b"\0\0\0\0"
    if type_ == DEST_UNREACHABLE and code == _FRAG_NEEDED:
        rest = (error.info & 0xFFFF).to_bytes(4, "big")
    message = ICMPMessage(type_, code, 0, rest, quoteHeader(header) + bytes(quote[:8]))
    return source, emitICMP(message)


def sendHostError(ipv4, error, remembered, gateway, hostAlias):
    """
    Pass what the host heard about a guest's datagram back to the guest as
    ICMP (see L{icmpErrorFor}).

    @param remembered: C{(header, quote)} of that datagram, or C{None}
        when it is not known.
    @return: whether an ICMP message was sent.
    """
    if remembered is None:
        return False
    header, quote = remembered
    translated = icmpErrorFor(error, header, quote, gateway, hostAlias)
    if translated is None:
        return False
    source, message = translated
    ipv4.sendIP(source, header.src, PROTO_ICMP, message)
    return True


class UDPNAT:
    """
    @param udp: the L{vpnkit.protocols.udp.UDPLayer} replies go through.
    @param ipv4: the L{vpnkit.protocols.ipv4.IPv4Layer}, for ICMP errors.
    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets}.
    @param clock: the L{IReactorTime} whose monotonic C{seconds()} times
        flows out.
    """

    def __init__(
        self,
        config,
        udp,
        ipv4,
        sockets,
        clock,
        counters,
        maxFlows=DEFAULT_MAX_FLOWS,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
    ):
        self._config = config
        self._hostAlias = config.hostPacked
        self._gateway = config.gatewayPacked
        self._udp = udp
        self._ipv4 = ipv4
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
        alias = dst == self._hostAlias
        if udp.dstPort == 0 or not (alias or forwardable(self._config, dst)):
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
        host = LOCALHOST if alias else inet_ntoa(dst)
        flow.remember((host, udp.dstPort), header, quote)
        try:
            flow.socket.sendTo(
                payload,
                host,
                udp.dstPort,
                ttl=header.ttl,
                dontFragment=bool(header.flags & FLAG_DF),
            )
        except OSError as e:
            # Errors the host reports later come back through errorReceived.
            counters.natSendFailed += 1
            sent = sendUnreachable(
                self._ipv4, self._errorLimit, self._clock, self._gateway, e, header, quote
            )
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
            flow.socket = self._sockets.openUDP(flow)
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
        if host == LOCALHOST and self._hostAlias is not None:
            source = self._hostAlias
        else:
            try:
                source = inet_aton(host)
            except (OSError, ValueError):
                self._counters.natErrorsDropped += 1
                return
        guestIP, guestPort = flow.key
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
        if sendHostError(self._ipv4, error, remembered, self._gateway, self._hostAlias):
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
    return f"{formatIP(key[0])}:{key[1]}"
