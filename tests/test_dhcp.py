"""
Tests for L{vpnkit.protocols.dhcp}: the server driven end to end through a
L{vpnkit.stack.Stack} (frames in, frames out) the way busybox C{udhcpc}
drives it, the pure L{answer} policy, and the C{dhcp.json} parser.
"""

from dataclasses import replace
from ipaddress import IPv4Address

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.config import ConfigError, StackConfig
from vpnkit.interfaces import IUDPService
from vpnkit.protocols.dhcp import (
    LEASE_TIME,
    DHCPSettings,
    answer,
    parseDHCPSettings,
)
from vpnkit.wire import dhcp as wire
from vpnkit.wire.ethernet import ETHERTYPE_IPV4, EthernetHeader
from vpnkit.wire.ipv4 import FLAG_DF, PROTO_UDP, IPv4Header

from tests.helpers import (
    BROADCAST_IP,
    BROADCAST_MAC,
    GATEWAY_IP,
    SERVER_MAC,
    SUBNET_BROADCAST_IP,
    ZERO_IP,
    attachGuest,
    buildDHCP,
    buildDHCPMessage,
    buildUDP,
    capturedFrames,
    ip,
    mac,
    makeStack,
    nonZeroCounters,
    parseDHCPFrame,
)

OTHER_SERVER = ip("10.0.2.2")
XID = 0x3D1D0A2B
SNAME = b"vpnkit".ljust(64, b"\0")

# What busybox udhcpc 1.35 sends besides the message type (from the
# captured DISCOVER in tests/fixtures/linux-guest.pcap).
UDHCPC_OPTIONS = (
    (wire.OPT_PARAMETER_LIST, bytes((1, 3, 6, 12, 15, 26, 28, 42, 119))),
    (wire.OPT_HOSTNAME, b"guest"),
    (60, b"udhcp 1.35.0"),
)

LEASE_OPTIONS = [
    (wire.OPT_LEASE_TIME, b"\x7f\xff\xff\xff"),
    (wire.OPT_RENEWAL_TIME, b"\x3f\xff\xff\xff"),
    (wire.OPT_REBINDING_TIME, b"\x6f\xff\xff\xff"),
]


def configOptions(mtu=1500, domain=b"localdomain", ntp=False):
    """
    The configuration options every reply but NAK carries, in order.
    """
    options = [
        (wire.OPT_SUBNET_MASK, b"\xff\xff\xff\x00"),
        (wire.OPT_ROUTER, GATEWAY_IP),
        (wire.OPT_DNS, GATEWAY_IP),
    ]
    if domain:
        options.append((wire.OPT_DOMAIN_NAME, domain))
    options.append((wire.OPT_MTU, mtu.to_bytes(2, "big")))
    options.append((wire.OPT_BROADCAST, SUBNET_BROADCAST_IP))
    if ntp:
        options.append((wire.OPT_NTP, GATEWAY_IP))
    return options


def replyOptions(messageType, leaseTimes=True, search=None, **kwargs):
    """
    The exact option list of an OFFER or ACK.
    """
    options = [(wire.OPT_MESSAGE_TYPE, bytes((messageType,))), (wire.OPT_SERVER_ID, GATEWAY_IP)]
    options += configOptions(**kwargs)
    if leaseTimes:
        options += LEASE_OPTIONS
    if search is not None:
        options.append((wire.OPT_DOMAIN_SEARCH, search))
    return tuple(options)


NAK_OPTIONS = (
    (wire.OPT_MESSAGE_TYPE, bytes((wire.DHCPNAK,))),
    (wire.OPT_SERVER_ID, GATEWAY_IP),
    (wire.OPT_MESSAGE, b"requested address is not the one held by this client"),
)


class DHCPTestMixin:
    """
    A stack with two guests: A (192.168.65.3, 02:50:00:00:00:01), whose
    DHCP client the tests play, and B (192.168.65.4), which sees the
    broadcasts.
    """

    stackOptions = {}

    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2, **self.stackOptions)

    def fromA(self, messageType, **kwargs):
        """
        Guest A sends a DHCP message (broadcast from 0.0.0.0 unless told
        otherwise).

        @return: the frames A received in answer.
        """
        self.a.send(buildDHCP(self.a.mac, messageType, **kwargs))
        return self.a.takeFrames()

    def assertReply(
        self,
        frame,
        messageType,
        options,
        yiaddr,
        ethDst=None,
        ipDst=None,
        ciaddr=ZERO_IP,
        flags=0,
        xid=XID,
        chaddr=None,
    ):
        """
        C{frame} is a DHCP reply from the gateway's port 67 to port 68 with
        exactly these fields and options, valid checksums, padded to the
        300 bytes of a BOOTP message.

        @return: the parsed message.
        """
        eth, header, udp, message = parseDHCPFrame(frame)
        self.assertEqual(
            eth,
            EthernetHeader(
                ethDst if ethDst is not None else self.a.mac, SERVER_MAC, ETHERTYPE_IPV4
            ),
        )
        self.assertEqual(
            header,
            IPv4Header(
                0,
                20 + udp.length,
                0,
                FLAG_DF,
                0,
                64,
                PROTO_UDP,
                header.checksum,
                GATEWAY_IP,
                ipDst if ipDst is not None else yiaddr,
            ),
        )
        unpadded = len(wire.emitDHCP(replace(message, padding=b"")))
        self.assertEqual((udp.srcPort, udp.dstPort), (67, 68))
        self.assertEqual(udp.length, 8 + max(300, unpadded))
        expected = wire.DHCPMessage(
            op=wire.BOOTREPLY,
            xid=xid,
            chaddr=(chaddr or self.a.mac).ljust(16, b"\0"),
            options=options,
            flags=flags,
            ciaddr=ciaddr,
            yiaddr=yiaddr,
            sname=SNAME if message.messageType != wire.DHCPNAK else b"\0" * 64,
            padding=b"",
        )
        self.assertEqual(replace(message, padding=b""), expected)
        self.assertEqual(message.padding, bytes(len(message.padding)))
        self.assertEqual(message.messageType, messageType)
        return message

    def assertCounters(self, expected, flooded=1):
        base = {
            "link.linksOpened": 2,
            "ethernet.received": 1,
            "ipv4.received": 1,
            "udp.received": 1,
            "dhcp.received": 1,
        }
        if flooded:
            base["ethernet.flooded"] = flooded
        base.update(expected)
        self.assertEqual(nonZeroCounters(self.stack.counters), base)

    def assertSentCounters(self, expected, flooded=1):
        """
        As L{assertCounters}, for an exchange that sent one reply.
        """
        expected = dict(expected)
        expected.update({"ipv4.sent": 1, "udp.sent": 1})
        self.assertCounters(expected, flooded)


