"""
Tests for L{vpnkit.host.taplink.TapLink}, and for the L{FakeTunSystem} the
tests run it over.
"""

import errno
import os
import socket
from unittest import SkipTest

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer, IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.fakes import GUEST_MAC, FakeFDReactor, FakeTunSystem, drainSocket, fillSocket
from vpnkit.counters import LinkCounters
from vpnkit.host import taplink
from vpnkit.host.taplink import TapLink
from vpnkit.host.tundev import LinuxTunSystem, pythonReadFrames
from vpnkit.interfaces import IChecksumOffloadLink, ILink, ITunSystem


def frame(n, size=60):
    """
    A distinct C{size}-byte frame numbered C{n}.
    """
    return n.to_bytes(4, "big") * (size // 4) + bytes(size % 4)


class FakeTunSystemTests(SynchronousTestCase):
    """
    L{FakeTunSystem} keeps the contract L{ITunSystem} documents for the
    real tap device.
    """

    def setUp(self):
        self.system = FakeTunSystem()
        self.addCleanup(self.system.cleanup)
        self.fd = self.system.openTap("/var/run/netns/guest", "tap7", GUEST_MAC, 9000)
        self.guest = self.system.opened[0].guest

    def test_interface(self):
        """
        The fake provides L{ITunSystem}.
        """
        self.assertTrue(verifyObject(ITunSystem, self.system))

    def test_openTapRecords(self):
        """
        C{openTap} returns a non-blocking descriptor and records the
        namespace, name, MAC and MTU it was asked for.
        """
        tap = self.system.opened[0]
        self.assertEqual(
            (tap.netns, tap.name, tap.mac, tap.mtu, tap.fd),
            ("/var/run/netns/guest", "tap7", GUEST_MAC, 9000, self.fd),
        )
        self.assertIsInstance(self.fd, int)
        self.assertFalse(os.get_blocking(self.fd))

    def test_readEmpty(self):
        """
        Reading with no frame waiting raises L{BlockingIOError}.
        """
        self.assertRaises(BlockingIOError, self.system.read, self.fd, 65536)

    def test_oneFramePerRead(self):
        """
        Each read returns exactly one frame, however large the buffer.
        """
        self.guest.send(frame(1))
        self.guest.send(frame(2, 100))
        self.assertEqual(self.system.read(self.fd, 65536), frame(1))
        self.assertEqual(self.system.read(self.fd, 65536), frame(2, 100))
        self.assertRaises(BlockingIOError, self.system.read, self.fd, 65536)

    def test_oneFramePerWrite(self):
        """
        Each write sends exactly one frame.
        """
        self.assertEqual(self.system.write(self.fd, frame(1)), 60)
        self.system.write(self.fd, frame(2, 70))
        self.assertEqual(drainSocket(self.guest), [frame(1), frame(2, 70)])

    def test_writeFull(self):
        """
        Writing to a full device raises L{BlockingIOError}, and it takes
        frames again once the guest read some.
        """
        n = fillSocket(lambda f: self.system.write(self.fd, f))
        self.assertGreater(n, 0)
        self.assertEqual(len(drainSocket(self.guest)), n)
        self.system.write(self.fd, frame(1))
        self.assertEqual(drainSocket(self.guest), [frame(1)])

    def test_close(self):
        """
        C{close} closes the descriptor: the guest sees end of file.
        """
        self.system.close(self.fd)
        self.assertEqual(self.system.closed, [self.fd])
        self.assertEqual(self.guest.recv(100), b"")

    def test_openError(self):
        """
        With C{openError} set, C{openTap} raises it.
        """
        system = FakeTunSystem(openError=OSError(errno.EPERM, "Operation not permitted"))
        e = self.assertRaises(OSError, system.openTap, None, "tap0", None, 1500)
        self.assertEqual(e.errno, errno.EPERM)
        self.assertEqual(system.opened, [])


class _ScriptedTunSystem(FakeTunSystem):
    """
    A fake whose reads or writes fail with given errors.
    """

    def __init__(self):
        super().__init__()
        self.readErrors = []
        self.writeErrors = {}

    def read(self, fd, size):
        if self.readErrors:
            raise self.readErrors.pop(0)
        return super().read(fd, size)

    def write(self, fd, data):
        if data in self.writeErrors:
            raise self.writeErrors.pop(data)
        return super().write(fd, data)


def _cReadFrames():
    """
    The C C{readFrames}, or skip (with C{VPNKIT_NO_SPEEDUPS=1}) or fail
    when the extension is not built.
    """
    try:
        from vpnkit._speedups import readFrames
    except ImportError:
        if os.environ.get("VPNKIT_NO_SPEEDUPS") == "1":
            raise SkipTest("VPNKIT_NO_SPEEDUPS=1: the C extension vpnkit._speedups is left out")
        raise AssertionError("the C extension vpnkit._speedups is not built: `make install`")
    return readFrames


class _BatchReadingTunSystem(_ScriptedTunSystem):
    """
    The scripted fake with a C{readFrames}, as L{LinuxTunSystem} has: the C
    one, unless read errors are scripted (they go through L{read}).
    """

    def __init__(self):
        super().__init__()
        self._cReadFrames = _cReadFrames()

    def readFrames(self, fd, maxFrames, size, vnetHeader=0):
        if self.readErrors:
            return pythonReadFrames(self.read, fd, maxFrames, size)
        return self._cReadFrames(fd, maxFrames, size, vnetHeader)


class ReadFramesTests(SynchronousTestCase):
    """
    C{readFrames}: the C version in C{vpnkit._speedups} and the Python
    L{pythonReadFrames} (its fallback and oracle) read a packet descriptor
    the same way.
    """

    def setUp(self):
        self.cReadFrames = _cReadFrames()
        tap, self.guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        tap.setblocking(False)
        self.fd = tap.detach()
        self.addCleanup(self.guest.close)
        self.addCleanup(lambda: self.fd >= 0 and os.close(self.fd))

    def both(self, maxFrames, size=2000):
        """
        What each version reads, C first; each reads its own copy of the
        frames the guest sends next (the guest sends them twice).
        """
        return (
            self.cReadFrames(self.fd, maxFrames, size),
            pythonReadFrames(os.read, self.fd, maxFrames, size),
        )

    def sendTwice(self, frames):
        for _ in range(2):
            for f in frames:
                self.guest.send(f)

    def test_nothingWaiting(self):
        """
        With nothing to read, both return no frames and no error (no
        exception escapes).
        """
        self.assertEqual(self.both(64), (([], None), ([], None)))

    def test_framesThenEmpty(self):
        """
        Every waiting frame comes back, in order and whole, one per read;
        the read that would block ends the batch.
        """
        sent = [frame(1), frame(2, 1514), frame(3, 14)]
        for f in sent:
            self.guest.send(f)
        self.assertEqual(self.cReadFrames(self.fd, 64, 2000), (sent, None))
        for f in sent:
            self.guest.send(f)
        self.assertEqual(pythonReadFrames(os.read, self.fd, 64, 2000), (sent, None))

    def test_maxFrames(self):
        """
        At most C{maxFrames} are read; the rest stay for the next call.
        """
        for i in range(5):
            self.guest.send(frame(i))
        self.assertEqual(self.cReadFrames(self.fd, 3, 2000), ([frame(0), frame(1), frame(2)], None))
        self.assertEqual(pythonReadFrames(os.read, self.fd, 3, 2000), ([frame(3), frame(4)], None))

    def test_sizeTruncates(self):
        """
        A frame longer than C{size} comes back cut to C{size} bytes, as one
        C{read} would return it.
        """
        self.sendTwice([frame(1, 100)])
        self.assertEqual(self.both(1, 40), (([frame(1, 100)[:40]], None),) * 2)

    def test_endOfFile(self):
        """
        The end of the descriptor is an empty frame after the others, and
        ends the batch.
        """
        self.guest.send(frame(1))
        self.guest.close()
        self.assertEqual(self.cReadFrames(self.fd, 64, 2000), ([frame(1), b""], None))

    def test_endOfFilePython(self):
        """
        The Python version reports the end the same way.
        """
        self.guest.send(frame(1))
        self.guest.close()
        self.assertEqual(pythonReadFrames(os.read, self.fd, 64, 2000), ([frame(1), b""], None))

    def test_error(self):
        """
        A read error other than "would block" is returned, not raised, as
        the L{OSError} it was, errno and all.
        """
        os.close(self.fd)
        bad = self.fd
        self.fd = -1
        for frames, error in (
            self.cReadFrames(bad, 64, 2000),
            pythonReadFrames(os.read, bad, 64, 2000),
        ):
            self.assertEqual(frames, [])
            self.assertIsInstance(error, OSError)
            self.assertEqual(error.errno, errno.EBADF)

    @settings(max_examples=200, deadline=None)
    @given(
        st.binary(min_size=0, max_size=1600),
        st.integers(0, 0xFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
    )
    @example(bytes(60), 1, 34, 16)
    @example(bytes(60), 1, 58, 0)
    @example(bytes(60), 1, 59, 0)
    @example(bytes(60), 1, 60, 0)
    @example(bytes(13), 1, 0, 0)
    @example(b"\xff" * 61, 3, 34, 6)
    def test_vnetPartialChecksum(self, body, flags, start, offset):
        """
        With C{vnetHeader}, a frame whose virtio-net header says
        C{F_NEEDS_CSUM} comes back with the checksum completed exactly as
        L{completeChecksum} does it and the flag cleared (other header
        bytes untouched); one whose checksum field lies outside the frame,
        or too short to be a frame, or without the flag, comes back as
        read.
        """
        from vpnkit.wire import MalformedError
        from vpnkit.wire.virtio import VirtioNetHeader, completeChecksum, emitVirtioNetHeader

        start = start % (len(body) + 4)
        offset = offset % 40
        vnet = emitVirtioNetHeader(VirtioNetHeader(flags, 0, 54, 0, start, offset))
        self.guest.send(vnet + body)
        (got,), error = self.cReadFrames(self.fd, 64, 2000, 10)
        self.assertIsNone(error)
        expected = vnet + body
        if flags & 1 and len(body) >= 14:
            try:
                completed = completeChecksum(body, start, offset)
            except MalformedError:
                pass
            else:
                expected = bytes([flags & ~1]) + vnet[1:] + completed
        self.assertEqual(got, expected)

    def test_noVnetLeavesPartial(self):
        """
        Without C{vnetHeader} the frame comes back exactly as read, flag
        and partial checksum included.
        """
        from vpnkit.wire.virtio import VirtioNetHeader, emitVirtioNetHeader

        sent = emitVirtioNetHeader(VirtioNetHeader(1, 0, 54, 0, 34, 16)) + frame(1)
        self.guest.send(sent)
        self.assertEqual(self.cReadFrames(self.fd, 64, 2000), ([sent], None))

    def test_linuxSystemUsesC(self):
        """
        L{LinuxTunSystem.readFrames} reads through the C version when it is
        built.
        """
        self.guest.send(frame(7))
        self.assertEqual(LinuxTunSystem().readFrames(self.fd, 64, 2000), ([frame(7)], None))
        from vpnkit.host import tundev

        self.assertIs(tundev._cReadFrames, self.cReadFrames)


class TapLinkTests(SynchronousTestCase):
    """
    L{TapLink} over a L{FakeTunSystem}, with a reactor that only records;
    the fake has no C{readFrames}, so the link reads frame by frame
    through L{pythonReadFrames}.
    """

    systemFactory = _ScriptedTunSystem

    def setUp(self):
        self.system = self.systemFactory()
        self.addCleanup(self.system.cleanup)
        self.fd = self.system.openTap(None, "tap0", GUEST_MAC, 1500)
        self.guest = self.system.opened[0].guest
        self.reactor = FakeFDReactor()
        self.counters = LinkCounters()
        self.received = []
        self.closed = []
        self.link = TapLink(
            self.fd,
            self.system,
            self.received.append,
            self.counters,
            1550,
            "tap:test",
            reactor=self.reactor,
            onClose=self.closed.append,
        )

    def calls(self, name):
        return [c for c in self.reactor.calls if c[0] == name]

    def test_interfaces(self):
        """
        The link provides L{ILink}, the reactor's descriptor interfaces and
        L{IPushProducer}.
        """
        for iface in (ILink, IReadDescriptor, IWriteDescriptor, IPushProducer):
            self.assertTrue(verifyObject(iface, self.link))
        self.assertEqual(self.link.fileno(), self.fd)
        self.assertEqual(self.link.logPrefix(), "tap:test")

    def test_startReading(self):
        """
        C{startReading} adds the link as a reader once, however often it
        is called.
        """
        self.link.startReading()
        self.link.startReading()
        self.assertEqual(self.reactor.calls, [("addReader", self.link)])

    def test_framesOneByOne(self):
        """
        Each frame read from the descriptor reaches C{frameReceived} on its
        own and is counted; an empty queue ends the read.
        """
        self.link.startReading()
        self.guest.send(frame(1))
        self.guest.send(frame(2, 1550))
        self.assertIsNone(self.link.doRead())
        self.assertEqual(self.received, [frame(1), frame(2, 1550)])
        self.assertEqual((self.counters.framesIn, self.counters.bytesIn), (2, 1610))
        self.assertIsNone(self.link.doRead())
        self.assertEqual(len(self.received), 2)

    def test_readBatch(self):
        """
        One C{doRead} reads at most C{READ_BATCH} frames, leaving the rest
        for the next wake-up.
        """
        self.link.startReading()
        for i in range(taplink.READ_BATCH + 6):
            self.guest.send(frame(i))
        self.link.doRead()
        self.assertEqual(len(self.received), taplink.READ_BATCH)
        self.link.doRead()
        self.assertEqual(self.received, [frame(i) for i in range(taplink.READ_BATCH + 6)])

    def test_shortAndOversizeDropped(self):
        """
        A frame shorter than 14 bytes or longer than the maximum is counted
        and dropped, and the link stays up.
        """
        self.link.startReading()
        self.guest.send(b"x" * 13)
        self.guest.send(b"y" * 1551)
        self.guest.send(frame(3, 14))
        self.assertIsNone(self.link.doRead())
        self.assertEqual(self.received, [frame(3, 14)])
        self.assertEqual((self.counters.shortFrames, self.counters.oversizeFrames), (1, 1))
        self.assertEqual(self.counters.framesIn, 1)
        self.assertIn(self.link, self.reactor.readers)
        self.assertEqual(self.closed, [])

    def test_endOfFile(self):
        """
        A zero-length read (the device is gone) ends the link with
        L{ConnectionDone}.
        """
        self.link.startReading()
        self.guest.close()
        self.assertIsInstance(self.link.doRead(), ConnectionDone)

    def test_readError(self):
        """
        A read error other than "nothing waiting" ends the link with
        L{ConnectionLost} naming the link.
        """
        self.link.startReading()
        self.system.readErrors.append(OSError(errno.EIO, "Input/output error"))
        why = self.link.doRead()
        self.assertIsInstance(why, ConnectionLost)
        self.assertIn("tap:test", str(why))

    def test_sendFrame(self):
        """
        Each C{sendFrame} is one write of one frame, counted.
        """
        self.link.sendFrame(frame(1))
        self.link.sendFrame(frame(2, 42))
        self.assertEqual(drainSocket(self.guest), [frame(1), frame(2, 42)])
        self.assertEqual((self.counters.framesOut, self.counters.bytesOut), (2, 102))
        self.assertEqual(self.calls("addWriter"), [])

    def test_queueWhenFull(self):
        """
        When the descriptor is full, frames queue and the link registers as
        a writer once; C{doWrite} drains them in order once there is room,
        then unregisters.
        """
        filler = fillSocket(lambda f: self.system.write(self.fd, f))
        for i in range(5):
            self.link.sendFrame(frame(i))
        self.assertEqual(self.calls("addWriter"), [("addWriter", self.link)])
        self.assertEqual(drainSocket(self.guest, 100), [b"\0" * 64] * filler)
        self.assertIsNone(self.link.doWrite())
        self.assertEqual(drainSocket(self.guest), [frame(i) for i in range(5)])
        self.assertEqual(self.reactor.writers, set())
        self.assertEqual(self.calls("removeWriter"), [("removeWriter", self.link)])
        self.assertEqual(self.counters.framesOut, 5)
        self.link.sendFrame(frame(9))
        self.assertEqual(drainSocket(self.guest), [frame(9)])

    def test_doWriteStillFull(self):
        """
        A C{doWrite} that finds the device still full keeps the queue and
        the writer registration.
        """
        fillSocket(lambda f: self.system.write(self.fd, f))
        self.link.sendFrame(frame(1))
        self.assertIsNone(self.link.doWrite())
        self.assertIn(self.link, self.reactor.writers)
        drainSocket(self.guest)
        self.link.doWrite()
        self.assertEqual(drainSocket(self.guest), [frame(1)])

    def test_queueBounded(self):
        """
        At most C{TX_QUEUE_FRAMES} frames wait; beyond that they are
        dropped and counted in C{txQueueFull}.
        """
        fillSocket(lambda f: self.system.write(self.fd, f))
        for i in range(taplink.TX_QUEUE_FRAMES + 3):
            self.link.sendFrame(frame(i))
        self.assertEqual(self.counters.txQueueFull, 3)
        self.assertEqual(self.counters.framesOut, taplink.TX_QUEUE_FRAMES)

    def test_writeError(self):
        """
        A write error other than "full" drops that frame, counted in
        C{txErrors}, both on the first attempt and from the queue.
        """
        self.system.writeErrors[frame(1)] = OSError(errno.EIO, "Input/output error")
        self.link.sendFrame(frame(1))
        self.assertEqual((self.counters.txErrors, self.counters.framesOut), (1, 0))
        filler = fillSocket(lambda f: self.system.write(self.fd, f))
        self.link.sendFrame(frame(2))
        self.link.sendFrame(frame(3))
        self.system.writeErrors[frame(2)] = OSError(errno.EIO, "Input/output error")
        self.assertEqual(len(drainSocket(self.guest)), filler)
        self.link.doWrite()
        self.assertEqual(drainSocket(self.guest), [frame(3)])
        self.assertEqual(self.counters.txErrors, 2)

    def test_closeLink(self):
        """
        C{closeLink} stops reading and writing, closes the descriptor and
        calls C{onClose} once with a L{ConnectionDone} carrying the reason.
        """
        self.link.startReading()
        self.link.closeLink("test over")
        self.link.closeLink("again")
        self.assertEqual(self.system.closed, [self.fd])
        self.assertEqual(len(self.closed), 1)
        self.closed[0].trap(ConnectionDone)
        self.assertIn("test over", self.closed[0].getErrorMessage())
        self.assertEqual(self.reactor.readers, set())
        self.assertEqual(self.link.fileno(), -1)
        self.assertEqual(self.guest.recv(100), b"")

    def test_afterClose(self):
        """
        After the link closes, sending, reading and starting to read do
        nothing, and queued frames are discarded.
        """
        fillSocket(lambda f: self.system.write(self.fd, f))
        self.link.sendFrame(frame(1))
        self.link.closeLink("bye")
        self.assertEqual(self.reactor.writers, set())
        self.link.sendFrame(frame(2))
        self.assertIsNone(self.link.doRead())
        self.link.startReading()
        self.assertEqual(self.reactor.readers, set())
        self.assertEqual(self.counters.framesOut, 1)

    def test_pauseResume(self):
        """
        C{pauseProducing} stops reading (frames stay on the device) and
        C{resumeProducing} starts again.
        """
        self.link.startReading()
        self.guest.send(frame(1))
        self.link.pauseProducing()
        self.assertNotIn(self.link, self.reactor.readers)
        self.assertIsNone(self.link.doRead())
        self.assertEqual(self.received, [])
        self.link.resumeProducing()
        self.assertIn(self.link, self.reactor.readers)
        self.link.doRead()
        self.assertEqual(self.received, [frame(1)])

    def test_pauseInsideBatch(self):
        """
        A receiver that pauses the link while handling a frame stops the
        batch after that frame.
        """
        self.link.startReading()
        self.link.frameReceived = lambda f: (self.received.append(f), self.link.pauseProducing())
        self.guest.send(frame(1))
        self.guest.send(frame(2))
        self.link.doRead()
        self.assertEqual(self.received, [frame(1)])

    def test_resumeDeliversRestOfBatch(self):
        """
        Frames of a batch left behind by a pause are delivered, in order,
        when the link resumes, before anything read later.
        """
        self.link.startReading()
        self.link.frameReceived = lambda f: (self.received.append(f), self.link.pauseProducing())
        self.guest.send(frame(1))
        self.guest.send(frame(2))
        self.link.doRead()
        self.link.frameReceived = self.received.append
        self.link.resumeProducing()
        self.guest.send(frame(3))
        self.assertIsNone(self.link.doRead())
        self.assertEqual(self.received, [frame(1), frame(2), frame(3)])
        self.assertEqual(self.counters.framesIn, 3)

    def test_closeInsideBatch(self):
        """
        A receiver that closes the link stops the batch and nothing more is
        read.
        """
        self.link.startReading()
        self.link.frameReceived = lambda f: (self.received.append(f), self.link.closeLink("x"))
        self.guest.send(frame(1))
        self.guest.send(frame(2))
        self.assertIsNone(self.link.doRead())
        self.assertEqual(self.received, [frame(1)])

    def test_stopProducing(self):
        """
        C{stopProducing} closes the link.
        """
        self.link.stopProducing()
        self.assertEqual(self.system.closed, [self.fd])
        self.assertEqual(len(self.closed), 1)

    def test_connectionLostFromReactor(self):
        """
        When the reactor disconnects the link (after C{doRead} returned a
        reason), C{onClose} gets that reason.
        """
        self.link.startReading()
        self.guest.close()
        why = self.link.doRead()
        self.link.connectionLost(Failure(why))
        self.closed[0].trap(ConnectionDone)
        self.assertEqual(self.system.closed, [self.fd])


class BatchReadingTapLinkTests(TapLinkTests):
    """
    The same, over a system with C{readFrames} (the C version, as
    L{LinuxTunSystem} uses): one call per wake-up.
    """

    systemFactory = _BatchReadingTunSystem


class OffloadTests(SynchronousTestCase):
    """
    L{TapLink} with C{offload}: frames behind a virtio-net header, large
    TCP segments and partial checksums from the guest's kernel.
    """

    systemFactory = FakeTunSystem

    def setUp(self):
        self.system = self.systemFactory()
        self.addCleanup(self.system.cleanup)
        self.fd = self.system.openTap(None, "tap0", GUEST_MAC, 1500, offload=True)
        self.guest = self.system.opened[0].guest
        self.reactor = FakeFDReactor()
        self.counters = LinkCounters()
        self.received = []
        self.link = TapLink(
            self.fd,
            self.system,
            self.received.append,
            self.counters,
            1550,
            "tap0",
            reactor=self.reactor,
            offload=True,
        )
        self.link.startReading()

    def tcpFrame(self, payloadSize, partial):
        """
        An Ethernet/IPv4/TCP frame with C{payloadSize} bytes; with
        C{partial}, its checksum field holds only the pseudo-header sum (as
        the kernel leaves it for offload).
        """
        from vpnkit.wire.checksum import pseudoHeaderSum
        from vpnkit.wire.ipv4 import buildHeader
        from vpnkit.wire.tcp import ACK, Segment, emitTCP

        src, dst = bytes([192, 168, 65, 3]), bytes([192, 168, 65, 2])
        payload = bytes(i % 251 for i in range(payloadSize))
        tcp = emitTCP(Segment(40000, 5201, 1000, 2000, ACK, 512, payload=payload), src, dst)
        if partial:
            s = pseudoHeaderSum(src, dst, 6, len(tcp)) % 0xFFFF
            tcp = tcp[:16] + s.to_bytes(2, "big") + tcp[18:]
        ip = buildHeader(src, dst, 6, len(tcp))
        complete = emitTCP(Segment(40000, 5201, 1000, 2000, ACK, 512, payload=payload), src, dst)
        eth = b"\xf6\x16\x36\xbc\xf9\xc6" + GUEST_MAC + b"\x08\x00"
        return eth + ip + tcp, eth + ip + complete

    def header(self, flags=0, gsoType=0, gsoSize=0, csumStart=0, csumOffset=0):
        from vpnkit.wire.virtio import VirtioNetHeader, emitVirtioNetHeader

        return emitVirtioNetHeader(
            VirtioNetHeader(flags, gsoType, 54, gsoSize, csumStart, csumOffset)
        )

    def test_partialChecksumCompleted(self):
        """
        A 64 KiB TSO segment with F_NEEDS_CSUM is accepted (beyond the MTU)
        and handed on with its TCP checksum complete.
        """
        from vpnkit.wire.virtio import F_NEEDS_CSUM, GSO_TCPV4

        partial, complete = self.tcpFrame(65000, partial=True)
        self.guest.send(self.header(F_NEEDS_CSUM, GSO_TCPV4, 1460, 34, 16) + partial)
        self.link.doRead()
        self.assertEqual(self.received, [complete])
        self.assertEqual(self.counters.framesIn, 1)

    def test_plainFrameLimitedByMTU(self):
        """
        Without segmentation offload a frame is still limited by the MTU.
        """
        _, complete = self.tcpFrame(1600, partial=False)
        self.guest.send(self.header() + complete)
        self.link.doRead()
        self.assertEqual(self.received, [])
        self.assertEqual(self.counters.oversizeFrames, 1)

    def test_unsupportedOffloadDropped(self):
        """
        A segmentation type vpnkit did not enable (UDP, TCPv6) is counted and
        dropped.
        """
        from vpnkit.wire.virtio import GSO_TCPV6

        _, complete = self.tcpFrame(100, partial=False)
        self.guest.send(self.header(0, GSO_TCPV6, 1440) + complete)
        self.link.doRead()
        self.assertEqual(self.received, [])
        self.assertEqual(self.counters.unsupportedOffload, 1)

    def test_badChecksumOffsetDropped(self):
        """
        A checksum position outside the frame is counted, not a crash.
        """
        from vpnkit.wire.virtio import F_NEEDS_CSUM

        _, complete = self.tcpFrame(10, partial=False)
        self.guest.send(self.header(F_NEEDS_CSUM, 0, 0, 5000, 16) + complete)
        self.link.doRead()
        self.assertEqual(self.received, [])
        self.assertEqual(self.counters.unsupportedOffload, 1)

    def test_sendAddsHeader(self):
        """
        Frames to the guest go behind an all-zero header (no offload
        requested of the guest's kernel).
        """
        from vpnkit.wire.virtio import NO_OFFLOAD

        self.link.sendFrame(b"\x01" * 60)
        self.assertEqual(drainSocket(self.guest), [NO_OFFLOAD + b"\x01" * 60])
        self.assertEqual(self.link.maxFrameSize, 14 + 65535)

    def test_superSegmentSentWithOffload(self):
        """
        A TCP frame beyond the MTU goes to the guest's kernel as one
        segmentation-offload super-segment: a GSO_TCPV4 header and the frame
        with a partial checksum.
        """
        from vpnkit.wire.virtio import (
            F_NEEDS_CSUM,
            GSO_TCPV4,
            completeChecksum,
            parseVirtioNetHeader,
        )

        _, complete = self.tcpFrame(20000, partial=False)
        self.link.sendFrame(complete)
        [written] = drainSocket(self.guest)
        header = parseVirtioNetHeader(written)
        self.assertEqual((header.flags, header.gsoType, header.gsoSize), (F_NEEDS_CSUM, GSO_TCPV4, 1460))
        self.assertEqual(completeChecksum(written[10:], 34, 16), complete)
        self.assertEqual(self.link.segmentLimit, 0xFFFF - 80)

    def test_checksumOffloadInterface(self):
        """
        A link with offload provides L{IChecksumOffloadLink} and says it
        completes checksums; one without says it does not.
        """
        self.assertTrue(verifyObject(IChecksumOffloadLink, self.link))
        self.assertTrue(self.link.checksumOffload)
        plain = TapLink(self.fd, self.system, None, self.counters, 1550, "plain", reactor=self.reactor)
        self.assertFalse(plain.checksumOffload)

    def partialParts(self, payloadSize):
        """
        The head (Ethernet, IPv4, TCP headers, the checksum left partial)
        and payload of a segment from vpnkit to the guest, the payload a
        view of a larger buffer; and the frame with its checksum complete.
        """
        from vpnkit.wire.ipv4 import buildHeader
        from vpnkit.wire.tcp import ACK, Segment, emitTCP, emitTCPHeader

        src, dst = bytes([192, 168, 65, 2]), bytes([192, 168, 65, 3])
        buffer = bytes(i % 253 for i in range(payloadSize + 100))
        payload = memoryview(buffer)[50 : 50 + payloadSize]
        seg = Segment(5201, 40000, 1000, 2000, ACK, 512, payload=payload)
        tcp = emitTCPHeader(seg, src, dst, partial=True)
        ip = buildHeader(src, dst, 6, len(tcp) + payloadSize)
        eth = GUEST_MAC + b"\xf6\x16\x36\xbc\xf9\xc6\x08\x00"
        return eth + ip + tcp, payload, eth + ip + emitTCP(seg, src, dst)

    def completeAsKernel(self, written):
        """
        What the guest's kernel makes of a written frame with
        C{F_NEEDS_CSUM}: the sum from C{csumStart} on complemented into the
        field at C{csumStart + csumOffset}, by the pure-Python sum.
        """
        from vpnkit.wire.checksum import pythonOnesComplementSum
        from vpnkit.wire.virtio import parseVirtioNetHeader

        header = parseVirtioNetHeader(written)
        frame = written[10:]
        position = header.csumStart + header.csumOffset
        csum = ~pythonOnesComplementSum(frame[header.csumStart :]) & 0xFFFF
        return header, frame[:position] + csum.to_bytes(2, "big") + frame[position + 2 :]

    def test_framePartsPartialChecksum(self):
        """
        A segment handed over in parts with its checksum left partial is
        written behind a header asking the guest's kernel to complete it
        from the TCP header on; completed that way, it is exactly the
        segment with its checksum computed in full.
        """
        from vpnkit.wire.virtio import F_NEEDS_CSUM, GSO_NONE

        head, payload, complete = self.partialParts(1400)
        self.link.sendFrameParts(head, payload, 34, 16)
        [written] = drainSocket(self.guest)
        header, frame = self.completeAsKernel(written)
        self.assertEqual(
            (header.flags, header.gsoType, header.csumStart, header.csumOffset),
            (F_NEEDS_CSUM, GSO_NONE, 34, 16),
        )
        self.assertEqual(frame, complete)
        self.assertEqual((self.counters.framesOut, self.counters.bytesOut), (1, len(complete)))

    def test_framePartsSuperSegment(self):
        """
        Beyond the MTU, the parts go as a super-segment cut at the MTU,
        completed by the guest's kernel just the same.
        """
        from vpnkit.wire.virtio import F_NEEDS_CSUM, GSO_TCPV4

        head, payload, complete = self.partialParts(60000)
        self.link.sendFrameParts(head, payload, 34, 16)
        [written] = drainSocket(self.guest, 70000)
        header, frame = self.completeAsKernel(written)
        self.assertEqual(
            (header.flags, header.gsoType, header.hdrLen, header.gsoSize),
            (F_NEEDS_CSUM, GSO_TCPV4, 54, 1460),
        )
        self.assertEqual(frame, complete)

    def test_framePartsNotTCP(self):
        """
        Parts beyond the MTU that cannot be a TCP super-segment are counted
        as a transmit error, nothing written.
        """
        head, payload, _ = self.partialParts(3000)
        self.link.sendFrameParts(head[:23] + b"\x11" + head[24:], payload, 34, 6)
        self.assertEqual(drainSocket(self.guest), [])
        self.assertEqual(self.counters.txErrors, 1)

    def test_queuedPartsHoldNoMoreThanTheirBytes(self):
        """
        Parts that must wait for room do not keep a large buffer alive for
        a small view of it: such a payload is copied out when queued; a
        view of most of its buffer is queued as it is.
        """
        written = []
        full = [True]

        def writev(fd, buffers):
            if full[0]:
                raise BlockingIOError()
            written.append(buffers)
            return sum(len(b) for b in buffers)

        self.system.writev = writev
        head, _, _ = self.partialParts(1000)
        large = bytes(4000)
        small = memoryview(large)[:1000]
        most = memoryview(large)[500:]
        self.link.sendFrameParts(head, small, 34, 16)
        self.link.sendFrameParts(head, most, 34, 16)
        full[0] = False
        self.link.doWrite()
        [(_, _, first), (_, _, second)] = written
        self.assertEqual((type(first), first), (bytes, bytes(1000)))
        self.assertIs(second, most)

    def test_framePartsAfterClose(self):
        """
        Nothing is written once the link is closed.
        """
        head, payload, _ = self.partialParts(100)
        self.link.closeLink("test")
        self.link.sendFrameParts(head, payload, 34, 16)
        self.assertEqual(self.counters.framesOut, 0)

    def test_oversizeNonTCPNotSent(self):
        """
        An oversized frame that is not TCP cannot be offloaded: counted as a
        transmit error, nothing written.
        """
        self.link.sendFrame(b"\x02" * 12 + b"\x08\x06" + bytes(3000))
        self.assertEqual(drainSocket(self.guest), [])
        self.assertEqual(self.counters.txErrors, 1)


class BatchReadingOffloadTests(OffloadTests):
    """
    The same, over a system with the C C{readFrames}.
    """

    systemFactory = _BatchReadingTunSystem
