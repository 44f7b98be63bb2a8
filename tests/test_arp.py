"""
Tests for L{vpnkit.protocols.arp}: who vpnkit answers for, byte for byte,
and who it leaves unanswered.
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.interfaces import IEthernetPayloadReceiver
from vpnkit.wire.arp import ARP_REPLY, ARPPacket
from vpnkit.wire.ethernet import ETHERTYPE_ARP, EthernetHeader

from tests.helpers import (
    BROADCAST_MAC,
    GATEWAY_IP,
    HOST_IP,
    REMOTE_IP,
    SERVER_MAC,
    ZERO_IP,
    attachGuest,
    buildARPReply,
    buildARPRequest,
    buildEthernet,
    ip,
    makeStack,
    nonZeroCounters,
    parseARPFrame,
)


class ARPTestMixin:
    """
    A stack with two guests, A (192.168.65.3, 02:50:00:00:00:01) and B
    (192.168.65.4, 02:50:00:00:00:02).
    """

    stackOptions = {}

    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2, **self.stackOptions)

    def ask(self, target, **kwargs):
        """
        Guest A broadcasts a request for C{target}; the flooded copy B sees
        is checked and forgotten.

        @return: the frames A received.
        """
        request = buildARPRequest(self.a.mac, self.a.ip, target, **kwargs)
        self.a.send(request)
        if request[0] & 1:
            self.assertEqual(self.b.takeFrames(), [request])
        return self.a.takeFrames()

    def assertCounters(self, expected):
        base = {"link.linksOpened": 2, "ethernet.received": 1, "ethernet.flooded": 1}
        base.update(expected)
        self.assertEqual(nonZeroCounters(self.stack.counters), base)


class AnsweredTests(ARPTestMixin, SynchronousTestCase):
    """
    Requests vpnkit answers.
    """

    def test_interface(self):
        """
        The responder provides L{IEthernetPayloadReceiver}.
        """
        self.assertTrue(verifyObject(IEthernetPayloadReceiver, self.stack.arp))

    def test_gateway(self):
        """
        A request for the gateway is answered to the requester with the
        server MAC; every byte of the reply is as RFC 826 says.
        """
        [reply] = self.ask(GATEWAY_IP)
        self.assertEqual(
            reply.hex(),
            "025000000001"  # Ethernet destination: the requester
            "f61636bcf9c6"  # Ethernet source: the server MAC
            "0806"  # ARP
            "000108000604"  # Ethernet/IPv4
            "0002"  # reply
            "f61636bcf9c6c0a84101"  # sha, spa: the gateway is at the server MAC
            "025000000001c0a84103",  # tha, tpa: the requester
        )
        eth, packet = parseARPFrame(reply)
        self.assertEqual(eth, EthernetHeader(self.a.mac, SERVER_MAC, ETHERTYPE_ARP))
        self.assertEqual(
            packet, ARPPacket(ARP_REPLY, SERVER_MAC, GATEWAY_IP, self.a.mac, self.a.ip)
        )
        self.assertCounters({"arp.requests": 1, "arp.replies": 1})

    def test_hostAlias(self):
        """
        A request for the host alias 192.168.65.2 is answered with the
        server MAC.
        """
        [reply] = self.ask(HOST_IP)
        self.assertEqual(
            reply,
            self.a.mac
            + SERVER_MAC
            + b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x02"
            + SERVER_MAC
            + HOST_IP
            + self.a.mac
            + self.a.ip,
        )
        self.assertCounters({"arp.requests": 1, "arp.replies": 1})

    def test_otherGuest(self):
        """
        A request for another attached guest's address is answered with
        that guest's MAC (the other guest also sees the broadcast).
        """
        [reply] = self.ask(self.b.ip)
        eth, packet = parseARPFrame(reply)
        self.assertEqual(eth, EthernetHeader(self.a.mac, SERVER_MAC, ETHERTYPE_ARP))
        self.assertEqual(packet, ARPPacket(ARP_REPLY, self.b.mac, self.b.ip, self.a.mac, self.a.ip))
        self.assertCounters({"arp.requests": 1, "arp.replies": 1})

    def test_unicastRefresh(self):
        """
        A unicast request to the server MAC (a Linux neighbour refresh) is
        answered the same way, and not flooded.
        """
        self.a.send(
            buildARPRequest(
                self.a.mac, self.a.ip, GATEWAY_IP, dstMAC=SERVER_MAC, targetMAC=SERVER_MAC
            )
        )
        [reply] = self.a.takeFrames()
        self.assertEqual(
            parseARPFrame(reply)[1],
            ARPPacket(ARP_REPLY, SERVER_MAC, GATEWAY_IP, self.a.mac, self.a.ip),
        )
        self.assertEqual(self.b.takeFrames(), [])
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {
                "link.linksOpened": 2,
                "ethernet.received": 1,
                "arp.requests": 1,
                "arp.replies": 1,
            },
        )

    def test_paddedRequest(self):
        """
        A request padded to the 60-byte Ethernet minimum is answered with an
        unpadded 42-byte reply.
        """
        request = buildARPRequest(self.a.mac, self.a.ip, GATEWAY_IP).ljust(60, b"\0")
        self.a.send(request)
        [reply] = self.a.takeFrames()
        self.assertEqual(len(reply), 42)
        self.assertEqual(self.stack.counters.arp.replies, 1)

    def test_learnedGuest(self):
        """
        A guest whose MAC the switch learned is answered for with the
        learned MAC once it has sent a frame.
        """
        q = attachGuest(self.stack, 3, learnMAC=True)
        self.assertEqual(self.ask(q.ip), [])
        q.send(buildARPRequest(q.mac, q.ip, GATEWAY_IP))
        q.takeFrames()
        self.a.takeFrames()
        self.b.takeFrames()
        [reply] = self.ask(q.ip)
        self.assertEqual(parseARPFrame(reply)[1].sha, q.mac)


class UnansweredTests(ARPTestMixin, SynchronousTestCase):
    """
    Requests vpnkit leaves unanswered.
    """

    def test_unknownAddress(self):
        """
        A request for an address of the subnet no guest holds gets no reply
        and is counted as C{unknownTarget}.
        """
        self.assertEqual(self.ask(ip("192.168.65.100")), [])
        self.assertCounters({"arp.requests": 1, "arp.unknownTarget": 1})

    def test_remoteAddress(self):
        """
        A request for a remote address is not answered: remote hosts are
        reached through the gateway, never impersonated by ARP.
        """
        self.assertEqual(self.ask(REMOTE_IP), [])
        self.assertCounters({"arp.requests": 1, "arp.unknownTarget": 1})

    def test_duplicateAddressProbe(self):
        """
        A duplicate-address probe (sender address 0.0.0.0) for the
        requester's own address is not answered, so the guest sees no
        conflict.
        """
        request = buildARPRequest(self.a.mac, ZERO_IP, self.a.ip)
        self.a.send(request)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.b.takeFrames(), [request])
        self.assertCounters({"arp.requests": 1, "arp.unknownTarget": 1})

    def test_gratuitous(self):
        """
        A gratuitous request (sender and target address both the guest's
        own) is not answered.
        """
        self.assertEqual(self.ask(self.a.ip), [])
        self.assertCounters({"arp.requests": 1, "arp.unknownTarget": 1})

    def test_guestNotYetHeardFrom(self):
        """
        A guest whose MAC has not been learned yet is not answered for.
        """
        q = attachGuest(self.stack, 3, learnMAC=True)
        self.assertEqual(self.ask(q.ip), [])
        self.assertEqual(q.takeFrames()[0][:6], BROADCAST_MAC)
        self.assertEqual(self.stack.counters.arp.unknownTarget, 1)

    def test_guestReply(self):
        """
        An ARP reply from a guest is counted as C{ignored}: vpnkit keeps no
        ARP cache.
        """
        self.a.send(buildARPReply(self.a.mac, self.a.ip, SERVER_MAC, GATEWAY_IP))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.b.takeFrames(), [])
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {"link.linksOpened": 2, "ethernet.received": 1, "arp.ignored": 1},
        )

    def test_unknownOperation(self):
        """
        An ARP packet with an operation other than request or reply (here
        RARP request, 3) is ignored.
        """
        request = bytearray(buildARPRequest(self.a.mac, self.a.ip, GATEWAY_IP, dstMAC=SERVER_MAC))
        request[21] = 3
        self.a.send(bytes(request))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.arp.ignored, 1)
        self.assertEqual(self.stack.counters.arp.requests, 0)

    def test_truncated(self):
        """
        An ARP payload shorter than 28 bytes is counted as C{malformed}.
        """
        request = buildARPRequest(self.a.mac, self.a.ip, GATEWAY_IP, dstMAC=SERVER_MAC)
        self.a.send(request[:41])
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {"link.linksOpened": 2, "ethernet.received": 1, "arp.malformed": 1},
        )

    def test_notEthernetIPv4(self):
        """
        ARP for another hardware or protocol type is counted as
        C{malformed}.
        """
        request = buildARPRequest(self.a.mac, self.a.ip, GATEWAY_IP, dstMAC=SERVER_MAC)
        self.a.send(request[:14] + b"\x00\x06" + request[16:])
        self.a.send(request[:16] + b"\x86\xdd" + request[18:])
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.arp.malformed, 2)

    def test_emptyPayload(self):
        """
        An ARP frame with no payload at all is counted as C{malformed}.
        """
        self.a.send(buildEthernet(SERVER_MAC, self.a.mac, ETHERTYPE_ARP, b""))
        self.assertEqual(self.stack.counters.arp.malformed, 1)


class HostAliasDisabledTests(ARPTestMixin, SynchronousTestCase):
    """
    With the host alias disabled (C{--host-ip 0.0.0.0}) its address is not
    answered for.
    """

    stackOptions = {"hostIP": None}

    def test_aliasUnanswered(self):
        """
        A request for 192.168.65.2 gets no reply.
        """
        self.assertEqual(self.ask(HOST_IP), [])
        self.assertCounters({"arp.requests": 1, "arp.unknownTarget": 1})

    def test_gatewayStillAnswered(self):
        """
        The gateway is still answered.
        """
        [reply] = self.ask(GATEWAY_IP)
        self.assertEqual(parseARPFrame(reply)[1].spa, GATEWAY_IP)
