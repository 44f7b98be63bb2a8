# -*- test-case-name: tests.test_ip -*-
"""
What the layers above IP share across the two families: L{IPSender} and
L{ICMPErrors} send through the IPv4 or the IPv6 layer by the length of the
addresses (4 or 16 bytes), so TCP, UDP, the NAT and the forwards address
peers the same way in both and never ask which family they are in; and
L{Unreachable}, why a destination cannot be reached, which each family's
ICMP spells with its own code.
"""

import enum

from zope.interface import implementer

from vpnkit.interfaces import IICMPErrors, IIPSender

__all__ = ["IPSender", "ICMPErrors", "Unreachable", "isIPv6"]


class Unreachable(enum.Enum):
    """
    Why a guest's datagram cannot be delivered.

    @cvar NETWORK: no route to the destination's network (ICMP 3/0, ICMPv6 1/0).
    @cvar HOST: the destination does not answer (ICMP 3/1, ICMPv6 1/3).
    @cvar PORT: nothing listens on the port (ICMP 3/3, ICMPv6 1/4).
    @cvar PROHIBITED: vpnkit will not pass it on (ICMP 3/13, ICMPv6 1/1).
    """

    NETWORK = "network"
    HOST = "host"
    PORT = "port"
    PROHIBITED = "prohibited"


def isIPv6(packed):
    """
    Whether a packed address is an IPv6 one (16 bytes, not 4).
    """
    return len(packed) == 16


@implementer(IIPSender)
class IPSender:
    """
    One L{IIPSender} for both families.

    @param ipv4: the IPv4 layer's L{IIPSender}.
    @param ipv6: the IPv6 layer's, or C{None} when IPv6 is off (datagrams
        to IPv6 addresses are then dropped: nothing can have sent one).
    """

    def __init__(self, ipv4, ipv6=None):
        self.ipv4 = ipv4
        self.ipv6 = ipv6

    def sendIP(self, src, dst, protocol, payload, ttl=64, dstMAC=None, tail=b"", partialChecksum=None):
        layer = self.ipv4 if len(dst) == 4 else self.ipv6
        if layer is None:
            return False
        return layer.sendIP(src, dst, protocol, payload, ttl, dstMAC, tail, partialChecksum)


@implementer(IICMPErrors)
class ICMPErrors:
    """
    One L{IICMPErrors} for both families: ICMP for IPv4 senders, ICMPv6 for
    IPv6 ones.
    """

    def __init__(self, icmp, icmpv6=None):
        self.icmp = icmp
        self.icmpv6 = icmpv6

    def _for(self, header):
        return self.icmp if len(header.src) == 4 else self.icmpv6

    def sendUnreachable(self, reason, header, quote):
        errors = self._for(header)
        return errors is not None and errors.sendUnreachable(reason, header, quote)

    def sendHostError(self, error, header, quote):
        errors = self._for(header)
        return errors is not None and errors.sendHostError(error, header, quote)
