"""
Tests for L{vpnkit.wire.vmnet}: the vpnkit handshake, byte for byte as in
the reference (vpnkit C{src/hostnet/vmnet.ml}, protocol version 22).
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import GUEST_MAC
from vpnkit.wire import MalformedError, TruncatedError
from vpnkit.wire.vmnet import (
    COMMAND_LENGTH,
    DEFAULT_COMMIT,
    INIT_LENGTH,
    MAGIC,
    RESPONSE_LENGTH,
    VERSION,
    ZERO_UUID,
    BindIPv4Command,
    Disconnect,
    EthernetCommand,
    Init,
    PreferredIPv4Command,
    UnknownCommand,
    Vif,
    emitCommand,
    emitInit,
    emitResponse,
    parseCommand,
    parseInit,
    parseResponse,
    parseUUID,
)

# The UUID the reference's hostnet tests connect with.
UUID_TEXT = "d1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5"
UUID = UUID_TEXT.encode("ascii")

# 192.168.65.250 as the wire carries it: the u32 LE of its numeric value.
PREFERRED_IP = bytes((192, 168, 65, 250))
PREFERRED_IP_WIRE = bytes.fromhex("fa41a8c0")

# vpnkit's and the Go client's Init.
INIT = b"VMN3T" + b"\x16\x00\x00\x00" + b"0123456789" * 4

# The reference's example response for the first client with defaults.
FIRST_VIF = bytes.fromhex("01dc050e06025000000001") + bytes(247)


class InitTests(SynchronousTestCase):
    """
    The 49-byte Init message.
    """

    def test_parse(self):
        """
        The reference Init parses into magic C{VMN3T}, version 22 and the
        40-byte commit.
        """
        self.assertEqual(parseInit(INIT), Init(b"VMN3T", 22, b"0123456789" * 4))
        self.assertEqual((MAGIC, VERSION, DEFAULT_COMMIT), (b"VMN3T", 22, b"0123456789" * 4))

    def test_emit(self):
        """
        The default Init emits to exactly the 49 reference bytes: magic,
        version as u32 little-endian (16 00 00 00), commit, no padding.
        """
        self.assertEqual(INIT_LENGTH, 49)
        self.assertEqual(emitInit(), INIT)
        self.assertEqual(emitInit(Init()), INIT)

    def test_otherVersion(self):
        """
        The version is parsed, not judged here: a C client's zero commit and
        a legacy version parse with their values, and round-trip.
        """
        data = b"VMN3T" + (21).to_bytes(4, "little") + bytes(40)
        init = parseInit(data)
        self.assertEqual(init, Init(b"VMN3T", 21, bytes(40)))
        self.assertEqual(emitInit(init), data)

    def test_truncated(self):
        """
        Every prefix shorter than 49 bytes raises L{TruncatedError}.
        """
        for n in range(INIT_LENGTH):
            with self.assertRaises(TruncatedError, msg=n):
                parseInit(INIT[:n])


class CommandTests(SynchronousTestCase):
    """
    The 41-byte Command message.
    """

    def test_parseEthernet(self):
        """
        Type 1 carries the 36-byte UUID text, then 4 zero bytes.
        """
        data = b"\x01" + UUID + bytes(4)
        self.assertEqual(parseCommand(data), EthernetCommand(UUID))

    def test_emitEthernet(self):
        """
        An Ethernet command emits to type 1, the UUID and 4 zero bytes.
        """
        emitted = emitCommand(EthernetCommand(UUID))
        self.assertEqual(COMMAND_LENGTH, 41)
        self.assertEqual(emitted, b"\x01" + UUID + b"\x00\x00\x00\x00")

    def test_parsePreferredIPv4(self):
        """
        Type 8 carries the UUID then the address as a u32 LE of its numeric
        value: FA 41 A8 C0 is 192.168.65.250.
        """
        data = b"\x08" + UUID + PREFERRED_IP_WIRE
        self.assertEqual(parseCommand(data), PreferredIPv4Command(UUID, PREFERRED_IP))

    def test_emitPreferredIPv4(self):
        """
        A preferred-address command emits the reversed octets after the
        UUID.
        """
        self.assertEqual(
            emitCommand(PreferredIPv4Command(UUID, PREFERRED_IP)),
            b"\x08" + UUID + b"\xfa\x41\xa8\xc0",
        )

    def test_bindIPv4(self):
        """
        Type 6 (the vmnetd bind request) carries the reversed address, the
        port as u16 LE and 0 for TCP or 1 for UDP, zero padded to 41 bytes.
        """
        tcp = bytes.fromhex("06" "0141a8c0" "5000" "00") + bytes(33)
        udp = bytes.fromhex("06" "0100007f" "3500" "01") + bytes(33)
        self.assertEqual(parseCommand(tcp), BindIPv4Command(b"\xc0\xa8\x41\x01", 80, False))
        self.assertEqual(parseCommand(udp), BindIPv4Command(b"\x7f\x00\x00\x01", 53, True))
        self.assertEqual(emitCommand(BindIPv4Command(b"\xc0\xa8\x41\x01", 80, False)), tcp)
        self.assertEqual(emitCommand(BindIPv4Command(b"\x7f\x00\x00\x01", 53, True)), udp)

    def test_unknown(self):
        """
        Any other type byte parses as L{UnknownCommand} with that type, and
        emits as the bare type zero padded.
        """
        for kind in (0, 2, 7, 9, 255):
            data = bytes((kind,)) + UUID + bytes(4)
            self.assertEqual(parseCommand(data), UnknownCommand(kind))
        self.assertEqual(emitCommand(UnknownCommand(9)), b"\x09" + bytes(40))

    def test_emitUnknownObject(self):
        """
        Emitting something that is not a command raises L{TypeError}.
        """
        self.assertRaises(TypeError, emitCommand, Vif(1500, 1550, GUEST_MAC))

    def test_emitTooLong(self):
        """
        A UUID field longer than 36 bytes would overflow the 41-byte message
        and raises L{MalformedError}.
        """
        with self.assertRaises(MalformedError):
            emitCommand(PreferredIPv4Command(UUID + b"x", PREFERRED_IP))

    def test_truncated(self):
        """
        Every prefix shorter than 41 bytes raises L{TruncatedError}, for
        every command type.
        """
        for data in (
            emitCommand(EthernetCommand(UUID)),
            emitCommand(PreferredIPv4Command(UUID, PREFERRED_IP)),
            emitCommand(BindIPv4Command(PREFERRED_IP, 80, False)),
        ):
            for n in range(COMMAND_LENGTH):
                with self.assertRaises(TruncatedError, msg=(data[0], n)):
                    parseCommand(data[:n])


class ResponseTests(SynchronousTestCase):
    """
    The 258-byte Response message.
    """

    def test_emitVif(self):
        """
        The first client's Vif with the defaults (MTU 1500, maximum packet
        size 1550, MAC 02:50:00:00:00:01) is exactly the reference example:
        01 DC 05 0E 06 02 50 00 00 00 01 and 247 zero bytes.
        """
        self.assertEqual(RESPONSE_LENGTH, 258)
        self.assertEqual(emitResponse(Vif(1500, 1550, GUEST_MAC)), FIRST_VIF)

    def test_parseVif(self):
        """
        The reference example parses into the Vif it describes.
        """
        self.assertEqual(parseResponse(FIRST_VIF), Vif(1500, 1550, GUEST_MAC))

    def test_disconnect(self):
        """
        A Disconnect is type 2, a length byte, the ASCII reason and zero
        padding to 258 bytes; it parses back to the same reason.
        """
        reason = "No IP addresses available."
        emitted = emitResponse(Disconnect(reason))
        self.assertEqual(len(emitted), RESPONSE_LENGTH)
        self.assertEqual(emitted[:2], bytes((2, len(reason))))
        self.assertEqual(emitted[2 : 2 + len(reason)], reason.encode("ascii"))
        self.assertEqual(emitted[2 + len(reason) :], bytes(256 - len(reason)))
        self.assertEqual(parseResponse(emitted), Disconnect(reason))

    def test_disconnectLongReason(self):
        """
        A reason longer than 255 bytes is cut to 255, which still fits.
        """
        emitted = emitResponse(Disconnect("x" * 300))
        self.assertEqual(len(emitted), RESPONSE_LENGTH)
        self.assertEqual(emitted[1], 255)
        self.assertEqual(parseResponse(emitted), Disconnect("x" * 255))

    def test_disconnectNonASCII(self):
        """
        Non-ASCII characters of a reason are sent as C{?}.
        """
        emitted = emitResponse(Disconnect("caf\u00e9"))
        self.assertEqual(emitted[:6], b"\x02\x04caf?")

    def test_anyOtherTypeIsDisconnect(self):
        """
        Any type other than 1 parses as a Disconnect (as the Go client
        treats it), its reason decoded leniently.
        """
        data = b"\x07\x03ab\xff" + bytes(253)
        self.assertEqual(parseResponse(data), Disconnect("ab\ufffd"))

    def test_emitUnknownObject(self):
        """
        Emitting something that is not a response raises L{TypeError}.
        """
        self.assertRaises(TypeError, emitResponse, EthernetCommand(UUID))

    def test_truncated(self):
        """
        Every prefix shorter than 258 bytes raises L{TruncatedError}.
        """
        for data in (FIRST_VIF, emitResponse(Disconnect("no"))):
            for n in range(RESPONSE_LENGTH):
                with self.assertRaises(TruncatedError, msg=n):
                    parseResponse(data[:n])


class UUIDTests(SynchronousTestCase):
    """
    Tests for L{parseUUID}.
    """

    def test_canonical(self):
        """
        Canonical UUID text is accepted, in either case, and returned in
        lower case.
        """
        self.assertEqual(parseUUID(UUID), UUID_TEXT)
        self.assertEqual(parseUUID(UUID.upper()), UUID_TEXT)

    def test_zero(self):
        """
        36 NUL bytes mean "invent one" and give C{None}.
        """
        self.assertEqual(ZERO_UUID, bytes(36))
        self.assertIsNone(parseUUID(ZERO_UUID))

    def test_nilText(self):
        """
        The nil UUID written as text also gives C{None}:
        it names no guest, so it is the all-zero UUID.
        """
        self.assertIsNone(parseUUID(b"00000000-0000-0000-0000-000000000000"))

    def test_garbage(self):
        """
        Anything else of 36 bytes raises L{MalformedError}: text, non-hex
        digits, non-ASCII bytes, NUL-padded short text, and the forms
        Python's C{uuid.UUID} would tolerate but the reference does not
        (hyphens elsewhere, braces, signs, underscores, spaces).
        """
        for raw in (
            b"x" * 36,
            b"g1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5",
            b"\xd1\xd9cd61-d0dc-4715-9bb3-4c11da7ad7a5",
            b"d1d9cd61d0dc47159bb34c11da7ad7a5".ljust(36, b"\0"),
            b"d1d9cd61d0dc47159bb34c11da7ad7a5----",
            b"d1d9cd6-1d0dc-4715-9bb3-4c11da7ad7a5",
            b"{1d9cd61-d0dc-4715-9bb3-4c11da7ad7a}",
            b"+1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5",
            b"d1d9cd6_-d0dc-4715-9bb3-4c11da7ad7a5",
            b" 1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5",
            b"\0" * 35 + b"\x01",
        ):
            with self.assertRaises(MalformedError, msg=raw):
                parseUUID(raw)
