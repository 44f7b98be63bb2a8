"""
End to end: packet capture (C{--pcap}, C{--pcap-file}) read by tcpdump.

vpnkit runs in a namespace of its own with one C{--netns} guest; its
capture socket and file are in the test's scratch directory (Unix socket
paths do not belong to a network namespace).  A reader connects to the
socket and hands it to C{tcpdump -n -l -r -} as standard input (what
C{nc -U SOCK | tcpdump -r -} does), while the guest gets a lease, pings the
gateway, asks vpnkit's DNS for a C{--hosts} name and fetches a page from
a server on the host's 127.0.0.1 through the host alias.  tcpdump must
show each of those exchanges, live and from the file.

A reader that connects and never reads must not slow the guest: it is
dropped, and counted, while a transfer of several MiB runs.
"""

import re
import socket
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import E2EMixin, Namespace, Tool, requireE2E, waitFor

GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"
GUEST = "192.168.65.3"
MiB = 1 << 20

# What tcpdump -n prints for each exchange the guest makes (the guest's
# TCP source port is whatever it picks).
EXPECTED = {
    "DHCP request": re.compile(r"0\.0\.0\.0\.68 > 255\.255\.255\.255\.67: BOOTP/DHCP, Request"),
    "DHCP reply": re.compile(r"192\.168\.65\.1\.67 > \S+\.68: BOOTP/DHCP, Reply"),
    "ARP request": re.compile(r"ARP, Request who-has 192\.168\.65\.1 tell 192\.168\.65\.3"),
    "ARP reply": re.compile(r"ARP, Reply 192\.168\.65\.1 is-at f6:16:36:bc:f9:c6"),
    "echo request": re.compile(r"192\.168\.65\.3 > 192\.168\.65\.1: ICMP echo request"),
    "echo reply": re.compile(r"192\.168\.65\.1 > 192\.168\.65\.3: ICMP echo reply"),
    "DNS query": re.compile(r"192\.168\.65\.3\.\d+ > 192\.168\.65\.1\.53: \d+\+ (\[1au\] )?A\? myhost\.test\. "),
    "DNS answer": re.compile(r"192\.168\.65\.1\.53 > 192\.168\.65\.3\.\d+: \d+\*?.* A 192\.0\.2\.77 "),
    "SYN": re.compile(r"192\.168\.65\.3\.(\d+) > 192\.168\.65\.2\.8080: Flags \[S\],"),
    "SYN-ACK": re.compile(r"192\.168\.65\.2\.8080 > 192\.168\.65\.3\.(\d+): Flags \[S\.\],"),
}


def missing(text):
    """
    The names of the L{EXPECTED} exchanges C{text} does not show.
    """
    absent = [name for name, pattern in EXPECTED.items() if not pattern.search(text)]
    syn, synAck = EXPECTED["SYN"].search(text), EXPECTED["SYN-ACK"].search(text)
    if syn and synAck and syn.group(1) != synAck.group(1):
        absent.append("SYN-ACK for the SYN's port")
    return absent


