"""
Tests for L{vpnkit.protocols.icmpv6}: Neighbor Discovery (solicited and
timed Router Advertisements, Neighbor Advertisements for vpnkit and for
other guests, duplicate address probes), echo (local, and through host
ICMPv6 ping sockets) and the ICMPv6 errors, in a stack on a L{task.Clock}.
"""

import errno
import socket

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.host.sockets import HostSocketError
from vpnkit.interfaces import IICMPErrors, IIPReceiver
from vpnkit.protocols.icmpv6 import FIRST_ADVERTISEMENT_DELAY
from vpnkit.protocols.ip import Unreachable
from vpnkit.wire.icmpv6 import (
    NA_OVERRIDE,
    NA_ROUTER,
    NA_SOLICITED,
    DestinationUnreachable,
    EchoReply,
    EchoRequest,
    MTUOption,
    NeighborAdvertisement,
    NeighborSolicitation,
    PacketTooBig,
    PrefixInformation,
    RecursiveDNSServers,
    RouterAdvertisement,
    RouterSolicitation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    TimeExceeded,
    emitICMPv6,
    parseICMPv6,
)
from vpnkit.wire.ipv6 import IPv6Header, solicitedNodeAddress

from tests.fakesockets import FakeDatagramSockets
from tests.helpers import SERVER_MAC, makeStack
from tests.ipv6helpers import (
    ALL_NODES_MAC,
    GATEWAY6,
    HOST6,
    REMOTE6,
    ROUTER6,
    buildICMPv6,
    buildIPv6,
    ip6,
    linkLocal,
    parseICMPv6Frame,
)

ALL_NODES = ip6("ff02::1")


def _unsolicited(frame):
    """
    Whether C{frame} is an unsolicited Router Advertisement (to all nodes).
    """
    try:
        _, header, message = parseICMPv6Frame(frame)
    except AssertionError:
        return False
    return isinstance(message, RouterAdvertisement) and header.dst == ALL_NODES


class ICMPv6TestMixin:
    def setUp(self):
        self.sockets = FakeDatagramSockets()
        self.stack, (self.a, self.b) = makeStack(2, sockets=self.sockets)
        self.clock = self.stack.reactor
        self.icmpv6 = self.stack.icmpv6
        self.aLink = linkLocal(self.a.mac)
        self.bLink = linkLocal(self.b.mac)
        self.aAddress = ip6("fd00:65::a")
        self.bAddress = ip6("fd00:65::b")

    def counters(self):
        return self.stack.counters.icmpv6

    def sendICMP(self, guest, src, dst, message, hopLimit=255, dstMAC=SERVER_MAC):
        guest.send(buildICMPv6(guest.mac, src, dst, message, dstMAC, hopLimit))

    def learn(self, guest, address):
        """
        Make the switch learn C{address} on C{guest}'s port (a datagram
        from it), and forget what the guest was sent.
        """
        guest.send(buildIPv6(guest.mac, address, GATEWAY6, 59, b""))
        guest.takeFrames()

    def only(self, guest):
        """
        The one frame C{guest} was sent, unsolicited advertisements aside.
        """
        frames = [f for f in guest.takeFrames() if not _unsolicited(f)]
        [frame] = frames
        return parseICMPv6Frame(frame)


