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
from vpnkit.wire.icmp import (
    DEST_UNREACHABLE,
    ECHO_REPLY,
    ECHO_REQUEST,
    ICMPMessage,
    emitICMP,
    parseICMP,
)
from vpnkit.wire.ipv4 import PROTO_ICMP, quoteHeader

__all__ = ["ICMPLayer"]


@implementer(IIPv4Receiver)
class ICMPLayer:
    def __init__(self, config, ipv4, counters):
        self._gateway = config.gatewayPacked
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

    def sendUnreachable(self, code, header, quote):
        """
        Tell the guest its datagram could not be delivered: ICMP destination
        unreachable with C{code} (0 network, 1 host, 3 port, ...), from the
        gateway (the router that gave up), quoting the datagram's header and
        the first 8 bytes of its payload (C{quote}).
        """
        message = ICMPMessage(DEST_UNREACHABLE, code, 0, b"\0\0\0\0", quoteHeader(header) + quote)
        if self._ipv4.sendIPv4(self._gateway, header.src, PROTO_ICMP, emitICMP(message)):
            self._counters.unreachableSent += 1
