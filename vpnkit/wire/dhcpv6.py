# -*- test-case-name: tests.test_wire_dhcpv6 -*-
"""
DHCPv6 messages between clients and servers (RFC 8415 8) and the options
vpnkit reads or sends: client and server identifiers (DUIDs), IA_NA with
its IA Address and Status Code sub-options, the Option Request, Preference,
Elapsed Time, Rapid Commit, DNS Recursive Name Server and Domain Search
List options (RFC 3646).

Options are parsed into small frozen values in wire order; the ones not
modelled here stay L{DHCPv6Option}s with their bytes.  Sub-options are
parsed only where RFC 8415 puts them (IA_NA holds IA Addresses and a
status, an IA Address holds a status), so nesting is at most three deep
whatever the bytes say.  Relay messages (Relay-forward, Relay-reply) have
another layout and are not parsed: vpnkit is on the guests' own link.
"""

from dataclasses import dataclass, field
from struct import Struct
from typing import ClassVar

from vpnkit.wire import MalformedError, TruncatedError, WithOptions
from vpnkit.wire.dnsnames import decodeDomainNames, encodeDomainNames

__all__ = [
    "CLIENT_PORT",
    "SERVER_PORT",
    "ALL_DHCP_RELAY_AGENTS_AND_SERVERS",
    "SOLICIT",
    "ADVERTISE",
    "REQUEST",
    "CONFIRM",
    "RENEW",
    "REBIND",
    "REPLY",
    "RELEASE",
    "DECLINE",
    "RECONFIGURE",
    "INFORMATION_REQUEST",
    "RELAY_FORW",
    "RELAY_REPL",
    "MESSAGE_TYPE_NAMES",
    "OPTION_CLIENTID",
    "OPTION_SERVERID",
    "OPTION_IA_NA",
    "OPTION_IA_TA",
    "OPTION_IAADDR",
    "OPTION_ORO",
    "OPTION_PREFERENCE",
    "OPTION_ELAPSED_TIME",
    "OPTION_STATUS_CODE",
    "OPTION_RAPID_COMMIT",
    "OPTION_DNS_SERVERS",
    "OPTION_DOMAIN_LIST",
    "OPTION_IA_PD",
    "STATUS_SUCCESS",
    "STATUS_UNSPEC_FAIL",
    "STATUS_NO_ADDRS_AVAIL",
    "STATUS_NO_BINDING",
    "STATUS_NOT_ON_LINK",
    "STATUS_USE_MULTICAST",
    "STATUS_NO_PREFIX_AVAIL",
    "INFINITY",
    "DUID_LLT",
    "DUID_EN",
    "DUID_LL",
    "DUID_UUID",
    "DHCPv6Message",
    "ClientID",
    "ServerID",
    "IANA",
    "IAAddress",
    "OptionRequest",
    "Preference",
    "ElapsedTime",
    "StatusCode",
    "RapidCommit",
    "DNSServers",
    "DomainList",
    "DHCPv6Option",
    "parseDHCPv6",
    "emitDHCPv6",
    "duidLL",
    "duidLinkLayerAddress",
]

CLIENT_PORT = 546
SERVER_PORT = 547
ALL_DHCP_RELAY_AGENTS_AND_SERVERS = bytes.fromhex("ff020000000000000000000000010002")

SOLICIT = 1
ADVERTISE = 2
REQUEST = 3
CONFIRM = 4
RENEW = 5
REBIND = 6
REPLY = 7
RELEASE = 8
DECLINE = 9
RECONFIGURE = 10
INFORMATION_REQUEST = 11
RELAY_FORW = 12
RELAY_REPL = 13

MESSAGE_TYPE_NAMES = {
    SOLICIT: "SOLICIT",
    ADVERTISE: "ADVERTISE",
    REQUEST: "REQUEST",
    CONFIRM: "CONFIRM",
    RENEW: "RENEW",
    REBIND: "REBIND",
    REPLY: "REPLY",
    RELEASE: "RELEASE",
    DECLINE: "DECLINE",
    RECONFIGURE: "RECONFIGURE",
    INFORMATION_REQUEST: "INFORMATION-REQUEST",
    RELAY_FORW: "RELAY-FORW",
    RELAY_REPL: "RELAY-REPL",
}

OPTION_CLIENTID = 1
OPTION_SERVERID = 2
OPTION_IA_NA = 3
OPTION_IA_TA = 4
OPTION_IAADDR = 5
OPTION_ORO = 6
OPTION_PREFERENCE = 7
OPTION_ELAPSED_TIME = 8
OPTION_STATUS_CODE = 13
OPTION_RAPID_COMMIT = 14
OPTION_DNS_SERVERS = 23
OPTION_DOMAIN_LIST = 24
OPTION_IA_PD = 25

STATUS_SUCCESS = 0
STATUS_UNSPEC_FAIL = 1
STATUS_NO_ADDRS_AVAIL = 2
STATUS_NO_BINDING = 3
STATUS_NOT_ON_LINK = 4
STATUS_USE_MULTICAST = 5
STATUS_NO_PREFIX_AVAIL = 6

INFINITY = 0xFFFFFFFF

