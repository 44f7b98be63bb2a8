"""
Tests for L{vpnkit.protocols.flowtable}: least-recently-used order, the
cap, idle expiry, and the one timer that drives it.
"""

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols.flowtable import FlowExpiry, FlowTable


class FlowTableTests(SynchronousTestCase):
    """
    L{FlowTable} with time passed in.
    """

    def test_addAndGet(self):
        """
        Added flows are found by key; C{get} does not count as use.
        """
        table = FlowTable(4, 60)
        self.assertEqual(table.add("a", "A", 0), [])
        self.assertEqual((table.get("a"), table.get("b"), len(table)), ("A", None, 1))
        self.assertIn("a", table)

    def test_capEvictsLeastRecentlyUsed(self):
        """
        At the cap, adding a flow evicts the least recently used one: a
        flow touched recently survives even though it is older.
        """
        table = FlowTable(3, 60)
        for i, key in enumerate("abc"):
            table.add(key, key.upper(), i)
        table.touch("a", 5)
        self.assertEqual(table.add("d", "D", 6), ["B"])
        self.assertEqual(sorted(table.values()), ["A", "C", "D"])

    def test_makeRoom(self):
        """
        L{FlowTable.makeRoom} evicts so that one more flow fits, before the
        caller opens anything for it.
        """
        table = FlowTable(2, 60)
        table.add("a", "A", 0)
        self.assertEqual(table.makeRoom(), [])
        table.add("b", "B", 1)
        self.assertEqual(table.makeRoom(), ["A"])
        self.assertEqual(len(table), 1)

    def test_expiry(self):
        """
        A flow expires C{idleTimeout} after its last use; L{FlowTable.pollAt}
        says when the next one would.
        """
        table = FlowTable(10, 60)
        table.add("a", "A", 0)
        table.add("b", "B", 10)
        self.assertEqual(table.pollAt(), 60)
        table.touch("a", 30)
        self.assertEqual(table.pollAt(), 70)
        self.assertEqual(table.expire(69.9), [])
        self.assertEqual(table.expire(70), ["B"])
        self.assertEqual(table.expire(90), ["A"])
        self.assertEqual(table.pollAt(), None)

    def test_remove(self):
        """
        A removed flow is gone; removing an unknown key is harmless.
        """
        table = FlowTable(2, 60)
        table.add("a", "A", 0)
        self.assertEqual(table.remove("a"), "A")
        self.assertEqual(table.remove("a"), None)
        self.assertEqual(len(table), 0)

    def test_noRoom(self):
        """
        A table must hold at least one flow.
        """
        self.assertRaises(ValueError, FlowTable, 0, 60)


class FlowExpiryTests(SynchronousTestCase):
    """
    L{FlowExpiry}: one L{IDelayedCall} for the whole table.
    """

    def test_timer(self):
        """
        The timer fires at the first possible expiry; a flow used meanwhile
        survives and the timer re-arms for it; once the table is empty no
        timer remains.
        """
        clock = task.Clock()
        table = FlowTable(10, 60)
        expired = []
        expiry = FlowExpiry(table, clock, expired.extend)
        table.add("a", "A", 0)
        expiry.arm()
        expiry.arm()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(30)
        table.touch("a", clock.seconds())
        clock.advance(30)
        self.assertEqual(expired, [])
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [90])
        clock.advance(30)
        self.assertEqual(expired, ["A"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stop(self):
        """
        L{FlowExpiry.stop} cancels the timer.
        """
        clock = task.Clock()
        table = FlowTable(10, 60)
        expiry = FlowExpiry(table, clock, lambda flows: None)
        table.add("a", "A", 0)
        expiry.arm()
        expiry.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class RemovalTests(SynchronousTestCase):
    """
    L{FlowTable.removeGuest} and L{FlowTable.removeAll} hand back the flows
    they forget, for the caller to close.
    """

    def test_removeGuest(self):
        """
        Only the flows whose key starts with the guest's address go.
        """
        table = FlowTable(10, 60.0)
        table.add((b"a", 1), "a1", 0.0)
        table.add((b"b", 1), "b1", 0.0)
        table.add((b"a", 2, 53), "a2", 0.0)
        self.assertEqual(sorted(table.removeGuest(b"a")), ["a1", "a2"])
        self.assertEqual(table.values(), ["b1"])
        self.assertEqual(table.removeGuest(b"a"), [])

    def test_removeAll(self):
        """
        Every flow goes, and the table is empty.
        """
        table = FlowTable(10, 60.0)
        table.add(1, "one", 0.0)
        table.add(2, "two", 0.0)
        self.assertEqual(table.removeAll(), ["one", "two"])
        self.assertEqual(len(table), 0)
        self.assertIsNone(table.pollAt())
