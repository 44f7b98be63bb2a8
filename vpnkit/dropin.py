# -*- test-case-name: tests.test_dropin -*-
"""
The flags that let vpnkit start, unchanged, where the reference's command
line (Docker Desktop) or a process manager (RootlessKit, systemd) runs it.

L{DropInFlags} is mixed into L{vpnkit.tap.Options} (C{usage.Options}
gathers the flags of every base class):

 - every flag of the reference's C{main.ml} has a meaning here: the ones
   vpnkit has no use for are accepted and logged once at start
   (L{DropInFlags.startupNotes}); the 9P ones are refused with the name of
   their replacement;
 - C{--diagnostics} serves a tar of what a bug report needs
   (L{vpnkit.diagnostics});
 - C{--listen-backlog} is applied to the listeners vpnkit opens;
 - C{--ready-fd} and systemd's C{NOTIFY_SOCKET} say when vpnkit serves
   (L{vpnkit.readiness});
 - C{--version} prints vpnkit's version.
"""

import fcntl
import os
import sys

from twisted.python import usage

from vpnkit import __version__

__all__ = ["DropInFlags"]

# Accepted for the reference's command lines, with no effect here: why.
_INERT = {
    "vsock-path": "port forwards need no agent in the guest: vpnkit opens them "
    "from its own TCP stack (see --expose and --api)",
    "port-forwards": "port forwards need no agent in the guest: vpnkit opens them "
    "from its own TCP stack (see --expose and --api)",
    "gc-compact-interval": "there is no OCaml heap to compact",
    "log-destination": "twistd (or the vpnkit command) owns logging: see --logfile, --syslog",
}


class DropInFlags:
    """
    A mixin for L{usage.Options}; L{checkDropIn} runs from C{postOptions}.
    """

    optParameters = [
        ["ready-fd", None, None, "Write one byte to this descriptor (and close it) once every "
         "listener is bound.  systemd's NOTIFY_SOCKET also gets READY=1."],
        ["listen-backlog", None, None, "Backlog of every listener vpnkit opens (default: the "
         "system's)."],
        ["port-max-idle-time", None, "300", "Accepted for the reference's command line: vpnkit "
         "keeps no per-destination endpoints to expire, and never cuts an established TCP "
         "connection for idleness (UDP and ICMP flows expire after 60 s idle)."],
        ["vsock-path", None, None, "Accepted, no effect: " + _INERT["vsock-path"] + "."],
        ["port-forwards", None, None, "Accepted, no effect (an alias of --vsock-path)."],
        ["gc-compact-interval", None, None, "Accepted, no effect: " + _INERT["gc-compact-interval"] + "."],
        ["log-destination", None, None, "Accepted, no effect: " + _INERT["log-destination"] + "."],
    ]  # fmt: skip

    def opt_diagnostics(self, value):
        """
        Serve a tar of the statistics, connections, flows, leases,
        configuration and capture ring on this Unix socket (mode 0600), or
        on an inherited listening socket fd:N (repeatable).
        """
        self.setdefault("diagnostics", []).append(value)

    def opt_port(self, value):
        """
        Refused: the reference's 9P port-forward control; use --api.
        """
        raise usage.UsageError(
            "--port: the 9P port control is not supported; use --api PATH "
            "(gvproxy's /services/forwarder endpoints) or --expose"
        )

    def opt_introspection(self, value):
        """
        Refused: the reference's 9P introspection; use --diagnostics.
        """
        raise usage.UsageError(
            "--introspection: the 9P introspection server is not supported; "
            "use --diagnostics PATH (a tar of the same state) or --api PATH (/stats)"
        )

    def opt_version(self):
        """
        Print vpnkit's version and exit.
        """
        sys.stdout.write(f"vpnkit {__version__}\n")
        sys.exit(0)

    def checkDropIn(self, checkListen):
        """
        Validate the drop-in flags.

        @param checkListen: C{checkListen(flag, value)} parses a listener
            address (C{PATH} or C{fd:N}) the way C{--pcap} is parsed.
        """
        self.diagnosticsListen = [checkListen("diagnostics", v) for v in self.get("diagnostics", [])]
        self.readyFD = None
        if self["ready-fd"] is not None:
            self.readyFD = _writableFD(self["ready-fd"])
        self.listenBacklog = None
        if self["listen-backlog"] is not None:
            self.listenBacklog = _number("listen-backlog", self["listen-backlog"], 1, 65535)
        _number("port-max-idle-time", self["port-max-idle-time"], -(2**31), 2**31)

    def startupNotes(self):
        """
        One line for each accepted flag that has no effect here, saying why.
        """
        notes = []
        for flag, why in _INERT.items():
            if self[flag] is not None:
                notes.append(f"--{flag} has no effect: {why}")
        return notes


def _number(flag, value, lowest, highest):
    try:
        number = int(value)
    except ValueError:
        raise usage.UsageError(f"--{flag}: {value!r} is not a number") from None
    if not lowest <= number <= highest:
        raise usage.UsageError(f"--{flag}: must be between {lowest} and {highest}")
    return number


def _writableFD(value):
    fd = _number("ready-fd", value, 0, 2**31 - 1)
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise usage.UsageError(f"--ready-fd: {fd}: {e.strerror}") from None
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise usage.UsageError(f"--ready-fd: {fd} is not open for writing")
    return fd
