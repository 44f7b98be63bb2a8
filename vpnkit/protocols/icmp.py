# -*- test-case-name: tests.test_icmp -*-
"""
ICMP: echo requests to the gateway and the host alias are answered here.

Echo to any other address is never answered by vpnkit itself (no forged
replies); forwarding it through a host ICMP socket comes with the UDP/ICMP
work.
"""

from zope.interface import implementer

from vpnkit.interfaces import IIPv4Receiver
from vpnkit.wire import ChecksumError, ParseError
from vpnkit.wire.icmp import ECHO_REPLY, ECHO_REQUEST, ICMPMessage, emitICMP, parseICMP
from vpnkit.wire.ipv4 import PROTO_ICMP

__all__ = ["ICMPLayer"]


@implementer(IIPv4Receiver)
class ICMPLayer:
    def __init__(self, config, ipv4, counters):
        self._local = {config.gatewayPacked}
        if config.hostIP is not None:
            self._local.add(config.hostPacked)
        self._ipv4 = ipv4
        self._counters = counters.icmp

    def ipPayloadReceived(self, header, payload):
        counters = self._counters
        try:
            message = parseICMP(payload)
        except ChecksumError:
            counters.badChecksum += 1
            return
        except ParseError:
            counters.malformed += 1
            return
        if message.type == ECHO_REQUEST and message.code == 0 and header.dst in self._local:
            counters.echoRequests += 1
            reply = ICMPMessage(ECHO_REPLY, 0, 0, message.rest, message.payload)
            if self._ipv4.sendIPv4(header.dst, header.src, PROTO_ICMP, emitICMP(reply)):
                counters.echoReplies += 1
            return
        counters.unsupported += 1
