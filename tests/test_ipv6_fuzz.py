"""
Fuzzing the IPv6 entry points that take guests' bytes: a stack's switch,
IPv6, ICMPv6 and DHCPv6 layers (every frame of the captured Linux guest,
truncated, mutated or random, from a guest port), and L{segmentTCPv6}.

As C{tests/test_wire_fuzz.py}: nothing raises out of a layer, whatever
the bytes; a wire function returns or raises a L{ParseError}.  Hypothesis
runs derandomized with no example database.
"""

from hypothesis import given
from twisted.trial.unittest import SynchronousTestCase

from tests.fakesockets import FakeDatagramSockets
from tests.helpers import makeStack
from tests.ipv6fixtures import FRAGMENTS, FRAMES
from tests.test_wire_fuzz import FUZZ, inputs
from vpnkit.wire import ParseError
from vpnkit.wire.gso import segmentTCPv6

IPV6_FRAMES = [frame for frame in FRAMES if frame[12:14] == b"\x86\xdd"]


class StackFuzzTests(SynchronousTestCase):
    """
    A guest sending anything as IPv6 never breaks the stack.
    """

    @FUZZ
    @given(frame=inputs(IPV6_FRAMES, maxSize=300, boundaries=[14, 54, 62, 78]))
    def test_guestFrames(self, frame):
        """
        Any frame with the IPv6 EtherType, from the first guest (whose MAC
        the capture's guest had), is handled without an exception, before
        and after the stack's clock runs out every timer.
        """
        stack, (guest,) = makeStack(1, sockets=FakeDatagramSockets())
        frame = frame[:12] + b"\x86\xdd" + frame[14:] if len(frame) >= 14 else frame
        guest.send(frame)
        for fragment in FRAGMENTS[:1]:
            guest.send(fragment)
        stack.reactor.advance(61)
        stack.stop()
        self.assertEqual(stack.reactor.getDelayedCalls(), [])


class SegmentFuzzTests(SynchronousTestCase):
    @FUZZ
    @given(frame=inputs(IPV6_FRAMES, maxSize=300, boundaries=[14, 54, 74]))
    def test_segmentTCPv6(self, frame):
        """
        L{segmentTCPv6} returns frames that fit, or raises a
        L{ParseError}.
        """
        try:
            pieces = segmentTCPv6(frame, 200)
        except ParseError:
            return
        self.assertTrue(all(len(piece) <= 200 for piece in pieces))
