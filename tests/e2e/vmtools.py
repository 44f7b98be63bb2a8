# -*- test-case-name: tests.e2e.test_vm_e2e -*-
"""
A tiny Linux VM for the real-VM end-to-end tier: a Debian kernel and a
busybox initramfs, booted under QEMU with its virtio-net device attached to
vpnkit.

The image is made from Debian packages only, fetched with C{apt-get
download} (so from the machine's configured Debian mirrors and nowhere
else) and unpacked with C{dpkg-deb -x}:

 - the kernel is the package C{linux-image-cloud-amd64} depends on (the
   real, versioned C{linux-image-*-cloud-amd64});
 - C{/bin/busybox} comes from C{busybox-static};
 - the kernel's virtio modules (C{virtio_pci}, C{virtio_net} and what they
   need, read from each module's C{.modinfo} C{depends=}: the package ships
   no C{modules.dep}) go to C{/lib/modules/} with their load order in
   C{/etc/modules}.

The kernel and that I{base} initramfs are cached under L{CACHE}, in a
directory named after the two packages' versions (and L{RECIPE}), so a
warm run only asks C{apt-cache} for the current versions.  Each boot
appends a small archive holding its own C{/init} (the kernel unpacks
concatenated C{newc} archives in order), so the test's parameters never
invalidate the cache.  The archives are written here (L{newc}): no C{cpio}
needed.

The guest's C{/init} (L{initScript}) reports on the serial console with
lines C{VMTEST <check> key=value ...} (L{parseResults}) and powers off.
"""

import fcntl
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.harness import _Process

__all__ = [
    "CACHE",
    "NETDEV_ID",
    "Image",
    "ensureImage",
    "newc",
    "moduleDepends",
    "initScript",
    "writeInitramfs",
    "accelerator",
    "qemuCommand",
    "QEMU",
    "parseResults",
]

CACHE = Path(os.environ.get("VPNKIT_E2E_VM_CACHE", "/var/cache/vpnkit-e2e-vm"))
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# The modules the guest loads, dependencies found by moduleDepends.
MODULES = ("virtio_pci", "virtio_net")
# Bump when what goes into the cached image changes.
RECIPE = 1
# The QEMU id a -netdev spec must carry: the virtio-net device names it.
NETDEV_ID = "n0"
MARKER = "VMTEST"
APT_TIMEOUT = 300


