# -*- test-case-name: tests.test_tcp_state,tests.test_netsim -*-
"""
The receive half of a TCP connection, pure: the next byte expected, the
in-order bytes waiting for the application, the out-of-order ranges held
for later, and the window vpnkit advertises (never shrinking its right
edge, never creeping up by small amounts: receiver silly-window avoidance).

The control block decides when to acknowledge; L{Receiver.accept} tells it
what a segment's data did.
"""

from vpnkit.protocols.tcp.buffers import Assembler
from vpnkit.wire.seq import seqSub
from vpnkit.wire.tcp import NO_OPTIONS, TCPOptions

__all__ = ["Receiver", "NOTHING", "IN_ORDER", "FILLED", "OUT_OF_ORDER"]

_MASK = 0xFFFFFFFF

# What accept() did with a segment's data.
NOTHING = "nothing"  # nothing fitted the window (or it was all old)
IN_ORDER = "in order"  # it continued the stream
FILLED = "filled"  # it continued the stream and filled a hole
OUT_OF_ORDER = "out of order"  # it was held beyond a hole


class Receiver:
    """
    @ivar nxt: the next sequence number expected (C{rcv.nxt}).
    @ivar buffer: in-order bytes not yet read by the application.
    @ivar shift: our window-scale shift (0 unless negotiated).
    @ivar sackPermitted: whether our ACKs carry SACK blocks.
    @ivar bytesReceived: in-order bytes received so far.
    """

    __slots__ = (
        "nxt",
        "buffer",
        "assembler",
        "capacity",
        "mss",
        "shift",
        "sackPermitted",
        "bytesReceived",
        "_advRight",
        "_lastOutOfOrder",
    )

    def __init__(self, capacity, mss, maxRanges):
        self.nxt = 0
        self.buffer = bytearray()
        self.assembler = Assembler(maxRanges)
        self.capacity = capacity
        self.mss = mss
        self.shift = 0
        self.sackPermitted = False
        self.bytesReceived = 0
        self._advRight = 0
        # The most recently received out-of-order range, relative to nxt:
        # RFC 2018 wants it first among our SACK blocks.
        self._lastOutOfOrder = None

    @property
    def window(self):
        """
        The window the guest was last told about (from C{nxt}).
        """
        return max(0, seqSub(self._advRight, self.nxt))

    def acceptable(self, offset, length):
        """
        Whether a segment C{offset} bytes past C{nxt} occupying C{length}
        sequence numbers (data, SYN and FIN) is acceptable (RFC 9293
        3.10.7.4).  With a zero window only one exactly at C{nxt} is: its
        data does not fit, but its ACK or RST still counts.
        """
        window = self.window
        if window == 0:
            return offset == 0
        if length == 0:
            return 0 <= offset < window
        end = offset + length - 1
        return 0 <= offset < window or 0 <= end < window or offset < 0 < end

    def synWindow(self):
        """
        The window of a SYN or SYN-ACK (never scaled, RFC 7323 2.2),
        remembered as advertised.
        """
        window = min(self.capacity, 0xFFFF)
        self._advRight = (self.nxt + window) & _MASK
        return window

    def accept(self, offset, payload):
        """
        Take a segment's data starting C{offset} bytes past C{nxt} (negative
        for a retransmission overlapping what we have), trimmed to the
        window.

        @return: C{(what, length)}: one of L{NOTHING}, L{IN_ORDER},
            L{FILLED}, L{OUT_OF_ORDER}, and the bytes of this segment taken.
        """
        window = self.window
        if offset < 0:
            payload = payload[-offset:]
            offset = 0
        if offset + len(payload) > window:
            payload = payload[: max(0, window - offset)]
        if not payload:
            return NOTHING, 0
        if offset:
            # Out of order: keep it (bounded) to report with SACK.
            if self.assembler.add(offset, payload):
                self._lastOutOfOrder = (offset, offset + len(payload))
            return OUT_OF_ORDER, len(payload)
        self._append(payload)
        if not self.assembler:
            return IN_ORDER, len(payload)
        more = self.assembler.advance(len(payload))
        if more:
            self._append(more)
        # The last out-of-order range is kept relative to nxt, which moved.
        last = self._lastOutOfOrder
        moved = len(payload) + len(more)
        if not self.assembler or last is None or last[1] <= moved:
            self._lastOutOfOrder = None
        else:
            self._lastOutOfOrder = (last[0] - moved, last[1] - moved)
        return FILLED, len(payload)

    def _append(self, data):
        self.buffer += data
        self.nxt = (self.nxt + len(data)) & _MASK
        self.bytesReceived += len(data)

    def take(self, size=None):
        """
        In-order bytes for the application.

        @return: C{(data, announce)}: announce is true when the read opened
            a window the guest knows to be small (it may be stalled on it)
            by at least double, so a window update is worth sending; else
            the next ACK carries it anyway.
        """
        buf = self.buffer
        if size is None or size >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:size])
            del buf[:size]
        current = self.window
        available = self.capacity - len(buf)
        announce = bool(data) and (
            current < self.capacity // 2 and available >= 2 * current + self.mss
        )
        return data, announce

    def windowField(self):
        """
        The window field for the next segment: scaled, never moving the
        right edge back, not creeping up by less than min(capacity/2, MSS)
        (receiver SWS avoidance).
        """
        capacity = self.capacity
        available = capacity - len(self.buffer)
        if available < 0:
            available = 0
        current = seqSub(self._advRight, self.nxt)
        if current < 0:
            current = 0
        if available <= current or (
            available - current < min(capacity // 2, self.mss) and available < capacity
        ):
            available = current
        field = available >> self.shift
        if field > 0xFFFF:
            field = 0xFFFF
        self._advRight = (self.nxt + (field << self.shift)) & _MASK
        return field

    def sackOption(self):
        """
        The options for our next segment: SACK blocks for what is held
        beyond a hole (the most recent range first), or none.
        """
        if not self.sackPermitted or not self.assembler:
            return NO_OPTIONS
        blocks = self.assembler.blocks()
        first = self._lastOutOfOrder
        ordered = []
        if first is not None:
            for start, end in blocks:
                if start <= first[0] < end or start < first[1] <= end:
                    ordered.append((start, end))
                    break
        for block in blocks:
            if block not in ordered:
                ordered.append(block)
        nxt = self.nxt
        return TCPOptions(
            sack=tuple(((nxt + s) & _MASK, (nxt + e) & _MASK) for s, e in ordered[:4])
        )

    def clear(self):
        self.assembler.clear()
        self._lastOutOfOrder = None
