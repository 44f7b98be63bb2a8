# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd vpnkit} plugin's module: L{Options} (from L{vpnkit.options})
and L{makeService}.

L{makeService} returns a L{MultiService} that an C{Application} can embed:
the stack, one service per guest link listener or tap device, the capture,
diagnostics, API and proxy listeners, and the watched configuration files.

What only a flag needs is imported when that flag is given (the API and
the HTTP proxy bring twisted.web, the proxy TLS too; the capture and the
diagnostics their own modules): one stack per container starts sooner and
holds less memory (docs/performance.md, "Start-up and footprint").
"""

import sys

from vpnkit.config import ConfigError
from vpnkit.readiness import Readiness
from vpnkit.forwards import StackConnector
from vpnkit.gatewayforwards import parseForwardsJSON
from vpnkit.host.network import HostNetwork
from vpnkit.host.resolvers import getaddrinfoLookup
from vpnkit.log import logger, setDebug
from vpnkit.protocols.dhcp import parseDHCPSettings
from vpnkit.protocols.dns import parseHosts
from vpnkit.protocols.dgramlinks import QEMUDatagramProtocol, VfkitDatagramProtocol
from vpnkit.protocols.dnsconfig import parseDNSConfig, parseResolvConf
from vpnkit.protocols.tcp.config import TCPLimits
from vpnkit.protocols.links import QEMUServerFactory, VMNetServerFactory
from vpnkit.options import (  # noqa: F401 (re-exported: the plugin names vpnkit.tap)
    LinkSpec,
    Options,
    loadTrustRoot,
    parseEthernet,
    parseNetns,
    parseQEMU,
)
from vpnkit.services import (  # noqa: F401 (re-exported for embedders and tests)
    ExposeService,
    LinkListenService,
    NetnsTapService,
    UnixDatagramLinkService,
    UnixLinkListenService,
    UnixListenService,
    VPNKitService,
    listenService,
    raiseFileLimit,
)
from vpnkit.stack import Stack
from vpnkit.watch import WatchedFile, readConfigText

__all__ = ["Options", "makeService", "VPNKitService", "defaultReactor"]

log = logger("vpnkit.tap")

RESOLV_CONF = "/etc/resolv.conf"


_LINK_FLAGS = {"vmnet": "--ethernet", "qemu": "--qemu"}
DATAGRAM_LINKS = {"qemu-dgram": QEMUDatagramProtocol, "vfkit": VfkitDatagramProtocol}


def _linkService(spec, stack, reactor, backlog=None, socketGroup=None):
    kind, address = spec.kind, spec.address
    guests = stack.guests
    if kind == "netns":
        return NetnsTapService(guests, address[1], address[2], reactor=reactor)
    mode = 0o600 if socketGroup is None else 0o660
    if kind in DATAGRAM_LINKS:
        protocol = DATAGRAM_LINKS[kind](guests, reactor)
        return UnixDatagramLinkService(
            f"--{kind}", address[1], protocol, reactor, mode=mode, group=socketGroup
        )
    factoryClass = VMNetServerFactory if kind == "vmnet" else QEMUServerFactory
    # Whoever can connect can attach guests (and take addresses): vpnkit's
    # user only, or the --socket-group.
    return listenService(
        address,
        factoryClass(guests, clock=reactor),
        reactor,
        _LINK_FLAGS[kind],
        mode=mode,
        links=True,
        backlog=backlog,
        group=socketGroup,
    )


def _wantsHTTPProxy(options):
    """
    The HTTP proxy runs (and may reach https:// upstreams over TLS).
    """
    return options["http"] is not None or options["http-api-path"] is not None


def defaultReactor(options):
    """
    Twisted's default reactor, for a process vpnkit owns (the C{vpnkit}
    command, C{twistd vpnkit}), installed if no reactor is yet.

    The reactor imports pyOpenSSL and cryptography whenever they are
    installed, only to offer C{connectSSL}, C{listenSSL} and C{startTLS},
    which vpnkit never calls: 13 MiB and a quarter of the start-up CPU
    (docs/performance.md, "Start-up and footprint").  So unless the HTTP
    proxy may need TLS (C{--http}, C{--http-api-path}: its https://
    upstreams), the reactor is installed while pyOpenSSL cannot be
    imported; it can be afterwards, as usual.  Twisted without pyOpenSSL
    is a configuration it supports (TLS is an optional extra of Twisted).
    """
    if (
        "twisted.internet.reactor" not in sys.modules
        and "OpenSSL" not in sys.modules
        and not _wantsHTTPProxy(options)
    ):
        sys.modules["OpenSSL"] = None
        try:
            from twisted.internet import reactor
        except ImportError:
            pass  # a Twisted that requires pyOpenSSL: imported whole below
        finally:
            del sys.modules["OpenSSL"]
    from twisted.internet import reactor

    return reactor


def makeService(options, reactor=None):
    """
    Build vpnkit from parsed L{Options}.

    @param reactor: by default the global reactor; under twistd the one
        L{defaultReactor} installs.
    @return: a L{VPNKitService} (a L{MultiService}).
    """
    if reactor is None:
        if options.underTwistd:
            reactor = defaultReactor(options)
        else:
            from twisted.internet import reactor
    setDebug(bool(options["debug"]))
    dnsConfig, systemLookup = options.dnsConfig, None
    if dnsConfig is None:
        # No --dns: the host's resolver for A/AAAA, resolv.conf's servers
        # for the other types.
        systemLookup = getaddrinfoLookup(reactor)
        try:
            resolvText = readConfigText(RESOLV_CONF)
        except ConfigError:
            resolvText = ""
        dnsConfig = parseResolvConf(resolvText, RESOLV_CONF)
    httpProxy = None
    if _wantsHTTPProxy(options):
        # --http only: the proxy brings twisted.web and TLS.
        from vpnkit.httpproxy.proxy import HTTPProxy

        httpProxy = HTTPProxy(
            options.config,
            HostNetwork(reactor),
            reactor,
            trustRoot=options.httpTrustRoot,
            connectTimeout=options.connectTimeout,
        )
    stack = Stack(
        options.config,
        reactor,
        connectTimeout=options.connectTimeout,
        tcpLimits=TCPLimits(
            maxConnections=options.maxConnections,
            maxHalfOpen=options.maxHalfOpen,
            maxHalfOpenPerGuest=options.maxHalfOpenPerGuest,
        ),
        dnsConfig=dnsConfig,
        systemLookup=systemLookup,
        gatewayForwards=options.gatewayForwards,
        httpProxy=httpProxy,
    )
    readiness = Readiness(options.readyFD)
    top = VPNKitService(
        stack,
        exitOnError=options.underTwistd,
        daemon=options.daemon,
        ready=readiness if readiness.wanted else None,
    )
    for note in options.startupNotes():
        log.info("{note}", note=note)
    capture = _captureService(options, stack, reactor, top)
    for spec in options.links:
        service = _linkService(spec, stack, reactor, options.listenBacklog, options.socketGroup)
        service.setName(spec.describe())
        service.setServiceParent(top)
    if options["dhcp-path"] is not None:
        stack.setDHCPFile(options.dhcpSettings)
        watcher = WatchedFile(
            options["dhcp-path"],
            parseDHCPSettings,
            stack.setDHCPFile,
            reactor,
            initialText=options.dhcpText,
        )
        watcher.setName("dhcp-path")
        watcher.setServiceParent(top)
    _watchDNSFiles(options, stack, reactor, top, systemLookup is not None)
    _forwardingServices(options, stack, reactor, top)
    _diagnosticsServices(options, stack, reactor, top, capture)
    if httpProxy is not None:
        _httpProxyServices(options, httpProxy, reactor, top)
    if options.daemon:
        # twistd forks once this returns: say now, in the foreground, if a
        # listener cannot be bound.
        try:
            top.probe()
        except ConfigError as e:
            sys.stderr.write(f"vpnkit: {e}\n")
            raise SystemExit(1)
    return top


def _diagnosticsServices(options, stack, reactor, top, capture):
    """
    C{--diagnostics}: a listener per address, each client getting one tar.
    """
    if not options.diagnosticsListen:
        return
    # --diagnostics only: the archive brings tarfile.
    from vpnkit.diagnostics import DiagnosticsFactory

    for address in options.diagnosticsListen:
        factory = DiagnosticsFactory(stack, sys.argv, capture)
        listener = listenService(
            address, factory, reactor, "--diagnostics", backlog=options.listenBacklog
        )
        listener.setName(f"diagnostics on {':'.join(str(a) for a in address)}")
        listener.setServiceParent(top)


def _httpProxyServices(options, proxy, reactor, top):
    """
    C{--http}, watched, and the C{--http-api-path} listener.
    """
    # --http and --http-api-path only (twisted.web).
    from vpnkit.httpproxy.api import makeHTTPConfigAPI
    from vpnkit.httpproxy.config import parseHTTPConfig

    if options["http"] is not None:
        if options.httpConfig is not None:
            proxy.setConfig(options.httpConfig)
        watcher = WatchedFile(
            options["http"], parseHTTPConfig, proxy.setConfig, reactor, initialText=options.httpText
        )
        watcher.setName("http")
        watcher.setServiceParent(top)
    if options["http-api-path"] is not None:
        api = listenService(
            ("unix", options["http-api-path"]),
            makeHTTPConfigAPI(proxy),
            reactor,
            "--http-api-path",
            backlog=options.listenBacklog,
        )
        api.setName("http-api")
        api.setServiceParent(top)


def _captureService(options, stack, reactor, top):
    """
    C{--pcap} and C{--pcap-file}: a L{Capture} the switch shows every frame
    to, and the service holding its listener and file.  Added before the
    links, so the file is open before the first guest frame.
    """
    if options.pcapListen is None and options["pcap-file"] is None and not options.diagnosticsListen:
        return None
    # --pcap, --pcap-file and --diagnostics only.
    from vpnkit.capture import Capture, CaptureReaderFactory, CaptureService

    capture = Capture(stack.counters.capture, options.pcapSnaplen, reactor)
    stack.switch.addObserver(capture)
    service = CaptureService(capture, options["pcap-file"])
    service.setName("pcap")
    service.setServiceParent(top)
    if options.pcapListen is not None:
        listener = listenService(
            options.pcapListen, CaptureReaderFactory(capture), reactor, "--pcap"
        )
        listener.setName(f"pcap on {':'.join(str(a) for a in options.pcapListen)}")
        listener.setServiceParent(service)
    return capture


def _forwardingServices(options, stack, reactor, top):
    """
    Port forwards into the guests, the HTTP API, and the gateway forwards
    file.
    """
    config = stack.config
    forwarder = ExposeService(
        reactor,
        StackConnector(stack),
        str(config.hostIP) if config.hostIP is not None else None,
        str(config.gatewayIP),
        options.allowedBindAddresses,
        options.exposes,
        backlog=options.listenBacklog,
        ipv6=config.ipv6,
    )
    forwarder.setName("forwards")
    forwarder.setServiceParent(top)
    if options["api"] is not None:
        # --api only: it brings twisted.web.
        from vpnkit.api import makeAPI

        api = listenService(
            ("unix", options["api"]),
            makeAPI(stack, forwarder),
            reactor,
            "--api",
            backlog=options.listenBacklog,
        )
        api.setName("api")
        api.setServiceParent(top)
    if options["gateway-forwards"] is not None:
        table = stack.gatewayForwards
        table.setFile(options.gatewayForwardsFile)
        watcher = WatchedFile(
            options["gateway-forwards"],
            parseForwardsJSON,
            table.setFile,
            reactor,
            initialText=options.gatewayForwardsText,
        )
        watcher.setName("gateway-forwards")
        watcher.setServiceParent(top)


def _watchDNSFiles(options, stack, reactor, top, system):
    """
    Watch C{--dns} (or, without it, C{/etc/resolv.conf}) and the hosts
    file, applying each change to the stack.
    """
    watchers = []
    if not system:
        stack.setDNSSearch(options.dnsConfig.search)

        def dnsChanged(config):
            stack.setDNSConfig(config)
            stack.setDNSSearch(config.search if config is not None else ())

        watchers.append(("dns", options["dns"], parseDNSConfig, dnsChanged, options.dnsText))
    else:
        watchers.append(("resolv.conf", RESOLV_CONF, parseResolvConf, stack.setDNSConfig, None))
    if options.hostsPath:
        # A missing default hosts file is no hosts file, until it appears.
        stack.setHosts(parseHosts(options.hostsText or ""))
        watchers.append(("hosts", options.hostsPath, parseHosts, stack.setHosts, options.hostsText))
    for name, path, parse, onChange, text in watchers:
        watcher = WatchedFile(path, parse, onChange, reactor, initialText=text)
        watcher.setName(name)
        watcher.setServiceParent(top)
