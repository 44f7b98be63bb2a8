#!/usr/bin/env python3
"""
Start-up time and idle footprint: vpnkit against slirp4netns, side by side.

Run on demand (as root), not part of the test suite:

    sudo .venv/bin/python benchmarks/startup.py [--reps 20] [--idle 2] [--json]
        [--baseline OTHER/.venv/bin]

For the users who start one stack per container (RootlessKit, podman) two
figures matter: how long from exec until the stack serves, and how much
memory it holds while it waits.  Each row is started the same way, by a
fork that enters a network namespace of its own (with only a loopback
interface) and execs the command, with a pipe's write end as its
C{--ready-fd}:

 - C{vpnkit}: the console script, C{vpnkit --ethernet PATH --ready-fd N};
 - C{twistd}: C{twistd -n vpnkit --ethernet PATH --ready-fd N};
 - C{slirp4netns}: C{slirp4netns --configure --ready-fd N} creating a tap
   in a guest namespace (as C{benchmarks/iperf.py} starts it);
 - with C{--baseline BIN}, the C{vpnkit} and C{twistd} of another
   installation (a checkout before a change), interleaved with these;
 - C{twisted floor}: the same Python importing the reactor, listening on a
   Unix socket and writing the byte: what CPython and Twisted cost before
   any vpnkit code runs; and the same with pyOpenSSL hidden (Twisted's
   reactor imports it, and cryptography, whenever it is installed).

"ready" is the time from just before the fork to the byte arriving on the
pipe (the median over C{--reps} runs, rows interleaved run by run); "CPU"
the CPU time the process had used by then (C{/proc/PID/schedstat}: what a
loaded machine disturbs least; slirp4netns's short-lived helper child is
not counted);
"RSS" is C{VmRSS} from C{/proc/PID/status} after C{--idle} seconds of
idling.  The import floor (C{python -c pass}, C{python -c 'import
twisted.internet.reactor'}, with and without pyOpenSSL importable: time to
exit and peak RSS) is measured in the same runs.  Every namespace, process
and file is removed at exit, even on failure or Ctrl-C; every wait is
bounded.  C{measure()} returns the raw figures for other scripts.

vpnkit is the one installed next to this Python (C{vpnkit} and C{twistd} in
the same bin directory), so reinstall the checkout first (C{make install}).
"""

import argparse
import ctypes
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import Cleanups, BIN, Namespace  # noqa: E402

__all__ = ["main", "measure"]

CLONE_NEWNET = 0x40000000
READY_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0

# The floor: the reactor, one Unix listener, the ready byte.
FLOOR = """\
import os, sys
if sys.argv[3] == "hide":
    sys.modules["OpenSSL"] = None
from twisted.internet import reactor
from twisted.internet.protocol import Factory
reactor.listenUNIX(sys.argv[1], Factory())
os.write(int(sys.argv[2]), b"1")
os.close(int(sys.argv[2]))
reactor.run()
"""


def _enterNetns(path):
    """
    A C{preexec_fn} that moves the child into the network namespace at
    C{path} (C{os.setns} is Python 3.12+; libc is loaded here, before the
    fork).
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def enter():
        fd = os.open(path, os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            os._exit(127)
        os.close(fd)

    return enter


def _vmRSS(pid):
    """
    C{VmRSS} of C{pid} in KiB.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _cpuTime(pid):
    """
    CPU time C{pid} has run, in seconds (C{/proc/PID/schedstat}, in ns).
    """
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def _stop(process):
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(EXIT_TIMEOUT)


def startOnce(argv, namespace, idle, log):
    """
    Run C{argv} (where the string C{"{fd}"} stands for the ready pipe's
    write end) in C{namespace} until it writes its ready byte, let it idle
    C{idle} seconds and stop it.

    @return: C{(seconds to ready, CPU seconds to ready, VmRSS in KiB after
        idling)}.
    """
    readEnd, writeEnd = os.pipe()
    argv = [a.replace("{fd}", str(writeEnd)) for a in argv]
    try:
        with open(log, "ab") as out:
            start = time.monotonic()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(writeEnd,),
                preexec_fn=_enterNetns(namespace.path),
                cwd=os.path.dirname(log),
            )
        os.close(writeEnd)
        writeEnd = None
        try:
            ready, _, _ = select.select([readEnd], [], [], READY_TIMEOUT)
            elapsed = time.monotonic() - start
            cpu = _cpuTime(process.pid) if ready else None
            if not ready or not os.read(readEnd, 1):
                raise RuntimeError(
                    f"{argv[0]} was not ready within {READY_TIMEOUT}s (exit status "
                    f"{process.poll()}); see {log}"
                )
            time.sleep(idle)
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited while idle; see {log}")
            rss = _vmRSS(process.pid)
        finally:
            _stop(process)
    finally:
        os.close(readEnd)
        if writeEnd is not None:
            os.close(writeEnd)
    return elapsed, cpu, rss


