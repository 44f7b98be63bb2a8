"""
Helper programs for the abuse end-to-end tests, run inside a guest's
network namespace (C{ip netns exec NS python rawtools.py COMMAND ...}):
raw Ethernet frames in and out of the guest's tap through an C{AF_PACKET}
socket, so a test can send what a hostile guest would (spoofed addresses,
forged ARP, SYNs to loopback, floods of fragments).

Standard library only.  Each command prints C{RESULT <json>} lines (and
C{LISTENING 0} once it can receive), and every wait has a deadline.

Commands:

 - C{send FILE}: send the frames of FILE (one hex frame a line); with
   C{--expect-tcp SRC:SPORT:DPORT}, then wait for a TCP segment from
   SRC:SPORT to DPORT and report its flags.
 - C{sniff --until HEX --out FILE}: keep every frame the guest receives
   (hex, a line each) until one contains the bytes HEX.
 - C{fragments --count N ...}: send N first fragments (more-fragments
   set) of UDP datagrams from random source addresses (with C{--own-ip},
   every other one from the guest's own address to a random remote host),
   re-sending what the tap's queue dropped, so that vpnkit really reads N
   frames.
 - C{listen --listen HOST:PORT}: accept TCP connections, printing
   C{ACCEPTED <peer>} for each, until killed.
"""

import argparse
import json
import random
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def emit(kind, value):
    sys.stdout.write(f"{kind} {json.dumps(value) if kind == 'RESULT' else value}\n")
    sys.stdout.flush()


def rawSocket(iface):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    return sock


def incoming(sock, deadline):
    """
    The frames the guest receives (not those it sends) until C{deadline}.
    """
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            frame, address = sock.recvfrom(65536)
        except socket.timeout:
            return
        if address[2] != PACKET_OUTGOING:
            yield frame


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


def cmdSend(args):
    sock = rawSocket(args.iface)
    with open(args.file) as f:
        frames = [bytes.fromhex(line.strip()) for line in f if line.strip()]
    for frame in frames:
        sock.send(frame)
    result = {"sent": len(frames), "reply": None}
    if args.expect_tcp:
        src, sport, dport = args.expect_tcp.split(":")
        src, sport, dport = socket.inet_aton(src), int(sport), int(dport)
        for frame in incoming(sock, time.monotonic() + args.timeout):
            if frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[26:30] != src:
                continue
            tcp = 14 + (frame[14] & 0x0F) * 4
            ports = struct.unpack_from("!HH", frame, tcp)
            if ports == (sport, dport):
                flags = frame[tcp + 13]
                names = [n for bit, n in ((2, "SYN"), (4, "RST"), (16, "ACK")) if flags & bit]
                result["reply"] = {"flags": names}
                break
    emit("RESULT", result)


def cmdSniff(args):
    sock = rawSocket(args.iface)
    marker = bytes.fromhex(args.until)
    emit("LISTENING", 0)
    n, seen = 0, False
    with open(args.out, "w") as out:
        for frame in incoming(sock, time.monotonic() + args.timeout):
            out.write(frame.hex() + "\n")
            n += 1
            if marker in frame:
                seen = True
                break
    emit("RESULT", {"frames": n, "marker": seen})


def txDropped(iface):
    with open(f"/sys/class/net/{iface}/statistics/tx_dropped") as f:
        return int(f.read())


def cmdFragments(args):
    sock = rawSocket(args.iface)
    rng = random.Random(args.seed)
    head = mac(args.dst_mac) + mac(args.src_mac) + b"\x08\x00"
    dst = socket.inet_aton(args.dst_ip)
    own = socket.inet_aton(args.own_ip) if args.own_ip else None
    delivered = sent = 0
    deadline = time.monotonic() + args.timeout
    dropped = txDropped(args.iface)
    while delivered < args.count and time.monotonic() < deadline:
        batch = min(256, args.count - delivered)
        for n in range(sent, sent + batch):
            if own is not None and n % 2:
                # The guest's own address, to random remote hosts: past the
                # switch, into reassembly.
                src = own
                to = struct.pack("!I", rng.randrange(0x01000000, 0x7F000000))
            else:
                src = struct.pack("!I", rng.randrange(0x01000000, 0xDF000000))
                to = dst
            header = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 28, rng.getrandbits(16), 0x2000, 64, 17, 0, src, to
            )
            header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
            sock.send(head + header + rng.getrandbits(64).to_bytes(8, "big"))
        sent += batch
        now = txDropped(args.iface)
        lost, dropped = now - dropped, now
        delivered += batch - lost
        if lost:
            # vpnkit is behind: let it drain before the next batch.
            time.sleep(0.002)
    emit("RESULT", {"sent": sent, "delivered": delivered})


def cmdListen(args):
    host, port = args.listen.rsplit(":", 1)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, int(port)))
    server.listen(64)
    emit("LISTENING", port)
    server.settimeout(args.timeout)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            conn, peer = server.accept()
        except socket.timeout:
            break
        emit("ACCEPTED", f"{peer[0]}:{peer[1]}")
        conn.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument("--iface", default="tap0")
        p.add_argument("--timeout", type=float, default=30.0)
        return p

    p = add("send", cmdSend)
    p.add_argument("file")
    p.add_argument("--expect-tcp")
    p = add("sniff", cmdSniff)
    p.add_argument("--until", required=True)
    p.add_argument("--out", required=True)
    p = add("fragments", cmdFragments)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--src-mac", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--dst-ip", required=True)
    p.add_argument("--own-ip", help="send every other fragment from this address")
    p.add_argument("--seed", type=int, default=1)
    p = add("listen", cmdListen)
    p.add_argument("--listen", required=True)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
