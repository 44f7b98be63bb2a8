"""
Tests for L{vpnkit.wire.ipv6} and the IPv6 pseudo-header of
L{vpnkit.wire.checksum}, against the frames of a real Linux guest
(C{tests/ipv6fixtures.py}).
"""

from dataclasses import replace
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from tests.ipv6fixtures import (
    DAD_PROBE,
    ECHO_REQUEST,
    FRAGMENTS,
    FRAMES,
    GATEWAY,
    GUEST_ADDRESS,
    GUEST_ADVERTISEMENT,
    GUEST_LINK_LOCAL,
    GUEST_MAC,
    MLD_REPORT,
    REPLY_FRAGMENTS,
    ROUTER_ADVERTISEMENT,
    ROUTER_LINK_LOCAL,
    ROUTER_MAC,
    SOLICIT,
    ipv6Packet,
    ipv6Payload,
)
from tests.wirefixtures import ICMP_ECHO_REQUEST, ipPacket, referenceSum
from vpnkit.wire import MalformedError, ParseError, TruncatedError
from vpnkit.wire.checksum import (
    ipv6PseudoHeaderSum,
    onesComplementSum,
    pythonOnesComplementSum,
)
from vpnkit.wire.icmpv6 import EchoRequest, parseICMPv6
from vpnkit.wire.ipv6 import (
    ALL_NODES,
    NEXT_DESTINATION,
    NEXT_FRAGMENT,
    NEXT_HOP_BY_HOP,
    NEXT_ICMPV6,
    NEXT_NONE,
    NEXT_ROUTING,
    NEXT_UDP,
    ExtensionHeaderError,
    Extensions,
    FragmentHeader,
    IPv6Header,
    MisplacedHopByHopError,
    RoutingHeaderType0Error,
    UnrecognizedOptionError,
    UnsupportedRoutingHeaderError,
    buildHeader,
    emitFragmentHeader,
    emitIPv6,
    eui64,
    formatIPv6,
    isLinkLocal,
    isMulticast,
    isSolicitedNodeAddress,
    linkLocalAddress,
    multicastMAC,
    packIPv6,
    parseExtensions,
    parseIPv6,
    solicitedNodeAddress,
)

PING = ipv6Packet(ECHO_REQUEST)

# The captured echo request's header, field by field.
PING_HEADER = IPv6Header(
    trafficClass=0,
    flowLabel=0xF1FE5,
    payloadLength=64,
    nextHeader=NEXT_ICMPV6,
    hopLimit=64,
    src=GUEST_ADDRESS,
    dst=GATEWAY,
)

UDP_BODY = bytes.fromhex("d43500090010abcd") + b"datagram"


