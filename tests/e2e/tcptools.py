"""
Helper programs for the TCP end-to-end tests, run inside network namespaces
(C{ip netns exec NS python tcptools.py COMMAND ...}).

Standard library only, so any Python 3.11 runs them.  Every command prints
its outcome as lines C{RESULT <json>} (and servers C{LISTENING <port>} once
they accept), so the test reads facts, not prose.  Data is never stored:
C{send} and C{serve-http} generate it from a seed (L{pattern}) and both ends
hash what passes with SHA-256.  Every wait has a deadline (C{--timeout}).

Commands:

 - C{send}: connect (or listen and accept one), send C{--size} seeded bytes,
   half-close, drain until EOF.
 - C{recv}: connect (or listen and accept one), read until EOF, optionally
   at C{--slow-rate} bytes/s for the first C{--slow-seconds}.
 - C{serve-http}: an HTTP/1.0 server whose every GET answers a seeded body.
 - C{echo-server}: a selector-based echo server for many connections.
 - C{many}: open C{--count} connections at once, echo a distinct payload on
   each, close them all; count every failure by errno.
 - C{halfclose-server} / C{halfclose-client}: the two half-close exchanges.
 - C{reset-server}: accept, then close with C{SO_LINGER} 0 (an RST).
 - C{probe}: one connect (and optionally a read), reporting the errno and
   how long it took.
 - C{relay}: a lossy, reordering relay for the vmnet protocol between
   C{vpnkit-tap-bridge} and vpnkit's C{--ethernet} socket (seeded; with
   C{--pcap PREFIX} it records every frame it saw and every frame it
   dropped, for tcpdump).
"""

import argparse
import errno
import hashlib
import heapq
import json
import os
import random
import resource
import selectors
import signal
import socket
import struct
import sys
import time

CHUNK = 1 << 16


def emit(kind, value):
    sys.stdout.write(f"{kind} {json.dumps(value) if kind == 'RESULT' else value}\n")
    sys.stdout.flush()


def raiseNoFile(n):
    """
    Raise RLIMIT_NOFILE to at least C{n} (we run as root in the tests).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))


def pattern(seed, size, chunk=CHUNK):
    """
    Yield C{size} bytes in chunks, the same for the same C{seed}.
    """
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def address(text):
    """
    C{HOST:PORT} or C{[IPV6]:PORT} as a socket address.
    """
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def listener(text):
    """
    A TCP socket of the family of C{text}'s address, bound to it.
    """
    host, port = address(text)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def stream(args):
    """
    The connected socket for C{send}/C{recv}: dial C{--connect} or accept
    one connection on C{--listen}.
    """
    deadline = time.monotonic() + args.timeout
    if args.listen:
        server = listener(args.listen)
        server.listen(1)
        emit("LISTENING", server.getsockname()[1])
        server.settimeout(args.timeout)
        sock, _ = server.accept()
        server.close()
    else:
        sock = socket.create_connection(address(args.connect), timeout=args.timeout)
    sock.settimeout(max(1.0, deadline - time.monotonic()))
    return sock, deadline


def cmdSend(args):
    sock, deadline = stream(args)
    digest = hashlib.sha256()
    start = time.monotonic()
    sent = 0
    for block in pattern(args.seed, args.size):
        digest.update(block)
        sock.sendall(block)
        sent += len(block)
    sock.shutdown(socket.SHUT_WR)
    sendDone = time.monotonic()
    extra = 0
    while True:
        data = sock.recv(CHUNK)
        if not data:
            break
        extra += len(data)
    end = time.monotonic()
    sock.close()
    emit(
        "RESULT",
        {
            "sent": sent,
            "sha256": digest.hexdigest(),
            "seconds": round(end - start, 3),
            "sendSeconds": round(sendDone - start, 3),
            "received": extra,
        },
    )


def cmdRecv(args):
    sock, deadline = stream(args)
    peer = list(sock.getpeername()[:2])
    if args.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    digest = hashlib.sha256()
    start = time.monotonic()
    received = 0
    slowUntil = start + args.slow_seconds if args.slow_rate else start
    slowBytes = 0
    error = None
    expected = False
    while True:
        now = time.monotonic()
        if now > deadline:
            error = "deadline"
            break
        if now < slowUntil:
            # Pace the reads: never ahead of rate * elapsed.
            budget = int(args.slow_rate * (now - start)) - received
            if budget <= 0:
                time.sleep(0.01)
                continue
            try:
                data = sock.recv(min(budget, CHUNK))
            except OSError as e:
                error = errname(e)
                break
            slowBytes += len(data)
        else:
            try:
                data = sock.recv(CHUNK * 4)
            except OSError as e:
                error = errname(e)
                break
        if not data:
            break
        digest.update(data)
        received += len(data)
        if args.expect and received >= args.expect and not expected:
            # Everything announced is here: the end of the stream must
            # follow promptly.
            expected = True
            sock.settimeout(args.eof_grace)
    if error == "TimeoutError" and expected:
        error = "noEOF"
    end = time.monotonic()
    if args.reply and error is None:
        sock.sendall(args.reply.encode())
    sock.close()
    emit(
        "RESULT",
        {
            "error": error,
            "received": received,
            "sha256": digest.hexdigest(),
            "seconds": round(end - start, 3),
            "slowBytes": slowBytes,
            "peer": peer,
        },
    )


def cmdServeHTTP(args):
    """
    Answer every GET with the seeded body (HTTP/1.0, then close).
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = b"".join(pattern(args.seed, args.size))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *a):
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in address(args.listen)[0] else socket.AF_INET

    server = Server(address(args.listen), Handler)
    emit("RESULT", {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})
    emit("LISTENING", server.server_address[1])
    server.serve_forever()


