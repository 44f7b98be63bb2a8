"""
Tests for L{vpnkit.protocols.links}: the length-prefix decoder, the vmnet
and QEMU server protocols in front of a real L{Stack}, and the client
protocols C{vpnkit-tap-bridge} uses.
"""

import random
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import GUEST_MAC, arpReply, arpRequest
from vpnkit.config import StackConfig
from vpnkit.protocols import links
from vpnkit.protocols.links import (
    QEMU_PREFIX,
    VMNET_PREFIX,
    FrameDecoder,
    FramingError,
    HandshakeRefused,
    QEMUClientProtocol,
    QEMUServerFactory,
    VMNetClientProtocol,
    VMNetServerFactory,
)
from vpnkit.stack import Stack
from vpnkit.wire import vmnet

# The server's Init, byte for byte (reference section 2.1).
INIT = b"VMN3T" + b"\x16\x00\x00\x00" + b"0123456789012345678901234567890123456789"
ZERO_UUID = b"\0" * 36
NIL_UUID_TEXT = b"00000000-0000-0000-0000-000000000000"
UUID_A = b"5b2f6b6e-4e8c-4c8e-9a3e-4f1c2d3e4f50"
UUID_B = b"0f4e0d4c-1b2a-4d3c-8e7f-60718293a4b5"
# 192.168.65.250 as the little-endian u32 of its numeric value.
PREFERRED_250 = bytes.fromhex("FA41A8C0")
QEMU_MAC = bytes.fromhex("525400123456")


def ethernetCommand(uuid=ZERO_UUID):
    return b"\x01" + uuid + b"\0\0\0\0"


def preferredCommand(uuid, ipLE):
    return b"\x08" + uuid + ipLE


def vifResponse(n, mtu=1500):
    """
    The 258-byte Vif for the C{n}th guest MAC (02:50:00:00:00:0n).
    """
    mac = b"\x02\x50" + n.to_bytes(4, "big")
    return bytes([1]) + mtu.to_bytes(2, "little") + (mtu + 50).to_bytes(2, "little") + mac + bytes(247)


def disconnectResponse(reason):
    body = b"\x02" + bytes([len(reason)]) + reason.encode("ascii")
    return body + bytes(258 - len(body))


def vmnetFrame(frame):
    return len(frame).to_bytes(2, "little") + frame


def qemuFrame(frame):
    return len(frame).to_bytes(4, "big") + frame


def makeStack(**config):
    for key in ("lowestIP", "highestIP"):
        if key in config:
            config[key] = IPv4Address(config[key])
    return Stack(StackConfig(**config), reactor=task.Clock())


def connect(factory):
    """
    A server protocol from C{factory}, connected to a L{StringTransport}.
    """
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def portOf(stack, link):
    """
    The switch port C{link} is attached to, or C{None}.
    """
    for port in stack.switch.ports():
        if port.link is link:
            return port
    return None


def lose(proto, reason=ConnectionDone):
    proto.connectionLost(Failure(reason()))


