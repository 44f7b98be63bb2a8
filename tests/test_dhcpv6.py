"""
Tests for L{vpnkit.protocols.dhcpv6}: the pure L{answer} policy, driven by
the messages ISC dhclient sent (C{tests/ipv6fixtures.py}) the way
C{tests/test_dhcp.py} drives the IPv4 one.

The captured messages were sent to a dnsmasq on the server MAC, so the
server identifier they carry is vpnkit's (the DUID-LL of that MAC).
"""

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from tests.ipv6fixtures import (
    CONFIRM,
    DHCP_ADDRESS,
    GATEWAY,
    GUEST_MAC,
    INFORMATION_REQUEST,
    RELEASE,
    REQUEST,
    SOLICIT,
    udpPayload6,
)
from vpnkit.config import StackConfig
from vpnkit.ipv6config import IPv6Config
from vpnkit.leases import AddressPool
from vpnkit.protocols.dhcpv6 import Unanswered, answer, renewalTimes
from vpnkit.wire import dhcpv6 as wire
from vpnkit.wire.dhcpv6 import (
    INFINITY,
    ClientID,
    DHCPv6Message,
    DHCPv6Option,
    DNSServers,
    DomainList,
    IAAddress,
    IANA,
    Preference,
    RapidCommit,
    ServerID,
    StatusCode,
    duidLL,
    emitDHCPv6,
    parseDHCPv6,
)

CONFIG = IPv6Config()
LEASE = IPv6Address("fd00:65::3").packed
CLIENT = ClientID(bytes.fromhex("0001000132a5a2a7") + GUEST_MAC)
SERVER = ServerID(duidLL(CONFIG.serverMAC))
OTHER_SERVER = ServerID(duidLL(bytes.fromhex("020000000099")))
DNS = DNSServers((GATEWAY,))
BOUND = IANA(1, INFINITY, INFINITY, (IAAddress(LEASE, INFINITY, INFINITY),))


def captured(frame, **changes):
    """
    The DHCPv6 message in C{frame}, with C{changes} made.
    """
    return replace(parseDHCPv6(udpPayload6(frame)), **changes)


def withoutOption(message, kind):
    return replace(message, options=tuple(o for o in message.options if type(o) is not kind))


def withOptions(message, *options):
    return replace(message, options=message.options + options)