def cmdEchoServer(args):
    """
    Echo every byte back on every connection until killed; non-blocking,
    one thread, bounded per-connection buffers (we stop reading a
    connection whose echo is not yet written).
    """
    raiseNoFile(args.nofile)
    sel = selectors.DefaultSelector()
    server = listener(args.listen)
    server.listen(4096)
    server.setblocking(False)
    sel.register(server, selectors.EVENT_READ, None)
    emit("LISTENING", server.getsockname()[1])
    pending = {}
    accepted = 0

    def close(sock):
        sel.unregister(sock)
        pending.pop(sock, None)
        sock.close()

    while True:
        for key, events in sel.select(timeout=1.0):
            sock = key.fileobj
            if sock is server:
                while True:
                    try:
                        conn, _ = server.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    accepted += 1
                    pending[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, None)
                continue
            if events & selectors.EVENT_WRITE:
                try:
                    n = sock.send(pending[sock])
                except OSError:
                    close(sock)
                    continue
                pending[sock] = pending[sock][n:]
                if not pending[sock]:
                    sel.modify(sock, selectors.EVENT_READ, None)
                continue
            try:
                data = sock.recv(CHUNK)
            except OSError:
                close(sock)
                continue
            if not data:
                close(sock)
                continue
            try:
                n = sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                close(sock)
                continue
            if n < len(data):
                pending[sock] = data[n:]
                sel.modify(sock, selectors.EVENT_WRITE, None)


def cmdMany(args):
    """
    Open C{--count} connections concurrently; once all are up, send each
    its own seeded payload, read the echo back, verify it, and only then
    close them all.
    """
    raiseNoFile(args.count + 64)
    deadline = time.monotonic() + args.timeout
    host, port = address(args.connect)
    sel = selectors.DefaultSelector()
    rng = random.Random(args.seed)
    errors = {}
    start = time.monotonic()

    def fail(sock, what):
        errors[what] = errors.get(what, 0) + 1
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    # Phase 1: connect everything, all at once.
    connecting = set()
    for i in range(args.count):
        sock = socket.socket()
        sock.setblocking(False)
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            fail(sock, errno.errorcode.get(err, str(err)))
            continue
        connecting.add(sock)
        sel.register(sock, selectors.EVENT_WRITE, i)
    connected = []
    while connecting and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            connecting.discard(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(sock, errno.errorcode.get(err, str(err)))
            else:
                sel.unregister(sock)
                connected.append(sock)
    for sock in connecting:
        fail(sock, "connectTimeout")
    connectSeconds = time.monotonic() - start
    peak = len(connected)

    # Phase 2: every connection echoes its own payload, all in parallel.
    state = {}
    for sock in connected:
        payload = rng.randbytes(args.bytes)
        state[sock] = [payload, 0, bytearray()]
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, None)
    verified = 0
    while state and time.monotonic() < deadline:
        for key, events in sel.select(timeout=0.5):
            sock = key.fileobj
            entry = state.get(sock)
            if entry is None:
                continue
            payload, offset, got = entry
            try:
                if events & selectors.EVENT_WRITE and offset < len(payload):
                    entry[1] += sock.send(payload[offset : offset + CHUNK])
                    if entry[1] == len(payload):
                        sel.modify(sock, selectors.EVENT_READ, None)
                if events & selectors.EVENT_READ:
                    data = sock.recv(CHUNK)
                    if not data:
                        del state[sock]
                        fail(sock, "earlyEOF")
                        continue
                    got += data
            except BlockingIOError:
                continue
            except OSError as e:
                del state[sock]
                fail(sock, errname(e))
                continue
            if len(got) >= len(payload):
                del state[sock]
                sel.unregister(sock)
                if bytes(got) == payload:
                    verified += 1
                else:
                    errors["mismatch"] = errors.get("mismatch", 0) + 1
    for sock in list(state):
        fail(sock, "echoTimeout")
    echoSeconds = time.monotonic() - start - connectSeconds

    if args.hold:
        # Every connection is still open: let the test look at vpnkit.
        emit("HOLDING", len(connected))
        time.sleep(args.hold)

    # Phase 3: close everything (FIN), then make sure each saw the server's
    # EOF, so no connection is left half-open on either side.
    closed = 0
    for sock in connected:
        if sock.fileno() == -1:
            continue
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            fail(sock, "shutdown-" + errname(e))
            continue
        sock.setblocking(True)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if sock.recv(1) == b"":
                closed += 1
            else:
                errors["dataAfterEcho"] = errors.get("dataAfterEcho", 0) + 1
        except OSError as e:
            errors["close-" + errname(e)] = errors.get("close-" + errname(e), 0) + 1
        sock.close()
    emit(
        "RESULT",
        {
            "count": args.count,
            "connected": peak,
            "verified": verified,
            "closed": closed,
            "errors": errors,
            "connectSeconds": round(connectSeconds, 3),
            "echoSeconds": round(echoSeconds, 3),
            "seconds": round(time.monotonic() - start, 3),
        },
    )


