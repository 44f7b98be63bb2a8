# -*- test-case-name: tests.test_tcp_routing -*-
"""
Where a guest's new TCP connection goes: L{TCPRouter} asks a chain of
L{vpnkit.interfaces.ITCPRoute}s in order, and the first that takes the
connection decides it.

The chain is built in one place (L{vpnkit.stack.Stack}): gateway forwards,
then vpnkit's own services on the gateway, then the host's sockets.  A new
kind of destination (the HTTP proxy, a Unix-socket forward) is a new route
inserted there.
"""

from twisted.internet import error
from twisted.internet.defer import fail
from zope.interface import implementer

from vpnkit.interfaces import ITCPRouter

__all__ = ["TCPRouter"]


@implementer(ITCPRouter)
class TCPRouter:
    """
    @param routes: the L{vpnkit.interfaces.ITCPRoute}s, in order.
    """

    def __init__(self, routes):
        self.routes = tuple(routes)

    def connectionRequested(self, flow):
        for route in self.routes:
            d = route.route(flow)
            if d is not None:
                return d
        return fail(error.ConnectionRefusedError(f"no route for {flow}"))
