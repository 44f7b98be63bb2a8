# -*- test-case-name: tests.test_switch -*-
"""
The Ethernet switch every guest link plugs into.

Each link gets a L{SwitchPort}, and every frame between a guest and the
rest of vpnkit passes through it: L{SwitchPort.frameReceived} for what the
guest sends, L{SwitchPort.transmit} for what it is sent (the one place a
whole frame is handed to a link; a TCP segment for a link with checksum
offload goes from L{SwitchPort.sendPayload} in two pieces instead, its
payload uncopied).  Observers added with L{EthernetSwitch.addObserver}
(the packet capture) see both ways, and only whole frames.

A frame from a guest is either switched to another guest (unicast to that
guest's MAC), flooded (broadcast and multicast) and also handed to vpnkit's
own layers, or, when addressed to the server MAC, demultiplexed by
EtherType to the registered receiver.  vpnkit's layers send through the
switch: by destination MAC (L{EthernetSwitch.sendToMAC}), or to the port
that holds a destination IP (L{EthernetSwitch.portForIP}, then
L{SwitchPort.sendPayload}); they never touch a link.

Each port is bound to its guest: a frame whose source MAC is not the
port's (once known: QEMU-style links learn it from the first frame), an
IPv4 datagram whose source is not the port's leased address (0.0.0.0 to
the limited broadcast aside, and DHCP client messages to the server, which
may come from an address the client no longer holds, so that it hears the
NAK), and an ARP packet whose sender is
not the port's MAC and address (RFC 5227 probes from 0.0.0.0 aside) are
dropped and counted, on the port and in total, before anything is switched
or flooded.  The check is here, not in the ARP and IPv4 layers, because
frames between guests (switched, or flooded as a gratuitous ARP is) never
pass those layers.  Only frames a receiver could take for IPv4 (version
4, a whole header) or Ethernet/IPv4 ARP are looked into; anything else is
garbage every receiver drops, and vpnkit's layers count it as such.

With IPv6 on (C{config.ipv6}), an IPv6 datagram's source must be the
unspecified address (duplicate address detection), or a link-local or
in-prefix address that neither vpnkit nor another port holds; the port
learns it (L{SwitchPort.ipv6}, at most L{MAX_IPV6_PER_PORT}, the oldest
forgotten first) and L{EthernetSwitch.portForIP} finds the port by it.  A
Neighbor Advertisement whose target is vpnkit's or another port's address
is dropped (it would take that address over); one for an address nobody
holds teaches it to the sender's port.  Anything else is dropped and
counted as a spoofed IP source.  The stable address of a port's lease (the
one DHCPv6 hands out) is the port's from attach on.

(Past 600 lines: the per-port source checks of both families belong with
the frame path they guard.)
"""

from struct import Struct

from zope.interface import implementer

from vpnkit.interfaces import IChecksumOffloadLink, IFrameReceiver
from vpnkit.log import GuestLog, logger
from vpnkit.wire import ParseError
from vpnkit.wire.checksum import finishChecksum
from vpnkit.wire.gso import segmentTCP
from vpnkit.wire.ethernet import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_VLAN,
    HEADER_LENGTH,
    EthernetHeader,
    formatMAC,
)

__all__ = ["SwitchPort", "EthernetSwitch", "MAX_IPV6_PER_PORT"]

log = logger("vpnkit.switch")
# Attaches and detaches follow what guests and local clients do.
guestLog = GuestLog(log)

_header = Struct("!6s6sH")
_ZERO_IP = bytes(4)
_BROADCAST_IP = b"\xff" * 4
_UDP = 17
_ICMPV6 = 58
_NEIGHBOR_ADVERTISEMENT = 136
_UNSPECIFIED_IPV6 = bytes(16)
# The IPv6 addresses one port may hold at once (link-local, SLAAC, DHCPv6,
# privacy addresses): beyond it the oldest is forgotten.
MAX_IPV6_PER_PORT = 16
_DHCP_SERVER_PORT = b"\x00\x43"
# An ARP packet a host takes: IPv4 addresses over 6-byte MACs (the hardware
# type is not checked: Linux accepts Ethernet and IEEE 802 alike).
_ARP_IPV4_ETHERNET = b"\x08\x00\x06\x04"