def readLine(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def readToEOF(sock):
    data = b""
    while True:
        chunk = sock.recv(CHUNK)
        if not chunk:
            return data
        data += chunk


def acceptOne(args):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address(args.listen))
    server.listen(1)
    emit("LISTENING", server.getsockname()[1])
    server.settimeout(args.timeout)
    sock, _ = server.accept()
    server.close()
    sock.settimeout(args.timeout)
    return sock


def cmdHalfCloseServer(args):
    sock = acceptOne(args)
    if args.mode == "guest-first":
        # The guest writes a line and half-closes: we must see the line,
        # then EOF, and our reply must still reach it.
        received = readToEOF(sock)
        sock.sendall(b"reply to " + received)
        sock.shutdown(socket.SHUT_WR)
        emit("RESULT", {"received": received.decode(errors="replace"), "eof": True})
    else:
        # We write a line and half-close; the guest's reply must still
        # reach us.
        sock.sendall(b"hello from the host\n")
        sock.shutdown(socket.SHUT_WR)
        received = readToEOF(sock)
        emit("RESULT", {"received": received.decode(errors="replace"), "eof": True})
    sock.close()


def cmdHalfCloseClient(args):
    sock = socket.create_connection(address(args.connect), timeout=args.timeout)
    if args.mode == "guest-first":
        sock.sendall(b"hello from the guest\n")
        sock.shutdown(socket.SHUT_WR)
        received = readToEOF(sock)
        emit("RESULT", {"received": received.decode(errors="replace"), "eof": True})
    else:
        line = readLine(sock)
        rest = readToEOF(sock)
        sock.sendall(b"reply to " + line)
        sock.shutdown(socket.SHUT_WR)
        # Wait for the host's close so the reply is known to be delivered.
        tail = readToEOF(sock)
        emit(
            "RESULT",
            {
                "line": line.decode(errors="replace"),
                "afterLine": (rest + tail).decode(errors="replace"),
                "eof": True,
            },
        )
    sock.close()


def cmdResetServer(args):
    """
    Accept connections, read what the client sends first (if anything
    arrives within a moment), then close with SO_LINGER 0 so the kernel
    sends RST.
    """
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address(args.listen))
    server.listen(16)
    emit("LISTENING", server.getsockname()[1])
    server.settimeout(args.timeout)
    for _ in range(args.count):
        sock, _ = server.accept()
        sock.settimeout(args.wait)
        got = b""
        try:
            got = sock.recv(CHUNK)
        except socket.timeout:
            pass
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        emit("RESULT", {"reset": True, "received": got.decode(errors="replace")})


