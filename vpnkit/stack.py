# -*- test-case-name: tests.test_stack -*-
"""
L{Stack}: vpnkit's layers wired together, with no I/O of its own.

Links (vmnet and QEMU connections, tap devices) attach to the stack's
switch; everything above the switch is shared by all guests.  This is the
one place the layers are composed; L{vpnkit.tap.makeService} adds the
listeners and files around it.
"""

from ipaddress import IPv6Address

from vpnkit.counters import StackCounters
from vpnkit.gatewayforwards import GatewayForwardRoute, GatewayForwardTable, GatewayUDPForwards
from vpnkit.guests import Guests
from vpnkit.host.network import HostNetwork
from vpnkit.host.proxy import HostRoute
from vpnkit.host.resolvers import SystemResolver
from vpnkit.host.sockets import HostDatagramSockets
from vpnkit.leases import AddressPool, ipv6ForLease
from vpnkit.log import logger
from vpnkit.protocols.arp import ARPResponder
from vpnkit.protocols.dhcp import SERVER_PORT, DHCPServer, DHCPSettings
from vpnkit.protocols.dhcpv6 import SERVER_PORT as DHCPV6_SERVER_PORT
from vpnkit.protocols.dhcpv6 import DHCPv6Server
from vpnkit.protocols.dns import BuiltinResolver, GatewayDNSFactory, HostsResolver, builtinAddresses
from vpnkit.protocols.dnsupstream import UpstreamResolver
from vpnkit.protocols.icmp import ICMPLayer
from vpnkit.protocols.icmpv6 import ICMPv6Layer
from vpnkit.protocols.ip import ICMPErrors, IPSender
from vpnkit.protocols.ipv4 import IPv4Layer
from vpnkit.protocols.ipv6 import IPv6Layer
from vpnkit.protocols.localtcp import LocalServiceRoute
from vpnkit.protocols.switch import EthernetSwitch
from vpnkit.protocols.tcp.layer import TCPLayer
from vpnkit.protocols.tcp.routing import TCPRouter
from vpnkit.protocols.udp import UDPLayer, UDPSender
from vpnkit.protocols.udpnat import UDPNAT
from vpnkit.wire.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, formatMAC
from vpnkit.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from vpnkit.wire.ipv6 import NEXT_ICMPV6

__all__ = ["Stack"]

DNS_PORT = 53

log = logger("vpnkit.stack")


