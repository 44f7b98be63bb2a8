"""
Tests for L{vpnkit.tools.gvproxy}: gvproxy's command line translated to
vpnkit's, as pure functions (no sockets, no reactor).
"""

import io
import json
import os
import tempfile

from twisted.internet.address import IPv4Address as TwistedIPv4Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.helpers import makeStack
from tests.test_forwards import FakeConnector, ListenReactor
from vpnkit.api import makeAPI
from vpnkit.forwards import PortForwarder
from vpnkit.sshforward import SSHForwardSpec
from vpnkit.tap import Options
from vpnkit.tools.gvproxy import (
    GvproxyError,
    GvproxyUsageError,
    _gatewayAPI,
    gvproxyMessage,
    main,
    parseGoFlags,
    translate,
)

# The address plan every gvproxy command line gets unless told otherwise.
PLAN = (
    "--gateway-ip", "192.168.127.1",
    "--host-ip", "192.168.127.254",
    "--lowest-ip", "192.168.127.2",
    "--highest-ip", "192.168.127.253",
    "--server-macaddr", "5a:94:ef:e4:0c:dd",
    "--mtu", "1500",
    "--host-names", "host.containers.internal,host.docker.internal",
    "--gateway-names", "gateway.containers.internal,gateway.docker.internal",
)
QEMU = ("-listen-qemu", "unix:///run/user/1000/podman/qemu.sock")
SSH = ("--expose", "tcp:127.0.0.1:2222:tcp:192.168.127.2:22")


def vpnkitArgs(*argv):
    return list(translate(list(argv)).vpnkitArgs)


class PodmanCommandLineTests(SynchronousTestCase):
    def test_podmanMachine(self):
        """
        The command line podman machine runs (API endpoint, MTU, SSH port,
        QEMU socket, one socket forward, pid and log files) becomes vpnkit
        with gvproxy's address plan, the QEMU listener and the SSH port
        forward; the rest is the front end's.
        """
        t = translate(
            [
                "-listen", "unix:///run/user/1000/podman/gvproxy-api.sock",
                "-mtu", "1500",
                "-ssh-port", "41234",
                *QEMU,
                "-forward-sock", "/run/user/1000/podman/podman.sock",
                "-forward-dest", "/run/podman/podman.sock",
                "-forward-user", "core",
                "-forward-identity", "/home/u/.ssh/podman-machine-default",
                "-pid-file", "/run/user/1000/podman/gvproxy.pid",
                "-log-file", "/run/user/1000/podman/gvproxy.log",
            ]
        )
        self.assertEqual(
            list(t.vpnkitArgs),
            [
                *PLAN,
                "--qemu", "unix:///run/user/1000/podman/qemu.sock",
                "--expose", "tcp:127.0.0.1:41234:tcp:192.168.127.2:22",
            ],
        )
        self.assertEqual(
            [(e.flag, e.path) for e in t.apiEndpoints],
            [("-listen", "/run/user/1000/podman/gvproxy-api.sock")],
        )
        self.assertEqual(
            t.forwards,
            (
                SSHForwardSpec(
                    "/run/user/1000/podman/podman.sock",
                    "/run/podman/podman.sock",
                    "core",
                    "/home/u/.ssh/podman-machine-default",
                ),
            ),
        )
        self.assertEqual(t.pidFile, "/run/user/1000/podman/gvproxy.pid")
        self.assertEqual(t.logFile, "/run/user/1000/podman/gvproxy.log")
        self.assertEqual((t.guestIP, t.gatewayIP), ("192.168.127.2", "192.168.127.1"))
        self.assertFalse(t.debug)
        self.assertEqual(t.action, "run")

    def test_defaults(self):
        """
        With only a guest listener: gvproxy's plan, MTU 1500 and the SSH
        port 2222 to the first guest's port 22; no API, no forwards, no
        pid or log file.
        """
        t = translate(list(QEMU))
        self.assertEqual(list(t.vpnkitArgs), [*PLAN, "--qemu", QEMU[1], *SSH])
        self.assertEqual((t.apiEndpoints, t.forwards), ((), ()))
        self.assertEqual((t.pidFile, t.logFile), (None, None))

    def test_parsesWithVPNKitOptions(self):
        """
        The translated command line is one vpnkit's own options accept:
        gvproxy's subnet (a /24 with the gateway .1), guests from .2, the
        host alias .254 and the SSH forward.
        """
        workdir = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, workdir)
        options = Options()
        options.parseOptions(vpnkitArgs("-listen-qemu", f"unix://{workdir}/qemu.sock", "-ssh-port", "2200"))
        config = options.config
        self.assertEqual(str(config.subnet), "192.168.127.0/24")
        self.assertEqual(str(config.gatewayIP), "192.168.127.1")
        self.assertEqual(str(config.lowestIP), "192.168.127.2")
        self.assertEqual(str(config.hostIP), "192.168.127.254")
        self.assertEqual(
            [str(s) for s in options.exposes], ["tcp:127.0.0.1:2200:tcp:192.168.127.2:22"]
        )
        self.assertIn("host.containers.internal", config.hostNames)
        self.assertIn("gateway.docker.internal", config.gatewayNames)


