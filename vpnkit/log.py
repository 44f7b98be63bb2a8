# -*- test-case-name: tests.test_log -*-
"""
Logging for vpnkit: L{twisted.logger} with one process-wide level switch.

Every module creates its logger with L{logger}; the events pass through a
level filter that C{--debug} (or C{VPNKIT_DEBUG}) lowers to C{debug}.
L{RateLimitedLog} keeps repeated warnings (a flood of bad frames, a full
connection table) to one line per interval.

Every line a guest (or any local client of a vpnkit socket) can cause goes
through a L{GuestLog}: one L{RateLimitedLog} per kind of line, so a guest
sending a thousand bad packets a second costs one line per kind and
interval, with a "similar messages suppressed" count, and a flood of one
kind never hides the first line of another.
"""

from twisted.python.failure import Failure
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    globalLogPublisher,
)

__all__ = ["logger", "setDebug", "RateLimitedLog", "GuestLog", "GUEST_LOG_INTERVAL"]

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_levels])


def logger(namespace):
    """
    A L{Logger} for C{namespace} whose debug events are dropped unless
    L{setDebug} turned them on.
    """
    return Logger(namespace=namespace, observer=_observer)


_debug = False


def setDebug(enabled):
    """
    Turn debug logging on or off for every vpnkit logger.
    """
    global _debug
    _debug = bool(enabled)
    _levels.setLogLevelForNamespace(None, LogLevel.debug if enabled else LogLevel.info)


def debugEnabled():
    """
    Whether debug events are kept: a plain flag, cheap enough to test
    before building a debug event on a hot path.
    """
    return _debug


GUEST_LOG_INTERVAL = 30.0


class RateLimitedLog:
    """
    Emit at most one event per C{interval} seconds, saying how many were
    suppressed in between.

    @param clock: the L{IReactorTime} that measures the interval; the
        global reactor (looked up on first use) when C{None}.
    @ivar suppressed: how many events were dropped since the last one shown.
    """

    def __init__(self, log, clock=None, interval=GUEST_LOG_INTERVAL):
        self._log = log
        self._clock = clock
        self._interval = interval
        self._last = None
        self.suppressed = 0

    def _now(self):
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock.seconds()

    def emit(self, level, format, **kwargs):
        """
        Emit an event at C{level} (a L{LogLevel}), unless one was emitted
        less than the interval ago.
        """
        now = self._now()
        if self._last is not None and now - self._last < self._interval:
            self.suppressed += 1
            return
        self._last = now
        suppressed, self.suppressed = self.suppressed, 0
        if suppressed:
            format += " ({suppressed} similar messages suppressed)"
            kwargs["suppressed"] = suppressed
        self._log.emit(level, format, **kwargs)

    def info(self, format, **kwargs):
        self.emit(LogLevel.info, format, **kwargs)

    def warn(self, format, **kwargs):
        self.emit(LogLevel.warn, format, **kwargs)

    def error(self, format, **kwargs):
        self.emit(LogLevel.error, format, **kwargs)


class GuestLog:
    """
    The one way to log something a guest can cause: each kind of line (its
    format string, a constant of the code, never text from the guest) has
    its own L{RateLimitedLog}.

    @param log: the module's L{Logger}.
    @param clock: the L{IReactorTime} for the intervals (the global reactor,
        looked up on first use, when C{None}).
    """

    def __init__(self, log, clock=None, interval=GUEST_LOG_INTERVAL):
        self._log = log
        self._clock = clock
        self._interval = interval
        self._kinds = {}

    def _limiter(self, format):
        limiter = self._kinds.get(format)
        if limiter is None:
            limiter = self._kinds[format] = RateLimitedLog(self._log, self._clock, self._interval)
        return limiter

    def suppressed(self, format):
        """
        How many lines of this kind were dropped since the last one shown.
        """
        limiter = self._kinds.get(format)
        return limiter.suppressed if limiter is not None else 0

    def info(self, format, **kwargs):
        self._limiter(format).emit(LogLevel.info, format, **kwargs)

    def warn(self, format, **kwargs):
        self._limiter(format).emit(LogLevel.warn, format, **kwargs)

    def error(self, format, **kwargs):
        self._limiter(format).emit(LogLevel.error, format, **kwargs)

    def failure(self, format, **kwargs):
        """
        Log the exception being handled, with its traceback.
        """
        self._limiter(format).emit(LogLevel.critical, format, log_failure=Failure(), **kwargs)
