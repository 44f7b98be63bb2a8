# -*- test-case-name: tests.test_dgramlinks -*-
"""
Guest links over a Unix datagram socket: QEMU's C{-netdev dgram} and
vfkit/libkrun's unixgram (what gvproxy serves with C{-listen-vfkit}).

One datagram is one Ethernet frame, with no length prefix; a vfkit client's
first datagram is the four bytes C{VFKT}.  One socket serves every guest:
L{DatagramLinkProtocol} (the C{DatagramProtocol} on vpnkit's bound socket)
keeps one L{DatagramPeer} per sender address, the path the guest's socket
is bound to.  A peer gets an ephemeral lease and its place on the switch on
its first datagram (for vfkit, on the magic), learns its MAC from its first
frame, and is sent its frames at its own address.

There is no connection to lose: a peer that is gone shows itself when a
send to it fails (C{ECONNREFUSED}: its socket file is left but closed;
C{ENOENT}: the file is gone), and a peer nothing is sent to is detached
once it has been idle for a whole L{IDLE_INTERVAL} and its socket file is
gone.  A send the peer's queue cannot take (C{EAGAIN}, C{ENOBUFS}) is
dropped and counted, as a NIC with a full ring would: the link never blocks
and never buffers.

The OS socket is reached through the Twisted transport's handle
(C{getHandle().sendto}) and the reactor's C{listenUNIXDatagram} port, so
the peer logic runs in memory in tests.  The guest's end, for
C{vpnkit-tap-bridge}, is L{DatagramClientLink}.
"""

import errno
import os
import socket
from collections import deque

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from vpnkit.interfaces import ILink
from vpnkit.leases import AllocationError
from vpnkit.log import GuestLog, RateLimitedLog, logger
from vpnkit.wire.ethernet import HEADER_LENGTH

__all__ = [
    "VFKIT_MAGIC",
    "MAX_PEERS",
    "IDLE_INTERVAL",
    "SOCKET_BUFFER",
    "DatagramPeer",
    "DatagramLinkProtocol",
    "QEMUDatagramProtocol",
    "VfkitDatagramProtocol",
    "DatagramClientLink",
    "sizeBuffers",
    "describeAddress",
]

log = logger("vpnkit.dgramlinks")
guestLog = GuestLog(log)

VFKIT_MAGIC = b"VFKT"
# Guests one socket serves at once; beyond it a new sender is refused
# (counted as link.allocationFailures) until a peer goes.
MAX_PEERS = 64
# A peer that sent nothing for a whole interval, and whose socket file is
# gone, is detached at the end of it.
IDLE_INTERVAL = 300.0
# Receive and send buffers of a datagram link socket: room for bursts.
SOCKET_BUFFER = 4 * 1024 * 1024

# A send the peer cannot take now: drop the frame.
_QUEUE_FULL = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})
# A send that finds no peer: its socket is closed (the file is left) or gone.
_PEER_GONE = frozenset({errno.ECONNREFUSED, errno.ENOENT, errno.ENOTDIR})


def describeAddress(address):
    """
    A peer address for logs: a path, or an abstract name shown with C{@}.
    """
    if isinstance(address, bytes):
        return "@" + address[1:].decode("utf-8", "replace")
    return address


def sizeBuffers(sock, size=SOCKET_BUFFER):
    """
    Ask for C{size}-byte receive and send buffers on C{sock}, beyond the
    system's maximum when allowed (C{SO_RCVBUFFORCE}, which needs
    C{CAP_NET_ADMIN}).

    @return: C{(receive, send)} as the kernel reports them.
    """
    for option, force in (
        (socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None)),
        (socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None)),
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass
        # Linux reports twice what was set (its bookkeeping overhead).
        if force is not None and sock.getsockopt(socket.SOL_SOCKET, option) < size:
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except OSError:
                pass
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )


