"""
Shared helpers for the in-memory layer and stack tests.

A L{FrameRecorder} stands in for a guest link and keeps every frame the
switch hands it; the C{build*} functions make complete Ethernet frames with
correct checksums through the L{vpnkit.wire} emitters; the C{parse*Frame}
functions take a frame vpnkit sent apart again, verifying every checksum on
the way; L{makeStack} gives a L{vpnkit.stack.Stack} on a L{task.Clock} with
guests already plugged in.
"""

import os
import uuid as _uuid
from dataclasses import dataclass, fields
from ipaddress import IPv4Address

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from vpnkit.config import DEFAULT_SERVER_MAC, StackConfig
from vpnkit.interfaces import (
    IHostNetwork,
    IEthernetPayloadReceiver,
    IIPReceiver,
    IIPSender,
    ILink,
    IUDPService,
)
from vpnkit.stack import Stack
from vpnkit.wire import dhcp as wiredhcp
from vpnkit.wire.arp import ARP_REPLY, ARP_REQUEST, ARPPacket, emitARP, parseARP
from vpnkit.wire.checksum import finishChecksum
from vpnkit.wire.ethernet import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    EthernetHeader,
    emitEthernet,
    parseEthernet,
    parseMAC,
)
from vpnkit.wire.icmp import ECHO_REQUEST, ICMPMessage, emitICMP, parseICMP
from vpnkit.wire.ipv4 import FLAG_DF, PROTO_ICMP, PROTO_UDP, IPv4Header, emitIPv4, parseIPv4
from vpnkit.wire.udp import HEADER_LENGTH as UDP_HEADER_LENGTH
from vpnkit.wire.udp import emitUDP, parseUDP

__all__ = [
    "SERVER_MAC",
    "BROADCAST_MAC",
    "ZERO_IP",
    "BROADCAST_IP",
    "GATEWAY_IP",
    "HOST_IP",
    "SUBNET_BROADCAST_IP",
    "REMOTE_IP",
    "ip",
    "mac",
    "FrameRecorder",
    "PayloadRecorder",
    "DatagramRecorder",
    "ServiceRecorder",
    "SenderRecorder",
    "buildEthernet",
    "buildARPRequest",
    "buildARPReply",
    "buildIPv4",
    "buildICMPEcho",
    "buildUDP",
    "buildDHCPMessage",
    "buildDHCP",
    "parseARPFrame",
    "parseIPv4Frame",
    "parseICMPFrame",
    "parseUDPFrame",
    "parseDHCPFrame",
    "Guest",
    "makeStack",
    "attachGuest",
    "nonZeroCounters",
    "capturedFrames",
]


def ip(text):
    """
    The packed form of a dotted-quad address.
    """
    return IPv4Address(text).packed


def mac(text):
    """
    The 6 bytes of a colon-separated MAC address.
    """
    return parseMAC(text)


SERVER_MAC = DEFAULT_SERVER_MAC
BROADCAST_MAC = b"\xff" * 6
ZERO_IP = b"\0\0\0\0"
BROADCAST_IP = b"\xff\xff\xff\xff"
GATEWAY_IP = ip("192.168.65.1")
HOST_IP = ip("192.168.65.2")
SUBNET_BROADCAST_IP = ip("192.168.65.255")
REMOTE_IP = ip("198.51.100.10")


# -- fakes ---------------------------------------------------------------


@implementer(ILink)
class FrameRecorder:
    """
    A guest link that keeps every frame sent to it.

    @ivar frames: the frames, oldest first.
    @ivar closeReasons: the reasons L{closeLink} was called with.
    """

    def __init__(self, description="recorder", maxFrameSize=None, segmentLimit=0):
        self.description = description
        self.maxFrameSize = maxFrameSize or StackConfig().maxFrameSize
        self.segmentLimit = segmentLimit
        self.frames = []
        self.closeReasons = []

    def sendFrame(self, frame):
        self.frames.append(bytes(frame))

    def closeLink(self, reason):
        self.closeReasons.append(reason)

    def takeFrames(self):
        """
        The frames recorded so far, forgetting them.
        """
        frames, self.frames = self.frames, []
        return frames


