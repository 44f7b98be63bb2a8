# -*- test-case-name: tests.test_wire_icmpv6 -*-
"""
ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861): messages as small
frozen values, the checksum over the IPv6 pseudo-header, and the NDP
options vpnkit reads or sends: link-layer addresses, prefix information,
MTU, recursive DNS servers and the DNS search list (RFC 8106).

L{parseICMPv6} verifies the checksum and returns the message of its type
(L{EchoRequest}, L{RouterAdvertisement}, ...), or a plain L{ICMPv6Message}
for the types not modelled here (MLD, redirects, ...).  Neighbor Discovery
messages with a non-zero code, too short for their fixed part, or with an
option of length zero are malformed (RFC 4861 6.1, 7.1); the checks that
need the IPv6 header (hop limit 255, addresses) belong to the caller.
"""

from dataclasses import dataclass
from struct import Struct
from typing import ClassVar

from vpnkit.wire import ChecksumError, MalformedError, TruncatedError, WithOptions
from vpnkit.wire.checksum import internetChecksum, ipv6PseudoHeaderSum, onesComplementSum
from vpnkit.wire.dnsnames import decodeDomainNames, encodeDomainNames
from vpnkit.wire.ipv6 import HEADER_LENGTH as IPV6_HEADER_LENGTH
from vpnkit.wire.ipv6 import MIN_MTU, NEXT_ICMPV6

__all__ = [
    "DEST_UNREACHABLE",
    "PACKET_TOO_BIG",
    "TIME_EXCEEDED",
    "PARAMETER_PROBLEM",
    "ECHO_REQUEST",
    "ECHO_REPLY",
    "ROUTER_SOLICITATION",
    "ROUTER_ADVERTISEMENT",
    "NEIGHBOR_SOLICITATION",
    "NEIGHBOR_ADVERTISEMENT",
    "UNREACHABLE_NO_ROUTE",
    "UNREACHABLE_ADMIN_PROHIBITED",
    "UNREACHABLE_BEYOND_SCOPE",
    "UNREACHABLE_ADDRESS",
    "UNREACHABLE_PORT",
    "TIME_EXCEEDED_HOP_LIMIT",
    "TIME_EXCEEDED_REASSEMBLY",
    "PROBLEM_ERRONEOUS_FIELD",
    "PROBLEM_NEXT_HEADER",
    "PROBLEM_OPTION",
    "RA_MANAGED",
    "RA_OTHER",
    "PREFIX_ON_LINK",
    "PREFIX_AUTONOMOUS",
    "NA_ROUTER",
    "NA_SOLICITED",
    "NA_OVERRIDE",
    "INFINITE_LIFETIME",
    "MAX_INVOKING",
    "ICMPv6Message",
    "EchoRequest",
    "EchoReply",
    "DestinationUnreachable",
    "PacketTooBig",
    "TimeExceeded",
    "ParameterProblem",
    "RouterSolicitation",
    "RouterAdvertisement",
    "NeighborSolicitation",
    "NeighborAdvertisement",
    "SourceLinkLayerAddress",
    "TargetLinkLayerAddress",
    "PrefixInformation",
    "MTUOption",
    "RecursiveDNSServers",
    "DNSSearchList",
    "NDPOption",
    "parseICMPv6",
    "emitICMPv6",
    "parseNDPOptions",
    "emitNDPOptions",
    "invokingPacket",
]

DEST_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129
ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136

UNREACHABLE_NO_ROUTE = 0
UNREACHABLE_ADMIN_PROHIBITED = 1
UNREACHABLE_BEYOND_SCOPE = 2
UNREACHABLE_ADDRESS = 3
UNREACHABLE_PORT = 4

TIME_EXCEEDED_HOP_LIMIT = 0
TIME_EXCEEDED_REASSEMBLY = 1

PROBLEM_ERRONEOUS_FIELD = 0
PROBLEM_NEXT_HEADER = 1
PROBLEM_OPTION = 2