class FlagTests(SynchronousTestCase):
    """
    Each gvproxy flag, one at a time.
    """

    def test_listenQEMUTCP(self):
        """
        -listen-qemu tcp://HOST:PORT is passed to --qemu as it is.
        """
        self.assertIn("tcp://127.0.0.1:5555", vpnkitArgs("-listen-qemu", "tcp://127.0.0.1:5555"))

    def test_listenQEMUOtherScheme(self):
        """
        -listen-qemu takes unix:// and tcp:// only.
        """
        with self.assertRaises(GvproxyError) as e:
            translate(["-listen-qemu", "vsock://:1024"])
        self.assertEqual(
            str(e.exception),
            "-listen-qemu: 'vsock://:1024': only unix:// or tcp:// addresses are supported",
        )

    def test_listenVfkit(self):
        """
        -listen-vfkit unixgram:///PATH becomes --vfkit with the same URL.
        """
        args = vpnkitArgs("-listen-vfkit", "unixgram:///tmp/vfkit.sock")
        self.assertEqual(args[args.index("--vfkit") + 1], "unixgram:///tmp/vfkit.sock")

    def test_listenVfkitNeedsUnixgram(self):
        """
        -listen-vfkit with another scheme is refused, as gvproxy does.
        """
        with self.assertRaises(GvproxyError) as e:
            translate(["-listen-vfkit", "unix:///tmp/vfkit.sock"])
        self.assertIn("-listen-vfkit", str(e.exception))
        self.assertIn("unixgram://", str(e.exception))

    def test_listenVPNKit(self):
        """
        -listen-vpnkit unix:///PATH becomes --ethernet PATH.
        """
        args = vpnkitArgs("-listen-vpnkit", "unix:///tmp/vpnkit.sock")
        self.assertEqual(args[args.index("--ethernet") + 1], "/tmp/vpnkit.sock")

    def test_listenVPNKitTCP(self):
        """
        vmnet guests over TCP are not supported.
        """
        with self.assertRaises(GvproxyError) as e:
            translate(["-listen-vpnkit", "tcp://127.0.0.1:1234"])
        self.assertIn("-listen-vpnkit", str(e.exception))

    def test_unixURLWithHost(self):
        """
        A unix URL must be unix:///ABSOLUTE/PATH (Go would drop the host
        part and listen somewhere unexpected).
        """
        with self.assertRaises(GvproxyError) as e:
            translate(["-listen-vpnkit", "unix://tmp/vpnkit.sock"])
        self.assertIn("unix:///ABSOLUTE/PATH", str(e.exception))

    def test_severalLinks(self):
        """
        vpnkit serves QEMU, vfkit and vmnet guests at once (gvproxy refuses
        some combinations; vpnkit does not need to).
        """
        args = vpnkitArgs(
            *QEMU,
            "-listen-vfkit", "unixgram:///tmp/v.sock",
            "-listen-vpnkit", "unix:///tmp/e.sock",
        )
        for flag in ("--qemu", "--vfkit", "--ethernet"):
            self.assertIn(flag, args)

    def test_noLink(self):
        """
        Without a guest listener there is nothing to serve.
        """
        with self.assertRaises(GvproxyError) as e:
            translate(["-listen", "unix:///tmp/api.sock"])
        self.assertIn("-listen-qemu", str(e.exception))

    def test_listenUnix(self):
        """
        -listen unix:///PATH is an API endpoint on that socket (repeatable).
        """
        t = translate([*QEMU, "-listen", "unix:///tmp/a.sock", "-listen", "unix:///tmp/b.sock"])
        self.assertEqual([e.path for e in t.apiEndpoints], ["/tmp/a.sock", "/tmp/b.sock"])

    def test_listenTCPLoopback(self):
        """
        -listen tcp://127.0.0.1:PORT (or localhost) is an API endpoint on
        loopback.
        """
        t = translate([*QEMU, "-listen", "tcp://127.0.0.1:7777", "-services", "tcp://localhost:7778"])
        self.assertEqual(
            [(e.flag, e.host, e.port) for e in t.apiEndpoints],
            [("-listen", "127.0.0.1", 7777), ("-services", "127.0.0.1", 7778)],
        )

    def test_listenTCPNotLoopback(self):
        """
        An API on any other address is refused with one line.
        """
        for url in ("tcp://0.0.0.0:7777", "tcp://:7777", "tcp://192.168.1.5:7777", "tcp://[::1]:7777"):
            with self.assertRaises(GvproxyError) as e:
                translate([*QEMU, "-listen", url])
            self.assertEqual(
                str(e.exception),
                f"-listen: {url!r}: the API listens only on a loopback address "
                "(tcp://127.0.0.1:PORT)",
            )

    def test_listenTCPNoPort(self):
        """
        A TCP endpoint needs a port.
        """
        with self.assertRaises(GvproxyError) as e:
            translate([*QEMU, "-services", "tcp://127.0.0.1"])
        self.assertIn("tcp://127.0.0.1:PORT", str(e.exception))

    def test_listenVsock(self):
        """
        vsock endpoints are not supported.
        """
        with self.assertRaises(GvproxyError) as e:
            translate([*QEMU, "-listen", "vsock://:1024"])
        self.assertIn("-listen: 'vsock://:1024'", str(e.exception))

    def test_listenTwice(self):
        """
        The same endpoint twice is refused.
        """
        with self.assertRaises(GvproxyError):
            translate([*QEMU, "-listen", "unix:///tmp/a.sock", "-services", "unix:///tmp/a.sock"])

    def test_mtu(self):
        """
        -mtu N becomes --mtu N; 0 (gvproxy's "unset") is 1500.
        """
        args = vpnkitArgs(*QEMU, "-mtu", "9000")
        self.assertEqual(args[args.index("--mtu") + 1], "9000")
        args = vpnkitArgs(*QEMU, "-mtu", "0")
        self.assertEqual(args[args.index("--mtu") + 1], "1500")

    def test_sshPort(self):
        """
        -ssh-port N forwards host 127.0.0.1:N to the first guest's port 22.
        """
        self.assertEqual(
            vpnkitArgs(*QEMU, "-ssh-port", "60022")[-2:],
            ["--expose", "tcp:127.0.0.1:60022:tcp:192.168.127.2:22"],
        )

    def test_sshPortOff(self):
        """
        -ssh-port -1 forwards nothing.
        """
        self.assertNotIn("--expose", vpnkitArgs(*QEMU, "-ssh-port", "-1"))

    def test_sshPortRange(self):
        """
        gvproxy's range: 1024..65535, or -1.
        """
        for port in ("80", "0", "-2", "65536"):
            with self.assertRaises(GvproxyError) as e:
                translate([*QEMU, "-ssh-port", port])
            self.assertIn("-ssh-port", str(e.exception))
        self.assertIn("--expose", vpnkitArgs(*QEMU, "-ssh-port", "1024"))

    def test_sshPortFollowsDeviceIP(self):
        """
        The SSH port reaches -deviceIP.
        """
        self.assertEqual(
            vpnkitArgs(*QEMU, "-deviceIP", "192.168.127.10")[-1],
            "tcp:127.0.0.1:2222:tcp:192.168.127.10:22",
        )

    def test_pcap(self):
        """
        -pcap FILE writes whole frames to FILE.
        """
        args = vpnkitArgs(*QEMU, "-pcap", "/tmp/capture.pcap")
        self.assertEqual(
            args[args.index("--pcap-file") : args.index("--pcap-file") + 4],
            ["--pcap-file", "/tmp/capture.pcap", "--pcap-snaplen", "0"],
        )

    def test_debug(self):
        """
        -debug turns on vpnkit's debug log.
        """
        t = translate([*QEMU, "-debug"])
        self.assertIn("--debug", t.vpnkitArgs)
        self.assertTrue(t.debug)
        self.assertNotIn("--debug", vpnkitArgs(*QEMU, "-debug=false"))

    def test_subnet(self):
        """
        -subnet moves the whole plan: gateway first, guests from the
        second, host alias last.
        """
        args = vpnkitArgs(*QEMU, "-subnet", "10.20.0.0/16")
        self.assertEqual(
            args[:8],
            [
                "--gateway-ip", "10.20.0.1",
                "--host-ip", "10.20.255.254",
                "--lowest-ip", "10.20.0.2",
                "--highest-ip", "10.20.255.253",
            ],
        )

    def test_addresses(self):
        """
        -gatewayIP, -deviceIP and -hostIP are taken as given; the guest
        range stops before the next of them.
        """
        args = vpnkitArgs(
            *QEMU,
            "-gatewayIP", "192.168.127.1",
            "-deviceIP", "192.168.127.5",
            "-hostIP", "192.168.127.200",
        )
        self.assertEqual(
            args[:8],
            [
                "--gateway-ip", "192.168.127.1",
                "--host-ip", "192.168.127.200",
                "--lowest-ip", "192.168.127.5",
                "--highest-ip", "192.168.127.199",
            ],
        )

    def test_addressChecks(self):
        """
        gvproxy's checks: a /29 at least, addresses inside the subnet, not
        its network or broadcast address, and distinct.
        """
        cases = [
            (["-subnet", "192.168.127.0/30"], "-subnet: 192.168.127.0/30 is too small"),
            (["-subnet", "nonsense"], "-subnet: 'nonsense' is not an IPv4 subnet"),
            (["-subnet", "fd00::/64"], "-subnet: 'fd00::/64' is not an IPv4 subnet"),
            (["-gatewayIP", "10.0.0.1"], "-gatewayIP: 10.0.0.1 is not in the subnet"),
            (["-hostIP", "192.168.127.255"], "-hostIP: 192.168.127.255 is the network or broadcast"),
            (["-deviceIP", "192.168.127.1"], "addresses need to be distinct"),
            (["-deviceIP", "x"], "-deviceIP: 'x' is not an IPv4 address"),
        ]
        for argv, message in cases:
            with self.assertRaises(GvproxyError) as e:
                translate([*QEMU, *argv])
            self.assertIn(message, str(e.exception))

    def test_planVPNKitCannotServe(self):
        """
        A plan whose guest range is cut short by the gateway, so that it
        no longer spans the subnet, is refused with one line.
        """
        with self.assertRaises(GvproxyError) as e:
            translate([*QEMU, "-gatewayIP", "192.168.127.10", "-deviceIP", "192.168.127.2"])
        self.assertIn("vpnkit cannot serve this plan", str(e.exception))

    def test_forwardsZipped(self):
        """
        The four -forward-* flags are zipped in order, each kind counted
        separately (podman writes them kind by kind, not interleaved).
        """
        t = translate(
            [
                *QEMU,
                "-forward-sock", "/h/a.sock", "-forward-sock", "unix:///h/b.sock",
                "-forward-dest", "/g/a.sock", "-forward-dest", "/g/b.sock",
                "-forward-user", "core", "-forward-user", "root",
                "-forward-identity", "/k/a", "-forward-identity", "/k/b",
            ]
        )
        self.assertEqual(
            t.forwards,
            (
                SSHForwardSpec("/h/a.sock", "/g/a.sock", "core", "/k/a"),
                SSHForwardSpec("/h/b.sock", "/g/b.sock", "root", "/k/b"),
            ),
        )

    def test_forwardsCounted(self):
        """
        Each -forward-* flag must be given as often as the others.
        """
        with self.assertRaises(GvproxyError) as e:
            translate([*QEMU, "-forward-sock", "/h/a.sock", "-forward-dest", "/g/a.sock"])
        self.assertIn("the same number of times", str(e.exception))
        self.assertIn("-forward-user 0", str(e.exception))

    def test_forwardDestAbsolute(self):
        """
        The guest socket path must be absolute.
        """
        with self.assertRaises(GvproxyError) as e:
            translate(
                [*QEMU, "-forward-sock", "/h", "-forward-dest", "podman.sock",
                 "-forward-user", "core", "-forward-identity", "/k"]
            )
        self.assertIn("-forward-dest", str(e.exception))

    def test_ec2MetadataAccess(self):
        """
        -ec2-metadata-access is accepted: vpnkit never blocks link-local
        addresses, so it changes nothing.
        """
        self.assertEqual(vpnkitArgs(*QEMU, "-ec2-metadata-access"), vpnkitArgs(*QEMU))

    def test_unsupported(self):
        """
        gvproxy flags vpnkit does not serve fail with their gvproxy name.
        """
        for flag, value in [
            ("-config", "/etc/gvproxy.yaml"),
            ("-listen-bess", "unixpacket:///tmp/bess.sock"),
            ("-listen-stdio", "accept"),
            ("-notification", "unix:///tmp/n.sock"),
        ]:
            with self.assertRaises(GvproxyError) as e:
                translate([*QEMU, flag, value])
            self.assertTrue(str(e.exception).startswith(flag + ": "), str(e.exception))
            self.assertNotIsInstance(e.exception, GvproxyUsageError)

    def test_emptyValueIsUnset(self):
        """
        As in gvproxy, an empty value is the same as the flag not given.
        """
        self.assertEqual(vpnkitArgs(*QEMU, "-config", "", "-pcap", ""), vpnkitArgs(*QEMU))

    def test_helpAndVersion(self):
        """
        -h, -help and --help ask for the usage; -version for the version.
        """
        for flag in ("-h", "-help", "--help"):
            self.assertEqual(translate([flag]).action, "help")
        self.assertEqual(translate(["-version"]).action, "version")


