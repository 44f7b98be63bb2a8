"""
Tests for L{vpnkit.capture}: the ring, the live readers and their bound,
the capture file, L{CaptureService}'s listeners, the switch's observers,
and the C{--pcap} options of L{vpnkit.tap}.

Every capture a test gets is read back with L{vpnkit.wire.pcap.parsePcap},
and the file also with C{dpkt.pcap.Reader}.
"""

import io
import os
import socket
import sys

import dpkt
from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import tempDir
from tests.helpers import (
    GATEWAY_IP,
    buildARPRequest,
    buildICMPEcho,
    buildIPv4,
    makeStack,
)
from vpnkit.services import listenService
from vpnkit.capture import (
    MAX_BACKLOG,
    RING_BYTES,
    Capture,
    CaptureReader,
    CaptureReaderFactory,
    CaptureService,
)
from vpnkit.config import ConfigError
from vpnkit.counters import CaptureCounters
from vpnkit.tap import Options, makeService
from vpnkit.wire.pcap import (
    FILE_HEADER_LENGTH,
    MAX_SNAPLEN,
    PcapRecord,
    fileHeader,
    parseFileHeader,
    parsePcap,
)

START = 1700000000.5


def frame(n, size=100):
    """
    A distinct frame: its number in the first 4 bytes, then filler.
    """
    return n.to_bytes(4, "big") + bytes([n & 0xFF]) * (size - 4)


def frameNumber(rec):
    return int.from_bytes(rec.data[:4], "big")


class _CaptureMixin:
    def makeCapture(self, **kwargs):
        self.clock = task.Clock()
        self.clock.advance(START)
        self.counters = CaptureCounters()
        self.capture = Capture(self.counters, reactor=self.clock, **kwargs)
        return self.capture

    def connectReader(self, capture=None):
        """
        A reader connected the way the listener connects one.

        @return: C{(reader, transport)}.
        """
        factory = CaptureReaderFactory(capture or self.capture)
        reader = factory.buildProtocol(None)
        transport = StringTransport()
        reader.makeConnection(transport)
        return reader, transport

    def records(self, data):
        """
        The records of a capture stream, checking its header.
        """
        header, records = parsePcap(data)
        self.assertEqual(header.linktype, 1)
        return records


class CaptureTests(_CaptureMixin, SynchronousTestCase):
    """
    Records, the ring and the counters.
    """

    def test_record(self):
        """
        Each frame becomes a record stamped with the reactor's time, and is
        counted with the bytes kept.
        """
        capture = self.makeCapture(snaplen=0)
        reader, transport = self.connectReader()
        self.clock.advance(0.25)
        capture.frameObserved(frame(1))
        self.assertEqual(
            self.records(transport.value()),
            [PcapRecord(1700000000, 750000, 100, frame(1))],
        )
        self.assertEqual((self.counters.framesCaptured, self.counters.bytesCaptured), (1, 100))

    def test_snaplenDefault(self):
        """
        By default frames are cut to 128 bytes, which the header says.
        """
        capture = self.makeCapture()
        reader, transport = self.connectReader()
        capture.frameObserved(frame(1, 1514))
        capture.frameObserved(frame(2, 60))
        self.assertEqual(parseFileHeader(transport.value()).snaplen, 128)
        first, second = self.records(transport.value())
        self.assertEqual((first.data, first.originalLength), (frame(1, 1514)[:128], 1514))
        self.assertEqual((second.data, second.originalLength), (frame(2, 60), 60))
        self.assertEqual(self.counters.bytesCaptured, 128 + 60)

    def test_snaplenZero(self):
        """
        Snapshot length 0 keeps whole frames (even a 64 KiB offload
        super-segment), and the header announces 262144.
        """
        capture = self.makeCapture(snaplen=0)
        reader, transport = self.connectReader()
        big = frame(1, 65535 + 14)
        capture.frameObserved(big)
        self.assertEqual(parseFileHeader(transport.value()).snaplen, MAX_SNAPLEN)
        (rec,) = self.records(transport.value())
        self.assertEqual(rec.data, big)

    def test_ringBound(self):
        """
        The ring keeps the most recent records within its size: the
        oldest are evicted, the newest always kept.
        """
        capture = self.makeCapture(snaplen=0)
        for n in range(3000):
            capture.frameObserved(frame(n, 1514))
        recent = capture.recent()
        self.assertLessEqual(len(recent), RING_BYTES)
        self.assertGreater(len(recent), RING_BYTES - 1530)
        records = self.records(fileHeader(0) + recent)
        numbers = [frameNumber(r) for r in records]
        self.assertEqual(numbers, list(range(3000 - len(numbers), 3000)))

    def test_ringBoundSmall(self):
        """
        The ring's size is a parameter; with snaplen 128 it holds the last
        records that fit.
        """
        capture = self.makeCapture(ringBytes=1000)
        for n in range(100):
            capture.frameObserved(frame(n, 1514))
        # 16 + 128 bytes per record: six fit in 1000.
        records = self.records(fileHeader(128) + capture.recent())
        self.assertEqual([frameNumber(r) for r in records], list(range(94, 100)))