@implementer(ILink)
class DatagramPeer:
    """
    One guest on a datagram socket, as the switch sees it.

    @ivar address: the peer's address (its socket's path).
    @ivar port: its L{vpnkit.protocols.switch.SwitchPort}, or C{None} once
        detached.
    @ivar closed: no more frames go either way (it is gone, or going).
    @ivar active: a datagram arrived since the last idle sweep.
    """

    segmentLimit = 0

    def __init__(self, server, address, sendto, counters, maxFrameSize):
        self.address = address
        self.description = f"{server.kind}:{describeAddress(address)}"
        self.maxFrameSize = maxFrameSize
        self.port = None
        self.closed = False
        self.active = True
        self._server = server
        self._sendto = sendto
        self._counters = counters

    def sendFrame(self, frame):
        if self.closed:
            return
        try:
            self._sendto(frame, self.address)
        except OSError as e:
            self._server.sendFailed(self, e)
            return
        counters = self._counters
        counters.framesOut += 1
        counters.bytesOut += len(frame)

    def closeLink(self, reason):
        self._server.detachPeer(self, reason)

    def __repr__(self):
        return f"<DatagramPeer {self.description}>"


class DatagramLinkProtocol(DatagramProtocol):
    """
    The guests of one datagram socket: a L{DatagramPeer} per sender.

    @param guests: the L{vpnkit.interfaces.IGuests} peers lease from and
        attach to.
    @param reactor: an L{IReactorTime} for the idle sweep and for detaching
        a peer found gone while a frame is being sent.
    @param pathExists: whether a socket path still exists (the idle
        sweep's check).
    @cvar kind: names the links in logs and descriptions.
    @cvar magic: the datagram a new peer must send first, or C{None} when
        its first datagram is already a frame.
    """

    kind = "dgram"
    magic = None
    noisy = False

    def __init__(
        self,
        guests,
        reactor=None,
        maxPeers=MAX_PEERS,
        idleInterval=IDLE_INTERVAL,
        pathExists=os.path.lexists,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.guests = guests
        self._reactor = reactor
        self._counters = guests.linkCounters
        self._maxFrame = guests.config.maxFrameSize
        self._maxPeers = maxPeers
        self._idleInterval = idleInterval
        self._pathExists = pathExists
        self._peers = {}
        self._gone = []
        self._reap = None
        self._sweep = None
        self._sendto = None
        self._refusals = RateLimitedLog(log, reactor)

    @property
    def maxDatagram(self):
        """
        How much to read of each datagram: one byte beyond the largest
        frame, so an oversize one shows as such.
        """
        return self._maxFrame + 1

    def peers(self):
        """
        The live peers.
        """
        return list(self._peers.values())

    # -- DatagramProtocol ----------------------------------------------------

    def startProtocol(self):
        self._sendto = self.transport.getHandle().sendto

    def stopProtocol(self):
        self.closeLinks("the socket is closed")

    def datagramReceived(self, data, address):
        peer = self._peers.get(address)
        if peer is None:
            self._newPeer(data, address)
            return
        if peer.closed:
            return
        peer.active = True
        counters = self._counters
        n = len(data)
        if n < HEADER_LENGTH:
            if data == self.magic:
                # The client started again with the same socket path: a
                # new guest, whose MAC is learnt afresh.
                self.detachPeer(peer, "it sent its greeting again")
                self._newPeer(data, address)
                return
            counters.shortFrames += 1
            return
        if n > self._maxFrame:
            counters.oversizeFrames += 1
            return
        counters.framesIn += 1
        counters.bytesIn += n
        peer.port.frameReceived(data)

    # -- peers -----------------------------------------------------------------

    def _newPeer(self, data, address):
        counters = self._counters
        if not address:
            # An unbound sender: replies would have nowhere to go.
            counters.handshakeFailures += 1
            self._refusals.warn(
                "{kind}: ignoring a datagram from an unbound socket (a guest must bind "
                "its own socket path)",
                kind=self.kind,
            )
            return
        if self.magic is not None and data != self.magic:
            counters.handshakeFailures += 1
            self._refusals.warn(
                "{kind}: ignoring {peer}: its first datagram is not {magic!r}",
                kind=self.kind,
                peer=describeAddress(address),
                magic=self.magic,
            )
            return
        if len(self._peers) >= self._maxPeers:
            counters.allocationFailures += 1
            self._refusals.warn(
                "{kind}: refusing {peer}: {n} guests already on this socket",
                kind=self.kind,
                peer=describeAddress(address),
                n=len(self._peers),
            )
            return
        try:
            lease = self.guests.ephemeralLease()
        except AllocationError as e:
            counters.allocationFailures += 1
            self._refusals.warn(
                "{kind}: refusing {peer}: {e}", kind=self.kind, peer=describeAddress(address), e=e
            )
            return
        peer = DatagramPeer(self, address, self._sendto, counters, self._maxFrame)
        peer.port = self.guests.attach(peer, lease, None)
        self._peers[address] = peer
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self._idleInterval, self._sweepIdle)
        if self.magic is None:
            # The first datagram is already a frame.
            self.datagramReceived(data, address)

    def sendFailed(self, peer, error):
        """
        A send to C{peer} failed with C{error}: count it; a peer that is
        gone is detached, once the frame being sent is done with.
        """
        counters = self._counters
        if error.errno in _QUEUE_FULL:
            counters.txQueueFull += 1
            return
        if error.errno not in _PEER_GONE:
            counters.txErrors += 1
            log.debug("dropping a frame for {link}: {e}", link=peer.description, e=error)
            return
        # The switch may be walking its ports (a broadcast): detach later.
        peer.closed = True
        self._gone.append((peer, error.strerror or str(error)))
        if self._reap is None:
            self._reap = self._reactor.callLater(0, self._reapGone)

    def _reapGone(self):
        self._reap = None
        gone, self._gone = self._gone, []
        for peer, why in gone:
            self.detachPeer(peer, f"it is gone ({why})")

    def _sweepIdle(self):
        self._sweep = None
        for peer in list(self._peers.values()):
            if peer.active:
                peer.active = False
            elif isinstance(peer.address, str) and not self._pathExists(peer.address):
                self.detachPeer(peer, "idle, and its socket file is gone")
        if self._peers:
            self._sweep = self._reactor.callLater(self._idleInterval, self._sweepIdle)

    def detachPeer(self, peer, reason):
        """
        Take C{peer}'s guest off the switch and give its address back.
        """
        peer.closed = True
        if self._peers.get(peer.address) is peer:
            del self._peers[peer.address]
        port, peer.port = peer.port, None
        if port is None:
            return
        guestLog.info("{link} detached: {reason}", link=peer.description, reason=reason)
        self.guests.detach(port)
        if not self._peers and self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def closeLinks(self, reason):
        """
        Detach every peer (the socket is closing) and cancel the timers.
        """
        if self._reap is not None:
            self._reap.cancel()
            self._reap = None
        gone, self._gone = self._gone, []
        for peer in [p for p, _ in gone] + list(self._peers.values()):
            self.detachPeer(peer, reason)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None


