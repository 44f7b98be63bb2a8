"""
Tests for L{vpnkit.wire.icmpv6} and L{vpnkit.wire.dnsnames}, against the
ICMPv6 messages of a real Linux guest and of dnsmasq
(C{tests/ipv6fixtures.py}).
"""

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from tests.ipv6fixtures import (
    BIG_ECHO,
    DAD_PROBE,
    ECHO_REPLY,
    ECHO_REQUEST,
    GATEWAY,
    GUEST_ADDRESS,
    GUEST_ADVERTISEMENT,
    GUEST_LINK_LOCAL,
    GUEST_MAC,
    HOP_LIMITED_ECHO,
    ICMPV6_FRAMES,
    MLD_REPORT,
    NEIGHBOR_ADVERTISEMENT,
    NEIGHBOR_SOLICITATION,
    PACKET_TOO_BIG,
    PARAMETER_PROBLEM,
    PORT_UNREACHABLE,
    ROUTER_ADVERTISEMENT,
    ROUTER_LINK_LOCAL,
    ROUTER_MAC,
    ROUTER_SOLICITATION,
    TIME_EXCEEDED,
    UDP_TO_CLOSED_PORT,
    UNKNOWN_NEXT_HEADER,
    ipv6Packet,
    ipv6Payload,
)
from vpnkit.wire import ChecksumError, MalformedError, ParseError, TruncatedError
from vpnkit.wire.dnsnames import decodeDomainNames, encodeDomainNames
from vpnkit.wire.icmpv6 import (
    MAX_INVOKING,
    NA_OVERRIDE,
    NA_ROUTER,
    NA_SOLICITED,
    PREFIX_AUTONOMOUS,
    PREFIX_ON_LINK,
    PROBLEM_NEXT_HEADER,
    RA_MANAGED,
    RA_OTHER,
    TIME_EXCEEDED_HOP_LIMIT,
    UNREACHABLE_PORT,
    DestinationUnreachable,
    DNSSearchList,
    EchoReply,
    EchoRequest,
    ICMPv6Message,
    MTUOption,
    NDPOption,
    NeighborAdvertisement,
    NeighborSolicitation,
    PacketTooBig,
    ParameterProblem,
    PrefixInformation,
    RecursiveDNSServers,
    RouterAdvertisement,
    RouterSolicitation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    TimeExceeded,
    emitICMPv6,
    emitNDPOptions,
    invokingPacket,
    parseICMPv6,
    parseNDPOptions,
)
from vpnkit.wire.ipv6 import parseIPv6, packIPv6

PREFIX = packIPv6("fd00:65::")
# ping's data: a 16-byte timestamp, then 0x10, 0x11, ...
PING_DATA = bytes.fromhex("27e6126b000000002fd6090000000000") + bytes(range(0x10, 0x38))


def parsed(frame, **kwargs):
    """
    The ICMPv6 message in C{frame}, parsed with its own addresses.
    """
    header, _ = parseIPv6(ipv6Packet(frame))
    return parseICMPv6(ipv6Payload(frame), header.src, header.dst, **kwargs)


def emitted(message, frame):
    """
    C{message} emitted with the addresses of C{frame}.
    """
    header, _ = parseIPv6(ipv6Packet(frame))
    return emitICMPv6(message, header.src, header.dst)


