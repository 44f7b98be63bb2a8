"""
Tests for L{vpnkit.config}: the defaults and every refusal.
"""

from dataclasses import FrozenInstanceError
from ipaddress import IPv4Address, IPv4Network

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import DEFAULT_SERVER_MAC, MAX_MTU, MIN_MTU, ConfigError, StackConfig
from vpnkit.wire.ethernet import parseMAC

A = IPv4Address


class DefaultsTests(SynchronousTestCase):
    """
    L{StackConfig()} is the reference's addressing plan.
    """

    def test_addresses(self):
        """
        The defaults are subnet 192.168.65.0/24, gateway .1, host alias .2
        and guests .3 to .254, with server MAC f6:16:36:bc:f9:c6.
        """
        config = StackConfig()
        self.assertEqual(config.subnet, IPv4Network("192.168.65.0/24"))
        self.assertEqual(config.gatewayIP, A("192.168.65.1"))
        self.assertEqual(config.hostIP, A("192.168.65.2"))
        self.assertEqual(config.lowestIP, A("192.168.65.3"))
        self.assertEqual(config.highestIP, A("192.168.65.254"))
        self.assertEqual(config.serverMAC, b"\xf6\x16\x36\xbc\xf9\xc6")
        self.assertEqual(DEFAULT_SERVER_MAC, config.serverMAC)
        self.assertEqual(config.subnet.netmask, A("255.255.255.0"))
        self.assertEqual(config.subnet.broadcast_address, A("192.168.65.255"))
        self.assertIsNone(config.domain)

    def test_packed(self):
        """
        C{gatewayPacked} and C{hostPacked} are the 4-byte addresses.
        """
        config = StackConfig()
        self.assertEqual(config.gatewayPacked, b"\xc0\xa8\x41\x01")
        self.assertEqual(config.hostPacked, b"\xc0\xa8\x41\x02")

    def test_hostAliasDisabled(self):
        """
        With C{hostIP=None} (C{--host-ip 0.0.0.0}) C{hostPacked} is C{None}.
        """
        config = StackConfig(hostIP=None)
        self.assertIsNone(config.hostIP)
        self.assertIsNone(config.hostPacked)

    def test_hostAliasDisabledNames(self):
        """
        With the host alias disabled, the builtin names hold no host name
        (there is no address to give it); the gateway's and the guests'
        names are unchanged.
        """
        self.assertEqual(
            StackConfig(hostIP=None).builtinNames(),
            {"gateway.internal": A("192.168.65.1"), "vm.internal": A("192.168.65.3")},
        )
        self.assertEqual(StackConfig().builtinNames()["host.internal"], A("192.168.65.2"))

    def test_mtuAndMaxFrameSize(self):
        """
        The MTU defaults to 1500 and the largest guest frame is the MTU plus
        50 (what the vmnet Vif response announces).
        """
        self.assertEqual(StackConfig().mtu, 1500)
        self.assertEqual(StackConfig().maxFrameSize, 1550)
        self.assertEqual(StackConfig(mtu=9000).maxFrameSize, 9050)
        self.assertEqual(StackConfig(mtu=MIN_MTU).maxFrameSize, 626)

    def test_maxFrameSizeCapped(self):
        """
        The largest frame is capped at 65535, the limit of the 16-bit length
        fields, at the largest MTU.
        """
        self.assertEqual(StackConfig(mtu=MAX_MTU).maxFrameSize, 0xFFFF)

    def test_otherSubnet(self):
        """
        The subnet is the smallest network holding the gateway and the guest
        range.
        """
        config = StackConfig(
            gatewayIP=A("10.0.0.1"),
            hostIP=A("10.0.0.2"),
            lowestIP=A("10.0.0.10"),
            highestIP=A("10.0.3.200"),
        )
        self.assertEqual(config.subnet, IPv4Network("10.0.0.0/22"))

    def test_frozen(self):
        """
        A configuration cannot be changed once built.
        """
        config = StackConfig()
        self.assertRaises(FrozenInstanceError, setattr, config, "mtu", 9000)


