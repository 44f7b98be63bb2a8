"""
The end-to-end harness: real network namespaces, real tap devices, a real
vpnkit process and real Linux clients (busybox udhcpc, ping).

Topology of every test:

    [guest namespace(s)] --tap--> vpnkit --host sockets--> [vpnkit's namespace]

vpnkit runs inside a namespace of its own that has only a loopback
interface, so whatever a guest makes it do can never leave the machine.
Guests are further namespaces whose tap device is attached either directly
(vpnkit's C{--netns}) or through C{vpnkit-tap-bridge} over the vmnet or QEMU
socket.

Everything a test creates is registered for cleanup with C{addCleanup}, so
namespaces and processes go away even when an assertion fails.  Every wait
is bounded.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from itertools import count
from pathlib import Path

from twisted.trial.unittest import SkipTest

__all__ = [
    "BIN",
    "requireE2E",
    "waitFor",
    "Namespace",
    "VPNKit",
    "TapBridge",
    "E2EMixin",
]

BIN = Path(sys.executable).parent
_names = count(1)
UDHCPC_SCRIPT = """#!/bin/sh
# Record what udhcpc learnt, then configure the interface like a
# distribution's default script would.
env > "$LEASE_DIR/$interface.$1"
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast $broadcast} dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    ;;
esac
exit 0
"""


def requireE2E(*commands):
    """
    Skip unless we are root and have the commands the test drives.
    """
    if os.geteuid() != 0:
        raise SkipTest("end-to-end tests need root (network namespaces and tap devices)")
    missing = [c for c in ("ip", *commands) if shutil.which(c) is None]
    if missing:
        raise SkipTest(f"end-to-end tests need {', '.join(missing)} (run `make test` as root)")
    if not (BIN / "twistd").exists():
        raise SkipTest(f"twistd is not installed next to {sys.executable}")


def waitFor(predicate, timeout, what, interval=0.05):
    """
    Poll C{predicate} until it returns something true, at most C{timeout}
    seconds.

    @raise AssertionError: naming C{what} on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _run(argv, timeout=30, check=True, **kwargs):
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=check, **kwargs
    )


class Namespace:
    """
    A network namespace with its loopback up.
    """

    def __init__(self, testCase, role):
        self.name = f"vpk{os.getpid() % 100000}{role}{next(_names)}"
        _run(["ip", "netns", "add", self.name])
        testCase.addCleanup(self.delete)
        self.run(["ip", "link", "set", "lo", "up"])

    @property
    def path(self):
        return f"/var/run/netns/{self.name}"

    def argv(self, argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv, timeout=30, check=True, **kwargs):
        """
        Run a command inside the namespace and wait for it.
        """
        return _run(self.argv(argv), timeout=timeout, check=check, **kwargs)

    def delete(self):
        pids = _run(["ip", "netns", "pids", self.name], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _run(["ip", "netns", "del", self.name], check=False)

    # -- guest-side helpers --------------------------------------------------

    def dhcp(self, testCase, interface="tap0", timeout=20):
        """
        Run busybox udhcpc on C{interface} until it has a lease.

        @return: the variables udhcpc handed to its script (ip, router, dns,
            mtu, domain, ...).
        """
        leaseDir = tempfile.mkdtemp(prefix="vpnkit-lease-")
        testCase.addCleanup(shutil.rmtree, leaseDir, True)
        script = Path(leaseDir) / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        result = self.run(
            [
                "env",
                f"LEASE_DIR={leaseDir}",
                "busybox",
                "udhcpc",
                "-i",
                interface,
                "-f",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "1",
                "-s",
                str(script),
            ],
            timeout=timeout,
            check=False,
        )
        bound = Path(leaseDir) / f"{interface}.bound"
        if result.returncode != 0 or not bound.exists():
            raise AssertionError(
                f"udhcpc in {self.name} got no lease (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        variables = {}
        for line in bound.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                variables[key] = value
        return variables

    def ping(self, address, count=1, size=56, timeout=10):
        """
        Whether C{count} echo requests to C{address} were all answered.
        """
        result = self.run(
            ["ping", "-n", "-c", str(count), "-s", str(size), "-W", "2", "-i", "0.2", address],
            timeout=timeout,
            check=False,
        )
        return result.returncode == 0

    def linkInfo(self, interface="tap0"):
        return self.run(["ip", "-o", "link", "show", interface]).stdout


class _Process:
    """
    A child process in its own session, stopped (and its session killed) at
    cleanup.
    """

    def __init__(self, testCase, argv, logPath):
        self.logPath = Path(logPath)
        self._log = open(self.logPath, "wb")
        self.process = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        testCase.addCleanup(self.stop)

    def log(self):
        return self.logPath.read_text(errors="replace")

    def alive(self):
        return self.process.poll() is None

    def waitForLog(self, text, timeout=15):
        def found():
            if text in self.log():
                return True
            if not self.alive():
                raise AssertionError(
                    f"process exited with {self.process.returncode} before "
                    f"logging {text!r}:\n{self.log()}"
                )
            return False

        waitFor(found, timeout, f"{text!r} in {self.logPath}")

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


class VPNKit(_Process):
    """
    C{twistd -n vpnkit ...} running inside C{namespace}.
    """

    def __init__(self, testCase, namespace, args, workdir):
        self.namespace = namespace
        argv = namespace.argv(
            [
                str(BIN / "twistd"),
                "-n",
                "--pidfile=",
                "vpnkit",
                *args,
            ]
        )
        super().__init__(testCase, argv, Path(workdir) / "vpnkit.log")
        self.waitForLog("ready:")


class TapBridge(_Process):
    """
    C{vpnkit-tap-bridge} attaching a tap in C{namespace} to vpnkit's socket.
    """

    def __init__(self, testCase, namespace, socketPath, workdir, *extra, protocol="vmnet"):
        argv = [
            str(BIN / "vpnkit-tap-bridge"),
            "--connect",
            str(socketPath),
            "--protocol",
            protocol,
            "--netns",
            namespace.name,
            *extra,
        ]
        super().__init__(testCase, argv, Path(workdir) / f"bridge-{namespace.name}.log")

    def waitReady(self):
        self.waitForLog("ready tap0")


class E2EMixin:
    """
    Per-test scratch directory and the vpnkit namespace.
    """

    def makeWorkdir(self):
        workdir = tempfile.mkdtemp(prefix="vpnkit-e2e-")
        self.addCleanup(shutil.rmtree, workdir, True)
        return Path(workdir)

    def startVPNKit(self, *args, workdir=None):
        workdir = workdir or self.makeWorkdir()
        hostNamespace = Namespace(self, "h")
        vpnkit = VPNKit(self, hostNamespace, list(args), workdir)
        return vpnkit
