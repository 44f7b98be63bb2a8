"""
Tests for L{vpnkit.diagnostics}: the tar a bug report needs.
"""

import io
import json
import tarfile

import dpkt
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import GATEWAY_IP, HOST_IP, buildICMPEcho, buildUDP, makeStack
from vpnkit.capture import Capture
from vpnkit.counters import CaptureCounters
from vpnkit.diagnostics import DiagnosticsFactory, archive, snapshot

NAMES = [
    "stats.json",
    "connections.json",
    "flows.json",
    "leases.json",
    "config.json",
    "capture/all.pcap",
]


class DiagnosticsTests(SynchronousTestCase):
    def setUp(self):
        self.stack, (self.guest,) = makeStack(1)
        self.capture = Capture(CaptureCounters(), 0, self.stack.reactor)
        self.stack.switch.addObserver(self.capture)
        self.guest.send(buildICMPEcho(self.guest.mac, self.guest.ip, GATEWAY_IP))
        self.guest.send(buildUDP(self.guest.mac, self.guest.ip, 5000, HOST_IP, 7, b"hello"))

    def test_archive(self):
        """
        The archive is ustar, holds the statistics, connections, flows,
        leases, configuration and the capture ring, each file mode 0644;
        the JSON parses and says what the stack holds; the pcap is readable.
        """
        data = archive(snapshot(self.stack, ["vpnkit", "--ethernet", "x"], self.capture), 1000)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            self.assertEqual([m.name for m in members], NAMES)
            self.assertTrue(all(m.mode == 0o644 and m.isfile() for m in members))
            files = {m.name: tar.extractfile(m).read() for m in members}
        # POSIX ustar headers, and the two zero blocks at the end.
        self.assertEqual(data[257:263], b"ustar\x00")
        self.assertEqual(data[-1024:], bytes(1024))
        stats = json.loads(files["stats.json"])
        self.assertEqual(stats["counters"]["icmp"]["echoRequests"], 1)
        [lease] = json.loads(files["leases.json"])
        self.assertEqual((lease["ip"], lease["link"]), ("192.168.65.3", "guest1"))
        flows = json.loads(files["flows.json"])
        [nat] = flows["udpNAT"]
        self.assertEqual((nat["guest"], nat["key"]), ("192.168.65.3", [5000]))
        config = json.loads(files["config.json"])
        self.assertEqual(config["stack"]["gatewayIP"], "192.168.65.1")
        self.assertEqual(config["argv"], ["vpnkit", "--ethernet", "x"])
        frames = [bytes(buf) for _, buf in dpkt.pcap.Reader(io.BytesIO(files["capture/all.pcap"]))]
        # The echo request, its reply, and the UDP datagram.
        self.assertEqual(len(frames), 3)

    def test_noCapture(self):
        """
        Without a capture there is no pcap in the archive.
        """
        names = list(snapshot(self.stack))
        self.assertEqual(names, NAMES[:-1])

    def test_protocol(self):
        """
        A client gets one archive and the connection is closed.
        """
        factory = DiagnosticsFactory(self.stack, ["vpnkit"], self.capture)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.disconnecting)
        with tarfile.open(fileobj=io.BytesIO(transport.value()), mode="r:") as tar:
            self.assertEqual(tar.getnames(), NAMES)
