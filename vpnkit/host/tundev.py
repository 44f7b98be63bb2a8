# -*- test-case-name: tests.test_tundev -*-
"""
Tap devices inside Linux network namespaces: the real L{ITunSystem}.

A tap device belongs to the network namespace of the thread that opens
C{/dev/net/tun}, and an interface can only be configured by a socket in its
own namespace.  L{LinuxTunSystem.openTap} therefore does all of that in a
short-lived thread that first joins the target namespace with C{setns(2)};
the rest of the process never leaves its own namespace.  The descriptor it
returns works from any thread.
"""

import ctypes
import ctypes.util
import errno
import fcntl
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


@implementer(ITunSystem)
class LinuxTunSystem:
    """
    The real operating system.
    """

    def openTap(self, netns, name, mac, mtu, offload=False):
        if len(name.encode()) >= IFNAMSIZ:
            raise OSError(errno.EINVAL, f"interface name {name!r} is too long")

        def create():
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
            try:
                flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
                fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, "H", flags))
                if offload:
                    # Frames carry a 10-byte virtio-net header; the guest's
                    # kernel may hand us TCP segments of up to 64 KiB with
                    # partial checksums, which we complete.
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 10))
                    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
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
            except BaseException:
                os.close(fd)
                raise
            os.set_blocking(fd, False)
            return fd

        return _runInNamespace(netns, create)

    def read(self, fd, size):
        return os.read(fd, size)

    def write(self, fd, frame):
        return os.write(fd, frame)

    def writev(self, fd, buffers):
        return os.writev(fd, buffers)

    def close(self, fd):
        os.close(fd)
