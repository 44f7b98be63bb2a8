"""
Tests for L{vpnkit.protocols.ndp}, the pure Neighbor Discovery policy, and
L{vpnkit.ipv6config.IPv6Config}, driven by the solicitations a real Linux
guest sent (C{tests/ipv6fixtures.py}), with time passed as an argument.
"""

from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from tests.ipv6fixtures import (
    DAD_PROBE,
    DAD_PROBE_GLOBAL,
    GATEWAY,
    GUEST_ADDRESS,
    GUEST_LINK_LOCAL,
    GUEST_MAC,
    NEIGHBOR_SOLICITATION,
    ROUTER_LINK_LOCAL,
    ROUTER_MAC,
    ROUTER_SOLICITATION,
    ipv6Packet,
    ipv6Payload,
)
from vpnkit.config import ConfigError
from vpnkit.ipv6config import IPv6Config
from vpnkit.protocols.ndp import (
    Unanswered,
    answerNeighborSolicitation,
    answerRouterSolicitation,
    nextAdvertisementAt,
    routerAdvertisement,
)
from vpnkit.wire.dhcpv6 import INFINITY, duidLL
from vpnkit.wire.icmpv6 import (
    NA_OVERRIDE,
    NA_ROUTER,
    NA_SOLICITED,
    PREFIX_AUTONOMOUS,
    PREFIX_ON_LINK,
    RA_OTHER,
    DNSSearchList,
    MTUOption,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RecursiveDNSServers,
    RouterAdvertisement,
    RouterSolicitation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    emitICMPv6,
    parseICMPv6,
)
from vpnkit.wire.ipv6 import ALL_NODES, parseIPv6, solicitedNodeAddress

CONFIG = IPv6Config()
HOST_ALIAS = IPv6Address("fd00:65::2").packed
OTHER_GUEST = IPv6Address("fd00:65::4").packed
OTHER_GUEST_MAC = bytes.fromhex("025000000002")
ALL_NODES_MAC = bytes.fromhex("333300000001")


def captured(frame):
    """
    The IPv6 header and Neighbor Discovery message of a captured frame.
    """
    header, _ = parseIPv6(ipv6Packet(frame))
    return header, parseICMPv6(ipv6Payload(frame), header.src, header.dst)


def expectedAdvertisement(searchDomains=()):
    """
    vpnkit's Router Advertisement with the default plan, option by option.
    """
    options = (
        SourceLinkLayerAddress(ROUTER_MAC),
        MTUOption(1500),
        PrefixInformation(
            64,
            PREFIX_ON_LINK | PREFIX_AUTONOMOUS,
            INFINITY,
            INFINITY,
            IPv6Address("fd00:65::").packed,
        ),
        RecursiveDNSServers(1800, (GATEWAY,)),
    )
    if searchDomains:
        options += (DNSSearchList(1800, tuple(searchDomains)),)
    return RouterAdvertisement(64, RA_OTHER, 1800, 0, 0, options)


