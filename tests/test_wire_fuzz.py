"""
Fuzzing every parser of L{vpnkit.wire}, seeded from the captured frames, and
round-trip properties of every emitter.

A parser must return a value or raise a L{vpnkit.wire.ParseError}
subclass; anything else (C{struct.error}, C{IndexError}, C{UnicodeError},
...) escapes the test and fails it.  Hypothesis runs derandomized with no
example database, so every run tries the same inputs (the house rule on
seeded randomness) and leaves nothing behind in the checkout.
"""

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    ARP_FRAMES,
    DHCP_ACK,
    DHCP_DISCOVER,
    DHCP_OFFER,
    DHCP_REQUEST,
    FRAMES,
    GATEWAY_IP,
    GUEST_IP,
    ICMP_FRAMES,
    IPV4_FRAMES,
    UDP_FRAMES,
    ipPacket,
    ipPayload,
    udpPayload,
)
from vpnkit.wire import ParseError
from vpnkit.wire.arp import ARPPacket, emitARP, parseARP
from vpnkit.wire.dhcp import (
    DHCPMessage,
    decodeDomainSearch,
    emitDHCP,
    encodeDomainSearch,
    parseDHCP,
)
from vpnkit.wire.ethernet import EthernetHeader, emitEthernet, parseEthernet
from vpnkit.wire.icmp import ICMPMessage, emitICMP, parseICMP
from vpnkit.wire.ipv4 import IPv4Header, emitIPv4, parseIPv4
from vpnkit.wire.udp import emitUDP, parseUDP
from vpnkit.wire.vmnet import (
    BindIPv4Command,
    Disconnect,
    EthernetCommand,
    Init,
    PreferredIPv4Command,
    Vif,
    emitCommand,
    emitInit,
    emitResponse,
    parseCommand,
    parseInit,
    parseResponse,
    parseUUID,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)


# Seed corpora, one per parser, all from the capture (or the reference's
# own byte examples for vmnet).
ETHERNET_CORPUS = FRAMES
IPV4_CORPUS = [ipPacket(frame) for frame in IPV4_FRAMES]
ARP_CORPUS = [frame[14:] for frame in ARP_FRAMES]
ICMP_CORPUS = [ipPayload(frame) for frame in ICMP_FRAMES]
UDP_CORPUS = [ipPayload(frame) for frame in UDP_FRAMES]
DHCP_MESSAGES = [
    udpPayload(frame) for frame in (DHCP_DISCOVER, DHCP_OFFER, DHCP_REQUEST, DHCP_ACK)
]
# The same messages cut just after END, so that cuts near the end land in
# the options rather than in the padding.
DHCP_CORPUS = DHCP_MESSAGES + [
    emitDHCP(replace(parseDHCP(data), padding=b"")) for data in DHCP_MESSAGES
]
SEARCH_CORPUS = [
    encodeDomainSearch(["a.example.com", "b.example.com", "example.com"]),
    encodeDomainSearch(["eng.apple.com", "marketing.apple.com"]),
    encodeDomainSearch(["localdomain"]),
]
UUID_TEXT = b"d1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5"
INIT_CORPUS = [emitInit(), b"VMN3T" + (21).to_bytes(4, "little") + bytes(40)]
COMMAND_CORPUS = [
    emitCommand(EthernetCommand(UUID_TEXT)),
    emitCommand(EthernetCommand(bytes(36))),
    emitCommand(PreferredIPv4Command(UUID_TEXT, bytes((192, 168, 65, 250)))),
    emitCommand(BindIPv4Command(bytes((127, 0, 0, 1)), 53, True)),
]
RESPONSE_CORPUS = [
    emitResponse(Vif(1500, 1550, bytes.fromhex("025000000001"))),
    emitResponse(Disconnect("No IP addresses available.")),
]
UUID_CORPUS = [UUID_TEXT, UUID_TEXT.upper(), bytes(36)]


# Length and flag values at the edges of fields (label types, signs, all ones).
INTERESTING_BYTES = [0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF]


@st.composite
def mutated(draw, corpus):
    """
    A corpus entry with a few random edits: bit flips, byte overwrites
    (biased towards interesting values), insertions and deletions, placed
    mostly in the first 64 bytes where the headers are.
    """
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 6))):
        limit = len(data)
        position = draw(
            st.one_of(st.integers(0, min(limit, 64)), st.integers(0, limit))
        )
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        byte = draw(st.one_of(st.sampled_from(INTERESTING_BYTES), st.integers(0, 255)))
        if kind == "insert":
            data[position:position] = bytes((byte,)) * draw(st.integers(1, 4))
        elif position == limit:
            continue
        elif kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[position] = byte
        else:
            del data[position : position + draw(st.integers(1, 4))]
    return bytes(data)


