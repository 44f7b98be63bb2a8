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

import json
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
    "MissingTool",
    "requireE2E",
    "waitFor",
    "Namespace",
    "VPNKit",
    "TapBridge",
    "Tool",
    "TOOLS",
    "E2EMixin",
    "Cleanups",
    "blackHole",
    "netemAvailable",
]

BIN = Path(sys.executable).parent
TOOLS = Path(__file__).with_name("tcptools.py")
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


# Everything alive that a test created, with how to remove it, so that a
# SIGTERM to the test runner (a CI timeout, `timeout pytest ...`) removes
# namespaces and processes too: by default SIGTERM ends Python at once and
# no cleanup runs.  (Cleanups registered with addCleanup still run in the
# normal course; each untracks itself.)
_live = {}


def _onSIGTERM(signum, frame):
    for key, cleanup in reversed(list(_live.items())):
        try:
            cleanup()
        except Exception:
            pass
    _live.clear()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _track(key, cleanup):
    if not _live and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, _onSIGTERM)
        except ValueError:
            pass  # not the main thread: nothing to do
    _live[key] = cleanup


def _untrack(key):
    _live.pop(key, None)


class MissingTool(Exception):
    """
    A command an end-to-end test drives is not installed, although we are
    root and so could have installed it.
    """


def requireE2E(*commands):
    """
    Skip unless we are root; as root, fail unless the commands the test
    drives and vpnkit's own C{twistd} are installed.

    Root is where the tier is meant to run (CI runs C{make test} as root,
    which installs every command), so there a missing command is an error,
    never a quiet skip.

    @raise SkipTest: not root.
    @raise MissingTool: root, and something is missing.
    """
    if os.geteuid() != 0:
        raise SkipTest("end-to-end tests need root (network namespaces and tap devices)")
    missing = [c for c in ("ip", *commands) if shutil.which(c) is None]
    if missing:
        raise MissingTool(
            f"end-to-end tests need {', '.join(missing)}: `make test` (as root) installs "
            "the Debian packages that provide them"
        )
    if not (BIN / "twistd").exists():
        raise MissingTool(
            f"twistd is not installed next to {sys.executable}: `make install` installs it"
        )


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
        _track(self, self.delete)
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
        _untrack(self)
        pids = _run(["ip", "netns", "pids", self.name], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _run(["ip", "netns", "del", self.name], check=False)

    def addAddress(self, address, interface="lo"):
        """
        Give the namespace another address (a "remote" host on its
        loopback: use only the documentation ranges).
        """
        self.run(["ip", "addr", "add", address, "dev", interface])

    # -- guest-side helpers --------------------------------------------------

    def dhcp(self, testCase, interface="tap0", timeout=20):
        """
        Run busybox udhcpc on C{interface} until it has a lease.

        @return: the variables udhcpc handed to its script (ip, router, dns,
            mtu, domain, ...).
        """
        leaseDir = tempfile.mkdtemp(prefix="vpnkit-lease-")
        _track(leaseDir, lambda: shutil.rmtree(leaseDir, True))

        def removeLeaseDir():
            _untrack(leaseDir)
            shutil.rmtree(leaseDir, True)

        testCase.addCleanup(removeLeaseDir)
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
        self.process = self._popen(argv, self._log)
        testCase.addCleanup(self.stop)
        _track(self, self.stop)

    def _popen(self, argv, log):
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

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
        _untrack(self)
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

    def __init__(self, testCase, namespace, args, workdir, nofile=None):
        self.namespace = namespace
        command = [str(BIN / "twistd"), "-n", "--pidfile=", "vpnkit", *args]
        if nofile is not None:
            # prlimit execs the command, so the pid stays twistd's.
            command = ["prlimit", f"--nofile={nofile}:{nofile}", "--", *command]
        super().__init__(testCase, namespace.argv(command), Path(workdir) / "vpnkit.log")
        self.waitForLog("ready:")

    @property
    def pid(self):
        """
        twistd's pid (C{ip netns exec} and C{prlimit} exec in place).
        """
        return self.process.pid

    def rss(self):
        """
        The resident set size in bytes (VmRSS).
        """
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def sockets(self):
        """
        How many of the process's descriptors are sockets.
        """
        n = 0
        fdDir = Path(f"/proc/{self.pid}/fd")
        for entry in fdDir.iterdir():
            try:
                if os.readlink(entry).startswith("socket:"):
                    n += 1
            except FileNotFoundError:
                pass
        return n

    def stats(self, timeout=10):
        """
        Ask for C{kill -USR1} statistics and return the parsed JSON of the
        line vpnkit logs (see L{vpnkit.stack.Stack.stats}).
        """
        marker = "stats: "
        before = self.log().count(marker)
        os.kill(self.pid, signal.SIGUSR1)

        def logged():
            lines = [l for l in self.log().splitlines() if marker in l]
            return lines[before] if len(lines) > before else None

        line = waitFor(logged, timeout, "the stats line after SIGUSR1")
        return json.loads(line.split(marker, 1)[1])


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


class Tool(_Process):
    """
    One of the helper programs of L{TOOLS} (C{tcptools.py COMMAND ...})
    running inside C{namespace}.  It prints C{LISTENING <port>} once a
    server accepts and C{RESULT <json>} lines with what it observed.
    """

    def __init__(self, testCase, namespace, workdir, command, *args, name=None):
        argv = namespace.argv([sys.executable, "-u", str(TOOLS), command, *map(str, args)])
        name = name or f"{command}-{next(_names)}"
        super().__init__(testCase, argv, Path(workdir) / f"tool-{name}.log")

    def waitListening(self, timeout=15):
        self.waitForLog("LISTENING ", timeout)

    def results(self):
        return [
            json.loads(line[len("RESULT ") :])
            for line in self.log().splitlines()
            if line.startswith("RESULT ")
        ]

    def result(self, timeout):
        """
        Wait (at most C{timeout} seconds) for the program to exit and
        return its last C{RESULT}.
        """
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.logPath.name} did not finish within {timeout}s:\n{self.log()}"
            ) from None
        results = self.results()
        if not results:
            raise AssertionError(
                f"{self.logPath.name} exited with {self.process.returncode} and no result:\n"
                f"{self.log()}"
            )
        return results[-1]


