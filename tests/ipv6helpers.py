"""
Shared helpers for the IPv6 layer and stack tests: frames built through
the L{vpnkit.wire} emitters, and frames vpnkit sent taken apart again
(every checksum verified).
"""

from ipaddress import IPv6Address

from vpnkit.wire.ethernet import ETHERTYPE_IPV6, parseEthernet
from vpnkit.wire.icmpv6 import emitICMPv6, parseICMPv6
from vpnkit.wire.ipv6 import (
    NEXT_ICMPV6,
    NEXT_UDP,
    buildHeader,
    linkLocalAddress,
    parseExtensions,
    parseIPv6,
)
from vpnkit.wire.udp import emitUDP, parseUDP

from tests.helpers import SERVER_MAC, buildEthernet

__all__ = [
    "ip6",
    "GATEWAY6",
    "HOST6",
    "ROUTER6",
    "REMOTE6",
    "ALL_NODES_MAC",
    "linkLocal",
    "buildIPv6",
    "buildICMPv6",
    "buildUDP6",
    "parseIPv6Frame",
    "parseICMPv6Frame",
    "parseUDP6Frame",
]


def ip6(text):
    """
    The packed form of an IPv6 address.
    """
    return IPv6Address(text).packed


GATEWAY6 = ip6("fd00:65::1")
HOST6 = ip6("fd00:65::2")
ROUTER6 = linkLocalAddress(SERVER_MAC)
REMOTE6 = ip6("2001:db8::10")
ALL_NODES_MAC = bytes.fromhex("333300000001")


def linkLocal(mac):
    """
    The EUI-64 link-local address of C{mac}.
    """
    return linkLocalAddress(mac)


def buildIPv6(srcMAC, src, dst, nextHeader, payload, dstMAC=SERVER_MAC, hopLimit=64):
    """
    An Ethernet frame holding an IPv6 datagram.
    """
    header = buildHeader(src, dst, nextHeader, len(payload), hopLimit)
    return buildEthernet(dstMAC, srcMAC, ETHERTYPE_IPV6, header + bytes(payload))


def buildICMPv6(srcMAC, src, dst, message, dstMAC=SERVER_MAC, hopLimit=64):
    """
    An Ethernet frame holding an ICMPv6 C{message} (checksummed).
    """
    return buildIPv6(
        srcMAC, src, dst, NEXT_ICMPV6, emitICMPv6(message, src, dst), dstMAC, hopLimit
    )


def buildUDP6(srcMAC, src, srcPort, dst, dstPort, payload, dstMAC=SERVER_MAC):
    """
    An Ethernet frame holding a UDP datagram over IPv6.
    """
    return buildIPv6(srcMAC, src, dst, NEXT_UDP, emitUDP(srcPort, dstPort, payload, src, dst), dstMAC)


def parseIPv6Frame(frame):
    """
    @return: C{(EthernetHeader, IPv6Header, upperLayer, upperPayload)}
        (extension headers walked).
    """
    eth, payload = parseEthernet(frame)
    assert eth.ethertype == ETHERTYPE_IPV6, eth
    header, data = parseIPv6(payload)
    extensions = parseExtensions(header.nextHeader, data)
    return eth, header, extensions.upperLayer, bytes(data[extensions.offset :])


def parseICMPv6Frame(frame):
    """
    @return: C{(EthernetHeader, IPv6Header, message)}, the checksum
        verified.
    """
    eth, header, upper, data = parseIPv6Frame(frame)
    assert upper == NEXT_ICMPV6, upper
    return eth, header, parseICMPv6(data, header.src, header.dst)


def parseUDP6Frame(frame):
    """
    @return: C{(EthernetHeader, IPv6Header, UDPHeader, payload)}.
    """
    eth, header, upper, data = parseIPv6Frame(frame)
    assert upper == NEXT_UDP, upper
    udp, payload = parseUDP(data, header.src, header.dst)
    return eth, header, udp, bytes(payload)
