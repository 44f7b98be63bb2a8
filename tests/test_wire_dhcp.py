"""
Tests for L{vpnkit.wire.dhcp}.
"""

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    DHCP_ACK,
    DHCP_DISCOVER,
    DHCP_OFFER,
    DHCP_REQUEST,
    DNS_IP,
    GATEWAY_IP,
    GUEST_IP,
    GUEST_MAC,
    udpPayload,
)
from vpnkit.wire import MalformedError, TruncatedError
from vpnkit.wire.dhcp import (
    BOOTREPLY,
    BOOTREQUEST,
    DHCPACK,
    DHCPDISCOVER,
    DHCPOFFER,
    DHCPREQUEST,
    FIXED_LENGTH,
    MESSAGE_TYPE_NAMES,
    OPT_DOMAIN_SEARCH,
    OPT_END,
    OPT_HOSTNAME,
    OPT_MESSAGE_TYPE,
    OPT_PAD,
    OPT_PARAMETER_LIST,
    OPT_REQUESTED_IP,
    DHCPMessage,
    decodeDomainSearch,
    emitDHCP,
    encodeDomainSearch,
    encodeOptions,
    parseDHCP,
)

DISCOVER = udpPayload(DHCP_DISCOVER)
OFFER = udpPayload(DHCP_OFFER)
REQUEST = udpPayload(DHCP_REQUEST)
ACK = udpPayload(DHCP_ACK)

XID = 0xCAB36F6B
CHADDR = GUEST_MAC + bytes(10)

# What udhcpc asks for: subnet, router, DNS, hostname, domain, MTU,
# broadcast, NTP and (119) the domain search list.
PARAMETERS = bytes((1, 3, 6, 12, 15, 26, 28, 42, 119))

# udhcpc's options after the message type (and, in a REQUEST, the
# requested address and server identifier).
CLIENT_OPTIONS = (
    (57, b"\x02\x40"),  # maximum message size 576
    (OPT_PARAMETER_LIST, PARAMETERS),
    (OPT_HOSTNAME, b"guest"),
    (60, b"udhcp 1.35.0"),  # vendor class
    (61, b"\x01" + GUEST_MAC),  # client identifier: htype 1 + MAC
)


def serverOptions(messageType):
    """
    slirp4netns's OFFER/ACK options.
    """
    return (
        (OPT_MESSAGE_TYPE, bytes((messageType,))),
        (54, GATEWAY_IP),  # server identifier
        (1, b"\xff\xff\xff\x00"),  # subnet mask
        (3, GATEWAY_IP),  # router
        (6, DNS_IP),  # DNS server
        (51, (86400).to_bytes(4, "big")),  # lease time
    )


DISCOVER_MESSAGE = DHCPMessage(
    op=BOOTREQUEST,
    xid=XID,
    chaddr=CHADDR,
    options=((OPT_MESSAGE_TYPE, b"\x01"),) + CLIENT_OPTIONS,
    padding=bytes(11),
)


