"""
Tests for L{vpnkit.watch}: L{WatchedFile} and L{readConfigFile}.
"""

import json
import os

from twisted.internet import task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import tempDir
from vpnkit.config import ConfigError
from vpnkit.protocols.dhcp import parseDHCPSettings
from vpnkit.watch import WatchedFile, readConfigFile


class _FileMixin:
    def setUp(self):
        self.dir = tempDir(self)
        self.path = os.path.join(self.dir, "dhcp.json")
        # Every write gets its own modification time, a whole second
        # apart, so the tests never depend on the file system's timestamp
        # granularity.
        self.mtime = 1_700_000_000

    def write(self, text, path=None):
        path = path or self.path
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        self.mtime += 1
        os.utime(path, ns=(self.mtime * 10**9, self.mtime * 10**9))

    def writeDomain(self, domain):
        self.write(json.dumps({"domainName": domain}))


class WatchedFileTests(_FileMixin, SynchronousTestCase):
    """
    L{WatchedFile} polls its file once per interval and reports changes.
    """

    def setUp(self):
        super().setUp()
        self.writeDomain("a.example")
        self.clock = task.Clock()
        self.values = []
        self.watcher = WatchedFile(self.path, parseDHCPSettings, self.values.append, self.clock)
        self.watcher.startService()
        self.addCleanup(self.stop)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def stop(self):
        if self.watcher.running:
            self.watcher.stopService()

    def errors(self):
        return [
            formatEvent(e)
            for e in self.events
            if e.get("log_namespace") == "vpnkit.watch" and e.get("log_level") == LogLevel.error
        ]

    def test_unchanged(self):
        """
        An unchanged file is not reported.
        """
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.values, [])

    def test_sameSizeSameTimeEdit(self):
        """
        An edit that keeps the file's size and modification time (within one
        time-stamp tick) is still noticed: the content is compared.
        """
        before = os.stat(self.path)
        self.writeDomain("b.example")
        os.utime(self.path, ns=(before.st_atime_ns, before.st_mtime_ns))
        self.clock.advance(1)
        self.assertEqual(self.values, [("b.example", ())])

    def test_changeBeforeFirstPollWithInitialText(self):
        """
        Given the text the configuration came from, a change made before the
        first poll is still reported.
        """
        watcher = WatchedFile(
            self.path,
            parseDHCPSettings,
            self.values.append,
            self.clock,
            initialText='{"domainName": "old.example"}',
        )
        watcher.startService()
        self.addCleanup(watcher.stopService)
        self.clock.advance(1)
        self.assertIn(("a.example", ()), self.values)

    def test_change(self):
        """
        A change is reported with the newly parsed value at the next poll,
        one second later, and only once.
        """
        self.writeDomain("bb.example")
        self.clock.advance(0.5)
        self.assertEqual(self.values, [])
        self.clock.advance(0.5)
        self.assertEqual(self.values, [("bb.example", ())])
        self.clock.advance(1)
        self.assertEqual(self.values, [("bb.example", ())])

    def test_sameSizeChange(self):
        """
        An edit that keeps the size but changes the modification time is
        noticed.
        """
        self.writeDomain("b.example")
        self.clock.advance(1)
        self.assertEqual(self.values, [("b.example", ())])

    def test_renameOver(self):
        """
        A new file renamed over the watched one (how editors and Docker
        Desktop save) is noticed.
        """
        other = os.path.join(self.dir, "new.json")
        with open(other, "w") as f:
            f.write(json.dumps({"domainName": "c.example"}))
        os.utime(other, ns=(self.mtime * 10**9,) * 2)
        os.replace(other, self.path)
        self.clock.advance(1)
        self.assertEqual(self.values, [("c.example", ())])

    def test_unparsable(self):
        """
        Content that does not parse keeps the previous value (no call) and
        logs an error naming the file; fixing the file reports the new value.
        """
        self.write("{broken")
        self.clock.advance(1)
        self.assertEqual(self.values, [])
        (error,) = self.errors()
        self.assertIn(self.path, error)
        self.assertIn("keeping the previous configuration", error)
        self.clock.advance(1)
        self.assertEqual(len(self.errors()), 1)
        self.writeDomain("d.example")
        self.clock.advance(1)
        self.assertEqual(self.values, [("d.example", ())])

    def test_deleteAndRecreate(self):
        """
        Deletion is reported as C{None}; re-creation as the new value.
        """
        os.unlink(self.path)
        self.clock.advance(1)
        self.assertEqual(self.values, [None])
        self.clock.advance(1)
        self.assertEqual(self.values, [None])
        self.writeDomain("e.example")
        self.clock.advance(1)
        self.assertEqual(self.values, [None, ("e.example", ())])

    def test_stop(self):
        """
        Once stopped, nothing is polled any more.
        """
        self.watcher.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.writeDomain("f.example")
        self.clock.advance(5)
        self.assertEqual(self.values, [])

    def test_interval(self):
        """
        The poll interval is configurable.
        """
        values = []
        watcher = WatchedFile(self.path, parseDHCPSettings, values.append, self.clock, interval=5)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        self.writeDomain("g.example")
        self.clock.advance(4.9)
        self.assertEqual(values, [])
        self.clock.advance(0.1)
        self.assertEqual(values, [("g.example", ())])

    def test_missingAtStart(self):
        """
        A file that does not exist when watching starts is reported when it
        appears.
        """
        values = []
        path = os.path.join(self.dir, "later.json")
        watcher = WatchedFile(path, parseDHCPSettings, values.append, self.clock)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        self.clock.advance(1)
        self.assertEqual(values, [])
        self.write(json.dumps({"searchDomains": ["s.example"]}), path)
        self.clock.advance(1)
        self.assertEqual(values, [(None, ("s.example",))])


class ReadConfigFileTests(_FileMixin, SynchronousTestCase):
    """
    L{readConfigFile} reads and parses once, and every error names the file.
    """

    def test_value(self):
        """
        The parsed value is returned.
        """
        self.writeDomain("a.example")
        self.assertEqual(readConfigFile(self.path, parseDHCPSettings), ("a.example", ()))

    def test_parserGetsPath(self):
        """
        The parser is called with the text and the path.
        """
        self.write("hello")
        calls = []
        readConfigFile(self.path, lambda text, path: calls.append((text, path)))
        self.assertEqual(calls, [("hello", self.path)])

    def test_missing(self):
        """
        A missing file is a L{ConfigError} naming it and the reason.
        """
        e = self.assertRaises(ConfigError, readConfigFile, self.path, parseDHCPSettings)
        self.assertEqual(str(e), f"{self.path}: No such file or directory")

    def test_directory(self):
        """
        A directory is a L{ConfigError} naming it.
        """
        e = self.assertRaises(ConfigError, readConfigFile, self.dir, parseDHCPSettings)
        self.assertTrue(str(e).startswith(f"{self.dir}: "), str(e))

    def test_notUTF8(self):
        """
        Bytes that are not UTF-8 are a L{ConfigError} naming the file.
        """
        with open(self.path, "wb") as f:
            f.write(b'{"domainName": "\xff"}')
        e = self.assertRaises(ConfigError, readConfigFile, self.path, parseDHCPSettings)
        self.assertTrue(str(e).startswith(f"{self.path}: "), str(e))

    def test_unparsable(self):
        """
        A parse error is a L{ConfigError} naming the file.
        """
        self.write("[1, 2")
        e = self.assertRaises(ConfigError, readConfigFile, self.path, parseDHCPSettings)
        self.assertTrue(str(e).startswith(f"{self.path}: not valid JSON"), str(e))