class AnswerTests(SynchronousTestCase):
    """
    The pure L{answer} policy: what to reply to each client message.
    """

    def answer(self, request, leaseAddress=LEASE, config=CONFIG, searchDomains=()):
        return answer(request, leaseAddress, config, searchDomains)

    def test_solicit(self):
        """
        dhclient's Solicit gets an Advertise of the guest's address for
        ever, preference 255 (request at once), and the gateway as DNS
        server, in the Solicit's transaction.
        """
        solicit = captured(SOLICIT)
        self.assertEqual(
            self.answer(solicit),
            DHCPv6Message(
                wire.ADVERTISE,
                solicit.transactionID,
                (CLIENT, SERVER, BOUND, Preference(255), DNS),
            ),
        )

    def test_searchDomains(self):
        """
        A search list adds the domain list option.
        """
        reply = self.answer(captured(SOLICIT), searchDomains=("localdomain", "example.com"))
        self.assertEqual(reply.options[-1], DomainList(("localdomain", "example.com")))

    def test_rapidCommit(self):
        """
        A Solicit with Rapid Commit gets the Reply at once, saying so;
        without rapid commit configured, an Advertise.
        """
        solicit = withOptions(captured(SOLICIT), RapidCommit())
        self.assertEqual(
            self.answer(solicit),
            DHCPv6Message(
                wire.REPLY, solicit.transactionID, (CLIENT, SERVER, BOUND, RapidCommit(), DNS)
            ),
        )
        reply = self.answer(solicit, config=IPv6Config(rapidCommit=False))
        self.assertEqual(reply.msgType, wire.ADVERTISE)

    def test_request(self):
        """
        dhclient's Request (naming vpnkit's server identifier, hinting at
        dnsmasq's address) gets a Reply binding the guest's address; the
        hint is ignored.
        """
        request = captured(REQUEST)
        self.assertEqual(request.option(ServerID), SERVER)
        self.assertEqual(
            self.answer(request),
            DHCPv6Message(wire.REPLY, request.transactionID, (CLIENT, SERVER, BOUND, DNS)),
        )

    def test_renewRebind(self):
        """
        Renew and Rebind get the guest's address again, and any other
        address the client holds at lifetimes 0.
        """
        revoked = IANA(
            1,
            INFINITY,
            INFINITY,
            (IAAddress(LEASE, INFINITY, INFINITY), IAAddress(DHCP_ADDRESS, 0, 0)),
        )
        renew = captured(REQUEST, msgType=wire.RENEW)
        self.assertEqual(self.answer(renew).options, (CLIENT, SERVER, revoked, DNS))
        rebind = withoutOption(captured(REQUEST, msgType=wire.REBIND), ServerID)
        self.assertEqual(self.answer(rebind).options, (CLIENT, SERVER, revoked, DNS))
        current = captured(REQUEST, msgType=wire.RENEW)
        current = replace(
            current,
            options=tuple(
                IANA(1, 0, 0, (IAAddress(LEASE, 0, 0),)) if isinstance(o, IANA) else o
                for o in current.options
            ),
        )
        self.assertEqual(self.answer(current).options, (CLIENT, SERVER, BOUND, DNS))

    def test_finiteLeaseTime(self):
        """
        With a finite lease time, T1 and T2 are half and four fifths of it.
        """
        config = IPv6Config(leaseTime=3600)
        (binding,) = self.answer(captured(REQUEST), config=config).optionsOf(IANA)
        self.assertEqual(binding, IANA(1, 1800, 2880, (IAAddress(LEASE, 3600, 3600),)))
        self.assertEqual(renewalTimes(INFINITY), (INFINITY, INFINITY))

    def test_oneAddressPerGuest(self):
        """
        A second IA_NA is told NoAddrsAvail; so is every IA_NA of a guest
        with no address to give.
        """
        solicit = withOptions(captured(SOLICIT), IANA(2, 0, 0))
        noAddress = IANA(
            2, 0, 0, (StatusCode(wire.STATUS_NO_ADDRS_AVAIL, "one address per guest"),)
        )
        self.assertEqual(self.answer(solicit).optionsOf(IANA), [BOUND, noAddress])
        self.assertEqual(
            self.answer(solicit, leaseAddress=None).optionsOf(IANA),
            [replace(noAddress, iaid=1), noAddress],
        )

    def test_noIANA(self):
        """
        A Solicit for prefixes only (IA_PD) is advertised no address.
        """
        solicit = withOptions(withoutOption(captured(SOLICIT), IANA), DHCPv6Option(25, bytes(12)))
        reply = self.answer(solicit)
        self.assertEqual(reply.msgType, wire.ADVERTISE)
        self.assertEqual(
            reply.option(StatusCode), StatusCode(wire.STATUS_NO_ADDRS_AVAIL, "only IA_NA is served")
        )
        self.assertEqual(reply.optionsOf(IANA), [])

    def test_confirm(self):
        """
        dhclient's Confirm lists an address in the prefix: on link.  An
        address elsewhere is not; a Confirm with no address gets nothing.
        """
        confirm = captured(CONFIRM)
        self.assertEqual(
            self.answer(confirm),
            DHCPv6Message(
                wire.REPLY,
                confirm.transactionID,
                (CLIENT, SERVER, StatusCode(wire.STATUS_SUCCESS, "all addresses on link")),
            ),
        )
        elsewhere = withOptions(
            confirm, IANA(2, 0, 0, (IAAddress(IPv6Address("2001:db8::1").packed, 0, 0),))
        )
        self.assertEqual(
            self.answer(elsewhere).option(StatusCode),
            StatusCode(wire.STATUS_NOT_ON_LINK, "not on this link"),
        )
        self.assertIs(self.answer(withoutOption(confirm, IANA)), Unanswered.NOTHING_TO_CONFIRM)

    def test_releaseDecline(self):
        """
        Release and Decline get a success status; the address stays the
        guest's.
        """
        for kind in (wire.RELEASE, wire.DECLINE):
            release = captured(RELEASE, msgType=kind)
            self.assertEqual(
                self.answer(release),
                DHCPv6Message(
                    wire.REPLY,
                    release.transactionID,
                    (CLIENT, SERVER, StatusCode(wire.STATUS_SUCCESS)),
                ),
            )

    def test_informationRequest(self):
        """
        The stateless exchange: DNS server and search list, no address.
        Without a client identifier the Reply has none either.
        """
        request = captured(INFORMATION_REQUEST)
        self.assertEqual(
            self.answer(request, searchDomains=("localdomain",)),
            DHCPv6Message(
                wire.REPLY,
                request.transactionID,
                (CLIENT, SERVER, DNS, DomainList(("localdomain",))),
            ),
        )
        anonymous = withoutOption(request, ClientID)
        self.assertEqual(self.answer(anonymous).options, (SERVER, DNS))
        self.assertEqual(self.answer(withOptions(request, SERVER)).options, (CLIENT, SERVER, DNS))

    def test_informationRequestWithIA(self):
        """
        An Information-request holding an IA is dropped (RFC 8415 16.12).
        """
        request = captured(INFORMATION_REQUEST)
        for ia in (
            IANA(1, 0, 0),
            DHCPv6Option(wire.OPTION_IA_PD, bytes(12)),
            DHCPv6Option(wire.OPTION_IA_TA, bytes(4)),
        ):
            self.assertIs(
                self.answer(withOptions(request, ia)), Unanswered.IA_IN_INFORMATION_REQUEST
            )

    def test_serverIdentifierRules(self):
        """
        Solicit, Confirm and Rebind must not name a server; Request, Renew,
        Release and Decline must name vpnkit; an Information-request naming
        another server is not for vpnkit.
        """
        for frame in (SOLICIT, CONFIRM):
            self.assertIs(self.answer(withOptions(captured(frame), SERVER)), Unanswered.SERVER_ID)
        self.assertIs(self.answer(captured(REQUEST, msgType=wire.REBIND)), Unanswered.SERVER_ID)
        for kind in (wire.REQUEST, wire.RENEW, wire.RELEASE, wire.DECLINE):
            request = captured(REQUEST, msgType=kind)
            self.assertIs(
                self.answer(withoutOption(request, ServerID)), Unanswered.OTHER_SERVER, kind
            )
            other = replace(
                request,
                options=tuple(
                    OTHER_SERVER if isinstance(o, ServerID) else o for o in request.options
                ),
            )
            self.assertIs(self.answer(other), Unanswered.OTHER_SERVER, kind)
        self.assertIs(
            self.answer(withOptions(captured(INFORMATION_REQUEST), OTHER_SERVER)),
            Unanswered.OTHER_SERVER,
        )

    def test_noClientID(self):
        """
        Every message but Information-request must identify its client.
        """
        for frame, kind in (
            (SOLICIT, None),
            (REQUEST, None),
            (CONFIRM, None),
            (RELEASE, None),
            (REQUEST, wire.RENEW),
        ):
            request = withoutOption(captured(frame), ClientID)
            if kind is not None:
                request = replace(request, msgType=kind)
            self.assertIs(self.answer(request), Unanswered.NO_CLIENT_ID, request.msgType)

    def test_notARequest(self):
        """
        Server messages, Reconfigure and unknown types from a client get
        nothing.
        """
        for kind in (wire.ADVERTISE, wire.REPLY, wire.RECONFIGURE, 0, 14, 255):
            self.assertIs(
                self.answer(captured(SOLICIT, msgType=kind)), Unanswered.NOT_A_REQUEST, kind
            )

    def test_onTheWire(self):
        """
        Every answer emits to bytes that parse back to it.
        """
        for request in (
            captured(SOLICIT),
            withOptions(captured(SOLICIT), RapidCommit()),
            captured(REQUEST),
            captured(CONFIRM),
            captured(RELEASE),
            captured(INFORMATION_REQUEST),
        ):
            reply = self.answer(request, searchDomains=("localdomain",))
            self.assertEqual(parseDHCPv6(emitDHCPv6(reply)), reply)


