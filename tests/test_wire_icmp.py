"""
Tests for L{vpnkit.wire.icmp}.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_FRAMES,
    ipPacket,
    ipPayload,
    referenceSum,
)
from vpnkit.wire import ChecksumError, TruncatedError
from vpnkit.wire.icmp import (
    DEST_UNREACHABLE,
    ECHO_REPLY,
    ECHO_REQUEST,
    HEADER_LENGTH,
    ICMPMessage,
    echoID,
    emitICMP,
    parseICMP,
)

REQUEST = ipPayload(ICMP_ECHO_REQUEST)
REPLY = ipPayload(ICMP_ECHO_REPLY)

# ping's 56 data bytes: 8 bytes of timestamp, then zeros.
PING_DATA = bytes.fromhex("9852e27f00000000") + bytes(48)


class ICMPTests(SynchronousTestCase):
    """
    Parsing and emitting ICMP messages.
    """

    def test_parse(self):
        """
        The guest's echo request parses into type 8, code 0, the guest's
        checksum, identifier 4556 and sequence 0, and its 56 data bytes.
        """
        message = parseICMP(REQUEST)
        self.assertEqual(
            message,
            ICMPMessage(
                type=ECHO_REQUEST,
                code=0,
                checksum=0x6B61,
                rest=bytes.fromhex("11cc0000"),
                payload=PING_DATA,
            ),
        )
        self.assertEqual(echoID(message), (4556, 0))

    def test_parseReply(self):
        """
        The gateway's echo reply parses into type 0 with the request's
        identifier, sequence and data.
        """
        message = parseICMP(REPLY)
        self.assertEqual(message.type, ECHO_REPLY)
        self.assertEqual(message.code, 0)
        self.assertEqual(message.checksum, 0x7361)
        self.assertEqual(echoID(message), (4556, 0))
        self.assertEqual(message.payload, PING_DATA)

    def test_secondEcho(self):
        """
        The second request of C{ping -c 2} carries sequence 1.
        """
        sequences = [echoID(parseICMP(ipPayload(f))) for f in ICMP_FRAMES]
        self.assertEqual(sequences, [(4556, 0), (4556, 0), (4556, 1), (4556, 1)])

    def test_emit(self):
        """
        An echo request emits to exactly the captured bytes: the checksum
        is computed, whatever C{checksum} says.
        """
        message = ICMPMessage(ECHO_REQUEST, 0, 0, bytes.fromhex("11cc0000"), PING_DATA)
        self.assertEqual(emitICMP(message), REQUEST)

    def test_emitReply(self):
        """
        Turning the parsed request into a reply (type 0) gives exactly the
        reply slirp4netns sent.
        """
        request = parseICMP(REQUEST)
        reply = ICMPMessage(ECHO_REPLY, 0, 0, request.rest, request.payload)
        self.assertEqual(emitICMP(reply), REPLY)

    def test_roundTripCapture(self):
        """
        Every ICMP message of the capture parses and re-emits to the same
        bytes.
        """
        for frame in ICMP_FRAMES:
            data = ipPayload(frame)
            self.assertEqual(emitICMP(parseICMP(data)), data)

    def test_emitOddLength(self):
        """
        An odd-length message gets a checksum over its zero-padded bytes,
        and verifies.
        """
        emitted = emitICMP(ICMPMessage(ECHO_REQUEST, 0, 0, b"\0\1\0\2", b"abc"))
        self.assertEqual(len(emitted), 11)
        self.assertEqual(referenceSum(emitted), 0xFFFF)
        self.assertEqual(parseICMP(emitted).payload, b"abc")

    def test_destinationUnreachable(self):
        """
        A "fragmentation needed" message (type 3 code 4, next-hop MTU 1452
        in the last two bytes of C{rest}) quoting an IP header round-trips.
        """
        quoted = ipPacket(ICMP_ECHO_REQUEST)[:28]
        message = ICMPMessage(DEST_UNREACHABLE, 4, 0, b"\x00\x00\x05\xac", quoted)
        emitted = emitICMP(message)
        self.assertEqual(emitted[:2], b"\x03\x04")
        self.assertEqual(referenceSum(emitted), 0xFFFF)
        parsed = parseICMP(emitted)
        self.assertEqual(int.from_bytes(parsed.rest[2:], "big"), 1452)
        self.assertEqual(parsed.payload, quoted)

    def test_truncated(self):
        """
        Every prefix shorter than the 8-byte header raises
        L{TruncatedError}, with or without checksum verification.
        """
        self.assertEqual(HEADER_LENGTH, 8)
        for n in range(HEADER_LENGTH):
            with self.assertRaises(TruncatedError, msg=n):
                parseICMP(REQUEST[:n])
            with self.assertRaises(TruncatedError, msg=n):
                parseICMP(REQUEST[:n], verifyChecksum=False)

    def test_badChecksum(self):
        """
        Flipping any single bit of the message raises L{ChecksumError};
        with C{verifyChecksum=False} it parses.
        """
        for offset in range(len(REQUEST)):
            for bit in range(8):
                bad = bytearray(REQUEST)
                bad[offset] ^= 1 << bit
                with self.assertRaises(ChecksumError, msg=(offset, bit)):
                    parseICMP(bytes(bad))
                self.assertEqual(
                    parseICMP(bytes(bad), verifyChecksum=False).type, bad[0]
                )

    def test_checksumCoversPayload(self):
        """
        The checksum covers the data: a message cut inside the timestamp
        fails it.  Cutting only trailing zero bytes cannot be detected by a
        ones'-complement sum, which is why the IP total length decides
        where the message ends.
        """
        with self.assertRaises(ChecksumError):
            parseICMP(REQUEST[:10])
        self.assertEqual(parseICMP(REQUEST[:16]).payload, PING_DATA[:8])
