"""
Tests for L{vpnkit.wire.ipv4}.
"""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    DHCP_OFFER,
    FRAGMENTS,
    GATEWAY_IP,
    GUEST_IP,
    ICMP_ECHO_REQUEST,
    IPV4_FRAMES,
    IPV6_FRAMES,
    LIMITED_BROADCAST_IP,
    TCP_RST,
    ipPacket,
    referenceSum,
    withIPv4Checksum,
)
from vpnkit.wire import ChecksumError, MalformedError, ParseError, TruncatedError
from vpnkit.wire.ipv4 import (
    FLAG_DF,
    FLAG_MF,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Header,
    buildHeader,
    emitIPv4,
    formatIP,
    packIP,
    parseIPv4,
)

PING = ipPacket(ICMP_ECHO_REQUEST)
RST = ipPacket(TCP_RST)

# The captured echo request's header, field by field.
PING_HEADER = IPv4Header(
    tos=0,
    totalLength=84,
    ident=41741,
    flags=FLAG_DF,
    fragmentOffset=0,
    ttl=64,
    protocol=PROTO_ICMP,
    checksum=0x7F8B,
    src=GUEST_IP,
    dst=GATEWAY_IP,
)

# Router Alert (RFC 2113), the option Linux itself puts on IGMP/MLD.
ROUTER_ALERT = b"\x94\x04\x00\x00"


