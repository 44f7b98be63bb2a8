"""
Tests for L{vpnkit.protocols.fragments}: reassembly of a guest's fragments
(in any order, duplicates, overlaps, limits, timeout) and fragmentation for
the link, plus hypothesis properties over both.
"""

import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols import fragments
from vpnkit.protocols.fragments import (
    COMPLETE,
    DUPLICATE,
    LIMIT,
    MALFORMED,
    OVERLAP,
    POISONED,
    QUEUED,
    Reassembler,
    fragment,
)
from vpnkit.wire.ipv4 import FLAG_DF, FLAG_MF, PROTO_UDP, IPv4Header, emitIPv4, parseIPv4

from tests.helpers import capturedFrames, ip

SRC = ip("192.168.65.3")
DST = ip("198.51.100.10")
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def header(offset=0, more=True, ident=7, src=SRC, dst=DST, length=0):
    return IPv4Header(
        0, 20 + length, ident, FLAG_MF if more else 0, offset, 64, PROTO_UDP, 0, src, dst
    )


def pieces(data, step, ident=7, src=SRC):
    """
    C{(header, payload)} fragments of C{data}, C{step} bytes each.
    """
    result = []
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        result.append(
            (header(start, start + step < len(data), ident, src, length=len(chunk)), chunk)
        )
    return result


class ReassemblyTests(SynchronousTestCase):
    """
    L{Reassembler.add}: fragments in, whole datagrams out.
    """

    def setUp(self):
        self.r = Reassembler()
        self.data = bytes(range(256)) * 16  # 4096 bytes

    def feed(self, frags, now=0.0):
        return [self.r.add(h, p, now) for h, p in frags]

    def test_inOrder(self):
        """
        Fragments in order are queued until the last, which completes the
        datagram: one header (MF clear, offset 0, the whole length, a valid
        checksum) and the original payload.
        """
        outcomes = self.feed(pieces(self.data, 1480))
        self.assertEqual([o for o, _ in outcomes], [QUEUED, QUEUED, COMPLETE])
        whole, payload = outcomes[-1][1]
        self.assertEqual(payload, self.data)
        self.assertEqual((whole.flags, whole.fragmentOffset, whole.totalLength), (0, 0, 20 + 4096))
        self.assertEqual(parseIPv4(emitIPv4(whole, payload))[1], self.data)
        self.assertEqual((len(self.r), self.r.pendingBytes), (0, 0))

    def test_anyOrder(self):
        """
        The same fragments in reverse order complete the same datagram.
        """
        outcomes = self.feed(reversed(pieces(self.data, 512)))
        self.assertEqual(outcomes[-1][0], COMPLETE)
        self.assertEqual(outcomes[-1][1][1], self.data)

    def test_duplicate(self):
        """
        An exact retransmission of a fragment already held is counted as a
        duplicate and changes nothing.
        """
        frags = pieces(self.data, 1024)
        self.assertEqual(self.r.add(*frags[0], 0)[0], QUEUED)
        self.assertEqual(self.r.add(*frags[0], 0)[0], DUPLICATE)
        outcomes = self.feed(frags[1:])
        self.assertEqual(outcomes[-1][1][1], self.data)

    def test_conflictingOverlap(self):
        """
        A fragment overlapping held data with different bytes discards the
        whole datagram (RFC 5722): its later fragments are dropped, nothing
        is ever delivered, and the memory is freed at once.
        """
        frags = pieces(self.data, 1024)
        self.r.add(*frags[0], 0)
        evil = (header(512, True, length=1024), b"\xee" * 1024)
        self.assertEqual(self.r.add(*evil, 0)[0], OVERLAP)
        self.assertEqual(self.r.pendingBytes, 0)
        self.assertEqual([o for o, _ in self.feed(frags[1:])], [POISONED] * 3)

    def test_agreeingOverlapStillDropped(self):
        """
        Even an overlap whose bytes agree (but that is not the same
        fragment) discards the datagram: nobody gets to choose which copy
        wins.
        """
        frags = pieces(self.data, 1024)
        self.r.add(*frags[0], 0)
        same = (header(512, True, length=1024), self.data[512:1536])
        self.assertEqual(self.r.add(*same, 0)[0], OVERLAP)

    def test_twoEnds(self):
        """
        Two last fragments that disagree on the end discard the datagram.
        """
        self.r.add(header(1000, False, length=8), b"x" * 8, 0)
        self.assertEqual(self.r.add(header(2000, False, length=8), b"y" * 8, 0)[0], OVERLAP)

    def test_dataBeyondEnd(self):
        """
        Data past the end the last fragment announced discards the datagram.
        """
        self.r.add(header(16, False, length=8), b"e" * 8, 0)
        self.assertEqual(self.r.add(header(24, True, length=8), b"x" * 8, 0)[0], OVERLAP)

    def test_malformed(self):
        """
        A middle fragment whose length is not a multiple of 8, an empty
        fragment, and one reaching past 65,535 bytes are malformed.
        """
        self.assertEqual(self.r.add(header(0, True, length=7), b"x" * 7, 0)[0], MALFORMED)
        self.assertEqual(self.r.add(header(8, True, ident=8), b"", 0)[0], MALFORMED)
        self.assertEqual(
            self.r.add(header(65528, False, ident=9, length=16), b"x" * 16, 0)[0], MALFORMED
        )

    def test_separateDatagrams(self):
        """
        Fragments are keyed by source, destination, protocol and
        identification: interleaved datagrams complete separately.
        """
        a = pieces(b"a" * 64, 16, ident=1)
        b = pieces(b"b" * 64, 16, ident=2)
        results = [self.r.add(h, p, 0) for pair in zip(a, b) for h, p in pair]
        done = [r[1][1] for r in results if r[0] == COMPLETE]
        self.assertEqual(done, [b"a" * 64, b"b" * 64])

    def test_capturedFragments(self):
        """
        The three fragments of the 4,000-byte UDP datagram a real Linux
        guest sent (the capture) reassemble into a datagram whose UDP
        length and checksum verify.
        """
        from vpnkit.wire.udp import parseUDP

        outcome = None
        for frame in capturedFrames()[65:68]:
            h, p = parseIPv4(frame[14:])
            outcome = self.r.add(h, p, 0)
        self.assertEqual(outcome[0], COMPLETE)
        whole, payload = outcome[1]
        udp, data = parseUDP(payload, whole.src, whole.dst)
        self.assertEqual(len(data), 4000)


