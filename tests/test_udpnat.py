"""
Tests for L{vpnkit.protocols.udpnat}: guests' UDP through host sockets,
driven through a whole L{Stack} with L{tests.fakesockets} standing in for
the host.  The reference's NAT tests (shared rule, two flows, punch, source
ports, reply refreshes last use, expiry keeping the live flow) are here in
memory; C{tests/e2e/test_udp_dns_e2e.py} runs them against real sockets.
"""

import errno

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.host.sockets import HostSocketError
from vpnkit.wire.ipv4 import PROTO_UDP

from tests.fakesockets import portUnreachable
from tests.helpers import (
    BROADCAST_IP,
    BROADCAST_MAC,
    GATEWAY_IP,
    HOST_IP,
    REMOTE_IP,
    buildIPv4,
    buildUDP,
    ip,
    makeStack,
    nonZeroCounters,
    parseICMPFrame,
    parseUDPFrame,
)
from tests.test_ipv4 import parseQuote

OTHER_REMOTE = ip("203.0.113.5")


class NATTestMixin:
    stackOptions = {}

    def setUp(self):
        self.stack, (self.a, self.b) = makeStack(2, **self.stackOptions)
        self.sockets = self.stack.sockets
        self.clock = self.stack.reactor

    def send(self, sport, dst, dport, payload=b"hello", guest=None, **kwargs):
        guest = guest or self.a
        guest.send(buildUDP(guest.mac, guest.ip, sport, dst, dport, payload, **kwargs))

    def replies(self, guest=None):
        """
        The UDP datagrams the guest received: C{(src, sport, dport, payload)}.
        """
        guest = guest or self.a
        result = []
        for frame in guest.takeFrames():
            _, header, udp, payload = parseUDPFrame(frame)
            self.assertEqual(header.dst, guest.ip)
            result.append((header.src, udp.srcPort, udp.dstPort, payload))
        return result


