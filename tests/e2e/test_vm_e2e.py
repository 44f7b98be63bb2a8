"""
End to end in a real VM: a Debian kernel with a busybox initramfs boots
under QEMU, its virtio-net device attached to vpnkit, and checks from the
inside what the namespace tiers check with the host's own stack: a DHCP
lease, DNS through the gateway (a name of the test's hosts file and the
builtin C{host.internal}), an HTTP download from a server on vpnkit's host
through the host alias, compared by SHA-256, and pings of the gateway.

vpnkit runs in a namespace of its own holding only a loopback interface
(L{tests.e2e.harness}), with C{--dns} naming no server and C{--hosts}
naming the test's file, so nothing the guest does can leave the machine.
QEMU runs on the host: its only network is the socket to vpnkit.

The image (L{tests.e2e.vmtools}) is built from Debian packages on the
first run and cached; KVM is used when C{/dev/kvm} works, TCG otherwise.
One VM runs all the checks once per class; each test asserts one of them.
"""

import shutil
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import vmtools
from tests.e2e.harness import E2EMixin, Namespace, Tool, VPNKit, requireE2E

GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"
GUEST = "192.168.65.3"
HOSTS_NAME = "vmhost.test"
HOSTS_ADDRESS = "192.0.2.55"
HTTP_PORT = 8080
HTTP_SIZE = 4 << 20
HTTP_SEED = 20261204
# The guest's whole life (boot, lease, checks, power-off), generous for
# TCG on two shared cores.
BOOT_TIMEOUT = {"kvm": 60, "tcg": 150}


class _Boot:
    """
    What one VM run produced: its parsed results, console, timings and the
    host's view of the download.
    """

    def __init__(self, results, console, seconds, accel, image, served):
        self.results = results
        # The console with QEMU's own messages, for failure messages.
        self.console = console
        self.seconds = seconds
        self.accel = accel
        self.image = image
        self.served = served


