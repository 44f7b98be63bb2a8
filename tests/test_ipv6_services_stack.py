"""
The IPv6 services through a whole L{vpnkit.stack.Stack} (fake links,
sockets and host network): DNS AAAA asked over IPv6, a guest's addresses
in C{/stats}, port forwards into a guest's IPv6 address, and gateway
forwards reached on the IPv6 gateway.
"""

from twisted.internet.address import IPv6Address as TCP6Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.forwards import PortForwarder, StackConnector, parseSpec
from vpnkit.gatewayforwards import GatewayForward
from vpnkit.wire.tcp import SYN, parseTCP

from tests.helpers import makeStack
from tests.ipv6helpers import GATEWAY6, HOST6, buildUDP6, ip6, parseIPv6Frame, parseUDP6Frame
from tests.test_forwards import ListenReactor

GUEST6 = ip6("fd00:65::3")
PROTO_TCP = 6


class IPv6ServicesTests(SynchronousTestCase):
    def setUp(self):
        self.stack, (self.guest,) = makeStack(1)

    def sendFromGuest(self, srcPort, dst, dstPort, payload):
        g = self.guest
        g.send(buildUDP6(g.mac, GUEST6, srcPort, dst, dstPort, payload))

    def test_dnsAAAAOverIPv6(self):
        """
        C{dig AAAA host.internal @fd00:65::1}: the answer comes from the
        IPv6 gateway's port 53 and holds the IPv6 host alias.
        """
        query = dns.Message(id=7, recDes=1)
        query.queries = [dns.Query(b"host.internal", dns.AAAA, dns.IN)]
        self.sendFromGuest(33333, GATEWAY6, 53, query.toStr())
        [frame] = self.guest.takeFrames()
        _, header, udp, payload = parseUDP6Frame(frame)
        self.assertEqual((header.src, header.dst, udp.srcPort, udp.dstPort), (GATEWAY6, GUEST6, 53, 33333))
        answer = dns.Message()
        answer.fromStr(payload)
        self.assertEqual([r.payload.address for r in answer.answers], [HOST6])

    def test_statsSeen(self):
        """
        Once the guest has used its address, C{/stats} lists it as seen
        beside the lease's stable address.
        """
        self.sendFromGuest(33333, GATEWAY6, 9, b"x")
        [entry] = self.stack.stats()["guests"]
        self.assertEqual(entry["ipv6"], {"lease": "fd00:65::3", "seen": ["fd00:65::3"]})

    def test_forwardIntoGuestIPv6(self):
        """
        A client on the host's C{::1} of C{tcp:[::1]:8080:tcp:[fd00:65::3]:80}
        makes vpnkit send the guest an IPv6 SYN from the IPv6 host alias
        with the client's port.
        """
        self.sendFromGuest(33333, GATEWAY6, 9, b"x")  # the switch learns the address
        self.guest.takeFrames()
        reactor = ListenReactor()
        forwarder = PortForwarder(
            reactor, StackConnector(self.stack), "192.168.65.2", "192.168.65.1",
            ipv6=self.stack.config.ipv6,
        )  # fmt: skip
        forwarder.expose(parseSpec("tcp:[::1]:8080:tcp:[fd00:65::3]:80"))
        client = reactor.ports[-1].factory.buildProtocol(None)
        client.makeConnection(StringTransport(peerAddress=TCP6Address("TCP", "::1", 51000)))
        [frame] = self.guest.takeFrames()
        _, header, upper, data = parseIPv6Frame(frame)
        segment = parseTCP(data, header.src, header.dst)
        self.assertEqual((header.src, header.dst, upper), (HOST6, GUEST6, PROTO_TCP))
        self.assertEqual((segment.srcPort, segment.dstPort, segment.flags & SYN), (51000, 80, SYN))

    def test_udpForwardIntoGuestIPv6(self):
        """
        A UDP flow into the guest's IPv6 address sends from the IPv6 host
        alias, and the guest's reply reaches the flow.
        """
        self.sendFromGuest(33333, GATEWAY6, 9, b"x")  # the switch learns the address
        self.guest.takeFrames()
        received = []
        flow = StackConnector(self.stack).openUDP(
            "fd00:65::3", 53, "fd00:65::2", 5555, received.append
        )
        flow.send(b"hello")
        [frame] = self.guest.takeFrames()
        _, header, udp, payload = parseUDP6Frame(frame)
        self.assertEqual((header.src, udp.srcPort, udp.dstPort, payload), (HOST6, 5555, 53, b"hello"))
        self.sendFromGuest(53, HOST6, 5555, b"reply")
        self.assertEqual(received, [b"reply"])

    def test_gatewayForwardOverIPv6(self):
        """
        A guest's UDP to the IPv6 gateway's forwarded port goes to the IPv6
        host address; the reply comes back from the IPv6 gateway.
        """
        self.stack.gatewayForwards.setFile([GatewayForward("udp", 123, "::1", 1123)])
        self.sendFromGuest(40000, GATEWAY6, 123, b"ntp")
        [sock] = self.stack.sockets.live("udp")
        [sent] = sock.takeSent()
        self.assertEqual((sent.data, sent.host, sent.port), (b"ntp", "::1", 1123))
        sock.deliver(b"time", "::1", 1123)
        [frame] = self.guest.takeFrames()
        _, header, udp, payload = parseUDP6Frame(frame)
        self.assertEqual((header.src, udp.srcPort, udp.dstPort, payload), (GATEWAY6, 123, 40000, b"time"))
