"""
Tests for L{vpnkit.protocols.tcp.rtt}: the RFC 6298 estimator, with the
numbers worked out by hand.
"""

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols.tcp.rtt import RTTEstimator


class RTTEstimatorTests(SynchronousTestCase):
    def test_initial(self):
        """
        Before any sample the RTO is the initial value (RFC 6298 2.1) and
        nothing is smoothed yet.
        """
        rtt = RTTEstimator(initial=1.0)
        self.assertEqual((rtt.rto, rtt.srtt, rtt.rttvar, rtt.backoffs), (1.0, None, None, 0))

    def test_firstSample(self):
        """
        The first sample R: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR
        (RFC 6298 2.2): 0.5 s gives an RTO of 1.5 s.
        """
        rtt = RTTEstimator(initial=1.0, minimum=0.2, maximum=60.0)
        rtt.sample(0.5)
        self.assertEqual((rtt.srtt, rtt.rttvar, rtt.rto), (0.5, 0.25, 1.5))

    def test_secondSample(self):
        """
        Later samples: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| with the old
        SRTT, then SRTT = 7/8 SRTT + 1/8 R (RFC 6298 2.3).
        """
        rtt = RTTEstimator(minimum=0.0)
        rtt.sample(0.5)
        rtt.sample(0.1)
        # RTTVAR = 0.75 * 0.25 + 0.25 * 0.4 = 0.2875
        # SRTT = 0.875 * 0.5 + 0.125 * 0.1 = 0.45
        self.assertAlmostEqual(rtt.rttvar, 0.2875)
        self.assertAlmostEqual(rtt.srtt, 0.45)
        self.assertAlmostEqual(rtt.rto, 0.45 + 4 * 0.2875)

    def test_granularity(self):
        """
        The variance term is at least the clock granularity G: steady
        samples converge to SRTT + G, not SRTT.
        """
        rtt = RTTEstimator(minimum=0.0, granularity=0.01)
        for _ in range(200):
            rtt.sample(0.05)
        self.assertAlmostEqual(rtt.srtt, 0.05)
        self.assertAlmostEqual(rtt.rto, 0.06)

    def test_minimum(self):
        """
        A tiny RTT is clamped to the minimum RTO.
        """
        rtt = RTTEstimator(minimum=0.2)
        rtt.sample(0.001)
        self.assertEqual(rtt.rto, 0.2)

    def test_maximum(self):
        """
        A huge RTT is clamped to the maximum RTO.
        """
        rtt = RTTEstimator(maximum=60.0)
        rtt.sample(100.0)
        self.assertEqual(rtt.rto, 60.0)

    def test_backoffDoublesUpToMaximum(self):
        """
        Each backoff doubles the RTO (RFC 6298 5.5), never beyond the
        maximum.
        """
        rtt = RTTEstimator(initial=1.0, maximum=10.0)
        seen = []
        for _ in range(6):
            rtt.backoff()
            seen.append(rtt.rto)
        self.assertEqual(seen, [2.0, 4.0, 8.0, 10.0, 10.0, 10.0])
        self.assertEqual(rtt.backoffs, 6)

    def test_resetBackoff(self):
        """
        resetBackoff returns to the computed RTO (clamped); without a
        backoff it changes nothing.
        """
        rtt = RTTEstimator(minimum=0.2)
        rtt.sample(0.5)
        rtt.backoff()
        rtt.backoff()
        self.assertEqual(rtt.rto, 6.0)
        rtt.resetBackoff()
        self.assertEqual((rtt.rto, rtt.backoffs), (1.5, 0))
        rtt.resetBackoff()
        self.assertEqual(rtt.rto, 1.5)

    def test_resetBackoffBeforeSample(self):
        """
        Before any sample, resetting the backoff returns to the initial RTO.
        """
        rtt = RTTEstimator(initial=1.0)
        rtt.backoff()
        rtt.resetBackoff()
        self.assertEqual(rtt.rto, 1.0)

    def test_sampleClearsBackoff(self):
        """
        A new sample replaces a backed-off RTO with the computed one.
        """
        rtt = RTTEstimator(minimum=0.0)
        rtt.backoff()
        rtt.backoff()
        rtt.sample(0.25)
        self.assertEqual((rtt.rto, rtt.backoffs), (0.75, 0))