def extensionHeader(nextHeader, body):
    """
    An extension header (next header, length in 8-byte units beyond the
    first, C{body}) padded with a PadN option to a multiple of 8 bytes.
    """
    size = 2 + len(body)
    pad = -size % 8
    if pad == 1:
        body += b"\x00"
    elif pad:
        body += bytes((1, pad - 2)) + bytes(pad - 2)
    return bytes((nextHeader, (2 + len(body)) // 8 - 1)) + body


def routingHeader(nextHeader, routingType, segmentsLeft):
    """
    A routing header of C{routingType} listing one address.
    """
    return bytes((nextHeader, 2, routingType, segmentsLeft)) + bytes(4) + GATEWAY


class HeaderTests(SynchronousTestCase):
    """
    Parsing and emitting the fixed header.
    """

    def test_parse(self):
        """
        The guest's echo request parses into every field as the kernel sent
        it, with the 64-byte ICMPv6 message as payload.
        """
        header, payload = parseIPv6(PING)
        self.assertEqual(header, PING_HEADER)
        self.assertEqual(payload, PING[40:])
        self.assertEqual(len(payload), 64)

    def test_parseTrafficClass(self):
        """
        dnsmasq's Router Advertisement carries traffic class 0xc0 (network
        control) and a flow label, each in its own field.
        """
        header, _ = parseIPv6(ipv6Packet(ROUTER_ADVERTISEMENT))
        self.assertEqual(
            (header.trafficClass, header.flowLabel, header.hopLimit), (0xC0, 0x712ED, 255)
        )
        self.assertEqual((header.src, header.dst), (ROUTER_LINK_LOCAL, GUEST_LINK_LOCAL))

    def test_emit(self):
        """
        Every captured IPv6 datagram parses and emits back to exactly its
        bytes.
        """
        self.assertEqual(len(FRAMES), 48)
        for frame in FRAMES:
            packet = ipv6Packet(frame)
            self.assertEqual(emitIPv6(*parseIPv6(packet)), packet)

    def test_emitRecomputesLength(self):
        """
        The payload length written is the payload's, whatever the header
        says.
        """
        packet = emitIPv6(replace(PING_HEADER, payloadLength=9), b"abc")
        self.assertEqual(parseIPv6(packet), (replace(PING_HEADER, payloadLength=3), b"abc"))

    def test_buildHeader(self):
        """
        The fast path builds the captured header from its fields.
        """
        self.assertEqual(
            buildHeader(GUEST_ADDRESS, GATEWAY, NEXT_ICMPV6, 64, 64, 0, 0xF1FE5), PING[:40]
        )

    def test_ethernetPadding(self):
        """
        Bytes beyond the payload length (the padding of a short Ethernet
        frame) are not part of the payload.
        """
        packet = ipv6Packet(GUEST_ADVERTISEMENT)
        header, payload = parseIPv6(packet + bytes(6))
        self.assertEqual(header.payloadLength, 24)
        self.assertEqual(payload, packet[40:])

    def test_truncated(self):
        """
        Every prefix shorter than the header or than the payload length
        raises L{TruncatedError}.
        """
        for n in range(len(PING)):
            with self.assertRaises(TruncatedError, msg=n):
                parseIPv6(PING[:n])

    def test_version(self):
        """
        An IPv4 datagram is not an IPv6 one.
        """
        with self.assertRaises(MalformedError):
            parseIPv6(ipPacket(ICMP_ECHO_REQUEST) + bytes(20))

    def test_emptyPayload(self):
        """
        A payload length of 0 (no jumbogram support) is an empty payload.
        """
        header, payload = parseIPv6(emitIPv6(replace(PING_HEADER, nextHeader=NEXT_NONE), b""))
        self.assertEqual((header.payloadLength, payload), (0, b""))

    def test_emitTooLong(self):
        """
        A payload over 65,535 bytes cannot be emitted.
        """
        with self.assertRaises(MalformedError):
            emitIPv6(PING_HEADER, bytes(0x10000))


class ExtensionTests(SynchronousTestCase):
    """
    Walking the extension headers.
    """

    def test_none(self):
        """
        Without extension headers the upper layer starts at once.
        """
        header, payload = parseIPv6(PING)
        self.assertEqual(parseExtensions(header.nextHeader, payload), Extensions(NEXT_ICMPV6, 0))

    def test_hopByHop(self):
        """
        The kernel's MLD report has a hop-by-hop header (Router Alert and
        PadN): it is skipped, and the MLD report follows it.
        """
        header, payload = parseIPv6(ipv6Packet(MLD_REPORT))
        self.assertEqual(header.nextHeader, NEXT_HOP_BY_HOP)
        self.assertEqual(parseExtensions(header.nextHeader, payload), Extensions(NEXT_ICMPV6, 8))
        self.assertEqual(payload[8:], ipv6Payload(MLD_REPORT))
        self.assertEqual(payload[8], 143)

    def test_fragments(self):
        """
        The guest's 3000-byte echo request went out in three fragments of
        one identification; the walk ends at each fragment header, and the
        fragment data put together is the echo request, its checksum
        valid.
        """
        walked = []
        data = bytearray()
        for frame in FRAGMENTS:
            header, payload = parseIPv6(ipv6Packet(frame))
            self.assertEqual(header.nextHeader, NEXT_FRAGMENT)
            extensions = parseExtensions(header.nextHeader, payload)
            walked.append(extensions)
            self.assertEqual(extensions.offset, 8)
            self.assertEqual(extensions.fragment.offset, len(data))
            data += payload[extensions.offset :]
        ident = walked[0].fragment.ident
        self.assertEqual(
            [e.fragment for e in walked],
            [
                FragmentHeader(NEXT_ICMPV6, 0, True, ident),
                FragmentHeader(NEXT_ICMPV6, 1448, True, ident),
                FragmentHeader(NEXT_ICMPV6, 2896, False, ident),
            ],
        )
        self.assertEqual({e.upperLayer for e in walked}, {NEXT_ICMPV6})
        message = parseICMPv6(bytes(data), GUEST_ADDRESS, GATEWAY)
        self.assertIsInstance(message, EchoRequest)
        self.assertEqual(len(message.data), 3000)

    def test_emitFragmentHeader(self):
        """
        Every captured fragment header (both directions) emits back to its
        8 bytes.
        """
        for frame in FRAGMENTS + REPLY_FRAGMENTS:
            _, payload = parseIPv6(ipv6Packet(frame))
            fragment = parseExtensions(NEXT_FRAGMENT, payload).fragment
            self.assertEqual(emitFragmentHeader(fragment), payload[:8])

    def test_fragmentReserved(self):
        """
        Reserved bits of a fragment header are kept, so that it
        round-trips.
        """
        fragment = FragmentHeader(NEXT_UDP, 8, False, 7, reserved=0x3FF)
        self.assertEqual(
            parseExtensions(NEXT_FRAGMENT, emitFragmentHeader(fragment)).fragment, fragment
        )

    def test_emitFragmentBadOffset(self):
        """
        A fragment offset that is not a multiple of 8 below 65,536 cannot be
        emitted.
        """
        for offset in (3, 0x10000, -8):
            with self.assertRaises(MalformedError, msg=offset):
                emitFragmentHeader(FragmentHeader(NEXT_UDP, offset, True, 1))

    def test_atomicFragment(self):
        """
        Offset 0 without M is an atomic fragment (RFC 6946); the first
        fragment of several is not.
        """
        self.assertTrue(FragmentHeader(NEXT_UDP, 0, False, 1).isAtomic)
        self.assertFalse(FragmentHeader(NEXT_UDP, 0, True, 1).isAtomic)
        self.assertFalse(FragmentHeader(NEXT_UDP, 8, False, 1).isAtomic)

    def test_destinationOptions(self):
        """
        Destination options (PadN only) and a hop-by-hop header before them
        are skipped.
        """
        payload = (
            extensionHeader(NEXT_DESTINATION, b"")
            + extensionHeader(NEXT_UDP, bytes((1, 10)) + bytes(10))
            + UDP_BODY
        )
        self.assertEqual(parseExtensions(NEXT_HOP_BY_HOP, payload), Extensions(NEXT_UDP, 24))

    def test_pad1(self):
        """
        Pad1 options (a single zero byte) are skipped one by one.
        """
        payload = bytes((NEXT_UDP, 0)) + bytes(6) + UDP_BODY
        self.assertEqual(parseExtensions(NEXT_DESTINATION, payload), Extensions(NEXT_UDP, 8))

    def test_fragmentAfterOptions(self):
        """
        A fragment header after a hop-by-hop header ends the walk at its
        end.
        """
        fragment = FragmentHeader(NEXT_UDP, 16, True, 0xDEADBEEF)
        payload = extensionHeader(NEXT_FRAGMENT, b"") + emitFragmentHeader(fragment) + b"data"
        self.assertEqual(
            parseExtensions(NEXT_HOP_BY_HOP, payload), Extensions(NEXT_UDP, 16, fragment)
        )

    def test_noNextHeader(self):
        """
        Next header 59 ends the walk: nothing follows.
        """
        self.assertEqual(
            parseExtensions(NEXT_DESTINATION, extensionHeader(NEXT_NONE, b"")),
            Extensions(NEXT_NONE, 8),
        )

    def test_routingType0(self):
        """
        A type 0 routing header with segments left raises
        L{RoutingHeaderType0Error}, pointing at its routing type for the
        Parameter Problem (code 0) it calls for (RFC 5095).
        """
        payload = routingHeader(NEXT_UDP, 0, 1) + UDP_BODY
        with self.assertRaises(RoutingHeaderType0Error) as caught:
            parseExtensions(NEXT_ROUTING, payload)
        self.assertEqual((caught.exception.code, caught.exception.pointer), (0, 42))
        self.assertTrue(caught.exception.icmp)
        self.assertIsInstance(caught.exception, ParseError)

    def test_routingType0Finished(self):
        """
        A type 0 routing header with no segments left is ignored (RFC 5095
        3, as for any routing type).
        """
        payload = routingHeader(NEXT_UDP, 0, 0) + UDP_BODY
        self.assertEqual(parseExtensions(NEXT_ROUTING, payload), Extensions(NEXT_UDP, 24))

    def test_otherRoutingType(self):
        """
        Any other routing type with segments left raises
        L{UnsupportedRoutingHeaderError}, pointing at the routing type after
        a hop-by-hop header; with none left it is skipped.
        """
        payload = extensionHeader(NEXT_ROUTING, b"") + routingHeader(NEXT_UDP, 4, 2) + UDP_BODY
        with self.assertRaises(UnsupportedRoutingHeaderError) as caught:
            parseExtensions(NEXT_HOP_BY_HOP, payload)
        self.assertEqual((caught.exception.code, caught.exception.pointer), (0, 50))
        payload = routingHeader(NEXT_UDP, 4, 0) + UDP_BODY
        self.assertEqual(parseExtensions(NEXT_ROUTING, payload), Extensions(NEXT_UDP, 24))

    def test_unrecognizedOptions(self):
        """
        An unrecognized option is skipped when its type's two high bits are
        00; otherwise L{UnrecognizedOptionError} (code 2) points at it and
        says whether to report it: 01 silently, 10 always, 11 unless the
        destination was multicast.
        """
        expected = {0x1E: None, 0x5E: (False, False), 0x9E: (True, False), 0xDE: (True, True)}
        for type_, outcome in expected.items():
            payload = extensionHeader(NEXT_UDP, bytes((1, 0, type_, 2, 0, 0))) + UDP_BODY
            if outcome is None:
                self.assertEqual(
                    parseExtensions(NEXT_DESTINATION, payload), Extensions(NEXT_UDP, 8)
                )
                continue
            with self.assertRaises(UnrecognizedOptionError, msg=hex(type_)) as caught:
                parseExtensions(NEXT_DESTINATION, payload)
            error = caught.exception
            self.assertEqual((error.code, error.pointer), (2, 44))
            self.assertEqual((error.icmp, error.unlessMulticast), outcome)

    def test_optionOverrun(self):
        """
        An option running past the end of its header is an erroneous field.
        """
        payload = bytes((NEXT_UDP, 0, 1, 9)) + bytes(4) + UDP_BODY
        with self.assertRaises(ExtensionHeaderError) as caught:
            parseExtensions(NEXT_DESTINATION, payload)
        self.assertEqual((caught.exception.code, caught.exception.pointer), (0, 42))

    def test_misplacedHopByHop(self):
        """
        A hop-by-hop header anywhere but first is an unrecognized next
        header (code 1), the pointer at the field that named it: the
        previous header's next header field, or after reassembly the
        fragment header's.
        """
        payload = extensionHeader(NEXT_HOP_BY_HOP, b"") + extensionHeader(NEXT_UDP, b"")
        with self.assertRaises(MisplacedHopByHopError) as caught:
            parseExtensions(NEXT_DESTINATION, payload)
        self.assertEqual((caught.exception.code, caught.exception.pointer), (1, 40))
        with self.assertRaises(MisplacedHopByHopError) as caught:
            parseExtensions(NEXT_HOP_BY_HOP, payload[8:], headerOffset=48)
        self.assertEqual(caught.exception.pointer, 40)

    def test_truncated(self):
        """
        Every prefix of an extension header chain that cuts a header raises
        L{TruncatedError}.
        """
        fragment = emitFragmentHeader(FragmentHeader(NEXT_UDP, 0, True, 1))
        payload = (
            extensionHeader(NEXT_DESTINATION, b"")
            + extensionHeader(NEXT_FRAGMENT, bytes(12))
            + fragment
        )
        self.assertEqual(len(payload), 32)
        for n in range(len(payload)):
            with self.assertRaises(TruncatedError, msg=n):
                parseExtensions(NEXT_HOP_BY_HOP, payload[:n])


class AddressTests(SynchronousTestCase):
    """
    The addresses the kernel formed, formed again.
    """

    def test_linkLocal(self):
        """
        The guest's and the router's link-local addresses are the EUI-64
        forms of their MACs, the universal/local bit inverted.
        """
        self.assertEqual(linkLocalAddress(GUEST_MAC), GUEST_LINK_LOCAL)
        self.assertEqual(linkLocalAddress(ROUTER_MAC), ROUTER_LINK_LOCAL)
        self.assertEqual(eui64(ROUTER_MAC), bytes.fromhex("f41636fffebcf9c6"))

    def test_solicitedNode(self):
        """
        The duplicate address probe for the guest's link-local address goes
        to its solicited-node group, at that group's Ethernet address.
        """
        group = solicitedNodeAddress(GUEST_LINK_LOCAL)
        self.assertEqual(group, ipv6Packet(DAD_PROBE)[24:40])
        self.assertEqual(formatIPv6(group), "ff02::1:ff00:1")
        self.assertEqual(multicastMAC(group), DAD_PROBE[:6])
        self.assertTrue(isSolicitedNodeAddress(group))
        self.assertFalse(isSolicitedNodeAddress(ALL_NODES))

    def test_kinds(self):
        """
        Multicast is C{ff00::/8}; link-local unicast is C{fe80::/10}.
        """
        self.assertTrue(isMulticast(ALL_NODES))
        self.assertFalse(isMulticast(GATEWAY))
        self.assertTrue(isLinkLocal(GUEST_LINK_LOCAL))
        self.assertTrue(isLinkLocal(packIPv6("febf::1")))
        self.assertFalse(isLinkLocal(packIPv6("fec0::1")))
        self.assertFalse(isLinkLocal(GUEST_ADDRESS))

    def test_text(self):
        """
        Addresses convert to and from RFC 5952 text.
        """
        self.assertEqual(formatIPv6(GUEST_ADDRESS), "fd00:65::50:ff:fe00:1")
        self.assertEqual(packIPv6("fd00:65::1"), GATEWAY)
        self.assertEqual(packIPv6(IPv6Address("fd00:65::1")), GATEWAY)


class PseudoHeaderTests(SynchronousTestCase):
    """
    L{ipv6PseudoHeaderSum} (RFC 8200 8.1).
    """

    def test_reference(self):
        """
        The partial sum folds to the word-by-word sum of the 40-byte
        pseudo-header, for lengths that need both 16-bit words.
        """
        for length in (0, 8, 1500, 0xFFFF, 0x10000, 0x12345678):
            pseudo = (
                GUEST_ADDRESS + GATEWAY + length.to_bytes(4, "big") + bytes(3) + bytes((NEXT_UDP,))
            )
            self.assertEqual(
                onesComplementSum(
                    b"", ipv6PseudoHeaderSum(GUEST_ADDRESS, GATEWAY, NEXT_UDP, length)
                ),
                referenceSum(pseudo),
                length,
            )

    def test_capturedUDP(self):
        """
        The guest's DHCPv6 Solicit verifies over the pseudo-header of its
        addresses, with the C and the Python sums alike.
        """
        header, datagram = parseIPv6(ipv6Packet(SOLICIT))
        initial = ipv6PseudoHeaderSum(header.src, header.dst, NEXT_UDP, len(datagram))
        self.assertEqual(onesComplementSum(datagram, initial), 0xFFFF)
        self.assertEqual(pythonOnesComplementSum(datagram, initial), 0xFFFF)
        self.assertNotEqual(
            onesComplementSum(datagram, initial + 1), 0xFFFF, "a wrong pseudo-header verifies"
        )
