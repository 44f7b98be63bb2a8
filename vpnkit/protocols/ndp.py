# -*- test-case-name: tests.test_ndp -*-
"""
Neighbor Discovery (RFC 4861) as vpnkit's router answers it: pure policy,
not yet wired to the switch.

L{answerRouterSolicitation} and L{answerNeighborSolicitation} take a
received message and return the reply with where to send it, or an
L{Unanswered} member naming why there is none (one counter each, when the
glue is written).  L{routerAdvertisement} is the one advertisement vpnkit
sends, solicited or not, and L{nextAdvertisementAt} says when the next
unsolicited one is due, with time passed in.

What vpnkit answers:
  - a Router Solicitation: the advertisement, with the prefix for SLAAC
    (on-link and autonomous, lifetimes infinite), the O flag (DNS and the
    search list from DHCPv6 too), the link MTU, the gateway as recursive
    DNS server and the search list (RFC 8106);
  - a Neighbor Solicitation for one of vpnkit's addresses (router
    link-local, gateway, host alias): its MAC, as a router; a duplicate
    address probe for one of them gets the multicast advertisement that
    defends it;
  - a Neighbor Solicitation for another guest's address (a table passed
    in): that guest's MAC, without the override flag, so that the guest's
    own answer wins (RFC 4861 7.2.8);
  - never a duplicate address probe for a guest's address: only the guest
    that holds it may defend it.
"""

import enum

from vpnkit.wire.icmpv6 import (
    INFINITE_LIFETIME,
    NA_OVERRIDE,
    NA_ROUTER,
    NA_SOLICITED,
    PREFIX_AUTONOMOUS,
    PREFIX_ON_LINK,
    RA_OTHER,
    DNSSearchList,
    MTUOption,
    NeighborAdvertisement,
    PrefixInformation,
    RecursiveDNSServers,
    RouterAdvertisement,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
)
from vpnkit.wire.ipv6 import (
    ALL_NODES,
    UNSPECIFIED,
    isMulticast,
    multicastMAC,
    solicitedNodeAddress,
)

__all__ = [
    "Unanswered",
    "CUR_HOP_LIMIT",
    "MAX_INITIAL_RTR_ADVERTISEMENTS",
    "MAX_INITIAL_RTR_ADVERT_INTERVAL",
    "routerAdvertisement",
    "answerRouterSolicitation",
    "answerNeighborSolicitation",
    "nextAdvertisementAt",
]

# Neighbor Discovery messages are only valid when they cannot have crossed
# a router (RFC 4861 6.1, 7.1).
_ND_HOP_LIMIT = 255
# The hop limit vpnkit suggests to guests (and uses itself).
CUR_HOP_LIMIT = 64
# RFC 4861 10: the first advertisements after an interface comes up go out
# faster, so that hosts that missed the first configure quickly.
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16

_ALL_NODES_MAC = multicastMAC(ALL_NODES)


class Unanswered(enum.Enum):
    """
    Why a solicitation gets no answer; each value is the name of the
    counter the glue increments.
    """

    HOP_LIMIT = "ndpHopLimit"
    INVALID = "ndpInvalid"
    NOT_OURS = "ndpNotOurs"
    GUEST_DAD = "ndpGuestDAD"
    OWN_ADDRESS = "ndpOwnAddress"


def _dnsLifetime(config):
    """
    How long the DNS options hold: the router lifetime, and at least three
    advertisement intervals (RFC 8106 5.1).
    """
    return max(config.raLifetime, 3 * config.raInterval)


def routerAdvertisement(config, searchDomains=()):
    """
    vpnkit's Router Advertisement.

    @param config: the L{vpnkit.ipv6config.IPv6Config}.
    @param searchDomains: the DNS search list (left out when empty).
    """
    options = [
        SourceLinkLayerAddress(config.serverMAC),
        MTUOption(config.mtu),
        PrefixInformation(
            config.prefix.prefixlen,
            PREFIX_ON_LINK | PREFIX_AUTONOMOUS,
            INFINITE_LIFETIME,
            INFINITE_LIFETIME,
            config.prefix.network_address.packed,
        ),
        RecursiveDNSServers(_dnsLifetime(config), (config.gatewayPacked,)),
    ]
    if searchDomains:
        options.append(DNSSearchList(_dnsLifetime(config), tuple(searchDomains)))
    return RouterAdvertisement(
        curHopLimit=CUR_HOP_LIMIT,
        flags=RA_OTHER,
        routerLifetime=config.raLifetime,
        reachableTime=0,
        retransTimer=0,
        options=tuple(options),
    )


