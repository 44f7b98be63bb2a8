#!/usr/bin/env python3
"""
Small-message probes for the benchmarks: echo servers for the host's
loopback and the clients a guest runs against them.

Run inside network namespaces (C{ip netns exec NS python probes.py COMMAND
...}).  Standard library only and plain blocking sockets, so the client's
own cost per message is small and the same whichever stack carries it.
Every command is bounded by C{--duration} seconds and ends by printing one
JSON line with what it measured; servers first print C{LISTENING <port>}.

Commands:

 - C{tcp-echo-server}: accept connections one after the other and echo
   each until its EOF (the clients below are sequential too).
 - C{udp-echo-server}: send every datagram back to its sender.
 - C{connect-rate}: connect, send 1 byte, read it back, close; as many
   times as fit in the window.
 - C{rtt}: one connection, 1 byte there and back as fast as it goes;
   percentiles of the round trip in microseconds.
 - C{udp-rr}: one datagram of C{--size} bytes, wait for its echo, again;
   a datagram lost (no echo within C{--timeout}) is counted, not retried.
"""

import argparse
import errno
import json
import socket
import sys
import time

# Round trips of a probe that are not measured: the first connection's ARP,
# the stack's first-use paths.
WARMUP = 50


def emit(result):
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def percentiles(samples, points=(50, 90, 99)):
    """
    Nearest-rank percentiles of C{samples} (any order).
    """
    ordered = sorted(samples)
    out = {}
    for p in points:
        if not ordered:
            out[f"p{p}"] = None
            continue
        rank = max(1, -(-p * len(ordered) // 100))
        out[f"p{p}"] = ordered[rank - 1]
    return out


def countError(errors, e):
    name = errno.errorcode.get(e.errno, "ETIMEDOUT") if isinstance(e, OSError) and e.errno else type(e).__name__
    errors[name] = errors.get(name, 0) + 1


def tcpEchoServer(args):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.bind, args.port))
    listener.listen(128)
    sys.stdout.write(f"LISTENING {listener.getsockname()[1]}\n")
    sys.stdout.flush()
    deadline = time.monotonic() + args.duration
    served = 0
    while time.monotonic() < deadline:
        listener.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            break
        served += 1
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(args.timeout)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
            except OSError:
                pass
    emit({"served": served})


def udpEchoServer(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    sys.stdout.write(f"LISTENING {sock.getsockname()[1]}\n")
    sys.stdout.flush()
    deadline = time.monotonic() + args.duration
    echoed = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data, peer = sock.recvfrom(65536)
        except socket.timeout:
            break
        sock.sendto(data, peer)
        echoed += 1
    emit({"echoed": echoed})


def connectRate(args):
    errors = {}
    done = 0
    latencies = []
    start = time.perf_counter()
    deadline = start + args.duration
    while True:
        begin = time.perf_counter()
        if begin >= deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(args.timeout)
        try:
            s.connect((args.host, args.port))
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise ConnectionError(errno.ECONNRESET, "no echo")
            done += 1
            latencies.append(time.perf_counter() - begin)
        except OSError as e:
            countError(errors, e)
        finally:
            s.close()
    elapsed = time.perf_counter() - start
    us = [t * 1e6 for t in latencies]
    emit(
        {
            "connections": done,
            "seconds": elapsed,
            "per_second": done / elapsed,
            "errors": errors,
            "connection_us": percentiles(us),
        }
    )


def rtt(args):
    s = socket.create_connection((args.host, args.port), timeout=args.timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    n = 0
    start = time.perf_counter()
    deadline = start + args.duration
    clock = time.perf_counter_ns
    try:
        while time.perf_counter() < deadline:
            t0 = clock()
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise ConnectionError(errno.ECONNRESET, "no echo")
            t1 = clock()
            n += 1
            if n > WARMUP:
                samples.append((t1 - t0) / 1000)
    finally:
        s.close()
    elapsed = time.perf_counter() - start
    result = {"round_trips": len(samples), "exchanges": n, "seconds": elapsed}
    result.update(percentiles(samples))
    result["min"] = min(samples) if samples else None
    result["mean"] = sum(samples) / len(samples) if samples else None
    emit(result)


def udpRR(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((args.host, args.port))
    s.settimeout(args.timeout)
    payload = b"u" * args.size
    answered = lost = 0
    samples = []
    start = time.perf_counter()
    deadline = start + args.duration
    clock = time.perf_counter_ns
    while time.perf_counter() < deadline:
        t0 = clock()
        s.send(payload)
        try:
            # Late echoes of a datagram already counted lost are skipped.
            while s.recv(65536) != payload:
                pass
        except socket.timeout:
            lost += 1
            continue
        answered += 1
        samples.append((clock() - t0) / 1000)
    elapsed = time.perf_counter() - start
    result = {
        "answered": answered,
        "lost": lost,
        "seconds": elapsed,
        "per_second": answered / elapsed,
    }
    result.update({f"rtt_{k}": v for k, v in percentiles(samples[WARMUP:]).items()})
    emit(result)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function in (
        ("tcp-echo-server", tcpEchoServer),
        ("udp-echo-server", udpEchoServer),
        ("connect-rate", connectRate),
        ("rtt", rtt),
        ("udp-rr", udpRR),
    ):
        sub = commands.add_parser(name)
        sub.set_defaults(function=function)
        sub.add_argument("--duration", type=float, default=3.0, help="seconds (servers: at most)")
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--timeout", type=float, default=2.0, help="seconds per operation")
        if name.endswith("server"):
            sub.add_argument("--bind", default="127.0.0.1")
        else:
            sub.add_argument("--host", required=True)
        if name == "udp-rr":
            sub.add_argument("--size", type=int, default=33, help="datagram payload bytes")
    args = parser.parse_args(argv)
    args.function(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
