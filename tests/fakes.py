"""
In-memory stand-ins for the operating system seams the link glue uses.

L{FakeTunSystem} provides L{vpnkit.interfaces.ITunSystem}: each C{openTap}
returns one end of a C{socketpair(AF_UNIX, SOCK_SEQPACKET)} and hands the
other end to the test as "the guest".  A SEQPACKET socket keeps message
boundaries, so it behaves like a tap descriptor: one frame per read, one per
write, C{BlockingIOError} on an empty queue (or a full one).  The contract
is checked in C{tests.test_taplink.FakeTunSystemTests}.

L{FakeFDReactor} records what an L{IReadDescriptor}/L{IWriteDescriptor}
asks of the reactor, for tests that call C{doRead}/C{doWrite} themselves.
"""

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from ipaddress import IPv4Address

from twisted.internet.interfaces import IReactorFDSet
from zope.interface import implementer

from vpnkit.interfaces import ITunSystem

__all__ = [
    "OpenedTap",
    "FakeTunSystem",
    "FakeFDReactor",
    "tempDir",
    "fillSocket",
    "drainSocket",
    "SERVER_MAC",
    "GUEST_MAC",
    "arpRequest",
    "arpReply",
]

SERVER_MAC = bytes.fromhex("f61636bcf9c6")
GUEST_MAC = bytes.fromhex("025000000001")


@dataclass
class OpenedTap:
    """
    One C{openTap} call.

    @ivar guest: the test's end of the pair (a non-blocking socket).
    @ivar fd: the descriptor returned to the caller.
    """

    netns: object
    name: str
    mac: bytes
    mtu: int
    fd: int
    guest: socket.socket
    offload: bool = False


@implementer(ITunSystem)
class FakeTunSystem:
    """
    @ivar opened: every L{OpenedTap}, in order.
    @ivar closed: descriptors passed to L{close}, in order.
    @ivar openError: when set, L{openTap} raises it instead of opening.
    """

    def __init__(self, openError=None, sendBuffer=None):
        self.opened = []
        self.closed = []
        self.openError = openError
        self._sendBuffer = sendBuffer

    def openTap(self, netns, name, mac, mtu, offload=False):
        if self.openError is not None:
            raise self.openError
        tap, guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if self._sendBuffer is not None:
            tap.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sendBuffer)
            guest.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sendBuffer)
        tap.setblocking(False)
        guest.setblocking(False)
        fd = tap.detach()
        self.opened.append(OpenedTap(netns, name, mac, mtu, fd, guest, offload))
        return fd

    def read(self, fd, size):
        return os.read(fd, size)

    def write(self, fd, frame):
        return os.write(fd, frame)

    def writev(self, fd, buffers):
        return os.writev(fd, buffers)

    def close(self, fd):
        self.closed.append(fd)
        os.close(fd)

    def cleanup(self):
        """
        Close every descriptor and guest socket still open.
        """
        for tap in self.opened:
            tap.guest.close()
            if tap.fd not in self.closed:
                try:
                    os.close(tap.fd)
                except OSError:
                    pass


@implementer(IReactorFDSet)
class FakeFDReactor:
    """
    Records C{addReader} and friends, as the real reactor's sets would.

    @ivar calls: C{(method name, descriptor)} in call order.
    """

    def __init__(self):
        self.readers = set()
        self.writers = set()
        self.calls = []

    def addReader(self, reader):
        self.calls.append(("addReader", reader))
        self.readers.add(reader)

    def addWriter(self, writer):
        self.calls.append(("addWriter", writer))
        self.writers.add(writer)

    def removeReader(self, reader):
        self.calls.append(("removeReader", reader))
        self.readers.discard(reader)

    def removeWriter(self, writer):
        self.calls.append(("removeWriter", writer))
        self.writers.discard(writer)

    def removeAll(self):
        removed = list(self.readers | self.writers)
        self.readers.clear()
        self.writers.clear()
        return removed

    def getReaders(self):
        return list(self.readers)

    def getWriters(self):
        return list(self.writers)


def tempDir(testCase):
    """
    A fresh directory under the system temporary directory (short enough
    for a Unix socket path), removed when C{testCase} ends.
    """
    path = tempfile.mkdtemp(prefix="vpnkit-test-")
    testCase.addCleanup(shutil.rmtree, path, True)
    return path


def fillSocket(write, frame=b"\0" * 64, limit=1_000_000):
    """
    Call C{write(frame)} until it raises C{BlockingIOError}.

    @return: how many writes succeeded.
    """
    for n in range(limit):
        try:
            write(frame)
        except BlockingIOError:
            return n
    raise AssertionError(f"still writable after {limit} writes")


def drainSocket(sock, size=65536):
    """
    Read every datagram waiting on the non-blocking C{sock}.
    """
    frames = []
    while True:
        try:
            frames.append(sock.recv(size))
        except BlockingIOError:
            return frames


def _ip(text):
    return IPv4Address(text).packed


def arpRequest(senderMAC=GUEST_MAC, senderIP="192.168.65.3", targetIP="192.168.65.1"):
    """
    A broadcast ARP request, built byte by byte (not with L{vpnkit.wire}).
    """
    return (
        b"\xff" * 6
        + senderMAC
        + b"\x08\x06"
        + b"\x00\x01\x08\x00\x06\x04\x00\x01"
        + senderMAC
        + _ip(senderIP)
        + b"\0" * 6
        + _ip(targetIP)
    )


def arpReply(targetMAC=GUEST_MAC, targetIP="192.168.65.3", senderMAC=SERVER_MAC, senderIP="192.168.65.1"):
    """
    The 42-byte ARP reply vpnkit sends to C{targetMAC}.
    """
    return (
        targetMAC
        + SERVER_MAC
        + b"\x08\x06"
        + b"\x00\x01\x08\x00\x06\x04\x00\x02"
        + senderMAC
        + _ip(senderIP)
        + targetMAC
        + _ip(targetIP)
    )
