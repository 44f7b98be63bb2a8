# -*- test-case-name: tests.test_taplink -*-
"""
L{TapLink}: a tap device's file descriptor as a guest link.

Each read returns one frame and each write sends one, so there is no
framing to get wrong: a frame that is too short or too long is counted and
dropped, and the link stays up.

With C{offload}, each frame travels behind a virtio-net header and the
guest's kernel may hand over TCP segments of up to 64 KiB with partial
checksums (see L{vpnkit.wire.virtio}); the link completes the checksums, so
everything above it sees ordinary (if large) frames.  Each wake-up reads
what the device holds in one C{readFrames} call of the system (in C for
the real device, where it also completes the checksums in its buffer).  The other way, the
guest's kernel does that work: vpnkit's TCP segments come as headers and
payload (L{TapLink.sendFrameParts}) with their checksums left partial, and
go out in one C{writev} without being joined or summed in Python.  Writes
that find the device full wait in a bounded queue; beyond it frames are
dropped, as a NIC with a full ring would.
"""

from collections import deque
from struct import Struct

from twisted.internet.interfaces import IPushProducer, IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone, ConnectionLost
from zope.interface import implementer

from vpnkit.host.tundev import pythonReadFrames
from vpnkit.interfaces import IChecksumOffloadLink
from vpnkit.log import logger
from vpnkit.wire import ParseError
from vpnkit.wire.ethernet import HEADER_LENGTH
from vpnkit.wire.virtio import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    NO_OFFLOAD,
    completeChecksum,
    partialChecksumHeader,
    segmentationOffload,
)
from vpnkit.wire.virtio import LENGTH as VNET_HEADER

__all__ = ["TapLink"]

log = logger("vpnkit.taplink")

# Frames read per reactor wake-up before yielding to other descriptors.
READ_BATCH = 64
# Frames waiting for a full device.
TX_QUEUE_FRAMES = 1024
# The largest segmentation-offload frame: a 64 KiB IPv4 datagram.
GSO_MAX_FRAME = HEADER_LENGTH + 0xFFFF

_vnet = Struct("=BBHHHH")


def _queueable(item):
    """
    C{item} as it may wait in the queue: a payload that is a small view of
    a large buffer (a segment's worth of a host read) is copied out, so
    that a full queue never holds on to much more than its frames.
    """
    if type(item) is tuple:
        payload = item[-1]
        if type(payload) is memoryview and 2 * payload.nbytes < len(payload.obj):
            return (*item[:-1], bytes(payload))
    return item


