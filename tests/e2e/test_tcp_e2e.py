"""
End to end: a real Linux guest's TCP through vpnkit's userspace stack.

The guest is a network namespace whose tap device vpnkit creates itself
(C{--netns}); the "host" is vpnkit's own namespace, which has only a
loopback interface: servers listen on its 127.0.0.1 (reached from the guest
through the host alias 192.168.65.2) or on documentation addresses added to
its loopback (a "remote" host).  The programs on both ends are
L{tests.e2e.tcptools}: they generate data from a seed and hash it with
SHA-256, so large transfers need no files.

After each exchange the tests ask vpnkit for its statistics (C{kill -USR1})
and check that no connection state and no host socket is left behind.
"""

import hashlib
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.e2e.harness import (
    E2EMixin,
    Namespace,
    TapBridge,
    Tool,
    blackHole,
    netemAvailable,
    requireE2E,
    waitFor,
)

HOST_ALIAS = "192.168.65.2"
REMOTE = "198.51.100.10"
MiB = 1 << 20


class TCPTestsMixin(E2EMixin):
    """
    Helpers: a guest attached to a fresh vpnkit, tools on either side, and
    the "nothing left behind" check.
    """

    def setUp(self):
        requireE2E("busybox", "curl", "prlimit")

    def startGuest(self, *args, mtu=1500, nofile=4096):
        """
        Start vpnkit with a C{--netns} guest at C{mtu} and give the guest
        its lease.

        @return: C{(vpnkit, guest)}.
        """
        self.workdir = self.makeWorkdir()
        guest = Namespace(self, "g")
        vpnkit = self.startVPNKit(
            "--mtu", str(mtu), "--netns", guest.name, *args, workdir=self.workdir, nofile=nofile
        )
        self.assertEqual(guest.dhcp(self)["ip"], "192.168.65.3")
        return vpnkit, guest

    def onHost(self, vpnkit, command, *args, listening=True):
        """
        Run a tool in vpnkit's namespace (the host); wait until a server
        listens.
        """
        tool = Tool(self, vpnkit.namespace, self.workdir, command, *args)
        if listening:
            tool.waitListening()
        return tool

    def inGuest(self, guest, command, *args):
        return Tool(self, guest, self.workdir, command, *args)

    def assertNothingLeft(self, vpnkit, sockets=0, timeout=15):
        """
        Within C{timeout} seconds (TIME-WAIT is 2 s), vpnkit holds no TCP
        connection, no connect in flight and no more host sockets than
        C{sockets}.

        @return: the last statistics.
        """
        last = {}

        def clean():
            last["stats"] = stats = vpnkit.stats()
            last["sockets"] = vpnkit.sockets()
            tcp = stats["tcp"]
            return tcp["connections"] == [] and tcp["pending"] == 0 and last["sockets"] <= sockets

        try:
            waitFor(clean, timeout, "vpnkit to forget every connection", interval=0.5)
        except AssertionError:
            tcp = last["stats"]["tcp"]
            self.fail(
                f"after {timeout}s vpnkit still holds {len(tcp['connections'])} connections "
                f"(first: {tcp['connections'][:3]}), {tcp['pending']} pending, "
                f"{last['sockets']} sockets (expected at most {sockets})"
            )
        return last["stats"]

    def transfer(self, vpnkit, guest, size, upload, port, seed=7, timeout=60, hostArgs=(),
                 guestArgs=(), during=None, dial=HOST_ALIAS, check=True):
        """
        Move C{size} seeded bytes guest -> host (C{upload}) or host ->
        guest over one connection, check both ends saw the same bytes and
        the end of the stream, and return (sender's, receiver's) results.

        @param timeout: seconds both tools may take.
        @param during: called with the receiving tool while the transfer
            runs.
        @param check: if false, return the results without checking them.
        """
        expect = ("--expect", size)
        if upload:
            receiver = self.onHost(vpnkit, "recv", "--listen", f"127.0.0.1:{port}",
                                   "--timeout", timeout, *expect, *hostArgs)
            sender = self.inGuest(guest, "send", "--connect", f"{dial}:{port}", "--size", size,
                                  "--seed", seed, "--timeout", timeout, *guestArgs)
        else:
            sender = self.onHost(vpnkit, "send", "--listen", f"127.0.0.1:{port}", "--size", size,
                                 "--seed", seed, "--timeout", timeout, *hostArgs)
            receiver = self.inGuest(guest, "recv", "--connect", f"{dial}:{port}",
                                    "--timeout", timeout, *expect, *guestArgs)
        if during is not None:
            during(receiver)
        got = receiver.result(timeout + 10)
        sent = sender.result(30)
        if not check:
            return sent, got
        self.assertEqual(sent.get("sent"), size, f"sender: {sent}")
        self.assertIsNone(
            got.get("error"),
            f"receiver failed ('noEOF': every byte arrived, the end of the stream did "
            f"not): {got}",
        )
        self.assertEqual(got["received"], size)
        self.assertEqual(got["sha256"], sent["sha256"])
        return sent, got


