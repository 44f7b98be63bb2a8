"""
Tests for L{vpnkit.protocols.tcp.routing}: the chain of routes a guest's
new TCP connection is decided by, and the chain the stack builds.
"""

import ast
from pathlib import Path

from twisted.internet import defer, error
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers import GATEWAY_IP, REMOTE_IP, makeStack
from vpnkit.gatewayforwards import GatewayForward, GatewayForwardRoute
from vpnkit.host.proxy import HostRoute
from vpnkit.interfaces import ITCPRoute, ITCPRouter
from vpnkit.protocols.localtcp import LocalServiceRoute
from vpnkit.protocols.tcp.layer import Flow
from vpnkit.protocols.tcp.routing import TCPRouter
from vpnkit.protocols.tcp.splice import GuestSide

GUEST_IP = bytes([192, 168, 65, 3])


@implementer(ITCPRoute)
class RecordingRoute:
    """
    A route that takes the flows whose port is in C{ports}, and records
    every flow it is asked about.
    """

    def __init__(self, ports):
        self.ports = ports
        self.asked = []

    def route(self, flow):
        self.asked.append(flow)
        if flow.localPort in self.ports:
            return defer.succeed(self)
        return None


class RouterTests(SynchronousTestCase):
    def test_interface(self):
        """
        L{TCPRouter} provides L{ITCPRouter}.
        """
        self.assertTrue(verifyObject(ITCPRouter, TCPRouter([])))

    def test_firstTakerWins(self):
        """
        Routes are asked in order; the first that takes the flow decides
        it, and later ones are not asked.
        """
        first, second, third = RecordingRoute({1}), RecordingRoute({2}), RecordingRoute({2})
        router = TCPRouter([first, second, third])
        flow = Flow(GUEST_IP, 40000, REMOTE_IP, 2)
        self.assertIs(self.successResultOf(router.connectionRequested(flow)), second)
        self.assertEqual((first.asked, second.asked, third.asked), ([flow], [flow], []))

    def test_noTaker(self):
        """
        A flow no route takes is refused (the guest gets RST).
        """
        route = RecordingRoute(set())
        d = TCPRouter([route]).connectionRequested(Flow(GUEST_IP, 1, REMOTE_IP, 9))
        self.failureResultOf(d, error.ConnectionRefusedError)
        self.assertEqual(len(route.asked), 1)


class StackChainTests(SynchronousTestCase):
    """
    The one chain the stack builds: gateway forwards, then vpnkit's own
    services on the gateway, then the host.
    """

    def test_order(self):
        """
        The routes are the gateway forwards, the local services and the
        host, in that order, each an L{ITCPRoute}.
        """
        stack, _ = makeStack(0)
        kinds = [type(route) for route in stack.tcpRouter.routes]
        self.assertEqual(kinds, [GatewayForwardRoute, LocalServiceRoute, HostRoute])
        for route in stack.tcpRouter.routes:
            self.assertTrue(verifyObject(ITCPRoute, route))

    def test_forwardBeforeLocalService(self):
        """
        A gateway forward of TCP port 53 takes the connection before the
        DNS server vpnkit runs there: the host address is dialled.
        """
        stack, _ = makeStack(0)
        stack.gatewayForwards.setFile([GatewayForward("tcp", 53, "127.0.0.1", 5353)])
        stack.tcpRouter.connectionRequested(Flow(GUEST_IP, 40000, GATEWAY_IP, 53))
        [connect] = stack.hostNetwork.connects
        self.assertEqual((connect.host, connect.port), ("127.0.0.1", 5353))

    def test_hostRouteLast(self):
        """
        Without a forward or a local service, a remote address is dialled
        by the host route, and its protocol is a L{GuestSide} once the
        host connection exists.
        """
        stack, _ = makeStack(0)
        d = stack.tcpRouter.connectionRequested(Flow(GUEST_IP, 40000, REMOTE_IP, 80))
        stack.hostNetwork.succeed()
        self.assertIsInstance(self.successResultOf(d), GuestSide)


class LayeringTests(SynchronousTestCase):
    """
    Imports run one way: C{wire} <- C{protocols} <- C{host} <- the service
    modules.
    """

    def test_oneWay(self):
        """
        Nothing under C{vpnkit/wire} imports C{vpnkit.protocols} or
        C{vpnkit.host}; nothing under C{vpnkit/protocols} imports
        C{vpnkit.host}; and no module imports a private (C{_}-prefixed)
        name of another vpnkit module.
        """
        root = Path(__file__).resolve().parent.parent / "vpnkit"
        forbidden = {"wire": ("vpnkit.protocols", "vpnkit.host"), "protocols": ("vpnkit.host",)}
        problems = []
        for path in sorted(root.rglob("*.py")):
            folder = path.relative_to(root).parts[0]
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    module = node.module
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.Import):
                    module, names = None, [alias.name for alias in node.names]
                else:
                    continue
                targets = [module] if module else names
                for target in targets:
                    if target.startswith(forbidden.get(folder, ("\0",))):
                        problems.append(f"{path.relative_to(root)} imports {target}")
                if module and module.startswith("vpnkit"):
                    private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                    if private:
                        problems.append(f"{path.relative_to(root)} imports {module}.{private}")
        self.assertEqual(problems, [])
