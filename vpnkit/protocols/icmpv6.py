# -*- test-case-name: tests.test_icmpv6 -*-
"""
ICMPv6: Neighbor Discovery for the router vpnkit plays, echo, and the
errors vpnkit sends to guests.

Neighbor Discovery (the answers are L{vpnkit.protocols.ndp}'s pure
functions): a Router Solicitation is answered with the Router
Advertisement (to the asker, or to all nodes when it has no address yet);
the same advertisement goes to the all-nodes group of every guest that
speaks IPv6 (one that sent an IPv6 datagram: guests that never do see
none) every C{raInterval} seconds, faster (at most 16 s apart) for the
first three after a guest starts, and shortly after its first datagram to
each guest that starts (in case its solicitation went unheard).  A Neighbor
Solicitation for one of vpnkit's addresses (router link-local, gateway,
host alias) is answered with the server MAC; one for another guest's
address (as the switch learned it) with that guest's MAC, without the
override flag, so that the guest's own answer wins; a duplicate address
probe is only ever answered for vpnkit's own addresses.

Echo requests to vpnkit's addresses are answered here; to any other
address the destination rule allows, they are sent from the host through
an unprivileged ICMPv6 ping socket per (guest, identifier), and only the
real replies come back, the guest's identifier restored, as
L{vpnkit.protocols.icmp} does for IPv4.

The errors (L{vpnkit.interfaces.IICMPErrors} for IPv6, and those the IPv6
layer needs) quote as much of the invoking datagram as fits in 1280 bytes;
none is sent about an ICMPv6 error, to a multicast or unspecified source,
or (Packet Too Big and unrecognized options aside) about a datagram sent
to a multicast group (RFC 4443 2.4); they are rate-limited per guest.
"""

from zope.interface import implementer

from vpnkit.interfaces import IICMPErrors, IIPReceiver
from vpnkit.log import logger
from vpnkit.protocols import ndp
from vpnkit.protocols.destinations import refusal6
from vpnkit.protocols.ip import ICMPV6_CODES
from vpnkit.protocols.echo import ICMPV6_ECHO, EchoForwarder
from vpnkit.protocols.flowtable import FlowTable
from vpnkit.protocols.udpnat import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FLOWS, GuestRateLimit
from vpnkit.wire import ChecksumError, ParseError
from vpnkit.wire.icmpv6 import (
    DEST_UNREACHABLE,
    MAX_INVOKING,
    PACKET_TOO_BIG,
    PROBLEM_OPTION,
    TIME_EXCEEDED,
    DestinationUnreachable,
    EchoReply,
    EchoRequest,
    NeighborSolicitation,
    PacketTooBig,
    ParameterProblem,
    RouterSolicitation,
    TimeExceeded,
    emitICMPv6,
    parseICMPv6,
)
from vpnkit.wire.ipv6 import (
    ALL_NODES,
    HEADER_LENGTH,
    MIN_MTU,
    NEXT_ICMPV6,
    UNSPECIFIED,
    buildHeader,
    isMulticast,
    multicastMAC,
    packIPv6,
    parseExtensions,
)

__all__ = ["ICMPv6Layer", "FIRST_ADVERTISEMENT_DELAY"]

log = logger("vpnkit.icmpv6")

_ND_HOP_LIMIT = 255
_ETHERTYPE = b"\x86\xdd"
_ALL_NODES_MAC = multicastMAC(ALL_NODES)
_LOCALHOST = "::1"
# Echo requests vpnkit refuses to pass to the host (destinations.refusal6),
# by refusal: an address of the link nobody answers for (address
# unreachable), or policy (administratively prohibited).  Multicast gets
# nothing.
_REFUSAL_CODES = {"SUBNET": 3, "RESERVED": 1, "LOCAL": 1}
# How soon after a guest's first IPv6 datagram it gets its own
# advertisement: after its solicitation's answer, short enough not to be
# noticed.
FIRST_ADVERTISEMENT_DELAY = 0.5


def _invoking(header, quote):
    """
    The start of a datagram whose (handed-up) header and first payload
    bytes are known, as an error quotes it.
    """
    head = buildHeader(
        header.src,
        header.dst,
        header.nextHeader,
        header.payloadLength,
        header.hopLimit,
        header.trafficClass,
        header.flowLabel,
    )
    return (head + bytes(quote))[:MAX_INVOKING]


