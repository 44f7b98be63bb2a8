"""
HTTP and HTTPS proxying for guests behind a proxy (C{--http}): the
configuration and host matching (L{vpnkit.httpproxy.config}), request
rewriting (L{vpnkit.httpproxy.rewrite}), TLS server-name sniffing
(L{vpnkit.httpproxy.sni}), the Twisted glue (L{vpnkit.httpproxy.proxy}) and
the configuration API (L{vpnkit.httpproxy.api}).
"""

__all__ = []
