"""
Fuzzing the IPv6 parsers of L{vpnkit.wire} (L{parseIPv6},
L{parseExtensions}, L{parseICMPv6}, L{parseNDPOptions}, L{parseDHCPv6},
L{decodeDomainNames}), seeded from the captured frames, and round-trip
properties of their emitters.

As in C{tests/test_wire_fuzz.py} (whose strategies are reused): a parser
returns a value or raises a L{vpnkit.wire.ParseError} subclass; anything
else fails the test.  Hypothesis runs derandomized with no example
database.
"""

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.ipv6fixtures import (
    DHCPV6_FRAMES,
    FRAGMENTS,
    FRAMES,
    GATEWAY,
    GUEST_ADDRESS,
    ICMPV6_FRAMES,
    MLD_REPORT,
    ipv6Packet,
    ipv6Payload,
    udpPayload6,
)
from tests.test_wire_fuzz import FUZZ, PROPERTY, inputs, label
from vpnkit.wire import ParseError
from vpnkit.wire.dhcpv6 import (
    ClientID,
    DHCPv6Message,
    DHCPv6Option,
    DNSServers,
    DomainList,
    ElapsedTime,
    IAAddress,
    IANA,
    OptionRequest,
    Preference,
    RapidCommit,
    ServerID,
    StatusCode,
    emitDHCPv6,
    parseDHCPv6,
)
from vpnkit.wire.dnsnames import decodeDomainNames, encodeDomainNames
from vpnkit.wire.icmpv6 import (
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
    parseICMPv6,
    parseNDPOptions,
)
from vpnkit.wire.ipv6 import (
    NEXT_DESTINATION,
    NEXT_FRAGMENT,
    NEXT_HOP_BY_HOP,
    NEXT_ROUTING,
    FragmentHeader,
    IPv6Header,
    emitFragmentHeader,
    emitIPv6,
    parseExtensions,
    parseIPv6,
)

IPV6_CORPUS = [ipv6Packet(frame) for frame in FRAMES]
# The payloads behind the fixed header, with their first next header.
EXTENSION_CORPUS = [
    (packet[6], packet[40:]) for packet in (ipv6Packet(f) for f in [MLD_REPORT] + FRAGMENTS)
] + [
    (
        NEXT_DESTINATION,
        bytes((NEXT_ROUTING, 0, 1, 4, 0xC2, 0, 0, 0)) + bytes((17, 2, 0, 1)) + bytes(20),
    ),
]
ICMPV6_CORPUS = [ipv6Payload(frame) for frame in ICMPV6_FRAMES]
NDP_OPTIONS_CORPUS = [
    ipv6Payload(frame)[16:] for frame in ICMPV6_FRAMES if ipv6Payload(frame)[0] == 134
]
DHCPV6_CORPUS = [udpPayload6(frame) for frame in DHCPV6_FRAMES]
NAMES_CORPUS = [
    encodeDomainNames(["localdomain"]) + bytes(3),
    encodeDomainNames(["a.example.com", "b.example.com"]),
]


