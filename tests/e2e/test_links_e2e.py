"""
End to end: real Linux guests in network namespaces get a lease from vpnkit
and ping through it, attached over each kind of link: the vmnet socket
(through vpnkit-tap-bridge), the QEMU stream socket (the same tool in QEMU
mode) and a tap device vpnkit creates itself (--netns).
"""

import random
import socket
import struct
import uuid as _uuid

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import E2EMixin, Namespace, TapBridge, requireE2E, waitFor
from vpnkit.wire import vmnet

GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"


class _TransportTests(E2EMixin):
    """
    What every transport must do; subclasses say how guests attach.
    """

    def setUp(self):
        requireE2E("busybox", "ping")

    def attachGuests(self, count, mtu):
        """
        Start vpnkit with C{mtu} and attach C{count} guest namespaces.

        @return: C{(vpnkit, [guest Namespace, ...])}, guests in the order
            they were attached (so they get .3, .4, ...).
        """
        raise NotImplementedError()

    def checkGuest(self, guest, lease, expectedIP, mtu):
        self.assertEqual(lease["ip"], expectedIP)
        self.assertEqual(lease["router"], GATEWAY)
        self.assertEqual(lease["dns"], GATEWAY)
        self.assertEqual(lease["serverid"], GATEWAY)
        self.assertEqual(lease["subnet"], "255.255.255.0")
        self.assertEqual(lease["mtu"], str(mtu))
        self.assertIn(f"mtu {mtu} ", guest.linkInfo())
        self.assertTrue(guest.ping(GATEWAY, count=2), "the gateway did not answer ping")
        self.assertTrue(guest.ping(HOST_ALIAS, count=2), "the host alias did not answer ping")

    def test_leaseAndPingMTU1500(self):
        """
        A guest's udhcpc gets 192.168.65.3 with router and DNS 192.168.65.1
        and MTU 1500; the gateway and the host alias answer its pings.
        """
        vpnkit, (guest,) = self.attachGuests(1, 1500)
        self.checkGuest(guest, guest.dhcp(self), "192.168.65.3", 1500)
        self.assertTrue(vpnkit.alive())

    def test_leaseAndPingMTU9000(self):
        """
        With --mtu 9000 the lease carries MTU 9000, the guest's interface
        uses it, and a ping that fills the jumbo frame is answered.
        """
        vpnkit, (guest,) = self.attachGuests(1, 9000)
        self.checkGuest(guest, guest.dhcp(self), "192.168.65.3", 9000)
        self.assertTrue(guest.ping(GATEWAY, size=9000 - 28), "a 9000-byte ping was not answered")

    def test_twoGuestsPingEachOther(self):
        """
        A second guest gets 192.168.65.4 and the two guests ping each other
        through vpnkit's switch.
        """
        vpnkit, (first, second) = self.attachGuests(2, 1500)
        self.checkGuest(first, first.dhcp(self), "192.168.65.3", 1500)
        self.checkGuest(second, second.dhcp(self), "192.168.65.4", 1500)
        self.assertTrue(first.ping("192.168.65.4", count=2), "guest .3 could not ping .4")
        self.assertTrue(second.ping("192.168.65.3", count=2), "guest .4 could not ping .3")


class NetnsTransportTests(_TransportTests, SynchronousTestCase):
    """
    vpnkit creates the guests' tap devices itself (--netns).
    """

    def attachGuests(self, count, mtu):
        guests = [Namespace(self, "g") for _ in range(count)]
        args = ["--mtu", str(mtu)]
        for guest in guests:
            args += ["--netns", guest.name]
        vpnkit = self.startVPNKit(*args)
        return vpnkit, guests

    def test_tapConfiguredByVPNKit(self):
        """
        The tap vpnkit creates in the guest's namespace is up, has the
        guest MAC 02:50:00:00:00:01 and the configured MTU before the guest
        does anything.
        """
        vpnkit, (guest,) = self.attachGuests(1, 4000)
        info = guest.linkInfo()
        self.assertIn("state UNKNOWN", info.replace("state UP", "state UNKNOWN"))
        self.assertIn(",UP", info)
        self.assertIn("mtu 4000 ", info)
        self.assertIn("link/ether 02:50:00:00:00:01 ", info)


