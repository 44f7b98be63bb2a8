# -*- test-case-name: tests.test_dhcpv6 -*-
"""
The DHCPv6 server (RFC 8415) on the gateway: the pure policy (L{answer})
and L{DHCPv6Server}, the UDP service (port 547) that applies it.

L{answer} is a pure function from a client's message to the server's, like
L{vpnkit.protocols.dhcp.answer} for IPv4.  Each guest holds one stateful
address (L{vpnkit.ipv6config.IPv6Config.guestAddress}, as stable as its
IPv4 lease, so the same UUID gets the same address); the glue finds the
guest by the port the message came from and passes its address in.  The
client's DUID identifies its messages, not its address: a cloned disk
image with a copied DUID on another port still gets that port's address.

Handled: Solicit (Advertise with preference 255, or at once a Reply when
the client asks for Rapid Commit), Request, Renew, Rebind, Confirm,
Release, Decline and Information-request (stateless: DNS servers and the
search list).  The validity rules of RFC 8415 16 decide what is silently
dropped; each drop names its reason (an L{Unanswered} member).  IA_TA and
IA_PD are not served: a client that asks only for them is told
NoAddrsAvail.
"""

import enum
from ipaddress import IPv6Address

from zope.interface import implementer

from vpnkit.config import ConfigError
from vpnkit.interfaces import IUDPService
from vpnkit.wire import ParseError
from vpnkit.wire import dhcpv6 as wire

__all__ = ["Unanswered", "answer", "renewalTimes", "DHCPv6Server", "SERVER_PORT", "CLIENT_PORT"]

SERVER_PORT = 547
CLIENT_PORT = 546


class Unanswered(enum.Enum):
    """
    Why a client's message gets no answer; each value is the name of the
    counter the glue increments.
    """

    NOT_A_REQUEST = "dhcpv6NotARequest"
    NO_CLIENT_ID = "dhcpv6NoClientID"
    SERVER_ID = "dhcpv6ServerID"
    OTHER_SERVER = "dhcpv6OtherServer"
    IA_IN_INFORMATION_REQUEST = "dhcpv6IAInInformationRequest"
    NOTHING_TO_CONFIRM = "dhcpv6NothingToConfirm"


# Which messages must carry our Server ID (True), must carry none (False),
# or may carry ours (None); all but Information-request need a Client ID
# (RFC 8415 16).
_SERVER_ID_RULE = {
    wire.SOLICIT: False,
    wire.REQUEST: True,
    wire.CONFIRM: False,
    wire.RENEW: True,
    wire.REBIND: False,
    wire.RELEASE: True,
    wire.DECLINE: True,
    wire.INFORMATION_REQUEST: None,
}


def renewalTimes(leaseTime):
    """
    T1 and T2 for addresses of C{leaseTime} seconds: half and four fifths
    of it (RFC 8415 21.4), or never renewed when it is infinite.
    """
    if leaseTime == wire.INFINITY:
        return wire.INFINITY, wire.INFINITY
    return leaseTime // 2, leaseTime * 4 // 5


def _bindings(request, leaseAddress, config, revoke):
    """
    One IA_NA per IA_NA of the request: the first holds the guest's
    address, the others (and every IA_NA when there is no address to give)
    say NoAddrsAvail.  With C{revoke} (Renew, Rebind) any other address the
    client listed comes back with lifetimes 0, so that it stops using it
    (RFC 8415 18.3.4, 18.3.5); in a Solicit or Request a listed address is
    only a hint, and ignored.
    """
    t1, t2 = renewalTimes(config.leaseTime)
    bindings = []
    for ia in request.optionsOf(wire.IANA):
        if bindings or leaseAddress is None:
            status = wire.StatusCode(wire.STATUS_NO_ADDRS_AVAIL, "one address per guest")
            bindings.append(wire.IANA(ia.iaid, 0, 0, (status,)))
            continue
        addresses = [wire.IAAddress(leaseAddress, config.leaseTime, config.leaseTime)]
        if revoke:
            addresses += [
                wire.IAAddress(listed.address, 0, 0)
                for listed in ia.optionsOf(wire.IAAddress)
                if listed.address != leaseAddress
            ]
        bindings.append(wire.IANA(ia.iaid, t1, t2, tuple(addresses)))
    return bindings


def _configuration(config, searchDomains):
    options = [wire.DNSServers((config.gatewayPacked,))]
    if searchDomains:
        options.append(wire.DomainList(tuple(searchDomains)))
    return options


def _reply(request, msgType, options):
    head = []
    clientID = request.option(wire.ClientID)
    if clientID is not None:
        head.append(clientID)
    return wire.DHCPv6Message(msgType, request.transactionID, tuple(head + options))


def _confirmStatus(request, config):
    addresses = [
        address.address
        for ia in request.optionsOf(wire.IANA)
        for address in ia.optionsOf(wire.IAAddress)
    ]
    if not addresses:
        return None
    if all(IPv6Address(address) in config.prefix for address in addresses):
        return wire.StatusCode(wire.STATUS_SUCCESS, "all addresses on link")
    return wire.StatusCode(wire.STATUS_NOT_ON_LINK, "not on this link")


