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

The forwarding itself (host ping sockets, never a forged reply, host
errors back to the guest) is L{vpnkit.protocols.echo.EchoForwarder}'s,
shared with ICMPv6; this layer is also where the ICMP errors of the layers
above IPv4 are built (L{vpnkit.interfaces.IICMPErrors}).
"""

from zope.interface import implementer

from vpnkit.interfaces import IICMPErrors, IIPReceiver
from vpnkit.log import logger
from vpnkit.protocols.destinations import RESERVED, SUBNET, refusal
from vpnkit.protocols.echo import ICMP_ECHO, EchoForwarder
from vpnkit.protocols.flowtable import FlowTable
from vpnkit.protocols.ip import Unreachable
from vpnkit.protocols.udpnat import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FLOWS, LOCALHOST
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
from vpnkit.wire.ipv4 import PROTO_ICMP, packIP, quoteHeader

__all__ = ["ICMPLayer"]

log = logger("vpnkit.icmp")
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
    @param clock: the L{IReactorTime} that times echo flows out (needed
        with C{sockets}).
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
        self._echo = None
        if sockets is not None:
            self._echo = EchoForwarder(
                ICMP_ECHO,
                ipv4,
                self,
                sockets,
                clock,
                self._counters,
                self._hostAlias,
                log,
                maxFlows,
                idleTimeout,
            )
        self.flows = self._echo.flows if self._echo else FlowTable(maxFlows, idleTimeout)

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
            if self._echo is not None:
                ident, sequence = echoID(message)
                self._echo.forward(header, ident, sequence, message.payload, bytes(payload[:8]))
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

    def guestDetached(self, guestIP):
        """
        Close the echo flows of a guest that went away.
        """
        if self._echo is not None:
            self._echo.guestDetached(guestIP)

    def close(self):
        if self._echo is not None:
            self._echo.close()
