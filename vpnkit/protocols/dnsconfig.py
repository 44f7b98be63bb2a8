# -*- test-case-name: tests.test_dnsconfig -*-
"""
Upstream DNS configuration: which servers to ask and how.

Two sources give the same value, a L{DNSConfig} of L{Nameserver}s: the
reference's C{--dns} file (L{parseDNSConfig}, strict: a bad line stops with
the file, the line and the problem) and the host's C{resolv.conf}
(L{parseResolvConf}, lenient, as the C library).  Nothing here does I/O;
the callers read the files and watch them.
"""

import socket
from dataclasses import dataclass, replace
from ipaddress import ip_address

from vpnkit.config import ConfigError
from vpnkit.wire import ParseError
from vpnkit.wire.dhcp import encodeDomainSearch

__all__ = [
    "Nameserver",
    "DNSConfig",
    "parseDNSConfig",
    "parseResolvConf",
    "DEFAULT_TIMEOUT",
    "DEFAULT_ASSUME_OFFLINE_AFTER",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_ASSUME_OFFLINE_AFTER = 5


@dataclass(frozen=True)
class Nameserver:
    """
    One upstream server.

    @ivar address: its address, as text.
    @ivar zones: lower-case names without trailing dots; empty for a
        server of last resort.
    @ivar timeout: seconds to wait for it, or C{None} for L{DEFAULT_TIMEOUT}.
    """

    address: str
    port: int = 53
    zones: tuple = ()
    timeout: float | None = None
    order: int = 0

    def __str__(self):
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def family(self):
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET


@dataclass(frozen=True)
class DNSConfig:
    """
    The upstream servers and the settings that come with them.
    """

    servers: tuple = ()
    search: tuple = ()
    assumeOfflineAfter: int = DEFAULT_ASSUME_OFFLINE_AFTER


def _address(text):
    """
    C{A.B.C.D}, C{A.B.C.D#PORT}, or an IPv6 address (optionally C{#PORT}).

    @return: C{(address text, port)}
    @raise ValueError: not an address.
    """
    host, sep, port = text.rpartition("#")
    if not sep:
        host, port = text, "53"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = ip_address(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return str(address), int(port)


def _arguments(rest):
    """
    A line's arguments, up to a C{#} comment that starts a word.
    """
    words = []
    for word in rest.split():
        if word.startswith("#"):
            break
        words.append(word)
    return words


def _zone(name):
    return name.rstrip(".").lower()


def parseDNSConfig(text, path="dns"):
    """
    Parse the reference's C{--dns} file: C{nameserver IP[#PORT]}, then
    C{zone NAME...}, C{timeout MS} and C{order N} for the nameserver above
    them, C{search NAME...} (the first line counts) and
    C{assume-offline-after N}.  Blank lines, comments and unknown keywords
    are ignored.

    @return: a L{DNSConfig}.
    @raise ConfigError: naming C{path}, the line and the problem.
    """
    servers = []
    search = None
    offlineAfter = DEFAULT_ASSUME_OFFLINE_AFTER
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        keyword, _, rest = line.partition(" ")
        if not keyword or keyword.startswith("#"):
            continue
        words = _arguments(rest)

        def fail(problem):
            raise ConfigError(f"{path}: line {number}: {problem}: {line!r}")

        def number_(minimum=0):
            if len(words) != 1:
                fail(f"{keyword} takes one number")
            try:
                value = int(words[0])
            except ValueError:
                fail(f"{keyword} takes one number")
            if value < minimum:
                fail(f"{keyword} must be at least {minimum}")
            return value

        if keyword == "nameserver":
            if len(words) != 1:
                fail("nameserver takes one address")
            try:
                address, port = _address(words[0])
            except ValueError:
                fail("not an address (IP or IP#PORT)")
            servers.append(Nameserver(address, port))
        elif keyword in ("zone", "timeout", "order"):
            if not servers:
                # As the reference: these describe the nameserver above.
                continue
            if keyword == "zone":
                change = {"zones": servers[-1].zones + tuple(_zone(w) for w in words)}
            elif keyword == "timeout":
                change = {"timeout": number_() / 1000.0}
            else:
                change = {"order": number_(-(2**31))}
            servers[-1] = replace(servers[-1], **change)
        elif keyword == "search":
            if search is None:
                search = tuple(_zone(w) for w in words if _zone(w))
                try:
                    # It goes to guests in DHCP option 119.
                    encodeDomainSearch(search)
                except (ParseError, UnicodeError) as e:
                    fail(f"search: {e}")
        elif keyword == "assume-offline-after":
            offlineAfter = number_()
    return DNSConfig(tuple(servers), search or (), offlineAfter)


def parseResolvConf(text, path="/etc/resolv.conf"):
    """
    The servers, search list and timeout of a C{resolv.conf}, leniently:
    what does not parse (a link-local address with a zone index, an
    unknown option) is skipped, as the C library skips it.

    @return: a L{DNSConfig}.
    """
    servers = []
    search = ()
    timeout = None
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        keyword, args = words[0], words[1:]
        if keyword == "nameserver" and len(args) == 1:
            try:
                address = ip_address(args[0])
            except ValueError:
                continue
            if not getattr(address, "scope_id", None):
                servers.append(Nameserver(str(address)))
        elif keyword in ("search", "domain"):
            search = tuple(_zone(a) for a in args if _zone(a))
        elif keyword == "options":
            for option in args:
                name, _, value = option.partition(":")
                if name == "timeout" and value.isdigit():
                    timeout = max(1, int(value))
    if timeout is not None:
        servers = [replace(s, timeout=float(timeout)) for s in servers]
    return DNSConfig(tuple(servers), search)