DUID_LLT = 1
DUID_EN = 2
DUID_LL = 3
DUID_UUID = 4
_HARDWARE_ETHERNET = 1

_option = Struct("!HH")
_iana = Struct("!III")
_iaaddr = Struct("!16sII")
_u16 = Struct("!H")


@dataclass(frozen=True, slots=True)
class ClientID:
    """
    The client's DUID (option 1).
    """

    duid: bytes
    CODE: ClassVar[int] = OPTION_CLIENTID


@dataclass(frozen=True, slots=True)
class ServerID:
    """
    The server's DUID (option 2).
    """

    duid: bytes
    CODE: ClassVar[int] = OPTION_SERVERID


@dataclass(frozen=True, slots=True)
class IANA(WithOptions):
    """
    An identity association for non-temporary addresses (option 3).

    @ivar options: its L{IAAddress}es and L{StatusCode}, and any other
        sub-options as L{DHCPv6Option}s.
    """

    iaid: int
    t1: int
    t2: int
    options: tuple = ()
    CODE: ClassVar[int] = OPTION_IA_NA


@dataclass(frozen=True, slots=True)
class IAAddress(WithOptions):
    """
    An address of an IA_NA (option 5), 16 bytes packed, with its lifetimes
    in seconds (L{INFINITY} for ever).
    """

    address: bytes
    preferredLifetime: int
    validLifetime: int
    options: tuple = ()
    CODE: ClassVar[int] = OPTION_IAADDR


@dataclass(frozen=True, slots=True)
class OptionRequest:
    """
    The option codes the client asks for (option 6).
    """

    codes: tuple
    CODE: ClassVar[int] = OPTION_ORO


@dataclass(frozen=True, slots=True)
class Preference:
    """
    The server's preference, 0 to 255 (option 7); 255 makes the client
    request at once.
    """

    value: int
    CODE: ClassVar[int] = OPTION_PREFERENCE


@dataclass(frozen=True, slots=True)
class ElapsedTime:
    """
    How long the client has been trying, in hundredths of a second
    (option 8).
    """

    value: int
    CODE: ClassVar[int] = OPTION_ELAPSED_TIME


@dataclass(frozen=True, slots=True)
class StatusCode:
    """
    A status (option 13) and its UTF-8 message (invalid bytes replaced).
    """

    code: int
    message: str = ""
    CODE: ClassVar[int] = OPTION_STATUS_CODE


@dataclass(frozen=True, slots=True)
class RapidCommit:
    """
    The two-message exchange (option 14, no data).
    """

    CODE: ClassVar[int] = OPTION_RAPID_COMMIT


@dataclass(frozen=True, slots=True)
class DNSServers:
    """
    Recursive DNS servers (option 23), 16-byte packed addresses.
    """

    servers: tuple
    CODE: ClassVar[int] = OPTION_DNS_SERVERS


@dataclass(frozen=True, slots=True)
class DomainList:
    """
    The domain search list (option 24), as text.
    """

    domains: tuple
    CODE: ClassVar[int] = OPTION_DOMAIN_LIST


@dataclass(frozen=True, slots=True)
class DHCPv6Option:
    """
    Any other option: its code and data.
    """

    code: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DHCPv6Message(WithOptions):
    """
    A client/server message.

    @ivar transactionID: 24 bits.
    @ivar options: the options in wire order.
    """

    msgType: int
    transactionID: int
    options: tuple = field(default=())

    @property
    def name(self):
        return MESSAGE_TYPE_NAMES.get(self.msgType, str(self.msgType))


def _parseStatus(data):
    if len(data) < 2:
        raise MalformedError(f"status code option of {len(data)} bytes")
    return StatusCode(_u16.unpack_from(data)[0], bytes(data[2:]).decode("utf-8", "replace"))


def _parseIANA(data):
    if len(data) < 12:
        raise MalformedError(f"IA_NA option of {len(data)} bytes")
    iaid, t1, t2 = _iana.unpack_from(data)
    return IANA(iaid, t1, t2, _parseOptions(data[12:], _IANA_OPTIONS))


def _parseIAAddress(data):
    if len(data) < 24:
        raise MalformedError(f"IA Address option of {len(data)} bytes")
    address, preferred, valid = _iaaddr.unpack_from(data)
    return IAAddress(address, preferred, valid, _parseOptions(data[24:], _IAADDR_OPTIONS))


def _parseDUID(kind):
    def parse(data):
        if len(data) < 2:
            raise MalformedError(f"DUID of {len(data)} bytes")
        return kind(bytes(data))

    return parse


def _parseORO(data):
    if len(data) % 2:
        raise MalformedError(f"option request of {len(data)} bytes")
    return OptionRequest(tuple(_u16.unpack_from(data, i)[0] for i in range(0, len(data), 2)))


def _parseFixed(kind, size):
    def parse(data):
        if len(data) != size:
            raise MalformedError(f"option {kind.CODE} of {len(data)} bytes")
        return kind(*([int.from_bytes(data, "big")] if size else []))

    return parse


def _parseDNSServers(data):
    if not data or len(data) % 16:
        raise MalformedError(f"DNS servers option of {len(data)} bytes")
    return DNSServers(tuple(bytes(data[i : i + 16]) for i in range(0, len(data), 16)))