class FrameDecoderTests(SynchronousTestCase):
    """
    L{FrameDecoder} splits a byte stream into length-prefixed frames.
    """

    def framesFor(self, count):
        return [bytes([i]) * (14 + i * 7) for i in range(count)]

    def test_wholeFrame(self):
        """
        A prefix and its frame in one chunk come out as one frame, with
        nothing left pending.
        """
        decoder = FrameDecoder(VMNET_PREFIX, 1550)
        frame = bytes(range(60))
        self.assertEqual(decoder.feed(b"\x3c\x00" + frame), [frame])
        self.assertEqual(decoder.pending, 0)

    def test_oneByteAtATime(self):
        """
        Fed one byte at a time, frames appear exactly when their last byte
        arrives and are identical to what was sent; C{pending} counts the
        bytes buffered in between.
        """
        decoder = FrameDecoder(VMNET_PREFIX, 1550)
        frames = self.framesFor(5)
        stream = b"".join(vmnetFrame(f) for f in frames)
        out = []
        ends = set()
        end = 0
        for f in frames:
            end += 2 + len(f)
            ends.add(end)
        for i in range(len(stream)):
            got = decoder.feed(stream[i : i + 1])
            if i + 1 in ends:
                self.assertEqual(len(got), 1)
                self.assertEqual(decoder.pending, 0)
            else:
                self.assertEqual(got, [])
                self.assertGreater(decoder.pending, 0)
            out.extend(got)
        self.assertEqual(out, frames)

    def test_manyFramesInOneChunk(self):
        """
        Many frames in one chunk all come out, in order.
        """
        decoder = FrameDecoder(VMNET_PREFIX, 1550)
        frames = self.framesFor(20)
        self.assertEqual(decoder.feed(b"".join(vmnetFrame(f) for f in frames)), frames)
        self.assertEqual(decoder.pending, 0)

    def test_splitPrefix(self):
        """
        A prefix split across chunks is reassembled; C{pending} counts the
        buffered bytes.
        """
        decoder = FrameDecoder(QEMU_PREFIX, 1550)
        frame = b"\xab" * 20
        self.assertEqual(decoder.feed(b"\x00\x00"), [])
        self.assertEqual(decoder.pending, 2)
        self.assertEqual(decoder.feed(b"\x00\x14" + frame[:5]), [])
        self.assertEqual(decoder.pending, 9)
        self.assertEqual(decoder.feed(frame[5:] + b"\x00"), [frame])
        self.assertEqual(decoder.pending, 1)

    def test_vmnetIsLittleEndianU16(self):
        """
        vmnet prefixes are 2 bytes, little-endian: C{01 02} announces 513
        bytes, not 258.
        """
        decoder = FrameDecoder(VMNET_PREFIX, 1550)
        frame = b"\x55" * 513
        self.assertEqual(decoder.feed(b"\x01\x02" + frame[:258]), [])
        self.assertEqual(decoder.pending, 260)
        self.assertEqual(decoder.feed(frame[258:]), [frame])

    def test_qemuIsBigEndianU32(self):
        """
        QEMU prefixes are 4 bytes, big-endian: C{00 00 01 02} announces 258
        bytes.
        """
        decoder = FrameDecoder(QEMU_PREFIX, 1550)
        frame = b"\x66" * 258
        self.assertEqual(decoder.feed(b"\x00\x00\x01\x02" + frame), [frame])

    def test_short(self):
        """
        A prefix announcing fewer than 14 bytes (an Ethernet header) raises
        L{FramingError} of kind C{"short"}.
        """
        decoder = FrameDecoder(VMNET_PREFIX, 1550)
        e = self.assertRaises(FramingError, decoder.feed, b"\x0d\x00" + b"x" * 13)
        self.assertEqual((e.kind, e.length), ("short", 13))
        e = self.assertRaises(FramingError, FrameDecoder(QEMU_PREFIX, 1550).feed, b"\0\0\0\0")
        self.assertEqual((e.kind, e.length), ("short", 0))

    def test_minimumIsAccepted(self):
        """
        Exactly 14 bytes and exactly C{maxFrame} bytes are accepted.
        """
        decoder = FrameDecoder(VMNET_PREFIX, 100)
        self.assertEqual(
            decoder.feed(b"\x0e\x00" + b"a" * 14 + b"\x64\x00" + b"b" * 100),
            [b"a" * 14, b"b" * 100],
        )

    def test_oversize(self):
        """
        A prefix announcing more than C{maxFrame} raises L{FramingError} of
        kind C{"oversize"}, before the frame's bytes arrive.
        """
        decoder = FrameDecoder(QEMU_PREFIX, 1550)
        e = self.assertRaises(FramingError, decoder.feed, b"\x00\x00\x06\x0f")
        self.assertEqual((e.kind, e.length), ("oversize", 1551))
        self.assertIn("1551", str(e))

    def test_oversizeAfterGoodFrame(self):
        """
        A bad prefix behind a buffered partial frame is still detected.
        """
        decoder = FrameDecoder(VMNET_PREFIX, 100)
        self.assertEqual(decoder.feed(b"\x0e\x00abc"), [])
        e = self.assertRaises(FramingError, decoder.feed, b"d" * 11 + b"\xff\xff")
        self.assertEqual(e.kind, "oversize")


def _chunked(stream, cuts):
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = []
    start = 0
    for p in points + [len(stream)]:
        chunks.append(stream[start:p])
        start = p
    return chunks


class FrameDecoderPropertyTests(SynchronousTestCase):
    """
    Whatever the chunking, the decoder gives back the frames encoded.
    """

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        frames=st.lists(st.binary(min_size=14, max_size=300), max_size=12),
        cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
        qemu=st.booleans(),
    )
    def test_anyChunking(self, frames, cuts, qemu):
        """
        Any list of valid frames, length-prefixed and re-chunked at random
        points, decodes to the same list with nothing left pending.
        """
        prefix = QEMU_PREFIX if qemu else VMNET_PREFIX
        stream = b"".join(prefix.pack(len(f)) + f for f in frames)
        decoder = FrameDecoder(prefix, 300)
        out = []
        for chunk in _chunked(stream, cuts):
            out.extend(decoder.feed(chunk))
        self.assertEqual(out, frames)
        self.assertEqual(decoder.pending, 0)


