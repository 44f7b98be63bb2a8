# -*- test-case-name: tests.test_dns -*-
"""
The gateway's DNS server, built on C{twisted.names}.

Framing is Twisted's own: L{DNSDatagramServer} (a C{dns.DNSDatagramProtocol})
runs on the gateway's virtual UDP port 53 and L{DNSStreamServer} (a
C{dns.DNSProtocol}) on each guest TCP connection to port 53.  Both hand the
raw message to L{GatewayDNSFactory} rather than parse it themselves:
Twisted's parser logs a warning for every invalid packet, which a guest
could turn into a line per packet.  Policy is in L{GatewayDNSFactory} (a
C{DNSServerFactory}) and in the resolver chain it asks, in order:

 1. L{BuiltinResolver}: C{--host-names}, C{--gateway-names}, C{--vm-names}
    (A, and AAAA when IPv6 is on: L{builtinAddresses});
 2. L{HostsResolver}: the hosts file (C{--hosts}), re-read when it changes;
 3. the upstream resolver (L{vpnkit.protocols.dnsupstream.UpstreamResolver}
    for C{--dns}, or L{vpnkit.host.resolvers.SystemResolver}).

Where the reference loses information, this server keeps it: an upstream
NXDOMAIN (or any other rcode) reaches the guest with its authority and
additional sections; a failure of every upstream is SERVFAIL, not silence;
a UDP answer too large for the client (512 bytes, or the size its EDNS0
record announces) loses whole records, additional first, and has TC set,
while TCP always carries the whole answer.  A builtin or hosts-file name
asked for a type it does not have gets NOERROR with no records (NODATA):
the reference's NXDOMAIN would tell the guest the name does not exist at
all, which makes resolvers such as musl's fail the A lookup made alongside
(RFC 8020).

Malformed queries are answered FORMERR here and never reach a resolver: a
message that does not parse (bad compression pointers, a record cut
short), whose header announces more records than it holds, or whose one question has a name longer than 253 characters, a
label longer than 63 or empty, or a class that is not IN, CS, CH, HS or
ANY.  Forwarded upstream, such garbage would only time out and make
vpnkit take a healthy server for offline.  A message shorter than the
12-byte header, or with QR set, gets no answer at all.

The pieces every resolver of the chain shares live here, public, so the
upstream modules and L{vpnkit.host.resolvers} build on them without
reaching into this one: L{NameResolver}, L{addressRecord}, L{normalName},
L{RcodeError}, and the EDNS0 OPT record (L{optRecord},
L{ednsPayloadSize}), which this module owns rather than use Twisted's
private C{_OPTHeader}.
"""

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from twisted.internet import defer
from twisted.names import common, dns, error, server
from twisted.names.error import DNSQueryTimeoutError
from zope.interface import implementer
from twisted.internet.interfaces import IResolver

from vpnkit.log import GuestLog, logger

__all__ = [
    "RcodeError",
    "NameResolver",
    "addressRecord",
    "optRecord",
    "ednsPayloadSize",
    "BuiltinResolver",
    "builtinAddresses",
    "HostsResolver",
    "GatewayDNSFactory",
    "DNSDatagramServer",
    "DNSStreamServer",
    "questionProblem",
    "parseHosts",
    "normalName",
    "EDNS_PAYLOAD_SIZE",
]

log = logger("vpnkit.dns")

UDP_LIMIT = 512
# What vpnkit announces (and accepts) in EDNS0: its UDP path reassembles
# and fragments, so any size fits; 4096 is the common choice.
EDNS_PAYLOAD_SIZE = 4096
# RFC 1035 2.3.4 (253 characters in text form, without the final dot).
MAX_NAME = 253
MAX_LABEL = 63
KNOWN_CLASSES = frozenset((dns.IN, dns.CS, dns.CH, dns.HS, dns.ANY))
_HEADER = struct.Struct("!HH")
_COUNTS = struct.Struct("!4H")
_QR = 0x8000


class RcodeError(Exception):
    """
    An answer that is not a success, to be relayed as it is: its rcode and
    its sections (the SOA of an NXDOMAIN, for one).
    """

    def __init__(self, rCode, answers=(), authority=(), additional=()):
        super().__init__(rCode)
        self.rCode = rCode
        self.answers = list(answers)
        self.authority = list(authority)
        self.additional = [r for r in additional if r.type != dns.OPT]

    def __repr__(self):
        return f"RcodeError({self.rCode})"


def normalName(name):
    """
    A query name (bytes or text) as the lower-case text used for lookups,
    without a trailing dot; C{None} for names that are not ASCII.
    """
    if isinstance(name, dns.Name):
        name = name.name
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            return None
    return name.rstrip(".").lower()