def cmdProbe(args):
    """
    Connect once; report the errno (or "connected") and the time it took.
    With C{--send}, then send that text and read until EOF or error.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in address(args.connect)[0] else socket.AF_INET)
    sock.settimeout(args.timeout)
    start = time.monotonic()
    result = {}
    try:
        sock.connect(address(args.connect))
        result["connect"] = "connected"
    except socket.timeout:
        result["connect"] = "timeout"
    except OSError as e:
        result["connect"] = errname(e)
    result["connectSeconds"] = round(time.monotonic() - start, 3)
    if result["connect"] == "connected" and args.send is not None:
        try:
            sock.sendall(args.send.encode())
            data = readToEOF(sock)
            result["read"] = "eof"
            result["data"] = data.decode(errors="replace")
        except socket.timeout:
            result["read"] = "timeout"
        except OSError as e:
            result["read"] = errname(e)
        result["seconds"] = round(time.monotonic() - start, 3)
    sock.close()
    emit("RESULT", result)


# -- the lossy vmnet relay ---------------------------------------------------

VMNET_CLIENT_HELLO = 49 + 41  # Init + Command (vpnkit.wire.vmnet)
VMNET_SERVER_HELLO = 49 + 258  # Init + Response


class PcapWriter:
    """
    A minimal pcap (Ethernet) file writer, for looking at what the relay
    saw and what it dropped with tcpdump.
    """

    def __init__(self, path, snaplen=256):
        self.snaplen = snaplen
        self.file = open(path, "wb")
        self.file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))

    def write(self, frame, now=None):
        now = time.time() if now is None else now
        data = frame[: self.snaplen]
        self.file.write(
            struct.pack("<IIII", int(now), int(now % 1 * 1e6), len(data), len(frame)) + data
        )

    def close(self):
        self.file.close()


class _Direction:
    """
    One direction of the relay: bytes in from C{src}, frames out to C{dst},
    after a pass-through prefix (the handshake).

    Each frame is dropped with probability C{loss}, or held back for
    C{delay} seconds with probability C{reorder} (frames behind it overtake
    it), or passed on.  At most C{maxHeld} frames are held and at most
    C{maxOut} bytes wait to be written; beyond that we stop reading C{src}
    (backpressure, bounded memory).
    """

    def __init__(self, name, src, dst, prefix, rng, loss, reorder, delay, maxHeld=256, maxOut=1 << 20):
        self.name = name
        self.src = src
        self.dst = dst
        self.prefix = prefix
        self.rng = rng
        self.loss = loss
        self.reorder = reorder
        self.delay = delay
        self.maxHeld = maxHeld
        self.maxOut = maxOut
        self.inbuf = bytearray()
        self.out = bytearray()
        self.held = []  # heap of (releaseAt, sequence, framed bytes)
        self.sequence = 0
        self.eof = False
        self.stats = {"frames": 0, "dropped": 0, "reordered": 0, "bytes": 0}
        self.seen = self.dropped = None  # PcapWriters, with --pcap

    def wantsRead(self):
        return not self.eof and len(self.out) < self.maxOut and len(self.held) < self.maxHeld

    def feed(self, data, now):
        self.inbuf += data
        if self.prefix:
            n = min(self.prefix, len(self.inbuf))
            self.out += self.inbuf[:n]
            del self.inbuf[:n]
            self.prefix -= n
        while len(self.inbuf) >= 2:
            (length,) = struct.unpack_from("<H", self.inbuf)
            if len(self.inbuf) < 2 + length:
                break
            framed = bytes(self.inbuf[: 2 + length])
            del self.inbuf[: 2 + length]
            self.stats["frames"] += 1
            self.stats["bytes"] += length
            r = self.rng.random()
            if self.seen is not None:
                self.seen.write(framed[2:])
            if r < self.loss:
                self.stats["dropped"] += 1
                if self.dropped is not None:
                    self.dropped.write(framed[2:])
            elif r < self.loss + self.reorder:
                self.stats["reordered"] += 1
                self.sequence += 1
                heapq.heappush(self.held, (now + self.delay, self.sequence, framed))
            else:
                self.out += framed

    def release(self, now, everything=False):
        while self.held and (everything or self.held[0][0] <= now):
            self.out += heapq.heappop(self.held)[2]

    def nextRelease(self):
        return self.held[0][0] if self.held else None


def cmdRelay(args):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(args.listen):
        os.unlink(args.listen)
    listener.bind(args.listen)
    listener.listen(1)
    emit("LISTENING", args.listen)
    listener.settimeout(args.timeout)
    client, _ = listener.accept()
    listener.close()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.settimeout(10)
    server.connect(args.connect)
    for s in (client, server):
        s.setblocking(False)
    up = _Direction(
        "toVPNKit", client, server, VMNET_CLIENT_HELLO, random.Random(args.seed * 2),
        args.loss, args.reorder, args.delay,
    )
    down = _Direction(
        "toGuest", server, client, VMNET_SERVER_HELLO, random.Random(args.seed * 2 + 1),
        args.loss, args.reorder, args.delay,
    )
    directions = (up, down)
    if args.pcap:
        # Every frame the relay received (both ways) and those it dropped.
        seen = PcapWriter(f"{args.pcap}-seen.pcap")
        dropped = PcapWriter(f"{args.pcap}-dropped.pcap")
        for d in directions:
            d.seen, d.dropped = seen, dropped
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
    sel = selectors.DefaultSelector()
    registered = {}

    def interest():
        for sock in (client, server):
            events = 0
            for d in directions:
                if d.src is sock and d.wantsRead():
                    events |= selectors.EVENT_READ
                if d.dst is sock and d.out:
                    events |= selectors.EVENT_WRITE
            old = registered.get(sock)
            if events == old:
                continue
            if old:
                if events:
                    sel.modify(sock, events)
                else:
                    sel.unregister(sock)
            elif events:
                sel.register(sock, events)
            registered[sock] = events

    def report():
        emit("RESULT", {d.name: d.stats for d in directions})

    try:
        while not stopping:
            now = time.monotonic()
            for d in directions:
                d.release(now)
            interest()
            waits = [t for t in (d.nextRelease() for d in directions) if t is not None]
            timeout = max(0.0, min(waits) - now) if waits else 1.0
            if not registered or not any(registered.values()):
                if all(d.eof for d in directions):
                    break
            for key, events in sel.select(timeout=min(timeout, 1.0)):
                sock = key.fileobj
                now = time.monotonic()
                if events & selectors.EVENT_WRITE:
                    for d in directions:
                        if d.dst is sock and d.out:
                            try:
                                n = sock.send(d.out)
                            except BlockingIOError:
                                n = 0
                            del d.out[:n]
                if events & selectors.EVENT_READ:
                    for d in directions:
                        if d.src is sock and d.wantsRead():
                            try:
                                data = sock.recv(1 << 18)
                            except BlockingIOError:
                                continue
                            except OSError:
                                data = b""
                            if not data:
                                d.eof = True
                                # Either side going away ends the link.
                                stopping.append(True)
                            else:
                                d.feed(data, now)
    finally:
        report()
        client.close()
        server.close()
        if args.pcap:
            seen.close()
            dropped.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, listen=False, connect=False):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument("--timeout", type=float, default=120.0)
        if listen and connect:
            group = p.add_mutually_exclusive_group(required=True)
            group.add_argument("--listen")
            group.add_argument("--connect")
        elif listen:
            p.add_argument("--listen", required=True)
        elif connect:
            p.add_argument("--connect", required=True)
        return p

    p = add("send", cmdSend, listen=True, connect=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p = add("recv", cmdRecv, listen=True, connect=True)
    p.add_argument("--slow-rate", type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=0.0)
    p.add_argument("--rcvbuf", type=int, default=0)
    p.add_argument("--expect", type=int, default=0, help="bytes the sender will send")
    p.add_argument("--eof-grace", type=float, default=10.0,
                   help="seconds the EOF may take once --expect bytes arrived")
    p.add_argument("--reply", default="")
    p = add("serve-http", cmdServeHTTP, listen=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p = add("echo-server", cmdEchoServer, listen=True)
    p.add_argument("--nofile", type=int, default=8192)
    p = add("many", cmdMany, connect=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--bytes", type=int, default=1000)
    p.add_argument("--hold", type=float, default=0.0, help="seconds to keep all open")
    p.add_argument("--seed", type=int, default=1)
    p = add("halfclose-server", cmdHalfCloseServer, listen=True)
    p.add_argument("--mode", choices=("guest-first", "host-first"), required=True)
    p = add("halfclose-client", cmdHalfCloseClient, connect=True)
    p.add_argument("--mode", choices=("guest-first", "host-first"), required=True)
    p = add("reset-server", cmdResetServer, listen=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--wait", type=float, default=0.5)
    p = add("probe", cmdProbe, connect=True)
    p.add_argument("--send", default=None)
    p = add("relay", cmdRelay)
    p.add_argument("--listen", required=True, help="Unix socket the bridge connects to")
    p.add_argument("--connect", required=True, help="vpnkit's --ethernet socket")
    p.add_argument("--loss", type=float, default=0.03)
    p.add_argument("--reorder", type=float, default=0.05)
    p.add_argument("--delay", type=float, default=0.002)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pcap", default=None, help="write PCAP-seen.pcap and PCAP-dropped.pcap")
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except OSError as e:
        emit("RESULT", {"error": errname(e), "message": str(e)})
        raise SystemExit(1)


if __name__ == "__main__":
    main()
