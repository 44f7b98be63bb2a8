# -*- test-case-name: tests.test_destinations -*-
"""
Which destinations a guest's traffic may reach through the host's sockets:
one pure rule, used by the TCP host route (L{vpnkit.host.proxy.HostRoute}),
the ICMP echo forwarder (L{vpnkit.protocols.icmp}) and the UDP NAT
(L{vpnkit.protocols.udpnat}).

The host alias stands for the host's 127.0.0.1 and is the only way to the
host's loopback.  Any other unicast address outside the guests' subnet is
dialled as it is.  Everything else is refused, for a reason
(L{Refusal}) that lets each protocol answer as a router would: vpnkit's
own gateway address, the subnet's other addresses (other guests are
reached at the IP layer, never through the host), group addresses, and the
reserved blocks (loopback, "this network" 0/8 with 0.0.0.0, which a host
socket takes for its own addresses, and 240/4).
"""

from enum import Enum

__all__ = ["Refusal", "LOCAL", "SUBNET", "GROUP", "RESERVED", "refusal", "forwardable"]


class Refusal(Enum):
    """
    Why a destination is not passed to the host.
    """

    LOCAL = "local"
    """The gateway: vpnkit's own services answer, never the host's."""
    SUBNET = "subnet"
    """Another address of the guests' subnet (held by a guest or not)."""
    GROUP = "group"
    """Multicast (224/4), the limited broadcast, or the subnet's broadcast
    or network address: no ICMP error may be sent about these (RFC 1122
    3.2.2)."""
    RESERVED = "reserved"
    """Loopback (127/8), "this network" (0/8), or the reserved 240/4."""


LOCAL = Refusal.LOCAL
SUBNET = Refusal.SUBNET
GROUP = Refusal.GROUP
RESERVED = Refusal.RESERVED

_LIMITED_BROADCAST = b"\xff\xff\xff\xff"


def refusal(config, dst):
    """
    Why traffic for C{dst} is not passed to the host, or C{None} when it
    is.

    @param config: the L{vpnkit.config.StackConfig}.
    @param dst: the packed destination address.
    @return: a L{Refusal}, or C{None}.
    """
    if dst == config.hostPacked:
        return None
    if dst == config.gatewayPacked:
        return LOCAL
    first = dst[0]
    if first == 0 or first == 127:
        return RESERVED
    if first >= 224:
        if first < 240 or dst == _LIMITED_BROADCAST:
            return GROUP
        return RESERVED
    value = int.from_bytes(dst, "big")
    subnet = config.subnet
    if value & int(subnet.netmask) == int(subnet.network_address):
        if value == int(subnet.network_address) or value == int(subnet.broadcast_address):
            return GROUP
        return SUBNET
    return None


def forwardable(config, dst):
    """
    Whether traffic for packed address C{dst} may be passed to the host.
    """
    return refusal(config, dst) is None