class CapturedMessageTests(SynchronousTestCase):
    """
    Each captured message parses into the value of its type, field by
    field, and emits back to its bytes.
    """

    def assertMessage(self, frame, expected):
        self.assertEqual(parsed(frame), expected)
        self.assertEqual(emitted(expected, frame), ipv6Payload(frame))

    def test_routerSolicitation(self):
        """
        The kernel's Router Solicitation carries its source link-layer
        address.
        """
        self.assertMessage(
            ROUTER_SOLICITATION, RouterSolicitation((SourceLinkLayerAddress(GUEST_MAC),))
        )

    def test_routerAdvertisement(self):
        """
        dnsmasq's Router Advertisement: hop limit 64, M and O, router
        lifetime 1800 s, and its prefix (on-link, autonomous), MTU,
        link-layer address, search list and DNS server options in its
        order.
        """
        self.assertMessage(
            ROUTER_ADVERTISEMENT,
            RouterAdvertisement(
                curHopLimit=64,
                flags=RA_MANAGED | RA_OTHER,
                routerLifetime=1800,
                reachableTime=0,
                retransTimer=0,
                options=(
                    PrefixInformation(64, PREFIX_ON_LINK | PREFIX_AUTONOMOUS, 43200, 43200, PREFIX),
                    MTUOption(1500),
                    SourceLinkLayerAddress(ROUTER_MAC),
                    DNSSearchList(43200, ("localdomain",)),
                    RecursiveDNSServers(43200, (GATEWAY,)),
                ),
            ),
        )

    def test_neighborSolicitation(self):
        """
        The guest asks for the gateway's link-layer address, giving its own.
        """
        self.assertMessage(
            NEIGHBOR_SOLICITATION,
            NeighborSolicitation(GATEWAY, (SourceLinkLayerAddress(GUEST_MAC),)),
        )

    def test_duplicateAddressProbe(self):
        """
        The kernel's duplicate address probe carries a 6-byte nonce
        (RFC 7527, option 14), kept as an L{NDPOption}.
        """
        message = parsed(DAD_PROBE)
        self.assertEqual(message.target, GUEST_LINK_LOCAL)
        (nonce,) = message.options
        self.assertEqual((nonce.type, len(nonce.data)), (14, 6))
        self.assertEqual(emitted(message, DAD_PROBE), ipv6Payload(DAD_PROBE))

    def test_neighborAdvertisement(self):
        """
        The router's answer: router, solicited and override, with its MAC.
        """
        self.assertMessage(
            NEIGHBOR_ADVERTISEMENT,
            NeighborAdvertisement(
                GATEWAY,
                NA_ROUTER | NA_SOLICITED | NA_OVERRIDE,
                (TargetLinkLayerAddress(ROUTER_MAC),),
            ),
        )

    def test_guestAdvertisement(self):
        """
        The guest's own unicast answer: solicited only, no option.
        """
        self.assertMessage(
            GUEST_ADVERTISEMENT, NeighborAdvertisement(GUEST_LINK_LOCAL, NA_SOLICITED, ())
        )

    def test_echo(self):
        """
        ping's request and the router's reply share identifier, sequence
        and the 56 data bytes.
        """
        request = parsed(ECHO_REQUEST)
        self.assertEqual(request, EchoRequest(request.ident, 1, PING_DATA))
        self.assertMessage(ECHO_REPLY, EchoReply(request.ident, 1, PING_DATA))

    def test_portUnreachable(self):
        """
        The router's port unreachable quotes the whole UDP datagram.
        """
        self.assertMessage(
            PORT_UNREACHABLE,
            DestinationUnreachable(UNREACHABLE_PORT, ipv6Packet(UDP_TO_CLOSED_PORT)),
        )

    def test_parameterProblem(self):
        """
        Next header 253 draws an unrecognized next header problem pointing
        at byte 6 (the next header field).
        """
        self.assertMessage(
            PARAMETER_PROBLEM,
            ParameterProblem(PROBLEM_NEXT_HEADER, 6, ipv6Packet(UNKNOWN_NEXT_HEADER)),
        )

    def test_timeExceeded(self):
        """
        An echo with hop limit 1 beyond the router draws hop limit exceeded.
        """
        self.assertMessage(
            TIME_EXCEEDED, TimeExceeded(TIME_EXCEEDED_HOP_LIMIT, ipv6Packet(HOP_LIMITED_ECHO))
        )

    def test_packetTooBig(self):
        """
        A 1448-byte datagram towards a 1280-byte link draws Packet Too Big
        quoting as much as fits in the minimum MTU, exactly what
        L{invokingPacket} keeps.
        """
        quoted = invokingPacket(ipv6Packet(BIG_ECHO))
        self.assertEqual(len(quoted), MAX_INVOKING)
        self.assertEqual(MAX_INVOKING, 1232)
        self.assertMessage(PACKET_TOO_BIG, PacketTooBig(1280, quoted))

    def test_mld(self):
        """
        An MLDv2 report (type 143, not modelled) is a plain
        L{ICMPv6Message}.
        """
        header, _ = parseIPv6(ipv6Packet(MLD_REPORT))
        message = parseICMPv6(ipv6Payload(MLD_REPORT), header.src, header.dst)
        self.assertEqual(message, ICMPv6Message(143, 0, ipv6Payload(MLD_REPORT)[4:]))

    def test_emitAll(self):
        """
        Every captured unfragmented ICMPv6 message emits back to its bytes.
        """
        self.assertEqual(len(ICMPV6_FRAMES), 30)
        for frame in ICMPV6_FRAMES:
            self.assertEqual(emitted(parsed(frame), frame), ipv6Payload(frame))


