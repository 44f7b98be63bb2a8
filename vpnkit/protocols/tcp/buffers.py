# -*- test-case-name: tests.test_tcp_buffers -*-
"""
The byte queues behind a TCP control block.

L{SendBuffer} holds what the application wrote and the peer has not yet
acknowledged; L{Assembler} holds segments that arrived ahead of a hole until
the hole is filled (smoltcp's storage/assembler).  Offsets here are plain
byte offsets relative to a base the control block tracks; sequence-number
arithmetic stays in the control block.
"""

from collections import deque

__all__ = ["SendBuffer", "Assembler"]

# Writes shorter than this are gathered into one chunk (see SendBuffer).
_COALESCE = 2048


class SendBuffer:
    """
    Bytes from C{snd.una} onward: first those in flight, then those not yet
    sent.

    Kept as the chunks the application wrote rather than copied into one
    buffer: a 64 KiB write from a host socket stays the C{bytes} object the
    socket returned, and L{peek} hands out read-only views of it, so a
    segment's payload can reach the guest's link without a copy in Python.
    Writes shorter than C{_COALESCE} bytes are gathered into one
    C{bytearray} chunk instead (a chunk per one-byte write would cost far
    more than the byte), which L{peek} copies from: no view of a buffer
    that may still grow is ever handed out.
    """

    __slots__ = ("_chunks", "_length", "_skip", "_cursor")

    def __init__(self):
        # Each chunk is a view of bytes (a large write) or a bytearray (small
        # ones), never empty; the first _skip bytes of the first chunk (a
        # view only) were acknowledged.
        self._chunks = deque()
        self._length = 0
        self._skip = 0
        # Where the last peek started: (index of its chunk, position of
        # that chunk's first byte counted from the first chunk's), so that
        # a window sent segment by segment is not searched from the start
        # for each segment.
        self._cursor = (0, 0)

    def __len__(self):
        return self._length

    def append(self, data):
        n = len(data)
        if not n:
            return
        chunks = self._chunks
        if n < _COALESCE:
            if chunks and type(chunks[-1]) is bytearray:
                chunks[-1] += data
            else:
                chunks.append(bytearray(data))
        else:
            # Immutable, so that views of it stay what they were: bytes as
            # they are, anything else copied.
            chunks.append(memoryview(data if type(data) is bytes else bytes(data)))
        self._length += n

    def peek(self, offset, size):
        """
        Up to C{size} bytes starting C{offset} bytes after the acknowledged
        point: a read-only view of the bytes written when they lie in one
        large write; else a copy.
        """
        offset += self._skip
        index, start = self._cursor
        if offset < start:
            index = start = 0
        chunks = self._chunks
        count = len(chunks)
        while index < count:
            chunk = chunks[index]
            end = start + len(chunk)
            if offset < end:
                break
            start = end
            index += 1
        else:
            return b""
        self._cursor = (index, start)
        begin = offset - start
        if begin + size <= end - start:
            if type(chunk) is memoryview:
                return chunk[begin : begin + size]
            return bytes(memoryview(chunk)[begin : begin + size])
        # Across chunks (or past the end): one copy.
        pieces = [memoryview(chunk)[begin:]]
        size -= end - offset
        index += 1
        while size > 0 and index < count:
            chunk = chunks[index]
            pieces.append(memoryview(chunk)[:size])
            size -= len(chunk)
            index += 1
        return b"".join(pieces)

    def drop(self, count):
        """
        Forget the first C{count} bytes (they were acknowledged).
        """
        count = min(count, self._length)
        if count <= 0:
            return
        self._length -= count
        chunks = self._chunks
        # Everything below is counted from the first chunk's first byte.
        count += self._skip
        removed = popped = 0
        while chunks and count - removed >= len(chunks[0]):
            removed += len(chunks.popleft())
            popped += 1
        skip = count - removed
        if skip and type(chunks[0]) is bytearray:
            # The chunk small writes grow: forget its prefix for good.
            del chunks[0][:skip]
            removed += skip
            skip = 0
        self._skip = skip
        index, start = self._cursor
        self._cursor = (index - popped, start - removed) if index > popped else (0, 0)

    def clear(self):
        self._chunks.clear()
        self._length = self._skip = 0
        self._cursor = (0, 0)


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
