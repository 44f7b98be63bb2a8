"""
Tests for L{vpnkit.wire.dhcpv6}, against ISC dhclient's messages and
dnsmasq's answers (C{tests/ipv6fixtures.py}).
"""

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from tests.ipv6fixtures import (
    ADVERTISE,
    CONFIRM,
    CONFIRM_REPLY,
    DHCP_ADDRESS,
    DHCPV6_FRAMES,
    GATEWAY,
    GUEST_MAC,
    INFORMATION_REPLY,
    INFORMATION_REQUEST,
    RELEASE,
    RELEASE_REPLY,
    REQUEST,
    REQUEST_REPLY,
    ROUTER_MAC,
    SOLICIT,
    udpPayload6,
)
from vpnkit.wire import MalformedError, TruncatedError
from vpnkit.wire.dhcpv6 import (
    ADVERTISE as ADVERTISE_TYPE,
    CONFIRM as CONFIRM_TYPE,
    INFORMATION_REQUEST as INFORMATION_REQUEST_TYPE,
    RELEASE as RELEASE_TYPE,
    REPLY as REPLY_TYPE,
    REQUEST as REQUEST_TYPE,
    SOLICIT as SOLICIT_TYPE,
    STATUS_NO_ADDRS_AVAIL,
    STATUS_SUCCESS,
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
    duidLinkLayerAddress,
    duidLL,
    emitDHCPv6,
    parseDHCPv6,
)

# dhclient's DUID-LLT (hardware type 1, a time, the guest's MAC) and
# dnsmasq's DUID-LL of the server MAC: what vpnkit's server ID will be.
CLIENT = ClientID(bytes.fromhex("0001000132a5a2a7") + GUEST_MAC)
SERVER = ServerID(bytes.fromhex("00030001") + ROUTER_MAC)
# DNS servers, domain search list, client FQDN, DNSSL... as dhclient asks.
ORO = OptionRequest((23, 24, 39, 31))
DNS = DNSServers((GATEWAY,))
SEARCH = DomainList(("localdomain",))


def message(frame):
    return parseDHCPv6(udpPayload6(frame))


def topLevelBoundaries(data):
    """
    Where the top-level options of a message start and end, read from
    their length fields.
    """
    offsets = [4]
    while offsets[-1] < len(data):
        offsets.append(
            offsets[-1] + 4 + int.from_bytes(data[offsets[-1] + 2 : offsets[-1] + 4], "big")
        )
    return offsets