class QEMUDatagramProtocol(DatagramLinkProtocol):
    """
    QEMU's C{-netdev dgram,local.type=unix,...,remote.type=unix,...}: every
    datagram is a frame.
    """

    kind = "qemu-dgram"


class VfkitDatagramProtocol(DatagramLinkProtocol):
    """
    vfkit and libkrun (gvproxy's C{-listen-vfkit}): a new peer's first
    datagram is C{VFKT}; a peer whose first datagram is anything else is
    ignored (counted as C{link.handshakeFailures}) until it sends it.
    """

    kind = "vfkit"
    magic = VFKIT_MAGIC


# -- client side --------------------------------------------------------

# Datagrams read per reactor wake-up before yielding to other descriptors.
READ_BATCH = 64
# Frames held while vpnkit's queue is full (the producer is paused then).
CLIENT_QUEUE_FRAMES = 256


@implementer(IReadDescriptor, IWriteDescriptor)
class DatagramClientLink:
    """
    The guest's end of a datagram link (C{vpnkit-tap-bridge}): a
    non-blocking Unix datagram socket, bound to the guest's own path and
    connected to vpnkit's.

    Being connected, it can wait for room in vpnkit's queue: a send that
    finds it full keeps the frame, pauses the registered producer (the
    tap) and resumes it once the queue drains.

    @ivar frameReceiver: called with each datagram from vpnkit.
    @param magic: sent before anything else (C{VFKT} for vfkit), or C{None}.
    @param onClose: called with a L{Failure} once the link is closed.
    """

    def __init__(self, sock, reactor, counters, magic=None, onClose=None, maxFrame=0xFFFF):
        self._sock = sock
        self._reactor = reactor
        self._counters = counters
        self._magic = magic
        self._onClose = onClose
        self._readSize = maxFrame + 1
        self._queue = deque()
        self._closed = False
        self.frameReceiver = None
        self.producer = None
        self.description = "datagram link to vpnkit"

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def start(self):
        """
        Send the magic (if any), then start reading.
        """
        if self._magic is not None:
            self._send(self._magic)
        if not self._closed:
            self._reactor.addReader(self)

    # -- sending --------------------------------------------------------------

    def sendFrame(self, frame):
        if self._closed:
            return
        if self._send(frame):
            self._counters.framesOut += 1
            self._counters.bytesOut += len(frame)

    def _send(self, datagram):
        """
        @return: whether C{datagram} was sent or queued.
        """
        if self._queue:
            if len(self._queue) >= CLIENT_QUEUE_FRAMES:
                self._counters.txQueueFull += 1
                return False
            self._queue.append(datagram)
            return True
        try:
            self._sock.send(datagram)
        except OSError as e:
            if e.errno in _QUEUE_FULL:
                self._queue.append(datagram)
                self._reactor.addWriter(self)
                if self.producer is not None:
                    self.producer.pauseProducing()
                return True
            return self._sendError(e)
        return True

    def _sendError(self, e):
        if e.errno in _PEER_GONE or e.errno == errno.ENOTCONN:
            self.connectionLost(Failure(ConnectionLost(f"vpnkit is gone: {e.strerror}")))
        else:
            self._counters.txErrors += 1
        return False

    def doWrite(self):
        queue = self._queue
        while queue:
            try:
                self._sock.send(queue[0])
            except OSError as e:
                if e.errno in _QUEUE_FULL:
                    return None
                self._sendError(e)
                if self._closed:
                    return None
            queue.popleft()
        self._reactor.removeWriter(self)
        if self.producer is not None:
            self.producer.resumeProducing()
        return None

    # -- receiving ------------------------------------------------------------

    def doRead(self):
        receive = self.frameReceiver
        for _ in range(READ_BATCH):
            if self._closed:
                return None
            try:
                data = self._sock.recv(self._readSize)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    return None
                self.connectionLost(Failure(ConnectionLost(f"reading from vpnkit: {e.strerror}")))
                return None
            self._counters.framesIn += 1
            self._counters.bytesIn += len(data)
            receive(data)
        return None

    # -- descriptor -----------------------------------------------------------

    def fileno(self):
        return -1 if self._closed else self._sock.fileno()

    def logPrefix(self):
        return self.description

    def closeLink(self, reason):
        self.connectionLost(Failure(ConnectionDone(reason)))

    def connectionLost(self, reason):
        if self._closed:
            return
        self._closed = True
        self._reactor.removeReader(self)
        self._reactor.removeWriter(self)
        self._queue.clear()
        self._sock.close()
        if self._onClose is not None:
            self._onClose(reason)
