# -*- test-case-name: tests.test_switch -*-
"""
The Ethernet switch every guest link plugs into.

Each link gets a L{SwitchPort}.  A frame from a guest is either switched to
another guest (unicast to that guest's MAC), flooded (broadcast and
multicast) and also handed to vpnkit's own layers, or, when addressed to the
server MAC, demultiplexed by EtherType to the registered receiver.  Frames
from vpnkit's layers are routed by destination MAC (L{sendFrame}) or handed
straight to the port that owns a destination IP (L{portForIP}).
"""

from struct import Struct

from zope.interface import implementer

from vpnkit.interfaces import IFrameReceiver, IFrameTransmitter
from vpnkit.log import logger
from vpnkit.wire import ParseError
from vpnkit.wire.gso import segmentTCPv4
from vpnkit.wire.ethernet import (
    ETHERTYPE_IPV6,
    ETHERTYPE_VLAN,
    HEADER_LENGTH,
    EthernetHeader,
    formatMAC,
)

__all__ = ["SwitchPort", "EthernetSwitch"]

log = logger("vpnkit.switch")

_header = Struct("!6s6sH")


@implementer(IFrameReceiver)
class SwitchPort:
    """
    One guest's place on the switch.

    @ivar link: the guest's L{vpnkit.interfaces.ILink}.
    @ivar lease: the guest's L{vpnkit.leases.Lease}.
    @ivar mac: the guest's MAC: the lease's for links that assign it
        (vmnet, tap), otherwise learned from the first frame the guest sends.
    """

    __slots__ = ("link", "lease", "mac", "attached", "maxFrame", "_switch", "_observers")

    def __init__(self, switch, link, lease, mac, maxFrame):
        self._switch = switch
        self._observers = switch._observers
        self.link = link
        self.lease = lease
        self.mac = mac
        self.attached = True
        # The largest frame the link carries: the MTU's, or 64 KiB on a tap
        # with segmentation offload.
        self.maxFrame = maxFrame

    def frameReceived(self, frame):
        if self.attached:
            for observer in self._observers:
                observer.frameObserved(frame)
            self._switch.frameFromPort(self, frame)

    def sendFrame(self, frame):
        """
        Hand C{frame} to the guest's link, showing it to the observers
        first.
        """
        for observer in self._observers:
            observer.frameObserved(frame)
        self.link.sendFrame(frame)

    def __repr__(self):
        mac = formatMAC(self.mac) if self.mac else "?"
        return f"<SwitchPort {self.link.description} {self.lease.ip} {mac}>"


@implementer(IFrameTransmitter)
class EthernetSwitch:
    """
    The switch, and the link-layer entry point of vpnkit's own stack.
    """

    def __init__(self, config, counters):
        self._serverMAC = config.serverMAC
        self._maxFrame = config.maxFrameSize
        self._wireFrame = config.mtu + HEADER_LENGTH
        self._counters = counters.ethernet
        self._linkCounters = counters.link
        self._receivers = {}
        self._ports = []
        self._byMAC = {}
        self._byIP = {}
        self._observers = []

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
        Show every frame a guest sends, and every frame handed to a guest's
        link, to C{observer.frameObserved(frame)} (packet capture).
        """
        self._observers.append(observer)

    def removeObserver(self, observer):
        self._observers.remove(observer)

    def attach(self, link, lease, mac=None):
        """
        Plug a guest link in.

        @return: the L{SwitchPort} the link feeds its frames to.
        """
        port = SwitchPort(
            self, link, lease, mac, getattr(link, "maxFrameSize", None) or self._maxFrame
        )
        self._ports.append(port)
        self._byIP[lease.ip.packed] = port
        if mac is not None:
            self._byMAC[mac] = port
        self._linkCounters.linksOpened += 1
        log.info("guest attached: {port}", port=port)
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
        self._linkCounters.linksClosed += 1
        log.info("guest detached: {port}", port=port)

    # -- lookups ---------------------------------------------------------

    def ports(self):
        return list(self._ports)

    def portForIP(self, packedIP):
        """
        The port of the guest holding C{packedIP}, or C{None}.
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
        if port.mac is None and not src[0] & 1:
            self._learn(port, src)
        if dst != self._serverMAC:
            if dst[0] & 1:
                self._flood(port, frame)
            else:
                other = self._byMAC.get(dst)
                if other is None or other is port:
                    counters.notForUs += 1
                else:
                    counters.switched += 1
                    self.sendToPort(other, frame)
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
        receiver.ethernetPayloadReceived(
            EthernetHeader(dst, src, ethertype), frame[HEADER_LENGTH:]
        )

    def sendToPort(self, port, frame):
        """
        Hand C{frame} to C{port}'s link, cutting a segmentation-offload
        super-segment (only a tap with offload produces them) into frames
        that fit the MTU, as the sender's NIC would have.
        """
        if len(frame) <= self._wireFrame or getattr(port.link, "segmentLimit", 0):
            # It fits, or the link takes super-segments whole.
            port.sendFrame(frame)
            return
        try:
            pieces = segmentTCPv4(frame, self._wireFrame)
        except ParseError:
            self._counters.tooBigForLink += 1
            return
        self._counters.segmented += 1
        for piece in pieces:
            port.sendFrame(piece)

    def _learn(self, port, mac):
        if mac in self._byMAC:
            # Another guest already uses this MAC; keep the first owner.
            return
        port.mac = mac
        self._byMAC[mac] = port
        log.debug("learned {mac} on {port}", mac=formatMAC(mac), port=port)

    def _flood(self, source, frame):
        for port in self._ports:
            if port is not source:
                self._counters.flooded += 1
                port.sendFrame(frame)

    # -- frames from vpnkit ----------------------------------------------

    def sendFrame(self, frame):
        """
        Send a frame from vpnkit's own layers, routed by its destination
        MAC: a group address reaches every guest.
        """
        dst = frame[:6]
        if dst[0] & 1:
            for port in self._ports:
                port.sendFrame(frame)
            return
        port = self._byMAC.get(dst)
        if port is None:
            self._counters.noRoute += 1
            return
        port.sendFrame(frame)