def _aboutError(invoking):
    """
    Whether a datagram (header first) is an ICMPv6 error message, about
    which no error may be sent (RFC 4443 2.4 e.1).
    """
    if len(invoking) < HEADER_LENGTH + 1:
        return False
    try:
        extensions = parseExtensions(invoking[6], invoking[HEADER_LENGTH:])
    except ParseError:
        return False
    if extensions.upperLayer != NEXT_ICMPV6:
        return False
    if extensions.fragment is not None and extensions.fragment.offset:
        return False
    start = HEADER_LENGTH + extensions.offset
    return len(invoking) > start and invoking[start] < 128


class _Neighbors:
    """
    The other guests' addresses, as L{ndp.answerNeighborSolicitation} asks:
    a mapping from packed address to MAC, read from the switch.
    """

    def __init__(self, switch):
        self._switch = switch

    def get(self, address, default=None):
        port = self._switch.portForIP(address)
        if port is None or port.mac is None:
            return default
        return port.mac


@implementer(IIPReceiver, IICMPErrors)
class ICMPv6Layer:
    """
    @param config: the L{vpnkit.config.StackConfig}, whose C{ipv6} is set.
    @param ipv6: the L{vpnkit.protocols.ipv6.IPv6Layer} it sends through.
    @param switch: the switch (neighbours, ports for advertisements).
    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets} echo is
        forwarded through, or C{None} not to forward it.
    @param clock: the L{IReactorTime} of the advertisement timer, the echo
        flows and the error rate limit.
    @param searchDomains: called for the DNS search list to advertise.
    """

    def __init__(
        self,
        config,
        ipv6,
        switch,
        counters,
        sockets=None,
        clock=None,
        searchDomains=tuple,
        maxFlows=DEFAULT_MAX_FLOWS,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self._config = config
        plan = self._plan = config.ipv6
        self._gateway = plan.gatewayPacked
        self._hostAlias = plan.hostAliasPacked
        self._routerLinkLocal = plan.routerLinkLocalPacked
        self._local = plan.localAddresses
        self._serverMAC = config.serverMAC
        self._ipv6 = ipv6
        self._switch = switch
        self._neighbors = _Neighbors(switch)
        self._counters = counters.icmpv6
        self._ipv6Counters = counters.ipv6
        self._clock = clock
        self._searchDomains = searchDomains
        self._echoForwarder = None
        if sockets is not None:
            self._echoForwarder = EchoForwarder(
                ICMPV6_ECHO,
                ipv6,
                self,
                sockets,
                clock,
                self._counters,
                self._hostAlias,
                log,
                maxFlows,
                idleTimeout,
            )
        self.flows = (
            self._echoForwarder.flows if self._echoForwarder else FlowTable(maxFlows, idleTimeout)
        )
        self._errorLimit = GuestRateLimit()
        self._timer = None
        self._fast = 0
        self._firstTimers = {}
        self._stopped = False

    # -- receive -----------------------------------------------------------

    def ipPayloadReceived(self, header, payload):
        counters = self._counters
        counters.received += 1
        try:
            message = parseICMPv6(payload, header.src, header.dst)
        except ChecksumError:
            counters.badChecksum += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        kind = type(message)
        if kind is EchoRequest:
            self._echo(header, message, payload)
        elif kind is NeighborSolicitation:
            self._neighborSolicitation(header, message)
        elif kind is RouterSolicitation:
            self._routerSolicitation(header, message)
        else:
            # Advertisements, errors and replies from guests, MLD: nothing
            # for a router with no state to learn.
            counters.ignored += 1

    def _unanswered(self, reason):
        counter = reason.value
        setattr(self._counters, counter, getattr(self._counters, counter) + 1)

    def _sendND(self, src, message, dst, dstMAC):
        data = emitICMPv6(message, src, dst)
        return self._ipv6.sendIP(src, dst, NEXT_ICMPV6, data, _ND_HOP_LIMIT, dstMAC)

    def _routerSolicitation(self, header, solicitation):
        counters = self._counters
        counters.routerSolicitations += 1
        askerMAC = None
        if header.src != UNSPECIFIED:
            askerMAC = self._neighbors.get(header.src)
            if askerMAC is None:
                counters.ndpInvalid += 1
                return
        answer = ndp.answerRouterSolicitation(
            header, solicitation, askerMAC, self._plan, self._searchDomains()
        )
        if isinstance(answer, ndp.Unanswered):
            self._unanswered(answer)
            return
        advertisement, dst, dstMAC = answer
        if self._sendND(self._routerLinkLocal, advertisement, dst, dstMAC):
            counters.routerAdvertisementsSent += 1

    def _neighborSolicitation(self, header, solicitation):
        counters = self._counters
        counters.neighborSolicitations += 1
        askerMAC = None
        if header.src != UNSPECIFIED:
            askerMAC = self._neighbors.get(header.src)
            if askerMAC is None:
                counters.ndpInvalid += 1
                return
        answer = ndp.answerNeighborSolicitation(
            header, solicitation, askerMAC, self._plan, self._neighbors
        )
        if isinstance(answer, ndp.Unanswered):
            self._unanswered(answer)
            return
        advertisement, dst, dstMAC = answer
        target = advertisement.target
        # From the address asked about when it is ours; a proxied answer
        # comes from the router's link-local address.
        src = target if target in self._local else self._routerLinkLocal
        if self._sendND(src, advertisement, dst, dstMAC):
            counters.neighborAdvertisements += 1

    # -- Router Advertisements on a timer ----------------------------------

    def _advertisement(self):
        advertisement = ndp.routerAdvertisement(self._plan, self._searchDomains())
        return emitICMPv6(advertisement, self._routerLinkLocal, ALL_NODES)

    def advertise(self):
        """
        Send the Router Advertisement to the all-nodes group of every guest
        that speaks IPv6, now.
        """
        frame = None
        for port in self._switch.ports():
            if port.speaksIPv6:
                if frame is None:
                    frame = self._advertisementFrame()
                port.transmit(frame)
                self._counters.routerAdvertisementsSent += 1
                self._counters.unsolicitedAdvertisements += 1

    def _advertisementFrame(self):
        """
        The unsolicited advertisement as a frame to the all-nodes group: to
        be sent port by port (a port's MAC may not be known yet).
        """
        data = self._advertisement()
        ip = buildHeader(self._routerLinkLocal, ALL_NODES, NEXT_ICMPV6, len(data), _ND_HOP_LIMIT)
        return b"".join((_ALL_NODES_MAC, self._serverMAC, _ETHERTYPE, ip, data))

    def _interval(self):
        if self._fast:
            return min(ndp.MAX_INITIAL_RTR_ADVERT_INTERVAL, self._plan.raInterval)
        return self._plan.raInterval

    def _arm(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._interval(), self._tick)

    def _tick(self):
        self._timer = None
        if self._fast:
            self._fast -= 1
        self.advertise()
        self._arm()

    def portSpeaksIPv6(self, port):
        """
        A guest sent its first IPv6 datagram: send it an advertisement of
        its own shortly, and the next few sooner than the interval (RFC
        4861 6.2.4 allows the first three at most 16 s apart).
        """
        if self._stopped:
            return
        self._fast = ndp.MAX_INITIAL_RTR_ADVERTISEMENTS
        if self._timer is None or self._interval() < self._timer.getTime() - self._clock.seconds():
            self._arm()
        old = self._firstTimers.pop(port, None)
        if old is not None and old.active():
            old.cancel()
        self._firstTimers[port] = self._clock.callLater(
            FIRST_ADVERTISEMENT_DELAY, self._advertiseTo, port
        )

    def portDetached(self, port):
        """
        Forget a guest that went away: its pending advertisement.
        """
        timer = self._firstTimers.pop(port, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _advertiseTo(self, port):
        self._firstTimers.pop(port, None)
        if not port.attached:
            return
        port.transmit(self._advertisementFrame())
        self._counters.routerAdvertisementsSent += 1
        self._counters.unsolicitedAdvertisements += 1

    def stop(self):
        """
        Stop the advertisement timer and let go of the echo flows: nothing
        is left in the reactor.
        """
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for timer in self._firstTimers.values():
            if timer.active():
                timer.cancel()
        self._firstTimers.clear()
        self.close()

    # -- echo ----------------------------------------------------------------

    def _echo(self, header, message, payload):
        counters = self._counters
        dst = header.dst
        if dst in self._local:
            counters.echoRequests += 1
            reply = EchoReply(message.ident, message.sequence, message.data)
            data = emitICMPv6(reply, dst, header.src)
            if self._ipv6.sendIP(dst, header.src, NEXT_ICMPV6, data):
                counters.echoReplies += 1
            return
        reason = refusal6(self._config, dst)
        if reason is not None:
            counters.echoRefused += 1
            code = _REFUSAL_CODES.get(reason.name)
            if code is not None:
                self._sendError(
                    self._gateway,
                    header,
                    _invoking(header, payload),
                    DestinationUnreachable(code, b""),
                )
            return
        if self._echoForwarder is None:
            counters.unsupported += 1
            return
        self._echoForwarder.forward(
            header, message.ident, message.sequence, message.data, bytes(payload[:8])
        )

    def guestDetached(self, guestIP):
        """
        Close the echo flows of a guest address that went away.
        """
        self._errorLimit.forget(guestIP)
        if self._echoForwarder is not None:
            self._echoForwarder.guestDetached(guestIP)

    def close(self):
        if self._echoForwarder is not None:
            self._echoForwarder.close()

    # -- errors (IICMPErrors, and the IPv6 layer's) ---------------------------

    def _sendError(self, src, header, invoking, message, toGroup=False):
        """
        Send an error about a datagram (its C{header}, and its start
        C{invoking}, header first) to its source, from C{src}, unless RFC
        4443 2.4 forbids it or the guest's rate is spent.

        @param message: the error, its C{invoking} to be filled in.
        @param toGroup: the error may be sent about a datagram to a
            multicast group (Packet Too Big, unrecognized option).
        @return: whether it was sent.
        """
        counters = self._counters
        if (
            isMulticast(header.src)
            or header.src == UNSPECIFIED
            or (isMulticast(header.dst) and not toGroup)
            or _aboutError(invoking)
        ):
            counters.errorsSuppressed += 1
            return False
        if not self._errorLimit.allow(header.src, self._clock.seconds()):
            counters.errorsLimited += 1
            return False
        invoking = bytes(invoking[:MAX_INVOKING])
        kind = type(message)
        if kind is DestinationUnreachable:
            message = DestinationUnreachable(message.code, invoking)
        elif kind is PacketTooBig:
            message = PacketTooBig(message.mtu, invoking)
        elif kind is TimeExceeded:
            message = TimeExceeded(message.code, invoking)
        else:
            message = ParameterProblem(message.code, message.pointer, invoking)
        data = emitICMPv6(message, src, header.src)
        if not self._ipv6.sendIP(src, header.src, NEXT_ICMPV6, data):
            return False
        counters.errorsSent += 1
        return True

    def sendUnreachable(self, reason, header, quote):
        """
        ICMPv6 destination unreachable (type 1, the code for C{reason})
        from the gateway, quoting the datagram's header and C{quote}.
        """
        code = ICMPV6_CODES[reason]
        sent = self._sendError(
            self._gateway, header, _invoking(header, quote), DestinationUnreachable(code, b"")
        )
        if sent:
            self._counters.unreachableSent += 1
        return sent

    def sendHostError(self, error, header, quote):
        """
        What the host heard about a guest's datagram, as ICMPv6: from the
        router that said so (the host's C{::1} is the host alias), or the
        gateway; a local C{EMSGSIZE} is Packet Too Big from the gateway.
        """
        invoking = _invoking(header, quote)
        if error.origin == "local":
            if error.info <= 0:
                return False
            return self._sendError(
                self._gateway, header, invoking, PacketTooBig(max(error.info, MIN_MTU), b""), True
            )
        if error.origin != "icmp6":
            return False
        source = self._gateway
        if error.offender is not None:
            if error.offender == _LOCALHOST and self._hostAlias is not None:
                source = self._hostAlias
            else:
                try:
                    source = packIPv6(error.offender.split("%", 1)[0])
                except ValueError:
                    source = self._gateway
        if error.icmpType == DEST_UNREACHABLE:
            message = DestinationUnreachable(error.icmpCode, b"")
        elif error.icmpType == TIME_EXCEEDED:
            message = TimeExceeded(error.icmpCode, b"")
        elif error.icmpType == PACKET_TOO_BIG:
            return self._sendError(
                source, header, invoking, PacketTooBig(max(error.info, MIN_MTU), b""), True
            )
        else:
            return False
        return self._sendError(source, header, invoking, message)

    def sendPacketTooBig(self, header, invoking, mtu):
        """
        Packet Too Big from the gateway: the guest's datagram (C{invoking},
        header first) does not fit the next link's C{mtu}.
        """
        sent = self._sendError(self._gateway, header, invoking, PacketTooBig(mtu, b""), True)
        if sent:
            self._ipv6Counters.packetTooBigSent += 1
        return sent

    def sendParameterProblem(self, header, invoking, code, pointer):
        """
        Parameter Problem (C{code}, C{pointer} into C{invoking}) from the
        gateway: the guest's datagram was discarded for a field in error.
        """
        sent = self._sendError(
            self._gateway,
            header,
            invoking,
            ParameterProblem(code, pointer, b""),
            toGroup=code == PROBLEM_OPTION,
        )
        if sent:
            self._ipv6Counters.parameterProblemSent += 1
        return sent

    def sendTimeExceeded(self, header, invoking, code, src):
        """
        Time Exceeded (C{code}: 0 hop limit, 1 reassembly) from C{src}.
        """
        return self._sendError(src, header, invoking, TimeExceeded(code, b""))
