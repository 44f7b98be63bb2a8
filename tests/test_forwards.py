"""
Tests for L{vpnkit.forwards}: spec parsing, the reference's error strings,
and L{PortForwarder} driving listeners and connections into the guest
through fakes.
"""

import errno
import socket

from twisted.internet import error, task
from twisted.internet.address import IPv4Address as TCPAddress
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.forwards import (
    ForwardError,
    ForwardSpec,
    PortForwarder,
    bindErrorMessage,
    parseSpec,
    specFromJSON,
)


class _Port:
    def __init__(self, number, factory, reactor):
        self.number = number
        self.factory = factory
        self.stopped = False
        self._reactor = reactor

    def getHost(self):
        return TCPAddress("TCP", "127.0.0.1", self.number)

    def stopListening(self):
        self.stopped = True
        self._reactor.ports.remove(self)


class ListenReactor(task.Clock):
    """
    Just enough reactor to listen (and a clock): ports are numbered from
    40000 for port 0, and binding a port twice fails with EADDRINUSE like
    the kernel.
    """

    def __init__(self):
        super().__init__()
        self.ports = []
        self._next = 40000

    def _listen(self, kind, port, factory, interface):
        if port == 0:
            self._next += 1
            port = self._next
        # TCP and UDP port numbers are separate spaces, as in the kernel.
        if any((p.kind, p.number) == (kind, port) for p in self.ports):
            raise error.CannotListenError(
                interface, port, socket.error(errno.EADDRINUSE, "Address already in use")
            )
        p = _Port(port, factory, self)
        p.kind = kind
        self.ports.append(p)
        return p

    def listenTCP(self, port, factory, backlog=50, interface=""):
        return self._listen("tcp", port, factory, interface)

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        p = self._listen("udp", port, protocol, interface)
        p.maxPacketSize = maxPacketSize
        protocol.transport = _UDPTransport()
        return p


class _UDPTransport:
    def __init__(self):
        self.written = []

    def write(self, data, addr):
        self.written.append((data, addr))


class FakeConnector:
    """
    An L{IGuestConnector} whose TCP connects the test completes by hand.
    """

    def __init__(self):
        self.tcp = []
        self.udp = []

    def connectTCP(self, guestIP, guestPort, srcIP, srcPort, protocol):
        d = Deferred()
        self.tcp.append((guestIP, guestPort, srcIP, srcPort, protocol, d))
        return d

    def openUDP(self, guestIP, guestPort, srcIP, srcPort, deliver):
        flow = _Flow(deliver)
        self.udp.append((guestIP, guestPort, srcIP, srcPort, flow))
        return flow


class _Flow:
    def __init__(self, deliver):
        self.deliver = deliver
        self.sent = []
        self.closed = False

    def send(self, data):
        self.sent.append(data)

    def close(self):
        self.closed = True


class _GuestConnection(StringTransport):
    """
    A fake connection into the guest: a transport that records producers.
    """

    def __init__(self):
        super().__init__()
        self.aborted = False
        self.writeClosed = False

    def abortConnection(self):
        self.aborted = True

    def loseWriteConnection(self):
        self.writeClosed = True


