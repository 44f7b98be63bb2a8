#!/usr/bin/env python3
"""
Everything a user of the network feels, through vpnkit and through
slirp4netns, side by side in one bounded run.

Run on demand (as root), not part of the test suite:

    .venv/bin/python benchmarks/run.py [--reps 3] [--time 4] [--probe-time 3]
        [--mtu 1500 --mtu 65520] [--json PATH] [--chart PATH]

Stacks (each in namespaces of its own, torn down after every measurement):

 - C{vpnkit}: C{twistd -n vpnkit --netns GUEST --mtu N} in a "host"
   namespace that has only a loopback interface; vpnkit creates the guest's
   tap (with offload); the guest takes a lease with busybox udhcpc and
   dials the host alias 192.168.65.2, which is the host's 127.0.0.1.
 - C{vpnkit-vmnet}: C{twistd -n vpnkit --ethernet PATH --mtu N} and
   C{vpnkit-tap-bridge --connect PATH --netns GUEST}: the same, over the
   vmnet socket (what Docker Desktop's VM speaks), MTU-sized frames.
 - C{slirp4netns}: C{slirp4netns --configure --mtu=N} in the host
   namespace, the guest's address static (10.0.2.100); the guest dials
   10.0.2.2, which slirp4netns maps to the host's 127.0.0.1.
 - C{loopback} (probes only): the probe client on the host namespace's
   own 127.0.0.1, no stack in between: the floor the clients reach.

Figures, at every C{--mtu} (iperf3) or at the first (the small-message
probes of L{probes}, whose cost does not depend on the MTU):

 1. TCP guest -> host, iperf3, receiver Gbit/s;
 2. TCP host -> guest, iperf3 -R;
 3. TCP connections/s: connect, 1 byte each way, close;
 4. TCP 1-byte round trip over one connection, p50 and p90 in us;
 5. UDP 33-byte request/response per second;

and, per stack, start-up (exec to the listening socket file and to the
C{--ready-fd} byte) and the resident set size once idle.

Every figure is measured C{--reps} times, the stacks interleaved (vpnkit,
slirp4netns, vpnkit-vmnet, then the other way round in the next rep, so
neither always runs first), and reported as the median with the min-max
spread and the ratio of the medians vpnkit / slirp4netns.  For each
measurement window the CPU use of the stack's processes (utime + stime
from /proc/PID/stat) and their peak RSS (VmHWM, reset through
/proc/PID/clear_refs at the start of the window) are recorded too.

Output: markdown tables on stdout, every raw number with C{--json PATH}
and a PNG chart with C{--chart PATH} (needs matplotlib: the C{bench}
extra).  Progress goes to stderr.  Every namespace and process is removed
at exit, even on failure, Ctrl-C or SIGTERM.

vpnkit is the one installed next to this Python (C{twistd} and C{vpnkit}
in the same bin directory), so C{make install} the checkout first.
"""

import argparse
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from iperf import Cleanups, iperfClient, iperfServer  # noqa: E402

from tests.e2e.harness import BIN, Namespace, TapBridge, VPNKit, _Process, waitFor  # noqa: E402

PROBES = Path(__file__).resolve().with_name("probes.py")
TCP_ECHO_PORT = 5301
UDP_ECHO_PORT = 5302
UDP_SIZE = 33
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024

# key: (label, unit, higher is better, (CPU cost unit, seconds per operation -> unit))
FIGURES = {
    "tcp_up": ("TCP guest→host (iperf3)", "Gbit/s", True, ("CPU s/GB", 1e9)),
    "tcp_down": ("TCP host→guest (iperf3 -R)", "Gbit/s", True, ("CPU s/GB", 1e9)),
    "tcp_connect": ("TCP connect+1 byte+close", "conn/s", True, ("CPU µs/connection", 1e6)),
    "tcp_rtt_p50": ("TCP 1-byte round trip p50", "µs", False, ("CPU µs/round trip", 1e6)),
    "tcp_rtt_p90": ("TCP 1-byte round trip p90", "µs", False, ("CPU µs/round trip", 1e6)),
    "udp_rr": (f"UDP {UDP_SIZE}-byte request/response", "req/s", True, ("CPU µs/request", 1e6)),
}
STACKS = ("vpnkit", "slirp4netns", "vpnkit-vmnet")
VPNKIT_STACKS = ("vpnkit", "vpnkit-vmnet")
BASELINE = "slirp4netns"
STARTUPS = ("vpnkit", "twistd", "vpnkit-netns", "slirp4netns")
STARTUP_LABELS = {
    "vpnkit": "vpnkit --ethernet PATH",
    "twistd": "twistd -n vpnkit --ethernet PATH",
    "vpnkit-netns": "vpnkit --netns GUEST",
    "slirp4netns": "slirp4netns --configure",
}


