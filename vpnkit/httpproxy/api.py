# -*- test-case-name: tests.test_httpproxy_api -*-
"""
The HTTP proxy's configuration API (C{--http-api-path}, a Unix socket),
as twisted.web resources, with the reference's answers:

 - C{GET /http_proxy.json}: C{200 OK} and the configuration in force as
   minified JSON, or C{404 None set};
 - C{POST /http_proxy.json} (a JSON body, sized or chunked): C{200 OK}
   once it is in force, or C{400} and C{Failed to parse .json: ...};
 - anything else: C{404 Unknown} and C{Try {GET,POST} /http_proxy.json}.

A configuration posted here is in force until the next one is posted or
the C{--http} file changes.
"""

from twisted.web.resource import Resource
from twisted.web.server import Site

from vpnkit.config import ConfigError
from vpnkit.httpproxy.config import parseHTTPConfig
from vpnkit.log import logger

__all__ = ["makeHTTPConfigAPI"]

log = logger("vpnkit.httpproxy")

_TRY = b"Try {GET,POST} /http_proxy.json"


def _answer(request, code, reason, body, contentType=b"text/plain; charset=utf-8"):
    request.setResponseCode(code, reason)
    request.setHeader(b"content-type", contentType)
    return body


class _Unknown(Resource):
    isLeaf = True

    def render(self, request):
        return _answer(request, 404, b"Unknown", _TRY)


class _HTTPProxyJSON(Resource):
    isLeaf = True

    def __init__(self, proxy):
        super().__init__()
        self._proxy = proxy

    def render_GET(self, request):
        config = self._proxy.config
        if config is None:
            return _answer(request, 404, b"None set", b"None set")
        return _answer(request, 200, b"OK", config.asJSON().encode(), b"application/json")

    def render_POST(self, request):
        text = request.content.read()
        try:
            config = parseHTTPConfig(text.decode("utf-8", "replace"), "http_proxy.json")
        except ConfigError as e:
            return _answer(request, 400, b"Bad_request", f"Failed to parse .json: {e}".encode())
        log.info("HTTP proxy configuration posted to the API")
        self._proxy.setConfig(config)
        return _answer(request, 200, b"OK", b"")

    def render(self, request):
        if request.method in (b"GET", b"POST"):
            return super().render(request)
        return _answer(request, 404, b"Unknown", _TRY)


class _Root(Resource):
    def __init__(self, proxy):
        super().__init__()
        self._config = _HTTPProxyJSON(proxy)

    def getChild(self, path, request):
        if path == b"http_proxy.json" and len(request.postpath) == 0:
            return self._config
        return _Unknown()

    def render(self, request):
        return _Unknown().render(request)


class _QuietSite(Site):
    def log(self, request):
        log.debug(
            "HTTP proxy API {method} {uri} -> {code}",
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace"),
            code=request.code,
        )


def makeHTTPConfigAPI(proxy):
    """
    The API for C{proxy} (an L{vpnkit.httpproxy.proxy.HTTPProxy}) as a
    twisted.web L{Site}.
    """
    site = _QuietSite(_Root(proxy))
    site.noisy = False
    site.displayTracebacks = False
    return site
