"""
Tests for L{vpnkit.protocols.udp}: checksum checks, delivery to vpnkit's
own services, and sending datagrams to guests.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.interfaces import IIPReceiver, IUDPService
from vpnkit.protocols.udp import UDPLayer
from vpnkit.wire.ipv4 import PROTO_UDP, IPv4Header
from vpnkit.wire.udp import UDPHeader, emitUDP, parseUDP

from tests.helpers import (
    BROADCAST_IP,
    BROADCAST_MAC,
    GATEWAY_IP,
    HOST_IP,
    REMOTE_IP,
    SUBNET_BROADCAST_IP,
    SenderRecorder,
    ServiceRecorder,
    buildUDP,
    ip,
    makeStack,
    nonZeroCounters,
)

GUEST_IP = ip("192.168.65.3")
PAYLOAD = b"hello, service"


class UDPLayerTests(SynchronousTestCase):
    """
    L{UDPLayer} between a recording sender and a recording service on port
    67.
    """

    def setUp(self):
        self.counters = StackCounters()
        self.sender = SenderRecorder()
        self.layer = UDPLayer(StackConfig(), self.sender, self.counters)
        self.service = ServiceRecorder()
        self.layer.bindService(67, self.service)

    def receive(self, dst, dstPort=67, payload=PAYLOAD, src=GUEST_IP, datagram=None):
        """
        Hand the layer a datagram from C{src}:68 to C{dst}:C{dstPort}.

        @return: the IP header used.
        """
        if datagram is None:
            datagram = emitUDP(68, dstPort, payload, src, dst)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, src, dst)
        self.layer.ipPayloadReceived(header, datagram)
        return header

    def test_interfaces(self):
        """
        The layer provides L{IIPReceiver}; the recording service provides
        L{IUDPService}.
        """
        self.assertTrue(verifyObject(IIPReceiver, self.layer))
        self.assertTrue(verifyObject(IUDPService, self.service))

    def test_bindTwice(self):
        """
        A second service on one port is refused.
        """
        self.assertRaises(ValueError, self.layer.bindService, 67, ServiceRecorder())

    def test_gateway(self):
        """
        A datagram to the gateway's bound port reaches the service with both
        headers and exactly its payload.
        """
        header = self.receive(GATEWAY_IP)
        datagram = emitUDP(68, 67, PAYLOAD, GUEST_IP, GATEWAY_IP)
        self.assertEqual(
            self.service.received,
            [
                (
                    header,
                    UDPHeader(68, 67, 8 + len(PAYLOAD), int.from_bytes(datagram[6:8], "big")),
                    PAYLOAD,
                )
            ],
        )
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 1})

    def test_broadcasts(self):
        """
        Datagrams to 255.255.255.255 and to the subnet broadcast address
        reach the service too.
        """
        self.receive(BROADCAST_IP, src=b"\0\0\0\0")
        self.receive(SUBNET_BROADCAST_IP)
        self.assertEqual(len(self.service.received), 2)
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 2})

    def test_noService(self):
        """
        A datagram to a gateway port with no service is counted as
        C{noHandler}.
        """
        self.receive(GATEWAY_IP, dstPort=53)
        self.assertEqual(self.service.received, [])
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 1, "udp.noHandler": 1})

    def test_notLocal(self):
        """
        A datagram to the bound port of the host alias or a remote address
        is not vpnkit's service: counted as C{noHandler}.
        """
        self.receive(HOST_IP)
        self.receive(REMOTE_IP)
        self.assertEqual(self.service.received, [])
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 2, "udp.noHandler": 2})

    def test_badChecksum(self):
        """
        A datagram whose checksum does not verify is counted as
        C{badChecksum} and not delivered.
        """
        datagram = bytearray(emitUDP(68, 67, PAYLOAD, GUEST_IP, GATEWAY_IP))
        datagram[-1] ^= 0x20
        self.receive(GATEWAY_IP, datagram=bytes(datagram))
        self.assertEqual(self.service.received, [])
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 1, "udp.badChecksum": 1})

    def test_checksumForOtherAddresses(self):
        """
        The checksum covers the pseudo-header: a datagram checksummed for
        another source address does not verify.
        """
        datagram = emitUDP(68, 67, PAYLOAD, ip("192.168.65.4"), GATEWAY_IP)
        self.receive(GATEWAY_IP, datagram=datagram)
        self.assertEqual(self.counters.udp.badChecksum, 1)

    def test_zeroChecksum(self):
        """
        A datagram with checksum 0 ("not computed") is accepted.
        """
        datagram = emitUDP(68, 67, PAYLOAD, GUEST_IP, GATEWAY_IP)
        self.receive(GATEWAY_IP, datagram=datagram[:6] + b"\0\0" + datagram[8:])
        [(_, udp, payload)] = self.service.received
        self.assertEqual((udp.checksum, payload), (0, PAYLOAD))
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 1})

    def test_truncated(self):
        """
        Fewer than 8 bytes, or fewer bytes than the length field says, are
        counted as C{malformed}.
        """
        datagram = emitUDP(68, 67, PAYLOAD, GUEST_IP, GATEWAY_IP)
        self.receive(GATEWAY_IP, datagram=datagram[:7])
        self.receive(GATEWAY_IP, datagram=datagram[:-1])
        self.assertEqual(self.service.received, [])
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 2, "udp.malformed": 2})

    def test_lengthUnderHeader(self):
        """
        A length field under 8 is counted as C{malformed}.
        """
        datagram = emitUDP(68, 67, PAYLOAD, GUEST_IP, GATEWAY_IP)
        self.receive(GATEWAY_IP, datagram=datagram[:4] + b"\x00\x07" + datagram[6:])
        self.assertEqual(nonZeroCounters(self.counters), {"udp.received": 1, "udp.malformed": 1})

    def test_trailingBytes(self):
        """
        Bytes after the UDP length are not part of the payload.
        """
        datagram = emitUDP(68, 67, PAYLOAD, GUEST_IP, GATEWAY_IP)
        self.receive(GATEWAY_IP, datagram=datagram + b"\0\0\0")
        [(_, _, payload)] = self.service.received
        self.assertEqual(payload, PAYLOAD)

    def test_send(self):
        """
        L{UDPLayer.sendDatagram} hands the IPv4 layer a datagram with a
        verifying checksum, passing the TTL and C{dstMAC} through, and counts
        C{sent}.
        """
        sent = self.layer.sendDatagram(
            GATEWAY_IP, 67, GUEST_IP, 68, PAYLOAD, ttl=9, dstMAC=BROADCAST_MAC
        )
        self.assertTrue(sent)
        [(src, dst, protocol, datagram, ttl, dstMAC)] = self.sender.sent
        self.assertEqual(
            (src, dst, protocol, ttl, dstMAC), (GATEWAY_IP, GUEST_IP, PROTO_UDP, 9, BROADCAST_MAC)
        )
        self.assertEqual(datagram, emitUDP(67, 68, PAYLOAD, GATEWAY_IP, GUEST_IP))
        udp, payload = parseUDP(datagram, GATEWAY_IP, GUEST_IP)
        self.assertEqual(
            (udp.srcPort, udp.dstPort, udp.length, payload), (67, 68, 8 + len(PAYLOAD), PAYLOAD)
        )
        self.assertEqual(nonZeroCounters(self.counters), {"udp.sent": 1})

    def test_sendFails(self):
        """
        A datagram the IPv4 layer could not send is not counted as sent.
        """
        self.sender.result = False
        self.assertFalse(self.layer.sendDatagram(GATEWAY_IP, 67, GUEST_IP, 68, PAYLOAD))
        self.assertEqual(nonZeroCounters(self.counters), {})


class VirtualPortTests(SynchronousTestCase):
    """
    L{UDPLayer.listen}: a stock L{DatagramProtocol} on a gateway port.
    """

    def setUp(self):
        self.counters = StackCounters()
        self.sender = SenderRecorder()
        self.layer = UDPLayer(StackConfig(), self.sender, self.counters)
        self.protocol = _Echo()
        self.port = self.layer.listen(5353, self.protocol)

    def test_interfaces(self):
        """
        The port provides C{IUDPTransport} and C{IListeningPort}, and
        started the protocol.
        """
        from twisted.internet.interfaces import IListeningPort, IUDPTransport

        self.assertTrue(verifyObject(IUDPTransport, self.port))
        self.assertTrue(verifyObject(IListeningPort, self.port))
        self.assertTrue(self.protocol.started)
        self.assertEqual((self.port.getHost().host, self.port.getHost().port), ("192.168.65.1", 5353))

    def test_roundTrip(self):
        """
        A datagram to the gateway's port reaches C{datagramReceived} with
        the guest's address as text; C{write} answers that address from
        the gateway's port.
        """
        datagram = emitUDP(4444, 5353, b"ping", GUEST_IP, GATEWAY_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, GATEWAY_IP)
        self.layer.ipPayloadReceived(header, datagram)
        self.assertEqual(self.protocol.received, [(b"ping", ("192.168.65.3", 4444))])
        [(src, dst, protocol, data, ttl, _)] = self.sender.sent
        self.assertEqual((src, dst), (GATEWAY_IP, GUEST_IP))
        self.assertEqual(parseUDP(data, src, dst)[1], b"pong")
        self.assertEqual(parseUDP(data, src, dst)[0].srcPort, 5353)

    def test_notOnBroadcast(self):
        """
        Virtual ports listen on the gateway only, not on broadcast.
        """
        datagram = emitUDP(4444, 5353, b"ping", GUEST_IP, BROADCAST_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, BROADCAST_IP)
        self.layer.ipPayloadReceived(header, datagram)
        self.assertEqual(self.protocol.received, [])

    def test_portTaken(self):
        """
        A port already served cannot be listened on again, by either kind
        of service.
        """
        self.assertRaises(ValueError, self.layer.listen, 5353, _Echo())
        self.assertRaises(ValueError, self.layer.bindService, 5353, ServiceRecorder())

    def test_serviceRaises(self):
        """
        A protocol that raises on a datagram does not take the caller down:
        the error is counted (C{serviceErrors}) and logged, as the reactor
        does for real ports.
        """

        def explode(data, addr):
            raise RuntimeError("bad service")

        self.protocol.datagramReceived = explode
        datagram = emitUDP(4444, 5353, b"ping", GUEST_IP, GATEWAY_IP)
        header = IPv4Header(0, 20 + len(datagram), 0, 2, 0, 64, PROTO_UDP, 0, GUEST_IP, GATEWAY_IP)
        self.layer.ipPayloadReceived(header, datagram)
        self.assertEqual(self.counters.udp.serviceErrors, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_stopListening(self):
        """
        After C{stopListening} the protocol is stopped and the port free.
        """
        self.port.stopListening()
        self.assertFalse(self.protocol.started)
        self.layer.listen(5353, _Echo())


class _Echo(DatagramProtocol):
    """
    A stock L{DatagramProtocol} that answers "pong".
    """

    noisy = False
    started = False

    def __init__(self):
        self.received = []

    def startProtocol(self):
        self.started = True

    def stopProtocol(self):
        self.started = False

    def datagramReceived(self, data, addr):
        self.received.append((data, addr))
        self.transport.write(b"pong", addr)


class StackUDPTests(SynchronousTestCase):
    """
    UDP frames through the whole stack.
    """

    def setUp(self):
        self.stack, (self.a,) = makeStack(1)

    def test_remoteGoesToNAT(self):
        """
        A datagram to a remote host goes to the NAT, which sends it from a
        host socket (see C{test_udpnat}); nothing comes back by itself.
        """
        self.a.send(buildUDP(self.a.mac, self.a.ip, 40000, REMOTE_IP, 53, b"query"))
        self.assertEqual(self.a.takeFrames(), [])
        [sock] = self.stack.sockets.opened
        self.assertEqual([(s.data, s.host, s.port) for s in sock.sent], [(b"query", "198.51.100.10", 53)])
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {
                "link.linksOpened": 1,
                "ethernet.received": 1,
                "ipv4.received": 1,
                "udp.received": 1,
                "udp.natFlowsOpened": 1,
                "udp.natSent": 1,
            },
        )

    def test_badChecksum(self):
        """
        A corrupted datagram to the DHCP port is counted as C{badChecksum}
        and never reaches the DHCP server.
        """
        # A DHCP-shaped payload: its client hardware address is A's own.
        payload = b"x" * 28 + self.a.mac + b"x" * 266
        frame = bytearray(buildUDP(self.a.mac, self.a.ip, 68, GATEWAY_IP, 67, payload))
        frame[-1] ^= 1
        self.a.send(bytes(frame))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.udp.badChecksum, 1)
        self.assertEqual(self.stack.counters.dhcp.received, 0)

    def test_dhcpPortDelivered(self):
        """
        A datagram (checksum 0) to gateway port 67 reaches the DHCP server,
        which counts the garbage as C{malformed}.
        """
        self.a.send(
            buildUDP(self.a.mac, self.a.ip, 68, GATEWAY_IP, 67, b"not dhcp", checksum=False)
        )
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {
                "link.linksOpened": 1,
                "ethernet.received": 1,
                "ipv4.received": 1,
                "udp.received": 1,
                "dhcp.received": 1,
                "dhcp.malformed": 1,
            },
        )