def _run(argv, timeout, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


# -- the cached image ---------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """
    A cached kernel and base initramfs.

    @ivar key: the cache directory's name (package versions and recipe).
    @ivar built: whether this call built it (a cold run).
    """

    kernel: Path
    base: Path
    key: str
    built: bool = False


def _candidate(package, updated):
    """
    The version and C{Depends} apt would install for C{package}, running
    C{apt-get update} once if apt knows no such package yet (a fresh
    machine's empty lists).
    """
    argv = ["apt-cache", "show", "--no-all-versions", package]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or "Version:" not in result.stdout:
        if updated:
            raise AssertionError(f"apt knows no package {package}:\n{result.stderr}")
        _run(["apt-get", "update", "-qq"], APT_TIMEOUT)
        return _candidate(package, True)
    fields = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields.setdefault(key, value)
    return fields["Version"], fields.get("Depends", "")


def _kernelPackage():
    """
    The versioned kernel package the cloud metapackage depends on, and its
    version.
    """
    _, depends = _candidate(KERNEL_METAPACKAGE, False)
    match = re.search(r"(linux-image-[0-9][^\s,(]*)\s*\(=\s*([^)\s]+)\)", depends)
    if match is None:
        raise AssertionError(f"{KERNEL_METAPACKAGE} depends on no versioned kernel: {depends!r}")
    return match.group(1), match.group(2)


def _cacheKey(kernel, kernelVersion, busyboxVersion):
    key = f"{kernel}_{kernelVersion}+{BUSYBOX_PACKAGE}_{busyboxVersion}+r{RECIPE}"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", key)


def ensureImage(cache=CACHE):
    """
    Return the L{Image} for the current Debian packages, building it into
    C{cache} first when absent.  Other entries of C{cache} (older versions)
    are removed once the new one is in place.
    """
    kernel, kernelVersion = _kernelPackage()
    busyboxVersion, _ = _candidate(BUSYBOX_PACKAGE, True)
    key = _cacheKey(kernel, kernelVersion, busyboxVersion)
    final = cache / key
    image = Image(final / "vmlinuz", final / "base.cpio", key)
    if image.kernel.exists() and image.base.exists():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        _build(scratch, [f"{kernel}={kernelVersion}", f"{BUSYBOX_PACKAGE}={busyboxVersion}"])
        try:
            os.rename(scratch / "image", final)
        except OSError:
            if not final.exists():
                raise
            # Another run built it at the same time: keep theirs.
    finally:
        shutil.rmtree(scratch, True)
    for entry in cache.iterdir():
        # Another run's build may be under way: only an hour-old one is
        # left over from an interrupted run.
        building = entry.name.startswith(".build-")
        if entry.name != key and (not building or time.time() - entry.stat().st_mtime > 3600):
            shutil.rmtree(entry, True)
    return Image(image.kernel, image.base, key, built=True)


def _build(scratch, packages):
    """
    Download C{packages} (C{name=version}) into C{scratch}, unpack them and
    write C{scratch/image/{vmlinuz,base.cpio}}.
    """
    debs = scratch / "debs"
    debs.mkdir()
    # apt's download sandbox user cannot write a root-owned directory.
    _run(["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", *packages],
         APT_TIMEOUT, cwd=debs)
    root = scratch / "root"
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], 120)
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
    moduleTrees = sorted((root / "lib" / "modules").glob("*/kernel"))
    busybox = root / "bin" / "busybox"
    if len(vmlinuz) != 1 or len(moduleTrees) != 1 or not busybox.exists():
        raise AssertionError(f"unexpected package contents: {vmlinuz}, {moduleTrees}, {busybox}")
    image = scratch / "image"
    image.mkdir()
    shutil.copyfile(vmlinuz[0], image / "vmlinuz")
    order = _moduleClosure(moduleTrees[0], MODULES)
    entries = [(name, stat.S_IFDIR | 0o755, b"") for name in (
        "bin", "dev", "etc", "lib", "lib/modules", "proc", "root", "sbin", "sys", "tmp",
        "usr", "usr/bin", "usr/sbin")]
    entries += [
        ("dev/console", stat.S_IFCHR | 0o600, (5, 1)),
        ("dev/null", stat.S_IFCHR | 0o666, (1, 3)),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()),
        ("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        ("etc/modules", stat.S_IFREG | 0o644,
         "".join(f"{name}\n" for name, _ in order).encode()),
    ]
    entries += [
        (f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, path.read_bytes())
        for name, path in order
    ]
    (image / "base.cpio").write_bytes(newc(entries))


def _moduleName(path):
    return path.name.split(".ko")[0].replace("-", "_")


def _moduleClosure(tree, wanted):
    """
    C{wanted} and every module they depend on, in an order that loads each
    after its dependencies: C{[(name, path), ...]}.
    """
    index = {_moduleName(p): p for p in tree.rglob("*.ko")}
    order, seen = [], set()

    def visit(name, chain):
        if name in seen:
            return
        if name in chain:
            raise AssertionError(f"module dependency cycle: {chain + (name,)}")
        if name not in index:
            raise AssertionError(f"no module {name} under {tree} (needed by {chain})")
        for dependency in moduleDepends(index[name]):
            visit(dependency, chain + (name,))
        seen.add(name)
        order.append((name, index[name]))

    for name in wanted:
        visit(name, ())
    return order


def moduleDepends(path):
    """
    The C{depends=} list of a kernel module's C{.modinfo} section (an ELF64
    little-endian relocatable object).
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise AssertionError(f"{path} is not a little-endian ELF64 module (compressed?)")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size
        fields = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return fields[0], fields[4], fields[5]

    _, namesAt, _ = section(shstrndx)
    for i in range(shnum):
        nameOffset, offset, size = section(i)
        name = data[namesAt + nameOffset : data.index(b"\0", namesAt + nameOffset)]
        if name == b".modinfo":
            for field in data[offset : offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    value = field[len(b"depends=") :].decode()
                    return [d.replace("-", "_") for d in value.split(",") if d]
            return []
    raise AssertionError(f"{path} has no .modinfo section")


def newc(entries):
    """
    A C{newc} (SVR4, no CRC) cpio archive of C{entries}, each C{(name,
    mode, content)}: bytes for files and symlinks (the target), C{(major,
    minor)} for device nodes, ignored for directories.  Owned by root,
    dated at the epoch.
    """
    out = bytearray()

    def pad():
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, content) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        rdev = (0, 0)
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            rdev, content = content, b""
        elif stat.S_ISDIR(mode):
            content = b""
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(content),
                  0, 0, rdev[0], rdev[1], len(encoded), 0)
        out += b"070701" + "".join(f"{f:08x}" for f in fields).encode() + encoded
        pad()
        out += content
        pad()
    return bytes(out)


