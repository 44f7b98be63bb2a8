"""
Helper programs for the port-forwarding end-to-end tests
(L{tests.e2e.test_forwards_e2e}), each run by the test inside a network
namespace (vpnkit's, which plays the host, or a guest's):

  http-server ADDRESS PORT ROOT      serves the files under ROOT; prints
                                     "CLIENT <host> <port> <method> <path>"
                                     for every request
  data-server ADDRESS PORT           one command line per connection:
                                       "GET <size> <seed>": sends <size>
                                         bytes of pattern(seed), then EOF
                                       "PUT": reads to EOF, answers one JSON
                                         line {"bytes", "sha256"}
                                       "ECHO": echoes until EOF
                                     prints "CLIENT <host> <port> <command>"
  data-client HOST PORT get SIZE SEED
  data-client HOST PORT put SIZE SEED
                                     one transfer through the server above;
                                     prints "RESULT {bytes, sha256, seconds,
                                     ...}"
  udp-echo ADDRESS PORT              sends every datagram back to its
                                     sender; prints "SEEN <host> <port>
                                     <size>"
  udp-client HOST PORT SIZE...       one datagram of each size (content
                                     pattern(size)), each tried up to 3
                                     times with a 1 s timeout; prints
                                     "RESULT {"sizes": [...]}"
  dns-responder ADDRESS PORT IP      answers every query (any name, any
                                     type) with one A record IP, TTL 60;
                                     prints "QUERY <name>"

Every server prints "LISTENING <port>" once it is ready.  Only the standard
library is used; nothing here reaches beyond the namespaces the test made.

Imported by the test, it also offers L{pattern}/L{patternDigest} (the data
both ends agree on) and L{socketIn}, a socket created inside another
network namespace.
"""

import ctypes
import hashlib
import http.server
import json
import os
import random
import socket
import socketserver
import struct
import sys
import threading
import time

BLOCK = 1 << 20
_STRIDE = 104729


def _print(*words):
    print(*words, flush=True)


def _emit(value):
    _print("RESULT", json.dumps(value, sort_keys=True))


# -- deterministic data --------------------------------------------------------


def pattern(seed, size):
    """
    C{size} bytes determined by C{seed}, in chunks of at most 1 MiB: each
    chunk is a different rotation of one pseudo-random 1 MiB block, so no
    two consecutive megabytes are equal and a lost, duplicated or misplaced
    chunk changes the digest.
    """
    base = random.Random(seed).randbytes(BLOCK)
    doubled = memoryview(base + base)
    index = 0
    left = size
    while left > 0:
        start = (index * _STRIDE + seed) % BLOCK
        n = min(BLOCK, left)
        yield doubled[start : start + n]
        left -= n
        index += 1


def patternBytes(seed, size):
    return b"".join(bytes(chunk) for chunk in pattern(seed, size))


def patternDigest(seed, size):
    digest = hashlib.sha256()
    for chunk in pattern(seed, size):
        digest.update(chunk)
    return digest.hexdigest()


# -- sockets in another network namespace ----------------------------------------

_CLONE_NEWNET = 0x40000000


