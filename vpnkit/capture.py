# -*- test-case-name: tests.test_capture -*-
"""
Live packet capture (C{--pcap}, C{--pcap-file}).

L{Capture} is what the switch shows every frame to, in either direction on
every port (L{vpnkit.protocols.switch.EthernetSwitch.addObserver}).  It
turns each frame into one pcap record (L{vpnkit.wire.pcap}), cut to the
snapshot length and stamped with the reactor's time, and hands the record
to three places:

  - a ring of the most recent records (256 KiB), so a reader that connects
    sees what happened just before;
  - every connected reader (L{CaptureReader}): the pcap file header, then
    the ring, then every frame as it passes;
  - the capture file, if any, written once per batch of frames (one
    C{callLater(0)} after the first frame of a batch), so that
    C{tcpdump -r FILE} reads it while vpnkit runs.

Capture never slows the guests down: each reader is a streaming producer
on its transport, so vpnkit learns when the reader's socket is full; what
it writes from then on is counted, and a reader more than
L{MAX_BACKLOG} bytes behind is closed (C{readersDropped}).  Memory is the
ring plus, per reader, at most that backlog.

L{CaptureService} opens and closes the listener (a Unix socket path, or an
inherited listening descriptor as Docker Desktop passes with
C{--pcap fd:N}) and the file.
"""

from collections import deque

from twisted.application.service import MultiService
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from vpnkit.config import ConfigError
from vpnkit.log import logger
from vpnkit.wire.pcap import DEFAULT_SNAPLEN, RECORD_HEADER_LENGTH, fileHeader, record

__all__ = ["Capture", "CaptureReader", "CaptureReaderFactory", "CaptureService"]

log = logger("vpnkit.capture")

# The recent records a new reader gets first.
RING_BYTES = 256 * 1024
# How far (bytes written after its socket filled up) a reader may fall
# behind before it is closed.
MAX_BACKLOG = 4 * 1024 * 1024


class Capture:
    """
    The capture point: a ring of recent records, the live readers and the
    optional file.

    @ivar snaplen: bytes kept of each frame (0: whole frames).
    """

    def __init__(
        self,
        counters,
        snaplen=DEFAULT_SNAPLEN,
        reactor=None,
        ringBytes=RING_BYTES,
        maxBacklog=MAX_BACKLOG,
    ):
        """
        @param counters: the L{vpnkit.counters.CaptureCounters} to count in.
        @param reactor: an C{IReactorTime}: the records' timestamps and the
            file's flush.
        """
        if reactor is None:
            from twisted.internet import reactor
        self._clock = reactor
        self._counters = counters
        self.snaplen = snaplen
        self._header = fileHeader(snaplen)
        self._ring = deque()
        self._ringSize = 0
        self._ringBytes = ringBytes
        self._maxBacklog = maxBacklog
        self._readers = []
        self._file = None
        self._pending = []
        self._flushCall = None

    # -- frames ---------------------------------------------------------------

    def frameObserved(self, frame):
        """
        Capture one frame (the switch's observer interface).
        """
        data = record(frame, self._clock.seconds(), self.snaplen)
        counters = self._counters
        counters.framesCaptured += 1
        counters.bytesCaptured += len(data) - RECORD_HEADER_LENGTH
        ring = self._ring
        ring.append(data)
        self._ringSize += len(data)
        while self._ringSize > self._ringBytes:
            self._ringSize -= len(ring.popleft())
        if self._readers:
            behind = None
            for reader in self._readers[:]:
                if reader.write(data) > self._maxBacklog:
                    behind = [reader] if behind is None else behind + [reader]
            if behind is not None:
                for reader in behind:
                    self._drop(reader)
        if self._file is not None:
            self._pending.append(data)
            if self._flushCall is None:
                self._flushCall = self._clock.callLater(0, self.flush)

    def recent(self):
        """
        The records in the ring, oldest first, as one C{bytes}.
        """
        return b"".join(self._ring)

    # -- readers ------------------------------------------------------------

    def addReader(self, reader):
        """
        Send C{reader} (a L{CaptureReader}) the file header and the ring,
        then every frame from now on.
        """
        self._counters.readersConnected += 1
        reader.write(self._header + self.recent())
        self._readers.append(reader)
        log.info("capture reader connected ({n} now)", n=len(self._readers))

    def removeReader(self, reader):
        """
        Stop sending to C{reader} (it has gone).
        """
        if reader in self._readers:
            self._readers.remove(reader)
            log.info("capture reader gone ({n} left)", n=len(self._readers))

    def readers(self):
        return list(self._readers)

    def _drop(self, reader):
        """
        Close a reader that fell more than the backlog bound behind.
        """
        self._counters.readersDropped += 1
        if reader in self._readers:
            self._readers.remove(reader)
        log.warn(
            "capture reader dropped: more than {limit} bytes behind",
            limit=self._maxBacklog,
        )
        reader.abort()

    # -- the file -----------------------------------------------------------

    def openFile(self, f):
        """
        Write the capture to C{f} (a binary file object, already open):
        the file header now, the records once per batch.

        @raise OSError: the header cannot be written.
        """
        f.write(self._header)
        f.flush()
        self._file = f

    def flush(self):
        """
        Write the records captured since the last flush to the file.  A
        write that fails is counted and ends the file: a partly written
        record would make the rest unreadable.
        """
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        pending, self._pending = self._pending, []
        if self._file is None or not pending:
            return
        try:
            self._file.write(b"".join(pending))
            self._file.flush()
        except OSError as e:
            self._counters.fileWriteErrors += 1
            log.error("capture file write failed, capture to the file stops: {e}", e=e)
            self._closeFile()

    def closeFile(self):
        """
        Flush what is pending and close the file.
        """
        self.flush()
        self._closeFile()

    def _closeFile(self):
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError as e:
                self._counters.fileWriteErrors += 1
                log.error("capture file close failed: {e}", e=e)


