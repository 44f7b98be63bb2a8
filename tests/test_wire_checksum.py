"""
Tests for L{vpnkit.wire.checksum}: the RFC 1071 sum, checked against a
word-by-word reference implementation, in pure Python and in the C
accelerator.

The accelerator's tests fail when it is not built, unless
C{VPNKIT_NO_SPEEDUPS=1} says it was left out on purpose (then they skip):
a broken build must not pass as a quiet skip.
"""

import os

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.wirefixtures import (
    DNS_QUERY,
    GATEWAY_IP,
    GUEST_IP,
    ICMP_ECHO_REQUEST,
    ipPacket,
    referenceSum,
    udpDatagram,
)
from vpnkit.wire import checksum
from vpnkit.wire.checksum import (
    checksumOK,
    finishChecksum,
    internetChecksum,
    onesComplementSum,
    pseudoHeaderSum,
    pythonFinishChecksum,
    pythonOnesComplementSum,
)

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None)

# RFC 1071 section 3: "Numerical Examples".
RFC1071_BYTES = bytes.fromhex("0001f203f4f5f6f7")
RFC1071_SUM = 0xDDF2


def referencePseudoHeader(src, dst, protocol, length):
    """
    The 12 bytes of the IPv4 pseudo-header (RFC 768), written out.
    """
    return src + dst + bytes((0, protocol)) + length.to_bytes(2, "big")


class ReferenceSumTests(SynchronousTestCase):
    """
    The reference implementation agrees with the RFC before it is used as
    an oracle.
    """

    def test_rfc1071Example(self):
        """
        The word-by-word sum of the RFC 1071 example bytes is 0xddf2.
        """
        self.assertEqual(referenceSum(RFC1071_BYTES), RFC1071_SUM)


class OnesComplementSumTests(SynchronousTestCase):
    """
    Tests for L{onesComplementSum}.
    """

    def test_rfc1071Example(self):
        """
        The RFC 1071 worked example (00 01 f2 03 f4 f5 f6 f7) sums to 0xddf2.
        """
        self.assertEqual(onesComplementSum(RFC1071_BYTES), RFC1071_SUM)

    def test_rfc1071ExampleChecksum(self):
        """
        The checksum of the RFC 1071 example is the complement of its sum,
        0x220d, and the data followed by that checksum verifies.
        """
        self.assertEqual(internetChecksum(RFC1071_BYTES), 0x220D)
        self.assertTrue(checksumOK(RFC1071_BYTES + b"\x22\x0d"))
        self.assertFalse(checksumOK(RFC1071_BYTES + b"\x22\x0c"))

    def test_empty(self):
        """
        The sum of no bytes is zero and its checksum is 0xffff.
        """
        self.assertEqual(onesComplementSum(b""), 0)
        self.assertEqual(internetChecksum(b""), 0xFFFF)

    def test_allZero(self):
        """
        Any run of zero bytes sums to zero ("+0"), not 0xffff.
        """
        for n in range(0, 9):
            self.assertEqual(onesComplementSum(bytes(n)), 0, n)

    def test_allOnes(self):
        """
        Any even run of 0xff bytes sums to 0xffff ("-0"), and so has a
        checksum of zero.
        """
        for n in range(2, 12, 2):
            self.assertEqual(onesComplementSum(b"\xff" * n), 0xFFFF, n)
            self.assertEqual(internetChecksum(b"\xff" * n), 0, n)

    def test_oddLengthPadsWithZero(self):
        """
        An odd-length buffer is summed as if a zero byte followed it: the
        last byte is the high half of its word.
        """
        self.assertEqual(onesComplementSum(b"\xab"), 0xAB00)
        self.assertEqual(onesComplementSum(b"\x00\x01\xff"), 0x0001 + 0xFF00)
        self.assertEqual(onesComplementSum(b"\xff"), 0xFF00)

    def test_endAroundCarry(self):
        """
        A carry out of bit 15 is added back in at bit 0.
        """
        self.assertEqual(onesComplementSum(b"\xff\xff\x00\x02"), 0x0002)
        self.assertEqual(onesComplementSum(b"\x80\x00\x80\x00"), 0x0001)

    def test_initial(self):
        """
        C{initial} is added into the sum, folded like any other carry.
        """
        self.assertEqual(onesComplementSum(b"\x00\x01", 0x0002), 0x0003)
        self.assertEqual(onesComplementSum(b"", 0x1_0000), 0x0001)
        self.assertEqual(onesComplementSum(b"", 0xFFFF), 0xFFFF)
        self.assertEqual(onesComplementSum(b"\xff\xff", 0x0001), 0x0001)

    def test_capturedIPv4Header(self):
        """
        The header of a datagram captured from a Linux guest verifies: its
        sum, checksum field included, is 0xffff.
        """
        header = ipPacket(ICMP_ECHO_REQUEST)[:20]
        self.assertEqual(onesComplementSum(header), 0xFFFF)
        self.assertTrue(checksumOK(header))
        withoutChecksum = header[:10] + b"\0\0" + header[12:]
        self.assertEqual(internetChecksum(withoutChecksum), 0x7F8B)

    @PROPERTY
    @given(
        data=st.binary(max_size=300),
        initial=st.one_of(st.just(0), st.integers(0, 2**34)),
    )
    @example(data=b"", initial=0)
    @example(data=b"\0" * 64, initial=0)
    @example(data=b"\0" * 63, initial=0)
    @example(data=b"\xff" * 64, initial=0)
    @example(data=b"\xff" * 63, initial=0)
    @example(data=b"\xff\xff", initial=0xFFFF)
    @example(data=b"\x00\x00", initial=0xFFFF)
    def test_matchesReference(self, data, initial):
        """
        For any bytes (even or odd length) and any initial partial sum,
        L{onesComplementSum} equals the word-by-word reference and
        L{internetChecksum} is its complement.
        """
        expected = referenceSum(data, initial)
        self.assertEqual(onesComplementSum(data, initial), expected)
        self.assertEqual(internetChecksum(data, initial), ~expected & 0xFFFF)

    @PROPERTY
    @given(
        words=st.integers(0, 150).flatmap(lambda n: st.binary(min_size=2 * n, max_size=2 * n)),
        fill=st.sampled_from([b"\x00", b"\xff"]),
    )
    def test_checksumVerifies(self, words, fill):
        """
        Even-length data followed by its own checksum always verifies, and
        so does the same data padded with all-zero or all-ones words.
        """
        data = words + fill * 6
        csum = internetChecksum(data)
        self.assertTrue(checksumOK(data + csum.to_bytes(2, "big")))
        self.assertEqual(onesComplementSum(data + csum.to_bytes(2, "big")), 0xFFFF)


