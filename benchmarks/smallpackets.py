#!/usr/bin/env python3
"""
Small packets through vpnkit and through slirp4netns, side by side: TCP
connections a second, the TCP 1-byte round trip, UDP request/response.

Run on demand (as root), not part of the test suite:

    .venv/bin/python benchmarks/smallpackets.py [--duration 3] [--reps 3]
        [--vpnkit LABEL=BINDIR ...] [--profile DIR]

The topology and the probes are C{run.py}'s (C{probes.py}): a guest
network namespace reaches echo servers on 127.0.0.1 of a "host" namespace
that has only a loopback interface (vpnkit's host alias 192.168.65.2,
slirp4netns' 10.0.2.2):

 - C{connect-rate}: connect, send 1 byte, read it back, close, again;
 - C{rtt}: one connection, 1 byte there and back; the median in us;
 - C{udp-rr}: a 33-byte datagram, wait for its echo, again.

What this adds to C{run.py}: several vpnkit builds in one run (to measure
a change before and after, interleaved), only the small-message figures,
the system part of the CPU time, and optional py-spy profiles.

Each stack's process CPU time (user + system, from C{/proc}) is read around
each probe, so the table also gives CPU microseconds per operation: the
per-packet cost itself, less disturbed by a loaded machine than the rates.
Stacks are measured in turn within each repetition, in the opposite order
every other one (A, B, C, C, B, A, ...); the table gives the median of the
repetitions and the best one (on a shared machine the figures are often
bimodal: the median alone can mislead).

C{--vpnkit LABEL=BINDIR} (repeatable) names a C{bin} directory holding
C{twistd} with vpnkit installed (default: C{current=} the one next to this
Python), so two builds can be compared in one run.  C{--profile DIR}
records each vpnkit run with py-spy (next to this Python) into DIR.

C{--callgrind} runs each vpnkit under C{valgrind --tool=callgrind} (a
development tool: C{apt-get install valgrind}) and adds the instructions
per operation of the whole vpnkit process (user space), counted from zero
at the start of each probe to a dump at its end (C{callgrind_control});
noise does not touch that count.  vpnkit runs some 50 times slower under
valgrind, so its timed figures mean nothing then: give a longer
C{--duration} (10 s) for enough operations, and compare instruction counts
only with each other.

"""

import argparse
import json
import os
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

from tests.e2e.harness import Cleanups  # noqa: E402

PROBES = Path(__file__).resolve().with_name("probes.py")
TCP_PORT = 5301
UDP_PORT = 5302
UDP_SIZE = 33
FIGURES = ("connect-rate", "rtt", "udp-rr")


# -- the driver ----------------------------------------------------------------------