class VMNetHandshakeTests(SynchronousTestCase):
    """
    The server side of the vmnet v22 handshake, byte for byte.
    """

    def setUp(self):
        self.stack = makeStack()
        self.factory = VMNetServerFactory(self.stack.guests)

    def handshake(self, command, init=INIT):
        proto, transport = connect(self.factory)
        proto.dataReceived(init + command)
        return proto, transport

    def test_firstClientDefaults(self):
        """
        The first client with an all-zero UUID gets the server's 49-byte
        Init, then the 258-byte Vif
        C{01 DC 05 0E 06 02 50 00 00 00 01} + 247 zeros, and is attached
        to the switch as 192.168.65.3 with that MAC.
        """
        proto, transport = self.handshake(ethernetCommand())
        expected = INIT + bytes.fromhex("01DC050E060250000000 01".replace(" ", "")) + bytes(247)
        self.assertEqual(len(expected), 49 + 258)
        self.assertEqual(transport.value(), expected)
        port = portOf(self.stack, proto)
        self.assertEqual(port.mac, GUEST_MAC)
        self.assertEqual(str(port.lease.ip), "192.168.65.3")
        self.assertEqual(self.stack.counters.link.linksOpened, 1)
        self.assertFalse(transport.disconnecting)

    def test_initSentBeforeCommand(self):
        """
        The server answers the client's Init with its own as soon as the
        49 bytes are in, before the Command arrives; the Vif follows the
        Command.
        """
        proto, transport = connect(self.factory)
        proto.dataReceived(INIT[:30])
        self.assertEqual(transport.value(), b"")
        proto.dataReceived(INIT[30:])
        self.assertEqual(transport.value(), INIT)
        proto.dataReceived(ethernetCommand()[:40])
        self.assertEqual(transport.value(), INIT)
        proto.dataReceived(ethernetCommand()[40:])
        self.assertEqual(transport.value(), INIT + vifResponse(1))

    def test_oneByteAtATime(self):
        """
        A handshake delivered one byte at a time gives the same answer.
        """
        proto, transport = connect(self.factory)
        for b in INIT + ethernetCommand(UUID_A):
            proto.dataReceived(bytes([b]))
        self.assertEqual(transport.value(), INIT + vifResponse(1))

    def test_mtuInVif(self):
        """
        The Vif announces the configured MTU and MTU + 50.
        """
        self.factory = VMNetServerFactory(makeStack(mtu=9000).guests)
        _, transport = self.handshake(ethernetCommand())
        self.assertEqual(transport.value()[49:], vifResponse(1, mtu=9000))
        self.assertEqual(transport.value()[50:54], b"\x28\x23\x5a\x23")

    def test_sameUUIDSameAddress(self):
        """
        The same UUID on a second connection (the first one gone) gets the
        same MAC and IP; a new UUID gets the next IP and MAC.
        """
        first, t1 = self.handshake(ethernetCommand(UUID_A))
        lose(first)
        again, t2 = self.handshake(ethernetCommand(UUID_A))
        other, t3 = self.handshake(ethernetCommand(UUID_B))
        self.assertEqual(t1.value()[49:], vifResponse(1))
        self.assertEqual(t2.value()[49:], vifResponse(1))
        self.assertEqual(t3.value()[49:], vifResponse(2))
        self.assertEqual(str(portOf(self.stack, again).lease.ip), "192.168.65.3")
        self.assertEqual(str(portOf(self.stack, other).lease.ip), "192.168.65.4")

    def test_sameUUIDConcurrently(self):
        """
        Two connections open at once with the same UUID both get its MAC.
        """
        _, t1 = self.handshake(ethernetCommand(UUID_A))
        _, t2 = self.handshake(ethernetCommand(UUID_A))
        self.assertEqual(t1.value()[49:], vifResponse(1))
        self.assertEqual(t2.value()[49:], vifResponse(1))

    def test_uuidCaseInsensitive(self):
        """
        A UUID is canonicalised: upper and lower case name the same guest.
        """
        _, t1 = self.handshake(ethernetCommand(UUID_B))
        _, t2 = self.handshake(ethernetCommand(UUID_B.upper()))
        self.assertEqual(t2.value()[49:], t1.value()[49:])

    def test_preferredIPv4(self):
        """
        Preferred_ipv4 (type 8) with C{FA 41 A8 C0} gets 192.168.65.250.
        """
        proto, transport = self.handshake(preferredCommand(UUID_A, PREFERRED_250))
        self.assertEqual(transport.value(), INIT + vifResponse(1))
        self.assertEqual(str(portOf(self.stack, proto).lease.ip), "192.168.65.250")

    def test_preferredIPv4SameAgain(self):
        """
        The same UUID asking again for the address it holds gets it.
        """
        self.handshake(preferredCommand(UUID_A, PREFERRED_250))
        proto, transport = self.handshake(preferredCommand(UUID_A, PREFERRED_250))
        self.assertEqual(transport.value()[49:], vifResponse(1))
        self.assertEqual(self.stack.counters.link.handshakeFailures, 0)

    def test_preferredIPv4Conflict(self):
        """
        The same UUID asking for another IP than the one it holds gets a
        Disconnect with the reference's reason, and the connection closes.
        """
        self.handshake(ethernetCommand(UUID_A))
        proto, transport = self.handshake(preferredCommand(UUID_A, PREFERRED_250))
        reason = "UUID already assigned to a different IP than the IP requested by the client"
        self.assertEqual(transport.value(), INIT + disconnectResponse(reason))
        self.assertEqual(transport.value()[49:51], bytes([2, len(reason)]))
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(portOf(self.stack, proto))
        self.assertEqual(self.stack.counters.link.handshakeFailures, 1)

    def test_preferredIPv4OutOfRange(self):
        """
        A preferred address outside the guest range is refused with the
        reference's reason.
        """
        _, transport = self.handshake(preferredCommand(UUID_A, bytes.fromhex("0a0000c0")))
        self.assertEqual(transport.value(), INIT + disconnectResponse("Preferred IP address out of range."))

    def test_preferredIPv4Taken(self):
        """
        A preferred address held by another UUID is refused, naming it.
        """
        self.handshake(preferredCommand(UUID_A, PREFERRED_250))
        _, transport = self.handshake(preferredCommand(UUID_B, PREFERRED_250))
        self.assertEqual(
            transport.value(),
            INIT + disconnectResponse("Preferred IP address 192.168.65.250 already used."),
        )

    def test_rangeExhausted(self):
        """
        When every address is held, a new UUID is told "No IP addresses
        available."
        """
        self.factory = VMNetServerFactory(
            makeStack(lowestIP="192.168.65.4", highestIP="192.168.65.4").guests
        )
        self.handshake(ethernetCommand(UUID_A))
        _, transport = self.handshake(ethernetCommand(UUID_B))
        self.assertEqual(transport.value(), INIT + disconnectResponse("No IP addresses available."))