# -- one boot ---------------------------------------------------------------

UDHCPC_SCRIPT = """#!/bin/sh
# Keep what udhcpc learnt for /init, and configure the interface.
case "$1" in
  bound|renew)
    echo "ip=$ip router=$router dns=$(echo $dns | tr ' ' ,)" \\
        "mtu=${mtu:-none} subnet=$subnet" > /tmp/lease
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    ;;
esac
exit 0
"""

INIT_TEMPLATE = """#!/bin/sh
# The guest's whole life: load virtio, get a lease, run the checks, report
# each as one line "VMTEST <check> key=value ..." on the console, power off.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
report() {{ echo "{marker} $*"; }}
uptime() {{ cut -d' ' -f1 /proc/uptime; }}
report boot uptime=$(uptime) kernel=$(uname -r)
for m in $(cat /etc/modules); do
    insmod /lib/modules/$m.ko || report insmod module=$m rc=$?
done
n=0
while [ ! -e /sys/class/net/{interface} ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
report link present=$([ -e /sys/class/net/{interface} ] && echo yes || echo no) \\
    mac=$(cat /sys/class/net/{interface}/address 2>/dev/null)
ip link set lo up
ip link set {interface} up
start=$(uptime)
udhcpc -i {interface} -f -q -n -t 10 -T 1 -s /udhcpc.sh >/tmp/udhcpc.log 2>&1
rc=$?
if [ -s /tmp/lease ]; then lease=$(cat /tmp/lease); else lease=; fi
report dhcp rc=$rc $lease ifmtu=$(cat /sys/class/net/{interface}/mtu) start=$start end=$(uptime)
ping -c 3 -W 2 -w 15 {gateway} >/tmp/ping.log 2>&1
rc=$?
report ping rc=$rc received=$(sed -n 's/.* \\([0-9]*\\) packets received.*/\\1/p' /tmp/ping.log)
for name in {names}; do
    timeout 20 nslookup -type=a $name {gateway} >/tmp/nslookup.log 2>&1
    rc=$?
    addresses=$(sed -n '/^Name:/,$ s/^Address: *//p' /tmp/nslookup.log | tr '\\n' , | sed 's/,$//')
    report dns name=$name rc=$rc addresses=$addresses
done
start=$(uptime)
# (busybox 1.35's wget -T crashes: bound it with timeout instead)
timeout 60 wget -q -O /tmp/download {url} >/tmp/wget.log 2>&1
rc=$?
report http rc=$rc size=$(wc -c </tmp/download 2>/dev/null) \\
    sha256=$(sha256sum /tmp/download 2>/dev/null | cut -d' ' -f1) start=$start end=$(uptime)
for log in udhcpc ping nslookup wget; do sed "s/^/$log: /" /tmp/$log.log; done
report done uptime=$(uptime)
poweroff -f
"""


def initScript(url, names, gateway="192.168.65.1", interface="eth0"):
    """
    The guest's C{/init}: lease, ping C{gateway}, resolve each of C{names}
    through it, download C{url} and hash it.
    """
    for text in (url, gateway, interface, *names):
        if not re.fullmatch(r"[A-Za-z0-9._:/-]+", text):
            raise ValueError(f"unsafe in a shell script: {text!r}")
    return INIT_TEMPLATE.format(
        marker=MARKER, url=url, names=" ".join(names), gateway=gateway, interface=interface
    )


def writeInitramfs(image, init, path):
    """
    Write C{image}'s base archive followed by one holding C{init} (the
    script text) as C{/init} and the lease script, to C{path}.
    """
    extra = newc([
        ("init", stat.S_IFREG | 0o755, init.encode()),
        ("udhcpc.sh", stat.S_IFREG | 0o755, UDHCPC_SCRIPT.encode()),
    ])
    with open(path, "wb") as f:
        f.write(image.base.read_bytes())
        f.write(extra)
    return Path(path)


PROBE_INIT = f"""#!/bin/sh
echo "{MARKER} probe"
/bin/busybox poweroff -f
"""
PROBE_TIMEOUT = 20
_accelerators = {}


