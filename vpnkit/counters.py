# -*- test-case-name: tests.test_stack -*-
"""
Named counters for every receive, send and drop path.

Each layer gets its own small mutable dataclass, all gathered in
L{StackCounters}; every branch that drops or answers a frame increments one
field, so a test (or C{GET /stats}) can say exactly what happened.
"""

from dataclasses import asdict, dataclass, field

__all__ = [
    "LinkCounters",
    "EthernetCounters",
    "ARPCounters",
    "IPv4Counters",
    "ICMPCounters",
    "UDPCounters",
    "DHCPCounters",
    "TCPCounters",
    "DNSCounters",
    "CaptureCounters",
    "HTTPProxyCounters",
    "IPv6Counters",
    "ICMPv6Counters",
    "DHCPv6Counters",
    "StackCounters",
]


@dataclass
class LinkCounters:
    """
    Frames on the guest links, summed over all links.
    """

    framesIn: int = 0
    framesOut: int = 0
    bytesIn: int = 0
    bytesOut: int = 0
    shortFrames: int = 0
    oversizeFrames: int = 0
    truncatedPrefix: int = 0
    handshakeFailures: int = 0
    allocationFailures: int = 0
    txQueueFull: int = 0
    txErrors: int = 0
    unsupportedOffload: int = 0
    linksOpened: int = 0
    linksClosed: int = 0


@dataclass
class EthernetCounters:
    received: int = 0
    notForUs: int = 0
    switched: int = 0
    flooded: int = 0
    unsupportedEthertype: int = 0
    ipv6: int = 0
    vlan: int = 0
    noRoute: int = 0
    segmented: int = 0
    tooBigForLink: int = 0
    # Frames from a guest whose source MAC is not its port's (protocols/switch.py).
    spoofedSource: int = 0


@dataclass
class ARPCounters:
    requests: int = 0
    replies: int = 0
    malformed: int = 0
    unknownTarget: int = 0
    ignored: int = 0
    # ARP from a guest claiming an address or MAC its port does not hold.
    spoofedSender: int = 0


@dataclass
class IPv4Counters:
    received: int = 0
    sent: int = 0
    malformed: int = 0
    truncated: int = 0
    badChecksum: int = 0
    fragmentsDropped: int = 0
    forwarded: int = 0
    notRouted: int = 0
    ttlExpired: int = 0
    noRoute: int = 0
    tooBig: int = 0
    unsupportedProtocol: int = 0
    # Reassembly (vpnkit.protocols.fragments) and fragmentation.
    fragmentsQueued: int = 0
    fragmentsDuplicate: int = 0
    fragmentOverlap: int = 0
    fragmentLimit: int = 0
    fragmentMalformed: int = 0
    reassembled: int = 0
    reassemblyTimeout: int = 0
    reassemblyEvicted: int = 0
    timeExceededSent: int = 0
    fragmentedDatagrams: int = 0
    fragmentsSent: int = 0
    fragNeededSent: int = 0
    # Datagrams from a guest with a source address its port does not hold.
    spoofedSource: int = 0


@dataclass
class ICMPCounters:
    echoRequests: int = 0
    echoReplies: int = 0
    malformed: int = 0
    badChecksum: int = 0
    unsupported: int = 0
    unreachableSent: int = 0
    # Echo forwarded through host ICMP sockets, and host errors passed on.
    echoForwarded: int = 0
    echoForwardReplies: int = 0
    forwardUnavailable: int = 0
    forwardFailed: int = 0
    unknownReplies: int = 0
    flowsOpened: int = 0
    flowsExpired: int = 0
    flowsEvicted: int = 0
    hostErrorsTranslated: int = 0
    hostErrorsDropped: int = 0
    # Sends the host refused at once, answered with ICMP unreachable, or not
    # for the per-guest rate limit.
    forwardUnreachable: int = 0
    forwardErrorsLimited: int = 0
    # Echo requests to destinations never passed to the host
    # (vpnkit.protocols.destinations).
    echoRefused: int = 0


