"""
Tests for connections vpnkit opens into a guest (the TCP half of port
forwarding): L{vpnkit.protocols.tcp.layer.TCPLayer.connectToGuest}.
"""

from twisted.internet import error
from twisted.internet.protocol import Protocol

from tests.test_tcp_layer import StackTestCase
from vpnkit.protocols.tcp.state import State
from vpnkit.wire.ipv4 import packIP
from vpnkit.wire.seq import seqAdd
from vpnkit.wire.tcp import ACK, RST, SYN, Segment, TCPOptions

ALIAS = packIP("192.168.65.2")


class Recorder(Protocol):
    def __init__(self):
        self.data = b""
        self.lost = []

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.lost.append(reason)


class ConnectToGuestTests(StackTestCase):
    def connect(self, guestPort=8000, srcPort=51000):
        self.protocol = Recorder()
        self.results = []
        d = self.stack.tcp.connectToGuest(self.guest.ip, guestPort, ALIAS, srcPort, self.protocol)
        d.addBoth(self.results.append)
        return d

    def synAck(self, syn, flags=SYN | ACK):
        return Segment(
            syn.dstPort, syn.srcPort, 7000, seqAdd(syn.seq, 1), flags, 64240, TCPOptions(mss=1460)
        )

    def test_synFromTheClientAddress(self):
        """
        vpnkit sends the guest a SYN from the host alias and the client's
        port, with MSS, window scale and SACK-permitted; nothing fires yet.
        """
        self.connect()
        [(header, syn)] = self.received()
        self.assertEqual((header.src, header.dst), (ALIAS, self.guest.ip))
        self.assertEqual((syn.srcPort, syn.dstPort, syn.flags), (51000, 8000, SYN))
        self.assertEqual(syn.options.mss, 1460)
        self.assertTrue(syn.options.sackPermitted)
        self.assertIsNotNone(syn.options.windowScale)
        self.assertEqual(self.results, [])

    def test_established(self):
        """
        The guest's SYN-ACK establishes the connection: vpnkit ACKs it, the
        Deferred fires with the connection and the protocol is attached and
        receives the guest's data.
        """
        self.connect()
        [(_, syn)] = self.received()
        self.sendSegment(self.synAck(syn), dst=ALIAS)
        [(_, ack)] = self.received()
        self.assertEqual((ack.flags, ack.ack), (ACK, 7001))
        [connection] = self.results
        self.assertIs(connection.protocol, self.protocol)
        self.assertIs(connection.tcb.state, State.ESTABLISHED)
        data = Segment(8000, 51000, 7001, seqAdd(syn.seq, 1), ACK, 64240, payload=b"hello")
        self.sendSegment(data, dst=ALIAS)
        self.assertEqual(self.protocol.data, b"hello")
        self.assertEqual(self.counters.outboundOpened, 1)

    def test_refused(self):
        """
        A RST from the guest (nothing listens) fails the Deferred with
        ConnectionRefusedError and forgets the connection.
        """
        self.connect()
        [(_, syn)] = self.received()
        self.sendSegment(
            Segment(8000, 51000, 0, seqAdd(syn.seq, 1), RST | ACK, 0), dst=ALIAS
        )
        [failure] = self.results
        failure.trap(error.ConnectionRefusedError)
        self.assertEqual(self.stack.tcp.connections(), [])

    def test_noAnswer(self):
        """
        A guest that never answers fails the Deferred with TimeoutError once
        the SYN retries are spent.
        """
        self.connect()
        for _ in range(100):
            if self.results:
                break
            self.clock.advance(10)
        [failure] = self.results
        failure.trap(error.TimeoutError)
        syns = [s for s in self.segments() if s.flags == SYN]
        self.assertEqual(len(syns), 1 + self.stack.tcp.tcpConfig.synRetries)

    def test_noGuest(self):
        """
        No guest holds the address: the Deferred fails at once, nothing is
        sent.
        """
        results = []
        self.stack.tcp.connectToGuest(packIP("192.168.65.99"), 80, ALIAS, 1, Recorder()).addBoth(
            results.append
        )
        [failure] = results
        failure.trap(error.ConnectionRefusedError)
        self.assertEqual(self.received(), [])
        self.assertEqual(self.counters.outboundFailed, 1)

    def test_pairInUse(self):
        """
        A second connection for the same pair fails at once.
        """
        self.connect()
        results = []
        self.stack.tcp.connectToGuest(self.guest.ip, 8000, ALIAS, 51000, Recorder()).addBoth(
            results.append
        )
        results[0].trap(error.ConnectionRefusedError)
