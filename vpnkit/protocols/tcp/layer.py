# -*- test-case-name: tests.test_tcp_layer -*-
"""
L{TCPLayer}: TCP segments from guests, demultiplexed by 4-tuple, and new
connections accepted only after the host side exists.

A guest's SYN for an unknown flow is held while the L{ITCPRouter} finds
where it goes and dials it (gVisor's forwarder model): a retransmitted
SYN meanwhile is absorbed; success makes vpnkit answer SYN-ACK and proxy the
bytes; refusal (and a connect timeout) becomes RST, an unreachable network
or host becomes ICMP destination unreachable.

The L{TCPLimits} keep a flood of SYNs from exhausting the host's file
descriptors: a SYN from an address no guest holds is dropped (no answer
could reach it), half-open connections (dialling, or in SYN-RECEIVED) have
a budget per guest and in total, where a new SYN evicts the oldest, and
dials in flight and all connections have caps beyond which a SYN gets RST.
"""

import os
from dataclasses import replace
from typing import NamedTuple

from twisted.internet import error
from twisted.internet.defer import fail
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.interfaces import IIPReceiver
from vpnkit.log import GuestLog, logger
from vpnkit.protocols.ip import Unreachable, formatAddress, twistedAddress
from vpnkit.protocols.tcp.config import TCPLimits
from vpnkit.protocols.tcp.connection import TCPConnection
from vpnkit.protocols.tcp.state import State, TCPConfig, TCPControlBlock, refuse, resetFor
from vpnkit.wire import ChecksumError, ParseError
from vpnkit.wire.ipv4 import PROTO_TCP
from vpnkit.wire.tcp import ACK, CHECKSUM_OFFSET, RST, SYN, emitTCPHeader, parseTCP

__all__ = ["Flow", "TCPLayer", "SelfConnectError"]

log = logger("vpnkit.tcp")

ENETUNREACH = 101
EHOSTUNREACH = 113
# The IPv6 header is 20 bytes longer than IPv4's: so much less MSS.
_IPV6_EXTRA = 20


class SelfConnectError(error.ConnectionRefusedError):
    """
    A host dial connected to itself (its local address is its peer
    address: TCP's simultaneous open, when the ephemeral port picked equals
    the destination port on a local address).  Nothing listens there, so
    it is a refusal; L{vpnkit.host.network} raises it, the layer counts it.
    """


class Flow(NamedTuple):
    """
    A guest's connection: its address and port, and the address and port it
    dialled (which vpnkit impersonates).  Addresses are packed: 4 bytes
    for IPv4, 16 for IPv6.
    """

    guestIP: bytes
    guestPort: int
    localIP: bytes
    localPort: int

    def __str__(self):
        return (
            f"{_endpoint(self.guestIP, self.guestPort)} -> "
            f"{_endpoint(self.localIP, self.localPort)}"
        )


def _endpoint(packed, port):
    address = formatAddress(packed)
    return f"[{address}]:{port}" if len(packed) == 16 else f"{address}:{port}"


class _SystemISS:
    """
    Initial sequence numbers from the system's random source (RFC 6528:
    unpredictable), read 4 KiB at a time rather than with a system call
    for each new connection.
    """

    _CHUNK = 4096

    def __init__(self):
        self._pool = b""
        self._next = 0

    def getrandbits(self, bits):
        size = (bits + 7) // 8
        start = self._next
        if start + size > len(self._pool):
            self._pool = os.urandom(self._CHUNK)
            start = 0
        self._next = start + size
        return int.from_bytes(self._pool[start : start + size], "big") >> (8 * size - bits)


class _Pending:
    """
    A SYN waiting for the host connection.
    """

    __slots__ = ("syn", "ipHeader", "quote", "deferred", "cancelled")

    def __init__(self, syn, ipHeader, quote):
        self.syn = syn
        self.ipHeader = ipHeader
        self.quote = quote
        self.deferred = None
        self.cancelled = False