@dataclass
class IPv6Counters:
    """
    The IPv6 layer: datagrams in and out, extension headers, reassembly and
    fragmentation (as IPv4's), routing between guests.
    """

    received: int = 0
    sent: int = 0
    malformed: int = 0
    truncated: int = 0
    badSource: int = 0
    notForUs: int = 0
    forwarded: int = 0
    notRouted: int = 0
    hopLimitExceeded: int = 0
    noRoute: int = 0
    tooBig: int = 0
    unsupportedProtocol: int = 0
    extensionDropped: int = 0
    routingType0: int = 0
    parameterProblemSent: int = 0
    atomicFragments: int = 0
    fragmentsQueued: int = 0
    fragmentsDuplicate: int = 0
    fragmentOverlap: int = 0
    fragmentLimit: int = 0
    fragmentMalformed: int = 0
    fragmentsDropped: int = 0
    reassembled: int = 0
    reassemblyTimeout: int = 0
    reassemblyEvicted: int = 0
    timeExceededSent: int = 0
    fragmentedDatagrams: int = 0
    fragmentsSent: int = 0
    packetTooBigSent: int = 0
    # Dropped by the switch: a source the guest may not use, a Neighbor
    # Advertisement for another's address.
    spoofedSource: int = 0
    spoofedNDP: int = 0


@dataclass
class ICMPv6Counters:
    """
    ICMPv6: Neighbor Discovery, echo (local and through host ping
    sockets) and the errors vpnkit sends.  The C{ndp*} fields name why a
    solicitation went unanswered (L{vpnkit.protocols.ndp.Unanswered}).
    """

    received: int = 0
    malformed: int = 0
    badChecksum: int = 0
    ignored: int = 0
    routerSolicitations: int = 0
    # Every Router Advertisement sent; of them, the unsolicited ones.
    routerAdvertisementsSent: int = 0
    unsolicitedAdvertisements: int = 0
    neighborSolicitations: int = 0
    neighborAdvertisements: int = 0
    ndpHopLimit: int = 0
    ndpInvalid: int = 0
    ndpNotOurs: int = 0
    ndpGuestDAD: int = 0
    ndpOwnAddress: int = 0
    echoRequests: int = 0
    echoReplies: int = 0
    echoRefused: int = 0
    unsupported: int = 0
    unreachableSent: int = 0
    errorsSent: int = 0
    errorsLimited: int = 0
    errorsSuppressed: int = 0
    echoForwarded: int = 0
    echoForwardReplies: int = 0
    forwardUnavailable: int = 0
    forwardFailed: int = 0
    forwardUnreachable: int = 0
    unknownReplies: int = 0
    flowsOpened: int = 0
    flowsExpired: int = 0
    flowsEvicted: int = 0
    hostErrorsTranslated: int = 0
    hostErrorsDropped: int = 0


@dataclass
class DHCPv6Counters:
    """
    The DHCPv6 server; the C{dhcpv6*} fields name why a message went
    unanswered (L{vpnkit.protocols.dhcpv6.Unanswered}).
    """

    received: int = 0
    malformed: int = 0
    unknownClient: int = 0
    replies: int = 0
    dhcpv6NotARequest: int = 0
    dhcpv6NoClientID: int = 0
    dhcpv6ServerID: int = 0
    dhcpv6OtherServer: int = 0
    dhcpv6IAInInformationRequest: int = 0
    dhcpv6NothingToConfirm: int = 0


@dataclass
class UDPCounters:
    received: int = 0
    malformed: int = 0
    badChecksum: int = 0
    # Over IPv6 a checksum is mandatory (RFC 8200 8.1).
    zeroChecksum6: int = 0
    noHandler: int = 0
    sent: int = 0
    serviceErrors: int = 0
    # NAT through host sockets (vpnkit.protocols.udpnat).
    natSent: int = 0
    natReceived: int = 0
    natNotForwarded: int = 0
    natFlowsOpened: int = 0
    natFlowsExpired: int = 0
    natFlowsEvicted: int = 0
    natBindFailed: int = 0
    natSendFailed: int = 0
    natErrorsTranslated: int = 0
    natErrorsDropped: int = 0
    # Sends the host refused at once, answered with ICMP unreachable, or not
    # for the per-guest rate limit.
    natSendUnreachable: int = 0
    natSendErrorsLimited: int = 0
    # Gateway forwards and port forwards into the guests.
    gatewayForwarded: int = 0
    gatewayForwardFailed: int = 0
    inboundSent: int = 0
    inboundReceived: int = 0


@dataclass
class DHCPCounters:
    received: int = 0
    discover: int = 0
    offer: int = 0
    request: int = 0
    ack: int = 0
    nak: int = 0
    release: int = 0
    inform: int = 0
    decline: int = 0
    malformed: int = 0
    unknownClient: int = 0
    ignored: int = 0


