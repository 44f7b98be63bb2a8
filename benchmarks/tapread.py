#!/usr/bin/env python3
"""
The tap's read path alone: L{vpnkit.host.taplink.TapLink.doRead} with
offload, one wake-up per frame (as small-packet traffic has it), each frame
a 1-byte TCP segment whose checksum the guest's kernel left partial.  The
device is L{tests.fakes.FakeTunSystem}'s socketpair with the real system's
C{readFrames} when it has one.  Under callgrind, the instructions per
frame (run two C{N}, divide the difference):

    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python benchmarks/tapread.py 200
    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python benchmarks/tapread.py 2200

C{VPNKIT_TREE=PATH} measures the checkout at PATH instead (as in
C{smallcpu.py}).  The count includes the fake guest's C{send} of each frame.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if os.environ.get("VPNKIT_TREE"):
    sys.path.insert(0, os.environ["VPNKIT_TREE"])

from tests.fakes import GUEST_MAC, FakeFDReactor, FakeTunSystem  # noqa: E402
from vpnkit.counters import LinkCounters  # noqa: E402
from vpnkit.host.taplink import TapLink  # noqa: E402
from vpnkit.host.tundev import LinuxTunSystem  # noqa: E402
from vpnkit.wire.checksum import pseudoHeaderSum  # noqa: E402
from vpnkit.wire.ipv4 import buildHeader  # noqa: E402
from vpnkit.wire.tcp import ACK, Segment, emitTCP  # noqa: E402
from vpnkit.wire.virtio import F_NEEDS_CSUM, VirtioNetHeader, emitVirtioNetHeader  # noqa: E402


class _System(FakeTunSystem):
    """
    The fake device, read the way the real system reads (C{readFrames}).
    """


if hasattr(LinuxTunSystem, "readFrames"):
    _System.readFrames = LinuxTunSystem.readFrames


def partialFrame():
    """
    A virtio-net header asking for checksum completion and an
    Ethernet/IPv4/TCP frame with 1 byte of payload and a partial checksum.
    """
    src, dst = bytes([192, 168, 65, 3]), bytes([192, 168, 65, 2])
    tcp = emitTCP(Segment(40000, 5201, 1000, 2000, ACK, 512, payload=b"x"), src, dst)
    partial = pseudoHeaderSum(src, dst, 6, len(tcp)) % 0xFFFF
    tcp = tcp[:16] + partial.to_bytes(2, "big") + tcp[18:]
    ethernet = b"\xf6\x16\x36\xbc\xf9\xc6" + GUEST_MAC + b"\x08\x00"
    vnet = emitVirtioNetHeader(VirtioNetHeader(F_NEEDS_CSUM, 0, 54, 0, 34, 16))
    return vnet + ethernet + buildHeader(src, dst, 6, len(tcp)) + tcp


def main(n):
    system = _System()
    fd = system.openTap(None, "tap0", GUEST_MAC, 1500, offload=True)
    guest = system.opened[0].guest
    received = []
    link = TapLink(
        fd, system, received.append, LinkCounters(), 1550, "tap0",
        reactor=FakeFDReactor(), offload=True,
    )
    link.startReading()
    frame = partialFrame()
    for _ in range(n):
        guest.send(frame)
        link.doRead()
    assert len(received) == n, len(received)
    system.cleanup()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
