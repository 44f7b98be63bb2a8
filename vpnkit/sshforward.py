# -*- test-case-name: tests.test_sshforward -*-
"""
Host Unix sockets forwarded to Unix sockets inside a guest over SSH
(gvproxy's C{-forward-sock}/C{-forward-dest}/C{-forward-user}/
C{-forward-identity}, which podman machine uses for its API socket).

Each forward listens on a host Unix socket (mode 0600).  Every client
connection becomes one C{direct-streamlocal@openssh.com} channel (OpenSSH's
C{PROTOCOL} file, section 2.4) on one SSH connection, shared by the
forward's clients, to the guest's sshd.  That SSH connection is a TCP
connection vpnkit opens into the guest from its own stack (the gateway
address, as gvproxy dials from its own stack), so the guest needs no route
to the host.

The SSH connection is made at start-up and retried (backoff up to one
second) until the guest's sshd first answers; after it drops it is made
again when the next client arrives.  A client waits at most
C{waitTimeout} seconds for it.  Bytes are spliced both ways with
backpressure: a full SSH window pauses reading from the host client, and
a host client that does not read holds back the window vpnkit grants the
guest's sshd.

Host keys are not verified: like gvproxy (whose command-line forwards use
C{ssh.InsecureIgnoreHostKey}), any host key is accepted and its
fingerprint logged.  The peer is the guest on vpnkit's own virtual
network, reached from vpnkit's stack, never a host on a real network.

(A little over 600 lines: the SSH client, its channel and the host-side
listener are one piece of flow control; split apart they would each need
the others' windows.)
"""

import struct
from dataclasses import dataclass

from twisted.application.service import MultiService, Service
from twisted.conch.error import ConchError
from twisted.conch.ssh import channel as sshchannel
from twisted.conch.ssh import common, connection, keys, transport, userauth
from twisted.internet import defer, error
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from vpnkit.config import ConfigError
from vpnkit.log import logger
from vpnkit.services import UnixListenService

__all__ = [
    "STREAMLOCAL",
    "SSHForwardSpec",
    "streamLocalOpenData",
    "loadIdentity",
    "GuestSSH",
    "SSHForward",
]

log = logger("vpnkit.sshforward")

STREAMLOCAL = b"direct-streamlocal@openssh.com"
SSH_PORT = 22


def streamLocalOpenData(path):
    """
    The channel-specific part of a C{direct-streamlocal@openssh.com}
    C{SSH_MSG_CHANNEL_OPEN}: C{string socket path, string reserved,
    uint32 reserved}.
    """
    return common.NS(path.encode("utf-8")) + common.NS(b"") + struct.pack(">L", 0)


@dataclass(frozen=True)
class SSHForwardSpec:
    """
    One forward.

    @ivar socket: the host Unix socket path vpnkit listens on.
    @ivar dest: the Unix socket path inside the guest.
    @ivar user: the guest user to log in as.
    @ivar identity: the private key file.
    """

    socket: str
    dest: str
    user: str
    identity: str


