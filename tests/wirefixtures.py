"""
Named frames from C{tests/fixtures/linux-guest.pcap}, for the wire-format
tests.

The capture is real Linux kernel and busybox C{udhcpc} output on the guest's
tap device (MAC 02:50:00:00:00:01, MTU 1500), talking to slirp4netns
(gateway 10.0.2.2 at 52:55:0a:00:02:02, DNS 10.0.2.3); the guest is given
10.0.2.15.  In order: IPv6 MLD/neighbour solicitations, DHCP
DISCOVER/OFFER/REQUEST/ACK, ARP for the gateway, two pings, an HTTP fetch
over TCP, DNS over UDP and TCP to port 5353, a 4000-byte UDP datagram to
port 7007 and its echo (three IPv4 fragments each), and a SYN answered by
RST/ACK.

Frames are picked out by their content (with dpkt, independently of the
code under test), not by their position in the file, so a re-capture with
an extra frame in front does not silently shift every fixture.
"""

import os

import dpkt

__all__ = [
    "PCAP_PATH",
    "FRAMES",
    "GUEST_MAC",
    "GATEWAY_MAC",
    "GUEST_IP",
    "GATEWAY_IP",
    "DNS_IP",
    "UNSPECIFIED_IP",
    "LIMITED_BROADCAST_IP",
    "ETHERNET_HEADER",
    "DHCP_DISCOVER",
    "DHCP_OFFER",
    "DHCP_REQUEST",
    "DHCP_ACK",
    "ARP_REQUEST",
    "ARP_REPLY",
    "ICMP_ECHO_REQUEST",
    "ICMP_ECHO_REPLY",
    "TCP_SYN",
    "TCP_RST",
    "DNS_QUERY",
    "DNS_ANSWER",
    "FRAGMENTS",
    "ECHO_FRAGMENTS",
    "IPV6_FRAMES",
    "IPV4_FRAMES",
    "UDP_FRAMES",
    "ICMP_FRAMES",
    "ARP_FRAMES",
    "ipPacket",
    "ipPayload",
    "udpDatagram",
    "udpPayload",
    "referenceSum",
    "withIPv4Checksum",
]

PCAP_PATH = os.path.join(os.path.dirname(__file__), "fixtures", "linux-guest.pcap")

GUEST_MAC = bytes.fromhex("025000000001")
GATEWAY_MAC = bytes.fromhex("52550a000202")
GUEST_IP = bytes((10, 0, 2, 15))
GATEWAY_IP = bytes((10, 0, 2, 2))
DNS_IP = bytes((10, 0, 2, 3))
UNSPECIFIED_IP = bytes(4)
LIMITED_BROADCAST_IP = b"\xff" * 4

ETHERNET_HEADER = 14


def loadFrames(path=PCAP_PATH):
    """
    Every frame of a classic Ethernet pcap file, as C{bytes}, in order.
    """
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise ValueError(f"{path} is not an Ethernet capture")
        return [bytes(frame) for _, frame in reader]


FRAMES = loadFrames()


def _ip(frame):
    """
    The dpkt IPv4 object of C{frame}, or C{None}.
    """
    eth = dpkt.ethernet.Ethernet(frame)
    if eth.type != dpkt.ethernet.ETH_TYPE_IP:
        return None
    return eth.data


def _first(predicate, what):
    for frame in FRAMES:
        if predicate(frame):
            return frame
    raise LookupError(f"no {what} in {PCAP_PATH}")


def _all(predicate):
    return [frame for frame in FRAMES if predicate(frame)]


def _isUDP(ip, sport=None, dport=None):
    if ip is None or ip.p != dpkt.ip.IP_PROTO_UDP or ip.mf or ip.offset:
        return False
    udp = ip.data
    if not isinstance(udp, dpkt.udp.UDP):
        return False
    return (sport is None or udp.sport == sport) and (dport is None or udp.dport == dport)


def _dhcpType(frame):
    ip = _ip(frame)
    if not (_isUDP(ip, 68, 67) or _isUDP(ip, 67, 68)):
        return None
    message = dpkt.dhcp.DHCP(ip.data.data)
    for code, value in message.opts:
        if code == dpkt.dhcp.DHCP_OPT_MSGTYPE:
            return value[0]
    return None


def _isDHCP(kind):
    return lambda frame: _dhcpType(frame) == kind


def _arpOp(op):
    def predicate(frame):
        eth = dpkt.ethernet.Ethernet(frame)
        return eth.type == dpkt.ethernet.ETH_TYPE_ARP and eth.data.op == op

    return predicate


def _icmpType(icmpType):
    def predicate(frame):
        ip = _ip(frame)
        return (
            ip is not None
            and ip.p == dpkt.ip.IP_PROTO_ICMP
            and ip.data.type == icmpType
        )

    return predicate


def _tcpFlags(required, forbidden=0):
    def predicate(frame):
        ip = _ip(frame)
        if ip is None or ip.p != dpkt.ip.IP_PROTO_TCP:
            return False
        flags = ip.data.flags
        return flags & required == required and not flags & forbidden

    return predicate


def _isDNS(fromGuest):
    def predicate(frame):
        ip = _ip(frame)
        if fromGuest:
            return _isUDP(ip, dport=5353) and ip.src == GUEST_IP
        return _isUDP(ip, sport=5353) and ip.src == GATEWAY_IP

    return predicate


