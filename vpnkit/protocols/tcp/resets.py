# -*- test-case-name: tests.test_tcp_state,tests.test_tcp_layer -*-
"""
The resets vpnkit sends for segments that reach no connection (RFC 9293
3.10.7.1), and the answer to a SYN the host refused.
"""

from vpnkit.wire.tcp import ACK, FIN, RST, SYN, Segment

__all__ = ["refuse", "resetFor"]

_MASK = 0xFFFFFFFF


def refuse(syn):
    """
    The RST|ACK that tells a guest its SYN was refused (what a closed port
    answers).
    """
    return [
        Segment(syn.dstPort, syn.srcPort, 0, (syn.seq + 1 + len(syn.payload)) & _MASK, RST | ACK, 0)
    ]


def resetFor(seg):
    """
    The RST for a segment that reached no connection (RFC 9293 3.10.7.1),
    or nothing for a RST.
    """
    if seg.flags & RST:
        return []
    if seg.flags & ACK:
        return [Segment(seg.dstPort, seg.srcPort, seg.ack, 0, RST, 0)]
    seqLen = len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
    return [Segment(seg.dstPort, seg.srcPort, 0, (seg.seq + seqLen) & _MASK, RST | ACK, 0)]
