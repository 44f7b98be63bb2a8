"""
End to end: port forwards from the host into a real Linux guest (static
C{--expose} and the HTTP API on a Unix socket), and forwards from the
gateway to the host (C{--tcpv4-forwards}, C{--udpv4-forwards},
C{--gateway-forwards FILE}).

Topology: vpnkit runs in a namespace of its own that has only a loopback
interface; that namespace is "the host" here: the forwards' listeners are on
its 127.0.0.1, and the clients (C{curl}, L{tests.e2e.forwardtools}) and the
host-side servers run there (C{ip netns exec}).  The guest is another
namespace attached with C{--netns}; it takes its lease with busybox
C{udhcpc} (192.168.65.3) and runs the servers the forwards reach.  Every
vpnkit gets C{--dns} and C{--hosts} files of the test's own, so the
machine's resolver is never used and nothing leaves the machine.

Sockets the test itself opens in vpnkit's namespace come from
L{forwardtools.socketIn} (created by a thread that entered the namespace).
"""

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import forwardtools
from tests.e2e.harness import E2EMixin, Namespace, VPNKit, _Process, requireE2E, waitFor

TOOLS = Path(__file__).with_name("forwardtools.py")
GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"
GUEST = "192.168.65.3"
MiB = 1 << 20

#: Transfer times measured by L{BulkTransferTests}, printed (run pytest
#: with -s to see them) and kept here for whoever imports the module.
TIMINGS = {}

#: How a connection may fail at once (rather than hang).
CLOSED = ("ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError")


class Tool(_Process):
    """
    C{forwardtools.py COMMAND ...} running inside a namespace.
    """

    def __init__(self, testCase, namespace, workdir, name, command, *args):
        argv = namespace.argv([sys.executable, "-u", str(TOOLS), command, *map(str, args)])
        super().__init__(testCase, argv, Path(workdir) / f"{name}.log")

    def waitListening(self, timeout=15):
        self.waitForLog("LISTENING ", timeout)

    def lines(self, prefix):
        return [line.split()[1:] for line in self.log().splitlines() if line.startswith(prefix + " ")]

    def result(self, timeout):
        """
        Wait (at most C{timeout} s) for the tool to exit; its last
        C{RESULT} line, parsed.
        """
        name = self.logPath.name
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not finish within {timeout}s:\n{self.log()}") from None
        results = [
            json.loads(line[len("RESULT ") :])
            for line in self.log().splitlines()
            if line.startswith("RESULT ")
        ]
        if not results:
            raise AssertionError(f"{name} exited {self.process.returncode}, no result:\n{self.log()}")
        return results[-1]


class UnixHTTPConnection(http.client.HTTPConnection):
    """
    C{http.client} over a Unix socket.
    """

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _outcome(sock, timeout):
    """
    What a connected socket sees within C{timeout} seconds: C{"eof"},
    C{"reset"}, C{"data"} or C{"timeout"}, and how long it took.
    """
    sock.settimeout(timeout)
    start = time.monotonic()
    try:
        data = sock.recv(65536)
        what = "data" if data else "eof"
    except ConnectionResetError:
        what = "reset"
    except socket.timeout:
        what = "timeout"
    return what, time.monotonic() - start


