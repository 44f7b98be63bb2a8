# -*- test-case-name: tests.test_tap -*-
"""
L{Options}: the command line of C{twistd vpnkit} and of the C{vpnkit}
command.  Every flag is checked here, at start-up, and a bad one stops it
with one line naming the flag (L{usage.UsageError}; exit status 2 under
twistd): addresses, numbers, link and listener addresses (paths, C{fd:N},
gvproxy's URL forms), and the configuration files, which are read now so a
broken one is reported before anything starts.

L{vpnkit.tap.makeService} builds the service from the parsed options.
(A little over 600 lines: it is the one place every flag is checked, and
splitting the flags of one command line across modules would hide which
flag exists.  The reference's and process managers' flags already live in
L{vpnkit.dropin}.)
"""

import grp
import os
import re
import stat
import sys
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, ip_address
from urllib.parse import unquote

from twisted.python import usage

from vpnkit.config import ConfigError, StackConfig
from vpnkit.dropin import DropInFlags
from vpnkit.forwards import ForwardError, parseSpec
from vpnkit.gatewayforwards import parseForwardsFlag, parseForwardsJSON
from vpnkit.host.tundev import netnsPath
from vpnkit.ipv6config import DEFAULT_PREFIX as DEFAULT_IPV6_PREFIX
from vpnkit.ipv6config import IPv6Config
from vpnkit.protocols.dhcp import parseDHCPSettings
from vpnkit.protocols.dnsconfig import parseDNSConfig
from vpnkit.watch import readConfigText
from vpnkit.wire import ParseError
from vpnkit.wire.ethernet import parseMAC
from vpnkit.wire.pcap import DEFAULT_SNAPLEN, MAX_SNAPLEN

__all__ = [
    "Options",
    "LinkSpec",
    "parseEthernet",
    "parseQEMU",
    "parseQEMUDgram",
    "parseVfkit",
    "parseNetns",
    "parseSocketGroup",
    "loadTrustRoot",
    "DEFAULT_HOSTS",
]

DEFAULT_HOSTS = "/etc/hosts"


def _ip(flag, value):
    try:
        return IPv4Address(value)
    except AddressValueError:
        raise usage.UsageError(f"--{flag}: {value!r} is not an IPv4 address") from None


def _bindAddress(value):
    """
    One C{--allowed-bind-addresses} entry: an IPv4 or IPv6 address, as
    its canonical text.
    """
    try:
        address = ip_address(value)
    except ValueError:
        raise usage.UsageError(
            f"--allowed-bind-addresses: {value!r} is not an IPv4 or IPv6 address"
        ) from None
    return str(address)


def _int(flag, value):
    try:
        return int(value)
    except ValueError:
        raise usage.UsageError(f"--{flag}: {value!r} is not a number") from None