class ParserFuzzTests(SynchronousTestCase):
    """
    Every IPv6 parser returns a value or raises L{ParseError}, whatever
    bytes it is given.
    """

    def assertParsesOrRejects(self, parser, data):
        try:
            result = parser(data)
        except ParseError:
            return None
        self.assertIsNotNone(result)
        return result

    @FUZZ
    @given(data=inputs(IPV6_CORPUS, maxSize=200, boundaries=[40, 48]))
    def test_parseIPv6(self, data):
        """
        L{parseIPv6} accepts or rejects any bytes; the payload is exactly
        the payload length, and the datagram re-emits to the bytes it was
        cut from.
        """
        result = self.assertParsesOrRejects(parseIPv6, data)
        if result is not None:
            header, payload = result
            self.assertEqual(len(payload), header.payloadLength)
            self.assertEqual(emitIPv6(header, payload), data[: 40 + header.payloadLength])

    @FUZZ
    @given(
        seed=st.sampled_from(EXTENSION_CORPUS),
        nextHeader=st.sampled_from(
            [NEXT_HOP_BY_HOP, NEXT_DESTINATION, NEXT_ROUTING, NEXT_FRAGMENT, None]
        ),
        data=st.data(),
    )
    def test_parseExtensions(self, seed, nextHeader, data):
        """
        L{parseExtensions} walks or rejects any chain (any first next
        header, mutated headers); the upper layer never starts past the
        payload.
        """
        first, payload = seed
        payload = data.draw(inputs([payload], maxSize=80, boundaries=[8, 16]))
        start = first if nextHeader is None else nextHeader
        result = self.assertParsesOrRejects(lambda d: parseExtensions(start, d), payload)
        if result is not None:
            self.assertLessEqual(result.offset, len(payload))

    @FUZZ
    @given(data=inputs(ICMPV6_CORPUS, maxSize=200, boundaries=[4, 8, 16, 24]), verify=st.booleans())
    def test_parseICMPv6(self, data, verify):
        """
        L{parseICMPv6} accepts or rejects any bytes; a verified message
        re-emits to the same bytes, or (reserved bits, padding) to bytes
        that parse to the same value.
        """
        result = self.assertParsesOrRejects(
            lambda d: parseICMPv6(d, GUEST_ADDRESS, GATEWAY, verifyChecksum=verify), data
        )
        if result is not None:
            emitted = emitICMPv6(result, GUEST_ADDRESS, GATEWAY)
            self.assertEqual(parseICMPv6(emitted, GUEST_ADDRESS, GATEWAY), result)

    @FUZZ
    @given(data=inputs(NDP_OPTIONS_CORPUS, maxSize=120, boundaries=[8, 32, 40]))
    def test_parseNDPOptions(self, data):
        """
        L{parseNDPOptions} accepts or rejects any bytes; what it accepts
        re-emits to bytes that parse the same.
        """
        result = self.assertParsesOrRejects(parseNDPOptions, data)
        if result is not None:
            self.assertEqual(parseNDPOptions(emitNDPOptions(result)), result)

    @FUZZ
    @given(data=inputs(DHCPV6_CORPUS, maxSize=200, boundaries=[4, 8, 22]))
    def test_parseDHCPv6(self, data):
        """
        L{parseDHCPv6} accepts or rejects any bytes; what it accepts
        re-emits to bytes that parse the same.
        """
        result = self.assertParsesOrRejects(parseDHCPv6, data)
        if result is not None:
            self.assertEqual(parseDHCPv6(emitDHCPv6(result)), result)

    @FUZZ
    @given(data=inputs(NAMES_CORPUS, maxSize=80))
    def test_decodeDomainNames(self, data):
        """
        L{decodeDomainNames} decodes or rejects any bytes, and what it
        decodes encodes again.
        """
        result = self.assertParsesOrRejects(decodeDomainNames, data)
        if result is not None:
            self.assertEqual(decodeDomainNames(encodeDomainNames(result)), result)


# Strategies for valid values.
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
address6 = st.binary(min_size=16, max_size=16)
mac = st.binary(min_size=6, max_size=6)
# At most three labels, so that a name never exceeds 255 bytes.
domain = st.lists(label, min_size=1, max_size=3).map(".".join)
payload = st.binary(max_size=64)

ndpOption = st.one_of(
    st.builds(SourceLinkLayerAddress, mac),
    st.builds(TargetLinkLayerAddress, mac),
    st.builds(PrefixInformation, u8, u8, u32, u32, address6),
    st.builds(MTUOption, u32),
    st.builds(RecursiveDNSServers, u32, st.lists(address6, min_size=1, max_size=3).map(tuple)),
    st.builds(DNSSearchList, u32, st.lists(domain, min_size=1, max_size=3).map(tuple)),
    # Unknown options whose data fills whole 8-byte units.
    st.builds(
        NDPOption,
        st.integers(6, 24) | st.integers(32, 255),
        st.integers(0, 3).flatmap(lambda n: st.binary(min_size=6 + 8 * n, max_size=6 + 8 * n)),
    ),
)
ndpOptions = st.lists(ndpOption, max_size=5).map(tuple)

