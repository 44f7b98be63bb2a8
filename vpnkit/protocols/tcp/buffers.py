# -*- test-case-name: tests.test_tcp_buffers -*-
"""
The byte queues behind a TCP control block.

L{SendBuffer} holds what the application wrote and the peer has not yet
acknowledged; L{Assembler} holds segments that arrived ahead of a hole until
the hole is filled (smoltcp's storage/assembler).  Offsets here are plain
byte offsets relative to a base the control block tracks; sequence-number
arithmetic stays in the control block.
"""

__all__ = ["SendBuffer", "Assembler"]


class SendBuffer:
    """
    Bytes from C{snd.una} onward: first those in flight, then those not yet
    sent.  CPython's C{bytearray} drops a prefix without moving the rest, so
    acknowledging is cheap.
    """

    __slots__ = ("_data",)

    def __init__(self):
        self._data = bytearray()

    def __len__(self):
        return len(self._data)

    def append(self, data):
        self._data += data

    def peek(self, offset, size):
        """
        Up to C{size} bytes starting C{offset} bytes after the acknowledged
        point.
        """
        return bytes(self._data[offset : offset + size])

    def drop(self, count):
        """
        Forget the first C{count} bytes (they were acknowledged).
        """
        del self._data[:count]

    def clear(self):
        self._data.clear()


class Assembler:
    """
    Out-of-order data, as disjoint ranges of byte offsets relative to the
    next expected byte.

    Bounded twice: ranges are only kept inside the receive window the caller
    passes in, and at most C{maxRanges} separate holes are tracked (a
    segment that would open one more is refused and must be sent again).
    """

    __slots__ = ("_ranges", "_maxRanges")

    def __init__(self, maxRanges=32):
        # Sorted list of [start, bytes]; starts are offsets from the next
        # expected byte, ranges never overlap or touch.
        self._ranges = []
        self._maxRanges = maxRanges

    def __bool__(self):
        return bool(self._ranges)

    def __len__(self):
        return len(self._ranges)

    @property
    def bufferedBytes(self):
        return sum(len(data) for _, data in self._ranges)

    def add(self, offset, data):
        """
        Store C{data} at C{offset} (> 0) bytes past the next expected byte,
        merging it with the ranges it overlaps or touches.

        @return: whether it was stored (C{False} when it would need a new
            range beyond the limit).
        """
        end = offset + len(data)
        ranges = self._ranges
        # Find the ranges this one overlaps or touches.
        first = 0
        while first < len(ranges) and ranges[first][0] + len(ranges[first][1]) < offset:
            first += 1
        last = first
        while last < len(ranges) and ranges[last][0] <= end:
            last += 1
        if first == last:
            if len(ranges) >= self._maxRanges:
                return False
            ranges.insert(first, [offset, bytes(data)])
            return True
        start = min(offset, ranges[first][0])
        stop = max(end, ranges[last - 1][0] + len(ranges[last - 1][1]))
        merged = bytearray(stop - start)
        for rangeStart, rangeData in ranges[first:last]:
            merged[rangeStart - start : rangeStart - start + len(rangeData)] = rangeData
        # Newly arrived bytes are written last; where they overlap stored
        # ones the content must be the same anyway.
        merged[offset - start : end - start] = data
        ranges[first:last] = [[start, bytes(merged)]]
        return True

    def advance(self, count):
        """
        The next expected byte moved C{count} bytes forward (in-order data
        arrived).  Ranges now reachable are removed and returned.

        @return: the bytes that continue the stream at the new point, or
            C{b""}.
        """
        ranges = self._ranges
        out = b""
        kept = []
        for start, data in ranges:
            start -= count
            end = start + len(data)
            if end <= 0:
                continue
            if start <= 0 and not out:
                out = data[-start:]
                continue
            kept.append([start, data])
        if out:
            # What was delivered moves the origin again.
            shift = len(out)
            kept = [[start - shift, data] for start, data in kept]
            # A range can become contiguous only through `out`, and ranges
            # never touch, so one pass suffices.
        self._ranges = kept
        return out

    def blocks(self):
        """
        The stored ranges as C{(startOffset, endOffset)} pairs, for SACK.
        """
        return [(start, start + len(data)) for start, data in self._ranges]

    def clear(self):
        self._ranges = []