class NeighborDiscoveryTests(ICMPv6TestMixin, SynchronousTestCase):
    """
    Router and Neighbor Solicitations.
    """

    def test_interfaces(self):
        """
        The layer is an IP receiver and the ICMP errors for IPv6.
        """
        self.assertTrue(verifyObject(IIPReceiver, self.icmpv6))
        self.assertTrue(verifyObject(IICMPErrors, self.icmpv6))

    def test_routerSolicitation(self):
        """
        A Router Solicitation from a link-local address is answered to it
        from the router's link-local address, hop limit 255: the prefix for
        SLAAC, the MTU and the gateway as DNS server.
        """
        self.sendICMP(
            self.a, self.aLink, ip6("ff02::2"), RouterSolicitation((SourceLinkLayerAddress(self.a.mac),)),
            dstMAC=bytes.fromhex("333300000002"),
        )
        eth, header, message = self.only(self.a)
        self.assertEqual(eth.dst, self.a.mac)
        self.assertEqual((header.src, header.dst, header.hopLimit), (ROUTER6, self.aLink, 255))
        self.assertIsInstance(message, RouterAdvertisement)
        self.assertEqual(message.option(PrefixInformation).prefix, ip6("fd00:65::"))
        self.assertEqual(message.option(MTUOption).mtu, 1500)
        self.assertEqual(message.option(RecursiveDNSServers).servers, (GATEWAY6,))
        self.assertEqual(self.counters().routerAdvertisementsSent, 1)

    def test_routerSolicitationUnspecified(self):
        """
        From the unspecified address, the advertisement goes to all nodes.
        """
        self.sendICMP(self.a, bytes(16), ip6("ff02::2"), RouterSolicitation())
        [frame] = self.a.takeFrames()
        eth, header, _ = parseICMPv6Frame(frame)
        self.assertEqual((eth.dst, header.dst), (ALL_NODES_MAC, ALL_NODES))

    def test_routerSolicitationHopLimit(self):
        """
        A solicitation that crossed a router (hop limit under 255) is not
        answered.
        """
        self.sendICMP(self.a, self.aLink, ip6("ff02::2"), RouterSolicitation(), hopLimit=64)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.counters().ndpHopLimit, 1)

    def test_neighborSolicitationGateway(self):
        """
        A solicitation for the gateway is answered with the server MAC,
        router, solicited and override flags, from the gateway.
        """
        target = GATEWAY6
        self.sendICMP(
            self.a,
            self.aAddress,
            solicitedNodeAddress(target),
            NeighborSolicitation(target, (SourceLinkLayerAddress(self.a.mac),)),
            dstMAC=bytes.fromhex("3333ff000001"),
        )
        eth, header, message = self.only(self.a)
        self.assertIsInstance(message, NeighborAdvertisement)
        self.assertEqual((header.src, header.dst, eth.dst), (GATEWAY6, self.aAddress, self.a.mac))
        self.assertEqual(message.flags, NA_ROUTER | NA_SOLICITED | NA_OVERRIDE)
        self.assertEqual(message.option(TargetLinkLayerAddress).address, SERVER_MAC)

    def test_neighborSolicitationOtherGuest(self):
        """
        A solicitation for another guest's address gets that guest's MAC,
        without the override flag, from the router's link-local address.
        """
        self.learn(self.b, self.bAddress)
        self.sendICMP(
            self.a,
            self.aAddress,
            solicitedNodeAddress(self.bAddress),
            NeighborSolicitation(self.bAddress),
            dstMAC=bytes.fromhex("3333ff00000b"),
        )
        _, header, message = self.only(self.a)
        self.assertEqual(header.src, ROUTER6)
        self.assertEqual(message.flags, NA_SOLICITED)
        self.assertEqual(message.option(TargetLinkLayerAddress).address, self.b.mac)

    def test_duplicateAddressProbes(self):
        """
        A probe for a guest's address is never answered; one for the
        gateway is, to all nodes.
        """
        self.learn(self.b, self.bAddress)
        probe = NeighborSolicitation(self.bAddress)
        self.sendICMP(self.a, bytes(16), solicitedNodeAddress(self.bAddress), probe, dstMAC=ALL_NODES_MAC)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.counters().ndpGuestDAD, 1)
        probe = NeighborSolicitation(GATEWAY6)
        self.sendICMP(self.a, bytes(16), solicitedNodeAddress(GATEWAY6), probe, dstMAC=ALL_NODES_MAC)
        eth, header, message = self.only(self.a)
        self.assertEqual((eth.dst, header.dst, message.flags), (ALL_NODES_MAC, ALL_NODES, NA_ROUTER | NA_OVERRIDE))

    def test_unknownTarget(self):
        """
        A solicitation for an address nobody holds is not answered.
        """
        self.sendICMP(self.a, self.aAddress, ip6("fd00:65::99"), NeighborSolicitation(ip6("fd00:65::99")))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.counters().ndpNotOurs, 1)

    def test_capturedGuest(self):
        """
        The solicitations a real Linux guest sent (the capture's server MAC
        and prefix are vpnkit's defaults) are answered as its router
        answered them.
        """
        from tests import ipv6fixtures as captured

        self.a.send(captured.ROUTER_SOLICITATION)
        _, header, message = self.only(self.a)
        self.assertIsInstance(message, RouterAdvertisement)
        self.assertEqual(header.dst, captured.GUEST_LINK_LOCAL)
        self.a.send(captured.NEIGHBOR_SOLICITATION)
        _, header, message = self.only(self.a)
        expected = parseICMPv6Frame(captured.NEIGHBOR_ADVERTISEMENT)[2]
        self.assertEqual((message.target, message.flags), (expected.target, expected.flags))
        self.a.send(captured.ECHO_REQUEST)
        [frame] = self.a.takeFrames()
        # All but the traffic class and flow label, which the guest's
        # router chose.
        self.assertEqual(frame[18:], captured.ECHO_REPLY[18:])


