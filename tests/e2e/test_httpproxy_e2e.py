"""
End to end: a real guest's HTTP and HTTPS through vpnkit's proxy to a real
upstream proxy (Debian's C{tinyproxy}) and real origin servers.

Everything beyond the guest lives in vpnkit's namespace, on documentation
addresses added to its loopback: tinyproxy on 198.51.100.10:8888 (with
C{BasicAuth}, so vpnkit's credentials are checked, and its log read back),
two TLS terminators in front of it on 198.51.100.20 (a certificate the
test CA signed for that address) and 198.51.100.21 (a certificate for
another name) for C{https://} upstreams, origins on 192.0.2.10 (HTTP and
HTTPS as C{origin.test}) and 203.0.113.10 (HTTP).  tinyproxy resolves
C{origin.test} through the namespace's own C{/etc/netns/NAME/hosts}.  The
guest runs C{curl}, trusting the test CA with C{--cacert}.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import E2EMixin, Namespace, _Process, requireE2E, waitFor
from tests.e2e.httptools import blobDigest

HTTPTOOLS = Path(__file__).with_name("httptools.py")
PROXY = "198.51.100.10"
TLS_PROXY = "198.51.100.20"
BAD_TLS_PROXY = "198.51.100.21"
DEAD_PROXY = "198.51.100.99"
ORIGIN = "192.0.2.10"
OTHER = "203.0.113.10"
AUTH = "user:password"
MiB = 1 << 20
TINYPROXY_CONF = """\
User nobody
Group nogroup
Port 8888
Listen {listen}
Timeout 60
LogFile "{log}"
LogLevel Info
MaxClients 50
BasicAuth user password
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def makeCA(workdir):
    """
    A test CA and leaf certificates: C{origin} (origin.test, 192.0.2.10),
    C{proxy} (198.51.100.20) and C{wrong} (wrong.test, signed by the same
    CA but for another name).
    """
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=vpnkit e2e CA", cwd=workdir)  # fmt: skip
    leaves = {
        "origin": ("origin.test", f"DNS:origin.test,IP:{ORIGIN}"),
        "proxy": (TLS_PROXY, f"IP:{TLS_PROXY}"),
        "wrong": ("wrong.test", "DNS:wrong.test"),
    }
    for name, (cn, san) in leaves.items():
        (workdir / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={cn}", cwd=workdir)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                f"{name}.ext", cwd=workdir)  # fmt: skip


class HTTPProxyE2ETests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        requireE2E("busybox", "curl", "openssl", "tinyproxy")
        self.workdir = self.makeWorkdir()
        # tinyproxy drops to nobody: it must reach its log.
        os.chmod(self.workdir, 0o755)
        makeCA(self.workdir)

    # -- set-up ----------------------------------------------------------------

    def start(self, config=None):
        """
        vpnkit with a C{--netns} guest, C{--http} (when given), the API and
        the test CA; tinyproxy, the terminators and the origins in its
        namespace.
        """
        w = self.workdir
        self.httpFile = w / "http.json"
        if config is not None:
            self.httpFile.write_text(json.dumps(config))
        self.api = w / "http-api.sock"
        self.guest = Namespace(self, "g")
        self.vpnkit = self.startVPNKit(
            "--netns", self.guest.name, "--http", str(self.httpFile),
            "--http-api-path", str(self.api), "--http-ca", str(w / "ca.pem"),
            workdir=w,
        )  # fmt: skip
        ns = self.vpnkit.namespace
        for address in (PROXY, TLS_PROXY, BAD_TLS_PROXY, DEAD_PROXY, ORIGIN, OTHER):
            ns.addAddress(f"{address}/32")
        # tinyproxy resolves origin.test through the namespace's hosts file.
        etc = Path("/etc/netns") / ns.name
        etc.mkdir(parents=True, exist_ok=True)
        self.addCleanup(shutil.rmtree, etc, True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{ORIGIN} origin.test\n")
        self.proxyLog = w / "tinyproxy.log"
        self.proxyLog.touch()
        os.chmod(self.proxyLog, 0o666)
        conf = w / "tinyproxy.conf"
        conf.write_text(TINYPROXY_CONF.format(listen=PROXY, log=self.proxyLog))
        self.spawn(ns, ["tinyproxy", "-d", "-c", str(conf)], "tinyproxy", listening=False)
        waitFor(lambda: "Accepting connections" in self.proxyLog.read_text(errors="replace")
                or "listening on" in self.proxyLog.read_text(errors="replace").lower(),
                15, "tinyproxy to listen")  # fmt: skip
        self.tool(ns, "origin", "--listen", f"{ORIGIN}:80", "--name", "origin")
        self.tool(ns, "origin", "--listen", f"{ORIGIN}:443", "--name", "origin-tls",
                  "--tls", w / "origin.pem", w / "origin.key")  # fmt: skip
        self.otherOrigin = self.tool(ns, "origin", "--listen", f"{OTHER}:80", "--name", "other")
        self.tool(ns, "terminate", "--listen", f"{TLS_PROXY}:3443",
                  "--tls", w / "proxy.pem", w / "proxy.key", "--to", f"{PROXY}:8888")  # fmt: skip
        self.tool(ns, "terminate", "--listen", f"{BAD_TLS_PROXY}:3443",
                  "--tls", w / "wrong.pem", w / "wrong.key", "--to", f"{PROXY}:8888")  # fmt: skip
        self.assertEqual(self.guest.dhcp(self)["ip"], "192.168.65.3")

    def spawn(self, ns, argv, name, listening=True):
        process = _Process(self, ns.argv(argv), self.workdir / f"{name}.log")
        if listening:
            process.waitForLog("LISTENING ")
        return process

    def tool(self, ns, command, *args):
        argv = [sys.executable, "-u", str(HTTPTOOLS), command, *map(str, args)]
        return self.spawn(ns, argv, f"{command}-{args[1].replace(':', '_')}")

    def curl(self, *args, timeout=60):
        """
        C{curl} in the guest: C{(status code, body)}.
        """
        result = self.guest.run(
            ["curl", "-sS", "--max-time", str(timeout - 5), "-o", "-", "-w", "\n%{http_code}",
             "--cacert", str(self.workdir / "ca.pem"), *args],
            timeout=timeout, check=False,
        )  # fmt: skip
        body, _, code = result.stdout.rpartition("\n")
        return int(code or 0), body + result.stderr

    def proxySaw(self, text):
        return text in self.proxyLog.read_text(errors="replace")

    def post(self, config):
        """
        POST a configuration to vpnkit's API.
        """
        result = subprocess.run(
            ["curl", "-sS", "--unix-socket", str(self.api), "-X", "POST", "--data-binary",
             json.dumps(config), "http://localhost/http_proxy.json"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)

    def counters(self):
        return self.vpnkit.stats()["counters"]["http"]

    def upstream(self, scheme="http", address=PROXY, port=8888):
        return f"{scheme}://{AUTH}@{address}:{port}"

    # -- tests -------------------------------------------------------------------

    def test_transparent(self):
        """
        Plain HTTP to a remote port 80 goes through tinyproxy (with vpnkit's
        credentials, absolute-form); HTTPS to 443 is tunnelled with
        C{CONNECT origin.test:443}, the ClientHello's server name, and the
        guest's TLS to the origin verifies.
        """
        self.start({"http": self.upstream(), "https": self.upstream()})
        code, body = self.curl(f"http://{ORIGIN}/hello")
        self.assertEqual((code, body), (200, "hello from origin\n"))
        waitFor(lambda: self.proxySaw(f"GET http://{ORIGIN}:80/hello"), 10, "tinyproxy's GET")
        code, body = self.curl("--resolve", f"origin.test:443:{ORIGIN}", "https://origin.test/hello")
        self.assertEqual((code, body), (200, "hello from origin-tls\n"))
        waitFor(lambda: self.proxySaw("CONNECT origin.test:443"), 10, "tinyproxy's CONNECT by name")
        counters = self.counters()
        self.assertEqual((counters["requestsViaProxy"], counters["sniNames"]), (1, 1))
        self.assertGreaterEqual(counters["tunnels"], 1)

    def test_excludedAndForbidden(self):
        """
        An excluded host bypasses tinyproxy; a host outside the allow list
        gets 403 with the configured message.
        """
        self.start({
            "http": self.upstream(), "exclude": "other.test",
            "allow_enabled": True, "allow": ["other.test", ORIGIN],
            "allow_error_msg": "Connections to %s are forbidden here",
        })  # fmt: skip
        code, body = self.curl("--resolve", f"other.test:80:{OTHER}", "http://other.test/hello")
        self.assertEqual((code, body), (200, "hello from other\n"))
        self.assertIn("REQUEST GET /hello HTTP/1.1 host=other.test", self.otherOrigin.log())
        self.assertFalse(self.proxySaw("other.test"))
        code, body = self.curl("--resolve", f"blocked.test:80:{OTHER}", "http://blocked.test/hello")
        self.assertEqual(code, 403)
        self.assertIn("Connections to blocked.test are forbidden here", body)
        self.assertEqual(self.counters()["forbidden"], 1)

    def test_upstreamDown(self):
        """
        An upstream proxy that is down gives 503 with the reference's text.
        """
        self.start({"http": f"{DEAD_PROXY}:3128"})
        code, body = self.curl(f"http://{ORIGIN}/hello")
        self.assertEqual(code, 503)
        self.assertIn(f"unable to connect to HTTP proxy {DEAD_PROXY}:3128", body)
        self.assertEqual(self.vpnkit.stats()["http"]["upstreamFailures"], {f"{DEAD_PROXY}:3128": 1})

    def test_explicit(self):
        """
        C{curl -x http://192.168.65.1:3128} works for HTTP and for HTTPS
        (C{CONNECT}), both through tinyproxy.
        """
        self.start({"http": self.upstream()})
        code, body = self.curl("-x", "http://192.168.65.1:3128", f"http://{ORIGIN}/hello")
        self.assertEqual((code, body), (200, "hello from origin\n"))
        code, body = self.curl("-x", "http://192.168.65.1:3128", "https://origin.test/hello")
        self.assertEqual((code, body), (200, "hello from origin-tls\n"))
        waitFor(lambda: self.proxySaw("CONNECT origin.test:443"), 10, "tinyproxy's CONNECT")

    def test_httpsUpstreamAndAPI(self):
        """
        An C{https://} upstream whose certificate the test CA signed works;
        one whose certificate names another host is refused (502), after a
        configuration posted to the API, for the next connection.
        """
        self.start({"http": self.upstream("https", TLS_PROXY, 3443)})
        code, body = self.curl(f"http://{ORIGIN}/hello")
        self.assertEqual((code, body), (200, "hello from origin\n"))
        self.assertTrue(self.proxySaw(f"GET http://{ORIGIN}:80/hello"))
        self.post({"http": self.upstream("https", BAD_TLS_PROXY, 3443)})
        code, body = self.curl(f"http://{ORIGIN}/hello")
        self.assertEqual(code, 502, body)
        self.assertIn(f"TLS connection to HTTP proxy {BAD_TLS_PROXY}:3443 failed", body)
        self.assertGreaterEqual(self.counters()["tlsFailures"], 1)

    def test_large(self):
        """
        64 MiB up (POST, with C{Expect: 100-continue}) and 64 MiB down
        through tinyproxy arrive intact, and vpnkit does not hold them in
        memory.
        """
        self.start({"http": self.upstream()})
        size = 64 * MiB
        upload = self.workdir / "upload.bin"
        digest = hashlib.sha256()
        with open(upload, "wb") as f:
            for _ in range(size // MiB):
                chunk = os.urandom(MiB)
                digest.update(chunk)
                f.write(chunk)
        before = self.vpnkit.rss()
        code, body = self.curl("--data-binary", f"@{upload}", f"http://{ORIGIN}/sha256", timeout=180)
        self.assertEqual((code, body), (200, f"{digest.hexdigest()} {size}\n"))
        result = self.guest.run(
            ["sh", "-c", f"curl -sS --max-time 170 'http://{ORIGIN}/blob?size={size}&seed=7' | sha256sum"],
            timeout=180,
        )
        self.assertEqual(result.stdout.split()[0], blobDigest(size, 7))
        grown = self.vpnkit.rss() - before
        self.assertLess(grown, 48 * MiB, f"vpnkit grew by {grown} bytes")
        counters = self.counters()
        self.assertGreater(counters["bytesFromGuest"], size)
        self.assertGreater(counters["bytesToGuest"], size)
