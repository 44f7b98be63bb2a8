# -*- test-case-name: tests.test_wire_ipv6 -*-
"""
The IPv6 header (RFC 8200) and its extension headers, and the addresses
every IPv6 layer needs: EUI-64 link-local addresses, solicited-node
multicast groups and their Ethernet addresses.

L{parseIPv6} reads the fixed 40-byte header and honours the payload length
(Ethernet padding is dropped).  L{parseExtensions} then walks the extension
headers of that payload: hop-by-hop and destination options are skipped
(an option whose type says "discard" raises L{UnrecognizedOptionError}), a
routing header with no segments left is skipped, type 0 raises
L{RoutingHeaderType0Error} (RFC 5095) and any other type with segments left
raises L{UnsupportedRoutingHeaderError}.  A fragment header ends the walk:
what follows it is fragment data, to be walked again after reassembly.

The errors that call for an ICMPv6 Parameter Problem carry its code and
pointer (an offset from the start of the IPv6 header).
"""

from dataclasses import dataclass
from ipaddress import IPv6Address
from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError

__all__ = [
    "HEADER_LENGTH",
    "MIN_MTU",
    "NEXT_HOP_BY_HOP",
    "NEXT_TCP",
    "NEXT_UDP",
    "NEXT_ROUTING",
    "NEXT_FRAGMENT",
    "NEXT_ICMPV6",
    "NEXT_NONE",
    "NEXT_DESTINATION",
    "UNSPECIFIED",
    "ALL_NODES",
    "ALL_ROUTERS",
    "IPv6Header",
    "FragmentHeader",
    "Extensions",
    "ExtensionHeaderError",
    "UnrecognizedOptionError",
    "RoutingHeaderType0Error",
    "UnsupportedRoutingHeaderError",
    "MisplacedHopByHopError",
    "parseIPv6",
    "emitIPv6",
    "buildHeader",
    "parseExtensions",
    "emitFragmentHeader",
    "eui64",
    "linkLocalAddress",
    "solicitedNodeAddress",
    "isSolicitedNodeAddress",
    "multicastMAC",
    "isMulticast",
    "isLinkLocal",
    "formatIPv6",
    "packIPv6",
]

HEADER_LENGTH = 40
# Every link carries at least this (RFC 8200 5); ICMPv6 errors fit in it.
MIN_MTU = 1280

NEXT_HOP_BY_HOP = 0
NEXT_TCP = 6
NEXT_UDP = 17
NEXT_ROUTING = 43
NEXT_FRAGMENT = 44
NEXT_ICMPV6 = 58
NEXT_NONE = 59
NEXT_DESTINATION = 60

UNSPECIFIED = bytes(16)
ALL_NODES = IPv6Address("ff02::1").packed
ALL_ROUTERS = IPv6Address("ff02::2").packed
_SOLICITED_NODE_PREFIX = IPv6Address("ff02::1:ff00:0").packed[:13]

# Parameter Problem codes (RFC 4443 3.4), carried by the errors below.
_ERRONEOUS_FIELD = 0
_UNRECOGNIZED_NEXT_HEADER = 1
_UNRECOGNIZED_OPTION = 2

# Options every node knows (RFC 8200 4.2): Pad1, PadN.  Everything else is
# unrecognized here and handled by the two high-order bits of its type.
_PAD1 = 0
_PADN = 1

_fixed = Struct("!IHBB16s16s")
_fragment = Struct("!BBHI")


# Not frozen, for the same reason as L{vpnkit.wire.ipv4.IPv4Header}: one
# is built per datagram.  Treat instances as immutable (C{replace}).
@dataclass(slots=True)
class IPv6Header:
    """
    The fixed IPv6 header.  Addresses are 16-byte packed values.

    @ivar payloadLength: as received; L{emitIPv6} recomputes it.
    @ivar nextHeader: the first extension header, or the upper-layer
        protocol when there is none.
    """

    trafficClass: int
    flowLabel: int
    payloadLength: int
    nextHeader: int
    hopLimit: int
    src: bytes
    dst: bytes


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """
    The fragment header (RFC 8200 4.5).

    @ivar offset: offset of the fragment data in bytes (a multiple of 8).
    @ivar more: the M flag.
    @ivar reserved: the 8-bit and 2-bit reserved fields as received
        (C{reserved8 << 2 | res2}), so that a header round-trips.
    """

    nextHeader: int
    offset: int
    more: bool
    ident: int
    reserved: int = 0

    @property
    def isAtomic(self):
        """
        Whether this is an atomic fragment (offset 0, no more fragments):
        a whole datagram to be processed in isolation (RFC 6946).
        """
        return self.offset == 0 and not self.more