class MappingTests(NATTestMixin, SynchronousTestCase):
    """
    Endpoint-independent mapping and filtering.
    """

    def test_oneFlow(self):
        """
        A guest's datagram to a remote host leaves through a new host socket
        to the same address and port, with the guest's TTL and DF flag;
        the reply comes back from the remote host's address and port
        (reference "NAT: 1 UDP connection").
        """
        self.send(1024, REMOTE_IP, 7, b"\x01" * 1024, ttl=17)
        [sock] = self.sockets.opened
        [sent] = sock.takeSent()
        self.assertEqual(
            (sent.data, sent.host, sent.port, sent.ttl, sent.dontFragment),
            (b"\x01" * 1024, "198.51.100.10", 7, 17, True),
        )
        sock.deliver(b"\x01" * 1024, "198.51.100.10", 7)
        self.assertEqual(self.replies(), [(REMOTE_IP, 7, 1024, b"\x01" * 1024)])
        self.assertEqual(
            {k: v for k, v in nonZeroCounters(self.stack.counters).items() if k.startswith("udp.")},
            {
                "udp.received": 1,
                "udp.natFlowsOpened": 1,
                "udp.natSent": 1,
                "udp.natReceived": 1,
                "udp.sent": 1,
            },
        )

    def test_sharedRule(self):
        """
        One guest source talking to two destinations uses one host socket
        (reference "NAT: shared rule").
        """
        self.send(1024, REMOTE_IP, 7)
        self.send(1024, OTHER_REMOTE, 8)
        [sock] = self.sockets.opened
        self.assertEqual(
            [(s.host, s.port) for s in sock.sent], [("198.51.100.10", 7), ("203.0.113.5", 8)]
        )
        self.assertEqual(len(self.stack.udpNAT.flows), 1)

    def test_twoFlows(self):
        """
        Two guest sources get two host sockets, each answered separately
        (reference "NAT: 2 UDP connections").
        """
        self.send(1024, REMOTE_IP, 7, b"\x01")
        self.send(1025, REMOTE_IP, 7, b"\x02")
        first, second = self.sockets.opened
        first.deliver(b"\x02", "198.51.100.10", 7)
        second.deliver(b"\x02", "198.51.100.10", 7)
        self.assertEqual(
            self.replies(),
            [(REMOTE_IP, 7, 1024, b"\x02"), (REMOTE_IP, 7, 1025, b"\x02")],
        )

    def test_punch(self):
        """
        Once a guest source has a socket, a datagram from any peer reaches
        it, from that peer's real address (reference "NAT: punch").
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        sock.deliver(b"punch", "203.0.113.99", 31337)
        self.assertEqual(self.replies(), [(ip("203.0.113.99"), 31337, 1024, b"punch")])

    def test_unreadableSource(self):
        """
        A datagram whose source is no IPv4 address (an IPv6 peer's text,
        say) cannot be passed to the guest: it is dropped and counted.
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        sock.deliver(b"odd", "2001:db8::1", 7)
        self.assertEqual(self.replies(), [])
        self.assertEqual(self.stack.counters.udp.natErrorsDropped, 1)

    def test_sourcePorts(self):
        """
        Replies from two remote ports arrive with their own source ports
        (reference "NAT: source ports").
        """
        self.send(1024, REMOTE_IP, 7)
        self.send(1024, REMOTE_IP, 8)
        [sock] = self.sockets.opened
        sock.deliver(b"a", "198.51.100.10", 7)
        sock.deliver(b"b", "198.51.100.10", 8)
        self.assertEqual([r[1] for r in self.replies()], [7, 8])

    def test_guestsSeparate(self):
        """
        The same source port on two guests is two flows, and each reply
        goes to its own guest.
        """
        self.send(1024, REMOTE_IP, 7, guest=self.a)
        self.send(1024, REMOTE_IP, 7, guest=self.b)
        first, second = self.sockets.opened
        second.deliver(b"to b", "198.51.100.10", 7)
        self.assertEqual(self.replies(self.a), [])
        self.assertEqual(self.replies(self.b), [(REMOTE_IP, 7, 1024, b"to b")])

    def test_noDF(self):
        """
        A datagram without DF is sent with fragmentation allowed.
        """
        self.a.send(
            buildIPv4(
                self.a.mac, self.a.ip, REMOTE_IP, PROTO_UDP, udpBytes(self.a.ip, REMOTE_IP), flags=0
            )
        )
        [sock] = self.sockets.opened
        self.assertFalse(sock.sent[0].dontFragment)

    def test_bigReplyFragmented(self):
        """
        A 9,000-byte reply reaches a guest on a 1,500-byte link in
        fragments.
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        sock.deliver(b"r" * 9000, "198.51.100.10", 7)
        frames = self.a.takeFrames()
        self.assertEqual(len(frames), 7)
        self.assertEqual(self.stack.counters.ipv4.fragmentsSent, 7)


def udpBytes(src, dst, sport=1024, dport=7, payload=b"x"):
    from vpnkit.wire.udp import emitUDP

    return emitUDP(sport, dport, payload, src, dst)


class HostAliasTests(NATTestMixin, SynchronousTestCase):
    """
    The host alias stands for the host's 127.0.0.1.
    """

    def test_alias(self):
        """
        A datagram to 192.168.65.2 goes to 127.0.0.1 on the host, and the
        reply from 127.0.0.1 comes from 192.168.65.2.
        """
        self.send(5000, HOST_IP, 53)
        [sock] = self.sockets.opened
        self.assertEqual((sock.sent[0].host, sock.sent[0].port), ("127.0.0.1", 53))
        sock.deliver(b"answer", "127.0.0.1", 53)
        self.assertEqual(self.replies(), [(HOST_IP, 53, 5000, b"answer")])


class HostAliasDisabledTests(NATTestMixin, SynchronousTestCase):
    """
    With the alias disabled, 192.168.65.2 is just an unused address of the
    subnet.
    """

    stackOptions = {"hostIP": None}

    def test_notForwarded(self):
        """
        A datagram to an unused subnet address is not forwarded.
        """
        self.send(5000, HOST_IP, 53)
        self.assertEqual(self.sockets.opened, [])
        self.assertEqual(self.stack.counters.udp.natNotForwarded, 1)


class NotForwardedTests(NATTestMixin, SynchronousTestCase):
    """
    Destinations vpnkit never sends to the host.
    """

    def test_special(self):
        """
        Loopback, multicast, 0/8, the reserved 240/4 and port 0 are
        counted (C{natNotForwarded}) and dropped.
        """
        for dst, port in [
            (ip("127.0.0.1"), 7),
            (ip("224.0.0.251"), 5353),
            (ip("0.1.2.3"), 7),
            (ip("240.0.0.1"), 7),
            (REMOTE_IP, 0),
        ]:
            self.send(1024, dst, port)
        self.assertEqual(self.sockets.opened, [])
        self.assertEqual(self.stack.counters.udp.natNotForwarded, 5)

    def test_loopbackNetworkEdges(self):
        """
        All of 127.0.0.0/8 is loopback and never forwarded (only the host
        alias reaches the host's 127.0.0.1), up to 127.255.255.254; the
        addresses just outside it, 126.255.255.254 and 128.0.0.1, are
        ordinary remote hosts.
        """
        for dst in ("127.0.0.2", "127.255.255.254", "128.0.0.1", "126.255.255.254"):
            self.send(1024, ip(dst), 7)
        [sock] = self.sockets.opened
        self.assertEqual(
            [(s.host, s.port) for s in sock.sent], [("128.0.0.1", 7), ("126.255.255.254", 7)]
        )
        self.assertEqual(self.stack.counters.udp.natNotForwarded, 2)


class GatewayTests(NATTestMixin, SynchronousTestCase):
    """
    UDP to the gateway's own ports.
    """

    def test_portUnreachable(self):
        """
        A port of the gateway no service owns answers ICMP port
        unreachable from the gateway, quoting the datagram, as a host
        would.
        """
        self.send(40000, GATEWAY_IP, 9, b"anyone?")
        [frame] = self.a.takeFrames()
        _, header, message = parseICMPFrame(frame)
        self.assertEqual((header.src, message.type, message.code), (GATEWAY_IP, 3, 3))
        quoted, rest = parseQuote(message.payload)
        self.assertEqual(
            (quoted.src, quoted.dst, rest[:4]), (self.a.ip, GATEWAY_IP, b"\x9c\x40\x00\x09")
        )
        self.assertEqual(self.stack.counters.icmp.unreachableSent, 1)
        self.assertEqual(self.sockets.opened, [])

    def test_broadcastSilent(self):
        """
        A broadcast to a port nobody serves gets no ICMP error.
        """
        self.send(40000, BROADCAST_IP, 9, dstMAC=BROADCAST_MAC)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.udp.noHandler, 1)


class ExpiryTests(NATTestMixin, SynchronousTestCase):
    """
    Idle flows close after 60 seconds of the reactor's monotonic clock.
    """

    def test_idleExpiry(self):
        """
        A flow with no traffic for 60 s is closed; the next datagram from
        that source opens a new socket.
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        self.clock.advance(59)
        self.assertFalse(sock.closed)
        self.clock.advance(1)
        self.assertTrue(sock.closed)
        self.assertEqual(self.stack.counters.udp.natFlowsExpired, 1)
        self.send(1024, REMOTE_IP, 7)
        self.assertEqual(len(self.sockets.opened), 2)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 120)

    def test_replyRefreshesLastUse(self):
        """
        Replies count as use (reference "NAT: flow reply last use"): a flow
        the remote side keeps talking on stays open.
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        for _ in range(5):
            self.clock.advance(50)
            sock.deliver(b"keepalive", "198.51.100.10", 7)
        self.assertFalse(sock.closed)
        self.clock.advance(60)
        self.assertTrue(sock.closed)

    def test_lateReplyIgnored(self):
        """
        A datagram arriving for a flow already closed is not delivered.
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        flow = sock.receiver
        self.clock.advance(60)
        flow.datagramReceived(b"late", "198.51.100.10", 7)
        self.assertEqual(self.replies(), [])


