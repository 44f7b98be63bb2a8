# -*- test-case-name: tests.test_httpproxy_rewrite -*-
"""
What a proxied request becomes, as pure functions: its request line
(L{parseRequestLine}), where it goes (L{requestTarget}), its request-target and headers for the next hop
(L{upstreamURI}, L{forwardHeaders}), the C{CONNECT} vpnkit sends to an
upstream proxy and the head of its answer (L{connectRequest},
L{parseResponseHead}), and the error pages vpnkit answers itself.

The rules are the reference's (C{hostnet_http.ml}): the C{Host} header is
C{host}, or C{host:port} when the port is not 80; an upstream proxy gets the
absolute form C{http://host:port/path} (port always written), an origin the
path; the guest's C{Proxy-Authorization} is dropped and the configured
proxy's credentials sent instead.  Hop-by-hop headers (RFC 9110 §7.6.1) are
not forwarded: Twisted's client frames the body itself.
"""

import re
from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

__all__ = [
    "RewriteError",
    "Target",
    "parseRequestLine",
    "requestTarget",
    "connectTarget",
    "hostHeader",
    "upstreamURI",
    "forwardHeaders",
    "serializeHead",
    "connectRequest",
    "parseResponseHead",
    "errorPage",
    "MAX_HEAD",
]

# The most bytes of a response head vpnkit reads from an upstream proxy.
MAX_HEAD = 16384

# Never forwarded: connection management, framing (Twisted's client sets
# it), credentials meant for vpnkit, and what vpnkit answered itself.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"content-length",
        b"expect",
        b"host",
    }
)
_HOST = re.compile(r"^([a-z0-9_.-]+|\d+\.\d+\.\d+\.\d+)(?::(\d{1,5}))?$")


class RewriteError(ValueError):
    """
    A request vpnkit cannot forward (answered with 400 and this message).
    """


@dataclass(frozen=True)
class Target:
    """
    Where a request goes: a host (name or address, lower case), a port, and
    the origin-form path with its query.
    """

    host: str
    port: int
    path: bytes = b"/"


def _hostPort(text, defaultPort):
    """
    Split C{host[:port]}.

    @raise RewriteError: not a host name or IPv4 address with a valid port.
    """
    match = _HOST.match(text.strip().lower())
    if not match:
        raise RewriteError(f"{text!r} is not a host")
    port = int(match.group(2)) if match.group(2) else defaultPort
    if not 1 <= port <= 65535:
        raise RewriteError(f"port {port} is out of range")
    return match.group(1).rstrip("."), port


def parseRequestLine(line):
    """
    The parts of a request line, C{method SP request-target SP
    HTTP-version} (RFC 9112 §3), without its CRLF.

    The line is only split, as twisted.web's parser splits it: that parser
    reads the request and answers 400 to a line that is not well formed.

    @return: C{(method, target, version)}, or C{None} when the line does
        not have exactly three parts.
    """
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    return method, target, version


