# -*- test-case-name: tests.test_forwards -*-
"""
Port forwarding into the guests: vpnkit listens on a host address and, for
each client, opens a connection into the guest from its own stack (no
agent in the guest, gvproxy's model).  The guest sees the real client: its
own address, or the host alias for a client on the host's loopback.

Either side may be IPv4 or IPv6, and the two need not match (a host IPv4
listener into a guest's IPv6 address and the reverse): IPv6 addresses are
bracketed wherever a port follows them (C{tcp:[::1]:8080:tcp:[fd00:65::3]:80},
C{"local": "[::1]:8080"}).  A client the guest could not see as itself
(the host's loopback, a client of the other family, an IPv6 link-local
one) appears from the host alias of the guest side's family (the gateway
of that family when the alias is off); see L{PortForwarder.sourceFor}.

L{ForwardSpec} is the reference's spec string
(C{tcp:HOSTIP:HOSTPORT:tcp:GUESTIP:GUESTPORT}) and gvproxy's JSON;
L{PortForwarder} owns the listeners; the guest side is reached through an
L{IGuestConnector} (vpnkit's TCP and UDP layers).
"""

import errno
import re
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, ip_address

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.protocol import DatagramProtocol, Factory
from zope.interface import implementer

from vpnkit.host.proxy import HostSide
from vpnkit.protocols.tcp.splice import GuestSide
from vpnkit.interfaces import IGuestConnector
from vpnkit.log import GuestLog, logger
from vpnkit.protocols.flowtable import FlowExpiry, FlowTable

__all__ = [
    "ForwardError",
    "ForwardSpec",
    "parseSpec",
    "specFromJSON",
    "PortForwarder",
    "bindErrorMessage",
    "StackConnector",
    "joinHostPort",
]

log = logger("vpnkit.forwards")
# Host clients of a forward decide how often these happen.
guestLog = GuestLog(log)

PROTOCOLS = ("tcp", "udp")


class ForwardError(Exception):
    """
    A forward that cannot be made or removed.  C{str()} is the message for
    the user (the reference's wording where it has one).

    @ivar code: the HTTP status the API answers with.
    """

    def __init__(self, message, code=500):
        super().__init__(message)
        self.code = code