class CapTests(NATTestMixin, SynchronousTestCase):
    """
    At most C{maxUDPFlows} flows; the least recently used goes.
    """

    stackOptions = {"maxUDPFlows": 8}

    def test_evictionKeepsLiveFlow(self):
        """
        Fill the table to the cap less one with spam, add the real flow,
        then one more spam source: the oldest spam flow is closed and the
        real one (port 1024) survives with its socket (reference "NAT: flow
        expiry").
        """
        for port in range(2000, 2007):
            self.send(port, REMOTE_IP, 7)
            self.clock.advance(1)
        self.send(1024, REMOTE_IP, 7)
        real = self.sockets.opened[-1]
        self.send(3000, REMOTE_IP, 7)
        self.assertEqual(len(self.stack.udpNAT.flows), 8)
        self.assertTrue(self.sockets.opened[0].closed)
        self.assertEqual(len(self.sockets.live()), 8)
        self.send(1024, REMOTE_IP, 7, b"again")
        self.assertEqual(real.sent[-1].data, b"again")
        self.assertEqual(self.stack.counters.udp.natFlowsEvicted, 1)

    def test_neverMoreSocketsThanCap(self):
        """
        The flow to evict is closed before the new flow's socket is
        opened: the host never holds more sockets than the cap.
        """
        live = []
        openUDP = self.sockets.openUDP

        def recording(receiver, *args):
            live.append(len(self.sockets.live()))
            return openUDP(receiver, *args)

        self.sockets.openUDP = recording
        for port in range(2000, 2020):
            self.send(port, REMOTE_IP, 7)
        self.assertEqual(max(live), 7)

    def test_usedFlowSurvivesEviction(self):
        """
        A flow used recently is not the one evicted, however old it is.
        """
        self.send(1024, REMOTE_IP, 7)
        first = self.sockets.opened[0]
        for port in range(2000, 2007):
            self.clock.advance(1)
            self.send(port, REMOTE_IP, 7)
        self.clock.advance(1)
        first.deliver(b"still here", "198.51.100.10", 7)
        self.send(3000, REMOTE_IP, 7)
        self.assertFalse(first.closed)
        self.assertTrue(self.sockets.opened[1].closed)