class ParseTests(SynchronousTestCase):
    """
    Parsing the captured udhcpc / slirp4netns exchange.
    """

    def test_parse(self):
        """
        udhcpc's DISCOVER parses into its fixed fields, its options in wire
        order and the 11 zero bytes after END.
        """
        message = parseDHCP(DISCOVER)
        self.assertEqual(message, DISCOVER_MESSAGE)
        self.assertEqual(message.htype, 1)
        self.assertEqual(message.hlen, 6)
        self.assertEqual(message.ciaddr, bytes(4))
        self.assertEqual(message.sname, bytes(64))
        self.assertEqual(message.messageType, DHCPDISCOVER)
        self.assertEqual(message.clientMAC, GUEST_MAC)
        self.assertFalse(message.broadcastFlag)

    def test_parseRequest(self):
        """
        udhcpc's REQUEST carries the requested address and server identifier
        and ends exactly at END, with no padding.
        """
        message = parseDHCP(REQUEST)
        self.assertEqual(message.op, BOOTREQUEST)
        self.assertEqual(message.xid, XID)
        self.assertEqual(message.messageType, DHCPREQUEST)
        self.assertEqual(message.clientMAC, GUEST_MAC)
        self.assertEqual(
            message.options,
            (
                (OPT_MESSAGE_TYPE, b"\x03"),
                (OPT_REQUESTED_IP, GUEST_IP),
                (54, GATEWAY_IP),
            )
            + CLIENT_OPTIONS,
        )
        self.assertEqual(message.padding, b"")

    def test_parseOffer(self):
        """
        slirp4netns's OFFER is a BOOTREPLY offering 10.0.2.15, with 274 zero
        bytes after END.
        """
        message = parseDHCP(OFFER)
        self.assertEqual(message.op, BOOTREPLY)
        self.assertEqual(message.xid, XID)
        self.assertEqual(message.yiaddr, GUEST_IP)
        self.assertEqual(message.siaddr, GATEWAY_IP)
        self.assertEqual(message.giaddr, bytes(4))
        self.assertEqual(message.clientMAC, GUEST_MAC)
        self.assertEqual(message.messageType, DHCPOFFER)
        self.assertEqual(message.options, serverOptions(DHCPOFFER))
        self.assertEqual(message.padding, bytes(274))

    def test_parseAck(self):
        """
        The ACK is the OFFER with message type 5.
        """
        message = parseDHCP(ACK)
        self.assertEqual(message.messageType, DHCPACK)
        self.assertEqual(message.options, serverOptions(DHCPACK))
        self.assertEqual(message, replace(parseDHCP(OFFER), options=message.options))

    def test_optionLookup(self):
        """
        C{option(code)} gives the value of a present option and C{None} for
        an absent one.
        """
        request = parseDHCP(REQUEST)
        self.assertEqual(request.option(OPT_HOSTNAME), b"guest")
        self.assertEqual(request.option(OPT_REQUESTED_IP), GUEST_IP)
        self.assertEqual(request.option(OPT_PARAMETER_LIST), PARAMETERS)
        self.assertIsNone(request.option(OPT_DOMAIN_SEARCH))
        self.assertIsNone(parseDHCP(DISCOVER).option(OPT_REQUESTED_IP))
        self.assertEqual(parseDHCP(OFFER).option(51), b"\x00\x01\x51\x80")

    def test_optionConcatenation(self):
        """
        Repeated instances of an option are concatenated in order (RFC
        3396), even with other options between them.
        """
        message = replace(
            DISCOVER_MESSAGE,
            options=(
                (OPT_DOMAIN_SEARCH, b"\x01a"),
                (OPT_HOSTNAME, b"x"),
                (OPT_DOMAIN_SEARCH, b"\x00"),
            ),
        )
        parsed = parseDHCP(emitDHCP(message))
        self.assertEqual(parsed.option(OPT_DOMAIN_SEARCH), b"\x01a\x00")
        self.assertEqual(parsed.option(OPT_HOSTNAME), b"x")

    def test_messageTypeAbsentOrOdd(self):
        """
        C{messageType} is C{None} for plain BOOTP (no option 53) and for a
        message type option of the wrong length.
        """
        self.assertIsNone(replace(DISCOVER_MESSAGE, options=()).messageType)
        odd = replace(DISCOVER_MESSAGE, options=((OPT_MESSAGE_TYPE, b"\x01\x01"),))
        self.assertIsNone(odd.messageType)

    def test_messageTypeNames(self):
        """
        The four message types of the capture have RFC names.
        """
        names = [
            MESSAGE_TYPE_NAMES[parseDHCP(m).messageType]
            for m in (DISCOVER, OFFER, REQUEST, ACK)
        ]
        self.assertEqual(names, ["DISCOVER", "OFFER", "REQUEST", "ACK"])

    def test_clientMACCutToHlen(self):
        """
        C{clientMAC} is C{chaddr} cut to C{hlen}, and never longer than the
        16-byte field.
        """
        self.assertEqual(replace(DISCOVER_MESSAGE, hlen=4).clientMAC, GUEST_MAC[:4])
        self.assertEqual(replace(DISCOVER_MESSAGE, hlen=200).clientMAC, CHADDR)

    def test_broadcastFlag(self):
        """
        The top bit of C{flags} is the broadcast flag.
        """
        self.assertTrue(replace(DISCOVER_MESSAGE, flags=0x8000).broadcastFlag)
        self.assertFalse(replace(DISCOVER_MESSAGE, flags=0x7FFF).broadcastFlag)

    def test_pad(self):
        """
        PAD options between options are kept as C{(0, b"")} and re-emitted.
        """
        data = DISCOVER[:243] + b"\x00\x00" + DISCOVER[243:]
        message = parseDHCP(data)
        self.assertEqual(message.options[:3], ((53, b"\x01"), (OPT_PAD, b""), (OPT_PAD, b"")))
        self.assertEqual(message.messageType, DHCPDISCOVER)
        self.assertEqual(emitDHCP(message), data)

    def test_emptyOption(self):
        """
        A zero-length option parses to an empty value and re-emits.
        """
        data = REQUEST[:-1] + b"\x50\x00\xff"  # rapid commit (80), length 0
        message = parseDHCP(data)
        self.assertEqual(message.options[-1], (80, b""))
        self.assertEqual(message.option(80), b"")
        self.assertEqual(emitDHCP(message), data)


