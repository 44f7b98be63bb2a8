"""
HTTP and HTTPS proxying for guests behind a proxy (C{--http}): the
configuration and host matching (L{vpnkit.httpproxy.config}), request
rewriting (L{vpnkit.httpproxy.rewrite}), TLS server-name sniffing
(L{vpnkit.httpproxy.sni}), the Twisted glue (the route,
L{vpnkit.httpproxy.proxy}; HTTP from the guest, L{vpnkit.httpproxy.guest};
each request's upstream side, L{vpnkit.httpproxy.exchange}; raw tunnels,
L{vpnkit.httpproxy.tunnel}) and the configuration API
(L{vpnkit.httpproxy.api}).
"""

__all__ = []