def withOptions(packet, options):
    """
    C{packet} (a captured 20-byte-header datagram) with C{options} inserted
    after its fixed header, IHL and total length adjusted, and the header
    checksum recomputed by the reference sum.
    """
    hl = 20 + len(options)
    out = bytearray(packet[:20] + options + packet[20:])
    out[0] = 0x40 | (hl // 4)
    out[2:4] = (len(out)).to_bytes(2, "big")
    return withIPv4Checksum(bytes(out))


class ParseTests(SynchronousTestCase):
    """
    Parsing captured IPv4 datagrams.
    """

    def test_parse(self):
        """
        The guest's echo request parses into every header field as the
        kernel sent it, with the 64-byte ICMP message as payload.
        """
        header, payload = parseIPv4(PING)
        self.assertEqual(header, PING_HEADER)
        self.assertEqual(header.headerLength, 20)
        self.assertFalse(header.isFragment)
        self.assertEqual(payload, PING[20:])
        self.assertEqual(len(payload), 64)

    def test_parseDHCPOffer(self):
        """
        slirp4netns's broadcast DHCP OFFER parses with TOS 0x10, no flags,
        the limited broadcast destination and a 556-byte UDP payload.
        """
        header, payload = parseIPv4(ipPacket(DHCP_OFFER))
        self.assertEqual(header.tos, 0x10)
        self.assertEqual(header.flags, 0)
        self.assertEqual(header.ident, 0)
        self.assertEqual(header.protocol, PROTO_UDP)
        self.assertEqual(header.src, GATEWAY_IP)
        self.assertEqual(header.dst, LIMITED_BROADCAST_IP)
        self.assertEqual(header.totalLength, 576)
        self.assertEqual(len(payload), 556)

    def test_parseFragments(self):
        """
        The three fragments of the 4000-byte UDP datagram share an ident;
        the first two have MF set, the offsets are 0, 1480 and 2960, and
        the payloads add up to the 4008-byte UDP datagram.
        """
        parsed = [parseIPv4(ipPacket(frame)) for frame in FRAGMENTS]
        headers = [header for header, _ in parsed]
        self.assertEqual({h.ident for h in headers}, {0xECF3})
        self.assertEqual([h.flags for h in headers], [FLAG_MF, FLAG_MF, 0])
        self.assertEqual([h.fragmentOffset for h in headers], [0, 1480, 2960])
        self.assertEqual([h.totalLength for h in headers], [1500, 1500, 1068])
        self.assertEqual([h.isFragment for h in headers], [True, True, True])
        self.assertEqual([len(p) for _, p in parsed], [1480, 1480, 1048])
        whole = b"".join(p for _, p in parsed)
        self.assertEqual(int.from_bytes(whole[4:6], "big"), 4008)
        self.assertEqual(whole[8:], b"y" * 4000)

    def test_isFragment(self):
        """
        A datagram is a fragment when MF is set or its offset is non-zero;
        DF alone does not make one.
        """
        self.assertFalse(PING_HEADER.isFragment)
        self.assertTrue(replace(PING_HEADER, flags=FLAG_MF).isFragment)
        self.assertTrue(replace(PING_HEADER, flags=0, fragmentOffset=8).isFragment)

    def test_ethernetPadding(self):
        """
        Bytes beyond the total length (the padding of a minimum-size
        Ethernet frame) are not part of the payload.
        """
        padded = RST + bytes(60 - 14 - len(RST))
        self.assertEqual(len(padded), 46)
        header, payload = parseIPv4(padded)
        self.assertEqual(header.totalLength, 40)
        self.assertEqual(payload, RST[20:])
        self.assertEqual(len(payload), 20)

    def test_options(self):
        """
        With IHL 6 the four option bytes are kept in C{options} and the
        payload starts after them, not at byte 20 (twisted#9037).
        """
        packet = withOptions(PING, ROUTER_ALERT)
        self.assertEqual(packet[0], 0x46)
        header, payload = parseIPv4(packet)
        self.assertEqual(header.options, ROUTER_ALERT)
        self.assertEqual(header.headerLength, 24)
        self.assertEqual(header.totalLength, 88)
        self.assertEqual(payload, PING[20:])

    def test_maximumOptions(self):
        """
        IHL 15 gives 40 bytes of options; all of them are kept and the
        payload starts at byte 60.
        """
        options = b"\x01" * 39 + b"\x00"  # NOPs then End of Option List
        packet = withOptions(PING, options)
        self.assertEqual(packet[0], 0x4F)
        header, payload = parseIPv4(packet)
        self.assertEqual(header.options, options)
        self.assertEqual(header.headerLength, 60)
        self.assertEqual(payload, PING[20:])

    def test_memoryview(self):
        """
        A C{memoryview} of a datagram parses like the C{bytes}.
        """
        header, payload = parseIPv4(memoryview(PING))
        self.assertEqual(header, PING_HEADER)
        self.assertEqual(bytes(payload), PING[20:])


class EmitTests(SynchronousTestCase):
    """
    Emitting IPv4 datagrams.
    """

    def test_emit(self):
        """
        The echo request's header fields and payload emit to exactly the
        captured bytes: the total length and checksum are recomputed, so
        the stale values given here do not matter.
        """
        header = replace(PING_HEADER, totalLength=0, checksum=0)
        self.assertEqual(emitIPv4(header, PING[20:]), PING)

    def test_roundTripCapture(self):
        """
        Every IPv4 datagram of the capture (DHCP, ICMP, TCP, UDP, fragments)
        parses and re-emits to the same bytes.
        """
        self.assertEqual(len(IPV4_FRAMES), 67)
        for frame in IPV4_FRAMES:
            packet = ipPacket(frame)
            self.assertEqual(emitIPv4(*parseIPv4(packet)), packet)

    def test_emitOptions(self):
        """
        A header with options emits IHL and checksum to match a datagram
        built independently.
        """
        expected = withOptions(PING, ROUTER_ALERT)
        header = replace(PING_HEADER, options=ROUTER_ALERT)
        self.assertEqual(emitIPv4(header, PING[20:]), expected)

    def test_emitFragmentOffset(self):
        """
        The fragment offset (in bytes) is written in 8-byte units next to
        the flags.
        """
        packet = ipPacket(FRAGMENTS[1])
        header, payload = parseIPv4(packet)
        emitted = emitIPv4(header, payload)
        self.assertEqual(emitted[6:8], b"\x20\xb9")  # MF, 1480 / 8 = 185
        self.assertEqual(emitted, packet)

    def test_emitBadOptions(self):
        """
        Options that are not a whole number of 32-bit words, or longer than
        40 bytes, raise L{MalformedError}.
        """
        for options in [b"\x01", b"\x01" * 6, b"\x01" * 44]:
            with self.assertRaises(MalformedError, msg=len(options)):
                emitIPv4(replace(PING_HEADER, options=options), b"")


class RejectTests(SynchronousTestCase):
    """
    Datagrams that L{parseIPv4} refuses.
    """

    def test_truncated(self):
        """
        Every prefix shorter than the total length raises
        L{TruncatedError}: below 20 bytes for lack of a header, above it
        because the total length runs past the buffer.
        """
        for n in range(len(PING)):
            with self.assertRaises(TruncatedError, msg=n):
                parseIPv4(PING[:n])

    def test_truncatedOptions(self):
        """
        A buffer that holds the fixed header but not the options its IHL
        announces raises L{TruncatedError}.
        """
        packet = withOptions(PING, ROUTER_ALERT)
        for n in range(20, 24):
            with self.assertRaises(TruncatedError, msg=n):
                parseIPv4(packet[:n])

    def test_totalLengthBeyondBuffer(self):
        """
        A checksum-valid header whose total length exceeds the buffer raises
        L{TruncatedError}.
        """
        bad = withIPv4Checksum(RST[:2] + (41).to_bytes(2, "big") + RST[4:])
        with self.assertRaises(TruncatedError):
            parseIPv4(bad)

    def test_totalLengthBelowHeader(self):
        """
        A total length shorter than the header itself raises
        L{MalformedError}.
        """
        bad = withIPv4Checksum(RST[:2] + (19).to_bytes(2, "big") + RST[4:])
        with self.assertRaises(MalformedError):
            parseIPv4(bad)

    def test_headerLengthBelowMinimum(self):
        """
        An IHL under 5 raises L{MalformedError}.
        """
        for ihl in range(5):
            bad = bytes((0x40 | ihl,)) + PING[1:]
            with self.assertRaises(MalformedError, msg=ihl):
                parseIPv4(bad)

    def test_version(self):
        """
        A version other than 4 raises L{MalformedError}: the real IPv6
        frames of the capture, and the twisted#9037 nibble swap (0x54).
        """
        for frame in IPV6_FRAMES:
            with self.assertRaises(MalformedError):
                parseIPv4(frame[14:])
        for version in [0, 5, 6, 15]:
            bad = withIPv4Checksum(bytes(((version << 4) | 5,)) + PING[1:])
            with self.assertRaises(MalformedError, msg=version):
                parseIPv4(bad)
        with self.assertRaises(MalformedError):
            parseIPv4(b"\x54" + PING[1:])

    def test_badChecksum(self):
        """
        Flipping any bit of the header outside the version/IHL and total
        length fields raises L{ChecksumError}; with C{verifyChecksum=False}
        the same datagram parses.
        """
        for offset in [1] + list(range(4, 20)):
            for bit in range(8):
                bad = bytearray(PING)
                bad[offset] ^= 1 << bit
                with self.assertRaises(ChecksumError, msg=(offset, bit)):
                    parseIPv4(bytes(bad))
                header, _ = parseIPv4(bytes(bad), verifyChecksum=False)
                self.assertEqual(header.ttl, bad[8])

    def test_anyBitFlipRejected(self):
        """
        Flipping any single bit of the header makes L{parseIPv4} raise a
        L{ParseError} of some kind, never accept it.
        """
        for offset in range(20):
            for bit in range(8):
                bad = bytearray(PING)
                bad[offset] ^= 1 << bit
                with self.assertRaises(ParseError, msg=(offset, bit)):
                    parseIPv4(bytes(bad))

    def test_badOptionChecksum(self):
        """
        The checksum covers the options too: corrupting an option byte
        raises L{ChecksumError}.
        """
        packet = bytearray(withOptions(PING, ROUTER_ALERT))
        packet[21] ^= 0x01
        with self.assertRaises(ChecksumError):
            parseIPv4(bytes(packet))


class BuildHeaderTests(SynchronousTestCase):
    """
    Tests for the fast path L{buildHeader}.
    """

    def test_matchesCapture(self):
        """
        L{buildHeader} reproduces captured headers exactly: the kernel's
        echo request (DF), slirp's RST (no flags) and its DHCP OFFER (TOS
        0x10, broadcast).
        """
        self.assertEqual(
            buildHeader(GUEST_IP, GATEWAY_IP, PROTO_ICMP, 64, ident=41741), PING[:20]
        )
        self.assertEqual(
            buildHeader(GATEWAY_IP, GUEST_IP, PROTO_TCP, 20, ident=0x1E, flags=0), RST[:20]
        )
        offer = ipPacket(DHCP_OFFER)
        self.assertEqual(
            buildHeader(
                GATEWAY_IP, LIMITED_BROADCAST_IP, PROTO_UDP, 556, flags=0, tos=0x10
            ),
            offer[:20],
        )

    def test_accepted(self):
        """
        A built header followed by its payload is accepted by L{parseIPv4}
        with the fields it was built from.
        """
        payload = b"x" * 33
        packet = buildHeader(GUEST_IP, GATEWAY_IP, PROTO_UDP, len(payload), ttl=7, ident=9)
        header, parsed = parseIPv4(packet + payload)
        self.assertEqual(
            (header.src, header.dst, header.protocol, header.ttl, header.ident),
            (GUEST_IP, GATEWAY_IP, PROTO_UDP, 7, 9),
        )
        self.assertEqual(header.flags, FLAG_DF)
        self.assertEqual(header.totalLength, 53)
        self.assertEqual(parsed, payload)

    def test_checksumOfAllOnesSum(self):
        """
        When the header words sum to 0xffff the checksum field is 0 (not
        0xffff), as the reference computation gives.
        """
        # Pick the ident so that the header (checksum 0) sums to 0xffff.
        base = buildHeader(GUEST_IP, GATEWAY_IP, PROTO_UDP, 0, ident=0)
        partial = referenceSum(base[:10] + base[12:])
        ident = (0xFFFF - partial) % 0xFFFF
        header = buildHeader(GUEST_IP, GATEWAY_IP, PROTO_UDP, 0, ident=ident)
        self.assertEqual(header[10:12], b"\x00\x00")
        self.assertEqual(referenceSum(header), 0xFFFF)
        parseIPv4(header)

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(
        src=st.binary(min_size=4, max_size=4),
        dst=st.binary(min_size=4, max_size=4),
        protocol=st.integers(0, 255),
        payloadLength=st.integers(0, 0xFFFF - 20),
        ttl=st.integers(0, 255),
        ident=st.integers(0, 0xFFFF),
        flags=st.integers(0, 7),
        tos=st.integers(0, 255),
    )
    def test_equalsEmit(self, src, dst, protocol, payloadLength, ttl, ident, flags, tos):
        """
        For any fields, L{buildHeader} gives the same 20 bytes as
        L{emitIPv4} of the same header, and those bytes verify.
        """
        built = buildHeader(src, dst, protocol, payloadLength, ttl, ident, flags, tos)
        header = IPv4Header(tos, 0, ident, flags, 0, ttl, protocol, 0, src, dst)
        emitted = emitIPv4(header, bytes(payloadLength))
        self.assertEqual(built, emitted[:20])
        self.assertEqual(referenceSum(built), 0xFFFF)


class AddressTests(SynchronousTestCase):
    """
    Tests for L{formatIP} and L{packIP}.
    """

    def test_formatIP(self):
        """
        Packed addresses format as dotted quads.
        """
        self.assertEqual(formatIP(GUEST_IP), "10.0.2.15")
        self.assertEqual(formatIP(LIMITED_BROADCAST_IP), "255.255.255.255")

    def test_packIP(self):
        """
        Dotted quads pack into 4 network-order bytes.
        """
        self.assertEqual(packIP("10.0.2.2"), GATEWAY_IP)
        self.assertEqual(packIP("192.168.65.250"), b"\xc0\xa8\x41\xfa")
