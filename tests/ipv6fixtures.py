"""
Named frames from C{tests/fixtures/linux-guest-ipv6.pcap}, for the IPv6
wire-format and policy tests.

The capture (made by C{tests/fixtures/capture-linux-guest-ipv6.sh}) is a
real Linux guest (MAC 02:50:00:00:00:01, MTU 1500, SLAAC address
fd00:65::50:ff:fe00:1) on its own link with a router standing where vpnkit
stands: the server MAC f6:16:36:bc:f9:c6, fd00:65::1, dnsmasq sending
Router Advertisements and answering DHCPv6.  The guest's kernel sends MLD
reports (behind a hop-by-hop header), duplicate address probes, Router and
Neighbor Solicitations; then a ping, a 3000-byte ping (fragments), and
packets that draw each ICMPv6 error; then ISC dhclient -6 runs a stateful
exchange, a Confirm, a Release and an Information-request.

Frames are picked out by their content with dpkt (independently of the
code under test), not by their position in the file.
"""

import os
from ipaddress import IPv6Address

import dpkt

from tests.wirefixtures import loadFrames

__all__ = [
    "PCAP_PATH",
    "FRAMES",
    "GUEST_MAC",
    "ROUTER_MAC",
    "GUEST_LINK_LOCAL",
    "ROUTER_LINK_LOCAL",
    "GUEST_ADDRESS",
    "GATEWAY",
    "DHCP_ADDRESS",
    "ALL_NODES",
    "MLD_REPORT",
    "DAD_PROBE",
    "DAD_PROBE_GLOBAL",
    "ROUTER_SOLICITATION",
    "ROUTER_ADVERTISEMENT",
    "UNSOLICITED_ADVERTISEMENT",
    "NEIGHBOR_SOLICITATION",
    "NEIGHBOR_ADVERTISEMENT",
    "GUEST_ADVERTISEMENT",
    "ECHO_REQUEST",
    "ECHO_REPLY",
    "FRAGMENTS",
    "REPLY_FRAGMENTS",
    "UDP_TO_CLOSED_PORT",
    "PORT_UNREACHABLE",
    "UNKNOWN_NEXT_HEADER",
    "PARAMETER_PROBLEM",
    "HOP_LIMITED_ECHO",
    "TIME_EXCEEDED",
    "BIG_ECHO",
    "PACKET_TOO_BIG",
    "DHCPV6_FRAMES",
    "SOLICIT",
    "ADVERTISE",
    "REQUEST",
    "REQUEST_REPLY",
    "CONFIRM",
    "CONFIRM_REPLY",
    "RELEASE",
    "RELEASE_REPLY",
    "INFORMATION_REQUEST",
    "INFORMATION_REPLY",
    "ICMPV6_FRAMES",
    "ipv6Packet",
    "ipv6Payload",
    "udpPayload6",
]

PCAP_PATH = os.path.join(os.path.dirname(__file__), "fixtures", "linux-guest-ipv6.pcap")
FRAMES = loadFrames(PCAP_PATH)

GUEST_MAC = bytes.fromhex("025000000001")
ROUTER_MAC = bytes.fromhex("f61636bcf9c6")
GUEST_LINK_LOCAL = IPv6Address("fe80::50:ff:fe00:1").packed
ROUTER_LINK_LOCAL = IPv6Address("fe80::f416:36ff:febc:f9c6").packed
GUEST_ADDRESS = IPv6Address("fd00:65::50:ff:fe00:1").packed
GATEWAY = IPv6Address("fd00:65::1").packed
DHCP_ADDRESS = IPv6Address("fd00:65::60").packed
ALL_NODES = IPv6Address("ff02::1").packed
_UNSPECIFIED = bytes(16)


def _ip6(frame):
    return dpkt.ethernet.Ethernet(frame).data


def _icmp6(frame):
    """
    The dpkt ICMPv6 object of C{frame} (unfragmented), or C{None}.
    """
    ip = _ip6(frame)
    if not isinstance(ip, dpkt.ip6.IP6) or 44 in ip.extension_hdrs:
        return None
    return ip.data if isinstance(ip.data, dpkt.icmp6.ICMP6) else None


def _first(predicate, what):
    for frame in FRAMES:
        if predicate(frame):
            return frame
    raise LookupError(f"no {what} in {PCAP_PATH}")


def _icmpType(type_, src=None, dst=None, code=None):
    def predicate(frame):
        icmp = _icmp6(frame)
        ip = _ip6(frame)
        return (
            icmp is not None
            and icmp.type == type_
            and (code is None or icmp.code == code)
            and (src is None or ip.src == src)
            and (dst is None or ip.dst == dst)
        )

    return predicate


def _dhcpv6(frame):
    """
    The UDP payload of a DHCPv6 frame, or C{None}.
    """
    ip = _ip6(frame)
    if not isinstance(ip, dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.udp.UDP):
        return None
    if {ip.data.sport, ip.data.dport} != {546, 547}:
        return None
    return bytes(ip.data.data)


def _dhcpType(msgType, after=None):
    def predicate(frame):
        payload = _dhcpv6(frame)
        if payload is None or payload[0] != msgType:
            return False
        return after is None or payload[1:4] == _dhcpv6(after)[1:4]

    return predicate


