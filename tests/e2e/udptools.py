"""
Helper programs for the UDP, DNS and ICMP end-to-end tests, each run by
the test inside a network namespace (vpnkit's, or a guest's):

  dns-server ADDRESS PORT ZONEFILE   an authoritative twisted.names server
                                     (UDP and TCP) for a Python zone file;
                                     prints "QUERY <name> <type>" per query
  silent ADDRESS PORT                a UDP socket and a TCP listener that
                                     never answer
  udp-echo ADDRESS PORT              the reference's NAT echo server: every
                                     datagram goes back to every address it
                                     has seen; prints "SEEN <host> <port>"
  udp-send HOST PORT DATA_HEX [BIND] one datagram from a fresh socket
  udp-sink ADDRESS PORT              counts datagrams and source ports;
                                     prints "RESULT {...}" on SIGTERM
  flood HOST PORT COUNT PORTS FIRST  COUNT datagrams from PORTS source ports
                                     (FIRST, FIRST+1, ...), paced
  session                            a UDP client driven by JSON lines on
                                     stdin, one JSON line answered per
                                     command (see Session)

Every server prints "LISTENING <port>" once it is ready.  Only the standard
library and Twisted are used; nothing here reaches beyond the namespaces
the test made.
"""

import json
import select
import signal
import socket
import sys
import time


def _print(*words):
    print(*words, flush=True)


def dnsServer(address, port, zonefile):
    from twisted.internet import reactor
    from twisted.names import authority, dns, server

    zone = authority.PySourceAuthority(zonefile)

    class Factory(server.DNSServerFactory):
        def messageReceived(self, message, proto, address=None):
            for query in message.queries:
                _print("QUERY", query.name.name.decode(), dns.QUERY_TYPES.get(query.type, query.type))
            super().messageReceived(message, proto, address)

        def gotResolverError(self, failure, protocol, message, address):
            if failure.check(dns.AuthoritativeDomainError):
                # NXDOMAIN with the zone's SOA, as a real server sends it.
                soa = dns.RRHeader(zone.soa[0], dns.SOA, dns.IN, 60, zone.soa[1], auth=True)
                response = dns.Message(
                    id=message.id,
                    answer=True,
                    recAv=self.canRecurse,
                    rCode=dns.ENAME,
                    auth=True,
                    maxSize=message.maxSize,
                )
                response.queries = message.queries[:]
                response.authority = [soa]
                response.timeReceived = getattr(message, "timeReceived", None)
                self.sendReply(protocol, response, address)
                return
            return super().gotResolverError(failure, protocol, message, address)

    factory = Factory(authorities=[zone])
    tcp = reactor.listenTCP(port, factory, interface=address)
    reactor.listenUDP(tcp.getHost().port, dns.DNSDatagramProtocol(factory), interface=address)
    _print("LISTENING", tcp.getHost().port)
    reactor.run()


def silent(address, port):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, udp.getsockname()[1]))
    tcp.listen(16)
    _print("LISTENING", udp.getsockname()[1])
    held = []
    while True:
        readable, _, _ = select.select([udp, tcp], [], [])
        for s in readable:
            if s is udp:
                udp.recv(65536)
            else:
                held.append(tcp.accept()[0])


def udpEcho(address, port):
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((address, port))
    _print("LISTENING", sock.getsockname()[1])
    seen = []
    while True:
        data, source = sock.recvfrom(65536)
        if source not in seen:
            seen.append(source)
            _print("SEEN", source[0], source[1])
        _print("GOT", source[0], source[1], len(data))
        for peer in seen:
            # (An IPv6 source is a 4-tuple; sendto takes it as it is.)
            sock.sendto(data, peer)


def udpSend(host, port, data, bind="0.0.0.0"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 0))
    sock.sendto(bytes.fromhex(data), (host, int(port)))
    _print("SENT", sock.getsockname()[1])