def answer(request, leaseAddress, config, searchDomains=()):
    """
    The server's message in answer to a client's.

    @param request: the client's L{vpnkit.wire.dhcpv6.DHCPv6Message}.
    @param leaseAddress: the 16-byte address the guest holds, or C{None}
        when it has none to give (its IA_NAs are told NoAddrsAvail).
    @param config: the L{vpnkit.ipv6config.IPv6Config}.
    @param searchDomains: the domain search list (left out when empty).
    @return: a L{vpnkit.wire.dhcpv6.DHCPv6Message} to send to the client's
        address, or an L{Unanswered}.
    """
    kind = request.msgType
    rule = _SERVER_ID_RULE.get(kind, "none")
    if rule == "none":
        return Unanswered.NOT_A_REQUEST
    if kind != wire.INFORMATION_REQUEST and request.option(wire.ClientID) is None:
        return Unanswered.NO_CLIENT_ID
    serverID = request.option(wire.ServerID)
    if serverID is not None and rule is False:
        return Unanswered.SERVER_ID
    if rule is True and serverID is None:
        return Unanswered.OTHER_SERVER
    if serverID is not None and serverID.duid != config.serverDUID:
        return Unanswered.OTHER_SERVER
    server = [wire.ServerID(config.serverDUID)]
    if kind == wire.INFORMATION_REQUEST:
        if request.option(wire.IANA) is not None or any(
            isinstance(o, wire.DHCPv6Option) and o.code in (wire.OPTION_IA_TA, wire.OPTION_IA_PD)
            for o in request.options
        ):
            return Unanswered.IA_IN_INFORMATION_REQUEST
        return _reply(request, wire.REPLY, server + _configuration(config, searchDomains))
    if kind == wire.CONFIRM:
        status = _confirmStatus(request, config)
        if status is None:
            return Unanswered.NOTHING_TO_CONFIRM
        return _reply(request, wire.REPLY, server + [status])
    if kind in (wire.RELEASE, wire.DECLINE):
        # The address stays the guest's (it is its lease's); nothing to undo.
        return _reply(request, wire.REPLY, server + [wire.StatusCode(wire.STATUS_SUCCESS)])
    bindings = _bindings(request, leaseAddress, config, kind in (wire.RENEW, wire.REBIND))
    if kind == wire.SOLICIT:
        status = []
        if not bindings:
            status = [wire.StatusCode(wire.STATUS_NO_ADDRS_AVAIL, "only IA_NA is served")]
        if config.rapidCommit and request.option(wire.RapidCommit) is not None and bindings:
            options = server + bindings + [wire.RapidCommit()]
            return _reply(request, wire.REPLY, options + _configuration(config, searchDomains))
        options = server + bindings + status + [wire.Preference(255)]
        return _reply(request, wire.ADVERTISE, options + _configuration(config, searchDomains))
    # Request, Renew, Rebind.
    return _reply(request, wire.REPLY, server + bindings + _configuration(config, searchDomains))


@implementer(IUDPService)
class DHCPv6Server:
    """
    The DHCPv6 server as a UDP service on port 547 (bound for IPv6).

    A client sends from its link-local address (to C{ff02::1:2}, or the
    gateway); the switch has learned that address on the client's port,
    whose IPv4 lease gives the guest's stable address
    (L{vpnkit.ipv6config.IPv6Config.guestAddress} of the lease's offset
    from C{config.lowestIP}).  The answer goes back from the router's
    link-local address to the client's, port 546.

    @param config: the L{vpnkit.config.StackConfig}, whose C{ipv6} is set.
    @param switch: finds the client's port by its address.
    @param sender: sends the answer (C{sendDatagram(src, srcPort, dst,
        dstPort, payload, ttl=64, dstMAC=None)}, a
        L{vpnkit.protocols.udp.UDPSender}).
    @param searchDomains: called for the domain search list.
    """

    def __init__(self, config, switch, sender, counters, searchDomains=tuple):
        self._config = config
        self._plan = config.ipv6
        self._lowest = int(config.lowestIP)
        self._switch = switch
        self._sender = sender
        self._counters = counters.dhcpv6
        self._searchDomains = searchDomains

    def leaseAddress(self, port):
        """
        The packed IPv6 address of the guest on C{port}, or C{None} when
        its lease has none in the prefix.
        """
        try:
            return self._plan.guestAddress(int(port.lease.ip) - self._lowest).packed
        except ConfigError:
            return None

    def datagramReceived(self, ipHeader, udpHeader, payload):
        counters = self._counters
        counters.received += 1
        try:
            request = wire.parseDHCPv6(payload)
        except (ParseError, ValueError):
            counters.malformed += 1
            return
        port = self._switch.portForIP(ipHeader.src)
        if port is None or len(ipHeader.src) != 16:
            counters.unknownClient += 1
            return
        reply = answer(request, self.leaseAddress(port), self._plan, self._searchDomains())
        if isinstance(reply, Unanswered):
            setattr(counters, reply.value, getattr(counters, reply.value) + 1)
            return
        if self._sender.sendDatagram(
            self._plan.routerLinkLocalPacked,
            SERVER_PORT,
            ipHeader.src,
            udpHeader.srcPort,
            wire.emitDHCPv6(reply),
        ):
            counters.replies += 1