class EmitTests(SynchronousTestCase):
    """
    Emitting DHCP messages.
    """

    def test_emit(self):
        """
        The DISCOVER dataclass emits to exactly the bytes udhcpc sent,
        padding included.
        """
        self.assertEqual(emitDHCP(DISCOVER_MESSAGE), DISCOVER)

    def test_roundTripCapture(self):
        """
        All four messages of the exchange parse and re-emit to the same
        bytes: option order and the padding after END are preserved.
        """
        for data in (DISCOVER, OFFER, REQUEST, ACK):
            self.assertEqual(emitDHCP(parseDHCP(data)), data)

    def test_noEnd(self):
        """
        A message without END (the REQUEST cut before its final byte) parses
        with C{padding=None} and re-emits without END.
        """
        data = REQUEST[:-1]
        message = parseDHCP(data)
        self.assertIsNone(message.padding)
        self.assertEqual(message.options, parseDHCP(REQUEST).options)
        self.assertEqual(emitDHCP(message), data)

    def test_noOptions(self):
        """
        A bare 240-byte fixed part (BOOTP with a cookie and nothing else)
        parses with no options and no END.
        """
        message = parseDHCP(DISCOVER[:FIXED_LENGTH])
        self.assertEqual(message.options, ())
        self.assertIsNone(message.padding)
        self.assertIsNone(message.messageType)
        self.assertEqual(emitDHCP(message), DISCOVER[:FIXED_LENGTH])

    def test_encodeOptions(self):
        """
        Options encode as code, length, value; PAD as a single zero byte.
        """
        self.assertEqual(
            encodeOptions([(53, b"\x02"), (OPT_PAD, b""), (12, b"vm"), (80, b"")]),
            b"\x35\x01\x02\x00\x0c\x02vm\x50\x00",
        )

    def test_encodeLongOption(self):
        """
        A value longer than 255 bytes is split into consecutive instances
        (RFC 3396), which C{option()} joins again.
        """
        value = bytes(range(256)) + b"tail"
        encoded = encodeOptions([(OPT_DOMAIN_SEARCH, value)])
        self.assertEqual(encoded[:2], b"\x77\xff")
        self.assertEqual(encoded[257:259], b"\x77\x05")
        self.assertEqual(len(encoded), 2 + 255 + 2 + 5)
        message = replace(DISCOVER_MESSAGE, options=((OPT_DOMAIN_SEARCH, value),))
        message = parseDHCP(emitDHCP(message))
        self.assertEqual(len(message.options), 2)
        self.assertEqual(message.option(OPT_DOMAIN_SEARCH), value)

    def test_encodeBadCode(self):
        """
        END (255) and codes outside a byte cannot be encoded as options.
        """
        for code in (OPT_END, 256, -1):
            with self.assertRaises(MalformedError, msg=code):
                encodeOptions([(code, b"x")])


class RejectTests(SynchronousTestCase):
    """
    Messages that L{parseDHCP} refuses.
    """

    def test_truncated(self):
        """
        Every prefix shorter than the 240-byte fixed part (magic cookie
        included) raises L{TruncatedError}.
        """
        self.assertEqual(FIXED_LENGTH, 240)
        for n in range(FIXED_LENGTH):
            with self.assertRaises(TruncatedError, msg=n):
                parseDHCP(DISCOVER[:n])

    def test_truncatedOption(self):
        """
        A prefix that cuts an option after its code or inside its value
        raises L{TruncatedError}; one that cuts between options parses.
        """
        # Offsets of option starts in the DISCOVER: 53@240, 57@243, 55@247,
        # 12@258, 60@265, 61@279, END@288.
        boundaries = {240, 243, 247, 258, 265, 279, 288}
        for n in range(FIXED_LENGTH, 288):
            if n in boundaries:
                self.assertIsNone(parseDHCP(DISCOVER[:n]).padding, n)
            else:
                with self.assertRaises(TruncatedError, msg=n):
                    parseDHCP(DISCOVER[:n])

    def test_badCookie(self):
        """
        A message without the DHCP magic cookie raises L{MalformedError}.
        """
        bad = DISCOVER[:236] + b"\x63\x82\x53\x64" + DISCOVER[240:]
        with self.assertRaises(MalformedError):
            parseDHCP(bad)


