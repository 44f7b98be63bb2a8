# -*- test-case-name: tests.test_udp -*-
"""
UDP: checksum checks, delivery to the services vpnkit answers itself, and
everything else to the NAT.

vpnkit's own services are of two kinds: an L{IUDPService} sees the IP and
UDP headers (DHCP on port 67 of the gateway or a broadcast address), and
an ordinary Twisted L{DatagramProtocol} listens on a L{VirtualUDPPort} of
the gateway (DNS on port 53: C{twisted.names}' own
C{DNSDatagramProtocol}, unmodified).  A datagram for a port of the gateway
that no service owns gets ICMP port unreachable, as any host would answer.
Datagrams for the host alias and remote hosts go to the
L{vpnkit.protocols.udpnat.UDPNAT}.
"""

from twisted.internet.interfaces import IListeningPort, IUDPTransport
from zope.interface import implementer

from vpnkit.interfaces import IIPReceiver
from vpnkit.log import GuestLog, logger
from vpnkit.protocols.ip import Unreachable, formatAddress, packAddress, twistedAddress
from vpnkit.wire import ChecksumError, ParseError
from vpnkit.wire.ipv4 import PROTO_UDP
from vpnkit.wire.udp import emitUDP, parseUDP

__all__ = ["UDPSender", "UDPLayer", "VirtualUDPPort", "InboundFlow"]

log = logger("vpnkit.udp")

_BROADCAST = b"\xff\xff\xff\xff"
# The DHCPv6 servers' multicast group (RFC 8415 7.1): its services are the
# gateway's.
_ALL_DHCP_SERVERS = bytes.fromhex("ff020000000000000000000000010002")


@implementer(IUDPTransport, IListeningPort)
class VirtualUDPPort:
    """
    A UDP port of the gateway, presented to a L{DatagramProtocol} exactly
    like one the reactor's C{listenUDP} returns: C{write(data, (host,
    port))} sends to a guest, and datagrams arrive through the protocol's
    C{datagramReceived(data, (host, port))}.  It is the port on the
    gateway's IPv4 and IPv6 addresses both: a reply leaves from the one of
    the guest's family.

    @param addresses: the gateway's packed addresses, IPv4 first.
    """

    def __init__(self, layer, addresses, port, protocol):
        self._layer = layer
        self._address = addresses[0]
        self._byLength = {len(address): address for address in addresses}
        self._port = port
        self.protocol = protocol
        self.listening = False

    def startListening(self):
        self.listening = True
        self.protocol.makeConnection(self)

    def stopListening(self):
        if self.listening:
            self.listening = False
            self._layer.unlisten(self._port)
            self.protocol.doStop()

    loseConnection = stopListening

    def write(self, data, addr=None):
        if addr is None or not self.listening:
            return
        host, port = addr[:2]
        dst = packAddress(host)
        src = self._byLength.get(len(dst))
        if src is not None:
            self._layer.sendDatagram(src, self._port, dst, port, data)

    def writeSequence(self, seq, addr=None):
        self.write(b"".join(seq), addr)

    def connect(self, host, port):
        raise NotImplementedError("virtual UDP ports are not connectable")

    def getHost(self):
        return twistedAddress("UDP", self._address, self._port)

    def setBroadcastAllowed(self, enabled):
        pass

    def getBroadcastAllowed(self):
        return False

    def datagramReceived(self, ipHeader, udpHeader, payload):
        address = (formatAddress(ipHeader.src), udpHeader.srcPort)
        try:
            self.protocol.datagramReceived(bytes(payload), address)
        except Exception:
            # As the reactor does for a real port: one bad datagram must not
            # take the guest's link down with it.
            self._layer.serviceFailed(self._port)


class UDPSender:
    """
    Sends UDP datagrams to guests: what the NAT, the gateway forwards and
    the DHCP server reply through, built before them and before the
    L{UDPLayer} that hands them datagrams.
    """

    def __init__(self, ip, counters):
        self._ip = ip
        self._counters = counters.udp

    def sendDatagram(self, src, srcPort, dst, dstPort, payload, ttl=64, dstMAC=None):
        """
        Send a UDP datagram to a guest, over IPv4 or IPv6 as the packed
        addresses are.

        @return: whether it was handed to a link.
        """
        datagram = emitUDP(srcPort, dstPort, payload, src, dst)
        sent = self._ip.sendIP(src, dst, PROTO_UDP, datagram, ttl, dstMAC)
        if sent:
            self._counters.sent += 1
        return sent