# Not frozen, as IPv6Header: one is built for every datagram received.
@dataclass(slots=True)
class Extensions:
    """
    What the extension headers of a datagram say.

    @ivar upperLayer: the next header value after the last extension header
        walked: the upper-layer protocol, or (after a fragment header) the
        protocol of the fragmentable part.
    @ivar offset: where the upper-layer data starts in the payload.
    @ivar fragment: the L{FragmentHeader}, or C{None}.
    """

    upperLayer: int
    offset: int
    fragment: FragmentHeader | None = None


class ExtensionHeaderError(MalformedError):
    """
    An extension header that makes vpnkit discard the datagram, answering
    with an ICMPv6 Parameter Problem of C{code} that points at the byte at
    C{pointer} (counted from the start of the IPv6 header).

    @ivar icmp: whether the Parameter Problem is sent at all.
    @ivar unlessMulticast: the error is sent only when the datagram's
        destination was not a multicast address (the caller knows it).
    """

    code = _ERRONEOUS_FIELD
    icmp = True
    unlessMulticast = False

    def __init__(self, message, pointer):
        super().__init__(message)
        self.pointer = pointer


class UnrecognizedOptionError(ExtensionHeaderError):
    """
    A hop-by-hop or destination option vpnkit does not know whose type's
    two high-order bits say "discard" (01), "discard and report" (10) or
    "discard and report unless multicast" (11).
    """

    code = _UNRECOGNIZED_OPTION

    def __init__(self, message, pointer, action):
        super().__init__(message, pointer)
        self.icmp = action != 1
        self.unlessMulticast = action == 3


class RoutingHeaderType0Error(ExtensionHeaderError):
    """
    A type 0 routing header with segments left, deprecated by RFC 5095
    because it lets a source bounce traffic between hosts.
    """


class UnsupportedRoutingHeaderError(ExtensionHeaderError):
    """
    A routing header of a type vpnkit does not route with segments left
    (RFC 8200 4.4: discard, Parameter Problem at the routing type).
    """


class MisplacedHopByHopError(ExtensionHeaderError):
    """
    A hop-by-hop options header anywhere but straight after the IPv6
    header (RFC 8200 4.1): an unrecognized next header there.
    """

    code = _UNRECOGNIZED_NEXT_HEADER


def parseIPv6(packet):
    """
    Parse the fixed IPv6 header, honouring the payload length field: bytes
    beyond it (Ethernet padding) are not part of the payload.

    Jumbograms (payload length 0 with a jumbo option, RFC 2675) are not
    supported: a payload length of 0 means an empty payload.

    @return: C{(header, payload)}, the payload including any extension
        headers.
    @raise TruncatedError: fewer than 40 bytes, or fewer than the payload
        length says.
    @raise MalformedError: a version other than 6.
    """
    n = len(packet)
    if n < HEADER_LENGTH:
        raise TruncatedError(f"IPv6 datagram of {n} bytes")
    first, length, nextHeader, hopLimit, src, dst = _fixed.unpack_from(packet)
    if first >> 28 != 6:
        raise MalformedError(f"IP version {first >> 28}")
    end = HEADER_LENGTH + length
    if end > n:
        raise TruncatedError(f"IPv6 payload length {length} in {n - HEADER_LENGTH} bytes")
    header = IPv6Header(
        (first >> 20) & 0xFF, first & 0xFFFFF, length, nextHeader, hopLimit, src, dst
    )
    return header, packet[HEADER_LENGTH:end]


def emitIPv6(header, payload):
    """
    The bytes of a datagram: C{header} (with its payload length recomputed)
    followed by C{payload} (any extension headers included).

    @raise MalformedError: a payload over 65,535 bytes.
    """
    if len(payload) > 0xFFFF:
        raise MalformedError(f"IPv6 payload of {len(payload)} bytes")
    return (
        buildHeader(
            header.src,
            header.dst,
            header.nextHeader,
            len(payload),
            header.hopLimit,
            header.trafficClass,
            header.flowLabel,
        )
        + payload
    )


def buildHeader(src, dst, nextHeader, payloadLength, hopLimit=64, trafficClass=0, flowLabel=0):
    """
    A 40-byte IPv6 header: the fast path for every datagram vpnkit sends.
    """
    first = 0x60000000 | (trafficClass << 20) | flowLabel
    return _fixed.pack(first, payloadLength, nextHeader, hopLimit, src, dst)


def _skipOptions(payload, start, length, kind):
    """
    Walk the TLV options of a hop-by-hop or destination options header at
    C{payload[start:start + length]}; raise for an option that overruns its
    header or an unrecognized option whose type asks for the datagram to
    be discarded.  Pointers are relative to C{payload}.
    """
    position = start + 2
    end = start + length
    while position < end:
        type_ = payload[position]
        if type_ == _PAD1:
            position += 1
            continue
        if position + 2 > end or position + 2 + payload[position + 1] > end:
            raise ExtensionHeaderError(f"{kind} option at {position} overruns its header", position)
        action = type_ >> 6
        if type_ != _PADN and action:
            raise UnrecognizedOptionError(f"{kind} option type {type_:#04x}", position, action)
        position += 2 + payload[position + 1]


