"""
Tests for L{vpnkit.wire.seq}: 32-bit sequence-number arithmetic, with the
wraparound at 2**32 checked by hand and by Hypothesis properties.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.wire.seq import MOD, seqAdd, seqGE, seqGT, seqLE, seqLT, seqMax, seqMin, seqSub

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None)

sequenceNumbers = st.integers(min_value=0, max_value=MOD - 1)
# Distances a comparison can order: strictly inside half the space.
forward = st.integers(min_value=1, max_value=2**31 - 1)
TOP = MOD - 1


class ArithmeticTests(SynchronousTestCase):
    def test_addWraps(self):
        """
        seqAdd wraps at 2**32 both ways and never leaves range(2**32).
        """
        self.assertEqual(seqAdd(TOP, 1), 0)
        self.assertEqual(seqAdd(TOP - 2, 10), 7)
        self.assertEqual(seqAdd(0, -1), TOP)
        self.assertEqual(seqAdd(5, -10), MOD - 5)
        self.assertEqual(seqAdd(123, 0), 123)
        self.assertEqual(seqAdd(0, MOD), 0)

    def test_subIsSignedDistance(self):
        """
        seqSub is how far the first number is ahead of the second, negative
        when it is behind, across the wrap.
        """
        self.assertEqual(seqSub(5, TOP - 4), 10)
        self.assertEqual(seqSub(TOP - 4, 5), -10)
        self.assertEqual(seqSub(100, 100), 0)
        self.assertEqual(seqSub(2**31 - 1, 0), 2**31 - 1)
        self.assertEqual(seqSub(2**31, 0), -(2**31))

    def test_comparisonsAcrossTheWrap(self):
        """
        A number just past the wrap is after one just before it.
        """
        before, after = TOP - 1, 3
        self.assertTrue(seqLT(before, after))
        self.assertTrue(seqLE(before, after))
        self.assertFalse(seqGT(before, after))
        self.assertFalse(seqGE(before, after))
        self.assertTrue(seqGT(after, before))
        self.assertTrue(seqGE(after, before))
        self.assertFalse(seqLT(after, before))
        self.assertFalse(seqLE(after, before))

    def test_equality(self):
        """
        A number is LE and GE itself, never LT or GT.
        """
        for a in (0, 1, 2**31, TOP):
            self.assertTrue(seqLE(a, a))
            self.assertTrue(seqGE(a, a))
            self.assertFalse(seqLT(a, a))
            self.assertFalse(seqGT(a, a))

    def test_halfwayIsNotOrdered(self):
        """
        Numbers exactly 2**31 apart are not "less than" each other either
        way (RFC 1982 leaves the pair undefined; we never call it LT).
        """
        self.assertFalse(seqLT(0, 2**31))
        self.assertFalse(seqLT(2**31, 0))
        self.assertFalse(seqGT(0, 2**31))
        self.assertFalse(seqGT(2**31, 0))

    def test_maxMin(self):
        """
        seqMax and seqMin pick by sequence order, not integer order.
        """
        self.assertEqual(seqMax(TOP, 2), 2)
        self.assertEqual(seqMin(TOP, 2), TOP)
        self.assertEqual(seqMax(10, 20), 20)
        self.assertEqual(seqMin(10, 20), 10)
        self.assertEqual(seqMax(7, 7), 7)


class PropertyTests(SynchronousTestCase):
    @PROPERTY
    @given(sequenceNumbers, forward)
    def test_addedIsAfter(self, a, n):
        """
        a < a + n for every 0 < n < 2**31, wherever a sits.
        """
        b = seqAdd(a, n)
        self.assertTrue(seqLT(a, b))
        self.assertTrue(seqLE(a, b))
        self.assertTrue(seqGT(b, a))
        self.assertTrue(seqGE(b, a))
        self.assertFalse(seqLT(b, a))
        self.assertFalse(seqGE(a, b))

    @PROPERTY
    @given(sequenceNumbers, st.integers(min_value=-(2**31), max_value=2**31 - 1))
    def test_subInvertsAdd(self, a, n):
        """
        seqSub(a + n, a) == n for every n in the signed half range.
        """
        self.assertEqual(seqSub(seqAdd(a, n), a), n)

    @PROPERTY
    @given(sequenceNumbers, sequenceNumbers)
    def test_trichotomy(self, a, b):
        """
        Exactly one of LT, equal, GT holds, except for the pair exactly
        2**31 apart, where none does; LE/GE agree with LT/GT.
        """
        lt, gt, eq = seqLT(a, b), seqGT(a, b), a == b
        if seqSub(a, b) == -(2**31):
            self.assertEqual((lt, gt, eq), (False, False, False))
        else:
            self.assertEqual(lt + gt + eq, 1)
        self.assertEqual(seqLE(a, b), lt or eq)
        self.assertEqual(seqGE(a, b), gt or eq)

    @PROPERTY
    @given(sequenceNumbers, sequenceNumbers, st.integers(min_value=-(2**32), max_value=2**32))
    def test_shiftInvariant(self, a, b, k):
        """
        Moving both numbers by the same amount changes no comparison.
        """
        c, d = seqAdd(a, k), seqAdd(b, k)
        self.assertEqual(seqLT(a, b), seqLT(c, d))
        self.assertEqual(seqSub(a, b), seqSub(c, d))
