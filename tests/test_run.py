"""
The C{vpnkit} command (L{vpnkit.tools.run}) and C{twistd vpnkit} without
C{-n} (daemon mode), as real processes on loopback: readiness, a served
vmnet guest, clean stops, and one-line start-up failures that leave
nothing behind.  No root needed.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.wire import vmnet

ROOT = Path(__file__).resolve().parent.parent
UUID = b"2b0e5f1c-0000-4000-8000-0000000000bb"


def handshake(path):
    """
    Do a vmnet handshake on C{path}; return the server's response.
    """
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(path)
    client.sendall(vmnet.emitInit() + vmnet.emitCommand(vmnet.EthernetCommand(UUID)))
    reply = b""
    needed = vmnet.INIT_LENGTH + vmnet.RESPONSE_LENGTH
    while len(reply) < needed:
        chunk = client.recv(needed - len(reply))
        if not chunk:
            break
        reply += chunk
    return client, vmnet.parseResponse(reply[vmnet.INIT_LENGTH :])


def waitFor(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _ProcessMixin:
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vpnkit-run-")
        self.addCleanup(subprocess.call, ["rm", "-rf", self.dir])
        self.hosts = self.path("hosts", "192.0.2.7 example.test\n")
        self.dns = self.path("dns", "nameserver 127.0.0.1#1\n")
        self.env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.env.pop("NOTIFY_SOCKET", None)

    def path(self, name, text=None):
        path = os.path.join(self.dir, name)
        if text is not None:
            Path(path).write_text(text)
        return path

    def spawn(self, argv, **kw):
        process = subprocess.Popen(
            argv, env=kw.pop("env", self.env), cwd=self.dir,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
        )  # fmt: skip

        def stop():
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)

        self.addCleanup(stop)
        return process

    def vpnkit(self, *args, **kw):
        command = [sys.executable, "-c", "from vpnkit.tools.run import main; main()"]
        return self.spawn(command + list(args), **kw)

    def twistd(self, *args, **kw):
        command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        return self.spawn(command + list(args), **kw)

    def inUse(self, name):
        """
        A Unix socket path another process (this test) listens on.
        """
        path = self.path(name)
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(path)
        holder.listen(1)
        self.addCleanup(holder.close)
        return path


class CommandTests(_ProcessMixin, SynchronousTestCase):
    def test_serveAndStop(self):
        """
        C{vpnkit --ethernet PATH --mtu 1500 --host-ip 0.0.0.0 --ready-fd N}
        writes one byte on N once it listens, serves a vmnet guest, and on
        SIGTERM detaches it, removes its socket and exits 0, logging to
        standard error with no traceback.
        """
        sock = self.path("ethernet.sock")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        process = self.vpnkit(
            "--ethernet", sock, "--mtu", "1500", "--host-ip", "0.0.0.0",
            "--hosts", self.hosts, "--dns", self.dns, "--ready-fd", str(w),
            pass_fds=(w,),
        )  # fmt: skip
        os.close(w)
        readable, _, _ = select.select([r], [], [], 20)
        self.assertEqual(readable, [r], "no readiness byte within 20 s")
        self.assertEqual(os.read(r, 10), b"1")
        client, response = handshake(sock)
        self.addCleanup(client.close)
        self.assertIsInstance(response, vmnet.Vif)
        self.assertEqual(response.mtu, 1500)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        self.assertEqual(process.returncode, 0)
        text = stderr.decode()
        self.assertIn("guest attached", text)
        self.assertIn("guest detached", text)
        self.assertNotIn("Traceback", text)
        self.assertFalse(os.path.lexists(sock))

    def test_systemdNotify(self):
        """
        With C{NOTIFY_SOCKET} set, systemd's socket gets C{READY=1} once
        vpnkit listens; SIGINT stops it with status 0.
        """
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notifyPath = self.path("notify")
        notify.bind(notifyPath)
        notify.settimeout(20)
        sock = self.path("ethernet.sock")
        process = self.vpnkit(
            "--ethernet", sock, "--hosts", self.hosts, "--dns", self.dns,
            env=dict(self.env, NOTIFY_SOCKET=notifyPath),
        )  # fmt: skip
        self.assertTrue(notify.recv(100).startswith(b"READY=1"))
        self.assertTrue(os.path.exists(sock))
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
        self.assertEqual(process.returncode, 0)

    def test_badFlag(self):
        """
        A bad command line is one line on standard error and status 2.
        """
        process = self.vpnkit("--ethernet", self.path("e.sock"), "--mtu", "big")
        _, stderr = process.communicate(timeout=20)
        self.assertEqual(process.returncode, 2)
        self.assertEqual(stderr.decode().splitlines(), ["vpnkit: --mtu: 'big' is not a number"])

    def test_listenerFails(self):
        """
        A listener that cannot be bound (the API path is another process's)
        is one line naming the flag and the path, status 1, and the link
        socket vpnkit had already created is removed.
        """
        sock = self.path("ethernet.sock")
        api = self.inUse("api.sock")
        process = self.vpnkit("--ethernet", sock, "--api", api, "--hosts", self.hosts, "--dns", self.dns)
        _, stderr = process.communicate(timeout=20)
        self.assertEqual(process.returncode, 1)
        lines = [l for l in stderr.decode().splitlines() if l.startswith("vpnkit: ")]
        self.assertEqual(lines, [f"vpnkit: --api {api}: in use by another process"])
        self.assertNotIn("Traceback", stderr.decode())
        self.assertFalse(os.path.lexists(sock))


class DaemonTests(_ProcessMixin, SynchronousTestCase):
    """
    C{twistd vpnkit} without C{-n}: twistd forks into the background.
    """

    def test_listenerFailsInForeground(self):
        """
        An API path that cannot be bound stops start-up before twistd
        forks: one line, status 1 within seconds, no pid file and no link
        socket left.
        """
        sock = self.path("ethernet.sock")
        pidfile = self.path("twistd.pid")
        api = self.inUse("api.sock")
        started = time.monotonic()
        process = self.twistd(
            "--pidfile", pidfile, "--logfile", self.path("twistd.log"),
            "vpnkit", "--ethernet", sock, "--api", api, "--hosts", self.hosts, "--dns", self.dns,
        )  # fmt: skip
        _, stderr = process.communicate(timeout=30)
        self.assertLess(time.monotonic() - started, 20)
        self.assertEqual(process.returncode, 1)
        self.assertEqual(stderr.decode().splitlines(), [f"vpnkit: --api {api}: in use by another process"])
        self.assertFalse(os.path.exists(pidfile))
        self.assertFalse(os.path.lexists(sock))

    def test_daemonServes(self):
        """
        With good flags twistd's parent exits 0, the daemon writes its pid
        file, serves a vmnet guest, and on SIGTERM removes its pid file and
        its socket.
        """
        sock = self.path("ethernet.sock")
        pidfile = self.path("twistd.pid")
        log = self.path("twistd.log")
        process = self.twistd(
            "--pidfile", pidfile, "--logfile", log,
            "vpnkit", "--ethernet", sock, "--hosts", self.hosts, "--dns", self.dns,
        )  # fmt: skip
        process.communicate(timeout=30)
        self.assertEqual(process.returncode, 0)
        waitFor(lambda: os.path.exists(pidfile) and os.path.exists(sock), what="the daemon")
        pid = int(Path(pidfile).read_text())
        self.addCleanup(_kill, pid)
        client, response = handshake(sock)
        self.addCleanup(client.close)
        self.assertIsInstance(response, vmnet.Vif)
        os.kill(pid, signal.SIGTERM)
        waitFor(lambda: not os.path.exists(pidfile), what="the pid file to go")
        waitFor(lambda: not os.path.lexists(sock), what="the socket to go")
        text = Path(log).read_text()
        self.assertIn("guest detached", text)
        self.assertNotIn("Traceback", text)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
