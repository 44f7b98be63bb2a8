# -*- test-case-name: tests.test_api -*-
"""
The HTTP control API (twisted.web), served on a Unix socket (C{--api}).

Endpoints compatible with gvproxy's:
 - C{POST /services/forwarder/expose} C{{"local": "127.0.0.1:8080",
   "remote": "192.168.65.3:80", "protocol": "tcp"}}: start forwarding;
   answers the forward in force (port 0 resolved);
 - C{POST /services/forwarder/unexpose} C{{"local": ..., "protocol": ...}};
 - C{GET /services/forwarder/all}: the forwards, as a JSON list;
 - C{GET /services/dhcp/leases} (and C{/leases}): C{{ip: mac}} (IPv4, as
   gvproxy's: clients invert it into C{{mac: ip}});
 - C{GET /services/leases}: a list of C{{"ip", "ipv6", "mac", "uuid",
   "ephemeral", "link"}}, each guest's IPv4 address beside its stable IPv6
   one (C{null} with IPv6 off), as the diagnostics' C{leases.json};
 - C{GET /stats}: every counter and the live connections.
Errors are plain text: 400 for malformed JSON or specs, 409 for a port
already allocated, 404 for an unknown forward, 405 for a wrong method, 500
with the reference's wording for other bind failures.

Limits, since a client that misbehaves must not take the daemon with it:

 - a body is at most L{MAX_BODY} bytes (64 KiB): a larger C{Content-Length}
   is answered 413 before the body is read, a chunked body is cut off with
   413 once it grows past it;
 - JSON nested deeper than L{MAX_DEPTH} (32) is answered 400 without being
   parsed (the parser's recursion would otherwise fail with a 500);
 - a request (line, headers and body) must arrive within
   L{REQUEST_TIMEOUT} seconds (10) of the connection or of the previous
   response, or the connection is closed with 408 (slow clients);
 - a connection idle for L{IDLE_TIMEOUT} seconds (60) is closed;
 - at most L{MAX_CONNECTIONS} (64) connections at once; further ones are
   closed at once.
"""

import json

from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from vpnkit.forwards import ForwardError, specFromJSON
from vpnkit.diagnostics import leaseRows
from vpnkit.log import GuestLog, logger
from vpnkit.wire.ethernet import formatMAC

__all__ = [
    "makeAPI",
    "MAX_BODY",
    "MAX_DEPTH",
    "REQUEST_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
]

log = logger("vpnkit.api")

MAX_BODY = 64 * 1024
MAX_DEPTH = 32
REQUEST_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0
MAX_CONNECTIONS = 64

_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")


def jsonDepth(data):
    """
    How deeply arrays and objects nest in C{data} (JSON bytes), counted
    without parsing: brackets inside strings do not count.
    """
    depth = deepest = 0
    inString = escaped = False
    for byte in data:
        if inString:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                inString = False
        elif byte == _QUOTE:
            inString = True
        elif byte in _OPENERS:
            depth += 1
            if depth > deepest:
                deepest = depth
        elif byte in _CLOSERS:
            depth -= 1
    return deepest


def _json(request, value, code=200):
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(value).encode() + b"\n"


def _text(request, message, code):
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return message.encode() + b"\n"


def _body(request):
    data = request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise ForwardError(f"the body is larger than {MAX_BODY} bytes", 413)
    if jsonDepth(data) > MAX_DEPTH:
        raise ForwardError(f"malformed JSON: nested deeper than {MAX_DEPTH}", 400)
    try:
        return json.loads(data or b"null")
    except (ValueError, RecursionError) as e:
        raise ForwardError(f"malformed JSON: {e}", 400) from None


class _Leaf(Resource):
    isLeaf = True

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        handler = getattr(self, f"render_{method}", None)
        if handler is None:
            allowed = ", ".join(m[7:] for m in dir(self) if m.startswith("render_") and m != "render_HEAD")
            request.setHeader(b"allow", allowed.encode())
            return _text(request, f"{method} not allowed here", 405)
        try:
            return handler(request)
        except ForwardError as e:
            return _text(request, str(e), e.code)


class _Expose(_Leaf):
    def __init__(self, forwarder):
        super().__init__()
        self._forwarder = forwarder

    def render_POST(self, request):
        spec = self._forwarder.expose(specFromJSON(_body(request)))
        return _json(request, spec.asJSON())


class _Unexpose(_Leaf):
    def __init__(self, forwarder):
        super().__init__()
        self._forwarder = forwarder

    def render_POST(self, request):
        spec = specFromJSON(_body(request), requireRemote=False)
        self._forwarder.unexpose(spec.protocol, spec.hostIP, spec.hostPort)
        return b""


class _All(_Leaf):
    def __init__(self, forwarder):
        super().__init__()
        self._forwarder = forwarder

    def render_GET(self, request):
        return _json(request, [spec.asJSON() for spec in self._forwarder.forwards()])


