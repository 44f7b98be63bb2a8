# -*- test-case-name: tests.test_httpproxy -*-
"""
The HTTP proxy's policy: L{HTTPProxy}, the route
(L{vpnkit.interfaces.ITCPRoute}) that takes guests' connections to
transparent HTTP/HTTPS ports and to the gateway's explicit proxy ports,
holds the configuration in force, and makes the upstream connections
(to the upstream proxy, over TLS when it is C{https://}, or to origins).

What happens on a connection it takes is elsewhere:
L{vpnkit.httpproxy.guest} (HTTP from the guest),
L{vpnkit.httpproxy.exchange} (each request and its upstream side) and
L{vpnkit.httpproxy.tunnel} (raw tunnels, transparent HTTPS).
"""

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from vpnkit.counters import HTTPProxyCounters
from vpnkit.httpproxy.guest import EXPLICIT_HTTP_PORT, EXPLICIT_HTTPS_PORT, GuestHTTP
from vpnkit.httpproxy.tunnel import TransparentTLS
from vpnkit.interfaces import ITCPRoute
from vpnkit.log import RateLimitedLog, logger
from vpnkit.protocols.ip import formatAddress

__all__ = ["HTTPProxy", "EXPLICIT_HTTP_PORT", "EXPLICIT_HTTPS_PORT"]

log = logger("vpnkit.httpproxy")


class _OneProtocol(Factory):
    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol


@implementer(ITCPRoute)
class HTTPProxy:
    """
    The proxy's policy: which guest connections it takes, where their
    requests go, and the connections it opens for them.

    @ivar config: the L{HTTPProxyConfig} in force, or C{None} (no C{--http}
        file, or it was removed): the proxy takes nothing.
    @ivar counters: its L{HTTPProxyCounters}.

    @param stackConfig: the L{vpnkit.config.StackConfig} (the gateway, the
        host alias and its names).
    @param network: the L{vpnkit.interfaces.IHostNetwork} upstream
        connections are made through.
    @param trustRoot: what certificates of C{https://} upstreams are checked
        against (an C{IOpenSSLTrustRoot}); the platform's by default.
    @param helloTimeout: seconds a transparent HTTPS connection waits for
        the guest's ClientHello before tunnelling to the bare address.
    @param idleTimeout: seconds a guest's idle keep-alive connection is kept.
    """

    def __init__(
        self,
        stackConfig,
        network,
        clock,
        trustRoot=None,
        counters=None,
        connectTimeout=30.0,
        helloTimeout=5.0,
        idleTimeout=300.0,
    ):
        self._stackConfig = stackConfig
        # The gateway's and the host alias's addresses, in both families.
        self._gateways = {stackConfig.gatewayPacked}
        self._hostAliases = {stackConfig.hostPacked}
        if stackConfig.ipv6 is not None:
            self._gateways.add(stackConfig.ipv6.gatewayPacked)
            self._hostAliases.add(stackConfig.ipv6.hostAliasPacked)
        self._localNames = {name.lower() for name in stackConfig.hostNames}
        if stackConfig.hostIP is not None:
            self._localNames.add(str(stackConfig.hostIP))
        self._network = network
        self.clock = clock
        self._trustRoot = trustRoot
        self.counters = counters if counters is not None else HTTPProxyCounters()
        self.connectTimeout = connectTimeout
        self.helloTimeout = helloTimeout
        self.idleTimeout = idleTimeout
        self.config = None
        self.failureLog = RateLimitedLog(log, clock)

    def setConfig(self, config):
        """
        Use C{config} (an L{HTTPProxyConfig}, or C{None} to stop proxying)
        for every connection from now on.
        """
        self.config = config
        if config is None:
            log.info("HTTP proxy disabled")
        else:
            log.info(
                "HTTP proxy: http {http}, https {https}, transparent ports {ports}",
                http=str(config.http) if config.http else "direct",
                https=str(config.https) if config.https else "direct",
                ports=sorted(config.transparentHTTPPorts | config.transparentHTTPSPorts),
            )

    # -- ITCPRoute ---------------------------------------------------------

    def route(self, flow):
        config = self.config
        if config is None:
            return None
        port = flow.localPort
        if flow.localIP in self._gateways:
            if port in (EXPLICIT_HTTP_PORT, EXPLICIT_HTTPS_PORT):
                return defer.succeed(GuestHTTP(self, flow, explicitPort=port))
            return None
        if flow.localIP in self._hostAliases:
            return None
        address = formatAddress(flow.localIP)
        if config.excluded(address, port):
            return None
        if port in config.transparentHTTPPorts and config.http is not None:
            return defer.succeed(GuestHTTP(self, flow))
        if port in config.transparentHTTPSPorts and config.https is not None:
            return defer.succeed(TransparentTLS(self, flow))
        return None

    # -- upstream connections ----------------------------------------------

    def nextHop(self, host):
        """
        The address dialled for C{host}: the host's names (C{--host-names},
        the host alias) mean its loopback, as in the reference.
        """
        if host.lower() in self._localNames:
            return "127.0.0.1"
        return host

    def connect(self, host, port, protocol, tlsName=None):
        """
        Connect C{protocol} to C{host:port} (over TLS, checking the
        certificate for C{tlsName}, when given).

        @return: a L{Deferred} firing with C{protocol} once connected.
        """
        wrapped = protocol
        if tlsName is not None:
            from twisted.internet.ssl import optionsForClientTLS

            options = optionsForClientTLS(tlsName, trustRoot=self._trustRoot)
            wrapped = TLSMemoryBIOFactory(options, True, _OneProtocol(protocol)).buildProtocol(None)
        d = self._network.connectTCP(self.nextHop(host), port, wrapped, self.connectTimeout)
        return d.addCallback(lambda _: protocol)

    def connectUpstream(self, uri, protocol):
        """
        Connect C{protocol} to the upstream proxy C{uri} (a
        L{vpnkit.httpproxy.config.ProxyURI}).
        """
        return self.connect(uri.host, uri.port, protocol, uri.host if uri.tls else None)
