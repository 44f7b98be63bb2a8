"""
End to end: hostile guests and hostile local clients against a real vpnkit.

 - a 20,000-SYN flood from one guest (frames written with C{AF_PACKET} by
   L{tests.e2e.floodtools}, from an interface without an address, so no
   handshake ever completes and nothing is ever reset) while a second guest
   pings the gateway and downloads 16 MiB through the host alias;
 - a thousand vmnet attaches with fresh random UUIDs, all leased;
 - the HTTP API answering nested JSON 400, an oversized body 413, and
   slow or surplus connections closed;
 - C{nmap -sS -p-} of the host alias from a guest finding exactly the ports
   listening on vpnkit's 127.0.0.1, even with the host's ephemeral port
   range narrowed so that a dial to a closed port connects to itself.

Every test bounds its waits and takes well under a minute.
"""

import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import time
import uuid as _uuid
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import E2EMixin, Namespace, Tool, requireE2E, waitFor
from vpnkit.wire import vmnet

GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"
FLOODTOOLS = Path(__file__).with_name("floodtools.py")
MiB = 1 << 20


def recvExactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def pingLoss(output):
    """
    The packet loss (a fraction) a ping summary reports.
    """
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    if match is None:
        raise AssertionError(f"no ping summary in:\n{output}")
    sent, received = int(match.group(1)), int(match.group(2))
    return (sent - received) / sent, sent


