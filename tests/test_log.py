"""
Tests for L{vpnkit.log}: the process-wide debug switch,
L{RateLimitedLog} and L{GuestLog}.
"""

from twisted.internet import task
from twisted.logger import LogLevel, Logger, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.log import GuestLog, RateLimitedLog, debugEnabled, logger, setDebug


class DebugSwitchTests(SynchronousTestCase):
    """
    vpnkit's loggers drop debug events unless L{setDebug} turned them on.
    """

    def setUp(self):
        self.addCleanup(setDebug, debugEnabled())
        setDebug(False)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.log = logger("vpnkit.test_log")

    def mine(self):
        return [
            (e["log_level"], formatEvent(e))
            for e in self.events
            if e.get("log_namespace") == "vpnkit.test_log"
        ]

    def test_debugFilteredByDefault(self):
        """
        With debug off, debug events are dropped and info and above pass.
        """
        self.log.debug("hidden {n}", n=1)
        self.log.info("shown {n}", n=2)
        self.log.warn("warned")
        self.log.error("failed")
        self.assertEqual(
            self.mine(),
            [(LogLevel.info, "shown 2"), (LogLevel.warn, "warned"), (LogLevel.error, "failed")],
        )
        self.assertFalse(debugEnabled())

    def test_setDebug(self):
        """
        C{setDebug(True)} lets debug events through for every vpnkit
        logger, including ones created before the switch;
        C{setDebug(False)} hides them again.
        """
        other = logger("vpnkit.test_log")
        setDebug(True)
        self.assertTrue(debugEnabled())
        self.log.debug("visible {n}", n=1)
        other.debug("also visible")
        setDebug(False)
        self.log.debug("hidden again")
        self.assertEqual(
            self.mine(), [(LogLevel.debug, "visible 1"), (LogLevel.debug, "also visible")]
        )

    def test_namespaceKept(self):
        """
        Events carry the namespace the logger was created with.
        """
        logger("vpnkit.somewhere").info("x")
        self.assertIn("vpnkit.somewhere", [e.get("log_namespace") for e in self.events])


class RateLimitedLogTests(SynchronousTestCase):
    """
    L{RateLimitedLog} emits at most one warning per interval and says how
    many it suppressed.
    """

    def setUp(self):
        self.events = []
        self.clock = task.Clock()
        self.limited = RateLimitedLog(Logger(namespace="t", observer=self.events.append), self.clock, interval=30)

    def texts(self):
        return [formatEvent(e) for e in self.events]

    def test_firstEmitted(self):
        """
        The first warning is emitted as is, at warn level.
        """
        self.limited.warn("bad frame on {link}", link="vmnet:a")
        self.assertEqual(self.texts(), ["bad frame on vmnet:a"])
        self.assertEqual(self.events[0]["log_level"], LogLevel.warn)
        self.assertEqual(self.limited.suppressed, 0)

    def test_suppressedWithinInterval(self):
        """
        Warnings within the interval are counted, not emitted; the next one
        after it says how many were suppressed, and the count restarts.
        """
        self.limited.warn("bad frame on {link}", link="a")
        for t in (0, 10, 29.9):
            self.clock.advance(t - self.clock.seconds())
            self.limited.warn("bad frame on {link}", link="b")
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.limited.suppressed, 3)
        self.clock.advance(0.1)
        self.limited.warn("bad frame on {link}", link="c")
        self.assertEqual(
            self.texts(), ["bad frame on a", "bad frame on c (3 similar messages suppressed)"]
        )
        self.assertEqual(self.events[1]["suppressed"], 3)
        self.assertEqual(self.limited.suppressed, 0)

    def test_noSuffixWithoutSuppression(self):
        """
        A warning after a quiet interval carries no suppression note.
        """
        self.limited.warn("one")
        self.clock.advance(30)
        self.limited.warn("two")
        self.assertEqual(self.texts(), ["one", "two"])

    def test_intervalFromLastEmitted(self):
        """
        The interval runs from the last emitted warning, not the last
        suppressed one.
        """
        self.limited.warn("one")
        self.clock.advance(20)
        self.limited.warn("two")
        self.clock.advance(10)
        self.limited.warn("three")
        self.assertEqual(self.texts(), ["one", "three (1 similar messages suppressed)"])


class GuestLogTests(SynchronousTestCase):
    """
    L{GuestLog} limits each kind of line (format string) on its own.
    """

    def setUp(self):
        self.events = []
        self.clock = task.Clock()
        self.log = GuestLog(Logger(namespace="t", observer=self.events.append), self.clock, interval=30)

    def texts(self):
        return [formatEvent(e) for e in self.events]

    def test_floodIsOneLine(self):
        """
        1,200 lines of one kind within the interval are one line; the next
        after the interval says how many were suppressed.
        """
        for n in range(1200):
            self.log.warn("invalid DNS packet from {source}", source=n)
        self.assertEqual(self.texts(), ["invalid DNS packet from 0"])
        self.assertEqual(self.log.suppressed("invalid DNS packet from {source}"), 1199)
        self.clock.advance(30)
        self.log.warn("invalid DNS packet from {source}", source="x")
        self.assertEqual(
            self.texts()[1], "invalid DNS packet from x (1199 similar messages suppressed)"
        )

    def test_kindsSeparate(self):
        """
        A flood of one kind does not hide the first line of another.
        """
        for _ in range(10):
            self.log.warn("declined {ip}", ip="a")
        self.log.warn("refusing vmnet client: {reason}", reason="bad magic")
        self.assertEqual(self.texts(), ["declined a", "refusing vmnet client: bad magic"])

    def test_levels(self):
        """
        info, warn and error keep their level.
        """
        self.log.info("i")
        self.log.warn("w")
        self.log.error("e")
        self.assertEqual(
            [e["log_level"] for e in self.events], [LogLevel.info, LogLevel.warn, LogLevel.error]
        )

    def test_globalReactorByDefault(self):
        """
        Without a clock the global reactor measures the interval (looked up
        when the first line is logged).
        """
        limited = GuestLog(Logger(namespace="t", observer=self.events.append))
        limited.info("one")
        limited.info("one")
        self.assertEqual(self.texts(), ["one"])