def _fragmentOf(src, udpPort):
    """
    The three fragments of the 4000-byte UDP datagram from C{src}: the first
    fragment carries the UDP header with C{udpPort} on either side; the
    others are found by its IP identification.
    """
    first = _first(
        lambda frame: (
            (ip := _ip(frame)) is not None
            and ip.src == src
            and ip.p == dpkt.ip.IP_PROTO_UDP
            and ip.mf
            and not ip.offset
            and udpPort in (ip.data.sport, ip.data.dport)
        ),
        f"first fragment from {src.hex()}",
    )
    ident = _ip(first).id
    return _all(
        lambda frame: (
            (ip := _ip(frame)) is not None
            and ip.src == src
            and ip.p == dpkt.ip.IP_PROTO_UDP
            and ip.id == ident
        )
    )


# DHCP, as sent by busybox udhcpc and answered by slirp4netns.
DHCP_DISCOVER = _first(_isDHCP(dpkt.dhcp.DHCPDISCOVER), "DHCP DISCOVER")
DHCP_OFFER = _first(_isDHCP(dpkt.dhcp.DHCPOFFER), "DHCP OFFER")
DHCP_REQUEST = _first(_isDHCP(dpkt.dhcp.DHCPREQUEST), "DHCP REQUEST")
DHCP_ACK = _first(_isDHCP(dpkt.dhcp.DHCPACK), "DHCP ACK")

# "who-has 10.0.2.2 tell 10.0.2.15" (42 bytes) and its reply (64 bytes: the
# 28-byte ARP packet plus 22 bytes of Ethernet padding).
ARP_REQUEST = _first(_arpOp(dpkt.arp.ARP_OP_REQUEST), "ARP request")
ARP_REPLY = _first(_arpOp(dpkt.arp.ARP_OP_REPLY), "ARP reply")

# ping -c 2 10.0.2.2: the first request and the first reply (id 4556, seq 0).
ICMP_ECHO_REQUEST = _first(_icmpType(dpkt.icmp.ICMP_ECHO), "ICMP echo request")
ICMP_ECHO_REPLY = _first(_icmpType(dpkt.icmp.ICMP_ECHOREPLY), "ICMP echo reply")

# The curl SYN (MSS, SACK-permitted, timestamps, window scale) and the RST/ACK
# from the closed port.
TCP_SYN = _first(_tcpFlags(dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK), "TCP SYN")
TCP_RST = _first(_tcpFlags(dpkt.tcp.TH_RST), "TCP RST")

# dig @10.0.2.2 -p 5353 over UDP.
DNS_QUERY = _first(_isDNS(fromGuest=True), "UDP DNS query")
DNS_ANSWER = _first(_isDNS(fromGuest=False), "UDP DNS answer")

# The 4000-byte UDP datagram to port 7007 (three IPv4 fragments) and its echo.
FRAGMENTS = _fragmentOf(GUEST_IP, 7007)
ECHO_FRAGMENTS = _fragmentOf(GATEWAY_IP, 7007)

IPV6_FRAMES = [f for f in FRAMES if f[12:14] == b"\x86\xdd"]
IPV4_FRAMES = [f for f in FRAMES if f[12:14] == b"\x08\x00"]
UDP_FRAMES = [f for f in IPV4_FRAMES if _isUDP(_ip(f))]
ICMP_FRAMES = [f for f in IPV4_FRAMES if _ip(f).p == dpkt.ip.IP_PROTO_ICMP]
ARP_FRAMES = [f for f in FRAMES if f[12:14] == b"\x08\x06"]


def ipPacket(frame):
    """
    The IPv4 datagram in C{frame}: everything after the 14-byte Ethernet
    header (none of the captured frames carries Ethernet padding).
    """
    return frame[ETHERNET_HEADER:]


def ipPayload(frame):
    """
    The payload of the IPv4 datagram in C{frame}, cut by its own IHL and
    total length fields.
    """
    packet = ipPacket(frame)
    headerLength = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    return packet[headerLength:total]


def udpDatagram(frame):
    """
    The UDP datagram (header and payload) in C{frame}.
    """
    return ipPayload(frame)


def udpPayload(frame):
    """
    The payload of the UDP datagram in C{frame}, cut by the UDP length field.
    """
    datagram = udpDatagram(frame)
    return datagram[8 : int.from_bytes(datagram[4:6], "big")]


def referenceSum(data, initial=0):
    """
    The RFC 1071 ones'-complement sum the slow, obvious way: pad to an even
    length, add 16-bit big-endian words one at a time, folding the carry
    back in after every addition.  An oracle independent of
    L{vpnkit.wire.checksum}.
    """
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = initial
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def withIPv4Checksum(packet):
    """
    C{packet} with its IPv4 header checksum (bytes 10-11) recomputed by
    L{referenceSum} over the header its IHL describes, for building
    deliberately odd but checksum-valid datagrams.
    """
    headerLength = (packet[0] & 0x0F) * 4
    header = bytearray(packet[:headerLength])
    header[10:12] = b"\0\0"
    header[10:12] = (~referenceSum(header) & 0xFFFF).to_bytes(2, "big")
    return bytes(header) + bytes(packet[headerLength:])
