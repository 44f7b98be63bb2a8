# -*- test-case-name: tests.test_watch -*-
"""
L{WatchedFile}: re-read a configuration file when it changes.

The file is polled (its size, modification time and inode) once a second,
which notices edits, atomic renames over it, and deletion alike, on any
file system.  A file that no longer parses keeps the previous value in
force and logs the problem; a file that disappears is reported as C{None}.
"""

import os

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from vpnkit.config import ConfigError
from vpnkit.log import logger

__all__ = ["WatchedFile", "readConfigFile"]

log = logger("vpnkit.watch")


def readConfigFile(path, parse):
    """
    Read and parse C{path} once.

    @raise ConfigError: unreadable or unparsable, naming the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    return parse(text, path)


class WatchedFile(Service):
    """
    @param parse: C{parse(text, path)} returning a value or raising
        L{ConfigError}.
    @param onChange: called with each new value, or C{None} when the file
        is gone.
    """

    def __init__(self, path, parse, onChange, clock=None, interval=1.0):
        if clock is None:
            from twisted.internet import reactor as clock
        self.path = path
        self._parse = parse
        self._onChange = onChange
        self._interval = interval
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._stamp = self._statStamp()

    def _statStamp(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def startService(self):
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def check(self):
        """
        Compare the file with what was last read, and re-read it if it
        changed.
        """
        stamp = self._statStamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            log.info("{path} was removed", path=self.path)
            self._onChange(None)
            return
        try:
            value = readConfigFile(self.path, self._parse)
        except ConfigError as e:
            log.error("keeping the previous configuration: {error}", error=str(e))
            return
        log.info("re-read {path}", path=self.path)
        self._onChange(value)
