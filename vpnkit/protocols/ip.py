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
import errno
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from twisted.internet.address import IPv4Address as TwistedIPv4Address
from twisted.internet.address import IPv6Address as TwistedIPv6Address
from zope.interface import implementer

from vpnkit.interfaces import IICMPErrors, IIPSender

__all__ = [
    "IPSender",
    "ICMPErrors",
    "Unreachable",
    "ICMPV6_CODES",
    "forSendError",
    "isIPv6",
    "formatAddress",
    "packAddress",
    "socketFamily",
    "twistedAddress",
]


class Unreachable(enum.IntEnum):
    """
    Why a guest's datagram cannot be delivered.  The values are ICMP's
    destination unreachable codes (RFC 792, RFC 1812 5.2.7.1); ICMPv6 has
    its own code for each (RFC 4443 3.1, L{ICMPV6_CODES}).

    The guest's kernel reports some as soft errors (Linux: net and host
    unreachable over IPv4, which a UDP socket without C{IP_RECVERR}
    ignores) and others as hard ones; L{forSendError} picks hard ones for
    what the host refused at once.

    @cvar NETWORK: no route to the destination's network (soft).
    @cvar HOST: the destination does not answer (soft).
    @cvar PORT: nothing listens on the port.
    @cvar NO_ROUTE: destination network unknown: C{ENETUNREACH} at once.
    @cvar HOST_BLOCKED: host administratively prohibited (RFC 1122):
        C{EHOSTUNREACH} at once.
    @cvar PROHIBITED: communication administratively prohibited: vpnkit,
        or the host's firewall, will not pass it on.
    """

    NETWORK = 0
    HOST = 1
    PORT = 3
    NO_ROUTE = 6
    HOST_BLOCKED = 10
    PROHIBITED = 13


# ICMPv6 destination unreachable codes (RFC 4443 3.1): no route (0),
# administratively prohibited (1), address unreachable (3), port
# unreachable (4).  Linux takes every one as a hard error.
ICMPV6_CODES = {
    Unreachable.NETWORK: 0,
    Unreachable.HOST: 3,
    Unreachable.PORT: 4,
    Unreachable.NO_ROUTE: 0,
    Unreachable.HOST_BLOCKED: 3,
    Unreachable.PROHIBITED: 1,
}

_SEND_ERRORS = {
    errno.ENETUNREACH: Unreachable.NO_ROUTE,
    errno.EHOSTUNREACH: Unreachable.HOST_BLOCKED,
    errno.EACCES: Unreachable.PROHIBITED,
    errno.EPERM: Unreachable.PROHIBITED,
}


def forSendError(error):
    """
    What to tell a guest when a host socket refused at once to send its
    datagram: the C{OSError}'s errno as an L{Unreachable} the guest's
    socket reports as the same errno at once (no route: C{ENETUNREACH},
    C{EHOSTUNREACH}; the host's firewall: C{EACCES}, C{EPERM}), or C{None}
    for an error that says nothing about the destination.
    """
    return _SEND_ERRORS.get(error.errno)


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


def formatAddress(packed):
    """
    The text of a packed IPv4 or IPv6 address (C{"192.0.2.1"},
    C{"2001:db8::1"}).
    """
    return inet_ntop(AF_INET6 if len(packed) == 16 else AF_INET, packed)


def packAddress(text):
    """
    The packed form of an IPv4 or IPv6 address's text.

    @raise ValueError: neither.
    """
    try:
        return inet_pton(AF_INET6 if ":" in text else AF_INET, text)
    except OSError:
        raise ValueError(f"{text!r} is not an IP address") from None


def socketFamily(packed):
    """
    The socket family of a packed address: C{AF_INET} or C{AF_INET6}.
    """
    return AF_INET6 if len(packed) == 16 else AF_INET


def twistedAddress(kind, packed, port):
    """
    The Twisted address object (C{IPv4Address} or C{IPv6Address}) of
    C{kind} (C{"TCP"}, C{"UDP"}) for a packed address and a port.
    """
    if len(packed) == 16:
        return TwistedIPv6Address(kind, inet_ntop(AF_INET6, packed), port)
    return TwistedIPv4Address(kind, inet_ntop(AF_INET, packed), port)
