# -*- test-case-name: tests.test_tundev -*-
"""
Tap devices inside Linux network namespaces: the real L{ITunSystem}.

vpnkit creates the tap in its own namespace and moves it into the guest's
with one rtnetlink request; an interface can only be configured by a socket
in its own namespace, so that part runs in a short-lived thread that first
joins the guest's namespace with C{setns(2)}.  The rest of the process
never leaves its own namespace, and nothing of vpnkit's keeps the guest's
namespace alive.
"""

import ctypes
import ctypes.util
import errno
import fcntl
import itertools
import os
import socket
import struct
import threading

from zope.interface import implementer

from vpnkit.interfaces import ITunSystem

__all__ = ["LinuxTunSystem", "netnsPath"]

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
SIOCSIFHWADDR = 0x8924
IFF_UP = 0x1
ARPHRD_ETHER = 1
IFNAMSIZ = 16


def netnsPath(nameOrPath):
    """
    The file naming a network namespace: a path as given, or the
    C{ip netns} name C{NAME} as C{/var/run/netns/NAME}.
    """
    if "/" in nameOrPath:
        return nameOrPath
    return os.path.join("/var/run/netns", nameOrPath)


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _ifreq(name, fmt="", *values):
    data = struct.pack(f"{IFNAMSIZ}s{fmt}", name.encode(), *values)
    return data.ljust(40, b"\0")


def _runInNamespace(path, function):
    """
    Call C{function} in a new thread that has joined the network namespace
    at C{path} (or stays in ours when C{path} is C{None}).
    """
    outcome = {}

    def run():
        try:
            if path is not None:
                nsfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc().setns(nsfd, CLONE_NEWNET) != 0:
                        code = ctypes.get_errno()
                        raise OSError(code, f"setns({path}): {os.strerror(code)}")
                finally:
                    os.close(nsfd)
            outcome["value"] = function()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=run, name="vpnkit-netns")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


_tapNames = itertools.count(1)

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
IFLA_IFNAME = 3
IFLA_NET_NS_FD = 28
_nlmsghdr = struct.Struct("=IHHII")
_ifinfomsg = struct.Struct("=BBHiII")


def _rtattr(kind, data):
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _moveInterface(index, nsfd, name):
    """
    Move interface C{index} into the network namespace open as C{nsfd},
    renaming it C{name} there (C{ip link set DEV netns NS name NAME}), with
    one rtnetlink request.

    @raise OSError: the kernel's answer, e.g. C{EEXIST} when C{name} is
        taken in the namespace.
    """
    body = _ifinfomsg.pack(socket.AF_UNSPEC, 0, 0, index, 0, 0)
    body += _rtattr(IFLA_NET_NS_FD, struct.pack("=I", nsfd))
    body += _rtattr(IFLA_IFNAME, name.encode() + b"\0")
    message = _nlmsghdr.pack(_nlmsghdr.size + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as nl:
        nl.settimeout(5)
        nl.send(message + body)
        answer = nl.recv(65536)
    _, kind, _, _, _ = _nlmsghdr.unpack_from(answer)
    if kind != NLMSG_ERROR:
        raise OSError(errno.EPROTO, f"unexpected rtnetlink answer {kind}")
    (code,) = struct.unpack_from("=i", answer, _nlmsghdr.size)
    if code:
        raise OSError(-code, f"moving the tap into the namespace: {os.strerror(-code)}")


def _configure(name, mac, mtu):
    """
    Set C{name}'s MAC and MTU and bring it up (in the calling thread's
    network namespace).
    """
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if mac is not None:
            fcntl.ioctl(control, SIOCSIFHWADDR, _ifreq(name, "H6s", ARPHRD_ETHER, mac))
        fcntl.ioctl(control, SIOCSIFMTU, _ifreq(name, "i", mtu))
        flags = struct.unpack_from(
            "h", fcntl.ioctl(control, SIOCGIFFLAGS, _ifreq(name)), IFNAMSIZ
        )[0]
        fcntl.ioctl(control, SIOCSIFFLAGS, _ifreq(name, "h", flags | IFF_UP))
    finally:
        control.close()


def pythonReadFrames(read, fd, maxFrames, size, vnetHeader=0):
    """
    Read frames (one per C{read(fd, size)}) until C{maxFrames} are read or
    a read would block.

    @return: C{(frames, error)}: the frames in order, with C{b""} last if
        the descriptor reached its end; C{error} is C{None}, or the
        L{OSError} (other than "would block") that ended the batch after
        those frames.  The C version in C{vpnkit._speedups} does the same
        without raising and catching L{BlockingIOError} at the end of every
        batch; this one is its fallback and test oracle.  C{vnetHeader} is
        ignored here: partial checksums are left for the link to complete.
    """
    frames = []
    while len(frames) < maxFrames:
        try:
            frame = read(fd, size)
        except BlockingIOError:
            break
        except OSError as e:
            return frames, e
        frames.append(frame)
        if not frame:
            break
    return frames, None


try:
    from vpnkit._speedups import readFrames as _cReadFrames
except ImportError:  # pragma: no cover - the extension is optional
    _cReadFrames = None


@implementer(ITunSystem)
class LinuxTunSystem:
    """
    The real operating system.

    A tap for another namespace is created in vpnkit's own namespace under
    a temporary name and then moved (and renamed) into the guest's.  Were it
    created from inside the guest's namespace, the open tun file would hold
    that namespace alive: deleting the namespace would then leave the guest,
    its tap and its address behind forever.  Moved, the device dies with
    the namespace, and reading it fails, which closes the link.
    """

    def openTap(self, netns, name, mac, mtu, offload=False):
        if len(name.encode()) >= IFNAMSIZ:
            raise OSError(errno.EINVAL, f"interface name {name!r} is too long")
        temporary = name if netns is None else f"vpk{os.getpid() % 100000}t{next(_tapNames)}"
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            fcntl.ioctl(fd, TUNSETIFF, _ifreq(temporary, "H", flags))
            if offload:
                # Frames carry a 10-byte virtio-net header; the guest's
                # kernel may hand us TCP segments of up to 64 KiB with
                # partial checksums, which we complete.
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 10))
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
            if netns is not None:
                nsfd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _moveInterface(socket.if_nametoindex(temporary), nsfd, name)
                finally:
                    os.close(nsfd)
            _runInNamespace(netns, lambda: _configure(name, mac, mtu))
        except BaseException:
            # Closing the (non-persistent) tap deletes the device, wherever
            # it went.
            os.close(fd)
            raise
        os.set_blocking(fd, False)
        return fd

    def read(self, fd, size):
        return os.read(fd, size)

    def readFrames(self, fd, maxFrames, size, vnetHeader=0):
        """
        The frames waiting on C{fd}, at most C{maxFrames}: see
        L{pythonReadFrames}.  In C when C{vpnkit._speedups} is built; that
        one also completes, with C{vnetHeader} (10), the partial checksums
        of frames behind a virtio-net header and clears their
        C{F_NEEDS_CSUM}, so that L{vpnkit.host.taplink.TapLink} has no
        more to do (without it, the link completes them itself).
        """
        if _cReadFrames is not None:
            return _cReadFrames(fd, maxFrames, size, vnetHeader)
        return pythonReadFrames(os.read, fd, maxFrames, size)

    def write(self, fd, frame):
        return os.write(fd, frame)

    def writev(self, fd, buffers):
        return os.writev(fd, buffers)

    def close(self, fd):
        os.close(fd)
