# -*- test-case-name: tests.test_wire_checksum -*-
"""
The Internet checksum (RFC 1071), the TCP/UDP pseudo-headers of IPv4 and
IPv6 (RFC 8200 8.1), and the completion of a checksum left partial for a
link without checksum offload.

The ones'-complement sum of 16-bit words equals the big-endian integer value
of the data modulo 0xFFFF (because 2**16 is 1 modulo 0xFFFF), so the sum is
computed with one C-level C{int.from_bytes} and one modulo instead of a Python
loop over words.
"""

__all__ = [
    "onesComplementSum",
    "pythonOnesComplementSum",
    "internetChecksum",
    "pseudoHeaderSum",
    "ipv6PseudoHeaderSum",
    "checksumOK",
    "finishChecksum",
    "pythonFinishChecksum",
]

_fromBytes = int.from_bytes


def pythonOnesComplementSum(data, initial=0):
    """
    L{onesComplementSum} in pure Python: the big-endian integer value of the
    data modulo 0xFFFF.
    """
    if len(data) & 1:
        value = _fromBytes(data, "big") << 8
    else:
        value = _fromBytes(data, "big")
    value += initial
    if not value:
        return 0
    value %= 0xFFFF
    return value or 0xFFFF


def _acceleratedOnesComplementSum(data, initial=0):
    value = _cSum(data) + initial
    if not value:
        return 0
    value %= 0xFFFF
    return value or 0xFFFF


try:
    from vpnkit._speedups import finishChecksum as _cFinish
    from vpnkit._speedups import onesSum as _cSum
except ImportError:  # the optional C extension was not built
    _cSum = _cFinish = None

if _cSum is None:
    onesComplementSum = pythonOnesComplementSum
else:
    onesComplementSum = _acceleratedOnesComplementSum

onesComplementSum.__doc__ = """
    The 16-bit ones'-complement sum of C{data} (padded with a zero byte when
    its length is odd), added to C{initial}.

    In C (C{vpnkit._speedups}) when the extension is built, else
    L{pythonOnesComplementSum}.

    @return: a value in C{range(0, 0x10000)}; zero only when every word (and
        C{initial}) is zero.
    """


def internetChecksum(data, initial=0):
    """
    The checksum to put in a header: the complement of L{onesComplementSum}.
    """
    return ~onesComplementSum(data, initial) & 0xFFFF


def pseudoHeaderSum(src, dst, protocol, length):
    """
    The partial sum of the IPv4 pseudo-header used by TCP and UDP.

    @param src: 4-byte packed source address.
    @param dst: 4-byte packed destination address.
    """
    return _fromBytes(src, "big") + _fromBytes(dst, "big") + protocol + length


def ipv6PseudoHeaderSum(src, dst, nextHeader, length):
    """
    The partial sum of the IPv6 upper-layer pseudo-header (RFC 8200 8.1)
    used by TCP, UDP and ICMPv6: source, destination, the 32-bit
    upper-layer packet length and the next header value.

    Like L{pseudoHeaderSum}, the addresses are added as whole integers:
    2**16 is 1 modulo 0xFFFF, so the sum that L{onesComplementSum} folds
    in equals the sum of their 16-bit words (and of the length's two
    words).

    @param src: 16-byte packed source address.
    @param dst: 16-byte packed final destination address.
    @param nextHeader: the upper-layer protocol (6, 17 or 58), not the
        next header of an extension header in between.
    """
    return _fromBytes(src, "big") + _fromBytes(dst, "big") + nextHeader + length


def checksumOK(data, initial=0):
    """
    Whether C{data} (with its checksum field in place) verifies.
    """
    return onesComplementSum(data, initial) == 0xFFFF


def pythonFinishChecksum(header, start, offset, payload=b""):
    """
    Complete a partial checksum in software, as the driver of a NIC
    without checksum offload does (Linux's C{skb_checksum_help}): the
    16-bit field at C{start + offset} of C{header} holds a partial sum
    (the pseudo-header's, see L{vpnkit.wire.tcp.emitTCPHeader}); the
    complement of the ones'-complement sum of everything from C{start} on,
    C{payload} (which follows C{header}) included, takes its place.

    L{finishChecksum} is this, or its C twin when the extension is built.

    @param header: bytes; C{header[start:]} has an even length.
    @return: C{header} with the checksum complete, as new bytes.
    @raise ValueError: the field is not inside C{header}, or
        C{header[start:]} has an odd length.
    """
    position = start + offset
    if start < 0 or offset < 0 or position + 2 > len(header) or (len(header) - start) & 1:
        raise ValueError("checksum field outside the header, or an odd header")
    csum = ~pythonOnesComplementSum(payload, pythonOnesComplementSum(header[start:])) & 0xFFFF
    return b"".join((header[:position], csum.to_bytes(2, "big"), header[position + 2 :]))


# Called for every TCP frame to a link without checksum offload: the C
# function itself, without a Python wrapper.
finishChecksum = pythonFinishChecksum if _cFinish is None else _cFinish
