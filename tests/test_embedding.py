"""
vpnkit embedded in another Twisted program: C{makeService} under the real
reactor, a guest attached over the vmnet socket with live TCP, UDP and DNS
state, then C{stopService}.  Trial's own check for a dirty reactor (a
delayed call, a socket or a descriptor left behind) is the oracle for
"nothing left": a stopped vpnkit leaves the embedder's reactor as it found
it.

Real sockets on loopback only (the guest reaches the host alias, which is
127.0.0.1); no root needed.
"""

import os
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXClientEndpoint
from twisted.trial.unittest import TestCase

from tests.helpers import GATEWAY_IP, HOST_IP, buildIPv4, buildUDP
from vpnkit.protocols.links import VMNetClientProtocol
from vpnkit.tap import Options, makeService
from vpnkit.wire import vmnet
from vpnkit.wire.ipv4 import PROTO_TCP
from vpnkit.wire.tcp import SYN, Segment, TCPOptions, emitTCP

UUID = "9f7a3c2e-0000-4000-8000-0000000000aa"


class Accepting(protocol.Factory):
    """
    A host server that keeps its connections open.
    """

    protocol = protocol.Protocol

    def __init__(self):
        self.connected = defer.Deferred()
        self.protocols = []

    def buildProtocol(self, addr):
        p = super().buildProtocol(addr)
        self.protocols.append(p)
        if not self.connected.called:
            self.connected.callback(p)
        return p