class ChecksumTests(SynchronousTestCase):
    """
    The checksum covers the pseudo-header and the whole message.
    """

    def test_badChecksum(self):
        """
        A flipped bit anywhere in the message fails the checksum.
        """
        data = ipv6Payload(ROUTER_ADVERTISEMENT)
        for i in range(len(data)):
            corrupt = bytearray(data)
            corrupt[i] ^= 0x01
            with self.assertRaises(ChecksumError, msg=i):
                parseICMPv6(bytes(corrupt), ROUTER_LINK_LOCAL, GUEST_LINK_LOCAL)

    def test_otherAddresses(self):
        """
        The same message between other addresses fails: the pseudo-header
        counts.
        """
        with self.assertRaises(ChecksumError):
            parseICMPv6(ipv6Payload(ECHO_REQUEST), GUEST_LINK_LOCAL, GATEWAY)

    def test_unverified(self):
        """
        Without verification a corrupt checksum parses.
        """
        data = bytearray(ipv6Payload(ECHO_REQUEST))
        data[2] ^= 0xFF
        message = parseICMPv6(bytes(data), GUEST_ADDRESS, GATEWAY, verifyChecksum=False)
        self.assertEqual(message.data, PING_DATA)


class TruncationTests(SynchronousTestCase):
    """
    Cut messages raise L{ParseError}s.
    """

    def test_prefixes(self):
        """
        Every strict prefix of every captured message raises a
        L{ParseError} (the checksum, or the fixed part's length).
        """
        for frame in ICMPV6_FRAMES:
            data = ipv6Payload(frame)
            header, _ = parseIPv6(ipv6Packet(frame))
            for n in range(len(data)):
                with self.assertRaises(ParseError, msg=(data[:1].hex(), n)):
                    parseICMPv6(data[:n], header.src, header.dst)

    def test_fixedParts(self):
        """
        Unverified, a prefix shorter than the type's fixed part (4 bytes, 8
        for echo and errors, 8, 16, 24 and 24 for RS, RA, NS and NA) or that
        cuts an option raises L{TruncatedError}.
        """
        # Each message, and the lengths under its own at which it is
        # whole: cut between two options.
        cases = [
            (ECHO_REQUEST, 8, set()),
            (PORT_UNREACHABLE, 8, set()),
            (ROUTER_SOLICITATION, 16, {8}),
            (ROUTER_ADVERTISEMENT, 112, {16, 48, 56, 64, 88}),
            (NEIGHBOR_SOLICITATION, 32, {24}),
            (NEIGHBOR_ADVERTISEMENT, 32, {24}),
            (GUEST_ADVERTISEMENT, 24, set()),
        ]
        for frame, whole, cuts in cases:
            data = ipv6Payload(frame)
            for n in range(whole):
                if n in cuts:
                    parseICMPv6(data[:n], GATEWAY, GATEWAY, verifyChecksum=False)
                    continue
                with self.assertRaises(TruncatedError, msg=(data[:1].hex(), n)):
                    parseICMPv6(data[:n], GATEWAY, GATEWAY, verifyChecksum=False)

    def test_optionsCut(self):
        """
        Options cut anywhere but between two options raise
        L{TruncatedError}; between options, the shorter list parses.
        """
        data = ipv6Payload(ROUTER_ADVERTISEMENT)[16:]
        boundaries = {0, 32, 40, 48, 72, 96}
        for n in range(len(data)):
            if n in boundaries:
                self.assertEqual(len(parseNDPOptions(data[:n])), sorted(boundaries).index(n))
            else:
                with self.assertRaises(TruncatedError, msg=n):
                    parseNDPOptions(data[:n])


