"""
Tests for L{vpnkit.protocols.icmp}: echo answered for vpnkit's own
addresses, never forged for anyone else.
"""

import errno

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit.config import StackConfig
from vpnkit.counters import StackCounters
from vpnkit.interfaces import IIPReceiver
from vpnkit.protocols.icmp import ICMPLayer
from vpnkit.wire.icmp import ECHO_REPLY, ECHO_REQUEST, ICMPMessage, echoID, emitICMP, parseICMP
from vpnkit.wire.ipv4 import FLAG_DF, PROTO_ICMP, IPv4Header

from tests.helpers import (
    GATEWAY_IP,
    HOST_IP,
    REMOTE_IP,
    SERVER_MAC,
    SenderRecorder,
    buildICMPEcho,
    buildIPv4,
    ip,
    makeStack,
    nonZeroCounters,
    parseICMPFrame,
)

PAYLOAD = bytes(range(56))


class EchoTestMixin:
    stackOptions = {}

    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2, **self.stackOptions)

    def ping(self, dst, **kwargs):
        """
        Guest A pings C{dst}; the other guest must see nothing.

        @return: the frames A received.
        """
        self.a.send(buildICMPEcho(self.a.mac, self.a.ip, dst, **kwargs))
        self.assertEqual(self.b.takeFrames(), [])
        return self.a.takeFrames()

    def assertCounters(self, expected):
        base = {"link.linksOpened": 2, "ethernet.received": 1, "ipv4.received": 1}
        base.update(expected)
        self.assertEqual(nonZeroCounters(self.stack.counters), base)

    def assertEchoReply(self, frame, src, ident, seq, payload):
        """
        C{frame} is an echo reply from C{src} to guest A carrying
        C{ident}, C{seq} and C{payload}, with valid checksums (the parsers
        verify them).
        """
        eth, header, message = parseICMPFrame(frame)
        self.assertEqual((eth.dst, eth.src), (self.a.mac, SERVER_MAC))
        self.assertEqual(
            header,
            IPv4Header(
                0, 28 + len(payload), 0, FLAG_DF, 0, 64, PROTO_ICMP, header.checksum, src, self.a.ip
            ),
        )
        self.assertEqual((message.type, message.code), (ECHO_REPLY, 0))
        self.assertEqual(echoID(message), (ident, seq))
        self.assertEqual(message.payload, payload)
        rest = ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
        self.assertEqual(frame[34:], emitICMP(ICMPMessage(ECHO_REPLY, 0, 0, rest, payload)))


class EchoTests(EchoTestMixin, SynchronousTestCase):
    """
    Echo requests to the gateway and the host alias are answered.
    """

    def test_gateway(self):
        """
        An echo request to 192.168.65.1 is answered with an echo reply
        carrying the same identifier, sequence number and payload, with the
        addresses swapped.
        """
        [reply] = self.ping(GATEWAY_IP, ident=0x1234, seq=7, payload=PAYLOAD)
        self.assertEchoReply(reply, GATEWAY_IP, 0x1234, 7, PAYLOAD)
        self.assertCounters({"ipv4.sent": 1, "icmp.echoRequests": 1, "icmp.echoReplies": 1})

    def test_hostAlias(self):
        """
        An echo request to the host alias 192.168.65.2 is answered from
        192.168.65.2.
        """
        [reply] = self.ping(HOST_IP, ident=0xBEEF, seq=65535, payload=b"abc")
        self.assertEchoReply(reply, HOST_IP, 0xBEEF, 65535, b"abc")
        self.assertCounters({"ipv4.sent": 1, "icmp.echoRequests": 1, "icmp.echoReplies": 1})

    def test_emptyPayload(self):
        """
        An echo request with no data (C{ping -s 0}) is answered.
        """
        [reply] = self.ping(GATEWAY_IP, ident=0x4321, seq=0, payload=b"")
        self.assertEchoReply(reply, GATEWAY_IP, 0x4321, 0, b"")

    def test_oddPayload(self):
        """
        An odd-length payload gets a correct checksum (the parser verifies
        it).
        """
        payload = b"\xff" * 127
        [reply] = self.ping(GATEWAY_IP, payload=payload)
        self.assertEchoReply(reply, GATEWAY_IP, 0x1234, 1, payload)

    def test_replyChecksumBytes(self):
        """
        The reply to the reference's test ping (id 0x1234, seq 0, no data)
        is exactly C{00 00 ed cb 12 34 00 00}.
        """
        [reply] = self.ping(GATEWAY_IP, ident=0x1234, seq=0, payload=b"")
        self.assertEqual(reply[34:].hex(), "0000edcb12340000")

    def test_paddedRequest(self):
        """
        A request padded to the Ethernet minimum is answered without the
        padding.
        """
        frame = buildICMPEcho(self.a.mac, self.a.ip, GATEWAY_IP, payload=b"").ljust(60, b"\0")
        self.a.send(frame)
        [reply] = self.a.takeFrames()
        self.assertEqual(len(reply), 42)

    def test_secondGuest(self):
        """
        Each guest's echo is answered to that guest.
        """
        self.b.send(buildICMPEcho(self.b.mac, self.b.ip, GATEWAY_IP))
        [reply] = self.b.takeFrames()
        eth, header, message = parseICMPFrame(reply)
        self.assertEqual((eth.dst, header.dst, message.type), (self.b.mac, self.b.ip, ECHO_REPLY))
        self.assertEqual(self.a.takeFrames(), [])


