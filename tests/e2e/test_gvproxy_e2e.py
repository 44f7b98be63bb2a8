"""
End to end: C{vpnkit-gvproxy} started with the command line podman machine
gives gvproxy, serving a real Linux guest.

Topology: vpnkit-gvproxy runs in a namespace of its own (only loopback:
"the host" here, where C{-ssh-port} listens); the guest is another
namespace whose tap is attached to the C{-listen-qemu} socket by
C{vpnkit-tap-bridge --protocol qemu}.  It takes gvproxy's first address,
192.168.127.2, with busybox C{udhcpc}, and runs an C{sshd} the test starts
(keys made with C{ssh-keygen}, C{AllowStreamLocalForwarding yes}) and a
Unix-socket echo server.  The host's C{-forward-sock} reaches that echo
server over SSH; C{ssh -p PORT} on the host's loopback reaches the guest's
sshd through C{-ssh-port}.

Not covered here: C{-listen-vfkit} (it needs vpnkit's C{--vfkit}, which
this front end produces but another change adds).
"""

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import BIN, E2EMixin, MissingTool, Namespace, TapBridge, _Process, requireE2E, waitFor

GUEST = "192.168.127.2"
GATEWAY = "192.168.127.1"
SSH_PORT = 2222
SSHD = "/usr/sbin/sshd"