class ReaderTests(_CaptureMixin, SynchronousTestCase):
    """
    Live readers: what they get, and what happens when they fall behind.
    """

    def test_headerRingThenLive(self):
        """
        A reader that connects gets the file header, the ring's records,
        then every frame from then on, in order.
        """
        capture = self.makeCapture()
        for n in range(5):
            capture.frameObserved(frame(n))
        reader, transport = self.connectReader()
        self.assertEqual(transport.value()[:FILE_HEADER_LENGTH], fileHeader(128))
        self.assertEqual([frameNumber(r) for r in self.records(transport.value())], list(range(5)))
        for n in range(5, 8):
            capture.frameObserved(frame(n))
        self.assertEqual([frameNumber(r) for r in self.records(transport.value())], list(range(8)))
        self.assertEqual(self.counters.readersConnected, 1)
        self.assertEqual(capture.readers(), [reader])

    def test_streamingProducer(self):
        """
        Each reader registers as a streaming producer on its transport, so
        the transport says when its buffer is full.
        """
        self.makeCapture()
        reader, transport = self.connectReader()
        self.assertIs(transport.producer, reader)
        self.assertTrue(transport.streaming)

    def test_slowReaderDropped(self):
        """
        A reader whose transport is paused and that falls more than 4 MiB
        behind is closed and counted; the other readers go on receiving
        every frame, and the guests' frames are never held up.
        """
        capture = self.makeCapture(snaplen=0)
        slow, slowTransport = self.connectReader()
        fast, fastTransport = self.connectReader()
        slow.pauseProducing()
        before = len(slowTransport.value())
        n = 0
        while not slowTransport.disconnected:
            capture.frameObserved(frame(n, 1514))
            n += 1
            self.assertLess(n, 10000)
        written = len(slowTransport.value()) - before
        self.assertGreater(written, MAX_BACKLOG)
        self.assertLessEqual(written, MAX_BACKLOG + 1530)
        self.assertEqual(self.counters.readersDropped, 1)
        self.assertEqual(capture.readers(), [fast])
        for m in range(n, n + 10):
            capture.frameObserved(frame(m, 1514))
        self.assertEqual(len(slowTransport.value()) - before, written)
        self.assertEqual(
            [frameNumber(r) for r in self.records(fastTransport.value())], list(range(n + 10))
        )
        # The dropped reader's connection ending later changes nothing.
        slow.connectionLost(None)
        self.assertEqual(capture.readers(), [fast])
        self.assertEqual(self.counters.readersDropped, 1)

    def test_resumedReaderKept(self):
        """
        A reader whose transport pauses and resumes again (it keeps up,
        just not at once) is never dropped: only bytes written while it is
        paused count.
        """
        capture = self.makeCapture(snaplen=0)
        reader, transport = self.connectReader()
        for n in range(4):
            reader.pauseProducing()
            for _ in range(2000):  # 3 MiB while paused
                capture.frameObserved(frame(n, 1514))
            reader.resumeProducing()
        for _ in range(5000):  # 7.5 MiB while not paused
            capture.frameObserved(frame(9, 1514))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.counters.readersDropped, 0)
        self.assertEqual(capture.readers(), [reader])

    def test_readerGone(self):
        """
        A reader whose connection ends gets nothing more.
        """
        capture = self.makeCapture()
        reader, transport = self.connectReader()
        reader.connectionLost(None)
        self.assertEqual(capture.readers(), [])
        length = len(transport.value())
        capture.frameObserved(frame(1))
        self.assertEqual(len(transport.value()), length)

    def test_stopProducing(self):
        """
        A transport that stops its producer (it is closing) ends the
        stream to that reader.
        """
        capture = self.makeCapture()
        reader, transport = self.connectReader()
        reader.stopProducing()
        self.assertEqual(capture.readers(), [])

    def test_readerInputIgnored(self):
        """
        Whatever a reader sends is ignored, and a reader that shuts down
        its sending side (C{nc -N}) still gets the stream.
        """
        capture = self.makeCapture()
        reader, transport = self.connectReader()
        reader.dataReceived(b"hello")
        reader.readConnectionLost()
        capture.frameObserved(frame(1))
        self.assertEqual([frameNumber(r) for r in self.records(transport.value())], [1])
        self.assertFalse(transport.disconnecting)


