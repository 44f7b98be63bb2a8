# -*- test-case-name: tests.test_api -*-
"""
The HTTP control API (twisted.web), served on a Unix socket (C{--api}).

Endpoints compatible with gvproxy's:
 - C{POST /services/forwarder/expose} C{{"local": "127.0.0.1:8080",
   "remote": "192.168.65.3:80", "protocol": "tcp"}}: start forwarding;
   answers the forward in force (port 0 resolved);
 - C{POST /services/forwarder/unexpose} C{{"local": ..., "protocol": ...}};
 - C{GET /services/forwarder/all}: the forwards, as a JSON list;
 - C{GET /services/dhcp/leases} (and C{/leases}): C{{ip: mac}};
 - C{GET /stats}: every counter and the live connections.
Errors are plain text: 400 for malformed JSON or specs, 409 for a port
already allocated, 404 for an unknown forward, 405 for a wrong method, 500
with the reference's wording for other bind failures.
"""

import json

from twisted.web.resource import Resource
from twisted.web.server import Site

from vpnkit.forwards import ForwardError, specFromJSON
from vpnkit.log import logger
from vpnkit.wire.ethernet import formatMAC

__all__ = ["makeAPI"]

log = logger("vpnkit.api")


def _json(request, value, code=200):
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(value).encode() + b"\n"


def _text(request, message, code):
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return message.encode() + b"\n"


def _body(request):
    try:
        return json.loads(request.content.read() or b"null")
    except ValueError as e:
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


class _Stats(_Leaf):
    def __init__(self, stack):
        super().__init__()
        self._stack = stack

    def render_GET(self, request):
        return _json(request, self._stack.stats())


def makeAPI(stack, forwarder):
    """
    The API as a twisted.web L{Site}.
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
    root.putChild(b"stats", _Stats(stack))
    site = _QuietSite(root)
    site.noisy = False
    site.displayTracebacks = False
    return site


class _QuietSite(Site):
    """
    Requests are logged at debug level, not as access-log lines at info.
    """

    def log(self, request):
        log.debug(
            "API {method} {uri} -> {code}",
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace"),
            code=request.code,
        )