class BindFailureTests(NATTestMixin, SynchronousTestCase):
    """
    A host socket that cannot be opened costs a datagram, not the daemon.
    """

    def test_emfile(self):
        """
        C{EMFILE} from the host: the datagram is dropped and counted
        (C{natBindFailed}), a warning is logged at most once per 30 s
        however often it happens, and the NAT works again when sockets are
        available.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.sockets.openError = OSError(errno.EMFILE, "Too many open files")
        for port in range(1024, 1034):
            self.send(port, REMOTE_IP, 7)
        warnings = [e for e in events if e.get("log_namespace") == "vpnkit.udpnat"]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(self.stack.counters.udp.natBindFailed, 10)
        self.sockets.openError = None
        self.send(1024, REMOTE_IP, 7)
        self.assertEqual(len(self.sockets.live()), 1)

    def test_sendFails(self):
        """
        A send the host refuses at once is counted (C{natSendFailed}).
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        sock.sendError = OSError(errno.ENOBUFS, "No buffer space")
        self.send(1024, REMOTE_IP, 7)
        self.assertEqual(self.stack.counters.udp.natSendFailed, 1)


class SendErrorTests(NATTestMixin, SynchronousTestCase):
    """
    A send the host refuses at once for want of a route, or by policy,
    becomes ICMP destination unreachable from the gateway, so the guest's
    application hears at once rather than waiting out its timeout; at
    most a burst of them per guest, then a steady rate.
    """

    def failingFlow(self, error, guest=None):
        guest = guest or self.a
        self.send(1024, REMOTE_IP, 53, guest=guest)
        sock = self.sockets.opened[-1]
        sock.sendError = OSError(error, "refused")
        return sock

    def unreachables(self, guest=None):
        guest = guest or self.a
        result = []
        for frame in guest.takeFrames():
            _, header, message = parseICMPFrame(frame)
            quoted, rest = parseQuote(message.payload)
            result.append((header.src, message.type, message.code, quoted.dst, rest[:4]))
        return result

    def test_codes(self):
        """
        ENETUNREACH is destination network unknown (6), EHOSTUNREACH host
        administratively prohibited (10), EACCES and EPERM communication
        administratively prohibited (13): the codes a Linux guest's UDP
        socket reports at once as ENETUNREACH and EHOSTUNREACH (net and
        host unreachable, 0 and 1, it ignores).  Each quotes the guest's
        datagram as it sent it.
        """
        for error, code in [
            (errno.ENETUNREACH, 6),
            (errno.EHOSTUNREACH, 10),
            (errno.EACCES, 13),
            (errno.EPERM, 13),
        ]:
            self.failingFlow(error)
            self.send(1024, REMOTE_IP, 53, b"query", ttl=9)
            self.assertEqual(
                self.unreachables(), [(GATEWAY_IP, 3, code, REMOTE_IP, b"\x04\x00\x00\x35")]
            )
            self.stack.udpNAT.close()
        self.assertEqual(self.stack.counters.udp.natSendFailed, 4)
        self.assertEqual(self.stack.counters.udp.natSendUnreachable, 4)

    def test_otherErrorsSilent(self):
        """
        Other errors (a full buffer) are only counted.
        """
        self.failingFlow(errno.ENOBUFS)
        self.send(1024, REMOTE_IP, 53)
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.udp.natSendUnreachable, 0)

    def test_rateLimited(self):
        """
        Each guest gets a burst of 10, then 10 a second on the reactor's
        clock; the rest are counted (C{natSendErrorsLimited}).
        """
        self.failingFlow(errno.ENETUNREACH)
        for _ in range(30):
            self.send(1024, REMOTE_IP, 53)
        self.assertEqual(len(self.unreachables()), 10)
        self.assertEqual(self.stack.counters.udp.natSendErrorsLimited, 20)
        self.clock.advance(0.5)
        for _ in range(30):
            self.send(1024, REMOTE_IP, 53)
        self.assertEqual(len(self.unreachables()), 5)
        self.clock.advance(5)
        for _ in range(30):
            self.send(1024, REMOTE_IP, 53)
        self.assertEqual(len(self.unreachables()), 10)

    def test_perGuest(self):
        """
        One guest using up its burst leaves the other's alone.
        """
        self.failingFlow(errno.ENETUNREACH)
        for _ in range(20):
            self.send(1024, REMOTE_IP, 53)
        self.failingFlow(errno.ENETUNREACH, guest=self.b)
        self.send(1024, REMOTE_IP, 53, guest=self.b)
        self.assertEqual(len(self.unreachables(self.b)), 1)