class TCPEndToEndTests(TCPTestsMixin, SynchronousTestCase):
    """
    Guest TCP over the direct tap transport.
    """

    def test_curlThroughHostAliasAndRemote(self):
        """
        curl in the guest fetches a body from a server on the host's
        127.0.0.1 through the host alias, and another from a "remote"
        address on vpnkit's loopback listening on the same port; each body
        is byte-identical to what its server sent, so the alias reaches
        127.0.0.1 and the remote address is dialled as it is.
        """
        vpnkit, guest = self.startGuest()
        vpnkit.namespace.addAddress(f"{REMOTE}/32")
        local = self.onHost(vpnkit, "serve-http", "--listen", "127.0.0.1:8080",
                            "--size", 3 * MiB + 17, "--seed", 1)
        remote = self.onHost(vpnkit, "serve-http", "--listen", f"{REMOTE}:8080",
                             "--size", 2 * MiB + 5, "--seed", 2)
        for server, url in ((local, f"http://{HOST_ALIAS}:8080/a"), (remote, f"http://{REMOTE}:8080/b")):
            expected = server.results()[0]
            body = self.workdir / "body"
            result = guest.run(
                ["curl", "-sS", "--noproxy", "*", "--max-time", "30", "-o", str(body), url],
                timeout=40,
                check=False,
            )
            self.assertEqual(result.returncode, 0, f"curl {url}: {result.stderr}")
            data = body.read_bytes()
            self.assertEqual(len(data), expected["size"], url)
            self.assertEqual(hashlib.sha256(data).hexdigest(), expected["sha256"], url)
        self.assertNotEqual(local.results()[0]["sha256"], remote.results()[0]["sha256"])
        self.assertNothingLeft(vpnkit)

    # -- bulk transfers ----------------------------------------------------

    def bulk(self, mtu, upload):
        vpnkit, guest = self.startGuest(mtu=mtu)
        start = time.monotonic()
        # 256 MiB take 1.5-6 s here; 60 s is a generous bound (36 Mbit/s).
        self.transfer(vpnkit, guest, 256 * MiB, upload, 5001, timeout=60)
        elapsed = time.monotonic() - start
        stats = self.assertNothingLeft(vpnkit)
        tcp = stats["counters"]["tcp"]
        self.assertEqual((tcp["connectionsOpened"], tcp["connectionsClosed"]), (1, 1))
        self.assertEqual(tcp["resetsSent"], 0)
        self.assertEqual(stats["counters"]["link"]["txQueueFull"], 0)
        return elapsed

    def test_bulkGuestToHostMTU1500(self):
        """
        256 MiB from the guest to a host server at MTU 1500 arrive intact
        (SHA-256), with the guest's FIN delivered as EOF; no state is left.
        """
        self.bulk(1500, upload=True)

    def test_bulkHostToGuestMTU1500(self):
        """
        256 MiB from a host server to the guest at MTU 1500 arrive intact,
        and the host's close reaches the guest as EOF.
        """
        self.bulk(1500, upload=False)

    def test_bulkGuestToHostMTU65520(self):
        """
        256 MiB guest -> host at MTU 65520 (MSS 65480) arrive intact.
        """
        self.bulk(65520, upload=True)

    def test_bulkHostToGuestMTU65520(self):
        """
        256 MiB host -> guest at MTU 65520 arrive intact.
        """
        self.bulk(65520, upload=False)

    # -- half-close ----------------------------------------------------------

    def test_guestHalfCloses(self):
        """
        The guest writes a line and shuts down its sending side; the host
        server reads the line and then EOF, replies, and the guest still
        reads the reply (and then the host's EOF).
        """
        vpnkit, guest = self.startGuest()
        server = self.onHost(vpnkit, "halfclose-server", "--listen", "127.0.0.1:5100",
                             "--mode", "guest-first", "--timeout", 20)
        client = self.inGuest(guest, "halfclose-client", "--connect", f"{HOST_ALIAS}:5100",
                              "--mode", "guest-first", "--timeout", 20)
        self.assertEqual(
            server.result(30), {"received": "hello from the guest\n", "eof": True}
        )
        self.assertEqual(
            client.result(30), {"received": "reply to hello from the guest\n", "eof": True}
        )
        self.assertNothingLeft(vpnkit)

    def test_hostHalfCloses(self):
        """
        The host server writes a line and shuts down its sending side; the
        guest reads the line and EOF, then writes a reply, which the host
        receives.
        """
        vpnkit, guest = self.startGuest()
        server = self.onHost(vpnkit, "halfclose-server", "--listen", "127.0.0.1:5101",
                             "--mode", "host-first", "--timeout", 20)
        client = self.inGuest(guest, "halfclose-client", "--connect", f"{HOST_ALIAS}:5101",
                              "--mode", "host-first", "--timeout", 20)
        self.assertEqual(
            client.result(30),
            {"line": "hello from the host\n", "afterLine": "", "eof": True},
        )
        self.assertEqual(
            server.result(30), {"received": "reply to hello from the host\n", "eof": True}
        )
        self.assertNothingLeft(vpnkit)

    # -- failures ------------------------------------------------------------

    def test_closedPortRefused(self):
        """
        A connect to a host port nobody listens on fails in the guest with
        ECONNREFUSED within a second (vpnkit answers the SYN with RST once
        its own connect is refused); the same for a closed port of a
        remote address.
        """
        vpnkit, guest = self.startGuest()
        vpnkit.namespace.addAddress(f"{REMOTE}/32")
        for target in (f"{HOST_ALIAS}:5999", f"{REMOTE}:5999"):
            probe = self.inGuest(guest, "probe", "--connect", target, "--timeout", 10)
            result = probe.result(20)
            self.assertEqual(result["connect"], "ECONNREFUSED", target)
            self.assertLess(result["connectSeconds"], 1.0, target)
        stats = self.assertNothingLeft(vpnkit)
        self.assertEqual(stats["counters"]["tcp"]["connectRefused"], 2)

    def test_hostResetReachesGuest(self):
        """
        A host server that accepts, reads, then closes with SO_LINGER 0
        (RST): the guest's connection is reset (ECONNRESET on its read).
        """
        vpnkit, guest = self.startGuest()
        server = self.onHost(vpnkit, "reset-server", "--listen", "127.0.0.1:5200",
                             "--timeout", 20, "--wait", 5)
        probe = self.inGuest(guest, "probe", "--connect", f"{HOST_ALIAS}:5200",
                             "--send", "hello\n", "--timeout", 10)
        result = probe.result(20)
        self.assertEqual(server.result(10), {"reset": True, "received": "hello\n"})
        self.assertEqual(result["connect"], "connected")
        self.assertEqual(result["read"], "ECONNRESET", result)
        self.assertLess(result["seconds"], 5.0)
        self.assertNothingLeft(vpnkit)

    def test_blackHoleConnectTimeout(self):
        """
        With C{--connect-timeout 3}, a SYN to an address whose packets are
        silently discarded on the host side fails in the guest after about
        3 s (vpnkit gives up and resets), instead of never.
        """
        vpnkit, guest = self.startGuest("--connect-timeout", "3")
        blackHole(vpnkit.namespace, "203.0.113.0/24")
        # The black hole really swallows: a connect from vpnkit's own
        # namespace hangs rather than failing.
        check = self.onHost(vpnkit, "probe", "--connect", "203.0.113.7:80", "--timeout", 1.5,
                            listening=False)
        self.assertEqual(check.result(10)["connect"], "timeout")
        probe = self.inGuest(guest, "probe", "--connect", "203.0.113.7:80", "--timeout", 30)
        result = probe.result(40)
        self.assertIn(result["connect"], ("ECONNREFUSED", "ECONNRESET"), result)
        self.assertGreaterEqual(result["connectSeconds"], 2.5)
        self.assertLessEqual(result["connectSeconds"], 10.0)
        stats = self.assertNothingLeft(vpnkit)
        self.assertEqual(stats["counters"]["tcp"]["connectTimeout"], 1)

    # -- many connections ---------------------------------------------------

    def test_thousandConcurrentConnections(self):
        """
        1,000 connections from the guest are open at once (vpnkit holds
        1,000 host sockets and 1,000 ESTABLISHED connections), each echoes
        its own 1,000 bytes and closes; afterwards vpnkit holds no host
        socket and no connection state.
        """
        count = 1000
        vpnkit, guest = self.startGuest(nofile=8192)
        server = self.onHost(vpnkit, "echo-server", "--listen", "127.0.0.1:7000",
                             "--nofile", 8192)
        before = vpnkit.sockets()
        client = self.inGuest(guest, "many", "--connect", f"{HOST_ALIAS}:7000", "--count", count,
                              "--bytes", 1000, "--hold", 4, "--timeout", 120)
        client.waitForLog("HOLDING ", timeout=120)
        held = vpnkit.sockets() - before
        stats = vpnkit.stats()
        states = {}
        for connection in stats["tcp"]["connections"]:
            states[connection["state"]] = states.get(connection["state"], 0) + 1
        result = client.result(150)
        self.assertEqual(
            result | {"connectSeconds": 0, "echoSeconds": 0, "seconds": 0},
            {
                "count": count,
                "connected": count,
                "verified": count,
                "closed": count,
                "errors": {},
                "connectSeconds": 0,
                "echoSeconds": 0,
                "seconds": 0,
            },
        )
        self.assertEqual(held, count)
        self.assertEqual(states, {"ESTABLISHED": count})
        stats = self.assertNothingLeft(vpnkit, sockets=before, timeout=20)
        tcp = stats["counters"]["tcp"]
        self.assertEqual((tcp["connectionsOpened"], tcp["connectionsClosed"]), (count, count))
        self.assertTrue(server.alive())

    # -- slow readers --------------------------------------------------------

    def sampleRSS(self, vpnkit, seconds, interval=0.5):
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(vpnkit.rss())
            time.sleep(interval)
        return samples

    def slowReader(self, upload):
        """
        200 MiB towards a reader that takes 1 MiB/s for 15 s, then reads
        at full speed.  vpnkit's RSS is sampled every 0.5 s through the
        slow phase.

        The bound is the baseline RSS (after the lease, before the
        connection) plus 64 MiB.  What vpnkit may hold for one connection:
        its receive buffer (1 MiB) towards the host, or its send buffer
        (high water 1 MiB plus at most one 1 MiB read from the host socket
        before the pause takes effect) towards the guest, and Twisted's
        write buffer of the host transport, which pauses its producer at
        64 KiB; about 4 MiB in all.  The rest of the allowance is for the
        allocator's slack (short-lived bytes objects of up to 1 MiB) and
        the Python heap's growth while segments are in flight.  A proxy
        that buffered instead of pushing back would pass 64 MiB within
        seconds, since the sender offers well over 100 MiB/s.
        """
        vpnkit, guest = self.startGuest()
        baseline = vpnkit.rss()
        size = 200 * MiB
        slow = ("--slow-rate", MiB, "--slow-seconds", 15)
        observed = {}

        def during(receiver):
            observed["samples"] = self.sampleRSS(vpnkit, 14.5)
            # Still in the slow phase: vpnkit has taken from the sender
            # only about what the reader read, plus the buffers on the way.
            stats = vpnkit.stats()
            observed["connections"] = stats["tcp"]["connections"]

        sent, got = self.transfer(
            vpnkit,
            guest,
            size,
            upload,
            5300,
            hostArgs=slow if upload else (),
            guestArgs=() if upload else slow,
            during=during,
            timeout=90,
        )
        samples = observed["samples"]
        bound = baseline + 64 * MiB
        self.assertGreaterEqual(len(samples), 25)
        self.assertLess(
            max(samples),
            bound,
            f"RSS rose from {baseline >> 20} MiB to {max(samples) >> 20} MiB "
            f"(samples in MiB: {[s >> 20 for s in samples]})",
        )
        # The reader was slow for 15 s at 1 MiB/s.
        self.assertGreater(got["slowBytes"], 10 * MiB)
        self.assertLess(got["slowBytes"], 17 * MiB)
        (connection,) = observed["connections"]
        moved = connection["bytesFromGuest"] if upload else connection["bytesToGuest"]
        # What crossed vpnkit by the end of the slow phase is what the
        # reader took plus the buffers in between: at most the reader's
        # kernel receive buffer (tcp_rmem max, 6 MiB), vpnkit's host socket
        # send buffer (tcp_wmem max, 4 MiB), Twisted's 64 KiB and vpnkit's
        # own 1 MiB, so well under 16 MiB more; far from 200 MiB.
        self.assertLess(moved, got["slowBytes"] + 16 * MiB, connection)
        self.assertNothingLeft(vpnkit)

    def test_slowHostReaderBoundsMemory(self):
        """
        The guest sends 200 MiB to a host reader that drains 1 MiB/s for
        15 s: vpnkit's RSS stays under baseline + 64 MiB (the window to the
        guest closes instead), then all 200 MiB arrive intact.
        """
        self.slowReader(upload=True)

    def test_slowGuestReaderBoundsMemory(self):
        """
        A host server sends 200 MiB to a guest that reads 1 MiB/s for
        15 s: vpnkit's RSS stays under baseline + 64 MiB (it pauses reading
        the host socket instead), then all 200 MiB arrive intact.
        """
        self.slowReader(upload=False)


