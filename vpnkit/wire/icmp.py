# -*- test-case-name: tests.test_wire_icmp -*-
"""
ICMP for IPv4 (RFC 792): the common 8-byte header and echo messages.
"""

from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import ChecksumError, TruncatedError
from vpnkit.wire.checksum import internetChecksum, onesComplementSum

__all__ = [
    "ECHO_REPLY",
    "DEST_UNREACHABLE",
    "ECHO_REQUEST",
    "TIME_EXCEEDED",
    "ICMPMessage",
    "parseICMP",
    "emitICMP",
    "echoID",
]

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11

_header = Struct("!BBH4s")
HEADER_LENGTH = 8


@dataclass(frozen=True, slots=True)
class ICMPMessage:
    """
    An ICMP message.

    @ivar rest: the 4 type-specific header bytes (identifier and sequence
        number for echo; unused/next-hop MTU for unreachable).
    @ivar payload: everything after the 8-byte header.
    """

    type: int
    code: int
    checksum: int
    rest: bytes
    payload: bytes


def parseICMP(data, verifyChecksum=True):
    """
    Parse an ICMP message.

    @raise TruncatedError: fewer than 8 bytes.
    @raise ChecksumError: the checksum does not verify.
    """
    if len(data) < HEADER_LENGTH:
        raise TruncatedError(f"ICMP message of {len(data)} bytes")
    if verifyChecksum and onesComplementSum(data) != 0xFFFF:
        raise ChecksumError("ICMP checksum")
    type_, code, csum, rest = _header.unpack_from(data)
    return ICMPMessage(type_, code, csum, rest, data[HEADER_LENGTH:])


def emitICMP(message):
    """
    The bytes of C{message} with its checksum computed.
    """
    body = _header.pack(message.type, message.code, 0, message.rest) + message.payload
    csum = internetChecksum(body)
    return body[:2] + csum.to_bytes(2, "big") + body[4:]


def echoID(message):
    """
    The C{(identifier, sequence)} of an echo request or reply.
    """
    return int.from_bytes(message.rest[:2], "big"), int.from_bytes(message.rest[2:], "big")
