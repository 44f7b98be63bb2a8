# -*- test-case-name: tests.test_fragments -*-
"""
IP fragments: L{Reassembler} puts a guest's fragmented datagrams back
together (IPv4 through L{Reassembler.add}; any family, IPv6 included,
through L{Reassembler.addFragment} with its own key), L{fragment} cuts an
IPv4 datagram for a link whose MTU it exceeds.

Both are pure: no Twisted, no clock of their own.  Time is passed in
(C{now}) and L{Reassembler.pollAt} says when the caller should next call
L{Reassembler.expire}, so the IPv4 layer keeps one timer for all of them.

Reassembly is bounded: a datagram may take at most C{timeout} seconds
(30, as Linux) to complete, and each source may have at most
C{maxDatagramsPerSource} datagrams (64) and C{maxBytesPerSource} payload
bytes (1 MiB) in flight; beyond those, the source's own datagram is
discarded.  All sources together hold at most C{maxDatagrams} datagrams
(1024) and C{maxBytes} bytes (4 MiB), where every datagram is charged
C{DATAGRAM_COST} for its bookkeeping and every fragment C{FRAGMENT_COST}
on top of its bytes (as Linux charges a fragment's truesize), so that many
small pieces cannot hold more memory than their bytes suggest; discarded
datagrams, remembered until their deadline, keep their bookkeeping charge
and count as datagrams.  When a new datagram or fragment would pass a
global bound, the oldest datagrams are evicted to make room (counted in
C{evicted}).  Overlapping
fragments are treated as RFC 5722 asks of IPv6 (and as Linux has treated
IPv4 since 2018): a fragment that overlaps data already held, other than an
exact retransmission of a fragment already held, discards the whole
datagram, and later fragments of it are dropped until its timer expires.
Nobody gets to choose which copy of overlapping bytes "wins".
"""

from dataclasses import dataclass, replace
from enum import Enum

from vpnkit.wire import ParseError
from vpnkit.wire.ipv4 import FLAG_DF, FLAG_MF, emitIPv4, parseIPv4

__all__ = [
    "Outcome",
    "Reassembler",
    "fragment",
    "QUEUED",
    "DUPLICATE",
    "OVERLAP",
    "LIMIT",
    "MALFORMED",
    "POISONED",
    "COMPLETE",
    "REASSEMBLY_TIMEOUT",
    "DATAGRAM_COST",
    "FRAGMENT_COST",
    "Expired",
]

REASSEMBLY_TIMEOUT = 30.0
MAX_DATAGRAM = 0xFFFF
# What one datagram's bookkeeping (its entry, key, first header and piece
# table) and one fragment's (its slot and bytes object) cost beyond the
# payload, rounded up from tracemalloc measurements.
DATAGRAM_COST = 1024
FRAGMENT_COST = 128



class Outcome(Enum):
    """
    What L{Reassembler.add} did with a fragment.
    """

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    OVERLAP = "overlap"
    LIMIT = "limit"
    MALFORMED = "malformed"
    POISONED = "poisoned"
    COMPLETE = "complete"


QUEUED = Outcome.QUEUED
DUPLICATE = Outcome.DUPLICATE
OVERLAP = Outcome.OVERLAP
LIMIT = Outcome.LIMIT
MALFORMED = Outcome.MALFORMED
POISONED = Outcome.POISONED
COMPLETE = Outcome.COMPLETE


class _Partial:
    """
    One datagram being reassembled.

    @ivar pieces: C{{offset: bytes}}.
    @ivar end: the payload length, once the last fragment has arrived.
    @ivar first: the header of the fragment at offset 0, once it arrived.
    @ivar dead: the datagram was discarded (overlap, limit); its later
        fragments are dropped until C{deadline}.
    @ivar charge: what it counts against the global byte bound.
    """

    __slots__ = ("source", "deadline", "pieces", "size", "end", "first", "dead", "charge")

    def __init__(self, source, deadline):
        self.source = source
        self.deadline = deadline
        self.pieces = {}
        self.size = 0
        self.end = None
        self.first = None
        self.dead = False
        self.charge = DATAGRAM_COST


@dataclass(frozen=True)
class Expired:
    """
    A datagram whose time ran out.  C{first} (the header of its first
    fragment) and C{quote} (that fragment's first 8 payload bytes) are set
    when the first fragment had arrived, so the sender can be told (ICMP
    time exceeded, code 1).
    """

    first: object
    quote: bytes