def blackHole(namespace, cidr="203.0.113.0/24"):
    """
    Route C{cidr} from C{namespace} into a veth whose far end discards
    everything, so a connect to it hangs rather than fails: the next hop
    has a permanent (fake) neighbour entry, and the peer device, which
    holds no address and another MAC, drops the frames.  (The kernels we
    run on lack the dummy driver.)
    """
    run = namespace.run
    run(["ip", "link", "add", "bh0", "type", "veth", "peer", "name", "bh1"])
    run(["ip", "link", "set", "bh0", "up"])
    run(["ip", "link", "set", "bh1", "up"])
    run(["ip", "addr", "add", "10.255.255.1/24", "dev", "bh0"])
    run(["ip", "neigh", "add", "10.255.255.2", "lladdr", "02:00:5e:00:53:01",
         "dev", "bh0", "nud", "permanent"])
    run(["ip", "route", "add", cidr, "via", "10.255.255.2"])


def netemAvailable():
    """
    Whether the kernel has sch_netem: try it on a veth in a scratch
    namespace.  Only the kernel's answer about netem can make this false:
    a missing C{tc} is handled as L{requireE2E} does, and a namespace or
    veth pair that cannot be made raises.
    """
    requireE2E("tc")
    name = f"vpk{os.getpid() % 100000}probe{next(_names)}"
    _run(["ip", "netns", "add", name])
    try:
        _run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        result = _run(
            ["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "p0", "root",
             "netem", "delay", "1ms"],
            check=False,
        )
        return result.returncode == 0
    finally:
        _run(["ip", "netns", "del", name], check=False)


class Cleanups:
    """
    What the helpers here expect of a test case, for the benchmarks that
    use them outside one: somewhere to register cleanups, run in reverse
    order at the end, each failure reported and the rest still run.
    """

    def __init__(self):
        self._cleanups = []

    def addCleanup(self, function, *args, **kwargs):
        self._cleanups.append((function, args, kwargs))

    def run(self):
        while self._cleanups:
            function, args, kwargs = self._cleanups.pop()
            try:
                function(*args, **kwargs)
            except Exception as e:  # keep cleaning up
                sys.stderr.write(f"cleanup {function!r} failed: {e}\n")


class E2EMixin:
    """
    Per-test scratch directory and the vpnkit namespace.
    """

    def makeWorkdir(self):
        workdir = tempfile.mkdtemp(prefix="vpnkit-e2e-")
        self.addCleanup(self._removeWorkdir, workdir)
        _track(workdir, lambda: shutil.rmtree(workdir, True))
        return Path(workdir)

    @staticmethod
    def _removeWorkdir(workdir):
        _untrack(workdir)
        shutil.rmtree(workdir, True)

    def startVPNKit(self, *args, workdir=None, nofile=None):
        """
        Start vpnkit in a namespace of its own; C{nofile} raises its
        descriptor limit (through C{prlimit}).
        """
        workdir = workdir or self.makeWorkdir()
        hostNamespace = Namespace(self, "h")
        vpnkit = VPNKit(self, hostNamespace, list(args), workdir, nofile=nofile)
        return vpnkit
