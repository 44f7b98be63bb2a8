# -*- test-case-name: tests.test_ndp -*-
"""
L{IPv6Config}: the IPv6 addressing plan of the guests' link (SPEC 6), one
frozen value like L{vpnkit.config.StackConfig}.

The guests' prefix is a /64 (SLAAC needs 64-bit interface identifiers);
vpnkit is the gateway (C{::1}) and stands for the host's C{::1} at the
host alias (C{::2}); stateful DHCPv6 hands out addresses from C{::3} on.
Router Advertisements come from the link-local address formed from the
server MAC.
"""

from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

from vpnkit.config import DEFAULT_SERVER_MAC, ConfigError
from vpnkit.wire.dhcpv6 import INFINITY, duidLL
from vpnkit.wire.ipv6 import linkLocalAddress

__all__ = ["IPv6Config", "DEFAULT_PREFIX"]

DEFAULT_PREFIX = IPv6Network("fd00:65::/64")

# RFC 4861 6.2.1: MaxRtrAdvInterval in [4, 1800] s; AdvDefaultLifetime 0
# or in [MaxRtrAdvInterval, 9000] s.
_MIN_RA_INTERVAL = 4
_MAX_RA_INTERVAL = 1800
_MAX_RA_LIFETIME = 9000


@dataclass(frozen=True)
class IPv6Config:
    """
    The IPv6 addressing plan and Neighbor Discovery timing.

    @ivar hostAlias: the address that stands for the host's C{::1}, or
        C{None} without the alias.
    @ivar firstAddress: the stateful DHCPv6 address of the first guest;
        the guest whose IPv4 lease is the n-th of the range gets the n-th
        address from here (L{guestAddress}).
    @ivar raInterval: seconds between unsolicited Router Advertisements.
    @ivar raLifetime: the router lifetime the advertisements announce.
    @ivar leaseTime: preferred and valid lifetime of DHCPv6 addresses
        (L{INFINITY}, as the prefix's, while vpnkit runs).
    @ivar rapidCommit: whether a Solicit with Rapid Commit gets its Reply
        at once (RFC 8415 18.3.1).
    @ivar mtu: the link MTU announced in Router Advertisements.
    """

    prefix: IPv6Network = DEFAULT_PREFIX
    gateway: IPv6Address = IPv6Address("fd00:65::1")
    hostAlias: IPv6Address | None = IPv6Address("fd00:65::2")
    firstAddress: IPv6Address = IPv6Address("fd00:65::3")
    serverMAC: bytes = DEFAULT_SERVER_MAC
    mtu: int = 1500
    raInterval: int = 200
    raLifetime: int = 1800
    leaseTime: int = INFINITY
    rapidCommit: bool = True
    routerLinkLocal: IPv6Address = field(init=False)

    def __post_init__(self):
        if self.prefix.version != 6 or self.prefix.prefixlen != 64:
            raise ConfigError(f"--ipv6-prefix: {self.prefix} is not an IPv6 /64")
        for name, address in (
            ("gateway", self.gateway),
            ("host alias", self.hostAlias),
            ("first guest address", self.firstAddress),
        ):
            if address is not None and address not in self.prefix:
                raise ConfigError(f"--ipv6-prefix: {name} {address} is not in {self.prefix}")
        if self.gateway == self.hostAlias:
            raise ConfigError(f"--ipv6-prefix: gateway and host alias are both {self.gateway}")
        highest = max(a for a in (self.gateway, self.hostAlias) if a is not None)
        if self.firstAddress <= highest:
            raise ConfigError(
                f"--ipv6-prefix: guests from {self.firstAddress} would take vpnkit's {highest}"
            )
        if not _MIN_RA_INTERVAL <= self.raInterval <= _MAX_RA_INTERVAL:
            raise ConfigError(f"Router Advertisement interval {self.raInterval} s out of range")
        if self.raLifetime and not self.raInterval <= self.raLifetime <= _MAX_RA_LIFETIME:
            raise ConfigError(f"router lifetime {self.raLifetime} s out of range")
        object.__setattr__(self, "routerLinkLocal", IPv6Address(linkLocalAddress(self.serverMAC)))

    @classmethod
    def forPrefix(cls, prefix, **kwargs):
        """
        The plan for C{--ipv6-prefix PREFIX}: gateway C{::1}, host alias
        C{::2}, guests from C{::3}.

        @raise ConfigError: not an IPv6 /64.
        """
        try:
            network = IPv6Network(prefix)
        except ValueError as e:
            raise ConfigError(f"--ipv6-prefix: {e}") from None
        base = network.network_address
        kwargs.setdefault("gateway", base + 1)
        kwargs.setdefault("hostAlias", base + 2)
        kwargs.setdefault("firstAddress", base + 3)
        return cls(prefix=network, **kwargs)

    @property
    def gatewayPacked(self):
        return self.gateway.packed

    @property
    def hostAliasPacked(self):
        return None if self.hostAlias is None else self.hostAlias.packed

    @property
    def routerLinkLocalPacked(self):
        return self.routerLinkLocal.packed

    @property
    def localAddresses(self):
        """
        vpnkit's own packed addresses on the link: the router's link-local
        address, the gateway and the host alias.
        """
        addresses = {self.routerLinkLocal.packed, self.gateway.packed}
        if self.hostAlias is not None:
            addresses.add(self.hostAlias.packed)
        return frozenset(addresses)

    @property
    def serverDUID(self):
        """
        The DHCPv6 server identifier: the DUID-LL of the server MAC, the
        same for as long as the MAC is.
        """
        return duidLL(self.serverMAC)

    def guestAddress(self, index):
        """
        The stateful address of the guest whose lease is the C{index}-th
        (from 0) of the IPv4 range: stable for as long as that lease, so
        the same UUID gets the same IPv6 address as it gets the same IPv4
        one.

        @raise ConfigError: beyond the prefix.
        """
        address = self.firstAddress + index
        if index < 0 or address not in self.prefix:
            raise ConfigError(f"guest {index} has no address in {self.prefix}")
        return address
