# -*- test-case-name: tests.test_leases -*-
"""
The guests' addresses: which IP and MAC each attached guest owns.

A vmnet guest is known by the UUID it sends in its handshake and gets the
same address whenever it comes back (the reference's behaviour) for as long
as its lease is not reclaimed.  Guests without an identity (an all-zero
UUID, a QEMU connection, a tap device) get an I{ephemeral} lease that is
released when their link goes away, so reconnect loops cannot exhaust the
range.

Unlike the reference, a UUID's lease does not last for the life of the
process whatever happens: when every address is held and a new guest
arrives, the lease of the UUID whose last link went away longest ago is
reclaimed for it.  Only a lease no link holds is ever reclaimed, so a
client sending fresh random UUIDs cannot lock out new guests until a
restart; it can only push out UUIDs that are gone.
"""

import uuid as _uuid
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import IPv4Address

from vpnkit.config import ConfigError

__all__ = ["Lease", "AllocationError", "AddressPool", "guestMAC", "ipv6ForLease"]


def guestMAC(n):
    """
    The MAC of the C{n}th guest: C{02:50} followed by C{n} as a big-endian
    32-bit counter (locally administered, unicast).
    """
    return b"\x02\x50" + n.to_bytes(4, "big")


def ipv6ForLease(config, lease):
    """
    The stable IPv6 address that goes with C{lease} (the guest whose IPv4
    address is the n-th of the range has the n-th IPv6 address,
    L{vpnkit.ipv6config.IPv6Config.guestAddress}), or C{None} when IPv6
    is off.
    """
    if config.ipv6 is None:
        return None
    try:
        return config.ipv6.guestAddress(int(lease.ip) - int(config.lowestIP))
    except ConfigError:
        return None


@dataclass(frozen=True)
class Lease:
    """
    An address held by one guest.

    @ivar uuid: the vmnet UUID the lease is bound to (invented for an
        all-zero UUID), or C{None} for QEMU and tap guests.
    @ivar ephemeral: released when the guest's link closes.
    """

    ip: IPv4Address
    mac: bytes
    uuid: str | None
    ephemeral: bool


class AllocationError(Exception):
    """
    No address can be given; C{str()} is the reason sent to the client (the
    reference's wording).
    """


class AddressPool:
    """
    Hands out the addresses between C{config.lowestIP} and
    C{config.highestIP}.

    @ivar reclaimed: how many detached UUID leases were taken back for a
        new guest.
    """

    def __init__(self, config):
        self._lowest = config.lowestIP
        self._highest = config.highestIP
        self._byUUID = {}
        self._byIP = {}
        self._macCounter = 0
        # How many links hold each UUID's lease, and the UUID leases no
        # link holds, least recently detached first.
        self._holders = {}
        self._detached = OrderedDict()
        self.reclaimed = 0

    def _newMAC(self):
        self._macCounter += 1
        return guestMAC(self._macCounter)

    def _firstFree(self):
        ip = self._lowest
        while ip <= self._highest:
            if ip not in self._byIP:
                return ip
            ip += 1
        if self._detached:
            uuid, lease = self._detached.popitem(last=False)
            del self._byUUID[uuid]
            del self._byIP[lease.ip]
            self.reclaimed += 1
            return lease.ip
        raise AllocationError("No IP addresses available.")

    def _checkPreferred(self, preferred):
        if not self._lowest <= preferred <= self._highest:
            raise AllocationError("Preferred IP address out of range.")
        if preferred in self._byIP:
            raise AllocationError(f"Preferred IP address {preferred} already used.")

    def leaseForUUID(self, uuid, preferred=None):
        """
        The lease for a vmnet guest.

        @param uuid: canonical UUID text, or C{None} for the all-zero UUID
            (an ephemeral lease under an invented UUID).
        @param preferred: the L{IPv4Address} asked for, if any.
        @raise AllocationError: with the reference's reason strings.
        """
        if uuid is None:
            return self.ephemeralLease(preferred, uuid=str(_uuid.uuid4()))
        existing = self._byUUID.get(uuid)
        if existing is not None:
            if preferred is not None and preferred != existing.ip:
                raise AllocationError(
                    "UUID already assigned to a different IP than the IP "
                    "requested by the client"
                )
            self._detached.pop(uuid, None)
            self._holders[uuid] = self._holders.get(uuid, 0) + 1
            return existing
        if preferred is not None:
            self._checkPreferred(preferred)
            ip = preferred
        else:
            ip = self._firstFree()
        lease = Lease(ip, self._newMAC(), uuid, ephemeral=False)
        self._byUUID[uuid] = lease
        self._byIP[ip] = lease
        self._holders[uuid] = 1
        return lease

    def ephemeralLease(self, preferred=None, uuid=None):
        """
        A lease that L{release} gives back.

        @raise AllocationError: the range is exhausted, or C{preferred}
            cannot be had.
        """
        if preferred is not None:
            self._checkPreferred(preferred)
            ip = preferred
        else:
            ip = self._firstFree()
        lease = Lease(ip, self._newMAC(), uuid, ephemeral=True)
        self._byIP[ip] = lease
        return lease

    def release(self, lease):
        """
        A link holding C{lease} went away (or never attached): an ephemeral
        lease is given back; a UUID's lease is kept, and once no link holds
        it, it may be reclaimed when the range is full.
        """
        if lease.ephemeral:
            if self._byIP.get(lease.ip) is lease:
                del self._byIP[lease.ip]
            return
        uuid = lease.uuid
        if self._byUUID.get(uuid) is not lease:
            return
        holders = self._holders.get(uuid, 0) - 1
        if holders > 0:
            self._holders[uuid] = holders
            return
        self._holders.pop(uuid, None)
        self._detached[uuid] = lease
        self._detached.move_to_end(uuid)

    def leases(self):
        """
        Every lease currently held.
        """
        return list(self._byIP.values())