class NotAnsweredTests(EchoTestMixin, SynchronousTestCase):
    """
    What vpnkit does not answer.
    """

    def test_remoteNotForged(self):
        """
        An echo request to a remote address is not answered by vpnkit (it
        never forges replies): it goes to a host ICMP socket, and nothing
        comes back until the host hears a reply.
        """
        self.assertEqual(self.ping(REMOTE_IP), [])
        self.assertCounters({"icmp.echoForwarded": 1, "icmp.flowsOpened": 1})

    def test_unusedSubnetAddress(self):
        """
        An echo request to an address of the subnet nobody holds is not
        answered with a reply: the gateway says the host is unreachable.
        """
        [frame] = self.ping(ip("192.168.65.77"))
        _, header, message = parseICMPFrame(frame)
        self.assertEqual((header.src, message.type, message.code), (GATEWAY_IP, 3, 1))
        self.assertCounters(
            {"icmp.echoRefused": 1, "icmp.unreachableSent": 1, "ipv4.sent": 1}
        )

    def test_otherCode(self):
        """
        An echo request with a non-zero code is not answered.
        """
        self.assertEqual(self.ping(GATEWAY_IP, code=1), [])
        self.assertCounters({"icmp.unsupported": 1})

    def test_echoReply(self):
        """
        An echo reply from a guest is not answered.
        """
        self.assertEqual(self.ping(GATEWAY_IP, type=ECHO_REPLY), [])
        self.assertCounters({"icmp.unsupported": 1})

    def test_otherType(self):
        """
        Another ICMP type (a timestamp request, 13) to the gateway is not
        answered.
        """
        self.assertEqual(self.ping(GATEWAY_IP, type=13), [])
        self.assertCounters({"icmp.unsupported": 1})

    def test_badChecksum(self):
        """
        An echo request whose ICMP checksum does not verify is counted as
        C{badChecksum}.
        """
        frame = bytearray(buildICMPEcho(self.a.mac, self.a.ip, GATEWAY_IP))
        frame[-1] ^= 0xFF
        self.a.send(bytes(frame))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertCounters({"icmp.badChecksum": 1})

    def test_truncated(self):
        """
        An ICMP message shorter than its 8-byte header is counted as
        C{malformed}.
        """
        self.a.send(buildIPv4(self.a.mac, self.a.ip, GATEWAY_IP, PROTO_ICMP, b"\x08\x00\xf7\xff"))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertCounters({"icmp.malformed": 1})

    def test_unknownSource(self):
        """
        An echo request from an address the guest does not hold is dropped
        at its port (C{ipv4.spoofedSource}) and never answered.
        """
        self.a.send(buildICMPEcho(self.a.mac, ip("192.168.65.200"), GATEWAY_IP))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(
            nonZeroCounters(self.stack.counters),
            {"link.linksOpened": 2, "ethernet.received": 1, "ipv4.spoofedSource": 1},
        )