@implementer(IEthernetPayloadReceiver)
class PayloadRecorder:
    """
    An EtherType receiver that keeps C{(header, payload)} pairs.
    """

    def __init__(self):
        self.received = []

    def ethernetPayloadReceived(self, header, payload):
        self.received.append((header, bytes(payload)))


@implementer(IIPReceiver)
class DatagramRecorder:
    """
    An IP protocol receiver that keeps C{(header, payload)} pairs.
    """

    def __init__(self):
        self.received = []

    def ipPayloadReceived(self, header, payload):
        self.received.append((header, bytes(payload)))


@implementer(IUDPService)
class ServiceRecorder:
    """
    A UDP service that keeps C{(ipHeader, udpHeader, payload)} triples.
    """

    def __init__(self):
        self.received = []

    def datagramReceived(self, ipHeader, udpHeader, payload):
        self.received.append((ipHeader, udpHeader, bytes(payload)))


@implementer(IIPSender)
class SenderRecorder:
    """
    An L{IIPSender} that keeps what it is asked to send and answers
    C{result}.
    """

    def __init__(self, result=True):
        self.sent = []
        self.result = result

    def sendIP(
        self, src, dst, protocol, payload, ttl=64, dstMAC=None, tail=b"", partialChecksum=None
    ):
        # Kept as a link without checksum offload would carry it.
        if partialChecksum is not None:
            payload = finishChecksum(payload, 0, partialChecksum, tail)
        self.sent.append((src, dst, protocol, bytes(payload) + bytes(tail), ttl, dstMAC))
        return self.result


# -- frame builders --------------------------------------------------------


def buildEthernet(dst, src, ethertype, payload):
    """
    A complete Ethernet II frame.
    """
    return emitEthernet(EthernetHeader(dst, src, ethertype), payload)


def buildARPRequest(srcMAC, srcIP, targetIP, dstMAC=BROADCAST_MAC, targetMAC=b"\0" * 6):
    """
    An ARP request frame from C{srcMAC}/C{srcIP} asking for C{targetIP}.
    """
    packet = ARPPacket(ARP_REQUEST, srcMAC, srcIP, targetMAC, targetIP)
    return buildEthernet(dstMAC, srcMAC, ETHERTYPE_ARP, emitARP(packet))


def buildARPReply(srcMAC, srcIP, targetMAC, targetIP, dstMAC=None):
    """
    An ARP reply frame saying C{srcIP} is at C{srcMAC}.
    """
    packet = ARPPacket(ARP_REPLY, srcMAC, srcIP, targetMAC, targetIP)
    return buildEthernet(dstMAC or targetMAC, srcMAC, ETHERTYPE_ARP, emitARP(packet))


def buildIPv4(
    srcMAC,
    src,
    dst,
    protocol,
    payload,
    dstMAC=SERVER_MAC,
    ttl=64,
    ident=0,
    flags=FLAG_DF,
    fragmentOffset=0,
    tos=0,
    options=b"",
):
    """
    A frame carrying one IPv4 datagram with a correct header checksum.
    """
    header = IPv4Header(tos, 0, ident, flags, fragmentOffset, ttl, protocol, 0, src, dst, options)
    return buildEthernet(dstMAC, srcMAC, ETHERTYPE_IPV4, emitIPv4(header, payload))


def buildICMPEcho(
    srcMAC,
    src,
    dst,
    ident=0x1234,
    seq=1,
    payload=bytes(range(56)),
    type=ECHO_REQUEST,
    code=0,
    dstMAC=SERVER_MAC,
    ttl=64,
):
    """
    A frame carrying an ICMP echo request (or another echo-shaped message).
    """
    rest = ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
    icmp = emitICMP(ICMPMessage(type, code, 0, rest, payload))
    return buildIPv4(srcMAC, src, dst, PROTO_ICMP, icmp, dstMAC=dstMAC, ttl=ttl)


def buildUDP(srcMAC, src, srcPort, dst, dstPort, payload, dstMAC=SERVER_MAC, ttl=64, checksum=True):
    """
    A frame carrying one UDP datagram; C{checksum=False} sends checksum 0
    ("not computed").
    """
    datagram = emitUDP(srcPort, dstPort, payload, src, dst)
    if not checksum:
        datagram = datagram[:6] + b"\0\0" + datagram[8:]
    return buildIPv4(srcMAC, src, dst, PROTO_UDP, datagram, dstMAC=dstMAC, ttl=ttl)