def socketIn(netnsPath, family=socket.AF_INET, type=socket.SOCK_STREAM):
    """
    A socket created inside the network namespace at C{netnsPath}: a
    short-lived thread enters the namespace (setns affects only the calling
    thread), creates the socket and ends; the socket stays in that
    namespace for its whole life, whichever thread uses it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    result = {}

    def create():
        try:
            fd = os.open(netnsPath, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns({netnsPath}): {os.strerror(code)}")
            finally:
                os.close(fd)
            result["socket"] = socket.socket(family, type)
        except BaseException as e:
            result["error"] = e

    thread = threading.Thread(target=create, daemon=True)
    thread.start()
    thread.join(10)
    if "error" in result:
        raise result["error"]
    if "socket" not in result:
        raise RuntimeError(f"could not create a socket in {netnsPath}")
    return result["socket"]


# -- servers -------------------------------------------------------------------------


def cmdHTTPServer(args):
    address, port, root = args[0], int(args[1]), args[2]

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=root, **kw)

        def parse_request(self):
            ok = super().parse_request()
            if ok:
                host, clientPort = self.client_address[:2]
                _print("CLIENT", host, clientPort, self.command, self.path)
            return ok

        def log_message(self, format, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server((address, port), Handler)
    _print("LISTENING", server.server_address[1])
    server.serve_forever()


def _readLine(sock, limit=256):
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte or len(line) > limit:
            break
        line += byte
    return line.decode("ascii", "replace").strip()


def cmdDataServer(args):
    address, port = args[0], int(args[1])

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            command = _readLine(sock)
            host, clientPort = self.client_address[:2]
            _print("CLIENT", host, clientPort, command.split(" ", 1)[0])
            words = command.split()
            try:
                if words[:1] == ["GET"]:
                    size, seed = int(words[1]), int(words[2])
                    for chunk in pattern(seed, size):
                        sock.sendall(chunk)
                    sock.shutdown(socket.SHUT_WR)
                    # Wait for the client's EOF so our close sends no RST.
                    sock.settimeout(60)
                    while sock.recv(65536):
                        pass
                elif words[:1] == ["PUT"]:
                    digest = hashlib.sha256()
                    total = 0
                    buffer = bytearray(BLOCK)
                    view = memoryview(buffer)
                    while True:
                        n = sock.recv_into(buffer)
                        if not n:
                            break
                        digest.update(view[:n])
                        total += n
                    reply = {"bytes": total, "sha256": digest.hexdigest()}
                    sock.sendall(json.dumps(reply).encode() + b"\n")
                    sock.shutdown(socket.SHUT_WR)
                elif words[:1] == ["ECHO"]:
                    sock.sendall(b"ECHO READY\n")
                    while True:
                        data = sock.recv(65536)
                        if not data:
                            break
                        sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                _print("ERROR", host, clientPort, type(e).__name__, e)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server((address, port), Handler)
    _print("LISTENING", server.server_address[1])
    server.serve_forever()


def cmdDataClient(args):
    host, port, mode, size, seed = args[0], int(args[1]), args[2], int(args[3]), int(args[4])
    sock = socket.create_connection((host, port), timeout=30)
    sock.settimeout(60)
    start = time.monotonic()
    if mode == "get":
        sock.sendall(f"GET {size} {seed}\n".encode())
        digest = hashlib.sha256()
        total = 0
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        while True:
            n = sock.recv_into(buffer)
            if not n:
                break
            digest.update(view[:n])
            total += n
        seconds = time.monotonic() - start
        sock.close()
        _emit({"bytes": total, "sha256": digest.hexdigest(), "seconds": seconds})
    else:
        sock.sendall(b"PUT\n")
        digest = hashlib.sha256()
        for chunk in pattern(seed, size):
            digest.update(chunk)
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
        seconds = time.monotonic() - start
        sock.close()
        received = json.loads(reply) if reply.strip() else {}
        _emit(
            {
                "bytes": size,
                "sha256": digest.hexdigest(),
                "seconds": seconds,
                "serverBytes": received.get("bytes"),
                "serverSha256": received.get("sha256"),
            }
        )


def cmdUDPEcho(args):
    address, port = args[0], int(args[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    _print("LISTENING", sock.getsockname()[1])
    while True:
        data, peer = sock.recvfrom(65535)
        _print("SEEN", peer[0], peer[1], len(data))
        sock.sendto(data, peer)


def cmdUDPClient(args):
    host, port, sizes = args[0], int(args[1]), [int(a) for a in args[2:]]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.settimeout(1.0)
    results = []
    for size in sizes:
        payload = patternBytes(size, size)
        outcome = {"size": size, "ok": False, "tries": 0, "replies": []}
        for _ in range(3):
            outcome["tries"] += 1
            sock.send(payload)
            try:
                while True:
                    reply = sock.recv(65535)
                    outcome["replies"].append(len(reply))
                    if reply == payload:
                        outcome["ok"] = True
                        break
            except socket.timeout:
                pass
            except OSError as e:
                outcome["error"] = f"{type(e).__name__}: {e}"
                time.sleep(0.2)
            if outcome["ok"]:
                break
        results.append(outcome)
    _emit({"sizes": results})


def _dnsName(message, offset):
    labels = []
    while offset < len(message):
        length = message[offset]
        offset += 1
        if length == 0:
            break
        labels.append(message[offset : offset + length].decode("ascii", "replace"))
        offset += length
    return ".".join(labels), offset


def cmdDNSResponder(args):
    address, port, answer = args[0], int(args[1]), socket.inet_aton(args[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    _print("LISTENING", sock.getsockname()[1])
    while True:
        message, peer = sock.recvfrom(4096)
        if len(message) < 12:
            continue
        ident, flags, qdcount = struct.unpack_from("!HHH", message)
        if flags & 0x8000 or qdcount != 1:
            continue
        name, end = _dnsName(message, 12)
        question = message[12 : end + 4]
        _print("QUERY", name)
        header = struct.pack("!HHHHHH", ident, 0x8180 | (flags & 0x0100), 1, 1, 0, 0)
        record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + answer
        sock.sendto(header + question + record, peer)


COMMANDS = {
    "http-server": cmdHTTPServer,
    "data-server": cmdDataServer,
    "data-client": cmdDataClient,
    "udp-echo": cmdUDPEcho,
    "udp-client": cmdUDPClient,
    "dns-responder": cmdDNSResponder,
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(f"usage: forwardtools.py {{{','.join(COMMANDS)}}} ARGS...\n")
        return 2
    COMMANDS[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