class GuestRateLimitTests(SynchronousTestCase):
    """
    L{GuestRateLimit}, the token bucket per guest.
    """

    def test_bucket(self):
        """
        A burst, then tokens refilled at the rate, never beyond the burst.
        """
        from vpnkit.protocols.udpnat import GuestRateLimit

        limit = GuestRateLimit(rate=2.0, burst=3)
        self.assertEqual([limit.allow("a", 0.0) for _ in range(4)], [True] * 3 + [False])
        self.assertEqual([limit.allow("a", 0.5) for _ in range(2)], [True, False])
        self.assertEqual([limit.allow("a", 100.0) for _ in range(4)], [True] * 3 + [False])

    def test_boundedMemory(self):
        """
        At most C{maxGuests} buckets are kept: the oldest is forgotten
        (that guest starts again with a full bucket), as is a guest's
        bucket when L{GuestRateLimit.forget} is called.
        """
        from vpnkit.protocols.udpnat import GuestRateLimit

        limit = GuestRateLimit(rate=1.0, burst=1, maxGuests=2)
        for guest in ("a", "b", "c"):
            self.assertTrue(limit.allow(guest, 0.0))
        self.assertEqual(len(limit._buckets), 2)
        self.assertTrue(limit.allow("a", 0.0))
        self.assertFalse(limit.allow("a", 0.0))
        limit.forget("a")
        self.assertTrue(limit.allow("a", 0.0))


