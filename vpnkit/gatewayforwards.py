# -*- test-case-name: tests.test_gatewayforwards -*-
"""
Gateway forwards: a guest's traffic to the gateway on a given port is sent
to an address on the host (C{--tcpv4-forwards}, C{--udpv4-forwards}
C{lport:ip:rport,...}, and the reference's C{--gateway-forwards} JSON file,
re-read when it changes).  They are checked before vpnkit's own services on
the gateway, so a UDP forward of port 53 replaces the built-in DNS server,
as in the reference.

The host-side (internal) address may be IPv4 or IPv6 (C{8080:[::1]:80} in
the flags, a plain C{"::1"} in the file), and the forwards answer on the
gateway's IPv6 addresses as on its IPv4 one: a guest reaches a forward over
either family, whatever the family of the host address.

L{GatewayForwardTable} is the policy (static entries first, then the
file's); L{GatewayForwardRoute} is the first route of the TCP router;
L{GatewayUDPForwards} is a small NAT whose replies come from the gateway's
port.
"""

import re
import socket
from dataclasses import dataclass
from ipaddress import ip_address

from zope.interface import implementer

from vpnkit.config import ConfigError, parseJSON
from vpnkit.host.proxy import HostSide
from vpnkit.interfaces import ITCPRoute
from vpnkit.log import RateLimitedLog, logger
from vpnkit.protocols.flowtable import FlowExpiry, FlowTable, SocketFlow
from vpnkit.protocols.tcp.splice import GuestSide

__all__ = [
    "GatewayForward",
    "parseForwardsFlag",
    "parseForwardsJSON",
    "GatewayForwardTable",
    "GatewayForwardRoute",
    "GatewayUDPForwards",
]

log = logger("vpnkit.gatewayforwards")


@dataclass(frozen=True)
class GatewayForward:
    protocol: str
    externalPort: int
    internalIP: str
    internalPort: int