class _SocketTransportTests(_TransportTests):
    protocol = None
    flag = None

    def startWithSocket(self, mtu):
        self.workdir = self.makeWorkdir()
        self.socketPath = self.workdir / "ethernet.sock"
        return self.startVPNKit(self.flag, str(self.socketPath), "--mtu", str(mtu), workdir=self.workdir)

    def bridge(self, guest, *extra, mtu=None):
        if mtu is not None and self.protocol == "qemu":
            extra = (*extra, "--mtu", str(mtu))
        bridge = TapBridge(self, guest, self.socketPath, self.workdir, *extra, protocol=self.protocol)
        bridge.waitReady()
        return bridge

    def attachGuests(self, count, mtu):
        vpnkit = self.startWithSocket(mtu)
        guests = []
        for _ in range(count):
            guest = Namespace(self, "g")
            self.bridge(guest, mtu=mtu)
            guests.append(guest)
        return vpnkit, guests

    def rawClient(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(self.socketPath))
        self.addCleanup(s.close)
        return s

    def pushRandomFrames(self, sock, prefix, mtu, count=10000, seed=20261128):
        """
        Send C{count} frames of random content within the link's length
        limits: a third wholly random, a third addressed to vpnkit as IPv4,
        a third as ARP, so every parser sees garbage.
        """
        rng = random.Random(seed)
        server = bytes.fromhex("f61636bcf9c6")
        chunks = []
        for i in range(count):
            length = rng.randint(14, mtu + 14)
            body = rng.randbytes(length)
            kind = i % 3
            if kind == 1:
                body = server + body[6:12] + b"\x08\x00" + bytes([0x45]) + body[15:]
            elif kind == 2:
                body = b"\xff" * 6 + body[6:12] + b"\x08\x06" + body[14:]
            chunks.append(prefix.pack(len(body)) + body)
            if len(chunks) == 200:
                sock.sendall(b"".join(chunks))
                chunks = []
        sock.sendall(b"".join(chunks))

    def test_randomFramesLeaveTheDaemonAnswering(self):
        """
        10,000 random frames pushed over the socket by one client neither
        crash vpnkit nor close that link, and a real guest attached next to
        it still gets a lease and pings the gateway.
        """
        vpnkit, (guest,) = self.attachGuests(1, 1500)
        sock = self.rawClient()
        prefix = self.handshake(sock)
        self.pushRandomFrames(sock, prefix, 1500)
        self.checkGuest(guest, guest.dhcp(self), "192.168.65.3", 1500)
        self.assertTrue(vpnkit.alive())
        # The fuzzing link is still open: a bad prefix now closes it (and
        # only it).
        sock.sendall(prefix.pack(3) + b"abc")
        waitFor(lambda: sock.recv(65536) == b"", 10, "vpnkit to close the fuzzing link")
        self.assertTrue(guest.ping(GATEWAY), "the guest lost its link with the fuzzer's")
        vpnkit.waitForLog("short frame")

    def handshake(self, sock):
        raise NotImplementedError()