# Router Advertisement flags (the byte after the hop limit).
RA_MANAGED = 0x80
RA_OTHER = 0x40
# Prefix Information flags.
PREFIX_ON_LINK = 0x80
PREFIX_AUTONOMOUS = 0x40
# Neighbor Advertisement flags (the first byte of the reserved word).
NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20

INFINITE_LIFETIME = 0xFFFFFFFF

# An error message quotes as much of the invoking packet as fits in the
# minimum MTU (RFC 4443 2.4 (c)).
MAX_INVOKING = MIN_MTU - IPV6_HEADER_LENGTH - 8

OPT_SOURCE_LINK_LAYER = 1
OPT_TARGET_LINK_LAYER = 2
OPT_PREFIX_INFORMATION = 3
OPT_MTU = 5
OPT_RDNSS = 25
OPT_DNSSL = 31

_header = Struct("!BBH")
_words = Struct("!HH")
_word = Struct("!I")
_ra = Struct("!BBHII")
_prefix = Struct("!BBIII16s")
_mtu = Struct("!HI")
_lifetime = Struct("!HI")


# -- NDP options ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceLinkLayerAddress:
    """
    The sender's link-layer address (option 1): a 6-byte MAC on Ethernet.
    """

    address: bytes
    TYPE: ClassVar[int] = OPT_SOURCE_LINK_LAYER


@dataclass(frozen=True, slots=True)
class TargetLinkLayerAddress:
    """
    The target's link-layer address (option 2).
    """

    address: bytes
    TYPE: ClassVar[int] = OPT_TARGET_LINK_LAYER


@dataclass(frozen=True, slots=True)
class PrefixInformation:
    """
    A prefix for on-link determination and address autoconfiguration
    (option 3).  C{flags} holds L{PREFIX_ON_LINK} and L{PREFIX_AUTONOMOUS}
    (and any other bits as received); C{prefix} is 16 bytes.
    """

    prefixLength: int
    flags: int
    validLifetime: int
    preferredLifetime: int
    prefix: bytes
    TYPE: ClassVar[int] = OPT_PREFIX_INFORMATION

    @property
    def onLink(self):
        return bool(self.flags & PREFIX_ON_LINK)

    @property
    def autonomous(self):
        return bool(self.flags & PREFIX_AUTONOMOUS)


@dataclass(frozen=True, slots=True)
class MTUOption:
    """
    The link MTU (option 5).
    """

    mtu: int
    TYPE: ClassVar[int] = OPT_MTU


@dataclass(frozen=True, slots=True)
class RecursiveDNSServers:
    """
    Recursive DNS servers (RFC 8106 option 25): C{servers} are 16-byte
    packed addresses, at least one.
    """

    lifetime: int
    servers: tuple
    TYPE: ClassVar[int] = OPT_RDNSS


@dataclass(frozen=True, slots=True)
class DNSSearchList:
    """
    The DNS search list (RFC 8106 option 31): C{domains} as text.
    """

    lifetime: int
    domains: tuple
    TYPE: ClassVar[int] = OPT_DNSSL


@dataclass(frozen=True, slots=True)
class NDPOption:
    """
    Any other option (the DAD nonce of RFC 7527, ...): its type and the
    bytes after the type and length.
    """

    type: int
    data: bytes


