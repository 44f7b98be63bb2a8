# -*- test-case-name: tests.test_gvproxy -*-
"""
C{vpnkit-gvproxy}: vpnkit behind gvproxy's command line, so the programs
that start gvproxy today (podman machine, lima) can start vpnkit instead.

L{vpnkit.tools.gvproxyflags.translate} turns the command line into
vpnkit's; L{main} runs that on the reactor in the foreground until SIGTERM
or SIGINT, with what only this front end does: the HTTP API listeners, the
in-guest API on the gateway, the SSH socket forwards, the pid and log
files.

See C{docs/gvproxy.md} for the flag table and what is left out.
"""

import io
import json
import os
import sys

from vpnkit.config import ConfigError

from vpnkit.tools.gvproxyflags import (  # noqa: F401 (re-exported)
    APIEndpoint,
    DEFAULT_SSH_PORT,
    DEFAULT_SUBNET,
    FLAGS,
    GATEWAY_API_PORT,
    GATEWAY_MAC,
    GATEWAY_NAMES,
    GvproxyError,
    GvproxyUsageError,
    HOST_NAMES,
    PROGRAM,
    Translation,
    UNSUPPORTED,
    USAGE,
    gvproxyMessage,
    parseGoFlags,
    translate,
)

__all__ = ["main", "buildService", "translate"]


# -- running it -----------------------------------------------------------------------


def _guestConnector(connector, guestIP, srcIP, rng):
    """
    C{connect(protocol)} for L{vpnkit.sshforward.GuestSSH}: a TCP connection
    from vpnkit's stack (the gateway address, a random high port) to the
    guest's port 22.
    """

    def connect(protocol):
        port = rng.randint(49152, 65535)
        return connector.connectTCP(guestIP, 22, srcIP, port, protocol)

    return connect


def _gatewayAPI(site):
    """
    gvproxy's API inside the guests, on the gateway's port 80: only
    C{/services/forwarder/{all,expose,unexpose}}, and an expose whose
    remote has no address (C{":8080"}) forwards to the guest that asked.
    """
    from twisted.web.pages import notFound
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Tree(Resource):
        def getChild(self, path, request):
            return notFound()

    forwarder = site.resource.getStaticEntity(b"services").getStaticEntity(b"forwarder")
    expose = forwarder.getStaticEntity(b"expose")

    class CallerExpose(Resource):
        isLeaf = True

        def render(self, request):
            if request.method == b"POST":
                try:
                    body = json.loads(request.content.read() or b"null")
                except ValueError:
                    body = None
                    request.content.seek(0)
                if isinstance(body, dict) and str(body.get("remote", "")).startswith(":"):
                    body["remote"] = request.getClientAddress().host + body["remote"]
                if body is not None:
                    request.content = io.BytesIO(json.dumps(body).encode())
            return expose.render(request)

    root = Tree()
    services = Tree()
    root.putChild(b"services", services)
    limited = Tree()
    services.putChild(b"forwarder", limited)
    limited.putChild(b"all", forwarder.getStaticEntity(b"all"))
    limited.putChild(b"unexpose", forwarder.getStaticEntity(b"unexpose"))
    limited.putChild(b"expose", CallerExpose())
    gateway = Site(root)
    gateway.noisy = False
    gateway.displayTracebacks = False
    gateway.log = site.log
    return gateway


def buildService(translation, options, keys, reactor):
    """
    vpnkit's service for the translated command line, with the API
    listeners and SSH forwards added.
    """
    import random

    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.protocols.policies import WrappingFactory

    from vpnkit.api import makeAPI
    from vpnkit.forwards import StackConnector
    from vpnkit.services import ListenService, UnixListenService
    from vpnkit.sshforward import SSHForward
    from vpnkit.tap import makeService

    top = makeService(options, reactor)
    stack = top.stack
    site = makeAPI(stack, top.getServiceNamed("forwards"))
    # The wrapper gives the HTTP protocol a transport with the attributes
    # LineReceiver reads (disconnecting), which the gateway's in-memory
    # connections lack.
    stack.localServices.serve(GATEWAY_API_PORT, WrappingFactory(_gatewayAPI(site)))
    for endpoint in translation.apiEndpoints:
        if endpoint.path is not None:
            service = UnixListenService(endpoint.path, site, reactor, mode=0o600)
        else:
            service = ListenService(
                TCP4ServerEndpoint(reactor, endpoint.port, interface=endpoint.host), site
            )
        service.setName(f"api {endpoint.url}")
        service.setServiceParent(top)
    connect = _guestConnector(
        StackConnector(stack), translation.guestIP, translation.gatewayIP, random.Random()
    )
    for spec, key in zip(translation.forwards, keys):
        forward = SSHForward(spec, key, connect, translation.guestIP, reactor)
        forward.setName(f"forward {spec.socket}")
        forward.setServiceParent(top)
    return top