class ConfigTests(SynchronousTestCase):
    """
    L{IPv6Config}: SPEC 6's defaults and what is refused.
    """

    def test_defaults(self):
        """
        fd00:65::/64 with gateway ::1, host alias ::2, guests from ::3, RAs
        every 200 s announcing 1800 s, infinite lease times; the router's
        link-local address is the EUI-64 of the server MAC (the one the
        captured router, on that MAC, used).
        """
        self.assertEqual(CONFIG.prefix, IPv6Network("fd00:65::/64"))
        self.assertEqual(CONFIG.gatewayPacked, GATEWAY)
        self.assertEqual(CONFIG.hostAliasPacked, HOST_ALIAS)
        self.assertEqual(CONFIG.firstAddress, IPv6Address("fd00:65::3"))
        self.assertEqual(
            (CONFIG.raInterval, CONFIG.raLifetime, CONFIG.leaseTime), (200, 1800, INFINITY)
        )
        self.assertEqual(CONFIG.serverMAC, ROUTER_MAC)
        self.assertEqual(CONFIG.routerLinkLocalPacked, ROUTER_LINK_LOCAL)
        self.assertEqual(CONFIG.localAddresses, {ROUTER_LINK_LOCAL, GATEWAY, HOST_ALIAS})
        self.assertEqual(CONFIG.serverDUID, duidLL(ROUTER_MAC))

    def test_forPrefix(self):
        """
        C{--ipv6-prefix} puts gateway, host alias and the first guest at
        ::1, ::2 and ::3 of the prefix.
        """
        config = IPv6Config.forPrefix("fd12:3456:789a:1::/64")
        self.assertEqual(
            (config.gateway, config.hostAlias, config.firstAddress),
            (
                IPv6Address("fd12:3456:789a:1::1"),
                IPv6Address("fd12:3456:789a:1::2"),
                IPv6Address("fd12:3456:789a:1::3"),
            ),
        )

    def test_noHostAlias(self):
        """
        Without a host alias, vpnkit's addresses are the router's and the
        gateway's.
        """
        config = IPv6Config(hostAlias=None)
        self.assertIsNone(config.hostAliasPacked)
        self.assertEqual(config.localAddresses, {ROUTER_LINK_LOCAL, GATEWAY})

    def test_refused(self):
        """
        Prefixes other than an IPv6 /64, addresses outside it or colliding,
        guests below vpnkit's own addresses and RA timing outside RFC 4861's
        bounds are refused, naming the flag or setting.
        """
        for prefix in (
            "fd00:65::/48",
            "fd00:65::/96",
            "192.168.65.0/24",
            "nonsense",
            "fd00:65::1/64",
        ):
            with self.assertRaises(ConfigError, msg=prefix) as caught:
                IPv6Config.forPrefix(prefix)
            self.assertIn("--ipv6-prefix", str(caught.exception))
        for kwargs in (
            {"gateway": IPv6Address("fd00:66::1")},
            {"hostAlias": IPv6Address("fd00:65::1")},
            {"firstAddress": IPv6Address("fd00:65::2")},
            {"firstAddress": IPv6Address("fd00:66::3")},
            {"gateway": IPv6Address("fd00:65::ff")},
            {"raInterval": 3},
            {"raInterval": 1801},
            {"raLifetime": 199},
            {"raLifetime": 9001},
        ):
            with self.assertRaises(ConfigError, msg=kwargs):
                IPv6Config(**kwargs)
        self.assertEqual(IPv6Config(raLifetime=0).raLifetime, 0)

    def test_guestAddress(self):
        """
        The n-th guest of the IPv4 range gets the n-th address from ::3;
        none beyond the prefix.
        """
        self.assertEqual(CONFIG.guestAddress(0), IPv6Address("fd00:65::3"))
        self.assertEqual(CONFIG.guestAddress(251), IPv6Address("fd00:65::fe"))
        for index in (-1, 2**64):
            with self.assertRaises(ConfigError, msg=index):
                CONFIG.guestAddress(index)


class RouterSolicitationTests(SynchronousTestCase):
    """
    L{answerRouterSolicitation}.
    """

    def test_capturedSolicitation(self):
        """
        The kernel's solicitation (from its link-local address) gets the
        advertisement unicast to that address and the frame's source MAC.
        """
        header, solicitation = captured(ROUTER_SOLICITATION)
        self.assertIsInstance(solicitation, RouterSolicitation)
        self.assertEqual(
            answerRouterSolicitation(header, solicitation, GUEST_MAC, CONFIG),
            (expectedAdvertisement(), GUEST_LINK_LOCAL, GUEST_MAC),
        )

    def test_searchDomains(self):
        """
        A search list adds the DNSSL option.
        """
        header, solicitation = captured(ROUTER_SOLICITATION)
        advertisement, _, _ = answerRouterSolicitation(
            header, solicitation, GUEST_MAC, CONFIG, ("localdomain", "example.com")
        )
        self.assertEqual(advertisement, expectedAdvertisement(("localdomain", "example.com")))

    def test_unspecifiedSource(self):
        """
        A solicitation from :: (no link-local address yet) is answered to
        all nodes.
        """
        header, _ = captured(ROUTER_SOLICITATION)
        result = answerRouterSolicitation(
            replace(header, src=bytes(16)), RouterSolicitation(), GUEST_MAC, CONFIG
        )
        self.assertEqual(result, (expectedAdvertisement(), ALL_NODES, ALL_NODES_MAC))

    def test_unspecifiedWithAddressOption(self):
        """
        A solicitation from :: with a link-layer address option is invalid
        (RFC 4861 6.1.1).
        """
        header, solicitation = captured(ROUTER_SOLICITATION)
        self.assertIs(
            answerRouterSolicitation(
                replace(header, src=bytes(16)), solicitation, GUEST_MAC, CONFIG
            ),
            Unanswered.INVALID,
        )

    def test_hopLimit(self):
        """
        A solicitation that may have crossed a router (hop limit not 255)
        is ignored.
        """
        header, solicitation = captured(ROUTER_SOLICITATION)
        self.assertIs(
            answerRouterSolicitation(
                replace(header, hopLimit=254), solicitation, GUEST_MAC, CONFIG
            ),
            Unanswered.HOP_LIMIT,
        )

    def test_advertisementOnTheWire(self):
        """
        The advertisement emits from the router's link-local address to
        bytes a parser reads back as the same value.
        """
        advertisement = routerAdvertisement(CONFIG, ("localdomain",))
        data = emitICMPv6(advertisement, ROUTER_LINK_LOCAL, ALL_NODES)
        self.assertEqual(parseICMPv6(data, ROUTER_LINK_LOCAL, ALL_NODES), advertisement)
        self.assertFalse(advertisement.managed)
        self.assertTrue(advertisement.other)

    def test_config(self):
        """
        Another prefix, MTU and timing show in the advertisement; the DNS
        options last at least three intervals.
        """
        config = IPv6Config.forPrefix("fd00:1::/64", mtu=9000, raInterval=1000, raLifetime=1000)
        advertisement = routerAdvertisement(config)
        self.assertEqual(advertisement.routerLifetime, 1000)
        self.assertEqual(advertisement.option(MTUOption), MTUOption(9000))
        self.assertEqual(
            advertisement.option(PrefixInformation).prefix, IPv6Address("fd00:1::").packed
        )
        self.assertEqual(
            advertisement.option(RecursiveDNSServers),
            RecursiveDNSServers(3000, (IPv6Address("fd00:1::1").packed,)),
        )