def addressRecord(name, address, ttl=0):
    """
    An authoritative A or AAAA record (by the family of C{address}, an
    C{IPv4Address} or C{IPv6Address}) for C{name}.
    """
    if isinstance(address, IPv6Address):
        return dns.RRHeader(
            name, dns.AAAA, dns.IN, ttl, dns.Record_AAAA(str(address), ttl), auth=True
        )
    return dns.RRHeader(name, dns.A, dns.IN, ttl, dns.Record_A(str(address), ttl), auth=True)


class NameResolver(common.ResolverBase):
    """
    An L{IResolver} whose every lookup (C{lookupAddress} and the rest) goes
    through C{query}, which subclasses implement.
    """

    def _lookup(self, name, cls, type, timeout):
        return self.query(dns.Query(name, type, cls), timeout)


def builtinAddresses(config):
    """
    The names vpnkit's DNS answers itself, each with its addresses: the
    IPv4 one of L{vpnkit.config.StackConfig.builtinNames} and, when IPv6 is
    on (C{config.ipv6}), its IPv6 counterpart: the IPv6 host alias for
    C{--host-names}, the IPv6 gateway for C{--gateway-names}, the first
    guest's stable IPv6 address for C{--vm-names}.  A name the IPv4 plan
    leaves out (the host names with C{--host-ip 0.0.0.0}) stays out, so A
    answers are what they were.

    @return: C{{name: (address, ...)}}.
    """
    names = {name: (address,) for name, address in config.builtinNames().items()}
    ipv6 = config.ipv6
    if ipv6 is None:
        return names
    counterparts = [(config.vmNames, ipv6.guestAddress(0)), (config.gatewayNames, ipv6.gateway)]
    if ipv6.hostAlias is not None:
        counterparts.insert(1, (config.hostNames, ipv6.hostAlias))
    for group, address in counterparts:
        for name in group:
            if name in names:
                names[name] = names[name][:1] + (address,)
    return names


@implementer(IResolver)
class BuiltinResolver(NameResolver):
    """
    The names vpnkit answers itself, each with one IPv4 address and, when
    IPv6 is on, one IPv6 address (L{builtinAddresses}), with TTL 0.  A
    type a name has no address for (AAAA with IPv6 off, MX, TXT...) gets
    NODATA: the name exists.

    @param names: C{{name: address}} or C{{name: (address, ...)}}, the
        addresses C{IPv4Address}es or C{IPv6Address}es.
    """

    def __init__(self, names, counters):
        super().__init__()
        self._names = {}
        for name, addresses in names.items():
            if isinstance(addresses, (str, IPv4Address, IPv6Address)):
                addresses = (addresses,)
            self._names[normalName(name)] = tuple(ip_address(a) for a in addresses)
        self._counters = counters.dns

    def query(self, query, timeout=None):
        addresses = self._names.get(normalName(query.name))
        if addresses is None:
            return defer.fail(error.DomainError(query.name.name))
        self._counters.builtin += 1
        if query.cls not in (dns.IN, dns.ANY):
            return defer.succeed(([], [], []))
        if query.type == dns.ALL_RECORDS:
            wanted = (IPv4Address, IPv6Address)
        elif query.type == dns.A:
            wanted = IPv4Address
        elif query.type == dns.AAAA:
            wanted = IPv6Address
        else:
            return defer.succeed(([], [], []))
        answers = [addressRecord(query.name.name, a) for a in addresses if isinstance(a, wanted)]
        return defer.succeed((answers, [], []))


def parseHosts(text, path="hosts"):
    """
    Parse a hosts file: C{ADDRESS NAME [NAME...]} per line, C{#} starting a
    comment.  Lines whose address does not parse (zone indices such as
    C{fe80::1%lo0}, garbage) are skipped, as the C library skips them.

    @return: a tuple of C{(name, address)} in file order, names lower-case.
    """
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split()
        if len(line) < 2:
            continue
        try:
            address = ip_address(line[0])
        except ValueError:
            continue
        if getattr(address, "scope_id", None):
            # fe80::1%lo0: an address DNS cannot carry.
            continue
        for name in line[1:]:
            name = normalName(name)
            if name:
                entries.append((name, address))
    return tuple(entries)


