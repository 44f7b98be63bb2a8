# -*- test-case-name: tests.test_udp -*-
"""
UDP: checksum checks and delivery to the services vpnkit answers itself
(DHCP on port 67 of the gateway or the broadcast address).
"""

from zope.interface import implementer

from vpnkit.interfaces import IIPv4Receiver
from vpnkit.wire import ChecksumError, ParseError
from vpnkit.wire.ipv4 import PROTO_UDP
from vpnkit.wire.udp import emitUDP, parseUDP

__all__ = ["UDPLayer"]

_BROADCAST = b"\xff\xff\xff\xff"


@implementer(IIPv4Receiver)
class UDPLayer:
    def __init__(self, config, ipv4, counters):
        self._ipv4 = ipv4
        self._counters = counters.udp
        self._localDestinations = {
            config.gatewayPacked,
            _BROADCAST,
            config.subnet.broadcast_address.packed,
        }
        self._services = {}

    def bindService(self, port, service):
        """
        Deliver datagrams for C{port} on the gateway (or a broadcast address)
        to C{service}, an L{vpnkit.interfaces.IUDPService}.
        """
        if port in self._services:
            raise ValueError(f"UDP port {port} already bound")
        self._services[port] = service

    def ipPayloadReceived(self, header, payload):
        counters = self._counters
        counters.received += 1
        try:
            udp, data = parseUDP(payload, header.src, header.dst)
        except ChecksumError:
            counters.badChecksum += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        if header.dst in self._localDestinations:
            service = self._services.get(udp.dstPort)
            if service is not None:
                service.datagramReceived(header, udp, data)
                return
        counters.noHandler += 1

    def sendDatagram(self, src, srcPort, dst, dstPort, payload, ttl=64, dstMAC=None):
        """
        Send a UDP datagram to a guest.

        @return: whether it was handed to a link.
        """
        datagram = emitUDP(srcPort, dstPort, payload, src, dst)
        sent = self._ipv4.sendIPv4(src, dst, PROTO_UDP, datagram, ttl, dstMAC)
        if sent:
            self._counters.sent += 1
        return sent
