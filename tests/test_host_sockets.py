"""
Tests for L{vpnkit.host.sockets.parseExtendedError}: the C{struct
sock_extended_err} (and offender address) of C{IP_RECVERR} and
C{IPV6_RECVERR} control messages, decoded without a socket.  The kernel's
real messages are checked in C{tests/test_host_sockets_real.py}.
"""

import errno
import socket
import struct

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.host.sockets import parseExtendedError


def extendedError(eeErrno, origin, type_, code, info, offender=b""):
    """
    A C{sock_extended_err} as the kernel lays it out (native byte order),
    followed by C{offender}.
    """
    return struct.pack("=IBBBBII", eeErrno, origin, type_, code, 0, info, 0) + offender


def sockaddrIn(address):
    return struct.pack("=H", socket.AF_INET) + b"\0\0" + socket.inet_aton(address) + bytes(8)


def sockaddrIn6(address):
    return (
        struct.pack("=H", socket.AF_INET6)
        + b"\0\0"
        + bytes(4)
        + socket.inet_pton(socket.AF_INET6, address)
        + bytes(4)
    )


class ParseExtendedErrorTests(SynchronousTestCase):
    """
    Origins, fields and offenders of both families.
    """

    def test_icmp(self):
        """
        Origin 2 is C{"icmp"}, its offender a C{sockaddr_in}.
        """
        data = extendedError(errno.ECONNREFUSED, 2, 3, 3, 0, sockaddrIn("192.0.2.1"))
        self.assertEqual(
            parseExtendedError(data), ("icmp", errno.ECONNREFUSED, 3, 3, 0, "192.0.2.1")
        )

    def test_icmp6(self):
        """
        Origin 3 is C{"icmp6"}, its offender a C{sockaddr_in6} (the address
        after family, port and flow information), C{info} the MTU of a
        Packet Too Big.
        """
        data = extendedError(errno.EMSGSIZE, 3, 2, 0, 1280, sockaddrIn6("2001:db8::1"))
        self.assertEqual(
            parseExtendedError(data), ("icmp6", errno.EMSGSIZE, 2, 0, 1280, "2001:db8::1")
        )

    def test_local(self):
        """
        Origin 1 is C{"local"}: the kernel's offender is C{AF_UNSPEC}, so
        there is none.
        """
        data = extendedError(errno.EMSGSIZE, 1, 0, 0, 1280, bytes(28))
        self.assertEqual(parseExtendedError(data), ("local", errno.EMSGSIZE, 0, 0, 1280, None))

    def test_other(self):
        """
        Other origins (timestamping, zero-copy) are C{"other"}.
        """
        self.assertEqual(parseExtendedError(extendedError(0, 4, 0, 0, 0))[0], "other")

    def test_shortOffender(self):
        """
        A truncated offender address is no offender.
        """
        data = extendedError(errno.EHOSTUNREACH, 3, 3, 0, 0, sockaddrIn6("2001:db8::1")[:20])
        self.assertIsNone(parseExtendedError(data)[5])

    def test_short(self):
        """
        Fewer bytes than a C{sock_extended_err} raise C{ValueError}.
        """
        self.assertRaises(ValueError, parseExtendedError, bytes(15))