class _ForwardsMixin(E2EMixin):
    """
    vpnkit in its own namespace with a C{--netns} guest that has its
    lease; helpers for tools on either side, the API, and sockets in
    vpnkit's namespace.
    """

    def setUp(self):
        requireE2E("busybox", "curl", "dig")

    def start(self, *args, api=False, hosts="192.0.2.99 probe.test\n"):
        """
        Start vpnkit (with C{--api} on C{self.apiPath} when C{api}) and
        give the guest its lease.
        """
        self.workdir = self.makeWorkdir()
        self.apiPath = str(self.workdir / "api.sock")
        if api:
            args = ("--api", self.apiPath, *args)
        self.host = Namespace(self, "h")
        self.guest = Namespace(self, "g")
        dnsFile = self.workdir / "dns"
        dnsFile.write_text("# no upstream servers: nothing leaves the machine\n")
        self.hostsFile = self.workdir / "hosts"
        self.hostsFile.write_text(hosts)
        self.vpnkit = VPNKit(
            self,
            self.host,
            ["--netns", self.guest.name, "--dns", str(dnsFile), "--hosts", str(self.hostsFile), *args],
            self.workdir,
        )
        self.lease = self.guest.dhcp(self)
        self.assertEqual(self.lease["ip"], GUEST)
        return self.vpnkit

    _tools = 0

    def tool(self, namespace, command, *args, listening=False):
        self._tools += 1
        tool = Tool(self, namespace, self.workdir, f"{command}-{self._tools}", command, *args)
        if listening:
            tool.waitListening()
        return tool

    def webRoot(self):
        """
        A directory of pages: a small HTML page and a 300 KiB binary blob.
        """
        root = self.workdir / "www"
        root.mkdir(exist_ok=True)
        pages = {
            "index.html": b"<html><body>hello from the guest</body></html>\n",
            "blob.bin": forwardtools.patternBytes(42, 300 * 1024),
        }
        for name, content in pages.items():
            (root / name).write_bytes(content)
        return root, pages

    def curl(self, namespace, url, *extra, timeout=10):
        """
        C{curl} in C{namespace}: C{(exit status, body bytes, stderr)}.
        """
        result = subprocess.run(
            namespace.argv(["curl", "-sS", "--max-time", str(timeout), *extra, "-o", "-", url]),
            capture_output=True,
            timeout=timeout + 10,
        )
        return result.returncode, result.stdout, result.stderr.decode(errors="replace")

    def hostSocket(self, type=socket.SOCK_STREAM):
        """
        A socket in vpnkit's namespace (the host), closed at cleanup.
        """
        sock = forwardtools.socketIn(self.host.path, socket.AF_INET, type)
        self.addCleanup(sock.close)
        return sock

    def api(self, method, path, body=None):
        """
        One request to vpnkit's API: C{(status, body bytes)}.  C{body}: a
        value sent as JSON, or bytes sent as they are.
        """
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        connection = UnixHTTPConnection(self.apiPath)
        try:
            headers = {"content-type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def connectHost(self, port, timeout=5):
        """
        A TCP connection from vpnkit's namespace to 127.0.0.1:C{port}.
        """
        sock = self.hostSocket()
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        return sock

    def echoConnection(self, port):
        """
        A connection through the forward on C{port} to the guest's
        data-server in ECHO mode, checked to echo.
        """
        sock = self.connectHost(port)
        sock.sendall(b"ECHO\n")
        self.assertEqual(self.recvLine(sock), b"ECHO READY\n")
        sock.sendall(b"ping\n")
        self.assertEqual(self.recvLine(sock), b"ping\n")
        return sock

    def recvLine(self, sock, timeout=5):
        sock.settimeout(timeout)
        line = b""
        while not line.endswith(b"\n"):
            data = sock.recv(1)
            if not data:
                break
            line += data
        return line

    def guestTapMAC(self):
        words = self.guest.linkInfo().split()
        return words[words.index("link/ether") + 1]


class ExposeHTTPTests(_ForwardsMixin, SynchronousTestCase):
    """
    A guest's HTTP server reached from the host through a forward, static
    and through the API.
    """

    def checkPages(self, port, server):
        """
        C{curl} in vpnkit's namespace gets every page through
        127.0.0.1:C{port}, byte-identical, and the guest's server saw each
        request come from the host alias.
        """
        root, pages = self.webRoot()
        for name, content in pages.items():
            status, body, err = self.curl(self.host, f"http://127.0.0.1:{port}/{name}")
            self.assertEqual(status, 0, err)
            self.assertEqual(len(body), len(content), name)
            self.assertTrue(body == content, f"{name} differs")
        clients = server.lines("CLIENT")
        self.assertEqual(
            sorted(path for _, _, _, path in clients), sorted(f"/{name}" for name in pages)
        )
        self.assertEqual({host for host, _, _, _ in clients}, {HOST_ALIAS}, server.log())

    def test_staticExpose(self):
        """
        C{--expose tcp:127.0.0.1:18080:tcp:192.168.65.3:8000}: the pages of
        the guest's server on port 8000 come byte-identical to curl on the
        host's 127.0.0.1:18080; the guest sees the client as 192.168.65.2.
        """
        self.start("--expose", f"tcp:127.0.0.1:18080:tcp:{GUEST}:8000")
        root, _ = self.webRoot()
        server = self.tool(self.guest, "http-server", "0.0.0.0", 8000, root, listening=True)
        self.checkPages(18080, server)

    def test_apiExpose(self):
        """
        POST /services/forwarder/expose (curl over the API's Unix socket)
        answers the forward in force; the guest's pages then come through
        127.0.0.1:18081 byte-identical, from the host alias.
        """
        self.start(api=True)
        root, _ = self.webRoot()
        server = self.tool(self.guest, "http-server", "0.0.0.0", 8000, root, listening=True)
        request = {"local": "127.0.0.1:18081", "remote": f"{GUEST}:8000", "protocol": "tcp"}
        result = subprocess.run(
            [
                "curl", "-sS", "--max-time", "10", "--unix-socket", self.apiPath,
                "-X", "POST", "-H", "content-type: application/json",
                "-d", json.dumps(request), "-w", "\n%{http_code}",
                "http://localhost/services/forwarder/expose",
            ],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        body, _, code = result.stdout.rpartition("\n")
        self.assertEqual(code, "200", body)
        self.assertEqual(json.loads(body), request)
        self.checkPages(18081, server)


class BulkTransferTests(_ForwardsMixin, SynchronousTestCase):
    """
    256 MiB each way through a TCP forward, SHA-256 checked.
    """

    SIZE = 256 * MiB

    def test_download(self):
        """
        256 MiB from the guest's server to a host client through the
        forward arrive complete, with the SHA-256 of what was sent.
        """
        self.start("--expose", f"tcp:127.0.0.1:18082:tcp:{GUEST}:9000")
        self.tool(self.guest, "data-server", "0.0.0.0", 9000, listening=True)
        client = self.tool(self.host, "data-client", "127.0.0.1", 18082, "get", self.SIZE, 1)
        result = client.result(timeout=100)
        TIMINGS["download"] = result["seconds"]
        print(f"\n256 MiB download (guest -> host forward): {result['seconds']:.2f} s "
              f"({self.SIZE / MiB / result['seconds']:.1f} MiB/s)")  # fmt: skip
        self.assertEqual(result["bytes"], self.SIZE)
        self.assertEqual(result["sha256"], forwardtools.patternDigest(1, self.SIZE))

    def test_upload(self):
        """
        256 MiB from a host client to the guest's server through the
        forward arrive complete, with the SHA-256 of what was sent.
        """
        self.start("--expose", f"tcp:127.0.0.1:18082:tcp:{GUEST}:9000")
        self.tool(self.guest, "data-server", "0.0.0.0", 9000, listening=True)
        client = self.tool(self.host, "data-client", "127.0.0.1", 18082, "put", self.SIZE, 2)
        result = client.result(timeout=100)
        TIMINGS["upload"] = result["seconds"]
        print(f"\n256 MiB upload (host -> guest forward): {result['seconds']:.2f} s "
              f"({self.SIZE / MiB / result['seconds']:.1f} MiB/s)")  # fmt: skip
        self.assertEqual(result["sha256"], forwardtools.patternDigest(2, self.SIZE))
        self.assertEqual(result["serverBytes"], self.SIZE)
        self.assertEqual(result["serverSha256"], result["sha256"])


class UDPForwardTests(_ForwardsMixin, SynchronousTestCase):
    """
    A UDP forward into the guest.
    """

    SIZES = [1, 4, 511, 1023, 2034, 2035, 4095, 8191, 9215, 9000]

    def test_echo(self):
        """
        Datagrams of 1 to 9215 bytes sent to 127.0.0.1:5301 reach the
        guest's echo server on 5301 (from the host alias) and come back
        byte-identical (the larger ones fragmented both ways on the guest's
        1500-byte link).
        """
        self.start("--expose", f"udp:127.0.0.1:5301:udp:{GUEST}:5301")
        echo = self.tool(self.guest, "udp-echo", "0.0.0.0", 5301, listening=True)
        client = self.tool(self.host, "udp-client", "127.0.0.1", 5301, *self.SIZES)
        results = client.result(timeout=len(self.SIZES) * 6 + 10)["sizes"]
        failed = [r for r in results if not r["ok"]]
        self.assertEqual(
            failed, [], f"not echoed byte-identical (guest saw {echo.lines('SEEN')})"
        )
        self.assertEqual([r["size"] for r in results], self.SIZES)
        self.assertEqual({host for host, _, _ in echo.lines("SEEN")}, {HOST_ALIAS})


class APITests(_ForwardsMixin, SynchronousTestCase):
    """
    The HTTP API on its Unix socket.
    """

    EXPOSE = {"local": "127.0.0.1:18083", "remote": f"{GUEST}:9000", "protocol": "tcp"}

    def test_exposeListUnexpose(self):
        """
        expose -> GET /services/forwarder/all lists it -> unexpose -> the
        list is empty and a new connection to the port is refused.
        """
        self.start(api=True)
        self.tool(self.guest, "data-server", "0.0.0.0", 9000, listening=True)
        self.assertEqual(self.api("GET", "/services/forwarder/all"), (200, b"[]\n"))
        status, body = self.api("POST", "/services/forwarder/expose", self.EXPOSE)
        self.assertEqual((status, json.loads(body)), (200, self.EXPOSE))
        status, body = self.api("GET", "/services/forwarder/all")
        self.assertEqual((status, json.loads(body)), (200, [self.EXPOSE]))
        self.echoConnection(18083).close()
        status, body = self.api(
            "POST", "/services/forwarder/unexpose", {"local": "127.0.0.1:18083", "protocol": "tcp"}
        )
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(self.api("GET", "/services/forwarder/all")[1]), [])
        self.assertRaises(ConnectionRefusedError, self.connectHost, 18083)
        # Unexposing again: no such forward.
        status, body = self.api(
            "POST", "/services/forwarder/unexpose", {"local": "127.0.0.1:18083", "protocol": "tcp"}
        )
        self.assertEqual(status, 404, body)

    def test_errors(self):
        """
        A port another process holds -> 409 with the reference's exact
        message (TCP and UDP); the same local address exposed twice -> 409;
        malformed JSON -> 400; and none of them left a forward behind.
        """
        self.start(api=True)
        busy = self.hostSocket()
        busy.bind(("127.0.0.1", 18084))
        busy.listen()
        status, body = self.api(
            "POST",
            "/services/forwarder/expose",
            {"local": "127.0.0.1:18084", "remote": f"{GUEST}:9000", "protocol": "tcp"},
        )
        self.assertEqual(status, 409)
        self.assertEqual(
            body.decode().rstrip("\n"), "Bind for 127.0.0.1:18084 failed: port is already allocated"
        )
        busyUDP = self.hostSocket(socket.SOCK_DGRAM)
        busyUDP.bind(("127.0.0.1", 18085))
        status, body = self.api(
            "POST",
            "/services/forwarder/expose",
            {"local": "127.0.0.1:18085", "remote": f"{GUEST}:9000", "protocol": "udp"},
        )
        self.assertEqual(
            (status, body.decode().rstrip("\n")),
            (409, "Bind for 127.0.0.1:18085 failed: port is already allocated"),
        )

        status, body = self.api("POST", "/services/forwarder/expose", self.EXPOSE)
        self.assertEqual(status, 200, body)
        again = dict(self.EXPOSE, remote=f"{GUEST}:9001")
        status, body = self.api("POST", "/services/forwarder/expose", again)
        self.assertEqual(status, 409, body)
        self.assertEqual(
            body.decode().rstrip("\n"), "Bind for 127.0.0.1:18083 failed: port is already allocated"
        )

        for bad in (b"{", b'{"local": "127.0.0.1:18086", "remote": ', b"\xff\xfe", b"[1, 2"):
            status, body = self.api("POST", "/services/forwarder/expose", bad)
            self.assertEqual(status, 400, (bad, body))
        status, body = self.api("GET", "/services/forwarder/all")
        self.assertEqual((status, json.loads(body)), (200, [self.EXPOSE]))
        self.assertTrue(self.vpnkit.alive())

    def test_socketModeLeasesStats(self):
        """
        The API socket is mode 0600; /services/dhcp/leases maps the
        guest's address to its tap's MAC; /stats is JSON with the counters
        (the forwarded connection counted).
        """
        self.start(api=True)
        mode = os.stat(self.apiPath).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(oct(stat.S_IMODE(mode)), oct(0o600))

        status, body = self.api("GET", "/services/dhcp/leases")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {GUEST: self.guestTapMAC()})
        self.assertEqual(self.guestTapMAC(), "02:50:00:00:00:01")

        self.tool(self.guest, "data-server", "0.0.0.0", 9000, listening=True)
        self.assertEqual(self.api("POST", "/services/forwarder/expose", self.EXPOSE)[0], 200)
        self.echoConnection(18083).close()
        status, body = self.api("GET", "/stats")
        self.assertEqual(status, 200, body)
        stats = json.loads(body)
        counters = stats["counters"]
        self.assertGreaterEqual(counters["tcp"]["outboundOpened"], 1)
        self.assertGreaterEqual(counters["dhcp"]["ack"], 1)
        self.assertGreater(counters["link"]["framesIn"], 0)
        self.assertTrue(all(isinstance(v, int) for layer in counters.values() for v in layer.values()))
        self.assertEqual([g["ip"] for g in stats["guests"]], [GUEST])