class AdvertisementTimerTests(ICMPv6TestMixin, SynchronousTestCase):
    """
    Unsolicited Router Advertisements, on the clock.
    """

    def advertisements(self, guest):
        found = []
        for frame in guest.takeFrames():
            if _unsolicited(frame):
                eth, header, message = parseICMPv6Frame(frame)
                self.assertEqual((eth.dst, header.dst, header.src), (ALL_NODES_MAC, ALL_NODES, ROUTER6))
                found.append(self.clock.seconds())
        return found

    def test_ipv4OnlyGuestsSeeNone(self):
        """
        A guest that never sent IPv6 gets no advertisement, and no timer
        runs.
        """
        self.clock.advance(1000)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_schedule(self):
        """
        A guest's first IPv6 datagram brings it an advertisement shortly
        after, then three at most 16 s apart, then one every interval.
        """
        self.a.send(buildIPv6(self.a.mac, bytes(16), ip6("ff02::16"), 59, b"", dstMAC=ALL_NODES_MAC))
        seen = []
        for _ in range(int(16 * 3 + 200 * 2) + 2):
            self.clock.advance(1)
            seen += self.advertisements(self.a)
        self.assertEqual(seen, [1.0, 16.0, 32.0, 48.0, 248.0, 448.0])
        self.assertEqual(self.advertisements(self.b), [])

    def test_stop(self):
        """
        Stopping leaves nothing in the reactor.
        """
        self.a.send(buildIPv6(self.a.mac, bytes(16), ip6("ff02::16"), 59, b"", dstMAC=ALL_NODES_MAC))
        self.assertTrue(self.clock.getDelayedCalls())
        self.stack.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_delay(self):
        """
        The first advertisement waits L{FIRST_ADVERTISEMENT_DELAY}.
        """
        self.assertLess(FIRST_ADVERTISEMENT_DELAY, 1)

    def test_noIPv6(self):
        """
        With IPv6 off nothing IPv6 is built, and IPv6 frames are counted as
        before.
        """
        stack, (guest,) = makeStack(1, ipv6Prefix=None)
        self.assertIsNone(stack.ipv6)
        self.assertIsNone(stack.icmpv6)
        guest.send(buildICMPv6(guest.mac, bytes(16), ip6("ff02::2"), RouterSolicitation()))
        stack.reactor.advance(1000)
        self.assertEqual(guest.takeFrames(), [])
        self.assertEqual(stack.counters.ethernet.ipv6, 1)
        self.assertEqual(guest.port.ipv6, {})