class PseudoHeaderTests(SynchronousTestCase):
    """
    Tests for L{pseudoHeaderSum}.
    """

    def test_capturedUDP(self):
        """
        The pseudo-header sum plus the captured DNS query verifies: the
        guest kernel's UDP checksum is reproduced.
        """
        datagram = udpDatagram(DNS_QUERY)
        initial = pseudoHeaderSum(GUEST_IP, GATEWAY_IP, 17, len(datagram))
        self.assertEqual(onesComplementSum(datagram, initial), 0xFFFF)
        self.assertTrue(checksumOK(datagram, initial))
        self.assertFalse(checksumOK(datagram, initial + 1))

    @PROPERTY
    @given(
        src=st.binary(min_size=4, max_size=4),
        dst=st.binary(min_size=4, max_size=4),
        protocol=st.integers(0, 255),
        length=st.integers(0, 0xFFFF),
        data=st.binary(max_size=64),
    )
    def test_matchesWrittenOutHeader(self, src, dst, protocol, length, data):
        """
        Summing C{data} from L{pseudoHeaderSum} gives the same result as
        summing the 12 pseudo-header bytes written out in front of C{data}.
        """
        pseudo = referencePseudoHeader(src, dst, protocol, length)
        self.assertEqual(
            onesComplementSum(data, pseudoHeaderSum(src, dst, protocol, length)),
            referenceSum(pseudo + data),
        )


class PythonFallbackTests(SynchronousTestCase):
    """
    L{pythonOnesComplementSum}, the sum vpnkit uses when the C extension is
    not built, checked on its own whichever one is in use.
    """

    def test_rfc1071Example(self):
        """
        The RFC 1071 example sums to 0xddf2; odd lengths pad with a zero
        byte; all-zero data sums to zero and all-ones to 0xffff.
        """
        self.assertEqual(pythonOnesComplementSum(RFC1071_BYTES), RFC1071_SUM)
        self.assertEqual(pythonOnesComplementSum(b"\xab"), 0xAB00)
        self.assertEqual(pythonOnesComplementSum(bytes(7)), 0)
        self.assertEqual(pythonOnesComplementSum(b"\xff" * 8), 0xFFFF)

    @PROPERTY
    @given(
        data=st.binary(max_size=300),
        initial=st.one_of(st.just(0), st.integers(0, 2**34)),
    )
    @example(data=b"", initial=0)
    @example(data=b"\xff\xff", initial=0xFFFF)
    @example(data=b"\x00\x00", initial=0xFFFF)
    def test_matchesReference(self, data, initial):
        """
        For any bytes and any initial partial sum, the pure-Python sum
        equals the word-by-word reference.
        """
        self.assertEqual(pythonOnesComplementSum(data, initial), referenceSum(data, initial))


