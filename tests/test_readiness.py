"""
Tests for L{vpnkit.readiness}: the byte on C{--ready-fd} and systemd's
C{READY=1}.
"""

import os
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.readiness import Readiness


class ReadinessTests(SynchronousTestCase):
    def test_readyFD(self):
        """
        One byte is written to the descriptor, which is then closed; a
        second call writes nothing.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        ready = Readiness(w, environ={})
        self.assertTrue(ready.wanted)
        ready()
        ready()
        self.assertEqual(os.read(r, 10), b"1")
        self.assertEqual(os.read(r, 10), b"")
        self.assertRaises(OSError, os.fstat, w)

    def test_notifySocketPath(self):
        """
        With C{NOTIFY_SOCKET} naming a path, a datagram starting with
        C{READY=1} is sent there, once.
        """
        path = os.path.join(tempfile.mkdtemp(), "notify")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(path)
        receiver.setblocking(False)
        ready = Readiness(environ={"NOTIFY_SOCKET": path})
        ready()
        ready()
        self.assertTrue(receiver.recv(100).startswith(b"READY=1\n"))
        self.assertRaises(BlockingIOError, receiver.recv, 100)

    def test_notifyAbstract(self):
        """
        An abstract socket (C{@name}, as systemd writes it) is reached.
        """
        name = f"vpnkit-test-{os.getpid()}-{id(self)}"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind("\0" + name)
        Readiness(environ={"NOTIFY_SOCKET": "@" + name})()
        self.assertTrue(receiver.recv(100).startswith(b"READY=1"))

    def test_nothingWanted(self):
        """
        Without either, there is nothing to do.
        """
        self.assertFalse(Readiness(environ={}).wanted)

    def test_errorsLoggedNotRaised(self):
        """
        A notify socket nobody listens on is logged, not raised: vpnkit
        serves anyway.
        """
        Readiness(environ={"NOTIFY_SOCKET": "/nonexistent/notify"})()