@implementer(IIPReceiver)
class UDPLayer:
    """
    @param ip: the L{vpnkit.interfaces.IIPSender} replies go through (both
        families).
    @param icmp: the L{vpnkit.interfaces.IICMPErrors}, for port
        unreachable.
    @param nat: the L{vpnkit.protocols.udpnat.UDPNAT} for datagrams to the
        host alias and remote hosts, or C{None} to drop them.
    @param gatewayForwards: the
        L{vpnkit.gatewayforwards.GatewayUDPForwards}, or C{None}.
    @param sender: the L{UDPSender} (one of its own by default).
    """

    def __init__(
        self, config, ip, counters, icmp=None, nat=None, gatewayForwards=None, sender=None
    ):
        self._sender = sender if sender is not None else UDPSender(ip, counters)
        self.sendDatagram = self._sender.sendDatagram
        self._icmp = icmp
        self._counters = counters.udp
        self._gateway = config.gatewayPacked
        self._gateways = {config.gatewayPacked}
        # What a service on a gateway port answers from: one address per
        # family.
        self._gatewayAddresses = [config.gatewayPacked]
        self._localDestinations = {
            config.gatewayPacked,
            _BROADCAST,
            config.subnet.broadcast_address.packed,
        }
        ipv6 = config.ipv6
        if ipv6 is not None:
            self._gatewayAddresses.append(ipv6.gatewayPacked)
            self._gateways.add(ipv6.gatewayPacked)
            self._gateways.add(ipv6.routerLinkLocalPacked)
            self._localDestinations |= self._gateways
            self._localDestinations.add(_ALL_DHCP_SERVERS)
        self._services = {}
        self._ports = {}
        self._inbound = {}
        self.nat = nat
        self.gatewayForwards = gatewayForwards
        self._guestLog = GuestLog(log)

    def bindService(self, port, service, ipv6=False):
        """
        Deliver datagrams for C{port} on the gateway (or a broadcast or
        multicast address of the guests') to C{service}, an
        L{vpnkit.interfaces.IUDPService}: datagrams over IPv4 (DHCP), or
        over IPv6 when C{ipv6} (DHCPv6).
        """
        key = (16 if ipv6 else 4, port)
        if key in self._services or port in self._ports:
            raise ValueError(f"UDP port {port} already bound")
        self._services[key] = service

    def listen(self, port, protocol):
        """
        Serve C{protocol} (a L{DatagramProtocol}) on the gateway's UDP
        C{port}, like C{reactor.listenUDP}.

        @return: the L{VirtualUDPPort}, already listening.
        """
        if (4, port) in self._services or (16, port) in self._services or port in self._ports:
            raise ValueError(f"UDP port {port} already bound")
        virtual = VirtualUDPPort(self, self._gatewayAddresses, port, protocol)
        self._ports[port] = virtual
        virtual.startListening()
        return virtual

    def unlisten(self, port):
        """
        The L{VirtualUDPPort} on C{port} stopped listening: forget it.
        """
        self._ports.pop(port, None)

    def serviceFailed(self, port):
        """
        A local service raised handling a datagram: count and log it.
        """
        self._counters.serviceErrors += 1
        self._guestLog.failure("the service on UDP port {port} failed", port=port)

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
        if udp.checksum == 0 and len(header.src) == 16:
            # Optional over IPv4 only: an IPv6 receiver drops it (RFC 8200 8.1).
            counters.zeroChecksum6 += 1
            return
        inbound = self._inbound and self._inbound.get(
            (header.src, udp.srcPort, header.dst, udp.dstPort)
        )
        if inbound:
            counters.inboundReceived += 1
            inbound.deliver(data)
            return
        forwards = self.gatewayForwards
        if header.dst in self._gateways and forwards is not None and forwards.handles(udp.dstPort):
            # Checked before the gateway's own services, as in the
            # reference: a forward of port 53 replaces the DNS server.
            forwards.datagramFromGuest(header, udp, data)
            return
        if header.dst in self._localDestinations:
            service = self._services.get((len(header.dst), udp.dstPort))
            gateway = header.dst in self._gateways
            if service is None and gateway:
                service = self._ports.get(udp.dstPort)
            if service is not None:
                service.datagramReceived(header, udp, data)
                return
            counters.noHandler += 1
            if gateway and self._icmp is not None:
                # As a host would; never for a broadcast or multicast (RFC
                # 1122 3.2.2, RFC 4443 2.4).
                self._icmp.sendUnreachable(Unreachable.PORT, header, payload[:8])
            return
        if self.nat is None:
            counters.noHandler += 1
            return
        self.nat.datagramFromGuest(header, udp, data, payload[:8])

    def openInbound(self, guestIP, guestPort, srcIP, srcPort, deliver):
        """
        A flow into a guest for a UDP port forward: datagrams sent go to
        C{guestIP}:C{guestPort} from C{srcIP}:C{srcPort} (packed addresses),
        and the guest's datagrams back to that address go to C{deliver}
        instead of the NAT.

        @return: the L{InboundFlow}.
        """
        key = (guestIP, guestPort, srcIP, srcPort)
        flow = InboundFlow(self, key, deliver, self._counters)
        self._inbound[key] = flow
        return flow

    def closeInbound(self, flow):
        """
        C{flow} (an L{InboundFlow}) is closed: the guest's datagrams to
        its address are no longer delivered to it.
        """
        if self._inbound.get(flow.key) is flow:
            del self._inbound[flow.key]



class InboundFlow:
    """
    One host client of a UDP port forward, seen from the guest as
    C{srcIP}:C{srcPort}.

    @ivar deliver: called with each datagram the guest sends back.
    """

    def __init__(self, layer, key, deliver, counters):
        self._layer = layer
        self._counters = counters
        self.key = key
        self.deliver = deliver

    def send(self, data):
        guestIP, guestPort, srcIP, srcPort = self.key
        if self._layer.sendDatagram(srcIP, srcPort, guestIP, guestPort, data):
            self._counters.inboundSent += 1

    def close(self):
        self._layer.closeInbound(self)
