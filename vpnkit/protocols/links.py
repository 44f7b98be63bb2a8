# -*- test-case-name: tests.test_links -*-
"""
Guest links over byte streams: the vmnet protocol (handshake, then frames
behind a little-endian u16 length) and QEMU's stream netdev (frames behind a
big-endian u32 length).

L{FrameDecoder} is the pure framing; the protocols are thin glue between a
transport and a L{vpnkit.protocols.switch.SwitchPort}.  The client side of
both (used by C{vpnkit-tap-bridge}) lives here too, so one decoder serves
both ends.
"""

from struct import Struct

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from vpnkit.interfaces import ILink
from vpnkit.leases import AllocationError
from vpnkit.log import GuestLog, logger
from vpnkit.wire import ParseError
from vpnkit.wire import vmnet
from vpnkit.wire.ethernet import HEADER_LENGTH, formatMAC

__all__ = [
    "VMNET_PREFIX",
    "QEMU_PREFIX",
    "FramingError",
    "FrameDecoder",
    "VMNetServerProtocol",
    "VMNetServerFactory",
    "QEMUServerProtocol",
    "QEMUServerFactory",
    "VMNetClientProtocol",
    "QEMUClientProtocol",
]

log = logger("vpnkit.links")

VMNET_PREFIX = Struct("<H")
QEMU_PREFIX = Struct("!I")

# While a guest does not read, at most this much is queued for it; beyond
# it frames are dropped, as a NIC with a full ring would.
TX_QUEUE_LIMIT = 4 * 1024 * 1024


class FramingError(Exception):
    """
    A length prefix announcing a frame shorter than an Ethernet header or
    longer than the link allows.

    @ivar kind: C{"short"} or C{"oversize"}.
    """

    def __init__(self, kind, length):
        super().__init__(f"{kind} frame: length prefix says {length} bytes")
        self.kind = kind
        self.length = length


class FrameDecoder:
    """
    Split a byte stream into length-prefixed frames.

    @ivar pending: bytes received that do not yet form a whole frame.
    """

    def __init__(self, prefix, maxFrame, minFrame=HEADER_LENGTH):
        self._unpack = prefix.unpack_from
        self._prefixSize = prefix.size
        self._max = maxFrame
        self._min = minFrame
        self._buffer = bytearray()

    @property
    def pending(self):
        return len(self._buffer)

    def feed(self, data):
        """
        Add bytes from the stream.

        @return: the list of whole frames now available.
        @raise FramingError: a prefix out of bounds; the stream cannot be
            resynchronised and must be closed.
        """
        if self._buffer:
            self._buffer += data
            data = self._buffer
        frames = []
        offset = 0
        n = len(data)
        size = self._prefixSize
        while n - offset >= size:
            (length,) = self._unpack(data, offset)
            if length < self._min:
                raise FramingError("short", length)
            if length > self._max:
                raise FramingError("oversize", length)
            end = offset + size + length
            if end > n:
                break
            frames.append(bytes(data[offset + size : end]))
            offset = end
        if data is self._buffer:
            del self._buffer[:offset]
        elif offset < n:
            self._buffer += data[offset:]
        return frames


