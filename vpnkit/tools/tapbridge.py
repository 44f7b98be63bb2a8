# -*- test-case-name: tests.test_tapbridge -*-
"""
C{vpnkit-tap-bridge}: attach a tap device in a network namespace to a
running vpnkit over its vmnet (or QEMU) socket.

This is the counterpart of the reference's C{vpnkit-tap-vsockd}: it does
the guest's half of the handshake, creates the tap device with the MAC and
MTU vpnkit assigned, and pumps frames both ways until either side goes
away.  Once the tap is up it prints one line starting with C{ready}.
"""

import os
import sys
import uuid as _uuid
from ipaddress import AddressValueError, IPv4Address

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.task import react
from twisted.python import usage

from vpnkit.counters import LinkCounters
from vpnkit.host.taplink import TapLink
from vpnkit.host.tundev import LinuxTunSystem, netnsPath
from vpnkit.log import logger
from vpnkit.protocols.links import HandshakeRefused, QEMUClientProtocol, VMNetClientProtocol
from vpnkit.wire import ParseError, vmnet
from vpnkit.wire.ethernet import formatMAC, parseMAC

__all__ = ["BridgeOptions", "main", "bridge"]

log = logger("vpnkit.tapbridge")


class BridgeOptions(usage.Options):
    synopsis = "--connect PATH [--protocol vmnet|qemu] [--netns NAME] [--tap IFNAME]"
    optParameters = [
        ["connect", "c", None, "vpnkit's socket (its --ethernet or --qemu path)."],
        ["protocol", None, "vmnet", "vmnet (with handshake) or qemu (u32 length framing)."],
        ["netns", None, None, "Network namespace (ip netns name or path) for the tap; default ours."],
        ["tap", None, "tap0", "Name of the tap device to create."],
        ["uuid", None, None, "vmnet: the VM's UUID (same UUID, same address); default all zeros."],
        ["preferred-ip", None, None, "vmnet: ask for this IPv4 address."],
        ["mac", None, None, "qemu: the tap's MAC (default: a random locally administered one)."],
        ["mtu", None, "1500", "qemu: the tap's MTU (vmnet takes vpnkit's)."],
    ]

    def postOptions(self):
        if not self["connect"]:
            raise usage.UsageError("--connect: which socket? (vpnkit's --ethernet or --qemu path)")
        if self["protocol"] not in ("vmnet", "qemu"):
            raise usage.UsageError(f"--protocol: {self['protocol']!r} is not vmnet or qemu")
        if self["uuid"] is None:
            self.rawUUID = vmnet.ZERO_UUID
        else:
            try:
                self.rawUUID = str(_uuid.UUID(self["uuid"])).encode("ascii")
            except ValueError:
                raise usage.UsageError(f"--uuid: {self['uuid']!r} is not a UUID") from None
        self.preferred = None
        if self["preferred-ip"] is not None:
            try:
                self.preferred = IPv4Address(self["preferred-ip"]).packed
            except AddressValueError:
                raise usage.UsageError(f"--preferred-ip: {self['preferred-ip']!r} is not IPv4") from None
        try:
            self.mtu = int(self["mtu"])
        except ValueError:
            raise usage.UsageError(f"--mtu: {self['mtu']!r} is not a number") from None
        self.mac = None
        if self["mac"] is not None:
            try:
                self.mac = parseMAC(self["mac"])
            except ParseError:
                raise usage.UsageError(f"--mac: {self['mac']!r} is not a MAC address") from None
        self.netns = netnsPath(self["netns"]) if self["netns"] else None

    def command(self):
        if self.preferred is not None:
            return vmnet.PreferredIPv4Command(self.rawUUID, self.preferred)
        return vmnet.EthernetCommand(self.rawUUID)


def _randomMAC():
    mac = bytearray(os.urandom(6))
    mac[0] = (mac[0] & 0xFE) | 0x02
    return bytes(mac)


async def bridge(reactor, options, system=None, out=sys.stdout):
    """
    Connect, create the tap and pump frames until one side closes.
    """
    system = system if system is not None else LinuxTunSystem()
    ready = Deferred()
    if options["protocol"] == "vmnet":
        protocol = VMNetClientProtocol(ready, options.command())
    else:
        protocol = QEMUClientProtocol(ready)
    endpoint = UNIXClientEndpoint(reactor, options["connect"])
    await connectProtocol(endpoint, protocol)
    vif = await ready
    if vif is not None:
        mac, mtu = vif.mac, vif.mtu
    else:
        mac, mtu = options.mac or _randomMAC(), options.mtu
    fd = system.openTap(options.netns, options["tap"], mac, mtu)
    done = Deferred()

    def tapClosed(reason):
        protocol.transport.loseConnection()

    tap = TapLink(
        fd,
        system,
        protocol.sendFrame,
        LinkCounters(),
        mtu + 50,
        f"tap:{options['tap']}",
        reactor=reactor,
        onClose=tapClosed,
    )
    protocol.frameReceiver = tap.sendFrame
    protocol.transport.registerProducer(tap, True)
    original = protocol.connectionLost

    def connectionLost(reason):
        original(reason)
        tap.closeLink("vpnkit closed the connection")
        done.callback(None)

    protocol.connectionLost = connectionLost
    tap.startReading()
    out.write(f"ready {options['tap']} mac={formatMAC(mac)} mtu={mtu}\n")
    out.flush()
    await done


def main(argv=None):
    options = BridgeOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"vpnkit-tap-bridge: {e}\n")
        raise SystemExit(2)
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])

    async def run(reactor):
        try:
            await bridge(reactor, options)
        except HandshakeRefused as e:
            sys.stderr.write(f"vpnkit-tap-bridge: vpnkit refused the connection: {e}\n")
            raise SystemExit(1)
        except (OSError, ConnectError) as e:
            # ConnectError (vpnkit's socket missing or refusing) is not an
            # OSError; it is the commonest failure and needs no traceback.
            sys.stderr.write(f"vpnkit-tap-bridge: {e}\n")
            raise SystemExit(1)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
