# -*- test-case-name: tests.test_stack -*-
"""
L{Guests}: the one lifecycle every guest link goes through — lease an
address (by UUID, or ephemeral), attach to the switch, detach and give the
address back — and what must forget a guest when its link goes.

Links (vmnet, QEMU stream and datagram, vfkit, tap) depend on this narrow
L{vpnkit.interfaces.IGuests}, not on the whole stack.
"""

from ipaddress import IPv4Address

from zope.interface import implementer

from vpnkit.interfaces import IGuests
from vpnkit.log import GuestLog, logger

__all__ = ["Guests"]

log = logger("vpnkit.guests")


@implementer(IGuests)
class Guests:
    """
    @param pool: the L{vpnkit.leases.AddressPool}.
    @param switch: the L{vpnkit.protocols.switch.EthernetSwitch}.
    @param portGone: called with each detached port (the DHCP server
        forgets it).
    @param addressGone: called with a packed address once no guest holds
        it any more: the layers that keep per-guest state (TCP
        connections, NAT flows) drop it rather than keep host sockets open
        for a guest that is gone.
    """

    def __init__(self, config, counters, pool, switch, portGone=(), addressGone=(), clock=None):
        self._log = GuestLog(log, clock)
        self.config = config
        self.linkCounters = counters.link
        self.pool = pool
        self._switch = switch
        self._portGone = tuple(portGone)
        self._addressGone = tuple(addressGone)

    def leaseForUUID(self, uuid, preferred=None):
        """
        See L{vpnkit.leases.AddressPool.leaseForUUID}; C{preferred} is packed.
        """
        before = self.pool.reclaimed
        lease = self.pool.leaseForUUID(uuid, IPv4Address(preferred) if preferred else None)
        self._noteReclaim(before, lease)
        return lease

    def ephemeralLease(self):
        before = self.pool.reclaimed
        lease = self.pool.ephemeralLease()
        self._noteReclaim(before, lease)
        return lease

    def _noteReclaim(self, before, lease):
        if self.pool.reclaimed != before:
            self._log.info(
                "every address is held: {ip} was reclaimed from the UUID detached longest ago",
                ip=lease.ip,
            )

    def release(self, lease):
        """
        Give back a lease that never reached the switch (the link failed
        before it could attach).
        """
        self.pool.release(lease)

    def attach(self, link, lease, mac):
        """
        Plug a guest link into the switch.

        @param mac: the guest's MAC, or C{None} for links whose guest picks
            its own (learnt from its first frame).
        @return: the L{vpnkit.protocols.switch.SwitchPort} to feed frames to.
        """
        return self._switch.attach(link, lease, mac)

    def detach(self, port):
        """
        Unplug a guest link and give back its address if it was ephemeral.
        """
        self._switch.detach(port)
        for forget in self._portGone:
            forget(port)
        self.pool.release(port.lease)
        packed = port.lease.ip.packed
        if self._switch.portForIP(packed) is None:
            for forget in self._addressGone:
                forget(packed)

    def ports(self):
        return self._switch.ports()