class Stack:
    """
    @ivar config: the L{vpnkit.config.StackConfig}.
    @ivar counters: the L{vpnkit.counters.StackCounters} every layer counts
        into.
    @ivar guests: the L{Guests} links attach through.
    @ivar dns: the gateway's L{GatewayDNSFactory} (UDP and TCP port 53).
    @ivar tcpRouter: where guests' new TCP connections go: gateway
        forwards, then vpnkit's own services on the gateway, then the
        host's sockets.

    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets} for the
        UDP NAT, ICMP echo and upstream DNS (the host's, by default).
    @param dnsConfig: the upstream servers
        (L{vpnkit.protocols.dnsconfig.DNSConfig}): from C{--dns}, or the
        host's C{resolv.conf}; none by default.
    @param tcpLimits: the L{vpnkit.protocols.tcp.config.TCPLimits} (when
        given, C{maxConnections} is ignored).
    @param systemLookup: when given, A and AAAA are answered by the host's
        resolver through this C{lookup(name, family)} (see
        L{vpnkit.host.resolvers}), other types by the C{dnsConfig} servers.
    @param httpProxy: the HTTP proxy (an L{vpnkit.interfaces.ITCPRoute} with
        C{counters}, e.g. L{vpnkit.httpproxy.proxy.HTTPProxy}), routed
        before the host's sockets; none by default.
    """

    def __init__(
        self,
        config,
        reactor=None,
        hostNetwork=None,
        connectTimeout=30.0,
        maxConnections=None,
        tcpLimits=None,
        sockets=None,
        dnsConfig=None,
        systemLookup=None,
        gatewayForwards=(),
        httpProxy=None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        if hostNetwork is None:
            hostNetwork = HostNetwork(reactor)
        if sockets is None:
            sockets = HostDatagramSockets(reactor)
        self.config = config
        self.reactor = reactor
        self.counters = counters = StackCounters()
        self.pool = AddressPool(config)
        self._dhcpFile = (None, ())
        self._dnsSearch = ()

        # Link layer and IP.
        self.switch = EthernetSwitch(config, counters)
        self.arp = ARPResponder(config, self.switch, counters)
        self.ipv4 = IPv4Layer(config, self.switch, counters, reactor)
        self.icmp = ICMPLayer(config, self.ipv4, counters, sockets, reactor)
        # IPv6 (none of it with --no-ipv6): the layer, then ICMPv6 (NDP,
        # echo, the errors the IPv6 layer sends through it).
        self.ipv6 = self.icmpv6 = self.dhcpv6 = None
        if config.ipv6 is not None:
            self.ipv6 = IPv6Layer(config, self.switch, counters, reactor)
            self.icmpv6 = ICMPv6Layer(
                config,
                self.ipv6,
                self.switch,
                counters,
                sockets,
                reactor,
                searchDomains=self._searchDomains,
            )
            self.ipv6.errors = self.icmpv6
        # What the layers above IP send through, for both families.
        self.ip = IPSender(self.ipv4, self.ipv6)
        self.icmpErrors = ICMPErrors(self.icmp, self.icmpv6)

        # UDP: the sender first, then what replies through it, then the
        # layer that hands them datagrams.
        self.gatewayForwards = GatewayForwardTable(gatewayForwards)
        udpSender = UDPSender(self.ip, counters)
        self.udpNAT = UDPNAT(
            config,
            udpSender,
            self.icmpErrors,
            sockets,
            reactor,
            counters,
            maxFlows=config.maxUDPFlows,
        )
        self.udpGatewayForwards = GatewayUDPForwards(
            config, self.gatewayForwards, udpSender, sockets, reactor, counters
        )
        self.udp = UDPLayer(
            config,
            self.ip,
            counters,
            self.icmpErrors,
            nat=self.udpNAT,
            gatewayForwards=self.udpGatewayForwards,
            sender=udpSender,
        )
        self.dhcp = DHCPServer(
            config, self.switch, udpSender, counters, self.dhcpSettings, clock=reactor
        )

        # DNS: builtin names, then the hosts file, then upstream.
        self.dnsUpstream = UpstreamResolver(dnsConfig, sockets, hostNetwork, reactor, counters)
        upstream = self.dnsUpstream
        if systemLookup is not None:
            upstream = SystemResolver(systemLookup, self.dnsUpstream, counters)
        self.hosts = HostsResolver(counters)
        self.dns = GatewayDNSFactory(
            [BuiltinResolver(builtinAddresses(config), counters), self.hosts, upstream],
            counters,
            reactor,
        )

        # TCP: the one routing chain for guests' new connections.
        self.localServices = LocalServiceRoute(config, {DNS_PORT: self.dns}, reactor)
        self.httpProxy = httpProxy
        proxyRoutes = []
        if httpProxy is not None:
            counters.http = httpProxy.counters
            proxyRoutes.append(httpProxy)
        self.tcpRouter = TCPRouter(
            [
                GatewayForwardRoute(config, self.gatewayForwards, hostNetwork, connectTimeout),
                self.localServices,
                *proxyRoutes,
                HostRoute(config, hostNetwork, connectTimeout),
            ]
        )
        self.tcp = TCPLayer(
            config,
            self.ip,
            self.icmpErrors,
            counters,
            self.tcpRouter,
            reactor,
            maxConnections=maxConnections,
            limits=tcpLimits,
            guestPresent=lambda ip: self.switch.portForIP(ip) is not None,
            segmentLimit=self._segmentLimit,
        )

        # Links attach through this; when a guest goes, so does its state.
        self.guests = Guests(
            config,
            counters,
            self.pool,
            self.switch,
            portGone=[self.dhcp.forgetPort],
            addressGone=[
                self.tcp.guestDetached,
                self.udpNAT.guestDetached,
                self.udpGatewayForwards.guestDetached,
                self.icmp.guestDetached,
            ],
            clock=reactor,
        )

        self.switch.addProto(ETHERTYPE_ARP, self.arp)
        self.switch.addProto(ETHERTYPE_IPV4, self.ipv4)
        self.ipv4.addProto(PROTO_ICMP, self.icmp)
        self.ipv4.addProto(PROTO_UDP, self.udp)
        self.ipv4.addProto(PROTO_TCP, self.tcp)
        self.udp.bindService(SERVER_PORT, self.dhcp)
        self.udp.listen(DNS_PORT, self.dns.datagramProtocol(reactor))
        if self.ipv6 is not None:
            self._wireIPv6(udpSender)

    def _wireIPv6(self, udpSender):
        """
        Plug the IPv6 layers in: EtherType 0x86DD, ICMPv6 and its Router
        Advertisements to the guests that speak IPv6, TCP and UDP, and
        DHCPv6.
        """
        self.switch.addProto(ETHERTYPE_IPV6, self.ipv6)
        self.ipv6.addProto(NEXT_ICMPV6, self.icmpv6)
        # The same receivers as IPv4's: TCP and UDP are family-neutral.
        self.ipv6.addProto(PROTO_UDP, self.udp)
        self.ipv6.addProto(PROTO_TCP, self.tcp)
        self.switch.ipv6Hooks.append(self.icmpv6.portSpeaksIPv6)
        self.switch.detachHooks.append(self.icmpv6.portDetached)
        self.switch.detachHooks.append(self._ipv6PortGone)
        self.dhcpv6 = DHCPv6Server(
            self.config, self.switch, udpSender, self.counters, self._searchDomains
        )
        self.udp.bindService(DHCPV6_SERVER_PORT, self.dhcpv6, ipv6=True)

    def _ipv6PortGone(self, port):
        """
        A guest went: what its IPv6 addresses held goes too (its IPv4
        address's goes through L{Guests}).
        """
        for address in port.ipv6:
            self.tcp.guestDetached(address)
            self.udpNAT.guestDetached(address)
            self.udpGatewayForwards.guestDetached(address)
            self.icmpv6.guestDetached(address)

    def _searchDomains(self):
        """
        The DNS search list the IPv6 configuration (RA DNSSL, DHCPv6)
        offers: the same as DHCP's.
        """
        return tuple(self.dhcpSettings().searchDomains or ())

    def _segmentLimit(self, packedIP):
        """
        The largest TCP payload one segment to this guest may carry: more
        than the MSS only on a link with segmentation offload.
        """
        port = self.switch.portForIP(packedIP)
        return port.segmentLimit if port is not None else 0

    def stop(self):
        """
        Let go of every host socket and timer: reset the guests' TCP
        connections, close the NAT, echo and gateway-forward flows and the
        upstream DNS exchanges, and stop the reassembly timer.  For an
        embedder stopping vpnkit (L{vpnkit.services.VPNKitService} calls
        it once its listeners and links are stopped).
        """
        self.tcp.closeAll()
        self.udpNAT.close()
        self.udpGatewayForwards.close()
        self.icmp.close()
        self.ipv4.stop()
        if self.ipv6 is not None:
            self.icmpv6.stop()
            self.ipv6.stop()
        self.dnsUpstream.close()

    # -- observability -------------------------------------------------------

    def stats(self):
        """
        Every counter, and the live state: guests (each with its MAC, its
        IPv6 addresses, and the frames its port dropped as spoofed), TCP connections (each
        with its state, bytes each way and retransmissions) and connects
        in flight.  Plain data, ready for JSON.
        """
        connections = []
        for connection in self.tcp.connections():
            tcb = connection.tcb
            connections.append(
                {
                    "flow": str(connection.flow),
                    "state": str(tcb.state),
                    "bytesFromGuest": tcb.bytesReceived,
                    "bytesToGuest": tcb.bytesSent,
                    "retransmits": tcb.retransmits,
                }
            )
        return {
            "counters": self.counters.asDict(),
            "guests": [
                {
                    "link": port.link.description,
                    "ip": str(port.lease.ip),
                    "mac": formatMAC(port.mac) if port.mac is not None else None,
                    "ipv6": self._guestIPv6(port),
                    "dropped": {
                        "spoofedMAC": port.spoofedMAC,
                        "spoofedARP": port.spoofedARP,
                        "spoofedIP": port.spoofedIP,
                    },
                }
                for port in self.switch.ports()
            ],
            "tcp": {"connections": connections, "pending": self.tcp.pendingCount},
            "udp": {"flows": len(self.udpNAT.flows)},
            "icmp": {"flows": len(self.icmp.flows)},
            "http": {"upstreamFailures": dict(self.counters.http.upstreamFailures)},
        }

    def _guestIPv6(self, port):
        """
        A guest's IPv6 addresses for L{stats}: the stable one its lease
        gives it (DHCPv6) and those the switch saw it use (SLAAC,
        link-local), or C{None} when IPv6 is off.
        """
        address = ipv6ForLease(self.config, port.lease)
        if address is None:
            return None
        # SwitchPort.ipv6: the packed addresses the switch learned.
        seen = sorted(IPv6Address(packed) for packed in port.ipv6)
        return {"lease": str(address), "seen": [str(a) for a in seen]}

    # -- DHCP settings -------------------------------------------------------

    def setDHCPFile(self, parsed):
        """
        Apply a parsed C{dhcp.json} (C{(domainName, searchDomains)}), or
        C{None} when the file is gone.
        """
        self._dhcpFile = parsed if parsed is not None else (None, ())

    def dhcpSettings(self):
        """
        The current L{DHCPSettings}: C{--domain} wins over C{dhcp.json}'s
        C{domainName}, which wins over C{localdomain}; an empty name is
        left out.
        """
        fileDomain, search = self._dhcpFile
        domain = self.config.domain
        if domain is None:
            domain = fileDomain if fileDomain is not None else "localdomain"
        return DHCPSettings(
            domainName=domain or None,
            searchDomains=search or self._dnsSearch,
            # The gateway is an NTP server only if UDP 123 is forwarded.
            ntp=self.gatewayForwards.lookup("udp", 123) is not None,
        )

    # -- DNS settings -------------------------------------------------------

    def setDNSConfig(self, dnsConfig):
        """
        Use new upstream servers (a re-read C{--dns} file or C{resolv.conf});
        C{None} when the file is gone.
        """
        self.dnsUpstream.setConfig(dnsConfig)

    def setDNSSearch(self, domains):
        """
        The C{--dns} file's C{search} list, offered in DHCP option 119 when
        C{dhcp.json} gives none (the reference never passed it on).
        """
        self._dnsSearch = tuple(domains or ())

    def setHosts(self, entries):
        """
        Serve the names of a parsed hosts file (C{None}: none).
        """
        self.hosts.setEntries(entries)
