"""
End to end: vpnkit started the way the programs that run it today start it.

 - Docker Desktop's own command line (the reference's "real-world
   invocation"), verbatim but for its paths and inherited descriptors:
   vmnet on fd:3, diagnostics on fd:4, pcap on fd:5;
 - the C{vpnkit} command as RootlessKit execs it
   (C{vpnkit --ethernet PATH --mtu 1500 --host-ip 0.0.0.0}), with
   C{--ready-fd} and systemd's C{NOTIFY_SOCKET}.

A real guest namespace attaches through C{vpnkit-tap-bridge}, takes a lease
with udhcpc and pings the gateway.
"""

import io
import json
import os
import select
import socket
import subprocess
import tarfile

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import BIN, E2EMixin, Namespace, TapBridge, _Process, requireE2E, waitFor

GATEWAY = "192.168.65.1"


def listening(path):
    """
    A listening Unix socket at C{path}, as a parent process hands vpnkit.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def readAll(path, timeout=10):
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    client.connect(str(path))
    chunks = []
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    client.close()
    return b"".join(chunks)


class _Command(_Process):
    """
    A vpnkit command line (not twistd) inside C{namespace}.
    """

    def __init__(self, testCase, namespace, argv, workdir, passFDs=(), env=None):
        self.namespace = namespace
        self.passFDs = tuple(passFDs)
        self.env = env
        super().__init__(testCase, namespace.argv(argv), workdir / "vpnkit.log")

    def _popen(self, argv, log):
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.passFDs,
            env=self.env,
        )


class DropInTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        requireE2E("busybox", "ping")
        self.workdir = self.makeWorkdir()

    def write(self, name, text):
        path = self.workdir / name
        path.write_text(text)
        return path

    def guestOn(self, socketPath):
        guest = Namespace(self, "g")
        bridge = TapBridge(self, guest, socketPath, self.workdir)
        bridge.waitReady()
        lease = guest.dhcp(self)
        self.assertTrue(guest.ping(GATEWAY, count=2), "the gateway did not answer ping")
        return guest, lease

    def test_dockerDesktopCommandLine(self):
        """
        The reference's Docker Desktop command line starts vpnkit and serves
        a guest over the inherited vmnet socket; the inherited diagnostics
        socket streams a tar whose JSON parses; the inherited pcap socket
        streams a pcap file.
        """
        ethernet, diagnostics, pcap = (self.workdir / n for n in ("eth.sock", "diag.sock", "pcap.sock"))
        listeners = [listening(ethernet), listening(diagnostics), listening(pcap)]
        fds = [s.fileno() for s in listeners]
        gatewayForwards = self.write("gateway_forwards.json", "[]")
        httpProxy = self.write("http_proxy.json", "{}")
        dhcp = self.write("dhcp.json", '{"searchDomains": ["docker.internal"]}')
        hosts = self.write("hosts", "")
        dns = self.write("dns", "nameserver 127.0.0.1#1\n")
        argv = [
            str(BIN / "vpnkit"),
            "--ethernet", f"fd:{fds[0]}", "--diagnostics", f"fd:{fds[1]}", "--pcap", f"fd:{fds[2]}",
            "--vsock-path", "vms/0/connect",
            "--gateway-forwards", str(gatewayForwards),
            "--host-names", "host.docker.internal,docker.for.mac.host.internal,docker.for.mac.localhost",
            "--listen-backlog", "32", "--mtu", "1500", "--allowed-bind-addresses", "0.0.0.0",
            "--http", str(httpProxy), "--dhcp", str(dhcp),
            "--port-max-idle-time", "300", "--max-connections", "2000",
            "--gateway-ip", "192.168.65.1", "--host-ip", "192.168.65.2",
            "--lowest-ip", "192.168.65.3", "--highest-ip", "192.168.65.254",
            "--log-destination", "asl", "--gc-compact-interval", "1800",
            # Not part of Docker Desktop's line: keep DNS on this machine.
            "--hosts", str(hosts), "--dns", str(dns),
        ]  # fmt: skip
        host = Namespace(self, "h")
        vpnkit = _Command(self, host, argv, self.workdir, passFDs=fds)
        for sock in listeners:
            sock.close()
        vpnkit.waitForLog("ready:")
        for flag in ("--vsock-path", "--gc-compact-interval", "--log-destination"):
            self.assertIn(f"{flag} has no effect", vpnkit.log())
        guest, lease = self.guestOn(ethernet)
        self.assertEqual(lease["ip"], "192.168.65.3")
        self.assertEqual(lease.get("search"), "docker.internal")
        data = readAll(diagnostics)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            names = tar.getnames()
            stats = json.load(tar.extractfile("stats.json"))
            leases = json.load(tar.extractfile("leases.json"))
        self.assertEqual(
            names,
            ["stats.json", "connections.json", "flows.json", "leases.json", "config.json", "capture/all.pcap"],
        )
        self.assertGreater(stats["counters"]["dhcp"]["ack"], 0)
        self.assertEqual([entry["ip"] for entry in leases], ["192.168.65.3"])
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(10)
        client.connect(str(pcap))
        header = client.recv(24)
        client.close()
        self.assertEqual(header[:4], bytes.fromhex("d4c3b2a1"))
        self.assertTrue(vpnkit.alive())

    def test_rootlesskitCommandLine(self):
        """
        C{vpnkit --ethernet PATH --mtu 1500 --host-ip 0.0.0.0} as
        RootlessKit runs it, with C{--ready-fd}: the byte arrives once the
        socket exists, systemd's notify socket gets C{READY=1}, and a guest
        is served (the host alias is off, so only the gateway answers).
        """
        ethernet = self.workdir / "eth.sock"
        notifyPath = self.workdir / "notify"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notifyPath))
        notify.settimeout(20)
        self.addCleanup(notify.close)
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        hosts = self.write("hosts", "")
        dns = self.write("dns", "nameserver 127.0.0.1#1\n")
        argv = [
            str(BIN / "vpnkit"), "--ethernet", str(ethernet), "--mtu", "1500", "--host-ip", "0.0.0.0",
            "--ready-fd", str(w), "--hosts", str(hosts), "--dns", str(dns),
        ]  # fmt: skip
        host = Namespace(self, "h")
        vpnkit = _Command(
            self, host, argv, self.workdir, passFDs=[w], env=dict(os.environ, NOTIFY_SOCKET=str(notifyPath))
        )
        os.close(w)
        readable, _, _ = select.select([r], [], [], 20)
        self.assertEqual(readable, [r], "no byte on --ready-fd within 20 s")
        self.assertEqual(os.read(r, 1), b"1")
        self.assertTrue(ethernet.exists())
        self.assertTrue(notify.recv(100).startswith(b"READY=1"))
        guest, lease = self.guestOn(ethernet)
        self.assertEqual((lease["ip"], lease["router"]), ("192.168.65.3", GATEWAY))
        self.assertFalse(guest.ping("192.168.65.2", count=1), "the disabled host alias answered")
        vpnkit.stop()
        self.assertEqual(vpnkit.process.returncode, 0)
        waitFor(lambda: not ethernet.exists(), 10, "the socket to be removed")
