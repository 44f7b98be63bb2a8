"""
Tests for L{vpnkit.wire.arp}.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.wirefixtures import (
    ARP_REPLY,
    ARP_REQUEST,
    GATEWAY_IP,
    GATEWAY_MAC,
    GUEST_IP,
    GUEST_MAC,
)
from vpnkit.wire import MalformedError, TruncatedError
from vpnkit.wire.arp import ARP_REPLY as OP_REPLY
from vpnkit.wire.arp import ARP_REQUEST as OP_REQUEST
from vpnkit.wire.arp import LENGTH, ARPPacket, emitARP, parseARP

REQUEST = ARP_REQUEST[14:]
REPLY = ARP_REPLY[14:]


class ARPTests(SynchronousTestCase):
    """
    Parsing and emitting Ethernet/IPv4 ARP packets.
    """

    def test_parse(self):
        """
        The guest's "who-has 10.0.2.2 tell 10.0.2.15" parses into a request
        with the guest as sender and a zero target hardware address.
        """
        self.assertEqual(
            parseARP(REQUEST),
            ARPPacket(
                op=OP_REQUEST,
                sha=GUEST_MAC,
                spa=GUEST_IP,
                tha=bytes(6),
                tpa=GATEWAY_IP,
            ),
        )

    def test_parsePaddedReply(self):
        """
        The gateway's reply is 50 bytes (28 of ARP, 22 of Ethernet padding);
        the padding is ignored.
        """
        self.assertEqual(len(REPLY), 50)
        self.assertEqual(
            parseARP(REPLY),
            ARPPacket(
                op=OP_REPLY,
                sha=GATEWAY_MAC,
                spa=GATEWAY_IP,
                tha=GUEST_MAC,
                tpa=GUEST_IP,
            ),
        )

    def test_emit(self):
        """
        An L{ARPPacket} emits to exactly the 28 captured bytes.
        """
        self.assertEqual(
            emitARP(ARPPacket(OP_REQUEST, GUEST_MAC, GUEST_IP, bytes(6), GATEWAY_IP)),
            REQUEST,
        )

    def test_emitUnpadded(self):
        """
        The emitted reply is the captured one without its padding: 28
        bytes, the padding all zeros.
        """
        emitted = emitARP(parseARP(REPLY))
        self.assertEqual(len(emitted), LENGTH)
        self.assertEqual(emitted, REPLY[:28])
        self.assertEqual(REPLY[28:], bytes(22))

    def test_truncated(self):
        """
        Every prefix shorter than 28 bytes raises L{TruncatedError}.
        """
        self.assertEqual(LENGTH, 28)
        for n in range(LENGTH):
            with self.assertRaises(TruncatedError, msg=n):
                parseARP(REQUEST[:n])

    def test_notEthernetIPv4(self):
        """
        A hardware type, protocol type or address length other than
        Ethernet/IPv4 (1, 0x0800, 6, 4) raises L{MalformedError}.
        """
        for offset, value in [
            (0, b"\x00\x06"),  # htype IEEE 802
            (2, b"\x86\xdd"),  # ptype IPv6
            (4, b"\x08"),  # hlen
            (5, b"\x10"),  # plen
        ]:
            bad = REQUEST[:offset] + value + REQUEST[offset + len(value) :]
            with self.assertRaises(MalformedError, msg=offset):
                parseARP(bad)

    def test_otherOpcode(self):
        """
        An opcode other than request or reply (RARP's 3) still parses; the
        caller decides what to do with it.
        """
        bad = REQUEST[:6] + b"\x00\x03" + REQUEST[8:]
        self.assertEqual(parseARP(bad).op, 3)