class EmbeddingTests(TestCase):
    timeout = 30

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vpnkit-embed-")
        self.addCleanup(_rmtree, self.dir)

    def path(self, name, text=None):
        path = os.path.join(self.dir, name)
        if text is not None:
            with open(path, "w") as f:
                f.write(text)
        return path

    @defer.inlineCallbacks
    def test_stopLeavesNothing(self):
        """
        After C{stopService}, no guest is on the switch, no lease is held,
        no listener, host socket, link or timer is left (trial fails the
        test otherwise), and the socket path can be bound again.
        """
        server = Accepting()
        listening = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
        self.addCleanup(listening.stopListening)
        hostPort = listening.getHost().port
        # An upstream DNS server that never answers: the query stays in flight.
        silent = reactor.listenUDP(0, protocol.DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        dnsPort = silent.getHost().port

        options = Options()
        options.parseOptions(
            [
                "--ethernet", self.path("ethernet.sock"),
                "--api", self.path("api.sock"),
                "--dns", self.path("dns", f"nameserver 127.0.0.1#{dnsPort}\ntimeout 20000\n"),
                "--hosts", self.path("hosts", "192.0.2.7 example.test\n"),
            ]
        )  # fmt: skip
        service = makeService(options, reactor)
        service.startService()
        stack = service.stack

        ready = defer.Deferred()
        client = VMNetClientProtocol(ready, vmnet.EthernetCommand(UUID.encode("ascii")))
        frames = []
        client.frameReceiver = frames.append
        yield UNIXClientEndpoint(reactor, self.path("ethernet.sock")).connect(
            protocol.Factory.forProtocol(lambda: client)
        )
        vif = yield ready
        guestIP = stack.pool.leases()[0].ip.packed
        self.assertEqual(len(stack.switch.ports()), 1)

        def send(frame):
            client.sendFrame(frame)

        # A TCP connection to the host alias: a host socket and a timer.
        syn = Segment(40000, hostPort, 1000, 0, SYN, 65535, TCPOptions(mss=1460))
        send(buildIPv4(vif.mac, guestIP, HOST_IP, PROTO_TCP, emitTCP(syn, guestIP, HOST_IP)))
        # A UDP flow through the NAT to the host's loopback: a host socket
        # and the idle-expiry timer.
        send(buildUDP(vif.mac, guestIP, 5000, HOST_IP, dnsPort, b"hello"))
        # A DNS query for a name only the silent upstream could answer.
        from twisted.names import dns

        query = dns.Message(id=7, recDes=1)
        query.queries = [dns.Query(b"unknown.test", dns.A)]
        send(buildUDP(vif.mac, guestIP, 5353, GATEWAY_IP, 53, query.toStr()))

        yield server.connected
        yield _until(lambda: stack.tcp.connections() and len(stack.udpNAT.flows) == 1)
        self.assertEqual(stack.dnsUpstream.inFlight, 1)

        yield service.stopService()
        self.assertEqual(stack.switch.ports(), [])
        # Only the UUID's lease stays, as it does for the life of vpnkit.
        self.assertEqual([lease.uuid for lease in stack.pool.leases()], [UUID])
        self.assertEqual(stack.tcp.connections(), [])
        self.assertEqual(len(stack.udpNAT.flows), 0)
        self.assertEqual(stack.dnsUpstream.inFlight, 0)
        # The host server sees its client go.
        yield _until(lambda: all(p.transport is None or p.transport.disconnected for p in server.protocols))
        for p in server.protocols:
            if p.transport is not None and not p.transport.disconnected:
                p.transport.abortConnection()
        # The socket path is free again.
        again = makeService(_options(self), reactor)
        again.startService()
        yield again.stopService()


def _options(case):
    options = Options()
    options.parseOptions(
        ["--ethernet", case.path("ethernet.sock"), "--dns", case.path("dns"), "--hosts", case.path("hosts")]
    )
    return options


def _until(predicate, timeout=10.0, step=0.01):
    """
    Wait, by the reactor's clock, until C{predicate()} is true (bounded).
    """
    from twisted.internet.task import deferLater

    @defer.inlineCallbacks
    def wait():
        waited = 0.0
        while not predicate():
            if waited > timeout:
                raise AssertionError("timed out waiting")
            yield deferLater(reactor, step, lambda: None)
            waited += step

    return wait()


def _rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class TacTests(TestCase):
    """
    The example C{.tac} in C{docs/} runs under C{twistd -ny}, serves a
    vmnet guest, and stops cleanly on SIGTERM.
    """

    timeout = 60

    def test_twistdTac(self):
        """
        C{twistd -ny docs/vpnkit.tac} listens on the socket named by
        C{VPNKIT_ETHERNET}, answers a vmnet handshake with a Vif, and on
        SIGTERM takes the guest off the switch and shuts down cleanly
        (Twisted then exits by the same signal), logging no traceback.
        """
        import signal
        import socket
        import subprocess
        import sys
        import time
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent
        work = tempfile.mkdtemp(prefix="vpnkit-tac-")
        self.addCleanup(_rmtree, work)
        sock = os.path.join(work, "ethernet.sock")
        hosts = os.path.join(work, "hosts")
        Path(hosts).write_text("192.0.2.7 example.test\n")
        log = os.path.join(work, "twistd.log")
        env = dict(os.environ, VPNKIT_ETHERNET=sock, VPNKIT_HOSTS=hosts, PYTHONPATH=str(root))
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-ny", str(root / "docs" / "vpnkit.tac"), "--pidfile=", "--logfile", log],
            env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def stop():
            if process.poll() is None:
                process.kill()
            process.wait(10)
            process.stdout.close()

        self.addCleanup(stop)
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            self.assertIsNone(process.poll(), "twistd exited before listening")
            self.assertLess(time.monotonic(), deadline, "twistd did not listen")
            time.sleep(0.05)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(10)
        client.connect(sock)
        client.sendall(vmnet.emitInit() + vmnet.emitCommand(vmnet.EthernetCommand(UUID.encode())))
        reply = b""
        needed = vmnet.INIT_LENGTH + vmnet.RESPONSE_LENGTH
        while len(reply) < needed:
            chunk = client.recv(needed - len(reply))
            self.assertTrue(chunk, "vpnkit closed the connection during the handshake")
            reply += chunk
        response = vmnet.parseResponse(reply[vmnet.INIT_LENGTH :])
        self.assertIsInstance(response, vmnet.Vif)
        process.send_signal(signal.SIGTERM)
        self.assertIn(process.wait(20), (0, -signal.SIGTERM))
        client.close()
        text = Path(log).read_text()
        self.assertIn("guest attached", text)
        self.assertIn("guest detached", text)
        self.assertIn("Server Shut Down.", text)
        self.assertNotIn("Traceback", text)
        self.assertNotIn("Unhandled", text)
