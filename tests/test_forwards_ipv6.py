"""
Tests for IPv6 in L{vpnkit.forwards} and the API: bracketed spec strings
and JSON, listeners on IPv6 addresses, forwards across families, and the
source address a host client appears from in the guest.
"""

import errno
import json
import socket

from twisted.internet import error
from twisted.internet.address import IPv6Address as TCP6Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.config import StackConfig
from vpnkit.forwards import (
    ForwardError,
    ForwardSpec,
    PortForwarder,
    StackConnector,
    bindErrorMessage,
    joinHostPort,
    parseSpec,
    specFromJSON,
)

from tests.test_api import APITests
from tests.test_forwards import FakeConnector, ListenReactor
from tests.test_tap import _OptionsMixin

IPV6 = StackConfig().ipv6


class RecordingReactor(ListenReactor):
    """
    A L{ListenReactor} that records the interface each listener binds.
    """

    def __init__(self):
        super().__init__()
        self.interfaces = []

    def _listen(self, kind, port, factory, interface):
        self.interfaces.append((kind, interface))
        return super()._listen(kind, port, factory, interface)


class IPv6SpecTests(SynchronousTestCase):
    """
    Spec strings and JSON with IPv6 addresses.
    """

    def test_parse(self):
        """
        IPv6 addresses in brackets on either side; the spec prints back
        bracketed, with the addresses in canonical form.
        """
        for text, expected, printed in [
            (
                "tcp:[::1]:8080:tcp:[fd00:65::3]:80",
                ForwardSpec("tcp", "::1", 8080, "fd00:65::3", 80),
                "tcp:[::1]:8080:tcp:[fd00:65::3]:80",
            ),
            (
                "tcp:127.0.0.1:8080:tcp:[fd00:65:0::3]:80",
                ForwardSpec("tcp", "127.0.0.1", 8080, "fd00:65::3", 80),
                "tcp:127.0.0.1:8080:tcp:[fd00:65::3]:80",
            ),
            (
                "udp:[::]:0:udp:192.168.65.3:53",
                ForwardSpec("udp", "::", 0, "192.168.65.3", 53),
                "udp:[::]:0:udp:192.168.65.3:53",
            ),
        ]:
            spec = parseSpec(text)
            self.assertEqual(spec, expected)
            self.assertEqual(str(spec), printed)
            self.assertEqual(parseSpec(str(spec)), spec)

    def test_parseErrors(self):
        """
        An unbracketed IPv6 address, an IPv4 one in brackets, a zone
        index, and garbage in brackets are 400 errors.
        """
        for text, fragment in [
            ("tcp:::1:8080:tcp:192.168.65.3:80", "brackets"),
            ("tcp:[127.0.0.1]:8080:tcp:192.168.65.3:80", "only IPv6"),
            ("tcp:[fe80::1%eth0]:8080:tcp:192.168.65.3:80", "zone"),
            ("tcp:[nonsense]:8080:tcp:192.168.65.3:80", "host address"),
            ("tcp:[::1:8080:tcp:192.168.65.3:80", "expected"),
            ("tcp:127.0.0.1:80:tcp:[fd00:65::3]:0", "out of range"),
        ]:
            e = self.assertRaises(ForwardError, parseSpec, text)
            self.assertIn(fragment, str(e))
            self.assertEqual(e.code, 400)

    def test_json(self):
        """
        gvproxy's JSON takes bracketed IPv6 C{[IP]:PORT} on either side and
        answers the same way; unbracketed IPv6 is refused.
        """
        spec = specFromJSON({"local": "[::1]:8080", "remote": "[fd00:65::3]:80"})
        self.assertEqual(spec, ForwardSpec("tcp", "::1", 8080, "fd00:65::3", 80))
        self.assertEqual(
            spec.asJSON(), {"local": "[::1]:8080", "remote": "[fd00:65::3]:80", "protocol": "tcp"}
        )
        self.assertEqual(
            specFromJSON({"local": "[::1]:53"}, requireRemote=False).hostIP, "::1"
        )
        for body in [
            {"local": "::1:8080", "remote": "192.168.65.3:80"},
            {"local": "[]:8080", "remote": "192.168.65.3:80"},
            {"local": "127.0.0.1:8080", "remote": "fd00:65::3:80"},
        ]:
            self.assertEqual(self.assertRaises(ForwardError, specFromJSON, body).code, 400)

    def test_joinHostPort(self):
        """
        Only IPv6 addresses are bracketed.
        """
        self.assertEqual(joinHostPort("::1", 80), "[::1]:80")
        self.assertEqual(joinHostPort("127.0.0.1", 80), "127.0.0.1:80")

    def test_bindErrorMessage(self):
        """
        Bind errors name the IPv6 address bracketed.
        """
        spec = ForwardSpec("tcp", "::1", 8080, "fd00:65::3", 80)
        failure = error.CannotListenError("::1", 8080, socket.error(errno.EADDRINUSE, "x"))
        self.assertEqual(
            bindErrorMessage(spec, failure), "Bind for [::1]:8080 failed: port is already allocated"
        )


