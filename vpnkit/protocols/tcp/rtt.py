# -*- test-case-name: tests.test_tcp_rtt -*-
"""
Round-trip time estimation and the retransmission timeout (RFC 6298).
"""

__all__ = ["RTTEstimator"]


class RTTEstimator:
    """
    SRTT/RTTVAR smoothing with Karn's rule left to the caller (only
    segments that were never retransmitted are sampled) and exponential
    backoff.

    @ivar rto: the current retransmission timeout in seconds, backoff
        included.
    """

    def __init__(self, initial=1.0, minimum=0.2, maximum=60.0, granularity=0.001):
        self.srtt = None
        self.rttvar = None
        self._base = initial
        self._min = minimum
        self._max = maximum
        self._g = granularity
        self.backoffs = 0
        self.rto = initial

    def sample(self, rtt):
        """
        Feed one measured round trip (seconds); clears the backoff.
        """
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self._base = self.srtt + max(self._g, 4 * self.rttvar)
        self.backoffs = 0
        self.rto = min(max(self._base, self._min), self._max)

    def backoff(self):
        """
        Double the timeout after a retransmission timeout fired.
        """
        self.backoffs += 1
        self.rto = min(self.rto * 2, self._max)

    def resetBackoff(self):
        """
        New data was acknowledged: drop the backoff (RFC 6298 5.7 allows
        keeping it until a sample arrives; Linux resets it).
        """
        if self.backoffs:
            self.backoffs = 0
            self.rto = min(max(self._base, self._min), self._max)
