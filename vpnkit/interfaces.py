"""
The contracts between vpnkit's layers.  Nothing else lives here.
"""

from zope.interface import Attribute, Interface

__all__ = [
    "IFrameReceiver",
    "IFrameTransmitter",
    "ILink",
    "IChecksumOffloadLink",
    "IGuests",
    "IEthernetPayloadReceiver",
    "IIPReceiver",
    "IIPSender",
    "IICMPErrors",
    "IUDPService",
    "ITunSystem",
    "ITCPRouter",
    "ITCPRoute",
    "IHostNetwork",
    "IDatagramReceiver",
    "IDatagramSocket",
    "IHostDatagramSockets",
]


class IFrameReceiver(Interface):
    """
    Something that accepts Ethernet frames from one guest link.
    """

    def frameReceived(frame):
        """
        Accept exactly one Ethernet frame (no FCS).  Never raises on
        malformed input: bad frames are counted and dropped.
        """


class IFrameTransmitter(Interface):
    """
    Something that carries Ethernet frames towards a guest.
    """

    def sendFrame(frame):
        """
        Queue one complete frame.  Never blocks; a link whose queue is full
        counts and drops, like a NIC.
        """


class ILink(IFrameTransmitter):
    """
    One guest link (a vmnet, QEMU or vfkit connection, a tap device): the
    switch's view of it.  Only its L{vpnkit.protocols.switch.SwitchPort}
    calls C{sendFrame}.
    """

    description = Attribute("Short text naming the link, for logs.")
    maxFrameSize = Attribute(
        "The largest frame (Ethernet header included) the link carries either way."
    )
    segmentLimit = Attribute(
        "The largest TCP payload one frame may carry towards the guest when "
        "the link takes segmentation-offload super-segments (a tap with "
        "offload), else 0."
    )

    def closeLink(reason):
        """
        Close the link (after a framing error or at shutdown), logging
        C{reason}.  The switch is told through L{IFrameReceiver} detach.
        """


class IChecksumOffloadLink(ILink):
    """
    A link whose guest's kernel completes checksums left partial (a tap
    with offload): a TCP segment reaches it as headers and payload, the
    payload never copied to join them.
    """

    checksumOffload = Attribute("Whether it does (a tap opened with offload does).")

    def sendFrameParts(head, payload, checksumStart, checksumOffset):
        """
        Queue one frame: C{head} (its Ethernet, IPv4 and TCP headers, all
        of them) then C{payload} (any bytes-like object; the link must not
        hold on to a small view of a large one).  The TCP checksum, at
        C{checksumStart + checksumOffset}, holds only the pseudo-header
        sum; the guest's kernel completes it.  A frame beyond the MTU is a
        segmentation-offload super-segment.  Never blocks, as
        L{IFrameTransmitter.sendFrame}.
        """


class IGuests(Interface):
    """
    What a link needs of vpnkit: an address for its guest, a place on the
    switch, and to give both back when it closes
    (L{vpnkit.guests.Guests}).
    """

    config = Attribute("The L{vpnkit.config.StackConfig} (MTU, frame sizes).")
    linkCounters = Attribute("The L{vpnkit.counters.LinkCounters} links count into.")

    def leaseForUUID(uuid, preferred=None):
        """
        The lease of a vmnet guest (C{uuid} canonical text, or C{None} for
        the all-zero UUID; C{preferred} a packed address or C{None}).

        @raise vpnkit.leases.AllocationError: with the reason to give the
            client.
        """

    def ephemeralLease():
        """
        A lease for a guest with no identity, given back at detach.

        @raise vpnkit.leases.AllocationError: the range is exhausted.
        """

    def release(lease):
        """
        Give back a lease whose link never attached.
        """

    def attach(link, lease, mac):
        """
        Plug C{link} (an L{ILink}) into the switch for the guest holding
        C{lease}; C{mac} is its MAC, or C{None} to learn it.

        @return: the L{IFrameReceiver} (a switch port) to feed the guest's
            frames to.
        """

    def detach(port):
        """
        Unplug the link of C{port} and give its lease back.
        """


class IEthernetPayloadReceiver(Interface):
    """
    A protocol layer registered with the switch for one EtherType.
    """

    def ethernetPayloadReceived(header, payload):
        """
        Receive the payload of a frame addressed to vpnkit (the server MAC or
        a group address).

        @param header: the frame's L{vpnkit.wire.ethernet.EthernetHeader}.
        """