class NeighborDiscoveryValidityTests(SynchronousTestCase):
    """
    What RFC 4861 makes a Neighbor Discovery message invalid, as far as the
    message alone can tell.
    """

    def test_nonZeroCode(self):
        """
        RS, RA, NS and NA with a code other than 0 are malformed.
        """
        for frame in (
            ROUTER_SOLICITATION,
            ROUTER_ADVERTISEMENT,
            NEIGHBOR_SOLICITATION,
            NEIGHBOR_ADVERTISEMENT,
        ):
            message = parsed(frame)
            raw = ICMPv6Message(message.TYPE, 1, ipv6Payload(frame)[4:])
            with self.assertRaises(MalformedError, msg=message.TYPE):
                parseICMPv6(emitICMPv6(raw, GATEWAY, GATEWAY), GATEWAY, GATEWAY)

    def test_zeroLengthOption(self):
        """
        An option of length zero is malformed (RFC 4861 4.6).
        """
        with self.assertRaises(MalformedError):
            parseNDPOptions(bytes((1, 0)) + GUEST_MAC)

    def test_badOptionLengths(self):
        """
        Prefix information, MTU, RDNSS and DNSSL options of lengths their
        formats do not allow are malformed.
        """
        for options in (
            bytes((3, 3)) + bytes(22),
            bytes((5, 2)) + bytes(14),
            bytes((25, 1)) + bytes(6),
            bytes((25, 4)) + bytes(30),
            bytes((31, 1)) + bytes(6),
        ):
            with self.assertRaises(MalformedError, msg=options[:2].hex()):
                parseNDPOptions(options)

    def test_longLinkLayerAddress(self):
        """
        A link-layer address option longer than Ethernet's keeps all its
        bytes and round-trips.
        """
        options = (SourceLinkLayerAddress(bytes(range(14))),)
        encoded = emitNDPOptions(options)
        self.assertEqual(len(encoded), 16)
        self.assertEqual(parseNDPOptions(encoded), options)

    def test_emptyOptions(self):
        """
        RDNSS without servers and DNSSL without domains cannot be emitted,
        nor an option over 2,040 bytes.
        """
        for option in (
            RecursiveDNSServers(1, ()),
            DNSSearchList(1, ()),
            NDPOption(99, bytes(2040)),
        ):
            with self.assertRaises(MalformedError, msg=option):
                emitNDPOptions((option,))