def buildDHCPMessage(
    chaddr,
    messageType,
    xid=0x3D1D0A2B,
    options=(),
    ciaddr=ZERO_IP,
    flags=0,
    op=wiredhcp.BOOTREQUEST,
    giaddr=ZERO_IP,
):
    """
    A client L{wiredhcp.DHCPMessage}; C{messageType=None} leaves option 53
    out (plain BOOTP).
    """
    head = () if messageType is None else ((wiredhcp.OPT_MESSAGE_TYPE, bytes((messageType,))),)
    return wiredhcp.DHCPMessage(
        op=op,
        xid=xid,
        chaddr=chaddr.ljust(16, b"\0"),
        options=head + tuple(options),
        flags=flags,
        ciaddr=ciaddr,
        giaddr=giaddr,
    )


def buildDHCP(
    srcMAC,
    messageType,
    xid=0x3D1D0A2B,
    options=(),
    ciaddr=ZERO_IP,
    flags=0,
    src=ZERO_IP,
    dst=BROADCAST_IP,
    dstMAC=BROADCAST_MAC,
    chaddr=None,
    op=wiredhcp.BOOTREQUEST,
    giaddr=ZERO_IP,
):
    """
    A frame carrying a DHCP client message from port 68 to port 67, by
    default broadcast from 0.0.0.0 as a client in INIT state sends it.
    """
    message = buildDHCPMessage(
        chaddr if chaddr is not None else srcMAC,
        messageType,
        xid=xid,
        options=options,
        ciaddr=ciaddr,
        flags=flags,
        op=op,
        giaddr=giaddr,
    )
    return buildUDP(srcMAC, src, 68, dst, 67, wiredhcp.emitDHCP(message), dstMAC=dstMAC)


# -- frame parsers (every checksum verified) -------------------------------


def parseARPFrame(frame):
    """
    @return: C{(EthernetHeader, ARPPacket)}
    """
    eth, payload = parseEthernet(frame)
    assert eth.ethertype == ETHERTYPE_ARP, hex(eth.ethertype)
    return eth, parseARP(payload)


def parseIPv4Frame(frame):
    """
    @return: C{(EthernetHeader, IPv4Header, payload)}
    """
    eth, payload = parseEthernet(frame)
    assert eth.ethertype == ETHERTYPE_IPV4, hex(eth.ethertype)
    header, data = parseIPv4(payload)
    return eth, header, bytes(data)


def parseICMPFrame(frame):
    """
    @return: C{(EthernetHeader, IPv4Header, ICMPMessage)}
    """
    eth, header, data = parseIPv4Frame(frame)
    assert header.protocol == PROTO_ICMP, header.protocol
    return eth, header, parseICMP(data)


def parseUDPFrame(frame):
    """
    @return: C{(EthernetHeader, IPv4Header, UDPHeader, payload)}; the UDP
        checksum must be present and verify.
    """
    eth, header, data = parseIPv4Frame(frame)
    assert header.protocol == PROTO_UDP, header.protocol
    assert len(data) >= UDP_HEADER_LENGTH and data[6:8] != b"\0\0", "no UDP checksum"
    udp, payload = parseUDP(data, header.src, header.dst)
    return eth, header, udp, bytes(payload)


def parseDHCPFrame(frame):
    """
    @return: C{(EthernetHeader, IPv4Header, UDPHeader, DHCPMessage)}
    """
    eth, header, udp, payload = parseUDPFrame(frame)
    return eth, header, udp, wiredhcp.parseDHCP(payload)


# -- a stack with guests ---------------------------------------------------


@dataclass
class Guest:
    """
    One guest plugged into a test L{Stack}.

    @ivar link: its L{FrameRecorder}.
    @ivar port: its L{vpnkit.protocols.switch.SwitchPort}.
    @ivar lease: its L{vpnkit.leases.Lease}.
    """

    link: FrameRecorder
    port: object
    lease: object

    @property
    def mac(self):
        """
        The MAC the guest uses on the wire (its lease's).
        """
        return self.lease.mac

    @property
    def ip(self):
        """
        The guest's packed address.
        """
        return self.lease.ip.packed

    def send(self, frame):
        """
        The guest sends C{frame} into the switch.
        """
        self.port.frameReceived(frame)

    def takeFrames(self):
        return self.link.takeFrames()


