# -*- test-case-name: tests.test_ipv4 -*-
"""
The IPv4 layer: header checks, reassembly of fragments, demultiplexing by
protocol, routing between guests, and building (and when they exceed the
MTU, fragmenting) the datagrams vpnkit sends.

vpnkit accepts datagrams for I{any} destination that is not another guest:
the gateway, the host alias and every remote host are all impersonated
here, behind the server MAC.  Fragments for vpnkit are reassembled (see
L{vpnkit.protocols.fragments}); fragments for another guest are routed as
they are, as a router would.
"""

from dataclasses import replace

from zope.interface import implementer

from vpnkit.interfaces import IEthernetPayloadReceiver, IIPSender
from vpnkit.log import logger
from vpnkit.protocols import fragments
from vpnkit.protocols.reassembly import Reassembly
from vpnkit.wire import ChecksumError, ParseError, TruncatedError
from vpnkit.wire.checksum import finishChecksum
from vpnkit.wire.ethernet import ETHERTYPE_IPV4
from vpnkit.wire.icmp import DEST_UNREACHABLE, TIME_EXCEEDED, ICMPMessage, emitICMP
from vpnkit.wire.ipv4 import (
    FLAG_DF,
    FLAG_MF,
    PROTO_ICMP,
    PROTO_TCP,
    IPv4Header,
    buildHeader,
    emitIPv4,
    parseIPv4,
    quoteHeader,
)

__all__ = ["IPv4Layer", "MAX_PAYLOAD"]

log = logger("vpnkit.ipv4")

_ETHERTYPE = ETHERTYPE_IPV4.to_bytes(2, "big")
MAX_PAYLOAD = 0xFFFF - 20
# ICMP codes (RFC 792).
_FRAG_NEEDED = 4
_REASSEMBLY_TIME_EXCEEDED = 1


