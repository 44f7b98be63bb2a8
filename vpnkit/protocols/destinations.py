# -*- test-case-name: tests.test_destinations -*-
"""
Which destinations a guest's traffic may reach through the host's sockets:
one pure rule, used by the TCP host route (L{vpnkit.host.proxy.HostRoute}),
the ICMP echo forwarder (L{vpnkit.protocols.icmp}) and the UDP NAT
(L{vpnkit.protocols.udpnat}), for both families: L{refusal} takes a packed
IPv4 or IPv6 address (4 or 16 bytes) and answers for either.

IPv4: the host alias stands for the host's 127.0.0.1 and is the only way to
the host's loopback.  Any other unicast address outside the guests' subnet
is dialled as it is.  Everything else is refused, for a reason
(L{Refusal}) that lets each protocol answer as a router would: vpnkit's
own gateway address, the subnet's other addresses (other guests are
reached at the IP layer, never through the host), group addresses, and the
reserved blocks (loopback, "this network" 0/8 with 0.0.0.0, which a host
socket takes for its own addresses, and 240/4).

IPv6 (L{refusal6}): the same, by the IPv6 plan (C{config.ipv6}): the IPv6
host alias stands for the host's ::1 and is the only way to it; vpnkit's
gateway and its router link-local address are L{LOCAL}; every other
address of the guests' prefix, held by a guest or not, is L{SUBNET}, and
so is every other link-local address (fe80::/10: the guests' link, which
a router never forwards to); multicast (ff00::/8) is L{GROUP}; and these
are L{RESERVED}:
 - ::/8, the IETF's reserved block, except the NAT64 prefixes allocated
   from it (below): the unspecified address ::, the loopback ::1, the
   IPv4-mapped ::ffff:0:0/96 (an IPv6 socket would carry it over IPv4,
   to the host's 127.0.0.1 for ::ffff:127.0.0.1), the deprecated
   IPv4-compatible ::/96 and the SIIT ::ffff:0:0:0/96;
 - the deprecated site-local fec0::/10 (RFC 3879) and the reserved
   fe00::/9 beside it;
 - the NAT64 well-known prefix 64:ff9b::/96 (RFC 6052) and 6to4
   2002::/16 (RFC 3056) when the IPv4 address they embed is one IPv4
   refuses as reserved (127/8, 0/8, 240/4; a group address there is
   L{GROUP}): a translator or tunnel on the host would otherwise take
   them to an IPv4 address the guest may not reach directly.  The
   local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) is passed on: where
   its IPv4 address sits depends on the operator's prefix length, and
   the host's translator applies its own rules.
Any other address (global unicast, unique local fc00::/7 outside the
guests' prefix, documentation 2001:db8::/32, ...) is dialled as it is.
With IPv6 off (C{config.ipv6} is C{None}) only the fixed ranges apply.
"""

from enum import Enum

__all__ = [
    "Refusal",
    "LOCAL",
    "SUBNET",
    "GROUP",
    "RESERVED",
    "refusal",
    "refusal6",
    "forwardable",
]


class Refusal(Enum):
    """
    Why a destination is not passed to the host.
    """

    LOCAL = "local"
    """The gateway (IPv6: also the router's link-local address): vpnkit's
    own services answer, never the host's."""
    SUBNET = "subnet"
    """Another address of the guests' subnet or IPv6 prefix (held by a
    guest or not), or an IPv6 link-local address not vpnkit's."""
    GROUP = "group"
    """Multicast (224/4, ff00::/8), the limited broadcast, or the subnet's
    broadcast or network address: no ICMP error may be sent about these
    (RFC 1122 3.2.2, RFC 4443 2.4 (e.3))."""
    RESERVED = "reserved"
    """Loopback (127/8, ::1), "this network" (0/8), the reserved 240/4,
    IPv6's reserved ::/8 (::, IPv4-mapped and -compatible addresses
    included), site-local fec0::/10, and the IPv4 reserved blocks embedded
    in NAT64 or 6to4 addresses."""


