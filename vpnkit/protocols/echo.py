# -*- test-case-name: tests.test_icmp -*-
"""
L{EchoForwarder}: a guest's echo requests to remote hosts, sent from the
host through unprivileged ping sockets, for ICMP and ICMPv6 alike; what
differs between the two is an L{EchoFamily} (L{ICMP_ECHO},
L{ICMPV6_ECHO}).

vpnkit never forges a reply.  Each guest (address, echo identifier) gets
its own host ping socket, whose identifier the kernel chooses; replies
arriving on it get the guest's identifier back, from the address that
sent them (the host's loopback appears as the host alias).  Errors the
host receives for a request (time exceeded, unreachable, too big) are
passed back through the family's L{vpnkit.interfaces.IICMPErrors},
quoting the guest's request; a request the host refuses to send at once
is answered with destination unreachable from the gateway, rate-limited
per guest.  When the host does not allow ping sockets
(C{net.ipv4.ping_group_range}, which covers both families), one line is
logged and requests are dropped: the guest sees no reply, as behind a
firewall.
"""

import errno
from dataclasses import dataclass
from socket import AF_INET, AF_INET6

from vpnkit.log import RateLimitedLog
from vpnkit.protocols.flowtable import FlowExpiry, FlowTable, SocketFlow
from vpnkit.protocols.ip import formatAddress, packAddress
from vpnkit.protocols.udpnat import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FLOWS,
    GuestRateLimit,
    reportSendError,
)
from vpnkit.wire import ParseError
from vpnkit.wire.icmp import ECHO_REPLY, ECHO_REQUEST, ICMPMessage, emitICMP, parseICMP
from vpnkit.wire.icmpv6 import EchoReply, EchoRequest, emitICMPv6, parseICMPv6
from vpnkit.wire.ipv4 import FLAG_DF, PROTO_ICMP
from vpnkit.wire.ipv6 import NEXT_ICMPV6, UNSPECIFIED

__all__ = ["EchoFamily", "EchoForwarder", "ICMP_ECHO", "ICMPV6_ECHO"]

_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT)


def _sequence(number):
    return number.to_bytes(2, "big")


def _icmpRequest(ident, sequence, data):
    return emitICMP(ICMPMessage(ECHO_REQUEST, 0, 0, _sequence(ident) + _sequence(sequence), data))


def _icmpReply(data):
    message = parseICMP(data, verifyChecksum=False)
    if message.type != ECHO_REPLY:
        return None
    return int.from_bytes(message.rest[2:4], "big"), message.payload


def _icmpEmitReply(ident, sequence, data, src, dst):
    return emitICMP(ICMPMessage(ECHO_REPLY, 0, 0, _sequence(ident) + _sequence(sequence), data))


def _icmpSendOptions(header):
    return header.ttl, bool(header.flags & FLAG_DF)


def _icmpv6Request(ident, sequence, data):
    # The kernel fills the checksum in (and the identifier).
    return emitICMPv6(EchoRequest(ident, sequence, data), UNSPECIFIED, UNSPECIFIED)


def _icmpv6Reply(data):
    message = parseICMPv6(data, UNSPECIFIED, UNSPECIFIED, verifyChecksum=False)
    if type(message) is not EchoReply:
        return None
    return message.sequence, message.data


def _icmpv6EmitReply(ident, sequence, data, src, dst):
    return emitICMPv6(EchoReply(ident, sequence, data), src, dst)


def _icmpv6SendOptions(header):
    # IPv6 routers never fragment: every request is "DF".
    return header.hopLimit, True


@dataclass(frozen=True)
class EchoFamily:
    """
    What echo forwarding needs to know of one family.

    @ivar request: C{(ident, sequence, data)} -> the request's bytes for
        the host's ping socket.
    @ivar reply: the host's reply bytes -> C{(sequence, data)}, or C{None}
        for anything but an echo reply (may raise L{ParseError}).
    @ivar emitReply: C{(ident, sequence, data, src, dst)} -> the reply's
        bytes for the guest.
    @ivar sendOptions: the guest's IP header -> C{(ttl, dontFragment)}.
    """

    name: str
    socketFamily: int
    protocol: int
    loopback: str
    request: object
    reply: object
    emitReply: object
    sendOptions: object


ICMP_ECHO = EchoFamily(
    "ICMP", AF_INET, PROTO_ICMP, "127.0.0.1", _icmpRequest, _icmpReply, _icmpEmitReply,
    _icmpSendOptions,
)  # fmt: skip
ICMPV6_ECHO = EchoFamily(
    "ICMPv6", AF_INET6, NEXT_ICMPV6, "::1", _icmpv6Request, _icmpv6Reply, _icmpv6EmitReply,
    _icmpv6SendOptions,
)  # fmt: skip