def _port(value, where):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {value!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise ConfigError(f"{where}: port {value} is out of range")
    return value


def _ip(value, where):
    try:
        address = ip_address(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not an IPv4 address or an IPv6 address") from None
    if getattr(address, "scope_id", None):
        raise ConfigError(f"{where}: {value!r}: addresses with a zone index are not supported")
    return str(address)


# lport:ip:rport, an IPv6 ip in brackets.
_FLAG_ITEM = re.compile(r"([^:\[\]]*):(?:\[([^\[\]]*)\]|([^:\[\]]*)):([^:\[\]]*)")


def parseForwardsFlag(text, protocol, flag):
    """
    Parse C{lport:ip:rport,...} (an IPv6 C{ip} in brackets:
    C{53:[::1]:5353}).

    @raise ConfigError: with the reference's wording, naming C{flag}.
    """
    forwards = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _FLAG_ITEM.fullmatch(item)
        if match is None:
            raise ConfigError(
                f"{flag}: Failed to parse forwards: expected "
                f"<local-port>:<remote IP>:<remote port>, got {item!r}"
            )
        parts = (match[1], match[2] if match[2] is not None else match[3], match[4])
        forwards.append(
            GatewayForward(
                protocol,
                _port(parts[0], flag),
                _ip(parts[1], flag),
                _port(parts[2], flag),
            )
        )
    return forwards


def parseForwardsJSON(text, path="gateway-forwards"):
    """
    Parse the reference's JSON: a list of C{{"protocol": "tcp"|"udp",
    "external_port": N, "internal_ip": "IPv4 or IPv6", "internal_port": N}}.

    @raise ConfigError: naming C{path}.
    """
    value = parseJSON(text, path, list)
    forwards = []
    for index, entry in enumerate(value):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        protocol = entry.get("protocol")
        if protocol not in ("tcp", "udp"):
            raise ConfigError(f"{where}: protocol must be \"tcp\" or \"udp\"")
        forwards.append(
            GatewayForward(
                protocol,
                _port(entry.get("external_port"), f"{where} external_port"),
                _ip(entry.get("internal_ip"), f"{where} internal_ip"),
                _port(entry.get("internal_port"), f"{where} internal_port"),
            )
        )
    return forwards


class GatewayForwardTable:
    """
    The forwards in force: the command line's, then the file's; the first
    match by protocol and port wins.
    """

    def __init__(self, static=()):
        self._static = list(static)
        self._file = []

    def setFile(self, forwards):
        """
        Apply the file's entries (or C{None} once the file is gone).
        """
        self._file = list(forwards or ())

    def lookup(self, protocol, port):
        """
        The L{GatewayForward} for C{protocol} traffic to the gateway's
        C{port}, or C{None}.
        """
        for forward in self._static + self._file:
            if forward.protocol == protocol and forward.externalPort == port:
                return forward
        return None

    def __iter__(self):
        return iter(self._static + self._file)


@implementer(ITCPRoute)
class GatewayForwardRoute:
    """
    A connection to a forwarded port of the gateway (its IPv4 address, or
    its IPv6 one when IPv6 is on) is dialled to its host address; any other
    is not this route's.
    """

    def __init__(self, config, table, network, timeout=30.0):
        self._gateways = _gatewayAddresses(config)
        self._table = table
        self._network = network
        self._timeout = timeout

    def route(self, flow):
        if flow.localIP not in self._gateways:
            return None
        forward = self._table.lookup("tcp", flow.localPort)
        if forward is None:
            return None
        return self._network.connectTCP(
            forward.internalIP, forward.internalPort, HostSide(), self._timeout
        ).addCallback(GuestSide)


class GatewayUDPForwards:
    """
    UDP to a forwarded gateway port: one host socket (of the host address's
    family) per (guest, guest port, gateway port, gateway address), replies
    sent back from the gateway address and port the guest sent to.  Idle
    flows expire after 60 s; at most C{maxFlows}, the oldest evicted.

    @param udp: the L{vpnkit.protocols.udp.UDPLayer} replies go through.
    @param sockets: the L{vpnkit.interfaces.IHostDatagramSockets}.
    """

    def __init__(self, config, table, udp, sockets, clock, counters, maxFlows=256, idle=60.0):
        self._table = table
        self._udp = udp
        self._sockets = sockets
        self._clock = clock
        self._counters = counters.udp
        self.flows = FlowTable(maxFlows, idle)
        self._expiry = FlowExpiry(self.flows, clock, self._expired)
        self._bindLog = RateLimitedLog(log, clock)

    def handles(self, port):
        """
        Whether UDP to the gateway's C{port} is forwarded.
        """
        return self._table.lookup("udp", port) is not None

    def datagramFromGuest(self, header, udp, payload):
        forward = self._table.lookup("udp", udp.dstPort)
        if forward is None:
            return
        key = (header.src, udp.srcPort, udp.dstPort, header.dst)
        now = self._clock.seconds()
        flow = self.flows.get(key)
        if flow is None:
            for old in self.flows.makeRoom():
                old.close()
            flow = SocketFlow(self, key)
            try:
                flow.socket = self._sockets.openUDP(flow, family=_family(forward.internalIP))
            except OSError as e:
                self._counters.gatewayForwardFailed += 1
                self._bindLog.warn("cannot open a UDP socket for a gateway forward: {e}", e=e)
                return
            self.flows.add(key, flow, now)
            self._expiry.arm()
        else:
            self.flows.touch(key, now)
        try:
            flow.socket.sendTo(
                payload, forward.internalIP, forward.internalPort, ttl=_hopLimit(header)
            )
        except OSError:
            self._counters.gatewayForwardFailed += 1
            return
        self._counters.gatewayForwarded += 1

    def flowDatagram(self, flow, data, host, port):
        if self.flows.get(flow.key) is not flow:
            return
        self.flows.touch(flow.key, self._clock.seconds())
        guestIP, guestPort, gatewayPort, gatewayIP = flow.key
        self._udp.sendDatagram(gatewayIP, gatewayPort, guestIP, guestPort, data)

    def flowError(self, flow, error):
        pass

    def _expired(self, flows):
        for flow in flows:
            flow.close()

    def guestDetached(self, guestIP):
        for flow in self.flows.removeGuest(guestIP):
            flow.close()

    def close(self):
        for flow in self.flows.removeAll():
            flow.close()
        self._expiry.stop()


def _gatewayAddresses(config):
    """
    The gateway's packed addresses: IPv4, and IPv6 (its address in the
    prefix and the router's link-local one) when IPv6 is on.
    """
    addresses = {config.gatewayPacked}
    if config.ipv6 is not None:
        addresses |= {config.ipv6.gatewayPacked, config.ipv6.routerLinkLocalPacked}
    return frozenset(addresses)


def _family(text):
    return socket.AF_INET6 if ":" in text else socket.AF_INET


def _hopLimit(header):
    """
    The TTL (IPv4) or hop limit (IPv6) a guest's datagram came with.
    """
    ttl = getattr(header, "ttl", None)
    return ttl if ttl is not None else header.hopLimit