class HostAliasDisabledTests(EchoTestMixin, SynchronousTestCase):
    """
    Without the host alias, 192.168.65.2 is an ordinary address.
    """

    stackOptions = {"hostIP": None}

    def test_aliasNotAnswered(self):
        """
        An echo request to 192.168.65.2 is not answered with a reply (the
        gateway says the host is unreachable), and goes nowhere.
        """
        [frame] = self.ping(HOST_IP)
        self.assertEqual(parseICMPFrame(frame)[2].type, 3)
        self.assertEqual(self.stack.sockets.opened, [])
        self.assertCounters(
            {"icmp.echoRefused": 1, "icmp.unreachableSent": 1, "ipv4.sent": 1}
        )

    def test_loopbackRefused(self):
        """
        Without the alias, the host's loopback is not pinged either.
        """
        [frame] = self.ping(ip("127.0.0.1"))
        self.assertEqual(parseICMPFrame(frame)[2].code, 13)
        self.assertEqual(self.stack.sockets.opened, [])

    def test_gatewayAnswered(self):
        """
        The gateway still answers.
        """
        [reply] = self.ping(GATEWAY_IP)
        self.assertEchoReply(reply, GATEWAY_IP, 0x1234, 1, PAYLOAD)


class LayerTests(SynchronousTestCase):
    """
    L{ICMPLayer} on its own, over a recording sender.
    """

    def setUp(self):
        self.counters = StackCounters()
        self.sender = SenderRecorder()
        self.layer = ICMPLayer(StackConfig(), self.sender, self.counters)

    def header(self, dst):
        return IPv4Header(0, 0, 0, 0, 0, 64, PROTO_ICMP, 0, ip("192.168.65.3"), dst)

    def test_interface(self):
        """
        The layer provides L{IIPReceiver}.
        """
        self.assertTrue(verifyObject(IIPReceiver, self.layer))

    def test_reply(self):
        """
        The reply is handed to the IPv4 layer from the pinged address to the
        pinger, as ICMP, with the default TTL.
        """
        request = emitICMP(ICMPMessage(ECHO_REQUEST, 0, 0, b"\x00\x01\x00\x02", b"hi"))
        self.layer.ipPayloadReceived(self.header(GATEWAY_IP), request)
        self.assertEqual(
            self.sender.sent,
            [
                (
                    GATEWAY_IP,
                    ip("192.168.65.3"),
                    PROTO_ICMP,
                    emitICMP(ICMPMessage(ECHO_REPLY, 0, 0, b"\x00\x01\x00\x02", b"hi")),
                    64,
                    None,
                )
            ],
        )
        self.assertEqual(
            nonZeroCounters(self.counters), {"icmp.echoRequests": 1, "icmp.echoReplies": 1}
        )

    def test_replyNotSent(self):
        """
        When the IPv4 layer cannot send the reply, no reply is counted.
        """
        self.sender.result = False
        request = emitICMP(ICMPMessage(ECHO_REQUEST, 0, 0, b"\x00\x01\x00\x02", b""))
        self.layer.ipPayloadReceived(self.header(HOST_IP), request)
        self.assertEqual(len(self.sender.sent), 1)
        self.assertEqual(nonZeroCounters(self.counters), {"icmp.echoRequests": 1})