class GoFlagSyntaxTests(SynchronousTestCase):
    """
    Go's flag package rules.
    """

    def test_forms(self):
        """
        -flag value, -flag=value, --flag value and --flag=value are the same.
        """
        for argv in (
            ["-mtu", "4000"],
            ["-mtu=4000"],
            ["--mtu", "4000"],
            ["--mtu=4000"],
        ):
            self.assertEqual(parseGoFlags(argv), {"mtu": 4000})

    def test_valueMayStartWithDash(self):
        """
        A flag's value is the next argument, dash or not (-ssh-port -1).
        """
        self.assertEqual(parseGoFlags(["-ssh-port", "-1"]), {"ssh-port": -1})

    def test_lastWins(self):
        """
        A single-valued flag given twice keeps the last value.
        """
        self.assertEqual(parseGoFlags(["-mtu", "4000", "-mtu", "5000"]), {"mtu": 5000})

    def test_bool(self):
        """
        Bool flags take no separate value; -flag=VALUE accepts Go's
        spellings.
        """
        self.assertEqual(parseGoFlags(["-debug"]), {"debug": True})
        self.assertEqual(parseGoFlags(["-debug=0"]), {"debug": False})
        self.assertEqual(parseGoFlags(["-debug=TRUE"]), {"debug": True})
        with self.assertRaises(GvproxyUsageError) as e:
            parseGoFlags(["-debug=maybe"])
        self.assertEqual(str(e.exception), "invalid boolean value 'maybe' for -debug: parse error")

    def test_unknown(self):
        """
        An unknown flag fails with its name, as Go says it.
        """
        with self.assertRaises(GvproxyUsageError) as e:
            translate([*QEMU, "-listen-hyperv", "x"])
        self.assertEqual(str(e.exception), "flag provided but not defined: -listen-hyperv")
        with self.assertRaises(GvproxyUsageError) as e:
            translate(["--gateway-ip=192.168.127.1"])
        self.assertEqual(str(e.exception), "flag provided but not defined: -gateway-ip")

    def test_caseSensitive(self):
        """
        Flag names are case sensitive (-gatewayIP, not -gatewayip).
        """
        with self.assertRaises(GvproxyUsageError):
            parseGoFlags(["-gatewayip", "192.168.127.1"])

    def test_missingValue(self):
        """
        A flag at the end without its value.
        """
        with self.assertRaises(GvproxyUsageError) as e:
            parseGoFlags(["-listen-qemu"])
        self.assertEqual(str(e.exception), "flag needs an argument: -listen-qemu")

    def test_badNumber(self):
        """
        A number flag with something else.
        """
        with self.assertRaises(GvproxyUsageError) as e:
            parseGoFlags(["-mtu", "big"])
        self.assertEqual(str(e.exception), "invalid value 'big' for flag -mtu: parse error")

    def test_badSyntax(self):
        """
        ---flag and -=x are bad syntax.
        """
        for arg in ("---mtu", "-=x"):
            with self.assertRaises(GvproxyUsageError) as e:
                parseGoFlags([arg])
            self.assertEqual(str(e.exception), f"bad flag syntax: {arg}")

    def test_positional(self):
        """
        gvproxy takes no arguments; Go would stop parsing there and ignore
        the rest, which hides mistakes, so it is refused.
        """
        for argv in (["stray"], ["-mtu", "1500", "stray", "-debug"], ["--", "x"]):
            with self.assertRaises(GvproxyUsageError):
                parseGoFlags(argv)
        self.assertEqual(parseGoFlags(["-debug", "--"]), {"debug": True})

    def test_repeatable(self):
        """
        -listen and the -forward-* flags accumulate.
        """
        self.assertEqual(
            parseGoFlags(["-listen", "unix:///a", "-listen=unix:///b"]),
            {"listen": ["unix:///a", "unix:///b"]},
        )