@implementer(IChecksumOffloadLink, IReadDescriptor, IWriteDescriptor, IPushProducer)
class TapLink:
    """
    @param fd: the tap descriptor, from L{vpnkit.interfaces.ITunSystem.openTap}.
    @param system: the L{vpnkit.interfaces.ITunSystem} that opened it.
    @param frameReceived: called with each frame read from the device; or
        C{None} until L{start} names the receiver.
    @param counters: a L{vpnkit.counters.LinkCounters}.
    @param onClose: called with a L{Failure} once the link is closed.
    """

    def __init__(
        self,
        fd,
        system,
        frameReceived,
        counters,
        maxFrame,
        description,
        reactor=None,
        onClose=None,
        offload=False,
        mtu=None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self._fd = fd
        self._system = system
        self.frameReceived = frameReceived
        self._counters = counters
        self._maxFrame = maxFrame
        self._offload = offload
        # The guest's kernel completes partial checksums (see
        # sendFrameParts).
        self.checksumOffload = offload
        self._mtu = mtu if mtu is not None else maxFrame - 50
        # With offload, TCP frames beyond the MTU go to the guest's kernel
        # as segmentation-offload super-segments: their largest payload.
        self.segmentLimit = (0xFFFF - 20 - 60) if offload else 0
        # What the switch may hand this link, and accept from it.
        self.maxFrameSize = GSO_MAX_FRAME if offload else maxFrame
        self._readSize = max(maxFrame, GSO_MAX_FRAME) + VNET_HEADER + 1
        self._reactor = reactor
        self._onClose = onClose
        self._queue = deque()
        self._closed = False
        self._reading = False
        self.description = description
        # One wake-up's reads: the system's readFrames (in C for the real
        # device, which also completes partial checksums) or the same loop
        # over its read.
        readFrames = getattr(system, "readFrames", None)
        if readFrames is None:
            readFrames = lambda fd, n, size, vnet: pythonReadFrames(  # noqa: E731
                system.read, fd, n, size
            )
        self._readFrames = readFrames
        # What a receiver's pauseProducing left of a batch: (frames, error).
        self._pending = None

    def start(self, receiver):
        """
        Start reading, feeding each frame to C{receiver} (an
        L{vpnkit.interfaces.IFrameReceiver}: the guest's switch port).
        """
        self.frameReceived = receiver.frameReceived
        self.startReading()

    # -- IReadDescriptor / IWriteDescriptor ---------------------------------

    def fileno(self):
        return self._fd if not self._closed else -1

    def logPrefix(self):
        return self.description

    def startReading(self):
        if not self._closed and not self._reading:
            self._reading = True
            self._reactor.addReader(self)

    def stopReading(self):
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    def doRead(self):
        if self._closed or not self._reading:
            return None
        offload = self._offload
        batch = self._pending
        if batch is not None:
            self._pending = None
            frames, error = batch
        else:
            frames, error = self._readFrames(
                self._fd, READ_BATCH, self._readSize, VNET_HEADER if offload else 0
            )
        counters = self._counters
        for i, frame in enumerate(frames):
            if self._closed:
                return None
            if not self._reading:
                # Paused by the receiver: the rest of the batch waits for
                # resumeProducing.
                self._pending = (frames[i:], error)
                return None
            if not frame:
                return ConnectionDone(f"{self.description} closed")
            if offload:
                frame = self._unwrap(frame)
                if frame is None:
                    continue
            elif len(frame) > self._maxFrame:
                counters.oversizeFrames += 1
                continue
            n = len(frame)
            if n < HEADER_LENGTH:
                counters.shortFrames += 1
                continue
            counters.framesIn += 1
            counters.bytesIn += n
            self.frameReceived(frame)
        if error is not None and not self._closed:
            if not self._reading:
                self._pending = ((), error)
                return None
            return ConnectionLost(f"reading {self.description}: {error}")
        return None

    def _unwrap(self, data):
        """
        The frame behind a virtio-net header, its checksum completed; or
        C{None} (counted) for one that cannot be used.
        """
        counters = self._counters
        if len(data) < VNET_HEADER + HEADER_LENGTH:
            counters.shortFrames += 1
            return None
        flags, gsoType, _, _, csumStart, csumOffset = _vnet.unpack_from(data)
        gsoType &= ~GSO_ECN
        if gsoType == GSO_NONE:
            limit = self._maxFrame
        elif gsoType == GSO_TCPV4:
            # (GSO_TCPV6 is not taken: the device does not offer TSO6, see
            # vpnkit.host.tundev, so a guest never sends it.)
            limit = GSO_MAX_FRAME
        else:
            counters.unsupportedOffload += 1
            return None
        frame = data[VNET_HEADER:]
        if len(frame) > limit:
            counters.oversizeFrames += 1
            return None
        if flags & F_NEEDS_CSUM:
            try:
                frame = completeChecksum(frame, csumStart, csumOffset)
            except ParseError:
                counters.unsupportedOffload += 1
                return None
        return frame

    def _prepare(self, frame):
        """
        What to write for C{frame}: itself, or (with offload) a virtio-net
        header and the frame; an IPv4/TCP or IPv6/TCP frame beyond the MTU
        becomes a segmentation-offload super-segment.
        """
        if not self._offload:
            return frame
        if len(frame) <= self._mtu + HEADER_LENGTH:
            return (NO_OFFLOAD, frame)
        return segmentationOffload(frame, self._mtu)

    def _write(self, item):
        if self._offload:
            return self._system.writev(self._fd, item)
        return self._system.write(self._fd, item)

    def doWrite(self):
        queue = self._queue
        write = self._write
        while queue:
            try:
                write(queue[0])
            except BlockingIOError:
                return None
            except OSError as e:
                self._counters.txErrors += 1
                log.debug("dropping a frame on {link}: {e}", link=self.description, e=e)
            queue.popleft()
        self._reactor.removeWriter(self)
        return None

    def connectionLost(self, reason):
        if self._closed:
            return
        self.stopReading()
        self._reactor.removeWriter(self)
        self._closed = True
        self._pending = None
        self._queue.clear()
        try:
            self._system.close(self._fd)
        except OSError:
            pass
        if self._onClose is not None:
            self._onClose(reason)

    # -- ILink ---------------------------------------------------------------

    def sendFrame(self, frame):
        if self._closed:
            return
        try:
            item = self._prepare(frame)
        except ParseError:
            self._counters.txErrors += 1
            return
        self._send(item, len(frame))

    def sendFrameParts(self, head, payload, checksumStart, checksumOffset):
        """
        One frame as C{head} (its Ethernet, IPv4 and TCP headers) and
        C{payload}, its TCP checksum left partial: written behind a
        virtio-net header that asks the guest's kernel to complete it
        (and, beyond the MTU, to take it as a super-segment), all three
        pieces in one C{writev}.
        """
        if self._closed:
            return
        length = len(head) + len(payload)
        try:
            vnet = partialChecksumHeader(head, length, checksumStart, checksumOffset, self._mtu)
        except ParseError:
            self._counters.txErrors += 1
            return
        self._send((vnet, head, payload), length)

    def _send(self, item, length):
        counters = self._counters
        queue = self._queue
        if queue:
            if len(queue) >= TX_QUEUE_FRAMES:
                counters.txQueueFull += 1
                return
            queue.append(_queueable(item))
            counters.framesOut += 1
            counters.bytesOut += length
            return
        try:
            self._write(item)
        except BlockingIOError:
            queue.append(_queueable(item))
            self._reactor.addWriter(self)
        except OSError as e:
            counters.txErrors += 1
            log.debug("dropping a frame on {link}: {e}", link=self.description, e=e)
            return
        counters.framesOut += 1
        counters.bytesOut += length

    def closeLink(self, reason):
        log.info("closing {link}: {reason}", link=self.description, reason=reason)
        self.connectionLost(Failure(ConnectionDone(reason)))

    # -- IPushProducer: paused while whoever we feed is full ------------------

    def pauseProducing(self):
        self.stopReading()

    def resumeProducing(self):
        self.startReading()
        if self._pending is not None and self._reading:
            # Frames already read when the receiver paused: deliver them
            # now, as no wake-up will come for them.
            why = self.doRead()
            if why is not None:
                self.connectionLost(Failure(why))

    def stopProducing(self):
        self.closeLink("consumer stopped")
