#!/usr/bin/env python3
"""
vpnkit's CPU per operation on the host side of a guest's TCP connection:
the real L{vpnkit.host.network.HostNetwork} on the real (epoll) reactor,
against an echo server on 127.0.0.1 in another process, so that only the
dialling side's CPU (C{time.process_time()}) is counted.  What
L{smallcpu} leaves out: sockets, the reactor, Twisted's transport.

    .venv/bin/python benchmarks/hostcpu.py [--n 3000] [--reps 5] [--only rtt]

 - C{connect}: dial, 1 byte there and back, half-close, the peer's EOF,
   close (what a guest's connect-rate connection costs the host side);
 - C{rtt}: on one connection, 1 byte there and back.

Each measurement runs in a process of its own (a reactor runs once).
Under C{valgrind --tool=callgrind} the instruction count is the steadier
figure: run C{--child WORKLOAD N} with two N and divide the difference.
C{VPNKIT_TREE=PATH} measures the checkout at PATH.  Loopback only.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ECHO = """
import socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
    conn.close()
"""

WARMUP = 20


def child(workload, n):
    """
    Run C{workload} C{n} times (after a warm-up) on the reactor.

    @return: CPU seconds per operation.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if os.environ.get("VPNKIT_TREE"):
        sys.path.insert(0, os.environ["VPNKIT_TREE"])
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from twisted.internet.protocol import Protocol
    from zope.interface import implementer

    from vpnkit.host.network import HostNetwork

    server = subprocess.Popen(
        [sys.executable, "-c", ECHO], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        port = int(server.stdout.readline())
        network = HostNetwork(reactor)
        state = {"done": 0, "start": None, "failure": None}

        def started():
            state["start"] = time.process_time()

        @implementer(IHalfCloseableProtocol)
        class Probe(Protocol):
            exchanges = 0

            def connectionMade(self):
                self.transport.write(b"x")

            def dataReceived(self, data):
                self.exchanges += 1
                if workload == "rtt":
                    if self.exchanges == WARMUP:
                        started()
                    if self.exchanges < n + WARMUP:
                        self.transport.write(b"x")
                        return
                self.transport.loseWriteConnection()

            def readConnectionLost(self):
                self.transport.loseConnection()

            def writeConnectionLost(self):
                pass

            def connectionLost(self, reason):
                state["done"] += 1
                if workload == "connect" and state["done"] == WARMUP:
                    started()
                if workload == "rtt" or state["done"] >= n + WARMUP:
                    reactor.stop()
                    return
                dial()

        def failed(failure):
            state["failure"] = failure
            reactor.stop()

        def dial():
            network.connectTCP("127.0.0.1", port, Probe(), 5.0).addErrback(failed)

        reactor.callWhenRunning(dial)
        reactor.run()
        if state["failure"] is not None:
            state["failure"].raiseException()
        return (time.process_time() - state["start"]) / n
    finally:
        server.kill()
        server.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", action="append", choices=("connect", "rtt"))
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        workload, n = args.child
        print(child(workload, int(n)))
        return 0
    names = args.only or ["connect", "rtt"]
    results = {name: [] for name in names}
    for _ in range(args.reps):
        for name in names:
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, str(args.n)],
                capture_output=True, text=True, check=True, timeout=600,
            ).stdout
            results[name].append(float(out) * 1e6)
    for name in names:
        values = results[name]
        print(
            f"{name:<8} {statistics.median(values):8.1f} us CPU/op"
            f"  (min {min(values):.1f}, n={args.n} x {args.reps})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