class VMNetRefusalTests(SynchronousTestCase):
    """
    Unlike the reference, every bad handshake gets a Disconnect that says
    why, then the connection closes and C{handshakeFailures} counts it.
    """

    def setUp(self):
        self.stack = makeStack()
        self.proto, self.transport = connect(VMNetServerFactory(self.stack.guests))

    def assertRefused(self, data, reason=None, startsWith=None):
        self.proto.dataReceived(data)
        out = self.transport.value()
        self.assertEqual(len(out), 49 + 258)
        self.assertEqual(out[:49], INIT)
        self.assertEqual(out[49], 2)
        got = out[51 : 51 + out[50]].decode("ascii")
        self.assertEqual(out[51 + out[50] :], bytes(258 - 2 - out[50]))
        if reason is not None:
            self.assertEqual(got, reason)
        if startsWith is not None:
            self.assertTrue(got.startswith(startsWith), got)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.stack.counters.link.handshakeFailures, 1)
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        return got

    def test_badMagic(self):
        """
        The legacy C{VMNET} magic is refused, naming the expected magic.
        """
        got = self.assertRefused(b"VMNET" + INIT[5:] + ethernetCommand())
        self.assertIn("VMN3T", got)
        self.assertIn("VMNET", got)

    def test_badVersion(self):
        """
        Version 21 is refused with the reference's log text as the reason.
        """
        self.assertRefused(
            b"VMN3T\x15\x00\x00\x00" + INIT[9:],
            "Client requested protocol version 21, server only supports version 22",
        )

    def test_unknownCommand(self):
        """
        An unknown command type is refused, naming the type.
        """
        self.assertRefused(INIT + b"\x07" + bytes(40), "Unknown command type 7")

    def test_bindIPv4(self):
        """
        Bind_ipv4 (type 6) belongs to the privileged helper and is refused.
        """
        command = b"\x06" + bytes.fromhex("0100007f") + b"\x50\x00" + b"\x00"
        got = self.assertRefused(INIT + command + bytes(41 - len(command)))
        self.assertIn("Bind_ipv4", got)

    def test_badUUID(self):
        """
        A UUID that does not parse is refused, quoting it.
        """
        got = self.assertRefused(INIT + ethernetCommand(b"not-a-uuid".ljust(36, b"x")))
        self.assertTrue(got.startswith("Invalid UUID"), got)
        self.assertIn("not-a-uuid", got)

    def test_refusalsLogOneLine(self):
        """
        A thousand refused handshakes make one log line per interval, and
        the next after it says how many were suppressed.
        """
        clock = task.Clock()
        factory = VMNetServerFactory(self.stack.guests, clock=clock)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(1000):
            proto, transport = connect(factory)
            proto.dataReceived(b"VMNET" + INIT[5:] + ethernetCommand())
            self.assertTrue(transport.disconnecting)
        mine = [e for e in events if e.get("log_namespace") == "vpnkit.links"]
        self.assertEqual(len(mine), 1)
        clock.advance(30)
        proto, transport = connect(factory)
        proto.dataReceived(b"VMNET" + INIT[5:] + ethernetCommand())
        self.assertIn("999 similar messages suppressed", formatEvent(events[-1]))

    def test_dataAfterRefusalIgnored(self):
        """
        Bytes arriving after a refusal are ignored: nothing more is
        written and nothing reaches the stack.
        """
        self.assertRefused(b"VMN3T\x15\x00\x00\x00" + INIT[9:])
        self.proto.dataReceived(ethernetCommand() + vmnetFrame(arpRequest()))
        self.assertEqual(len(self.transport.value()), 49 + 258)
        self.assertEqual(self.stack.counters.link.framesIn, 0)
        self.assertEqual(self.stack.counters.arp.requests, 0)


