# -*- test-case-name: tests.test_gvproxy -*-
"""
gvproxy's command line, translated (for C{vpnkit-gvproxy},
L{vpnkit.tools.gvproxy}).

L{translate} is pure: it parses gvproxy's single-dash flags with Go's
C{flag} package rules and returns the C{vpnkit} command line that serves
the same network (gvproxy's address plan: subnet 192.168.127.0/24, gateway
.1, guests from .2, host alias .254 for the host's loopback, C{-ssh-port}
2222 forwarded to the first guest's port 22), plus what only this front
end does: the HTTP API listeners (C{-listen}, C{-services}), the SSH
socket forwards (C{-forward-*}), the pid and log files.

See C{docs/gvproxy.md} for the flag table and what is left out.
"""

import re
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from urllib.parse import urlsplit

from vpnkit.config import ConfigError, StackConfig

__all__ = [
    "GvproxyError",
    "GvproxyUsageError",
    "APIEndpoint",
    "Translation",
    "translate",
    "gvproxyMessage",
    "parseGoFlags",
]

PROGRAM = "vpnkit-gvproxy"

DEFAULT_SUBNET = "192.168.127.0/24"
DEFAULT_SSH_PORT = 2222
GATEWAY_MAC = "5a:94:ef:e4:0c:dd"
# gvproxy's DNS zones: gateway and host under both names.
HOST_NAMES = "host.containers.internal,host.docker.internal"
GATEWAY_NAMES = "gateway.containers.internal,gateway.docker.internal"
GATEWAY_API_PORT = 80


class GvproxyError(Exception):
    """
    A command line gvproxy would run but vpnkit cannot, or a value gvproxy
    itself refuses.  Exit status 1; C{str()} is the one line to print.
    """

    exitStatus = 1


class GvproxyUsageError(GvproxyError):
    """
    A command line Go's C{flag} package refuses (unknown flag, missing or
    unparsable value).  Exit status 2, as gvproxy's.
    """

    exitStatus = 2


# -- gvproxy's flags -------------------------------------------------------------

# name -> kind: "bool", "int", "string" (last one wins) or "list" (repeatable).
FLAGS = {
    "config": "string",
    "listen": "list",
    "debug": "bool",
    "pcap": "string",
    "mtu": "int",
    "ssh-port": "int",
    "subnet": "string",
    "gatewayIP": "string",
    "deviceIP": "string",
    "hostIP": "string",
    "listen-vpnkit": "string",
    "listen-qemu": "string",
    "listen-bess": "string",
    "listen-stdio": "string",
    "listen-vfkit": "string",
    "forward-sock": "list",
    "forward-dest": "list",
    "forward-user": "list",
    "forward-identity": "list",
    "pid-file": "string",
    "log-file": "string",
    "services": "string",
    "ec2-metadata-access": "bool",
    "notification": "string",
    "version": "bool",
}

# gvproxy flags vpnkit does not serve, and why.
UNSUPPORTED = {
    "config": "the YAML configuration file is not supported; give the settings as flags",
    "listen-bess": "BESS (unixpacket) guests are not supported",
    "listen-stdio": "guests on standard input/output are not supported",
    "notification": "the notification socket is not supported",
}

# What vpnkit's messages call a flag, as the gvproxy flag it came from.
_ORIGINS = {
    "--qemu": "-listen-qemu",
    "--vfkit": "-listen-vfkit",
    "--ethernet": "-listen-vpnkit",
    "--mtu": "-mtu",
    "--expose": "-ssh-port",
    "--pcap-file": "-pcap",
    "--gateway-ip": "-gatewayIP",
    "--host-ip": "-hostIP",
    "--lowest-ip": "-deviceIP",
    "--highest-ip": "-subnet",
    "--debug": "-debug",
}

_GO_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_GO_FALSE = {"0", "f", "F", "false", "FALSE", "False"}