class IPv6ForwarderTests(SynchronousTestCase):
    """
    L{PortForwarder} with IPv6 on either side.
    """

    def setUp(self):
        self.reactor = RecordingReactor()
        self.connector = FakeConnector()
        self.forwarder = PortForwarder(
            self.reactor, self.connector, "192.168.65.2", "192.168.65.1", ipv6=IPV6
        )

    def accept(self, spec, peerHost, peerPort=51000):
        factory = self.reactor.ports[-1].factory
        client = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=TCP6Address("TCP", peerHost, peerPort))
        client.makeConnection(transport)
        return client, transport

    def test_listensOnIPv6(self):
        """
        The listener binds the IPv6 address given (C{::1}, C{::}), TCP and
        UDP.
        """
        self.forwarder.expose(parseSpec("tcp:[::1]:8080:tcp:[fd00:65::3]:80"))
        self.forwarder.expose(parseSpec("udp:[::]:5353:udp:[fd00:65::3]:53"))
        self.assertEqual(self.reactor.interfaces, [("tcp", "::1"), ("udp", "::")])

    def test_loopbackIPv6ToGuestIPv6(self):
        """
        A client on C{::1} reaches the guest's IPv6 address from the IPv6
        host alias, with its own port.
        """
        spec = self.forwarder.expose(parseSpec("tcp:[::1]:8080:tcp:[fd00:65::3]:80"))
        self.accept(spec, "::1", 51000)
        [(guestIP, guestPort, srcIP, srcPort, _, _)] = self.connector.tcp
        self.assertEqual((guestIP, guestPort, srcIP, srcPort), ("fd00:65::3", 80, "fd00:65::2", 51000))

    def test_crossFamily(self):
        """
        Host IPv4 into guest IPv6 and host IPv6 into guest IPv4: the client
        appears from the host alias of the guest side's family, loopback
        or not.
        """
        sources = []
        for guest in ("[fd00:65::3]", "192.168.65.3"):
            for peer in ("127.0.0.1", "::1", "10.0.0.7", "2001:db8::7"):
                sources.append(self.forwarder.sourceFor(peer, guest.strip("[]")))
        self.assertEqual(
            sources,
            [
                "fd00:65::2", "fd00:65::2", "fd00:65::2", "2001:db8::7",
                "192.168.65.2", "192.168.65.2", "10.0.0.7", "192.168.65.2",
            ],
        )  # fmt: skip

    def test_mappedAndLinkLocalClients(self):
        """
        On a dual-stack C{::} listener IPv4 clients arrive IPv4-mapped: they
        are taken as the IPv4 address (loopback as loopback); an IPv6
        link-local client (with or without a zone) appears from the alias.
        """
        forwarder = self.forwarder
        self.assertEqual(forwarder.sourceFor("::ffff:127.0.0.1", "192.168.65.3"), "192.168.65.2")
        self.assertEqual(forwarder.sourceFor("::ffff:10.0.0.7", "192.168.65.3"), "10.0.0.7")
        self.assertEqual(forwarder.sourceFor("::ffff:10.0.0.7", "fd00:65::3"), "fd00:65::2")
        self.assertEqual(forwarder.sourceFor("fe80::1%eth0", "fd00:65::3"), "fd00:65::2")
        self.assertEqual(forwarder.sourceFor("fe80::1", "fd00:65::3"), "fd00:65::2")

    def test_ipv4Unchanged(self):
        """
        IPv4 to IPv4 keeps its rule: loopback from the host alias, others
        as themselves.
        """
        self.assertEqual(self.forwarder.sourceFor("127.3.4.5", "192.168.65.3"), "192.168.65.2")
        self.assertEqual(self.forwarder.sourceFor("128.0.0.1", "192.168.65.3"), "128.0.0.1")

    def test_hostAliasOff(self):
        """
        Without an IPv6 host alias, IPv6 clients appear from the IPv6
        gateway.
        """
        from dataclasses import replace

        forwarder = PortForwarder(
            self.reactor, self.connector, None, "192.168.65.1", ipv6=replace(IPV6, hostAlias=None)
        )
        self.assertEqual(forwarder.sourceFor("::1", "fd00:65::3"), "fd00:65::1")
        self.assertEqual(forwarder.sourceFor("::1", "192.168.65.3"), "192.168.65.1")

    def test_udp(self):
        """
        A UDP forward from C{::1} into the guest's IPv6 address: one flow
        per client, from the IPv6 host alias; replies go back to the
        client.
        """
        self.forwarder.expose(parseSpec("udp:[::1]:5353:udp:[fd00:65::3]:53"))
        forward = self.reactor.ports[-1].factory
        forward.datagramReceived(b"q", ("::1", 1111))
        [(guestIP, guestPort, srcIP, srcPort, flow)] = self.connector.udp
        self.assertEqual((guestIP, guestPort, srcIP, srcPort), ("fd00:65::3", 53, "fd00:65::2", 1111))
        self.assertEqual(flow.sent, [b"q"])
        flow.deliver(b"a")
        self.assertEqual(forward.transport.written, [(b"a", ("::1", 1111))])

    def test_ipv6Off(self):
        """
        With IPv6 off, a forward into a guest's IPv6 address is refused
        (400); one from a host IPv6 address into IPv4 is fine.
        """
        forwarder = PortForwarder(self.reactor, self.connector, "192.168.65.2", "192.168.65.1")
        e = self.assertRaises(
            ForwardError, forwarder.expose, parseSpec("tcp:127.0.0.1:8080:tcp:[fd00:65::3]:80")
        )
        self.assertEqual(e.code, 400)
        self.assertIn("IPv6 is off", str(e))
        forwarder.expose(parseSpec("tcp:[::1]:8080:tcp:192.168.65.3:80"))

    def test_sortedAndUnexposed(self):
        """
        The list holds IPv4 forwards first, then IPv6 ones, each by
        address; an IPv6 forward is removed by its address in any spelling
        the API normalises.
        """
        for text in [
            "tcp:[::1]:9000:tcp:[fd00:65::3]:80",
            "tcp:127.0.0.1:9001:tcp:192.168.65.3:80",
            "tcp:[::]:8000:tcp:192.168.65.3:80",
        ]:
            self.forwarder.expose(parseSpec(text))
        self.assertEqual(
            [str(s) for s in self.forwarder.forwards()],
            [
                "tcp:127.0.0.1:9001:tcp:192.168.65.3:80",
                "tcp:[::]:8000:tcp:192.168.65.3:80",
                "tcp:[::1]:9000:tcp:[fd00:65::3]:80",
            ],
        )
        spec = specFromJSON({"local": "[0:0::1]:9000"}, requireRemote=False)
        self.forwarder.unexpose(spec.protocol, spec.hostIP, spec.hostPort)
        self.assertEqual(len(self.forwarder.forwards()), 2)

    def test_allowedBindAddresses(self):
        """
        C{--allowed-bind-addresses} entries may be IPv6, in any spelling.
        """
        limited = PortForwarder(
            self.reactor, self.connector, "192.168.65.2", "192.168.65.1", ["0:0::1"], ipv6=IPV6
        )
        limited.expose(parseSpec("tcp:[::1]:1:tcp:[fd00:65::3]:80"))
        e = self.assertRaises(ForwardError, limited.expose, parseSpec("tcp:[::]:2:tcp:192.168.65.3:80"))
        self.assertEqual(e.code, 403)