def udpSink(address, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((address, port))
    counts = {"count": 0, "sources": set()}

    def report(*args):
        _print("RESULT", json.dumps({"count": counts["count"], "sources": len(counts["sources"])}))
        sys.exit(0)

    signal.signal(signal.SIGTERM, report)
    _print("LISTENING", sock.getsockname()[1])
    while True:
        data, source = sock.recvfrom(65536)
        counts["count"] += 1
        counts["sources"].add(source)


def flood(host, port, count, ports, first):
    count, ports, first = int(count), int(ports), int(first)
    sockets = {}
    sent = 0
    for i in range(count):
        sport = first + i % ports
        sock = sockets.get(sport)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("0.0.0.0", sport))
            sockets[sport] = sock
        sock.sendto(i.to_bytes(4, "big") + bytes(60), (host, int(port)))
        sent += 1
        if i % ports == ports - 1:
            # A round over every port: close them, so the guest never
            # holds more than PORTS descriptors, and let vpnkit breathe.
            for s in sockets.values():
                s.close()
            sockets.clear()
        if i % 50 == 49:
            time.sleep(0.004)
    _print("RESULT", json.dumps({"sent": sent}))


class Session:
    """
    Commands (one JSON object per line), each answered by one JSON line:

      {"op": "bind", "port": P}                       -> {"port": P}
      {"op": "send", "port": P, "to": [H, PORT], "hex": DATA, "size": N, "ttl": T}
                                                      -> {"sent": n}
      {"op": "recv", "port": P, "timeout": S}         -> {"from": [H, PORT], "hex": .., "size": n}
                                                         or {"timeout": true}
      {"op": "connected", "to": [H, PORT], "hex": DATA, "timeout": S}
            send on a connected socket and read: -> {"error": "ECONNREFUSED"} or data
    """

    def __init__(self):
        self.sockets = {}

    def socketFor(self, port):
        sock = self.sockets.get(port)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind(("0.0.0.0", port))
            self.sockets[port] = sock
        return sock

    def payload(self, command):
        if "size" in command:
            marker = bytes.fromhex(command.get("hex", "00"))
            return (marker * (command["size"] // len(marker) + 1))[: command["size"]]
        return bytes.fromhex(command.get("hex", ""))

    def run(self, command):
        op = command["op"]
        if op == "bind":
            return {"port": self.socketFor(command["port"]).getsockname()[1]}
        if op == "send":
            sock = self.socketFor(command["port"])
            if "ttl" in command:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, command["ttl"])
            return {"sent": sock.sendto(self.payload(command), tuple(command["to"]))}
        if op == "recv":
            sock = self.socketFor(command["port"])
            readable, _, _ = select.select([sock], [], [], command.get("timeout", 5))
            if not readable:
                return {"timeout": True}
            data, source = sock.recvfrom(65536)
            return {"from": list(source), "hex": data[:64].hex(), "size": len(data)}
        if op == "connected":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.connect(tuple(command["to"]))
                sock.send(self.payload(command))
                readable, _, _ = select.select([sock], [], [], command.get("timeout", 5))
                if not readable:
                    return {"timeout": True}
                try:
                    data = sock.recv(65536)
                except OSError as e:
                    return {"error": errorName(e)}
                return {"size": len(data), "hex": data[:64].hex()}
            finally:
                sock.close()
        return {"error": f"unknown op {op}"}


def errorName(e):
    import errno

    return errno.errorcode.get(e.errno, str(e.errno))


def session():
    s = Session()
    _print("LISTENING 0")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            answer = s.run(json.loads(line))
        except OSError as e:
            answer = {"error": errorName(e)}
        _print(json.dumps(answer))


COMMANDS = {
    "dns-server": lambda a, p, z: dnsServer(a, int(p), z),
    "silent": lambda a, p: silent(a, int(p)),
    "udp-echo": lambda a, p: udpEcho(a, int(p)),
    "udp-send": udpSend,
    "udp-sink": lambda a, p: udpSink(a, int(p)),
    "flood": flood,
    "session": session,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