def _parseDomainList(data):
    return DomainList(tuple(decodeDomainNames(data)))


_STATUS = {OPTION_STATUS_CODE: _parseStatus}
_IAADDR_OPTIONS = _STATUS
_IANA_OPTIONS = {OPTION_IAADDR: _parseIAAddress, **_STATUS}
_MESSAGE_OPTIONS = {
    OPTION_CLIENTID: _parseDUID(ClientID),
    OPTION_SERVERID: _parseDUID(ServerID),
    OPTION_IA_NA: _parseIANA,
    OPTION_ORO: _parseORO,
    OPTION_PREFERENCE: _parseFixed(Preference, 1),
    OPTION_ELAPSED_TIME: _parseFixed(ElapsedTime, 2),
    OPTION_RAPID_COMMIT: _parseFixed(RapidCommit, 0),
    OPTION_DNS_SERVERS: _parseDNSServers,
    OPTION_DOMAIN_LIST: _parseDomainList,
    **_STATUS,
}


def _parseOptions(data, parsers):
    options = []
    offset = 0
    n = len(data)
    while offset < n:
        if offset + 4 > n:
            raise TruncatedError(f"DHCPv6 option header at {offset} in {n} bytes")
        code, length = _option.unpack_from(data, offset)
        end = offset + 4 + length
        if end > n:
            raise TruncatedError(f"DHCPv6 option {code} of {length} bytes at {offset} in {n}")
        value = data[offset + 4 : end]
        parser = parsers.get(code)
        options.append(parser(value) if parser else DHCPv6Option(code, bytes(value)))
        offset = end
    return tuple(options)


def parseDHCPv6(data):
    """
    Parse a DHCPv6 message (the payload of a UDP datagram).

    @raise TruncatedError: under 4 bytes, or an option running past the
        end of the message or of the option holding it.
    @raise MalformedError: a relay message, or an option whose length or
        contents its format does not allow.
    """
    if len(data) < 4:
        raise TruncatedError(f"DHCPv6 message of {len(data)} bytes")
    msgType = data[0]
    if msgType in (RELAY_FORW, RELAY_REPL):
        raise MalformedError(f"DHCPv6 {MESSAGE_TYPE_NAMES[msgType]} is not supported")
    transactionID = int.from_bytes(data[1:4], "big")
    return DHCPv6Message(
        msgType, transactionID, _parseOptions(memoryview(data)[4:], _MESSAGE_OPTIONS)
    )


def _optionData(option):
    if isinstance(option, (ClientID, ServerID)):
        return option.duid
    if isinstance(option, IANA):
        return _iana.pack(option.iaid, option.t1, option.t2) + _emitOptions(option.options)
    if isinstance(option, IAAddress):
        return _iaaddr.pack(
            option.address, option.preferredLifetime, option.validLifetime
        ) + _emitOptions(option.options)
    if isinstance(option, OptionRequest):
        return b"".join(_u16.pack(code) for code in option.codes)
    if isinstance(option, Preference):
        return bytes((option.value,))
    if isinstance(option, ElapsedTime):
        return _u16.pack(option.value)
    if isinstance(option, StatusCode):
        return _u16.pack(option.code) + option.message.encode("utf-8")
    if isinstance(option, RapidCommit):
        return b""
    if isinstance(option, DNSServers):
        return b"".join(option.servers)
    if isinstance(option, DomainList):
        return encodeDomainNames(option.domains)
    return option.data


def _emitOptions(options):
    out = bytearray()
    for option in options:
        data = _optionData(option)
        if len(data) > 0xFFFF:
            raise MalformedError(f"DHCPv6 option of {len(data)} bytes")
        code = option.CODE if hasattr(option, "CODE") else option.code
        out += _option.pack(code, len(data))
        out += data
    return bytes(out)


def emitDHCPv6(message):
    """
    The bytes of C{message}.

    @raise MalformedError: an option too long for its 16-bit length, or a
        domain name that cannot be encoded.
    """
    return (
        bytes((message.msgType,))
        + message.transactionID.to_bytes(3, "big")
        + _emitOptions(message.options)
    )


def duidLL(mac):
    """
    The DUID-LL (RFC 8415 11.4) of an Ethernet MAC: type 3, hardware type
    1, the address.  vpnkit's server identifier, stable for its MAC.
    """
    return _u16.pack(DUID_LL) + _u16.pack(_HARDWARE_ETHERNET) + mac


def duidLinkLayerAddress(duid):
    """
    The Ethernet MAC inside a DUID-LLT or DUID-LL, or C{None} for other
    DUIDs (enterprise numbers, UUIDs, other hardware).
    """
    if len(duid) < 4:
        return None
    kind, hardware = _u16.unpack_from(duid)[0], _u16.unpack_from(duid, 2)[0]
    if hardware != _HARDWARE_ETHERNET:
        return None
    if kind == DUID_LL and len(duid) == 10:
        return bytes(duid[4:10])
    if kind == DUID_LLT and len(duid) == 14:
        return bytes(duid[8:14])
    return None
