# -*- test-case-name: tests.test_forwards -*-
"""
Port forwarding into the guests: vpnkit listens on a host address and, for
each client, opens a connection into the guest from its own stack (no
agent in the guest, gvproxy's model).  The guest sees the real client: its
own address, or the host alias for a client on the host's loopback.

L{ForwardSpec} is the reference's spec string
(C{tcp:HOSTIP:HOSTPORT:tcp:GUESTIP:GUESTPORT}) and gvproxy's JSON;
L{PortForwarder} owns the listeners; the guest side is reached through an
L{IGuestConnector} (vpnkit's TCP and UDP layers).
"""

import errno
from dataclasses import dataclass, replace
from ipaddress import AddressValueError, IPv4Address

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.protocol import DatagramProtocol, Factory
from zope.interface import implementer

from vpnkit.host.proxy import HostSide
from vpnkit.protocols.tcp.splice import GuestSide
from vpnkit.interfaces import IGuestConnector
from vpnkit.log import GuestLog, logger
from vpnkit.protocols.flowtable import FlowExpiry, FlowTable
from vpnkit.wire.ipv4 import packIP

__all__ = [
    "ForwardError",
    "ForwardSpec",
    "parseSpec",
    "specFromJSON",
    "PortForwarder",
    "bindErrorMessage",
    "StackConnector",
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


@dataclass(frozen=True)
class ForwardSpec:
    protocol: str
    hostIP: str
    hostPort: int
    guestIP: str
    guestPort: int

    @property
    def local(self):
        return f"{self.hostIP}:{self.hostPort}"

    @property
    def remote(self):
        return f"{self.guestIP}:{self.guestPort}"

    def asJSON(self):
        """
        gvproxy's shape: C{{"local": ..., "remote": ..., "protocol": ...}}.
        """
        return {"local": self.local, "remote": self.remote, "protocol": self.protocol}

    def __str__(self):
        p = self.protocol
        return f"{p}:{self.hostIP}:{self.hostPort}:{p}:{self.guestIP}:{self.guestPort}"


def _address(text, what):
    try:
        return str(IPv4Address(text))
    except AddressValueError:
        raise ForwardError(f"{what} {text!r} is not an IPv4 address", 400) from None


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
    Parse C{tcp:HOSTIP:HOSTPORT:tcp:GUESTIP:GUESTPORT} (or C{udp:...}).

    @raise ForwardError: (400) naming what is wrong.
    """
    parts = text.split(":")
    if len(parts) != 6 or parts[0] != parts[3] or parts[0] not in PROTOCOLS:
        raise ForwardError(
            f"bad forward {text!r}: expected tcp:HOSTIP:HOSTPORT:tcp:GUESTIP:GUESTPORT "
            "(or udp:...)",
            400,
        )
    return ForwardSpec(
        parts[0],
        _address(parts[1], "host address"),
        _port(parts[2], "host port", True),
        _address(parts[4], "guest address"),
        _port(parts[5], "guest port", False),
    )


def _hostPort(text, what, allowZero):
    if not isinstance(text, str) or ":" not in text:
        raise ForwardError(f"{what} must be \"IP:PORT\", got {text!r}", 400)
    host, _, port = text.rpartition(":")
    return host, _port(port, f"{what} port", allowZero)


def specFromJSON(body, requireRemote=True):
    """
    A spec from gvproxy's JSON: C{{"local": "127.0.0.1:8080", "remote":
    "192.168.65.3:80", "protocol": "tcp"}}; an empty local host (C{":8080"})
    means every address.

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
    where = f"{spec.hostIP}:{spec.hostPort}"
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
        srcIP = self.forwarder.sourceFor(peer.host)
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
                peer=f"{peer.host}:{peer.port}",
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
            srcIP = self.forwarder.sourceFor(addr[0])
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
    """

    def __init__(self, reactor, connector, hostAlias, gateway, allowed=None, backlog=None):
        self._reactor = reactor
        # --listen-backlog, for the TCP forwards' listeners (Twisted's 50
        # when not given).
        self._backlog = backlog if backlog is not None else 50
        self.clock = reactor
        self.connector = connector
        self._hostAlias = hostAlias or gateway
        self._allowed = None if allowed is None or "0.0.0.0" in allowed else set(allowed)
        self._forwards = {}

    def sourceFor(self, clientIP):
        """
        The address a host client appears from inside the guest.
        """
        if clientIP.startswith("127."):
            return self._hostAlias
        return clientIP

    def expose(self, spec):
        """
        Start forwarding.

        @return: the spec in force (host port 0 replaced by the one bound).
        @raise ForwardError: the reference's messages for bind failures, or
            the address or port already forwarded.
        """
        key = (spec.protocol, spec.hostIP, spec.hostPort)
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
            raise ForwardError(f"no {protocol} forward on {hostIP}:{hostPort}", 404)
        log.info("stopped forwarding {spec}", spec=str(forward.spec))
        return forward.close()

    def forwards(self):
        """
        Every forward in force, sorted by local address then protocol.
        """
        return sorted(
            (f.spec for f in self._forwards.values()),
            key=lambda s: (IPv4Address(s.hostIP), s.hostPort, s.protocol),
        )

    def stopService(self):
        super().stopService()
        for key in list(self._forwards):
            self.unexpose(*key)


@implementer(IGuestConnector)
class StackConnector:
    """
    Reach into the guests through a L{vpnkit.stack.Stack}'s own TCP and UDP
    layers.
    """

    def __init__(self, stack):
        self._stack = stack

    def connectTCP(self, guestIP, guestPort, srcIP, srcPort, protocol):
        return self._stack.tcp.connectToGuest(
            packIP(guestIP), guestPort, packIP(srcIP), srcPort, protocol
        )

    def openUDP(self, guestIP, guestPort, srcIP, srcPort, deliver):
        return self._stack.udp.openInbound(
            packIP(guestIP), guestPort, packIP(srcIP), srcPort, deliver
        )

