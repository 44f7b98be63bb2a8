"""
End to end: a real Linux guest's IPv6 through vpnkit.

The guest is a network namespace whose tap device vpnkit creates
(C{--netns}); its kernel configures itself from vpnkit's Router
Advertisements (SLAAC) and asks DHCPv6 (ISC C{dhclient -6}: Debian's
busybox is built without C{udhcpc6}).  The "host" is vpnkit's own
namespace with only a loopback interface: servers listen on its C{::1}
(reached from the guest through the IPv6 host alias C{fd00:65::2}) or on
documentation addresses (C{2001:db8::/32}) added to its loopback.
"""

import hashlib
import re
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import Namespace, requireE2E, waitFor
from tests.e2e.test_tcp_e2e import MiB, TCPTestsMixin
from tests.e2e.test_udp_dns_e2e import Tool as UDPTool

GATEWAY6 = "fd00:65::1"
ALIAS6 = "fd00:65::2"
REMOTE6 = "2001:db8::10"

# One UDP exchange from the guest: send SIZE bytes to [HOST]:PORT, print
# what came back (its source, size and SHA-256) as one line.
UDP_EXCHANGE = """
import hashlib, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5)
data = bytes(i % 251 for i in range(size))
s.sendto(data, (host, port))
reply, source = s.recvfrom(65536)
print(source[0], source[1], len(reply), hashlib.sha256(reply).hexdigest() == hashlib.sha256(data).hexdigest())
"""


class IPv6Mixin(TCPTestsMixin):
    def startGuest6(self, *args, mtu=1500):
        """
        Start vpnkit with a C{--netns} guest, IPv4 leased as usual, and let
        the guest's kernel take an address from the Router Advertisements.

        @return: C{(vpnkit, guest, address)}: the guest's global IPv6
            address.
        """
        vpnkit, guest = self.startGuest(*args, mtu=mtu)
        enableIPv6(guest)
        address = waitFor(lambda: globalAddress(guest), 20, "a SLAAC address on tap0")
        return vpnkit, guest, address


def enableIPv6(guest, interface="tap0"):
    """
    Let the guest's kernel run IPv6 on its tap and accept Router
    Advertisements, then bounce the link so it solicits one at once.
    """
    for setting in ("all.disable_ipv6=0", f"{interface}.disable_ipv6=0", f"{interface}.accept_ra=2"):
        guest.run(["sysctl", "-qw", f"net.ipv6.conf.{setting}"])
    guest.run(["ip", "link", "set", interface, "down"])
    guest.run(["ip", "link", "set", interface, "up"])


def globalAddress(guest, interface="tap0"):
    """
    The guest's non-tentative global IPv6 address in fd00:65::/64, or None.
    """
    out = guest.run(["ip", "-6", "-o", "addr", "show", "dev", interface, "scope", "global"]).stdout
    for line in out.splitlines():
        match = re.search(r"inet6 (fd00:65::[0-9a-f:]+)/64", line)
        if match and "tentative" not in line:
            return match.group(1)
    return None


def linkLocalReady(guest, interface="tap0"):
    out = guest.run(["ip", "-6", "-o", "addr", "show", "dev", interface, "scope", "link"]).stdout
    return "inet6 fe80::" in out and "tentative" not in out