class CapturedMessageTests(SynchronousTestCase):
    """
    Each captured message parses into its options in wire order, field by
    field, and emits back to its bytes.
    """

    def assertMessage(self, frame, expected):
        self.assertEqual(message(frame), expected)
        self.assertEqual(emitDHCPv6(expected), udpPayload6(frame))

    def test_solicit(self):
        """
        dhclient solicits with its DUID, its option request, elapsed time 0
        and an empty IA_NA (IAID 1, T1 3600, T2 5400).
        """
        solicit = message(SOLICIT)
        self.assertEqual(solicit.msgType, SOLICIT_TYPE)
        self.assertEqual(solicit.name, "SOLICIT")
        self.assertMessage(
            SOLICIT,
            DHCPv6Message(
                SOLICIT_TYPE,
                solicit.transactionID,
                (CLIENT, ORO, ElapsedTime(0), IANA(1, 3600, 5400)),
            ),
        )

    def test_advertise(self):
        """
        dnsmasq advertises fd00:65::60 for 43200 s, a success status,
        preference 0, the search list and DNS server.
        """
        xid = message(SOLICIT).transactionID
        self.assertMessage(
            ADVERTISE,
            DHCPv6Message(
                ADVERTISE_TYPE,
                xid,
                (
                    CLIENT,
                    SERVER,
                    IANA(1, 21600, 37800, (IAAddress(DHCP_ADDRESS, 43200, 43200),)),
                    StatusCode(STATUS_SUCCESS, "success"),
                    Preference(0),
                    SEARCH,
                    DNS,
                ),
            ),
        )

    def test_requestAndReply(self):
        """
        The Request names the server and the advertised address (with
        dhclient's own lifetimes); the Reply binds it.
        """
        request = message(REQUEST)
        self.assertMessage(
            REQUEST,
            DHCPv6Message(
                REQUEST_TYPE,
                request.transactionID,
                (
                    CLIENT,
                    SERVER,
                    ORO,
                    ElapsedTime(0),
                    IANA(1, 3600, 5400, (IAAddress(DHCP_ADDRESS, 7200, 7500),)),
                ),
            ),
        )
        self.assertMessage(
            REQUEST_REPLY,
            DHCPv6Message(
                REPLY_TYPE,
                request.transactionID,
                (
                    CLIENT,
                    SERVER,
                    IANA(1, 3600, 6300, (IAAddress(DHCP_ADDRESS, 7200, 7500),)),
                    StatusCode(STATUS_SUCCESS, "success"),
                    SEARCH,
                    DNS,
                ),
            ),
        )

    def test_confirm(self):
        """
        Restarted with its lease, dhclient confirms the address with zero
        times; dnsmasq says it is still on link.
        """
        confirm = message(CONFIRM)
        self.assertMessage(
            CONFIRM,
            DHCPv6Message(
                CONFIRM_TYPE,
                confirm.transactionID,
                (CLIENT, ORO, ElapsedTime(0), IANA(1, 0, 0, (IAAddress(DHCP_ADDRESS, 0, 0),))),
            ),
        )
        self.assertMessage(
            CONFIRM_REPLY,
            DHCPv6Message(
                REPLY_TYPE,
                confirm.transactionID,
                (CLIENT, SERVER, StatusCode(STATUS_SUCCESS, "all addresses still on link")),
            ),
        )

    def test_release(self):
        """
        The Release names the server and the address; the Reply is a
        status.
        """
        release = message(RELEASE)
        self.assertMessage(
            RELEASE,
            DHCPv6Message(
                RELEASE_TYPE,
                release.transactionID,
                (
                    CLIENT,
                    SERVER,
                    ORO,
                    ElapsedTime(0),
                    IANA(1, 0, 0, (IAAddress(DHCP_ADDRESS, 0, 0),)),
                ),
            ),
        )
        self.assertEqual(
            message(RELEASE_REPLY).options,
            (CLIENT, SERVER, StatusCode(STATUS_SUCCESS, "release received")),
        )

    def test_informationRequest(self):
        """
        The stateless exchange: no IA; the Reply carries the search list,
        the DNS server and an information refresh time (option 32, 43200
        s), kept as bytes.
        """
        request = message(INFORMATION_REQUEST)
        self.assertMessage(
            INFORMATION_REQUEST,
            DHCPv6Message(
                INFORMATION_REQUEST_TYPE, request.transactionID, (CLIENT, ORO, ElapsedTime(0))
            ),
        )
        self.assertEqual(
            message(INFORMATION_REPLY).options,
            (CLIENT, SERVER, SEARCH, DNS, DHCPv6Option(32, (43200).to_bytes(4, "big"))),
        )

    def test_emitAll(self):
        """
        Every captured DHCPv6 message emits back to its bytes.
        """
        self.assertEqual(len(DHCPV6_FRAMES), 10)
        for frame in DHCPV6_FRAMES:
            self.assertEqual(emitDHCPv6(message(frame)), udpPayload6(frame))


class MalformedTests(SynchronousTestCase):
    """
    Cut or ill-formed messages raise L{ParseError}s.
    """

    def test_truncated(self):
        """
        Every prefix of every captured message under 4 bytes, or that cuts
        an option, raises L{TruncatedError}; cut between two options it is
        a message with fewer options.
        """
        for frame in DHCPV6_FRAMES:
            data = udpPayload6(frame)
            boundaries = topLevelBoundaries(data)
            for n in range(len(data)):
                if n in boundaries:
                    self.assertEqual(len(parseDHCPv6(data[:n]).options), boundaries.index(n))
                    continue
                with self.assertRaises(TruncatedError, msg=(data[0], n)):
                    parseDHCPv6(data[:n])

    def test_subOptionOverrun(self):
        """
        An IA Address running past its IA_NA is truncated, though the
        message is long enough.
        """
        iana = bytes.fromhex("0003001c") + bytes(12) + bytes.fromhex("00050018") + bytes(12)
        with self.assertRaises(TruncatedError):
            parseDHCPv6(b"\x01\x00\x00\x01" + iana + bytes(40))

    def test_relay(self):
        """
        Relay messages are not supported.
        """
        for kind in (12, 13):
            with self.assertRaises(MalformedError):
                parseDHCPv6(bytes((kind,)) + bytes(33))

    def test_badLengths(self):
        """
        Options whose length their format does not allow are malformed.
        """
        for code, length in (
            (1, 1),
            (2, 0),
            (3, 11),
            (6, 3),
            (7, 2),
            (8, 1),
            (13, 1),
            (14, 1),
            (23, 0),
            (23, 15),
        ):
            data = b"\x01\x00\x00\x01" + code.to_bytes(2, "big") + length.to_bytes(2, "big")
            with self.assertRaises(MalformedError, msg=(code, length)):
                parseDHCPv6(data + bytes(length))
        shortAddress = bytes.fromhex("00050017") + bytes(23)
        iana = bytes.fromhex("0003") + (12 + len(shortAddress)).to_bytes(2, "big") + bytes(12)
        with self.assertRaises(MalformedError):
            parseDHCPv6(b"\x01\x00\x00\x01" + iana + shortAddress)

    def test_badDomainList(self):
        """
        A compressed domain list is malformed (RFC 8415 10).
        """
        with self.assertRaises(MalformedError):
            parseDHCPv6(b"\x01\x00\x00\x01\x00\x18\x00\x04\x01a\xc0\x00")