class NeighborSolicitationTests(SynchronousTestCase):
    """
    L{answerNeighborSolicitation}.
    """

    neighbors = {
        GUEST_ADDRESS: GUEST_MAC,
        GUEST_LINK_LOCAL: GUEST_MAC,
        OTHER_GUEST: OTHER_GUEST_MAC,
    }

    def solicit(
        self, target, src=GUEST_ADDRESS, dst=None, askerMAC=GUEST_MAC, hopLimit=255, options=None
    ):
        """
        Answer a solicitation shaped like the guest's captured one, for
        C{target}.
        """
        header, solicitation = captured(NEIGHBOR_SOLICITATION)
        header = replace(
            header,
            src=src,
            dst=dst if dst is not None else solicitedNodeAddress(target),
            hopLimit=hopLimit,
        )
        if options is not None:
            solicitation = replace(solicitation, options=options)
        return answerNeighborSolicitation(
            header, replace(solicitation, target=target), askerMAC, CONFIG, self.neighbors
        )

    def test_capturedSolicitation(self):
        """
        The guest's solicitation for the gateway gets vpnkit's MAC as a
        router, solicited and overriding, unicast back to it.
        """
        header, solicitation = captured(NEIGHBOR_SOLICITATION)
        self.assertEqual(solicitation.target, GATEWAY)
        self.assertEqual(
            answerNeighborSolicitation(header, solicitation, GUEST_MAC, CONFIG, self.neighbors),
            (
                NeighborAdvertisement(
                    GATEWAY,
                    NA_ROUTER | NA_SOLICITED | NA_OVERRIDE,
                    (TargetLinkLayerAddress(ROUTER_MAC),),
                ),
                GUEST_ADDRESS,
                GUEST_MAC,
            ),
        )

    def test_vpnkitAddresses(self):
        """
        The router's link-local address and the host alias are vpnkit's
        too, asked by multicast or unicast (reachability confirmation).
        """
        for target in (ROUTER_LINK_LOCAL, HOST_ALIAS):
            for dst in (solicitedNodeAddress(target), target):
                advertisement, dstIP, dstMAC = self.solicit(target, dst=dst)
                self.assertEqual(
                    advertisement.flags, NA_ROUTER | NA_SOLICITED | NA_OVERRIDE, (target, dst)
                )
                self.assertEqual(advertisement.options, (TargetLinkLayerAddress(ROUTER_MAC),))
                self.assertEqual((dstIP, dstMAC), (GUEST_ADDRESS, GUEST_MAC))

    def test_noHostAlias(self):
        """
        Without the host alias, ::2 is nobody's.
        """
        header, solicitation = captured(NEIGHBOR_SOLICITATION)
        result = answerNeighborSolicitation(
            replace(header, dst=solicitedNodeAddress(HOST_ALIAS)),
            replace(solicitation, target=HOST_ALIAS),
            GUEST_MAC,
            IPv6Config(hostAlias=None),
            {},
        )
        self.assertIs(result, Unanswered.NOT_OURS)

    def test_otherGuest(self):
        """
        Another guest's address gets that guest's MAC, solicited but
        neither router nor override, so its own answer wins.
        """
        self.assertEqual(
            self.solicit(OTHER_GUEST),
            (
                NeighborAdvertisement(
                    OTHER_GUEST, NA_SOLICITED, (TargetLinkLayerAddress(OTHER_GUEST_MAC),)
                ),
                GUEST_ADDRESS,
                GUEST_MAC,
            ),
        )

    def test_unknown(self):
        """
        An address nobody holds gets no answer: remote hosts are reached
        through the gateway, never by Neighbor Discovery.
        """
        self.assertIs(self.solicit(IPv6Address("fd00:65::99").packed), Unanswered.NOT_OURS)
        self.assertIs(self.solicit(IPv6Address("2001:db8::1").packed), Unanswered.NOT_OURS)

    def test_ownAddress(self):
        """
        A guest asking for its own address gets no answer.
        """
        self.assertIs(self.solicit(GUEST_ADDRESS), Unanswered.OWN_ADDRESS)

    def test_guestDuplicateAddressProbes(self):
        """
        The kernel's probes for its link-local and SLAAC addresses are never
        answered, whoever holds the address: only a guest defends its own.
        """
        for frame in (DAD_PROBE, DAD_PROBE_GLOBAL):
            header, probe = captured(frame)
            self.assertIsInstance(probe, NeighborSolicitation)
            self.assertEqual(header.src, bytes(16))
            for asker in (GUEST_MAC, OTHER_GUEST_MAC):
                self.assertIs(
                    answerNeighborSolicitation(header, probe, asker, CONFIG, self.neighbors),
                    Unanswered.GUEST_DAD,
                )
        self.assertIs(self.solicit(OTHER_GUEST, src=bytes(16), options=()), Unanswered.GUEST_DAD)

    def test_defendOwnAddresses(self):
        """
        A probe for one of vpnkit's addresses gets the advertisement that
        defends it: to all nodes, not solicited (RFC 4861 7.2.4).
        """
        for target in (GATEWAY, HOST_ALIAS, ROUTER_LINK_LOCAL):
            self.assertEqual(
                self.solicit(target, src=bytes(16), options=()),
                (
                    NeighborAdvertisement(
                        target, NA_ROUTER | NA_OVERRIDE, (TargetLinkLayerAddress(ROUTER_MAC),)
                    ),
                    ALL_NODES,
                    ALL_NODES_MAC,
                ),
                target,
            )

    def test_invalid(self):
        """
        A multicast target, a probe not sent to the target's solicited-node
        group, and a probe with a link-layer address option are invalid;
        a hop limit other than 255 is refused first.
        """
        self.assertIs(self.solicit(ALL_NODES, dst=ALL_NODES), Unanswered.INVALID)
        self.assertIs(
            self.solicit(GATEWAY, src=bytes(16), dst=GATEWAY, options=()), Unanswered.INVALID
        )
        self.assertIs(self.solicit(GATEWAY, src=bytes(16)), Unanswered.INVALID)
        self.assertIs(self.solicit(GATEWAY, hopLimit=64), Unanswered.HOP_LIMIT)

    def test_repliesFollowTheFrame(self):
        """
        Replies go to the frame's source MAC, whatever the solicitation's
        link-layer address option claims.
        """
        forged = (SourceLinkLayerAddress(OTHER_GUEST_MAC),)
        _, _, dstMAC = self.solicit(GATEWAY, options=forged)
        self.assertEqual(dstMAC, GUEST_MAC)


class ScheduleTests(SynchronousTestCase):
    """
    L{nextAdvertisementAt}: unsolicited advertisements to a guest, time
    passed in.
    """

    def timeline(self, config, attachedAt, count):
        """
        The times of the first C{count} unsolicited advertisements to a
        guest attached at C{attachedAt}.
        """
        times = []
        at = nextAdvertisementAt(attachedAt, 0, config)
        for sent in range(1, count + 1):
            times.append(at)
            at = nextAdvertisementAt(at, sent, config)
        return times

    def test_defaults(self):
        """
        The first goes out on attach, the next two 16 s apart (RFC 4861's
        initial burst), then one every 200 s.
        """
        self.assertEqual(
            self.timeline(CONFIG, 100.0, 6), [100.0, 116.0, 132.0, 332.0, 532.0, 732.0]
        )

    def test_shortInterval(self):
        """
        An interval shorter than 16 s applies from the start.
        """
        config = IPv6Config(raInterval=10, raLifetime=30)
        self.assertEqual(self.timeline(config, 0.0, 5), [0.0, 10.0, 20.0, 30.0, 40.0])