class RefusalTests(SynchronousTestCase):
    """
    Every unusable value raises L{ConfigError} naming the flag.
    """

    def assertRefused(self, fragment, **kwargs):
        error = self.assertRaises(ConfigError, StackConfig, **kwargs)
        self.assertIn(fragment, str(error))
        return str(error)

    def test_configErrorIsValueError(self):
        """
        L{ConfigError} is a L{ValueError}.
        """
        self.assertTrue(issubclass(ConfigError, ValueError))

    def test_mtuBounds(self):
        """
        The MTU must lie in 576..65520; both ends are accepted.
        """
        self.assertEqual(StackConfig(mtu=576).mtu, 576)
        self.assertEqual(StackConfig(mtu=65520).mtu, 65520)
        self.assertEqual(self.assertRefused("--mtu", mtu=575), "--mtu: 575 is outside 576..65520")
        self.assertEqual(
            self.assertRefused("--mtu", mtu=65521), "--mtu: 65521 is outside 576..65520"
        )
        self.assertRefused("--mtu", mtu=0)

    def test_lowestAboveHighest(self):
        """
        A guest range whose lowest address is above its highest is refused,
        naming both flags.
        """
        message = self.assertRefused(
            "--lowest-ip", lowestIP=A("192.168.65.100"), highestIP=A("192.168.65.99")
        )
        self.assertEqual(message, "--lowest-ip 192.168.65.100 is above --highest-ip 192.168.65.99")

    def test_lowestEqualsHighest(self):
        """
        A range of one address is allowed.
        """
        config = StackConfig(lowestIP=A("192.168.65.9"), highestIP=A("192.168.65.9"))
        self.assertEqual(config.subnet, IPv4Network("192.168.65.0/28"))

    def test_gatewayInsideRange(self):
        """
        The gateway may not be one of the guests' addresses.
        """
        message = self.assertRefused("--gateway-ip", gatewayIP=A("192.168.65.10"))
        self.assertEqual(
            message,
            "--gateway-ip 192.168.65.10 lies inside the guest range "
            "192.168.65.3..192.168.65.254",
        )

    def test_gatewayAtRangeEnds(self):
        """
        The gateway at either end of the range is refused too.
        """
        self.assertRefused("--gateway-ip", gatewayIP=A("192.168.65.3"))
        self.assertRefused("--gateway-ip", gatewayIP=A("192.168.65.254"))

    def test_hostIsGateway(self):
        """
        The host alias may not be the gateway address.
        """
        message = self.assertRefused("--host-ip", hostIP=A("192.168.65.1"))
        self.assertEqual(message, "--host-ip 192.168.65.1 is the gateway address")

    def test_hostInsideRange(self):
        """
        The host alias may not be one of the guests' addresses.
        """
        message = self.assertRefused("--host-ip", hostIP=A("192.168.65.3"))
        self.assertEqual(
            message,
            "--host-ip 192.168.65.3 lies inside the guest range " "192.168.65.3..192.168.65.254",
        )

    def test_multicastServerMAC(self):
        """
        The server MAC must be a unicast address.
        """
        message = self.assertRefused("--server-macaddr", serverMAC=parseMAC("01:00:5e:00:00:01"))
        self.assertEqual(message, "--server-macaddr must be a unicast MAC address")
        self.assertRefused("--server-macaddr", serverMAC=b"\xff" * 6)

    def test_serverMACLength(self):
        """
        The server MAC must be 6 bytes.
        """
        self.assertRefused("--server-macaddr", serverMAC=b"\x02\x00\x00\x00\x00")

    def test_gatewayIsNetworkAddress(self):
        """
        The gateway may not be the subnet's network address.
        """
        message = self.assertRefused("--gateway-ip", gatewayIP=A("192.168.65.0"))
        self.assertEqual(
            message,
            "--gateway-ip 192.168.65.0 is the network or broadcast address of " "192.168.65.0/24",
        )

    def test_highestIsBroadcastAddress(self):
        """
        The top of the guest range may not be the broadcast address.
        """
        message = self.assertRefused("--highest-ip", highestIP=A("192.168.65.255"))
        self.assertEqual(
            message,
            "--highest-ip 192.168.65.255 is the network or broadcast address of " "192.168.65.0/24",
        )

    def test_lowestIsNetworkAddress(self):
        """
        The bottom of the guest range may not be the network address.
        """
        self.assertRefused(
            "--lowest-ip",
            gatewayIP=A("192.168.65.200"),
            lowestIP=A("192.168.65.0"),
            highestIP=A("192.168.65.100"),
        )

    def test_hostIsBroadcastOrNetworkAddress(self):
        """
        The host alias may not be the subnet's broadcast or network address
        (vpnkit would otherwise answer pings sent to the broadcast address as
        the host).
        """
        message = self.assertRefused("--host-ip", hostIP=A("192.168.65.255"))
        self.assertEqual(
            message,
            "--host-ip 192.168.65.255 is the network or broadcast address of 192.168.65.0/24",
        )
        self.assertRefused("--host-ip", hostIP=A("192.168.65.0"))

    def test_hostOutsideSubnet(self):
        """
        A host alias outside the subnet is allowed (guests reach it through
        the gateway).
        """
        self.assertEqual(StackConfig(hostIP=A("10.9.8.7")).hostPacked, b"\x0a\x09\x08\x07")

    def test_subnetTooWide(self):
        """
        Addresses that only share a prefix shorter than /8 are refused,
        naming all three flags.
        """
        message = self.assertRefused(
            "do not form a usable subnet",
            gatewayIP=A("10.0.0.1"),
            hostIP=None,
            lowestIP=A("192.168.65.3"),
            highestIP=A("192.168.65.254"),
        )
        self.assertIn("--gateway-ip 10.0.0.1", message)
        self.assertIn("--lowest-ip 192.168.65.3", message)
        self.assertIn("--highest-ip 192.168.65.254", message)

    def test_subnetTooNarrow(self):
        """
        The subnet also holds the address after the larger of gateway and
        lowest guest (as the reference computes it), so a one-guest range
        right after the gateway makes a /30 whose network address is the
        gateway: refused.  One address lower, the same range is a valid /30.
        """
        message = self.assertRefused(
            "--gateway-ip",
            gatewayIP=A("192.168.65.4"),
            hostIP=None,
            lowestIP=A("192.168.65.5"),
            highestIP=A("192.168.65.5"),
        )
        self.assertIn("network or broadcast address of 192.168.65.4/30", message)
        config = StackConfig(
            gatewayIP=A("192.168.65.1"),
            hostIP=None,
            lowestIP=A("192.168.65.2"),
            highestIP=A("192.168.65.2"),
        )
        self.assertEqual(str(config.subnet), "192.168.65.0/30")