def truncated(corpus, boundaries=()):
    """
    Prefixes (and, less often, suffixes) of corpus entries, cut anywhere
    but most often within the first 64 or the last 24 bytes (where the
    headers and the last options are) or within 4 bytes of one of the
    format's fixed C{boundaries}.
    """

    def cuts(data):
        n = len(data)
        where = st.one_of(
            st.integers(0, min(n, 64)),
            st.integers(max(0, n - 24), n),
            st.integers(0, n),
            *[st.integers(max(0, b - 4), min(n, b + 4)) for b in boundaries if b <= n + 4],
        )
        return st.tuples(where, st.integers(0, 3)).map(
            lambda cut: data[cut[0] :] if cut[1] == 0 else data[: cut[0]]
        )

    return st.sampled_from(corpus).flatmap(cuts)


def inputs(corpus, maxSize=600, boundaries=()):
    """
    Random bytes, truncations and mutations of C{corpus}, and the corpus
    itself.
    """
    return st.one_of(
        st.binary(max_size=maxSize),
        truncated(corpus, boundaries),
        mutated(corpus),
        st.sampled_from(corpus),
    )


class ParserFuzzTests(SynchronousTestCase):
    """
    Every parser returns a value or raises L{ParseError}, whatever bytes it
    is given.
    """

    def assertParsesOrRejects(self, parser, data):
        """
        Call C{parser(data)}; a L{ParseError} is fine, any other exception
        propagates and fails the test.

        @return: the parsed value, or C{None} if rejected.
        """
        try:
            result = parser(data)
        except ParseError:
            return None
        self.assertIsNotNone(result)
        return result

    @FUZZ
    @given(data=inputs(ETHERNET_CORPUS, boundaries=[14]))
    def test_parseEthernet(self, data):
        """
        L{parseEthernet} splits any frame of 14 bytes or more, and the
        pieces re-emit to the frame.
        """
        result = self.assertParsesOrRejects(parseEthernet, data)
        if result is not None:
            self.assertEqual(emitEthernet(*result), data)

    @FUZZ
    @given(data=inputs(ARP_CORPUS, boundaries=[28]))
    def test_parseARP(self, data):
        """
        L{parseARP} accepts or rejects any bytes; what it accepts re-emits
        to its first 28 bytes.
        """
        result = self.assertParsesOrRejects(parseARP, data)
        if result is not None:
            self.assertEqual(emitARP(result), data[:28])

    @FUZZ
    @given(data=inputs(IPV4_CORPUS, boundaries=[20, 24, 60]), verify=st.booleans())
    def test_parseIPv4(self, data, verify):
        """
        L{parseIPv4} accepts or rejects any bytes, checksum verified or not;
        a payload never extends past the total length.
        """
        result = self.assertParsesOrRejects(
            lambda d: parseIPv4(d, verifyChecksum=verify), data
        )
        if result is not None:
            header, payload = result
            self.assertEqual(header.headerLength + len(payload), header.totalLength)
            if verify:
                self.assertEqual(emitIPv4(header, payload), data[: header.totalLength])

    @FUZZ
    @given(data=inputs(ICMP_CORPUS, boundaries=[8]), verify=st.booleans())
    def test_parseICMP(self, data, verify):
        """
        L{parseICMP} accepts or rejects any bytes; a verified message
        re-emits to the same bytes.
        """
        result = self.assertParsesOrRejects(
            lambda d: parseICMP(d, verifyChecksum=verify), data
        )
        if result is not None and verify:
            # Only the ones'-complement ambiguity (0x0000 vs 0xffff) may
            # differ in the checksum field.
            emitted = emitICMP(result)
            self.assertEqual(emitted[:2] + emitted[4:], data[:2] + data[4:])

    @FUZZ
    @given(data=inputs(UDP_CORPUS, maxSize=700, boundaries=[8]), verify=st.booleans())
    def test_parseUDP(self, data, verify):
        """
        L{parseUDP} accepts or rejects any bytes between any addresses; the
        payload is exactly the length field minus 8.
        """
        result = self.assertParsesOrRejects(
            lambda d: parseUDP(d, GUEST_IP, GATEWAY_IP, verifyChecksum=verify), data
        )
        if result is not None:
            header, payload = result
            self.assertEqual(len(payload), header.length - 8)

    @FUZZ
    @given(data=inputs(DHCP_CORPUS, boundaries=[240]))
    def test_parseDHCP(self, data):
        """
        L{parseDHCP} accepts or rejects any bytes; what it accepts re-emits
        to the same bytes (options, PADs and padding all kept).
        """
        result = self.assertParsesOrRejects(parseDHCP, data)
        if result is not None:
            self.assertEqual(emitDHCP(result), data)

    @FUZZ
    @given(data=inputs(SEARCH_CORPUS, maxSize=80))
    def test_decodeDomainSearch(self, data):
        """
        L{decodeDomainSearch} decodes or rejects any bytes (pointer loops
        included) without hanging or raising anything else.
        """
        result = self.assertParsesOrRejects(decodeDomainSearch, data)
        if result is not None:
            self.assertIsInstance(result, list)

    @FUZZ
    @given(data=inputs(INIT_CORPUS, maxSize=60, boundaries=[49]))
    def test_parseInit(self, data):
        """
        L{parseInit} accepts any 49 bytes or more and rejects less.
        """
        result = self.assertParsesOrRejects(parseInit, data)
        self.assertEqual(result is None, len(data) < 49)
        if result is not None:
            self.assertEqual(emitInit(result), data[:49])

    @FUZZ
    @given(data=inputs(COMMAND_CORPUS, maxSize=50, boundaries=[41]))
    def test_parseCommand(self, data):
        """
        L{parseCommand} accepts any 41 bytes or more and rejects less.
        """
        result = self.assertParsesOrRejects(parseCommand, data)
        self.assertEqual(result is None, len(data) < 41)

    @FUZZ
    @given(data=inputs(RESPONSE_CORPUS, maxSize=300, boundaries=[258]))
    def test_parseResponse(self, data):
        """
        L{parseResponse} accepts any 258 bytes or more and rejects less.
        """
        result = self.assertParsesOrRejects(parseResponse, data)
        self.assertEqual(result is None, len(data) < 258)

    @FUZZ
    @given(data=inputs(UUID_CORPUS, maxSize=40, boundaries=[36]))
    def test_parseUUID(self, data):
        """
        L{parseUUID} returns C{None} (all NULs, or the nil UUID as text),
        canonical lower-case text, or raises L{ParseError}.
        """
        try:
            result = parseUUID(data)
        except ParseError:
            return
        if result is None:
            self.assertIn(data, (bytes(36), b"00000000-0000-0000-0000-000000000000"))
        else:
            self.assertEqual(result, data.decode("ascii").lower())


