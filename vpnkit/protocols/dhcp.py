# -*- test-case-name: tests.test_dhcp -*-
"""
The DHCP server: each guest is offered the one address its link holds.

L{answer} is the policy, a pure function from a request to a reply;
L{DHCPServer} is the glue that finds the requesting guest on the switch and
sends the reply.  DISCOVER, REQUEST (selecting, init-reboot, renewing,
rebinding), INFORM, DECLINE and RELEASE are handled; relayed requests
(C{giaddr} set) are not.
"""

from dataclasses import dataclass

from zope.interface import implementer

from vpnkit.config import ConfigError, parseJSON
from vpnkit.interfaces import IUDPService
from vpnkit.log import GuestLog, logger
from vpnkit.wire import ParseError
from vpnkit.wire import dhcp as wire

__all__ = ["DHCPSettings", "parseDHCPSettings", "answer", "DHCPServer", "LEASE_TIME"]

log = logger("vpnkit.dhcp")

# The reference's lease: 2**31 - 1 seconds ("avoids network glitches when
# leases are renewed"), with RFC 2131's default T1 (1/2) and T2 (7/8).
LEASE_TIME = 0x7FFFFFFF
RENEWAL_TIME = LEASE_TIME // 2
REBINDING_TIME = LEASE_TIME * 7 // 8

SERVER_PORT = 67
CLIENT_PORT = 68

_BROADCAST_IP = b"\xff\xff\xff\xff"
_BROADCAST_MAC = b"\xff" * 6
_ZERO_IP = b"\0\0\0\0"
_BOOTP_MIN_LENGTH = 300
_IP_UDP_HEADERS = 28


@dataclass(frozen=True)
class DHCPSettings:
    """
    The parts of the DHCP answer that can change while vpnkit runs.

    @ivar domainName: option 15, or C{None}/empty to leave it out.
    @ivar searchDomains: option 119.
    @ivar ntp: whether to announce the gateway as NTP server (option 42);
        only true when a UDP 123 forward exists.
    """

    domainName: str | None = "localdomain"
    searchDomains: tuple = ()
    ntp: bool = False


def parseDHCPSettings(text, path="dhcp.json"):
    """
    Parse the reference's C{dhcp.json}:
    C{{"searchDomains": ["a.example"], "domainName": "example"}}, both keys
    optional.

    @return: C{(domainName or None, tuple of searchDomains)}
    @raise ConfigError: naming C{path} and the problem.
    """
    value = parseJSON(text, path, dict)
    domainName = value.get("domainName")
    if domainName is not None and not (isinstance(domainName, str) and domainName.isascii()):
        raise ConfigError(f"{path}: domainName must be an ASCII string")
    search = value.get("searchDomains", [])
    if not isinstance(search, list) or not all(isinstance(d, str) for d in search):
        raise ConfigError(f"{path}: searchDomains must be a list of strings")
    try:
        wire.encodeDomainSearch(search)
    except ParseError as e:
        raise ConfigError(f"{path}: searchDomains: {e}") from None
    return domainName, tuple(search)


def _options(config, settings, leaseTimes):
    gateway = config.gatewayPacked
    options = [
        (wire.OPT_SUBNET_MASK, config.subnet.netmask.packed),
        (wire.OPT_ROUTER, gateway),
        (wire.OPT_DNS, gateway),
    ]
    if settings.domainName:
        options.append((wire.OPT_DOMAIN_NAME, settings.domainName.encode("ascii")))
    options.append((wire.OPT_MTU, config.mtu.to_bytes(2, "big")))
    options.append((wire.OPT_BROADCAST, config.subnet.broadcast_address.packed))
    if settings.ntp:
        options.append((wire.OPT_NTP, gateway))
    if leaseTimes:
        options += [
            (wire.OPT_LEASE_TIME, LEASE_TIME.to_bytes(4, "big")),
            (wire.OPT_RENEWAL_TIME, RENEWAL_TIME.to_bytes(4, "big")),
            (wire.OPT_REBINDING_TIME, REBINDING_TIME.to_bytes(4, "big")),
        ]
    if settings.searchDomains:
        options.append((wire.OPT_DOMAIN_SEARCH, wire.encodeDomainSearch(settings.searchDomains)))
    return options


def _fit(request, messageType, yiaddr, options, config):
    """
    The reply, leaving out the search list and then the domain name if that
    is what it takes to fit the largest message the client accepts: its
    option 57, at least the 576-byte datagram every client must take
    (RFC 2131 2), and never beyond the link MTU.
    """
    maxSize = request.option(wire.OPT_MAX_MESSAGE_SIZE)
    limit = int.from_bytes(maxSize, "big") if maxSize is not None and len(maxSize) == 2 else 0
    limit = min(max(limit, 576), config.mtu) - _IP_UDP_HEADERS
    reply = _reply(request, messageType, yiaddr, options, config)
    for optional in (wire.OPT_DOMAIN_SEARCH, wire.OPT_DOMAIN_NAME):
        if len(wire.emitDHCP(reply)) <= limit:
            break
        options = [(code, value) for code, value in options if code != optional]
        reply = _reply(request, messageType, yiaddr, options, config)
    return reply