class StableAddressTests(SynchronousTestCase):
    """
    A guest's stateful address follows its IPv4 lease, so the same UUID
    gets the same address.
    """

    def address(self, pool, uuid, stack=StackConfig()):
        lease = pool.leaseForUUID(uuid)
        index = int(lease.ip) - int(stack.lowestIP)
        return CONFIG.guestAddress(index).packed

    def test_sameUUID(self):
        """
        The same UUID coming back (after its link went) gets the same
        address in its Advertise; another UUID gets the next one.
        """
        pool = AddressPool(StackConfig())
        first = self.address(pool, "d1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5")
        other = self.address(pool, "3d1a0b0e-0000-4000-8000-000000000002")
        pool.release(pool.leaseForUUID("d1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5"))
        again = self.address(pool, "d1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5")
        self.assertEqual((first, other, again), (LEASE, IPv6Address("fd00:65::4").packed, LEASE))
        reply = answer(parseDHCPv6(udpPayload6(SOLICIT)), again, CONFIG)
        self.assertEqual(reply.option(IANA).option(IAAddress).address, LEASE)

    def test_mirrorsIPv4(self):
        """
        The guest holding the N-th address of the IPv4 range holds the N-th
        from fd00:65::3: 192.168.65.10 and fd00:65::a are both 7 on.
        """
        stack = StackConfig()
        for last in (3, 10, 254):
            index = int(IPv4Address(f"192.168.65.{last}")) - int(stack.lowestIP)
            self.assertEqual(CONFIG.guestAddress(index), IPv6Address(f"fd00:65::{last:x}"))