# Strategies for valid values.
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
address = st.binary(min_size=4, max_size=4)
mac = st.binary(min_size=6, max_size=6)


optionWords = st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


@st.composite
def ipv4Headers(draw):
    """
    Any IPv4 header vpnkit could emit (options a whole number of words,
    at most 40 bytes).
    """
    return IPv4Header(
        tos=draw(u8),
        totalLength=0,
        ident=draw(u16),
        flags=draw(st.integers(0, 7)),
        fragmentOffset=draw(st.integers(0, 0x1FFF)) * 8,
        ttl=draw(u8),
        protocol=draw(u8),
        checksum=0,
        src=draw(address),
        dst=draw(address),
        options=draw(optionWords),
    )


dhcpOption = st.one_of(
    st.tuples(st.integers(1, 254), st.binary(max_size=255)),
    st.just((0, b"")),
)


@st.composite
def dhcpMessages(draw):
    """
    Any DHCP message with options whose values fit one instance.
    """
    return DHCPMessage(
        op=draw(u8),
        xid=draw(u32),
        chaddr=draw(st.binary(min_size=16, max_size=16)),
        options=tuple(draw(st.lists(dhcpOption, max_size=12))),
        htype=draw(u8),
        hlen=draw(u8),
        hops=draw(u8),
        secs=draw(u16),
        flags=draw(u16),
        ciaddr=draw(address),
        yiaddr=draw(address),
        siaddr=draw(address),
        giaddr=draw(address),
        sname=draw(st.binary(min_size=64, max_size=64)),
        file=draw(st.binary(min_size=128, max_size=128)),
        padding=draw(st.one_of(st.none(), st.binary(max_size=40))),
    )


PRINTABLE_ASCII = st.characters(min_codepoint=32, max_codepoint=126)
label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)


