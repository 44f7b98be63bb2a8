"""
Tests for L{vpnkit.protocols.ip}: the family dispatchers and address
helpers the version-neutral layers share.
"""

import errno

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.interfaces import IICMPErrors, IIPSender
from vpnkit.protocols.ip import (
    ICMPV6_CODES,
    ICMPErrors,
    IPSender,
    Unreachable,
    forSendError,
    formatAddress,
    packAddress,
    twistedAddress,
)
from vpnkit.wire.ipv4 import IPv4Header
from vpnkit.wire.ipv6 import IPv6Header, packIPv6

from tests.helpers import SenderRecorder
from tests.test_dualstack import ErrorsRecorder

V4 = bytes([192, 168, 65, 3])
V6 = packIPv6("fd00:65::3")


class DispatchTests(SynchronousTestCase):
    def test_senderByAddressLength(self):
        """
        L{IPSender} hands a datagram between 4-byte addresses to the IPv4
        layer and one between 16-byte addresses to the IPv6 layer; with no
        IPv6 layer an IPv6 datagram is not sent.
        """
        v4, v6 = SenderRecorder(), SenderRecorder()
        sender = IPSender(v4, v6)
        self.assertTrue(verifyObject(IIPSender, sender))
        self.assertTrue(sender.sendIP(V4, V4, 17, b"a"))
        self.assertTrue(sender.sendIP(V6, V6, 17, b"b", tail=b"c"))
        self.assertEqual([s[3] for s in v4.sent], [b"a"])
        self.assertEqual([s[3] for s in v6.sent], [b"bc"])
        self.assertFalse(IPSender(v4).sendIP(V6, V6, 17, b"x"))

    def test_errorsBySenderFamily(self):
        """
        L{ICMPErrors} reports to ICMP for an IPv4 sender and to ICMPv6 for
        an IPv6 one; with no ICMPv6 nothing is sent.
        """
        icmp, icmpv6 = ErrorsRecorder(), ErrorsRecorder()
        errors = ICMPErrors(icmp, icmpv6)
        self.assertTrue(verifyObject(IICMPErrors, errors))
        h4 = IPv4Header(0, 28, 0, 0, 0, 64, 17, 0, V4, V4)
        h6 = IPv6Header(0, 0, 8, 17, 64, V6, V6)
        errors.sendUnreachable(Unreachable.PORT, h4, b"q")
        errors.sendHostError("e", h6, b"r")
        self.assertEqual(icmp.unreachable, [(Unreachable.PORT, h4, b"q")])
        self.assertEqual(icmpv6.hostErrors, [("e", h6, b"r")])
        self.assertFalse(ICMPErrors(icmp).sendUnreachable(Unreachable.PORT, h6, b"q"))


class ReasonTests(SynchronousTestCase):
    def test_codes(self):
        """
        Each reason is its ICMP code, and maps to the ICMPv6 code RFC 4443
        gives it.
        """
        self.assertEqual([int(r) for r in Unreachable], [0, 1, 3, 6, 10, 13])
        self.assertEqual(
            [ICMPV6_CODES[r] for r in Unreachable], [0, 3, 4, 0, 3, 1]
        )

    def test_sendErrors(self):
        """
        A host send's errno becomes the reason the guest's kernel reports as
        the same errno at once; other errors say nothing.
        """
        cases = {
            errno.ENETUNREACH: Unreachable.NO_ROUTE,
            errno.EHOSTUNREACH: Unreachable.HOST_BLOCKED,
            errno.EACCES: Unreachable.PROHIBITED,
            errno.EPERM: Unreachable.PROHIBITED,
            errno.ENOBUFS: None,
        }
        for code, reason in cases.items():
            self.assertIs(forSendError(OSError(code, "x")), reason)


class AddressTests(SynchronousTestCase):
    def test_roundTrip(self):
        """
        Addresses of either family go to text and back; text that is
        neither is a L{ValueError}.
        """
        for text in ["192.0.2.1", "2001:db8::1", "::1"]:
            self.assertEqual(formatAddress(packAddress(text)), text)
        for bad in ["", "example.com", "1.2.3", "2001:db8::g"]:
            self.assertRaises(ValueError, packAddress, bad)

    def test_twistedAddress(self):
        """
        The Twisted address object matches the family.
        """
        self.assertEqual(twistedAddress("TCP", V4, 1), IPv4Address("TCP", "192.168.65.3", 1))
        self.assertEqual(twistedAddress("UDP", V6, 2), IPv6Address("UDP", "fd00:65::3", 2))