def _parseOption(type_, data):
    if type_ in (OPT_SOURCE_LINK_LAYER, OPT_TARGET_LINK_LAYER):
        kind = SourceLinkLayerAddress if type_ == OPT_SOURCE_LINK_LAYER else TargetLinkLayerAddress
        return kind(bytes(data))
    if type_ == OPT_PREFIX_INFORMATION:
        if len(data) != 30:
            raise MalformedError(f"prefix information of {len(data) + 2} bytes")
        prefixLength, flags, valid, preferred, _, prefix = _prefix.unpack(data)
        return PrefixInformation(prefixLength, flags, valid, preferred, prefix)
    if type_ == OPT_MTU:
        if len(data) != 6:
            raise MalformedError(f"MTU option of {len(data) + 2} bytes")
        return MTUOption(_mtu.unpack(data)[1])
    if type_ == OPT_RDNSS:
        if len(data) < 22 or (len(data) - 6) % 16:
            raise MalformedError(f"RDNSS option of {len(data) + 2} bytes")
        lifetime = _lifetime.unpack_from(data)[1]
        servers = tuple(bytes(data[i : i + 16]) for i in range(6, len(data), 16))
        return RecursiveDNSServers(lifetime, servers)
    if type_ == OPT_DNSSL:
        if len(data) < 14:
            raise MalformedError(f"DNSSL option of {len(data) + 2} bytes")
        lifetime = _lifetime.unpack_from(data)[1]
        return DNSSearchList(lifetime, tuple(decodeDomainNames(data[6:])))
    return NDPOption(type_, bytes(data))


def parseNDPOptions(data):
    """
    The options in C{data}, in order.

    @raise TruncatedError: an option runs past the end.
    @raise MalformedError: an option of length zero (RFC 4861 4.6), or a
        known option of the wrong length or contents.
    """
    options = []
    offset = 0
    n = len(data)
    while offset < n:
        if offset + 2 > n:
            raise TruncatedError(f"NDP option at {offset} has no length")
        type_, units = data[offset], data[offset + 1]
        if units == 0:
            raise MalformedError(f"NDP option {type_} of length zero")
        end = offset + units * 8
        if end > n:
            raise TruncatedError(f"NDP option {type_} of {units * 8} bytes at {offset} in {n}")
        options.append(_parseOption(type_, data[offset + 2 : end]))
        offset = end
    return tuple(options)


def _optionBody(option):
    if isinstance(option, (SourceLinkLayerAddress, TargetLinkLayerAddress)):
        return option.TYPE, option.address
    if isinstance(option, PrefixInformation):
        return option.TYPE, _prefix.pack(
            option.prefixLength,
            option.flags,
            option.validLifetime,
            option.preferredLifetime,
            0,
            option.prefix,
        )
    if isinstance(option, MTUOption):
        return option.TYPE, _mtu.pack(0, option.mtu)
    if isinstance(option, RecursiveDNSServers):
        if not option.servers:
            raise MalformedError("RDNSS option without servers")
        return option.TYPE, _lifetime.pack(0, option.lifetime) + b"".join(option.servers)
    if isinstance(option, DNSSearchList):
        if not option.domains:
            raise MalformedError("DNSSL option without domains")
        return option.TYPE, _lifetime.pack(0, option.lifetime) + encodeDomainNames(option.domains)
    return option.type, option.data


def emitNDPOptions(options):
    """
    The bytes of C{options}, each padded with zeros to a multiple of 8.

    @raise MalformedError: an option over 2,040 bytes, or an RDNSS or DNSSL
        option with nothing in it.
    """
    out = bytearray()
    for option in options:
        type_, body = _optionBody(option)
        units = (len(body) + 2 + 7) // 8
        if units > 255:
            raise MalformedError(f"NDP option {type_} of {len(body) + 2} bytes")
        out += bytes((type_, units))
        out += body
        out += bytes(units * 8 - 2 - len(body))
    return bytes(out)


# -- messages ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ICMPv6Message:
    """
    A message of a type not modelled here (MLD, redirect, ...).

    @ivar body: everything after the type, code and checksum.
    """

    type: int
    code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class EchoRequest:
    ident: int
    sequence: int
    data: bytes = b""
    code: int = 0
    TYPE: ClassVar[int] = ECHO_REQUEST


@dataclass(frozen=True, slots=True)
class EchoReply:
    ident: int
    sequence: int
    data: bytes = b""
    code: int = 0
    TYPE: ClassVar[int] = ECHO_REPLY


@dataclass(frozen=True, slots=True)
class DestinationUnreachable:
    """
    @ivar invoking: the start of the packet that caused it, IPv6 header
        first.
    """

    code: int
    invoking: bytes
    TYPE: ClassVar[int] = DEST_UNREACHABLE