class GatewayForwardTests(_ForwardsMixin, SynchronousTestCase):
    """
    Forwards from the gateway to the host.
    """

    def test_tcpForward(self):
        """
        C{--tcpv4-forwards 8888:127.0.0.1:8888}: the guest's curl to
        192.168.65.1:8888 gets the pages of the host's server on
        127.0.0.1:8888, byte-identical.
        """
        self.start("--tcpv4-forwards", "8888:127.0.0.1:8888")
        root, pages = self.webRoot()
        server = self.tool(self.host, "http-server", "127.0.0.1", 8888, root, listening=True)
        for name, content in pages.items():
            status, body, err = self.curl(self.guest, f"http://{GATEWAY}:8888/{name}")
            self.assertEqual(status, 0, err)
            self.assertTrue(body == content, f"{name} differs ({len(body)} bytes)")
        self.assertEqual(len(server.lines("CLIENT")), len(pages))
        self.assertEqual({c[0] for c in server.lines("CLIENT")}, {"127.0.0.1"})

    def dig(self, *args):
        result = self.guest.run(
            ["dig", f"@{GATEWAY}", "+time=2", "+tries=1", "+short", *args], timeout=15, check=False
        )
        return result.stdout.split()

    def test_udpForwardOverridesDNS(self):
        """
        C{--udpv4-forwards 53:127.0.0.1:5300}: the guest's DNS queries over
        UDP to the gateway reach the host's responder and get its answer,
        not vpnkit's (its hosts file and builtin names); TCP/53, not
        forwarded, is still vpnkit's own DNS.
        """
        self.start("--udpv4-forwards", "53:127.0.0.1:5300")
        responder = self.tool(
            self.host, "dns-responder", "127.0.0.1", 5300, "198.51.100.53", listening=True
        )
        self.assertEqual(self.dig("probe.test"), ["198.51.100.53"])
        self.assertEqual(self.dig("host.internal"), ["198.51.100.53"])
        self.assertEqual([q[0] for q in responder.lines("QUERY")], ["probe.test", "host.internal"])
        self.assertEqual(self.dig("+tcp", "probe.test"), ["192.0.2.99"])
        self.assertEqual(self.dig("+tcp", "host.internal"), [HOST_ALIAS])
        self.assertEqual(len(responder.lines("QUERY")), 2)

    def test_gatewayForwardsFile(self):
        """
        C{--gateway-forwards FILE}: a forward of the file works; one added
        to the file works within 5 s without restarting vpnkit; one removed
        stops working within 5 s.
        """
        entry = lambda port: {  # noqa: E731
            "protocol": "tcp", "external_port": port, "internal_ip": "127.0.0.1", "internal_port": port,
        }  # fmt: skip
        # The file must exist before vpnkit: write it into a directory of
        # our own first, then hand its path over.
        forwardsDir = self.makeWorkdir()
        path = forwardsDir / "forwards.json"
        path.write_text(json.dumps([entry(9001)]))
        vpnkit = self.start("--gateway-forwards", str(path))
        root, pages = self.webRoot()
        for port in (9001, 9002):
            self.tool(self.host, "http-server", "127.0.0.1", port, root, listening=True)

        def fetch(port):
            return self.curl(self.guest, f"http://{GATEWAY}:{port}/index.html", timeout=2)

        self.assertEqual(fetch(9001)[:2], (0, pages["index.html"]))
        status, _, err = fetch(9002)
        self.assertEqual(status, 7, err)  # connection refused

        path.write_text(json.dumps([entry(9001), entry(9002)]))
        changed = time.monotonic()
        waitFor(lambda: fetch(9002)[:2] == (0, pages["index.html"]), 5, "the added forward of 9002")
        print(f"\n--gateway-forwards: an added forward worked after {time.monotonic() - changed:.2f} s")

        path.write_text(json.dumps([entry(9002)]))
        waitFor(lambda: fetch(9001)[0] == 7, 5, "the removed forward of 9001 to be refused")
        self.assertEqual(fetch(9002)[:2], (0, pages["index.html"]))
        self.assertTrue(vpnkit.alive())


