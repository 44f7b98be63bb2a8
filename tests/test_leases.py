"""
Tests for L{vpnkit.leases}: the reference's per-UUID address table
(its bridge tests "connect 2 nodes", "connect 10 nodes", "reconnect node"
and "preferred_ipv4"), and the ephemeral leases that are given back.
"""

import uuid as _uuid
from ipaddress import IPv4Address

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import StackConfig
from vpnkit.leases import AddressPool, AllocationError, Lease, guestMAC

A = IPv4Address


def uuidText(n):
    return str(_uuid.UUID(int=n))


class GuestMACTests(SynchronousTestCase):
    """
    L{guestMAC} numbers guests' MACs.
    """

    def test_counter(self):
        """
        Guest MACs are 02:50 followed by the guest number as a big-endian
        32-bit counter.
        """
        self.assertEqual(guestMAC(1), b"\x02\x50\x00\x00\x00\x01")
        self.assertEqual(guestMAC(2), b"\x02\x50\x00\x00\x00\x02")
        self.assertEqual(guestMAC(256), b"\x02\x50\x00\x00\x01\x00")
        self.assertEqual(guestMAC(0xFFFFFFFF), b"\x02\x50\xff\xff\xff\xff")

    def test_unicastLocallyAdministered(self):
        """
        Guest MACs are unicast and locally administered.
        """
        first = guestMAC(1)[0]
        self.assertEqual(first & 1, 0)
        self.assertEqual(first & 2, 2)


class UUIDLeaseTests(SynchronousTestCase):
    """
    L{AddressPool.leaseForUUID} keeps one address per UUID for the life of
    the pool.
    """

    def setUp(self):
        self.pool = AddressPool(StackConfig())

    def test_first(self):
        """
        The first guest gets 192.168.65.3 and MAC 02:50:00:00:00:01, a
        permanent lease bound to its UUID.
        """
        lease = self.pool.leaseForUUID(uuidText(1))
        self.assertEqual(lease, Lease(A("192.168.65.3"), b"\x02\x50\0\0\0\x01", uuidText(1), False))

    def test_reconnect(self):
        """
        The same UUID gets the same IP and MAC again ("reconnect node").
        """
        first = self.pool.leaseForUUID(uuidText(7))
        second = self.pool.leaseForUUID(uuidText(7))
        self.assertEqual((second.ip, second.mac), (first.ip, first.mac))
        self.assertEqual(self.pool.leases(), [first])

    def test_connectTenNodes(self):
        """
        Ten UUIDs get ten distinct addresses from 192.168.65.3 upward and ten
        distinct MACs numbered from 1 ("connect 10 nodes").
        """
        leases = [self.pool.leaseForUUID(uuidText(n)) for n in range(1, 11)]
        self.assertEqual(
            [str(lease.ip) for lease in leases], [f"192.168.65.{n}" for n in range(3, 13)]
        )
        self.assertEqual([lease.mac for lease in leases], [guestMAC(n) for n in range(1, 11)])
        self.assertEqual(len({lease.mac for lease in leases}), 10)

    def test_preferred(self):
        """
        A new UUID with a preferred address gets it; reconnecting with the
        same UUID and address gives the same lease ("preferred_ipv4").
        """
        lease = self.pool.leaseForUUID(uuidText(1), A("192.168.65.250"))
        self.assertEqual(lease.ip, A("192.168.65.250"))
        self.assertEqual(lease.mac, guestMAC(1))
        again = self.pool.leaseForUUID(uuidText(1), A("192.168.65.250"))
        self.assertEqual((again.ip, again.mac), (lease.ip, lease.mac))

    def test_preferredThenPlain(self):
        """
        Reconnecting without a preferred address keeps the one preferred
        before.
        """
        lease = self.pool.leaseForUUID(uuidText(1), A("192.168.65.250"))
        self.assertIs(self.pool.leaseForUUID(uuidText(1)), lease)

    def test_preferredDifferentForSameUUID(self):
        """
        The same UUID asking for another address is refused with the
        reference's reason.
        """
        self.pool.leaseForUUID(uuidText(1), A("192.168.65.250"))
        error = self.assertRaises(
            AllocationError, self.pool.leaseForUUID, uuidText(1), A("192.168.65.251")
        )
        self.assertEqual(
            str(error),
            "UUID already assigned to a different IP than the IP requested by the client",
        )

    def test_preferredAlreadyUsed(self):
        """
        A new UUID asking for an address another UUID holds is refused with
        the reference's reason.
        """
        self.pool.leaseForUUID(uuidText(1), A("192.168.65.250"))
        error = self.assertRaises(
            AllocationError, self.pool.leaseForUUID, uuidText(2), A("192.168.65.250")
        )
        self.assertEqual(str(error), "Preferred IP address 192.168.65.250 already used.")

    def test_preferredOutOfRange(self):
        """
        A preferred address outside the guest range is refused with the
        reference's reason, whichever side it is on.
        """
        for address in ["192.168.65.2", "192.168.65.255", "10.0.0.1", "192.168.65.1"]:
            error = self.assertRaises(
                AllocationError, self.pool.leaseForUUID, uuidText(1), A(address)
            )
            self.assertEqual(str(error), "Preferred IP address out of range.")
        self.assertEqual(self.pool.leases(), [])

    def test_preferredRangeEnds(self):
        """
        Both ends of the range can be asked for.
        """
        self.assertEqual(
            self.pool.leaseForUUID(uuidText(1), A("192.168.65.3")).ip, A("192.168.65.3")
        )
        self.assertEqual(
            self.pool.leaseForUUID(uuidText(2), A("192.168.65.254")).ip, A("192.168.65.254")
        )

    def test_scanSkipsPreferred(self):
        """
        Addresses are handed out from the bottom, skipping ones already held.
        """
        self.pool.leaseForUUID(uuidText(1), A("192.168.65.3"))
        self.pool.leaseForUUID(uuidText(2), A("192.168.65.5"))
        self.assertEqual(self.pool.leaseForUUID(uuidText(3)).ip, A("192.168.65.4"))
        self.assertEqual(self.pool.leaseForUUID(uuidText(4)).ip, A("192.168.65.6"))

    def test_exhausted(self):
        """
        Once every address is held a new UUID is refused with "No IP
        addresses available.", and a known UUID still gets its lease.
        """
        pool = AddressPool(StackConfig(lowestIP=A("192.168.65.3"), highestIP=A("192.168.65.5")))
        leases = [pool.leaseForUUID(uuidText(n)) for n in range(1, 4)]
        self.assertEqual(
            [str(lease.ip) for lease in leases], ["192.168.65.3", "192.168.65.4", "192.168.65.5"]
        )
        error = self.assertRaises(AllocationError, pool.leaseForUUID, uuidText(4))
        self.assertEqual(str(error), "No IP addresses available.")
        error = self.assertRaises(AllocationError, pool.ephemeralLease)
        self.assertEqual(str(error), "No IP addresses available.")
        self.assertIs(pool.leaseForUUID(uuidText(2)), leases[1])

    def test_permanentNotReleased(self):
        """
        A UUID's lease survives L{AddressPool.release}: its address is not
        handed to anyone else.
        """
        lease = self.pool.leaseForUUID(uuidText(1))
        self.pool.release(lease)
        self.assertEqual(self.pool.leases(), [lease])
        self.assertEqual(self.pool.leaseForUUID(uuidText(2)).ip, A("192.168.65.4"))
        self.assertIs(self.pool.leaseForUUID(uuidText(1)), lease)


