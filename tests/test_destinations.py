"""
Tests for L{vpnkit.protocols.destinations}: the one rule saying which
destinations a guest's traffic may reach through the host's sockets.
"""

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import StackConfig
from vpnkit.protocols.destinations import GROUP, LOCAL, RESERVED, SUBNET, forwardable, refusal

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