@implementer(IResolver)
class HostsResolver(NameResolver):
    """
    Names from the hosts file.  A and AAAA are answered with every address
    of that family the file gives the name (file order, TTL 0); a name the
    file knows only for the other family gets NODATA; other types, and
    names the file does not know, go on down the chain.
    """

    def __init__(self, counters, entries=()):
        super().__init__()
        self._counters = counters.dns
        self.setEntries(entries)

    def setEntries(self, entries):
        """
        Replace the names (a L{parseHosts} result; C{None} when the file is
        gone).
        """
        names = {}
        for name, address in entries or ():
            addresses = names.setdefault(name, [])
            if address not in addresses:
                addresses.append(address)
        self._names = names

    def query(self, query, timeout=None):
        addresses = self._names.get(normalName(query.name))
        if addresses is None or query.cls not in (dns.IN, dns.ANY):
            return defer.fail(error.DomainError(query.name.name))
        if query.type == dns.A:
            family = IPv4Address
        elif query.type == dns.AAAA:
            family = IPv6Address
        else:
            return defer.fail(error.DomainError(query.name.name))
        self._counters.hostsFile += 1
        answers = [addressRecord(query.name.name, a) for a in addresses if isinstance(a, family)]
        return defer.succeed((answers, [], []))


def optRecord(payloadSize=EDNS_PAYLOAD_SIZE):
    """
    The EDNS0 OPT pseudo-record (RFC 6891 6.1.2) announcing C{payloadSize}
    bytes: the root name, type OPT, the size in the class field, a TTL of 0
    (no extended rcode, version 0, DO clear) and no options.

    It is a plain C{dns.RRHeader}, so a C{dns.Message} carries and encodes
    it like any record, and decodes the OPT record of a message it parses
    into the same shape.
    """
    return dns.RRHeader(b"", dns.OPT, payloadSize, 0, dns.UnknownRecord(b""))


def ednsPayloadSize(message):
    """
    The UDP payload size a message's EDNS0 record announces (never less
    than 512, RFC 6891 6.2.5), or C{None} without one.
    """
    for record in message.additional:
        if record.type == dns.OPT:
            return max(UDP_LIMIT, record.cls)
    return None


def _fit(response, limit):
    """
    Shrink C{response} to C{limit} bytes: drop the additional section (but
    the OPT record), then the authority section and as many answers as it
    takes, setting TC, as RFC 2181 9 asks.

    @return: whether it was truncated.
    """
    if len(response.toStr()) <= limit:
        return False
    response.additional = [r for r in response.additional if r.type == dns.OPT]
    if len(response.toStr()) <= limit:
        return False
    answers = response.answers
    response.authority = []
    response.trunc = 1
    low, high = 0, len(answers)
    while low < high:
        middle = (low + high + 1) // 2
        response.answers = answers[:middle]
        if len(response.toStr()) <= limit:
            low = middle
        else:
            high = middle - 1
    response.answers = answers[:low]
    return True


def questionProblem(query):
    """
    What makes a question unfit to be asked (see the module docstring), or
    C{None} when it is well formed.
    """
    if query.cls not in KNOWN_CLASSES:
        return f"unknown class {query.cls}"
    name = query.name.name
    if len(name) > MAX_NAME:
        return f"a name of {len(name)} characters"
    if name:
        for label in name.split(b"."):
            if not label:
                return "an empty label"
            if len(label) > MAX_LABEL:
                return f"a label of {len(label)} characters"
    return None


class DNSDatagramServer(dns.DNSDatagramProtocol):
    """
    The gateway's DNS server on UDP: each datagram goes to the factory
    whole (L{GatewayDNSFactory.wireMessageReceived}).  It never queries,
    so there are no replies of its own to match.
    """

    noisy = False

    def datagramReceived(self, data, addr):
        self.controller.wireMessageReceived(data, self, addr)


class DNSStreamServer(dns.DNSProtocol):
    """
    The gateway's DNS server on one guest TCP connection: each
    length-prefixed message goes to the factory whole.
    """

    def stringReceived(self, data):
        self.controller.wireMessageReceived(data, self, None)