class EchoTests(ICMPv6TestMixin, SynchronousTestCase):
    """
    Echo to vpnkit's addresses and to remote ones.
    """

    def test_local(self):
        """
        Echo to the gateway, the host alias and the router's link-local
        address is answered from there.
        """
        self.learn(self.a, self.aLink)
        for src, dst in ((self.aAddress, GATEWAY6), (self.aAddress, HOST6), (self.aLink, ROUTER6)):
            self.sendICMP(self.a, src, dst, EchoRequest(7, 1, b"abc"), hopLimit=64)
            _, header, message = self.only(self.a)
            self.assertEqual((header.src, header.dst), (dst, src))
            self.assertEqual(message, EchoReply(7, 1, b"abc"))

    def test_refused(self):
        """
        Echo to an unheld address of the prefix is answered address
        unreachable (code 3); to a multicast group, nothing.
        """
        self.sendICMP(self.a, self.aAddress, ip6("fd00:65::99"), EchoRequest(7, 1), hopLimit=64)
        _, header, message = self.only(self.a)
        self.assertEqual((type(message), message.code, header.src), (DestinationUnreachable, 3, GATEWAY6))
        self.sendICMP(self.a, self.aAddress, ip6("ff02::1"), EchoRequest(7, 1), dstMAC=ALL_NODES_MAC)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.sockets.opened, [])

    def test_remote(self):
        """
        Echo to a remote address goes through an ICMPv6 ping socket; the
        reply comes back with the guest's identifier, from the remote
        address.
        """
        self.sendICMP(self.a, self.aAddress, REMOTE6, EchoRequest(7, 1, b"abc"), hopLimit=33)
        [sock] = self.sockets.opened
        self.assertEqual(sock.family, socket.AF_INET6)
        [sent] = sock.takeSent()
        self.assertEqual((sent.host, sent.ttl), ("2001:db8::10", 33))
        request = parseICMPv6(sent.data, bytes(16), bytes(16), verifyChecksum=False)
        self.assertEqual(request, EchoRequest(7, 1, b"abc"))
        reply = emitICMPv6(EchoReply(sock.port, 1, b"abc"), REMOTE6, bytes(16))
        sock.deliver(reply, "2001:db8::10")
        _, header, message = self.only(self.a)
        self.assertEqual((header.src, header.dst), (REMOTE6, self.aAddress))
        self.assertEqual(message, EchoReply(7, 1, b"abc"))

    def test_hostError(self):
        """
        An ICMPv6 error the host heard for the request goes to the guest
        from the router that sent it, quoting the request.
        """
        self.sendICMP(self.a, self.aAddress, REMOTE6, EchoRequest(7, 1, b"abc"), hopLimit=2)
        [sock] = self.sockets.opened
        payload = emitICMPv6(EchoRequest(sock.port, 1, b"abc"), bytes(16), bytes(16))
        sock.fail(
            HostSocketError("icmp6", errno.EHOSTUNREACH, 3, 0, 0, "2001:db8::1", "2001:db8::10", 0, payload)
        )
        _, header, message = self.only(self.a)
        self.assertIsInstance(message, TimeExceeded)
        self.assertEqual(header.src, ip6("2001:db8::1"))
        self.assertEqual(message.invoking[24:40], REMOTE6)
        self.assertEqual(message.invoking[40], 128)

    def test_sendFails(self):
        """
        A request the host refuses at once (no route) is answered
        unreachable from the gateway.
        """
        self.sendICMP(self.a, self.aAddress, REMOTE6, EchoRequest(7, 1), hopLimit=64)
        [sock] = self.sockets.opened
        sock.sendError = OSError(errno.ENETUNREACH, "no route")
        self.sendICMP(self.a, self.aAddress, REMOTE6, EchoRequest(7, 2), hopLimit=64)
        _, header, message = self.only(self.a)
        self.assertEqual((type(message), message.code), (DestinationUnreachable, 0))

    def test_noPermission(self):
        """
        Without ICMPv6 sockets the request is dropped and counted.
        """
        self.sockets.icmpError = OSError(errno.EACCES, "no")
        self.sendICMP(self.a, self.aAddress, REMOTE6, EchoRequest(7, 1), hopLimit=64)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.counters().forwardUnavailable, 1)

    def test_guestGoes(self):
        """
        A guest's echo flows close when it detaches.
        """
        self.sendICMP(self.a, self.aAddress, REMOTE6, EchoRequest(7, 1), hopLimit=64)
        self.stack.guests.detach(self.a.port)
        self.assertEqual(self.sockets.live(), [])


