"""
What vpnkit imports at start-up: only what the given flags need.  One
stack per container (RootlessKit, podman) pays for every module in start-up
time and memory, so C{--ethernet PATH} alone must not bring the API's and
the proxy's twisted.web, TLS (pyOpenSSL, cryptography, service_identity),
SSH or test code.  Each test builds and starts the service in a fresh
Python and looks at its C{sys.modules}; no timing.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent

# Build and start the service as the vpnkit command does (defaultReactor,
# then makeService), and report what was imported.
START = """
import json, sys
from vpnkit.tap import Options, defaultReactor, makeService
from twisted.internet.interfaces import IReactorSSL
options = Options()
options.parseOptions(sys.argv[1:])
reactor = defaultReactor(options)
service = makeService(options, reactor)
service.privilegedStartService()
service.startService()
json.dump({"modules": sorted(sys.modules), "ssl": IReactorSSL.providedBy(reactor)}, sys.stdout)
"""

# Never imported unless a flag asks for what they serve.
OPTIONAL = (
    "twisted.web",
    "twisted.conch",
    "twisted.names.client",
    "OpenSSL",
    "cryptography",
    "service_identity",
    "vpnkit.api",
    "vpnkit.httpproxy",
    "vpnkit.sshforward",
    "vpnkit.diagnostics",
)
# Never imported at run time at all.
TEST_CODE = ("hypothesis", "dpkt", "tests", "twisted.trial", "pytest")


def imported(modules, prefix):
    """
    The modules of C{modules} that are C{prefix} or inside it.
    """
    return sorted(m for m in modules if m == prefix or m.startswith(prefix + "."))


class StartupImportTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vpnkit-startup-")
        self.addCleanup(subprocess.call, ["rm", "-rf", self.dir])

    def python(self, code, *args):
        """
        Run C{code} in a fresh Python on this checkout, in the temporary
        directory; return what it printed, as JSON.
        """
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("NOTIFY_SOCKET", None)
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=self.dir, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def start(self, *flags):
        sock = os.path.join(self.dir, "ethernet.sock")
        return self.python(START, "--ethernet", sock, "--hosts", "", *flags)

    def test_importTapAlone(self):
        """
        Importing L{vpnkit.tap} (what twistd does to parse the flags)
        imports none of the optional features, no test code, and not yet
        the reactor.
        """
        modules = self.python(
            "import json, sys, vpnkit.tap; json.dump(sorted(sys.modules), sys.stdout)"
        )
        for prefix in OPTIONAL + TEST_CODE + ("twisted.internet.reactor",):
            self.assertEqual(imported(modules, prefix), [], prefix)

    def test_ethernetAlone(self):
        """
        The service for C{--ethernet PATH} alone, built and started, has
        imported none of the optional features and no test code; the
        reactor came without pyOpenSSL (no C{IReactorSSL}).
        """
        result = self.start()
        for prefix in OPTIONAL + TEST_CODE:
            self.assertEqual(imported(result["modules"], prefix), [], prefix)
        self.assertFalse(result["ssl"])

    def test_api(self):
        """
        C{--api PATH} brings twisted.web and the API, still without the
        proxy or TLS.
        """
        result = self.start("--api", os.path.join(self.dir, "api.sock"))
        modules = result["modules"]
        self.assertIn("twisted.web.server", modules)
        self.assertIn("vpnkit.api", modules)
        for prefix in ("vpnkit.httpproxy", "OpenSSL", "twisted.conch"):
            self.assertEqual(imported(modules, prefix), [], prefix)

    def test_httpProxy(self):
        """
        C{--http FILE} brings the proxy and its TLS, and the reactor is
        Twisted's whole default one (with C{IReactorSSL}).
        """
        result = self.start("--http", os.path.join(self.dir, "http.json"))
        self.assertIn("vpnkit.httpproxy.proxy", result["modules"])
        self.assertIn("OpenSSL.SSL", result["modules"])
        self.assertTrue(result["ssl"])

    def test_diagnostics(self):
        """
        C{--diagnostics PATH} brings the diagnostics module (and the
        capture ring it archives).
        """
        result = self.start("--diagnostics", os.path.join(self.dir, "diag.sock"))
        self.assertIn("vpnkit.diagnostics", result["modules"])
        self.assertIn("vpnkit.capture", result["modules"])

    def test_tlsAfterwards(self):
        """
        Once L{defaultReactor} has installed the reactor without pyOpenSSL,
        pyOpenSSL and Twisted's TLS protocol import as usual.
        """
        code = """
import json, sys
from vpnkit.tap import Options, defaultReactor
options = Options()
options.parseOptions(sys.argv[1:])
defaultReactor(options)
before = "OpenSSL" in sys.modules
from OpenSSL import SSL
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.internet.ssl import optionsForClientTLS
json.dump([before, SSL.__name__, TLSMemoryBIOFactory.__name__], sys.stdout)
"""
        result = self.python(code, "--ethernet", os.path.join(self.dir, "e.sock"), "--hosts", "")
        self.assertEqual(result, [False, "OpenSSL.SSL", "TLSMemoryBIOFactory"])

    def test_reactorAlreadyInstalled(self):
        """
        An embedder's reactor, installed first, is the one
        L{defaultReactor} returns.
        """
        code = """
import json, sys
from twisted.internet import reactor
from vpnkit.tap import Options, defaultReactor
options = Options()
options.parseOptions(sys.argv[1:])
json.dump(defaultReactor(options) is reactor, sys.stdout)
"""
        result = self.python(code, "--ethernet", os.path.join(self.dir, "e.sock"), "--hosts", "")
        self.assertTrue(result)