class _RecordingLayer:
    def __init__(self):
        self.calls = []

    def connectToGuest(self, *args):
        self.calls.append(args)

    def openInbound(self, *args):
        self.calls.append(args)


class StackConnectorTests(SynchronousTestCase):
    """
    L{StackConnector} hands the layers packed addresses of either length.
    """

    def test_packed(self):
        """
        IPv6 text becomes 16 bytes, IPv4 4 bytes.
        """

        class FakeStack:
            tcp = _RecordingLayer()
            udp = _RecordingLayer()

        stack = FakeStack()
        connector = StackConnector(stack)
        connector.connectTCP("fd00:65::3", 80, "fd00:65::2", 5000, "proto")
        connector.openUDP("192.168.65.3", 53, "fd00:65::2", 5001, "deliver")
        [(guest, gport, src, sport, proto)] = stack.tcp.calls
        self.assertEqual((len(guest), gport, len(src), sport, proto), (16, 80, 16, 5000, "proto"))
        self.assertEqual(src, socket.inet_pton(socket.AF_INET6, "fd00:65::2"))
        [(guest, _, src, _, _)] = stack.udp.calls
        self.assertEqual((len(guest), len(src)), (4, 16))


class IPv6APITests(APITests):
    """
    The API's forwarder endpoints with IPv6 addresses (and every IPv4 test
    of L{APITests} again with IPv6 on).
    """

    def setUp(self):
        super().setUp()
        self.forwarder = PortForwarder(
            self.reactor, FakeConnector(), "192.168.65.2", "192.168.65.1", ipv6=IPV6
        )
        from vpnkit.api import makeAPI

        self.site = makeAPI(self.stack, self.forwarder)

    def test_exposeListUnexposeIPv6(self):
        """
        expose takes bracketed IPv6 on either side and answers it
        bracketed; all lists it so; unexpose removes it.
        """
        body = {"local": "[::1]:0", "remote": "[fd00:65::3]:80", "protocol": "tcp"}
        status, result = self.request(b"POST", b"/services/forwarder/expose", body)
        self.assertEqual(status, 200)
        expected = {"local": "[::1]:40001", "remote": "[fd00:65::3]:80", "protocol": "tcp"}
        self.assertEqual(json.loads(result), expected)
        status, result = self.request(b"GET", b"/services/forwarder/all")
        self.assertEqual(json.loads(result), [expected])
        status, result = self.request(
            b"POST", b"/services/forwarder/unexpose", {"local": "[::1]:40001", "protocol": "tcp"}
        )
        self.assertEqual(status, 200)
        status, result = self.request(b"GET", b"/services/forwarder/all")
        self.assertEqual(json.loads(result), [])

    def test_unbracketedRefused(self):
        """
        An unbracketed IPv6 C{local} is a 400.
        """
        status, _ = self.request(
            b"POST", b"/services/forwarder/expose", {"local": "::1:80", "remote": "192.168.65.3:80"}
        )
        self.assertEqual(status, 400)