class VMNetFramingTests(SynchronousTestCase):
    """
    After the handshake, frames travel behind a little-endian u16 length.
    """

    def setUp(self):
        self.stack = makeStack()
        self.factory = VMNetServerFactory(self.stack.guests)
        self.proto, self.transport = connect(self.factory)
        self.proto.dataReceived(INIT + ethernetCommand())
        self.transport.clear()

    def test_arpRoundTrip(self):
        """
        An ARP request for the gateway reaches the stack and the reply is
        written back u16-LE-prefixed; the link counters count both.
        """
        self.proto.dataReceived(vmnetFrame(arpRequest()))
        self.assertEqual(self.transport.value(), b"\x2a\x00" + arpReply())
        counters = self.stack.counters.link
        self.assertEqual((counters.framesIn, counters.bytesIn), (1, 42))
        self.assertEqual((counters.framesOut, counters.bytesOut), (1, 42))
        self.assertEqual(self.stack.counters.arp.replies, 1)

    def test_handshakeAndFramesInOneChunk(self):
        """
        The Init, the Command and the first frames may arrive in one chunk.
        """
        proto, transport = connect(self.factory)
        req = arpRequest(b"\x02\x50\x00\x00\x00\x02", "192.168.65.4")
        proto.dataReceived(INIT + ethernetCommand(UUID_A) + vmnetFrame(req) * 2)
        reply = arpReply(b"\x02\x50\x00\x00\x00\x02", "192.168.65.4")
        self.assertEqual(transport.value(), INIT + vifResponse(2) + (b"\x2a\x00" + reply) * 2)

    def test_oversizeClosesOnlyThisLink(self):
        """
        A prefix announcing more than the link allows aborts this link,
        counted in C{oversizeFrames}; another guest's link keeps working.
        """
        other, otherTransport = connect(self.factory)
        other.dataReceived(INIT + ethernetCommand(UUID_A))
        otherTransport.clear()
        self.proto.dataReceived(b"\x07\x06" + b"x" * 10)  # 1543 < 1550: fine so far
        self.proto.dataReceived(b"y" * 1533 + b"\xff\xff")
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.stack.counters.link.oversizeFrames, 1)
        lose(self.proto, ConnectionLost)
        self.assertEqual(self.stack.counters.link.truncatedPrefix, 0)
        self.assertEqual(self.stack.counters.link.linksClosed, 1)
        req = arpRequest(b"\x02\x50\x00\x00\x00\x02", "192.168.65.4")
        other.dataReceived(vmnetFrame(req))
        self.assertEqual(
            otherTransport.value(),
            b"\x2a\x00" + arpReply(b"\x02\x50\x00\x00\x00\x02", "192.168.65.4"),
        )
        self.assertFalse(otherTransport.disconnecting)

    def test_shortClosesLink(self):
        """
        A prefix announcing fewer than 14 bytes aborts the link, counted in
        C{shortFrames}; later bytes are ignored.
        """
        self.proto.dataReceived(b"\x05\x00hello")
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.stack.counters.link.shortFrames, 1)
        self.proto.dataReceived(vmnetFrame(arpRequest()))
        self.assertEqual(self.stack.counters.link.framesIn, 0)
        self.assertEqual(self.transport.value(), b"")

    def test_truncatedPrefix(self):
        """
        The connection lost in the middle of a length prefix counts
        C{truncatedPrefix}.
        """
        self.proto.dataReceived(b"\x2a")
        lose(self.proto, ConnectionLost)
        self.assertEqual(self.stack.counters.link.truncatedPrefix, 1)

    def test_truncatedFrame(self):
        """
        The connection lost in the middle of a frame also counts
        C{truncatedPrefix}; a clean end between frames does not.
        """
        self.proto.dataReceived(vmnetFrame(arpRequest())[:20])
        lose(self.proto, ConnectionLost)
        self.assertEqual(self.stack.counters.link.truncatedPrefix, 1)
        proto, transport = connect(self.factory)
        proto.dataReceived(INIT + ethernetCommand() + vmnetFrame(arpRequest()))
        lose(proto)
        self.assertEqual(self.stack.counters.link.truncatedPrefix, 1)

    def test_pausedQueueBounded(self):
        """
        While the guest does not read (the transport paused us), frames are
        still written until C{TX_QUEUE_LIMIT} bytes; beyond it they are
        dropped and counted in C{txQueueFull}.  Resuming lifts the bound.
        """
        self.patch(links, "TX_QUEUE_LIMIT", 100)
        self.assertIs(self.transport.producer, self.proto)
        self.assertTrue(self.transport.streaming)
        frame = b"\xff" * 6 + b"\x00" * 34
        self.proto.pauseProducing()
        for _ in range(4):
            self.proto.sendFrame(frame)
        counters = self.stack.counters.link
        self.assertEqual((counters.framesOut, counters.txQueueFull), (2, 2))
        self.assertEqual(self.transport.value(), (b"\x28\x00" + frame) * 2)
        self.proto.resumeProducing()
        self.proto.sendFrame(frame)
        self.assertEqual((counters.framesOut, counters.txQueueFull), (3, 2))

    def test_closeLink(self):
        """
        L{closeLink} aborts the transport once; frames sent afterwards are
        dropped silently.
        """
        self.proto.closeLink("test")
        self.proto.closeLink("again")
        self.assertTrue(self.transport.disconnected)
        self.proto.sendFrame(arpReply())
        self.assertEqual(self.transport.value(), b"")


