"""
Tests for the IPv6 flags of L{vpnkit.options.Options}: C{--ipv6-prefix}
and C{--no-ipv6}, and IPv6 addresses in the forwarding flags.
"""

from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from tests.test_tap import _OptionsMixin


class IPv6OptionsTests(_OptionsMixin, SynchronousTestCase):
    """
    C{--ipv6-prefix PREFIX} and C{--no-ipv6} reach
    L{vpnkit.config.StackConfig.ipv6Prefix}.
    """

    def test_default(self):
        """
        Without either flag the guests get fd00:65::/64.
        """
        config = self.parse("--ethernet", self.sock).config
        self.assertEqual(config.ipv6Prefix, IPv6Network("fd00:65::/64"))
        self.assertEqual(config.ipv6.gateway, IPv6Address("fd00:65::1"))

    def test_prefix(self):
        """
        C{--ipv6-prefix} gives the /64 the plan is built from: gateway
        C{::1}, host alias C{::2}, guests from C{::3}.
        """
        config = self.parse("--ethernet", self.sock, "--ipv6-prefix", "fd12:3456:789a:1::/64").config
        self.assertEqual(config.ipv6Prefix, IPv6Network("fd12:3456:789a:1::/64"))
        self.assertEqual(
            (config.ipv6.gateway, config.ipv6.hostAlias, config.ipv6.guestAddress(0)),
            (
                IPv6Address("fd12:3456:789a:1::1"),
                IPv6Address("fd12:3456:789a:1::2"),
                IPv6Address("fd12:3456:789a:1::3"),
            ),
        )

    def test_noIPv6(self):
        """
        C{--no-ipv6} turns IPv6 off.
        """
        config = self.parse("--ethernet", self.sock, "--no-ipv6").config
        self.assertIsNone(config.ipv6Prefix)
        self.assertIsNone(config.ipv6)

    def test_badPrefix(self):
        """
        A prefix that is not an IPv6 /64 stops start-up with one line
        naming C{--ipv6-prefix}.
        """
        for value in ("fd00::/48", "10.0.0.0/8", "fd00:65::1/64", "nonsense", "fd00:65::/128"):
            message = self.assertUsageError(
                ["--ethernet", self.sock, "--ipv6-prefix", value], "--ipv6-prefix"
            )
            self.assertNotIn("\n", message)
            self.assertTrue(message.startswith("--ipv6-prefix: "), message)

    def test_badPrefixSmallMTU(self):
        """
        A bad prefix is refused even on a link whose MTU is too small for
        IPv6 (where IPv6 is off anyway).
        """
        self.assertUsageError(
            ["--ethernet", self.sock, "--mtu", "576", "--ipv6-prefix", "fd00::/48"], "--ipv6-prefix"
        )
        config = self.parse("--ethernet", self.sock, "--mtu", "576").config
        self.assertIsNone(config.ipv6)

    def test_both(self):
        """
        C{--ipv6-prefix} with C{--no-ipv6} is a contradiction, refused.
        """
        self.assertUsageError(
            ["--ethernet", self.sock, "--no-ipv6", "--ipv6-prefix", "fd00:1::/64"],
            "--ipv6-prefix",
            "--no-ipv6",
        )
