"""
End to end: a real Linux guest (a network namespace attached with
C{--netns}) resolves names with C{dig} through vpnkit's DNS, exchanges UDP
through its NAT and pings through its ICMP sockets.

Everything stays on this machine: vpnkit runs in a namespace of its own
that has only a loopback interface, the "remote" hosts are documentation
addresses (192.0.2.0/24) added to that loopback, and the upstream DNS
servers are C{twisted.names} servers the test starts there
(C{udptools.py dns-server}).  Every test passes C{--dns} naming them and a
C{--hosts} file of its own, so neither the machine's C{resolv.conf} nor its
resolver is ever used.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import E2EMixin, Namespace, VPNKit, _Process, requireE2E, waitFor

TOOLS = Path(__file__).with_name("udptools.py")
GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"

ZONE = """
zone = [
    SOA('example.test', mname='ns.example.test', rname='root.example.test',
        serial=1, refresh=60, retry=60, expire=60, minimum=60),
    A('www.example.test', '192.0.2.1'),
    AAAA('www.example.test', '2001:db8::1'),
    MX('example.test', 10, 'mail.example.test'),
    TXT('txt.example.test', b'hello world'),
    SRV('_sip._tcp.example.test', 0, 5, 5060, 'sip.example.test'),
    A('www.corp.test', '198.51.100.66'),
] + [A('big.example.test', '198.51.100.%d' % i) for i in range(1, 61)]
"""

CORP_ZONE = """
zone = [
    SOA('corp.test', mname='ns.corp.test', rname='root.corp.test',
        serial=1, refresh=60, retry=60, expire=60, minimum=60),
    A('www.corp.test', '192.0.2.100'),
]
"""


class Tool(_Process):
    """
    C{udptools.py COMMAND ...} inside a namespace.
    """

    def __init__(self, testCase, namespace, workdir, name, command, *args):
        argv = namespace.argv([sys.executable, "-u", str(TOOLS), command, *map(str, args)])
        super().__init__(testCase, argv, Path(workdir) / f"{name}.log")

    def waitListening(self):
        self.waitForLog("LISTENING ")

    def lines(self, prefix):
        return [line.split()[1:] for line in self.log().splitlines() if line.startswith(prefix)]


class Session:
    """
    C{udptools.py session} in the guest: one JSON command in, one JSON
    answer out, every read bounded.
    """

    def __init__(self, testCase, guest):
        argv = guest.argv([sys.executable, "-u", str(TOOLS), "session"])
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        testCase.addCleanup(self.close)
        assert self.readLine(15).startswith("LISTENING")

    def readLine(self, timeout):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"the guest session said nothing for {timeout}s")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError("the guest session ended")
        return line.strip()

    def run(self, timeout=15, **command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return json.loads(self.readLine(timeout))

    def exchange(self, port, to, hexData, size=None, timeout=5):
        command = {"op": "send", "port": port, "to": list(to), "hex": hexData}
        if size is not None:
            command["size"] = size
        self.run(**command)
        return self.run(op="recv", port=port, timeout=timeout)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.process.stdin.close()
        self.process.stdout.close()


class _Environment(E2EMixin):
    """
    vpnkit in a namespace with an upstream DNS server on its loopback, a
    hosts file, remote addresses, and one guest with a DHCP lease.
    """

    vpnkitArgs = ()
    remotes = ("192.0.2.10", "192.0.2.11", "192.0.2.20")

    def setUp(self):
        requireE2E("busybox", "dig", "ping", "sysctl")
        self.workdir = self.makeWorkdir()
        self.host = Namespace(self, "h")
        for address in self.remotes:
            self.host.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])
        (self.workdir / "zone.py").write_text(ZONE)
        self.upstream = Tool(
            self, self.host, self.workdir, "dns", "dns-server", "127.0.0.1", 5353, self.workdir / "zone.py"
        )
        self.upstream.waitListening()
        self.prepare()
        self.dnsFile = self.workdir / "dns"
        self.dnsFile.write_text(self.dnsConfig())
        self.hostsFile = self.workdir / "hosts"
        self.hostsFile.write_text("192.0.2.77 myhost.test\n")
        self.guest = Namespace(self, "g")
        self.vpnkit = VPNKit(
            self,
            self.host,
            [
                "--netns", self.guest.name,
                "--dns", str(self.dnsFile),
                "--hosts", str(self.hostsFile),
                *self.vpnkitArgs,
            ],
            self.workdir,
        )  # fmt: skip
        self.lease = self.guest.dhcp(self)

    def prepare(self):
        """
        Start more servers in vpnkit's namespace before vpnkit.
        """

    def dnsConfig(self):
        return "nameserver 127.0.0.1#5353\n"

    def stats(self):
        """
        vpnkit's counters, from the line C{kill -USR1} makes it log.
        """
        marker = "stats: "
        before = self.vpnkit.log().count(marker)
        os.kill(self.vpnkit.process.pid, signal.SIGUSR1)

        def logged():
            lines = [line for line in self.vpnkit.log().splitlines() if marker in line]
            return lines[before] if len(lines) > before else None

        return json.loads(waitFor(logged, 10, "the stats line").split(marker, 1)[1])

    def sockets(self):
        """
        How many sockets vpnkit holds.
        """
        count = 0
        for entry in Path(f"/proc/{self.vpnkit.process.pid}/fd").iterdir():
            try:
                if os.readlink(entry).startswith("socket:"):
                    count += 1
            except FileNotFoundError:
                pass
        return count


class Dig:
    """
    One C{dig} answer, taken apart.
    """

    def __init__(self, output, elapsed):
        self.output = output
        self.elapsed = elapsed
        status = re.search(r"status: (\w+)", output)
        self.status = status.group(1) if status else None
        flags = re.search(r";; flags: ([a-z ]*);", output)
        self.flags = set(flags.group(1).split()) if flags else set()
        self.sections = {}
        section = None
        for line in output.splitlines():
            heading = re.match(r";; (\w+) SECTION:", line)
            if heading:
                section = heading.group(1)
                self.sections[section] = []
            elif section and line.strip() and not line.startswith(";"):
                name, ttl, cls, type_, data = line.split(None, 4)
                self.sections[section].append((name, type_, data))
            elif not line.strip():
                section = None

    @property
    def answers(self):
        return self.sections.get("ANSWER", [])

    def data(self, type_="A"):
        return [d for _, t, d in self.answers if t == type_]


class _DNSMixin(_Environment):
    def dig(self, *args, timeout=5):
        start = time.monotonic()
        result = self.guest.run(
            ["dig", f"@{GATEWAY}", f"+time={timeout}", "+tries=1", *args],
            timeout=timeout + 10,
            check=False,
        )
        return Dig(result.stdout, time.monotonic() - start)


class DNSTests(_DNSMixin, SynchronousTestCase):
    """
    DNS on the gateway, over UDP and TCP, with two upstream servers: one
    for the C{corp.test} zone, one for everything.
    """

    def prepare(self):
        (self.workdir / "corp.py").write_text(CORP_ZONE)
        self.corp = Tool(
            self, self.host, self.workdir, "corp", "dns-server", "127.0.0.2", 5353, self.workdir / "corp.py"
        )
        self.corp.waitListening()

    def dnsConfig(self):
        return (
            "# the VPN's zone\n"
            "nameserver 127.0.0.2#5353\n"
            "zone corp.test\n"
            "timeout 2000\n"
            "# everything else\n"
            "nameserver 127.0.0.1#5353\n"
            "search corp.test\n"
        )

    def test_builtinNames(self):
        """
        C{host.internal}, C{gateway.internal} and C{vm.internal} are
        answered by vpnkit itself, AAAA too (the IPv6 host alias: guests
        are dual-stack by default); the guest's lease carries the C{--dns}
        search list (option 119).
        """
        for name, address in [
            ("host.internal", HOST_ALIAS),
            ("gateway.internal", GATEWAY),
            ("vm.internal", "192.168.65.3"),
        ]:
            answer = self.dig(name)
            self.assertEqual((answer.status, answer.data()), ("NOERROR", [address]), answer.output)
        answer = self.dig("AAAA", "host.internal")
        self.assertEqual((answer.status, answer.data("AAAA")), ("NOERROR", ["fd00:65::2"]))
        self.assertEqual(self.lease.get("search"), "corp.test")
        self.assertEqual(self.upstream.lines("QUERY"), [])

    def test_hostsFile(self):
        """
        A name of the hosts file is answered from it; a name added to the
        file is answered within 2 seconds of the change.
        """
        self.assertEqual(self.dig("myhost.test").data(), ["192.0.2.77"])
        self.assertEqual(self.dig("added.test").status, "NXDOMAIN")
        with open(self.hostsFile, "a") as f:
            f.write("192.0.2.78 added.test\n")
        written = time.monotonic()
        waitFor(lambda: self.dig("added.test", timeout=1).data() == ["192.0.2.78"], 2.5, "added.test")
        self.assertLess(time.monotonic() - written, 2.5)

    def test_upstreamTypes(self):
        """
        A, AAAA, MX, TXT and SRV come from upstream as it sent them;
        NXDOMAIN stays NXDOMAIN; a name without the asked type is NODATA
        with the zone's SOA kept in the authority section; the same over
        TCP.
        """
        self.assertEqual(self.dig("www.example.test").data(), ["192.0.2.1"])
        self.assertEqual(self.dig("AAAA", "www.example.test").data("AAAA"), ["2001:db8::1"])
        self.assertEqual(self.dig("MX", "example.test").data("MX"), ["10 mail.example.test."])
        self.assertEqual(self.dig("TXT", "txt.example.test").data("TXT"), ['"hello world"'])
        self.assertEqual(
            self.dig("SRV", "_sip._tcp.example.test").data("SRV"), ["0 5 5060 sip.example.test."]
        )
        self.assertEqual(self.dig("nope.example.test").status, "NXDOMAIN")
        nodata = self.dig("AAAA", "txt.example.test")
        self.assertEqual((nodata.status, nodata.answers), ("NOERROR", []))
        self.assertEqual([t for _, t, _ in nodata.sections.get("AUTHORITY", [])], ["SOA"])
        tcp = self.dig("+tcp", "MX", "example.test")
        self.assertEqual((tcp.status, tcp.data("MX")), ("NOERROR", ["10 mail.example.test."]))

    def test_truncation(self):
        """
        A 60-record answer is truncated over UDP without EDNS0 (TC set,
        whole records that fit 512 bytes), comes whole to a client
        announcing 1232 bytes, and whole over TCP.
        """
        udp = self.dig("+noedns", "+ignore", "big.example.test")
        self.assertIn("tc", udp.flags)
        self.assertLess(len(udp.answers), 60)
        self.assertGreater(len(udp.answers), 20)
        edns = self.dig("+bufsize=1232", "big.example.test")
        self.assertEqual((edns.flags & {"tc"}, len(edns.answers)), (set(), 60))
        tcp = self.dig("+tcp", "big.example.test")
        self.assertEqual((tcp.status, len(tcp.answers), tcp.flags & {"tc"}), ("NOERROR", 60, set()))

    def test_zone(self):
        """
        A name of the C{corp.test} zone is asked of its server only (the
        other server, which has a different answer, never sees it).
        """
        answer = self.dig("www.corp.test")
        self.assertEqual(answer.data(), ["192.0.2.100"])
        self.assertEqual(self.corp.lines("QUERY"), [["www.corp.test", "A"]])
        self.assertNotIn(["www.corp.test", "A"], self.upstream.lines("QUERY"))


class UnresponsiveUpstreamTests(_DNSMixin, SynchronousTestCase):
    """
    An upstream that never answers.
    """

    def prepare(self):
        self.silent = Tool(self, self.host, self.workdir, "silent", "silent", "127.0.0.3", 5353)
        self.silent.waitListening()

    def dnsConfig(self):
        return "nameserver 127.0.0.3#5353\ntimeout 1000\n"

    def test_servfail(self):
        """
        The guest gets SERVFAIL within the server's 1-second timeout (not
        silence), over UDP and over TCP.
        """
        answer = self.dig("www.example.test")
        self.assertEqual(answer.status, "SERVFAIL", answer.output)
        self.assertLess(answer.elapsed, 3)
        answer = self.dig("+tcp", "www.example.test")
        self.assertEqual(answer.status, "SERVFAIL", answer.output)
        self.assertLess(answer.elapsed, 3)


class UDPTests(_Environment, SynchronousTestCase):
    """
    The UDP NAT with real sockets: the reference's NAT tests against echo
    servers that send every datagram to every address they have seen.
    """

    def prepare(self):
        self.s1 = Tool(self, self.host, self.workdir, "s1", "udp-echo", "192.0.2.10", 7001)
        self.s2 = Tool(self, self.host, self.workdir, "s2", "udp-echo", "192.0.2.11", 7002)
        self.local = Tool(self, self.host, self.workdir, "local", "udp-echo", "127.0.0.1", 7003)
        for server in (self.s1, self.s2, self.local):
            server.waitListening()
        self.session = None

    def guestSession(self):
        if self.session is None:
            self.session = Session(self, self.guest)
        return self.session

    def test_echo(self):
        """
        A datagram to the host alias reaches the host's 127.0.0.1 and the
        answer comes from the alias; one to a remote address comes back
        from it.
        """
        session = self.guestSession()
        self.assertEqual(
            session.exchange(1030, (HOST_ALIAS, 7003), "aa"),
            {"from": [HOST_ALIAS, 7003], "hex": "aa", "size": 1},
        )
        self.assertEqual(
            session.exchange(1031, ("192.0.2.10", 7001), "bb"),
            {"from": ["192.0.2.10", 7001], "hex": "bb", "size": 1},
        )

    def test_natRules(self):
        """
        The reference's NAT tests: one UDP connection (1024 is answered),
        shared rule (1024 reaches a second server from the same external
        port), two connections (1025's datagram, echoed to everyone, reaches
        1024 and 1025), source ports (1024 hears both servers' ports) and
        punch (a third party sending to 1024's external port reaches it).
        """
        session = self.guestSession()
        self.assertEqual(session.exchange(1024, ("192.0.2.10", 7001), "01")["hex"], "01")
        reply = session.exchange(1024, ("192.0.2.11", 7002), "02")
        self.assertEqual((reply["from"], reply["hex"]), (["192.0.2.11", 7002], "02"))
        [(_, port1)] = self.s1.lines("SEEN")
        [(_, port2)] = self.s2.lines("SEEN")
        self.assertEqual(port1, port2)
        self.assertEqual(session.exchange(1025, ("192.0.2.10", 7001), "03")["hex"], "03")
        again = session.run(op="recv", port=1024, timeout=5)
        self.assertEqual((again["from"], again["hex"]), (["192.0.2.10", 7001], "03"))
        Tool(self, self.host, self.workdir, "punch", "udp-send", "192.0.2.10", port1, "04", "192.0.2.20")
        punched = session.run(op="recv", port=1024, timeout=5)
        self.assertEqual((punched["from"][0], punched["hex"]), ("192.0.2.20", "04"))

    def test_icmpErrors(self):
        """
        A connected UDP socket sending to a closed port of a remote host,
        of the host alias and of the gateway gets ECONNREFUSED: the port
        unreachable errors reach the guest.
        """
        session = self.guestSession()
        for address in ("192.0.2.10", HOST_ALIAS, GATEWAY):
            self.assertEqual(
                session.run(op="connected", to=[address, 9], hex="05", timeout=5),
                {"error": "ECONNREFUSED"},
                address,
            )

    def test_bigDatagrams(self):
        """
        A 9,000-byte datagram from a guest on a 1,500-byte link (the guest
        fragments it) reaches the server whole, and the server's 9,000-byte
        answer reaches the guest whole (vpnkit fragments it).
        """
        session = self.guestSession()
        reply = session.exchange(1040, ("192.0.2.10", 7001), "5a", size=9000)
        self.assertEqual((reply["size"], reply["hex"][:8]), (9000, "5a5a5a5a"))
        self.assertEqual([line[2] for line in self.s1.lines("GOT")], ["9000"])
        counters = self.stats()["counters"]["ipv4"]
        self.assertGreaterEqual(counters["reassembled"], 1)
        self.assertGreaterEqual(counters["fragmentedDatagrams"], 1)


class FlowCapTests(_Environment, SynchronousTestCase):
    """
    The flow cap, with C{--udp-max-flows 64}.
    """

    vpnkitArgs = ("--udp-max-flows", "64")

    def prepare(self):
        self.echo = Tool(self, self.host, self.workdir, "echo", "udp-echo", "192.0.2.10", 7001)
        self.sink = Tool(self, self.host, self.workdir, "sink", "udp-sink", "192.0.2.20", 7010)
        self.echo.waitListening()
        self.sink.waitListening()

    def test_evictionKeepsLiveFlow(self):
        """
        63 idle flows, then the live one (1024), then one more: the oldest
        idle flow is evicted and 1024 keeps its external port (the reference's
        "NAT: flow expiry").
        """
        session = Session(self, self.guest)
        for port in range(2000, 2063):
            session.run(op="send", port=port, to=["192.0.2.20", 7010], hex="00")
        self.assertEqual(session.exchange(1024, ("192.0.2.10", 7001), "01")["hex"], "01")
        session.run(op="send", port=3000, to=["192.0.2.20", 7010], hex="00")
        self.assertEqual(session.exchange(1024, ("192.0.2.10", 7001), "02")["hex"], "02")
        self.assertEqual(len(self.echo.lines("SEEN")), 1)
        stats = self.stats()
        self.assertEqual(stats["udp"]["flows"], 64)
        self.assertEqual(stats["counters"]["udp"]["natFlowsEvicted"], 1)

    def test_manySourcePorts(self):
        """
        10,000 datagrams from 2,000 source ports all leave vpnkit (and
        arrive), while vpnkit never holds more than its 64 flow sockets.
        """
        baseline = self.sockets()
        flood = Tool(self, self.guest, self.workdir, "flood", "flood", "192.0.2.20", 7010, 10000, 2000, 20000)
        peak = baseline
        while flood.alive():
            peak = max(peak, self.sockets())
            time.sleep(0.02)
        self.assertEqual(flood.process.wait(timeout=60), 0, flood.log())

        def settled():
            return self.stats()["counters"]["udp"]["natSent"] >= 10000

        waitFor(settled, 10, "vpnkit to send every datagram")
        counters = self.stats()["counters"]["udp"]
        self.sink.process.send_signal(signal.SIGTERM)
        self.sink.process.wait(timeout=10)
        [result] = [json.loads(" ".join(line)) for line in self.sink.lines("RESULT")]
        self.assertEqual(counters["natSent"], 10000)
        self.assertEqual(counters["natBindFailed"], 0)
        self.assertEqual(result, {"count": 10000, "sources": result["sources"]})
        self.assertGreaterEqual(result["sources"], 2000)
        self.assertLessEqual(peak - baseline, 64)


class PingTests(_Environment, SynchronousTestCase):
    """
    Echo to a remote address through an unprivileged ICMP socket.
    """

    def test_pingGroupRange(self):
        """
        With C{net.ipv4.ping_group_range} closed ("1 0") in vpnkit's
        namespace the guest's ping gets no reply at all, and vpnkit says
        why once; opened, the remote address answers (its real replies).
        """
        self.host.run(["sysctl", "-w", "net.ipv4.ping_group_range=1 0"])
        self.assertFalse(self.guest.ping("192.0.2.10", count=2))
        self.vpnkit.waitForLog("ping_group_range")
        self.host.run(["sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647"])
        self.assertTrue(self.guest.ping("192.0.2.10", count=3))
        self.assertTrue(self.guest.ping("192.0.2.11", count=1, size=4000))
        counters = self.stats()["counters"]["icmp"]
        self.assertGreaterEqual(counters["echoForwardReplies"], 4)