class VMNetLeaseTests(SynchronousTestCase):
    """
    When a vmnet connection goes away its port is detached; an all-zero
    UUID's address is given back, a named UUID's is kept.
    """

    def setUp(self):
        self.stack = makeStack()
        self.factory = VMNetServerFactory(self.stack.guests)

    def handshake(self, command):
        proto, transport = connect(self.factory)
        proto.dataReceived(INIT + command)
        return proto, transport

    def test_zeroUUIDReleased(self):
        """
        After an all-zero-UUID guest disconnects, its port is gone and the
        next all-zero-UUID guest gets the same IP (with a fresh MAC).
        """
        first, _ = self.handshake(ethernetCommand())
        self.assertEqual(str(portOf(self.stack, first).lease.ip), "192.168.65.3")
        self.assertTrue(portOf(self.stack, first).lease.ephemeral)
        lose(first)
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertEqual(self.stack.counters.link.linksClosed, 1)
        second, transport = self.handshake(ethernetCommand())
        self.assertEqual(str(portOf(self.stack, second).lease.ip), "192.168.65.3")
        self.assertEqual(transport.value()[49:], vifResponse(2))

    def test_namedUUIDKept(self):
        """
        A named UUID keeps its address after it disconnects: the next
        all-zero-UUID guest gets the one after it.
        """
        first, _ = self.handshake(ethernetCommand(UUID_A))
        lose(first)
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual([str(l.ip) for l in self.stack.pool.leases()], ["192.168.65.3"])
        second, _ = self.handshake(ethernetCommand())
        self.assertEqual(str(portOf(self.stack, second).lease.ip), "192.168.65.4")

    def test_nilUUIDTextIsZero(self):
        """
        The nil UUID written as text (00000000-0000-0000-0000-000000000000)
        is the all-zero UUID: an ephemeral lease given back on disconnect,
        so a thousand such connections never exhaust the range.
        """
        for _ in range(1000):
            proto, transport = self.handshake(ethernetCommand(NIL_UUID_TEXT))
            lease = portOf(self.stack, proto).lease
            self.assertTrue(lease.ephemeral)
            self.assertEqual(str(lease.ip), "192.168.65.3")
            lose(proto)
        self.assertEqual(self.stack.pool.leases(), [])

    def test_randomUUIDsReclaimed(self):
        """
        A thousand connections, each with a fresh UUID, all get a lease:
        once the range is full the least recently detached UUID's address
        is reclaimed.
        """
        import uuid as _uuid

        for n in range(1000):
            proto, transport = self.handshake(ethernetCommand(str(_uuid.uuid4()).encode()))
            self.assertEqual(transport.value()[49], 1, f"attach {n} refused")
            lose(proto)
        self.assertEqual(len(self.stack.pool.leases()), 252)
        self.assertEqual(self.stack.pool.reclaimed, 1000 - 252)

    def test_lostDuringHandshake(self):
        """
        A connection lost before the handshake completes holds nothing.
        """
        proto, _ = connect(self.factory)
        proto.dataReceived(INIT + b"\x01")
        lose(proto)
        self.assertEqual(self.stack.pool.leases(), [])
        self.assertEqual(self.stack.counters.link.truncatedPrefix, 0)
        self.assertEqual(self.stack.counters.link.linksClosed, 0)