@dataclass(frozen=True, slots=True)
class PacketTooBig:
    mtu: int
    invoking: bytes
    code: int = 0
    TYPE: ClassVar[int] = PACKET_TOO_BIG


@dataclass(frozen=True, slots=True)
class TimeExceeded:
    code: int
    invoking: bytes
    TYPE: ClassVar[int] = TIME_EXCEEDED


@dataclass(frozen=True, slots=True)
class ParameterProblem:
    """
    @ivar pointer: the offset in C{invoking} of the field in error.
    """

    code: int
    pointer: int
    invoking: bytes
    TYPE: ClassVar[int] = PARAMETER_PROBLEM


@dataclass(frozen=True, slots=True)
class RouterSolicitation(WithOptions):
    options: tuple = ()
    TYPE: ClassVar[int] = ROUTER_SOLICITATION


@dataclass(frozen=True, slots=True)
class RouterAdvertisement(WithOptions):
    """
    @ivar curHopLimit: the hop limit hosts should use (0: unspecified).
    @ivar flags: L{RA_MANAGED}, L{RA_OTHER} and the other bits as sent.
    @ivar routerLifetime: seconds as a default router (0: not one).
    """

    curHopLimit: int
    flags: int
    routerLifetime: int
    reachableTime: int = 0
    retransTimer: int = 0
    options: tuple = ()
    TYPE: ClassVar[int] = ROUTER_ADVERTISEMENT

    @property
    def managed(self):
        return bool(self.flags & RA_MANAGED)

    @property
    def other(self):
        return bool(self.flags & RA_OTHER)


@dataclass(frozen=True, slots=True)
class NeighborSolicitation(WithOptions):
    """
    @ivar target: the 16-byte address asked about.
    """

    target: bytes
    options: tuple = ()
    TYPE: ClassVar[int] = NEIGHBOR_SOLICITATION


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement(WithOptions):
    """
    @ivar flags: L{NA_ROUTER}, L{NA_SOLICITED}, L{NA_OVERRIDE} (the other
        29 bits of the word are reserved: zero on send, ignored on
        receive).
    """

    target: bytes
    flags: int
    options: tuple = ()
    TYPE: ClassVar[int] = NEIGHBOR_ADVERTISEMENT

    @property
    def router(self):
        return bool(self.flags & NA_ROUTER)

    @property
    def solicited(self):
        return bool(self.flags & NA_SOLICITED)

    @property
    def override(self):
        return bool(self.flags & NA_OVERRIDE)


def _ndp(code, body, minimum, what):
    if code != 0:
        raise MalformedError(f"{what} with code {code}")
    if len(body) < minimum:
        raise TruncatedError(f"{what} of {len(body) + 4} bytes")


def _parseBody(type_, code, body):
    if type_ in (ECHO_REQUEST, ECHO_REPLY):
        if len(body) < 4:
            raise TruncatedError(f"ICMPv6 echo of {len(body) + 4} bytes")
        ident, sequence = _words.unpack_from(body)
        kind = EchoRequest if type_ == ECHO_REQUEST else EchoReply
        return kind(ident, sequence, bytes(body[4:]), code)
    if type_ in (DEST_UNREACHABLE, PACKET_TOO_BIG, TIME_EXCEEDED, PARAMETER_PROBLEM):
        if len(body) < 4:
            raise TruncatedError(f"ICMPv6 error of {len(body) + 4} bytes")
        invoking = bytes(body[4:])
        if type_ == DEST_UNREACHABLE:
            return DestinationUnreachable(code, invoking)
        if type_ == TIME_EXCEEDED:
            return TimeExceeded(code, invoking)
        value = _word.unpack_from(body)[0]
        if type_ == PACKET_TOO_BIG:
            return PacketTooBig(value, invoking, code)
        return ParameterProblem(code, value, invoking)
    if type_ == ROUTER_SOLICITATION:
        _ndp(code, body, 4, "router solicitation")
        return RouterSolicitation(parseNDPOptions(body[4:]))
    if type_ == ROUTER_ADVERTISEMENT:
        _ndp(code, body, 12, "router advertisement")
        hopLimit, flags, lifetime, reachable, retrans = _ra.unpack_from(body)
        return RouterAdvertisement(
            hopLimit, flags, lifetime, reachable, retrans, parseNDPOptions(body[12:])
        )
    if type_ == NEIGHBOR_SOLICITATION:
        _ndp(code, body, 20, "neighbor solicitation")
        return NeighborSolicitation(bytes(body[4:20]), parseNDPOptions(body[20:]))
    if type_ == NEIGHBOR_ADVERTISEMENT:
        _ndp(code, body, 20, "neighbor advertisement")
        return NeighborAdvertisement(bytes(body[4:20]), body[0] & 0xE0, parseNDPOptions(body[20:]))
    return ICMPv6Message(type_, code, bytes(body))