class VMNetTransportTests(_SocketTransportTests, SynchronousTestCase):
    """
    Guests attach over the vmnet socket with vpnkit-tap-bridge.
    """

    protocol = "vmnet"
    flag = "--ethernet"

    def handshake(self, sock, command=None):
        command = command or vmnet.EthernetCommand(str(_uuid.uuid4()).encode())
        sock.sendall(vmnet.emitInit() + vmnet.emitCommand(command))
        data = self.recvExactly(sock, vmnet.INIT_LENGTH + vmnet.RESPONSE_LENGTH)
        self.assertEqual(vmnet.parseInit(data).version, 22)
        response = vmnet.parseResponse(data[vmnet.INIT_LENGTH :])
        self.assertIsInstance(response, vmnet.Vif)
        return struct.Struct("<H")

    def recvExactly(self, sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise AssertionError(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def test_reconnectWithSameUUIDKeepsAddress(self):
        """
        A guest that reconnects with the same UUID gets the same MAC and the
        same address back; a different UUID gets the next address.
        """
        self.startWithSocket(1500)
        uuid = "d1d9cd61-d0dc-4715-9bb3-4c11da7ad7a5"
        guest = Namespace(self, "g")
        bridge = self.bridge(guest, "--uuid", uuid)
        first = guest.dhcp(self)
        firstLink = guest.linkInfo()
        bridge.stop()
        waitFor(
            lambda: guest.run(["ip", "link", "show", "tap0"], check=False).returncode != 0,
            10,
            "the tap to disappear with its bridge",
        )
        self.bridge(guest, "--uuid", uuid)
        second = guest.dhcp(self)
        self.assertEqual(first["ip"], "192.168.65.3")
        self.assertEqual(second["ip"], first["ip"])
        self.assertIn("link/ether 02:50:00:00:00:01 ", firstLink)
        self.assertIn("link/ether 02:50:00:00:00:01 ", guest.linkInfo())
        other = Namespace(self, "g")
        self.bridge(other, "--uuid", str(_uuid.uuid4()))
        self.assertEqual(other.dhcp(self)["ip"], "192.168.65.4")
        self.assertTrue(guest.ping(GATEWAY))

    def test_preferredIPv4(self):
        """
        Preferred_ipv4 gives the guest the address it asked for.
        """
        self.startWithSocket(1500)
        guest = Namespace(self, "g")
        self.bridge(guest, "--uuid", str(_uuid.uuid4()), "--preferred-ip", "192.168.65.250")
        lease = guest.dhcp(self)
        self.assertEqual(lease["ip"], "192.168.65.250")
        self.assertTrue(guest.ping(GATEWAY))

    def disconnectReason(self, raw):
        sock = self.rawClient()
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertEqual(len(data), vmnet.INIT_LENGTH + vmnet.RESPONSE_LENGTH)
        response = vmnet.parseResponse(data[vmnet.INIT_LENGTH :])
        self.assertIsInstance(response, vmnet.Disconnect)
        return response.reason

    def test_badHandshakesGetAReason(self):
        """
        A wrong magic or version, an unknown command, a malformed UUID and
        an unavailable address each get a Disconnect that says why, then the
        connection closes; vpnkit keeps serving other guests.
        """
        self.startWithSocket(1500)
        uuid = str(_uuid.uuid4()).encode()
        init = vmnet.emitInit()
        self.assertIn(
            "Bad magic", self.disconnectReason(vmnet.emitInit(vmnet.Init(magic=b"VMNET")))
        )
        self.assertEqual(
            self.disconnectReason(vmnet.emitInit(vmnet.Init(version=21))),
            "Client requested protocol version 21, server only supports version 22",
        )
        self.assertIn(
            "Unknown command type 9",
            self.disconnectReason(init + vmnet.emitCommand(vmnet.UnknownCommand(9))),
        )
        self.assertIn(
            "Invalid UUID",
            self.disconnectReason(init + vmnet.emitCommand(vmnet.EthernetCommand(b"x" * 36))),
        )
        self.assertEqual(
            self.disconnectReason(
                init
                + vmnet.emitCommand(vmnet.PreferredIPv4Command(uuid, bytes([10, 0, 0, 1])))
            ),
            "Preferred IP address out of range.",
        )
        guest = Namespace(self, "g")
        self.bridge(guest)
        self.assertEqual(guest.dhcp(self)["ip"], "192.168.65.3")
        self.assertTrue(guest.ping(GATEWAY))


class QEMUTransportTests(_SocketTransportTests, SynchronousTestCase):
    """
    Guests attach over the QEMU stream socket (u32 big-endian framing).
    """

    protocol = "qemu"
    flag = "--qemu"

    def handshake(self, sock):
        return struct.Struct("!I")
