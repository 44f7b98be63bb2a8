# -*- test-case-name: tests.test_resolvers -*-
"""
L{SystemResolver}: DNS answers from the host's own resolver, for when no
C{--dns} file is given.

A and AAAA come from C{getaddrinfo} (so the host's C{/etc/hosts},
C{nsswitch.conf}, VPN split DNS and the rest apply, as for any program on
the host), each family asked for separately: AAAA is answered with the
host's IPv6 addresses, where the reference kept only IPv4 results and so
always answered AAAA with nothing.  Every other type goes to the servers
the host's C{/etc/resolv.conf} names, through the same
L{vpnkit.protocols.dnsupstream.UpstreamResolver} C{--dns} uses.

C{getaddrinfo} blocks, so it runs in the reactor's thread pool; the lookup
function is injected, and tests never call the real one.
"""

import socket
from ipaddress import ip_address

from twisted.internet.interfaces import IResolver
from twisted.internet.threads import deferToThreadPool
from twisted.internet import defer
from twisted.names import dns
from zope.interface import implementer

from vpnkit.protocols.dns import NameResolver, RcodeError, addressRecord, normalName

__all__ = ["SystemResolver", "getaddrinfoLookup", "lookupError"]

_EAI_NODATA = getattr(socket, "EAI_NODATA", -5)
_EAI_ADDRFAMILY = getattr(socket, "EAI_ADDRFAMILY", -9)
_EAI_NONAME = socket.EAI_NONAME


def getaddrinfoLookup(reactor):
    """
    The real lookup: C{getaddrinfo(name, family)} in C{reactor}'s thread
    pool.

    @return: C{lookup(name, family) -> Deferred[list of address text]}.
    """

    def resolve(name, family):
        infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
        return [info[4][0] for info in infos]

    def lookup(name, family):
        return deferToThreadPool(reactor, reactor.getThreadPool(), resolve, name, family)

    return lookup


def lookupError(exception):
    """
    The rcode for a C{getaddrinfo} failure: the name has no address of that
    family (C{EAI_NODATA}, C{EAI_ADDRFAMILY}) is NOERROR with no data (as
    moby/moby#47628 asked of the reference), an unknown name is NXDOMAIN,
    anything else (C{EAI_AGAIN}, C{EAI_FAIL}) is SERVFAIL.
    """
    code = exception.errno if isinstance(exception, socket.gaierror) else None
    if code in (_EAI_NODATA, _EAI_ADDRFAMILY):
        return dns.OK
    if code == _EAI_NONAME:
        return dns.ENAME
    return dns.ESERVER


@implementer(IResolver)
class SystemResolver(NameResolver):
    """
    @param lookup: C{lookup(name, family) -> Deferred[list of address text]}.
    @param others: the L{IResolver} for every type but A and AAAA.
    """

    def __init__(self, lookup, others, counters):
        super().__init__()
        self._hostLookup = lookup
        self._others = others
        self._counters = counters.dns

    def query(self, query, timeout=None):
        if query.cls != dns.IN or query.type not in (dns.A, dns.AAAA):
            return self._others.query(query, timeout)
        name = normalName(query.name)
        if not name:
            return defer.fail(RcodeError(dns.ENAME))
        family = socket.AF_INET if query.type == dns.A else socket.AF_INET6
        self._counters.systemLookups += 1
        d = self._hostLookup(name, family)

        def found(addresses):
            answers = []
            seen = set()
            for text in addresses:
                try:
                    address = ip_address(text)
                except ValueError:
                    continue
                if getattr(address, "scope_id", None):
                    # A link-local address only means something on the
                    # host's own link.
                    continue
                if address.version != (4 if family == socket.AF_INET else 6) or address in seen:
                    continue
                seen.add(address)
                answers.append(addressRecord(query.name.name, address))
            return answers, [], []

        def failed(failure):
            rCode = lookupError(failure.value)
            if rCode == dns.OK:
                return [], [], []
            raise RcodeError(rCode)

        return d.addCallbacks(found, failed)