USAGE = f"""\
Usage: {PROGRAM} [gvproxy flags]

vpnkit behind gvproxy's command line.  Flags (Go syntax: -flag value,
-flag=value, one or two dashes):

  -listen-qemu unix:///PATH | tcp://HOST:PORT   QEMU stream guests
  -listen-vfkit unixgram:///PATH                vfkit / QEMU dgram guests
  -listen-vpnkit unix:///PATH                   hyperkit (vmnet) guests
  -listen URL, -services URL                    HTTP API on unix:///PATH or
                                                tcp://127.0.0.1:PORT
  -mtu N                                        MTU (default 1500)
  -ssh-port N                                   host 127.0.0.1:N -> guest :22
                                                (default 2222, -1 for none)
  -subnet CIDR -gatewayIP IP -deviceIP IP -hostIP IP
                                                address plan (default
                                                192.168.127.0/24, .1, .2, .254)
  -forward-sock PATH -forward-dest PATH -forward-user USER
  -forward-identity KEY                         host Unix socket -> guest Unix
                                                socket over SSH (repeatable)
  -pcap FILE  -pid-file FILE  -log-file FILE  -debug  -version

Not supported: -config, -listen-bess, -listen-stdio, -notification,
vsock:// endpoints.  See docs/gvproxy.md.
"""


def parseGoFlags(argv):
    """
    Parse C{argv} as Go's C{flag} package does for gvproxy's flags.

    @return: C{{name: value}} (lists for repeatable flags), and the
        C{"help"} key when C{-h}/C{-help} was given.
    @raise GvproxyUsageError: Go's message for a bad command line; a
        non-flag argument (which Go would silently stop at) too.
    """
    values = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if len(arg) < 2 or arg[0] != "-":
            raise GvproxyUsageError(f"unexpected argument {arg!r}: gvproxy takes only flags")
        dashes = 2 if arg[1] == "-" else 1
        if arg == "--":
            if args:
                raise GvproxyUsageError(f"unexpected argument {args[0]!r}: gvproxy takes only flags")
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise GvproxyUsageError(f"bad flag syntax: {arg}")
        value = None
        if "=" in name[1:]:
            name, value = name.split("=", 1)
        kind = FLAGS.get(name)
        if kind is None:
            if name in ("h", "help"):
                # Go prints the usage and stops there.
                return {"help": True}
            raise GvproxyUsageError(f"flag provided but not defined: -{name}")
        if kind == "bool":
            if value is None or value in _GO_TRUE:
                values[name] = True
            elif value in _GO_FALSE:
                values[name] = False
            else:
                raise GvproxyUsageError(f"invalid boolean value {value!r} for -{name}: parse error")
            continue
        if value is None:
            if not args:
                raise GvproxyUsageError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        if kind == "int":
            try:
                number = int(value, 0) if not re.fullmatch(r"[+-]?0[0-7_]+", value) else int(value, 8)
            except ValueError:
                raise GvproxyUsageError(f"invalid value {value!r} for flag -{name}: parse error") from None
            values[name] = number
        elif kind == "list":
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values


# -- the translation ---------------------------------------------------------------


@dataclass(frozen=True)
class APIEndpoint:
    """
    One HTTP API listener.

    @ivar flag: C{"-listen"} or C{"-services"}.
    @ivar path: the Unix socket path, or C{None} for TCP.
    @ivar host: the loopback address for TCP.
    """

    flag: str
    url: str
    path: str | None = None
    host: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class Translation:
    """
    What a gvproxy command line asks for.

    @ivar vpnkitArgs: the C{vpnkit} command line (L{vpnkit.tap.Options}).
    @ivar apiEndpoints: L{APIEndpoint}s (served by this front end).
    @ivar forwards: L{vpnkit.sshforward.SSHForwardSpec}s, in order.
    @ivar action: C{"run"}, C{"help"} or C{"version"}.
    """

    vpnkitArgs: tuple = ()
    apiEndpoints: tuple = ()
    forwards: tuple = ()
    guestIP: str = "192.168.127.2"
    gatewayIP: str = "192.168.127.1"
    pidFile: str | None = None
    logFile: str | None = None
    debug: bool = False
    action: str = "run"