@implementer(IFrameReceiver)
class SwitchPort:
    """
    One guest's place on the switch.

    @ivar link: the guest's L{vpnkit.interfaces.ILink}.
    @ivar lease: the guest's L{vpnkit.leases.Lease}.
    @ivar mac: the guest's MAC: the lease's for links that assign it
        (vmnet, tap), otherwise learned from the first frame the guest sends.
    @ivar maxFrame: the largest frame the link carries (the MTU's, or 64 KiB
        on a tap with segmentation offload).
    @ivar segmentLimit: the largest TCP payload one frame to this guest may
        carry beyond the MSS (a link with segmentation offload), else 0.
    @ivar ip: the packed leased address, the only IPv4 source the guest
        may use.
    @ivar spoofedMAC: frames dropped for a source MAC not the port's.
    @ivar ipv6: the packed IPv6 addresses the guest has been seen using
        (link-local and in the prefix), oldest first: a C{dict} used as
        an ordered set (only its keys mean anything).
    @ivar ipv6Lease: the packed stable IPv6 address that goes with the
        lease (the one DHCPv6 hands this guest), reserved for it from
        attach on so that a port forward reaches it before the guest has
        sent from it; C{None} with IPv6 off.
    @ivar speaksIPv6: the guest has sent an IPv6 datagram (one the port
        let through).
    @ivar spoofedIP: IPv4 and IPv6 datagrams dropped for a source not the
        port's.
    @ivar spoofedARP: ARP packets dropped for a sender not the port's.
    """

    __slots__ = (
        "link",
        "lease",
        "mac",
        "attached",
        "maxFrame",
        "segmentLimit",
        "ip",
        "ipv6",
        "ipv6Lease",
        "speaksIPv6",
        "spoofedMAC",
        "spoofedIP",
        "spoofedARP",
        "_switch",
        "_observers",
        "_head",
        "_headers",
        "_wireFrame",
        "_counters",
        "_checksumOffload",
    )

    def __init__(self, switch, link, lease, mac, wireFrame, observers, counters):
        self._switch = switch
        self.link = link
        self.lease = lease
        self.mac = mac
        self.attached = True
        self.maxFrame = link.maxFrameSize
        self.segmentLimit = link.segmentLimit
        self.ip = lease.ip.packed
        self.ipv6 = {}
        self.ipv6Lease = None
        self.speaksIPv6 = False
        self.spoofedMAC = self.spoofedIP = self.spoofedARP = 0
        self._wireFrame = wireFrame
        self._observers = observers
        self._counters = counters
        self._head = None if mac is None else mac + switch.serverMAC
        # Whether the guest's kernel completes partial checksums.
        self._checksumOffload = IChecksumOffloadLink.providedBy(link) and link.checksumOffload
        # The Ethernet header of this guest's frames to vpnkit, by
        # EtherType: the same few every time, and immutable.
        self._headers = {}

    def headerFor(self, ethertype):
        """
        The L{EthernetHeader} of a frame from this guest to vpnkit's MAC
        with C{ethertype} (a frame the port took as from its guest).
        """
        header = self._headers.get(ethertype)
        if header is None:
            header = EthernetHeader(self._switch.serverMAC, self.mac, ethertype)
            if len(self._headers) < 8:
                self._headers[ethertype] = header
        return header

    def frameReceived(self, frame):
        """
        One frame from the guest.
        """
        if self.attached:
            for observer in self._observers:
                observer.frameObserved(frame)
            self._switch.frameFromPort(self, frame)

    def learned(self, mac):
        self.mac = mac
        self._head = mac + self._switch.serverMAC
        self._headers = {}

    def sendPayload(self, ethertype, header, payload=b"", partial=None):
        """
        Send the guest a frame from vpnkit's MAC to its own: C{ethertype}
        (two bytes), then C{header} and C{payload}.

        @param partial: C{(start, offset)} when a checksum in the frame is
            left partial (see L{vpnkit.wire.tcp.emitTCPHeader}): the field
            at C{header[start + offset]} holds the pseudo-header sum, and
            everything from C{header[start]} on, C{payload} included, is
            to be summed into it.  A link with checksum offload takes the
            frame in two pieces (C{payload} uncopied) and leaves that to
            the guest's kernel; for any other link, or while someone
            observes the frames, it is done here.
        @return: C{False} when the guest's MAC is not known yet.
        """
        if self._head is None:
            return False
        if partial is not None:
            start, offset = partial
            if self._checksumOffload and not self._observers:
                head = b"".join((self._head, ethertype, header))
                if len(head) + len(payload) <= self.maxFrame:
                    self._deliverParts(head, payload, HEADER_LENGTH + start, offset)
                    return True
            header = finishChecksum(header, start, offset, payload)
        self.transmit(b"".join((self._head, ethertype, header, payload)))
        return True

    def transmit(self, frame):
        """
        Send the guest one frame, cutting a segmentation-offload
        super-segment (only a tap with offload produces them) into frames
        that fit the MTU when its link cannot carry it, as the sender's NIC
        would have.
        """
        if not self.attached:
            return
        if len(frame) <= self.maxFrame:
            # The link carries it (a link with offload takes super-segments
            # whole).
            self._deliver(frame)
            return
        try:
            pieces = segmentTCP(frame, self._wireFrame)
        except ParseError:
            self._counters.tooBigForLink += 1
            return
        self._counters.segmented += 1
        for piece in pieces:
            self._deliver(piece)

    def _deliver(self, frame):
        # The one place a whole frame is handed to a link.
        for observer in self._observers:
            observer.frameObserved(frame)
        self.link.sendFrame(frame)

    def _deliverParts(self, head, payload, checksumStart, checksumOffset):
        # The one place a frame in pieces is: only to a link with checksum
        # offload, only while nobody observes frames.
        if self.attached:
            self.link.sendFrameParts(head, payload, checksumStart, checksumOffset)

    def __repr__(self):
        mac = formatMAC(self.mac) if self.mac else "?"
        return f"<SwitchPort {self.link.description} {self.lease.ip} {mac}>"