class LimitTests(SynchronousTestCase):
    """
    Reassembly memory is bounded per source and in total.
    """

    def test_datagramsPerSource(self):
        """
        A source may have C{maxDatagramsPerSource} datagrams in progress;
        the next is refused, while another source is still served.
        """
        r = Reassembler(maxDatagramsPerSource=2)
        for ident in (1, 2):
            self.assertEqual(r.add(header(0, True, ident, length=8), b"x" * 8, 0)[0], QUEUED)
        self.assertEqual(r.add(header(0, True, 3, length=8), b"x" * 8, 0)[0], LIMIT)
        other = ip("192.168.65.4")
        self.assertEqual(r.add(header(0, True, 3, other, length=8), b"x" * 8, 0)[0], QUEUED)

    def test_bytesPerSource(self):
        """
        A fragment that would take a source past C{maxBytesPerSource}
        discards its datagram (freeing what it held).
        """
        r = Reassembler(maxBytesPerSource=100)
        r.add(header(0, True, length=64), b"x" * 64, 0)
        self.assertEqual(r.add(header(64, True, length=64), b"x" * 64, 0)[0], LIMIT)
        self.assertEqual(r.pendingBytes, 0)

    def test_totalBytes(self):
        """
        All sources together are bounded by C{maxBytes}, which charges each
        datagram and each fragment its bookkeeping as well as its bytes:
        room for a new fragment is made by evicting the oldest datagrams
        first (counted in C{evicted}).
        """
        cost = fragments.DATAGRAM_COST + fragments.FRAGMENT_COST + 64
        r = Reassembler(maxBytes=2 * cost)
        sources = [ip(f"192.168.65.{n}") for n in (3, 4, 5)]
        for src in sources:
            self.assertEqual(r.add(header(0, True, 1, src, length=64), b"x" * 64, 0)[0], QUEUED)
        self.assertEqual((len(r), r.pendingBytes, r.chargedBytes, r.evicted), (2, 128, 2 * cost, 1))
        # The oldest (the first source's) went: its next fragment starts
        # over, evicting the second source's.
        self.assertEqual(r.add(header(64, False, 1, sources[0], length=8), b"y" * 8, 0)[0], QUEUED)
        self.assertEqual(r.evicted, 2)
        self.assertEqual(
            r.add(header(64, False, 1, sources[2], length=8), b"y" * 8, 0)[0], COMPLETE
        )

    def test_oneDatagramTooBig(self):
        """
        A fragment that would not fit even alone discards its datagram.
        """
        r = Reassembler(maxBytes=fragments.DATAGRAM_COST + fragments.FRAGMENT_COST + 100)
        r.add(header(0, True, length=64), b"x" * 64, 0)
        self.assertEqual(r.add(header(64, True, length=64), b"x" * 64, 0)[0], LIMIT)
        self.assertEqual((r.pendingBytes, r.evicted), (0, 0))

    def test_datagramCount(self):
        """
        However many sources send, at most C{maxDatagrams} datagrams are
        held (1024 by default): each new one evicts the oldest.
        """
        r = Reassembler()
        for n in range(5000):
            src = (0x0A000000 + n).to_bytes(4, "big")
            self.assertEqual(r.add(header(0, True, n, src, length=8), b"x" * 8, float(n))[0], QUEUED)
        self.assertEqual(len(r), 1024)
        self.assertEqual((r.maxDatagrams, r.evicted), (1024, 5000 - 1024))
        self.assertEqual(r.pollAt(), 30.0 + 5000 - 1024)
        self.assertLessEqual(r.chargedBytes, r.maxBytes)

    def test_deadDatagramsCounted(self):
        """
        Discarded datagrams, remembered until their deadline to drop their
        stragglers, count against both bounds (their bookkeeping is
        charged) and are evicted like the others.
        """
        r = Reassembler(maxDatagrams=3)
        for ident in (1, 2, 3):
            r.add(header(0, True, ident, length=8), b"x" * 8, 0)
            self.assertEqual(r.add(header(0, True, ident, length=8), b"y" * 8, 0)[0], OVERLAP)
        self.assertEqual((len(r), r.pendingBytes), (3, 0))
        self.assertEqual(r.chargedBytes, 3 * fragments.DATAGRAM_COST)
        self.assertEqual(r.add(header(0, True, 4, length=8), b"x" * 8, 0)[0], QUEUED)
        self.assertEqual((len(r), r.evicted), (3, 1))
        # The first was forgotten: its straggler is no longer poisoned.
        self.assertEqual(r.add(header(8, True, 1, length=8), b"z" * 8, 0)[0], QUEUED)

    def test_accountingBalances(self):
        """
        Completing, discarding, expiring and clearing give every charged
        byte back.
        """
        r = Reassembler()
        for h, p in pieces(bytes(4000), 1480):
            r.add(h, p, 0)
        r.add(header(0, True, 9, length=8), b"x" * 8, 0)
        r.add(header(0, True, 9, length=8), b"y" * 8, 0)
        r.add(header(0, True, 10, length=8), b"x" * 8, 0)
        self.assertEqual(r.chargedBytes, 2 * fragments.DATAGRAM_COST + fragments.FRAGMENT_COST + 8)
        r.expire(30.0)
        self.assertEqual((len(r), r.pendingBytes, r.chargedBytes), (0, 0, 0))
        r.add(header(0, True, 11, length=8), b"x" * 8, 0)
        r.clear()
        self.assertEqual((len(r), r.pendingBytes, r.chargedBytes), (0, 0, 0))


