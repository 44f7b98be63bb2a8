# -*- test-case-name: tests.test_icmp -*-
"""
ICMP: echo requests to the gateway and the host alias are answered here;
echo requests to any other address the shared rule allows
(L{vpnkit.protocols.destinations}) are sent from the host through an
unprivileged ICMP socket, and only the real replies come back.  An echo
request to a refused destination reaches no socket: to loopback, 0/8 or
240/4 the gateway answers destination unreachable, administratively
prohibited (code 13); to an unheld address of the subnet, host unreachable
(code 1); to a broadcast or multicast address nothing (no ICMP error may
be sent about those, RFC 1122 3.2.2).  Answering rather than dropping
tells ping at once, as TCP's reset does for a refused connection.

vpnkit never forges a reply.  Each guest (address, echo identifier) gets
its own host "ping" socket, whose identifier the kernel chooses; replies
arriving on it get the guest's identifier back.  ICMP errors the host
receives for such a request (time exceeded, unreachable) are passed to the
guest from the router that sent them, quoting the guest's request; a
request the host refuses to send at once (no route, or policy) is answered
with destination unreachable from the gateway, rate-limited per guest, as
the UDP NAT does (L{vpnkit.protocols.udpnat.reportSendError}).  When the
host does not allow ICMP sockets (C{net.ipv4.ping_group_range}), one line
is logged and requests are dropped: the guest sees no reply, as it would
behind a firewall.
"""

import errno

from zope.interface import implementer

from vpnkit.interfaces import IICMPErrors, IIPReceiver
from vpnkit.log import RateLimitedLog, logger
from vpnkit.protocols.destinations import RESERVED, SUBNET, refusal
from vpnkit.protocols.flowtable import FlowExpiry, FlowTable, SocketFlow
from vpnkit.protocols.ip import Unreachable
from vpnkit.protocols.udpnat import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FLOWS,
    LOCALHOST,
    GuestRateLimit,
    reportSendError,
)
from vpnkit.wire import ChecksumError, ParseError
from vpnkit.wire.icmp import (
    DEST_UNREACHABLE,
    ECHO_REPLY,
    ECHO_REQUEST,
    TIME_EXCEEDED,
    ICMPMessage,
    echoID,
    emitICMP,
    parseICMP,
)
from vpnkit.wire.ipv4 import FLAG_DF, PROTO_ICMP, formatIP, packIP, quoteHeader

__all__ = ["ICMPLayer"]

log = logger("vpnkit.icmp")

_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT)
# Destination unreachable codes (RFC 792, RFC 1812 5.2.7.1) for echo
# requests vpnkit refuses to pass to the host: nobody holds an address of
# the subnet (as a router whose ARP went unanswered says); the reserved
# blocks are refused by policy.  Group destinations get no error at all
# (RFC 1122 3.2.2).
_REFUSAL_CODES = {SUBNET: Unreachable.HOST, RESERVED: Unreachable.PROHIBITED}
_FRAG_NEEDED = 4