def parseICMPv6(data, src, dst, verifyChecksum=True):
    """
    Parse an ICMPv6 message carried from packed C{src} to packed C{dst}.

    @return: the message of its type, or an L{ICMPv6Message}.
    @raise TruncatedError: shorter than the message's fixed part.
    @raise ChecksumError: the checksum does not verify.
    @raise MalformedError: a Neighbor Discovery message with a non-zero
        code or a bad option.
    """
    n = len(data)
    if n < 4:
        raise TruncatedError(f"ICMPv6 message of {n} bytes")
    if verifyChecksum:
        if onesComplementSum(data, ipv6PseudoHeaderSum(src, dst, NEXT_ICMPV6, n)) != 0xFFFF:
            raise ChecksumError("ICMPv6 checksum")
    type_, code, _ = _header.unpack_from(data)
    return _parseBody(type_, code, memoryview(data)[4:])


def _emitBody(message):
    if isinstance(message, (EchoRequest, EchoReply)):
        return (
            message.TYPE,
            message.code,
            _words.pack(message.ident, message.sequence) + message.data,
        )
    if isinstance(message, (DestinationUnreachable, TimeExceeded)):
        return message.TYPE, message.code, bytes(4) + message.invoking
    if isinstance(message, PacketTooBig):
        return message.TYPE, message.code, _word.pack(message.mtu) + message.invoking
    if isinstance(message, ParameterProblem):
        return message.TYPE, message.code, _word.pack(message.pointer) + message.invoking
    if isinstance(message, RouterSolicitation):
        return message.TYPE, 0, bytes(4) + emitNDPOptions(message.options)
    if isinstance(message, RouterAdvertisement):
        fixed = _ra.pack(
            message.curHopLimit,
            message.flags,
            message.routerLifetime,
            message.reachableTime,
            message.retransTimer,
        )
        return message.TYPE, 0, fixed + emitNDPOptions(message.options)
    if isinstance(message, NeighborSolicitation):
        return message.TYPE, 0, bytes(4) + message.target + emitNDPOptions(message.options)
    if isinstance(message, NeighborAdvertisement):
        flags = bytes((message.flags & 0xE0, 0, 0, 0))
        return message.TYPE, 0, flags + message.target + emitNDPOptions(message.options)
    return message.type, message.code, message.body


def emitICMPv6(message, src, dst):
    """
    The bytes of C{message} sent from packed C{src} to packed C{dst}, its
    checksum computed over the pseudo-header.
    """
    type_, code, body = _emitBody(message)
    length = 4 + len(body)
    csum = internetChecksum(
        body, ipv6PseudoHeaderSum(src, dst, NEXT_ICMPV6, length) + ((type_ << 8) | code)
    )
    return _header.pack(type_, code, csum) + body


def invokingPacket(packet):
    """
    As much of C{packet} (an IPv6 datagram, header first) as an error
    message may quote without exceeding the minimum MTU.
    """
    return bytes(packet[:MAX_INVOKING])