class EphemeralLeaseTests(SynchronousTestCase):
    """
    Leases for guests without an identity are given back on release.
    """

    def setUp(self):
        self.pool = AddressPool(StackConfig())

    def test_allZeroUUID(self):
        """
        The all-zero UUID (passed as C{None}) gets an ephemeral lease under an
        invented random UUID, and every such guest gets a fresh address and
        MAC.
        """
        first = self.pool.leaseForUUID(None)
        second = self.pool.leaseForUUID(None)
        self.assertTrue(first.ephemeral)
        self.assertEqual(str(_uuid.UUID(first.uuid)), first.uuid)
        self.assertEqual(_uuid.UUID(first.uuid).version, 4)
        self.assertNotEqual(first.uuid, second.uuid)
        self.assertEqual((first.ip, first.mac), (A("192.168.65.3"), guestMAC(1)))
        self.assertEqual((second.ip, second.mac), (A("192.168.65.4"), guestMAC(2)))

    def test_allZeroUUIDReleased(self):
        """
        An all-zero UUID's address is reused once released; the MAC is new.
        """
        first = self.pool.leaseForUUID(None)
        self.pool.release(first)
        self.assertEqual(self.pool.leases(), [])
        again = self.pool.leaseForUUID(None)
        self.assertEqual(again.ip, first.ip)
        self.assertEqual(again.mac, guestMAC(2))

    def test_allZeroUUIDPreferred(self):
        """
        An all-zero UUID's preferred address is honoured.
        """
        lease = self.pool.leaseForUUID(None, A("192.168.65.77"))
        self.assertEqual(lease.ip, A("192.168.65.77"))
        self.assertTrue(lease.ephemeral)

    def test_ephemeral(self):
        """
        L{AddressPool.ephemeralLease} gives a lease with no UUID that
        L{AddressPool.release} gives back for the next guest.
        """
        lease = self.pool.ephemeralLease()
        self.assertEqual(lease, Lease(A("192.168.65.3"), guestMAC(1), None, True))
        self.pool.release(lease)
        self.assertEqual(self.pool.leaseForUUID(uuidText(1)).ip, A("192.168.65.3"))

    def test_releaseFillsGap(self):
        """
        A released address below held ones is the next one handed out.
        """
        low = self.pool.ephemeralLease()
        high = self.pool.ephemeralLease()
        self.pool.release(low)
        self.assertEqual(self.pool.leases(), [high])
        self.assertEqual(self.pool.ephemeralLease().ip, A("192.168.65.3"))

    def test_ephemeralPreferredChecks(self):
        """
        An ephemeral lease's preferred address goes through the same checks.
        """
        self.pool.ephemeralLease(A("192.168.65.9"))
        error = self.assertRaises(AllocationError, self.pool.ephemeralLease, A("192.168.65.9"))
        self.assertEqual(str(error), "Preferred IP address 192.168.65.9 already used.")
        error = self.assertRaises(AllocationError, self.pool.ephemeralLease, A("192.168.66.9"))
        self.assertEqual(str(error), "Preferred IP address out of range.")

    def test_releaseTwice(self):
        """
        Releasing a lease twice, or a stale lease whose address is now held
        by another guest, leaves the current holder alone.
        """
        old = self.pool.ephemeralLease()
        self.pool.release(old)
        new = self.pool.ephemeralLease()
        self.assertEqual(new.ip, old.ip)
        self.pool.release(old)
        self.assertEqual(self.pool.leases(), [new])
        self.assertEqual(self.pool.ephemeralLease().ip, A("192.168.65.4"))

    def test_reconnectLoopDoesNotExhaust(self):
        """
        A guest that connects and disconnects a thousand times with an
        all-zero UUID never runs the range out.
        """
        for _ in range(1000):
            lease = self.pool.leaseForUUID(None)
            self.assertEqual(lease.ip, A("192.168.65.3"))
            self.pool.release(lease)
        self.assertEqual(self.pool.leases(), [])