class ExposeOptionsTests(_OptionsMixin, SynchronousTestCase):
    """
    C{--expose} and C{--allowed-bind-addresses} with IPv6.
    """

    def test_expose(self):
        """
        C{--expose tcp:[::1]:8080:tcp:[fd00:65::3]:80} parses; an
        unbracketed IPv6 address is refused naming the flag.
        """
        options = self.parse(
            "--ethernet", self.sock, "--expose", "tcp:[::1]:8080:tcp:[fd00:65::3]:80"
        )  # fmt: skip
        self.assertEqual([str(s) for s in options.exposes], ["tcp:[::1]:8080:tcp:[fd00:65::3]:80"])
        self.assertUsageError(
            ["--ethernet", self.sock, "--expose", "tcp:::1:8080:tcp:192.168.65.3:80"], "--expose"
        )

    def test_allowedBindAddresses(self):
        """
        IPv6 entries are taken, canonical.
        """
        options = self.parse("--ethernet", self.sock, "--allowed-bind-addresses", "127.0.0.1,0:0::1")
        self.assertEqual(options.allowedBindAddresses, ["127.0.0.1", "::1"])
        self.assertUsageError(
            ["--ethernet", self.sock, "--allowed-bind-addresses", "localhost"],
            "--allowed-bind-addresses",
        )

    def test_exposeService(self):
        """
        The service L{vpnkit.tap.makeService} builds gives the forwarder
        the IPv6 plan: an C{--expose} into a guest IPv6 address starts.
        """
        from vpnkit.tap import ExposeService

        reactor = RecordingReactor()
        options = self.parse(
            "--ethernet", self.sock, "--expose", "tcp:[::1]:8080:tcp:[fd00:65::3]:80"
        )  # fmt: skip
        service = ExposeService(
            reactor, None, "192.168.65.2", "192.168.65.1", None, options.exposes,
            ipv6=options.config.ipv6,
        )  # fmt: skip
        service.startService()
        self.assertEqual(reactor.interfaces, [("tcp", "::1")])


class UnexposeMessageTests(SynchronousTestCase):
    def test_unknownBracketed(self):
        """
        Unexposing an unknown IPv6 forward is a 404 naming it bracketed.
        """
        forwarder = PortForwarder(ListenReactor(), FakeConnector(), "192.168.65.2", "192.168.65.1")
        e = self.assertRaises(ForwardError, forwarder.unexpose, "tcp", "::1", 80)
        self.assertEqual((str(e), e.code), ("no tcp forward on [::1]:80", 404))


class MakeServiceIPv6Tests(_OptionsMixin, SynchronousTestCase):
    """
    L{vpnkit.tap.makeService} gives the forwarder the IPv6 plan.
    """

    def forwarder(self, *extra):
        from twisted.internet.testing import MemoryReactorClock

        from vpnkit.tap import makeService

        options = self.parse("--ethernet", self.sock, "--hosts", "", *extra)
        return makeService(options, MemoryReactorClock()).getServiceNamed("forwards")

    def test_ipv6On(self):
        """
        By default a host client appears in a guest's IPv6 address from
        the IPv6 host alias of C{--ipv6-prefix}.
        """
        forwarder = self.forwarder("--ipv6-prefix", "fd12::/64")
        self.assertEqual(forwarder.sourceFor("::1", "fd12::3"), "fd12::2")

    def test_ipv6Off(self):
        """
        With C{--no-ipv6} forwards into IPv6 are refused.
        """
        forwarder = self.forwarder("--no-ipv6")
        e = self.assertRaises(
            ForwardError, forwarder.expose, parseSpec("tcp:[::1]:8080:tcp:[fd00:65::3]:80")
        )
        self.assertEqual(e.code, 400)
