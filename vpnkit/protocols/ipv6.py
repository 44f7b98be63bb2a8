# -*- test-case-name: tests.test_ipv6 -*-
"""
The IPv6 layer: header and extension header checks, reassembly of
fragments, demultiplexing by upper-layer protocol, routing between guests,
and building (and when they exceed the MTU, fragmenting) the datagrams
vpnkit sends.

As the IPv4 layer does, vpnkit accepts datagrams for any unicast
destination that is not another guest's: the gateway, the host alias and
every remote host are impersonated here, behind the server MAC.  Of the
link-local addresses only the router's is vpnkit's; of the multicast
groups it takes all-nodes, all-routers, the DHCPv6 servers' group and the
solicited-node groups (which the Neighbor Discovery answers sort out).

Extension headers (RFC 8200 4): hop-by-hop and destination options are
skipped, a routing header with segments left is refused (type 0 as RFC
5095 asks) and, where RFC 8200 says so, answered with an ICMPv6 Parameter
Problem (through the L{IPv6Errors} the ICMPv6 layer provides).  Fragments
for vpnkit are reassembled under the same bounds as IPv4's
(L{vpnkit.protocols.fragments.Reassembler.addFragment}), with IPv6's 60
second timeout; fragments for another guest are routed as they are.  An
upper-layer receiver is handed the fixed header with C{nextHeader} the
upper-layer protocol and C{payloadLength} its payload's, as though there
had been no extension headers.
"""

from dataclasses import replace

from zope.interface import implementer

from vpnkit.interfaces import IEthernetPayloadReceiver, IIPSender
from vpnkit.log import logger
from vpnkit.protocols import fragments
from vpnkit.protocols.reassembly import Reassembly
from vpnkit.wire import ParseError, TruncatedError
from vpnkit.wire.checksum import finishChecksum
from vpnkit.wire.ethernet import ETHERTYPE_IPV6
from vpnkit.wire.ipv6 import (
    ALL_NODES,
    ALL_ROUTERS,
    HEADER_LENGTH,
    NEXT_FRAGMENT,
    NEXT_NONE,
    NEXT_TCP,
    ExtensionHeaderError,
    FragmentHeader,
    RoutingHeaderType0Error,
    buildHeader,
    emitFragmentHeader,
    isLinkLocal,
    isMulticast,
    isSolicitedNodeAddress,
    multicastMAC,
    packIPv6,
    parseExtensions,
    parseIPv6,
)

__all__ = ["IPv6Layer", "REASSEMBLY_TIMEOUT", "MAX_PAYLOAD", "ALL_DHCP_SERVERS"]

log = logger("vpnkit.ipv6")

_ETHERTYPE = ETHERTYPE_IPV6.to_bytes(2, "big")
# RFC 8200 4.5: a datagram not reassembled within 60 seconds is abandoned.
REASSEMBLY_TIMEOUT = 60.0
MAX_PAYLOAD = 0xFFFF
# All_DHCP_Relay_Agents_and_Servers (RFC 8415 7.1).
ALL_DHCP_SERVERS = packIPv6("ff02::1:2")
# ICMPv6 codes the layer itself needs (RFC 4443 3.3, 3.4).
_HOP_LIMIT_EXCEEDED = 0
_REASSEMBLY_TIME_EXCEEDED = 1
_UNRECOGNIZED_NEXT_HEADER = 1
_FRAGMENT_HEADER = 8