class DiscoverTests(DHCPTestMixin, SynchronousTestCase):
    """
    DISCOVER is answered with an OFFER of the guest's lease.
    """

    def test_interface(self):
        """
        The server provides L{IUDPService}.
        """
        self.assertTrue(verifyObject(IUDPService, self.stack.dhcp))

    def test_offer(self):
        """
        A DISCOVER broadcast from 0.0.0.0:68 is answered with an OFFER of
        192.168.65.3, sent to the client's MAC and offered address, with the
        subnet mask, router, DNS server, domain, MTU, broadcast address,
        lease times and server identifier; the other guest sees only the
        flooded DISCOVER.
        """
        discover = buildDHCP(self.a.mac, wire.DHCPDISCOVER, options=UDHCPC_OPTIONS)
        self.a.send(discover)
        [offer] = self.a.takeFrames()
        self.assertReply(
            offer, wire.DHCPOFFER, replyOptions(wire.DHCPOFFER), yiaddr=ip("192.168.65.3")
        )
        self.assertEqual(self.b.takeFrames(), [discover])
        self.assertSentCounters({"dhcp.discover": 1, "dhcp.offer": 1})

    def test_offerBytes(self):
        """
        The options of an OFFER are encoded exactly so, END included; at 309
        bytes the message needs no padding.
        """
        [offer] = self.fromA(wire.DHCPDISCOVER)
        self.assertEqual(len(offer), 14 + 20 + 8 + 309)
        options = offer[14 + 20 + 8 + 240 :]
        self.assertEqual(
            options.hex(),
            "350102"
            "3604c0a84101"
            "0104ffffff00"
            "0304c0a84101"
            "0604c0a84101"
            "0f0b" + b"localdomain".hex() + "1a0205dc"
            "1c04c0a841ff"
            "33047fffffff"
            "3a043fffffff"
            "3b046fffffff"
            "ff",
        )

    def test_leaseTimes(self):
        """
        The lease is the reference's 2**31 - 1 seconds, with T1 at a half
        and T2 at seven eighths of it.
        """
        [offer] = self.fromA(wire.DHCPDISCOVER)
        message = parseDHCPFrame(offer)[3]
        self.assertEqual(LEASE_TIME, 2147483647)
        self.assertEqual(int.from_bytes(message.option(wire.OPT_LEASE_TIME), "big"), 2147483647)
        self.assertEqual(int.from_bytes(message.option(wire.OPT_RENEWAL_TIME), "big"), 1073741823)
        self.assertEqual(int.from_bytes(message.option(wire.OPT_REBINDING_TIME), "big"), 1879048191)

    def test_broadcastFlag(self):
        """
        With the broadcast flag set, the OFFER goes to ff:ff:ff:ff:ff:ff and
        255.255.255.255, so every guest sees it.
        """
        [offer] = self.fromA(wire.DHCPDISCOVER, flags=0x8000)
        self.assertReply(
            offer,
            wire.DHCPOFFER,
            replyOptions(wire.DHCPOFFER),
            yiaddr=ip("192.168.65.3"),
            ethDst=BROADCAST_MAC,
            ipDst=BROADCAST_IP,
            flags=0x8000,
        )
        flooded, copy = self.b.takeFrames()
        self.assertEqual(copy, offer)

    def test_secondGuest(self):
        """
        Two guests each get their own address and their own reply.
        """
        [offerA] = self.fromA(wire.DHCPDISCOVER, xid=1)
        self.b.send(buildDHCP(self.b.mac, wire.DHCPDISCOVER, xid=2))
        [discoverA, offerB] = self.b.takeFrames()
        [discoverB] = self.a.takeFrames()
        self.assertEqual(parseDHCPFrame(offerA)[3].yiaddr, ip("192.168.65.3"))
        eth, header, _, message = parseDHCPFrame(offerB)
        self.assertEqual((eth.dst, header.dst), (self.b.mac, ip("192.168.65.4")))
        self.assertEqual(
            (message.xid, message.yiaddr, message.clientMAC), (2, ip("192.168.65.4"), self.b.mac)
        )

    def test_jumboMTU(self):
        """
        The MTU option announces the configured MTU.
        """
        stack, (a,) = makeStack(1, mtu=9000)
        a.send(buildDHCP(a.mac, wire.DHCPDISCOVER))
        [offer] = a.takeFrames()
        message = parseDHCPFrame(offer)[3]
        self.assertEqual(message.option(wire.OPT_MTU), b"\x23\x28")
        self.assertEqual(message.options, replyOptions(wire.DHCPOFFER, mtu=9000))

    def test_learnedMAC(self):
        """
        A guest whose link does not assign a MAC (QEMU) is found by the MAC
        its DISCOVER came from.
        """
        q = attachGuest(self.stack, 3, learnMAC=True)
        q.send(buildDHCP(q.mac, wire.DHCPDISCOVER))
        [offer] = q.takeFrames()
        eth, header, _, message = parseDHCPFrame(offer)
        self.assertEqual((eth.dst, message.yiaddr), (q.mac, ip("192.168.65.5")))

    def test_capturedUdhcpcDiscover(self):
        """
        The DISCOVER a real busybox udhcpc sent (from 02:50:00:00:00:01, the
        first guest's MAC) is answered with an OFFER of 192.168.65.3; the
        REQUEST it then sent names the other server (10.0.2.2), so it is
        met with silence.
        """
        frames = capturedFrames()
        self.a.send(frames[2])
        [offer] = self.a.takeFrames()
        message = self.assertReply(
            offer,
            wire.DHCPOFFER,
            replyOptions(wire.DHCPOFFER),
            yiaddr=ip("192.168.65.3"),
            xid=3400757099,
        )
        self.assertEqual(message.clientMAC, self.a.mac)
        self.a.send(frames[4])
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.dhcp.ignored, 1)