class EchoForwarder:
    """
    @param family: the L{EchoFamily}.
    @param ip: the L{vpnkit.interfaces.IIPSender} replies go through.
    @param errors: the family's L{vpnkit.interfaces.IICMPErrors}.
    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets}.
    @param clock: the L{IReactorTime} that times flows out.
    @param counters: the family's ICMP counters (the echo forwarding ones:
        C{echoForwarded}, C{flowsOpened}, ...).
    @param hostAlias: the packed address that stands for the host's
        loopback, or C{None}.
    @param log: the family's logger.

    @ivar flows: the L{FlowTable} of (guest address, echo identifier).
    """

    def __init__(
        self,
        family,
        ip,
        errors,
        sockets,
        clock,
        counters,
        hostAlias,
        log,
        maxFlows=DEFAULT_MAX_FLOWS,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
    ):
        self._log = log
        self._family = family
        self._ip = ip
        self._errors = errors
        self._sockets = sockets
        self._clock = clock
        self._counters = counters
        self._hostAlias = hostAlias
        self.flows = FlowTable(maxFlows, idleTimeout)
        self._expiry = FlowExpiry(self.flows, clock, self._expired)
        self._unavailableLogged = False
        self._failureLog = RateLimitedLog(log, clock)
        self._errorLimit = GuestRateLimit()

    def forward(self, header, ident, sequence, data, quote):
        """
        Send a guest's echo request (its IP C{header}, its identifier,
        sequence number and data, and its first 8 bytes C{quote}) from
        the host.
        """
        counters = self._counters
        family = self._family
        key = (header.src, ident)
        now = self._clock.seconds()
        flow = self.flows.get(key)
        if flow is None:
            flow = self._open(key, now)
            if flow is None:
                return
        else:
            self.flows.touch(key, now)
        flow.remember(sequence, header, quote)
        ttl, dontFragment = family.sendOptions(header)
        try:
            flow.socket.sendTo(
                family.request(ident, sequence, data),
                formatAddress(header.dst),
                0,
                ttl=ttl,
                dontFragment=dontFragment,
            )
        except OSError as e:
            counters.forwardFailed += 1
            sent = reportSendError(self._errors, self._errorLimit, self._clock, e, header, quote)
            if sent:
                counters.forwardUnreachable += 1
            elif sent is False:
                counters.forwardErrorsLimited += 1
            self._log.debug("echo to {dst} failed: {error}", dst=formatAddress(header.dst), error=e)
            return
        counters.echoForwarded += 1

    def _open(self, key, now):
        counters = self._counters
        family = self._family
        for old in self.flows.makeRoom():
            counters.flowsEvicted += 1
            old.close()
        flow = SocketFlow(self, key)
        try:
            if family.socketFamily == AF_INET:
                flow.socket = self._sockets.openICMP(flow)
            else:
                flow.socket = self._sockets.openICMP(flow, family=family.socketFamily)
        except OSError as e:
            if e.errno in _NO_PERMISSION:
                counters.forwardUnavailable += 1
                if not self._unavailableLogged:
                    self._unavailableLogged = True
                    self._log.warn(
                        "ping to remote hosts over {family} will not work: the host refuses "
                        "its ping sockets ({error}); allow our group in "
                        "net.ipv4.ping_group_range",
                        family=family.name,
                        error=e.strerror or e,
                    )
            else:
                counters.forwardFailed += 1
                self._failureLog.warn(
                    "cannot open a host {family} socket: {error}", family=family.name, error=e
                )
            return None
        counters.flowsOpened += 1
        self.flows.add(key, flow, now)
        self._expiry.arm()
        return flow

    def _expired(self, flows):
        for flow in flows:
            self._counters.flowsExpired += 1
            flow.close()

    def flowDatagram(self, flow, data, host, port):
        counters = self._counters
        family = self._family
        if self.flows.get(flow.key) is not flow:
            return
        guestIP, ident = flow.key
        try:
            # The host verified the checksum already.
            reply = family.reply(data)
            if host == family.loopback and self._hostAlias is not None:
                source = self._hostAlias
            else:
                source = packAddress(host.split("%", 1)[0])
        except (ParseError, ValueError):
            counters.unknownReplies += 1
            return
        if reply is None:
            counters.unknownReplies += 1
            return
        self.flows.touch(flow.key, self._clock.seconds())
        sequence, payload = reply
        message = family.emitReply(ident, sequence, payload, source, guestIP)
        if self._ip.sendIP(source, guestIP, family.protocol, message):
            counters.echoForwardReplies += 1

    def flowError(self, flow, error):
        counters = self._counters
        if self.flows.get(flow.key) is not flow:
            return
        # The failed request comes back from its ICMP header on.
        sequence = int.from_bytes(error.payload[6:8], "big") if len(error.payload) >= 8 else None
        remembered = flow.quotes.get(sequence)
        if remembered is None and error.origin == "local" and flow.quotes:
            # The host's own refusals (EMSGSIZE) carry no request: it was
            # the latest.
            remembered = next(reversed(flow.quotes.values()))
        if remembered is not None and self._errors.sendHostError(error, *remembered):
            counters.hostErrorsTranslated += 1
        else:
            counters.hostErrorsDropped += 1

    def guestDetached(self, guestIP):
        """
        Close the echo flows of a guest that went away.
        """
        self._errorLimit.forget(guestIP)
        for flow in self.flows.removeGuest(guestIP):
            flow.close()

    def close(self):
        self._expiry.stop()
        for flow in self.flows.removeAll():
            flow.close()