def joinHostPort(host, port):
    """
    C{HOST:PORT}, an IPv6 address bracketed (C{[::1]:8080}).
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ForwardSpec:
    protocol: str
    hostIP: str
    hostPort: int
    guestIP: str
    guestPort: int

    @property
    def local(self):
        return joinHostPort(self.hostIP, self.hostPort)

    @property
    def remote(self):
        return joinHostPort(self.guestIP, self.guestPort)

    def asJSON(self):
        """
        gvproxy's shape: C{{"local": ..., "remote": ..., "protocol": ...}}.
        """
        return {"local": self.local, "remote": self.remote, "protocol": self.protocol}

    def __str__(self):
        p = self.protocol
        return f"{p}:{self.local}:{p}:{self.remote}"


def _address(text, what):
    """
    C{text} as the canonical text of an IPv4 or IPv6 address.
    """
    try:
        address = ip_address(text)
    except ValueError:
        raise ForwardError(f"{what} {text!r} is not an IPv4 or IPv6 address", 400) from None
    if getattr(address, "scope_id", None):
        raise ForwardError(f"{what} {text!r}: addresses with a zone index are not supported", 400)
    return str(address)


# proto:HOST:PORT:proto:HOST:PORT, an IPv6 HOST in brackets.
_SPEC = re.compile(
    r"(?P<p1>[^:]*):(?P<h1>\[[^\]]*\]|[^:\[\]]*):(?P<port1>[^:]*)"
    r":(?P<p2>[^:]*):(?P<h2>\[[^\]]*\]|[^:\[\]]*):(?P<port2>[^:]*)"
)


def _specHost(text, what):
    """
    A spec string's address: IPv4, or IPv6 in brackets.
    """
    if text.startswith("["):
        address = _address(text[1:-1], what)
        if ":" not in address:
            raise ForwardError(f"{what} {text!r}: only IPv6 addresses go in brackets", 400)
        return address
    return _address(text, what)


def _port(text, what, allowZero):
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ForwardError(f"{what} {text!r} is not a port number", 400) from None
    if not (0 if allowZero else 1) <= value <= 65535:
        raise ForwardError(f"{what} {value} is out of range", 400)
    return value


def parseSpec(text):
    """
    Parse C{tcp:HOSTIP:HOSTPORT:tcp:GUESTIP:GUESTPORT} (or C{udp:...});
    either address may be IPv6, in brackets
    (C{tcp:[::1]:8080:tcp:[fd00:65::3]:80}).

    @raise ForwardError: (400) naming what is wrong.
    """
    match = _SPEC.fullmatch(text)
    if match is None or match["p1"] != match["p2"] or match["p1"] not in PROTOCOLS:
        raise ForwardError(
            f"bad forward {text!r}: expected tcp:HOSTIP:HOSTPORT:tcp:GUESTIP:GUESTPORT "
            "(or udp:...; IPv6 addresses in brackets, [::1])",
            400,
        )
    return ForwardSpec(
        match["p1"],
        _specHost(match["h1"], "host address"),
        _port(match["port1"], "host port", True),
        _specHost(match["h2"], "guest address"),
        _port(match["port2"], "guest port", False),
    )


def _hostPort(text, what, allowZero):
    if not isinstance(text, str) or ":" not in text:
        raise ForwardError(f"{what} must be \"IP:PORT\", got {text!r}", 400)
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ForwardError(f"{what} {text!r}: empty brackets", 400)
    elif ":" in host:
        raise ForwardError(f"{what} {text!r}: an IPv6 address goes in brackets, \"[IP]:PORT\"", 400)
    return host, _port(port, f"{what} port", allowZero)


def specFromJSON(body, requireRemote=True):
    """
    A spec from gvproxy's JSON: C{{"local": "127.0.0.1:8080", "remote":
    "192.168.65.3:80", "protocol": "tcp"}}; an empty local host (C{":8080"})
    means every IPv4 address; IPv6 addresses are bracketed
    (C{"[::1]:8080"}, C{"[fd00:65::3]:80"}).

    @raise ForwardError: (400) malformed.
    """
    if not isinstance(body, dict):
        raise ForwardError("expected a JSON object", 400)
    protocol = body.get("protocol", "tcp") or "tcp"
    if protocol not in PROTOCOLS:
        raise ForwardError(f"unsupported protocol {protocol!r} (tcp or udp)", 400)
    host, port = _hostPort(body.get("local"), "local", True)
    hostIP = _address(host or "0.0.0.0", "local address")
    if not requireRemote:
        return ForwardSpec(protocol, hostIP, port, "0.0.0.0", 1)
    guest, guestPort = _hostPort(body.get("remote"), "remote", False)
    return ForwardSpec(protocol, hostIP, port, _address(guest, "remote address"), guestPort)


def bindErrorMessage(spec, failure):
    """
    The reference's (Docker's userland proxy's) message for a bind error.
    """
    where = spec.local
    code = getattr(failure, "errno", None)
    socketError = getattr(failure, "socketError", None)
    if code is None and socketError is not None:
        code = getattr(socketError, "errno", None)
    if code == errno.EADDRINUSE:
        return f"Bind for {where} failed: port is already allocated"
    if code == errno.EADDRNOTAVAIL:
        return f"listen {spec.protocol} {where}: bind: cannot assign requested address"
    if code in (errno.EACCES, errno.EPERM):
        return f"Bind for {where} failed: permission denied"
    return f"Bind for {where}: unexpected error {failure}"


# -- TCP ---------------------------------------------------------------------


class _TCPClient(HostSide):
    """
    A host client of a TCP forward: reading is held until the connection
    into the guest exists, then bytes flow both ways (L{HostSide} and
    L{GuestSide}: flow control and half-close).
    """

    def __init__(self, forward):
        self._forward = forward

    def connectionMade(self):
        self.transport.pauseProducing()
        self._forward.clientConnected(self)

    def guestConnected(self, guest):
        self.guest = guest
        self.transport.resumeProducing()

    def connectionLost(self, reason):
        self._forward.clientGone(self)
        super().connectionLost(reason)


class _TCPForward(Factory):
    noisy = False

    def __init__(self, forwarder, spec):
        self.forwarder = forwarder
        self.spec = spec
        self.clients = set()
        self.port = None

    def buildProtocol(self, addr):
        return _TCPClient(self)

    def clientConnected(self, client):
        self.clients.add(client)
        peer = client.transport.getPeer()
        srcIP = self.forwarder.sourceFor(peer.host, self.spec.guestIP)
        d = self.forwarder.connector.connectTCP(
            self.spec.guestIP, self.spec.guestPort, srcIP, peer.port, GuestSide(client)
        )

        def connected(guest):
            if client.transport.disconnected:
                guest.abortConnection()
                return
            client.guestConnected(guest)

        def failed(failure):
            guestLog.info(
                "forward {spec}: the guest did not accept {peer}: {why}",
                spec=str(self.spec),
                peer=joinHostPort(peer.host, peer.port),
                why=failure.getErrorMessage(),
            )
            client.transport.abortConnection()

        d.addCallbacks(connected, failed)

    def clientGone(self, client):
        self.clients.discard(client)

    def close(self):
        for client in list(self.clients):
            client.transport.abortConnection()
        return self.port.stopListening()


# -- UDP ---------------------------------------------------------------------


class _UDPForward(DatagramProtocol):
    """
    A UDP forward: one flow into the guest per host client address;
    replies go back to that client.
    """

    noisy = False

    def __init__(self, forwarder, spec, maxFlows=1024, idle=60.0):
        self.forwarder = forwarder
        self.spec = spec
        self.flows = FlowTable(maxFlows, idle)
        self._expiry = FlowExpiry(self.flows, forwarder.clock, self._expired)
        self.port = None

    def datagramReceived(self, data, addr):
        now = self.forwarder.clock.seconds()
        flow = self.flows.get(addr)
        if flow is None:
            for old in self.flows.makeRoom():
                old.close()
            srcIP = self.forwarder.sourceFor(addr[0], self.spec.guestIP)
            flow = self.forwarder.connector.openUDP(
                self.spec.guestIP,
                self.spec.guestPort,
                srcIP,
                addr[1],
                lambda reply, addr=addr: self._reply(reply, addr),
            )
            if flow is None:
                return
            self.flows.add(addr, flow, now)
            self._expiry.arm()
        else:
            self.flows.touch(addr, now)
        flow.send(data)

    def _reply(self, data, addr):
        self.flows.touch(addr, self.forwarder.clock.seconds())
        self.transport.write(data, addr)

    def _expired(self, flows):
        for flow in flows:
            flow.close()

    def close(self):
        for flow in self.flows.values():
            flow.close()
        self._expiry.stop()
        return self.port.stopListening()


class PortForwarder(Service):
    """
    The forwards in force.

    @param connector: the L{vpnkit.interfaces.IGuestConnector} that reaches
        into the guests.
    @param hostAlias: the dotted address host-loopback clients appear
        from (or C{None}: then they appear from C{gateway}).
    @param allowed: addresses forwards may bind (C{--allowed-bind-addresses});
        C{None} or a list holding C{0.0.0.0} allows every address.
    @param backlog: the TCP listeners' backlog (C{--listen-backlog}).
    @param ipv6: the L{vpnkit.ipv6config.IPv6Config} (its host alias, or
        gateway, stands in for clients of guest-side IPv6 forwards), or
        C{None}: IPv6 is off and forwards into guests' IPv6 addresses are
        refused.
    """

    def __init__(
        self, reactor, connector, hostAlias, gateway, allowed=None, backlog=None, ipv6=None
    ):
        self._reactor = reactor
        # --listen-backlog, for the TCP forwards' listeners (Twisted's 50
        # when not given).
        self._backlog = backlog if backlog is not None else 50
        self.clock = reactor
        self.connector = connector
        self._hostAlias = hostAlias or gateway
        self._ipv6 = ipv6
        self._hostAlias6 = None
        if ipv6 is not None:
            self._hostAlias6 = str(ipv6.hostAlias or ipv6.gateway)
        self._allowed = None
        if allowed is not None and "0.0.0.0" not in allowed:
            self._allowed = {_canonical(a) for a in allowed}
        self._forwards = {}

    def sourceFor(self, clientIP, guestIP="0.0.0.0"):
        """
        The address a host client at C{clientIP} appears from inside the
        guest at C{guestIP}: the host alias of the guest's family (or its
        gateway, with the alias off) for a client on the host's loopback
        (127.0.0.0/8, C{::1}, also as an IPv4-mapped address), a client
        of the other family and an IPv6 link-local client; any other
        client as itself (an IPv4-mapped client as its IPv4 address).
        """
        guestIPv6 = ":" in guestIP
        alias = self._hostAlias6 if guestIPv6 else self._hostAlias
        try:
            client = ip_address(clientIP.partition("%")[0])
        except ValueError:
            return alias
        if isinstance(client, IPv6Address) and client.ipv4_mapped is not None:
            client = client.ipv4_mapped
        if client.is_loopback or (client.version == 6) != guestIPv6:
            return alias
        if client.version == 6 and client.is_link_local:
            return alias
        return str(client)

    def expose(self, spec):
        """
        Start forwarding.

        @return: the spec in force (host port 0 replaced by the one bound).
        @raise ForwardError: the reference's messages for bind failures, or
            the address or port already forwarded.
        """
        key = (spec.protocol, spec.hostIP, spec.hostPort)
        if ":" in spec.guestIP and self._ipv6 is None:
            raise ForwardError(
                f"cannot forward to {spec.remote}: IPv6 is off (--no-ipv6, or an MTU under 1280)",
                400,
            )
        if spec.hostPort and key in self._forwards:
            raise ForwardError(f"Bind for {spec.local} failed: port is already allocated", 409)
        if self._allowed is not None and spec.hostIP not in self._allowed:
            raise ForwardError(
                f"Bind for {spec.local} failed: {spec.hostIP} is not in --allowed-bind-addresses",
                403,
            )
        try:
            if spec.protocol == "tcp":
                forward = _TCPForward(self, spec)
                forward.port = self._reactor.listenTCP(
                    spec.hostPort, forward, backlog=self._backlog, interface=spec.hostIP
                )
            else:
                forward = _UDPForward(self, spec)
                # Twisted reads 8192 bytes per datagram unless told more.
                forward.port = self._reactor.listenUDP(
                    spec.hostPort, forward, interface=spec.hostIP, maxPacketSize=65535
                )
        except error.CannotListenError as e:
            code = 409 if getattr(e.socketError, "errno", None) == errno.EADDRINUSE else 500
            raise ForwardError(bindErrorMessage(spec, e), code) from None
        bound = forward.port.getHost().port
        spec = replace(spec, hostPort=bound)
        forward.spec = spec
        self._forwards[(spec.protocol, spec.hostIP, bound)] = forward
        log.info("forwarding {spec}", spec=str(spec))
        return spec

    def unexpose(self, protocol, hostIP, hostPort):
        """
        Stop a forward and close its connections.

        @raise ForwardError: no such forward.
        """
        forward = self._forwards.pop((protocol, hostIP, hostPort), None)
        if forward is None:
            raise ForwardError(f"no {protocol} forward on {joinHostPort(hostIP, hostPort)}", 404)
        log.info("stopped forwarding {spec}", spec=str(forward.spec))
        return forward.close()

    def forwards(self):
        """
        Every forward in force, sorted by local address (IPv4 first)
        then protocol.
        """
        return sorted(
            (f.spec for f in self._forwards.values()),
            key=lambda s: (ip_address(s.hostIP).version, ip_address(s.hostIP), s.hostPort, s.protocol),
        )

    def stopService(self):
        super().stopService()
        for key in list(self._forwards):
            self.unexpose(*key)


@implementer(IGuestConnector)
class StackConnector:
    """
    Reach into the guests through a L{vpnkit.stack.Stack}'s own TCP and UDP
    layers, with packed addresses: 4 bytes for IPv4, 16 for IPv6.
    """

    def __init__(self, stack):
        self._stack = stack

    def connectTCP(self, guestIP, guestPort, srcIP, srcPort, protocol):
        return self._stack.tcp.connectToGuest(
            _packed(guestIP), guestPort, _packed(srcIP), srcPort, protocol
        )

    def openUDP(self, guestIP, guestPort, srcIP, srcPort, deliver):
        return self._stack.udp.openInbound(
            _packed(guestIP), guestPort, _packed(srcIP), srcPort, deliver
        )


def _packed(text):
    return ip_address(text).packed


def _canonical(text):
    """
    An address's canonical text (C{0:0::1} is C{::1}); other text as it is.
    """
    try:
        return str(ip_address(text))
    except ValueError:
        return text