def _url(flag, value, schemes):
    """
    Split gvproxy's listen URL; C{schemes} are the ones this flag takes.
    """
    try:
        parts = urlsplit(value)
    except ValueError:
        raise GvproxyError(f"-{flag}: {value!r} is not a URL") from None
    if parts.scheme not in schemes:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise GvproxyError(f"-{flag}: {value!r}: only {wanted} addresses are supported")
    return parts


def _unixPath(flag, value, scheme="unix"):
    parts = _url(flag, value, (scheme,))
    if parts.netloc or not parts.path:
        raise GvproxyError(f"-{flag}: {value!r}: expected {scheme}:///ABSOLUTE/PATH")
    return parts.path


def _apiEndpoint(flag, value):
    parts = _url(flag, value, ("unix", "tcp"))
    if parts.scheme == "unix":
        return APIEndpoint(flag=f"-{flag}", url=value, path=_unixPath(flag, value))
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise GvproxyError(f"-{flag}: {value!r}: expected tcp://127.0.0.1:PORT")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = IPv4Address(host)
    except AddressValueError:
        address = None
    if address is None or not address.is_loopback:
        raise GvproxyError(
            f"-{flag}: {value!r}: the API listens only on a loopback address "
            "(tcp://127.0.0.1:PORT)"
        )
    return APIEndpoint(flag=f"-{flag}", url=value, host=str(address), port=port)


def _addressPlan(values):
    """
    gvproxy's subnet, gateway, device and host addresses, checked as
    gvproxy checks them, and the vpnkit guest range that serves them.

    @return: C{(subnet, gateway, device, host, highest)}.
    """
    text = values.get("subnet", DEFAULT_SUBNET)
    try:
        subnet = IPv4Network(text, strict=False)
    except (AddressValueError, NetmaskValueError, ValueError):
        raise GvproxyError(f"-subnet: {text!r} is not an IPv4 subnet (CIDR, e.g. {DEFAULT_SUBNET})") from None
    if subnet.prefixlen > 29:
        raise GvproxyError(f"-subnet: {subnet} is too small (at least a /29)")
    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1
    plan = {}
    for flag, default in (("gatewayIP", first), ("deviceIP", first + 1), ("hostIP", last)):
        text = values.get(flag) or str(default)
        try:
            address = IPv4Address(text)
        except AddressValueError:
            raise GvproxyError(f"-{flag}: {text!r} is not an IPv4 address") from None
        if address not in subnet:
            raise GvproxyError(f"-{flag}: {address} is not in the subnet {subnet}")
        if address in (subnet.network_address, subnet.broadcast_address):
            raise GvproxyError(f"-{flag}: {address} is the network or broadcast address of {subnet}")
        plan[flag] = address
    gateway, device, host = plan["gatewayIP"], plan["deviceIP"], plan["hostIP"]
    if len({gateway, device, host}) != 3:
        raise GvproxyError("-gatewayIP, -deviceIP and -hostIP: the addresses need to be distinct")
    # Guests get -deviceIP and the addresses after it, up to the gateway or
    # the host alias, whichever comes first, or the end of the subnet.
    highest = min([a - 1 for a in (gateway, host) if a > device] + [last])
    try:
        config = StackConfig(
            gatewayIP=gateway, hostIP=host, lowestIP=device, highestIP=highest
        )
    except ConfigError as e:
        raise GvproxyError(f"-subnet {subnet}: {gvproxyMessage(str(e))}") from None
    if config.subnet != subnet:
        raise GvproxyError(
            f"-subnet {subnet}: vpnkit cannot serve this plan: guests from {device} to "
            f"{highest} with the gateway {gateway} make the subnet {config.subnet}"
        )
    return subnet, gateway, device, host, highest