class _Leases(_Leaf):
    def __init__(self, stack):
        super().__init__()
        self._stack = stack

    def render_GET(self, request):
        switch = self._stack.switch
        leases = {}
        for lease in self._stack.pool.leases():
            port = switch.portForIP(lease.ip.packed)
            mac = port.mac if port is not None and port.mac is not None else lease.mac
            leases[str(lease.ip)] = formatMAC(mac)
        return _json(request, leases)


class _LeaseList(_Leaf):
    def __init__(self, stack):
        super().__init__()
        self._stack = stack

    def render_GET(self, request):
        return _json(request, leaseRows(self._stack))


class _Stats(_Leaf):
    def __init__(self, stack):
        super().__init__()
        self._stack = stack

    def render_GET(self, request):
        return _json(request, self._stack.stats())


def makeAPI(stack, forwarder, reactor=None):
    """
    The API as a twisted.web L{Site}, its timeouts on C{reactor} (the
    stack's by default).
    """
    root = Resource()
    services = Resource()
    root.putChild(b"services", services)
    forwarderResource = Resource()
    services.putChild(b"forwarder", forwarderResource)
    forwarderResource.putChild(b"expose", _Expose(forwarder))
    forwarderResource.putChild(b"unexpose", _Unexpose(forwarder))
    forwarderResource.putChild(b"all", _All(forwarder))
    dhcp = Resource()
    services.putChild(b"dhcp", dhcp)
    leases = _Leases(stack)
    dhcp.putChild(b"leases", leases)
    root.putChild(b"leases", leases)
    services.putChild(b"leases", _LeaseList(stack))
    root.putChild(b"stats", _Stats(stack))
    site = _APISite(root, timeout=IDLE_TIMEOUT, reactor=reactor or stack.reactor)
    site.noisy = False
    site.displayTracebacks = False
    return site


_STATUS = {408: b"Request Timeout", 413: b"Request Entity Too Large"}


class _APIRequest(Request):
    """
    A request whose body may not grow past L{MAX_BODY} (a chunked one,
    whose length is not known in advance).
    """

    _received = 0

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > MAX_BODY:
            self.channel.refuse(413, f"the body is larger than {MAX_BODY} bytes")
            return
        super().handleContentChunk(data)


class _APIChannel(HTTPChannel):
    """
    One API connection: the request deadline, the body limit announced by
    C{Content-Length}, a quiet idle timeout, and the connection count.
    """

    _refused = False
    _deadline = None

    def connectionMade(self):
        super().connectionMade()
        self.site.channelOpened(self)
        self._armDeadline()

    def connectionLost(self, reason):
        self._cancelDeadline()
        self.site.channelClosed(self)
        super().connectionLost(reason)

    def _armDeadline(self):
        self._cancelDeadline()
        self._deadline = self.site.reactor.callLater(REQUEST_TIMEOUT, self._tooSlow)

    def _cancelDeadline(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _tooSlow(self):
        self._deadline = None
        self.refuse(408, f"the request did not arrive within {REQUEST_TIMEOUT:g} seconds")

    def refuse(self, code, message):
        """
        Answer C{code} with C{message}, read nothing more and close.
        """
        if self._refused:
            return
        self._refused = True
        self._cancelDeadline()
        self.site.apiLog.info("API request refused ({code}): {message}", code=code, message=message)
        body = message.encode() + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (code, _STATUS[code], len(body), body)
        )
        self.transport.loseConnection()

    def allHeadersReceived(self):
        super().allHeadersReceived()
        if self.length is not None and self.length > MAX_BODY:
            self.refuse(413, f"the body is larger than {MAX_BODY} bytes")

    def allContentReceived(self):
        if self._refused:
            return
        self._cancelDeadline()
        super().allContentReceived()

    def requestDone(self, request):
        super().requestDone(request)
        if self.persistent and not self._refused:
            self._armDeadline()

    def lineReceived(self, line):
        if not self._refused:
            super().lineReceived(line)

    def rawDataReceived(self, data):
        if not self._refused:
            super().rawDataReceived(data)

    def timeoutConnection(self):
        # Twisted's logs a line per connection: a client holding many
        # would flood the log.
        self.site.apiLog.info("closing idle API connections")
        self.transport.abortConnection()


class _APISite(Site):
    """
    The API's L{Site}: its channels, at most L{MAX_CONNECTIONS} at once;
    requests are logged at debug level, not as access-log lines at info.
    """

    protocol = _APIChannel
    requestFactory = _APIRequest

    def __init__(self, resource, **kwargs):
        super().__init__(resource, **kwargs)
        self.channels = set()
        self.apiLog = GuestLog(log, self.reactor)

    def buildProtocol(self, addr):
        if len(self.channels) >= MAX_CONNECTIONS:
            self.apiLog.warn(
                "refusing an API connection: {n} are open already", n=len(self.channels)
            )
            return None
        return super().buildProtocol(addr)

    def channelOpened(self, channel):
        self.channels.add(channel)

    def channelClosed(self, channel):
        self.channels.discard(channel)

    def log(self, request):
        log.debug(
            "API {method} {uri} -> {code}",
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace"),
            code=request.code,
        )