class HostileGuestTests(E2EMixin, SynchronousTestCase):
    """
    One guest floods, the other must not notice.
    """

    def setUp(self):
        requireE2E("busybox", "ping", "prlimit")

    def test_synFloodLeavesOtherGuestAlone(self):
        """
        20,000 SYNs from one guest (a quarter from spoofed sources) to a
        host port that accepts: vpnkit holds at most that guest's
        half-open budget of host sockets (256), evicting the oldest, drops
        the spoofed SYNs, logs a handful of lines, and the other guest loses
        no ping to the gateway and downloads 16 MiB intact meanwhile.
        """
        workdir = self.makeWorkdir()
        flooder = Namespace(self, "f")
        victim = Namespace(self, "v")
        vpnkit = self.startVPNKit(
            "--netns", flooder.name, "--netns", victim.name, workdir=workdir, nofile=4096
        )
        guests = {g["link"]: g["ip"] for g in vpnkit.stats()["guests"]}
        flooderIP = guests[f"netns:{flooder.path}:tap0"]
        self.assertEqual(victim.dhcp(self)["ip"], guests[f"netns:{victim.path}:tap0"])
        flooder.run(["ip", "link", "set", "tap0", "up"])
        baseline = vpnkit.sockets()

        sink = Tool(self, vpnkit.namespace, workdir, "echo-server", "--listen", "127.0.0.1:7000")
        sink.waitListening()
        size = 16 * MiB
        sender = Tool(self, vpnkit.namespace, workdir, "send", "--listen", "127.0.0.1:9000",
                      "--size", size, "--seed", 7, "--timeout", 50)
        sender.waitListening()

        pinger = subprocess.Popen(
            victim.argv(["ping", "-n", "-i", "0.05", "-c", "200", "-W", "2", GATEWAY]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.addCleanup(lambda: pinger.poll() is None and pinger.kill())
        flood = subprocess.Popen(
            flooder.argv([sys.executable, "-u", str(FLOODTOOLS), "synflood", "--src", flooderIP,
                          "--dst", HOST_ALIAS, "--dport", "7000", "--count", "20000",
                          "--rate", "4000", "--spoof-every", "4", "--timeout", "40"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.addCleanup(lambda: flood.poll() is None and flood.kill())

        # The download starts once the flood is under way.
        waitFor(lambda: vpnkit.stats()["counters"]["tcp"]["synReceived"] > 2000, 20,
                "the flood to reach vpnkit")
        receiver = Tool(self, victim, workdir, "recv", "--connect", f"{HOST_ALIAS}:9000",
                        "--expect", size, "--timeout", 50)
        most = 0
        deadline = time.monotonic() + 50
        while flood.poll() is None and time.monotonic() < deadline:
            most = max(most, vpnkit.sockets())
            time.sleep(0.1)
        floodOutput = flood.communicate(timeout=10)[0]
        self.assertEqual(flood.returncode, 0, floodOutput)
        flooded = json.loads(floodOutput.split("RESULT ", 1)[1])
        self.assertEqual(flooded["sent"], 20000)

        received = receiver.result(timeout=50)
        sent = sender.result(timeout=10)
        self.assertIsNone(received["error"], received)
        self.assertEqual((received["received"], received["sha256"]), (size, sent["sha256"]))

        pingOutput = pinger.communicate(timeout=30)[0]
        loss, pings = pingLoss(pingOutput)
        self.assertEqual(pings, 200)
        self.assertLess(loss, 0.01, pingOutput)

        # The flooder's budget (1,024 half-open), the download, and evicted
        # sockets Twisted closes on its next turn: nothing like the 15,000
        # SYNs it sent.
        self.assertLess(most - baseline, 1024 + 200, (most, baseline))
        stats = vpnkit.stats()
        tcp = stats["counters"]["tcp"]
        # Spoofed sources never reach TCP: the flooder's port drops them.
        self.assertGreater(stats["counters"]["ipv4"]["spoofedSource"], 1000)
        self.assertGreater(tcp["halfOpenEvicted"], 1000)
        self.assertLessEqual(stats["tcp"]["pending"] + len(stats["tcp"]["connections"]), 1024 + 1)
        self.assertLessEqual(vpnkit.log().count("half-open connection"), 3)
        self.assertTrue(vpnkit.alive())


class HostileClientTests(E2EMixin, SynchronousTestCase):
    """
    Local clients of vpnkit's sockets: the vmnet socket and the API.
    """

    def setUp(self):
        requireE2E()

    def test_randomUUIDsAllLeased(self):
        """
        The vmnet socket is mode 0600.  A thousand attaches, each with a
        fresh UUID and detached before the next, all get a Vif: once the
        range is full the UUID detached longest ago gives its address up.
        """
        workdir = self.makeWorkdir()
        path = workdir / "ethernet.sock"
        vpnkit = self.startVPNKit("--ethernet", str(path), workdir=workdir)
        self.assertEqual(oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o600))
        addresses = set()
        start = time.monotonic()
        for n in range(1000):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            try:
                sock.connect(str(path))
                command = vmnet.EthernetCommand(str(_uuid.uuid4()).encode())
                sock.sendall(vmnet.emitInit() + vmnet.emitCommand(command))
                data = recvExactly(sock, vmnet.INIT_LENGTH + vmnet.RESPONSE_LENGTH)
                response = vmnet.parseResponse(data[vmnet.INIT_LENGTH :])
                self.assertIsInstance(response, vmnet.Vif, f"attach {n}: {response}")
                addresses.add(response.mac)
                # Wait for vpnkit to take the guest off before the next.
                sock.shutdown(socket.SHUT_WR)
                self.assertEqual(sock.recv(1), b"")
            finally:
                sock.close()
        self.assertLess(time.monotonic() - start, 50)
        self.assertEqual(len(addresses), 1000)
        stats = vpnkit.stats()
        self.assertEqual(stats["counters"]["link"]["handshakeFailures"], 0)
        self.assertEqual(stats["guests"], [])
        self.assertLessEqual(vpnkit.log().count("was reclaimed"), 3)
        self.assertTrue(vpnkit.alive())

    def test_socketGroup(self):
        """
        With C{--socket-group} the socket is mode 0660 and owned by that
        group.
        """
        workdir = self.makeWorkdir()
        path = workdir / "ethernet.sock"
        self.startVPNKit("--ethernet", str(path), "--socket-group", "0", workdir=workdir)
        status = os.stat(path)
        self.assertEqual((oct(stat.S_IMODE(status.st_mode)), status.st_gid), (oct(0o660), 0))

    def apiRequest(self, path, request, read=True):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        # Blocking: a connect with a timeout fails at once (EAGAIN) while
        # the listen backlog is full, before vpnkit gets to accept.
        sock.connect(str(path))
        sock.settimeout(15)
        sock.sendall(request)
        if not read:
            return sock
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def test_apiLimits(self):
        """
        Nested JSON is a 400, a 10 MB body a 413 before it is sent, 100
        connections that never finish their headers are closed (the 65th
        and later at once, the others with 408 after 10 s), and the API
        answers normally afterwards.
        """
        workdir = self.makeWorkdir()
        api = workdir / "api.sock"
        vpnkit = self.startVPNKit("--ethernet", str(workdir / "e.sock"), "--api", str(api),
                                  workdir=workdir)
        nested = b"[" * 20000 + b"]" * 20000
        reply = self.apiRequest(api, b"POST /services/forwarder/expose HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(nested), nested))
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:200])

        sock = self.apiRequest(api, b"POST /services/forwarder/expose HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 10485760\r\n\r\n", read=False)
        start = time.monotonic()
        reply = sock.recv(65536)
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply[:200])
        self.assertLess(time.monotonic() - start, 5)
        # vpnkit closes it: no connection of ours is left open.
        waitFor(lambda: sock.recv(65536) == b"", 5, "the 413 connection to close")

        slow = [self.apiRequest(api, b"GET /stats HTTP/1.1\r\nX-Slow: ", read=False)
                for _ in range(100)]
        start = time.monotonic()
        closedAtOnce = 0
        timedOut = 0
        for sock in slow:
            sock.settimeout(15)
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                # Closed before reading what we sent.
                data = b""
            if data == b"":
                closedAtOnce += 1
            elif data.startswith(b"HTTP/1.1 408 "):
                timedOut += 1
        self.assertEqual((closedAtOnce, timedOut), (36, 64))
        self.assertLess(time.monotonic() - start, 14)
        reply = self.apiRequest(api, b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply[:200])
        self.assertTrue(vpnkit.alive())


class PortScanTests(E2EMixin, SynchronousTestCase):
    """
    nmap from a guest sees the host alias as it is.
    """

    def setUp(self):
        requireE2E("busybox", "nmap", "sysctl")

    def test_synScanFindsListeningPortsOnly(self):
        """
        C{nmap -sS -p-} of the host alias (rate-bounded) finds open exactly
        the two ports listening on vpnkit's 127.0.0.1.  vpnkit's namespace
        has a one-port ephemeral range (40000), so the dial for the closed
        port 40000 connects to itself: it must be refused, not shown open.
        """
        workdir = self.makeWorkdir()
        guest = Namespace(self, "g")
        vpnkit = self.startVPNKit("--netns", guest.name, workdir=workdir)
        self.assertEqual(guest.dhcp(self)["ip"], "192.168.65.3")
        vpnkit.namespace.run(["sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40000"])
        for port in (8080, 9090):
            Tool(self, vpnkit.namespace, workdir, "echo-server", "--listen",
                 f"127.0.0.1:{port}").waitListening()
        result = guest.run(
            ["nmap", "-sS", "-p-", "-n", "-Pn", "--max-retries", "1", "--min-rate", "2000",
             "--max-rate", "4000", "--host-timeout", "45s", "-oG", "-", HOST_ALIAS],
            timeout=55,
        )
        ports = re.search(r"Ports: (.*?)(?:\t|$)", result.stdout, re.M)
        self.assertIsNotNone(ports, result.stdout)
        opened = sorted(
            int(entry.split("/")[0])
            for entry in ports.group(1).split(", ")
            if entry.split("/")[1] == "open"
        )
        self.assertEqual(opened, [8080, 9090], result.stdout)
        tcp = vpnkit.stats()["counters"]["tcp"]
        self.assertGreaterEqual(tcp["selfConnects"], 1)
        self.assertTrue(vpnkit.alive())