class LossyLinkTests(TCPTestsMixin, SynchronousTestCase):
    """
    64 MiB each way over a link that loses and reorders frames: vpnkit's
    retransmission, reassembly and the guest's must together deliver every
    byte.
    """

    size = 64 * MiB
    # Seconds each direction may take: 64 MiB in 90 s is under 6 Mbit/s.
    # The guest's own TCP sends the 64 MiB through this link in about 10 s.
    deadline = 90

    def bothWays(self, vpnkit, guest):
        """
        64 MiB guest -> host, then 64 MiB host -> guest, each within
        C{deadline} seconds; both are run before anything is asserted, so
        a failure reports both.

        @return: the seconds each took.
        """
        outcomes = []
        for upload, port in ((True, 5400), (False, 5401)):
            start = time.monotonic()
            sent, got = self.transfer(vpnkit, guest, self.size, upload, port, seed=port,
                                      timeout=self.deadline, check=False)
            outcomes.append((upload, sent, got, time.monotonic() - start))
        problems = []
        for upload, sent, got, seconds in outcomes:
            direction = "guest->host" if upload else "host->guest"
            if (
                got.get("error") is not None
                or got.get("received") != self.size
                or got.get("sha256") != sent.get("sha256")
                or sent.get("sent") != self.size
            ):
                problems.append(
                    f"{direction}: {got.get('received', 0) / MiB:.1f} of 64 MiB arrived "
                    f"in {seconds:.1f}s (receiver {got}, sender {sent})"
                )
        if problems:
            summary = ", ".join(
                f"{'up' if upload else 'down'} {seconds:.1f}s" for upload, _, _, seconds in outcomes
            )
            self.fail(f"{'; '.join(problems)} [{summary}]")
        return [seconds for _, _, _, seconds in outcomes]

    def test_netemLossAndReordering(self):
        """
        With C{netem loss 3% delay 1ms reorder 10% 50%} on the guest's tap
        (frames from the guest), 64 MiB each way arrive intact.
        """
        if not netemAvailable():
            raise SkipTest("sch_netem is not available in this kernel")
        vpnkit, guest = self.startGuest()
        guest.run(["tc", "qdisc", "add", "dev", "tap0", "root", "netem", "loss", "3%",
                   "delay", "1ms", "reorder", "10%", "50%"])
        self.bothWays(vpnkit, guest)
        stats = self.assertNothingLeft(vpnkit)
        self.assertEqual(stats["counters"]["tcp"]["connectionsOpened"], 2)

    def test_lossyRelay(self):
        """
        The guest attaches over the vmnet socket through a relay that drops
        3% of the frames and holds back 5% for 2 ms (so later frames
        overtake them) in each direction, from a seeded generator: 64 MiB
        each way arrive intact, and vpnkit retransmitted.
        """
        self.workdir = self.makeWorkdir()
        vmnetPath = self.workdir / "ethernet.sock"
        relayPath = self.workdir / "relay.sock"
        vpnkit = self.startVPNKit("--ethernet", str(vmnetPath), workdir=self.workdir)
        relay = self.onHost(vpnkit, "relay", "--listen", relayPath, "--connect", vmnetPath,
                            "--loss", 0.03, "--reorder", 0.05, "--delay", 0.002,
                            "--seed", 20240229, "--timeout", 30)
        guest = Namespace(self, "g")
        bridge = TapBridge(self, guest, relayPath, self.workdir)
        bridge.waitReady()
        self.assertEqual(guest.dhcp(self, timeout=40)["ip"], "192.168.65.3")
        self.bothWays(vpnkit, guest)
        # Two sockets are the link itself: the --ethernet listener and the
        # relay's connection to it.
        stats = self.assertNothingLeft(vpnkit, sockets=2)
        self.assertGreater(stats["counters"]["tcp"]["retransmits"], 0)
        relay.stop()
        (relayed,) = relay.results()
        for direction in ("toVPNKit", "toGuest"):
            counts = relayed[direction]
            self.assertGreater(counts["dropped"], counts["frames"] * 0.02, relayed)
            self.assertGreater(counts["reordered"], counts["frames"] * 0.03, relayed)