@implementer(ILink, IPushProducer)
class _StreamLink(Protocol):
    """
    The part shared by every stream link: framing both ways, counters, and
    a bounded transmit queue while the peer does not read.
    """

    prefix = None
    kind = "stream"
    segmentLimit = 0

    def __init__(self, guests):
        self._guests = guests
        self._counters = guests.linkCounters
        self._pack = self.prefix.pack
        self._decoder = FrameDecoder(self.prefix, guests.config.maxFrameSize)
        self._port = None
        self.maxFrameSize = guests.config.maxFrameSize
        self._closing = False
        self._paused = False
        self._queuedWhilePaused = 0
        self.description = self.kind

    def connectionMade(self):
        peer = self.transport.getPeer()
        name = getattr(peer, "name", None) or getattr(peer, "host", None) or ""
        self.description = f"{self.kind}:{name}" if name else self.kind
        self.transport.registerProducer(self, True)
        self.factory.links.add(self)

    # IPushProducer: the transport tells us when the guest stops reading.
    def pauseProducing(self):
        self._paused = True
        self._queuedWhilePaused = 0

    def resumeProducing(self):
        self._paused = False

    def stopProducing(self):
        self._paused = True

    def sendFrame(self, frame):
        if self._closing:
            return
        counters = self._counters
        if self._paused:
            self._queuedWhilePaused += len(frame)
            if self._queuedWhilePaused > TX_QUEUE_LIMIT:
                counters.txQueueFull += 1
                return
        counters.framesOut += 1
        counters.bytesOut += len(frame)
        self.transport.write(self._pack(len(frame)) + frame)

    def closeLink(self, reason):
        if self._closing:
            return
        self._closing = True
        self.factory.guestLog.warn("closing link {link}: {reason}", link=self.description, reason=reason)
        self.transport.abortConnection()

    def _framesReceived(self, data):
        try:
            frames = self._decoder.feed(data)
        except FramingError as e:
            if e.kind == "short":
                self._counters.shortFrames += 1
            else:
                self._counters.oversizeFrames += 1
            self.closeLink(str(e))
            return
        counters = self._counters
        port = self._port
        for frame in frames:
            counters.framesIn += 1
            counters.bytesIn += len(frame)
            port.frameReceived(frame)
            if self._closing:
                return

    def dataReceived(self, data):
        if self._closing:
            return
        self._framesReceived(data)

    def connectionLost(self, reason):
        # Bytes left over after we closed the link ourselves (a framing
        # error, a refused handshake) are not the peer's truncation.
        closedByUs, self._closing = self._closing, True
        if self._decoder.pending and not closedByUs:
            self._counters.truncatedPrefix += 1
            self.factory.guestLog.warn(
                "link {link} closed in the middle of a frame ({n} bytes pending)",
                link=self.description,
                n=self._decoder.pending,
            )
        if self._port is not None:
            self._guests.detach(self._port)
            self._port = None
        self.factory.linkClosed(self)


class VMNetServerProtocol(_StreamLink):
    """
    The server side of a vmnet connection (hyperkit, C{vpnkit-tap-bridge}).

    Unlike the reference, a bad handshake is answered with a Disconnect
    that says why before the connection closes.
    """

    prefix = VMNET_PREFIX
    kind = "vmnet"

    def connectionMade(self):
        super().connectionMade()
        self._handshake = bytearray()
        self._gotInit = False

    def dataReceived(self, data):
        if self._closing:
            return
        if self._port is not None:
            self._framesReceived(data)
            return
        self._handshake += data
        if not self._gotInit:
            if len(self._handshake) < vmnet.INIT_LENGTH:
                return
            init = vmnet.parseInit(self._handshake)
            del self._handshake[: vmnet.INIT_LENGTH]
            self._gotInit = True
            self.transport.write(vmnet.emitInit())
            if init.magic != vmnet.MAGIC:
                self._refuse(f"Bad magic {init.magic!r}: expected {vmnet.MAGIC.decode()}")
                return
            if init.version != vmnet.VERSION:
                self._refuse(
                    f"Client requested protocol version {init.version}, "
                    f"server only supports version {vmnet.VERSION}"
                )
                return
        if len(self._handshake) < vmnet.COMMAND_LENGTH:
            return
        command = vmnet.parseCommand(self._handshake)
        rest = bytes(self._handshake[vmnet.COMMAND_LENGTH :])
        self._handshake = None
        self._command(command)
        if rest and self._port is not None:
            self._framesReceived(rest)

    def _refuse(self, reason):
        self._counters.handshakeFailures += 1
        self.factory.guestLog.warn("refusing vmnet client: {reason}", reason=reason)
        self.transport.write(vmnet.emitResponse(vmnet.Disconnect(reason)))
        self._closing = True
        self.transport.loseConnection()

    def _command(self, command):
        if isinstance(command, vmnet.EthernetCommand):
            rawUUID, preferred = command.uuid, None
        elif isinstance(command, vmnet.PreferredIPv4Command):
            rawUUID, preferred = command.uuid, command.ip
        elif isinstance(command, vmnet.BindIPv4Command):
            self._refuse("Bind_ipv4 is only served by the privileged helper, not by vpnkit")
            return
        else:
            self._refuse(f"Unknown command type {command.type}")
            return
        try:
            uuid = vmnet.parseUUID(rawUUID)
        except ParseError:
            self._refuse(f"Invalid UUID {rawUUID.rstrip(bytes(1)).decode('ascii', 'replace')!r}")
            return
        try:
            lease = self._guests.leaseForUUID(uuid, preferred)
        except AllocationError as e:
            self._refuse(str(e))
            return
        config = self._guests.config
        vif = vmnet.Vif(config.mtu, config.maxFrameSize, lease.mac)
        self.transport.write(vmnet.emitResponse(vif))
        self.description = f"vmnet:{uuid or lease.uuid}"
        self._port = self._guests.attach(self, lease, lease.mac)


