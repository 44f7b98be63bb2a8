# -*- test-case-name: tests.test_log -*-
"""
Logging for vpnkit: L{twisted.logger} with one process-wide level switch.

Every module creates its logger with L{logger}; the events pass through a
level filter that C{--debug} (or C{VPNKIT_DEBUG}) lowers to C{debug}.
L{RateLimitedLog} keeps repeated warnings (a flood of bad frames, a full
connection table) to one line per interval.
"""

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    globalLogPublisher,
)

__all__ = ["logger", "setDebug", "RateLimitedLog"]

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


class RateLimitedLog:
    """
    Emit at most one event per C{interval} seconds, saying how many were
    suppressed in between.

    @ivar suppressed: how many events were dropped since the last one shown.
    """

    def __init__(self, log, clock, interval=30.0):
        self._log = log
        self._clock = clock
        self._interval = interval
        self._last = None
        self.suppressed = 0

    def warn(self, format, **kwargs):
        now = self._clock.seconds()
        if self._last is not None and now - self._last < self._interval:
            self.suppressed += 1
            return
        self._last = now
        suppressed, self.suppressed = self.suppressed, 0
        if suppressed:
            format += " ({suppressed} similar messages suppressed)"
            kwargs["suppressed"] = suppressed
        self._log.warn(format, **kwargs)