class MACDestination:
    """
    A frame destination known only by its MAC (a DHCP client with no
    address yet, a multicast group): what vpnkit's IP layers send through
    in place of a L{SwitchPort}, routed by L{EthernetSwitch.sendToMAC}.
    No segmentation offload: every frame fits the MTU.
    """

    segmentLimit = 0

    def __init__(self, switch, mac):
        self._switch = switch
        self._head = mac + switch.serverMAC

    def sendPayload(self, ethertype, header, payload=b"", partial=None):
        """
        As L{SwitchPort.sendPayload}, a partial checksum always completed
        here.
        """
        if partial is not None:
            header = finishChecksum(header, partial[0], partial[1], payload)
        self._switch.sendToMAC(b"".join((self._head, ethertype, header, payload)))
        return True


class EthernetSwitch:
    """
    The switch, and the link-layer entry point of vpnkit's own stack.
    """

    def __init__(self, config, counters):
        self.serverMAC = self._serverMAC = config.serverMAC
        self._gateway = config.gatewayPacked
        self._wireFrame = config.mtu + HEADER_LENGTH
        self._observers = []
        self._counters = counters.ethernet
        self._arpCounters = counters.arp
        self._ipv4Counters = counters.ipv4
        self._ipv6Counters = counters.ipv6
        plan = config.ipv6
        # vpnkit's own IPv6 addresses and the first half of the prefix, or
        # None with IPv6 off.
        self._ipv6Local = plan.localAddresses if plan is not None else None
        self._ipv6Prefix = plan.prefix.network_address.packed[:8] if plan is not None else None
        self._ipv6Plan = plan
        self._lowestIP = int(config.lowestIP)
        # Called with a port whose guest sent its first IPv6 datagram (the
        # ICMPv6 layer's first Router Advertisement), and with each port
        # detached.
        self.ipv6Hooks = []
        self.detachHooks = []
        self._linkCounters = counters.link
        self._receivers = {}
        self._ports = []
        self._byMAC = {}
        self._byIP = {}

    # -- configuration -------------------------------------------------

    def addProto(self, ethertype, receiver):
        """
        Deliver frames of C{ethertype} addressed to vpnkit to C{receiver}
        (an L{vpnkit.interfaces.IEthernetPayloadReceiver}).
        """
        if ethertype in self._receivers:
            raise ValueError(f"EtherType {ethertype:#06x} already registered")
        self._receivers[ethertype] = receiver

    def addObserver(self, observer):
        """
        Show C{observer} every frame each port receives from its guest or
        sends to it (C{observer.frameObserved(frame)}).
        """
        self._observers.append(observer)

    def removeObserver(self, observer):
        self._observers.remove(observer)

    def attach(self, link, lease, mac=None):
        """
        Plug a guest link in.

        @param link: an L{vpnkit.interfaces.ILink}.
        @return: the L{SwitchPort} the link feeds its frames to.
        """
        port = SwitchPort(
            self, link, lease, mac, self._wireFrame, self._observers, self._counters
        )
        self._ports.append(port)
        self._byIP[lease.ip.packed] = port
        stable = self._stableIPv6(lease)
        if stable is not None and stable not in self._byIP:
            port.ipv6Lease = stable
            self._byIP[stable] = port
        if mac is not None:
            self._byMAC[mac] = port
        self._linkCounters.linksOpened += 1
        guestLog.info("guest attached: {port}", port=port)
        return port

    def detach(self, port):
        """
        Unplug a guest link.
        """
        if port not in self._ports:
            return
        port.attached = False
        self._ports.remove(port)
        if self._byIP.get(port.lease.ip.packed) is port:
            del self._byIP[port.lease.ip.packed]
        if port.mac is not None and self._byMAC.get(port.mac) is port:
            del self._byMAC[port.mac]
        for address in (*port.ipv6, port.ipv6Lease):
            if self._byIP.get(address) is port:
                del self._byIP[address]
        self._linkCounters.linksClosed += 1
        for hook in self.detachHooks:
            # Before the port forgets its IPv6 addresses: the hooks close
            # what those addresses held.
            hook(port)
        port.ipv6 = {}
        guestLog.info("guest detached: {port}", port=port)

    def _stableIPv6(self, lease):
        """
        The packed stable IPv6 address of C{lease} (the guest whose IPv4
        address is the n-th of the range has the n-th, as DHCPv6 hands
        out), or C{None}.
        """
        if self._ipv6Plan is None:
            return None
        try:
            return self._ipv6Plan.guestAddress(int(lease.ip) - self._lowestIP).packed
        except ValueError:
            return None

    # -- lookups ---------------------------------------------------------

    def ports(self):
        return list(self._ports)

    def portForIP(self, packedIP):
        """
        The port of the guest holding C{packedIP} (an IPv4 lease, or an
        IPv6 address the port learned), or C{None}.
        """
        return self._byIP.get(packedIP)

    def portForMAC(self, mac):
        return self._byMAC.get(mac)

    # -- frames from guests ----------------------------------------------

    def frameFromPort(self, port, frame):
        """
        Handle one frame a guest sent on C{port}.
        """
        counters = self._counters
        counters.received += 1
        n = len(frame)
        if n < HEADER_LENGTH:
            self._linkCounters.shortFrames += 1
            return
        if n > port.maxFrame:
            self._linkCounters.oversizeFrames += 1
            return
        dst, src, ethertype = _header.unpack_from(frame)
        if src != port.mac:
            if port.mac is None:
                self._learn(port, src)
            if src != port.mac:
                counters.spoofedSource += 1
                port.spoofedMAC += 1
                return
        if ethertype == ETHERTYPE_IPV4:
            # Version 4 and a header length of at least 20 bytes: what an
            # IPv4 receiver takes.
            if n >= 34 and 0x45 <= frame[14] <= 0x4F:
                source = frame[26:30]
                if source != port.ip and not (
                    (source == _ZERO_IP and frame[30:34] == _BROADCAST_IP)
                    or self._toDHCPServer(frame, n)
                ):
                    self._ipv4Counters.spoofedSource += 1
                    port.spoofedIP += 1
                    return
                if frame[23] == _UDP and self._claimsOtherClient(frame, n, src):
                    # The DHCP server knows clients by chaddr: another
                    # guest's would let this one renew or release that
                    # guest's lease, or have it NAKed.
                    self._ipv4Counters.spoofedSource += 1
                    port.spoofedIP += 1
                    return
        elif ethertype == ETHERTYPE_IPV6 and self._ipv6Local is not None:
            # Version 6 and a whole fixed header.
            if n >= 54 and frame[14] >> 4 == 6:
                source = frame[22:38]
                if source not in port.ipv6 and not self._takeIPv6(port, source):
                    self._ipv6Counters.spoofedSource += 1
                    port.spoofedIP += 1
                    return
                if (
                    frame[20] == _ICMPV6
                    and n >= 78
                    and frame[54] == _NEIGHBOR_ADVERTISEMENT
                    and not self._takeIPv6(port, frame[62:78], unspecified=False)
                ):
                    self._ipv6Counters.spoofedNDP += 1
                    port.spoofedIP += 1
                    return
                if not port.speaksIPv6:
                    port.speaksIPv6 = True
                    for hook in self.ipv6Hooks:
                        hook(port)
        elif ethertype == ETHERTYPE_ARP:
            if n >= 42 and frame[16:20] == _ARP_IPV4_ETHERNET:
                sender = frame[28:32]
                if frame[22:28] != src or (sender != port.ip and sender != _ZERO_IP):
                    self._arpCounters.spoofedSender += 1
                    port.spoofedARP += 1
                    return
        if dst != self._serverMAC:
            if dst[0] & 1:
                self._flood(port, frame)
            else:
                other = self._byMAC.get(dst)
                if other is None or other is port:
                    counters.notForUs += 1
                else:
                    counters.switched += 1
                    other.transmit(frame)
                return
        receiver = self._receivers.get(ethertype)
        if receiver is None:
            if ethertype == ETHERTYPE_IPV6:
                counters.ipv6 += 1
            elif ethertype == ETHERTYPE_VLAN:
                counters.vlan += 1
            else:
                counters.unsupportedEthertype += 1
            return
        # The frame is from the port's own MAC (checked above).
        header = port.headerFor(ethertype) if dst == self._serverMAC else EthernetHeader(
            dst, src, ethertype
        )
        receiver.ethernetPayloadReceived(header, frame[HEADER_LENGTH:])

    def _takeIPv6(self, port, address, unspecified=True):
        """
        Whether C{port}'s guest may use IPv6 C{address}: the unspecified
        address (when C{unspecified}), or a link-local or in-prefix one
        neither vpnkit nor another port holds, which the port then learns.
        """
        if address == _UNSPECIFIED_IPV6:
            return unspecified
        if address in self._ipv6Local:
            return False
        if not (
            (address[0] == 0xFE and address[1] & 0xC0 == 0x80)
            or address[:8] == self._ipv6Prefix
        ):
            return False
        owner = self._byIP.get(address)
        if owner is not None and owner is not port:
            return False
        if address in port.ipv6:
            return True
        # Learned (the lease's stable address too, once used: it is then
        # seen, and stays reserved when forgotten here).
        addresses = port.ipv6
        if len(addresses) >= MAX_IPV6_PER_PORT:
            oldest = next(iter(addresses))
            del addresses[oldest]
            if self._byIP.get(oldest) is port and oldest != port.ipv6Lease:
                del self._byIP[oldest]
        addresses[address] = None
        self._byIP[address] = port
        log.debug("learned an IPv6 address on {port}", port=port)
        return True

    def _claimsOtherClient(self, frame, n, mac):
        """
        Whether a UDP frame is a DHCP client message (to port 67) whose
        client hardware address is not C{mac}, the sender's.
        """
        udp = 14 + (frame[14] & 0x0F) * 4
        if frame[udp + 2 : udp + 4] != _DHCP_SERVER_PORT or n < udp + 8 + 34:
            return False
        chaddr = udp + 8 + 28
        return frame[chaddr : chaddr + 6] != mac

    def _toDHCPServer(self, frame, n):
        """
        Whether an IPv4 frame is a DHCP client message for vpnkit's server:
        unfragmented UDP to port 67 of the gateway or the limited
        broadcast.  A client sends those from 0.0.0.0 before it has an
        address, and from the address it held when it renews or rebinds,
        which may no longer be its lease (vpnkit restarted): the server
        answers by the client's MAC and NAKs an address it does not hold.
        """
        if frame[23] != _UDP or (frame[20] & 0x3F) or frame[21]:
            return False
        udp = 14 + (frame[14] & 0x0F) * 4
        return (
            n >= udp + 4
            and frame[udp + 2 : udp + 4] == _DHCP_SERVER_PORT
            and (frame[30:34] == _BROADCAST_IP or frame[30:34] == self._gateway)
        )

    def _learn(self, port, mac):
        if mac[0] & 1 or mac == self._serverMAC or mac in self._byMAC:
            # A group address, vpnkit's own, or one another guest already
            # uses (the first owner keeps it): never this guest's.
            return
        port.learned(mac)
        self._byMAC[mac] = port
        log.debug("learned {mac} on {port}", mac=formatMAC(mac), port=port)

    def _flood(self, source, frame):
        for port in self._ports:
            if port is not source:
                self._counters.flooded += 1
                port.transmit(frame)

    # -- frames from vpnkit ----------------------------------------------

    def toMAC(self, mac):
        """
        A L{MACDestination} for C{mac}.
        """
        return MACDestination(self, mac)

    def sendToMAC(self, frame):
        """
        Send a frame from vpnkit's own layers, routed by its destination
        MAC: a group address reaches every guest.
        """
        dst = frame[:6]
        if dst[0] & 1:
            for port in self._ports:
                port.transmit(frame)
            return
        port = self._byMAC.get(dst)
        if port is None:
            self._counters.noRoute += 1
            return
        port.transmit(frame)
