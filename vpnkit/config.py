# -*- test-case-name: tests.test_config -*-
"""
L{StackConfig}: the addressing plan and limits every layer is built from.

One frozen value, passed into constructors; there is no global
configuration.
"""

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from vpnkit.wire.ethernet import parseMAC

__all__ = ["StackConfig", "ConfigError", "MIN_MTU", "MAX_MTU", "DEFAULT_SERVER_MAC"]

MIN_MTU = 576
MAX_MTU = 65520
DEFAULT_SERVER_MAC = parseMAC("f6:16:36:bc:f9:c6")
# RFC 8200 5: every link that carries IPv6 has an MTU of at least 1280.
IPV6_MIN_MTU = 1280


class ConfigError(ValueError):
    """
    A configuration value that cannot be used; the message names the setting.
    """


def parseJSON(text, path, expected):
    """
    Parse a JSON configuration file's text whose top level must be of type
    C{expected} (C{list} or C{dict}).

    @raise ConfigError: naming C{path}: not JSON, or not of that type.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, expected):
        kind = "list" if expected is list else "object"
        raise ConfigError(f"{path}: expected a JSON {kind}")
    return value


def _subnetFor(addresses):
    """
    The smallest network containing every address.
    """
    values = [int(a) for a in addresses]
    for prefix in range(32, -1, -1):
        network = IPv4Network((min(values), prefix), strict=False)
        if all(IPv4Address(v) in network for v in values):
            return network
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class StackConfig:
    """
    The addressing plan and link parameters.

    @ivar hostIP: the address that stands for the host's 127.0.0.1, or
        C{None} when the alias is disabled (C{--host-ip 0.0.0.0}).
    @ivar domain: the DHCP domain name given on the command line, or
        C{None} to use C{dhcp.json} or C{"localdomain"}.
    @ivar ipv6Prefix: the guests' IPv6 /64 (C{--ipv6-prefix}), or C{None}
        for IPv4 only (C{--no-ipv6}).
    @ivar ipv6: the L{vpnkit.ipv6config.IPv6Config} built from
        C{ipv6Prefix}, the server MAC and the MTU, or C{None} (IPv6 off,
        also on a link whose MTU is under IPv6's minimum of 1280).
    """

    mtu: int = 1500
    gatewayIP: IPv4Address = IPv4Address("192.168.65.1")
    hostIP: IPv4Address | None = IPv4Address("192.168.65.2")
    lowestIP: IPv4Address = IPv4Address("192.168.65.3")
    highestIP: IPv4Address = IPv4Address("192.168.65.254")
    serverMAC: bytes = DEFAULT_SERVER_MAC
    domain: str | None = None
    hostNames: tuple = ("host.internal",)
    gatewayNames: tuple = ("gateway.internal",)
    vmNames: tuple = ("vm.internal",)
    maxUDPFlows: int = 1024
    ipv6Prefix: IPv6Network | None = IPv6Network("fd00:65::/64")
    subnet: IPv4Network = field(init=False)
    ipv6: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not MIN_MTU <= self.mtu <= MAX_MTU:
            raise ConfigError(f"--mtu: {self.mtu} is outside {MIN_MTU}..{MAX_MTU}")
        if self.lowestIP > self.highestIP:
            raise ConfigError(
                f"--lowest-ip {self.lowestIP} is above --highest-ip {self.highestIP}"
            )
        # As the reference: the smallest network holding the gateway, the
        # range, and the address after the larger of gateway and lowest.
        addresses = [
            self.gatewayIP,
            self.lowestIP,
            max(self.gatewayIP, self.lowestIP) + 1,
            self.highestIP,
        ]
        subnet = _subnetFor(addresses)
        if subnet.prefixlen > 30 or subnet.prefixlen < 8:
            raise ConfigError(
                f"--gateway-ip {self.gatewayIP}, --lowest-ip {self.lowestIP} and "
                f"--highest-ip {self.highestIP} do not form a usable subnet ({subnet})"
            )
        reserved = {subnet.network_address, subnet.broadcast_address}
        for name, value in [
            ("--gateway-ip", self.gatewayIP),
            ("--lowest-ip", self.lowestIP),
            ("--highest-ip", self.highestIP),
            ("--host-ip", self.hostIP),
        ]:
            if value in reserved:
                raise ConfigError(f"{name} {value} is the network or broadcast address of {subnet}")
        if self.lowestIP <= self.gatewayIP <= self.highestIP:
            raise ConfigError(
                f"--gateway-ip {self.gatewayIP} lies inside the guest range "
                f"{self.lowestIP}..{self.highestIP}"
            )
        if self.hostIP is not None:
            if self.hostIP == self.gatewayIP:
                raise ConfigError(f"--host-ip {self.hostIP} is the gateway address")
            if self.lowestIP <= self.hostIP <= self.highestIP:
                raise ConfigError(
                    f"--host-ip {self.hostIP} lies inside the guest range "
                    f"{self.lowestIP}..{self.highestIP}"
                )
        if self.maxUDPFlows < 1:
            raise ConfigError(f"--udp-max-flows: {self.maxUDPFlows} is not a positive number")
        for flag, names in [
            ("--host-names", self.hostNames),
            ("--gateway-names", self.gatewayNames),
            ("--vm-names", self.vmNames),
        ]:
            for name in names:
                if not name or not name.isascii() or len(name) > 253 or " " in name:
                    raise ConfigError(f"{flag}: {name!r} is not a DNS name")
        if len(self.serverMAC) != 6 or self.serverMAC[0] & 1:
            raise ConfigError("--server-macaddr must be a unicast MAC address")
        object.__setattr__(self, "subnet", subnet)
        object.__setattr__(self, "ipv6", self._ipv6Plan())

    def _ipv6Plan(self):
        if self.ipv6Prefix is None or self.mtu < IPV6_MIN_MTU:
            return None
        # Imported here: vpnkit.ipv6config builds on this module.
        from vpnkit.ipv6config import IPv6Config

        return IPv6Config.forPrefix(self.ipv6Prefix, serverMAC=self.serverMAC, mtu=self.mtu)

    @property
    def maxFrameSize(self):
        """
        The largest frame a guest may send: the MTU plus the Ethernet header
        and the slack the vmnet Vif response announces (C{mtu + 50}),
        capped by the 16-bit length fields.
        """
        return min(self.mtu + 50, 0xFFFF)

    @property
    def gatewayPacked(self):
        return self.gatewayIP.packed

    @property
    def hostPacked(self):
        return self.hostIP.packed if self.hostIP is not None else None

    def builtinNames(self):
        """
        The names vpnkit's DNS answers itself, each with its address:
        C{--gateway-names} the gateway, C{--host-names} the host alias (when
        enabled), C{--vm-names} the first guest address (as the reference:
        not each guest's own).
        """
        names = {}
        for name in self.vmNames:
            names[name] = self.lowestIP
        if self.hostIP is not None:
            for name in self.hostNames:
                names[name] = self.hostIP
        for name in self.gatewayNames:
            names[name] = self.gatewayIP
        return names