@implementer(IEthernetPayloadReceiver, IIPSender)
class IPv6Layer:
    """
    @param config: the L{vpnkit.config.StackConfig}, whose C{ipv6} is set.
    @param switch: the L{vpnkit.protocols.switch.EthernetSwitch}.
    @param reactor: the L{IReactorTime} that times reassembly out.
    @param reassembler: a L{fragments.Reassembler} (its limits); a default
        one (60 s) when not given.

    @ivar errors: the ICMPv6 layer (C{sendParameterProblem},
        C{sendTimeExceeded}, C{sendPacketTooBig}), set once it exists;
        without it the layer's errors are only counted.
    """

    def __init__(self, config, switch, counters, reactor=None, reassembler=None):
        plan = config.ipv6
        self._plan = plan
        self._serverMAC = config.serverMAC
        self._gateway = plan.gatewayPacked
        self._routerLinkLocal = plan.routerLinkLocalPacked
        self._groups = frozenset((ALL_NODES, ALL_ROUTERS, ALL_DHCP_SERVERS))
        self._mtu = plan.mtu
        self._switch = switch
        self._counters = counters.ipv6
        self._protocols = {}
        self.reassembler = (
            reassembler
            if reassembler is not None
            else fragments.Reassembler(timeout=REASSEMBLY_TIMEOUT)
        )
        self._reassembly = Reassembly(self.reassembler, self._counters, reactor, self._gaveUp)
        self._ident = 0
        self.errors = None

    def addProto(self, number, receiver):
        """
        Deliver datagrams whose upper-layer protocol is C{number} to
        C{receiver} (an L{vpnkit.interfaces.IIPReceiver}).
        """
        if number in self._protocols:
            raise ValueError(f"IPv6 next header {number} already registered")
        self._protocols[number] = receiver

    # -- receive -----------------------------------------------------------

    def _accepts(self, dst):
        """
        Whether vpnkit takes a datagram for C{dst} that is no guest's.
        """
        if isMulticast(dst):
            return dst in self._groups or isSolicitedNodeAddress(dst)
        return not isLinkLocal(dst) or dst == self._routerLinkLocal

    def ethernetPayloadReceived(self, header, payload):
        counters = self._counters
        counters.received += 1
        try:
            ip, data = parseIPv6(payload)
        except TruncatedError:
            counters.truncated += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        if isMulticast(ip.src):
            counters.badSource += 1
            return
        dst = ip.dst
        if not isMulticast(dst):
            other = self._switch.portForIP(dst)
            if other is not None:
                # Only a frame sent to our MAC is ours to route (as IPv4).
                if header.dst == self._serverMAC:
                    self._forward(other, ip, data, payload)
                else:
                    counters.notRouted += 1
                return
        if not self._accepts(dst):
            counters.notForUs += 1
            return
        try:
            extensions = parseExtensions(ip.nextHeader, data)
        except TruncatedError:
            counters.truncated += 1
            return
        except ExtensionHeaderError as e:
            self._refuseExtension(e, ip, payload)
            return
        offset = extensions.offset
        fragment = extensions.fragment
        if fragment is not None:
            whole = self._fragment(ip, data, payload, extensions)
            if whole is None:
                return
            ip, data, upper = whole
        elif offset:
            upper = extensions.upperLayer
            data = data[offset:]
            ip = replace(ip, nextHeader=upper, payloadLength=len(data))
        else:
            upper = ip.nextHeader
        receiver = self._protocols.get(upper)
        if receiver is None:
            counters.unsupportedProtocol += 1
            if upper != NEXT_NONE and not offset and fragment is None and self.errors:
                # RFC 8200 4: unrecognized next header, pointing at the
                # field that named it (only the fixed header's is known
                # here without walking again).
                self.errors.sendParameterProblem(ip, payload, _UNRECOGNIZED_NEXT_HEADER, 6)
            return
        receiver.ipPayloadReceived(ip, data)

    def _refuseExtension(self, error, ip, packet):
        counters = self._counters
        counters.extensionDropped += 1
        if isinstance(error, RoutingHeaderType0Error):
            counters.routingType0 += 1
        if (
            error.icmp
            and not (error.unlessMulticast and isMulticast(ip.dst))
            and self.errors is not None
        ):
            self.errors.sendParameterProblem(ip, packet, error.code, error.pointer)

    def _fragment(self, ip, data, packet, extensions):
        """
        Take a datagram with a fragment header.

        @return: C{(header, upperData, upperLayer)} of the whole datagram,
            or C{None} while it is incomplete (or was dropped).
        """
        counters = self._counters
        fragment = extensions.fragment
        offset = extensions.offset
        # Everything before the fragment header: the unfragmentable part.
        unfragmentable = offset - _FRAGMENT_HEADER
        if fragment.isAtomic:
            # RFC 6946: a whole datagram, processed in isolation.
            counters.atomicFragments += 1
            body = data[offset:]
            start = HEADER_LENGTH + offset
            nextHeader = fragment.nextHeader
        else:
            length = len(data) - offset
            if (fragment.more and length % 8) or (
                unfragmentable + fragment.offset + length > MAX_PAYLOAD
            ):
                # RFC 8200 4.5: a middle fragment not a multiple of 8
                # bytes (pointing at the payload length), or one reaching
                # beyond 65,535 bytes (pointing at its offset).
                counters.fragmentMalformed += 1
                if self.errors is not None:
                    pointer = 4 if length % 8 and fragment.more else HEADER_LENGTH + offset - 6
                    self.errors.sendParameterProblem(ip, packet, 0, pointer)
                return None
            reassembler = self.reassembler
            evicted = reassembler.evicted
            now = self._reassembly.now()
            first = (ip, bytes(packet[: min(HEADER_LENGTH + offset, 1232)]), fragment.nextHeader)
            outcome, whole = reassembler.addFragment(
                (ip.src, ip.dst, fragment.ident),
                ip.src,
                fragment.offset,
                fragment.more,
                unfragmentable,
                first,
                data[offset:],
                now,
            )
            self._reassembly.settled(outcome, evicted)
            if whole is None:
                return None
            (ip, _, nextHeader), body = whole
            start = HEADER_LENGTH + offset
        try:
            rest = parseExtensions(nextHeader, body, start)
        except TruncatedError:
            counters.truncated += 1
            return None
        except ExtensionHeaderError as e:
            self._refuseExtension(e, ip, packet)
            return None
        if rest.fragment is not None:
            # A fragment header inside a fragment: nothing sends that.
            counters.fragmentMalformed += 1
            return None
        upper = rest.upperLayer
        body = body[rest.offset :]
        return replace(ip, nextHeader=upper, payloadLength=len(body)), body, upper

    def _forward(self, port, ip, data, packet):
        """
        Route a datagram from one guest to another (a guest that sent it to
        the router's MAC rather than the peer's): hop limit down by one;
        one larger than the MTU gets Packet Too Big (routers never fragment
        IPv6), a TCP super-segment from a segmentation-offload tap aside.
        """
        counters = self._counters
        if port.mac is None:
            counters.noRoute += 1
            return
        if ip.hopLimit <= 1:
            counters.hopLimitExceeded += 1
            if self.errors is not None:
                self.errors.sendTimeExceeded(ip, packet, _HOP_LIMIT_EXCEEDED, self._gateway)
            return
        if HEADER_LENGTH + len(data) > self._mtu and ip.nextHeader != NEXT_TCP:
            counters.tooBig += 1
            if self.errors is not None:
                self.errors.sendPacketTooBig(ip, packet, self._mtu)
            return
        counters.forwarded += 1
        head = buildHeader(
            ip.src, ip.dst, ip.nextHeader, len(data), ip.hopLimit - 1, ip.trafficClass, ip.flowLabel
        )
        port.sendPayload(_ETHERTYPE, head, data)

    # -- reassembly --------------------------------------------------------------

    def stop(self):
        """
        Drop every partial datagram and the reassembly timer.
        """
        self._reassembly.stop()

    def _gaveUp(self, expired):
        if expired.first is not None and self.errors is not None:
            # RFC 8200 4.5: fragment zero arrived, so the source is told,
            # from the address it wrote to (which vpnkit stands for),
            # quoting that fragment.
            ip, head, _ = expired.first
            self._counters.timeExceededSent += 1
            self.errors.sendTimeExceeded(ip, head + expired.quote, _REASSEMBLY_TIME_EXCEEDED, ip.dst)

    # -- send --------------------------------------------------------------

    def sendIP(
        self, src, dst, protocol, payload, ttl=64, dstMAC=None, tail=b"", partialChecksum=None
    ):
        counters = self._counters
        partial = None if partialChecksum is None else (HEADER_LENGTH, partialChecksum)
        if dstMAC is None and isMulticast(dst):
            dstMAC = multicastMAC(dst)
        if dstMAC is not None:
            # Multicast (every guest), or a guest known by its MAC.
            target = self._switch.toMAC(dstMAC)
        else:
            target = self._switch.portForIP(dst)
            if target is None or target.mac is None:
                counters.noRoute += 1
                return False
        segmentLimit = target.segmentLimit
        transmit = target.sendPayload
        n = len(payload) + len(tail)
        if HEADER_LENGTH + n <= self._mtu or (
            # A TCP super-segment for a link with segmentation offload.
            protocol == NEXT_TCP
            and n <= segmentLimit + 60
            and n <= MAX_PAYLOAD
        ):
            header = buildHeader(src, dst, protocol, n, ttl)
            counters.sent += 1
            if tail or partial is not None:
                transmit(_ETHERTYPE, header + payload, tail, partial)
            else:
                transmit(_ETHERTYPE, header, payload)
            return True
        if n + _FRAGMENT_HEADER > MAX_PAYLOAD:
            counters.tooBig += 1
            return False
        if partialChecksum is not None:
            payload = finishChecksum(payload, 0, partialChecksum, tail)
        if tail:
            payload = b"".join((payload, tail))
        # vpnkit is the source: it may fragment (RFC 8200 4.5).
        self._ident = (self._ident + 1) & 0xFFFFFFFF
        step = (self._mtu - HEADER_LENGTH - _FRAGMENT_HEADER) // 8 * 8
        view = memoryview(payload)
        pieces = 0
        for start in range(0, n, step):
            chunk = bytes(view[start : start + step])
            more = start + step < n
            head = buildHeader(src, dst, NEXT_FRAGMENT, _FRAGMENT_HEADER + len(chunk), ttl)
            fragmentHeader = emitFragmentHeader(FragmentHeader(protocol, start, more, self._ident))
            transmit(_ETHERTYPE, head + fragmentHeader, chunk)
            pieces += 1
        counters.sent += 1
        counters.fragmentedDatagrams += 1
        counters.fragmentsSent += pieces
        return True