class RoundTripTests(SynchronousTestCase):
    """
    Every option vpnkit will send survives emit then parse.
    """

    def test_everyOption(self):
        """
        A Reply with every modelled option, sub-options and a status with a
        UTF-8 message parses back to the same value.
        """
        reply = DHCPv6Message(
            REPLY_TYPE,
            0xABCDEF,
            (
                CLIENT,
                SERVER,
                IANA(
                    7,
                    0xFFFFFFFF,
                    0xFFFFFFFF,
                    (
                        IAAddress(DHCP_ADDRESS, 0xFFFFFFFF, 0xFFFFFFFF),
                        IAAddress(GATEWAY, 0, 0, (StatusCode(STATUS_SUCCESS),)),
                        StatusCode(STATUS_SUCCESS, "caf\u00e9"),
                    ),
                ),
                IANA(8, 0, 0, (StatusCode(STATUS_NO_ADDRS_AVAIL, "one per guest"),)),
                ORO,
                Preference(255),
                ElapsedTime(0xFFFF),
                RapidCommit(),
                DNSServers((GATEWAY, DHCP_ADDRESS)),
                DomainList(("localdomain", "a.example.com")),
                DHCPv6Option(25, bytes(12)),
            ),
        )
        self.assertEqual(parseDHCPv6(emitDHCPv6(reply)), reply)

    def test_nestingOnlyWhereItBelongs(self):
        """
        An IA_NA inside an IA_NA, or an IA Address outside one, stays
        bytes: sub-options are only parsed where RFC 8415 puts them.
        """
        inner = emitDHCPv6(DHCPv6Message(1, 0, (IANA(2, 0, 0),)))[4:]
        address = emitDHCPv6(DHCPv6Message(1, 0, (IAAddress(GATEWAY, 1, 2),)))[4:]
        parsed = parseDHCPv6(
            emitDHCPv6(DHCPv6Message(1, 0, (IANA(1, 0, 0, (DHCPv6Option(3, inner[4:]),)),)))
        )
        self.assertEqual(parsed.option(IANA).options, (DHCPv6Option(3, inner[4:]),))
        parsed = parseDHCPv6(b"\x01\x00\x00\x00" + address)
        self.assertEqual(parsed.options, (DHCPv6Option(5, address[4:]),))

    def test_invalidUTF8(self):
        """
        A status message that is not UTF-8 is decoded with replacement
        characters.
        """
        parsed = parseDHCPv6(b"\x07\x00\x00\x01\x00\x0d\x00\x03\x00\x00\xff")
        self.assertEqual(parsed.options, (StatusCode(0, "\ufffd"),))

    def test_lookup(self):
        """
        C{option} finds the first option of a class, C{optionsOf} all.
        """
        reply = message(ADVERTISE)
        self.assertEqual(reply.option(ServerID), SERVER)
        self.assertIsNone(reply.option(RapidCommit))
        self.assertEqual(reply.optionsOf(IANA)[0].optionsOf(IAAddress)[0].address, DHCP_ADDRESS)
        self.assertEqual(reply.optionsOf(ElapsedTime), [])

    def test_oversizedOption(self):
        """
        An option over 65,535 bytes cannot be emitted.
        """
        with self.assertRaises(MalformedError):
            emitDHCPv6(DHCPv6Message(1, 0, (DHCPv6Option(99, bytes(0x10000)),)))


class DUIDTests(SynchronousTestCase):
    """
    DUID helpers.
    """

    def test_duidLL(self):
        """
        The DUID-LL of the server MAC is what dnsmasq, on that MAC, sent as
        its server identifier.
        """
        self.assertEqual(duidLL(ROUTER_MAC), SERVER.duid)

    def test_linkLayerAddress(self):
        """
        The MAC is read out of DUID-LLT and DUID-LL of Ethernet hardware,
        and of nothing else.
        """
        self.assertEqual(duidLinkLayerAddress(CLIENT.duid), GUEST_MAC)
        self.assertEqual(duidLinkLayerAddress(duidLL(ROUTER_MAC)), ROUTER_MAC)
        for duid in (
            b"\x00\x02\x00\x00\x00\x09abcdef",
            b"\x00\x04" + IPv6Address("::1").packed,
            b"\x00\x03\x00\x06" + GUEST_MAC,
            b"\x00\x03\x00\x01" + GUEST_MAC[:5],
            b"\x00\x03",
        ):
            self.assertIsNone(duidLinkLayerAddress(duid), duid)