def parseExtensions(nextHeader, payload, headerOffset=HEADER_LENGTH):
    """
    Walk the extension headers at the start of C{payload}.

    @param nextHeader: the next header value that introduces C{payload}
        (the IPv6 header's, or after reassembly the fragment header's).
    @param headerOffset: where C{payload} starts, counted from the start
        of the IPv6 header (40, or after reassembly the end of the fragment
        header), for the pointers of the errors.
    @return: an L{Extensions}.
    @raise TruncatedError: an extension header runs past the payload.
    @raise ExtensionHeaderError: (a subclass) a header that makes the
        datagram be discarded, with the Parameter Problem code and pointer.
    """
    offset = 0
    n = len(payload)
    # The next header field that named the header at offset.
    naming = 6 if headerOffset == HEADER_LENGTH else headerOffset - 8
    while nextHeader in (NEXT_HOP_BY_HOP, NEXT_DESTINATION, NEXT_ROUTING):
        if nextHeader == NEXT_HOP_BY_HOP and naming != 6:
            raise MisplacedHopByHopError("hop-by-hop options header not first", naming)
        if offset + 8 > n:
            raise TruncatedError(f"extension header {nextHeader} at {offset} in {n} bytes")
        length = (payload[offset + 1] + 1) * 8
        if offset + length > n:
            raise TruncatedError(
                f"extension header {nextHeader} of {length} bytes at {offset} in {n}"
            )
        if nextHeader == NEXT_ROUTING:
            routingType = payload[offset + 2]
            segmentsLeft = payload[offset + 3]
            if segmentsLeft and routingType == 0:
                raise RoutingHeaderType0Error("routing header type 0", headerOffset + offset + 2)
            if segmentsLeft:
                raise UnsupportedRoutingHeaderError(
                    f"routing header type {routingType} with {segmentsLeft} segments left",
                    headerOffset + offset + 2,
                )
        else:
            kind = "hop-by-hop" if nextHeader == NEXT_HOP_BY_HOP else "destination"
            try:
                _skipOptions(payload, offset, length, kind)
            except ExtensionHeaderError as e:
                e.pointer += headerOffset
                raise
        naming = headerOffset + offset
        nextHeader = payload[offset]
        offset += length
    if nextHeader != NEXT_FRAGMENT:
        return Extensions(nextHeader, offset)
    if offset + 8 > n:
        raise TruncatedError(f"fragment header at {offset} in {n} bytes")
    following, reserved8, field, ident = _fragment.unpack_from(payload, offset)
    fragment = FragmentHeader(
        following,
        field & 0xFFF8,
        bool(field & 1),
        ident,
        (reserved8 << 2) | ((field >> 1) & 3),
    )
    return Extensions(following, offset + 8, fragment)


def emitFragmentHeader(fragment):
    """
    The 8 bytes of a fragment header.

    @raise MalformedError: an offset that is not a multiple of 8 below
        65,536.
    """
    if fragment.offset & 7 or not 0 <= fragment.offset <= 0xFFF8:
        raise MalformedError(f"fragment offset {fragment.offset}")
    return _fragment.pack(
        fragment.nextHeader,
        fragment.reserved >> 2,
        fragment.offset | ((fragment.reserved & 3) << 1) | int(fragment.more),
        fragment.ident,
    )


def eui64(mac):
    """
    The modified EUI-64 interface identifier of a 6-byte MAC (RFC 4291
    appendix A): C{ff:fe} in the middle, the universal/local bit inverted.
    """
    return bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def linkLocalAddress(mac):
    """
    The packed C{fe80::/64} address formed from C{mac} (RFC 4862 5.3).
    """
    return b"\xfe\x80" + bytes(6) + eui64(mac)


def solicitedNodeAddress(address):
    """
    The packed solicited-node multicast address of a packed address
    (C{ff02::1:ff} and its last 24 bits, RFC 4291 2.7.1).
    """
    return _SOLICITED_NODE_PREFIX + address[13:16]


def isSolicitedNodeAddress(address):
    """
    Whether a packed address is a solicited-node multicast address.
    """
    return address[:13] == _SOLICITED_NODE_PREFIX


def multicastMAC(address):
    """
    The Ethernet destination of a packed multicast address: C{33:33} and
    its last 32 bits (RFC 2464 7).
    """
    return b"\x33\x33" + address[12:16]


def isMulticast(address):
    """
    Whether a packed address is multicast (C{ff00::/8}).
    """
    return address[0] == 0xFF


def isLinkLocal(address):
    """
    Whether a packed address is link-local unicast (C{fe80::/10}).
    """
    return address[0] == 0xFE and address[1] & 0xC0 == 0x80


def formatIPv6(packed):
    """
    RFC 5952 text for a packed address.
    """
    return str(IPv6Address(packed))


def packIPv6(address):
    """
    Packed bytes for an L{IPv6Address} or its text.
    """
    return IPv6Address(address).packed