class RequestTests(DHCPTestMixin, SynchronousTestCase):
    """
    REQUEST in each of the client's states.
    """

    def test_selecting(self):
        """
        A REQUEST selecting our offer (server identifier and requested
        address) is answered with an ACK of the lease.
        """
        [ack] = self.fromA(
            wire.DHCPREQUEST,
            options=(
                (wire.OPT_REQUESTED_IP, ip("192.168.65.3")),
                (wire.OPT_SERVER_ID, GATEWAY_IP),
            )
            + UDHCPC_OPTIONS,
        )
        self.assertReply(ack, wire.DHCPACK, replyOptions(wire.DHCPACK), yiaddr=ip("192.168.65.3"))
        self.assertSentCounters({"dhcp.request": 1, "dhcp.ack": 1})

    def test_selectingBroadcast(self):
        """
        With the broadcast flag the ACK is broadcast.
        """
        [ack] = self.fromA(
            wire.DHCPREQUEST,
            flags=0x8000,
            options=((wire.OPT_REQUESTED_IP, ip("192.168.65.3")), (wire.OPT_SERVER_ID, GATEWAY_IP)),
        )
        self.assertReply(
            ack,
            wire.DHCPACK,
            replyOptions(wire.DHCPACK),
            yiaddr=ip("192.168.65.3"),
            ethDst=BROADCAST_MAC,
            ipDst=BROADCAST_IP,
            flags=0x8000,
        )

    def test_wrongAddress(self):
        """
        A REQUEST for an address other than the lease is answered with a NAK
        broadcast to ff:ff:ff:ff:ff:ff and 255.255.255.255, with no address
        and only the message type, server identifier and a message; the
        other guest sees it too.
        """
        [nak] = self.fromA(
            wire.DHCPREQUEST,
            options=(
                (wire.OPT_REQUESTED_IP, ip("192.168.65.77")),
                (wire.OPT_SERVER_ID, GATEWAY_IP),
            ),
        )
        self.assertReply(
            nak,
            wire.DHCPNAK,
            NAK_OPTIONS,
            yiaddr=ZERO_IP,
            ethDst=BROADCAST_MAC,
            ipDst=BROADCAST_IP,
        )
        self.assertEqual(self.b.takeFrames()[1], nak)
        self.assertSentCounters({"dhcp.request": 1, "dhcp.nak": 1})

    def test_otherServer(self):
        """
        A REQUEST naming another server's identifier (the client took that
        server's offer) is met with silence and counted as C{ignored}.
        """
        replies = self.fromA(
            wire.DHCPREQUEST,
            options=(
                (wire.OPT_REQUESTED_IP, ip("192.168.65.3")),
                (wire.OPT_SERVER_ID, OTHER_SERVER),
            ),
        )
        self.assertEqual(replies, [])
        self.assertCounters({"dhcp.request": 1, "dhcp.ignored": 1})

    def test_initReboot(self):
        """
        A REQUEST with a requested address and no server identifier
        (INIT-REBOOT) for the lease is answered with an ACK.
        """
        [ack] = self.fromA(wire.DHCPREQUEST, options=((wire.OPT_REQUESTED_IP, ip("192.168.65.3")),))
        self.assertReply(ack, wire.DHCPACK, replyOptions(wire.DHCPACK), yiaddr=ip("192.168.65.3"))

    def test_initRebootWrongAddress(self):
        """
        An INIT-REBOOT for an address the guest does not hold (it moved) is
        answered with a NAK.
        """
        [nak] = self.fromA(wire.DHCPREQUEST, options=((wire.OPT_REQUESTED_IP, ip("10.0.2.15")),))
        self.assertReply(
            nak, wire.DHCPNAK, NAK_OPTIONS, yiaddr=ZERO_IP, ethDst=BROADCAST_MAC, ipDst=BROADCAST_IP
        )

    def test_renewing(self):
        """
        A RENEWING REQUEST (unicast from the lease with C{ciaddr} set) is
        answered with an ACK unicast to C{ciaddr}, echoing it.
        """
        lease = ip("192.168.65.3")
        [ack] = self.fromA(
            wire.DHCPREQUEST, ciaddr=lease, src=lease, dst=GATEWAY_IP, dstMAC=SERVER_MAC
        )
        self.assertReply(ack, wire.DHCPACK, replyOptions(wire.DHCPACK), yiaddr=lease, ciaddr=lease)
        self.assertSentCounters({"dhcp.request": 1, "dhcp.ack": 1}, flooded=0)
        self.assertEqual(self.b.takeFrames(), [])

    def test_rebinding(self):
        """
        A REBINDING REQUEST (broadcast, C{ciaddr} set) is answered with an
        ACK unicast to C{ciaddr}, even with the broadcast flag set.
        """
        lease = ip("192.168.65.3")
        [ack] = self.fromA(wire.DHCPREQUEST, ciaddr=lease, src=lease, flags=0x8000)
        self.assertReply(
            ack, wire.DHCPACK, replyOptions(wire.DHCPACK), yiaddr=lease, ciaddr=lease, flags=0x8000
        )

    def test_renewingWrongAddress(self):
        """
        Renewing an address the guest does not hold gets a broadcast NAK
        with C{ciaddr} cleared.
        """
        other = ip("192.168.65.9")
        [nak] = self.fromA(
            wire.DHCPREQUEST, ciaddr=other, src=other, dst=GATEWAY_IP, dstMAC=SERVER_MAC
        )
        self.assertReply(
            nak, wire.DHCPNAK, NAK_OPTIONS, yiaddr=ZERO_IP, ethDst=BROADCAST_MAC, ipDst=BROADCAST_IP
        )

    def test_noAddress(self):
        """
        A REQUEST with neither a requested address nor C{ciaddr} is NAKed.
        """
        [nak] = self.fromA(wire.DHCPREQUEST)
        self.assertEqual(parseDHCPFrame(nak)[3].messageType, wire.DHCPNAK)


