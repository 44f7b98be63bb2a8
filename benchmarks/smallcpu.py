#!/usr/bin/env python3
"""
vpnkit's own CPU per small-packet operation, in one process: the real
L{vpnkit.stack.Stack} with the test fakes (a frame recorder for the guest's
link, L{tests.helpers.FakeHostNetwork} with C{StringTransport}s for host
TCP, L{tests.fakesockets.FakeDatagramSockets} for host UDP), a scripted
guest, and C{time.process_time()}.  No kernel, no reactor, no other
process: what is left is the Python vpnkit runs per frame, which noise on
a shared machine touches far less than an end-to-end rate.

    .venv/bin/python benchmarks/smallcpu.py [--n 3000] [--reps 5] [--only rtt]

 - C{connect}: the guest's SYN, the host dial completing, SYN-ACK, the
   guest's ACK and 1 byte, the host's echo, the guest's FIN, the host's
   EOF and close, our FIN, the guest's last ACK (one connection, as
   C{smallpackets.py connect-rate} makes);
 - C{rtt}: on an established connection, 1 byte from the guest (with the
   ACK of the last echo) and the host's 1-byte echo;
 - C{udp}: a 33-byte datagram to the host alias and its 33-byte answer.

Prints microseconds of CPU per operation (median of the repetitions).
Under C{valgrind --tool=callgrind} the instruction count per operation is
the steadier figure: run C{--reps 1 --only NAME} with two C{--n} and divide
the difference.  C{VPNKIT_TREE=PATH} measures the checkout at PATH (the
same benchmark on the code before a change).
"""

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

# The checkout to measure: this one, or another (a build before a change)
# named by VPNKIT_TREE; its vpnkit is imported before anything else is.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if os.environ.get("VPNKIT_TREE"):
    sys.path.insert(0, os.environ["VPNKIT_TREE"])

from tests.helpers import HOST_IP, SERVER_MAC, buildUDP, makeStack  # noqa: E402
from vpnkit.wire.ethernet import HEADER_LENGTH  # noqa: E402
from vpnkit.wire.ipv4 import PROTO_TCP, buildHeader  # noqa: E402
from vpnkit.wire.tcp import ACK, FIN, PSH, SYN, Segment, TCPOptions, emitTCP  # noqa: E402

PORT = 7001


class ScriptedGuest:
    """
    Just enough of a guest's TCP to drive connections: it keeps its own
    sequence numbers and takes vpnkit's from the frames it is sent.
    """

    def __init__(self, guest):
        self.guest = guest
        self.port = 40000
        self.seq = 0
        self.ack = 0

    def send(self, flags, payload=b"", options=None):
        seg = Segment(
            self.port, PORT, self.seq, self.ack, flags, 64240,
            options if options is not None else TCPOptions(), payload,
        )
        g = self.guest
        # The frame is built with the wire layer's plain fast path (no
        # header objects), so that the guest's own cost does not change
        # with vpnkit's header classes and only vpnkit's is measured.
        tcp = emitTCP(seg, g.ip, HOST_IP)
        g.send(
            SERVER_MAC + g.mac + b"\x08\x00"
            + buildHeader(g.ip, HOST_IP, PROTO_TCP, len(tcp)) + tcp
        )
        self.seq = (self.seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF

    def receive(self):
        """
        Take what vpnkit sent; advance our ACK past it.

        @return: how many frames.
        """
        frames = self.guest.takeFrames()
        for frame in frames:
            tcp = frame[HEADER_LENGTH + 20 :]
            seq = int.from_bytes(tcp[4:8], "big")
            flags = tcp[13]
            length = len(tcp) - (tcp[12] >> 4) * 4
            end = seq + length + (1 if flags & (SYN | FIN) else 0)
            if flags & SYN or (end - self.ack) & 0x80000000 == 0:
                self.ack = end & 0xFFFFFFFF
        return len(frames)


def connectOnce(stack, peer):
    net = stack.hostNetwork
    peer.port = 40000 + (peer.port - 39999) % 20000
    peer.seq = 1000
    peer.send(SYN, options=TCPOptions(mss=1460, windowScale=7, sackPermitted=True))
    protocol = net.connects[-1].protocol
    host = net.succeed()
    net.connects.clear()
    peer.receive()  # SYN-ACK
    peer.send(ACK)
    peer.send(ACK | PSH, b"x")
    assert host.value() == b"x", host.value()
    host.clear()
    protocol.dataReceived(b"x")
    peer.receive()
    peer.send(ACK | FIN)
    # The host end's EOF, then its close.
    protocol.readConnectionLost()
    peer.receive()  # our FIN
    peer.send(ACK)
    peer.receive()
    if host.disconnecting or host.disconnected:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        protocol.connectionLost(Failure(ConnectionDone()))


def established(stack, peer):
    net = stack.hostNetwork
    peer.port = 39000
    peer.seq = 1000
    peer.send(SYN, options=TCPOptions(mss=1460, windowScale=7, sackPermitted=True))
    protocol = net.connects[-1].protocol
    host = net.succeed()
    peer.receive()
    peer.send(ACK)
    return host, protocol


def rttOnce(peer, host, protocol):
    peer.send(ACK | PSH, b"x")
    assert host.value() == b"x"
    host.clear()
    protocol.dataReceived(b"x")
    peer.receive()


def udpOnce(stack, guest, frame):
    guest.send(frame)
    [sock] = stack.sockets.live() if hasattr(stack.sockets, "live") else [None]
    sock.sent.clear()
    sock.deliver(b"r" * 33, "127.0.0.1", PORT)
    guest.takeFrames()


def measure(name, n):
    stack, (guest,) = makeStack()
    peer = ScriptedGuest(guest)
    if name == "connect":
        step = lambda: connectOnce(stack, peer)  # noqa: E731
    elif name == "rtt":
        host, protocol = established(stack, peer)
        step = lambda: rttOnce(peer, host, protocol)  # noqa: E731
    else:
        frame = buildUDP(guest.mac, guest.ip, 40001, HOST_IP, PORT, b"u" * 33, dstMAC=SERVER_MAC)
        step = lambda: udpOnce(stack, guest, frame)  # noqa: E731
    for _ in range(50):
        step()
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - start) / n * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", action="append", choices=("connect", "rtt", "udp"))
    args = parser.parse_args(argv)
    names = args.only or ["connect", "rtt", "udp"]
    results = {name: [] for name in names}
    for _ in range(args.reps):
        for name in names:
            results[name].append(measure(name, args.n))
    for name in names:
        values = results[name]
        print(f"{name:<8} {statistics.median(values):8.1f} us CPU/op  (min {min(values):.1f}, n={args.n} x {args.reps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
