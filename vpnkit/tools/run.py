# -*- test-case-name: tests.test_run -*-
"""
The C{vpnkit} command: the same service as C{twistd -n vpnkit}, with the
same flags, for the programs that exec a binary called C{vpnkit}
(RootlessKit's vpnkit driver, Docker Desktop) and for systemd units.

It runs in the foreground, logs to standard error, writes no pid file,
exits 0 after SIGTERM or SIGINT (once every guest is detached and every
socket closed), 1 when start-up fails (one line naming the flag) and 2 for
a bad command line.  C{--ready-fd} and C{NOTIFY_SOCKET} say when it serves.
"""

import signal
import sys

from twisted.internet.error import CannotListenError
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python import usage

from vpnkit.config import ConfigError
from vpnkit.tap import Options, defaultReactor, makeService

__all__ = ["main", "run"]


def run(argv, reactor=None, stderr=sys.stderr, beginLogging=True):
    """
    Parse C{argv}, start vpnkit on C{reactor} and run it until a signal
    stops it.

    @param reactor: by default the one L{defaultReactor} installs once
        the flags are known.
    @return: the exit status.
    """
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        stderr.write(f"vpnkit: {e}\n")
        return 2
    if reactor is None:
        reactor = defaultReactor(options)
    if beginLogging:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(stderr)], redirectStandardIO=False)
    service = makeService(options, reactor)

    def stop(signum, frame):
        reactor.callFromThread(reactor.stop)

    # Before start-up: readiness is announced from it, and whoever waits
    # for it may signal at once.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.installStatsSignal()
    try:
        service.privilegedStartService()
        service.startService()
    except (ConfigError, OSError, CannotListenError) as e:
        stderr.write(f"vpnkit: {e}\n")
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)
    return 0


def main():
    sys.exit(run(sys.argv[1:]))
