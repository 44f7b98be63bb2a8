"""
Tests for L{vpnkit.httpproxy.sni}: the server name of real ClientHellos
captured from C{curl} and C{openssl s_client} (C{tests/fixtures/clienthello-*.bin}),
every prefix asking for more, records split anywhere, and fuzzing.
"""

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vpnkit.httpproxy.sni import serverName
from vpnkit.wire import MalformedError, ParseError, TruncatedError

FIXTURES = Path(__file__).with_name("fixtures")
FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def fixture(name):
    return (FIXTURES / f"clienthello-{name}.bin").read_bytes()


CAPTURED = {
    "curl": "www.example.test",
    "curl-ip": None,
    "openssl": "origin.example.test",
    "openssl-noservername": None,
    "openssl-tls12": "tls12.example.test",
}


def resplit(data, sizes):
    """
    The handshake message of a single-record ClientHello C{data}, cut into
    records of the given fragment sizes (the rest in a last record).
    """
    message = data[5 : 5 + struct.unpack_from("!H", data, 3)[0]]
    records = []
    for size in sizes:
        if not message:
            break
        chunk, message = message[:size], message[size:]
        records.append(data[:3] + struct.pack("!H", len(chunk)) + chunk)
    if message:
        records.append(data[:3] + struct.pack("!H", len(message)) + message)
    return b"".join(records)


def buildHello(name, extensionsBefore=b""):
    """
    A minimal ClientHello asking for C{name}.
    """
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    sni = struct.pack("!H", len(entry)) + entry
    extensions = extensionsBefore + struct.pack("!HH", 0, len(sni)) + sni
    body = (
        b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
        + struct.pack("!H", len(extensions)) + extensions
    )
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(message)) + message


class CapturedTests(SynchronousTestCase):
    def test_names(self):
        """
        The name curl and openssl sent is found; a hello to an address, or
        without C{-servername}, has none.
        """
        for name, expected in CAPTURED.items():
            self.assertEqual(serverName(fixture(name)), expected, name)

    def test_prefixes(self):
        """
        Every proper prefix of a captured ClientHello asks for more bytes.
        """
        for name in CAPTURED:
            data = fixture(name)
            for n in range(len(data)):
                with self.assertRaises(TruncatedError, msg=f"{name}[:{n}]"):
                    serverName(data[:n])

    def test_trailingBytes(self):
        """
        Bytes after the ClientHello (early data) do not matter.
        """
        self.assertEqual(serverName(fixture("curl") + b"\x17\x03\x03junk"), "www.example.test")

    def test_splitRecords(self):
        """
        A ClientHello fragmented over several records is put back together.
        """
        data = fixture("curl")
        for sizes in [(1,), (3, 1), (40, 40, 40), (511,)]:
            self.assertEqual(serverName(resplit(data, sizes)), "www.example.test", sizes)

    def test_notTLS(self):
        """
        Plain text, SSLv2 hellos and other record types are rejected at the
        first byte that shows it.
        """
        for data in [b"G", b"GET / HTTP/1.1\r\n", b"\x80\x2e\x01", b"\x17\x03\x03\x00\x01x", b"\x16\x02"]:
            with self.assertRaises(MalformedError, msg=data):
                serverName(data)

    def test_otherHandshake(self):
        """
        A handshake record that is not a ClientHello is rejected.
        """
        data = bytearray(fixture("curl"))
        data[5] = 2
        with self.assertRaises(MalformedError):
            serverName(bytes(data))

    def test_badName(self):
        """
        A name with characters a host name cannot have is rejected; case
        and a trailing dot are normalised.
        """
        self.assertEqual(serverName(buildHello(b"WWW.Example.TEST.")), "www.example.test")
        for bad in [b"a b.test", b"\xff.test", b"-", b""]:
            with self.assertRaises(MalformedError, msg=bad):
                serverName(buildHello(bad))

    def test_sniAfterOtherExtensions(self):
        """
        The name is found after other extensions.
        """
        other = struct.pack("!HH", 10, 4) + b"\x00\x02\x00\x1d"
        self.assertEqual(serverName(buildHello(b"x.test", other)), "x.test")


class FuzzTests(SynchronousTestCase):
    @FUZZ
    @given(st.binary(max_size=600))
    def test_anyBytes(self, data):
        """
        Any bytes give a name, C{None}, or a L{ParseError}.
        """
        try:
            result = serverName(data)
        except ParseError:
            return
        self.assertTrue(result is None or isinstance(result, str))

    @FUZZ
    @given(st.sampled_from(sorted(CAPTURED)), st.data())
    def test_mutated(self, name, data):
        """
        Captured hellos with bytes changed give a name, C{None}, or a
        L{ParseError}, never another exception.
        """
        hello = bytearray(fixture(name))
        for _ in range(data.draw(st.integers(1, 8))):
            index = data.draw(st.integers(0, len(hello) - 1))
            hello[index] = data.draw(st.integers(0, 255))
        try:
            serverName(bytes(hello))
        except ParseError:
            pass

    @FUZZ
    @given(
        st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,4}\Z"),
        st.lists(st.integers(1, 64), max_size=6),
    )
    def test_roundTrip(self, name, sizes):
        """
        A built ClientHello for any host name, fragmented any way, gives
        that name back.
        """
        self.assertEqual(serverName(resplit(buildHello(name.encode()), sizes)), name)