class FinishChecksumTests(SynchronousTestCase):
    """
    L{finishChecksum} (and L{pythonFinishChecksum}, checked on its own)
    complete a checksum left partial the way a NIC's driver does.
    """

    @PROPERTY
    @given(
        src=st.binary(min_size=4, max_size=4),
        dst=st.binary(min_size=4, max_size=4),
        header=st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n + 20, max_size=4 * n + 20)),
        payload=st.binary(max_size=300),
    )
    def test_matchesFullChecksum(self, src, dst, header, payload):
        """
        A TCP-like header whose checksum field holds the pseudo-header sum
        comes out exactly as if its checksum had been computed over the
        pseudo-header, the header and the payload, by the word-by-word
        reference.
        """
        ip = bytes(20)
        length = len(header) + len(payload)
        pseudo = pseudoHeaderSum(src, dst, 6, length) % 0xFFFF or 0xFFFF
        partial = ip + header[:16] + pseudo.to_bytes(2, "big") + header[18:]
        zeroed = header[:16] + b"\0\0" + header[18:]
        csum = ~referenceSum(referencePseudoHeader(src, dst, 6, length) + zeroed + payload) & 0xFFFF
        expected = ip + header[:16] + csum.to_bytes(2, "big") + header[18:]
        for finish in (finishChecksum, pythonFinishChecksum):
            self.assertEqual(finish(partial, 20, 16, payload), expected)

    def test_keepsTheRest(self):
        """
        Only the two checksum bytes change; the header before C{start} is
        not summed.
        """
        header = b"\xaa" * 4 + bytes(4)
        for finish in (finishChecksum, pythonFinishChecksum):
            self.assertEqual(finish(header, 4, 2, b"\x12\x34"), header[:6] + b"\xed\xcb")
            self.assertEqual(finish(header, 4, 2), header[:6] + b"\xff\xff")


class AcceleratorTests(SynchronousTestCase):
    """
    The optional C checksum (C{vpnkit._speedups}) gives exactly what the
    pure-Python one does.
    """

    def setUp(self):
        if checksum._cSum is None:
            if os.environ.get("VPNKIT_NO_SPEEDUPS") == "1":
                raise SkipTest("VPNKIT_NO_SPEEDUPS=1: the C extension vpnkit._speedups is left out")
            self.fail(
                "the C extension vpnkit._speedups is not built: `make install` builds it "
                "(it needs a C compiler and Python's headers); set VPNKIT_NO_SPEEDUPS=1 "
                "to test without it"
            )
        self.checksum = checksum

    def test_inUse(self):
        """
        When built, the C version is the one vpnkit uses.
        """
        self.assertIs(
            self.checksum.onesComplementSum, self.checksum._acceleratedOnesComplementSum
        )

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=3000), st.integers(min_value=0, max_value=2**40))
    @example(b"", 0)
    @example(b"\x00" * 9, 0)
    @example(b"\xff\xff", 0)
    @example(b"\x00\x01\xff\xfe", 0)
    @example(b"\xff", 0xFFFF)
    def test_agrees(self, data, initial):
        """
        C and Python agree on every input, odd lengths and all-zero data
        included, whatever the initial sum.
        """
        self.assertEqual(
            self.checksum._acceleratedOnesComplementSum(data, initial),
            self.checksum.pythonOnesComplementSum(data, initial),
        )

    def test_finishInUse(self):
        """
        When built, the C completion of partial checksums is the one vpnkit
        uses.
        """
        self.assertIs(self.checksum.finishChecksum, self.checksum._cFinish)

    @settings(max_examples=300, deadline=None)
    @given(
        st.integers(0, 30).flatmap(lambda n: st.binary(min_size=2 * n + 2, max_size=2 * n + 2)),
        st.integers(0, 20),
        st.binary(max_size=3000),
        st.booleans(),
    )
    @example(b"\0" * 20, 0, b"", False)
    @example(b"\0" * 20, 0, b"\0" * 7, True)
    @example(b"\xff" * 20, 16, b"\xff", False)
    def test_finishAgrees(self, header, start, payload, view):
        """
        C and Python complete partial checksums alike, for payloads of any
        length (odd ones included) given as bytes or as a view of a larger
        buffer.
        """
        start = min(start, len(header) - 2) & ~1
        offset = (len(header) - start - 2) & ~1
        if view:
            payload = memoryview(b"ab" + payload + b"cd")[2:-2]
        self.assertEqual(
            self.checksum._cFinish(header, start, offset, payload),
            self.checksum.pythonFinishChecksum(header, start, offset, bytes(payload)),
        )

    def test_finishRefusesFieldOutside(self):
        """
        The C completion refuses a field outside the header, or an odd
        number of header bytes to sum, as the Python one does.
        """
        for args in ((bytes(20), 0, 19), (bytes(20), -2, 4), (bytes(21), 0, 16), (bytes(20), 20, 0)):
            self.assertRaises(ValueError, self.checksum._cFinish, *args)
            self.assertRaises(ValueError, self.checksum.pythonFinishChecksum, *args)

    def test_largeAndUnaligned(self):
        """
        A 64 KiB buffer, and slices starting at odd offsets (memoryview
        input), agree too.
        """
        data = os.urandom(65535)
        for start in (0, 1, 3, 7):
            view = memoryview(data)[start:]
            self.assertEqual(
                self.checksum._acceleratedOnesComplementSum(view, 5),
                self.checksum.pythonOnesComplementSum(bytes(view), 5),
            )