def _forwards(values):
    from vpnkit.sshforward import SSHForwardSpec

    names = ("forward-sock", "forward-dest", "forward-user", "forward-identity")
    lists = [values.get(n, []) for n in names]
    if len({len(l) for l in lists}) != 1:
        counts = ", ".join(f"-{n} {len(l)}" for n, l in zip(names, lists))
        raise GvproxyError(
            "-forward-sock, -forward-dest, -forward-user and -forward-identity must all be "
            f"given the same number of times ({counts})"
        )
    specs = []
    for sock, dest, user, identity in zip(*lists):
        if "://" in sock:
            sock = _unixPath("forward-sock", sock)
        if not sock:
            raise GvproxyError("-forward-sock: empty path")
        if not dest.startswith("/"):
            raise GvproxyError(f"-forward-dest: {dest!r} is not an absolute path in the guest")
        if not user:
            raise GvproxyError("-forward-user: empty user name")
        specs.append(SSHForwardSpec(sock, dest, user, identity))
    return tuple(specs)


def translate(argv):
    """
    Translate a gvproxy command line.

    @return: a L{Translation}.
    @raise GvproxyError: one line naming the gvproxy flag.
    """
    values = parseGoFlags(argv)
    if values.get("help"):
        return Translation(action="help")
    if values.get("version"):
        return Translation(action="version")
    for name, why in UNSUPPORTED.items():
        if values.get(name):
            raise GvproxyError(f"-{name}: {why}")
    subnet, gateway, device, host, highest = _addressPlan(values)
    args = [
        "--gateway-ip", str(gateway),
        "--host-ip", str(host),
        "--lowest-ip", str(device),
        "--highest-ip", str(highest),
        "--server-macaddr", GATEWAY_MAC,
        "--mtu", str(values.get("mtu") or 1500),
        "--host-names", HOST_NAMES,
        "--gateway-names", GATEWAY_NAMES,
    ]
    links = 0
    if values.get("listen-qemu"):
        _url("listen-qemu", values["listen-qemu"], ("unix", "tcp"))
        args += ["--qemu", values["listen-qemu"]]
        links += 1
    if values.get("listen-vfkit"):
        _unixPath("listen-vfkit", values["listen-vfkit"], "unixgram")
        args += ["--vfkit", values["listen-vfkit"]]
        links += 1
    if values.get("listen-vpnkit"):
        args += ["--ethernet", _unixPath("listen-vpnkit", values["listen-vpnkit"])]
        links += 1
    if not links:
        raise GvproxyError(
            "no guest listener: give -listen-qemu, -listen-vfkit or -listen-vpnkit "
            "(guests over the API's /connect are not supported)"
        )
    sshPort = values.get("ssh-port", DEFAULT_SSH_PORT)
    if sshPort != -1:
        if not 1024 <= sshPort <= 65535:
            raise GvproxyError(f"-ssh-port: {sshPort} must be between 1024 and 65535 (or -1 for none)")
        args += ["--expose", f"tcp:127.0.0.1:{sshPort}:tcp:{device}:22"]
    if values.get("pcap"):
        args += ["--pcap-file", values["pcap"], "--pcap-snaplen", "0"]
    if values.get("debug"):
        args.append("--debug")
    endpoints = [_apiEndpoint("listen", v) for v in values.get("listen", []) if v]
    if values.get("services"):
        endpoints.append(_apiEndpoint("services", values["services"]))
    seen = set()
    for endpoint in endpoints:
        key = endpoint.path or (endpoint.host, endpoint.port)
        if key in seen:
            raise GvproxyError(f"{endpoint.flag}: {endpoint.url} is given twice")
        seen.add(key)
    forwards = _forwards(values)
    sockets = [f.socket for f in forwards]
    if len(set(sockets)) != len(sockets):
        raise GvproxyError("-forward-sock: the same socket is given twice")
    return Translation(
        vpnkitArgs=tuple(args),
        apiEndpoints=tuple(endpoints),
        forwards=forwards,
        guestIP=str(device),
        gatewayIP=str(gateway),
        pidFile=values.get("pid-file") or None,
        logFile=values.get("log-file") or None,
        debug=bool(values.get("debug")),
    )


def gvproxyMessage(text):
    """
    A vpnkit message with vpnkit's flag names replaced by the gvproxy flags
    they were translated from.
    """
    return re.sub(
        r"(?<![\w-])--[a-z][a-z0-9-]*",
        lambda m: _ORIGINS.get(m.group(0), m.group(0)),
        text,
    )