class TimeoutTests(SynchronousTestCase):
    """
    A datagram has 30 seconds from its first fragment.
    """

    def test_expire(self):
        """
        L{Reassembler.pollAt} is the first fragment's time plus 30 s; at
        that time L{Reassembler.expire} drops the datagram and reports its
        first fragment's header and 8 bytes (for ICMP time exceeded).
        """
        r = Reassembler()
        first = header(0, True, length=16)
        r.add(first, b"0123456789abcdef", 5.0)
        r.add(header(100, True, ident=8, length=8), b"x" * 8, 6.0)
        self.assertEqual(r.pollAt(), 35.0)
        self.assertEqual(r.expire(34.9), [])
        [expired] = r.expire(35.0)
        self.assertEqual((expired.first, expired.quote), (first, b"01234567"))
        self.assertEqual(r.pollAt(), 36.0)
        [second] = r.expire(36.0)
        self.assertEqual((second.first, second.quote), (None, b""))
        self.assertEqual((r.pollAt(), len(r), r.pendingBytes), (None, 0, 0))

    def test_poisonedForgottenQuietly(self):
        """
        A discarded datagram is remembered until its deadline (to drop its
        stragglers), then forgotten without a report.
        """
        r = Reassembler()
        r.add(header(0, True, length=8), b"x" * 8, 0)
        r.add(header(0, True, length=8), b"y" * 8, 0)
        self.assertEqual(r.expire(30.0), [])
        self.assertEqual(len(r), 0)
        self.assertEqual(r.add(header(8, False, length=8), b"z" * 8, 31.0)[0], QUEUED)