class _HalfOpen:
    """
    The half-open connections (flows), per guest address, oldest first.
    """

    def __init__(self):
        self._byGuest = {}
        self.total = 0

    def __contains__(self, flow):
        flows = self._byGuest.get(flow.guestIP)
        return flows is not None and flow in flows

    def add(self, flow):
        self._byGuest.setdefault(flow.guestIP, {})[flow] = None
        self.total += 1

    def discard(self, flow):
        flows = self._byGuest.get(flow.guestIP)
        if flows is None or flow not in flows:
            return
        del flows[flow]
        self.total -= 1
        if not flows:
            del self._byGuest[flow.guestIP]

    def count(self, guestIP):
        return len(self._byGuest.get(guestIP, ()))

    def oldest(self, guestIP):
        return next(iter(self._byGuest[guestIP]))

    def largestHolder(self):
        return max(self._byGuest, key=lambda guest: len(self._byGuest[guest]))


@implementer(IIPReceiver)
class TCPLayer:
    """
    TCP over IPv4 and IPv6 alike: a flow's addresses say which.

    @param ip: the L{vpnkit.interfaces.IIPSender} segments go out through.
    @param icmp: the L{vpnkit.interfaces.IICMPErrors} a failed dial is
        reported through.
    @param router: the L{vpnkit.interfaces.ITCPRouter} that decides where
        each new connection goes and dials it.
    @param limits: the L{TCPLimits}; when not given, C{maxConnections} and
        C{maxPending} with the default half-open budgets.
    @param guestPresent: whether a guest holds a (packed) address.
    @param rng: where initial sequence numbers come from
        (C{getrandbits(32)}); the system's random source by default.

    @ivar limits: the L{TCPLimits} in force (may be replaced at any time).
    """

    def __init__(
        self,
        config,
        ip,
        icmp,
        counters,
        router,
        reactor,
        tcpConfig=None,
        maxConnections=None,
        maxPending=4096,
        rng=None,
        guestPresent=None,
        segmentLimit=None,
        limits=None,
    ):
        self._ip = ip
        self._icmp = icmp
        self._counters = counters.tcp
        self._router = router
        self._clock = reactor
        self.tcpConfig = tcpConfig or TCPConfig(mss=config.mtu - 40)
        self._ipv6Config = (None, None)
        if limits is None:
            limits = TCPLimits(maxConnections=maxConnections, maxPending=maxPending)
        self.limits = limits
        self._rng = rng or _SystemISS()
        self._connections = {}
        self._pending = {}
        self._halfOpen = _HalfOpen()
        self._log = GuestLog(log, reactor)
        self._guestPresent = guestPresent or (lambda ip: True)
        # How much payload one segment to a guest may carry beyond the MSS
        # (a link with segmentation offload); 0 for plain links.
        self._segmentLimit = segmentLimit or (lambda ip: 0)

    # -- introspection ---------------------------------------------------------

    def connections(self):
        """
        Every live connection (for diagnostics).
        """
        return list(self._connections.values())

    @property
    def pendingCount(self):
        return len(self._pending)

    @property
    def halfOpenCount(self):
        """
        Connections dialling or in SYN-RECEIVED, all guests.
        """
        return self._halfOpen.total

    # -- segments from guests ----------------------------------------------------

    def ipPayloadReceived(self, header, payload):
        counters = self._counters
        counters.segmentsIn += 1
        try:
            seg = parseTCP(payload, header.src, header.dst)
        except ChecksumError:
            counters.badChecksum += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        flow = Flow(header.src, seg.srcPort, header.dst, seg.dstPort)
        connection = self._connections.get(flow)
        if connection is not None:
            if (
                seg.flags & SYN
                and not seg.flags & ACK
                and connection.tcb.state is State.TIME_WAIT
            ):
                # RFC 6191: a new SYN may reuse a pair still in TIME-WAIT.
                counters.timeWaitReused += 1
                connection.abortConnection()
            else:
                connection.segmentReceived(seg)
                halfOpen = self._halfOpen
                if (
                    halfOpen.total
                    and connection.tcb.state is not State.SYN_RECEIVED
                    and flow in halfOpen
                ):
                    halfOpen.discard(flow)
                return
        pending = self._pending.get(flow)
        if pending is not None:
            if seg.flags & RST:
                counters.pendingReset += 1
                self._cancelPending(flow, pending)
            else:
                counters.synAbsorbed += 1
            return
        if seg.flags & (SYN | ACK | RST) != SYN:
            if not seg.flags & RST:
                counters.rstNoConnection += 1
                self.sendSegments(flow, resetFor(seg))
            return
        self._newConnection(flow, seg, header, payload[:8])

    def _newConnection(self, flow, syn, header, quote):
        counters = self._counters
        counters.synReceived += 1
        if not self._guestPresent(flow.guestIP):
            # A spoofed source: neither SYN-ACK nor RST could reach it, and
            # it must not spend a real guest's budget.
            counters.synNotFromGuest += 1
            return
        limits = self.limits
        halfOpen = self._halfOpen
        if halfOpen.count(flow.guestIP) >= limits.maxHalfOpenPerGuest:
            self._evict(halfOpen.oldest(flow.guestIP), "--max-half-open-per-guest")
        elif halfOpen.total >= limits.maxHalfOpen:
            self._evict(halfOpen.oldest(halfOpen.largestHolder()), "--max-half-open")
        if len(self._pending) >= limits.maxPending:
            counters.limitPending += 1
            self._log.warn(
                "refusing {flow}: {n} connections are already being dialled",
                flow=str(flow),
                n=len(self._pending),
            )
            self.sendSegments(flow, refuse(syn))
            return
        if limits.maxConnections is not None and (
            len(self._connections) + len(self._pending) >= limits.maxConnections
        ):
            counters.limitConnections += 1
            self._log.warn(
                "refusing {flow}: --max-connections {n} reached",
                flow=str(flow),
                n=limits.maxConnections,
            )
            self.sendSegments(flow, refuse(syn))
            return
        pending = _Pending(syn, header, quote)
        self._pending[flow] = pending
        halfOpen.add(flow)
        d = self._router.connectionRequested(flow)
        pending.deferred = d
        d.addCallbacks(
            self._connected,
            self._connectFailed,
            callbackArgs=(flow, pending),
            errbackArgs=(flow, pending),
        )

    def _evict(self, flow, limit):
        """
        Make room for a new half-open connection: drop C{flow}, the oldest
        half-open one (a dial is cancelled; a connection in SYN-RECEIVED
        is reset).
        """
        self._counters.halfOpenEvicted += 1
        self._log.warn(
            "{limit} reached: dropping the oldest half-open connection, {flow}",
            limit=limit,
            flow=str(flow),
        )
        pending = self._pending.get(flow)
        if pending is not None:
            self._cancelPending(flow, pending)
            return
        self._halfOpen.discard(flow)
        connection = self._connections.get(flow)
        if connection is not None:
            connection.abortConnection()

    def _cancelPending(self, flow, pending):
        pending.cancelled = True
        self._pending.pop(flow, None)
        self._halfOpen.discard(flow)
        if pending.deferred is not None:
            pending.deferred.cancel()

    def _connected(self, protocol, flow, pending):
        if pending.cancelled or self._pending.get(flow) is not pending:
            # The guest gave up (RST) while we dialled: the protocol, never
            # connected, closes its other end.
            protocol.connectionLost(Failure(error.ConnectionAborted()))
            return None
        del self._pending[flow]
        counters = self._counters
        counters.connectionsOpened += 1
        tcb = TCPControlBlock.fromSYN(
            pending.syn, self._rng.getrandbits(32), self._configFor(flow.guestIP)
        )
        tcb.segmentLimit = self._segmentLimit(flow.guestIP)
        connection = TCPConnection(self, flow, tcb, self._clock)
        self._connections[flow] = connection
        connection.makeConnection(protocol)
        connection.start()
        return None

    def _connectFailed(self, failure, flow, pending):
        if self._pending.get(flow) is not pending:
            return None
        del self._pending[flow]
        self._halfOpen.discard(flow)
        if pending.cancelled:
            return None
        counters = self._counters
        value = failure.value
        osError = getattr(value, "osError", None)
        if failure.check(error.NoRouteError) or osError in (ENETUNREACH, EHOSTUNREACH):
            counters.connectUnreachable += 1
            reason = Unreachable.HOST if osError == EHOSTUNREACH else Unreachable.NETWORK
            self._icmp.sendUnreachable(reason, pending.ipHeader, pending.quote)
            return None
        if failure.check(error.ConnectionRefusedError):
            counters.connectRefused += 1
            if failure.check(SelfConnectError):
                counters.selfConnects += 1
        elif failure.check(error.TimeoutError, error.TCPTimedOutError):
            counters.connectTimeout += 1
        else:
            counters.connectFailed += 1
            self._log.info(
                "connecting {flow} failed: {error}", flow=str(flow), error=failure.getErrorMessage()
            )
        self.sendSegments(flow, refuse(pending.syn))
        return None

    # -- for connections -----------------------------------------------------------

    def sendSegments(self, flow, segments):
        """
        Send segments to the guest of C{flow}, from the address it dialled.
        """
        counters = self._counters
        send = self._ip.sendIP
        src = flow.localIP
        dst = flow.guestIP
        for seg in segments:
            if seg.flags & RST:
                counters.resetsSent += 1
            counters.segmentsOut += 1
            # The header alone, its checksum left for the link (the guest's
            # kernel, or software for a link without offload) to complete;
            # the payload (a view of the send buffer) follows uncopied.
            send(
                src,
                dst,
                PROTO_TCP,
                emitTCPHeader(seg, src, dst, partial=True),
                tail=seg.payload,
                partialChecksum=CHECKSUM_OFFSET,
            )

    def connectionClosed(self, connection):
        if self._connections.get(connection.flow) is connection:
            del self._connections[connection.flow]
            self._halfOpen.discard(connection.flow)
            counters = self._counters
            counters.connectionsClosed += 1
            tcb = connection.tcb
            counters.retransmits += tcb.retransmits
            if tcb.error == "reset":
                counters.resetsReceived += 1
            elif tcb.error == "timeout":
                counters.timeouts += 1

    def guestDetached(self, guestIP):
        """
        A guest's link went away: reset its connections and forget its
        pending ones, so no host socket outlives it.
        """
        for flow, pending in list(self._pending.items()):
            if flow.guestIP == guestIP:
                self._cancelPending(flow, pending)
        for flow, connection in list(self._connections.items()):
            if flow.guestIP == guestIP:
                connection.abortConnection()

    def closeAll(self):
        """
        Reset every connection and cancel every dial (vpnkit is stopping).
        """
        for flow, pending in list(self._pending.items()):
            self._cancelPending(flow, pending)
        for connection in list(self._connections.values()):
            connection.abortConnection()

    def connectToGuest(self, guestIP, guestPort, srcIP, srcPort, protocol):
        """
        Open a connection into a guest (for a port forward): vpnkit sends
        the SYN from C{srcIP}:C{srcPort} (packed address).

        @return: a L{Deferred} firing with the established
            L{TCPConnection} (C{protocol} attached), or failing: at once
            with C{ConnectionRefusedError} when no guest holds C{guestIP}
            or the pair is in use, later when the guest refuses or does not
            answer.
        """
        counters = self._counters
        flow = Flow(guestIP, guestPort, srcIP, srcPort)
        if flow in self._connections or flow in self._pending:
            counters.outboundFailed += 1
            return fail(error.ConnectionRefusedError(f"{flow} is already in use"))
        if not self._guestPresent(guestIP):
            counters.outboundFailed += 1
            return fail(error.ConnectionRefusedError(f"no guest holds {formatAddress(guestIP)}"))
        counters.outboundOpened += 1
        now = self._clock.seconds()
        tcb, segments = TCPControlBlock.connect(
            srcPort, guestPort, self._rng.getrandbits(32), now, self._configFor(guestIP)
        )
        tcb.segmentLimit = self._segmentLimit(guestIP)
        connection = TCPConnection(self, flow, tcb, self._clock)
        self._connections[flow] = connection
        d = connection.whenEstablished(protocol)
        self.sendSegments(flow, segments)
        connection.start()
        return d

    def _configFor(self, guestIP):
        """
        The L{TCPConfig} for a connection with C{guestIP}: C{tcpConfig}, with
        an MSS 20 bytes smaller over IPv6.
        """
        config = self.tcpConfig
        if len(guestIP) == 4:
            return config
        base, derived = self._ipv6Config
        if base is not config:
            derived = replace(config, mss=config.mss - _IPV6_EXTRA)
            self._ipv6Config = (config, derived)
        return derived

    def peerAddress(self, flow):
        return twistedAddress("TCP", flow.guestIP, flow.guestPort)

    def hostAddress(self, flow):
        return twistedAddress("TCP", flow.localIP, flow.localPort)

