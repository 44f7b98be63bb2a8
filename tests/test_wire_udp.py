"""
Tests for L{vpnkit.wire.udp}.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    DHCP_DISCOVER,
    DNS_ANSWER,
    DNS_QUERY,
    ECHO_FRAGMENTS,
    FRAGMENTS,
    GATEWAY_IP,
    GUEST_IP,
    LIMITED_BROADCAST_IP,
    UDP_FRAMES,
    UNSPECIFIED_IP,
    ipPacket,
    ipPayload,
    referenceSum,
    udpDatagram,
)
from vpnkit.wire import ChecksumError, MalformedError, ParseError, TruncatedError
from vpnkit.wire.udp import HEADER_LENGTH, UDPHeader, emitUDP, parseUDP

QUERY = udpDatagram(DNS_QUERY)
QUERY_PAYLOAD = QUERY[8:]


def addresses(frame):
    """
    The packed source and destination of the IPv4 datagram in C{frame}.
    """
    packet = ipPacket(frame)
    return packet[12:16], packet[16:20]


def withUDPChecksum(datagram, checksum):
    """
    C{datagram} with its checksum field replaced by C{checksum}.
    """
    return datagram[:6] + checksum.to_bytes(2, "big") + datagram[8:]


def reassembled(fragments):
    """
    The UDP datagram carried by C{fragments} (in order, none missing).
    """
    return b"".join(ipPayload(frame) for frame in fragments)


class ParseTests(SynchronousTestCase):
    """
    Parsing captured UDP datagrams.
    """

    def test_parse(self):
        """
        dig's query to port 5353 parses into its ports, length and checksum,
        with the 57-byte DNS message as payload.
        """
        header, payload = parseUDP(QUERY, GUEST_IP, GATEWAY_IP)
        self.assertEqual(header, UDPHeader(55046, 5353, 65, 0x9E5C))
        self.assertEqual(payload, QUERY_PAYLOAD)
        self.assertEqual(len(payload), 57)
        self.assertEqual(payload[:2], b"\x64\xea")  # DNS id 25834

    def test_parseDHCP(self):
        """
        udhcpc's DISCOVER, from 0.0.0.0:68 to 255.255.255.255:67, verifies
        against the pseudo-header of those addresses.
        """
        header, payload = parseUDP(
            udpDatagram(DHCP_DISCOVER), UNSPECIFIED_IP, LIMITED_BROADCAST_IP
        )
        self.assertEqual(header, UDPHeader(68, 67, 308, 0x4FF1))
        self.assertEqual(len(payload), 300)

    def test_parseReassembled(self):
        """
        The 4000-byte datagram reassembled from its three fragments (and its
        echo) verifies, with 4000 bytes of C{y} as payload.
        """
        header, payload = parseUDP(reassembled(FRAGMENTS), GUEST_IP, GATEWAY_IP)
        self.assertEqual((header.srcPort, header.dstPort), (57550, 7007))
        self.assertEqual(header.length, 4008)
        self.assertEqual(payload, b"y" * 4000)
        header, payload = parseUDP(reassembled(ECHO_FRAGMENTS), GATEWAY_IP, GUEST_IP)
        self.assertEqual((header.srcPort, header.dstPort), (7007, 57550))
        self.assertEqual(payload, b"y" * 4000)

    def test_firstFragmentAlone(self):
        """
        The first fragment alone is truncated: its length field says 4008
        bytes but only 1480 are present.
        """
        with self.assertRaises(TruncatedError):
            parseUDP(ipPayload(FRAGMENTS[0]), GUEST_IP, GATEWAY_IP)

    def test_trailingBytesIgnored(self):
        """
        Bytes beyond the UDP length field are not part of the payload and do
        not enter the checksum.
        """
        header, payload = parseUDP(QUERY + b"\xde\xad\xbe", GUEST_IP, GATEWAY_IP)
        self.assertEqual(header.length, 65)
        self.assertEqual(payload, QUERY_PAYLOAD)

    def test_zeroChecksum(self):
        """
        A checksum field of zero means "not computed" (RFC 768): the
        datagram is accepted unverified, even with a corrupted payload.
        """
        datagram = withUDPChecksum(QUERY, 0)
        corrupted = datagram[:-1] + bytes((datagram[-1] ^ 0xFF,))
        header, payload = parseUDP(corrupted, GUEST_IP, GATEWAY_IP)
        self.assertEqual(header.checksum, 0)
        self.assertEqual(payload, corrupted[8:])


class EmitTests(SynchronousTestCase):
    """
    Emitting UDP datagrams.
    """

    def test_emit(self):
        """
        Ports, payload and addresses emit to exactly dig's query: length
        and checksum are computed as the kernel did.
        """
        self.assertEqual(emitUDP(55046, 5353, QUERY_PAYLOAD, GUEST_IP, GATEWAY_IP), QUERY)

    def test_roundTripCapture(self):
        """
        Every unfragmented UDP datagram of the capture (DHCP both ways, DNS
        both ways) re-emits to the same bytes.
        """
        self.assertEqual(len(UDP_FRAMES), 6)
        self.assertIn(DNS_ANSWER, UDP_FRAMES)
        for frame in UDP_FRAMES:
            src, dst = addresses(frame)
            datagram = udpDatagram(frame)
            header, payload = parseUDP(datagram, src, dst)
            self.assertEqual(
                emitUDP(header.srcPort, header.dstPort, payload, src, dst), datagram
            )

    def test_emitReassembled(self):
        """
        A 4000-byte payload emits to the datagram the guest fragmented.
        """
        self.assertEqual(
            emitUDP(57550, 7007, b"y" * 4000, GUEST_IP, GATEWAY_IP),
            reassembled(FRAGMENTS),
        )

    def test_emitOddLength(self):
        """
        An odd-length payload is checksummed as if zero-padded, and
        verifies.
        """
        emitted = emitUDP(1, 2, b"abc", GUEST_IP, GATEWAY_IP)
        self.assertEqual(emitted[4:6], b"\x00\x0b")
        pseudo = GUEST_IP + GATEWAY_IP + b"\x00\x11\x00\x0b"
        self.assertEqual(referenceSum(pseudo + emitted), 0xFFFF)
        self.assertEqual(parseUDP(emitted, GUEST_IP, GATEWAY_IP)[1], b"abc")

    def test_emitZeroChecksumAsOnes(self):
        """
        A computed checksum of zero is sent as 0xffff (RFC 768), which the
        receiver verifies like any other checksum.
        """
        # Choose a 2-byte payload that makes the ones'-complement sum of
        # pseudo-header and header (checksum zero) come to 0xffff.
        src, dst, sport, dport = GUEST_IP, GATEWAY_IP, 1000, 2000
        pseudo = src + dst + b"\x00\x11\x00\x0a"
        header = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + b"\x00\x0a\x00\x00"
        partial = referenceSum(pseudo + header)
        word = (0xFFFF - partial) % 0xFFFF
        payload = word.to_bytes(2, "big")
        self.assertEqual(referenceSum(pseudo + header + payload), 0xFFFF)
        emitted = emitUDP(sport, dport, payload, src, dst)
        self.assertEqual(emitted[6:8], b"\xff\xff")
        header, parsed = parseUDP(emitted, src, dst)
        self.assertEqual(header.checksum, 0xFFFF)
        self.assertEqual(parsed, payload)

    def test_emitTooLong(self):
        """
        A payload that does not fit the 16-bit length field raises
        L{MalformedError}; the largest that fits is emitted.
        """
        with self.assertRaises(MalformedError):
            emitUDP(1, 2, bytes(0xFFFF - 7), GUEST_IP, GATEWAY_IP)
        emitted = emitUDP(1, 2, bytes(0xFFFF - 8), GUEST_IP, GATEWAY_IP)
        self.assertEqual(emitted[4:6], b"\xff\xff")


class RejectTests(SynchronousTestCase):
    """
    Datagrams that L{parseUDP} refuses.
    """

    def test_truncated(self):
        """
        Every prefix shorter than the UDP length field raises
        L{TruncatedError}: below 8 bytes for lack of a header, above it
        because the length runs past the buffer.
        """
        self.assertEqual(HEADER_LENGTH, 8)
        for n in range(len(QUERY)):
            with self.assertRaises(TruncatedError, msg=n):
                parseUDP(QUERY[:n], GUEST_IP, GATEWAY_IP)
            with self.assertRaises(TruncatedError, msg=n):
                parseUDP(QUERY[:n], GUEST_IP, GATEWAY_IP, verifyChecksum=False)

    def test_lengthBelowHeader(self):
        """
        A length field under 8 raises L{MalformedError}.
        """
        for length in range(8):
            bad = QUERY[:4] + length.to_bytes(2, "big") + QUERY[6:]
            with self.assertRaises(MalformedError, msg=length):
                parseUDP(bad, GUEST_IP, GATEWAY_IP, verifyChecksum=False)

    def test_badChecksum(self):
        """
        Flipping any bit of the ports, checksum or payload raises
        L{ChecksumError}; with C{verifyChecksum=False} the datagram parses.
        """
        for offset in [0, 1, 2, 3, 6, 7] + list(range(8, len(QUERY))):
            for bit in range(8):
                bad = bytearray(QUERY)
                bad[offset] ^= 1 << bit
                with self.assertRaises(ChecksumError, msg=(offset, bit)):
                    parseUDP(bytes(bad), GUEST_IP, GATEWAY_IP)
                header, _ = parseUDP(bytes(bad), GUEST_IP, GATEWAY_IP, verifyChecksum=False)
                self.assertEqual(header.length, 65)

    def test_badLengthBit(self):
        """
        Flipping any bit of the length field is rejected one way or another
        (truncated, malformed or checksum).
        """
        for offset in (4, 5):
            for bit in range(8):
                bad = bytearray(QUERY)
                bad[offset] ^= 1 << bit
                with self.assertRaises(ParseError, msg=(offset, bit)):
                    parseUDP(bytes(bad), GUEST_IP, GATEWAY_IP)

    def test_wrongAddresses(self):
        """
        The pseudo-header is checked: the same datagram between other
        addresses raises L{ChecksumError}.
        """
        with self.assertRaises(ChecksumError):
            parseUDP(QUERY, GATEWAY_IP, GUEST_IP[:3] + b"\x10")