@dataclass
class TCPCounters:
    """
    Guest TCP: segments, connection set-up (accept after dial) and ends.
    """

    segmentsIn: int = 0
    segmentsOut: int = 0
    malformed: int = 0
    badChecksum: int = 0
    synReceived: int = 0
    synAbsorbed: int = 0
    pendingReset: int = 0
    connectRefused: int = 0
    # Host dials that connected to themselves (also in connectRefused).
    selfConnects: int = 0
    connectUnreachable: int = 0
    connectTimeout: int = 0
    connectFailed: int = 0
    limitPending: int = 0
    limitConnections: int = 0
    # SYNs from addresses no guest holds; half-open connections evicted
    # by newer SYNs beyond the half-open budgets.
    synNotFromGuest: int = 0
    halfOpenEvicted: int = 0
    rstNoConnection: int = 0
    timeWaitReused: int = 0
    connectionsOpened: int = 0
    connectionsClosed: int = 0
    resetsSent: int = 0
    resetsReceived: int = 0
    timeouts: int = 0
    retransmits: int = 0
    outboundOpened: int = 0
    outboundFailed: int = 0


@dataclass
class DNSCounters:
    """
    The gateway's DNS server and its upstream forwarder.
    """

    udpQueries: int = 0
    tcpQueries: int = 0
    ignored: int = 0
    # Messages that do not parse or ask an ill-formed question: FORMERR.
    malformed: int = 0
    formerr: int = 0
    answered: int = 0
    nxdomain: int = 0
    servfail: int = 0
    truncated: int = 0
    builtin: int = 0
    hostsFile: int = 0
    cacheHits: int = 0
    upstreamQueries: int = 0
    upstreamRetransmits: int = 0
    upstreamReplies: int = 0
    upstreamBadReplies: int = 0
    upstreamTimeouts: int = 0
    upstreamErrors: int = 0
    upstreamTCP: int = 0
    systemLookups: int = 0


@dataclass
class CaptureCounters:
    """
    Packet capture (C{--pcap}, C{--pcap-file}): frames and bytes kept (after
    the snapshot length cut), readers that connected and readers closed
    because they fell too far behind, and failed writes to the file.
    """

    framesCaptured: int = 0
    bytesCaptured: int = 0
    readersConnected: int = 0
    readersDropped: int = 0
    fileWriteErrors: int = 0


@dataclass
class HTTPProxyCounters:
    """
    The HTTP proxy (C{--http}): guest connections it took, requests and
    tunnels, where they went, what it refused, bytes each way.

    @ivar upstreamFailures: failures per upstream (C{"host:port"} to a
        count); not a counter field, so C{asDict} stays flat (the stack's
        C{stats()} reports it).
    """

    connections: int = 0
    requests: int = 0
    requestsViaProxy: int = 0
    requestsDirect: int = 0
    tunnels: int = 0
    tunnelsViaProxy: int = 0
    upgrades: int = 0
    sniNames: int = 0
    sniMissing: int = 0
    forbidden: int = 0
    badRequests: int = 0
    connectFailures: int = 0
    upstreamErrors: int = 0
    tlsFailures: int = 0
    bytesFromGuest: int = 0
    bytesToGuest: int = 0

    def __post_init__(self):
        self.upstreamFailures = {}

    def failed(self, upstream):
        """
        Count one failure of C{upstream} (C{"host:port"}).
        """
        self.upstreamFailures[upstream] = self.upstreamFailures.get(upstream, 0) + 1


@dataclass
class StackCounters:
    link: LinkCounters = field(default_factory=LinkCounters)
    ethernet: EthernetCounters = field(default_factory=EthernetCounters)
    arp: ARPCounters = field(default_factory=ARPCounters)
    ipv4: IPv4Counters = field(default_factory=IPv4Counters)
    icmp: ICMPCounters = field(default_factory=ICMPCounters)
    udp: UDPCounters = field(default_factory=UDPCounters)
    dhcp: DHCPCounters = field(default_factory=DHCPCounters)
    tcp: TCPCounters = field(default_factory=TCPCounters)
    dns: DNSCounters = field(default_factory=DNSCounters)
    capture: CaptureCounters = field(default_factory=CaptureCounters)
    http: HTTPProxyCounters = field(default_factory=HTTPProxyCounters)
    ipv6: IPv6Counters = field(default_factory=IPv6Counters)
    icmpv6: ICMPv6Counters = field(default_factory=ICMPv6Counters)
    dhcpv6: DHCPv6Counters = field(default_factory=DHCPv6Counters)

    def asDict(self):
        """
        Every counter as a nested C{dict}, for logs and the stats API.
        """
        return asdict(self)