class _Runner:
    """
    One run of the command: start-up, the pid file, shutdown.
    """

    def __init__(self, translation, reactor, stderr, logFile):
        self.translation = translation
        self.reactor = reactor
        self.stderr = stderr
        self.logFile = logFile
        self.status = 0
        self.service = None
        self._stopping = None
        self._pidWritten = False

    def fail(self, message):
        line = f"{PROGRAM}: {gvproxyMessage(message)}\n"
        self.stderr.write(line)
        self.stderr.flush()
        if self.logFile is not None:
            self.logFile.write(line)
            self.logFile.flush()
        self.status = 1

    def start(self):
        from vpnkit.log import logger

        try:
            self.service.privilegedStartService()
            self.service.startService()
        except Exception as e:
            self.fail(str(e) or type(e).__name__)
            self.stop().addBoth(lambda _: self.reactor.stop())
            return
        if self.translation.pidFile:
            try:
                with open(self.translation.pidFile, "w") as f:
                    f.write(str(os.getpid()))
                self._pidWritten = True
            except OSError as e:
                self.fail(f"-pid-file: cannot write {self.translation.pidFile}: {e.strerror}")
                self.stop().addBoth(lambda _: self.reactor.stop())
                return
        logger("vpnkit.gvproxy").info(
            "{program} running (pid {pid})", program=PROGRAM, pid=os.getpid()
        )

    def stop(self):
        """
        Stop the service (once), waiting at most 10 seconds for it.

        @return: a L{Deferred} that fires when it has stopped.
        """
        from twisted.internet.defer import Deferred, maybeDeferred, succeed

        if self._stopping is None:
            if self.service is None or not self.service.running:
                self._stopping = succeed(None)
            else:
                self._stopping = maybeDeferred(self.service.stopService)
                self._stopping.addTimeout(10, self.reactor)
                self._stopping.addErrback(lambda failure: None)
        done = Deferred()

        def stopped(result):
            done.callback(None)
            return result

        self._stopping.addBoth(stopped)
        return done

    def removePidFile(self):
        path = self.translation.pidFile
        if not self._pidWritten:
            return
        try:
            with open(path) as f:
                if f.read().strip() != str(os.getpid()):
                    return
            os.unlink(path)
        except OSError:
            pass


def _beginLogging(out, debug):
    """
    Log to C{out}; conch's chatter only from warnings up, unless C{-debug}.
    """
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        PredicateResult,
        globalLogBeginner,
        textFileLogObserver,
    )

    from twisted.conch.ssh.channel import SSHChannel
    from twisted.conch.ssh.service import SSHService
    from twisted.conch.ssh.transport import SSHTransportBase

    conch = (SSHTransportBase, SSHService, SSHChannel)

    def quietConch(event):
        if debug:
            return PredicateResult.maybe
        level = event.get("log_level")
        if level is None or level >= LogLevel.warn:
            return PredicateResult.maybe
        namespace = event.get("log_namespace") or ""
        if namespace.startswith("twisted.conch") or isinstance(event.get("log_source"), conch):
            return PredicateResult.no
        return PredicateResult.maybe

    observer = FilteringLogObserver(textFileLogObserver(out), [quietConch])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def main(argv=None, stdout=None, stderr=None):
    """
    The C{vpnkit-gvproxy} command.
    """
    from twisted.python import usage

    from vpnkit import __version__

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = sys.argv[1:] if argv is None else argv
    try:
        translation = translate(argv)
    except GvproxyError as e:
        stderr.write(f"{PROGRAM}: {e}\n")
        raise SystemExit(e.exitStatus)
    if translation.action == "help":
        stdout.write(USAGE)
        raise SystemExit(0)
    if translation.action == "version":
        stdout.write(f"{PROGRAM} version {__version__} (vpnkit, gvproxy command line)\n")
        raise SystemExit(0)

    from vpnkit.services import raiseFileLimit
    from vpnkit.sshforward import loadIdentity
    from vpnkit.tap import Options

    logFile = None
    if translation.logFile:
        try:
            logFile = open(translation.logFile, "w", buffering=1)
        except OSError as e:
            stderr.write(f"{PROGRAM}: -log-file: cannot open {translation.logFile}: {e.strerror}\n")
            raise SystemExit(1)

    def early(message):
        line = f"{PROGRAM}: {gvproxyMessage(message)}\n"
        stderr.write(line)
        if logFile is not None:
            logFile.write(line)
            logFile.close()
        raise SystemExit(1)

    try:
        keys = [loadIdentity(spec.identity) for spec in translation.forwards]
    except ConfigError as e:
        early(f"-forward-identity: {e}")
    options = Options()
    try:
        options.parseOptions(list(translation.vpnkitArgs))
    except usage.UsageError as e:
        early(str(e))

    from twisted.internet import reactor

    _beginLogging(logFile or stderr, translation.debug)
    raiseFileLimit()
    runner = _Runner(translation, reactor, stderr, logFile)
    try:
        runner.service = buildService(translation, options, keys, reactor)
    except Exception as e:
        early(str(e) or type(e).__name__)
    reactor.callWhenRunning(runner.start)
    reactor.addSystemEventTrigger("before", "shutdown", runner.stop)
    reactor.run()
    runner.removePidFile()
    if logFile is not None:
        logFile.close()
    raise SystemExit(runner.status)


if __name__ == "__main__":
    main()
