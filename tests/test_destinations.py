"""
Tests for L{vpnkit.protocols.destinations}: the one rule saying which
destinations a guest's traffic may reach through the host's sockets.
"""

from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import StackConfig
from vpnkit.protocols.destinations import (
    GROUP,
    LOCAL,
    RESERVED,
    SUBNET,
    forwardable,
    refusal,
    refusal6,
)

from tests.helpers import ip


class RefusalTests(SynchronousTestCase):
    """
    L{refusal} names why a destination is not the host's business, or
    answers C{None} for one that is.
    """

    def setUp(self):
        self.config = StackConfig()

    def assertRefusals(self, expected, config=None):
        config = config or self.config
        self.assertEqual({dst: refusal(config, ip(dst)) for dst in expected}, expected)
        for dst, reason in expected.items():
            self.assertEqual(forwardable(config, ip(dst)), reason is None, dst)

    def test_remote(self):
        """
        Ordinary unicast addresses outside the subnet go to the host,
        including those next to the refused ranges.
        """
        self.assertRefusals(
            {
                "198.51.100.10": None,
                "8.8.8.8": None,
                "1.0.0.1": None,
                "126.255.255.254": None,
                "128.0.0.1": None,
                "223.255.255.254": None,
                "192.168.64.255": None,
                "192.168.66.0": None,
            }
        )

    def test_hostAlias(self):
        """
        The host alias goes to the host (its 127.0.0.1); the gateway is
        vpnkit's own.
        """
        self.assertRefusals({"192.168.65.2": None, "192.168.65.1": LOCAL})

    def test_reserved(self):
        """
        Loopback, "this network" (0/8, 0.0.0.0 included) and 240/4 are
        never dialled.
        """
        self.assertRefusals(
            {
                "127.0.0.1": RESERVED,
                "127.255.255.254": RESERVED,
                "0.0.0.0": RESERVED,
                "0.1.2.3": RESERVED,
                "240.0.0.1": RESERVED,
                "255.255.255.254": RESERVED,
            }
        )

    def test_group(self):
        """
        Multicast, the limited broadcast and the subnet's broadcast and
        network addresses are group destinations.
        """
        self.assertRefusals(
            {
                "224.0.0.1": GROUP,
                "239.255.255.250": GROUP,
                "255.255.255.255": GROUP,
                "192.168.65.255": GROUP,
                "192.168.65.0": GROUP,
            }
        )

    def test_subnet(self):
        """
        Every other address of the guests' subnet (held by a guest or not)
        is never dialled on the host.
        """
        self.assertRefusals({"192.168.65.3": SUBNET, "192.168.65.77": SUBNET})

    def test_aliasDisabled(self):
        """
        With C{--host-ip 0.0.0.0}, the alias's address is an ordinary
        subnet address, and loopback stays refused.
        """
        config = StackConfig(hostIP=None)
        self.assertRefusals({"192.168.65.2": SUBNET, "127.0.0.1": RESERVED}, config)


def ip6(text):
    """
    The packed form of an IPv6 address.
    """
    return IPv6Address(text).packed