def _header(src, dst, nextHeader=17, length=8):
    return IPv6Header(0, 0, length, nextHeader, 64, src, dst)


class ErrorTests(ICMPv6TestMixin, SynchronousTestCase):
    """
    The errors for IPv6 senders, and the rules for them.
    """

    def setUp(self):
        super().setUp()
        self.learn(self.a, self.aAddress)

    def test_unreachableCodes(self):
        """
        Each reason has its ICMPv6 code.
        """
        codes = {}
        for reason in Unreachable:
            self.clock.advance(10)
            self.assertTrue(self.icmpv6.sendUnreachable(reason, _header(self.aAddress, REMOTE6), bytes(8)))
            codes[reason.name] = self.only(self.a)[2].code
        self.assertEqual(
            codes,
            {"NETWORK": 0, "HOST": 3, "PORT": 4, "NO_ROUTE": 0, "HOST_BLOCKED": 3, "PROHIBITED": 1},
        )

    def test_localTooBig(self):
        """
        The host's own EMSGSIZE is Packet Too Big from the gateway, at
        least 1280.
        """
        error = HostSocketError("local", errno.EMSGSIZE, 0, 0, 1000, None, "2001:db8::10", 53, b"")
        self.assertTrue(self.icmpv6.sendHostError(error, _header(self.aAddress, REMOTE6), bytes(8)))
        _, header, message = self.only(self.a)
        self.assertEqual((type(message), message.mtu, header.src), (PacketTooBig, 1280, GATEWAY6))

    def test_hostAliasOffender(self):
        """
        An error from the host's ::1 comes from the host alias.
        """
        error = HostSocketError("icmp6", errno.ECONNREFUSED, 1, 4, 0, "::1", "::1", 53, b"")
        self.assertTrue(self.icmpv6.sendHostError(error, _header(self.aAddress, HOST6), bytes(8)))
        _, header, message = self.only(self.a)
        self.assertEqual((header.src, message.code), (HOST6, 4))

    def test_notAboutErrors(self):
        """
        No error about an ICMPv6 error, to a multicast or unspecified
        source, or about a datagram to a group.
        """
        error = emitICMPv6(DestinationUnreachable(1, b""), self.aAddress, REMOTE6)[:8]
        for header, quote in (
            (_header(self.aAddress, REMOTE6, 58), error),
            (_header(ip6("ff02::1"), REMOTE6), bytes(8)),
            (_header(bytes(16), REMOTE6), bytes(8)),
            (_header(self.aAddress, ip6("ff02::1")), bytes(8)),
        ):
            self.assertFalse(self.icmpv6.sendUnreachable(Unreachable.PORT, header, quote))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.counters().errorsSuppressed, 4)

    def test_rateLimited(self):
        """
        Errors to one guest are rate-limited.
        """
        sent = [
            self.icmpv6.sendUnreachable(Unreachable.PORT, _header(self.aAddress, REMOTE6), bytes(8))
            for _ in range(100)
        ]
        self.assertIn(False, sent)
        self.assertGreater(self.counters().errorsLimited, 0)

    def test_quotesUpTo1280(self):
        """
        An error quotes as much of the datagram as fits in 1280 bytes.
        """
        self.assertTrue(
            self.icmpv6.sendPacketTooBig(_header(self.aAddress, REMOTE6), bytes(3000), 1400)
        )
        [frame] = self.a.takeFrames()
        self.assertEqual(len(frame) - 14, 1280)
