"""
Programs the HTTP proxy's end-to-end tests run in vpnkit's namespace
(C{python httptools.py COMMAND ...}):

 - C{origin --listen ADDR:PORT [--tls CERT KEY] --name NAME}: an HTTP
   (or HTTPS) origin.  C{GET /hello} answers C{hello from NAME};
   C{GET /blob?size=N&seed=S} streams N bytes generated from seed S;
   C{POST /sha256} answers the SHA-256 and length of the body it read
   (sized or chunked).  Every request is printed as C{REQUEST <line>
   host=<Host>}.
 - C{terminate --listen ADDR:PORT --tls CERT KEY --to ADDR:PORT}: a TLS
   terminator in front of a plain TCP server (tinyproxy cannot speak
   TLS), so vpnkit can be given an C{https://} upstream proxy.

Each prints C{LISTENING <port>} once it accepts connections.
"""

import argparse
import asyncio
import hashlib
import random
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 1 << 16


def blob(size, seed):
    """
    The bytes of C{/blob}: C{size} bytes from C{random.Random(seed)}, in
    chunks.
    """
    rng = random.Random(seed)
    left = size
    while left:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def blobDigest(size, seed):
    h = hashlib.sha256()
    for chunk in blob(size, seed):
        h.update(chunk)
    return h.hexdigest()


def _origin(args):
    name = args.name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *a):
            pass

        def _note(self):
            print(f"REQUEST {self.requestline} host={self.headers.get('Host')}", flush=True)

        def _send(self, body, code=200):
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._note()
            url = urlsplit(self.path)
            if url.path == "/hello":
                self._send(f"hello from {name}\n".encode())
                return
            if url.path == "/blob":
                query = parse_qs(url.query)
                size, seed = int(query["size"][0]), int(query["seed"][0])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                for chunk in blob(size, seed):
                    self.wfile.write(chunk)
                return
            self._send(b"not found\n", 404)

        def do_POST(self):
            self._note()
            h = hashlib.sha256()
            n = 0
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    left = size
                    while left:
                        data = self.rfile.read(min(CHUNK, left))
                        h.update(data)
                        n += len(data)
                        left -= len(data)
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length", "0"))
                while left:
                    data = self.rfile.read(min(CHUNK, left))
                    if not data:
                        break
                    h.update(data)
                    n += len(data)
                    left -= len(data)
            self._send(f"{h.hexdigest()} {n}\n".encode())

    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


async def _pump(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def _terminate(args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*args.tls)
    toHost, toPort = args.to.rsplit(":", 1)

    async def handle(reader, writer):
        try:
            upReader, upWriter = await asyncio.open_connection(toHost, int(toPort))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, upWriter), _pump(upReader, writer))

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), ssl=context)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv=None):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    origin = sub.add_parser("origin")
    origin.add_argument("--listen", required=True)
    origin.add_argument("--tls", nargs=2)
    origin.add_argument("--name", default="origin")
    terminate = sub.add_parser("terminate")
    terminate.add_argument("--listen", required=True)
    terminate.add_argument("--tls", nargs=2, required=True)
    terminate.add_argument("--to", required=True)
    args = parser.parse_args(argv)
    if args.command == "origin":
        _origin(args)
    else:
        asyncio.run(_terminate(args))


if __name__ == "__main__":
    sys.exit(main())