@implementer(IEthernetPayloadReceiver, IIPSender)
class IPv4Layer:
    """
    @param switch: the L{vpnkit.protocols.switch.EthernetSwitch}.
    @param reactor: the L{IReactorTime} that times reassembly out.
    @param reassembler: a L{fragments.Reassembler} (its limits); a default
        one when not given.
    """

    def __init__(self, config, switch, counters, reactor=None, reassembler=None):
        self._serverMAC = config.serverMAC
        self._gateway = config.gatewayPacked
        self._mtu = config.mtu
        self._switch = switch
        self._counters = counters.ipv4
        self._protocols = {}
        self.reassembler = reassembler if reassembler is not None else fragments.Reassembler()
        self._reassembly = Reassembly(self.reassembler, self._counters, reactor, self._gaveUp)
        self._ident = 0

    def addProto(self, number, receiver):
        """
        Deliver datagrams of IP protocol C{number} to C{receiver} (an
        L{vpnkit.interfaces.IIPReceiver}).
        """
        if number in self._protocols:
            raise ValueError(f"IP protocol {number} already registered")
        self._protocols[number] = receiver

    # -- receive -----------------------------------------------------------

    def ethernetPayloadReceived(self, header, payload):
        counters = self._counters
        counters.received += 1
        try:
            ip, data = parseIPv4(payload)
        except TruncatedError:
            counters.truncated += 1
            return
        except ChecksumError:
            counters.badChecksum += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        other = self._switch.portForIP(ip.dst)
        if other is not None:
            # Only a frame sent to our MAC is ours to route; a broadcast one
            # already reached that guest through the switch.  Fragments are
            # routed as they are: routers do not reassemble.
            if header.dst == self._serverMAC:
                self._forward(other, ip, data)
            else:
                counters.notRouted += 1
            return
        if ip.flags & FLAG_MF or ip.fragmentOffset:
            # A fragment (IPv4Header.isFragment, inline: every datagram
            # asks).
            reassembly = self._reassembly
            evicted = self.reassembler.evicted
            outcome, whole = self.reassembler.add(ip, data, reassembly.now())
            reassembly.settled(outcome, evicted)
            if whole is None:
                return
            ip, data = whole
        receiver = self._protocols.get(ip.protocol)
        if receiver is None:
            counters.unsupportedProtocol += 1
            return
        receiver.ipPayloadReceived(ip, data)

    def _forward(self, port, ip, data):
        """
        Route a datagram from one guest to another (a guest that sent it to
        the gateway's MAC rather than the peer's), fragmenting it when it
        is larger than the MTU and allowed to be fragmented.
        """
        counters = self._counters
        if port.mac is None:
            counters.noRoute += 1
            return
        if ip.ttl <= 1:
            counters.ttlExpired += 1
            return
        if ip.headerLength + len(data) > self._mtu and ip.protocol == PROTO_TCP:
            # Only a tap guest with segmentation offload sends TCP beyond
            # the MTU: cut it into segments (or hand it on whole to another
            # such guest), as its NIC would have.
            counters.forwarded += 1
            port.sendPayload(_ETHERTYPE, emitIPv4(replace(ip, ttl=ip.ttl - 1), data))
            return
        if ip.headerLength + len(data) > self._mtu and ip.flags & FLAG_DF:
            self.sendFragmentationNeeded(ip, data[:8], self._mtu)
            return
        ip = replace(ip, ttl=ip.ttl - 1)
        if ip.headerLength + len(data) > self._mtu:
            datagrams = fragments.fragment(ip, data, self._mtu)
            counters.fragmentedDatagrams += 1
            counters.fragmentsSent += len(datagrams)
        else:
            datagrams = [emitIPv4(ip, data)]
        counters.forwarded += 1
        for datagram in datagrams:
            port.sendPayload(_ETHERTYPE, datagram)

    # -- reassembly --------------------------------------------------------------

    def stop(self):
        """
        Drop every partial datagram and the reassembly timer.
        """
        self._reassembly.stop()

    def _gaveUp(self, expired):
        if expired.first is not None:
            # RFC 792/1122: fragment zero arrived, so the sender is told,
            # by the host that gave up reassembling (the one it addressed,
            # which vpnkit stands for).
            first = expired.first
            self._counters.timeExceededSent += 1
            self._sendError(
                first.dst, TIME_EXCEEDED, _REASSEMBLY_TIME_EXCEEDED, first, expired.quote
            )

    # -- ICMP errors the IP layer itself sends ------------------------------------

    def sendFragmentationNeeded(self, header, quote, mtu):
        """
        Tell a guest that its datagram (C{header}, the first 8 payload
        bytes C{quote}) cannot go further unfragmented while it has DF set:
        ICMP destination unreachable, fragmentation needed, with the
        next-hop C{mtu} (RFC 1191), from the gateway.
        """
        self._counters.fragNeededSent += 1
        self._sendError(
            self._gateway, DEST_UNREACHABLE, _FRAG_NEEDED, header, quote, mtu.to_bytes(4, "big")
        )

    def _sendError(self, src, type_, code, header, quote, rest=b"\0\0\0\0"):
        message = ICMPMessage(type_, code, 0, rest, quoteHeader(header) + bytes(quote[:8]))
        self.sendIP(src, header.src, PROTO_ICMP, emitICMP(message))

    # -- send --------------------------------------------------------------

    def sendIP(
        self, src, dst, protocol, payload, ttl=64, dstMAC=None, tail=b"", partialChecksum=None
    ):
        counters = self._counters
        partial = None if partialChecksum is None else (20, partialChecksum)
        if dstMAC is not None:
            # To a guest known only by its MAC (DHCP): routed by the switch.
            target = self._switch.toMAC(dstMAC)
        else:
            target = self._switch.portForIP(dst)
            if target is None or target.mac is None:
                counters.noRoute += 1
                return False
        segmentLimit = target.segmentLimit
        transmit = target.sendPayload
        n = len(payload) + len(tail)
        if 20 + n <= self._mtu or (
            # A TCP super-segment for a link with segmentation offload: the
            # guest's kernel takes it whole.
            protocol == PROTO_TCP
            and n <= segmentLimit + 60
        ):
            header = buildHeader(src, dst, protocol, n, ttl, 0, FLAG_DF)
            counters.sent += 1
            if tail or partial is not None:
                # The tail (a view of a send buffer) is handed on uncopied.
                transmit(_ETHERTYPE, header + payload, tail, partial)
            else:
                transmit(_ETHERTYPE, header, payload)
            return True
        if n > MAX_PAYLOAD:
            counters.tooBig += 1
            return False
        if partialChecksum is not None:
            payload = finishChecksum(payload, 0, partialChecksum, tail)
        if tail:
            payload = b"".join((payload, tail))
        # Larger than the link: fragments (the reference drops these).
        self._ident = (self._ident + 1) & 0xFFFF
        whole = IPv4Header(0, 20 + n, self._ident, 0, 0, ttl, protocol, 0, src, dst)
        datagrams = fragments.fragment(whole, payload, self._mtu)
        counters.sent += 1
        counters.fragmentedDatagrams += 1
        counters.fragmentsSent += len(datagrams)
        for datagram in datagrams:
            transmit(_ETHERTYPE, datagram)
        return True