class RecordingFile(io.BytesIO):
    """
    A file that counts its flushes and keeps what was flushed.
    """

    def __init__(self):
        super().__init__()
        self.flushes = 0
        self.flushed = b""

    def flush(self):
        self.flushes += 1
        self.flushed = self.getvalue()

    def close(self):
        self.closedData = self.getvalue()
        super().close()


class BrokenFile(RecordingFile):
    """
    A file whose writes fail after the header (a full disk).
    """

    def write(self, data):
        if self.tell() >= FILE_HEADER_LENGTH:
            raise OSError(28, "No space left on device")
        return super().write(data)


class FileTests(_CaptureMixin, SynchronousTestCase):
    """
    The capture file: the header at once, records once per batch.
    """

    def test_headerAtOnce(self):
        """
        Opening the file writes and flushes the header.
        """
        capture = self.makeCapture()
        f = RecordingFile()
        capture.openFile(f)
        self.assertEqual(f.flushed, fileHeader(128))

    def test_flushPerBatch(self):
        """
        Frames captured in one reactor turn are written and flushed
        together, by one call the first frame scheduled; the next frame
        starts the next batch.
        """
        capture = self.makeCapture()
        f = RecordingFile()
        capture.openFile(f)
        for n in range(3):
            capture.frameObserved(frame(n))
        self.assertEqual((f.flushes, f.flushed), (1, fileHeader(128)))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(f.flushes, 2)
        self.assertEqual([frameNumber(r) for r in self.records(f.flushed)], [0, 1, 2])
        capture.frameObserved(frame(3))
        self.clock.advance(0)
        self.assertEqual(f.flushes, 3)
        self.assertEqual([frameNumber(r) for r in self.records(f.flushed)], [0, 1, 2, 3])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeFlushes(self):
        """
        Closing the file writes what is pending first, and cancels the
        scheduled flush.
        """
        capture = self.makeCapture()
        f = RecordingFile()
        capture.openFile(f)
        capture.frameObserved(frame(7))
        capture.closeFile()
        self.assertTrue(f.closed)
        self.assertEqual([frameNumber(r) for r in self.records(f.closedData)], [7])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        capture.frameObserved(frame(8))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_writeError(self):
        """
        A failed write is counted and ends the file (a partial record would
        spoil the rest); readers and counting go on.
        """
        capture = self.makeCapture()
        reader, transport = self.connectReader()
        f = BrokenFile()
        capture.openFile(f)
        capture.frameObserved(frame(1))
        self.clock.advance(0)
        self.assertEqual(self.counters.fileWriteErrors, 1)
        self.assertTrue(f.closed)
        capture.frameObserved(frame(2))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual([frameNumber(r) for r in self.records(transport.value())], [1, 2])
        self.assertEqual(self.counters.framesCaptured, 2)


class AdoptingReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that also adopts listening Unix sockets
    (C{MemoryReactor} only takes IPv4 and IPv6 ones).
    """

    def adoptStreamPort(self, fileno, addressFamily, factory):
        if addressFamily != socket.AF_UNIX:
            return super().adoptStreamPort(fileno, addressFamily, factory)
        self.adoptedPorts.append((fileno, addressFamily, factory))
        return _FakeListeningPort()


class _FakeListeningPort:
    def stopListening(self):
        return None

    def getHost(self):
        return None


class ServiceTests(_CaptureMixin, SynchronousTestCase):
    """
    The capture's listener (L{vpnkit.services.listenService} with a
    L{CaptureReaderFactory}) and its file (L{CaptureService}).
    """

    def setUp(self):
        self.dir = tempDir(self)

    def test_unixListener(self):
        """
        C{("unix", path)} listens on that path, readable by its owner only,
        with a factory whose readers stream the capture.
        """
        reactor = MemoryReactorClock()
        capture = self.makeCapture()
        path = os.path.join(self.dir, "pcap.sock")
        service = listenService(("unix", path), CaptureReaderFactory(capture), reactor, "--pcap")
        service.startService()
        ((address, factory, backlog, mode, wantPID),) = reactor.unixServers
        self.assertEqual((address, mode), (path, 0o600))
        self.assertIsInstance(factory, CaptureReaderFactory)
        self.assertIs(factory.capture, capture)

    def test_fdListener(self):
        """
        C{("fd", n)} adopts the inherited listening socket C{n} as a Unix
        socket (as C{--ethernet fd:N} does), and a client accepted on it
        gets the capture.
        """
        reactor = AdoptingReactor()
        capture = self.makeCapture()
        capture.frameObserved(frame(1))
        # The endpoint closes the descriptor once the reactor has adopted
        # it (the reactor holds a copy): give it one of its own.
        inherited = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).detach()
        service = listenService(("fd", inherited), CaptureReaderFactory(capture), reactor, "--pcap")
        service.privilegedStartService()
        service.startService()
        ((fd, family, factory),) = reactor.adoptedPorts
        self.assertEqual((fd, family), (inherited, socket.AF_UNIX))
        self.assertRaises(OSError, os.fstat, inherited)
        reader = factory.buildProtocol(None)
        self.assertIsInstance(reader, CaptureReader)
        transport = StringTransport()
        reader.makeConnection(transport)
        self.assertEqual([frameNumber(r) for r in self.records(transport.value())], [1])

    def test_file(self):
        """
        The file is created (or truncated) at start with the header, gets
        each batch of frames, and is flushed and closed at stop; dpkt reads
        it.
        """
        path = os.path.join(self.dir, "capture.pcap")
        with open(path, "wb") as f:
            f.write(b"old contents " * 100)
        capture = self.makeCapture(snaplen=0)
        service = CaptureService(capture, path)
        service.privilegedStartService()
        service.startService()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), fileHeader(0))
        capture.frameObserved(frame(1))
        self.clock.advance(0)
        capture.frameObserved(frame(2))
        with open(path, "rb") as f:
            self.assertEqual([frameNumber(r) for r in self.records(f.read())], [1])
        service.stopService()
        with open(path, "rb") as f:
            reader = dpkt.pcap.Reader(f)
            self.assertEqual([bytes(buf) for _, buf in reader], [frame(1), frame(2)])

    def test_fileCannotOpen(self):
        """
        A file that cannot be created stops start-up with a
        L{ConfigError} naming C{--pcap-file}.
        """
        capture = self.makeCapture()
        path = os.path.join(self.dir, "missing", "capture.pcap")
        service = CaptureService(capture, path)
        e = self.assertRaises(ConfigError, service.startService)
        self.assertIn("--pcap-file", str(e))
        self.assertIn(path, str(e))


class SwitchObserverTests(SynchronousTestCase):
    """
    The switch shows every frame in and out of every port to its
    observers.
    """

    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2)
        self.seen = []

        class Observer:
            def frameObserved(observer, frame):
                self.seen.append(bytes(frame))

        self.stack.switch.addObserver(Observer())

    def test_guestFrames(self):
        """
        A frame a guest sends is observed, even one vpnkit then drops.
        """
        request = buildARPRequest(self.a.mac, self.a.ip, GATEWAY_IP)
        junk = b"short"
        self.a.send(request)
        self.a.send(junk)
        self.assertEqual(self.seen[0], request)
        self.assertIn(junk, self.seen)

    def test_replies(self):
        """
        vpnkit's replies (ARP through the switch, ICMP through the IPv4
        layer) are observed as handed to the guest's link.
        """
        request = buildARPRequest(self.a.mac, self.a.ip, GATEWAY_IP)
        echo = buildICMPEcho(self.a.mac, self.a.ip, GATEWAY_IP)
        self.a.send(request)
        self.a.send(echo)
        arpReply, echoReply = self.a.takeFrames()
        # The ARP request is a broadcast: it also leaves for the other guest.
        self.assertEqual(self.seen, [request, request, arpReply, echo, echoReply])

    def test_guestToGuest(self):
        """
        A frame switched or routed between guests is observed leaving one
        port and entering the other; a broadcast once per port it reaches.
        """
        routed = buildIPv4(self.a.mac, self.a.ip, self.b.ip, 17, bytes(16))
        self.a.send(routed)
        (delivered,) = self.b.takeFrames()
        self.assertEqual(self.seen, [routed, delivered])
        del self.seen[:]
        broadcast = buildARPRequest(self.a.mac, self.a.ip, self.b.ip)
        self.a.send(broadcast)
        self.assertEqual(self.seen.count(broadcast), 2)

    def test_removeObserver(self):
        """
        A removed observer sees nothing more.
        """
        (observer,) = self.stack.switch._observers
        self.stack.switch.removeObserver(observer)
        self.a.send(buildARPRequest(self.a.mac, self.a.ip, GATEWAY_IP))
        self.assertEqual(self.seen, [])


class OptionsTests(SynchronousTestCase):
    """
    C{--pcap}, C{--pcap-snaplen} and C{--pcap-file}, and what
    L{makeService} builds from them.
    """

    def setUp(self):
        self.dir = tempDir(self)
        self.sock = os.path.join(self.dir, "eth.sock")
        self.patch(os, "environ", {})
        self.patch(sys, "stderr", io.StringIO())

    def parse(self, *args):
        options = Options()
        options.parseOptions(["--ethernet", self.sock, *args])
        return options

    def assertUsageError(self, args, *fragments):
        e = self.assertRaises(usage.UsageError, self.parse, *args)
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        self.assertNotIn("\n", str(e))
        return str(e)

    def test_defaults(self):
        """
        Without the flags there is no capture; the snapshot length is 128.
        """
        options = self.parse()
        self.assertIsNone(options.pcapListen)
        self.assertIsNone(options["pcap-file"])
        self.assertEqual(options.pcapSnaplen, 128)
        top = makeService(options, MemoryReactorClock())
        self.assertNotIn("pcap", [s.name for s in top])

    def test_flags(self):
        """
        A path, a snapshot length and a file are taken.
        """
        path = os.path.join(self.dir, "pcap.sock")
        out = os.path.join(self.dir, "out.pcap")
        options = self.parse("--pcap", path, "--pcap-snaplen", "0", "--pcap-file", out)
        self.assertEqual(options.pcapListen, ("unix", path))
        self.assertEqual(options.pcapSnaplen, 0)
        self.assertEqual(options["pcap-file"], out)

    def test_fd(self):
        """
        C{--pcap fd:N} naming a socket is taken; anything else is refused
        with a line naming C{--pcap}.
        """
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(self.parse(f"--pcap=fd:{a.fileno()}").pcapListen, ("fd", a.fileno()))
        self.assertUsageError(["--pcap", "fd:five"], "--pcap", "fd:five")
        r, w = os.pipe()
        os.close(w)
        os.close(r)
        self.assertUsageError([f"--pcap=fd:{r}"], "--pcap", "Bad file descriptor")

    def test_badPath(self):
        """
        A socket path in a missing directory, or that is a regular file,
        is refused naming C{--pcap}.
        """
        self.assertUsageError(["--pcap", "/nonexistent/dir/pcap.sock"], "--pcap:", "does not exist")
        regular = os.path.join(self.dir, "file")
        open(regular, "w").close()
        self.assertUsageError(["--pcap", regular], "--pcap:", "not a socket")

    def test_badSnaplen(self):
        """
        A snapshot length that is not a number, negative or over 262144 is
        refused naming C{--pcap-snaplen}.
        """
        self.assertUsageError(["--pcap-snaplen", "lots"], "--pcap-snaplen", "not a number")
        self.assertUsageError(["--pcap-snaplen", "-1"], "--pcap-snaplen", "262144")
        self.assertUsageError(["--pcap-snaplen", "262145"], "--pcap-snaplen", "262144")
        self.assertEqual(self.parse("--pcap-snaplen", "262144").pcapSnaplen, 262144)

    def test_badFile(self):
        """
        A capture file in a missing directory, or a directory, is refused
        naming C{--pcap-file}.
        """
        self.assertUsageError(["--pcap-file", "/nonexistent/dir/x.pcap"], "--pcap-file:")
        self.assertUsageError(["--pcap-file", self.dir], "--pcap-file:", "is a directory")

    def test_makeService(self):
        """
        With C{--pcap}, L{makeService} adds the capture service (before the
        links) and the switch shows it every frame.
        """
        path = os.path.join(self.dir, "pcap.sock")
        options = self.parse("--pcap", path, "--pcap-snaplen", "64")
        top = makeService(options, MemoryReactorClock())
        names = [s.name for s in top]
        self.assertLess(names.index("pcap"), names.index(f"vmnet on unix:{self.sock}"))
        service = top.getServiceNamed("pcap")
        self.assertIsInstance(service, CaptureService)
        capture = service.capture
        self.assertEqual(capture.snaplen, 64)
        self.assertEqual(top.stack.switch._observers, [capture])
        capture.frameObserved(frame(1))
        self.assertEqual(top.stack.counters.capture.framesCaptured, 1)
        self.assertEqual(top.stack.stats()["counters"]["capture"]["framesCaptured"], 1)

    def test_fileOnly(self):
        """
        C{--pcap-file} alone captures to the file, with no listener.
        """
        out = os.path.join(self.dir, "out.pcap")
        top = makeService(self.parse("--pcap-file", out), MemoryReactorClock())
        service = top.getServiceNamed("pcap")
        self.assertEqual(list(service), [])
