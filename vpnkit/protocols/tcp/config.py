# -*- test-case-name: tests.test_tcp_state -*-
"""
L{TCPConfig}: the tunables of vpnkit's TCP; L{TCPLimits}: how many guest
connections it holds host sockets for.
"""

from dataclasses import dataclass

__all__ = ["TCPConfig", "TCPLimits"]


@dataclass(frozen=True)
class TCPConfig:
    """
    Tunables; defaults suit a guest on the same machine.

    @ivar mss: the MSS we announce (link MTU minus 40).
    @ivar receiveBuffer: bytes of in-order data held for a slow reader; the
        advertised window is what is left of it.
    @ivar delayedAck: how long a lone segment waits for its ACK.
    @ivar maxRetries: consecutive retransmission timeouts with no word
        from the guest before the connection is given up.
    """

    mss: int = 1460
    receiveBuffer: int = 1 << 20
    initialRTO: float = 1.0
    minRTO: float = 0.2
    maxRTO: float = 60.0
    maxRetries: int = 12
    synRetries: int = 5
    delayedAck: float = 0.02
    timeWait: float = 2.0
    initialWindowSegments: int = 10
    maxOutOfOrderRanges: int = 32


@dataclass(frozen=True)
class TCPLimits:
    """
    The budget of guest connections (each holds a host socket, so a file
    descriptor).

    A connection is I{half-open} from the guest's SYN until the guest
    completes the handshake: while vpnkit dials the host, then in
    SYN-RECEIVED.  A SYN flood only ever makes half-open connections, so
    they have a budget of their own, per guest and in total; a new SYN
    beyond it does not wait or fail, it evicts the oldest half-open
    connection of the same guest (or, when the total is full, of the guest
    holding the most).  The oldest entry is the least likely to ever
    complete, and a flood only displaces its own SYNs: other guests keep
    their budget.  The budgets are sized for honest bursts: a guest that
    opens a thousand connections at once has them all dialling at the same
    moment (1,024 per guest, as Linux's default SYN backlog), and the total
    matches the dials vpnkit lets be in flight.

    @ivar maxConnections: all connections, half-open ones included; a SYN
        beyond it gets RST.  C{None}: no limit (vpnkit's service derives
        one from the open-file limit at start, see
        L{vpnkit.services.connectionBudget}).
    @ivar maxPending: dials in flight, all guests; a SYN beyond it gets RST.
    @ivar maxHalfOpen: half-open connections of all guests.
    @ivar maxHalfOpenPerGuest: half-open connections of one guest address.
    """

    maxConnections: int | None = None
    maxPending: int = 4096
    maxHalfOpen: int = 4096
    maxHalfOpenPerGuest: int = 1024


def windowShift(buffer):
    """
    The smallest window-scale shift that lets C{buffer} bytes be advertised.
    """
    shift = 0
    while (65535 << shift) < buffer and shift < 14:
        shift += 1
    return shift
