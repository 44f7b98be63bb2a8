# -*- test-case-name: tests.test_httpproxy_config -*-
"""
The HTTP proxy configuration (C{--http}, C{POST /http_proxy.json}): pure
parsing into a frozen L{HTTPProxyConfig}, upstream proxy addresses
(L{ProxyURI}) and the host patterns of C{exclude} and C{allow}
(L{HostMatcher}).

The JSON is the reference's::

    {"http": "host:3128" | "http://user:pass@host:3128" | "https://host:3129",
     "https": "...same forms...",
     "exclude": "*.local, 169.254.0.0/16 10.0.0.1",
     "transparent_http_ports": [80], "transparent_https_ports": [443],
     "allow_enabled": false, "allow": ["localhost", "*.corp"],
     "allow_error_msg": "Connections to %s are forbidden ..."}

A pattern is an IPv4 address or CIDR (matching only hosts written as an
address), C{*} (everything), or a dotted name matched by label suffix:
C{mit.edu} matches C{mit.edu} and C{dave.mit.edu}; an empty or C{*} label
matches any one label, so C{.mit.edu} and C{*.mit.edu} match
C{dave.mit.edu} but not C{mit.edu}.  Any pattern may end in C{:PORT}, and
then matches that port only.
"""

import base64
import json
import re
from dataclasses import dataclass, field
from ipaddress import AddressValueError, NetmaskValueError, ip_address, ip_network
from urllib.parse import unquote, urlsplit

from vpnkit.config import ConfigError

__all__ = [
    "ProxyURI",
    "parseProxyURI",
    "HostMatcher",
    "parseHostPatterns",
    "HTTPProxyConfig",
    "parseHTTPConfig",
    "DEFAULT_ALLOW_ERROR_MSG",
]

DEFAULT_ALLOW_ERROR_MSG = (
    "Connections to %s are forbidden by policy. Please contact your IT administrator."
)

_LABEL = re.compile(r"^(\*|[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)?$")