class RefusalIPv6Tests(SynchronousTestCase):
    """
    L{refusal6}, and L{refusal} given a 16-byte address, for IPv6
    destinations of the default plan (fd00:65::/64, gateway ::1, host
    alias ::2).
    """

    def setUp(self):
        self.config = StackConfig()

    def assertRefusals(self, expected, config=None):
        config = config or self.config
        self.assertEqual({dst: refusal6(config, ip6(dst)) for dst in expected}, expected)
        self.assertEqual({dst: refusal(config, ip6(dst)) for dst in expected}, expected)
        for dst, reason in expected.items():
            self.assertEqual(forwardable(config, ip6(dst)), reason is None, dst)

    def test_remote(self):
        """
        Global unicast, unique local addresses outside the guests' prefix
        and documentation addresses go to the host, including those next
        to the refused ranges.
        """
        self.assertRefusals(
            {
                "2001:db8::1": None,
                "2606:4700:4700::1111": None,
                "2a00:1450:4001:80b::200e": None,
                "fd00:66::1": None,
                "fd00:65:0:1::3": None,
                "fd00:64:ffff:ffff:ffff:ffff:ffff:ffff": None,
                "fc00::1": None,
                "100::1": None,
                "1ff:ffff::1": None,
                "fdff:ffff::1": None,
                "64:ff9b:1::7f00:1": None,
                "64:ff9b::808:808": None,
                "2002:808:808::1": None,
            }
        )

    def test_hostAlias(self):
        """
        The IPv6 host alias goes to the host (its ::1: the caller maps
        it); the gateway and the router's link-local address are
        vpnkit's own.
        """
        linkLocal = str(self.config.ipv6.routerLinkLocal)
        self.assertRefusals({"fd00:65::2": None, "fd00:65::1": LOCAL, linkLocal: LOCAL})

    def test_reserved(self):
        """
        ::/8 (unspecified, loopback, IPv4-mapped, IPv4-compatible and SIIT
        addresses: none may reach the host's IPv4 loopback or its ::1),
        site-local fec0::/10 and fe00::/9 are never dialled.
        """
        self.assertRefusals(
            {
                "::": RESERVED,
                "::1": RESERVED,
                "::ffff:127.0.0.1": RESERVED,
                "::ffff:127.255.255.254": RESERVED,
                "::ffff:8.8.8.8": RESERVED,
                "::ffff:192.168.65.2": RESERVED,
                "::127.0.0.1": RESERVED,
                "::ffff:0:127.0.0.1": RESERVED,
                "ff:ffff::1": RESERVED,
                "64:ff9b:2::1": RESERVED,
                "64:ff9b:0:0:1::1": RESERVED,
                "fec0::1": RESERVED,
                "feff:ffff::1": RESERVED,
                "fe00::1": RESERVED,
                "fe7f::1": RESERVED,
            }
        )

    def test_embeddedIPv4(self):
        """
        NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses embedding an
        IPv4 address that IPv4 refuses as reserved or group are refused
        alike; others pass (test_remote).
        """
        self.assertRefusals(
            {
                "64:ff9b::127.0.0.1": RESERVED,
                "64:ff9b::7f00:1": RESERVED,
                "64:ff9b::0.0.0.0": RESERVED,
                "64:ff9b::240.0.0.1": RESERVED,
                "64:ff9b::224.0.0.1": GROUP,
                "64:ff9b::255.255.255.255": GROUP,
                "2002:7f00:1::1": RESERVED,
                "2002:0:1::1": RESERVED,
                "2002:e000:1::1": GROUP,
            }
        )

    def test_group(self):
        """
        Multicast, every scope, is a group destination (no error may be
        sent).
        """
        self.assertRefusals(
            {
                "ff02::1": GROUP,
                "ff02::1:2": GROUP,
                "ff02::1:ff00:3": GROUP,
                "ff05::1:3": GROUP,
                "ff0e::101": GROUP,
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": GROUP,
            }
        )

    def test_subnet(self):
        """
        Every other address of the guests' prefix (held by a guest or not,
        the Subnet-Router anycast address fd00:65:: included) and every
        link-local address not vpnkit's are never dialled on the host: the
        guests' link is reached at the IP layer, and a router answers host
        (address) unreachable for what nobody there holds.
        """
        self.assertRefusals(
            {
                "fd00:65::": SUBNET,
                "fd00:65::3": SUBNET,
                "fd00:65::ffff": SUBNET,
                "fd00:65::ffff:ffff:ffff:ffff": SUBNET,
                "fe80::1": SUBNET,
                "fe80::50:ff:fe00:1": SUBNET,
                "febf:ffff::1": SUBNET,
            }
        )

    def test_otherPrefix(self):
        """
        With C{--ipv6-prefix 2001:db8:1::/64} the plan moves: the new
        gateway and alias are vpnkit's, the old prefix is remote.
        """
        config = StackConfig(ipv6Prefix=IPv6Network("2001:db8:1::/64"))
        self.assertRefusals(
            {
                "2001:db8:1::1": LOCAL,
                "2001:db8:1::2": None,
                "2001:db8:1::9": SUBNET,
                "fd00:65::1": None,
                "fd00:65::3": None,
                "::1": RESERVED,
            },
            config,
        )

    def test_ipv6Off(self):
        """
        With IPv6 off (C{--no-ipv6}), no address is vpnkit's or the
        guests'; the fixed ranges stay refused.
        """
        config = StackConfig(ipv6Prefix=None)
        self.assertIsNone(config.ipv6)
        self.assertRefusals(
            {
                "fd00:65::1": None,
                "fd00:65::2": None,
                "fd00:65::3": None,
                "fe80::1": SUBNET,
                "::1": RESERVED,
                "::ffff:127.0.0.1": RESERVED,
                "ff02::1": GROUP,
            },
            config,
        )

    def test_loopbackOnlyThroughAlias(self):
        """
        No destination a guest can name, except the alias, reaches the
        host's loopback of either family: ::1, the IPv4-mapped and
        -compatible spellings of 127/8, and NAT64/6to4 embeddings are all
        refused, as 127/8 itself is.
        """
        for text in ("::1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::127.0.0.1", "2002:7f00:1::"):
            self.assertEqual(refusal(self.config, ip6(text)), RESERVED, text)
        self.assertEqual(refusal(self.config, ip("127.0.0.1")), RESERVED)