class ForwardTests(EchoTestMixin, SynchronousTestCase):
    """
    Echo to remote hosts through host ICMP ("ping") sockets.
    """

    def setUp(self):
        super().setUp()
        self.sockets = self.stack.sockets

    def reply(self, sock, seq=1, payload=PAYLOAD, host="198.51.100.10"):
        """
        The host's ping socket receives the echo reply (carrying the
        socket's own identifier, as the kernel's does).
        """
        rest = sock.port.to_bytes(2, "big") + seq.to_bytes(2, "big")
        sock.deliver(emitICMP(ICMPMessage(ECHO_REPLY, 0, 0, rest, payload)), host, 0)

    def test_forwarded(self):
        """
        The request leaves through a new ICMP socket to the destination,
        with the guest's TTL, DF flag, sequence number and payload; the
        real reply comes back from the destination with the guest's own
        identifier restored.
        """
        self.assertEqual(self.ping(REMOTE_IP, ident=0x1234, seq=7, ttl=42), [])
        [sock] = self.sockets.opened
        self.assertEqual(sock.kind, "icmp")
        [sent] = sock.takeSent()
        self.assertEqual((sent.host, sent.port, sent.ttl, sent.dontFragment), ("198.51.100.10", 0, 42, True))
        message = parseICMP(sent.data)
        self.assertEqual((message.type, echoID(message)[1], message.payload), (ECHO_REQUEST, 7, PAYLOAD))
        self.reply(sock, seq=7)
        [frame] = self.a.takeFrames()
        self.assertEchoReply(frame, REMOTE_IP, 0x1234, 7, PAYLOAD)
        self.assertEqual(self.stack.counters.icmp.echoForwardReplies, 1)

    def test_perGuestIdentifier(self):
        """
        Each guest (address, identifier) gets its own socket; a second
        request of the same ping reuses it.
        """
        self.ping(REMOTE_IP, ident=1, seq=1)
        self.ping(REMOTE_IP, ident=1, seq=2)
        self.ping(REMOTE_IP, ident=2, seq=1)
        self.b.send(buildICMPEcho(self.b.mac, self.b.ip, REMOTE_IP, ident=1))
        self.assertEqual(len(self.sockets.opened), 3)
        self.assertEqual(len(self.sockets.opened[0].sent), 2)

    def test_notAReply(self):
        """
        Anything but an echo reply on the socket is dropped
        (C{unknownReplies}).
        """
        self.ping(REMOTE_IP)
        [sock] = self.sockets.opened
        sock.deliver(b"\x08\x00\x00\x00\x00\x01\x00\x01", "198.51.100.10", 0)
        sock.deliver(b"\x00\x00", "198.51.100.10", 0)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.icmp.unknownReplies, 2)

    def test_noPermission(self):
        """
        When the host refuses ICMP sockets (C{ping_group_range}), one
        warning is logged however many requests come, no reply is sent,
        and each request is counted (C{forwardUnavailable}).
        """
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.sockets.icmpError = PermissionError(errno.EACCES, "Permission denied")
        for seq in range(5):
            self.assertEqual(self.ping(REMOTE_IP, seq=seq), [])
        warnings = [e for e in events if e.get("log_namespace") == "vpnkit.icmp"]
        self.assertEqual(len(warnings), 1)
        self.assertIn("ping_group_range", warnings[0]["log_format"])
        self.assertEqual(self.stack.counters.icmp.forwardUnavailable, 5)

    def test_expiry(self):
        """
        An echo flow idle for 60 s closes its socket.
        """
        self.ping(REMOTE_IP)
        [sock] = self.sockets.opened
        self.stack.reactor.advance(60)
        self.assertTrue(sock.closed)
        self.assertEqual(self.stack.counters.icmp.flowsExpired, 1)

    def test_timeExceeded(self):
        """
        Time exceeded from a router for a forwarded request reaches the
        guest from that router, quoting the guest's request (its own
        identifier and TTL).
        """
        from vpnkit.host.sockets import HostSocketError

        self.ping(REMOTE_IP, ident=0x4242, seq=3, ttl=1)
        [sock] = self.sockets.opened
        inner = sock.sent[0].data[:4] + sock.port.to_bytes(2, "big") + sock.sent[0].data[6:]
        sock.fail(HostSocketError("icmp", errno.EHOSTUNREACH, 11, 0, 0, "192.0.2.254", "198.51.100.10", 0, inner))
        [frame] = self.a.takeFrames()
        _, header, message = parseICMPFrame(frame)
        self.assertEqual((header.src, message.type, message.code), (ip("192.0.2.254"), 11, 0))
        from tests.test_ipv4 import parseQuote

        quoted, rest = parseQuote(message.payload)
        self.assertEqual((quoted.ttl, quoted.dst, rest[4:8]), (1, REMOTE_IP, b"\x42\x42\x00\x03"))
        self.assertEqual(self.stack.counters.icmp.hostErrorsTranslated, 1)

    def test_sendUnreachable(self):
        """
        A request the host refuses to send at once for want of a route
        (or by policy) is answered with destination unreachable from the
        gateway, quoting the request, rather than left to time out; a
        burst of 10 per guest, then 10 a second, the rest counted.
        """
        from tests.test_ipv4 import parseQuote

        self.ping(REMOTE_IP, ident=0x4242, seq=1)
        [sock] = self.sockets.opened
        for error, code in [(errno.ENETUNREACH, 6), (errno.EHOSTUNREACH, 10), (errno.EPERM, 13)]:
            sock.sendError = OSError(error, "refused")
            [frame] = self.ping(REMOTE_IP, ident=0x4242, seq=2)
            _, header, message = parseICMPFrame(frame)
            self.assertEqual((header.src, message.type, message.code), (GATEWAY_IP, 3, code))
            quoted, rest = parseQuote(message.payload)
            self.assertEqual((quoted.dst, rest[4:8]), (REMOTE_IP, b"\x42\x42\x00\x02"))
        counters = self.stack.counters.icmp
        self.assertEqual((counters.forwardFailed, counters.forwardUnreachable), (3, 3))
        answered = sum(len(self.ping(REMOTE_IP, ident=0x4242, seq=n)) for n in range(20))
        self.assertEqual((answered, counters.forwardErrorsLimited), (7, 13))
        self.stack.reactor.advance(0.2)
        self.assertEqual(sum(len(self.ping(REMOTE_IP, ident=0x4242, seq=n)) for n in range(5)), 2)

    def test_sendOtherError(self):
        """
        Other send errors are only counted.
        """
        self.ping(REMOTE_IP)
        [sock] = self.sockets.opened
        sock.sendError = OSError(errno.ENOBUFS, "full")
        self.assertEqual(self.ping(REMOTE_IP), [])
        self.assertEqual(self.stack.counters.icmp.forwardUnreachable, 0)

    def test_detach(self):
        """
        A guest that goes away takes its echo sockets with it.
        """
        self.ping(REMOTE_IP)
        self.stack.guests.detach(self.a.port)
        self.assertTrue(self.sockets.opened[0].closed)