class IIPReceiver(Interface):
    """
    A transport-protocol layer registered with an IP layer (IPv4 or IPv6:
    the same receiver serves both).
    """

    def ipPayloadReceived(header, payload):
        """
        Receive a whole datagram (reassembled, extension headers gone)
        whose header checksum and lengths verified.

        @param header: its L{vpnkit.wire.ipv4.IPv4Header} or
            L{vpnkit.wire.ipv6.IPv6Header}; either has C{src} and C{dst},
            packed (4 or 16 bytes: the family is the address length).  An
            IPv6 header is given with C{nextHeader} the upper-layer
            protocol and C{payloadLength} that of C{payload}, as if there
            had been no extension headers.
        """


class IIPSender(Interface):
    """
    An IP layer, as seen by the layers above it: L{IPv4Layer}, L{IPv6Layer},
    and L{vpnkit.protocols.ip.IPSender}, which picks one by the length of
    the addresses.
    """

    def sendIP(src, dst, protocol, payload, ttl=64, dstMAC=None, tail=b"", partialChecksum=None):
        """
        Build the IP header and send the datagram to the guest that owns
        C{dst} (or to C{dstMAC} when given: DHCP replies to a guest that
        has no address yet, IPv6 multicast and replies to link-local
        addresses).

        @param src: packed source address (4 or 16 bytes, as C{dst}).
        @param protocol: the upper-layer protocol (IPv6: the next header).
        @param ttl: the TTL, or IPv6's hop limit.
        @param tail: more of the datagram's payload, after C{payload},
            handed down without being copied (a view of a send buffer).
        @param partialChecksum: the offset in C{payload} of a checksum
            field that holds only the pseudo-header sum (see
            L{vpnkit.wire.tcp.emitTCPHeader}): completed by the guest's
            kernel through a link with checksum offload, else in software.

        @return: C{True} if a frame was handed to a link.
        """


class IICMPErrors(Interface):
    """
    The ICMP errors the layers above IP send to a guest, one provider per
    family (L{vpnkit.protocols.icmp.ICMPLayer},
    L{vpnkit.protocols.icmpv6.ICMPv6Layer}) and L{vpnkit.protocols.ip.ICMPErrors},
    which picks one by the length of C{header.src}.
    """

    def sendUnreachable(reason, header, quote):
        """
        Tell the guest that sent a datagram (its C{header}, the first bytes
        of its payload C{quote}) that its destination cannot be reached,
        from the gateway.

        @param reason: one of L{vpnkit.protocols.ip.Unreachable}; each
            family has its own code for it.
        @return: whether a message was sent.
        """

    def sendHostError(error, header, quote):
        """
        Pass what the host heard about a guest's datagram (a
        L{vpnkit.host.sockets.HostSocketError}) back to the guest:
        unreachable, time exceeded or too big, from the router that said
        so; nothing for an error that says nothing about the destination.

        @return: whether a message was sent.
        """


class IUDPService(Interface):
    """
    A service vpnkit itself answers on a UDP port with the IP and UDP headers in hand (DHCP).
    """

    def datagramReceived(ipHeader, udpHeader, payload):
        """
        Receive one datagram addressed to the service's port.
        """


class ITunSystem(Interface):
    """
    The narrow seam to the operating system for tap devices in network
    namespaces.  The real implementation is in L{vpnkit.host.tundev}; tests
    use a fake built on C{socketpair(AF_UNIX, SOCK_SEQPACKET)}, which has the
    same one-frame-per-read semantics.
    """

    def openTap(netns, name, mac, mtu, offload=False):
        """
        Create (or attach to) tap device C{name} inside network namespace
        C{netns} (a path such as C{/var/run/netns/guest}, or C{None} for
        ours), set its MAC and MTU, bring it up.  With C{offload}, every
        frame read or written is preceded by a 10-byte virtio-net header and
        the device offers checksum and TCPv4 segmentation offload.

        @return: a non-blocking file descriptor, one frame per read/write.
        @raise OSError: the namespace or device could not be used.
        """

    def read(fd, size):
        """
        Read one frame; raise C{BlockingIOError} when none is waiting.
        """

    def write(fd, frame):
        """
        Write one frame; raise C{BlockingIOError} when the device is full.
        """

    def writev(fd, buffers):
        """
        Write one frame given in pieces (a header and the frame), as one
        write.
        """

    def close(fd):
        """
        Close the descriptor (the non-persistent tap disappears).
        """


class ITCPRouter(Interface):
    """
    What the TCP layer asks where a guest's new connection goes.
    """

    def connectionRequested(flow):
        """
        A guest sent a SYN for C{flow} (a L{vpnkit.protocols.tcp.layer.Flow}).

        @return: a L{Deferred} that fires with the L{IProtocol} to attach to
            the guest's connection once its other end exists (vpnkit then
            answers the SYN), or fails: C{ConnectionRefusedError} (and most
            other errors) make vpnkit send RST, C{NoRouteError} or an
            unreachable C{ConnectError} make it send ICMP destination
            unreachable.  If the guest gives up first, vpnkit calls the
            protocol's C{connectionLost} without ever connecting it, so it
            can close its other end.
        """