def requestTarget(uri, host=None, defaultHost=None, defaultPort=80):
    """
    Where a request goes: the host of an absolute C{http://} URI, else the
    C{Host} header, else C{defaultHost} (the address a transparently
    proxied guest dialled).

    @param uri: the request-target as received (bytes).
    @param host: the C{Host} header (bytes) or C{None}.
    @param defaultPort: the port when neither URI nor header gives one.
    @raise RewriteError: no host, or not an http URI.
    """
    try:
        text = uri.decode("ascii")
    except UnicodeDecodeError:
        raise RewriteError("the request-target is not ASCII") from None
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() != "http":
            raise RewriteError(f"{parts.scheme}:// requests are not proxied; use CONNECT")
        name, port = _hostPort(parts.netloc.rpartition("@")[2], 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return Target(name, port, path.encode("ascii"))
    if not (text.startswith("/") or text == "*"):
        raise RewriteError("request must contain an absolute URI")
    if host is not None:
        try:
            hostText = host.decode("ascii")
        except UnicodeDecodeError:
            raise RewriteError("the Host header is not ASCII") from None
        name, port = _hostPort(hostText, defaultPort)
        return Target(name, port, uri)
    if defaultHost is None:
        raise RewriteError("request must contain an absolute URI")
    return Target(defaultHost, defaultPort, uri)


def connectTarget(uri):
    """
    The C{host:port} of a C{CONNECT} request; the port is required.

    @raise RewriteError: not C{host:port}.
    """
    try:
        text = uri.decode("ascii")
    except UnicodeDecodeError:
        raise RewriteError("the CONNECT target is not ASCII") from None
    if ":" not in text:
        raise RewriteError("CONNECT needs host:port")
    name, port = _hostPort(text, 0)
    return Target(name, port, b"")


def hostHeader(target):
    """
    The C{Host} value for C{target}: the port only when not 80.
    """
    if target.port == 80:
        return target.host.encode("ascii")
    return f"{target.host}:{target.port}".encode("ascii")


def upstreamURI(target, viaProxy):
    """
    The request-target sent on: absolute (port always written) to a proxy,
    the path to an origin.
    """
    if viaProxy:
        return f"http://{target.host}:{target.port}".encode("ascii") + target.path
    return target.path


def forwardHeaders(headers, target, proxy=None, keep=()):
    """
    The headers sent on, in order: C{Host} first, then the guest's minus
    hop-by-hop ones and those its C{Connection} header names, then the
    proxy's C{Proxy-Authorization} when it has credentials.

    @param headers: C{[(name, [values])]} as received (any case).
    @param proxy: the L{vpnkit.httpproxy.config.ProxyURI} the request goes
        through, or C{None} for an origin.
    @param keep: lower-case hop-by-hop names to keep (C{connection},
        C{upgrade} for a protocol upgrade).
    @return: C{[(name, [values])]}.
    """
    drop = set(_HOP_BY_HOP) - set(keep)
    for name, values in headers:
        if name.lower() == b"connection":
            for value in values:
                drop.update(t.strip().lower() for t in value.split(b",") if t.strip())
    drop -= set(keep)
    drop.add(b"host")
    drop.add(b"proxy-authorization")
    result = [(b"Host", [hostHeader(target)])]
    result.extend((name, list(values)) for name, values in headers if name.lower() not in drop)
    if proxy is not None and proxy.authorization is not None:
        result.append((b"Proxy-Authorization", [proxy.authorization]))
    return result


def serializeHead(method, uri, headers, version=b"HTTP/1.1"):
    """
    A request head as bytes (for a protocol upgrade, passed on raw).
    """
    lines = [b"%s %s %s\r\n" % (method, uri, version)]
    for name, values in headers:
        lines.extend(b"%s: %s\r\n" % (name, value) for value in values)
    lines.append(b"\r\n")
    return b"".join(lines)


def connectRequest(target, proxy):
    """
    The C{CONNECT} vpnkit sends to C{proxy} for a tunnel to C{target}.
    """
    authority = f"{target.host}:{target.port}".encode("ascii")
    headers = [(b"Host", [authority])]
    if proxy.authorization is not None:
        headers.append((b"Proxy-Authorization", [proxy.authorization]))
    return serializeHead(b"CONNECT", authority, headers)


def parseResponseHead(data):
    """
    The status of a response head at the start of C{data}.

    @return: C{None} while the head is incomplete, else C{(code, reason,
        length)} where C{length} counts the head's bytes.
    @raise RewriteError: not an HTTP response, or a head over L{MAX_HEAD}.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD:
            raise RewriteError("response head too long")
        if not b"HTTP/".startswith(data[:5]):
            raise RewriteError("not an HTTP response")
        return None
    status = data[: data.find(b"\r\n")]
    parts = status.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise RewriteError(f"not an HTTP status line: {status[:80]!r}")
    reason = parts[2] if len(parts) == 3 else b""
    return int(parts[1]), reason.decode("latin-1"), end + 4


def errorPage(code, reason, message):
    """
    The small HTML page of an error vpnkit answers itself.
    """
    text = escape(message)
    return (
        f"<html><head><title>{code} {escape(reason)}</title></head>"
        f"<body><h1>{code} {escape(reason)}</h1><p>{text}</p>"
        f"<hr><address>vpnkit HTTP proxy</address></body></html>\n"
    ).encode("utf-8")