class DomainSearchTests(SynchronousTestCase):
    """
    The RFC 3397 domain search option (names in RFC 1035 wire form with
    compression pointers relative to the option data).
    """

    def test_encodeCompressed(self):
        """
        A later name sharing a suffix with an earlier one ends with a
        pointer to it: C{b.example.com} is C{01 'b'} then a pointer to
        offset 2, and C{example.com} is that pointer alone.
        """
        encoded = encodeDomainSearch(["a.example.com", "b.example.com", "example.com"])
        self.assertEqual(
            encoded,
            b"\x01a\x07example\x03com\x00" + b"\x01b\xc0\x02" + b"\xc0\x02",
        )

    def test_rfc3397Example(self):
        """
        The example of RFC 3397 section 2 ("eng.apple.com",
        "marketing.apple.com") encodes to its listed bytes.
        """
        self.assertEqual(
            encodeDomainSearch(["eng.apple.com.", "marketing.apple.com."]),
            b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04",
        )

    def test_encodeSingle(self):
        """
        One name encodes as length-prefixed labels and a zero; surrounding
        dots are ignored.
        """
        self.assertEqual(encodeDomainSearch(["localdomain"]), b"\x0blocaldomain\x00")
        self.assertEqual(encodeDomainSearch([".local."]), b"\x05local\x00")
        self.assertEqual(encodeDomainSearch([]), b"")

    def test_encodeCaseInsensitiveSuffix(self):
        """
        Suffixes are matched without regard to case; the first spelling is
        kept.
        """
        self.assertEqual(
            encodeDomainSearch(["A.Example.COM", "b.example.com"]),
            b"\x01A\x07Example\x03COM\x00\x01b\xc0\x02",
        )

    def test_decode(self):
        """
        Decoding follows pointers and gives back the names.
        """
        self.assertEqual(
            decodeDomainSearch(b"\x01a\x07example\x03com\x00\x01b\xc0\x02\xc0\x02"),
            ["a.example.com", "b.example.com", "example.com"],
        )
        self.assertEqual(decodeDomainSearch(b""), [])

    def test_roundTrip(self):
        """
        Encoding then decoding a list gives the same names back, and the
        compressed form is shorter than the uncompressed one.
        """
        domains = [
            "a.example.com",
            "b.example.com",
            "example.com",
            "docker.internal",
            "c.b.example.com",
            "com",
        ]
        encoded = encodeDomainSearch(domains)
        self.assertEqual(decodeDomainSearch(encoded), domains)
        uncompressed = sum(len(d) + 2 for d in domains)
        self.assertLess(len(encoded), uncompressed)

    def test_badLabels(self):
        """
        Empty names, empty labels, labels over 63 bytes and non-ASCII names
        raise L{MalformedError}.
        """
        for domains in (
            [""],
            ["."],
            ["a..example.com"],
            ["example.com", "x" * 64 + ".com"],
            ["caf\u00e9.example"],
        ):
            with self.assertRaises(MalformedError, msg=domains):
                encodeDomainSearch(domains)
        self.assertEqual(len(encodeDomainSearch(["x" * 63])), 65)

    def test_decodeMalformed(self):
        """
        A pointer loop, a pointer past the end, a truncated pointer or
        label, a missing terminator and the reserved 0x40/0x80 label types
        raise L{MalformedError}.
        """
        for data in (
            b"\xc0\x00",  # points at itself
            b"\x01a\xc0\x04\xc0\x02",  # two pointers chasing each other
            b"\x01a\xc0\x09",  # past the end
            b"\x01a\xc0",  # pointer cut in half
            b"\x05ab",  # label runs past the end
            b"\x01a",  # no terminating zero
            b"\x41a\x00",  # 0x40 label type
            b"\x81a\x00",  # 0x80 label type
        ):
            with self.assertRaises(MalformedError, msg=data):
                decodeDomainSearch(data)
