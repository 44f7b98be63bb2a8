#!/usr/bin/env python3
"""
CPU time per MiB of host -> guest TCP through vpnkit's own code, in
process: no sockets, no namespaces, no root.

A real L{vpnkit.stack.Stack} on a L{task.Clock} (the test fakes of
C{tests/helpers.py}) with one guest behind a real L{TapLink} whose device
is a fake that takes every write whole and keeps nothing.  The guest opens
a connection to a remote address; the host side (a C{StringTransport})
then hands the guest's connection C{--read} bytes at a time, as Twisted's
C{doRead} does with what one C{recv} returned, and the guest acknowledges
everything sent after each read (the reads cycle
through 16 MiB of distinct buffers, so that copies are not cache-hot) (one ACK frame through the switch, the
IPv4 and the TCP layers).  What is measured is C{time.process_time()} for
C{--mib} MiB after a warm-up, the best of C{--reps} runs: the cost of
SendBuffer, segmenting, emitting, IPv4, the switch port and the tap link's
write side, the part of a download vpnkit spends in Python.

    .venv/bin/python benchmarks/inprocess.py [--mtu 65520] [--read 65536]
"""

import argparse
import gc
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import REMOTE_IP, buildIPv4, makeStack  # noqa: E402
from vpnkit.host.taplink import TapLink  # noqa: E402
from vpnkit.wire.ipv4 import PROTO_TCP  # noqa: E402
from vpnkit.wire.tcp import ACK, SYN, Segment, TCPOptions, emitTCP  # noqa: E402


class DiscardingTap:
    """
    The L{vpnkit.interfaces.ITunSystem} calls a L{TapLink} makes to write:
    every write is taken whole (as a tap does) and forgotten.
    """

    def __init__(self):
        self.frames = self.bytes = 0

    def write(self, fd, frame):
        self.frames += 1
        self.bytes += len(frame)
        return len(frame)

    def writev(self, fd, buffers):
        n = sum(len(b) for b in buffers)
        self.frames += 1
        self.bytes += n
        return n

    def read(self, fd, size):
        raise BlockingIOError()

    def close(self, fd):
        pass


def setUp(mtu, offload):
    stack, _ = makeStack(0, mtu=mtu)
    tap = DiscardingTap()
    config = stack.config
    link = TapLink(
        -1,
        tap,
        None,
        stack.counters.link,
        config.maxFrameSize,
        "bench",
        reactor=stack.reactor,
        offload=offload,
        mtu=mtu,
    )
    lease = stack.guests.leaseForUUID("00000000-0000-0000-0000-000000000001")
    port = stack.guests.attach(link, lease, lease.mac)
    guestIP = lease.ip.packed
    guestMAC = lease.mac

    def send(seg):
        port.frameReceived(
            buildIPv4(guestMAC, guestIP, REMOTE_IP, PROTO_TCP, emitTCP(seg, guestIP, REMOTE_IP))
        )

    mss = mtu - 40
    send(Segment(40000, 80, 1000, 0, SYN, 65535, TCPOptions(mss=mss, windowScale=7, sackPermitted=True)))
    stack.hostNetwork.succeed()
    protocol = stack.hostNetwork.connects[-1].protocol
    [connection] = stack.tcp.connections()
    tcb = connection.tcb
    send(Segment(40000, 80, 1001, tcb.sndNxt, ACK, 65535))
    return stack, tap, protocol, tcb, send


def run(mtu, offload, readSize, mib):
    stack, tap, protocol, tcb, send = setUp(mtu, offload)
    # Distinct buffers, more of them than the caches hold, as a socket's
    # reads would be.
    pool = [os.urandom(readSize) for _ in range(max(1, (16 << 20) // readSize))]
    rounds = max(1, (mib << 20) // readSize)

    def transfer(n):
        dataReceived = protocol.dataReceived
        for i in range(n):
            dataReceived(pool[i % len(pool)])
            send(Segment(40000, 80, 1001, tcb.sndNxt, ACK, 65535))

    transfer(64)  # warm up: slow start, caches
    frames = tap.frames
    gc.collect()
    start = time.process_time()
    transfer(rounds)
    elapsed = time.process_time() - start
    assert tcb.sendQueue == 0, tcb.sendQueue
    return elapsed / (rounds * readSize / (1 << 20)), (tap.frames - frames) / rounds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mtu", type=int, action="append")
    parser.add_argument("--read", type=int, action="append", help="bytes per host read")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-offload", action="store_true")
    args = parser.parse_args()
    print("MTU    read  offload  frames/read  us/MiB (best of %d)" % args.reps)
    for mtu in args.mtu or [65520, 1500]:
        for readSize in args.read or [65536]:
            best = None
            for _ in range(args.reps):
                perMiB, frames = run(mtu, not args.no_offload, readSize, args.mib)
                best = perMiB if best is None else min(best, perMiB)
            print(f"{mtu:5} {readSize:7} {str(not args.no_offload):>7} {frames:11.2f}  {best * 1e6:8.0f}")


if __name__ == "__main__":
    main()
