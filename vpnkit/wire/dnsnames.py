# -*- test-case-name: tests.test_wire_icmpv6 -*-
"""
Lists of DNS names in uncompressed wire form (RFC 1035 3.1), as the DNS
Search List option of a Router Advertisement (RFC 8106 5.2) and the DHCPv6
Domain Search List option (RFC 3646, RFC 8415 10) carry them: each name a
run of length-prefixed labels ending in a zero byte, no compression
pointers.
"""

from vpnkit.wire import MalformedError

__all__ = ["encodeDomainNames", "decodeDomainNames"]

_MAX_NAME = 255


def encodeDomainNames(names):
    """
    The uncompressed wire form of C{names} (text, trailing dot optional).

    @raise MalformedError: an empty name or label, a label over 63 bytes or
        a name over 255, or a name that is not ASCII.
    """
    out = bytearray()
    for name in names:
        labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
        try:
            encoded = [label.encode("ascii") for label in labels]
        except UnicodeEncodeError:
            raise MalformedError(f"non-ASCII domain name {name!r}") from None
        if not all(0 < len(label) < 64 for label in encoded):
            raise MalformedError(f"bad label in domain name {name!r}")
        start = len(out)
        for label in encoded:
            out.append(len(label))
            out += label
        out.append(0)
        if len(out) - start > _MAX_NAME:
            raise MalformedError(f"domain name {name!r} over {_MAX_NAME} bytes")
    return bytes(out)


def decodeDomainNames(data):
    """
    The names in C{data}, without trailing dots.  A zero byte where a name
    would start ends the list: the rest is padding (RFC 8106 pads to a
    multiple of 8 bytes) and must be zeros.

    @raise MalformedError: a compression pointer or reserved label type, a
        name running past the end, a name over 255 bytes, a label that is
        not ASCII or holds a dot, or non-zero padding.
    """
    names = []
    offset = 0
    n = len(data)
    while offset < n:
        if data[offset] == 0:
            if any(data[offset:]):
                raise MalformedError("non-zero bytes after the domain names")
            break
        labels = []
        start = offset
        while True:
            if offset >= n:
                raise MalformedError("domain name runs past the end")
            length = data[offset]
            if length & 0xC0:
                raise MalformedError(f"label type {length >> 6} in an uncompressed name")
            if length == 0:
                offset += 1
                break
            label = bytes(data[offset + 1 : offset + 1 + length])
            if len(label) < length:
                raise MalformedError("domain name runs past the end")
            if not label.isascii() or b"." in label:
                raise MalformedError(f"label {label!r} cannot be written as text")
            labels.append(label.decode("ascii"))
            offset += 1 + length
        if offset - start > _MAX_NAME:
            raise MalformedError(f"domain name of {offset - start} bytes")
        names.append(".".join(labels))
    return names