class QEMUServerTests(SynchronousTestCase):
    """
    L{vpnkit.protocols.links.QEMUServerProtocol}: no handshake, u32 BE
    framing, an ephemeral lease, the guest's MAC learned.
    """

    def setUp(self):
        self.stack = makeStack()
        self.factory = QEMUServerFactory(self.stack.guests)
        self.proto, self.transport = connect(self.factory)

    def test_ephemeralLeaseAtConnect(self):
        """
        A connection gets an ephemeral lease at once, with no MAC yet, and
        writes nothing.
        """
        port = portOf(self.stack, self.proto)
        self.assertEqual(str(port.lease.ip), "192.168.65.3")
        self.assertTrue(port.lease.ephemeral)
        self.assertIsNone(port.mac)
        self.assertEqual(self.transport.value(), b"")

    def test_macLearnedAndU32Framing(self):
        """
        The guest's MAC is learned from its first frame, and the ARP reply
        comes back behind a big-endian u32 length.
        """
        req = arpRequest(QEMU_MAC)
        self.proto.dataReceived(qemuFrame(req)[:3])
        self.proto.dataReceived(qemuFrame(req)[3:])
        self.assertEqual(portOf(self.stack, self.proto).mac, QEMU_MAC)
        self.assertEqual(self.transport.value(), b"\x00\x00\x00\x2a" + arpReply(QEMU_MAC))

    def test_oversize(self):
        """
        A u32 prefix beyond the link's maximum closes the link.
        """
        self.proto.dataReceived(b"\x00\x01\x00\x00")
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.stack.counters.link.oversizeFrames, 1)

    def test_releasedOnDisconnect(self):
        """
        When the connection goes, the port is detached and the address is
        free for the next guest.
        """
        lose(self.proto)
        self.assertEqual(self.stack.switch.ports(), [])
        self.assertEqual(self.stack.pool.leases(), [])
        proto, _ = connect(self.factory)
        self.assertEqual(str(portOf(self.stack, proto).lease.ip), "192.168.65.3")

    def test_rangeExhausted(self):
        """
        With no address left, a new connection is closed at once and
        counted as C{link.allocationFailures}.
        """
        factory = QEMUServerFactory(makeStack(lowestIP="192.168.65.4", highestIP="192.168.65.4").guests)
        connect(factory)
        proto, transport = connect(factory)
        self.assertTrue(transport.disconnected)
        self.assertEqual(factory.guests.linkCounters.allocationFailures, 1)
        self.assertIsNone(proto._port)
        lose(proto)
        self.assertEqual(len(factory.guests.ports()), 1)