def loadIdentity(path):
    """
    Read an unencrypted private key (OpenSSH or PEM format).

    @raise ConfigError: naming the file and the problem.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"identity file {path!r} can't be loaded: {e.strerror}") from None
    try:
        key = keys.Key.fromString(data)
    except keys.EncryptedKeyError:
        raise ConfigError(f"identity file {path!r} is protected by a passphrase") from None
    except (keys.BadKeyError, ValueError) as e:
        raise ConfigError(f"identity file {path!r} can't be loaded: {e}") from None
    if key.isPublic():
        raise ConfigError(f"identity file {path!r} holds a public key, not a private one")
    return key


# -- SSH client pieces ---------------------------------------------------------


class _ClientTransport(transport.SSHClientTransport):
    """
    The SSH transport of one connection attempt; it reports to its
    L{GuestSSH}.
    """

    def __init__(self, session):
        self.session = session
        self.problem = None

    def verifyHostKey(self, hostKey, fingerprint):
        # Accepted unverified, as gvproxy does (see the module docstring).
        self.hostFingerprint = fingerprint
        return defer.succeed(True)

    def connectionSecure(self):
        auth = _UserAuth(self.session.spec.user.encode("utf-8"), self.session.key, _Connection())
        self.requestService(auth)

    def sendDisconnect(self, reason, desc):
        if self.problem is None:
            self.problem = desc.decode("utf-8", "replace")
        super().sendDisconnect(reason, desc)

    def receiveError(self, reasonCode, description):
        if self.problem is None:
            self.problem = f"sshd closed the connection: {description.decode('utf-8', 'replace')}"
        super().receiveError(reasonCode, description)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.session.transportLost(self, reason)


class _UserAuth(userauth.SSHUserAuthClient):
    """
    Public-key authentication with the forward's one key, nothing else.
    """

    def __init__(self, user, key, instance):
        super().__init__(user, instance)
        self._key = key
        self._offered = False

    def getPublicKey(self):
        if self._offered:
            return None
        self._offered = True
        return self._key.public()

    def getPrivateKey(self):
        return defer.succeed(self._key)

    def auth_password(self):
        return False

    def auth_keyboard_interactive(self):
        return False


class _Connection(connection.SSHConnection):
    """
    The C{ssh-connection} service: tells the session it is usable, and
    withholds window adjustments from channels whose host client is not
    reading.
    """

    def serviceStarted(self):
        super().serviceStarted()
        self.transport.session.authenticated(self.transport, self)

    def adjustWindow(self, channel, bytesToAdd):
        if getattr(channel, "withholdWindow", None) is not None and channel.withholdWindow(bytesToAdd):
            return
        super().adjustWindow(channel, bytesToAdd)


@implementer(IPushProducer)
class _StreamLocalChannel(sshchannel.SSHChannel):
    """
    One host client's channel to the guest's Unix socket.  It is the
    producer of the host client's transport (the guest's bytes), and pauses
    that transport while the guest's window is full.
    """

    name = STREAMLOCAL

    def __init__(self, client, conn):
        super().__init__(conn=conn)
        self.client = client
        self.opened = defer.Deferred()
        self._paused = False

    def channelOpen(self, specificData):
        self.opened.callback(self)

    def openFailed(self, reason):
        self.opened.errback(reason)

    def dataReceived(self, data):
        self.client.transport.write(data)

    def eofReceived(self):
        self.client.guestEOF()

    def closed(self):
        self.client.guestClosed()

    def stopWriting(self):
        self.client.transport.pauseProducing()

    def startWriting(self):
        self.client.transport.resumeProducing()

    # IPushProducer, for the host client's transport.

    def withholdWindow(self, bytesToAdd):
        """
        Whether to hold back a window adjustment: yes while the host client
        is not reading.  conch asks again (for the whole shortfall) on
        every packet, so nothing is added up here; resuming tops the window
        up once.
        """
        return self._paused

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        shortfall = self.localWindowSize - self.localWindowLeft
        if shortfall > 0 and not self.localClosed and self in self.conn.channelsToRemoteChannel:
            self.conn.adjustWindow(self, shortfall)

    def stopProducing(self):
        self.loseConnection()


# -- the session: one SSH connection, shared --------------------------------------


def _why(failure):
    """
    A failure as a short phrase: the detail of a connection error (vpnkit's
    own TCP layer says which guest is missing or who refused), else
    Twisted's message.
    """
    value = failure.value
    if isinstance(value, error.ConnectError) and isinstance(value.osError, str):
        return value.osError
    return failure.getErrorMessage()


class _Waiter:
    def __init__(self, client, deferred):
        self.client = client
        self.deferred = deferred
        self.timeout = None
        self.retried = False


class GuestSSH(Service):
    """
    One SSH connection to a guest's sshd, made when needed, shared by the
    channels of one forward.

    @param connect: C{connect(protocol) -> Deferred}: open a TCP connection
        to the guest's sshd with C{protocol} on it.
    @param where: C{"user@IP:22"} for the log.
    """

    def __init__(
        self,
        spec,
        key,
        connect,
        where,
        reactor,
        attemptTimeout=10.0,
        openTimeout=10.0,
        waitTimeout=30.0,
        minDelay=0.1,
        maxDelay=1.0,
    ):
        self.spec = spec
        self.key = key
        self._connect = connect
        self.where = where
        self._reactor = reactor
        self._attemptTimeout = attemptTimeout
        self._openTimeout = openTimeout
        self._waitTimeout = waitTimeout
        self._minDelay = minDelay
        self._maxDelay = maxDelay
        self._delay = minDelay
        self.connection = None
        self._sshTransport = None
        self._attempt = None
        self._attemptTimer = None
        self._retry = None
        self._everConnected = False
        self._lastProblem = None
        self._waiters = []

    # -- Service

    def startService(self):
        super().startService()
        self._ensureConnecting()

    def stopService(self):
        super().stopService()
        for call in (self._retry, self._attemptTimer):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._attemptTimer = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fail(waiter, error.ConnectionDone("vpnkit is stopping"))
        for sshTransport in (self._sshTransport, self._attempt):
            if sshTransport is not None and sshTransport.transport is not None:
                sshTransport.transport.abortConnection()
        self._sshTransport = self._attempt = self.connection = None

    # -- channels

    def openStreamLocal(self, client):
        """
        A channel to the forward's guest socket for C{client}.

        @return: a L{Deferred} firing with the open L{_StreamLocalChannel},
            or failing (the guest refused, or its sshd did not answer within
            C{waitTimeout} seconds).
        """
        waiter = _Waiter(client, defer.Deferred())
        waiter.timeout = self._reactor.callLater(self._waitTimeout, self._waitedTooLong, waiter)
        if self.connection is not None:
            self._open(waiter)
        else:
            self._waiters.append(waiter)
            self._ensureConnecting()
        return waiter.deferred

    def _open(self, waiter):
        conn = self.connection
        channel = _StreamLocalChannel(waiter.client, conn)
        timer = self._reactor.callLater(self._openTimeout, self._openTooLong, conn)

        def opened(channel):
            if timer.active():
                timer.cancel()
            self._succeed(waiter, channel)

        def failed(reason):
            if timer.active():
                timer.cancel()
            if reason.check(error.ConnectionLost) and not waiter.retried and self.running:
                # The connection died under the request (a guest reboot):
                # once more on a fresh one.
                waiter.retried = True
                self._waiters.append(waiter)
                self._ensureConnecting()
                return
            self._fail(waiter, reason.value)

        channel.opened.addCallbacks(opened, failed)
        conn.openChannel(channel, streamLocalOpenData(self.spec.dest))

    def _openTooLong(self, conn):
        if conn is self.connection:
            log.warn(
                "ssh forward {socket}: {where} did not answer a channel request in "
                "{timeout:.0f} s; dropping the SSH connection",
                socket=self.spec.socket,
                where=self.where,
                timeout=self._openTimeout,
            )
            conn.transport.transport.abortConnection()

    def _waitedTooLong(self, waiter):
        waiter.timeout = None
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        why = self._lastProblem or "no answer"
        self._fail(
            waiter,
            error.TimeoutError(f"the guest's sshd at {self.where} is not answering ({why})"),
        )

    def _succeed(self, waiter, channel):
        if waiter.deferred.called:
            channel.loseConnection()
            return
        if waiter.timeout is not None and waiter.timeout.active():
            waiter.timeout.cancel()
        waiter.deferred.callback(channel)

    def _fail(self, waiter, exception):
        if waiter.deferred.called:
            return
        if waiter.timeout is not None and waiter.timeout.active():
            waiter.timeout.cancel()
        waiter.deferred.errback(exception)

    # -- connecting

    def _ensureConnecting(self):
        if not self.running or self.connection is not None:
            return
        if self._attempt is not None or self._retry is not None:
            return
        self._startAttempt()

    def _startAttempt(self):
        self._retry = None
        sshTransport = _ClientTransport(self)
        self._attempt = sshTransport
        self._attemptTimer = self._reactor.callLater(
            self._attemptTimeout, self._attemptTooLong, sshTransport
        )
        try:
            d = self._connect(sshTransport)
        except Exception as e:
            d = defer.fail(e)

        def failed(reason):
            if self._attempt is sshTransport:
                self._attemptFailed(sshTransport, _why(reason))

        d.addErrback(failed)

    def _attemptTooLong(self, sshTransport):
        self._attemptTimer = None
        if self._attempt is not sshTransport:
            return
        if sshTransport.transport is not None:
            sshTransport.problem = sshTransport.problem or "the SSH handshake timed out"
            sshTransport.transport.abortConnection()
        else:
            self._attemptFailed(sshTransport, "the TCP connection timed out")

    def authenticated(self, sshTransport, conn):
        """
        C{sshTransport} logged in: its connection carries the channels.
        """
        if self._attempt is not sshTransport or not self.running:
            sshTransport.transport.loseConnection()
            return
        self._attempt = None
        if self._attemptTimer is not None and self._attemptTimer.active():
            self._attemptTimer.cancel()
        self._attemptTimer = None
        self._sshTransport = sshTransport
        self.connection = conn
        self._delay = self._minDelay
        self._lastProblem = None
        self._everConnected = True
        log.info(
            "ssh forward {socket}: connected to {where} (host key {fingerprint}, accepted "
            "without verification)",
            socket=self.spec.socket,
            where=self.where,
            fingerprint=getattr(sshTransport, "hostFingerprint", b"?").decode("ascii", "replace"),
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.deferred.called:
                self._open(waiter)

    def transportLost(self, sshTransport, reason):
        """
        An SSH transport's TCP connection closed.
        """
        if sshTransport is self._sshTransport:
            self._sshTransport = self.connection = None
            if self.running:
                log.info(
                    "ssh forward {socket}: the SSH connection to {where} closed ({why}); it is "
                    "made again for the next client",
                    socket=self.spec.socket,
                    where=self.where,
                    why=sshTransport.problem or _why(reason),
                )
            if self._waiters:
                self._ensureConnecting()
        elif sshTransport is self._attempt:
            self._attemptFailed(sshTransport, sshTransport.problem or _why(reason))

    def _attemptFailed(self, sshTransport, why):
        self._attempt = None
        if self._attemptTimer is not None and self._attemptTimer.active():
            self._attemptTimer.cancel()
        self._attemptTimer = None
        if not self.running:
            return
        if why != self._lastProblem:
            log.info(
                "ssh forward {socket}: waiting for the guest's sshd at {where}: {why}",
                socket=self.spec.socket,
                where=self.where,
                why=why,
            )
        else:
            log.debug("ssh forward {socket}: still {why}", socket=self.spec.socket, why=why)
        self._lastProblem = why
        if self._waiters or not self._everConnected:
            self._retry = self._reactor.callLater(self._delay, self._startAttempt)
            self._delay = min(self._delay * 2, self._maxDelay)


# -- the host side ----------------------------------------------------------------


@implementer(IHalfCloseableProtocol)
class _HostClient(Protocol):
    """
    A client of the host socket: held (not read) until its channel is open,
    then spliced to it.
    """

    channel = None

    def __init__(self, forward):
        self._forward = forward
        self._gone = False
        self._producing = False

    def connectionMade(self):
        self.transport.pauseProducing()
        self._forward.session.openStreamLocal(self).addCallbacks(self._opened, self._failed)

    def _opened(self, channel):
        if self._gone:
            channel.loseConnection()
            return
        self.channel = channel
        self.transport.registerProducer(channel, True)
        self._producing = True
        self.transport.resumeProducing()

    def _failed(self, failure):
        if self._gone:
            return
        reason = failure.value
        if isinstance(reason, ConchError):
            desc = reason.value
            if isinstance(desc, bytes):
                desc = desc.decode("utf-8", "replace")
            why = f"the guest refused {self._forward.spec.dest}: {desc}"
        else:
            why = failure.getErrorMessage()
        log.warn("ssh forward {socket}: closing a client: {why}", socket=self._forward.spec.socket, why=why)
        self.transport.loseConnection()

    def _stopProducing(self):
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()

    def dataReceived(self, data):
        self.channel.write(data)

    def readConnectionLost(self):
        channel = self.channel
        if channel is not None and not channel.localClosed:
            channel.conn.sendEOF(channel)

    def writeConnectionLost(self):
        pass

    def guestEOF(self):
        self._stopProducing()
        self.transport.loseWriteConnection()

    def guestClosed(self):
        self._stopProducing()
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self._gone = True
        channel = self.channel
        if channel is not None and not channel.closing:
            channel.loseConnection()


class _HostFactory(Factory):
    noisy = False

    def __init__(self, spec, session):
        self.spec = spec
        self.session = session

    def buildProtocol(self, addr):
        return _HostClient(self)


class SSHForward(MultiService):
    """
    One forward as a service: the host socket and the SSH session.

    @param connect: see L{GuestSSH}.
    """

    def __init__(self, spec, key, connect, guestIP, reactor, **sessionArgs):
        super().__init__()
        self.spec = spec
        where = f"{spec.user}@{guestIP}:{SSH_PORT}"
        self.session = GuestSSH(spec, key, connect, where, reactor, **sessionArgs)
        self.session.setServiceParent(self)
        listener = UnixListenService(spec.socket, _HostFactory(spec, self.session), reactor, mode=0o600)
        listener.setServiceParent(self)
        self.listener = listener

    def startService(self):
        log.info(
            "ssh forward {socket} -> {where}:{dest}",
            socket=self.spec.socket,
            where=self.session.where,
            dest=self.spec.dest,
        )
        super().startService()