class FragmentTests(SynchronousTestCase):
    """
    L{fragment} cuts datagrams for the link.
    """

    def test_sizes(self):
        """
        A 9,000-byte payload at MTU 1500 becomes six fragments of at most
        1500 bytes, each (but the last) carrying a multiple of 8 bytes with
        MF set; they reassemble to the payload.
        """
        payload = random.Random(4).randbytes(9000)
        whole = IPv4Header(0, 9020, 99, 0, 0, 64, PROTO_UDP, 0, SRC, DST)
        datagrams = fragment(whole, payload, 1500)
        self.assertEqual([len(d) for d in datagrams], [1500] * 6 + [140])
        r = Reassembler()
        outcome = None
        for datagram in datagrams:
            h, p = parseIPv4(datagram)
            self.assertEqual(h.ident, 99)
            outcome = r.add(h, p, 0)
        self.assertEqual(outcome[1][1], payload)

    def test_refragment(self):
        """
        A fragment cut again keeps its offset base and, on its last piece,
        its own more-fragments flag.
        """
        h = IPv4Header(0, 0, 5, FLAG_MF, 800, 64, PROTO_UDP, 0, SRC, DST)
        datagrams = [parseIPv4(d)[0] for d in fragment(h, b"x" * 1600, 1000)]
        self.assertEqual([(d.fragmentOffset, d.flags) for d in datagrams], [(800, 1), (1776, 1)])

    def test_dontFragment(self):
        """
        A datagram with DF set may not be fragmented.
        """
        h = IPv4Header(0, 0, 5, FLAG_DF, 0, 64, PROTO_UDP, 0, SRC, DST)
        self.assertRaises(ValueError, fragment, h, b"x" * 3000, 1500)


class PropertyTests(SynchronousTestCase):
    """
    Hypothesis: whatever order, duplication or garbage arrives, reassembly
    returns the original or nothing, and never raises.
    """

    @PROPERTY
    @given(
        st.binary(min_size=60, max_size=3000),
        st.integers(min_value=68, max_value=1500),
        st.randoms(use_true_random=False),
        st.integers(min_value=0, max_value=3),
    )
    def test_shuffledWithDuplicates(self, payload, mtu, rng, duplicates):
        """
        Any fragmentation of any payload, shuffled and with exact
        duplicates, reassembles to exactly the payload (more than once only
        if every fragment was duplicated after the first completed: IP may
        duplicate datagrams).
        """
        whole = IPv4Header(0, 0, 1, 0, 0, 64, PROTO_UDP, 0, SRC, DST)
        datagrams = fragment(whole, payload, mtu)
        assume(len(datagrams) > 1)
        datagrams += [rng.choice(datagrams) for _ in range(duplicates)]
        rng.shuffle(datagrams)
        r = Reassembler()
        complete = []
        for datagram in datagrams:
            h, p = parseIPv4(datagram)
            outcome, result = r.add(h, p, 0)
            if outcome == COMPLETE:
                complete.append(result[1])
        self.assertTrue(complete)
        self.assertEqual(set(complete), {payload})
        self.assertLessEqual(len(complete), 1 + duplicates // len(set(datagrams)))

    @PROPERTY
    @given(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=8191),
                st.booleans(),
                st.binary(max_size=200),
                st.integers(min_value=0, max_value=3),
            ),
            max_size=40,
        )
    )
    def test_garbage(self, frags):
        """
        Arbitrary fragments (offsets, flags, lengths, identifications) only
        ever produce the named outcomes, and the byte accounting returns to
        zero once everything expired.
        """
        r = Reassembler(maxBytesPerSource=4000, maxDatagramsPerSource=3)
        outcomes = {QUEUED, DUPLICATE, OVERLAP, LIMIT, MALFORMED, POISONED, COMPLETE}
        for offset8, more, payload, ident in frags:
            h = header(offset8 * 8, more, ident, length=len(payload))
            outcome, result = r.add(h, payload, 0)
            self.assertIn(outcome, outcomes)
            self.assertEqual(result is not None, outcome == COMPLETE)
            self.assertLessEqual(r.pendingBytes, 4000)
        r.expire(fragments.REASSEMBLY_TIMEOUT)
        self.assertEqual((len(r), r.pendingBytes), (0, 0))