def _checkFD(flag, text):
    try:
        fd = int(text)
    except ValueError:
        raise usage.UsageError(f"--{flag}: fd:{text} is not a descriptor number") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        raise usage.UsageError(f"--{flag}: fd:{fd}: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise usage.UsageError(f"--{flag}: fd:{fd} is not a socket")
    return fd


def parseSocketGroup(value):
    """
    C{--socket-group GROUP}: a group name or number that exists and that
    vpnkit may give its sockets to (root, or a member of it).

    @return: the group id.
    """
    try:
        gid = int(value)
    except ValueError:
        try:
            gid = grp.getgrnam(value).gr_gid
        except KeyError:
            raise usage.UsageError(f"--socket-group: no group named {value!r}") from None
    else:
        if gid < 0:
            raise usage.UsageError(f"--socket-group: {value!r} is not a group id")
        try:
            grp.getgrgid(gid)
        except KeyError:
            raise usage.UsageError(f"--socket-group: no group with id {gid}") from None
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise usage.UsageError(
            f"--socket-group: vpnkit's user is not a member of group {value!r}, "
            "so it cannot give the sockets to it"
        )
    return gid


def _checkSocketPath(flag, path):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise usage.UsageError(f"--{flag}: directory {parent} does not exist")
    if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise usage.UsageError(f"--{flag}: {path} exists and is not a socket")
    return path


def _listenAddress(flag, value):
    """
    A listener given as C{PATH} (a Unix socket) or C{fd:N} (an inherited
    listening socket).
    """
    if value.startswith("fd:"):
        return ("fd", _checkFD(flag, value[3:]))
    return ("unix", _checkSocketPath(flag, value))


@dataclass(frozen=True)
class LinkSpec:
    """
    One guest link to serve.

    @ivar kind: C{"vmnet"}, C{"qemu"}, C{"qemu-dgram"}, C{"vfkit"} or
        C{"netns"}.
    @ivar address: C{("unix", path)}, C{("fd", n)}, C{("tcp", host, port)},
        C{("unixgram", path)} (the datagram links) or C{("netns", path,
        ifname)}.
    """

    kind: str
    address: tuple

    def describe(self):
        return f"{self.kind} on {':'.join(str(a) for a in self.address)}"


def _names(value):
    """
    A comma-separated list of names (empty items dropped).
    """
    return tuple(name.strip() for name in value.split(",") if name.strip())


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _url(value):
    """
    C{(scheme, rest)} of a gvproxy-style URL (C{unix:///PATH},
    C{unixgram:///PATH}, C{tcp://HOST:PORT}), or C{None} for anything else.
    """
    scheme, sep, rest = value.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return None
    return scheme.lower(), rest


def _urlPath(flag, value, rest, forms):
    """
    The path of C{unix:///PATH} or C{unixgram:///PATH}: absolute, with
    percent-escapes decoded (as gvproxy reads them).
    """
    if not rest.startswith("/"):
        raise usage.UsageError(f"--{flag}: {value!r} names no absolute path: use {forms}")
    return unquote(rest)


def _refuseURL(flag, value, forms, hint=""):
    raise usage.UsageError(f"--{flag}: {value!r} does not apply here: use {forms}{hint}")


ETHERNET_FORMS = "PATH, unix:///PATH or fd:N"
QEMU_FORMS = "PATH, unix:///PATH, tcp://HOST:PORT or fd:N"
DGRAM_FORMS = "PATH or unixgram:///PATH"


def parseEthernet(value):
    """
    C{--ethernet PATH}, C{unix:///PATH} or C{fd:N}.
    """
    if value.startswith("fd:"):
        return LinkSpec("vmnet", ("fd", _checkFD("ethernet", value[3:])))
    url = _url(value)
    if url is not None:
        scheme, rest = url
        if scheme != "unix":
            hint = "; a datagram socket is --qemu-dgram or --vfkit" if scheme == "unixgram" else ""
            raise usage.UsageError(
                f"--ethernet: {value!r}: only Unix socket paths and fd:N are supported "
                f"({ETHERNET_FORMS}){hint}"
            )
        value = _urlPath("ethernet", value, rest, ETHERNET_FORMS)
    return LinkSpec("vmnet", ("unix", _checkSocketPath("ethernet", value)))


def _qemuTCP(text):
    host, _, port = text.rpartition(":")
    portNumber = _int("qemu", port)
    if not 0 <= portNumber <= 65535:
        raise usage.UsageError(f"--qemu: port {portNumber} is out of range")
    return LinkSpec("qemu", ("tcp", str(_ip("qemu", host or "127.0.0.1")), portNumber))


def parseQEMU(value):
    """
    C{--qemu PATH}, C{unix:PATH}, C{unix:///PATH}, C{tcp:HOST:PORT},
    C{tcp://HOST:PORT} or C{fd:N}.
    """
    if value.startswith("fd:"):
        return LinkSpec("qemu", ("fd", _checkFD("qemu", value[3:])))
    url = _url(value)
    if url is not None:
        scheme, rest = url
        if scheme == "tcp":
            return _qemuTCP(rest)
        if scheme != "unix":
            hint = ""
            if scheme == "unixgram":
                hint = f" (a datagram socket is --qemu-dgram {value})"
            _refuseURL("qemu", value, QEMU_FORMS, hint)
        value = _urlPath("qemu", value, rest, QEMU_FORMS)
    elif value.startswith("tcp:"):
        return _qemuTCP(value[4:])
    elif value.startswith("unix:"):
        value = value[5:]
    return LinkSpec("qemu", ("unix", _checkSocketPath("qemu", value)))


def _parseDatagram(flag, value):
    """
    C{--qemu-dgram} and C{--vfkit}: C{PATH} or C{unixgram:///PATH}.
    """
    if value.startswith("fd:"):
        raise usage.UsageError(f"--{flag}: {value!r}: inherited sockets are not supported: use {DGRAM_FORMS}")
    url = _url(value)
    if url is not None:
        scheme, rest = url
        if scheme != "unixgram":
            hint = ""
            if scheme == "unix":
                hint = f" (a stream socket is --qemu {value})"
            elif scheme == "tcp":
                hint = f" (TCP is --qemu {value})"
            _refuseURL(flag, value, DGRAM_FORMS, hint)
        value = _urlPath(flag, value, rest, DGRAM_FORMS)
    return LinkSpec(flag, ("unixgram", _checkSocketPath(flag, value)))


def parseQEMUDgram(value):
    """
    C{--qemu-dgram PATH} or C{unixgram:///PATH}.
    """
    return _parseDatagram("qemu-dgram", value)


def parseVfkit(value):
    """
    C{--vfkit PATH} or C{unixgram:///PATH}.
    """
    return _parseDatagram("vfkit", value)


def parseNetns(value, defaultTap):
    """
    C{--netns NAME_OR_PATH[:IFNAME]}.
    """
    name, sep, ifname = value.rpartition(":")
    if not sep or "/" in ifname:
        name, ifname = value, defaultTap
    if not ifname or len(ifname.encode()) >= 16:
        raise usage.UsageError(f"--netns: interface name {ifname!r} is empty or too long")
    path = netnsPath(name)
    if not os.path.exists(path):
        raise usage.UsageError(f"--netns: network namespace {path} does not exist")
    return LinkSpec("netns", ("netns", path, ifname))


class Options(DropInFlags, usage.Options):
    synopsis = "--ethernet PATH [options]"
    longdesc = (
        "A user-mode network stack for VMs and network namespaces.  Guests attach "
        "over vmnet sockets (--ethernet), QEMU stream sockets (--qemu), Unix datagram "
        "sockets (--qemu-dgram, --vfkit) or tap devices that vpnkit creates inside "
        "network namespaces (--netns)."
    )

    optFlags = [
        ["debug", None, "Log debug events (also enabled by the VPNKIT_DEBUG variable)."],
        ["no-ipv6", None, "IPv4 only: no IPv6 on the guests' link (no Router Advertisements, "
         "DHCPv6 or AAAA for the builtin names)."],
    ]
    optParameters = [
        ["mtu", None, "1500", "MTU of the guest links (576..65520)."],
        ["gateway-ip", None, "192.168.65.1", "vpnkit's own address: router, DNS and DHCP server."],
        ["host-ip", None, "192.168.65.2", "Address that reaches the host's 127.0.0.1 (0.0.0.0 disables)."],
        ["lowest-ip", None, "192.168.65.3", "First address given to guests."],
        ["highest-ip", None, "192.168.65.254", "Last address given to guests."],
        ["server-macaddr", None, "f6:16:36:bc:f9:c6", "vpnkit's MAC address."],
        ["ipv6-prefix", None, None, "The guests' IPv6 /64 (default fd00:65::/64): gateway ::1, "
         "host alias ::2 (the host's ::1), guests from ::3."],
        ["domain", None, None, "DHCP domain name (wins over --dhcp-path)."],
        ["dhcp-path", None, None, "dhcp.json with searchDomains/domainName; re-read on change."],
        ["tap", None, "tap0", "Interface name for --netns when the spec names none."],
        ["socket-group", None, None, "Make the guest link sockets (--ethernet, --qemu PATH) mode "
         "0660 and owned by this group (name or number); by default they are 0600, "
         "for vpnkit's user only."],
        ["max-connections", None, None, "Refuse (RST) guest TCP connections beyond this many "
         "(default: derived from the open-file limit)."],
        ["max-half-open", None, "4096", "Guest TCP connections not yet established (dialling or "
         "SYN-RECEIVED), all guests; beyond it a SYN evicts the oldest of the guest holding most."],
        ["max-half-open-per-guest", None, "1024", "The same for one guest; beyond it a SYN evicts "
         "that guest's oldest."],
        ["connect-timeout", None, "30", "Seconds a host connect may take before the guest gets RST."],
        ["dns", None, None, "Upstream DNS servers (nameserver IP[#PORT], zone, timeout, order, search); "
         "re-read on change.  Without it A/AAAA use the host's resolver."],
        ["hosts", None, None, "Hosts file served by DNS (default /etc/hosts; '' for none); re-read on change."],
        ["host-names", None, "host.internal", "Comma-separated names DNS answers with the host alias."],
        ["gateway-names", None, "gateway.internal", "Comma-separated names DNS answers with the gateway."],
        ["vm-names", None, "vm.internal", "Comma-separated names DNS answers with --lowest-ip."],
        ["udp-max-flows", None, "1024", "Most guest UDP sources NATed at once (the least recently used goes)."],
        ["api", None, None, "Serve the HTTP control API on this Unix socket (mode 0600)."],
        ["allowed-bind-addresses", None, None, "Comma-separated host addresses (IPv4 or IPv6) port "
         "forwards may bind (0.0.0.0 allows any); default any."],
        ["tcpv4-forwards", None, "", "Gateway TCP forwards lport:ip:rport,... (guest -> gateway:lport -> ip:rport)."],
        ["udpv4-forwards", None, "", "Gateway UDP forwards lport:ip:rport,..."],
        ["gateway-forwards", None, None, "JSON file of gateway forwards; re-read on change."],
        ["pcap", None, None, "Serve a live pcap stream of every guest frame on this Unix socket "
         "(mode 0600), or on an inherited listening socket fd:N."],
        ["pcap-snaplen", None, str(DEFAULT_SNAPLEN), f"Bytes kept of each captured frame "
         f"(0..{MAX_SNAPLEN}; 0 keeps whole frames)."],
        ["pcap-file", None, None, "Also write the capture to this file (truncated at start)."],
        ["http", None, None, "HTTP proxy JSON (upstream proxies, exclude, transparent ports, allow "
         "list); re-read on change."],
        ["http-api-path", None, None, "Serve GET/POST /http_proxy.json on this Unix socket (mode 0600)."],
        ["http-ca", None, None, "PEM file of the CA certificates https:// upstream proxies are "
         "checked against (default: the system's)."],
    ]

    def __init__(self):
        super().__init__()
        self["ethernet"] = []
        self["qemu"] = []
        self["qemu-dgram"] = []
        self["vfkit"] = []
        self["netns"] = []
        self["expose"] = []
        self.underTwistd = False
        self.daemon = False

    def opt_ethernet(self, value):
        """
        vmnet (hyperkit) listener: a Unix socket PATH, or fd:N (repeatable).
        """
        self["ethernet"].append(value)

    def opt_qemu(self, value):
        """
        QEMU stream listener: PATH, unix:///PATH, tcp://HOST:PORT (or tcp:HOST:PORT)
        or fd:N (repeatable).
        """
        self["qemu"].append(value)

    def opt_qemu_dgram(self, value):
        """
        QEMU -netdev dgram socket: PATH or unixgram:///PATH (repeatable).
        """
        self["qemu-dgram"].append(value)

    def opt_vfkit(self, value):
        """
        vfkit/libkrun unixgram socket: PATH or unixgram:///PATH (repeatable).
        """
        self["vfkit"].append(value)

    def opt_expose(self, value):
        """
        Forward a host port into a guest: tcp:HOSTIP:HOSTPORT:tcp:GUESTIP:GUESTPORT
        (or udp:...; IPv6 addresses in brackets, tcp:[::1]:8080:tcp:[fd00:65::3]:80);
        host port 0 picks a free one (repeatable).
        """
        self["expose"].append(value)

    def opt_netns(self, value):
        """
        Create a tap device in network namespace NAME_OR_PATH[:IFNAME] (repeatable).
        """
        self["netns"].append(value)

    def parseOptions(self, options=None):
        """
        Parse, and when run as a twistd subcommand turn a usage error into
        one line on standard error and exit status 2.
        """
        self.underTwistd = getattr(self, "parent", None) is not None
        # twistd without -n forks into the background once the services
        # are built: start-up errors must then go through its status pipe.
        parent = getattr(self, "parent", None)
        self.daemon = isinstance(parent, dict) and not parent.get("nodaemon", True)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if not self.underTwistd:
                raise
            sys.stderr.write(f"vpnkit: {e}\n")
            raise SystemExit(2)

    def postOptions(self):
        if "VPNKIT_DEBUG" in os.environ:
            self["debug"] = True
        hostIP = _ip("host-ip", self["host-ip"])
        if self["domain"] is not None and not self["domain"].isascii():
            raise usage.UsageError(f"--domain: {self['domain']!r} is not an ASCII name")
        try:
            mac = parseMAC(self["server-macaddr"])
        except ParseError:
            raise usage.UsageError(
                f"--server-macaddr: {self['server-macaddr']!r} is not a MAC address"
            ) from None
        try:
            self.config = StackConfig(
                mtu=_int("mtu", self["mtu"]),
                gatewayIP=_ip("gateway-ip", self["gateway-ip"]),
                hostIP=None if hostIP == IPv4Address("0.0.0.0") else hostIP,
                hostNames=_names(self["host-names"]),
                gatewayNames=_names(self["gateway-names"]),
                vmNames=_names(self["vm-names"]),
                maxUDPFlows=_int("udp-max-flows", self["udp-max-flows"]),
                lowestIP=_ip("lowest-ip", self["lowest-ip"]),
                highestIP=_ip("highest-ip", self["highest-ip"]),
                serverMAC=mac,
                domain=self["domain"],
                ipv6Prefix=self._ipv6Prefix(mac),
            )
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self.maxConnections = None
        if self["max-connections"] is not None:
            self.maxConnections = _int("max-connections", self["max-connections"])
            if self.maxConnections < 0:
                raise usage.UsageError("--max-connections: must not be negative")
        self.maxHalfOpen = _int("max-half-open", self["max-half-open"])
        self.maxHalfOpenPerGuest = _int("max-half-open-per-guest", self["max-half-open-per-guest"])
        for flag, value in (
            ("max-half-open", self.maxHalfOpen),
            ("max-half-open-per-guest", self.maxHalfOpenPerGuest),
        ):
            if value < 1:
                raise usage.UsageError(f"--{flag}: must be at least 1")
        try:
            self.connectTimeout = float(self["connect-timeout"])
        except ValueError:
            raise usage.UsageError(
                f"--connect-timeout: {self['connect-timeout']!r} is not a number"
            ) from None
        if not 0 < self.connectTimeout <= 3600:
            raise usage.UsageError("--connect-timeout: must be between 0 and 3600 seconds")
        self.links = (
            [parseEthernet(v) for v in self["ethernet"]]
            + [parseQEMU(v) for v in self["qemu"]]
            + [parseQEMUDgram(v) for v in self["qemu-dgram"]]
            + [parseVfkit(v) for v in self["vfkit"]]
            + [parseNetns(v, self["tap"]) for v in self["netns"]]
        )
        if not self.links:
            raise usage.UsageError(
                "Please provide an --ethernet argument (or --qemu, --qemu-dgram, --vfkit, --netns)"
            )
        self.socketGroup = None
        if self["socket-group"] is not None:
            self.socketGroup = parseSocketGroup(self["socket-group"])
        self.dhcpSettings = self.dhcpText = None
        if self["dhcp-path"] is not None:
            try:
                self.dhcpText = readConfigText(self["dhcp-path"])
                self.dhcpSettings = parseDHCPSettings(self.dhcpText, self["dhcp-path"])
            except ConfigError as e:
                raise usage.UsageError(f"--dhcp-path: {e}") from None
        self._dnsOptions()
        self._forwardOptions()
        self._captureOptions()
        self.checkDropIn(_listenAddress)
        self._httpOptions()

    def _ipv6Prefix(self, serverMAC):
        """
        C{--ipv6-prefix} (checked as the plan L{IPv6Config.forPrefix}
        builds from it, so a bad one stops start-up naming the flag even
        on a link too small for IPv6), or C{None} for C{--no-ipv6}.

        @raise ConfigError: not an IPv6 /64.
        """
        prefix = self["ipv6-prefix"]
        if self["no-ipv6"]:
            if prefix is not None:
                raise usage.UsageError("--ipv6-prefix: cannot be given with --no-ipv6")
            return None
        if prefix is None:
            return DEFAULT_IPV6_PREFIX
        return IPv6Config.forPrefix(prefix, serverMAC=serverMAC).prefix

    def _httpOptions(self):
        """
        C{--http} (read now; a missing file is picked up when it appears),
        C{--http-api-path} and C{--http-ca}.
        """
        self.httpConfig = self.httpText = None
        path = self["http"]
        if path is not None and os.path.exists(path):
            # --http only: the proxy's package stays unimported without it.
            from vpnkit.httpproxy.config import parseHTTPConfig

            try:
                self.httpText = readConfigText(path)
                self.httpConfig = parseHTTPConfig(self.httpText, path)
            except ConfigError as e:
                raise usage.UsageError(f"--http: {e}") from None
        if self["http-api-path"] is not None:
            _checkSocketPath("http-api-path", self["http-api-path"])
        self.httpTrustRoot = None
        if self["http-ca"] is not None:
            self.httpTrustRoot = loadTrustRoot(self["http-ca"])

    def _captureOptions(self):
        """
        C{--pcap}, C{--pcap-snaplen} and C{--pcap-file}: the listener is
        checked like a link's, the file's directory must exist.
        """
        self.pcapListen = None
        if self["pcap"] is not None:
            self.pcapListen = _listenAddress("pcap", self["pcap"])
        self.pcapSnaplen = _int("pcap-snaplen", self["pcap-snaplen"])
        if not 0 <= self.pcapSnaplen <= MAX_SNAPLEN:
            raise usage.UsageError(
                f"--pcap-snaplen: must be between 0 (whole frames) and {MAX_SNAPLEN}"
            )
        path = self["pcap-file"]
        if path is not None:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise usage.UsageError(f"--pcap-file: directory {parent} does not exist")
            if os.path.isdir(path):
                raise usage.UsageError(f"--pcap-file: {path} is a directory")

    def _forwardOptions(self):
        """
        Port forwards and gateway forwards: spec strings and files checked
        now, so a bad one stops start-up with one line naming it.
        """
        try:
            self.exposes = [parseSpec(spec) for spec in self["expose"]]
        except ForwardError as e:
            raise usage.UsageError(f"--expose: {e}") from None
        self.allowedBindAddresses = None
        if self["allowed-bind-addresses"]:
            self.allowedBindAddresses = [
                _bindAddress(a.strip())
                for a in self["allowed-bind-addresses"].split(",")
                if a.strip()
            ]
        try:
            self.gatewayForwards = parseForwardsFlag(
                self["tcpv4-forwards"], "tcp", "--tcpv4-forwards"
            ) + parseForwardsFlag(self["udpv4-forwards"], "udp", "--udpv4-forwards")
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self.gatewayForwardsFile = self.gatewayForwardsText = None
        if self["gateway-forwards"] is not None:
            path = self["gateway-forwards"]
            if os.path.exists(path):
                # A missing file is tolerated (the reference's behaviour)
                # and picked up when it appears; a bad one is an error.
                try:
                    self.gatewayForwardsText = readConfigText(path)
                    self.gatewayForwardsFile = parseForwardsJSON(self.gatewayForwardsText, path)
                except ConfigError as e:
                    raise usage.UsageError(f"--gateway-forwards: {e}") from None
        if self["api"] is not None:
            _checkSocketPath("api", self["api"])

    def _dnsOptions(self):
        """
        Read C{--dns} and C{--hosts} now, so a bad file stops start-up
        with one line naming it.
        """
        self.dnsConfig = self.dnsText = None
        if self["dns"] is not None:
            try:
                self.dnsText = readConfigText(self["dns"])
                self.dnsConfig = parseDNSConfig(self.dnsText, self["dns"])
            except ConfigError as e:
                raise usage.UsageError(f"--dns: {e}") from None
        self.hostsPath = self["hosts"] if self["hosts"] is not None else DEFAULT_HOSTS
        self.hostsText = None
        if self.hostsPath:
            try:
                self.hostsText = readConfigText(self.hostsPath)
            except ConfigError as e:
                if self["hosts"] is not None:
                    # Named on the command line: it must be there.
                    raise usage.UsageError(f"--hosts: {e}") from None


def loadTrustRoot(path):
    """
    The CA certificates of the PEM file C{path} as a trust root.

    @raise usage.UsageError: unreadable, or no certificate in it.
    """
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    try:
        text = readConfigText(path)
    except ConfigError as e:
        raise usage.UsageError(f"--http-ca: {e}") from None
    end = "-----END CERTIFICATE-----"
    blocks = [block + end for block in text.split(end) if "-----BEGIN CERTIFICATE-----" in block]
    try:
        certificates = [Certificate.loadPEM(block.strip()) for block in blocks]
    except Exception as e:
        raise usage.UsageError(f"--http-ca: {path}: not a PEM certificate ({e})") from None
    if not certificates:
        raise usage.UsageError(f"--http-ca: {path}: no PEM certificate in it")
    return trustRootFromCertificates(certificates)