class GatewayDNSFactory(server.DNSServerFactory):
    """
    The policy of the gateway's DNS server: which queries are answered, and
    how the answer is built from what the resolver chain returned.

    @param resolvers: the chain, in order (L{IResolver}s).
    @param clock: the L{IReactorTime} that rate-limits the log lines
        guests can cause (the global reactor when C{None}).
    """

    protocol = DNSStreamServer

    def __init__(self, resolvers, counters, clock=None):
        super().__init__(clients=list(resolvers))
        self._counters = counters.dns
        self._log = GuestLog(log, clock)

    def datagramProtocol(self, reactor=None):
        """
        The protocol to serve UDP port 53 with.
        """
        return DNSDatagramServer(self, reactor=reactor)

    def wireMessageReceived(self, data, protocol, address=None):
        """
        One message from a guest, as bytes: parse it, answer FORMERR if it
        is malformed, and otherwise handle it (L{messageReceived}).

        @param address: the sender's address for UDP, C{None} for TCP.
        """
        message = dns.Message()
        try:
            message.fromStr(data)
        except Exception as e:
            # EOFError and ValueError from twisted.names for most garbage;
            # anything else a parser of untrusted bytes raises is as bad.
            self._malformed(data, protocol, address, str(e) or type(e).__name__)
            return
        # twisted.names stops quietly at the end of the bytes: a header
        # that announces more records than the message holds is only seen
        # by counting them.
        announced = _COUNTS.unpack_from(data, 4)
        held = tuple(
            len(section)
            for section in (message.queries, message.answers, message.authority, message.additional)
        )
        if held != announced:
            self._malformed(
                data, protocol, address, f"the header announces {announced} records, not {held}"
            )
            return
        if not message.answer and message.opCode == dns.OP_QUERY and len(message.queries) == 1:
            problem = questionProblem(message.queries[0])
            if problem is not None:
                self._malformed(data, protocol, address, problem)
                return
        self.messageReceived(message, protocol, address)

    def _malformed(self, data, protocol, address, problem):
        """
        Count a malformed message, log it (rate-limited) and answer FORMERR
        with its id, opcode and RD, but no question, when its header is
        readable and it is not itself a response.
        """
        counters = self._counters
        counters.malformed += 1
        self._log.info(
            "malformed DNS message ({n} bytes) over {transport}: {problem}",
            n=len(data),
            transport="TCP" if address is None else "UDP",
            problem=problem,
        )
        if len(data) < dns.Message.headerSize:
            return
        ident, flags = _HEADER.unpack_from(data)
        if flags & _QR:
            return
        response = dns.Message(
            id=ident,
            answer=True,
            opCode=(flags >> 11) & 0xF,
            recDes=(flags >> 8) & 1,
            recAv=self.canRecurse,
            rCode=dns.EFORMAT,
            maxSize=0,
        )
        counters.formerr += 1
        if address is None:
            protocol.writeMessage(response)
        else:
            protocol.writeMessage(response, address)

    def messageReceived(self, message, proto, address=None):
        counters = self._counters
        if address is None:
            counters.tcpQueries += 1
        else:
            counters.udpQueries += 1
        if message.answer or (message.opCode == dns.OP_QUERY and len(message.queries) != 1):
            # Responses are never answered (no loops), and as the
            # reference, a query with no or several questions gets none.
            counters.ignored += 1
            return
        super().messageReceived(message, proto, address)

    def gotResolverResponse(self, response, protocol, message, address):
        answers, authority, additional = response
        self._reply(protocol, message, address, dns.OK, answers, authority, additional)

    def gotResolverError(self, failure, protocol, message, address):
        if failure.check(RcodeError):
            value = failure.value
            self._reply(
                protocol,
                message,
                address,
                value.rCode,
                value.answers,
                value.authority,
                value.additional,
            )
            return
        if failure.check(error.DomainError, error.AuthoritativeDomainError):
            rCode = dns.ENAME
        else:
            rCode = dns.ESERVER
            if not failure.check(DNSQueryTimeoutError, defer.TimeoutError):
                self._warn(
                    "DNS query {query} failed: {error}",
                    query=str(message.queries[0]),
                    error=failure.getErrorMessage(),
                )
        self._reply(protocol, message, address, rCode, [], [], [])

    def _warn(self, format, **kwargs):
        self._log.warn(format, **kwargs)

    def _response(self, request, rCode, answers):
        """
        The reply to C{request}, without its authority and additional
        sections: its id, question, RD and CD, QR set, RA when the chain can
        recurse, AA when any answer is authoritative.
        """
        response = dns.Message(
            id=request.id,
            answer=True,
            recAv=self.canRecurse,
            rCode=rCode,
            auth=any(r.isAuthoritative() for r in answers),
            # Twisted's own truncation cuts bytes mid-record; ours
            # (L{_fit}) drops whole records.
            maxSize=0,
        )
        response.queries = request.queries[:]
        response.answers = answers
        response.recDes = request.recDes
        response.checkingDisabled = request.checkingDisabled
        # C{sendReply} logs the time taken from it.
        response.timeReceived = getattr(request, "timeReceived", None)
        return response

    def _reply(self, protocol, request, address, rCode, answers, authority, additional):
        counters = self._counters
        response = self._response(request, rCode, list(answers))
        response.authority = list(authority)
        response.additional = [r for r in additional if r.type != dns.OPT]
        clientSize = ednsPayloadSize(request)
        if clientSize is not None:
            response.additional.append(optRecord())
        if address is not None and _fit(response, clientSize or UDP_LIMIT):
            counters.truncated += 1
        if rCode == dns.ENAME:
            counters.nxdomain += 1
        elif rCode == dns.ESERVER:
            counters.servfail += 1
        counters.answered += 1
        self.sendReply(protocol, response, address)
