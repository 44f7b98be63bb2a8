"""
Tests for L{vpnkit.wire.ethernet}.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    ARP_REQUEST,
    FRAMES,
    GATEWAY_MAC,
    GUEST_MAC,
    ICMP_ECHO_REPLY,
    IPV6_FRAMES,
)
from vpnkit.wire import MalformedError, ParseError, TruncatedError
from vpnkit.wire.ethernet import (
    BROADCAST,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    HEADER_LENGTH,
    EthernetHeader,
    emitEthernet,
    formatMAC,
    isMulticast,
    parseEthernet,
    parseMAC,
)


class EthernetTests(SynchronousTestCase):
    """
    Parsing and emitting Ethernet II headers.
    """

    def test_parse(self):
        """
        The guest's broadcast ARP request parses into its destination,
        source and EtherType, and the 28-byte ARP packet as payload.
        """
        header, payload = parseEthernet(ARP_REQUEST)
        self.assertEqual(header, EthernetHeader(BROADCAST, GUEST_MAC, ETHERTYPE_ARP))
        self.assertEqual(payload, ARP_REQUEST[14:])
        self.assertEqual(len(payload), 28)

    def test_parseUnicastIPv4(self):
        """
        A unicast IPv4 frame from the gateway parses with the gateway's MAC
        as source and EtherType 0x0800; its payload starts with a real 0x45.
        """
        header, payload = parseEthernet(ICMP_ECHO_REPLY)
        self.assertEqual(header.dst, GUEST_MAC)
        self.assertEqual(header.src, GATEWAY_MAC)
        self.assertEqual(header.ethertype, ETHERTYPE_IPV4)
        self.assertEqual(payload[0], 0x45)
        self.assertEqual(len(payload), 84)

    def test_parseIPv6(self):
        """
        The kernel's IPv6 frames parse with EtherType 0x86dd to an IPv6
        multicast MAC (33:33:...).
        """
        header, payload = parseEthernet(IPV6_FRAMES[0])
        self.assertEqual(header.ethertype, ETHERTYPE_IPV6)
        self.assertEqual(header.dst[:2], b"\x33\x33")
        self.assertEqual(payload[0] >> 4, 6)

    def test_emit(self):
        """
        Emitting a header and payload gives exactly the captured frame.
        """
        header = EthernetHeader(BROADCAST, GUEST_MAC, ETHERTYPE_ARP)
        self.assertEqual(emitEthernet(header, ARP_REQUEST[14:]), ARP_REQUEST)

    def test_roundTripCapture(self):
        """
        Every frame of the capture (IPv4, IPv6, ARP) re-emits to the same
        bytes.
        """
        self.assertEqual(len(FRAMES), 73)
        for frame in FRAMES:
            self.assertEqual(emitEthernet(*parseEthernet(frame)), frame)

    def test_truncated(self):
        """
        Every prefix shorter than 14 bytes raises L{TruncatedError}.
        """
        for n in range(HEADER_LENGTH):
            with self.assertRaises(TruncatedError, msg=n):
                parseEthernet(ARP_REQUEST[:n])

    def test_headerOnly(self):
        """
        A bare 14-byte header parses with an empty payload.
        """
        header, payload = parseEthernet(ARP_REQUEST[:14])
        self.assertEqual(header.ethertype, ETHERTYPE_ARP)
        self.assertEqual(payload, b"")

    def test_truncatedIsParseError(self):
        """
        L{TruncatedError} is a L{ParseError}, which is a L{ValueError}, so
        callers can catch one family.
        """
        self.assertTrue(issubclass(TruncatedError, ParseError))
        self.assertTrue(issubclass(ParseError, ValueError))


class MACTests(SynchronousTestCase):
    """
    Tests for L{parseMAC}, L{formatMAC} and L{isMulticast}.
    """

    def test_parseMAC(self):
        """
        Colon- or dash-separated hex (either case, one or two digits per
        octet) parses into 6 bytes.
        """
        expected = bytes.fromhex("f61636bcf9c6")
        self.assertEqual(parseMAC("f6:16:36:bc:f9:c6"), expected)
        self.assertEqual(parseMAC("F6-16-36-BC-F9-C6"), expected)
        self.assertEqual(parseMAC("2:50:0:0:0:1"), GUEST_MAC)

    def test_parseMACRejects(self):
        """
        Anything but six groups of one or two hex digits raises
        L{MalformedError}, including forms C{int(x, 16)} would accept
        (whitespace, signs, underscores).
        """
        for text in [
            "",
            "f6:16:36:bc:f9",
            "f6:16:36:bc:f9:c6:00",
            "f6:16:36:bc:f9:c67",
            "f6:16:36:bc:f9:",
            "g6:16:36:bc:f9:c6",
            "+1:2:3:4:5:6",
            " a:b:c:d:e:f",
            "a:b:c:d:e: f",
            "0x:1:2:3:4:5",
            "f6161636bcf9c6",
        ]:
            with self.assertRaises(MalformedError, msg=text):
                parseMAC(text)

    def test_formatMAC(self):
        """
        Six bytes format as lower-case, zero-padded, colon-separated hex,
        and parse back to the same bytes.
        """
        self.assertEqual(formatMAC(GUEST_MAC), "02:50:00:00:00:01")
        self.assertEqual(formatMAC(GATEWAY_MAC), "52:55:0a:00:02:02")
        self.assertEqual(parseMAC(formatMAC(GATEWAY_MAC)), GATEWAY_MAC)

    def test_isMulticast(self):
        """
        Broadcast and multicast (group bit set) addresses are multicast;
        the guest's and gateway's unicast MACs are not.
        """
        self.assertTrue(isMulticast(BROADCAST))
        self.assertTrue(isMulticast(IPV6_FRAMES[0][:6]))
        self.assertTrue(isMulticast(bytes.fromhex("01005e000001")))
        self.assertFalse(isMulticast(GUEST_MAC))
        self.assertFalse(isMulticast(GATEWAY_MAC))
