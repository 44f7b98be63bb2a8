# -*- test-case-name: tests.test_diagnostics -*-
"""
C{--diagnostics}: what a bug report needs, as a tar (ustar) stream.

Each client of the diagnostics socket gets one archive and then the
connection closes (C{nc -U PATH | tar t} lists it):

 - C{stats.json}: every counter and the live state (L{Stack.stats});
 - C{connections.json}: the guests' TCP connections and the dials in flight;
 - C{flows.json}: the UDP NAT, ICMP echo and gateway-forward flows;
 - C{leases.json}: the addresses held (each IPv4 address with its stable
   IPv6 one when IPv6 is on), and which link holds each;
 - C{config.json}: the effective addressing plan (IPv6's too) and the
   command line;
 - C{capture/all.pcap}: the capture ring (the last 256 KiB of frames),
   when C{--pcap}, C{--pcap-file} or C{--diagnostics} keeps one.

Building the archive is pure (L{archive}); the protocol only writes it.
"""

import io
import json
import tarfile

from twisted.internet.protocol import Factory, Protocol

from vpnkit.leases import ipv6ForLease
from vpnkit.protocols.ip import formatAddress
from vpnkit.wire.ethernet import formatMAC
from vpnkit.wire.pcap import fileHeader

__all__ = ["snapshot", "archive", "DiagnosticsFactory", "leaseRows"]


def _text(value):
    """
    A flow key's element for JSON: a packed address as its text.
    """
    return formatAddress(value) if isinstance(value, bytes) else value


def _flows(table, now):
    rows = []
    for flow in table.values():
        guest = flow.key[0]
        rest = flow.key[1:]
        rows.append(
            {
                "guest": formatAddress(guest),
                "key": [_text(value) for value in rest],
                "hostPort": flow.socket.port if flow.socket is not None else None,
                "idleSeconds": round(now - table.lastUse(flow.key), 3),
            }
        )
    return rows


def _config(config):
    return {
        "mtu": config.mtu,
        "subnet": str(config.subnet),
        "gatewayIP": str(config.gatewayIP),
        "hostIP": str(config.hostIP) if config.hostIP is not None else None,
        "lowestIP": str(config.lowestIP),
        "highestIP": str(config.highestIP),
        "serverMAC": formatMAC(config.serverMAC),
        "domain": config.domain,
        "hostNames": list(config.hostNames),
        "gatewayNames": list(config.gatewayNames),
        "vmNames": list(config.vmNames),
        "maxUDPFlows": config.maxUDPFlows,
        "ipv6": _ipv6Config(config.ipv6),
    }


def _ipv6Config(ipv6):
    if ipv6 is None:
        return None
    return {
        "prefix": str(ipv6.prefix),
        "gateway": str(ipv6.gateway),
        "hostAlias": str(ipv6.hostAlias) if ipv6.hostAlias is not None else None,
        "routerLinkLocal": str(ipv6.routerLinkLocal),
        "firstAddress": str(ipv6.firstAddress),
    }


def leaseRows(stack):
    """
    Every lease the stack's pool holds: its IPv4 address, the stable IPv6
    address that goes with it (C{None} with IPv6 off), MAC, UUID, whether
    ephemeral, and the link holding it (C{None} when detached).  Plain
    data, ready for JSON (C{leases.json}, the API's C{/services/leases}).
    """
    attached = {port.lease.ip: port for port in stack.switch.ports()}
    rows = []
    for lease in stack.pool.leases():
        port = attached.get(lease.ip)
        ipv6 = ipv6ForLease(stack.config, lease)
        rows.append(
            {
                "ip": str(lease.ip),
                "ipv6": str(ipv6) if ipv6 is not None else None,
                "mac": formatMAC(lease.mac),
                "uuid": lease.uuid,
                "ephemeral": lease.ephemeral,
                "link": port.link.description if port is not None else None,
            }
        )
    return rows


def snapshot(stack, argv=(), capture=None):
    """
    The archive's files: C{{name: bytes}}.

    @param argv: the command line vpnkit was started with.
    @param capture: the L{vpnkit.capture.Capture} whose ring is included,
        or C{None}.
    """
    now = stack.reactor.seconds()
    stats = stack.stats()
    leases = leaseRows(stack)
    files = {
        "stats.json": stats,
        "connections.json": stats["tcp"],
        "flows.json": {
            "udpNAT": _flows(stack.udpNAT.flows, now),
            "icmpEcho": _flows(stack.icmp.flows, now),
            "gatewayUDPForwards": _flows(stack.udpGatewayForwards.flows, now),
        },
        "leases.json": leases,
        "config.json": {"stack": _config(stack.config), "argv": list(argv)},
    }
    out = {name: json.dumps(value, indent=2, sort_keys=True).encode() + b"\n" for name, value in files.items()}
    if capture is not None:
        out["capture/all.pcap"] = fileHeader(capture.snaplen) + capture.recent()
    return out


def archive(files, mtime=0):
    """
    A ustar archive of C{files} (C{{name: bytes}}), files mode 0644, ending
    in the two zero blocks.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Diagnostics(Protocol):
    def connectionMade(self):
        factory = self.factory
        files = snapshot(factory.stack, factory.argv, factory.capture)
        self.transport.write(archive(files, factory.stack.reactor.seconds()))
        self.transport.loseConnection()


class DiagnosticsFactory(Factory):
    """
    Writes one archive to each client, then closes.
    """

    protocol = _Diagnostics
    noisy = False

    def __init__(self, stack, argv=(), capture=None):
        self.stack = stack
        self.argv = tuple(argv)
        self.capture = capture