ECHO_SERVER = r"""
import socket, sys, threading
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(16)
print("LISTENING", sys.argv[1], flush=True)

def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# One fixed HTTP answer (http.server would first look its address up in
# DNS, which the guest namespace cannot reach).
HTTP_SERVER = r"""
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("LISTENING", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 25\r\n\r\npublished from the guest\n")
"""

SSHD_CONFIG = """\
Port 22
ListenAddress {address}
HostKey {workdir}/hostkey
AuthorizedKeysFile {workdir}/authorized_keys
PidFile none
AllowStreamLocalForwarding yes
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel VERBOSE
"""


def echoThrough(path, payload, timeout=30):
    """
    Send C{payload} to the Unix socket C{path}, half-close, and return
    everything read back until EOF (a thread sends while this one reads,
    so a large payload cannot deadlock).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    errors = []

    def send():
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sender.join(timeout)
        sock.close()
    if errors:
        raise errors[0]
    return b"".join(chunks)


class GvproxyProcess(_Process):
    """
    C{vpnkit-gvproxy ARGS} inside C{namespace}; its standard output and
    error go to C{gvproxy.out}, its C{-log-file} is wherever ARGS say.
    """

    def __init__(self, testCase, namespace, args, workdir, name="gvproxy.out"):
        self.namespace = namespace
        command = namespace.argv([str(BIN / "vpnkit-gvproxy"), *args])
        super().__init__(testCase, command, Path(workdir) / name)


class GvproxyTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        requireE2E("busybox", "sshd", "ssh", "ssh-keygen", "curl")
        if not (BIN / "vpnkit-gvproxy").exists():
            raise MissingTool(f"vpnkit-gvproxy is not installed next to {sys.executable}: `make install`")
        self.workdir = self.makeWorkdir()
        self.host = Namespace(self, "h")
        self.guest = Namespace(self, "g")
        if not os.path.isdir("/run/sshd"):
            # sshd's privilege separation directory (its package's
            # service would create it).
            os.makedirs("/run/sshd", mode=0o755)
            self.addCleanup(os.rmdir, "/run/sshd")
        for name in ("id", "hostkey"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.workdir / name)],
                check=True,
                timeout=30,
            )
        (self.workdir / "authorized_keys").write_text((self.workdir / "id.pub").read_text())
        (self.workdir / "sshd_config").write_text(
            SSHD_CONFIG.format(address=GUEST, workdir=self.workdir)
        )
        self.guestDir = self.workdir / "guest"
        self.guestDir.mkdir()

    # -- pieces

    def podmanArgs(self):
        w = self.workdir
        return [
            "-listen", f"unix://{w}/api.sock",
            "-mtu", "1500",
            "-ssh-port", str(SSH_PORT),
            "-listen-qemu", f"unix://{w}/qemu.sock",
            "-forward-sock", f"{w}/podman.sock",
            "-forward-dest", f"{self.guestDir}/echo.sock",
            "-forward-user", "root",
            "-forward-identity", f"{w}/id",
            "-pid-file", f"{w}/gvproxy.pid",
            "-log-file", f"{w}/gvproxy.log",
        ]

    def log(self):
        path = self.workdir / "gvproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def startGvproxy(self):
        gvproxy = GvproxyProcess(self, self.host, self.podmanArgs(), self.workdir)
        pidFile = self.workdir / "gvproxy.pid"

        def started():
            if not gvproxy.alive():
                raise AssertionError(
                    f"vpnkit-gvproxy exited {gvproxy.process.returncode}:\n{gvproxy.log()}{self.log()}"
                )
            return pidFile.exists() and pidFile.read_text().strip()

        pid = waitFor(started, 20, "the -pid-file")
        # ip netns exec execs in place: the pid is the process we started.
        self.assertEqual(int(pid), gvproxy.process.pid)
        return gvproxy

    def attachGuest(self):
        bridge = TapBridge(self, self.guest, self.workdir / "qemu.sock", self.workdir, protocol="qemu")
        bridge.waitReady()
        return self.guest.dhcp(self)

    def startSSHD(self):
        sshd = _Process(
            self,
            self.guest.argv([SSHD, "-D", "-e", "-f", str(self.workdir / "sshd_config")]),
            self.workdir / "sshd.log",
        )
        sshd.waitForLog(f"Server listening on {GUEST} port 22", timeout=20)
        return sshd

    def startEchoServer(self):
        echo = _Process(
            self,
            self.guest.argv([sys.executable, "-u", "-c", ECHO_SERVER, str(self.guestDir / "echo.sock")]),
            self.workdir / "echo.log",
        )
        echo.waitForLog("LISTENING", timeout=15)
        return echo

    def killGuestSSHD(self):
        result = subprocess.run(
            ["ip", "netns", "pids", self.guest.name], capture_output=True, text=True, timeout=10
        )
        for pid in result.stdout.split():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(int(pid), signal.SIGTERM)
            except (OSError, ValueError):
                pass

    def waitConnected(self, count=1, timeout=30):
        waitFor(
            lambda: self.log().count(f"connected to root@{GUEST}:22") >= count,
            timeout,
            f"vpnkit-gvproxy's SSH connection number {count} to the guest:\n{self.log()}",
        )

    def sshCommand(self, command, timeout=30):
        return self.host.run(
            [
                "ssh", "-F", "/dev/null",
                "-p", str(SSH_PORT),
                "-i", str(self.workdir / "id"),
                "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=10",
                "-o", "LogLevel=ERROR",
                "root@127.0.0.1",
                command,
            ],
            timeout=timeout,
            check=False,
        )

    def api(self, path):
        return self.host.run(
            ["curl", "-s", "--max-time", "10", "--unix-socket", str(self.workdir / "api.sock"), f"http://gvproxy{path}"]
        ).stdout

    # -- tests

    def test_podmanMachineCommandLine(self):
        """
        With podman machine's command line: the guest gets 192.168.127.2
        from gvproxy's subnet; once its sshd is up (after vpnkit-gvproxy
        started) a Unix-socket echo crosses the SSH forward, small and 4 MiB
        and two at once; C{ssh -p 2222} on the host's loopback runs a
        command in the guest; the API lists the SSH port forward; the
        sockets are 0600; SIGTERM stops it with status 0, removing the pid
        file and its sockets.
        """
        gvproxy = self.startGvproxy()
        lease = self.attachGuest()
        self.assertEqual(lease["ip"], GUEST)
        self.assertEqual(lease["router"], GATEWAY)
        self.assertEqual(lease["subnet"], "255.255.255.0")
        self.assertTrue(self.guest.ping(GATEWAY), "the gateway did not answer ping")
        self.startEchoServer()
        self.startSSHD()
        self.waitConnected()

        podmanSock = self.workdir / "podman.sock"
        self.assertEqual(stat.S_IMODE(os.stat(podmanSock).st_mode), 0o600)
        self.assertEqual(echoThrough(podmanSock, b"hello through ssh\n"), b"hello through ssh\n")
        big = os.urandom(4 << 20)
        self.assertEqual(echoThrough(podmanSock, big, timeout=60), big)
        results = {}
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, echoThrough(podmanSock, bytes([i]) * 100000)))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, {0: b"\x00" * 100000, 1: b"\x01" * 100000})

        result = self.sshCommand("echo ssh-port-ok; hostname -I")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("ssh-port-ok", result.stdout)
        self.assertIn(GUEST, result.stdout)

        self.assertIn(f'"remote": "{GUEST}:22"', self.api("/services/forwarder/all"))
        self.assertIn(f'"{GUEST}"', self.api("/services/dhcp/leases"))
        self.assertEqual(stat.S_IMODE(os.stat(self.workdir / "api.sock").st_mode), 0o600)

        os.kill(gvproxy.process.pid, signal.SIGTERM)
        try:
            status = gvproxy.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"vpnkit-gvproxy did not stop on SIGTERM:\n{self.log()}") from None
        self.assertEqual(status, 0, gvproxy.log() + self.log())
        for name in ("gvproxy.pid", "podman.sock", "api.sock", "qemu.sock"):
            self.assertFalse((self.workdir / name).exists(), f"{name} was left behind")

    def test_sshdRestarts(self):
        """
        When the guest's sshd goes away the forward's clients fail cleanly
        and vpnkit-gvproxy keeps running; once sshd is back the next client
        gets through on a new SSH connection.
        """
        gvproxy = self.startGvproxy()
        self.attachGuest()
        self.startEchoServer()
        sshd = self.startSSHD()
        self.waitConnected()
        podmanSock = self.workdir / "podman.sock"
        self.assertEqual(echoThrough(podmanSock, b"first\n"), b"first\n")
        # sshd's connection handlers run in sessions of their own: stop
        # every sshd in the guest, as a guest reboot would.
        sshd.stop()
        self.killGuestSSHD()
        waitFor(
            lambda: "the SSH connection to root@" in self.log(),
            20,
            f"the SSH connection to be seen closed:\n{self.log()}",
        )
        self.assertTrue(gvproxy.alive())
        self.startSSHD()
        self.assertEqual(echoThrough(podmanSock, b"second\n"), b"second\n")
        self.waitConnected(2)
        self.assertTrue(gvproxy.alive())

    def test_guestPublishesPort(self):
        """
        From inside the guest, gvproxy's API on the gateway's port 80
        publishes a port as podman does (remote ":PORT" is the guest that
        asks): a client on the host's loopback then reaches the guest's
        server, and the host's API lists the forward.
        """
        self.startGvproxy()
        self.attachGuest()
        server = _Process(
            self,
            self.guest.argv([sys.executable, "-u", "-c", HTTP_SERVER, GUEST, "8000"]),
            self.workdir / "http.log",
        )
        server.waitForLog("LISTENING", timeout=15)
        expose = self.guest.run(
            ["curl", "-s", "-f", "--max-time", "10", "-X", "POST",
             "-d", '{"local": "127.0.0.1:18000", "remote": ":8000", "protocol": "tcp"}',
             f"http://{GATEWAY}/services/forwarder/expose"],
            check=False,
        )
        self.assertEqual(expose.returncode, 0, expose.stdout + expose.stderr + self.log())
        listed = self.guest.run(
            ["curl", "-s", "-f", "--max-time", "10", f"http://{GATEWAY}/services/forwarder/all"]
        ).stdout
        self.assertIn(f'"remote": "{GUEST}:8000"', listed)
        fetched = self.host.run(["curl", "-s", "-f", "--max-time", "10", "http://127.0.0.1:18000/hello.txt"])
        self.assertEqual(fetched.stdout, "published from the guest\n")
        self.assertIn('"local": "127.0.0.1:18000"', self.api("/services/forwarder/all"))
        stats = self.guest.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", f"http://{GATEWAY}/stats"],
            check=False,
        )
        self.assertEqual(stats.stdout, "404")

    def test_startupErrorOneLine(self):
        """
        A start-up error (the SSH port already taken on the host) is one
        line naming gvproxy's flag, exit status 1, and nothing is left
        behind: no pid file, no sockets.
        """
        blocker = _Process(
            self,
            self.host.argv(
                [
                    sys.executable,
                    "-u",
                    "-c",
                    "import socket, time\n"
                    "s = socket.socket()\n"
                    f"s.bind(('127.0.0.1', {SSH_PORT}))\n"
                    "s.listen()\n"
                    "print('LISTENING', flush=True)\n"
                    "time.sleep(120)\n",
                ]
            ),
            self.workdir / "blocker.log",
        )
        blocker.waitForLog("LISTENING")
        gvproxy = GvproxyProcess(self, self.host, self.podmanArgs(), self.workdir)
        try:
            status = gvproxy.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"vpnkit-gvproxy kept running:\n{gvproxy.log()}") from None
        self.assertEqual(status, 1)
        self.assertEqual(
            gvproxy.log(),
            f"vpnkit-gvproxy: -ssh-port tcp:127.0.0.1:{SSH_PORT}:tcp:{GUEST}:22: Bind for "
            f"127.0.0.1:{SSH_PORT} failed: port is already allocated\n",
        )
        self.assertIn("port is already allocated", self.log())
        for name in ("gvproxy.pid", "podman.sock", "api.sock", "qemu.sock"):
            self.assertFalse((self.workdir / name).exists(), f"{name} was left behind")