class OtherMessageTests(DHCPTestMixin, SynchronousTestCase):
    """
    INFORM, RELEASE, DECLINE and what is ignored.
    """

    def test_informUnicast(self):
        """
        An INFORM from a configured client is answered with an ACK to
        C{ciaddr}, carrying the configuration but no address and no lease
        times.
        """
        lease = ip("192.168.65.3")
        [ack] = self.fromA(
            wire.DHCPINFORM, ciaddr=lease, src=lease, dst=GATEWAY_IP, dstMAC=SERVER_MAC
        )
        self.assertReply(
            ack,
            wire.DHCPACK,
            replyOptions(wire.DHCPACK, leaseTimes=False),
            yiaddr=ZERO_IP,
            ipDst=lease,
            ciaddr=lease,
        )
        self.assertSentCounters({"dhcp.inform": 1, "dhcp.ack": 1}, flooded=0)

    def test_informBroadcast(self):
        """
        An INFORM without C{ciaddr} gets a broadcast ACK; at 291 bytes it is
        padded with zeros to the 300 bytes of a BOOTP message.
        """
        [ack] = self.fromA(wire.DHCPINFORM)
        self.assertEqual(len(ack), 14 + 20 + 8 + 300)
        self.assertEqual(ack[-9:], bytes(9))
        self.assertReply(
            ack,
            wire.DHCPACK,
            replyOptions(wire.DHCPACK, leaseTimes=False),
            yiaddr=ZERO_IP,
            ethDst=BROADCAST_MAC,
            ipDst=BROADCAST_IP,
        )

    def test_release(self):
        """
        A RELEASE gets no reply and is counted; the guest keeps its address.
        """
        lease = ip("192.168.65.3")
        replies = self.fromA(
            wire.DHCPRELEASE,
            ciaddr=lease,
            src=lease,
            dst=GATEWAY_IP,
            dstMAC=SERVER_MAC,
            options=((wire.OPT_SERVER_ID, GATEWAY_IP),),
        )
        self.assertEqual(replies, [])
        self.assertCounters({"dhcp.release": 1}, flooded=0)
        [offer] = self.fromA(wire.DHCPDISCOVER)
        self.assertEqual(parseDHCPFrame(offer)[3].yiaddr, lease)

    def test_decline(self):
        """
        A DECLINE gets no reply and is counted.
        """
        replies = self.fromA(
            wire.DHCPDECLINE,
            options=((wire.OPT_REQUESTED_IP, ip("192.168.65.3")), (wire.OPT_SERVER_ID, GATEWAY_IP)),
        )
        self.assertEqual(replies, [])
        self.assertCounters({"dhcp.decline": 1})

    def test_declineFloodLogsOneLine(self):
        """
        A thousand DECLINEs (and NAKed REQUESTs) make one log line of each
        kind per interval, not one per packet.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(1000):
            self.fromA(
                wire.DHCPDECLINE,
                options=((wire.OPT_REQUESTED_IP, ip("192.168.65.3")), (wire.OPT_SERVER_ID, GATEWAY_IP)),
            )
            self.fromA(wire.DHCPREQUEST)
        mine = [e for e in events if e.get("log_namespace") == "vpnkit.dhcp"]
        self.assertEqual(len(mine), 2, [formatEvent(e) for e in mine])
        self.assertEqual(self.stack.counters.dhcp.decline, 1000)
        self.stack.reactor.advance(30)
        self.fromA(
            wire.DHCPDECLINE,
            options=((wire.OPT_REQUESTED_IP, ip("192.168.65.3")), (wire.OPT_SERVER_ID, GATEWAY_IP)),
        )
        self.assertIn("999 similar messages suppressed", formatEvent(events[-1]))

    def test_unknownClient(self):
        """
        A DISCOVER whose C{chaddr} no port holds is counted as
        C{unknownClient} and not answered.  (Guests cannot send one: the
        switch drops a client message whose C{chaddr} is not the sender's
        MAC; the server is handed it directly.)
        """
        from vpnkit.wire.ipv4 import parseIPv4
        from vpnkit.wire.udp import parseUDP

        frame = buildDHCP(mac("02:50:00:00:00:99"), wire.DHCPDISCOVER)
        ipHeader, datagram = parseIPv4(frame[14:])
        udpHeader, payload = parseUDP(datagram, ipHeader.src, ipHeader.dst)
        self.stack.dhcp.datagramReceived(ipHeader, udpHeader, payload)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {
                "link.linksOpened": 2,
                "dhcp.received": 1,
                "dhcp.discover": 1,
                "dhcp.unknownClient": 1,
            },
        )

    def test_bootp(self):
        """
        A plain BOOTP request (no message type) is ignored.
        """
        self.assertEqual(self.fromA(None), [])
        self.assertCounters({"dhcp.ignored": 1})

    def test_serverMessageTypes(self):
        """
        Server message types (OFFER, ACK, NAK) from a client are ignored.
        """
        for kind in (wire.DHCPOFFER, wire.DHCPACK, wire.DHCPNAK):
            self.assertEqual(self.fromA(kind), [])
        self.assertEqual(self.stack.counters.dhcp.ignored, 3)

    def test_bootReply(self):
        """
        A BOOTREPLY (another DHCP server on the guest's side) is ignored.
        """
        self.assertEqual(self.fromA(wire.DHCPOFFER, op=wire.BOOTREPLY), [])
        self.assertCounters({"dhcp.ignored": 1})

    def test_relayed(self):
        """
        A relayed request (C{giaddr} set) is ignored.
        """
        self.assertEqual(self.fromA(wire.DHCPDISCOVER, giaddr=ip("192.168.65.200")), [])
        self.assertCounters({"dhcp.ignored": 1})

    def test_truncated(self):
        """
        A message shorter than the 240-byte fixed part is counted as
        C{malformed}.
        """
        message = wire.emitDHCP(buildDHCPMessage(self.a.mac, wire.DHCPDISCOVER))
        self.a.send(
            buildUDP(self.a.mac, ZERO_IP, 68, BROADCAST_IP, 67, message[:239], dstMAC=BROADCAST_MAC)
        )
        self.assertEqual(self.a.takeFrames(), [])
        self.assertCounters({"dhcp.malformed": 1})

    def test_noMagicCookie(self):
        """
        A message without the DHCP magic cookie is counted as C{malformed}.
        """
        message = bytearray(wire.emitDHCP(buildDHCPMessage(self.a.mac, wire.DHCPDISCOVER)))
        message[236] = 0
        self.a.send(
            buildUDP(
                self.a.mac, ZERO_IP, 68, BROADCAST_IP, 67, bytes(message), dstMAC=BROADCAST_MAC
            )
        )
        self.assertCounters({"dhcp.malformed": 1})


class UdhcpcExchangeTests(DHCPTestMixin, SynchronousTestCase):
    """
    The whole life of a busybox udhcpc lease.
    """

    def test_exchange(self):
        """
        DISCOVER, OFFER; REQUEST selecting the offer, ACK; a renewal, ACK;
        RELEASE: each reply as the client expects, and the counters say so.
        """
        [offer] = self.fromA(wire.DHCPDISCOVER, xid=1, options=UDHCPC_OPTIONS)
        offered = parseDHCPFrame(offer)[3]
        [ack] = self.fromA(
            wire.DHCPREQUEST,
            xid=2,
            options=(
                (wire.OPT_REQUESTED_IP, offered.yiaddr),
                (wire.OPT_SERVER_ID, offered.option(wire.OPT_SERVER_ID)),
            )
            + UDHCPC_OPTIONS,
        )
        self.assertReply(
            ack, wire.DHCPACK, replyOptions(wire.DHCPACK), yiaddr=offered.yiaddr, xid=2
        )
        lease = offered.yiaddr
        [renewed] = self.fromA(
            wire.DHCPREQUEST, xid=3, ciaddr=lease, src=lease, dst=GATEWAY_IP, dstMAC=SERVER_MAC
        )
        self.assertReply(
            renewed, wire.DHCPACK, replyOptions(wire.DHCPACK), yiaddr=lease, ciaddr=lease, xid=3
        )
        self.assertEqual(
            self.fromA(
                wire.DHCPRELEASE,
                xid=4,
                ciaddr=lease,
                src=lease,
                dst=GATEWAY_IP,
                dstMAC=SERVER_MAC,
                options=((wire.OPT_SERVER_ID, GATEWAY_IP),),
            ),
            [],
        )
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {
                "link.linksOpened": 2,
                "ethernet.received": 4,
                "ethernet.flooded": 2,
                "ipv4.received": 4,
                "ipv4.sent": 3,
                "udp.received": 4,
                "udp.sent": 3,
                "dhcp.received": 4,
                "dhcp.discover": 1,
                "dhcp.offer": 1,
                "dhcp.request": 2,
                "dhcp.ack": 2,
                "dhcp.release": 1,
            },
        )


class SettingsTests(SynchronousTestCase):
    """
    The domain name and search list, from C{--domain} and C{dhcp.json}.
    """

    def offerFrom(self, stack, guest):
        guest.send(buildDHCP(guest.mac, wire.DHCPDISCOVER))
        [offer] = guest.takeFrames()
        return parseDHCPFrame(offer)[3]

    def test_localdomain(self):
        """
        With neither C{--domain} nor C{dhcp.json} the domain is
        C{localdomain} and there is no search list.
        """
        stack, (a,) = makeStack(1)
        offer = self.offerFrom(stack, a)
        self.assertEqual(offer.option(wire.OPT_DOMAIN_NAME), b"localdomain")
        self.assertIsNone(offer.option(wire.OPT_DOMAIN_SEARCH))
        self.assertEqual(stack.dhcpSettings(), DHCPSettings("localdomain", ()))

    def test_fileDomain(self):
        """
        C{dhcp.json}'s C{domainName} beats C{localdomain}.
        """
        stack, (a,) = makeStack(1)
        stack.setDHCPFile(("file.example", ()))
        self.assertEqual(self.offerFrom(stack, a).option(wire.OPT_DOMAIN_NAME), b"file.example")

    def test_commandLineDomain(self):
        """
        C{--domain} beats C{dhcp.json}'s C{domainName}.
        """
        stack, (a,) = makeStack(1, domain="cli.example")
        stack.setDHCPFile(("file.example", ()))
        self.assertEqual(self.offerFrom(stack, a).option(wire.OPT_DOMAIN_NAME), b"cli.example")

    def test_emptyCommandLineDomain(self):
        """
        An empty C{--domain} leaves option 15 out, whatever the file says.
        """
        stack, (a,) = makeStack(1, domain="")
        stack.setDHCPFile(("file.example", ()))
        offer = self.offerFrom(stack, a)
        self.assertIsNone(offer.option(wire.OPT_DOMAIN_NAME))
        self.assertEqual(offer.options, replyOptions(wire.DHCPOFFER, domain=None))

    def test_emptyFileDomain(self):
        """
        An empty C{domainName} in the file leaves option 15 out.
        """
        stack, (a,) = makeStack(1)
        stack.setDHCPFile(("", ()))
        self.assertIsNone(self.offerFrom(stack, a).option(wire.OPT_DOMAIN_NAME))

    def test_searchDomains(self):
        """
        C{searchDomains} appear as option 119 in RFC 3397 encoding, a
        shared suffix replaced by a pointer, after the lease times.
        """
        stack, (a,) = makeStack(1)
        stack.setDHCPFile((None, ("eng.example.com", "example.com", "example.org")))
        offer = self.offerFrom(stack, a)
        encoded = b"\x03eng\x07example\x03com\x00" b"\xc0\x04" b"\x07example\x03org\x00"
        self.assertEqual(offer.option(wire.OPT_DOMAIN_SEARCH), encoded)
        self.assertEqual(
            wire.decodeDomainSearch(encoded), ["eng.example.com", "example.com", "example.org"]
        )
        self.assertEqual(offer.options, replyOptions(wire.DHCPOFFER, search=encoded))

    def test_longSearchList(self):
        """
        A search list longer than 255 encoded bytes is split over
        consecutive option 119 instances (RFC 3396) that join back into the
        whole list.
        """
        stack, (a,) = makeStack(1)
        domains = tuple(f"team{n:02d}.{'x' * 20}{n}.example" for n in range(12))
        stack.setDHCPFile((None, domains))
        # A client that accepts 1500-byte messages (option 57), so the long
        # list fits.
        a.send(
            buildDHCP(
                a.mac,
                wire.DHCPDISCOVER,
                options=((wire.OPT_MAX_MESSAGE_SIZE, (1500).to_bytes(2, "big")),),
            )
        )
        [offer] = a.takeFrames()
        message = parseDHCPFrame(offer)[3]
        parts = [value for code, value in message.options if code == wire.OPT_DOMAIN_SEARCH]
        self.assertEqual([len(p) for p in parts[:-1]], [255] * (len(parts) - 1))
        self.assertGreater(len(parts), 1)
        self.assertEqual(wire.decodeDomainSearch(b"".join(parts)), list(domains))

    def test_fileChangeApplies(self):
        """
        A new C{dhcp.json} applies to the next reply, and its removal
        restores C{localdomain}.
        """
        stack, (a,) = makeStack(1)
        self.assertEqual(self.offerFrom(stack, a).option(wire.OPT_DOMAIN_NAME), b"localdomain")
        stack.setDHCPFile(("new.example", ("new.example",)))
        offer = self.offerFrom(stack, a)
        self.assertEqual(offer.option(wire.OPT_DOMAIN_NAME), b"new.example")
        self.assertEqual(offer.option(wire.OPT_DOMAIN_SEARCH), b"\x03new\x07example\x00")
        stack.setDHCPFile(None)
        offer = self.offerFrom(stack, a)
        self.assertEqual(offer.option(wire.OPT_DOMAIN_NAME), b"localdomain")
        self.assertIsNone(offer.option(wire.OPT_DOMAIN_SEARCH))


class ParseDHCPSettingsTests(SynchronousTestCase):
    """
    L{parseDHCPSettings} reads the reference's C{dhcp.json}.
    """

    path = "/etc/vpnkit/dhcp.json"

    def assertRefused(self, text, problem):
        error = self.assertRaises(ConfigError, parseDHCPSettings, text, self.path)
        self.assertTrue(str(error).startswith(f"{self.path}: "), str(error))
        self.assertIn(problem, str(error))

    def test_both(self):
        """
        Both keys are read.
        """
        self.assertEqual(
            parseDHCPSettings(
                '{"searchDomains": ["a.example", "b.example"], "domainName": "example"}'
            ),
            ("example", ("a.example", "b.example")),
        )

    def test_empty(self):
        """
        Both keys are optional.
        """
        self.assertEqual(parseDHCPSettings("{}"), (None, ()))
        self.assertEqual(parseDHCPSettings('{"domainName": "x"}'), ("x", ()))
        self.assertEqual(parseDHCPSettings('{"searchDomains": ["y"]}'), (None, ("y",)))

    def test_badJSON(self):
        """
        Text that is not JSON is refused, naming the file.
        """
        self.assertRefused('{"domainName": ', "not valid JSON")

    def test_notObject(self):
        """
        JSON that is not an object is refused.
        """
        self.assertRefused('["a.example"]', "expected a JSON object")

    def test_domainNameType(self):
        """
        A C{domainName} that is not a string is refused.
        """
        self.assertRefused('{"domainName": 5}', "domainName must be an ASCII string")

    def test_searchDomainsType(self):
        """
        C{searchDomains} that are not a list of strings are refused.
        """
        self.assertRefused(
            '{"searchDomains": "a.example"}', "searchDomains must be a list of strings"
        )
        self.assertRefused('{"searchDomains": [1]}', "searchDomains must be a list of strings")

    def test_searchDomainUnencodable(self):
        """
        A search domain that cannot be encoded (an empty label, a label over
        63 bytes, non-ASCII) is refused.
        """
        self.assertRefused('{"searchDomains": ["a..example"]}', "searchDomains:")
        self.assertRefused('{"searchDomains": ["%s.example"]}' % ("x" * 64), "searchDomains:")
        self.assertRefused('{"searchDomains": ["b\\u00e9b\\u00e9.example"]}', "searchDomains:")
        self.assertRefused('{"searchDomains": [""]}', "searchDomains:")

    def test_defaultPath(self):
        """
        Without a path the message names C{dhcp.json}.
        """
        error = self.assertRaises(ConfigError, parseDHCPSettings, "nope")
        self.assertTrue(str(error).startswith("dhcp.json: not valid JSON"))


class AnswerTests(SynchronousTestCase):
    """
    The pure L{answer} policy: what to reply and where to send it.
    """

    config = StackConfig()
    settings = DHCPSettings()
    lease = ip("192.168.65.3")
    client = mac("02:50:00:00:00:01")

    def answer(self, messageType, **kwargs):
        request = buildDHCPMessage(self.client, messageType, **kwargs)
        return answer(request, self.lease, self.config, self.settings)

    def test_offer(self):
        """
        A DISCOVER gets an OFFER of the lease, sent to the lease address and
        the client's MAC.
        """
        reply, dstIP, dstMAC = self.answer(wire.DHCPDISCOVER, xid=77)
        self.assertEqual((dstIP, dstMAC), (self.lease, self.client))
        self.assertEqual(
            reply,
            wire.DHCPMessage(
                op=wire.BOOTREPLY,
                xid=77,
                chaddr=self.client.ljust(16, b"\0"),
                options=replyOptions(wire.DHCPOFFER),
                yiaddr=self.lease,
                sname=SNAME,
                padding=b"",
            ),
        )

    def test_offerBroadcastFlag(self):
        """
        The broadcast flag sends the OFFER to the broadcast addresses and is
        echoed in the reply.
        """
        reply, dstIP, dstMAC = self.answer(wire.DHCPDISCOVER, flags=0x8000)
        self.assertEqual((dstIP, dstMAC, reply.flags), (BROADCAST_IP, BROADCAST_MAC, 0x8000))

    def test_ciaddrWins(self):
        """
        A request with C{ciaddr} set is answered to C{ciaddr}, even with the
        broadcast flag.
        """
        _, dstIP, dstMAC = self.answer(wire.DHCPDISCOVER, ciaddr=self.lease, flags=0x8000)
        self.assertEqual((dstIP, dstMAC), (self.lease, self.client))

    def test_selecting(self):
        """
        A REQUEST selecting the lease from this server gets an ACK with
        lease times.
        """
        reply, dstIP, dstMAC = self.answer(
            wire.DHCPREQUEST,
            options=((wire.OPT_REQUESTED_IP, self.lease), (wire.OPT_SERVER_ID, GATEWAY_IP)),
        )
        self.assertEqual(
            (reply.messageType, reply.yiaddr, dstIP, dstMAC),
            (wire.DHCPACK, self.lease, self.lease, self.client),
        )
        self.assertEqual(reply.options, replyOptions(wire.DHCPACK))

    def test_otherServer(self):
        """
        A REQUEST naming another server gets no answer.
        """
        self.assertIsNone(
            self.answer(
                wire.DHCPREQUEST,
                options=((wire.OPT_REQUESTED_IP, self.lease), (wire.OPT_SERVER_ID, OTHER_SERVER)),
            )
        )

    def test_requestedBeatsCiaddr(self):
        """
        The requested-address option is checked before C{ciaddr}.
        """
        reply, _, _ = self.answer(
            wire.DHCPREQUEST,
            ciaddr=self.lease,
            options=((wire.OPT_REQUESTED_IP, ip("192.168.65.9")),),
        )
        self.assertEqual(reply.messageType, wire.DHCPNAK)

    def test_nak(self):
        """
        A NAK goes to the broadcast addresses, with C{ciaddr} and C{yiaddr}
        zero and no configuration.
        """
        reply, dstIP, dstMAC = self.answer(wire.DHCPREQUEST, ciaddr=ip("192.168.65.9"), flags=0)
        self.assertEqual((dstIP, dstMAC), (BROADCAST_IP, BROADCAST_MAC))
        self.assertEqual((reply.ciaddr, reply.yiaddr), (ZERO_IP, ZERO_IP))
        self.assertEqual(reply.options, NAK_OPTIONS)

    def test_inform(self):
        """
        An INFORM gets an ACK without an address or lease times, to
        C{ciaddr}, or broadcast without one.
        """
        reply, dstIP, dstMAC = self.answer(wire.DHCPINFORM, ciaddr=self.lease)
        self.assertEqual(
            (reply.messageType, reply.yiaddr, reply.ciaddr), (wire.DHCPACK, ZERO_IP, self.lease)
        )
        self.assertEqual(reply.options, replyOptions(wire.DHCPACK, leaseTimes=False))
        self.assertEqual((dstIP, dstMAC), (self.lease, self.client))
        _, dstIP, dstMAC = self.answer(wire.DHCPINFORM)
        self.assertEqual((dstIP, dstMAC), (BROADCAST_IP, BROADCAST_MAC))

    def test_silence(self):
        """
        RELEASE, DECLINE, server message types and BOOTP get no answer.
        """
        for kind in (
            wire.DHCPRELEASE,
            wire.DHCPDECLINE,
            wire.DHCPOFFER,
            wire.DHCPACK,
            wire.DHCPNAK,
            None,
        ):
            self.assertIsNone(self.answer(kind), kind)

    def test_ntp(self):
        """
        When an NTP forward exists the gateway is announced as NTP server
        (option 42), after the broadcast address.
        """
        request = buildDHCPMessage(self.client, wire.DHCPDISCOVER)
        reply, _, _ = answer(request, self.lease, self.config, DHCPSettings(ntp=True))
        self.assertEqual(reply.options, replyOptions(wire.DHCPOFFER, ntp=True))

    def test_otherSubnet(self):
        """
        The mask and broadcast address follow the configured subnet.
        """
        config = StackConfig(
            gatewayIP=IPv4Address("10.0.0.1"),
            hostIP=IPv4Address("10.0.0.2"),
            lowestIP=IPv4Address("10.0.0.10"),
            highestIP=IPv4Address("10.0.3.200"),
        )
        request = buildDHCPMessage(self.client, wire.DHCPDISCOVER)
        reply, _, _ = answer(request, ip("10.0.0.10"), config, self.settings)
        self.assertEqual(reply.option(wire.OPT_SUBNET_MASK), b"\xff\xff\xfc\x00")
        self.assertEqual(reply.option(wire.OPT_BROADCAST), ip("10.0.3.255"))
        self.assertEqual(reply.option(wire.OPT_ROUTER), ip("10.0.0.1"))
        self.assertEqual(reply.option(wire.OPT_SERVER_ID), ip("10.0.0.1"))


class ReplySizeTests(SynchronousTestCase):
    """
    A reply never exceeds what the client accepts.
    """

    def request(self, maxSize=None):
        from vpnkit.wire import dhcp as wire

        options = [(wire.OPT_MESSAGE_TYPE, bytes((wire.DHCPDISCOVER,)))]
        if maxSize is not None:
            options.append((wire.OPT_MAX_MESSAGE_SIZE, maxSize.to_bytes(2, "big")))
        return wire.DHCPMessage(
            op=wire.BOOTREQUEST,
            xid=1,
            chaddr=b"\x02\x50\0\0\0\x01".ljust(16, b"\0"),
            options=tuple(options),
        )

    def test_longSearchListLeftOutWhenTooBig(self):
        """
        A search list that would push the OFFER past 576 bytes (the size
        every client accepts) is left out; the address and the rest of the
        configuration still go out.
        """
        from vpnkit.config import StackConfig
        from vpnkit.protocols.dhcp import DHCPSettings, answer
        from vpnkit.wire import dhcp as wire

        domains = tuple(f"team{i}.department.example.com" for i in range(40))
        settings = DHCPSettings(searchDomains=domains)
        reply, _, _ = answer(self.request(), b"\xc0\xa8\x41\x03", StackConfig(), settings)
        self.assertLessEqual(len(wire.emitDHCP(reply)), 576 - 28)
        self.assertIsNone(reply.option(wire.OPT_DOMAIN_SEARCH))
        self.assertEqual(reply.yiaddr, b"\xc0\xa8\x41\x03")
        self.assertEqual(reply.option(wire.OPT_DOMAIN_NAME), b"localdomain")

    def test_clientMaximumHonoured(self):
        """
        A client announcing a larger maximum (option 57) gets the whole
        search list.
        """
        from vpnkit.config import StackConfig
        from vpnkit.protocols.dhcp import DHCPSettings, answer
        from vpnkit.wire import dhcp as wire

        domains = tuple(f"team{i}.department.example.com" for i in range(40))
        settings = DHCPSettings(searchDomains=domains)
        reply, _, _ = answer(self.request(1500), b"\xc0\xa8\x41\x03", StackConfig(), settings)
        self.assertEqual(
            wire.decodeDomainSearch(reply.option(wire.OPT_DOMAIN_SEARCH)), list(domains)
        )
        self.assertLessEqual(len(wire.emitDHCP(reply)), 1500 - 28)

    def test_nakHasNoServerName(self):
        """
        A NAK leaves sname empty (RFC 2131 table 3).
        """
        from vpnkit.config import StackConfig
        from vpnkit.protocols.dhcp import DHCPSettings, answer
        from vpnkit.wire import dhcp as wire

        request = wire.DHCPMessage(
            op=wire.BOOTREQUEST,
            xid=1,
            chaddr=b"\x02\x50\0\0\0\x01".ljust(16, b"\0"),
            options=(
                (wire.OPT_MESSAGE_TYPE, bytes((wire.DHCPREQUEST,))),
                (wire.OPT_REQUESTED_IP, b"\xc0\xa8\x41\x09"),
            ),
        )
        reply, _, _ = answer(request, b"\xc0\xa8\x41\x03", StackConfig(), DHCPSettings())
        self.assertEqual(reply.messageType, wire.DHCPNAK)
        self.assertEqual(reply.sname, b"\0" * 64)

    def test_nonASCIIDomainRefused(self):
        """
        dhcp.json with a non-ASCII domainName is a configuration error, not
        a name with question marks in it.
        """
        from vpnkit.config import ConfigError
        from vpnkit.protocols.dhcp import parseDHCPSettings

        self.assertRaises(ConfigError, parseDHCPSettings, '{"domainName": "bücher.example"}')