class ClientProtocolTests(SynchronousTestCase):
    """
    The client protocols, driven against the server protocols over an
    in-memory connection.
    """

    def setUp(self):
        self.stack = makeStack()

    def connectVMNet(self, command):
        ready = Deferred()
        client, server, pump = iosim.connectedServerAndClient(
            lambda: VMNetServerFactory(self.stack.guests).buildProtocol(None),
            lambda: VMNetClientProtocol(ready, command),
        )
        return ready, client, server, pump

    def test_vmnetReady(self):
        """
        The client's C{ready} fires with the server's Vif, after which
        frames flow both ways.
        """
        ready, client, server, pump = self.connectVMNet(vmnet.EthernetCommand(vmnet.ZERO_UUID))
        vif = self.successResultOf(ready)
        self.assertEqual(vif, vmnet.Vif(1500, 1550, GUEST_MAC))
        self.assertTrue(client.framing)
        received = []
        client.frameReceiver = received.append
        client.sendFrame(arpRequest())
        pump.flush()
        self.assertEqual(received, [arpReply()])

    def test_vmnetPreferred(self):
        """
        A Preferred_ipv4 command from the client is honoured.
        """
        ready, _, server, _ = self.connectVMNet(
            vmnet.PreferredIPv4Command(UUID_A, bytes([192, 168, 65, 250]))
        )
        self.successResultOf(ready)
        self.assertEqual(str(portOf(self.stack, server).lease.ip), "192.168.65.250")

    def test_vmnetRefused(self):
        """
        A Disconnect fails C{ready} with L{HandshakeRefused} carrying the
        server's reason, and the connection closes.
        """
        ready, client, _, pump = self.connectVMNet(
            vmnet.PreferredIPv4Command(UUID_A, bytes([10, 0, 0, 1]))
        )
        failure = self.failureResultOf(ready, HandshakeRefused)
        self.assertEqual(str(failure.value), "Preferred IP address out of range.")
        self.assertTrue(client.transport.disconnecting)

    def test_vmnetClosedDuringHandshake(self):
        """
        A connection that closes before the response fails C{ready}.
        """
        ready = Deferred()
        client = VMNetClientProtocol(ready, vmnet.EthernetCommand(UUID_A))
        transport = StringTransport()
        client.makeConnection(transport)
        self.assertEqual(transport.value(), INIT + ethernetCommand(UUID_A))
        client.dataReceived(INIT)
        lose(client)
        failure = self.failureResultOf(ready, HandshakeRefused)
        self.assertIn("closed during the handshake", str(failure.value))

    def test_vmnetFramesWithResponse(self):
        """
        Frames arriving in the same chunk as the response reach the frame
        receiver the C{ready} callback installed.
        """
        ready = Deferred()
        client = VMNetClientProtocol(ready, vmnet.EthernetCommand(UUID_A))
        client.makeConnection(StringTransport())
        received = []
        ready.addCallback(lambda vif: setattr(client, "frameReceiver", received.append))
        client.dataReceived(INIT + vifResponse(7) + vmnetFrame(arpReply()))
        self.assertEqual(received, [arpReply()])

    def test_badFrameFromServer(self):
        """
        A short prefix from the server aborts the client's connection.
        """
        ready = Deferred()
        client = VMNetClientProtocol(ready, vmnet.EthernetCommand(UUID_A))
        transport = StringTransport()
        client.makeConnection(transport)
        client.frameReceiver = [].append
        client.dataReceived(INIT + vifResponse(1) + b"\x01\x00")
        self.assertTrue(transport.disconnected)

    def test_qemu(self):
        """
        The QEMU client is ready at once (with no Vif) and exchanges u32-BE
        framed frames with the QEMU server.
        """
        ready = Deferred()
        client, server, pump = iosim.connectedServerAndClient(
            lambda: QEMUServerFactory(self.stack.guests).buildProtocol(None),
            lambda: QEMUClientProtocol(ready),
        )
        self.assertIsNone(self.successResultOf(ready))
        received = []
        client.frameReceiver = received.append
        client.sendFrame(arpRequest(QEMU_MAC))
        self.assertEqual(client.transport.stream, [b"\x00\x00\x00\x2a" + arpRequest(QEMU_MAC)])
        pump.flush()
        self.assertEqual(received, [arpReply(QEMU_MAC)])
        self.assertEqual(portOf(self.stack, server).mac, QEMU_MAC)


class RandomChunkingTests(SynchronousTestCase):
    """
    A whole vmnet session, delivered in seeded random chunks.
    """

    def test_randomChunks(self):
        """
        However the handshake and frames are chunked, the guest gets the
        Init, the Vif and one ARP reply per request.
        """
        rng = random.Random(22)
        requests = 5
        stream = INIT + ethernetCommand() + vmnetFrame(arpRequest()) * requests
        for _ in range(20):
            stack = makeStack()
            proto, transport = connect(VMNetServerFactory(stack.guests))
            i = 0
            while i < len(stream):
                n = rng.randint(1, 60)
                proto.dataReceived(stream[i : i + n])
                i += n
            self.assertEqual(
                transport.value(), INIT + vifResponse(1) + (b"\x2a\x00" + arpReply()) * requests
            )


class GuestLogTests(SynchronousTestCase):
    """
    What a guest can make a link log is rate-limited: one line per kind,
    then a count of the suppressed ones.
    """

    def test_framingErrorsRateLimited(self):
        """
        A hundred QEMU connections each closed for a bad length prefix log
        one "closing link" warning, not a hundred.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        factory = QEMUServerFactory(makeStack().guests, clock=task.Clock())
        for _ in range(100):
            proto, transport = connect(factory)
            proto.dataReceived(b"\x00\x00\xff\xff")
            lose(proto)
        closing = [e for e in events if "closing link" in formatEvent(e)]
        self.assertEqual(len(closing), 1)
        self.assertEqual(factory.guestLog.suppressed("closing link {link}: {reason}"), 99)
