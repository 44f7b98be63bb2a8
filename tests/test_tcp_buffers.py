"""
Tests for L{vpnkit.protocols.tcp.buffers}: the send buffer and the
out-of-order assembler, the latter also against a byte-by-byte model.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols.tcp.buffers import Assembler, SendBuffer

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)


class SendBufferTests(SynchronousTestCase):
    def test_appendPeek(self):
        """
        peek(offset, size) reads from the acknowledged point without
        consuming; past the end it is short.
        """
        buf = SendBuffer()
        buf.append(b"hello ")
        buf.append(b"world")
        self.assertEqual(len(buf), 11)
        self.assertEqual(buf.peek(0, 5), b"hello")
        self.assertEqual(buf.peek(6, 100), b"world")
        self.assertEqual(buf.peek(11, 5), b"")
        self.assertEqual(len(buf), 11)

    def test_drop(self):
        """
        drop(n) forgets the first n bytes; offsets then count from there.
        """
        buf = SendBuffer()
        buf.append(b"abcdef")
        buf.drop(2)
        self.assertEqual((len(buf), buf.peek(0, 10)), (4, b"cdef"))
        buf.drop(10)
        self.assertEqual(len(buf), 0)

    def test_clear(self):
        """
        clear empties the buffer.
        """
        buf = SendBuffer()
        buf.append(b"abc")
        buf.clear()
        self.assertEqual((len(buf), buf.peek(0, 3)), (0, b""))

    def test_peekReturnsBytes(self):
        """
        peek returns immutable bytes, unaffected by later changes.
        """
        buf = SendBuffer()
        buf.append(bytearray(b"abc"))
        piece = buf.peek(0, 3)
        buf.drop(3)
        buf.append(b"xyz")
        self.assertEqual((type(piece), piece), (bytes, b"abc"))


    def test_largeWritesNotCopied(self):
        """
        A large write is kept as the object written: peek of any part of it
        returns a read-only view of it, even after the bytes before it were
        acknowledged.
        """
        buf = SendBuffer()
        first = bytes(range(256)) * 16
        second = bytes(reversed(range(256))) * 16
        buf.append(first)
        buf.append(second)
        self.assertIs(buf.peek(0, len(first)).obj, first)
        piece = buf.peek(100, 1000)
        self.assertIsInstance(piece, memoryview)
        self.assertIs(piece.obj, first)
        self.assertTrue(piece.readonly)
        self.assertEqual(piece, first[100:1100])
        buf.drop(len(first) + 10)
        piece = buf.peek(0, 50)
        self.assertIs(piece.obj, second)
        self.assertEqual(piece, second[10:60])

    def test_acrossWrites(self):
        """
        A peek across the end of one write and into the next is one new
        bytes object with both parts.
        """
        buf = SendBuffer()
        buf.append(b"a" * 3000)
        buf.append(b"b" * 3000)
        self.assertEqual(buf.peek(2990, 20), b"a" * 10 + b"b" * 10)

    def test_mutableWriteCopied(self):
        """
        A large write of a mutable buffer is copied: changing the buffer
        afterwards changes nothing queued.
        """
        buf = SendBuffer()
        data = bytearray(b"x" * 5000)
        buf.append(data)
        data[:] = b"y" * 5000
        self.assertEqual(buf.peek(0, 5000), b"x" * 5000)

    def test_smallWritesKeepGrowing(self):
        """
        Small writes are gathered into one chunk and peeked as copies: a
        piece peeked earlier is unaffected by later writes and drops, and
        later writes are still taken while it is alive.
        """
        buf = SendBuffer()
        for i in range(100):
            buf.append(bytes([i]))
        piece = buf.peek(10, 20)
        buf.drop(15)
        buf.append(b"tail")
        self.assertEqual((type(piece), piece), (bytes, bytes(range(10, 30))))
        self.assertEqual(buf.peek(0, 200), bytes(range(15, 100)) + b"tail")
        self.assertEqual(len(buf), 89)

    @PROPERTY
    @given(
        st.lists(
            st.one_of(
                st.tuples(st.just("append"), st.integers(1, 5000)),
                st.tuples(st.just("drop"), st.integers(0, 6000)),
                st.tuples(st.just("peek"), st.integers(0, 9000), st.integers(0, 9000)),
            ),
            max_size=40,
        )
    )
    def test_model(self, operations):
        """
        Any sequence of appends, drops and peeks reads exactly what a plain
        byte string would hold.
        """
        buf = SendBuffer()
        model = b""
        counter = 0
        for op in operations:
            if op[0] == "append":
                data = bytes((counter + i) & 0xFF for i in range(op[1]))
                counter += op[1]
                buf.append(data)
                model += data
            elif op[0] == "drop":
                buf.drop(op[1])
                model = model[op[1] :]
            else:
                _, offset, size = op
                self.assertEqual(bytes(buf.peek(offset, size)), model[offset : offset + size])
            self.assertEqual(len(buf), len(model))
        self.assertEqual(bytes(buf.peek(0, len(model))), model)


class AssemblerTests(SynchronousTestCase):
    def test_empty(self):
        """
        A new assembler holds nothing.
        """
        a = Assembler()
        self.assertFalse(a)
        self.assertEqual((len(a), a.blocks(), a.bufferedBytes, a.advance(5)), (0, [], 0, b""))

    def test_separateRanges(self):
        """
        Disjoint segments are kept as sorted ranges, whatever their order of
        arrival.
        """
        a = Assembler()
        self.assertTrue(a.add(20, b"cc"))
        self.assertTrue(a.add(5, b"aa"))
        self.assertTrue(a.add(10, b"bb"))
        self.assertEqual(a.blocks(), [(5, 7), (10, 12), (20, 22)])
        self.assertEqual(a.bufferedBytes, 6)

    def test_mergeTouching(self):
        """
        A segment that touches a range on either side is merged into it.
        """
        a = Assembler()
        a.add(10, b"bb")
        a.add(12, b"cc")
        a.add(8, b"aa")
        self.assertEqual(a.blocks(), [(8, 14)])
        self.assertEqual(a.advance(8), b"aabbcc")

    def test_mergeBridging(self):
        """
        A segment that overlaps several ranges replaces them with one.
        """
        s = b"0123456789ab"
        a = Assembler()
        a.add(2, s[2:4])
        a.add(6, s[6:8])
        a.add(10, s[10:12])
        a.add(3, s[3:11])
        self.assertEqual(a.blocks(), [(2, 12)])
        self.assertEqual(a.advance(2), s[2:12])

    def test_duplicate(self):
        """
        The same segment twice, or one inside a range, changes nothing.
        """
        a = Assembler()
        a.add(4, b"abcd")
        a.add(4, b"abcd")
        a.add(5, b"bc")
        self.assertEqual((a.blocks(), a.bufferedBytes), ([(4, 8)], 4))

    def test_advanceDelivers(self):
        """
        advance(n) returns the bytes that now continue the stream, from
        inside a range if it started before the new point, and shifts the
        rest.
        """
        a = Assembler()
        a.add(3, b"defg")
        a.add(10, b"kl")
        self.assertEqual(a.advance(5), b"fg")
        self.assertEqual(a.blocks(), [(3, 5)])

    def test_advanceNotReached(self):
        """
        Advancing short of the first range delivers nothing and shifts it.
        """
        a = Assembler()
        a.add(10, b"xy")
        self.assertEqual(a.advance(4), b"")
        self.assertEqual(a.blocks(), [(6, 8)])

    def test_advancePastRanges(self):
        """
        Ranges entirely behind the new point are dropped.
        """
        a = Assembler()
        a.add(2, b"ab")
        a.add(6, b"cd")
        self.assertEqual(a.advance(20), b"")
        self.assertEqual(a.blocks(), [])

    def test_maxRanges(self):
        """
        A segment that would open a range beyond the limit is refused; one
        that merges into an existing range is still taken.
        """
        a = Assembler(maxRanges=2)
        self.assertTrue(a.add(10, b"a"))
        self.assertTrue(a.add(20, b"b"))
        self.assertFalse(a.add(30, b"c"))
        self.assertFalse(a.add(5, b"c"))
        self.assertTrue(a.add(11, b"a"))
        self.assertTrue(a.add(12, b"aaaaaaaa"))
        self.assertEqual(a.blocks(), [(10, 21)])
        self.assertTrue(a.add(30, b"c"))
        self.assertEqual(a.blocks(), [(10, 21), (30, 31)])

    def test_clear(self):
        """
        clear forgets every range.
        """
        a = Assembler()
        a.add(1, b"x")
        a.clear()
        self.assertEqual(a.blocks(), [])


# Long enough that no generated segment runs off its end.
STREAM = bytes(range(256)) * 16


@st.composite
def pieces(draw):
    """
    Segments of STREAM as (offset, length), offsets from 1.
    """
    return draw(
        st.lists(st.tuples(st.integers(1, 200), st.integers(1, 60)), min_size=1, max_size=25)
    )


class AssemblerModelTests(SynchronousTestCase):
    @PROPERTY
    @given(pieces(), st.lists(st.integers(0, 80), max_size=6))
    def test_matchesModel(self, segments, advances):
        """
        Against a model that records which byte offsets are held: the
        ranges are exactly the model's runs, sorted, disjoint and never
        touching, their content is the stream's, and advancing delivers the
        run that starts at the new point.
        """
        a = Assembler(maxRanges=1000)
        held = set()
        base = 0
        steps = list(advances)
        for offset, length in segments:
            data = STREAM[base + offset : base + offset + length]
            length = len(data)
            self.assertTrue(a.add(offset, data))
            held.update(range(offset, offset + length))
            if steps:
                n = steps.pop()
                out = a.advance(n)
                held = {h - n for h in held if h >= n}
                expected = 0
                while expected in held:
                    expected += 1
                self.assertEqual(out, STREAM[base + n : base + n + expected])
                held = {h - expected for h in held if h >= expected}
                base += n + expected
            self.checkModel(a, held, base)

    def checkModel(self, assembler, held, base):
        runs = []
        for h in sorted(held):
            if runs and runs[-1][1] == h:
                runs[-1][1] = h + 1
            else:
                runs.append([h, h + 1])
        blocks = assembler.blocks()
        self.assertEqual(blocks, [tuple(r) for r in runs])
        for (start, end), (_, data) in zip(blocks, assembler._ranges):
            self.assertEqual(data, STREAM[base + start : base + end])
        self.assertEqual(assembler.bufferedBytes, len(held))
