# -*- test-case-name: tests.test_readiness -*-
"""
Telling whoever started vpnkit that it serves: one byte on C{--ready-fd}
(as slirp4netns does) and systemd's C{READY=1} on C{$NOTIFY_SOCKET}
(C{Type=notify} units), both once every listener is bound.
"""

import os
import socket

from vpnkit.log import logger

__all__ = ["Readiness"]

log = logger("vpnkit.readiness")


class Readiness:
    """
    @param readyFD: the descriptor to write one byte to and close, or
        C{None}.
    @param environ: where C{NOTIFY_SOCKET} is looked up.
    """

    def __init__(self, readyFD=None, environ=None):
        self.readyFD = readyFD
        self.notifySocket = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")

    @property
    def wanted(self):
        return self.readyFD is not None or bool(self.notifySocket)

    def __call__(self):
        if self.readyFD is not None:
            fd, self.readyFD = self.readyFD, None
            try:
                os.write(fd, b"1")
            except OSError as e:
                log.warn("cannot write to --ready-fd {fd}: {e}", fd=fd, e=e.strerror)
            finally:
                os.close(fd)
        if self.notifySocket:
            address, self.notifySocket = self.notifySocket, None
            if address.startswith("@"):
                # An abstract socket, as systemd names them.
                address = "\0" + address[1:]
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                sock.sendto(b"READY=1\nSTATUS=vpnkit is serving guests\n", address)
            except OSError as e:
                log.warn("cannot notify systemd at {address}: {e}", address=address, e=e.strerror)
            finally:
                sock.close()