class MessageTests(SynchronousTestCase):
    def test_vpnkitFlagsRenamed(self):
        """
        vpnkit's messages name the gvproxy flag the value came from.
        """
        self.assertEqual(
            gvproxyMessage("--qemu: directory /x does not exist"),
            "-listen-qemu: directory /x does not exist",
        )
        self.assertEqual(
            gvproxyMessage("--expose tcp:127.0.0.1:2222:tcp:192.168.127.2:22: Bind for "
                           "127.0.0.1:2222 failed: port is already allocated"),
            "-ssh-port tcp:127.0.0.1:2222:tcp:192.168.127.2:22: Bind for 127.0.0.1:2222 "
            "failed: port is already allocated",
        )
        self.assertEqual(gvproxyMessage("--mtu: 70000 is outside 576..65520"), "-mtu: 70000 is outside 576..65520")
        self.assertEqual(gvproxyMessage("--unknown stays"), "--unknown stays")


class MainTests(SynchronousTestCase):
    """
    L{main}'s exit statuses for what is decided before anything runs.
    """

    def runMain(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with self.assertRaises(SystemExit) as e:
            main(list(argv), stdout=out, stderr=err)
        return e.exception.code, out.getvalue(), err.getvalue()

    def test_usageErrorExits2(self):
        """
        A command line Go's flag package refuses: one line, status 2.
        """
        code, out, err = self.runMain("-frobnicate")
        self.assertEqual(code, 2)
        self.assertEqual(err, "vpnkit-gvproxy: flag provided but not defined: -frobnicate\n")

    def test_unsupportedExits1(self):
        """
        A flag vpnkit cannot serve: one line, status 1.
        """
        code, out, err = self.runMain(*QEMU, "-listen-bess", "unixpacket:///tmp/b")
        self.assertEqual(code, 1)
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("-listen-bess", err)

    def test_missingIdentity(self):
        """
        A forward whose key file is missing: one line naming it, status 1.
        """
        code, out, err = self.runMain(
            *QEMU, "-forward-sock", "/tmp/x.sock", "-forward-dest", "/run/x.sock",
            "-forward-user", "core", "-forward-identity", "/nonexistent/key",
        )
        self.assertEqual(code, 1)
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("-forward-identity: identity file '/nonexistent/key' can't be loaded", err)

    def test_vpnkitRefusesWithGvproxyName(self):
        """
        A value vpnkit's own options refuse is reported under the gvproxy
        flag's name.
        """
        code, out, err = self.runMain("-listen-qemu", "unix:///nonexistent/dir/qemu.sock")
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("vpnkit-gvproxy: -listen-qemu: "), err)
        code, out, err = self.runMain(*QEMU, "-mtu", "100")
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("vpnkit-gvproxy: -mtu: "), err)

    def test_help(self):
        """
        -help prints the usage and exits 0.
        """
        code, out, err = self.runMain("-help")
        self.assertEqual(code, 0)
        self.assertIn("-listen-qemu", out)

    def test_version(self):
        """
        -version prints one line and exits 0.
        """
        code, out, err = self.runMain("-version")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("vpnkit-gvproxy version "))