class VMTierMixin(E2EMixin):
    """
    The checks of the VM tier; a subclass says how the VM's network device
    reaches vpnkit (L{link}).  The VM boots once per class, on the first
    test that needs it (a failed boot fails every test with its reason).
    """

    def link(self, workdir):
        """
        How the VM attaches to vpnkit.

        @return: C{(vpnkitArgs, netdev)}: vpnkit's arguments for the link
            and the QEMU C{-netdev} spec (with C{id=n0},
            L{vmtools.NETDEV_ID}) that reaches it.
        """
        raise NotImplementedError()

    def setUp(self):
        requireE2E()
        # As root the tier never skips: `make e2e` installs QEMU.
        for command in ("qemu-system-x86_64", "apt-get", "dpkg-deb"):
            self.assertIsNotNone(
                shutil.which(command), f"{command} is missing: run `make debs` as root"
            )

    def boot(self):
        """
        The class's one VM run (L{_Boot}), made by the first test to ask.
        """
        cls = type(self)
        if "_boot" not in cls.__dict__:
            try:
                cls._boot = self._bootVM()
            except Exception as e:
                cls._boot = e
                raise
        if isinstance(cls._boot, BaseException):
            raise AssertionError(f"the VM run of an earlier test failed: {cls._boot}")
        return cls._boot

    def _bootVM(self):
        """
        Build (or find) the image, start the HTTP server and vpnkit in a
        loopback-only namespace, boot the VM on L{link} and wait for it to
        power off.
        """
        began = time.monotonic()
        image = vmtools.ensureImage()
        built = time.monotonic() - began
        workdir = self.makeWorkdir()
        host = Namespace(self, "h")
        server = Tool(
            self, host, workdir, "serve-http", "--listen", f"127.0.0.1:{HTTP_PORT}",
            "--size", HTTP_SIZE, "--seed", HTTP_SEED,
        )  # fmt: skip
        server.waitListening()
        (served,) = server.results()
        dnsFile = workdir / "dns"
        dnsFile.write_text("# no upstream servers: nothing leaves the machine\n")
        hostsFile = workdir / "hosts"
        hostsFile.write_text(f"{HOSTS_ADDRESS} {HOSTS_NAME}\n")
        linkArgs, netdev = self.link(workdir)
        VPNKit(
            self, host, [*linkArgs, "--dns", str(dnsFile), "--hosts", str(hostsFile)], workdir
        )
        init = vmtools.initScript(
            f"http://{HOST_ALIAS}:{HTTP_PORT}/file", [HOSTS_NAME, "host.internal"], GATEWAY
        )
        accel, why = vmtools.accelerator(image, workdir)
        qemu = vmtools.QEMU(self, workdir, image, init, netdev, accel)
        seconds = qemu.waitExit(BOOT_TIMEOUT[accel])
        results = vmtools.parseResults(qemu.console())
        console = f"{qemu.console()}\n-- qemu:\n{qemu.log()}"
        http = results.get("http", [{}])[-1]
        try:
            download = f"{float(http['end']) - float(http['start']):.1f}s"
        except (KeyError, ValueError):
            download = "?"
        print(
            f"\nVM tier: image {'built' if image.built else 'cached'} in {built:.1f}s "
            f"({image.key}); {accel} ({why}); the VM ran {seconds:.1f}s, "
            f"the download took {download}"
        )
        return _Boot(results, console, seconds, accel, image, served)

    def result(self, check):
        """
        The fields of the one C{check} line the guest printed.
        """
        boot = self.boot()
        lines = boot.results.get(check, [])
        self.assertEqual(len(lines), 1, f"expected one {check!r} line; console:\n{boot.console}")
        return lines[0]

    def test_dhcpLease(self):
        """
        The guest's virtio-net device appears, and busybox udhcpc on it gets
        192.168.65.3 with router and DNS 192.168.65.1, a /24 and MTU 1500.
        """
        link = self.result("link")
        self.assertEqual(link.get("present"), "yes", f"no eth0 in the guest: {link}")
        lease = self.result("dhcp")
        self.assertEqual(lease.get("rc"), "0", f"udhcpc failed: {self.boot().console}")
        self.assertEqual(lease.get("ip"), GUEST, f"lease: {lease}")
        self.assertEqual(lease.get("router"), GATEWAY, f"lease: {lease}")
        self.assertEqual(lease.get("dns"), GATEWAY, f"lease: {lease}")
        self.assertEqual(lease.get("subnet"), "255.255.255.0", f"lease: {lease}")
        self.assertEqual(lease.get("mtu"), "1500", f"lease: {lease}")
        self.assertEqual(lease.get("ifmtu"), "1500", f"eth0's MTU: {lease}")

    def test_dnsThroughGateway(self):
        """
        busybox nslookup asking 192.168.65.1 gets the hosts file's address
        for its name and the host alias for C{host.internal}.
        """
        boot = self.boot()
        answers = {line.get("name"): line for line in boot.results.get("dns", [])}
        for name, address in ((HOSTS_NAME, HOSTS_ADDRESS), ("host.internal", HOST_ALIAS)):
            self.assertIn(name, answers, f"no dns line for {name}; console:\n{boot.console}")
            self.assertEqual(
                answers[name].get("addresses"),
                address,
                f"{name} resolved to {answers[name]}; console:\n{boot.console}",
            )
            self.assertEqual(answers[name].get("rc"), "0", f"nslookup {name}: {answers[name]}")

    def test_httpDownloadThroughHostAlias(self):
        """
        busybox wget of 4 MiB from an HTTP server on 127.0.0.1 of vpnkit's
        host, through the host alias 192.168.65.2, gets exactly the bytes
        served (same size and SHA-256).
        """
        boot = self.boot()
        download = self.result("http")
        self.assertEqual(download.get("rc"), "0", f"wget failed; console:\n{boot.console}")
        self.assertEqual(download.get("size"), str(boot.served["size"]), f"download: {download}")
        self.assertEqual(download.get("sha256"), boot.served["sha256"], f"download: {download}")

    def test_pingGateway(self):
        """
        Three pings of the gateway from the guest are all answered.
        """
        ping = self.result("ping")
        self.assertEqual(ping.get("rc"), "0", f"ping failed; console:\n{self.boot().console}")
        self.assertEqual(ping.get("received"), "3", f"ping: {ping}")

    def test_poweredOff(self):
        """
        The guest ran its whole script and powered off by itself.
        """
        self.result("done")


class QEMUStreamVMTests(VMTierMixin, SynchronousTestCase):
    """
    The VM's virtio-net device reaches vpnkit's C{--qemu} socket with QEMU's
    stream netdev (QEMU connects; 4-byte big-endian length framing).
    """

    def link(self, workdir):
        path = workdir / "qemu.sock"
        return (
            ["--qemu", str(path)],
            f"stream,id={vmtools.NETDEV_ID},server=off,addr.type=unix,addr.path={path}",
        )


class QEMUDgramVMTests(VMTierMixin, SynchronousTestCase):
    """
    The VM's virtio-net device reaches vpnkit's C{--qemu-dgram} socket with
    QEMU's dgram netdev: QEMU binds its own path and sends each frame as one
    datagram to vpnkit's, which answers at QEMU's path.
    """

    def link(self, workdir):
        path = workdir / "vpnkit-dgram.sock"
        guest = workdir / "qemu-dgram.sock"
        return (
            ["--qemu-dgram", f"unixgram://{path}"],
            f"dgram,id={vmtools.NETDEV_ID},local.type=unix,local.path={guest},"
            f"remote.type=unix,remote.path={path}",
        )