# Appended to the floor's code: its peak RSS (VmHWM belongs to the
# executed image; getrusage's ru_maxrss would count the forking parent's).
_HWM = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(line.split()[1])
"""


def importFloor(code):
    """
    Time to exit and peak RSS (KiB) of this Python running C{code}.
    """
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code + "\n" + _HWM],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
    )
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"python -c {code!r} exited {result.returncode}: {result.stderr}")
    return elapsed, int(result.stdout.split()[-1])


def vpnkitRows(workdir, bin, suffix=""):
    """
    The C{vpnkit} command and C{twistd -n vpnkit} installed in C{bin}.
    """
    sock = str(Path(workdir) / "vpnkit.sock")
    return [
        (f"vpnkit{suffix}", [str(bin / "vpnkit"), "--ethernet", sock, "--ready-fd", "{fd}"]),
        (
            f"twistd -n vpnkit{suffix}",
            [
                str(bin / "twistd"), "--pidfile=", "-n", "vpnkit",
                "--ethernet", sock, "--ready-fd", "{fd}",
            ],
        ),
    ]  # fmt: skip


def rows(workdir, guest, baseline=None):
    """
    The commands compared: name and argv (C{{fd}} for the ready pipe).

    @param baseline: another installation's bin directory, whose C{vpnkit}
        and C{twistd} are measured too (rows marked "(baseline)").
    """
    floorSock = str(Path(workdir) / "floor.sock")
    commands = vpnkitRows(workdir, BIN)
    if baseline is not None:
        commands += vpnkitRows(workdir, Path(baseline), " (baseline)")
    return commands + [
        (
            "slirp4netns",
            [
                "slirp4netns", "--configure", "--mtu=1500", "--ready-fd", "{fd}",
                "--netns-type=path", guest.path, "tap0",
            ],
        ),
        ("twisted floor", [sys.executable, "-c", FLOOR, floorSock, "{fd}", "keep"]),
        (
            "twisted floor, no pyOpenSSL",
            [sys.executable, "-c", FLOOR, floorSock, "{fd}", "hide"],
        ),
    ]  # fmt: skip


def measure(reps=20, idle=2.0, baseline=None, progress=sys.stderr):
    """
    Run every row C{reps} times, interleaved, plus the import floor.
    C{baseline}: see L{rows}.

    @return: a dict: C{rows} maps each name to lists C{ready} (ms),
        C{cpu} (ms of CPU time until ready) and C{rss} (MiB); C{floor}
        maps each import line to C{exit} (ms) and C{maxrss} (MiB, the
        peak); C{load} is C{/proc/loadavg} before and after.
    """
    owner = Cleanups()
    workdir = tempfile.mkdtemp(prefix="vpnkit-startup-")
    owner.addCleanup(shutil.rmtree, workdir, True)
    result = {"reps": reps, "idle": idle, "rows": {}, "floor": {}}
    try:
        result["load"] = [Path("/proc/loadavg").read_text().split()[:3]]
        host = Namespace(owner, "h")
        guest = Namespace(owner, "g")
        commands = rows(workdir, guest, baseline)
        for name, _ in commands:
            result["rows"][name] = {"ready": [], "cpu": [], "rss": []}
        floors = {
            "python -c pass": "pass",
            "python -c 'import twisted.internet.reactor'": "import twisted.internet.reactor",
            "the same, pyOpenSSL hidden": (
                "import sys; sys.modules['OpenSSL'] = None; import twisted.internet.reactor"
            ),
        }
        for name in floors:
            result["floor"][name] = {"exit": [], "maxrss": []}
        for rep in range(reps):
            if progress is not None:
                progress.write(f"\rrun {rep + 1}/{reps}")
                progress.flush()
            for name, argv in commands:
                log = str(Path(workdir) / (name.replace(" ", "_") + ".log"))
                ready, cpu, rss = startOnce(argv, host, idle, log)
                result["rows"][name]["ready"].append(ready * 1000)
                result["rows"][name]["cpu"].append(cpu * 1000)
                result["rows"][name]["rss"].append(rss / 1024)
            for name, code in floors.items():
                elapsed, maxrss = importFloor(code)
                result["floor"][name]["exit"].append(elapsed * 1000)
                result["floor"][name]["maxrss"].append(maxrss / 1024)
        result["load"].append(Path("/proc/loadavg").read_text().split()[:3])
    finally:
        if progress is not None:
            progress.write("\n")
        owner.run()
    return result


def _quartiles(values):
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def report(result, out=sys.stdout):
    out.write(
        f"exec -> ready byte, median of {result['reps']} interleaved runs (quartiles); "
        f"CPU time until then; VmRSS after {result['idle']:g} s idle\n"
    )
    width = max(len(name) for name in result["rows"])
    header = f"{'':<{width}} {'ready ms':>9} {'(q1..q3)':>15} {'CPU ms':>7} {'RSS MiB':>8}"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for name, data in result["rows"].items():
        q1, median, q3 = _quartiles(data["ready"])
        cpu = statistics.median(data["cpu"])
        rss = statistics.median(data["rss"])
        spread = f"({q1:.0f}..{q3:.0f})"
        out.write(f"{name:<{width}} {median:>9.0f} {spread:>15} {cpu:>7.0f} {rss:>8.1f}\n")
    out.write("\nimport floor: time to exit, peak RSS\n")
    for name, data in result["floor"].items():
        out.write(
            f"  {name:<46} {statistics.median(data['exit']):>5.0f} ms "
            f"{statistics.median(data['maxrss']):>6.1f} MiB\n"
        )
    before, after = result["load"][0], result["load"][-1]
    out.write(f"\nload average before {' '.join(before)}, after {' '.join(after)}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", "-n", type=int, default=20, help="runs of each row")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before RSS")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument(
        "--baseline", metavar="BIN", help="also measure the vpnkit and twistd of this bin "
        "directory (another checkout's .venv/bin), interleaved"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.exit(2, "startup.py needs root (network namespaces)\n")
    missing = [c for c in ("ip", "slirp4netns") if not shutil.which(c)]
    for bin in (BIN, *([Path(args.baseline)] if args.baseline else [])):
        missing += [str(bin / c) for c in ("vpnkit", "twistd") if not (bin / c).exists()]
    if missing:
        parser.exit(2, f"startup.py needs {', '.join(missing)} (see the Makefile's DEBS)\n")
    # SIGTERM cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        result = measure(args.reps, args.idle, args.baseline)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
