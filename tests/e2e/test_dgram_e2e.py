"""
End to end: real Linux guests attached over vpnkit's Unix datagram links,
C{--qemu-dgram} (QEMU's C{-netdev dgram} framing) and C{--vfkit} (the same
after a C{VFKT} greeting), through C{vpnkit-tap-bridge} in those modes.

Each link passes the transport checks of L{tests.e2e.test_links_e2e} (a
DHCP lease from busybox udhcpc, pings of the gateway and the host alias, a
jumbo MTU, two guests pinging each other), survives a flood of random
datagrams, and a vfkit guest moves 64 MiB each way through the host alias
with L{tests.e2e.tcptools}, compared by SHA-256.
"""

import random
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import Namespace, TapBridge, waitFor
from tests.e2e.test_links_e2e import GATEWAY, _TransportTests
from tests.e2e.test_tcp_e2e import MiB, TCPTestsMixin

SERVER_MAC = bytes.fromhex("f61636bcf9c6")


class _DatagramTransportTests(_TransportTests):
    """
    What every transport must do, over a datagram socket; and random
    datagrams leave it serving.
    """

    protocol = None
    flag = None
    magic = None

    def startWithSocket(self, mtu):
        self.workdir = self.makeWorkdir()
        self.socketPath = self.workdir / "dgram.sock"
        return self.startVPNKit(self.flag, str(self.socketPath), "--mtu", str(mtu), workdir=self.workdir)

    def bridge(self, guest, mtu):
        bridge = TapBridge(
            self, guest, self.socketPath, self.workdir, "--mtu", str(mtu), protocol=self.protocol
        )
        bridge.waitReady()
        return bridge

    def attachGuests(self, count, mtu):
        vpnkit = self.startWithSocket(mtu)
        guests = []
        for _ in range(count):
            guest = Namespace(self, "g")
            self.bridge(guest, mtu)
            guests.append(guest)
        return vpnkit, guests

    def rawPeer(self):
        """
        A datagram socket of our own, bound in the work directory and
        connected to vpnkit's (after the greeting, for vfkit).
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(str(self.workdir / "raw.sock"))
        sock.connect(str(self.socketPath))
        sock.settimeout(10)
        if self.magic is not None:
            sock.send(self.magic)
        return sock

    def test_randomDatagramsLeaveTheDaemonAnswering(self):
        """
        10,000 random datagrams (short, oversize, addressed to vpnkit as
        IPv4 and ARP, or wholly random) from one peer neither crash vpnkit
        nor disturb a real guest attached next to it, which gets its lease
        and pings the gateway; the bad ones are counted.
        """
        vpnkit, (guest,) = self.attachGuests(1, 1500)
        # The guest takes its lease first: a datagram link is leased at
        # its first datagram, and the raw peer's must not race it for .3.
        self.assertEqual(guest.dhcp(self)["ip"], "192.168.65.3")
        sock = self.rawPeer()
        rng = random.Random(20261205)
        for i in range(10000):
            length = rng.choice((rng.randint(0, 13), rng.randint(14, 1514), rng.randint(1551, 2000)))
            body = rng.randbytes(length)
            kind = i % 3
            if kind == 1 and length >= 15:
                body = SERVER_MAC + body[6:12] + b"\x08\x00" + bytes([0x45]) + body[15:]
            elif kind == 2 and length >= 14:
                body = b"\xff" * 6 + body[6:12] + b"\x08\x06" + body[14:]
            # Blocking and connected: waits for room in vpnkit's queue.
            sock.send(body)
        self.checkGuest(guest, guest.dhcp(self), "192.168.65.3", 1500)
        self.assertTrue(vpnkit.alive())

        def counted():
            link = vpnkit.stats()["counters"]["link"]
            return link if link["oversizeFrames"] and link["shortFrames"] else None

        link = waitFor(counted, 10, "vpnkit to count the bad datagrams", interval=0.5)
        self.assertEqual(link["handshakeFailures"], 0)
        guests = vpnkit.stats()["guests"]
        self.assertEqual(len(guests), 2, guests)
        self.assertIn(f"{self.protocol}:{self.workdir / 'raw.sock'}", [g["link"] for g in guests])


class QEMUDatagramTransportTests(_DatagramTransportTests, SynchronousTestCase):
    """
    Guests attach over C{--qemu-dgram}: every datagram is a frame.
    """

    protocol = "qemu-dgram"
    flag = "--qemu-dgram"


class VfkitTransportTests(_DatagramTransportTests, SynchronousTestCase):
    """
    Guests attach over C{--vfkit}: C{VFKT}, then a frame per datagram.
    """

    protocol = "vfkit"
    flag = "--vfkit"
    magic = b"VFKT"

    def test_noGreetingNoGuest(self):
        """
        A peer that sends frames without greeting first gets no guest and
        no reply; its datagrams are counted as handshake failures.
        """
        vpnkit = self.startWithSocket(1500)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(str(self.workdir / "rude.sock"))
        sock.connect(str(self.socketPath))
        for _ in range(3):
            sock.send(b"\xff" * 6 + b"\x52\x54\x00\x00\x00\x01" + b"\x08\x06" + bytes(28))

        def counted():
            stats = vpnkit.stats()
            return stats if stats["counters"]["link"]["handshakeFailures"] == 3 else None

        stats = waitFor(counted, 10, "three handshake failures", interval=0.5)
        self.assertEqual(stats["guests"], [])
        sock.setblocking(False)
        self.assertRaises(BlockingIOError, sock.recv, 2000)


class VfkitBulkTests(TCPTestsMixin, SynchronousTestCase):
    """
    A vfkit-framed guest moves 64 MiB each way through the host alias.
    """

    def startGuest(self, *args, mtu=1500, nofile=4096):
        self.workdir = self.makeWorkdir()
        path = self.workdir / "vfkit.sock"
        vpnkit = self.startVPNKit(
            "--mtu", str(mtu), "--vfkit", f"unixgram://{path}", *args,
            workdir=self.workdir, nofile=nofile,
        )  # fmt: skip
        guest = Namespace(self, "g")
        TapBridge(self, guest, path, self.workdir, "--mtu", str(mtu), protocol="vfkit").waitReady()
        self.assertEqual(guest.dhcp(self)["ip"], "192.168.65.3")
        return vpnkit, guest

    def test_bulk64MiBEachWay(self):
        """
        64 MiB guest -> host and 64 MiB host -> guest arrive intact
        (SHA-256, end of stream seen), and vpnkit keeps no connection and
        no host socket but its datagram socket afterwards.
        """
        vpnkit, guest = self.startGuest()
        start = time.monotonic()
        self.transfer(vpnkit, guest, 64 * MiB, True, 5001, timeout=120)
        upload = time.monotonic() - start
        start = time.monotonic()
        self.transfer(vpnkit, guest, 64 * MiB, False, 5002, timeout=120, seed=11)
        download = time.monotonic() - start
        stats = self.assertNothingLeft(vpnkit, sockets=1)
        tcp, link = stats["counters"]["tcp"], stats["counters"]["link"]
        self.assertEqual((tcp["connectionsOpened"], tcp["connectionsClosed"]), (2, 2))
        self.assertEqual(tcp["resetsSent"], 0)
        print(
            f"\nvfkit link: 64 MiB up in {upload:.1f}s, down in {download:.1f}s; "
            f"txQueueFull {link['txQueueFull']}, retransmits {tcp['retransmits']}"
        )
        self.assertTrue(guest.ping(GATEWAY))