class ReclaimTests(SynchronousTestCase):
    """
    When the range is full, the UUID lease detached longest ago is
    reclaimed; a lease some link holds never is.
    """

    def setUp(self):
        self.pool = AddressPool(StackConfig(lowestIP=A("192.168.65.3"), highestIP=A("192.168.65.5")))

    def fill(self):
        return [self.pool.leaseForUUID(uuidText(n)) for n in range(1, 4)]

    def test_leastRecentlyDetached(self):
        """
        With .3, .4, .5 held by UUIDs 1, 2, 3 and then detached in the
        order 2, 3, 1, a new UUID gets 2's address and a fresh MAC; the
        next gets 3's.
        """
        one, two, three = self.fill()
        for lease in (two, three, one):
            self.pool.release(lease)
        four = self.pool.leaseForUUID(uuidText(4))
        self.assertEqual((four.ip, four.mac), (two.ip, guestMAC(4)))
        self.assertEqual(self.pool.leaseForUUID(uuidText(5)).ip, three.ip)
        self.assertEqual(self.pool.reclaimed, 2)

    def test_sameUUIDSameAddressUntilReclaimed(self):
        """
        A detached UUID coming back before its lease is reclaimed gets the
        same lease, and is no longer a candidate; once reclaimed, it is
        a new guest and gets whatever is free.
        """
        one, two, three = self.fill()
        self.pool.release(one)
        self.pool.release(two)
        self.assertIs(self.pool.leaseForUUID(uuidText(1)), one)
        self.assertEqual(self.pool.leaseForUUID(uuidText(4)).ip, two.ip)
        error = self.assertRaises(AllocationError, self.pool.leaseForUUID, uuidText(2))
        self.assertEqual(str(error), "No IP addresses available.")

    def test_heldNeverReclaimed(self):
        """
        A lease held by a link (even one of two links with the same UUID,
        the other gone) is never reclaimed.
        """
        one, two, three = self.fill()
        self.assertIs(self.pool.leaseForUUID(uuidText(1)), one)
        self.pool.release(one)
        error = self.assertRaises(AllocationError, self.pool.leaseForUUID, uuidText(4))
        self.assertEqual(str(error), "No IP addresses available.")
        self.pool.release(one)
        self.assertEqual(self.pool.leaseForUUID(uuidText(4)).ip, one.ip)

    def test_ephemeralReclaims(self):
        """
        Guests without a UUID may reclaim a detached UUID lease too.
        """
        one, two, three = self.fill()
        self.pool.release(three)
        self.assertEqual(self.pool.ephemeralLease().ip, three.ip)

    def test_staleReleaseIgnored(self):
        """
        Releasing a UUID lease that was already reclaimed changes nothing.
        """
        one, two, three = self.fill()
        self.pool.release(one)
        four = self.pool.leaseForUUID(uuidText(4))
        self.pool.release(one)
        self.assertEqual(sorted(l.uuid for l in self.pool.leases()), sorted([two.uuid, three.uuid, four.uuid]))
        error = self.assertRaises(AllocationError, self.pool.leaseForUUID, uuidText(5))
        self.assertEqual(str(error), "No IP addresses available.")

    def test_randomUUIDsNeverExhaust(self):
        """
        A thousand fresh UUIDs, each detached before the next, all get an
        address.
        """
        pool = AddressPool(StackConfig())
        for n in range(1000):
            lease = pool.leaseForUUID(str(_uuid.uuid4()))
            pool.release(lease)
        self.assertEqual(len(pool.leases()), 252)
        self.assertEqual(pool.reclaimed, 1000 - 252)