def log(text, end="\n"):
    sys.stderr.write(text + end)
    sys.stderr.flush()


# -- what a process costs ------------------------------------------------------


def cpuTicks(pid):
    """
    utime + stime of C{pid} (all its threads) in clock ticks.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def status(pid, key):
    """
    A C{kB} value of /proc/PID/status, in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} for pid {pid}")


def resetPeakRSS(pid):
    """
    Make VmHWM start again from the current RSS (Linux >= 4.0).
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


class Window:
    """
    The CPU use and peak RSS of some processes over a measurement window.

    @param pids: name -> pid.
    """

    def __init__(self, pids):
        self.pids = dict(pids)

    def __enter__(self):
        for pid in self.pids.values():
            resetPeakRSS(pid)
        self.ticks = {name: cpuTicks(pid) for name, pid in self.pids.items()}
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        elapsed = time.monotonic() - self.start
        self.seconds = elapsed
        self.usage = {}
        if exc[0] is not None:
            return False
        for name, pid in self.pids.items():
            ticks = cpuTicks(pid) - self.ticks[name]
            self.usage[name] = {
                "cpu_percent": 100.0 * ticks / CLK_TCK / elapsed,
                "peak_rss": status(pid, "VmHWM"),
            }
        return False


# -- the stacks ----------------------------------------------------------------


class Topology:
    """
    A guest namespace reaching a host namespace's loopback through one
    stack.

    @ivar guest: where clients run.
    @ivar host: where servers run (on 127.0.0.1).
    @ivar target: the address the guest dials for the host's 127.0.0.1.
    @ivar pids: name -> pid of the stack's processes.
    """

    target = None

    def __init__(self, owner, mtu, workdir):
        self.owner = owner
        self.workdir = workdir
        self.pids = {}

    def alive(self):
        for name, pid in self.pids.items():
            try:
                state = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                raise RuntimeError(f"{name} (pid {pid}) has exited") from None
            if state[state.rindex(")") + 2] == "Z":
                raise RuntimeError(f"{name} (pid {pid}) has exited")


class VPNKitTap(Topology):
    target = "192.168.65.2"

    def __init__(self, owner, mtu, workdir):
        super().__init__(owner, mtu, workdir)
        self.guest = Namespace(owner, "g")
        vpnkit = VPNKit(owner, Namespace(owner, "h"), ["--mtu", str(mtu), "--netns", self.guest.name], workdir)
        self.host = vpnkit.namespace
        lease = self.guest.dhcp(owner)
        if lease.get("mtu") != str(mtu):
            raise RuntimeError(f"the lease's MTU is {lease.get('mtu')}, not {mtu}")
        self.pids = {"vpnkit": vpnkit.pid}


class VPNKitVMNet(Topology):
    target = "192.168.65.2"

    def __init__(self, owner, mtu, workdir):
        super().__init__(owner, mtu, workdir)
        socketPath = Path(workdir) / "ethernet.sock"
        vpnkit = VPNKit(owner, Namespace(owner, "h"), ["--mtu", str(mtu), "--ethernet", str(socketPath)], workdir)
        self.host = vpnkit.namespace
        self.guest = Namespace(owner, "g")
        bridge = TapBridge(owner, self.guest, socketPath, workdir)
        bridge.waitReady()
        lease = self.guest.dhcp(owner)
        if lease.get("mtu") != str(mtu):
            raise RuntimeError(f"the lease's MTU is {lease.get('mtu')}, not {mtu}")
        self.pids = {"vpnkit": vpnkit.pid, "bridge": bridge.process.pid}


class Slirp(Topology):
    target = "10.0.2.2"

    def __init__(self, owner, mtu, workdir):
        super().__init__(owner, mtu, workdir)
        self.host = Namespace(owner, "s")
        self.guest = Namespace(owner, "g")
        slirp = _Process(
            owner,
            self.host.argv(
                ["slirp4netns", "--configure", f"--mtu={mtu}", "--netns-type=path", self.guest.path, "tap0"]
            ),
            Path(workdir) / "slirp4netns.log",
        )

        def configured():
            out = self.guest.run(["ip", "-o", "addr", "show", "dev", "tap0"], check=False).stdout
            return "10.0.2.100/" in out

        waitFor(configured, 10, "slirp4netns to configure tap0")
        if f"mtu {mtu} " not in self.guest.linkInfo():
            raise RuntimeError(f"tap0's MTU is not {mtu}: {self.guest.linkInfo()}")
        self.pids = {"slirp4netns": slirp.process.pid}


class Loopback(Topology):
    """
    No stack: the client on the host namespace's own loopback.
    """

    target = "127.0.0.1"

    def __init__(self, owner, mtu, workdir):
        super().__init__(owner, mtu, workdir)
        self.host = self.guest = Namespace(owner, "l")


TOPOLOGIES = {
    "vpnkit": VPNKitTap,
    "vpnkit-vmnet": VPNKitVMNet,
    "slirp4netns": Slirp,
    "loopback": Loopback,
}


# -- the figures ---------------------------------------------------------------


def probeServer(owner, namespace, command, port, workdir):
    server = _Process(
        owner,
        namespace.argv(
            [sys.executable, "-u", str(PROBES), command, "--port", str(port), "--duration", "3600"]
        ),
        Path(workdir) / f"{command}.log",
    )
    server.waitForLog("LISTENING ")
    return server


def probe(topology, command, port, seconds, *extra):
    """
    Run a probe client in the guest; its JSON line.
    """
    argv = [
        sys.executable, str(PROBES), command, "--host", topology.target, "--port", str(port),
        "--duration", str(seconds), *extra,
    ]  # fmt: skip
    result = topology.guest.run(argv, timeout=seconds + 60, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"probes.py {command} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return json.loads(lines[-1])


def measure(topology, function):
    """
    Run C{function()} in a L{Window} over the topology's processes.

    @return: C{(what function returned, seconds, usage)}.
    """
    topology.alive()
    with Window(topology.pids) as window:
        value = function()
    topology.alive()
    return value, window.seconds, window.usage


def measureTopology(name, mtu, args, probes, workdir):
    """
    Build one stack, measure every figure through it, tear it down.

    @return: a list of records (dicts), one per figure.
    """
    records = []

    def record(figure, value, seconds, usage, raw, ops):
        records.append(
            {"stack": name, "mtu": mtu, "figure": figure, "value": value, "seconds": seconds,
             "usage": usage, "raw": raw, "ops": ops}  # fmt: skip
        )

    scope = Cleanups()
    try:
        topology = TOPOLOGIES[name](scope, mtu, workdir)
        if name != "loopback":
            iperfServer(scope, topology.host, workdir)
            for key, reverse in (("tcp_up", False), ("tcp_down", True)):
                bits, seconds, usage = measure(
                    topology, lambda: iperfClient(topology.guest, topology.target, args.time, reverse, args.parallel)
                )
                record(key, bits / 1e9, seconds, usage, {"bits_per_second": bits}, bits * args.time / 8)
        if probes:
            probeServer(scope, topology.host, "tcp-echo-server", TCP_ECHO_PORT, workdir)
            probeServer(scope, topology.host, "udp-echo-server", UDP_ECHO_PORT, workdir)
            t = args.probe_time
            raw, seconds, usage = measure(topology, lambda: probe(topology, "connect-rate", TCP_ECHO_PORT, t))
            record("tcp_connect", raw["per_second"], seconds, usage, raw, raw["connections"])
            raw, seconds, usage = measure(topology, lambda: probe(topology, "rtt", TCP_ECHO_PORT, t))
            ops = raw["exchanges"]
            record("tcp_rtt_p50", raw["p50"], seconds, usage, raw, ops)
            record("tcp_rtt_p90", raw["p90"], seconds, usage, raw, ops)
            raw, seconds, usage = measure(
                topology, lambda: probe(topology, "udp-rr", UDP_ECHO_PORT, t, "--size", str(UDP_SIZE))
            )
            record("udp_rr", raw["per_second"], seconds, usage, raw, raw["answered"] + raw["lost"])
    finally:
        scope.run()
    return records


def scanLogs(workdir):
    """
    Tracebacks and unhandled errors the stack's processes logged.

    @return: a list of C{{"log": name, "excerpt": text}}.
    """
    found = []
    for path in sorted(Path(workdir).glob("*.log")):
        if not path.name.startswith(("vpnkit", "bridge-", "slirp4netns", "startup-")):
            continue
        text = path.read_text(errors="replace")
        for marker in ("Traceback", "Unhandled", "CRITICAL"):
            at = text.find(marker)
            if at >= 0:
                found.append({"log": path.name, "excerpt": text[max(0, at - 200) : at + 1500]})
                break
    return found


# -- start-up ------------------------------------------------------------------


class _Inheriting(_Process):
    """
    A L{_Process} that inherits some descriptors (the ready pipe).
    """

    def __init__(self, owner, argv, logPath, passFDs):
        self.passFDs = tuple(passFDs)
        super().__init__(owner, argv, logPath)

    def _popen(self, argv, log):
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.passFDs,
        )


def measureStartup(kind, idleSeconds, workdir, timeout=30):
    """
    Start one stack, time exec -> socket file (vpnkit's --ethernet) and
    exec -> the --ready-fd byte, then read its RSS after C{idleSeconds}
    with nothing attached.
    """
    scope = Cleanups()
    try:
        host = Namespace(scope, "u")
        socketPath = Path(workdir) / f"startup-{kind}.sock"
        readFD, writeFD = os.pipe()
        scope.addCleanup(os.close, readFD)
        ready = ["--ready-fd", str(writeFD)]
        if kind == "vpnkit":
            argv = [str(BIN / "vpnkit"), "--ethernet", str(socketPath), *ready]
        elif kind == "twistd":
            argv = [str(BIN / "twistd"), "-n", "--pidfile=", "vpnkit", "--ethernet", str(socketPath), *ready]
        elif kind == "vpnkit-netns":
            guest = Namespace(scope, "g")
            argv = [str(BIN / "vpnkit"), "--netns", guest.name, *ready]
        elif kind == "slirp4netns":
            guest = Namespace(scope, "g")
            argv = ["slirp4netns", "--configure", *ready, "--netns-type=path", guest.path, "tap0"]
        else:
            raise ValueError(kind)
        watchSocket = "--ethernet" in argv
        start = time.monotonic()
        try:
            process = _Inheriting(scope, host.argv(argv), Path(workdir) / f"startup-{kind}.log", [writeFD])
        finally:
            os.close(writeFD)
        toSocket = toReady = None
        deadline = start + timeout
        while toReady is None or (watchSocket and toSocket is None):
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"{kind} not ready after {timeout}s:\n{process.log()}")
            if watchSocket and toSocket is None and socketPath.exists():
                toSocket = now - start
            if toReady is None:
                readable, _, _ = select.select([readFD], [], [], 0.001)
                if readable:
                    if not os.read(readFD, 1):
                        raise RuntimeError(f"{kind} closed --ready-fd without a byte:\n{process.log()}")
                    toReady = time.monotonic() - start
            else:
                time.sleep(0.001)
        pid = process.process.pid
        readyRSS = status(pid, "VmRSS")
        # An idle window, not a synchronisation: the footprint once settled.
        time.sleep(idleSeconds)
        if not process.alive():
            raise RuntimeError(f"{kind} exited while idle:\n{process.log()}")
        return {
            "stack": kind,
            "to_socket": toSocket,
            "to_ready": toReady,
            "ready_rss": readyRSS,
            "idle_rss": status(pid, "VmRSS"),
            "idle_cpu_ticks": cpuTicks(pid),
        }
    finally:
        scope.run()


# -- reporting -----------------------------------------------------------------


def summarise(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "Gbit/s":
        return f"{value:.2f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def cell(summary, unit):
    if summary is None:
        return "failed"
    if summary["n"] == 1:
        return fmt(summary["median"], unit)
    return f"{fmt(summary['median'], unit)} ({fmt(summary['min'], unit)}–{fmt(summary['max'], unit)})"


def rows(records):
    """
    (figure, mtu) in report order, from what was measured.
    """
    seen = {(r["figure"], r["mtu"]) for r in records}
    mtus = sorted({r["mtu"] for r in records})
    return [(f, m) for f in FIGURES for m in mtus if (f, m) in seen]


def pick(records, figure, mtu, stack):
    return [r for r in records if r["figure"] == figure and r["mtu"] == mtu and r["stack"] == stack]


def cpuCost(record):
    """
    CPU time of the stack's processes per operation (per byte for
    iperf3), in the figure's cost unit; C{None} if unknown.
    """
    if not record.get("ops") or not record["usage"]:
        return None
    seconds = sum(u["cpu_percent"] for u in record["usage"].values()) / 100 * record["seconds"]
    return seconds / record["ops"] * FIGURES[record["figure"]][3][1]


def figureSummaries(records, stacks):
    out = []
    for figure, mtu in rows(records):
        entry = {"figure": figure, "mtu": mtu, "stacks": {}}
        for stack in stacks:
            chosen = pick(records, figure, mtu, stack)
            if not chosen:
                continue
            entry["stacks"][stack] = {
                "value": summarise([r["value"] for r in chosen]),
                "cpu_cost": summarise([cpuCost(r) for r in chosen]),
                "cpu_percent": {
                    process: summarise([r["usage"].get(process, {}).get("cpu_percent") for r in chosen])
                    for process in chosen[0]["usage"]
                },
                "peak_rss": {
                    process: summarise([r["usage"].get(process, {}).get("peak_rss") for r in chosen])
                    for process in chosen[0]["usage"]
                },
            }
        base = entry["stacks"].get(BASELINE, {}).get("value")
        entry["ratios"] = {}
        for stack in VPNKIT_STACKS:
            own = entry["stacks"].get(stack, {}).get("value")
            if own and base and base["median"]:
                entry["ratios"][stack] = own["median"] / base["median"]
        base = entry["stacks"].get(BASELINE, {}).get("cpu_cost")
        entry["cost_ratios"] = {}
        for stack in VPNKIT_STACKS:
            own = entry["stacks"].get(stack, {}).get("cpu_cost")
            if own and base and base["median"]:
                entry["cost_ratios"][stack] = own["median"] / base["median"]
        out.append(entry)
    return out


def markdown(summaries, startups, stacks, meta):
    lines = []
    shown = [s for s in stacks if any(s in e["stacks"] for e in summaries)]
    vpnkits = [s for s in VPNKIT_STACKS if s in shown]
    lines.append(
        f"{meta['reps']} reps interleaved, iperf3 -t {meta['time']} -P {meta['parallel']}, "
        f"probes {meta['probe_time']} s; median (min–max).  Ratio = vpnkit median / "
        f"slirp4netns median: above 1 is better for vpnkit where higher is better (↑), "
        f"below 1 where lower is better (↓)."
    )
    lines.append("")
    if not summaries:
        lines.append("Nothing was measured.")
    header = ["figure", "MTU", *shown, *[f"{s} / slirp" for s in vpnkits]]
    if summaries:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for entry in summaries:
        label, unit, higher, _ = FIGURES[entry["figure"]]
        cells = [f"{label}, {unit} {'↑' if higher else '↓'}", str(entry["mtu"])]
        for stack in shown:
            s = entry["stacks"].get(stack)
            cells.append(cell(s["value"], unit) if s else "")
        for stack in vpnkits:
            ratio = entry["ratios"].get(stack)
            cells.append(f"{ratio:.2f}" if ratio is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")

    measured = [s for s in shown if s != "loopback"]
    if measured and summaries:
        lines.append("")
        lines.append(
            "CPU % of the stack's processes over each window (100 = one core; vpnkit-vmnet: "
            "vpnkit + vpnkit-tap-bridge) and their peak RSS in MiB (VmHWM within the window); medians."
        )
        lines.append("")
        header = ["figure", "MTU", *[f"{s} CPU %" for s in measured], *[f"{s} MiB" for s in measured]]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
        done = set()
        for entry in summaries:
            key = ("tcp_rtt" if entry["figure"].startswith("tcp_rtt") else entry["figure"], entry["mtu"])
            if key in done:
                continue
            done.add(key)
            label = "TCP 1-byte round trip" if key[0] == "tcp_rtt" else FIGURES[entry["figure"]][0]
            cpus, rsss = [], []
            for stack in measured:
                s = entry["stacks"].get(stack)
                if not s or not s["cpu_percent"]:
                    cpus.append("")
                    rsss.append("")
                    continue
                parts = [(p, v) for p, v in s["cpu_percent"].items() if v]
                cpus.append(" + ".join(f"{v['median']:.0f}" for _, v in parts))
                peaks = [v for v in s["peak_rss"].values() if v]
                rsss.append(" + ".join(f"{v['median'] / MiB:.0f}" for v in peaks))
            lines.append("| " + " | ".join([label, str(entry["mtu"]), *cpus, *rsss]) + " |")

        lines.append("")
        lines.append(
            "CPU cost: CPU time of the stack's processes per operation (iperf3: per GB carried), "
            "median (min–max); lower is better, and so is a ratio below 1."
        )
        lines.append("")
        header = ["figure", "MTU", "per", *measured, *[f"{s} / slirp" for s in vpnkits]]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
        for entry in summaries:
            if entry["figure"] == "tcp_rtt_p90":
                continue
            label, _, _, (costUnit, _) = FIGURES[entry["figure"]]
            if entry["figure"] == "tcp_rtt_p50":
                label = "TCP 1-byte round trip"
            cells = [label, str(entry["mtu"]), costUnit]
            for stack in measured:
                s = entry["stacks"].get(stack)
                cells.append(cell(s["cpu_cost"], costUnit) if s and s.get("cpu_cost") else "")
            for stack in vpnkits:
                ratio = entry.get("cost_ratios", {}).get(stack)
                cells.append(f"{ratio:.2f}" if ratio is not None else "—")
            lines.append("| " + " | ".join(cells) + " |")

    if startups:
        lines.append("")
        lines.append(
            "Start-up: exec (through `ip netns exec`) to the socket file and to the `--ready-fd` "
            f"byte, ms; RSS in MiB at ready and after {meta['idle']} s idle, nothing attached; "
            "median (min–max)."
        )
        lines.append("")
        lines.append("| command | → socket file, ms | → ready, ms | RSS at ready | RSS idle |")
        lines.append("|---|---:|---:|---:|---:|")
        for kind in STARTUPS:
            chosen = [s for s in startups if s["stack"] == kind]
            if not chosen:
                continue

            def ms(key):
                s = summarise([c[key] * 1000 if c[key] is not None else None for c in chosen])
                return cell(s, "ms") if s else "—"

            def mib(key):
                return cell(summarise([c[key] / MiB for c in chosen]), "MiB")

            lines.append(
                f"| `{STARTUP_LABELS[kind]}` | {ms('to_socket')} | {ms('to_ready')} | "
                f"{mib('ready_rss')} | {mib('idle_rss')} |"
            )
    lines.append("")
    lines.append(
        f"Load average (1 min) at start {meta['load_start'][0]:.2f}, highest after a rep "
        f"{max([l[0] for l in meta['load_samples']] or [0]):.2f}, at end {meta['load_end'][0]:.2f}; "
        f"{meta['cpus']} CPUs; whole run {meta['seconds']:.0f} s."
    )
    return "\n".join(lines)


def chart(path, summaries, startups, stacks):
    """
    One panel per figure, per CPU cost and for start-up and idle RSS, a
    row (or two) for each: the median of each stack with its min-max range.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "vpnkit": "#1f77b4", "vpnkit-vmnet": "#7fb2e5", "twistd": "#1f77b4", "vpnkit-netns": "#1f77b4",
        "slirp4netns": "#d62728", "loopback": "#999999",
    }  # fmt: skip
    stackLabels = {"vpnkit": "vpnkit", "vpnkit-vmnet": "vpnkit\nvmnet", "slirp4netns": "slirp4netns",
                   "loopback": "loopback"}  # fmt: skip
    startupLabels = {"vpnkit": "vpnkit\n--ethernet", "twistd": "twistd\nvpnkit", "vpnkit-netns": "vpnkit\n--netns",
                     "slirp4netns": "slirp4netns"}  # fmt: skip

    # Each panel: (title, {name: summary}, labels).
    groups = []
    panels = []
    for entry in summaries:
        label, unit, higher, _ = FIGURES[entry["figure"]]
        names = [n for n in stacks if n in entry["stacks"]]
        title = f"{label}\n{unit} {'(higher better)' if higher else '(lower better)'}, MTU {entry['mtu']}"
        panels.append((title, {n: entry["stacks"][n]["value"] for n in names}, stackLabels))
    groups.append(panels)
    panels = []
    for entry in summaries:
        if entry["figure"] == "tcp_rtt_p90":
            continue
        label, _, _, (costUnit, _) = FIGURES[entry["figure"]]
        label = "TCP 1-byte round trip" if entry["figure"] == "tcp_rtt_p50" else label
        names = [n for n in stacks if entry["stacks"].get(n, {}).get("cpu_cost")]
        if names:
            title = f"{label}, MTU {entry['mtu']}\n{costUnit} (lower better)"
            panels.append((title, {n: entry["stacks"][n]["cpu_cost"] for n in names}, stackLabels))
    groups.append(panels)
    kinds = [k for k in STARTUPS if any(s["stack"] == k for s in startups)]
    panels = []
    for key, scale, title in (
        ("to_ready", 1000, "start-up, exec to ready, ms\n(lower better)"),
        ("idle_rss", 1 / MiB, "idle RSS, MiB\n(lower better)"),
    ):
        if kinds:
            sums = {k: summarise([s[key] * scale for s in startups if s["stack"] == k]) for k in kinds}
            panels.append((title, sums, startupLabels))
    groups.append(panels)
    groups = [g for g in groups if g]

    columns = 4
    layout = []  # one list of panels per row
    for group in groups:
        for i in range(0, len(group), columns):
            layout.append(group[i : i + columns])
    fig, axes = plt.subplots(len(layout), columns, figsize=(2.7 * columns, 2.5 * len(layout)), squeeze=False)
    for row, panelsInRow in zip(axes, layout):
        for ax in row[len(panelsInRow) :]:
            ax.axis("off")
        for ax, (title, byName, labels) in zip(row, panelsInRow):
            names = list(byName)
            xs = range(len(names))
            medians = [byName[n]["median"] if byName[n] else 0 for n in names]
            low = [m - byName[n]["min"] if byName[n] else 0 for n, m in zip(names, medians)]
            high = [byName[n]["max"] - m if byName[n] else 0 for n, m in zip(names, medians)]
            ax.bar(xs, medians, color=[colours[n] for n in names], yerr=[low, high], capsize=3)
            ax.set_xticks(list(xs))
            ax.set_xticklabels([labels[n] for n in names], fontsize=7)
            ax.set_title(title, fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# -- main ----------------------------------------------------------------------


def loadAverage():
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions, stacks interleaved (default 3)")
    parser.add_argument("--time", "-t", type=int, default=3, help="seconds per iperf3 run (default 3)")
    parser.add_argument("--probe-time", type=float, default=3.0, help="seconds per probe window (default 3)")
    parser.add_argument("--mtu", type=int, action="append", help="MTUs (default 1500, 65520); probes run at the first")
    parser.add_argument("--parallel", "-P", type=int, default=1, help="iperf3 streams")
    parser.add_argument("--stack", action="append", choices=[*STACKS, "loopback"],
                        help=f"stacks (default {', '.join(STACKS)}, loopback)")  # fmt: skip
    parser.add_argument("--idle", type=float, default=1.0, help="seconds idle before the idle RSS (default 1)")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up measurements")
    parser.add_argument("--json", metavar="PATH", help="write every raw number here")
    parser.add_argument("--chart", metavar="PATH", help="draw a PNG chart here (needs matplotlib)")
    parser.add_argument("--report", metavar="PATH", help="measure nothing: report the JSON of an earlier run")
    args = parser.parse_args(argv)
    mtus = args.mtu or [1500, 65520]
    stacks = args.stack or [*STACKS, "loopback"]
    if args.chart:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.exit(2, "--chart needs matplotlib: pip install '.[bench]'\n")
    if args.report:
        earlier = json.loads(Path(args.report).read_text())
        return report(earlier["meta"], earlier["records"], earlier["startups"], earlier["errors"], args)
    if os.geteuid() != 0:
        parser.exit(2, "run.py needs root (network namespaces and tap devices)\n")
    missing = [c for c in ("ip", "iperf3", "slirp4netns", "busybox", "ss") if not shutil.which(c)]
    missing += [str(BIN / c) for c in ("twistd", "vpnkit", "vpnkit-tap-bridge") if not (BIN / c).exists()]
    if missing:
        parser.exit(2, f"run.py needs {', '.join(missing)} (`make debs install`)\n")

    # SIGTERM cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    owner = Cleanups()
    workdir = tempfile.mkdtemp(prefix="vpnkit-bench-")
    owner.addCleanup(shutil.rmtree, workdir, True)
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "reps": args.reps,
        "time": args.time,
        "probe_time": args.probe_time,
        "parallel": args.parallel,
        "idle": args.idle,
        "mtus": mtus,
        "stacks": stacks,
        "load_start": loadAverage(),
        "load_samples": [],
        "slirp4netns": subprocess.run(["slirp4netns", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
        "iperf3": subprocess.run(["iperf3", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
    }
    records, startups, errors = [], [], []
    began = time.monotonic()
    status_ = 0
    try:
        for rep in range(args.reps):
            order = stacks if rep % 2 == 0 else [*reversed([s for s in stacks if s != "loopback"]),
                                                  *[s for s in stacks if s == "loopback"]]  # fmt: skip
            if not args.no_startup:
                kinds = STARTUPS if rep % 2 == 0 else tuple(reversed(STARTUPS))
                for kind in kinds:
                    log(f"rep {rep + 1}: start-up {kind} ...", end="")
                    try:
                        result = measureStartup(kind, args.idle, workdir)
                    except (RuntimeError, AssertionError, subprocess.SubprocessError) as e:
                        log(f" failed: {e}")
                        errors.append({"rep": rep, "startup": kind, "error": str(e)})
                        continue
                    finally:
                        for found in scanLogs(workdir):
                            if found["log"] == f"startup-{kind}.log":
                                errors.append({"rep": rep, "startup": kind, **found})
                    result["rep"] = rep
                    startups.append(result)
                    log(f" {result['to_ready'] * 1000:.0f} ms")
            for mtu in mtus:
                for name in order:
                    probes = mtu == mtus[0]
                    if name == "loopback" and not probes:
                        continue
                    start = time.monotonic()
                    log(f"rep {rep + 1}: MTU {mtu}: {name} ...", end="")
                    scratch = Path(workdir) / f"{rep}-{mtu}-{name}"
                    scratch.mkdir()
                    try:
                        got = measureTopology(name, mtu, args, probes, scratch)
                    except (RuntimeError, AssertionError, subprocess.SubprocessError) as e:
                        log(f" failed: {e}")
                        errors.append({"rep": rep, "mtu": mtu, "stack": name, "error": str(e)})
                        continue
                    finally:
                        for found in scanLogs(scratch):
                            log(f" {found['log']} has an error logged")
                            errors.append({"rep": rep, "mtu": mtu, "stack": name, **found})
                    for r in got:
                        r["rep"] = rep
                    records.extend(got)
                    brief = ", ".join(
                        f"{r['figure']} {fmt(r['value'], FIGURES[r['figure']][1])}" for r in got
                    )
                    log(f" {time.monotonic() - start:.0f}s: {brief}")
            meta["load_samples"].append(loadAverage())
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
        status_ = 130
    finally:
        owner.run()
    meta["load_end"] = loadAverage()
    meta["seconds"] = time.monotonic() - began
    result = report(meta, records, startups, errors, args)
    return status_ or result


def report(meta, records, startups, errors, args):
    """
    Print the tables; write the JSON and the chart if asked to.

    @return: the exit status: 1 if anything failed.
    """
    every = [*STACKS, "loopback"]
    stacks = [s for s in every if s in meta["stacks"]]
    summaries = figureSummaries(records, every)
    print(markdown(summaries, startups, stacks, meta))
    if errors:
        print("\nFailures:")
        for e in errors:
            print(f"- {json.dumps(e)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"meta": meta, "records": records, "startups": startups, "errors": errors,
                 "summaries": summaries}, indent=1)  # fmt: skip
            + "\n"
        )
    if args.chart and summaries:
        chart(args.chart, summaries, startups, stacks)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