@implementer(IPushProducer, IHalfCloseableProtocol)
class CaptureReader(Protocol):
    """
    One client of the capture socket.  It only receives: what it sends is
    discarded, and when it shuts its sending side down the stream goes on.

    @ivar backlog: bytes written since the transport last said its buffer
        was full (0 while it is not).
    """

    def __init__(self, capture):
        self._capture = capture
        self.paused = False
        self.backlog = 0

    def connectionMade(self):
        self.transport.registerProducer(self, True)
        self._capture.addReader(self)

    def write(self, data):
        """
        Send C{data}.

        @return: the backlog: bytes written since the transport's buffer
            filled up.
        """
        self.transport.write(data)
        if self.paused:
            self.backlog += len(data)
        return self.backlog

    def abort(self):
        self.transport.abortConnection()

    def dataReceived(self, data):
        pass

    def readConnectionLost(self):
        pass

    def writeConnectionLost(self):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self._capture.removeReader(self)

    # -- IPushProducer: the transport says when its buffer is full ----------

    def pauseProducing(self):
        if not self.paused:
            self.paused = True
            self.backlog = 0

    def resumeProducing(self):
        self.paused = False
        self.backlog = 0

    def stopProducing(self):
        self._capture.removeReader(self)


class CaptureReaderFactory(Factory):
    """
    Makes a L{CaptureReader} for each client of the capture socket.
    """

    noisy = False

    def __init__(self, capture):
        self.capture = capture

    def buildProtocol(self, addr):
        reader = CaptureReader(self.capture)
        reader.factory = self
        return reader


class CaptureService(MultiService):
    """
    The capture's file, opened and closed with vpnkit; its listener (for
    C{--pcap}) is a child service.

    @param path: the capture file (created or truncated at start), or
        C{None}.
    """

    def __init__(self, capture, path=None):
        super().__init__()
        self.capture = capture
        self._path = path
        self._opened = False
    def _openFile(self):
        if self._path is None or self._opened:
            return
        try:
            f = open(self._path, "wb")
        except OSError as e:
            raise ConfigError(f"--pcap-file: {self._path}: {e.strerror}") from None
        try:
            self.capture.openFile(f)
        except OSError as e:
            f.close()
            raise ConfigError(f"--pcap-file: {self._path}: {e.strerror}") from None
        self._opened = True

    def privilegedStartService(self):
        self._openFile()
        super().privilegedStartService()

    def startService(self):
        self._openFile()
        super().startService()

    def stopService(self):
        d = super().stopService()
        if self._opened:
            self.capture.closeFile()
            self._opened = False
        return d
