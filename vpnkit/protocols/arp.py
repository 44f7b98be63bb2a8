# -*- test-case-name: tests.test_arp -*-
"""
ARP: vpnkit answers for the gateway and the host alias with its own MAC,
and for every attached guest with that guest's MAC.  Remote hosts are
impersonated at the IP layer behind the gateway, never by ARP, so requests
for any other address go unanswered.
"""

from zope.interface import implementer

from vpnkit.interfaces import IEthernetPayloadReceiver
from vpnkit.log import logger
from vpnkit.wire import ParseError
from vpnkit.wire.arp import ARP_REPLY, ARP_REQUEST, ARPPacket, emitARP, parseARP
from vpnkit.wire.ethernet import ETHERTYPE_ARP

__all__ = ["ARPResponder"]

log = logger("vpnkit.arp")

_ETHERTYPE = ETHERTYPE_ARP.to_bytes(2, "big")


@implementer(IEthernetPayloadReceiver)
class ARPResponder:
    """
    @param switch: the L{vpnkit.protocols.switch.EthernetSwitch}, used to
        find guests and to send replies.
    """

    def __init__(self, config, switch, counters):
        self._serverMAC = config.serverMAC
        self._local = {config.gatewayPacked}
        if config.hostIP is not None:
            self._local.add(config.hostPacked)
        self._switch = switch
        self._counters = counters.arp

    def ethernetPayloadReceived(self, header, payload):
        counters = self._counters
        try:
            packet = parseARP(payload)
        except ParseError:
            counters.malformed += 1
            return
        if packet.op != ARP_REQUEST:
            counters.ignored += 1
            return
        counters.requests += 1
        target = packet.tpa
        if target in self._local:
            mac = self._serverMAC
        else:
            port = self._switch.portForIP(target)
            if port is None or port.mac is None or port.mac == packet.sha:
                # Unknown, not yet heard from, or the asker's own address
                # (a duplicate-address probe that must not see a conflict).
                counters.unknownTarget += 1
                return
            mac = port.mac
        reply = ARPPacket(ARP_REPLY, mac, target, packet.sha, packet.spa)
        counters.replies += 1
        self._switch.sendToMAC(header.src + self._serverMAC + _ETHERTYPE + emitARP(reply))