class RefusedTests(EchoTestMixin, SynchronousTestCase):
    """
    Echo requests to destinations vpnkit never sends to the host (the
    shared rule of L{vpnkit.protocols.destinations}) go to no host socket:
    a unicast one is answered with ICMP destination unreachable from the
    gateway, one to a group address (RFC 1122 3.2.2: no ICMP error about
    those) is dropped.
    """

    def assertUnreachable(self, dst, code):
        [frame] = self.ping(dst, ident=0x4242, seq=9)
        _, header, message = parseICMPFrame(frame)
        self.assertEqual(
            (header.src, header.dst, message.type, message.code),
            (GATEWAY_IP, self.a.ip, 3, code),
        )
        from tests.test_ipv4 import parseQuote

        quoted, rest = parseQuote(message.payload)
        self.assertEqual((quoted.src, quoted.dst, rest[:8]), (self.a.ip, dst, rest[:4] + b"\x42\x42\x00\x09"))

    def test_loopback(self):
        """
        127.0.0.0/8 (the host's loopback is reachable only through the
        host alias): administratively prohibited (code 13).
        """
        self.assertUnreachable(ip("127.0.0.1"), 13)
        self.assertUnreachable(ip("127.9.9.9"), 13)

    def test_thisNetworkAndReserved(self):
        """
        0.0.0.0/8 and 240/4: administratively prohibited.
        """
        self.assertUnreachable(ip("0.0.0.0"), 13)
        self.assertUnreachable(ip("240.0.0.1"), 13)

    def test_groupDropped(self):
        """
        Multicast, the limited broadcast and the subnet broadcast get no
        reply and no error.
        """
        for dst in ("224.0.0.1", "255.255.255.255", "192.168.65.255"):
            self.assertEqual(self.ping(ip(dst)), [])

    def test_noHostSocket(self):
        """
        None of them reaches a host socket, and each is counted
        (C{icmp.echoRefused}).
        """
        for dst in ("127.0.0.1", "0.0.0.0", "224.0.0.1", "192.168.65.77", "240.0.0.1"):
            self.ping(ip(dst))
        self.assertEqual(self.stack.sockets.opened, [])
        self.assertEqual(self.stack.counters.icmp.echoRefused, 5)
        self.assertEqual(self.stack.counters.icmp.unreachableSent, 4)
