# -*- test-case-name: tests.test_host_network_real -*-
"""
L{HostNetwork}: the real L{IHostNetwork}, over Twisted's endpoints.
"""

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

from vpnkit.interfaces import IHostNetwork

__all__ = ["HostNetwork"]


class _OneProtocol(Factory):
    """
    Hands out one given protocol; quiet, since vpnkit makes one per guest
    connection and the default factory logs every start and stop.
    """

    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol


@implementer(IHostNetwork)
class HostNetwork:
    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor

    def connectTCP(self, host, port, protocol, timeout):
        endpoint = TCP4ClientEndpoint(self._reactor, host, port, timeout=timeout)
        return endpoint.connect(_OneProtocol(protocol))
