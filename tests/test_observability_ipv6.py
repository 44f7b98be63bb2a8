"""
Tests for IPv6 in what vpnkit shows of itself: C{/stats} guests (and so
the C{kill -USR1} dump), the leases of the API and the diagnostics archive,
and the diagnostics' flows and configuration.
"""

import io
import json
import tarfile
from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.helpers import makeStack
from tests.test_forwards import FakeConnector, ListenReactor
from vpnkit.api import makeAPI
from vpnkit.config import StackConfig
from vpnkit.diagnostics import archive, leaseRows, snapshot
from vpnkit.forwards import PortForwarder
from vpnkit.leases import Lease, ipv6ForLease
from vpnkit.wire.ipv6 import packIPv6


def files(stack):
    data = archive(snapshot(stack, ["vpnkit"]))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: json.loads(tar.extractfile(m).read()) for m in tar.getmembers()}


class LeaseAddressTests(SynchronousTestCase):
    def test_ipv6ForLease(self):
        """
        The n-th IPv4 address of the range goes with the n-th IPv6 guest
        address; none with IPv6 off.
        """
        from ipaddress import IPv4Address, IPv6Address

        lease = Lease(IPv4Address("192.168.65.7"), b"\x02" * 6, None, True)
        self.assertEqual(ipv6ForLease(StackConfig(), lease), IPv6Address("fd00:65::7"))
        self.assertIsNone(ipv6ForLease(StackConfig(ipv6Prefix=None), lease))


class StatsIPv6Tests(SynchronousTestCase):
    def test_guests(self):
        """
        Each guest in the stats has its stable IPv6 address beside its
        IPv4 one, and no seen addresses yet.
        """
        stack, _ = makeStack(2)
        self.assertEqual(
            [(g["ip"], g["ipv6"]) for g in stack.stats()["guests"]],
            [
                ("192.168.65.3", {"lease": "fd00:65::3", "seen": []}),
                ("192.168.65.4", {"lease": "fd00:65::4", "seen": []}),
            ],
        )

    def test_seen(self):
        """
        The addresses the switch learned for a port (C{SwitchPort.ipv6},
        packed) are listed, sorted, as text.
        """
        stack, (guest,) = makeStack(1)
        [real] = stack.switch.ports()
        port = SimpleNamespace(
            link=real.link,
            lease=real.lease,
            mac=real.mac,
            spoofedMAC=0,
            spoofedARP=0,
            spoofedIP=0,
            ipv6={packIPv6("fe80::50:ff:fe00:1"), packIPv6("fd00:65::50:ff:fe00:1")},
        )
        self.patch(stack.switch, "ports", lambda: [port])
        [entry] = stack.stats()["guests"]
        self.assertEqual(
            entry["ipv6"],
            {"lease": "fd00:65::3", "seen": ["fd00:65::50:ff:fe00:1", "fe80::50:ff:fe00:1"]},
        )
        json.dumps(stack.stats())

    def test_ipv6Off(self):
        """
        With IPv6 off a guest's C{ipv6} is C{null}.
        """
        stack, _ = makeStack(1, ipv6Prefix=None)
        [entry] = stack.stats()["guests"]
        self.assertIsNone(entry["ipv6"])


class LeasesIPv6Tests(SynchronousTestCase):
    def request(self, site, path):
        request = DummyRequest(path.lstrip(b"/").split(b"/"))
        request.method = b"GET"
        request.path = path
        request.content = io.BytesIO(b"")
        return json.loads(site.getResourceFor(request).render(request))

    def test_api(self):
        """
        C{/services/leases} lists each lease with its IPv6 address beside
        its IPv4 one; C{/services/dhcp/leases} stays gvproxy's IPv4 map.
        """
        stack, _ = makeStack(1)
        site = makeAPI(stack, PortForwarder(ListenReactor(), FakeConnector(), "192.168.65.2", "192.168.65.1"))
        [row] = self.request(site, b"/services/leases")
        self.assertEqual(
            (row["ip"], row["ipv6"], row["mac"], row["link"]),
            ("192.168.65.3", "fd00:65::3", "02:50:00:00:00:01", "guest1"),
        )
        self.assertEqual(
            self.request(site, b"/services/dhcp/leases"), {"192.168.65.3": "02:50:00:00:00:01"}
        )

    def test_diagnostics(self):
        """
        The archive's C{leases.json} has the IPv6 address beside the IPv4
        one, C{config.json} the IPv6 plan.
        """
        stack, _ = makeStack(1)
        archived = files(stack)
        self.assertEqual(archived["leases.json"], leaseRows(stack))
        self.assertEqual(archived["leases.json"][0]["ipv6"], "fd00:65::3")
        self.assertEqual(
            archived["config.json"]["stack"]["ipv6"],
            {
                "prefix": "fd00:65::/64",
                "gateway": "fd00:65::1",
                "hostAlias": "fd00:65::2",
                "routerLinkLocal": "fe80::f416:36ff:febc:f9c6",
                "firstAddress": "fd00:65::3",
            },
        )

    def test_diagnosticsIPv6Off(self):
        """
        With IPv6 off the leases' C{ipv6} and the plan are C{null}.
        """
        stack, _ = makeStack(1, ipv6Prefix=None)
        archived = files(stack)
        self.assertIsNone(archived["leases.json"][0]["ipv6"])
        self.assertIsNone(archived["config.json"]["stack"]["ipv6"])

    def test_flowsWithIPv6Keys(self):
        """
        Flows whose keys hold IPv6 (packed) addresses, such as a gateway
        UDP forward's from an IPv6 guest, are listed with the addresses as
        text.
        """
        from vpnkit.gatewayforwards import GatewayForward
        from vpnkit.wire.ipv6 import IPv6Header
        from vpnkit.wire.udp import parseUDP, emitUDP

        stack, _ = makeStack(1)
        stack.gatewayForwards.setFile([GatewayForward("udp", 53, "::1", 5353)])
        guest, gateway = packIPv6("fd00:65::3"), packIPv6("fd00:65::1")
        datagram = emitUDP(40000, 53, b"q", guest, gateway)
        header = IPv6Header(0, 0, len(datagram), 17, 64, guest, gateway)
        udp, payload = parseUDP(datagram, guest, gateway)
        stack.udpGatewayForwards.datagramFromGuest(header, udp, payload)
        [row] = files(stack)["flows.json"]["gatewayUDPForwards"]
        self.assertEqual((row["guest"], row["key"]), ("fd00:65::3", [40000, 53, "fd00:65::1"]))