class RoundTripPropertyTests(SynchronousTestCase):
    """
    For any valid value, parse(emit(value)) gives the value back and
    emit(parse(bytes)) gives the bytes back.
    """

    @PROPERTY
    @given(dst=mac, src=mac, ethertype=u16, payload=st.binary(max_size=64))
    def test_ethernet(self, dst, src, ethertype, payload):
        """
        Any Ethernet header and payload survive emit then parse.
        """
        header = EthernetHeader(dst, src, ethertype)
        self.assertEqual(parseEthernet(emitEthernet(header, payload)), (header, payload))

    @PROPERTY
    @given(op=u16, sha=mac, spa=address, tha=mac, tpa=address)
    def test_arp(self, op, sha, spa, tha, tpa):
        """
        Any Ethernet/IPv4 ARP packet survives emit then parse.
        """
        packet = ARPPacket(op, sha, spa, tha, tpa)
        self.assertEqual(parseARP(emitARP(packet)), packet)

    @PROPERTY
    @given(header=ipv4Headers(), payload=st.binary(max_size=64))
    def test_ipv4(self, header, payload):
        """
        Any IPv4 header emits to bytes that parse back to the same fields
        (with the computed length and checksum) and re-emit identically.
        """
        emitted = emitIPv4(header, payload)
        parsed, parsedPayload = parseIPv4(emitted)
        self.assertEqual(
            parsed,
            replace(
                header,
                totalLength=header.headerLength + len(payload),
                checksum=int.from_bytes(emitted[10:12], "big"),
            ),
        )
        self.assertEqual(parsedPayload, payload)
        self.assertEqual(emitIPv4(parsed, parsedPayload), emitted)

    @PROPERTY
    @given(
        type_=u8, code=u8, rest=st.binary(min_size=4, max_size=4), payload=st.binary(max_size=64)
    )
    def test_icmp(self, type_, code, rest, payload):
        """
        Any ICMP message emits to bytes that verify and parse back to it.
        """
        emitted = emitICMP(ICMPMessage(type_, code, 0, rest, payload))
        parsed = parseICMP(emitted)
        self.assertEqual(
            (parsed.type, parsed.code, parsed.rest, parsed.payload), (type_, code, rest, payload)
        )
        self.assertEqual(emitICMP(parsed), emitted)

    @PROPERTY
    @given(srcPort=u16, dstPort=u16, payload=st.binary(max_size=128), src=address, dst=address)
    def test_udp(self, srcPort, dstPort, payload, src, dst):
        """
        Any UDP datagram emits with a non-zero checksum that verifies, and
        parses back to its ports and payload.
        """
        emitted = emitUDP(srcPort, dstPort, payload, src, dst)
        header, parsed = parseUDP(emitted, src, dst)
        self.assertEqual(
            (header.srcPort, header.dstPort, header.length), (srcPort, dstPort, 8 + len(payload))
        )
        self.assertNotEqual(header.checksum, 0)
        self.assertEqual(parsed, payload)
        self.assertEqual(emitUDP(header.srcPort, header.dstPort, parsed, src, dst), emitted)

    @PROPERTY
    @given(message=dhcpMessages())
    def test_dhcp(self, message):
        """
        Any DHCP message (options in any order, PADs, with or without END,
        any padding) survives emit then parse unchanged.
        """
        emitted = emitDHCP(message)
        self.assertEqual(parseDHCP(emitted), message)

    @PROPERTY
    @given(code=st.integers(1, 254), value=st.binary(min_size=256, max_size=1000))
    def test_dhcpLongOption(self, code, value):
        """
        An option too long for one instance is split on emit and joined
        again by C{option()}.
        """
        message = DHCPMessage(op=1, xid=1, chaddr=bytes(16), options=((code, value),))
        parsed = parseDHCP(emitDHCP(message))
        self.assertEqual(parsed.option(code), value)
        self.assertEqual(len(parsed.options), (len(value) + 254) // 255)

    @PROPERTY
    @given(domains=st.lists(domain, max_size=6))
    def test_domainSearch(self, domains):
        """
        Any list of valid names encodes and decodes back to the same list,
        never longer than the uncompressed form.
        """
        encoded = encodeDomainSearch(domains)
        self.assertEqual(decodeDomainSearch(encoded), domains)
        self.assertLessEqual(len(encoded), sum(len(d) + 2 for d in domains))

    @PROPERTY
    @given(
        magic=st.binary(min_size=5, max_size=5),
        version=u32,
        commit=st.binary(min_size=40, max_size=40),
    )
    def test_init(self, magic, version, commit):
        """
        Any Init survives emit then parse.
        """
        init = Init(magic, version, commit)
        self.assertEqual(parseInit(emitInit(init)), init)

    @PROPERTY
    @given(
        command=st.one_of(
            st.builds(EthernetCommand, st.binary(min_size=36, max_size=36)),
            st.builds(PreferredIPv4Command, st.binary(min_size=36, max_size=36), address),
            st.builds(BindIPv4Command, address, u16, st.booleans()),
        )
    )
    def test_command(self, command):
        """
        Any Ethernet, preferred-address or bind command survives emit then
        parse, in 41 bytes.
        """
        emitted = emitCommand(command)
        self.assertEqual(len(emitted), 41)
        self.assertEqual(parseCommand(emitted), command)

    @PROPERTY
    @given(
        response=st.one_of(
            st.builds(Vif, u16, u16, mac),
            st.builds(Disconnect, st.text(PRINTABLE_ASCII, max_size=255)),
        )
    )
    def test_response(self, response):
        """
        Any Vif or (ASCII) Disconnect survives emit then parse, in 258 bytes.
        """
        emitted = emitResponse(response)
        self.assertEqual(len(emitted), 258)
        self.assertEqual(parseResponse(emitted), response)
