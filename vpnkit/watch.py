# -*- test-case-name: tests.test_watch -*-
"""
L{WatchedFile}: re-read a configuration file when it changes.

The file's content is compared once a second, which notices edits, atomic
renames over it, and deletion alike, on any file system.  A file that no longer parses keeps the previous value in
force and logs the problem; a file that disappears is reported as C{None}.
"""

import os

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from vpnkit.config import ConfigError
from vpnkit.log import logger

__all__ = ["WatchedFile", "readConfigFile", "readConfigText"]

log = logger("vpnkit.watch")


def readConfigText(path):
    """
    The text of C{path}.

    @raise ConfigError: unreadable, naming the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None


def readConfigFile(path, parse):
    """
    Read and parse C{path} once.

    @raise ConfigError: unreadable or unparsable, naming the file.
    """
    return parse(readConfigText(path), path)


class WatchedFile(Service):
    """
    @param parse: C{parse(text, path)} returning a value or raising
        L{ConfigError}.
    @param onChange: called with each new value, or C{None} when the file
        is gone.
    @param initialText: the text the current configuration was parsed
        from (so a change made between start-up and the first poll is not
        missed); read now when not given.
    """

    def __init__(self, path, parse, onChange, clock=None, interval=1.0, initialText=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.path = path
        self._parse = parse
        self._onChange = onChange
        self._interval = interval
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._text = initialText if initialText is not None else self._currentText()

    def _currentText(self):
        try:
            return readConfigText(self.path)
        except ConfigError:
            return None

    def startService(self):
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def check(self):
        """
        Compare the file's content with what was last read, and apply it if
        it changed.  Comparing content (a small file, once a second) rather
        than size and time stamps also catches an edit that keeps the size
        within one time-stamp tick.
        """
        if not os.path.exists(self.path):
            text = None
        else:
            try:
                text = readConfigText(self.path)
            except ConfigError as e:
                log.error("keeping the previous configuration: {error}", error=str(e))
                return
        if text == self._text:
            return
        self._text = text
        if text is None:
            log.info("{path} was removed", path=self.path)
            self._onChange(None)
            return
        try:
            value = self._parse(text, self.path)
        except ConfigError as e:
            log.error("keeping the previous configuration: {error}", error=str(e))
            return
        log.info("re-read {path}", path=self.path)
        self._onChange(value)
