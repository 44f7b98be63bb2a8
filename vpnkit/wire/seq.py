# -*- test-case-name: tests.test_wire_seq -*-
"""
TCP sequence-number arithmetic modulo 2**32 (RFC 793 3.3, RFC 1982).

Sequence numbers are plain C{int}s in C{range(2**32)}; every comparison
goes through these functions, never through C{<} directly (PyTCP's
mistake), and every addition is masked to 32 bits.  They are functions
rather than methods of an C{int} subclass because a TCP stack does several
per segment and building an object for each result costs more than the
arithmetic.  The TCP modules (L{vpnkit.protocols.tcp}) use L{seqSub}, the
signed distance, for all their comparisons.
"""

__all__ = ["MOD", "seqAdd", "seqSub", "seqLT", "seqLE", "seqGT", "seqGE", "seqMax", "seqMin"]

MOD = 1 << 32
_MASK = MOD - 1
_HALF = 1 << 31


def seqAdd(a, n):
    """
    C{a + n} modulo 2**32 (C{n} may be negative).
    """
    return (a + n) & _MASK


def seqSub(a, b):
    """
    The signed distance from C{b} to C{a}: how far C{a} is ahead of C{b}
    (negative when it is behind), in C{range(-2**31, 2**31)}.
    """
    d = (a - b) & _MASK
    return d - MOD if d >= _HALF else d


def seqLT(a, b):
    """
    C{a} comes before C{b}.
    """
    return 0 < ((b - a) & _MASK) < _HALF


def seqLE(a, b):
    return ((b - a) & _MASK) < _HALF


def seqGT(a, b):
    return 0 < ((a - b) & _MASK) < _HALF


def seqGE(a, b):
    return ((a - b) & _MASK) < _HALF


def seqMax(a, b):
    return b if seqLT(a, b) else a


def seqMin(a, b):
    return a if seqLT(a, b) else b