def cpuSeconds(pid):
    """
    C{(user, system)} CPU seconds of process C{pid}.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def callgrindDump(pid, workdir, label):
    """
    Dump the counters of the callgrind run C{pid}; zero them for the next.

    @return: the instructions counted since the last zeroing.
    """
    before = set(Path(workdir).glob(f"cg-{label}.{pid}.*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    [dump] = set(Path(workdir).glob(f"cg-{label}.{pid}.*")) - before
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {dump}")


def runProbes(guest, host, target, pid, duration, workdir, label, profile, callgrind=False):
    """
    Run the three probes in C{guest} against servers in C{host}.

    @return: C{{probe: (figure, cpu us per op, errors, system cpu us per
        op, instructions per op or None)}}
    """
    from tests.e2e.harness import _Process

    class Owner:
        def __init__(self):
            self.cleanups = []

        def addCleanup(self, f, *a):
            self.cleanups.append((f, a))

    owner = Owner()
    me = [sys.executable, "-u", str(PROBES)]
    results = {}
    try:
        bound = duration * 3 + 30
        for command, port in (("tcp-echo-server", TCP_PORT), ("udp-echo-server", UDP_PORT)):
            server = _Process(
                owner,
                host.argv([*me, command, "--port", str(port), "--duration", str(bound)]),
                Path(workdir) / f"{label}-{command}.log",
            )
            server.waitForLog("LISTENING")
        for probe in FIGURES:
            spy = None
            if profile:
                out = Path(profile) / f"{label}-{probe}.txt"
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                     "--format", "raw", "-o", str(out), "-d", str(int(duration) + 1), "-r", "500",
                     "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
            if callgrind:
                callgrindDump(pid, workdir, label)
            before = cpuSeconds(pid)
            port = UDP_PORT if probe == "udp-rr" else TCP_PORT
            extra = ["--size", str(UDP_SIZE)] if probe == "udp-rr" else []
            out = guest.run(
                [*me, probe, "--host", target, "--port", str(port), "--duration", str(duration),
                 *extra],
                timeout=duration + 30,
            ).stdout
            after = cpuSeconds(pid)
            instructions = callgrindDump(pid, workdir, label) if callgrind else None
            user, system = after[0] - before[0], after[1] - before[1]
            if spy is not None:
                spy.wait(timeout=duration + 30)
            result = json.loads(out.strip().splitlines()[-1])
            if probe == "rtt":
                figure, ops, errors = result["p50"], result["exchanges"], 0
            elif probe == "connect-rate":
                figure, ops = result["per_second"], result["connections"]
                errors = sum(result["errors"].values())
            else:
                figure, ops, errors = result["per_second"], result["answered"], result["lost"]
            ops = max(1, ops)
            results[probe] = (
                figure, (user + system) * 1e6 / ops, errors, system * 1e6 / ops,
                instructions / ops if instructions is not None else None,
            )
    finally:
        for f, a in reversed(owner.cleanups):
            f(*a)
    return results


def measureVPNKit(scope, bindir, duration, workdir, label, profile, callgrind=False):
    from tests.e2e.harness import Namespace, _Process

    guest = Namespace(scope, "g")
    host = Namespace(scope, "h")
    argv = [str(Path(bindir) / "twistd"), "-n", "--pidfile=", "vpnkit", "--netns", guest.name]
    if callgrind:
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/cg-{label}.%p",
            str(Path(bindir) / "python3"), *argv,
        ]
    vpnkit = _Process(scope, host.argv(argv), Path(workdir) / f"vpnkit-{label}.log")
    vpnkit.waitForLog("ready:", timeout=180 if callgrind else 15)
    guest.dhcp(scope)
    return runProbes(
        guest, host, "192.168.65.2", vpnkit.process.pid, duration, workdir, label, profile,
        callgrind,
    )


def measureSlirp(scope, duration, workdir):
    from tests.e2e.harness import Namespace, _Process, waitFor

    host = Namespace(scope, "s")
    guest = Namespace(scope, "g")
    slirp = _Process(
        scope,
        host.argv(["slirp4netns", "--configure", "--mtu=1500", "--netns-type=path", guest.path, "tap0"]),
        Path(workdir) / "slirp4netns.log",
    )

    def configured():
        out = guest.run(["ip", "-o", "addr", "show", "dev", "tap0"], check=False).stdout
        return "10.0.2.100/" in out

    waitFor(configured, 10, "slirp4netns to configure tap0")
    return runProbes(guest, host, "10.0.2.2", slirp.process.pid, duration, workdir, "slirp", None)


def driver(args):
    if os.geteuid() != 0:
        sys.exit("smallpackets.py needs root (network namespaces and tap devices)")
    stacks = []
    for spec in args.vpnkit or [f"current={Path(sys.executable).parent}"]:
        label, _, bindir = spec.partition("=")
        stacks.append((label, bindir))
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = tempfile.mkdtemp(prefix="vpnkit-small-")
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    rows = {}
    try:
        for rep in range(args.reps):
            order = [*stacks, ("slirp4netns", None)]
            # The other way round every other rep, so none always goes first.
            for label, bindir in order if rep % 2 == 0 else order[::-1]:
                scope = Cleanups()
                sys.stderr.write(f"rep {rep + 1}: {label} ...")
                sys.stderr.flush()
                try:
                    if bindir is None:
                        result = measureSlirp(scope, args.duration, workdir)
                    else:
                        result = measureVPNKit(
                            scope, bindir, args.duration, workdir, label,
                            args.profile if rep == 0 else None, args.callgrind,
                        )
                finally:
                    scope.run()
                sys.stderr.write(" " + json.dumps(result) + "\n")
                for probe, value in result.items():
                    rows.setdefault((label, probe), []).append(value)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        shutil.rmtree(workdir, True)

    def median(label, probe, index):
        return statistics.median(v[index] for v in rows[(label, probe)])

    def best(label, probe, index, lower):
        values = [v[index] for v in rows[(label, probe)]]
        return min(values) if lower else max(values)

    names = {"connect-rate": "TCP connect/s", "rtt": "TCP 1-byte RTT p50 us", "udp-rr": "UDP 33 B req/s"}
    print(
        f"{args.reps} reps of {args.duration:g} s, stacks interleaved; median, and the best rep"
        " (a busy machine only makes figures worse); ratio of the medians stack / slirp4netns"
        " (for the RTT slirp4netns / stack, so > 1 is better everywhere)"
    )
    header = (
        f"{'probe':<22} {'stack':<12} {'median':>8} {'best':>8} {'ratio':>6}"
        f" {'CPU us/op':>10} {'best':>7} {'of it sys':>10}"
    ) + (f" {'k instr/op':>11}" if args.callgrind else "")
    print(header)
    print("-" * len(header))
    for probe in FIGURES:
        base = median("slirp4netns", probe, 0)
        lower = probe == "rtt"
        for label, _ in [*stacks, ("slirp4netns", None)]:
            figure = median(label, probe, 0)
            ratio = base / figure if lower else figure / base
            print(
                f"{names[probe]:<22} {label:<12} {figure:>8.0f} {best(label, probe, 0, lower):>8.0f}"
                f" {ratio:>6.2f} {median(label, probe, 1):>10.1f}"
                f" {best(label, probe, 1, True):>7.1f} {median(label, probe, 3):>10.1f}"
                + (
                    f" {median(label, probe, 4) / 1e3:>11.1f}"
                    if args.callgrind and label != "slirp4netns" else ""
                )
            )
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per probe")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--vpnkit", action="append", help="LABEL=BINDIR (repeatable)")
    parser.add_argument("--profile", help="py-spy raw profiles of each vpnkit into this directory")
    parser.add_argument(
        "--callgrind", action="store_true",
        help="run vpnkit under valgrind's callgrind: instructions per operation",
    )
    return driver(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