@dataclass(frozen=True)
class ProxyURI:
    """
    An upstream proxy: reached over TLS when C{scheme} is C{"https"}.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self):
        return self.scheme == "https"

    @property
    def authorization(self):
        """
        The C{Proxy-Authorization} value for the URI's credentials, as
        bytes, or C{None} without credentials.
        """
        if self.username is None:
            return None
        secret = f"{self.username}:{self.password or ''}".encode()
        return b"Basic " + base64.b64encode(secret)

    def __str__(self):
        return f"{self.scheme}://{self.host}:{self.port}"


def parseProxyURI(text, where="proxy"):
    """
    Parse C{host:port}, C{http://[user:pass@]host:port} or
    C{https://[user:pass@]host:port}; the port is required.  C{None} or
    an empty string is no proxy.

    @raise ConfigError: naming C{where}.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected a string, not {type(text).__name__}")
    text = text.strip()
    if not text:
        return None
    candidate = text if "://" in text else f"http://{text}"
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{where}: {text!r} is not a proxy address ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"{where}: {text!r}: only http:// and https:// proxies are supported")
    if not parts.hostname:
        raise ConfigError(f"{where}: {text!r} has no host")
    if port is None or port == 0:
        raise ConfigError(f"{where}: {text!r} has no port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{where}: {text!r}: a proxy address has no path")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyURI(scheme, parts.hostname.lower(), port, username, password)


def _normalHost(host):
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class _Pattern:
    """
    One element of a host list: C{network} (an address or CIDR), or
    C{labels} (a name, C{None} labels matching any one label), or neither
    (C{*}: everything); C{port} restricts it to one port.
    """

    text: str
    network: object = None
    labels: tuple | None = None
    port: int | None = None

    def matches(self, host, address, port):
        if self.port is not None and port != self.port:
            return False
        if self.network is not None:
            return address is not None and address in self.network
        if self.labels is None:
            return True
        if address is not None:
            return False
        labels = host.split(".")
        if len(self.labels) > len(labels):
            return False
        tail = labels[len(labels) - len(self.labels) :]
        return all(p is None or p == h for p, h in zip(self.labels, tail))


def _splitPort(element):
    """
    C{(host, port text or None)} of a pattern: C{host:port},
    C{[ipv6]:port}, C{[ipv6]}, or a bare host, address or network (a bare
    IPv6 one has no port).

    @raise ValueError: a bracket not closed, or text after it that is not
        C{:port}.
    """
    if element.startswith("["):
        host, bracket, rest = element[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(element)
        return host, rest[1:] if rest else None
    if element.count(":") > 1:
        return element, None
    host, sep, port = element.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return element, None


def _parsePattern(text, where):
    try:
        element, portText = _splitPort(text.strip().lower())
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a host name, address or CIDR") from None
    port = None
    if portText is not None:
        if not portText.isdigit():
            raise ConfigError(f"{where}: {text!r} is not a host name, address or CIDR")
        port = int(portText)
        if not 1 <= port <= 65535:
            raise ConfigError(f"{where}: {text!r}: port {port} is out of range")
    if element == "*":
        return _Pattern(text, port=port)
    try:
        return _Pattern(text, network=ip_network(element, strict=False), port=port)
    except (AddressValueError, NetmaskValueError, ValueError):
        pass
    name = element.rstrip(".")
    labels = name.split(".")
    if not name or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(f"{where}: {text!r} is not a host name, address or CIDR")
    return _Pattern(
        text, labels=tuple(None if label in ("", "*") else label for label in labels), port=port
    )


@dataclass(frozen=True)
class HostMatcher:
    """
    A list of host patterns (see the module docstring).
    """

    patterns: tuple = ()

    def matches(self, host, port=None):
        """
        Whether C{host} (a name or an IPv4 or IPv6 address, any case) on C{port}
        (C{None}: any) matches one of the patterns.
        """
        if host is None:
            return False
        host = _normalHost(host)
        try:
            address = ip_address(host.strip("[]"))
        except (AddressValueError, ValueError):
            address = None
        return any(p.matches(host, address, port) for p in self.patterns)

    def __bool__(self):
        return bool(self.patterns)


def parseHostPatterns(value, where):
    """
    Parse C{exclude} (a string of patterns separated by commas and/or
    white space) or C{allow} (a list of patterns; a string is split the
    same way).

    @raise ConfigError: naming C{where}.
    """
    if value is None:
        return HostMatcher()
    if isinstance(value, str):
        items = re.split(r"[,\s]+", value)
    elif isinstance(value, list):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"{where}: {item!r} is not a string")
            items.extend(re.split(r"[,\s]+", item))
    else:
        raise ConfigError(f"{where}: expected a string or a list of strings")
    return HostMatcher(tuple(_parsePattern(item, where) for item in items if item.strip()))


def _ports(value, where, default):
    if value is None:
        return default
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of port numbers")
    ports = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 65535:
            raise ConfigError(f"{where}: {item!r} is not a port number")
        ports.append(item)
    return frozenset(ports)


@dataclass(frozen=True)
class HTTPProxyConfig:
    """
    The proxy configuration in force.

    @ivar http: the upstream for plain HTTP (transparent, and the gateway's
        port 3128), or C{None}: straight to the origin.
    @ivar https: the upstream for C{CONNECT} tunnels (transparent HTTPS, and
        the gateway's port 3129), or C{None}.
    @ivar raw: the JSON object it was parsed from (what C{GET
        /http_proxy.json} answers).
    """

    http: ProxyURI | None = None
    https: ProxyURI | None = None
    exclude: HostMatcher = HostMatcher()
    transparentHTTPPorts: frozenset = frozenset({80})
    transparentHTTPSPorts: frozenset = frozenset({443})
    allowEnabled: bool = False
    allow: HostMatcher = HostMatcher()
    allowErrorMsg: str = DEFAULT_ALLOW_ERROR_MSG
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def excluded(self, host, port=None):
        """
        Whether C{host} goes straight to the origin, not through a proxy.
        """
        return self.exclude.matches(host, port)

    def allowed(self, host, port=None):
        """
        Whether guests may reach C{host} at all.
        """
        return not self.allowEnabled or self.allow.matches(host, port)

    def forbiddenMessage(self, host):
        """
        C{allow_error_msg} with every C{%s} replaced by C{host}.
        """
        return self.allowErrorMsg.replace("%s", host)

    def asJSON(self):
        """
        The configuration as minified JSON text.
        """
        return json.dumps(self.raw, separators=(",", ":"))


def parseHTTPConfig(text, path="http_proxy.json"):
    """
    Parse the reference's proxy JSON.  Unknown keys are ignored.

    @raise ConfigError: not JSON, or a value that cannot be used, naming
        C{path} and the key.
    """
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    allowEnabled = value.get("allow_enabled", False)
    if not isinstance(allowEnabled, bool):
        raise ConfigError(f"{path}: allow_enabled: expected true or false")
    message = value.get("allow_error_msg")
    if message is None:
        message = DEFAULT_ALLOW_ERROR_MSG
    elif not isinstance(message, str):
        raise ConfigError(f"{path}: allow_error_msg: expected a string")
    return HTTPProxyConfig(
        http=parseProxyURI(value.get("http"), f"{path}: http"),
        https=parseProxyURI(value.get("https"), f"{path}: https"),
        exclude=parseHostPatterns(value.get("exclude"), f"{path}: exclude"),
        transparentHTTPPorts=_ports(
            value.get("transparent_http_ports"), f"{path}: transparent_http_ports", frozenset({80})
        ),
        transparentHTTPSPorts=_ports(
            value.get("transparent_https_ports"),
            f"{path}: transparent_https_ports",
            frozenset({443}),
        ),
        allowEnabled=allowEnabled,
        allow=parseHostPatterns(value.get("allow"), f"{path}: allow"),
        allowErrorMsg=message,
        raw=value,
    )