class RoundTripTests(SynchronousTestCase):
    """
    Every message type vpnkit will send survives emit then parse.
    """

    def test_everyType(self):
        """
        Echo, the four errors, RS, RA (every option), NS, NA and a message
        of another type (a redirect) each parse back to the same value.
        """
        options = (
            SourceLinkLayerAddress(ROUTER_MAC),
            MTUOption(1500),
            PrefixInformation(64, PREFIX_ON_LINK, 0xFFFFFFFF, 0xFFFFFFFF, PREFIX),
            RecursiveDNSServers(600, (GATEWAY, GUEST_ADDRESS)),
            DNSSearchList(600, ("localdomain", "a.example.com")),
            NDPOption(14, bytes(6)),
        )
        invoking = ipv6Packet(ECHO_REQUEST)
        for message in (
            EchoRequest(1, 2, b"data"),
            EchoReply(0xFFFF, 0, b""),
            DestinationUnreachable(UNREACHABLE_PORT, invoking),
            PacketTooBig(1280, invoking),
            TimeExceeded(TIME_EXCEEDED_HOP_LIMIT, invoking),
            ParameterProblem(0, 42, invoking),
            RouterSolicitation(),
            RouterSolicitation(options[:1]),
            RouterAdvertisement(64, RA_OTHER, 1800, 1, 2, options),
            NeighborSolicitation(GATEWAY),
            NeighborAdvertisement(
                GATEWAY, NA_ROUTER | NA_OVERRIDE, (TargetLinkLayerAddress(ROUTER_MAC),)
            ),
            ICMPv6Message(137, 0, bytes(36)),
        ):
            data = emitICMPv6(message, ROUTER_LINK_LOCAL, GUEST_LINK_LOCAL)
            self.assertEqual(parseICMPv6(data, ROUTER_LINK_LOCAL, GUEST_LINK_LOCAL), message)

    def test_reservedIgnored(self):
        """
        The reserved bits of an advertisement's flag word are ignored on
        receipt and zero on emission.
        """
        data = bytearray(ipv6Payload(GUEST_ADVERTISEMENT))
        data[5:8] = b"\xff\xff\xff"
        data[4] |= 0x1F
        message = parseICMPv6(bytes(data), GATEWAY, GATEWAY, verifyChecksum=False)
        self.assertEqual(message, NeighborAdvertisement(GUEST_LINK_LOCAL, NA_SOLICITED))
        self.assertEqual(emitted(message, GUEST_ADVERTISEMENT), ipv6Payload(GUEST_ADVERTISEMENT))

    def test_flags(self):
        """
        The flag properties read the bits of their fields.
        """
        ra = RouterAdvertisement(64, RA_OTHER, 0)
        self.assertEqual((ra.managed, ra.other), (False, True))
        na = NeighborAdvertisement(GATEWAY, NA_ROUTER | NA_OVERRIDE)
        self.assertEqual((na.router, na.solicited, na.override), (True, False, True))
        prefix = PrefixInformation(64, PREFIX_AUTONOMOUS, 0, 0, PREFIX)
        self.assertEqual((prefix.onLink, prefix.autonomous), (False, True))

    def test_option(self):
        """
        C{option} finds the first option of a class, or C{None}.
        """
        message = parsed(ROUTER_ADVERTISEMENT)
        self.assertEqual(message.option(MTUOption), MTUOption(1500))
        self.assertEqual(message.option(SourceLinkLayerAddress).address, ROUTER_MAC)
        self.assertIsNone(message.option(TargetLinkLayerAddress))
        self.assertIsNone(replace(message, options=()).option(MTUOption))


class DomainNameTests(SynchronousTestCase):
    """
    Uncompressed name lists (L{vpnkit.wire.dnsnames}).
    """

    def test_encode(self):
        """
        Names are length-prefixed labels ending in a zero byte; a trailing
        dot makes no difference.
        """
        self.assertEqual(
            encodeDomainNames(["localdomain", "a.example."]),
            b"\x0blocaldomain\x00\x01a\x07example\x00",
        )

    def test_decodePadded(self):
        """
        Zero padding after the names (RFC 8106) ends the list.
        """
        self.assertEqual(decodeDomainNames(b"\x0blocaldomain\x00" + bytes(3)), ["localdomain"])
        self.assertEqual(decodeDomainNames(b""), [])

    def test_badNames(self):
        """
        Empty labels, labels over 63 bytes, names over 255 bytes and
        non-ASCII names cannot be encoded.
        """
        for name in ("", "a..b", "x" * 64, ".".join(["x" * 63] * 4), "caf\u00e9.example"):
            with self.assertRaises(MalformedError, msg=name):
                encodeDomainNames([name])

    def test_badEncodings(self):
        """
        Compression pointers, reserved label types, names running past the
        end, labels holding dots or non-ASCII bytes, names over 255 bytes
        and non-zero padding are rejected.
        """
        for data in (
            b"\x01a\xc0\x00",
            b"\x40a",
            b"\x05abc",
            b"\x01a",
            b"\x03a.b\x00",
            b"\x02\xc3\xa9\x00",
            (b"\x3f" + b"x" * 63) * 4 + b"\x00",
            b"\x01a\x00\x00\x01",
        ):
            with self.assertRaises(MalformedError, msg=data):
                decodeDomainNames(data)