class Reassembler:
    """
    @ivar pendingBytes: payload bytes held, over all datagrams.
    @ivar chargedBytes: what all datagrams, discarded ones included, count
        against C{maxBytes}.
    @ivar evicted: datagrams evicted so far to make room.
    """

    def __init__(
        self,
        timeout=REASSEMBLY_TIMEOUT,
        maxBytes=4 << 20,
        maxBytesPerSource=1 << 20,
        maxDatagramsPerSource=64,
        maxDatagrams=1024,
    ):
        self.timeout = timeout
        self.maxBytes = maxBytes
        self.maxBytesPerSource = maxBytesPerSource
        self.maxDatagramsPerSource = maxDatagramsPerSource
        self.maxDatagrams = maxDatagrams
        # Insertion order is deadline order: the first entry expires first,
        # and is the oldest, evicted first.
        self._partials = {}
        self._bySource = {}
        self.pendingBytes = 0
        self.chargedBytes = 0
        self.evicted = 0

    def __len__(self):
        return len(self._partials)

    def add(self, header, payload, now):
        """
        Take one IPv4 fragment.

        @param header: its L{vpnkit.wire.ipv4.IPv4Header} (C{isFragment}).
        @return: C{(outcome, datagram)}: the L{Outcome} (L{QUEUED}, L{DUPLICATE}, L{OVERLAP}, L{LIMIT},
            L{MALFORMED}, L{POISONED} or L{COMPLETE}); C{datagram} is
            C{(header, payload)} of the whole datagram when the outcome is
            L{COMPLETE}, else C{None}.
        """
        outcome, whole = self.addFragment(
            (header.src, header.dst, header.protocol, header.ident),
            header.src,
            header.fragmentOffset,
            bool(header.flags & FLAG_MF),
            header.headerLength,
            header,
            payload,
            now,
        )
        if whole is None:
            return outcome, None
        first, data = whole
        whole = replace(first, flags=first.flags & ~FLAG_MF, fragmentOffset=0)
        # Re-emit so the header's length and checksum describe the whole.
        try:
            return COMPLETE, parseIPv4(emitIPv4(whole, data))
        except ParseError:
            return MALFORMED, None

    def addFragment(self, key, source, offset, more, headerLength, first, payload, now):
        """
        Take one fragment of any family: the core of L{add}, which the
        IPv6 layer calls with its own key and headers.

        @param key: what identifies the datagram (IPv4: source,
            destination, protocol and identification; IPv6: source,
            destination and identification).
        @param source: the sender, for the per-source bounds.
        @param offset: the fragment's offset in bytes.
        @param more: its more-fragments flag.
        @param headerLength: the bytes the whole datagram carries beyond
            its fragmentable data that count against the 65,535-byte
            bound (IPv4: the header; IPv6: the unfragmentable part after
            the fixed header).
        @param first: kept (and given back, and in L{Expired}) when this is
            the fragment at offset 0: its header, as the caller likes it.
        @return: C{(outcome, whole)}: C{whole} is C{(first, data)}, the
            kept C{first} and the reassembled data, when the outcome is
            L{COMPLETE}, else C{None}.
        """
        payload = bytes(payload)
        length = len(payload)
        partial = self._partials.get(key)
        if partial is not None and partial.dead:
            return POISONED, None
        end = offset + length
        if length == 0 or (more and length % 8) or headerLength + end > MAX_DATAGRAM:
            # Every fragment carries data, a middle one a multiple of 8
            # bytes, and no datagram may exceed 65,535 bytes (the "ping of
            # death").
            if partial is not None:
                self._kill(key, partial)
            return MALFORMED, None
        if partial is None:
            datagrams, _ = self._bySource.get(source, (0, 0))
            if datagrams >= self.maxDatagramsPerSource or not self._makeRoom(
                DATAGRAM_COST, None
            ):
                return LIMIT, None
            partial = _Partial(source, now + self.timeout)
            self._partials[key] = partial
            self.chargedBytes += DATAGRAM_COST
            self._account(source, 1, 0)

        held = partial.pieces.get(offset)
        if held == payload and (partial.end == end) != more:
            # The same bytes at the same place, with the same idea of where
            # the datagram ends: a retransmission, harmless.
            return DUPLICATE, None
        if not more:
            if partial.end is not None and partial.end != end:
                self._kill(key, partial)
                return OVERLAP, None
            if any(o + len(p) > end for o, p in partial.pieces.items()):
                self._kill(key, partial)
                return OVERLAP, None
        elif partial.end is not None and end > partial.end:
            self._kill(key, partial)
            return OVERLAP, None
        for o, p in partial.pieces.items():
            if o < end and offset < o + len(p):
                self._kill(key, partial)
                return OVERLAP, None

        _, sourceBytes = self._bySource[source]
        cost = length + FRAGMENT_COST
        if sourceBytes + length > self.maxBytesPerSource or not self._makeRoom(cost, key):
            self._kill(key, partial)
            return LIMIT, None
        partial.pieces[offset] = payload
        partial.size += length
        partial.charge += cost
        self.chargedBytes += cost
        self._account(source, 0, length)
        if not more:
            partial.end = end
        if offset == 0:
            partial.first = first
        if partial.end is None or partial.size != partial.end:
            return QUEUED, None
        # Non-overlapping pieces whose lengths add up to the end: complete.
        data = b"".join(partial.pieces[o] for o in sorted(partial.pieces))
        self._remove(key, partial)
        return COMPLETE, (partial.first, data)

    def pollAt(self):
        """
        When L{expire} next has work, or C{None}.
        """
        for partial in self._partials.values():
            return partial.deadline
        return None

    def expire(self, now):
        """
        Forget every datagram whose time is up.

        @return: a list of L{Expired}, one for each datagram that was still
            alive (not already discarded).
        """
        expired = []
        for key, partial in list(self._partials.items()):
            if partial.deadline > now:
                break
            if not partial.dead:
                first = partial.first
                quote = partial.pieces[0][:8] if first is not None else b""
                expired.append(Expired(first, quote))
            self._remove(key, partial)
        return expired

    def clear(self):
        """
        Forget every datagram.
        """
        self._partials.clear()
        self._bySource.clear()
        self.pendingBytes = 0
        self.chargedBytes = 0

    def _makeRoom(self, cost, keep):
        """
        Evict the oldest datagrams (never C{keep}, the key of the one being
        added to) until C{cost} more bytes, and for a new datagram
        (C{keep} is C{None}) one more datagram, fit the global bounds.

        @return: whether they fit.
        """
        partials = self._partials
        while self.chargedBytes + cost > self.maxBytes or (
            keep is None and len(partials) >= self.maxDatagrams
        ):
            for victim in partials:
                if victim != keep:
                    break
            else:
                return False
            self._remove(victim, partials[victim])
            self.evicted += 1
        return True

    def _account(self, source, datagrams, size):
        count, total = self._bySource.get(source, (0, 0))
        count += datagrams
        total += size
        self.pendingBytes += size
        if count == 0:
            self._bySource.pop(source, None)
        else:
            self._bySource[source] = (count, total)

    def _kill(self, key, partial):
        """
        Discard a datagram's data, but remember it until its deadline so
        its remaining fragments are dropped too.
        """
        self._account(partial.source, 0, -partial.size)
        self.chargedBytes -= partial.charge - DATAGRAM_COST
        partial.charge = DATAGRAM_COST
        partial.pieces = {}
        partial.size = 0
        partial.dead = True

    def _remove(self, key, partial):
        del self._partials[key]
        self.chargedBytes -= partial.charge
        self._account(partial.source, -1, -partial.size)


def fragment(header, payload, mtu):
    """
    Cut a datagram into fragments that fit C{mtu}.

    @param header: the datagram's L{vpnkit.wire.ipv4.IPv4Header} (which may
        itself be a fragment: offsets are kept relative to the original,
        and the last piece keeps the original's more-fragments flag).
    @return: a list of complete datagrams (bytes), in order.
    @raise ValueError: C{header} has DF set, or C{mtu} leaves no room.
    """
    if header.flags & FLAG_DF:
        raise ValueError("the datagram may not be fragmented")
    hl = header.headerLength
    step = (mtu - hl) // 8 * 8
    if step <= 0:
        raise ValueError(f"MTU {mtu} leaves no room for data")
    lastMore = header.flags & FLAG_MF
    base = header.fragmentOffset
    pieces = []
    view = memoryview(payload)
    n = len(payload)
    for start in range(0, n, step):
        chunk = view[start : start + step]
        more = FLAG_MF if start + step < n else lastMore
        piece = replace(header, flags=(header.flags & ~FLAG_MF) | more, fragmentOffset=base + start)
        pieces.append(emitIPv4(piece, bytes(chunk)))
    return pieces
