# -*- test-case-name: tests.test_tcp_state -*-
"""
L{TCPConfig}: the tunables of vpnkit's TCP.
"""

from dataclasses import dataclass

__all__ = ["TCPConfig"]


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


def windowShift(buffer):
    """
    The smallest window-scale shift that lets C{buffer} bytes be advertised.
    """
    shift = 0
    while (65535 << shift) < buffer and shift < 14:
        shift += 1
    return shift