icmpv6Message = st.one_of(
    st.builds(EchoRequest, u16, u16, payload, u8),
    st.builds(EchoReply, u16, u16, payload, u8),
    st.builds(DestinationUnreachable, u8, payload),
    st.builds(PacketTooBig, u32, payload, u8),
    st.builds(TimeExceeded, u8, payload),
    st.builds(ParameterProblem, u8, u32, payload),
    st.builds(RouterSolicitation, ndpOptions),
    st.builds(RouterAdvertisement, u8, u8, u16, u32, u32, ndpOptions),
    st.builds(NeighborSolicitation, address6, ndpOptions),
    st.builds(
        NeighborAdvertisement, address6, st.sampled_from([0, 0x20, 0x40, 0x80, 0xE0]), ndpOptions
    ),
    st.builds(
        ICMPv6Message,
        st.sampled_from([130, 131, 132, 137, 143, 200]),
        u8,
        payload,
    ),
)

statusCode = st.builds(StatusCode, u16, st.text(max_size=20))
iaAddress = st.builds(IAAddress, address6, u32, u32, st.lists(statusCode, max_size=1).map(tuple))
dhcpv6Option = st.one_of(
    st.builds(ClientID, st.binary(min_size=2, max_size=20)),
    st.builds(ServerID, st.binary(min_size=2, max_size=20)),
    st.builds(IANA, u32, u32, u32, st.lists(iaAddress | statusCode, max_size=3).map(tuple)),
    st.builds(OptionRequest, st.lists(u16, max_size=5).map(tuple)),
    st.builds(Preference, u8),
    st.builds(ElapsedTime, u16),
    statusCode,
    st.just(RapidCommit()),
    st.builds(DNSServers, st.lists(address6, min_size=1, max_size=3).map(tuple)),
    st.builds(DomainList, st.lists(domain, max_size=3).map(tuple)),
    st.builds(DHCPv6Option, st.sampled_from([4, 15, 16, 25, 32, 39]), st.binary(max_size=20)),
)


class RoundTripPropertyTests(SynchronousTestCase):
    """
    For any valid value, parse(emit(value)) gives the value back.
    """

    @PROPERTY
    @given(
        header=st.builds(
            IPv6Header, u8, st.integers(0, 0xFFFFF), st.just(0), u8, u8, address6, address6
        ),
        body=st.binary(max_size=64),
    )
    def test_ipv6(self, header, body):
        """
        Any IPv6 header survives emit then parse, with the payload length
        computed.
        """
        parsed, parsedPayload = parseIPv6(emitIPv6(header, body))
        self.assertEqual(parsed, replace(header, payloadLength=len(body)))
        self.assertEqual(parsedPayload, body)

    @PROPERTY
    @given(
        fragment=st.builds(
            FragmentHeader,
            u8,
            st.integers(0, 0x1FFF).map(lambda n: n * 8),
            st.booleans(),
            u32,
            st.integers(0, 0x3FF),
        )
    )
    def test_fragmentHeader(self, fragment):
        """
        Any fragment header survives emit then parse.
        """
        self.assertEqual(
            parseExtensions(NEXT_FRAGMENT, emitFragmentHeader(fragment)).fragment, fragment
        )

    @PROPERTY
    @given(message=icmpv6Message, src=address6, dst=address6)
    def test_icmpv6(self, message, src, dst):
        """
        Any ICMPv6 message (every option of Neighbor Discovery included)
        emits to bytes that verify and parse back to it.
        """
        self.assertEqual(parseICMPv6(emitICMPv6(message, src, dst), src, dst), message)

    @PROPERTY
    @given(
        msgType=st.integers(1, 11),
        xid=st.integers(0, 0xFFFFFF),
        options=st.lists(dhcpv6Option, max_size=6),
    )
    def test_dhcpv6(self, msgType, xid, options):
        """
        Any DHCPv6 message with any modelled options survives emit then
        parse.
        """
        message = DHCPv6Message(msgType, xid, tuple(options))
        self.assertEqual(parseDHCPv6(emitDHCPv6(message)), message)

    @PROPERTY
    @given(names=st.lists(domain, max_size=5))
    def test_domainNames(self, names):
        """
        Any list of valid names encodes and decodes back to itself.
        """
        self.assertEqual(decodeDomainNames(encodeDomainNames(names)), names)