def accelerator(image, workdir):
    """
    Choose how QEMU runs the guest: C{"kvm"} when C{/dev/kvm} answers
    C{KVM_GET_API_VERSION} I{and} a guest actually boots with it (a probe
    boot of C{image} with a script that only powers off, bounded by
    L{PROBE_TIMEOUT}; nested KVM can be present but unable to run a
    guest), else C{"tcg"}.  C{VPNKIT_E2E_VM_ACCEL=kvm|tcg} decides
    instead.  Probed once per process.

    @return: C{(accel, why)}.
    """
    forced = os.environ.get("VPNKIT_E2E_VM_ACCEL")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ValueError(f"VPNKIT_E2E_VM_ACCEL must be kvm or tcg, not {forced!r}")
        return forced, "VPNKIT_E2E_VM_ACCEL"
    if image.key not in _accelerators:
        _accelerators[image.key] = _probeKVM(image, Path(workdir))
    return _accelerators[image.key]


def _probeKVM(image, workdir):
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return "tcg", f"no usable /dev/kvm ({e.strerror})"
    try:
        version = fcntl.ioctl(fd, 0xAE00)  # KVM_GET_API_VERSION
    except OSError as e:
        return "tcg", f"/dev/kvm does not answer ({e.strerror})"
    finally:
        os.close(fd)
    if version != 12:
        return "tcg", f"/dev/kvm speaks API {version}"
    console = workdir / "probe-console.log"
    initrd = writeInitramfs(image, PROBE_INIT, workdir / "probe.cpio")
    argv = qemuCommand(image.kernel, initrd, None, console, "kvm")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "tcg", f"a KVM guest did not boot within {PROBE_TIMEOUT}s"
    if result.returncode != 0 or f"{MARKER} probe" not in console.read_text(errors="replace"):
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        return "tcg", f"a KVM guest failed: {reason}"
    return "kvm", "a KVM guest booted"


def qemuCommand(kernel, initrd, netdev, console, accel="tcg", memory=256):
    """
    The QEMU command line booting C{kernel} with C{initrd}, its one
    virtio-net device on the C{-netdev} spec C{netdev} (any backend; its
    id must be L{NETDEV_ID}; C{None} for no network device) and its serial
    console written to the file C{console}.
    """
    argv = [
        "qemu-system-x86_64",
        "-accel", accel,
        *(["-cpu", "host"] if accel == "kvm" else []),
        "-m", str(memory),
        "-smp", "1",
        "-nodefaults",
        "-no-reboot",
        "-display", "none",
        "-monitor", "none",
        "-serial", f"file:{console}",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet",
    ]  # fmt: skip
    if netdev is not None:
        if f"id={NETDEV_ID}" not in netdev.split(","):
            raise ValueError(f"the -netdev spec must have id={NETDEV_ID}: {netdev!r}")
        # No option ROM: the kernel is loaded directly, there is no PXE.
        argv += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev={NETDEV_ID},romfile="]
    return argv


class QEMU(_Process):
    """
    A QEMU process (killed at cleanup) whose serial console goes to
    C{console.log} in C{workdir}.
    """

    def __init__(self, testCase, workdir, image, init, netdev, accel="tcg"):
        self.accel = accel
        self.consolePath = Path(workdir) / "console.log"
        initrd = writeInitramfs(image, init, Path(workdir) / "initramfs.cpio")
        self.started = time.monotonic()
        argv = qemuCommand(image.kernel, initrd, netdev, self.consolePath, self.accel)
        super().__init__(testCase, argv, Path(workdir) / "qemu.log")

    def console(self):
        try:
            return self.consolePath.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def waitExit(self, timeout):
        """
        Wait at most C{timeout} seconds for the guest to power off.

        @return: the seconds it ran.
        """
        try:
            self.process.wait(timeout=timeout)
        except Exception:
            raise AssertionError(
                f"the VM ({self.accel}) did not power off within {timeout}s;\n"
                f"console:\n{self.console()}\nqemu:\n{self.log()}"
            ) from None
        if self.process.returncode != 0:
            raise AssertionError(
                f"QEMU exited with {self.process.returncode};\n"
                f"console:\n{self.console()}\nqemu:\n{self.log()}"
            )
        return time.monotonic() - self.started


def parseResults(console):
    """
    The C{VMTEST <check> key=value ...} lines of C{console}, as C{{check:
    [fields, ...]}} in the order printed (C{dns} repeats, one per name).
    """
    results = {}
    for line in console.splitlines():
        words = line.strip().split()
        if len(words) < 2 or words[0] != MARKER:
            continue
        fields = {}
        for word in words[2:]:
            key, sep, value = word.partition("=")
            if sep:
                fields[key] = value
        results.setdefault(words[1], []).append(fields)
    return results
