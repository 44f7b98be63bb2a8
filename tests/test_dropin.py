"""
Tests for L{vpnkit.dropin}: the reference's flags and the process-manager
flags, as L{vpnkit.tap.Options} parses them and L{vpnkit.tap.makeService}
applies them.
"""

import io
import os
import sys

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.test_tap import _OptionsMixin
from vpnkit import __version__
from vpnkit.diagnostics import DiagnosticsFactory
from vpnkit.services import ListenService
from vpnkit.tap import Options, makeService


class DropInOptionsTests(_OptionsMixin, SynchronousTestCase):
    def test_inertFlagsAccepted(self):
        """
        C{--vsock-path}, C{--port-forwards}, C{--gc-compact-interval} and
        C{--log-destination} are accepted, each noted once with the reason
        it has no effect; without them there is no note.
        """
        options = self.parse(
            "--ethernet", self.sock,
            "--vsock-path", "vms/0/connect",
            "--port-forwards", "x",
            "--gc-compact-interval", "1800",
            "--log-destination", "asl",
        )  # fmt: skip
        notes = options.startupNotes()
        self.assertEqual(len(notes), 4)
        self.assertTrue(notes[0].startswith("--vsock-path has no effect: port forwards need no agent"))
        self.assertIn("--gc-compact-interval has no effect: there is no OCaml heap", notes[2])
        self.assertIn("--log-destination has no effect: twistd", notes[3])
        self.assertEqual(self.parse("--ethernet", self.sock).startupNotes(), [])

    def test_ninePRefused(self):
        """
        C{--port} and C{--introspection} (the reference's 9P servers) are
        refused with the flag that replaces each.
        """
        self.assertUsageError(["--ethernet", self.sock, "--port", "fd:4"], "--port", "--api")
        self.assertUsageError(
            ["--ethernet", self.sock, "--introspection", "/tmp/i"], "--introspection", "--diagnostics"
        )

    def test_version(self):
        """
        C{--version} prints vpnkit's version (not Twisted's) and exits 0.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        e = self.assertRaises(SystemExit, self.parse, "--version")
        self.assertEqual(e.code, 0)
        self.assertEqual(out.getvalue(), f"vpnkit {__version__}\n")

    def test_readyFD(self):
        """
        C{--ready-fd} takes a descriptor open for writing; a read-only one,
        a closed one and a non-number are refused naming the flag.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.assertEqual(self.parse("--ethernet", self.sock, "--ready-fd", str(w)).readyFD, w)
        self.assertUsageError(["--ethernet", self.sock, "--ready-fd", str(r)], "--ready-fd", "not open for writing")
        self.assertUsageError(["--ethernet", self.sock, "--ready-fd", "999"], "--ready-fd", "999")
        self.assertUsageError(["--ethernet", self.sock, "--ready-fd", "x"], "--ready-fd", "not a number")

    def test_numbers(self):
        """
        C{--listen-backlog} and C{--port-max-idle-time} must be numbers in
        range; the reference's C{<= 0} for the idle time is accepted.
        """
        options = self.parse("--ethernet", self.sock, "--listen-backlog", "32", "--port-max-idle-time", "0")
        self.assertEqual(options.listenBacklog, 32)
        self.assertUsageError(["--ethernet", self.sock, "--listen-backlog", "0"], "--listen-backlog")
        self.assertUsageError(["--ethernet", self.sock, "--port-max-idle-time", "soon"], "--port-max-idle-time")

    def test_dhcpPrefix(self):
        """
        As the reference's parser, an unambiguous prefix names a flag:
        Docker Desktop passes C{--dhcp} for C{--dhcp-path}.
        """
        path = self.writeFile("dhcp.json", '{"searchDomains": ["a.test"]}')
        options = self.parse("--ethernet", self.sock, "--dhcp", path)
        self.assertEqual(options["dhcp-path"], path)

    def test_diagnosticsRepeatable(self):
        """
        C{--diagnostics} takes a socket path or fd:N, repeatedly.
        """
        options = self.parse(
            "--ethernet", self.sock,
            "--diagnostics", os.path.join(self.dir, "d1"),
            "--diagnostics", os.path.join(self.dir, "d2"),
        )  # fmt: skip
        self.assertEqual(
            options.diagnosticsListen,
            [("unix", os.path.join(self.dir, "d1")), ("unix", os.path.join(self.dir, "d2"))],
        )
        self.assertUsageError(["--ethernet", self.sock, "--diagnostics", "fd:x"], "--diagnostics")


class DropInServiceTests(_OptionsMixin, SynchronousTestCase):
    def service(self, *args):
        self.reactor = MemoryReactorClock()
        return makeService(self.parse("--ethernet", self.sock, "--hosts", "", *args), self.reactor)

    def test_listenBacklog(self):
        """
        C{--listen-backlog} is the backlog of the link, API and diagnostics
        listeners and of the port forwards' TCP listeners.
        """
        top = self.service(
            "--listen-backlog", "7",
            "--api", os.path.join(self.dir, "api"),
            "--diagnostics", os.path.join(self.dir, "diag"),
            "--expose", "tcp:127.0.0.1:0:tcp:192.168.65.3:80",
        )  # fmt: skip
        top.startService()
        self.addCleanup(top.stopService)
        self.assertEqual(sorted(backlog for _, _, backlog, _, _ in self.reactor.unixServers), [7, 7, 7])
        [(port, factory, backlog, interface)] = self.reactor.tcpServers
        self.assertEqual(backlog, 7)

    def test_diagnosticsListener(self):
        """
        C{--diagnostics PATH} listens with a L{DiagnosticsFactory} on that
        path, mode 0600.
        """
        path = os.path.join(self.dir, "diag")
        top = self.service("--diagnostics", path)
        listener = top.getServiceNamed(f"diagnostics on unix:{path}")
        self.assertIsInstance(listener, ListenService)
        top.startService()
        self.addCleanup(top.stopService)
        [(address, factory, _, mode, _)] = [s for s in self.reactor.unixServers if s[0] == path]
        self.assertEqual(mode, 0o600)
        self.assertIsInstance(factory, DiagnosticsFactory)
        self.assertIsNotNone(factory.capture)

    def test_readyCalledOnceServing(self):
        """
        With C{--ready-fd}, one byte is written once every listener is
        bound, and the descriptor is closed.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        top = self.service("--ready-fd", str(w))
        top.startService()
        self.addCleanup(top.stopService)
        self.assertEqual(os.read(r, 10), b"1")
        self.assertEqual(os.read(r, 10), b"")