class QEMUServerProtocol(_StreamLink):
    """
    The server side of a QEMU C{-netdev stream} (or C{socket}) connection.
    The guest picks its own MAC; the switch learns it from its first frame.
    """

    prefix = QEMU_PREFIX
    kind = "qemu"

    def connectionMade(self):
        super().connectionMade()
        try:
            lease = self._guests.ephemeralLease()
        except AllocationError as e:
            self._counters.allocationFailures += 1
            self.closeLink(str(e))
            return
        self._port = self._guests.attach(self, lease, None)


class _LinkFactory(Factory):
    """
    Builds one link per connection from C{guests} (an
    L{vpnkit.interfaces.IGuests}) and keeps the live ones, so a listener
    that stops takes its guests off the switch (L{closeLinks}).
    """

    noisy = False

    def __init__(self, guests, clock=None):
        self.guests = guests
        # Clients of the socket can make handshakes fail at will: their
        # log lines are rate-limited (the global reactor's clock when
        # C{clock} is C{None}).
        self.guestLog = GuestLog(log, clock)
        self.links = set()
        self._waiters = []

    def buildProtocol(self, addr):
        p = self.protocol(self.guests)
        p.factory = self
        return p

    def closeLinks(self, reason):
        """
        Close every live link (the listener is stopping).
        """
        for link in list(self.links):
            link.closeLink(reason)

    def linkClosed(self, link):
        self.links.discard(link)
        if not self.links:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def whenClosed(self):
        """
        @return: a L{Deferred} that fires once no link is open.
        """
        if not self.links:
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        return d


class VMNetServerFactory(_LinkFactory):
    protocol = VMNetServerProtocol


class QEMUServerFactory(_LinkFactory):
    protocol = QEMUServerProtocol


# -- client side --------------------------------------------------------


class HandshakeRefused(Exception):
    """
    The server answered the vmnet handshake with a Disconnect.
    """


class _ClientLink(Protocol):
    """
    The guest's end of a stream link, as used by C{vpnkit-tap-bridge}.

    @ivar frameReceiver: called with each frame from the server; set by the
        owner once the link is L{ready}.
    @ivar ready: a L{Deferred} fired with the L{vmnet.Vif} (or C{None} for
        QEMU) once frames may flow, or failed with L{HandshakeRefused}.
    """

    prefix = None

    def __init__(self, ready, maxFrame=0xFFFF + 4):
        self.ready = ready
        self.frameReceiver = None
        self._decoder = FrameDecoder(self.prefix, maxFrame)
        self._pack = self.prefix.pack
        self.framing = False

    def sendFrame(self, frame):
        self.transport.write(self._pack(len(frame)) + frame)

    def _framesReceived(self, data):
        try:
            frames = self._decoder.feed(data)
        except FramingError as e:
            log.error("server sent a bad frame: {e}", e=e)
            self.transport.abortConnection()
            return
        for frame in frames:
            self.frameReceiver(frame)


class VMNetClientProtocol(_ClientLink):
    prefix = VMNET_PREFIX

    def __init__(self, ready, command):
        super().__init__(ready)
        self._command = command
        self._buffer = bytearray()

    def connectionMade(self):
        self.transport.write(vmnet.emitInit() + vmnet.emitCommand(self._command))

    def dataReceived(self, data):
        if self.framing:
            self._framesReceived(data)
            return
        self._buffer += data
        needed = vmnet.INIT_LENGTH + vmnet.RESPONSE_LENGTH
        if len(self._buffer) < needed:
            return
        response = vmnet.parseResponse(self._buffer[vmnet.INIT_LENGTH :])
        rest = bytes(self._buffer[needed:])
        self._buffer = None
        ready, self.ready = self.ready, None
        if isinstance(response, vmnet.Disconnect):
            self.transport.loseConnection()
            ready.errback(HandshakeRefused(response.reason))
            return
        log.info(
            "vmnet server gave us MAC {mac}, MTU {mtu}", mac=formatMAC(response.mac), mtu=response.mtu
        )
        self.framing = True
        ready.callback(response)
        if rest:
            self._framesReceived(rest)

    def connectionLost(self, reason):
        if self.ready is not None:
            ready, self.ready = self.ready, None
            ready.errback(HandshakeRefused("connection closed during the handshake"))


class QEMUClientProtocol(_ClientLink):
    prefix = QEMU_PREFIX

    def connectionMade(self):
        self.framing = True
        ready, self.ready = self.ready, None
        ready.callback(None)

    def dataReceived(self, data):
        self._framesReceived(data)