LOCAL = Refusal.LOCAL
SUBNET = Refusal.SUBNET
GROUP = Refusal.GROUP
RESERVED = Refusal.RESERVED

_LIMITED_BROADCAST = b"\xff\xff\xff\xff"
# RFC 6052 2.1: the NAT64 well-known prefix, 64:ff9b::/96.
_NAT64_PREFIX = bytes.fromhex("0064ff9b0000000000000000")
# RFC 8215: the local-use NAT64 prefix, 64:ff9b:1::/48.
_NAT64_LOCAL_PREFIX = bytes.fromhex("0064ff9b0001")
# RFC 3056 2: 6to4, 2002:V4ADDR::/48.
_6TO4_PREFIX = b"\x20\x02"


def refusal(config, dst):
    """
    Why traffic for C{dst} is not passed to the host, or C{None} when it
    is.

    @param config: the L{vpnkit.config.StackConfig}.
    @param dst: the packed destination address: 4 bytes (IPv4) or 16
        (IPv6, answered by L{refusal6}).
    @return: a L{Refusal}, or C{None}.
    """
    if len(dst) == 16:
        return refusal6(config, dst)
    if dst == config.hostPacked:
        return None
    if dst == config.gatewayPacked:
        return LOCAL
    special = _specialIPv4(dst)
    if special is not None:
        return special
    value = int.from_bytes(dst, "big")
    subnet = config.subnet
    if value & int(subnet.netmask) == int(subnet.network_address):
        if value == int(subnet.network_address) or value == int(subnet.broadcast_address):
            return GROUP
        return SUBNET
    return None


def _specialIPv4(dst):
    """
    The refusal of the IPv4 blocks no host socket is given, whatever the
    configuration: L{RESERVED} for 0/8, 127/8 and 240/4, L{GROUP} for
    224/4 and the limited broadcast; else C{None}.
    """
    first = dst[0]
    if first == 0 or first == 127:
        return RESERVED
    if first >= 224:
        if first < 240 or dst == _LIMITED_BROADCAST:
            return GROUP
        return RESERVED
    return None


def refusal6(config, dst):
    """
    Why traffic for the IPv6 address C{dst} is not passed to the host, or
    C{None} when it is (the rule in this module's docstring).

    @param config: the L{vpnkit.config.StackConfig}; its C{ipv6} plan
        (or C{None}) names the host alias, vpnkit's own addresses and the
        guests' prefix.
    @param dst: the packed (16-byte) destination address.
    @return: a L{Refusal}, or C{None}.
    """
    plan = config.ipv6
    if plan is not None:
        if dst == plan.hostAliasPacked:
            return None
        if dst == plan.gatewayPacked or dst == plan.routerLinkLocalPacked:
            return LOCAL
        # The prefix is a /64 (IPv6Config insists).
        if dst[:8] == plan.prefix.network_address.packed[:8]:
            return SUBNET
    first = dst[0]
    if first == 0:
        # ::/8, where the NAT64 prefixes were allocated too.
        if dst[:12] == _NAT64_PREFIX:
            return _specialIPv4(dst[12:])
        if dst[:6] == _NAT64_LOCAL_PREFIX:
            return None
        return RESERVED
    if first == 0xFF:
        return GROUP
    if first == 0xFE:
        # fe80::/10 link-local; the rest is site-local fec0::/10 and the
        # IETF's reserved fe00::/9.
        return SUBNET if dst[1] & 0xC0 == 0x80 else RESERVED
    if dst[:2] == _6TO4_PREFIX:
        return _specialIPv4(dst[2:6])
    return None


def forwardable(config, dst):
    """
    Whether traffic for packed address C{dst} (IPv4 or IPv6) may be passed
    to the host.
    """
    return refusal(config, dst) is None