def answerRouterSolicitation(header, solicitation, askerMAC, config, searchDomains=()):
    """
    The answer to a Router Solicitation.

    @param header: its L{vpnkit.wire.ipv6.IPv6Header}.
    @param solicitation: the L{vpnkit.wire.icmpv6.RouterSolicitation}.
    @param askerMAC: the Ethernet source of the frame it came in.
    @return: C{(advertisement, dstIP, dstMAC)} (unicast to a soliciting
        host that has an address, RFC 4861 6.2.6; else to all nodes), or an
        L{Unanswered}.
    """
    if header.hopLimit != _ND_HOP_LIMIT:
        return Unanswered.HOP_LIMIT
    unspecified = header.src == UNSPECIFIED
    if unspecified and solicitation.option(SourceLinkLayerAddress) is not None:
        return Unanswered.INVALID
    advertisement = routerAdvertisement(config, searchDomains)
    if unspecified:
        return advertisement, ALL_NODES, _ALL_NODES_MAC
    return advertisement, header.src, askerMAC


def answerNeighborSolicitation(header, solicitation, askerMAC, config, neighbors):
    """
    The answer to a Neighbor Solicitation.

    @param header: its L{vpnkit.wire.ipv6.IPv6Header}.
    @param solicitation: the L{vpnkit.wire.icmpv6.NeighborSolicitation}.
    @param askerMAC: the Ethernet source of the frame it came in (replies
        go there, whatever a link-layer address option says).
    @param config: the L{vpnkit.ipv6config.IPv6Config}.
    @param neighbors: a mapping from the other guests' packed addresses to
        their MACs.
    @return: C{(advertisement, dstIP, dstMAC)}, or an L{Unanswered}.
    """
    if header.hopLimit != _ND_HOP_LIMIT:
        return Unanswered.HOP_LIMIT
    target = solicitation.target
    if isMulticast(target):
        return Unanswered.INVALID
    probe = header.src == UNSPECIFIED
    if probe and (
        header.dst != solicitedNodeAddress(target)
        or solicitation.option(SourceLinkLayerAddress) is not None
    ):
        return Unanswered.INVALID
    if target in config.localAddresses:
        mac = config.serverMAC
        flags = NA_ROUTER | NA_OVERRIDE
    else:
        mac = neighbors.get(target)
        if mac is None:
            return Unanswered.NOT_OURS
        if probe:
            return Unanswered.GUEST_DAD
        if mac == askerMAC:
            return Unanswered.OWN_ADDRESS
        flags = 0
    options = (TargetLinkLayerAddress(mac),)
    if probe:
        # RFC 4861 7.2.4: a probe is answered to all nodes, unsolicited.
        return NeighborAdvertisement(target, flags, options), ALL_NODES, _ALL_NODES_MAC
    advertisement = NeighborAdvertisement(target, flags | NA_SOLICITED, options)
    return advertisement, header.src, askerMAC


def nextAdvertisementAt(now, sent, config):
    """
    When the next unsolicited Router Advertisement to a guest is due.

    @param now: when the C{sent}-th advertisement went out, or (with
        C{sent} 0) when the guest attached: its first is due at once.
    @param sent: how many unsolicited advertisements the guest has had.
    @return: the time of the next one: the first few (up to
        L{MAX_INITIAL_RTR_ADVERTISEMENTS}) at most
        L{MAX_INITIAL_RTR_ADVERT_INTERVAL} seconds apart, then every
        C{config.raInterval} seconds.
    """
    if sent == 0:
        return now
    if sent < MAX_INITIAL_RTR_ADVERTISEMENTS:
        return now + min(MAX_INITIAL_RTR_ADVERT_INTERVAL, config.raInterval)
    return now + config.raInterval
