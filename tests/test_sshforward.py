"""
Tests for L{vpnkit.sshforward}: host Unix sockets forwarded to a guest's
Unix sockets over SSH, against an in-memory conch SSH server.
"""

import os
import struct
import tempfile

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.avatar import ConchUser
from twisted.conch.checkers import InMemorySSHKeyDB, SSHPublicKeyChecker
from twisted.conch.error import ConchError
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import channel as sshchannel
from twisted.conch.ssh import common, connection, factory, keys, userauth
from twisted.cred.portal import Portal
from twisted.internet import defer, error, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from vpnkit.config import ConfigError
from vpnkit.sshforward import (
    STREAMLOCAL,
    GuestSSH,
    SSHForwardSpec,
    _HostClient,
    loadIdentity,
    streamLocalOpenData,
)

DEST = "/run/podman/podman.sock"
SPEC = SSHForwardSpec("/tmp/host.sock", DEST, "core", "/nonexistent/id")


def newKey():
    return keys.Key(ed25519.Ed25519PrivateKey.generate())


# -- the in-memory sshd --------------------------------------------------------


class _GuestSocketChannel(sshchannel.SSHChannel):
    """
    What sshd does with a direct-streamlocal channel: connect to the Unix
    socket named in the request.  Here the "socket" echoes, or refuses
    paths the server does not know.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server = self.avatar.server
        self.path = common.getNS(self.data)[0].decode()
        self.received = b""
        self.eof = False
        self.server.channels.append(self)

    def channelOpen(self, specificData):
        pass

    def dataReceived(self, data):
        self.received += data
        if self.server.echo:
            self.write(data)

    def eofReceived(self):
        self.eof = True
        if self.server.echo:
            self.conn.sendEOF(self)
            self.loseConnection()


class _Avatar(ConchUser):
    def __init__(self, server):
        super().__init__()
        self.server = server
        self.channelLookup[STREAMLOCAL] = self._streamLocal

    def _streamLocal(self, remoteWindow, remoteMaxPacket, data, avatar):
        path = common.getNS(data)[0].decode()
        if path not in self.server.paths:
            raise ConchError("open failed", connection.OPEN_CONNECT_FAILED)
        return _GuestSocketChannel(
            remoteWindow=remoteWindow, remoteMaxPacket=remoteMaxPacket, data=data, avatar=avatar
        )


@implementer(IConchUser)
class _Realm:
    def __init__(self, server):
        self.server = server

    def requestAvatar(self, avatarId, mind, *interfaces):
        self.server.logins.append(avatarId)
        return IConchUser, _Avatar(self.server), lambda: None


class _ServerConnection(connection.SSHConnection):
    """
    Records every CHANNEL_OPEN packet, and can withhold window adjustments
    (a guest socket that does not read).
    """

    def ssh_CHANNEL_OPEN(self, packet):
        self.transport.factory.server.openPackets.append(packet)
        super().ssh_CHANNEL_OPEN(packet)

    def adjustWindow(self, channel, bytesToAdd):
        if self.transport.factory.server.holdWindow:
            return
        super().adjustWindow(channel, bytesToAdd)


class _UserAuthServer(userauth.SSHUserAuthServer):
    clock = task.Clock()


class FakeSSHD:
    """
    A conch SSH server in memory, accepting C{user} with C{clientKey}.
    """

    def __init__(self, clock, clientKey, user=b"core", paths=(DEST,)):
        self.clock = clock
        self.hostKey = newKey()
        self.paths = set(paths)
        self.channels = []
        self.openPackets = []
        self.logins = []
        self.pumps = []
        self.echo = True
        self.holdWindow = False
        self.up = True
        self.connects = 0
        checker = SSHPublicKeyChecker(InMemorySSHKeyDB({user: [clientKey.public()]}))
        self.factory = factory.SSHFactory()
        self.factory.portal = Portal(_Realm(self), [checker])
        self.factory.publicKeys = {b"ssh-ed25519": self.hostKey.public()}
        self.factory.privateKeys = {b"ssh-ed25519": self.hostKey}
        self.factory.services = {
            b"ssh-userauth": _UserAuthServer,
            b"ssh-connection": _ServerConnection,
        }
        self.factory.server = self
        self.factory.startFactory()

    def connect(self, protocol):
        """
        The L{GuestSSH} C{connect} callable: a TCP connection to this sshd,
        or a refusal while it is down.
        """
        self.connects += 1
        if not self.up:
            return defer.fail(error.ConnectionRefusedError("sshd is not up"))
        server = self.factory.buildProtocol(IPv4Address("TCP", "192.168.127.1", 50000))
        pump = iosim.connect(
            server,
            iosim.makeFakeServer(server),
            protocol,
            iosim.makeFakeClient(protocol),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        return defer.succeed(protocol.transport)

    def flush(self):
        for _ in range(100):
            moved = False
            for pump in list(self.pumps):
                moved = pump.flush() or moved
            if not moved:
                return
        raise AssertionError("the pumps never went quiet")

    def dropConnections(self):
        for pump in self.pumps:
            pump.serverIO.loseConnection()
        self.flush()
        self.pumps = []


class _HalfCloseTransport(StringTransport):
    writeClosed = False

    def loseWriteConnection(self):
        self.writeClosed = True


class _Forward:
    def __init__(self, spec, session):
        self.spec = spec
        self.session = session


# -- tests -----------------------------------------------------------------------


class StreamLocalRequestTests(SynchronousTestCase):
    def test_openData(self):
        """
        The channel-specific data of a direct-streamlocal open is the socket
        path as an SSH string, an empty reserved string and a zero uint32
        (OpenSSH PROTOCOL 2.4).
        """
        self.assertEqual(
            streamLocalOpenData(DEST),
            struct.pack(">L", len(DEST)) + DEST.encode() + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00",
        )

    def test_channelName(self):
        """
        The channel type is OpenSSH's name.
        """
        self.assertEqual(STREAMLOCAL, b"direct-streamlocal@openssh.com")


class LoadIdentityTests(SynchronousTestCase):
    def write(self, data):
        fd, path = tempfile.mkstemp()
        os.write(fd, data)
        os.close(fd)
        self.addCleanup(os.unlink, path)
        return path

    def test_openSSHKey(self):
        """
        An unencrypted OpenSSH private key loads.
        """
        key = newKey()
        loaded = loadIdentity(self.write(key.toString("OPENSSH")))
        self.assertEqual(loaded.public().blob(), key.public().blob())

    def test_missing(self):
        """
        A missing file is a one-line error naming it.
        """
        with self.assertRaises(ConfigError) as e:
            loadIdentity("/nonexistent/id_ed25519")
        self.assertIn("'/nonexistent/id_ed25519' can't be loaded", str(e.exception))

    def test_publicKey(self):
        """
        A public key is not an identity.
        """
        path = self.write(newKey().public().toString("OPENSSH"))
        with self.assertRaises(ConfigError) as e:
            loadIdentity(path)
        self.assertIn("public key", str(e.exception))

    def test_garbage(self):
        """
        A file that is no key is refused with its name.
        """
        path = self.write(b"not a key\n")
        with self.assertRaises(ConfigError) as e:
            loadIdentity(path)
        self.assertIn(path, str(e.exception))

    def test_passphrase(self):
        """
        A key protected by a passphrase is refused (gvproxy's command line
        has no passphrase either).
        """
        path = self.write(newKey().toString("OPENSSH", passphrase=b"secret"))
        with self.assertRaises(ConfigError) as e:
            loadIdentity(path)
        self.assertIn("passphrase", str(e.exception))


class GuestSSHTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.key = newKey()
        self.sshd = FakeSSHD(self.clock, self.key)
        self.session = GuestSSH(SPEC, self.key, self.sshd.connect, "core@192.168.127.2:22", self.clock)
        self.forward = _Forward(SPEC, self.session)

    def tearDown(self):
        if self.session.running:
            self.session.stopService()
            self.sshd.flush()

    def client(self):
        client = _HostClient(self.forward)
        transport = _HalfCloseTransport()
        client.makeConnection(transport)
        return client, transport

    def test_channelOpenPacket(self):
        """
        A host client makes the session log in as the forward's user and
        open a direct-streamlocal channel whose CHANNEL_OPEN carries the
        channel name, our channel number, window and packet size, then the
        guest socket path.
        """
        self.session.startService()
        client, transport = self.client()
        self.sshd.flush()
        self.assertEqual(self.sshd.logins, [b"core"])
        (packet,) = self.sshd.openPackets
        name, rest = common.getNS(packet)
        self.assertEqual(name, STREAMLOCAL)
        channelID, window, maxPacket = struct.unpack(">3L", rest[:12])
        self.assertEqual((window, maxPacket), (131072, 32768))
        self.assertEqual(rest[12:], streamLocalOpenData(DEST))
        self.assertIsNotNone(client.channel)
        self.assertEqual(transport.producerState, "producing")

    def test_clientHeldUntilChannelOpen(self):
        """
        The host client is not read until its channel is open.
        """
        self.session.startService()
        client, transport = self.client()
        self.assertEqual(transport.producerState, "paused")
        self.sshd.flush()
        self.assertEqual(transport.producerState, "producing")

    def test_echo(self):
        """
        Bytes from the host client reach the guest socket and its answer
        comes back; the client's EOF reaches the guest, whose EOF and close
        half-close then close the client.
        """
        self.session.startService()
        client, transport = self.client()
        self.sshd.flush()
        client.dataReceived(b"ping over ssh")
        self.sshd.flush()
        self.assertEqual(self.sshd.channels[0].received, b"ping over ssh")
        self.assertEqual(transport.value(), b"ping over ssh")
        client.readConnectionLost()
        self.sshd.flush()
        self.assertTrue(self.sshd.channels[0].eof)
        self.assertTrue(transport.writeClosed)
        self.assertTrue(transport.disconnecting)

    def test_oneConnectionShared(self):
        """
        Two clients share one SSH connection, each on its own channel.
        """
        self.session.startService()
        first, _ = self.client()
        second, _ = self.client()
        self.sshd.flush()
        self.assertEqual(self.sshd.connects, 1)
        self.assertEqual(len(self.sshd.channels), 2)
        self.assertIsNot(first.channel, second.channel)

    def test_connectedAtStart(self):
        """
        The SSH connection is made when the service starts, before any
        client.
        """
        self.session.startService()
        self.sshd.flush()
        self.assertIsNotNone(self.session.connection)
        self.assertEqual(self.sshd.logins, [b"core"])

    def test_waitsForSSHD(self):
        """
        While the guest's sshd is down the session retries with a growing
        delay (0.1 s doubling up to 1 s); a waiting client is served once it
        answers.
        """
        self.sshd.up = False
        self.session.startService()
        client, transport = self.client()
        self.assertEqual(self.sshd.connects, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.sshd.connects, 2)
        self.clock.advance(0.2)
        self.assertEqual(self.sshd.connects, 3)
        self.clock.advance(0.4)
        self.clock.advance(0.8)
        self.clock.advance(1.0)
        self.assertEqual(self.sshd.connects, 6)
        self.sshd.up = True
        self.clock.advance(1.0)
        self.sshd.flush()
        self.assertIsNotNone(client.channel)
        self.assertEqual(transport.producerState, "producing")

    def test_clientGivesUp(self):
        """
        A client waits at most 30 s for the guest's sshd; then it is closed.
        """
        self.sshd.up = False
        self.session.startService()
        client, transport = self.client()
        self.clock.pump([1.0] * 29)
        self.assertFalse(transport.disconnecting)
        self.clock.pump([1.0] * 2)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(client.channel)

    def test_noRetryWhenIdle(self):
        """
        After a connection made once is lost, nothing is retried until a
        client needs it; then it is made again.
        """
        self.session.startService()
        self.sshd.flush()
        self.sshd.dropConnections()
        self.assertIsNone(self.session.connection)
        self.clock.pump([1.0] * 10)
        self.assertEqual(self.sshd.connects, 1)
        client, transport = self.client()
        self.sshd.flush()
        self.assertEqual(self.sshd.connects, 2)
        self.assertIsNotNone(client.channel)

    def test_connectionLostClosesClients(self):
        """
        When the SSH connection drops, the clients on it are closed.
        """
        self.session.startService()
        client, transport = self.client()
        self.sshd.flush()
        self.sshd.dropConnections()
        self.assertTrue(transport.disconnecting)

    def test_guestRefuses(self):
        """
        A channel the guest refuses (no such socket) closes that client;
        the SSH connection stays for the others.
        """
        spec = SSHForwardSpec("/tmp/host.sock", "/run/missing.sock", "core", "/id")
        self.session.spec = spec
        self.forward.spec = spec
        self.session.startService()
        client, transport = self.client()
        self.sshd.flush()
        self.assertTrue(transport.disconnecting)
        self.assertIsNotNone(self.session.connection)
        # conch's server logs the refusal it sends.
        self.assertEqual(len(self.flushLoggedErrors(ConchError)), 1)

    def test_wrongKey(self):
        """
        A key sshd does not accept never logs in; the session keeps trying
        and the waiting client is eventually closed.
        """
        other = newKey()
        self.session = GuestSSH(SPEC, other, self.sshd.connect, "core@192.168.127.2:22", self.clock)
        self.forward.session = self.session
        self.session.startService()
        client, transport = self.client()
        self.sshd.flush()
        self.assertIsNone(self.session.connection)
        self.assertEqual(self.sshd.logins, [])
        self.clock.advance(0.1)
        self.sshd.flush()
        self.assertEqual(self.sshd.connects, 2)
        self.clock.pump([1.0] * 31)
        self.sshd.flush()
        self.assertTrue(transport.disconnecting)

    def test_handshakeTimeout(self):
        """
        A connection on which sshd never speaks is abandoned after 10 s and
        tried again.
        """
        pending = []

        def silent(protocol):
            self.sshd.connects += 1
            pending.append(protocol)
            return defer.Deferred()

        self.session = GuestSSH(SPEC, self.key, silent, "core@192.168.127.2:22", self.clock)
        self.session.startService()
        self.clock.advance(9.9)
        self.assertEqual(self.sshd.connects, 1)
        self.clock.advance(0.2)
        self.clock.advance(0.1)
        self.assertEqual(self.sshd.connects, 2)

    def test_guestWindowFull(self):
        """
        When the guest's window is used up, reading from the host client is
        paused until the guest grants more.
        """
        self.session.startService()
        client, transport = self.client()
        self.sshd.flush()
        self.sshd.holdWindow = True
        self.sshd.echo = False
        client.dataReceived(b"x" * 200000)
        self.sshd.flush()
        self.assertEqual(transport.producerState, "paused")
        received = len(self.sshd.channels[0].received)
        self.assertLessEqual(received, 131072)
        self.sshd.holdWindow = False
        server = self.sshd.channels[0]
        server.conn.adjustWindow(server, 131072)
        self.sshd.flush()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(server.received), 200000)

    def test_hostClientSlow(self):
        """
        While the host client's transport has paused the channel, vpnkit
        grants the guest no more window: the guest's sshd holds what it
        cannot send.  Resuming grants it and the rest arrives.
        """
        self.session.startService()
        client, transport = self.client()
        self.sshd.flush()
        self.sshd.echo = False
        client.channel.pauseProducing()
        server = self.sshd.channels[0]
        server.write(b"y" * 300000)
        self.sshd.flush()
        delivered = len(transport.value())
        self.assertLessEqual(delivered, 131072)
        self.assertTrue(server.buf)
        channel = client.channel
        channel.resumeProducing()
        # What was held back is granted once (topping the window up), not
        # once per packet that arrived meanwhile.
        self.assertEqual(channel.localWindowLeft, channel.localWindowSize)
        self.sshd.flush()
        self.assertEqual(len(transport.value()), 300000)
        self.assertEqual(server.remoteWindowLeft, channel.localWindowLeft)

    def test_stopService(self):
        """
        Stopping the session fails waiting clients and drops the SSH
        connection.
        """
        self.sshd.up = False
        self.session.startService()
        client, transport = self.client()
        self.session.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])