def _reply(request, messageType, yiaddr, options, config):
    return wire.DHCPMessage(
        op=wire.BOOTREPLY,
        xid=request.xid,
        chaddr=request.chaddr,
        htype=request.htype,
        hlen=request.hlen,
        flags=request.flags,
        ciaddr=request.ciaddr if messageType != wire.DHCPNAK else _ZERO_IP,
        yiaddr=yiaddr,
        giaddr=request.giaddr,
        # RFC 2131 table 3: sname is unused in a NAK.
        sname=(b"vpnkit" if messageType != wire.DHCPNAK else b"").ljust(64, b"\0"),
        options=(
            (wire.OPT_MESSAGE_TYPE, bytes((messageType,))),
            (wire.OPT_SERVER_ID, config.gatewayPacked),
        )
        + tuple(options),
        padding=b"",
    )


def answer(request, leaseIP, config, settings):
    """
    The reply to a client request, or C{None} for silence.

    @param leaseIP: the packed address the requesting guest's link holds.
    @return: C{(reply, destinationIP, destinationMAC)}, or C{None}.
    """
    kind = request.messageType
    client = request.clientMAC
    if kind == wire.DHCPDISCOVER:
        reply = _fit(request, wire.DHCPOFFER, leaseIP, _options(config, settings, True), config)
    elif kind == wire.DHCPREQUEST:
        serverID = request.option(wire.OPT_SERVER_ID)
        requested = request.option(wire.OPT_REQUESTED_IP)
        if serverID is not None and serverID != config.gatewayPacked:
            # The client chose another server's offer.
            return None
        wanted = requested if requested is not None else request.ciaddr
        if wanted == leaseIP:
            reply = _fit(request, wire.DHCPACK, leaseIP, _options(config, settings, True), config)
        else:
            message = b"requested address is not the one held by this client"
            reply = _reply(request, wire.DHCPNAK, _ZERO_IP, [(wire.OPT_MESSAGE, message)], config)
            return reply, _BROADCAST_IP, _BROADCAST_MAC
    elif kind == wire.DHCPINFORM:
        # RFC 2131 3.4: configuration only, no address and no lease times.
        reply = _fit(request, wire.DHCPACK, _ZERO_IP, _options(config, settings, False), config)
        if request.ciaddr != _ZERO_IP:
            return reply, request.ciaddr, client
        return reply, _BROADCAST_IP, _BROADCAST_MAC
    else:
        return None
    if request.ciaddr != _ZERO_IP:
        return reply, request.ciaddr, client
    if request.broadcastFlag:
        return reply, _BROADCAST_IP, _BROADCAST_MAC
    return reply, reply.yiaddr, client


@implementer(IUDPService)
class DHCPServer:
    """
    @param switch: where the requesting guest's port is found by MAC.
    @param udp: the L{vpnkit.protocols.udp.UDPLayer} replies go through.
    @param settings: a zero-argument callable returning the current
        L{DHCPSettings}.
    @param clock: the L{IReactorTime} that rate-limits the log lines guests
        cause (the global reactor when C{None}).
    """

    def __init__(self, config, switch, udp, counters, settings, clock=None):
        self._log = GuestLog(log, clock)
        self._config = config
        self._switch = switch
        self._udp = udp
        self._counters = counters.dhcp
        self._settings = settings
        self._seen = set()

    def datagramReceived(self, ipHeader, udpHeader, payload):
        counters = self._counters
        counters.received += 1
        try:
            request = wire.parseDHCP(payload)
        except ParseError:
            counters.malformed += 1
            return
        kind = request.messageType
        if request.op != wire.BOOTREQUEST or request.giaddr != _ZERO_IP:
            counters.ignored += 1
            return
        if kind == wire.DHCPDISCOVER:
            counters.discover += 1
        elif kind == wire.DHCPREQUEST:
            counters.request += 1
        elif kind == wire.DHCPDECLINE:
            counters.decline += 1
        elif kind == wire.DHCPRELEASE:
            counters.release += 1
        elif kind == wire.DHCPINFORM:
            counters.inform += 1
        else:
            counters.ignored += 1
            return
        port = self._switch.portForMAC(request.clientMAC)
        if port is None:
            counters.unknownClient += 1
            return
        leaseIP = port.lease.ip.packed
        if kind == wire.DHCPDECLINE:
            self._log.warn(
                "guest {port} declined {ip}: another host on its network uses it",
                port=port,
                ip=port.lease.ip,
            )
            return
        if kind == wire.DHCPRELEASE:
            return
        result = answer(request, leaseIP, self._config, self._settings())
        if result is None:
            counters.ignored += 1
            return
        reply, dstIP, dstMAC = result
        replyType = reply.messageType
        if replyType == wire.DHCPNAK:
            counters.nak += 1
        elif replyType == wire.DHCPOFFER:
            counters.offer += 1
        else:
            counters.ack += 1
        if replyType == wire.DHCPNAK:
            self._log.info(
                "DHCP {request} from {port}: NAK",
                request=wire.MESSAGE_TYPE_NAMES[kind],
                port=port,
            )
        elif port not in self._seen:
            self._seen.add(port)
            self._log.info(
                "DHCP {request} from {port}: {reply}",
                request=wire.MESSAGE_TYPE_NAMES[kind],
                port=port,
                reply=wire.MESSAGE_TYPE_NAMES[replyType],
            )
        # Padded to the 300 bytes of a BOOTP message, as old clients expect.
        data = wire.emitDHCP(reply).ljust(_BOOTP_MIN_LENGTH, b"\0")
        self._udp.sendDatagram(
            self._config.gatewayPacked, SERVER_PORT, dstIP, CLIENT_PORT, data, dstMAC=dstMAC
        )

    def forgetPort(self, port):
        self._seen.discard(port)