class SpecTests(SynchronousTestCase):
    def test_parse(self):
        """
        The reference's spec string parses into its parts and prints back.
        """
        spec = parseSpec("tcp:127.0.0.1:8080:tcp:192.168.65.3:80")
        self.assertEqual(spec, ForwardSpec("tcp", "127.0.0.1", 8080, "192.168.65.3", 80))
        self.assertEqual(str(spec), "tcp:127.0.0.1:8080:tcp:192.168.65.3:80")
        self.assertEqual(parseSpec("udp:0.0.0.0:0:udp:192.168.65.3:53").hostPort, 0)

    def test_parseErrors(self):
        """
        Mismatched protocols, unknown ones, bad addresses and ports are
        400 errors naming the problem.
        """
        for text, fragment in [
            ("tcp:127.0.0.1:80:udp:192.168.65.3:80", "expected"),
            ("sctp:127.0.0.1:80:sctp:192.168.65.3:80", "expected"),
            ("tcp:localhost:80:tcp:192.168.65.3:80", "host address"),
            ("tcp:127.0.0.1:99999:tcp:192.168.65.3:80", "out of range"),
            ("tcp:127.0.0.1:80:tcp:192.168.65.3:0", "out of range"),
            ("tcp:127.0.0.1:80", "expected"),
        ]:
            e = self.assertRaises(ForwardError, parseSpec, text)
            self.assertIn(fragment, str(e))
            self.assertEqual(e.code, 400)

    def test_json(self):
        """
        gvproxy's JSON: protocol defaults to tcp, an empty local host means
        every address.
        """
        self.assertEqual(
            specFromJSON({"local": ":8080", "remote": "192.168.65.3:80"}),
            ForwardSpec("tcp", "0.0.0.0", 8080, "192.168.65.3", 80),
        )
        self.assertEqual(
            specFromJSON({"local": "127.0.0.1:53", "remote": "192.168.65.3:53", "protocol": "udp"}),
            ForwardSpec("udp", "127.0.0.1", 53, "192.168.65.3", 53),
        )
        for body in [[], {"local": "8080"}, {"local": "x:1", "remote": "192.168.65.3:80"}, {"local": ":1", "remote": "192.168.65.3:80", "protocol": "unix"}]:
            self.assertEqual(self.assertRaises(ForwardError, specFromJSON, body).code, 400)

    def test_bindErrorMessages(self):
        """
        Bind failures use the reference's (Docker's) wording.
        """
        spec = ForwardSpec("tcp", "127.0.0.1", 8080, "192.168.65.3", 80)

        def failure(code):
            return error.CannotListenError("127.0.0.1", 8080, socket.error(code, "x"))

        self.assertEqual(
            bindErrorMessage(spec, failure(errno.EADDRINUSE)),
            "Bind for 127.0.0.1:8080 failed: port is already allocated",
        )
        self.assertEqual(
            bindErrorMessage(spec, failure(errno.EADDRNOTAVAIL)),
            "listen tcp 127.0.0.1:8080: bind: cannot assign requested address",
        )
        self.assertEqual(
            bindErrorMessage(spec, failure(errno.EACCES)),
            "Bind for 127.0.0.1:8080 failed: permission denied",
        )
        self.assertTrue(
            bindErrorMessage(spec, failure(errno.EINVAL)).startswith(
                "Bind for 127.0.0.1:8080: unexpected error"
            )
        )


class PortForwarderTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = ListenReactor()
        self.connector = FakeConnector()
        self.forwarder = PortForwarder(self.reactor, self.connector, "192.168.65.2", "192.168.65.1")

    def accept(self, peerHost="127.0.0.1", peerPort=51000, spec=None):
        spec = spec or self.forwarder.expose(parseSpec("tcp:127.0.0.1:8080:tcp:192.168.65.3:80"))
        factory = self.reactor.ports[-1].factory
        client = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=TCPAddress("TCP", peerHost, peerPort))
        client.makeConnection(transport)
        return client, transport

    def test_exposeResolvesPortZero(self):
        """
        Host port 0 binds a free port, reported in the spec in force and in
        the list.
        """
        spec = self.forwarder.expose(parseSpec("tcp:127.0.0.1:0:tcp:192.168.65.3:80"))
        self.assertEqual(spec.hostPort, 40001)
        self.assertEqual(self.forwarder.forwards(), [spec])

    def test_secondExposeRefused(self):
        """
        The same local address twice is "port is already allocated" (409),
        and so is a port another process holds.
        """
        self.forwarder.expose(parseSpec("tcp:127.0.0.1:8080:tcp:192.168.65.3:80"))
        e = self.assertRaises(
            ForwardError, self.forwarder.expose, parseSpec("tcp:127.0.0.1:8080:tcp:192.168.65.3:81")
        )
        self.assertEqual((str(e), e.code), ("Bind for 127.0.0.1:8080 failed: port is already allocated", 409))
        self.reactor.listenTCP(9090, None)
        e = self.assertRaises(
            ForwardError, self.forwarder.expose, parseSpec("tcp:127.0.0.1:9090:tcp:192.168.65.3:80")
        )
        self.assertEqual(str(e), "Bind for 127.0.0.1:9090 failed: port is already allocated")

    def test_allowedBindAddresses(self):
        """
        With --allowed-bind-addresses, other addresses are refused; 0.0.0.0
        in the list allows all.
        """
        limited = PortForwarder(self.reactor, self.connector, "192.168.65.2", "192.168.65.1", ["127.0.0.1"])
        limited.expose(parseSpec("tcp:127.0.0.1:1:tcp:192.168.65.3:80"))
        e = self.assertRaises(ForwardError, limited.expose, parseSpec("tcp:0.0.0.0:2:tcp:192.168.65.3:80"))
        self.assertIn("--allowed-bind-addresses", str(e))
        everything = PortForwarder(self.reactor, self.connector, "192.168.65.2", "192.168.65.1", ["0.0.0.0"])
        everything.expose(parseSpec("tcp:10.1.2.3:3:tcp:192.168.65.3:80"))

    def test_tcpClientFromLoopbackAppearsAsHostAlias(self):
        """
        A client on the host's loopback reaches the guest from the host
        alias, with its own source port; reading waits for the guest.
        """
        client, transport = self.accept("127.0.0.1", 51000)
        [(guestIP, guestPort, srcIP, srcPort, protocol, d)] = self.connector.tcp
        self.assertEqual((guestIP, guestPort, srcIP, srcPort), ("192.168.65.3", 80, "192.168.65.2", 51000))
        self.assertEqual(transport.producerState, "paused")

    def test_tcpClientElsewhereAppearsAsItself(self):
        """
        A client from another address appears in the guest as itself.
        """
        self.accept("10.0.0.7", 40000)
        self.assertEqual(self.connector.tcp[0][2], "10.0.0.7")

    def test_wholeLoopbackNetworkAppearsAsHostAlias(self):
        """
        Every client address in 127.0.0.0/8 is the host's loopback, up to
        its last usable address, so it appears as the host alias, over TCP
        and UDP; the addresses just outside the /8 appear as themselves.
        """
        spec = self.forwarder.expose(parseSpec("tcp:0.0.0.0:8080:tcp:192.168.65.3:80"))
        for peer in ("127.0.0.2", "127.255.255.254", "128.0.0.1", "126.255.255.254"):
            self.accept(peer, 51000, spec=spec)
        self.assertEqual(
            [entry[2] for entry in self.connector.tcp],
            ["192.168.65.2", "192.168.65.2", "128.0.0.1", "126.255.255.254"],
        )
        self.forwarder.expose(parseSpec("udp:0.0.0.0:5353:udp:192.168.65.3:53"))
        forward = self.reactor.ports[-1].factory
        for peer in ("127.0.0.2", "127.255.255.254", "128.0.0.1", "126.255.255.254"):
            forward.datagramReceived(b"q", (peer, 1111))
        self.assertEqual(
            [entry[2] for entry in self.connector.udp],
            ["192.168.65.2", "192.168.65.2", "128.0.0.1", "126.255.255.254"],
        )

    def test_hostAliasDisabledLoopbackAppearsAsGateway(self):
        """
        With the host alias disabled (C{--host-ip 0.0.0.0}, so C{hostAlias}
        is C{None}), a loopback client appears in the guest from the
        gateway, over TCP and UDP; other clients still appear as themselves.
        """
        forwarder = PortForwarder(self.reactor, self.connector, None, "192.168.65.1")
        spec = forwarder.expose(parseSpec("tcp:0.0.0.0:8080:tcp:192.168.65.3:80"))
        self.accept("127.0.0.1", 51000, spec=spec)
        self.accept("10.0.0.7", 51001, spec=spec)
        self.assertEqual([entry[2] for entry in self.connector.tcp], ["192.168.65.1", "10.0.0.7"])
        forwarder.expose(parseSpec("udp:0.0.0.0:5353:udp:192.168.65.3:53"))
        forward = self.reactor.ports[-1].factory
        forward.datagramReceived(b"q", ("127.0.0.1", 1111))
        self.assertEqual(self.connector.udp[0][:4], ("192.168.65.3", 53, "192.168.65.1", 1111))

    def test_forwardsSorted(self):
        """
        C{forwards()} lists by host address (as a number: 9.0.0.1 before
        10.0.0.1), then host port, then protocol, whatever order the
        forwards were made in.
        """
        for text in [
            "udp:127.0.0.1:8080:udp:192.168.65.3:80",
            "tcp:127.0.0.1:9000:tcp:192.168.65.3:80",
            "tcp:10.0.0.1:7000:tcp:192.168.65.3:80",
            "tcp:127.0.0.1:8080:tcp:192.168.65.3:80",
            "tcp:9.0.0.1:7001:tcp:192.168.65.3:80",
        ]:
            self.forwarder.expose(parseSpec(text))
        self.assertEqual(
            [str(spec) for spec in self.forwarder.forwards()],
            [
                "tcp:9.0.0.1:7001:tcp:192.168.65.3:80",
                "tcp:10.0.0.1:7000:tcp:192.168.65.3:80",
                "tcp:127.0.0.1:8080:tcp:192.168.65.3:80",
                "udp:127.0.0.1:8080:udp:192.168.65.3:80",
                "tcp:127.0.0.1:9000:tcp:192.168.65.3:80",
            ],
        )

    def test_tcpProxiesBothWays(self):
        """
        Once the guest accepts, reading resumes and bytes flow both ways;
        each side is the other's producer; half-close passes through.
        """
        client, transport = self.accept()
        *_, protocol, d = self.connector.tcp[0]
        guest = _GuestConnection()
        protocol.makeConnection(guest)
        d.callback(guest)
        self.assertEqual(transport.producerState, "producing")
        self.assertIs(transport.producer, guest)
        self.assertIs(guest.producer, transport)
        client.dataReceived(b"request")
        self.assertEqual(guest.value(), b"request")
        protocol.dataReceived(b"response")
        self.assertEqual(transport.value(), b"response")
        client.readConnectionLost()
        self.assertTrue(guest.writeClosed)

    def test_guestEOFUnregistersBeforeHalfClose(self):
        """
        The guest's EOF half-closes the host client only after the guest
        stopped being its producer: Twisted resumes a registered producer
        instead of sending FIN.
        """
        client, transport = self.accept()
        *_, protocol, d = self.connector.tcp[0]
        guest = _GuestConnection()
        protocol.makeConnection(guest)
        d.callback(guest)
        calls = []
        transport.unregisterProducer = lambda: calls.append("unregister")
        transport.loseWriteConnection = lambda: calls.append("loseWrite")
        protocol.readConnectionLost()
        self.assertEqual(calls, ["unregister", "loseWrite"])

    def test_guestRefusesClosesClient(self):
        """
        When the guest refuses (or is gone), the host client is reset at
        once rather than left hanging.
        """
        client, transport = self.accept()
        self.connector.tcp[0][-1].errback(Failure(error.ConnectionRefusedError()))
        self.assertTrue(transport.disconnecting)

    def test_unexposeStopsAndClosesClients(self):
        """
        Unexposing stops the listener and closes its connections; the
        forward leaves the list; a second unexpose is an error (404).
        """
        client, transport = self.accept()
        port = self.reactor.ports[0]
        self.forwarder.unexpose("tcp", "127.0.0.1", 8080)
        self.assertTrue(port.stopped)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.forwarder.forwards(), [])
        e = self.assertRaises(ForwardError, self.forwarder.unexpose, "tcp", "127.0.0.1", 8080)
        self.assertEqual(e.code, 404)

    def test_udpFlowPerClient(self):
        """
        Each UDP client gets its own flow into the guest; replies go back
        to that client; unexposing closes the flows.
        """
        self.forwarder.expose(parseSpec("udp:127.0.0.1:5353:udp:192.168.65.3:53"))
        # Datagrams up to the UDP maximum are read whole (Twisted's default
        # is 8192 bytes).
        self.assertEqual(self.reactor.ports[0].maxPacketSize, 65535)
        forward = self.reactor.ports[0].factory
        forward.datagramReceived(b"q1", ("127.0.0.1", 1111))
        forward.datagramReceived(b"q2", ("127.0.0.1", 1111))
        forward.datagramReceived(b"q3", ("10.0.0.9", 2222))
        first, second = self.connector.udp
        self.assertEqual(first[:4], ("192.168.65.3", 53, "192.168.65.2", 1111))
        self.assertEqual(second[:4], ("192.168.65.3", 53, "10.0.0.9", 2222))
        self.assertEqual(first[4].sent, [b"q1", b"q2"])
        first[4].deliver(b"answer")
        self.assertEqual(forward.transport.written, [(b"answer", ("127.0.0.1", 1111))])
        self.forwarder.unexpose("udp", "127.0.0.1", 5353)
        self.assertTrue(first[4].closed and second[4].closed)

    def test_udpFlowsExpire(self):
        """
        A UDP client silent for 60 s (both ways) loses its flow; traffic
        keeps a flow alive.
        """
        self.forwarder.expose(parseSpec("udp:127.0.0.1:5353:udp:192.168.65.3:53"))
        forward = self.reactor.ports[0].factory
        forward.datagramReceived(b"a", ("127.0.0.1", 1))
        forward.datagramReceived(b"b", ("127.0.0.1", 2))
        first, second = (entry[4] for entry in self.connector.udp)
        self.reactor.advance(50)
        second.deliver(b"reply")
        self.reactor.advance(15)
        self.assertTrue(first.closed)
        self.assertFalse(second.closed)
        self.reactor.advance(60)
        self.assertTrue(second.closed)