def attachGuest(stack, n, learnMAC=False):
    """
    Attach guest number C{n} (from 1) the way a vmnet link does: a lease for
    a fixed UUID, the lease's MAC given to the switch (or left for it to
    learn when C{learnMAC}, the way a QEMU link does).
    """
    lease = stack.guests.leaseForUUID(str(_uuid.UUID(int=n)))
    link = FrameRecorder(f"guest{n}", stack.config.maxFrameSize)
    port = stack.guests.attach(link, lease, None if learnMAC else lease.mac)
    return Guest(link, port, lease)


@dataclass
class PendingConnect:
    host: str
    port: int
    protocol: object
    timeout: float
    deferred: Deferred


@implementer(IHostNetwork)
class FakeHostNetwork:
    """
    An L{IHostNetwork} whose connects the test completes by hand.  Checked
    against the real one on loopback in C{test_host_network_real.py}.

    @ivar connects: every L{PendingConnect}, in order.
    """

    def __init__(self):
        self.connects = []

    def connectTCP(self, host, port, protocol, timeout):
        d = Deferred()
        self.connects.append(PendingConnect(host, port, protocol, timeout, d))
        return d

    def succeed(self, index=-1):
        """
        Complete a connect the way Twisted does: the protocol gets a
        (string) transport and C{connectionMade}, then the L{Deferred} fires.

        @return: the host-side L{StringTransport}.
        """
        pending = self.connects[index]
        transport = StringTransport()
        pending.protocol.makeConnection(transport)
        pending.deferred.callback(pending.protocol)
        return transport

    def fail(self, exception, index=-1):
        self.connects[index].deferred.errback(exception)


def makeStack(
    guests=1,
    learnMACs=False,
    hostNetwork=None,
    sockets=None,
    dnsConfig=None,
    systemLookup=None,
    **config,
):
    """
    A L{Stack} for C{StackConfig(**config)} on a L{task.Clock}, with
    C{guests} guests attached: the first holds 192.168.65.3 and
    02:50:00:00:00:01, the next .4 and :02, and so on.  Host connections
    go to a L{FakeHostNetwork} (C{stack.hostNetwork}), host datagram
    sockets are L{tests.fakesockets.FakeDatagramSockets}
    (C{stack.sockets}); C{dnsConfig} and C{systemLookup} go to the stack.

    @return: C{(stack, [Guest, ...])}
    """
    from tests.fakesockets import FakeDatagramSockets

    hostNetwork = hostNetwork if hostNetwork is not None else FakeHostNetwork()
    sockets = sockets if sockets is not None else FakeDatagramSockets()
    stack = Stack(
        StackConfig(**config),
        reactor=task.Clock(),
        hostNetwork=hostNetwork,
        sockets=sockets,
        dnsConfig=dnsConfig,
        systemLookup=systemLookup,
    )
    stack.hostNetwork = hostNetwork
    stack.sockets = sockets
    return stack, [attachGuest(stack, n, learnMACs) for n in range(1, guests + 1)]


def nonZeroCounters(counters):
    """
    Every non-zero field of a L{vpnkit.counters.StackCounters} as
    C{{"layer.field": value}}, so a test can say exactly what was touched.
    """
    result = {}
    for layer in fields(counters):
        group = getattr(counters, layer.name)
        for f in fields(group):
            value = getattr(group, f.name)
            if value:
                result[f"{layer.name}.{f.name}"] = value
    return result


_CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "linux-guest.pcap")
_captured = None


def capturedFrames():
    """
    The frames of C{tests/fixtures/linux-guest.pcap}, in order: a real Linux
    guest (MAC 02:50:00:00:00:01, busybox udhcpc) talking to slirp4netns
    (gateway 10.0.2.2, MAC 52:55:0a:00:02:02); see the fixture's README.
    """
    global _captured
    if _captured is None:
        import dpkt

        with open(_CAPTURE, "rb") as f:
            _captured = [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]
    return list(_captured)