@implementer(IIPReceiver, IICMPErrors)
class ICMPLayer:
    """
    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets} echo is
        forwarded through, or C{None} not to forward it.
    @param clock: the L{IReactorTime} that times echo flows out.
    """

    def __init__(
        self,
        config,
        ipv4,
        counters,
        sockets=None,
        clock=None,
        maxFlows=DEFAULT_MAX_FLOWS,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
    ):
        self._config = config
        self._gateway = config.gatewayPacked
        self._hostAlias = config.hostPacked
        self._local = {config.gatewayPacked}
        if config.hostIP is not None:
            self._local.add(config.hostPacked)
        self._ipv4 = ipv4
        self._counters = counters.icmp
        self._sockets = sockets
        self._clock = clock
        self.flows = FlowTable(maxFlows, idleTimeout)
        self._expiry = FlowExpiry(self.flows, clock, self._expired) if clock else None
        self._unavailableLogged = False
        self._failureLog = RateLimitedLog(log, clock) if clock else None
        self._errorLimit = GuestRateLimit()

    def ipPayloadReceived(self, header, payload):
        counters = self._counters
        try:
            message = parseICMP(payload)
        except ChecksumError:
            counters.badChecksum += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        if message.type == ECHO_REQUEST and message.code == 0:
            if header.dst in self._local:
                counters.echoRequests += 1
                reply = ICMPMessage(ECHO_REPLY, 0, 0, message.rest, message.payload)
                if self._ipv4.sendIP(header.dst, header.src, PROTO_ICMP, emitICMP(reply)):
                    counters.echoReplies += 1
                return
            reason = refusal(self._config, header.dst)
            if reason is not None:
                counters.echoRefused += 1
                code = _REFUSAL_CODES.get(reason)
                if code is not None:
                    self.sendUnreachable(code, header, bytes(payload[:8]))
                return
            if self._sockets is not None:
                self._forwardEcho(header, message, payload[:8])
                return
        counters.unsupported += 1

    # -- the errors of the layers above IPv4 (IICMPErrors) ---------------------

    def sendUnreachable(self, reason, header, quote):
        """
        Tell the guest its datagram could not be delivered: ICMP destination
        unreachable with the code of C{reason} (an
        L{vpnkit.protocols.ip.Unreachable}), from the gateway (the router
        that gave up), quoting the datagram's header and the first 8 bytes
        of its payload (C{quote}).
        """
        message = ICMPMessage(
            DEST_UNREACHABLE, int(reason), 0, b"\0\0\0\0", quoteHeader(header) + bytes(quote[:8])
        )
        sent = self._ipv4.sendIP(self._gateway, header.src, PROTO_ICMP, emitICMP(message))
        if sent:
            self._counters.unreachableSent += 1
        return sent

    def sendHostError(self, error, header, quote):
        """
        Pass what the host heard about a guest's datagram (a
        L{vpnkit.host.sockets.HostSocketError}) back as ICMP: the host's
        own refusal to send unfragmented as fragmentation needed from the
        gateway, an ICMP unreachable or time exceeded from the router that
        sent it (the host alias for the host's 127.0.0.1), quoting the
        guest's datagram (C{header} and C{quote}, as it sent them).

        @return: whether a message was sent.
        """
        if error.origin == "local":
            if error.info <= 0:
                return False
            type_, code, source = DEST_UNREACHABLE, _FRAG_NEEDED, self._gateway
        elif error.origin == "icmp" and error.icmpType in (DEST_UNREACHABLE, TIME_EXCEEDED):
            type_, code = error.icmpType, error.icmpCode
            source = self._gateway
            if error.offender is not None:
                source = packIP(error.offender)
                if error.offender == LOCALHOST and self._hostAlias is not None:
                    source = self._hostAlias
        else:
            return False
        rest = b"\0\0\0\0"
        if type_ == DEST_UNREACHABLE and code == _FRAG_NEEDED:
            rest = (error.info & 0xFFFF).to_bytes(4, "big")
        message = ICMPMessage(type_, code, 0, rest, quoteHeader(header) + bytes(quote[:8]))
        return self._ipv4.sendIP(source, header.src, PROTO_ICMP, emitICMP(message))

    # -- echo through host ICMP sockets ---------------------------------------------

    def _forwardEcho(self, header, message, quote):
        counters = self._counters
        ident, seq = echoID(message)
        key = (header.src, ident)
        now = self._clock.seconds()
        flow = self.flows.get(key)
        if flow is None:
            flow = self._open(key, now)
            if flow is None:
                return
        else:
            self.flows.touch(key, now)
        flow.remember(seq, header, quote)
        # The kernel puts the socket's own identifier in, and the checksum.
        request = emitICMP(ICMPMessage(ECHO_REQUEST, 0, 0, message.rest, message.payload))
        try:
            flow.socket.sendTo(
                request,
                formatIP(header.dst),
                0,
                ttl=header.ttl,
                dontFragment=bool(header.flags & FLAG_DF),
            )
        except OSError as e:
            counters.forwardFailed += 1
            sent = reportSendError(self, self._errorLimit, self._clock, e, header, quote)
            if sent:
                counters.forwardUnreachable += 1
            elif sent is False:
                counters.forwardErrorsLimited += 1
            log.debug("echo to {dst} failed: {error}", dst=formatIP(header.dst), error=e)
            return
        counters.echoForwarded += 1

    def _open(self, key, now):
        counters = self._counters
        for old in self.flows.makeRoom():
            counters.flowsEvicted += 1
            old.close()
        flow = SocketFlow(self, key)
        try:
            flow.socket = self._sockets.openICMP(flow)
        except OSError as e:
            if e.errno in _NO_PERMISSION:
                counters.forwardUnavailable += 1
                if not self._unavailableLogged:
                    self._unavailableLogged = True
                    log.warn(
                        "ping to remote hosts will not work: the host refuses ICMP sockets "
                        "({error}); allow our group in net.ipv4.ping_group_range",
                        error=e.strerror or e,
                    )
            else:
                counters.forwardFailed += 1
                self._failureLog.warn("cannot open a host ICMP socket: {error}", error=e)
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
        if self.flows.get(flow.key) is not flow:
            return
        try:
            # The host already verified the checksum; a short message is
            # not a reply.
            message = parseICMP(data, verifyChecksum=False)
            source = packIP(host)
        except (ParseError, ValueError):
            counters.unknownReplies += 1
            return
        if message.type != ECHO_REPLY:
            counters.unknownReplies += 1
            return
        self.flows.touch(flow.key, self._clock.seconds())
        guestIP, ident = flow.key
        if host == LOCALHOST and self._hostAlias is not None:
            source = self._hostAlias
        rest = ident.to_bytes(2, "big") + message.rest[2:]
        reply = emitICMP(ICMPMessage(ECHO_REPLY, 0, 0, rest, message.payload))
        if self._ipv4.sendIP(source, guestIP, PROTO_ICMP, reply):
            counters.echoForwardReplies += 1

    def flowError(self, flow, error):
        counters = self._counters
        if self.flows.get(flow.key) is not flow:
            return
        # The failed request comes back from its ICMP header on.
        seq = int.from_bytes(error.payload[6:8], "big") if len(error.payload) >= 8 else None
        remembered = flow.quotes.get(seq)
        if remembered is None and error.origin == "local" and flow.quotes:
            # The host's own refusals (EMSGSIZE) carry no request: it was
            # the latest.
            remembered = next(reversed(flow.quotes.values()))
        if remembered is not None and self.sendHostError(error, *remembered):
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
        if self._expiry is not None:
            self._expiry.stop()
        for flow in self.flows.removeAll():
            flow.close()
