#!/usr/bin/env python3
"""
iperf3 through vpnkit and through slirp4netns, side by side.

Run on demand (as root), not part of the test suite:

    /tmp/venv/bin/python benchmarks/iperf.py [--time 5] [--mtu 1500 --mtu 65520]

For each MTU, and for each stack, a guest network namespace reaches an
C{iperf3 -s} listening on 127.0.0.1 of a "host" namespace that has only a
loopback interface, so nothing leaves the machine:

 - vpnkit: C{twistd vpnkit --netns GUEST --mtu N} runs inside the host
   namespace and creates the guest's tap; the guest takes a lease with
   busybox udhcpc and dials the host alias 192.168.65.2.
 - slirp4netns: C{slirp4netns --configure --mtu=N --netns-type=path
   /var/run/netns/GUEST tap0} runs inside the host namespace; the guest
   dials 10.0.2.2, which slirp4netns maps to the host's 127.0.0.1.

Each pair is measured guest -> host (C{iperf3 -c}) and host -> guest
(C{iperf3 -c -R}); the table gives the receiver's Gbit/s and the ratio
vpnkit / slirp4netns.  Every namespace and process is removed at exit, even
on failure or Ctrl-C.

vpnkit is the one installed next to this Python (C{twistd} in the same
bin directory), so reinstall the checkout first.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import Cleanups, BIN, Namespace, VPNKit, _Process, waitFor  # noqa: E402

IPERF_PORT = 5201


def iperfServer(owner, namespace, workdir):
    server = _Process(
        owner,
        namespace.argv(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(IPERF_PORT)]),
        Path(workdir) / f"iperf3-server-{namespace.name}.log",
    )

    def listening():
        out = namespace.run(["ss", "-Htln", f"sport = :{IPERF_PORT}"], check=False).stdout
        return str(IPERF_PORT) in out

    waitFor(listening, 10, "iperf3 -s to listen")
    return server


def iperfClient(namespace, target, seconds, reverse, parallel):
    """
    @return: the receiver's throughput in bit/s.
    """
    argv = [
        "iperf3", "-c", target, "-p", str(IPERF_PORT), "-t", str(seconds),
        "-P", str(parallel), "-J", "--connect-timeout", "5000",
    ]
    if reverse:
        argv.append("-R")
    result = namespace.run(argv, timeout=seconds + 60, check=False)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise RuntimeError(f"iperf3 gave no report: {result.stdout}{result.stderr}") from None
    if "error" in report:
        raise RuntimeError(f"iperf3 -c {target}: {report['error']}")
    return report["end"]["sum_received"]["bits_per_second"]


def measureVPNKit(owner, mtu, seconds, parallel, workdir):
    guest = Namespace(owner, "g")
    vpnkit = VPNKit(owner, Namespace(owner, "h"), ["--mtu", str(mtu), "--netns", guest.name], workdir)
    lease = guest.dhcp(owner)
    assert lease["mtu"] == str(mtu), lease
    iperfServer(owner, vpnkit.namespace, workdir)
    up = iperfClient(guest, "192.168.65.2", seconds, False, parallel)
    down = iperfClient(guest, "192.168.65.2", seconds, True, parallel)
    return up, down


def measureSlirp(owner, mtu, seconds, parallel, workdir):
    host = Namespace(owner, "s")
    guest = Namespace(owner, "g")
    iperfServer(owner, host, workdir)
    _Process(
        owner,
        host.argv(
            [
                "slirp4netns", "--configure", f"--mtu={mtu}", "--netns-type=path",
                guest.path, "tap0",
            ]
        ),
        Path(workdir) / f"slirp4netns-{guest.name}.log",
    )

    def configured():
        out = guest.run(["ip", "-o", "addr", "show", "dev", "tap0"], check=False).stdout
        return "10.0.2.100/" in out

    waitFor(configured, 10, "slirp4netns to configure tap0")
    assert f"mtu {mtu} " in guest.linkInfo()
    up = iperfClient(guest, "10.0.2.2", seconds, False, parallel)
    down = iperfClient(guest, "10.0.2.2", seconds, True, parallel)
    return up, down


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time", "-t", type=int, default=5, help="seconds per iperf3 run")
    parser.add_argument("--mtu", type=int, action="append", help="MTUs (default 1500, 65520)")
    parser.add_argument("--parallel", "-P", type=int, default=1, help="iperf3 streams")
    args = parser.parse_args(argv)
    mtus = args.mtu or [1500, 65520]
    if os.geteuid() != 0:
        parser.exit(2, "iperf.py needs root (network namespaces and tap devices)\n")
    missing = [c for c in ("ip", "iperf3", "slirp4netns", "busybox", "ss") if not shutil.which(c)]
    if not (BIN / "twistd").exists():
        missing.append(str(BIN / "twistd"))
    if missing:
        parser.exit(2, f"iperf.py needs {', '.join(missing)} (see the Makefile's DEBS)\n")

    owner = Cleanups()
    # SIGTERM cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = tempfile.mkdtemp(prefix="vpnkit-iperf-")
    owner.addCleanup(shutil.rmtree, workdir, True)
    rows = []
    try:
        for mtu in mtus:
            for name, measure in (("vpnkit", measureVPNKit), ("slirp4netns", measureSlirp)):
                start = time.monotonic()
                sys.stderr.write(f"MTU {mtu}: {name} ...")
                sys.stderr.flush()
                scope = Cleanups()
                try:
                    up, down = measure(scope, mtu, args.time, args.parallel, workdir)
                finally:
                    scope.run()
                sys.stderr.write(f" {time.monotonic() - start:.1f}s\n")
                rows.append((mtu, name, up, down))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        owner.run()

    results = {(mtu, name): (up, down) for mtu, name, up, down in rows}
    print(f"iperf3 -t {args.time} -P {args.parallel}, receiver throughput in Gbit/s")
    header = f"{'direction':<13} {'MTU':>6} {'vpnkit':>9} {'slirp4netns':>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for mtu in mtus:
        for index, direction in ((0, "guest->host"), (1, "host->guest")):
            v = results[(mtu, "vpnkit")][index] / 1e9
            s = results[(mtu, "slirp4netns")][index] / 1e9
            print(f"{direction:<13} {mtu:>6} {v:>9.3f} {s:>12.3f} {v / s:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
