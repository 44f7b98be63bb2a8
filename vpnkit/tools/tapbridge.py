# -*- test-case-name: tests.test_tapbridge -*-
"""
C{vpnkit-tap-bridge}: attach a tap device in a network namespace to a
running vpnkit over its vmnet (or QEMU) socket.

This is the counterpart of the reference's C{vpnkit-tap-vsockd}: it does
the guest's half of the handshake, creates the tap device with the MAC and
MTU vpnkit assigned, and pumps frames both ways until either side goes
away.  Once the tap is up it prints one line starting with C{ready}.

With C{--protocol qemu-dgram} or C{vfkit} it plays QEMU's C{-netdev dgram}
or vfkit instead: it binds a datagram socket of its own (C{--local}),
connects it to vpnkit's, and sends one frame per datagram (after C{VFKT}
for vfkit).
"""

import os
import shutil
import socket
import stat
import sys
import tempfile
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
from vpnkit.protocols.dgramlinks import VFKIT_MAGIC, DatagramClientLink, sizeBuffers
from vpnkit.protocols.links import HandshakeRefused, QEMUClientProtocol, VMNetClientProtocol
from vpnkit.wire import ParseError, vmnet
from vpnkit.wire.ethernet import formatMAC, parseMAC

__all__ = ["BridgeOptions", "main", "bridge"]

log = logger("vpnkit.tapbridge")


PROTOCOLS = ("vmnet", "qemu", "qemu-dgram", "vfkit")
DATAGRAM_PROTOCOLS = ("qemu-dgram", "vfkit")


class BridgeOptions(usage.Options):
    synopsis = (
        "--connect PATH [--protocol vmnet|qemu|qemu-dgram|vfkit] [--netns NAME] [--tap IFNAME]"
    )
    optParameters = [
        ["connect", "c", None, "vpnkit's socket (its --ethernet or --qemu path)."],
        ["protocol", None, "vmnet", "vmnet (with handshake), qemu (u32 length framing), "
         "qemu-dgram or vfkit (one frame per datagram; vfkit greets with VFKT)."],
        ["local", None, None, "qemu-dgram, vfkit: our own socket path (default: one in a "
         "fresh temporary directory)."],
        ["netns", None, None, "Network namespace (ip netns name or path) for the tap; default ours."],
        ["tap", None, "tap0", "Name of the tap device to create."],
        ["uuid", None, None, "vmnet: the VM's UUID (same UUID, same address); default all zeros."],
        ["preferred-ip", None, None, "vmnet: ask for this IPv4 address."],
        ["mac", None, None, "qemu, qemu-dgram, vfkit: the tap's MAC (default: a random "
         "locally administered one)."],
        ["mtu", None, "1500", "qemu, qemu-dgram, vfkit: the tap's MTU (vmnet takes vpnkit's)."],
    ]

    def postOptions(self):
        if not self["connect"]:
            raise usage.UsageError("--connect: which socket? (vpnkit's --ethernet or --qemu path)")
        if self["protocol"] not in PROTOCOLS:
            raise usage.UsageError(
                f"--protocol: {self['protocol']!r} is not vmnet, qemu, qemu-dgram or vfkit"
            )
        if self["local"] is not None and self["protocol"] not in DATAGRAM_PROTOCOLS:
            raise usage.UsageError("--local: only for --protocol qemu-dgram or vfkit")
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


def openDatagram(remote, local=None):
    """
    A non-blocking Unix datagram socket bound to C{local} (or to a path in
    a fresh temporary directory) and connected to vpnkit's C{remote}.

    @return: C{(socket, cleanup)}; C{cleanup()} removes what was created.
    @raise ConnectError: vpnkit's socket cannot be reached.
    @raise OSError: C{local} cannot be bound.
    """
    scratch = None
    if local is None:
        scratch = tempfile.mkdtemp(prefix="vpnkit-bridge-")
        local = os.path.join(scratch, "guest.sock")
    elif os.path.lexists(local) and stat.S_ISSOCK(os.lstat(local).st_mode):
        # Left by an earlier run (QEMU does the same with its local.path).
        os.unlink(local)

    def cleanup():
        try:
            os.unlink(local)
        except OSError:
            pass
        if scratch is not None:
            shutil.rmtree(scratch, True)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(local)
        sizeBuffers(sock)
        try:
            sock.connect(remote)
        except OSError as e:
            raise ConnectError(string=f"{remote}: {e.strerror}") from None
        sock.setblocking(False)
    except BaseException:
        sock.close()
        cleanup()
        raise
    return sock, cleanup


async def _datagramBridge(reactor, options, system, out):
    """
    The datagram protocols: no handshake, so the tap takes C{--mac} and
    C{--mtu}; vfkit's greeting goes before the first frame.
    """
    sock, cleanup = openDatagram(options["connect"], options["local"])
    # Stopped by a signal, the bridge still removes its socket file.
    reactor.addSystemEventTrigger("before", "shutdown", cleanup)
    mac, mtu = options.mac or _randomMAC(), options.mtu
    try:
        fd = system.openTap(options.netns, options["tap"], mac, mtu)
    except BaseException:
        sock.close()
        cleanup()
        raise
    done = Deferred()
    magic = VFKIT_MAGIC if options["protocol"] == "vfkit" else None
    tap = None

    def linkClosed(reason):
        log.info("{reason}", reason=reason.getErrorMessage())
        cleanup()
        tap.closeLink("vpnkit is gone")
        if not done.called:
            done.callback(None)

    link = DatagramClientLink(sock, reactor, LinkCounters(), magic=magic, onClose=linkClosed)

    def tapClosed(reason):
        link.closeLink("the tap is gone")

    tap = TapLink(
        fd,
        system,
        link.sendFrame,
        LinkCounters(),
        mtu + 50,
        f"tap:{options['tap']}",
        reactor=reactor,
        onClose=tapClosed,
    )
    link.frameReceiver = tap.sendFrame
    link.registerProducer(tap, True)
    link.start()
    tap.startReading()
    out.write(f"ready {options['tap']} mac={formatMAC(mac)} mtu={mtu}\n")
    out.flush()
    await done


async def bridge(reactor, options, system=None, out=sys.stdout):
    """
    Connect, create the tap and pump frames until one side closes.
    """
    system = system if system is not None else LinuxTunSystem()
    if options["protocol"] in DATAGRAM_PROTOCOLS:
        await _datagramBridge(reactor, options, system, out)
        return
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
