# -*- test-case-name: tests.test_ipv4 -*-
"""
The IPv4 layer: header checks, demultiplexing by protocol, routing between
guests, and building the datagrams vpnkit sends.

vpnkit accepts datagrams for I{any} destination that is not another guest:
the gateway, the host alias and every remote host are all impersonated
here, behind the server MAC.
"""

from zope.interface import implementer

from vpnkit.interfaces import IEthernetPayloadReceiver, IIPv4Sender
from vpnkit.log import logger
from vpnkit.wire import ChecksumError, TruncatedError, ParseError
from vpnkit.wire.ethernet import ETHERTYPE_IPV4
from vpnkit.wire.ipv4 import FLAG_DF, buildHeader, emitIPv4, parseIPv4
from dataclasses import replace

__all__ = ["IPv4Layer"]

log = logger("vpnkit.ipv4")

_ETHERTYPE = ETHERTYPE_IPV4.to_bytes(2, "big")


@implementer(IEthernetPayloadReceiver, IIPv4Sender)
class IPv4Layer:
    """
    @param switch: the L{vpnkit.protocols.switch.EthernetSwitch}.
    """

    def __init__(self, config, switch, counters):
        self._serverMAC = config.serverMAC
        self._mtu = config.mtu
        self._switch = switch
        self._counters = counters.ipv4
        self._protocols = {}

    def addProto(self, number, receiver):
        """
        Deliver datagrams of IP protocol C{number} to C{receiver} (an
        L{vpnkit.interfaces.IIPv4Receiver}).
        """
        if number in self._protocols:
            raise ValueError(f"IP protocol {number} already registered")
        self._protocols[number] = receiver

    # -- receive -----------------------------------------------------------

    def ethernetPayloadReceived(self, header, payload):
        counters = self._counters
        counters.received += 1
        try:
            ip, data = parseIPv4(payload)
        except TruncatedError:
            counters.truncated += 1
            return
        except ChecksumError:
            counters.badChecksum += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        if ip.isFragment:
            counters.fragmentsDropped += 1
            return
        other = self._switch.portForIP(ip.dst)
        if other is not None:
            # Only a frame sent to our MAC is ours to route; a broadcast one
            # already reached that guest through the switch.
            if header.dst == self._serverMAC:
                self._forward(other, ip, data)
            else:
                counters.notRouted += 1
            return
        receiver = self._protocols.get(ip.protocol)
        if receiver is None:
            counters.unsupportedProtocol += 1
            return
        receiver.ipPayloadReceived(ip, data)

    def _forward(self, port, ip, data):
        """
        Route a datagram from one guest to another (a guest that sent it to
        the gateway's MAC rather than the peer's).
        """
        counters = self._counters
        if port.mac is None:
            counters.noRoute += 1
            return
        if ip.ttl <= 1:
            counters.ttlExpired += 1
            return
        counters.forwarded += 1
        datagram = emitIPv4(replace(ip, ttl=ip.ttl - 1), data)
        port.link.sendFrame(port.mac + self._serverMAC + _ETHERTYPE + datagram)

    # -- send --------------------------------------------------------------

    def sendIPv4(self, src, dst, protocol, payload, ttl=64, dstMAC=None):
        counters = self._counters
        if 20 + len(payload) > self._mtu:
            # Fragmentation towards the guest comes with the UDP work.
            counters.tooBig += 1
            return False
        header = buildHeader(src, dst, protocol, len(payload), ttl, 0, FLAG_DF)
        if dstMAC is not None:
            counters.sent += 1
            self._switch.sendFrame(b"".join((dstMAC, self._serverMAC, _ETHERTYPE, header, payload)))
            return True
        port = self._switch.portForIP(dst)
        if port is None or port.mac is None:
            counters.noRoute += 1
            return False
        counters.sent += 1
        port.link.sendFrame(b"".join((port.mac, self._serverMAC, _ETHERTYPE, header, payload)))
        return True