class ForwardLifecycleTests(_ForwardsMixin, SynchronousTestCase):
    """
    Forwards that stop, and guests that go away.
    """

    def test_unexposeClosesConnections(self):
        """
        Unexposing a forward closes its live connection (the client sees
        EOF or a reset within 2 s) and its listener (a new connection is
        refused).
        """
        self.start(api=True)
        self.tool(self.guest, "data-server", "0.0.0.0", 9000, listening=True)
        expose = {"local": "127.0.0.1:18083", "remote": f"{GUEST}:9000", "protocol": "tcp"}
        self.assertEqual(self.api("POST", "/services/forwarder/expose", expose)[0], 200)
        live = self.echoConnection(18083)
        status, body = self.api("POST", "/services/forwarder/unexpose", expose)
        self.assertEqual(status, 200, body)
        what, elapsed = _outcome(live, 3)
        self.assertIn(what, ("eof", "reset"))
        self.assertLess(elapsed, 2)
        self.assertRaises(ConnectionRefusedError, self.connectHost, 18083)

    def checkGuestGone(self, removeGuest):
        """
        With a live connection through a forward into the guest, make the
        guest go away with C{removeGuest}: the live connection is closed
        within 2 s, new connections through the forward are closed within
        2 s (not left hanging), and vpnkit lets the guest go within 5 s (no
        guest in /stats, its lease given back).
        """
        self.start("--expose", f"tcp:127.0.0.1:18084:tcp:{GUEST}:9000", api=True)
        self.tool(self.guest, "data-server", "0.0.0.0", 9000, listening=True)
        live = self.echoConnection(18084)
        leases = json.loads(self.api("GET", "/services/dhcp/leases")[1])
        self.assertEqual(leases, {GUEST: self.guestTapMAC()})
        removeGuest()
        what, elapsed = _outcome(live, 5)
        self.assertIn(what, ("eof", "reset"))
        self.assertLess(elapsed, 2)
        # New connections are accepted by the listener, which still exists,
        # then closed at once.
        for _ in range(3):
            start = time.monotonic()
            try:
                sock = self.connectHost(18084)
                sock.sendall(b"ECHO\n")
                what, _ = _outcome(sock, 5)
            except OSError as e:
                what = type(e).__name__
            elapsed = time.monotonic() - start
            self.assertIn(what, ("eof", "reset") + CLOSED)
            self.assertLess(elapsed, 2)
        self.assertTrue(self.vpnkit.alive())
        waitFor(
            lambda: json.loads(self.api("GET", "/stats")[1])["guests"] == [],
            5,
            "vpnkit to let the guest go (GET /stats lists no guest)",
        )
        self.assertEqual(json.loads(self.api("GET", "/services/dhcp/leases")[1]), {})
        self.assertIn("is gone", self.vpnkit.log())

    def test_guestTapDeleted(self):
        """
        The guest's tap deleted (C{ip link del tap0}): its live forwarded
        connection and every new one are closed within 2 s, not left
        hanging.
        """
        self.checkGuestGone(lambda: self.guest.run(["ip", "link", "del", "tap0"]))

    def test_guestNamespaceDeleted(self):
        """
        The guest's namespace deleted (its processes killed): the same.
        """
        self.checkGuestGone(lambda: self.guest.delete())