class ITCPRoute(Interface):
    """
    One link of the router's chain: a kind of destination (a gateway
    forward, a service vpnkit runs itself, the host's sockets).
    """

    def route(flow):
        """
        @return: C{None} when this route does not take C{flow} (the next
            one is asked), else what L{ITCPRouter.connectionRequested}
            returns.
        """


class IHostNetwork(Interface):
    """
    The only route from vpnkit to real sockets.  Narrow, so the fake used in
    tests stays small; the real one is checked against loopback.
    """

    def connectTCP(host, port, protocol, timeout):
        """
        Connect C{protocol} to C{host}:C{port} (dotted-quad text).

        @return: a L{Deferred} firing with C{protocol} once connected, or
            failing with the connect error (C{TimeoutError} after
            C{timeout} seconds).
        """


class IDatagramReceiver(Interface):
    """
    What a host datagram socket reports to.
    """

    def datagramReceived(data, host, port):
        """
        A datagram arrived from C{host} (text) and C{port} (0 for ICMP
        sockets, whose C{data} is the whole ICMP message).
        """

    def errorReceived(error):
        """
        The host reported an error for a datagram this socket sent: a
        L{vpnkit.host.sockets.HostSocketError} (an ICMP message from a
        router or the destination, or a local refusal such as
        C{EMSGSIZE}).
        """


class IDatagramSocket(Interface):
    """
    One host datagram socket (UDP, or an unprivileged ICMP "ping" socket).
    """

    port = Attribute(
        "The local port; for an ICMP socket the echo identifier the kernel "
        "puts in every request it sends."
    )
    family = Attribute("C{socket.AF_INET} or C{socket.AF_INET6}, as opened.")

    def sendTo(data, host, port, ttl=None, dontFragment=False):
        """
        Send one datagram to C{host} (text, of the socket's family),
        C{port}, with this IP TTL (IPv6: hop limit) and DF flag (IPv6: the
        host does not fragment it; too big for the path MTU is
        C{EMSGSIZE}).

        @raise OSError: the host refused at once (C{EMSGSIZE}, a full
            buffer, no route); errors reported later arrive through
            L{IDatagramReceiver.errorReceived}.
        """

    def close():
        """
        Close the socket; nothing is reported after this.
        """


class IHostDatagramSockets(Interface):
    """
    The seam to the host's datagram sockets.  The real implementation is
    L{vpnkit.host.sockets.HostDatagramSockets}; tests use
    C{tests.fakesockets.FakeDatagramSockets}, checked against the real one
    on loopback in C{tests/test_host_sockets_real.py}.
    """

    def openUDP(receiver, family=None):
        """
        A UDP socket bound to the wildcard address and a port the host
        picks, reporting to C{receiver} (an L{IDatagramReceiver}).
        C{family} is C{socket.AF_INET} (the default) or C{AF_INET6} (an
        IPv6-only socket: addresses are IPv6 text, errors come as
        C{"icmp6"} or C{"local"}).

        @return: an L{IDatagramSocket}.
        @raise OSError: no socket (C{EMFILE}, C{EAFNOSUPPORT}, ...).
        """

    def openICMP(receiver, family=None):
        """
        An ICMP echo ("ping") socket reporting to C{receiver}.  C{family}
        is C{socket.AF_INET} (the default) or C{AF_INET6}: an ICMPv6 ping
        socket, which sends the ICMPv6 echo requests given to C{sendTo}
        (port 0) and delivers ICMPv6 echo replies from their ICMPv6 header
        on.  For both the kernel sets the echo identifier (C{port}).

        @return: an L{IDatagramSocket}.
        @raise OSError: C{EACCES} when C{net.ipv4.ping_group_range} (which
            governs both families) does not include our group, C{EMFILE},
            ...
        """


class IGuestConnector(Interface):
    """
    How port forwards reach into the guests (vpnkit's TCP and UDP layers).
    Addresses are text, IPv4 or IPv6 (the source of the guest's family).
    """

    def connectTCP(guestIP, guestPort, srcIP, srcPort, protocol):
        """
        Open a TCP connection to the guest from C{srcIP}:C{srcPort}.

        @return: a L{Deferred} firing with the connected transport
            (C{protocol} attached), or failing when the guest refuses, does
            not answer, or is not there.
        """

    def openUDP(guestIP, guestPort, srcIP, srcPort, deliver):
        """
        A UDP flow to the guest from C{srcIP}:C{srcPort}; the guest's
        datagrams back go to C{deliver(data)}.

        @return: an object with C{send(data)} and C{close()}.
        """