class GatewayAPITests(SynchronousTestCase):
    """
    gvproxy's API inside the guests (the gateway's port 80).
    """

    def setUp(self):
        self.stack, _ = makeStack(1)
        self.forwarder = PortForwarder(ListenReactor(), FakeConnector(), "192.168.65.2", "192.168.65.1")
        self.site = _gatewayAPI(makeAPI(self.stack, self.forwarder))

    def request(self, method, path, body=None):
        request = DummyRequest(path.lstrip(b"/").split(b"/"))
        request.method = method
        request.path = path
        request.client = TwistedIPv4Address("TCP", "192.168.65.3", 40000)
        request.content = io.BytesIO(json.dumps(body).encode() if body is not None else b"")
        result = self.site.getResourceFor(request).render(request)
        return request.responseCode or 200, result

    def test_exposeToCaller(self):
        """
        An expose whose remote has no address forwards to the guest that
        asked (podman publishing a port from inside the VM).
        """
        status, result = self.request(
            b"POST", b"/services/forwarder/expose", {"local": "127.0.0.1:0", "remote": ":8080"}
        )
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(result)["remote"], "192.168.65.3:8080")

    def test_allAndUnexpose(self):
        """
        all and unexpose are served.
        """
        self.request(b"POST", b"/services/forwarder/expose", {"local": "127.0.0.1:0", "remote": "192.168.65.3:80"})
        status, result = self.request(b"GET", b"/services/forwarder/all")
        (forward,) = json.loads(result)
        status, _ = self.request(
            b"POST", b"/services/forwarder/unexpose", {"local": forward["local"], "protocol": "tcp"}
        )
        self.assertEqual(status, 200)
        self.assertEqual(self.forwarder.forwards(), [])

    def test_onlyForwarder(self):
        """
        The rest of the host's API (stats, leases) is not served to guests.
        """
        status, _ = self.request(b"GET", b"/stats")
        self.assertEqual(status, 404)
        status, _ = self.request(b"GET", b"/services/dhcp/leases")
        self.assertEqual(status, 404)

    def test_malformed(self):
        """
        A body that is not JSON gets the API's 400.
        """
        request = DummyRequest([b"services", b"forwarder", b"expose"])
        request.method = b"POST"
        request.client = TwistedIPv4Address("TCP", "192.168.65.3", 40000)
        request.content = io.BytesIO(b"{not json")
        resource = self.site.getResourceFor(request)
        resource.render(request)
        self.assertEqual(request.responseCode, 400)