class ErrorTests(NATTestMixin, SynchronousTestCase):
    """
    ICMP errors the host receives for a flow reach the guest from whoever
    sent them, quoting the guest's own datagram.
    """

    def icmpToGuest(self):
        [frame] = self.a.takeFrames()
        return parseICMPFrame(frame)

    def test_portUnreachable(self):
        """
        Port unreachable from the remote host: the guest gets type 3 code 3
        from the remote address, quoting its datagram as it sent it (TTL
        and all).
        """
        self.send(1024, REMOTE_IP, 9, b"knock", ttl=33)
        [sock] = self.sockets.opened
        sock.fail(portUnreachable("198.51.100.10", 9, b"knock"))
        _, header, message = self.icmpToGuest()
        self.assertEqual(
            (header.src, header.dst, message.type, message.code), (REMOTE_IP, self.a.ip, 3, 3)
        )
        quoted, rest = parseQuote(message.payload)
        self.assertEqual((quoted.src, quoted.dst, quoted.ttl), (self.a.ip, REMOTE_IP, 33))
        self.assertEqual(rest[:4], b"\x04\x00\x00\x09")
        self.assertEqual(self.stack.counters.udp.natErrorsTranslated, 1)

    def test_hostAliasUnreachable(self):
        """
        An error from the host's 127.0.0.1 comes from the host alias.
        """
        self.send(1024, HOST_IP, 9)
        [sock] = self.sockets.opened
        sock.fail(portUnreachable("127.0.0.1", 9))
        _, header, message = self.icmpToGuest()
        self.assertEqual(header.src, HOST_IP)
        self.assertEqual(parseQuote(message.payload)[0].dst, HOST_IP)

    def test_timeExceeded(self):
        """
        Time exceeded from a router on the way comes from that router (UDP
        traceroute works).
        """
        self.send(33434, REMOTE_IP, 33434, ttl=1)
        [sock] = self.sockets.opened
        sock.fail(
            HostSocketError(
                "icmp", errno.EHOSTUNREACH, 11, 0, 0, "192.0.2.254", "198.51.100.10", 33434, b""
            )
        )
        _, header, message = self.icmpToGuest()
        self.assertEqual((header.src, message.type, message.code), (ip("192.0.2.254"), 11, 0))

    def test_fragmentationNeeded(self):
        """
        The host refusing a DF datagram for its size (a local C{EMSGSIZE})
        becomes fragmentation needed from the gateway with the host's MTU.
        """
        self.send(1024, REMOTE_IP, 7, b"x" * 1400)
        [sock] = self.sockets.opened
        # As the real socket reports it: no port (test_host_sockets_real).
        sock.fail(
            HostSocketError("local", errno.EMSGSIZE, 0, 0, 1280, None, "198.51.100.10", 0, b"")
        )
        _, header, message = self.icmpToGuest()
        self.assertEqual((header.src, message.type, message.code), (GATEWAY_IP, 3, 4))
        self.assertEqual(message.rest, (1280).to_bytes(4, "big"))

    def test_unknownDestination(self):
        """
        An error about a destination the flow never sent to is dropped.
        """
        self.send(1024, REMOTE_IP, 7)
        [sock] = self.sockets.opened
        sock.fail(portUnreachable("203.0.113.1", 7))
        self.assertEqual(self.a.takeFrames(), [])
        self.assertEqual(self.stack.counters.udp.natErrorsDropped, 1)


class DetachTests(NATTestMixin, SynchronousTestCase):
    """
    A guest that goes away takes its flows with it.
    """

    def test_detach(self):
        """
        Detaching a guest closes its host sockets and no one else's.
        """
        self.send(1024, REMOTE_IP, 7, guest=self.a)
        self.send(1024, REMOTE_IP, 7, guest=self.b)
        self.stack.guests.detach(self.a.port)
        first, second = self.sockets.opened
        self.assertEqual((first.closed, second.closed), (True, False))