class IPv6EndToEndTests(IPv6Mixin, SynchronousTestCase):
    """
    A dual-stack guest over the direct tap transport.
    """

    def setUp(self):
        requireE2E("busybox", "curl", "prlimit", "ping", "dig", "dhclient", "sysctl")

    def test_slaacAddressAndDefaultRoute(self):
        """
        The guest's kernel, given only vpnkit's Router Advertisements, takes
        an address in fd00:65::/64 and a default route through vpnkit's
        link-local router address, with the link MTU announced.
        """
        vpnkit, guest, address = self.startGuest6()
        self.assertTrue(address.startswith("fd00:65::"), address)
        routes = guest.run(["ip", "-6", "route", "show", "default"]).stdout
        self.assertIn("via fe80::", routes)
        self.assertIn("dev tap0", routes)
        stats = vpnkit.stats()
        self.assertGreater(stats["counters"]["icmpv6"]["routerAdvertisementsSent"], 0)

    def test_pingGatewayAliasAndRemote(self):
        """
        C{ping -6} reaches the gateway and the host alias (answered by
        vpnkit) and a remote address on vpnkit's loopback (through the
        host's ICMPv6 ping socket, the real reply passed back).
        """
        vpnkit, guest, _ = self.startGuest6()
        vpnkit.namespace.run(["ip", "-6", "addr", "add", f"{REMOTE6}/128", "dev", "lo"])
        vpnkit.namespace.run(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        for target in (GATEWAY6, ALIAS6, REMOTE6):
            result = guest.run(
                ["ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", target],
                timeout=15,
                check=False,
            )
            self.assertEqual(result.returncode, 0, f"ping -6 {target}:\n{result.stdout}{result.stderr}")
        self.assertGreater(vpnkit.stats()["counters"]["icmpv6"]["echoForwarded"], 0)

    def test_dnsAAAA(self):
        """
        vpnkit's DNS answers on the IPv6 gateway: AAAA of C{host.internal}
        is the IPv6 host alias, over UDP and TCP.
        """
        vpnkit, guest, _ = self.startGuest6()
        for transport in ("+notcp", "+tcp"):
            result = guest.run(
                ["dig", f"@{GATEWAY6}", "+time=3", "+tries=1", transport, "+short",
                 "AAAA", "host.internal"],
                timeout=15,
                check=False,
            )  # fmt: skip
            self.assertEqual(result.stdout.split(), [ALIAS6], f"dig {transport}: {result}")

    def test_dhcpv6StatefulLease(self):
        """
        ISC dhclient's DHCPv6 (Solicit, Advertise, Request, Reply) gets a
        stateful address in the prefix and the gateway as DNS server.
        """
        vpnkit, guest, _ = self.startGuest6()
        waitFor(lambda: linkLocalReady(guest), 10, "tap0's link-local address")
        leases = self.workdir / "dhclient6.leases"
        result = guest.run(
            ["timeout", "30", "dhclient", "-6", "-1", "-v", "-sf", "/bin/true",
             "-lf", str(leases), "-pf", str(self.workdir / "dhclient6.pid"), "tap0"],
            timeout=40,
            check=False,
        )  # fmt: skip
        self.addCleanup(
            guest.run, ["dhclient", "-6", "-x", "-pf", str(self.workdir / "dhclient6.pid")],
            check=False,
        )
        text = leases.read_text() if leases.exists() else ""
        self.assertEqual(result.returncode, 0, f"dhclient -6:\n{result.stderr}\n{text}")
        address = re.search(r"iaaddr (fd00:65::[0-9a-f:]+)", text)
        self.assertIsNotNone(address, text)
        self.assertIn(f"dhcp6.name-servers {GATEWAY6}", text)

    def test_curlThroughAliasAndRemote(self):
        """
        C{curl -6} fetches a body from a server on the host's C{::1} through
        the IPv6 host alias, and one from a remote IPv6 address, each
        byte-identical.
        """
        vpnkit, guest, _ = self.startGuest6()
        vpnkit.namespace.run(["ip", "-6", "addr", "add", f"{REMOTE6}/128", "dev", "lo"])
        local = self.onHost(vpnkit, "serve-http", "--listen", "[::1]:8080",
                            "--size", 3 * MiB + 17, "--seed", 1)
        remote = self.onHost(vpnkit, "serve-http", "--listen", f"[{REMOTE6}]:8080",
                             "--size", 2 * MiB + 5, "--seed", 2)
        for server, url in ((local, f"http://[{ALIAS6}]:8080/a"), (remote, f"http://[{REMOTE6}]:8080/b")):
            expected = server.results()[0]
            body = self.workdir / "body"
            result = guest.run(
                ["curl", "-6", "-sS", "--noproxy", "*", "--max-time", "30", "-o", str(body), url],
                timeout=40,
                check=False,
            )
            self.assertEqual(result.returncode, 0, f"curl {url}: {result.stderr}")
            data = body.read_bytes()
            self.assertEqual(len(data), expected["size"], url)
            self.assertEqual(hashlib.sha256(data).hexdigest(), expected["sha256"], url)
        self.assertNothingLeft(vpnkit)

    def test_bulkBothWays(self):
        """
        64 MiB from the guest to the host's C{::1} and 64 MiB back, over
        IPv6 through the alias, arrive intact (SHA-256 equal).
        """
        vpnkit, guest, _ = self.startGuest6()
        for upload in (True, False):
            self.transfer6(vpnkit, guest, 64 * MiB, upload, 5001 + upload)
        stats = self.assertNothingLeft(vpnkit)
        self.assertEqual(stats["counters"]["tcp"]["resetsSent"], 0)

    def transfer6(self, vpnkit, guest, size, upload, port, timeout=60):
        expect = ("--expect", size)
        if upload:
            receiver = self.onHost(vpnkit, "recv", "--listen", f"[::1]:{port}",
                                   "--timeout", timeout, *expect)
            sender = self.inGuest(guest, "send", "--connect", f"[{ALIAS6}]:{port}",
                                  "--size", size, "--seed", 3, "--timeout", timeout)
        else:
            sender = self.onHost(vpnkit, "send", "--listen", f"[::1]:{port}", "--size", size,
                                 "--seed", 4, "--timeout", timeout)
            receiver = self.inGuest(guest, "recv", "--connect", f"[{ALIAS6}]:{port}",
                                    "--timeout", timeout, *expect)
        got = receiver.result(timeout + 10)
        sent = sender.result(30)
        self.assertIsNone(got.get("error"), f"receiver: {got}")
        self.assertEqual((got["received"], got["sha256"]), (size, sent["sha256"]))

    def test_udpEchoWithFragments(self):
        """
        UDP over IPv6 to an echo server on the host's C{::1} (through the
        alias) and on a remote address: a small datagram and a 3000-byte
        one, which the guest sends as IPv6 fragments and vpnkit reassembles
        (and fragments again on the way back), come back intact from the
        address the guest sent to.
        """
        vpnkit, guest, _ = self.startGuest6()
        vpnkit.namespace.run(["ip", "-6", "addr", "add", f"{REMOTE6}/128", "dev", "lo"])
        for address in ("::1", REMOTE6):
            server = UDPTool(self, vpnkit.namespace, self.workdir, f"echo{len(address)}",
                             "udp-echo", address, 7007)  # fmt: skip
            server.waitListening()
        for target in (ALIAS6, REMOTE6):
            for size in (33, 3000):
                result = guest.run(
                    [sys.executable, "-c", UDP_EXCHANGE, target, "7007", str(size)],
                    timeout=15,
                    check=False,
                )
                self.assertEqual(
                    result.stdout.split(), [target, "7007", str(size), "True"], result.stderr
                )
        counters = vpnkit.stats()["counters"]["ipv6"]
        self.assertGreater(counters["reassembled"], 0)
        self.assertGreater(counters["fragmentsSent"], 0)

    def test_exposeFromIPv6Loopback(self):
        """
        C{--expose tcp:[::1]:18080:tcp:[GUEST]:8000}: a client on the
        host's C{::1} reaches a server on the guest's IPv6 address, and the
        guest sees it coming from the IPv6 host alias.
        """
        self.workdir = self.makeWorkdir()
        guest = Namespace(self, "g")
        guestAddress = "fd00:65::3"
        vpnkit = self.startVPNKit(
            "--netns", guest.name,
            "--expose", f"tcp:[::1]:18080:tcp:[{guestAddress}]:8000",
            workdir=self.workdir,
        )  # fmt: skip
        guest.dhcp(self)
        enableIPv6(guest)
        waitFor(lambda: globalAddress(guest), 20, "a SLAAC address on tap0")
        guest.run(["ip", "-6", "addr", "add", f"{guestAddress}/64", "dev", "tap0", "nodad"])
        server = self.inGuest(guest, "recv", "--listen", f"[{guestAddress}]:8000",
                              "--timeout", 30, "--expect", MiB)  # fmt: skip
        server.waitListening()
        sender = self.onHost(vpnkit, "send", "--connect", "[::1]:18080", "--size", MiB,
                             "--seed", 9, "--timeout", 30, listening=False)  # fmt: skip
        got = server.result(40)
        sent = sender.result(30)
        self.assertEqual((got["received"], got["sha256"]), (MiB, sent["sha256"]))
        self.assertEqual(got["peer"][0], ALIAS6)

    def test_unroutableRemoteFailsPromptly(self):
        """
        vpnkit's host has no IPv6 route off its loopback: a guest dialling
        a remote IPv6 address is told at once (ICMPv6 unreachable from the
        host's refusal, or a reset), not left to time out; and one dialling
        a closed port on the host's C{::1} through the alias is refused.
        """
        vpnkit, guest, _ = self.startGuest6()
        for target, expected in (
            ("[2001:db8::99]:80", ("ENETUNREACH", "EHOSTUNREACH", "ECONNREFUSED")),
            (f"[{ALIAS6}]:9", ("ECONNREFUSED",)),
        ):
            probe = self.inGuest(guest, "probe", "--connect", target, "--timeout", 20)
            result = probe.result(30)
            self.assertIn(result["connect"], expected, f"{target}: {result}")
            self.assertLess(result["connectSeconds"], 5, f"{target}: {result}")

    def test_noIPv6(self):
        """
        With C{--no-ipv6} the guest's Router Solicitations go unanswered:
        vpnkit counts its IPv6 frames and drops them, and the guest has no
        address in the prefix and no IPv6 default route.
        """
        vpnkit, guest = self.startGuest("--no-ipv6")
        enableIPv6(guest)
        waitFor(
            lambda: vpnkit.stats()["counters"]["ethernet"]["ipv6"] >= 1,
            15,
            "vpnkit to see the guest's Router Solicitation",
        )
        self.assertIsNone(globalAddress(guest))
        self.assertEqual(guest.run(["ip", "-6", "route", "show", "default"]).stdout.strip(), "")