def _fragments(src):
    return [
        frame
        for frame in FRAMES
        if isinstance(ip := _ip6(frame), dpkt.ip6.IP6) and 44 in ip.extension_hdrs and ip.src == src
    ]


def _nextHeader(value):
    return lambda frame: isinstance(ip := _ip6(frame), dpkt.ip6.IP6) and ip.nxt == value


# An MLDv2 report from the guest's link-local address, behind a hop-by-hop
# header holding Router Alert and PadN.
MLD_REPORT = _first(lambda f: _ip6(f).nxt == 0 and _ip6(f).src == GUEST_LINK_LOCAL, "MLD report")
# The kernel's duplicate address probes (from ::, to the solicited-node
# group, with a nonce option, RFC 7527): for its link-local address, then
# for its SLAAC address.
DAD_PROBE = _first(
    _icmpType(135, src=_UNSPECIFIED, dst=IPv6Address("ff02::1:ff00:1").packed), "DAD probe"
)
DAD_PROBE_GLOBAL = [f for f in FRAMES if _icmpType(135, src=_UNSPECIFIED)(f)][-1]
ROUTER_SOLICITATION = _first(_icmpType(133), "router solicitation")
# dnsmasq's answer to the guest's second solicitation, from its link-local
# address (its first came from fd00:65::1, the link-local address being
# tentative), and its next unsolicited one.
ROUTER_ADVERTISEMENT = _first(
    _icmpType(134, src=ROUTER_LINK_LOCAL, dst=GUEST_LINK_LOCAL), "solicited RA"
)
UNSOLICITED_ADVERTISEMENT = _first(
    _icmpType(134, src=ROUTER_LINK_LOCAL, dst=ALL_NODES), "unsolicited RA"
)
# The guest asks for the gateway's MAC; the router answers (R, S, O).
NEIGHBOR_SOLICITATION = _first(_icmpType(135, src=GUEST_ADDRESS), "neighbor solicitation")
NEIGHBOR_ADVERTISEMENT = _first(_icmpType(136, src=GATEWAY), "neighbor advertisement")
# The guest's own advertisement (S only, no option: unicast reply).
GUEST_ADVERTISEMENT = _first(_icmpType(136, src=GUEST_LINK_LOCAL), "guest's advertisement")
ECHO_REQUEST = _first(_icmpType(128, dst=GATEWAY), "echo request")
ECHO_REPLY = _first(_icmpType(129, src=GATEWAY), "echo reply")
# ping -s 3000: three fragments each way.
FRAGMENTS = _fragments(GUEST_ADDRESS)
REPLY_FRAGMENTS = _fragments(GATEWAY)
UDP_TO_CLOSED_PORT = _first(
    lambda f: isinstance(u := _ip6(f).data, dpkt.udp.UDP) and u.dport == 9, "UDP to port 9"
)
PORT_UNREACHABLE = _first(_icmpType(1, src=GATEWAY, code=4), "port unreachable")
UNKNOWN_NEXT_HEADER = _first(_nextHeader(253), "next header 253")
PARAMETER_PROBLEM = _first(_icmpType(4), "parameter problem")
HOP_LIMITED_ECHO = _first(_icmpType(128, dst=IPv6Address("2001:db8:2::1").packed), "echo")
TIME_EXCEEDED = _first(_icmpType(3), "time exceeded")
BIG_ECHO = _first(_icmpType(128, dst=IPv6Address("2001:db8:1::1").packed), "big echo")
PACKET_TOO_BIG = _first(_icmpType(2), "packet too big")

DHCPV6_FRAMES = [f for f in FRAMES if _dhcpv6(f) is not None]
SOLICIT = _first(_dhcpType(1), "Solicit")
ADVERTISE = _first(_dhcpType(2), "Advertise")
REQUEST = _first(_dhcpType(3), "Request")
REQUEST_REPLY = _first(_dhcpType(7, after=REQUEST), "Reply to Request")
CONFIRM = _first(_dhcpType(4), "Confirm")
CONFIRM_REPLY = _first(_dhcpType(7, after=CONFIRM), "Reply to Confirm")
RELEASE = _first(_dhcpType(8), "Release")
RELEASE_REPLY = _first(_dhcpType(7, after=RELEASE), "Reply to Release")
INFORMATION_REQUEST = _first(_dhcpType(11), "Information-request")
INFORMATION_REPLY = _first(_dhcpType(7, after=INFORMATION_REQUEST), "Reply to Information-request")

ICMPV6_FRAMES = [f for f in FRAMES if _icmp6(f) is not None]


def ipv6Packet(frame):
    """
    The IPv6 datagram in C{frame}: everything after the Ethernet header.
    """
    return frame[14:]


def ipv6Payload(frame):
    """
    The payload of the IPv6 datagram in C{frame}, cut by its own payload
    length field, with a hop-by-hop header (the only extension header
    before an unfragmented upper layer in the capture) left out.
    """
    packet = ipv6Packet(frame)
    payload = packet[40 : 40 + int.from_bytes(packet[4:6], "big")]
    if packet[6] == 0:
        payload = payload[(payload[1] + 1) * 8 :]
    return payload


def udpPayload6(frame):
    """
    The payload of the UDP datagram in C{frame}.
    """
    datagram = ipv6Payload(frame)
    return datagram[8 : int.from_bytes(datagram[4:6], "big")]