class ServerTests(SynchronousTestCase):
    """
    L{vpnkit.protocols.dhcpv6.DHCPv6Server}, the UDP service on port 547,
    in a stack: the captured dhclient messages, sent by the first guest
    (whose MAC the capture's guest had).
    """

    def setUp(self):
        from tests.helpers import makeStack

        self.stack, (self.guest, self.other) = makeStack(2)
        self.counters = self.stack.counters.dhcpv6

    def reply(self, frame, guest=None):
        """
        Send C{frame} from C{guest}; the DHCPv6 message it is answered
        with, and the IPv6 and UDP headers that carried it.
        """
        from tests.ipv6helpers import parseUDP6Frame

        guest = guest or self.guest
        guest.send(frame)
        [answer] = [f for f in guest.takeFrames() if f[20] == 17]
        eth, header, udp, payload = parseUDP6Frame(answer)
        return header, udp, parseDHCPv6(payload)

    def test_solicit(self):
        """
        The captured Solicit is answered from the router's link-local
        address to the client's, port 546, with the guest's stable address
        (the first guest's: fd00:65::3) and the gateway as DNS server.
        """
        from tests.ipv6fixtures import GUEST_LINK_LOCAL

        header, udp, message = self.reply(SOLICIT)
        self.assertEqual(
            (header.src, header.dst), (self.stack.config.ipv6.routerLinkLocalPacked, GUEST_LINK_LOCAL)
        )
        self.assertEqual((udp.srcPort, udp.dstPort), (547, 546))
        self.assertIn(message.msgType, (wire.ADVERTISE, wire.REPLY))
        [ia] = message.optionsOf(IANA)
        self.assertEqual(ia.option(IAAddress).address, LEASE)
        self.assertEqual(message.option(DNSServers), DNS)
        self.assertEqual(self.counters.replies, 1)

    def test_informationRequest(self):
        """
        The stateless exchange: DNS servers and the stack's search list.
        """
        self.stack.setDNSSearch(["example.com"])
        _, _, message = self.reply(INFORMATION_REQUEST)
        self.assertEqual(message.msgType, wire.REPLY)
        self.assertEqual(message.option(DomainList).domains, ("example.com",))

    def test_stablePerGuest(self):
        """
        The second guest's address is the second of the range, whoever's
        DUID it copies.
        """
        from tests.ipv6fixtures import GUEST_LINK_LOCAL
        from tests.ipv6helpers import buildUDP6
        from vpnkit.wire.ipv6 import linkLocalAddress

        frame = buildUDP6(
            self.other.mac,
            linkLocalAddress(self.other.mac),
            546,
            IPv6Address("ff02::1:2").packed,
            547,
            udpPayload6(SOLICIT),
            dstMAC=bytes.fromhex("333300010002"),
        )
        self.assertNotEqual(GUEST_LINK_LOCAL[8:], frame[30:38])
        _, _, message = self.reply(frame, self.other)
        [ia] = message.optionsOf(IANA)
        self.assertEqual(ia.option(IAAddress).address, IPv6Address("fd00:65::4").packed)

    def test_malformed(self):
        """
        A message that does not parse is counted and dropped.
        """
        from tests.ipv6helpers import buildUDP6
        from vpnkit.wire.ipv6 import linkLocalAddress

        link = linkLocalAddress(self.guest.mac)
        self.guest.send(
            buildUDP6(self.guest.mac, link, 546, IPv6Address("ff02::1:2").packed, 547, b"\x01")
        )
        self.assertEqual(self.counters.malformed, 1)