class CaptureEndToEndTests(E2EMixin, SynchronousTestCase):
    """
    tcpdump reads vpnkit's capture stream and file.
    """

    def setUp(self):
        requireE2E("busybox", "ping", "dig", "curl", "tcpdump")
        self.workdir = self.makeWorkdir()
        self.socketPath = self.workdir / "pcap.sock"
        self.filePath = self.workdir / "capture.pcap"
        self.hostsFile = self.workdir / "hosts"
        self.hostsFile.write_text("192.0.2.77 myhost.test\n")
        # No upstream server listens there: the test's names come from the
        # hosts file, and nothing can leave vpnkit's namespace anyway.
        self.dnsFile = self.workdir / "dns"
        self.dnsFile.write_text("nameserver 127.0.0.1#5353\n")

    def startVPNKitWithCapture(self, *extra):
        self.guest = Namespace(self, "g")
        return self.startVPNKit(
            "--netns", self.guest.name,
            "--hosts", str(self.hostsFile),
            "--dns", str(self.dnsFile),
            "--pcap", str(self.socketPath),
            "--pcap-file", str(self.filePath),
            *extra,
            workdir=self.workdir,
        )  # fmt: skip

    def connectReader(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.settimeout(10)
        sock.connect(str(self.socketPath))
        return sock

    def tcpdumpOn(self, sock):
        """
        C{tcpdump -n -l -r -} reading the capture stream from C{sock}.

        @return: a function giving what tcpdump printed so far.
        """
        sock.settimeout(None)  # tcpdump wants a blocking descriptor
        out = open(self.workdir / "tcpdump.out", "w+b")
        self.addCleanup(out.close)
        process = subprocess.Popen(
            ["tcpdump", "-n", "-l", "-r", "-"],
            stdin=sock.fileno(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

        def stop():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

        self.addCleanup(stop)

        def printed():
            out.flush()
            with open(out.name, "rb") as f:
                return f.read().decode(errors="replace")

        return printed

    def tcpdumpFile(self):
        result = subprocess.run(
            ["tcpdump", "-n", "-r", str(self.filePath)],
            capture_output=True,
            timeout=30,
        )
        return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")

    def guestTraffic(self, vpnkit):
        """
        The guest's lease, ping, DNS question and HTTP fetch.
        """
        self.assertEqual(self.guest.dhcp(self)["ip"], GUEST)
        self.assertTrue(self.guest.ping(GATEWAY, count=2), "the gateway did not answer ping")
        dig = self.guest.run(
            ["dig", f"@{GATEWAY}", "+time=5", "+tries=1", "+short", "myhost.test"], check=False
        )
        self.assertEqual(dig.stdout.strip(), "192.0.2.77", dig.stdout + dig.stderr)
        server = Tool(self, vpnkit.namespace, self.workdir, "serve-http",
                      "--listen", "127.0.0.1:8080", "--size", 2000, "--seed", 3)  # fmt: skip
        server.waitListening()
        curl = self.guest.run(
            ["curl", "-sS", "--noproxy", "*", "--max-time", "20", "-o", "/dev/null",
             f"http://{HOST_ALIAS}:8080/"],
            timeout=30,
            check=False,
        )  # fmt: skip
        self.assertEqual(curl.returncode, 0, curl.stderr)

    def test_tcpdumpReadsStreamAndFile(self):
        """
        tcpdump reading the capture socket, and later the capture file,
        shows the guest's DHCP, ARP, ping, DNS and the SYN and SYN-ACK of
        its TCP connection, with whole frames (C{--pcap-snaplen 0}).
        """
        vpnkit = self.startVPNKitWithCapture("--pcap-snaplen", "0")
        printed = self.tcpdumpOn(self.connectReader())
        self.guestTraffic(vpnkit)
        try:
            waitFor(lambda: not missing(printed()), 20, "tcpdump to show every exchange")
        except AssertionError:
            self.fail(f"tcpdump on the socket misses {missing(printed())}:\n{printed()}")
        try:
            waitFor(lambda: not missing(self.tcpdumpFile()), 20, "the file to show every exchange")
        except AssertionError:
            text = self.tcpdumpFile()
            self.fail(f"tcpdump -r FILE misses {missing(text)}:\n{text}")
        self.assertNotIn("[|", printed(), "a frame was cut despite --pcap-snaplen 0")
        counters = vpnkit.stats()["counters"]["capture"]
        self.assertGreater(counters["framesCaptured"], 20)
        self.assertEqual(counters["readersConnected"], 1)
        self.assertEqual((counters["readersDropped"], counters["fileWriteErrors"]), (0, 0))

    def test_stuckReaderDropped(self):
        """
        A reader that never reads does not hold up 32 MiB from the host to
        the guest: the transfer completes intact, and the reader is dropped
        (its connection ends) and counted.
        """
        vpnkit = self.startVPNKitWithCapture("--pcap-snaplen", "0")
        stuck = self.connectReader()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.assertEqual(self.guest.dhcp(self)["ip"], GUEST)
        size = 32 * MiB
        sender = Tool(self, vpnkit.namespace, self.workdir, "send",
                      "--listen", "127.0.0.1:5001", "--size", size, "--seed", 5, "--timeout", 60)
        sender.waitListening()
        receiver = Tool(self, self.guest, self.workdir, "recv",
                        "--connect", f"{HOST_ALIAS}:5001", "--expect", size, "--timeout", 60)  # fmt: skip
        got = receiver.result(70)
        sent = sender.result(30)
        self.assertIsNone(got.get("error"), got)
        self.assertEqual(got["received"], size)
        self.assertEqual(got["sha256"], sent["sha256"])
        counters = vpnkit.stats()["counters"]["capture"]
        self.assertEqual(counters["readersConnected"], 1)
        self.assertEqual(counters["readersDropped"], 1)
        # The stuck reader's connection was closed: what it holds, then the
        # end of the stream (or a reset, as vpnkit aborts it).
        stuck.settimeout(5)
        total = 0
        try:
            for _ in range(100000):
                data = stuck.recv(1 << 16)
                if not data:
                    break
                total += len(data)
            else:
                self.fail("the stuck reader's stream never ended")
        except ConnectionResetError:
            pass
        except TimeoutError:
            self.fail(f"the stuck reader's connection is still open after {total} bytes")
        self.assertLess(total, 8 * MiB)
