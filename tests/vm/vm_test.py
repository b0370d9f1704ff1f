#!/usr/bin/env python3
"""make vm-test: boot a real Debian 12 VM with the freshly built package and
check every promise end to end, from the host (SSH through a forwarded
port, QMP for hot-plug).

The image (debootstrap, linux-image-amd64, systemd, udev, autofs,
openssh-server and the tools the suite calls) is cached under
/var/cache/gandi-vm-test, keyed by a hash of its inputs: a rerun only
installs the package into a copy of it. QEMU runs with TCG (KVM guests hung
on these machines). Prints one line per check; exits 1 when one fails.
Everything it starts is stopped, and every mount and loop device it makes
is removed, also on failure. The serial log is kept on failure.

Usage: vm-test DEB           the system test
       vm-test --bench DEB   make vm-bench: the image booted bare, with our
                             package, and with Debian's cloud-init doing the
                             same job; boot times and their ratios
       vm-test --faults DEB  make vm-fault-test: power cuts (QEMU killed)
                             at random moments of the first boot's
                             bootstrap, of the root disk's growth and of a
                             data disk's growth, 3 times each; after each
                             the VM must boot, be reachable with the
                             platform's key, have clean filesystems and
                             grown disks. GANDI_FAULT_SEED picks the moments.
       vm-test --grower DEB  part of make fault-test: a data disk's ext4
                             grown online (mounted by automount, under
                             systemd) while its grower and tool are killed
                             with SIGKILL, 5 times (2 of them with the
                             watcher, the unit's main process): no new
                             event, each time the disk ends grown and
                             served, never reported growing once no grower
                             lives, its filesystem clean.
"""

import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

CACHE = os.environ.get("GANDI_TEST_CACHE", "/var/cache/gandi-vm-test")
MIRROR = "http://deb.debian.org/debian"
PACKAGES = [
    "systemd", "systemd-sysv", "udev", "autofs", "openssh-server", "e2fsprogs",
    "xfsprogs", "btrfs-progs", "fdisk", "kmod", "iproute2", "udhcpc", "passwd",
    "procps", "util-linux", "initramfs-tools", "zstd", "python3-minimal", "sudo",
]
IMAGE_VERSION = "4"  # bump when the image recipe changes
# The host port forwarded to the guest's SSH: GANDI_VM_SSH_PORT, else a
# free one picked at each boot (two runs side by side must not collide).
FIXED_SSH_PORT = os.environ.get("GANDI_VM_SSH_PORT")
SSH_PORT = int(FIXED_SSH_PORT or "0")


def free_port():
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

results = []


def log(msg):
    print(msg, flush=True)


def check(name, ok, detail=""):
    results.append((name, bool(ok)))
    log(f"{'PASS' if ok else 'FAIL'}: {name}{(' (' + detail + ')') if detail else ''}")
    return ok


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


class Mounts:
    """Mounts and loop devices made by this run, undone in reverse order."""

    def __init__(self):
        self.undo = []

    def mount(self, *args):
        run(["mount", *args])
        self.undo.append(["umount", "-l", args[-1]])

    def loop(self, image):
        dev = run(["losetup", "--find", "--show", image]).stdout.strip()
        self.undo.append(["losetup", "-d", dev])
        return dev

    def close(self):
        while self.undo:
            subprocess.run(self.undo.pop(), capture_output=True)


def mounted_beneath(path):
    """The mount points at or beneath `path`, deepest first."""
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point == real or point.startswith(real.rstrip("/") + "/"):
                out.append(point)
    return sorted(out, key=len, reverse=True)


def remove_tree(path):
    """Removes `path` (a run's folder, or a killed run's leftover): what is
    mounted beneath it (the host's /dev bound into a chroot, proc, a loop
    image) is unmounted first, deepest first; while a mount remains
    nothing is removed (a removal that walked into the host's /dev would
    delete its device nodes), and the removal never crosses into another
    filesystem."""
    if not os.path.lexists(path):
        return
    for point in mounted_beneath(path):
        subprocess.run(["umount", "-l", point], capture_output=True)
    left = mounted_beneath(path)
    if left:
        log(f"{path}: not removed, still mounted beneath it: {' '.join(left)}")
        return
    subprocess.run(["rm", "-rf", "--one-file-system", "--", path], capture_output=True)


# Packages a release needs beyond PACKAGES (none yet: systemd-networkd is
# still part of systemd in Debian 13).
RELEASE_PACKAGES = {"bullseye": [], "bookworm": [], "trixie": []}


def image_key(release="bookworm"):
    h = hashlib.sha256()
    h.update(IMAGE_VERSION.encode())
    h.update(" ".join(PACKAGES + RELEASE_PACKAGES[release]).encode())
    h.update(MIRROR.encode())
    if release != "bookworm":
        h.update(release.encode())
    return h.hexdigest()[:16]


def build_image(dest, release="bookworm"):
    """The pristine image of `release`: rootfs.img (ext4), vmlinuz,
    initrd.img."""
    work = dest + ".new"
    remove_tree(work)
    os.makedirs(work)
    tree = os.path.join(work, "tree")
    log(f"building the {release} VM image in {dest} (once; reused after)")
    t = time.time()
    run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES + RELEASE_PACKAGES[release]),
         release, tree, MIRROR])
    # The kernel, in the chroot, for its initramfs (no service may start).
    policy = os.path.join(tree, "usr/sbin/policy-rc.d")
    with open(policy, "w") as f:
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(policy, 0o755)
    mounts = Mounts()
    try:
        mounts.mount("-t", "proc", "proc", os.path.join(tree, "proc"))
        mounts.mount("--bind", "/dev", os.path.join(tree, "dev"))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["chroot", tree, "apt-get", "install", "-y", "-q", "--no-install-recommends",
             "linux-image-amd64"], env=env)
        run(["chroot", tree, "apt-get", "clean"])
    finally:
        mounts.close()
    os.remove(policy)
    with open(os.path.join(tree, "etc/fstab"), "w") as f:
        f.write("/dev/vda / ext4 errors=remount-ro 0 1\n")
    with open(os.path.join(tree, "etc/hostname"), "w") as f:
        f.write("debian\n")
    os.makedirs(os.path.join(tree, "root/.ssh"), exist_ok=True)
    # Interfaces keep kernel names (net.ifnames=0); networkd configures them.
    run(["chroot", tree, "systemctl", "enable", "systemd-networkd"])
    run(["chroot", tree, "systemctl", "enable", "autofs"])
    run(["chroot", tree, "systemctl", "enable", "ssh"])
    # A machine id per boot of a copy, not baked in.
    open(os.path.join(tree, "etc/machine-id"), "w").close()
    boot = os.path.join(tree, "boot")
    kernel = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-"))[-1]
    initrd = sorted(f for f in os.listdir(boot) if f.startswith("initrd.img-"))[-1]
    shutil.copy(os.path.join(boot, kernel), os.path.join(work, "vmlinuz"))
    shutil.copy(os.path.join(boot, initrd), os.path.join(work, "initrd.img"))
    img = os.path.join(work, "rootfs.img")
    run(["truncate", "-s", "3G", img])
    run(["mkfs.ext4", "-q", "-L", "root", "-d", tree, img])
    shutil.rmtree(tree)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.rename(work, dest)
    log(f"image built in {time.time() - t:.0f} s")


def install_package(image, deb, mounts, tmp, extra=None):
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt, exist_ok=True)
    mounts.mount("-o", "loop", image, mnt)
    try:
        shutil.copy(deb, os.path.join(mnt, "tmp/gandi-vm.deb"))
        policy = os.path.join(mnt, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        run(["chroot", mnt, "dpkg", "-i", "/tmp/gandi-vm.deb"])
        os.remove(policy)
        os.remove(os.path.join(mnt, "tmp/gandi-vm.deb"))
        if extra:
            extra(mnt)
    finally:
        # Unmounted, its undo goes; still mounted (busy), its lazy unmount
        # stays for Mounts.close.
        if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
            mounts.undo.pop()


def tar_archive(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def swap_disk(path, config, extra=()):
    """A swap area labelled swap, with the platform's archive at 512 KiB."""
    run(["truncate", "-s", "64M", path])
    run(["mkswap", "-L", "swap", path])
    archive = tar_archive([("gandi/config", json.dumps(config).encode(), 0o600), *extra])
    with open(path, "r+b") as f:
        f.seek(512 * 1024)
        f.write(archive)


FORGED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIForgedForgedForgedForgedForged mallory@data-disk"
FORGED_HASH = "$6$forged$ForgedForgedForgedForgedForgedForgedForgedForgedForgedForged0"


def forged_archive():
    """An archive as a hostile data disk or a swapped-out page would carry:
    another hostname, password hash and key, a command."""
    return tar_archive([("gandi/config", json.dumps({
        "vm_hostname": "forged",
        "vm_conf": {"password": FORGED_HASH, "ssh_key": FORGED_KEY,
                    "run": "touch /root/forged-run"}}).encode(), 0o600)])


def forged_page():
    """One 4 KiB page holding a whole forged archive: its entry and the two
    zero blocks that end it (tarfile pads archives to 10 KiB)."""
    config = json.loads(tarfile.open(fileobj=io.BytesIO(forged_archive())).extractfile("gandi/config").read())
    data = json.dumps(config).encode()
    whole = tar_archive([("gandi/config", data, 0o600)])
    used = 512 + (len(data) + 511) // 512 * 512 + 1024
    assert used <= 4096 and not any(whole[used:])
    return whole[:used].ljust(4096, b"\0")


def evil_disk(path):
    """A data disk made to pass for the platform's: a GPT partition named
    gandiswap holding a swap area labelled swap, a forged archive at
    512 KiB of the disk."""
    run(["truncate", "-s", "64M", path])
    run(["sfdisk", "--quiet", path], input="label: gpt\nstart=2048, name=gandiswap\n")
    part = path + ".part"
    run(["truncate", "-s", "60M", part])
    run(["mkswap", "-L", "swap", part])
    run(["dd", f"if={part}", f"of={path}", "bs=1M", "seek=1", "conv=sparse,notrunc", "status=none"])
    os.remove(part)
    with open(path, "r+b") as f:
        f.seek(512 * 1024)
        f.write(forged_archive())


def ssh_input(key, command, data, timeout=120):
    """`ssh` with `data` on the command's standard input."""
    return subprocess.run(
        ["ssh", "-i", key, "-p", str(SSH_PORT), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
        input=data, capture_output=True, timeout=timeout)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_disk(path, label, size_mb):
    """An ext4 labelled `label` filling half of the disk."""
    run(["truncate", "-s", f"{size_mb}M", path])
    run(["mkfs.ext4", "-q", "-F", "-L", label, path, f"{size_mb // 2}M"])


def platform_disk(fs_image, disk, grow_mb):
    """The platform's system disk: GPT, one partition named gandiroot
    holding `fs_image` (an ext4), a zero disk GUID as the platform's images
    come; then enlarged by `grow_mb` as when a customer resizes it."""
    fs_size = os.path.getsize(fs_image)
    sectors = fs_size // 512
    run(["truncate", "-s", str(fs_size + (2 << 20)), disk])
    run(["sfdisk", "--quiet", disk],
        input=f"label: gpt\nstart=2048, size={sectors}, name=gandiroot\n")
    run(["sfdisk", "--disk-id", disk, "00000000-0000-0000-0000-000000000000"])
    run(["dd", f"if={fs_image}", f"of={disk}", "bs=1M", "seek=1", "conv=sparse,notrunc", "status=none"])
    run(["truncate", "-s", f"+{grow_mb}M", disk])


class Qmp:
    def __init__(self, path):
        deadline = time.time() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"{name}: {reply['error']}")
            return reply.get("return")


def boot(base, tmp, image, disks, root="/dev/vda", serial="serial.log", extra=(), append="",
         ifnames=False):
    """Starts QEMU (TCG) on `image` (its root filesystem on `root`) with
    `disks`; serial to tmp/`serial`, QMP on tmp/qmp.sock, SSH forwarded
    to SSH_PORT (picked free here unless GANDI_VM_SSH_PORT is set).
    `ifnames`: the kernel's predictable NIC names (no net.ifnames=0)."""
    global SSH_PORT
    if not ifnames:
        append = f"net.ifnames=0 {append}".strip()
    for attempt in range(5):
        if not FIXED_SSH_PORT:
            SSH_PORT = free_port()
        try:
            return boot_once(base, tmp, image, disks, root, serial, extra, append)
        except PortTaken:
            # Taken between the pick and QEMU's bind: another one.
            if FIXED_SSH_PORT or attempt == 4:
                raise SystemExit(f"QEMU could not forward port {SSH_PORT}")


class PortTaken(Exception):
    pass


def boot_once(base, tmp, image, disks, root, serial, extra, append=""):
    for old in ("qmp.sock", serial):
        try:
            os.remove(os.path.join(tmp, old))
        except FileNotFoundError:
            pass
    cmd = [
        "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35",
        "-smp", "1,maxcpus=4", "-m", "1G,slots=4,maxmem=4G",
        "-kernel", os.path.join(base, "vmlinuz"), "-initrd", os.path.join(base, "initrd.img"),
        "-append", f"root={root} rw console=ttyS0 panic=-1 {append}".strip(),
        # Every disk on its own -device at a slot of its own, the system
        # disk first (it is vda), at the platform's places: the system disk
        # at 00:03.0, the swap/config disk at 00:04.0 (GANDI_PLATFORM_DISK).
        "-drive", f"file={image},if=none,id=root,format=raw",
        "-device", "virtio-blk-pci,drive=root,addr=0x3",
    ]
    # The first disk is the platform's, with no serial (the platform's
    # virtio disks have none): the guest finds it by its slot alone. Each
    # other disk carries a serial (its file's name): the guest finds it as
    # /dev/disk/by-id/virtio-SERIAL, whatever name the kernel gives it.
    for n, d in enumerate(disks):
        name = os.path.splitext(os.path.basename(d))[0]
        dev = f"virtio-blk-pci,drive=disk{n},addr={hex(4 + n)}"
        if n > 0:
            dev += f",serial={name}"
        cmd += ["-drive", f"file={d},if=none,id=disk{n},format=raw", "-device", dev]
    cmd += [
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{SSH_PORT}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        # The ports for hot-plugged devices at the end of the bus: a NIC
        # plugged there comes after the boot's NICs in bus order, as on
        # the platform.
        "-device", "pcie-root-port,id=rp1,chassis=1,addr=0x1a",
        "-device", "pcie-root-port,id=rp2,chassis=2,addr=0x1b",
        "-serial", f"file:{tmp}/{serial}", "-qmp", f"unix:{tmp}/qmp.sock,server,nowait",
        "-display", "none", "-no-reboot", *extra,
    ]
    errors = os.path.join(tmp, "qemu-errors.log")
    qemu = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(errors, "w"))
    try:
        # A command line QEMU refuses ends it at once: say why.
        qemu.wait(1)
        said = open(errors).read().strip()
        if "host forwarding rule" in said:
            raise PortTaken(said)
        raise SystemExit(f"QEMU did not start: {said}")
    except subprocess.TimeoutExpired:
        return qemu


def stop(qemu):
    qemu.terminate()
    try:
        qemu.wait(20)
    except subprocess.TimeoutExpired:
        qemu.kill()
        qemu.wait()


def ssh(key, command, timeout=120, user="root"):
    return subprocess.run(
        ["ssh", "-i", key, "-p", str(SSH_PORT), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"{user}@127.0.0.1", command],
        text=True, capture_output=True, timeout=timeout)


def wait_for(what, f, limit=120, step=1.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            value = f()
            if value:
                return value
        except Exception:
            pass
        time.sleep(step)
    return None



CLOUD_UNITS = ["cloud-init-local.service", "cloud-init.service", "cloud-config.service",
               "cloud-final.service"]
GANDI_UNITS = ["gandi-bootstrap.service", "gandi-config.service", "gandi-mount.service",
               "gandi-postboot.service"]


def seconds(text):
    """'1min 2.5s', '812ms', '3.2s' -> seconds."""
    total = 0.0
    for part in text.split():
        if part.endswith("ms"):
            total += float(part[:-2]) / 1000
        elif part.endswith("min"):
            total += float(part[:-3]) * 60
        elif part.endswith("s"):
            total += float(part[:-1])
    return total


def measure(sshkey, units):
    """userspace and graphical.target times, and the summed time of `units`."""
    ssh(sshkey, "systemctl is-system-running --wait", timeout=600)
    line = ssh(sshkey, "systemd-analyze time").stdout
    userspace = graphical = None
    import re
    m = re.search(r"\+ ([\d.]+(?:min [\d.]+)?m?s) \(userspace\)", line)
    if m:
        userspace = seconds(m.group(1))
    m = re.search(r"graphical.target reached after ([\d.]+(?:min [\d.]+)?m?s)", line)
    if m:
        graphical = seconds(m.group(1))
    blame = ssh(sshkey, "systemd-analyze blame").stdout
    own = 0.0
    for row in blame.splitlines():
        parts = row.split()
        if parts and parts[-1] in units:
            own += seconds(" ".join(parts[:-1]))
    return userspace, graphical, own


def inject_key(image, pubkey, mounts, tmp, extra=None):
    """A root key, and DHCP on eth0 (what the platform's config gives the
    gandi-vm boot), for the bare and cloud-init boots."""
    mnt = os.path.join(tmp, "mnt-key")
    os.makedirs(mnt, exist_ok=True)
    mounts.mount("-o", "loop", image, mnt)
    try:
        with open(os.path.join(mnt, "etc/systemd/network/20-eth0.network"), "w") as f:
            f.write("[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n")
        os.makedirs(os.path.join(mnt, "root/.ssh"), exist_ok=True)
        with open(os.path.join(mnt, "root/.ssh/authorized_keys"), "w") as f:
            f.write(pubkey + "\n")
        os.chmod(os.path.join(mnt, "root/.ssh/authorized_keys"), 0o600)
        if extra:
            extra(mnt)
    finally:
        # Unmounted, its undo goes; still mounted (busy), its lazy unmount
        # stays for Mounts.close.
        if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
            mounts.undo.pop()


def cloud_init_image(base, mounts, tmp):
    """A copy of the image with Debian's cloud-init (cached)."""
    cached = os.path.join(base, "rootfs-cloud-init.img")
    if os.path.exists(cached):
        return cached
    log("adding cloud-init to a copy of the image (once; cached)")
    work = cached + ".new"
    run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), work])
    run(["e2fsck", "-fy", work], check=False)
    run(["resize2fs", work, "3G"], check=False)
    mnt = os.path.join(tmp, "mnt-ci")
    os.makedirs(mnt)
    mounts.mount("-o", "loop", work, mnt)
    try:
        policy = os.path.join(mnt, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        mounts.mount("-t", "proc", "proc", os.path.join(mnt, "proc"))
        mounts.mount("--bind", "/dev", os.path.join(mnt, "dev"))
        shutil.copy("/etc/resolv.conf", os.path.join(mnt, "etc/resolv.conf"))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["chroot", mnt, "apt-get", "install", "-y", "-q", "cloud-init"], env=env)
        run(["chroot", mnt, "apt-get", "clean"])
        os.remove(policy)
    finally:
        mounts.close()
    os.rename(work, cached)
    return cached


def unit_cpu(sshkey, units):
    """The summed CPU time of `units` (CPUUsageNSec), in seconds."""
    out = ssh(sshkey, "systemctl show -p CPUUsageNSec --value " + " ".join(units)).stdout
    return sum(int(v) for v in out.split() if v.isdigit()) / 1e9


def autofs_start(sshkey):
    """How long autofs.service took to start (from leaving inactive to
    active), in seconds: multi-user.target waits for it in every variant
    (the image has autofs; Debian's unit waits for network-online.target)."""
    out = ssh(sshkey, "systemctl show -p InactiveExitTimestampMonotonic "
                      "-p ActiveEnterTimestampMonotonic autofs.service").stdout
    v = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    try:
        began = int(v["InactiveExitTimestampMonotonic"])
        ready = int(v["ActiveEnterTimestampMonotonic"])
    except (KeyError, ValueError):
        return None
    return (ready - began) / 1e6 if began and ready > began else None


# Process accounting in the bench's guests, from before any unit of ours
# or udev's starts: the kernel writes one record per process that ends
# (its CPU time, PID and parent), so every process of ours is counted,
# whatever starts it (our units, udev's RUN, a template unit, anything after
# multi-user.target), with the tools it runs. perl-base is in every Debian.
ACCT_SCRIPT = """open(my $f, ">", "/run/pacct") or die "/run/pacct: $!";
close $f;
my $path = "/run/pacct";
syscall(163, $path) == 0 or die "acct: $!";
"""
ACCT_UNIT = """[Unit]
Description=bench: process accounting from the start of the boot
DefaultDependencies=no
Before=sysinit.target systemd-udevd.service systemd-udev-trigger.service gandi-bootstrap.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/perl /usr/local/sbin/bench-acct

[Install]
WantedBy=sysinit.target
"""
# Our programs, by the name the kernel gives them (the file executed).
OURS = {"gandi-vm", "auto.gandi", "gandi-map", "gandi-udhcpc"}


def add_acct(mnt):
    os.makedirs(os.path.join(mnt, "usr/local/sbin"), exist_ok=True)
    with open(os.path.join(mnt, "usr/local/sbin/bench-acct"), "w") as f:
        f.write(ACCT_SCRIPT)
    with open(os.path.join(mnt, "etc/systemd/system/bench-acct.service"), "w") as f:
        f.write(ACCT_UNIT)
    wants = os.path.join(mnt, "etc/systemd/system/sysinit.target.wants")
    os.makedirs(wants, exist_ok=True)
    link = os.path.join(wants, "bench-acct.service")
    if not os.path.lexists(link):
        os.symlink("/etc/systemd/system/bench-acct.service", link)


def comp_t(v):
    """The kernel's comp_t: 13 bits of mantissa, 3 of base-8 exponent."""
    return (v & 0x1fff) << (3 * (v >> 13))


def parse_acct(data):
    """The records of an acct v3 file: (pid, ppid, comm, CPU seconds)."""
    import struct
    out = []
    for off in range(0, len(data) - 63, 64):
        rec = struct.unpack_from("<BBHIIIIIIfHHHHHHHH16s", data, off)
        if rec[1] & 0x7f != 3:
            continue
        pid, ppid = rec[6], rec[7]
        # utime and stime in AHZ (100 per second) ticks, each truncated:
        # a process counts up to 20 ms less than it used, so a build that
        # starts fewer processes is favoured by less (docs/benchmarks.md).
        cpu = (comp_t(rec[10]) + comp_t(rec[11])) / 100.0
        comm = rec[18].split(b"\0", 1)[0].decode(errors="replace")
        out.append((pid, ppid, comm, cpu))
    return out


def ours_cpu(records):
    """The CPU time of our processes and of everything they ran, in
    seconds, and the same by program name (count, seconds)."""
    parent = {pid: ppid for pid, ppid, _, _ in records}
    comm = {pid: c for pid, _, c, _ in records}

    def of_ours(pid):
        seen = 0
        while pid > 1 and seen < 64:
            if comm.get(pid) in OURS:
                return True
            pid = parent.get(pid, 0)
            seen += 1
        return False

    total, by = 0.0, {}
    for pid, _, c, cpu in records:
        if of_ours(pid):
            total += cpu
            n, t = by.get(c, (0, 0.0))
            by[c] = (n + 1, t + cpu)
    return total, by


def acct_of_boot(sshkey):
    """Our processes' CPU in this boot, once none of ours runs any more (the
    first boot's work after multi-user.target included)."""
    wait_for("our processes to end",
             lambda: ssh(sshkey, "pgrep -x 'gandi-vm|auto.gandi|gandi-map|gandi-udhcpc' >/dev/null || echo done",
                         timeout=30).stdout.strip() == "done",
             limit=300, step=2)
    import base64
    out = ssh(sshkey, "base64 -w0 /run/pacct", timeout=60).stdout.strip()
    try:
        data = base64.b64decode(out)
    except ValueError:
        return None, {}
    if not data:
        return None, {}
    return ours_cpu(parse_acct(data))


def stats(values):
    """median, min, max of the values that are there."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    return v[len(v) // 2], v[0], v[-1]


def bench(deb):
    """make vm-bench: the image booted bare, with our package and with
    cloud-init doing the same job, each boot from a fresh copy (a first
    boot), interleaved (A B C A B C ...), then the same disk booted again
    (a second boot). GANDI_BENCH_BOOTS (10) boots per variant;
    GANDI_BENCH_SECOND: the variants booted a second time ("bare gandi-vm":
    the second-boot goal compares those two; add cloud-init for
    information, at about 2 minutes a boot here); GANDI_BENCH_ICOUNT=1
    runs the guest with -icount (guest time from the instruction count) as well.
    GANDI_BENCH_BASE_DEB=PACKAGE adds another build's package as the
    variant gandi-base, in the same rounds, and prints the differences
    round by round; GANDI_BENCH_VARIANTS picks the variants booted (all by
    default: bare gandi-vm cloud-init, and gandi-base when given)."""
    base = os.path.join(CACHE, f"vm-{image_key()}")
    if not os.path.exists(os.path.join(base, "rootfs.img")):
        build_image(base)
    boots = int(os.environ.get("GANDI_BENCH_BOOTS", "10"))
    second = os.environ.get("GANDI_BENCH_SECOND", "bare gandi-vm").split()
    # Another build's package as a fourth variant ("gandi-base"), booted in
    # the same rounds: what a change does, side by side.
    base_deb = os.environ.get("GANDI_BENCH_BASE_DEB")
    wanted = os.environ.get("GANDI_BENCH_VARIANTS",
                            "bare gandi-vm cloud-init" + (" gandi-base" if base_deb else "")).split()
    unknown = [w for w in wanted if w not in ("bare", "gandi-vm", "cloud-init", "gandi-base")]
    if unknown:
        raise SystemExit(f"vm-bench: unknown variant(s) in GANDI_BENCH_VARIANTS: {' '.join(unknown)} "
                         "(known: bare gandi-vm cloud-init gandi-base)")
    if "gandi-base" in wanted and not base_deb:
        raise SystemExit("vm-bench: the gandi-base variant needs GANDI_BENCH_BASE_DEB=PACKAGE")
    modes = [("tcg", [])]
    if os.environ.get("GANDI_BENCH_ICOUNT") == "1":
        modes.append(("icount", ["-icount", "shift=auto,sleep=off"]))
    tmp = tempfile.mkdtemp(prefix="gandi-vm-bench.")
    mounts = Mounts()
    qemu = None
    # (mode, variant, first|second) -> metric -> list of values
    results = {}
    chain = ""
    try:
        sshkey = os.path.join(tmp, "id")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", sshkey])
        pubkey = open(sshkey + ".pub").read().strip()
        hashed = run(["openssl", "passwd", "-6", "gandi"]).stdout.strip()
        run(["truncate", "-s", "64M", f"{tmp}/pristine-blank-swap.img"])
        run(["mkswap", "-L", "swap", f"{tmp}/pristine-blank-swap.img"])

        variants = []
        # Bare: the image as it is, a key to log in.
        bare = os.path.join(tmp, "pristine-bare.img")
        run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), bare])
        inject_key(bare, pubkey, mounts, tmp, add_acct)
        variants.append(("bare", bare, f"{tmp}/pristine-blank-swap.img", []))
        # With our package doing the job from the platform's config.
        ours = os.path.join(tmp, "pristine-gandi.img")
        run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), ours])
        install_package(ours, deb, mounts, tmp, add_acct)
        swap_disk(f"{tmp}/pristine-swap.img", {
            "vm_hostname": "bench", "vm_conf": {"password": hashed, "ssh_key": pubkey,
                                                "run": "touch /root/run-mark"},
            "vif": [{"vif_number": 0, "pna": [{"pna_address": "10.0.2.15", "pbn": {
                "pbn_network": "10.0.2.0/24", "pbn_gateway": "10.0.2.2"}}]}]})
        variants.append(("gandi-vm", ours, f"{tmp}/pristine-swap.img", GANDI_UNITS))
        if base_deb and "gandi-base" in wanted:
            other = os.path.join(tmp, "pristine-gandi-base.img")
            run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), other])
            install_package(other, base_deb, mounts, tmp, add_acct)
            variants.append(("gandi-base", other, f"{tmp}/pristine-swap.img", GANDI_UNITS))
        # With cloud-init doing the same job from a NoCloud seed.
        ci = os.path.join(tmp, "pristine-cloud-init.img")
        if "cloud-init" in wanted:
            run(["cp", "--sparse=always", cloud_init_image(base, mounts, tmp), ci])

        def seed(mnt):
            d = os.path.join(mnt, "var/lib/cloud/seed/nocloud")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "meta-data"), "w") as f:
                f.write("instance-id: bench-1\nlocal-hostname: bench\n")
            with open(os.path.join(d, "user-data"), "w") as f:
                f.write("#cloud-config\nhostname: bench\n"
                        f"users:\n  - name: root\n    hashed_passwd: '{hashed}'\n"
                        f"    lock_passwd: false\n    ssh_authorized_keys: ['{pubkey}']\n"
                        "disable_root: false\nruncmd:\n  - touch /root/run-mark\n")
            with open(os.path.join(mnt, "etc/cloud/cloud.cfg.d/99-bench.cfg"), "w") as f:
                f.write("datasource_list: [ NoCloud, None ]\n")
            add_acct(mnt)

        if "cloud-init" in wanted:
            inject_key(ci, pubkey, mounts, tmp, seed)
            variants.append(("cloud-init", ci, f"{tmp}/pristine-blank-swap.img", CLOUD_UNITS))
        variants = [v for v in variants if v[0] in wanted]
        if not variants:
            raise SystemExit(f"vm-bench: no variant among GANDI_BENCH_VARIANTS={' '.join(wanted)}")

        def one_boot(mode, extra, name, image, swap, units, which):
            nonlocal qemu, chain
            start = time.time()
            qemu = boot(base, tmp, image, [swap], extra=extra)
            up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0,
                          limit=900, step=0.5)
            if not up:
                log(f"{mode} {name} {which}: no SSH")
                return False
            to_ssh = time.time() - start
            userspace, graphical, own = measure(sshkey, units)
            cpu = unit_cpu(sshkey, units) if units else 0.0
            automount = autofs_start(sshkey)
            # Ours are counted in our builds' boots only (cloud-init's
            # would show nothing of its own).
            ours, by = acct_of_boot(sshkey) if name.startswith("gandi") else (None, {})
            if name == "gandi-vm" and not chain:
                chain = ssh(sshkey, "systemd-analyze critical-chain multi-user.target").stdout
                chain += ssh(sshkey, "systemd-analyze blame | grep gandi").stdout
            mark = ssh(sshkey, "test -f /root/run-mark && echo yes").stdout.strip() == "yes"
            row = results.setdefault((mode, name, which), {})
            for k, v in (("userspace", userspace), ("graphical", graphical), ("to SSH", to_ssh),
                         ("own wall", own), ("own CPU", cpu), ("all ours CPU", ours),
                         ("autofs start", automount),
                         ("run mark", 1.0 if mark else 0.0)):
                row.setdefault(k, []).append(v)
            shown = f"{userspace:.2f} s" if userspace is not None else "unknown"
            log(f"{mode} {name} {which}: userspace {shown}, to SSH {to_ssh:.1f} s, "
                f"own {own:.2f} s wall, {cpu:.3f} s CPU, autofs start "
                + (f"{automount:.2f} s" if automount is not None else "unknown")
                + (f"; all our processes {ours:.2f} s CPU: " + ", ".join(
                    f"{c} {n}x {t:.2f}" for c, (n, t) in sorted(by.items(), key=lambda x: -x[1][1]))
                   if ours is not None else ""))
            return True

        for mode, extra in modes:
            for i in range(boots):
                for k in range(len(variants)):
                    name, pristine, pristine_swap, units = variants[(k + i) % len(variants)]
                    image = os.path.join(tmp, "boot.img")
                    swap = os.path.join(tmp, "boot-swap.img")
                    run(["cp", "--sparse=always", pristine, image])
                    run(["cp", "--sparse=always", pristine_swap, swap])
                    if one_boot(mode, extra, name, image, swap, units, "first") \
                            and name in second:
                        # The same disk again: a second boot.
                        ssh(sshkey, "systemctl poweroff", timeout=60)
                        try:
                            qemu.wait(180)
                        except subprocess.TimeoutExpired:
                            stop(qemu)
                        qemu = None
                        one_boot(mode, extra, name, image, swap, units, "second")
                    if qemu:
                        stop(qemu)
                        qemu = None
    finally:
        if qemu:
            stop(qemu)
        mounts.close()
        remove_tree(tmp)

    log("")
    log(f"vm-bench {time.strftime('%Y-%m-%d')}: {boots} boots per variant, each from a fresh copy, "
        "interleaved; medians [min .. max], seconds")
    metrics = ["userspace", "graphical", "to SSH", "own wall", "own CPU", "all ours CPU",
               "autofs start"]
    log(f"{'mode':<7}{'boot':<8}{'variant':<11}" + "".join(f"{m:>22}" for m in metrics) + "  run mark")
    for (mode, name, which), row in sorted(results.items()):
        cells = ""
        for m in metrics:
            st = stats(row.get(m, []))
            cells += f"{st[0]:8.2f} [{st[1]:5.2f}..{st[2]:5.2f}]" if st else f"{'-':>22}"
        marks = row.get("run mark", [])
        log(f"{mode:<7}{which:<8}{name:<11}{cells}  {int(sum(marks))}/{len(marks)}")
    for mode, _ in modes:
        for which in ("first", "second"):
            b = stats(results.get((mode, "bare", which), {}).get("userspace", []))
            g = stats(results.get((mode, "gandi-vm", which), {}).get("userspace", []))
            c = stats(results.get((mode, "cloud-init", which), {}).get("userspace", []))
            cpu = stats(results.get((mode, "gandi-vm", which), {}).get("own CPU", []))
            if b and g:
                added = g[0] - b[0]
                goal = 0.77 if which == "first" else 0.3
                line = (f"{mode} {which} boots: gandi-vm adds {added:+.2f} s to the bare userspace "
                        f"(median; goal <= {goal} s), its units use {cpu[0]:.3f} s CPU")
                # The same difference boot by boot within each round (the
                # two boots close in time): steadier on a noisy host.
                bs = results[(mode, "bare", which)].get("userspace", [])
                gs = results[(mode, "gandi-vm", which)].get("userspace", [])
                pairs = [y - x for x, y in zip(bs, gs) if x is not None and y is not None]
                if len(bs) == len(gs) and pairs:
                    p = stats(pairs)
                    line += f"; round by round {p[0]:+.2f} s [{p[1]:+.2f} .. {p[2]:+.2f}]"
                if c:
                    ci_added = c[0] - b[0]
                    line += f"; cloud-init adds {ci_added:+.2f} s"
                    if added > 0:
                        line += f" ({ci_added / added:.0f}x, for information)"
                log(line)
            # This build against another one, round by round.
            o = results.get((mode, "gandi-base", which), {})
            n = results.get((mode, "gandi-vm", which), {})
            for m in ("userspace", "own CPU", "all ours CPU", "autofs start"):
                xs, ys = o.get(m, []), n.get(m, [])
                pairs = [y - x for x, y in zip(xs, ys) if x is not None and y is not None]
                if len(xs) == len(ys) and pairs:
                    p = stats(pairs)
                    log(f"{mode} {which} boots: gandi-vm minus gandi-base, {m}, round by round: "
                        f"{p[0]:+.2f} s [{p[1]:+.2f} .. {p[2]:+.2f}]")
    if chain:
        log("gandi-vm, first boot: critical chain and our units\n" + chain)
    return 0 if results else 1


# Power cuts: (what is cut, the console lines that say it started, those
# that say it ended, the longest wait after the start, in seconds). A line
# is matched as all of its words, without colours: systemd shortens unit
# names on the console ("gandi-bootstrap.s…vm: apply the...").
CUTS = [
    ("bootstrap", [("Starting", "apply the platform's config...")],
     [("Finished", "apply the platform's config."), ("Failed", "apply the platform's config")], 3.0),
    ("root disk growth", [("gandi-vm[", "grown to the end of the disk"),
                          ("gandi-vm[", "/dev/vda1: growing ext4")],
     [("gandi-vm[", "root-disk:"), ("Finished", "apply the platform's config.")], 2.0),
    ("data disk growth", [("Starting", "grow and record data disk")],
     [("Finished", "grow and record data disk"), ("Failed", "grow and record data disk")], 4.0),
]

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def console_has(serial, marks):
    try:
        text = open(serial, errors="replace").read()
    except FileNotFoundError:
        return False
    for line in ANSI.sub("", text).splitlines():
        if any(all(word in line for word in mark) for mark in marks):
            return True
    return False


def power_cut(qemu, serial, starts, ends, window, rng):
    """Kills QEMU (a power cut) at a random moment after one of `starts`
    shows on the console. Returns (landed, seconds after the start): landed
    is false when one of `ends` showed first, or the start never did."""
    deadline = time.time() + 600
    while not console_has(serial, starts):
        if time.time() > deadline or qemu.poll() is not None or console_has(serial, ends):
            qemu.kill()
            qemu.wait()
            return False, -1.0
        time.sleep(0.02)
    t0 = time.time()
    delay = rng.uniform(0, window)
    landed = True
    while time.time() - t0 < delay:
        if console_has(serial, ends):
            landed = False
            break
        time.sleep(0.02)
    qemu.kill()
    qemu.wait()
    return landed, time.time() - t0


def host_fsck(dev):
    r = subprocess.run(["e2fsck", "-fn", dev], text=True, capture_output=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip().splitlines()[-1:]


def faults(deb):
    key = image_key()
    base = os.path.join(CACHE, f"vm-{key}")
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(os.path.join(base, "rootfs.img")):
        build_image(base)
    seed = int(os.environ.get("GANDI_FAULT_SEED", "1511"))
    rng = random.Random(seed)
    log(f"vm-fault-test: seed {seed}")
    tmp = tempfile.mkdtemp(prefix="gandi-vm-faults.")
    mounts = Mounts()
    qemu = None
    ok = False
    try:
        image = os.path.join(tmp, "root.img")
        run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), image])

        def setup(mnt):
            with open(os.path.join(mnt, "etc/fstab"), "w") as f:
                f.write("/dev/vda1 / ext4 errors=remount-ro 0 1\n")

        install_package(image, deb, mounts, tmp, setup)
        pristine = {"disk": os.path.join(tmp, "pristine-disk.img"),
                    "swap": os.path.join(tmp, "pristine-swap.img"),
                    "data": os.path.join(tmp, "pristine-data.img")}
        platform_disk(image, pristine["disk"], 4096)
        os.remove(image)
        sshkey = os.path.join(tmp, "id")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", sshkey])
        pubkey = open(sshkey + ".pub").read().strip()
        config = {
            "vm_hostname": "gandi-cut",
            "vm_conf": {"ssh_key": pubkey},
            "nameservers": ["10.0.2.3"],
            "vif": [{"vif_number": 0, "pna": [{"pna_address": "10.0.2.15", "pbn": {
                "pbn_network": "10.0.2.0/24", "pbn_gateway": "10.0.2.2"}}]}],
        }
        swap_disk(pristine["swap"], config)
        # A data disk much larger than its filesystem, holding a file of
        # known content.
        run(["truncate", "-s", "8G", pristine["data"]])
        run(["mkfs.ext4", "-q", "-F", "-L", "vmdata", pristine["data"], "256M"])
        known = os.path.join(tmp, "known")
        with open(known, "wb") as f:
            f.write(random.Random(seed).randbytes(4 << 20))
        digest = hashlib.sha256(open(known, "rb").read()).hexdigest()
        run(["debugfs", "-w", "-R", f"write {known} known", pristine["data"]])

        for what, starts, ends, window in CUTS:
            for n in (1, 2, 3):
                case = f"{what} cut {n}"
                files = {}
                for name, path in pristine.items():
                    files[name] = os.path.join(tmp, f"{name}.img")
                    run(["cp", "--sparse=always", path, files[name]])
                disks = [files["swap"], files["data"]]
                landed, at = False, -1.0
                for attempt in range(4):
                    serial = os.path.join(tmp, "serial-cut.log")
                    qemu = boot(base, tmp, files["disk"], disks, root="/dev/vda1", serial="serial-cut.log")
                    landed, at = power_cut(qemu, serial, starts, ends, window / (2 ** attempt), rng)
                    qemu = None
                    if landed:
                        break
                check(f"{case}: power cut during it", landed, f"{at:.2f} s after it started")
                qemu = boot(base, tmp, files["disk"], disks, root="/dev/vda1", serial="serial.log")
                up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0,
                              limit=900, step=2)
                if not check(f"{case}: boots again, reachable with the platform's key", up):
                    break

                def out(c):
                    return ssh(sshkey, c).stdout.strip()

                wait_for("boot to finish",
                         lambda: out("systemctl is-system-running --wait") in ("running", "degraded"),
                         limit=300)
                check(f"{case}: hostname applied", out("hostname") == "gandi-cut", out("hostname"))
                status = ssh(sshkey, "gandi-vm status")
                check(f"{case}: every stage ends well", status.returncode == 0,
                      status.stdout.strip().replace("\n", "; ")[-300:])
                disk_bytes = int(out("blockdev --getsize64 /dev/vda") or 0)
                root_bytes = int(out("df -B1 --output=size / | tail -1") or 0)
                check(f"{case}: root growth completed", root_bytes > disk_bytes * 0.9,
                      f"{root_bytes >> 20} MiB of {disk_bytes >> 20} MiB")
                got = wait_for("data", lambda: out("sha256sum /srv/vmdata/known").split()[:1] == [digest],
                               limit=120, step=2)
                size = int(out("df -B1 --output=size /srv/vmdata | tail -1") or 0)
                check(f"{case}: data disk served, its file intact, grown", got and size > 7 << 30,
                      f"{size >> 20} MiB of 8192")
                ssh(sshkey, "systemctl poweroff", timeout=60)
                try:
                    qemu.wait(180)
                except subprocess.TimeoutExpired:
                    qemu.kill()
                    qemu.wait()
                qemu = None
                dev = run(["losetup", "--find", "--show", "-P", files["disk"]]).stdout.strip()
                try:
                    subprocess.run(["partx", "-a", dev], capture_output=True)
                    clean, said = host_fsck(dev + "p1")
                    check(f"{case}: root filesystem checks clean", clean, " ".join(said))
                finally:
                    subprocess.run(["partx", "-d", dev], capture_output=True)
                    subprocess.run(["losetup", "-d", dev], capture_output=True)
                clean, said = host_fsck(files["data"])
                check(f"{case}: data filesystem checks clean", clean, " ".join(said))
        ok = all(r for _, r in results)
    finally:
        if qemu:
            stop(qemu)
        mounts.close()
        passed = sum(1 for _, r in results if r)
        log(f"vm-fault-test: {passed} passed, {len(results) - passed} failed")
        if not ok:
            for name in ("serial.log", "serial-cut.log"):
                path = os.path.join(tmp, name)
                if os.path.exists(path):
                    keep = os.path.join(CACHE, f"last-failure-{name}")
                    shutil.copy(path, keep)
                    log(f"{name} kept in {keep}")
        remove_tree(tmp)
    return 0 if ok else 1


# Run in the guest (python3 NAME KILLW): waits (60 s at most) until the
# record of NAME names a grower at work, stops it (and with KILLW=1 its
# watcher, the unit's main process), then, when the record still says it
# is at work, SIGKILLs it, its tool and everything they started; prints
# what it did.
KILLER = r"""
import json, os, signal, sys, time
name, killw = sys.argv[1], sys.argv[2] == "1"
path = f"/run/gandi/disks/{name}.json"
def record():
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
def state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0]
    except OSError:
        return "gone"
def children(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            out += [int(c) for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out
def tree(pids):
    seen, todo = [], list(pids)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += children(p)
    return seen
end = time.time() + 60
while time.time() < end:
    r = record()
    pid = r.get("grower")
    if r.get("state") != "growing" or not isinstance(pid, int) or state(pid) in "ZXgone":
        time.sleep(0.002)
        continue
    roots = [pid] + ([r["watcher"]] if killw and isinstance(r.get("watcher"), int) else [])
    victims = tree(roots)
    for p in victims:
        try:
            os.kill(p, signal.SIGSTOP)
        except OSError:
            pass
    victims = tree(roots)
    now = record()
    if now.get("state") == "growing" and now.get("grower") == pid and state(pid) not in "ZXgone":
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        print("killed", *victims)
    else:
        for p in victims:
            try:
                os.kill(p, signal.SIGCONT)
            except OSError:
                pass
        print("missed: the record says", now.get("state"), "of", now.get("grower"))
    sys.exit(0)
print("missed: never seen at work")
"""

# Run in the guest: what `gandi-vm disks` says of NAME, whether a process
# its record names lives, the sizes.
PROBE = r"""
import json, os, subprocess, sys
name = sys.argv[1]
disks = json.loads(subprocess.run(["gandi-vm", "disks", "--json"], capture_output=True).stdout or b"[]")
dev = next((d for d in disks if d["name"] == name), {})
try:
    rec = json.load(open(f"/run/gandi/disks/{name}.json"))
except (OSError, ValueError):
    rec = {}
def alive(p):
    try:
        return open(f"/proc/{p}/stat").read().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False
pids = [rec[k] for k in ("grower", "watcher") if isinstance(rec.get(k), int)]
sb = subprocess.run(["dumpe2fs", "-h", f"/dev/{name}"], capture_output=True, text=True).stdout
field = lambda k: int(next((l.split(":")[1] for l in sb.splitlines() if l.startswith(k + ":")), "0"))
print(json.dumps({"growing": dev.get("growing", False), "left": dev.get("growth_left", False),
                  "alive": any(alive(p) for p in pids), "state": rec.get("state"),
                  "dev": int(open(f"/sys/class/block/{name}/size").read()) * 512,
                  "fs": field("Block count") * field("Block size")}))
"""


def grower_kills(deb):
    key = image_key()
    base = os.path.join(CACHE, f"vm-{key}")
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(os.path.join(base, "rootfs.img")):
        build_image(base)
    rng = random.Random(int(os.environ.get("GANDI_FAULT_SEED", "2323")))
    tmp = tempfile.mkdtemp(prefix="gandi-vm-grower.")
    mounts = Mounts()
    qemu = None
    ok = False
    try:
        image = os.path.join(tmp, "root.img")
        run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), image])

        def setup(mnt):
            with open(os.path.join(mnt, "etc/fstab"), "w") as f:
                f.write("/dev/vda1 / ext4 errors=remount-ro 0 1\n")

        install_package(image, deb, mounts, tmp, setup)
        disk = os.path.join(tmp, "disk.img")
        platform_disk(image, disk, 0)
        os.remove(image)
        sshkey = os.path.join(tmp, "id")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", sshkey])
        config = {"vm_hostname": "gandi-grow", "vm_conf": {"ssh_key": open(sshkey + ".pub").read().strip()},
                  "vif": [{"vif_number": 0, "pna": [{"pna_address": "10.0.2.15", "pbn": {
                      "pbn_network": "10.0.2.0/24", "pbn_gateway": "10.0.2.2"}}]}]}
        swap_disk(os.path.join(tmp, "swap.img"), config)
        data = os.path.join(tmp, "vmdata.img")
        run(["truncate", "-s", "300M", data])
        run(["mkfs.ext4", "-q", "-F", "-L", "vmdata", data, "256M"])
        known = os.path.join(tmp, "known")
        with open(known, "wb") as f:
            f.write(rng.randbytes(4 << 20))
        digest = hashlib.sha256(open(known, "rb").read()).hexdigest()
        run(["debugfs", "-w", "-R", f"write {known} known", data])
        qemu = boot(base, tmp, disk, [os.path.join(tmp, "swap.img"), data], root="/dev/vda1")
        qmp = Qmp(os.path.join(tmp, "qmp.sock"))
        up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0, limit=900, step=2)
        if not check("grower kills: SSH key login", up):
            raise SystemExit(1)

        def out(c, timeout=120):
            return ssh(sshkey, c, timeout=timeout).stdout.strip()

        wait_for("boot to finish", lambda: out("systemctl is-system-running --wait") in ("running", "degraded"),
                 limit=300)
        ssh_input(sshkey, "cat > /root/killer.py", KILLER.encode())
        ssh_input(sshkey, "cat > /root/probe.py", PROBE.encode())
        served = wait_for("vmdata", lambda: out("sha256sum /srv/vmdata/known").split()[:1] == [digest],
                          limit=120, step=2)
        check("grower kills: the data disk served (mounted: ext4 grows online)", served)
        name = out("findmnt -n -o SOURCE /srv/vmdata | xargs -r readlink -f | xargs -r basename")
        size = 300 << 20
        landed = 0
        for attempt in range(15):
            if landed == 5:
                break
            kill_watcher = landed in (1, 3)
            killer = subprocess.Popen(
                ["ssh", "-i", sshkey, "-p", str(SSH_PORT), "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                 "root@127.0.0.1", f"python3 /root/killer.py {name} {int(kill_watcher)}"],
                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(2 + rng.random())
            # Growths of gigabytes: the online resize lasts long enough to
            # be caught at work.
            size += rng.choice([2048, 3072, 4096]) << 20
            qmp.cmd("block_resize", device="disk1", size=size)
            said, _ = killer.communicate(timeout=120)
            if not said.startswith("killed"):
                # Grown before the killer saw it at work: no kill; the
                # growth must still be whole.
                log(f"grower kills: attempt {attempt}: {said.strip()}")
                continue
            landed += 1
            case = f"grower kill {landed} (watcher too: {kill_watcher})"
            bad = []

            def grown():
                try:
                    p = json.loads(out(f"python3 /root/probe.py {name}"))
                except ValueError:
                    return False
                if p["growing"] and not p["alive"]:
                    bad.append(p)
                return p["state"] == "ready" and not p["growing"] and p["fs"] > p["dev"] - (64 << 20)
            done = wait_for(case, grown, limit=int(os.environ.get("GANDI_GROWER_LIMIT", "300")), step=1)
            if not check(f"{case}: the disk ends grown without a new event, never growing with no grower",
                         done and not bad, f"{said.strip()} {bad[:1]} {out(f'python3 /root/probe.py {name}')}"):
                log(out(f"journalctl -b --no-pager -o short-monotonic -u 'gandi-disk@{name}.service' | tail -40"))
            check(f"{case}: still served, its file intact",
                  out("sha256sum /srv/vmdata/known").split()[:1] == [digest])
        check("grower kills: 5 kills landed in a growth", landed == 5, f"{landed} in 15 growths")
        resumed = out(f"journalctl -b -t gandi --no-pager -o cat | grep -c '{name}: growth resumed'")
        log(f"grower kills: {resumed} resumes logged")
        poweroff(qemu, sshkey)
        qemu = None
        clean, said = host_fsck(data)
        check("grower kills: the data filesystem checks clean", clean, " ".join(said))
        ok = all(r for _, r in results)
    finally:
        if qemu:
            stop(qemu)
        mounts.close()
        passed = sum(1 for _, r in results if r)
        log(f"vm-test --grower: {passed} passed, {len(results) - passed} failed")
        if not ok and os.path.exists(os.path.join(tmp, "serial.log")):
            keep = os.path.join(CACHE, "last-failure-serial-grower.log")
            shutil.copy(os.path.join(tmp, "serial.log"), keep)
            log(f"serial.log kept in {keep}")
        remove_tree(tmp)
    return 0 if ok else 1


def poweroff(qemu, sshkey):
    ssh(sshkey, "systemctl poweroff", timeout=60)
    try:
        qemu.wait(180)
    except subprocess.TimeoutExpired:
        stop(qemu)


def write_archive(path, config, extra=()):
    """A new platform archive at 512 KiB of an existing swap disk (the
    platform writes one before a boot), its swap header kept."""
    archive = tar_archive([("gandi/config", json.dumps(config).encode(), 0o600), *extra])
    with open(path, "r+b") as f:
        f.seek(512 * 1024)
        f.write(archive)


# The platform's own script, as a shell script: restarts ssh (which a unit
# ordered before sysinit.target would wait on) and rewrites resolv.conf
# whole, as the platform's does; it records how that went.
SHELL_INIT = b"""#!/bin/sh
echo "ssh $(systemctl is-active ssh)" > /root/init-ran
service ssh restart; echo "restart $?" >> /root/init-ran
printf 'nameserver 10.0.2.3\\n' > /etc/resolv.conf
"""
# The platform's own script as the platform writes it: Python 2.
PY2_INIT = b"#!/usr/bin/python2\nprint 'init ran'\nopen('/root/init-py2', 'w').write('ran')\n"


def main():
    # Killed (CI's time limit, Ctrl-C): the cleanup in `finally` still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        sys.exit("vm-test: run as root")
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        sys.exit(bench(os.path.abspath(sys.argv[2])))
    if len(sys.argv) == 3 and sys.argv[1] == "--faults":
        sys.exit(faults(os.path.abspath(sys.argv[2])))
    if len(sys.argv) == 3 and sys.argv[1] == "--grower":
        sys.exit(grower_kills(os.path.abspath(sys.argv[2])))
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    deb = os.path.abspath(sys.argv[1])
    key = image_key()
    base = os.path.join(CACHE, f"vm-{key}")
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(os.path.join(base, "rootfs.img")):
        build_image(base)
    tmp = tempfile.mkdtemp(prefix="gandi-vm-test.")
    mounts = Mounts()
    qemu = None
    ok = False
    try:
        image = os.path.join(tmp, "root.img")
        run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), image])

        def setup(mnt):
            # The platform's layout: the root filesystem on partition 1.
            with open(os.path.join(mnt, "etc/fstab"), "w") as f:
                f.write("/dev/vda1 / ext4 errors=remount-ro 0 1\n")
            # Nothing of our sysctl settings is loaded with CONFIG_SYSCTL=0.
            settings = os.path.join(mnt, "etc/default/gandi")
            with open(settings) as f:
                text = f.read().replace("CONFIG_SYSCTL=1", "CONFIG_SYSCTL=0")
            with open(settings, "w") as f:
                f.write(text)

            def program(rel, body):
                path = os.path.join(mnt, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("#!/bin/sh\n" + body)
                os.chmod(path, 0o755)
            # The admin's plugins: one using sudo; one waiting (10 minutes
            # at most) for a file the test makes once its SSH login worked;
            # one restarting ssh. None may hold sshd, nor deadlock.
            program("etc/gandi/plugins.d/50-sudo", "sudo -u nobody id -un > /root/plugin-sudo\n")
            program("etc/gandi/plugins.d/60-wait",
                    "for i in $(seq 600); do test -e /root/login-done && break; sleep 1; done\n"
                    "echo plugin-wait >> /root/order.log\n")
            program("etc/gandi/plugins.d/70-restart-ssh",
                    "systemctl restart ssh && echo plugin-restart >> /root/order.log\n")
            # Hooks that print their arguments and the original's
            # environment.
            for hook in ("post-vm-config", "post-disk-attach", "pre-disk-detach", "post-iface-attach"):
                program(f"etc/gandi/hooks/{hook}",
                        f'echo "{hook} $# $* INTERFACE=$INTERFACE ACTION=$ACTION" >> /root/hooks.log\n')

        install_package(image, deb, mounts, tmp, setup)
        check("package installed into the image", True)
        disk = os.path.join(tmp, "disk.img")
        platform_disk(image, disk, 1024)
        os.remove(image)
        image = disk

        keys = []
        for n in range(3):
            k = os.path.join(tmp, f"id{n}")
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k])
            keys.append(k)
        sshkey = keys[0]
        pubs = [open(k + ".pub").read().strip() for k in keys]
        # The config as the platform writes it: a user, three keys in one
        # CRLF string (one bad line among them), the command, the script's
        # arguments, a private VLAN on eth1, four resolvers (one bad):
        # each bad value left out and reported, everything else applied.
        config = {
            "vm_hostname": "gandi-test",
            "vm_conf": {"password": run(["openssl", "passwd", "-6", "gandi"]).stdout.strip(),
                        "user": "gandi",
                        "ssh_key": f"{pubs[0]}\r\nnot a key\r\n{pubs[1]}\r\n{pubs[2]}\r\n",
                        # It also notes whether automount serves /srv already
                        # when it runs (without mounting a disk).
                        "run": "echo run >> /root/order.log; touch /root/run-mark; "
                               "grep -q ' /srv autofs ' /proc/mounts && touch /root/run-srv-served",
                        "script_args": "alpha 'beta gamma'"},
            "nameservers": ["10.0.2.3", "not-an-address", "10.0.2.4", "fec0::3", "fec0::4"],
            "vif": [{"vif_number": 0, "pna": [{"pna_address": "10.0.2.15", "pbn": {
                "pbn_network": "10.0.2.0/24", "pbn_gateway": "10.0.2.2"}}]},
                    {"vif_number": 1, "pna": [{"pna_address": "10.0.9.15", "pvn": {
                        "pvn_network": "10.0.9.0/24"}}]}],
        }
        script = ("gandi/script", b'#!/bin/sh\necho "script $*" >> /root/order.log\n', 0o700)
        swap_disk(os.path.join(tmp, "swap.img"), config, [script, ("gandi/init", SHELL_INIT, 0o700)])
        data_disk(os.path.join(tmp, "data.img"), "vmdata", 256)
        data_disk(os.path.join(tmp, "data2.img"), "vmdata2", 192)
        data_uuid = run(["blkid", "-s", "UUID", "-o", "value", f"{tmp}/data.img"]).stdout.strip()
        # A data disk made to pass for the platform's, attached at every
        # boot: it must change nothing, nor be written.
        evil = os.path.join(tmp, "evil.img")
        evil_disk(evil)
        evil_sum = sha256_of(evil)
        disks = [f"{tmp}/swap.img", f"{tmp}/data.img", evil]
        # This VM's identity (SMBIOS): a copy of its disk booted under
        # another is a new instance. Its second NIC is on a private VLAN
        # (a network of its own, no DHCP server used).
        vlan = ["-netdev", "user,id=n9,net=10.0.9.0/24", "-device", "virtio-net-pci,netdev=n9"]
        extra = ["-uuid", "5f0e4a5c-9b1d-4c7e-8a3f-2d6b7c8e9f01", *vlan]

        start = time.time()
        qemu = boot(base, tmp, image, disks, root="/dev/vda1", extra=extra)
        qmp = Qmp(os.path.join(tmp, "qmp.sock"))
        up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0, limit=600, step=2)
        boot_s = time.time() - start
        if not check("SSH key login while an admin's plugin still runs", up, f"{boot_s:.0f} s from power-on"):
            raise SystemExit(1)

        def out(c):
            return ssh(sshkey, c).stdout.strip()

        waiting = out("test -e /root/login-done || echo waiting")
        # Automation over SSH right after the first login: wait for the
        # boot's stages (postboot is held by config, held by the plugin
        # waiting for the login) and get their result.
        waiter = subprocess.Popen(
            ["ssh", "-i", sshkey, "-p", str(SSH_PORT), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
             "-o", "LogLevel=ERROR", "root@127.0.0.1",
             "gandi-vm status --wait --timeout 900; echo \"rc=$?\"; "
             "test -e /root/run-mark && echo run-done; date +%s"],
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        waited_early = waiter.poll() is not None
        out("touch /root/login-done")
        check("the plugin waiting for the login had not ended", waiting == "waiting")
        try:
            waited, _ = waiter.communicate(timeout=960)
        except subprocess.TimeoutExpired:
            waiter.kill()
            waited, _ = waiter.communicate()
        lines = waited.strip().splitlines()
        ended_at = int(lines[-1]) if lines and lines[-1].isdigit() else 0
        post_end = 0
        try:
            post_end = json.loads(out("gandi-vm status --json"))["postboot"]["finished"]
        except (ValueError, KeyError, TypeError):
            pass
        check("status --wait over SSH returned once postboot ended, with the boot's result",
              not waited_early and "rc=1" in lines and "run-done" in lines
              and "postboot: ok" in waited and "bootstrap: FAILED" in waited
              and 0 < post_end <= ended_at, waited[-600:])
        check("hostname from the platform config", out("hostname") == "gandi-test", out("hostname"))
        # The post-boot commands run beside the rest of the boot: wait for
        # every job to end.
        wait_for("boot to finish", lambda: out("systemctl is-system-running --wait") in ("running", "degraded"), limit=900)
        for n, k in enumerate(keys):
            r = ssh(k, "id -un; id -gn", user="gandi")
            check(f"the platform's user logs in with key {n + 1}", r.stdout.split() == ["gandi", "users"],
                  (r.stdout + r.stderr).strip())
        order = out("cat /root/order.log").splitlines()
        check("postboot after both plugins, the script before the command, each once",
              sorted(order[:2]) == ["plugin-restart", "plugin-wait"]
              and order[2:] == ["script alpha beta gamma", "run"], " | ".join(order))
        check("the run commands ran once automount served /srv",
              out("test -f /root/run-srv-served && echo yes") == "yes")
        init = out("gandi-vm status | grep -E '^ +init '")
        check("the platform's script not run by default, and said so",
              out("test -e /root/init-ran && echo ran") == "" and "CONFIG_PLATFORM_SCRIPT=0" in init, init)
        forged = (out("hostname") == "forged" or FORGED_KEY.split()[1] in out("cat /root/.ssh/authorized_keys")
                  or out("getent shadow root | cut -d: -f2") == FORGED_HASH
                  or out("test -e /root/forged-run && echo ran") == "ran")
        check("a data disk with a gandiswap partition and a forged archive changed nothing", not forged,
              out("gandi-vm status | grep -E 'platform-disk|archive'"))
        platform = out("gandi-vm status | grep -E '^ +platform-disk '")
        check("the platform's disk found by its slot", "pci-0000:00:04.0" in platform, platform)
        units = "gandi-config gandi-mount gandi-postboot"
        states = out(f"systemctl is-active {units}").split()
        check("config, mount and postboot units succeeded", states == ["active"] * 3, " ".join(states))
        failed = out("systemctl --failed --no-legend --plain")
        check("only bootstrap failed (the bad values)", failed.split()[:1] == ["gandi-bootstrap.service"]
              and len(failed.splitlines()) == 1, failed)
        # Failed, it is not started again by the units started after it.
        runs = out("journalctl -b -t gandi --no-pager -o cat | grep -c '^gandi-vm bootstrap: '")
        check("a failed bootstrap ran once in the boot", runs == "1", runs)
        status = ssh(sshkey, "gandi-vm status")
        check("status names the bad values", status.returncode == 1 and "nameservers[1]" in status.stdout
              and "vm_conf.ssh_key" in status.stdout, status.stdout[:600])
        errors = out("journalctl -b -p err -t gandi --no-pager -o cat")
        check("a failed step shows under journalctl -p err -t gandi",
              "root-keys" in errors and "nameservers[1]" in errors, errors[-400:])
        tagged = out("journalctl -b -t gandi --no-pager -o cat | grep -c 'gandi-vm postboot: ok'")
        check("every unit's lines tagged gandi", tagged == "1", tagged)
        # The support report: what support needs, no secret.
        made = ssh(sshkey, "gandi-vm report --output /root/report.tar.gz")
        secrets = [config["vm_conf"]["password"].split("$")[-1], pubs[0].split()[1], "run-srv-served"]
        leaked = out("tar -xzOf /root/report.tar.gz | grep -c -F " + " ".join(f"-e '{x}'" for x in secrets))
        parts = out("tar -tzf /root/report.tar.gz")
        check("gandi-vm report: an archive without secrets",
              made.returncode == 0 and leaked == "0" and "gandi-vm-report/journal/units.txt" in parts
              and "gandi-vm-report/status.json" in parts, f"{leaked} {parts[:300]} {made.stderr[-200:]}")
        # The admin disables a unit; the package reinstalled keeps it so.
        with open(deb, "rb") as f:
            ssh_input(sshkey, "cat > /root/gandi-vm.deb", f.read())
        again = out("systemctl disable gandi-config.service >/dev/null 2>&1; dpkg -i /root/gandi-vm.deb >/dev/null 2>&1; "
                    "systemctl is-enabled gandi-config.service; systemctl is-enabled gandi-bootstrap.service")
        check("a unit disabled then the package reinstalled stays disabled",
              again.split()[-2:] == ["disabled", "enabled"], again)
        out("systemctl enable gandi-config.service 2>&1; rm -f /root/gandi-vm.deb")
        resolv = out("cat /etc/resolv.conf")
        block = resolv.split("# END gandi-vm")[0]
        servers = [l.split()[1] for l in block.splitlines() if l.startswith("nameserver")]
        check("the platform's three resolvers with its options",
              servers[:2] == ["10.0.2.3", "10.0.2.4"] and servers[2] in ("fec0::3", "fec0::4")
              and len(servers) == 3 and "options timeout:1 attempts:3 rotate" in resolv,
              resolv.replace("\n", "; "))
        vlan_addr = out("ip -4 -o addr show dev eth1")
        check("the private VLAN's address static, no DHCP",
              "10.0.9.15/24" in vlan_addr and "dynamic" not in vlan_addr
              and "DHCP=no" in out("cat /etc/systemd/network/50-gandi-eth1.network"), vlan_addr)
        check("/etc/mailname and the hosts line at eth0's address",
              out("cat /etc/mailname") == "gandi-test" and "10.0.2.15\tgandi-test" in out("cat /etc/hosts"),
              out("cat /etc/mailname; grep gandi-test /etc/hosts"))
        serial = open(os.path.join(tmp, "serial.log"), errors="replace").read()
        summaries = [f"gandi-vm {s}:" for s in ("bootstrap", "config", "mount", "postboot")]
        check("each stage's summary on the serial console", all(x in serial for x in summaries),
              " ".join(x for x in summaries if x not in serial))
        hash_root = out("getent shadow root | cut -d: -f2")
        check("password hash set for root and the user",
              hash_root.startswith("$6$") and out("getent shadow gandi | cut -d: -f2") == hash_root)
        check("an admin's plugin using sudo ran", out("cat /root/plugin-sudo") == "nobody",
              out("gandi-vm status | grep plugin"))
        check("CONFIG_SYSCTL=0: nothing of ours loaded",
              out("test -e /etc/sysctl.d/60-gandi.conf && echo linked; sysctl -n vm.swappiness") == "60",
              out("sysctl -n vm.swappiness"))
        table = json.loads(out("sfdisk --json /dev/vda") or "{}").get("partitiontable", {})
        parts = table.get("partitions", [{}])
        disk_bytes = int(out("blockdev --getsize64 /dev/vda") or 0)
        root_bytes = int(out("df -B1 --output=size / | tail -1") or 0)
        check("gandiroot grown to the end of the enlarged disk",
              parts[-1].get("name") == "gandiroot"
              and (parts[-1].get("start", 0) + parts[-1].get("size", 0)) * 512 > disk_bytes - (2 << 20)
              and table.get("id", "0").strip("0-") != "",
              f"{parts[-1]}, disk {disk_bytes >> 20} MiB, id {table.get('id')}")
        check("the root filesystem fills it", root_bytes > disk_bytes * 0.9,
              f"{root_bytes >> 20} MiB of {disk_bytes >> 20} MiB")
        swap_dev = out("readlink -f /dev/disk/by-path/pci-0000:00:04.0")
        swaps = out("tail -n +2 /proc/swaps").splitlines()
        check("swap enabled on the platform's disk alone",
              bool(swap_dev) and len(swaps) == 1 and swaps[0].startswith(swap_dev + " "),
              f"{swap_dev}: {swaps}")

        # A user looks the data disk up first under its UUID: refused, and
        # the admin's /srv/LABEL is served all the same.
        taken = ssh(sshkey, f"sudo -u nobody ls /srv/{data_uuid.upper()}; sudo -u nobody ls /srv/{data_uuid}")
        check("a lookup by UUID is refused (one path per disk)",
              taken.returncode != 0 and out(f"findmnt -n -o SOURCE /srv/{data_uuid}") == "",
              taken.stderr.strip()[-200:])
        # The data disk: mounted on access, grown, nosuid,nodev.
        check("ls /srv/vmdata (after a user's lookup by UUID)", ssh(sshkey, "ls /srv/vmdata").returncode == 0)
        opts = out("findmnt -n -o OPTIONS /srv/vmdata")
        check("mounted with nosuid,nodev", "nosuid" in opts and "nodev" in opts, opts)
        size = int(out("df -B1 --output=size /srv/vmdata | tail -1") or 0)
        check("grown to the disk's size", size > 200 << 20, f"{size >> 20} MiB of 256")
        vmdata_dev = out("readlink -f /dev/disk/by-id/virtio-data")

        # Hot-plug a second data disk.
        qmp.cmd("blockdev-add", driver="raw", **{"node-name": "d2"},
                file={"driver": "file", "filename": f"{tmp}/data2.img"})
        qmp.cmd("device_add", driver="virtio-blk-pci", drive="d2", id="disk2", bus="rp1", serial="data2")
        got = wait_for("vmdata2", lambda: ssh(sshkey, "ls /srv/vmdata2").returncode == 0, limit=120, step=2)
        # The name the kernel gave it.
        data2 = out("basename $(readlink -f /dev/disk/by-id/virtio-data2)")
        check("hot-plugged disk served at /srv/vmdata2", got)
        size = int(out("df -B1 --output=size /srv/vmdata2 | tail -1") or 0)
        check("hot-plugged disk grown", size > 150 << 20, f"{size >> 20} MiB of 192")
        rel = ssh(sshkey, "cd / && gandi-vm disk release vmdata2")
        check("disk release", rel.returncode == 0, (rel.stdout + rel.stderr).strip().splitlines()[-1] if (rel.stdout + rel.stderr).strip() else "")
        # The map refuses it; nothing mounts it again, neither another key
        # nor the key autofs kept the map's answer for (its link is gone).
        refused = ssh(sshkey, "/etc/auto.gandi vmdata2")
        check("released disk refused by the map", refused.returncode != 0 and refused.stdout == "",
              refused.stderr.strip())
        ssh(sshkey, f"ls /srv/{data2}; ls /srv/vmdata2")
        check("released disk not mounted again, under any key",
              out(f"findmnt -n -o SOURCE /srv/{data2}") == "" and out("findmnt -n -o SOURCE /srv/vmdata2") == "",
              out("findmnt -n -o SOURCE /srv/vmdata2"))
        qmp.cmd("device_del", id="disk2")
        gone = wait_for("detach", lambda: f"{data2}.json" not in out("ls /run/gandi/disks")
                        and data2 not in out("lsblk -dn -o NAME").split(), limit=60)
        check("detached, record removed", gone)

        # A vCPU.
        cpus = qmp.cmd("query-hotpluggable-cpus")
        free = [c for c in cpus if "qom-path" not in c]
        if free:
            props = free[-1]["props"]
            qmp.cmd("device_add", driver=free[-1]["type"], id="cpu-hot", **props)
            online = wait_for("cpu", lambda: out("cat /sys/devices/system/cpu/online") not in ("", "0"), limit=60)
            check("hot-added vCPU online", online, out("cat /sys/devices/system/cpu/online"))
        else:
            check("hot-added vCPU online", False, "no hot-pluggable CPU slot")

        # A memory DIMM.
        before = out("grep -c online /sys/devices/system/memory/memory*/state | awk -F: '{s+=$2} END {print s}'")
        qmp.cmd("object-add", **{"qom-type": "memory-backend-ram", "id": "mem1", "size": 256 << 20})
        qmp.cmd("device_add", driver="pc-dimm", id="dimm1", memdev="mem1")
        def mem_online():
            states = out("cat /sys/devices/system/memory/memory*/state").split()
            return len(states) > int(before or 0) and all(s == "online" for s in states)
        check("hot-added memory online", wait_for("memory", mem_online, limit=60),
              out("cat /sys/devices/system/memory/memory*/state | sort | uniq -c | tr '\\n' ' '"))

        # A NIC the config does not name: eth2 (eth1 is the VLAN's), DHCP
        # on its own user network (another subnet than eth0's).
        qmp.cmd("netdev_add", type="user", id="n1", net="10.0.3.0/24")
        qmp.cmd("device_add", driver="virtio-net-pci", netdev="n1", id="nic1", bus="rp2")
        got = wait_for("eth2", lambda: "inet 10.0.3." in out("ip -4 addr show dev eth2"), limit=120, step=2)
        if not check("hot-added NIC configured", got, out("ip -4 -o addr show dev eth2")):
            log(out("systemctl status --no-pager gandi-iface@eth2; networkctl status --no-pager eth2; "
                    "cat /etc/systemd/network/50-gandi-eth2.network; journalctl --no-pager -b -u gandi-iface@eth2 -u systemd-networkd | tail -40"))
        routes = out("ip -4 route show default")
        check("one default route per interface, eth0 first",
              bool(routes) and "dev eth0" in routes.splitlines()[0] and "dev eth2" in routes,
              routes.replace("\n", "; "))
        # Unplugged: its unit stops, and only then (the NIC gone) are its
        # files removed.
        qmp.cmd("device_del", id="nic1")
        netfile2 = "/etc/systemd/network/50-gandi-eth2.network"
        gone = wait_for("eth2 to go", lambda: out(
            f"test -e /sys/class/net/eth2 || test -e {netfile2} || echo gone") == "gone",
            limit=120, step=2)
        check("unplugged NIC: its network file removed", gone,
              "" if gone else out(f"ls /sys/class/net; ls {netfile2}; "
                                  "journalctl --no-pager -b -u gandi-iface@eth2 | tail -5"))
        hooks = out("cat /root/hooks.log").splitlines()
        want = ["post-vm-config 0  INTERFACE= ACTION=",
                f"post-disk-attach 3 {vmdata_dev} ext4 /srv/vmdata INTERFACE= ACTION=",
                f"pre-disk-detach 2 /dev/{data2} /srv/vmdata2 INTERFACE= ACTION=",
                "post-iface-attach 1 eth2 INTERFACE=eth2 ACTION=add"]
        check("hooks get the original's arguments and environment, post-disk-attach once per attach",
              all(w in hooks for w in want)
              and sum(1 for h in hooks if h.startswith("post-disk-attach") and "/srv/vmdata2 " in h) == 1
              and sum(1 for h in hooks if h.startswith("post-disk-attach") and "/srv/vmdata " in h) == 1,
              " | ".join(hooks))

        blame = out("systemd-analyze blame | grep -E 'gandi' ")
        log("systemd-analyze blame (gandi units):\n" + blame)
        log("gandi-vm status (steps and durations):\n" + out("gandi-vm status"))
        log(f"power-on to SSH: {boot_s:.1f} s")

        # A second boot: the admin edited eth0's file and turned the
        # platform's script on; the platform wrote a new archive, whose
        # script is Python 2 (none on the image). The edit stays (the
        # units' stop at shutdown removes nothing of a NIC still there),
        # bootstrap finds the platform's value applied already, the script
        # is not run and the status says why.
        netfile = "/etc/systemd/network/50-gandi-eth0.network"
        ssh(sshkey, f"echo '# kept by the admin' >> {netfile}")
        ssh(sshkey, "sed -i 's/^CONFIG_PLATFORM_SCRIPT=0/CONFIG_PLATFORM_SCRIPT=1/' /etc/default/gandi")
        poweroff(qemu, sshkey)
        qemu = None
        write_archive(f"{tmp}/swap.img", config, [script, ("gandi/init", PY2_INIT, 0o700)])
        qemu = boot(base, tmp, image, disks, root="/dev/vda1", serial="serial-2.log", extra=extra)
        up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0, limit=600, step=2)
        if check("second boot: SSH key login", up):
            wait_for("boot to finish",
                     lambda: out("systemctl is-system-running --wait") in ("running", "degraded"),
                     limit=300)
            text = out(f"cat {netfile}")
            kept = "# kept by the admin" in text
            check("second boot: the admin's edit of eth0's network file kept", kept,
                  "" if kept else text.replace("\n", "; "))
            network = out("gandi-vm status | grep -E '^ +network '")
            check("second boot: bootstrap left eth0's file as it was", "eth0 kept" in network, network)
            init = out("gandi-vm status | grep -E '^ +init '")
            check("second boot: a Python 2 script without Python 2 not run, and said so",
                  out("test -e /root/init-py2 && echo ran") == "" and "Python 2" in init, init)
            check("second boot: the commands did not run again",
                  out("cat /root/order.log").count("run") == 1, out("cat /root/order.log"))
            # The first boot's status, moved aside by this boot's first
            # stage: every stage of it, of another boot than this one's.
            previous = json.loads(out("gandi-vm status --previous --json") or "{}")
            now = json.loads(out("gandi-vm status --json") or "{}")
            ids = {s.get("boot_id") for s in previous.values()}
            check("second boot: the first boot's status kept as the previous one",
                  set(previous) >= {"bootstrap", "config", "mount", "postboot"} and len(ids) == 1
                  and None not in ids and ids.isdisjoint({s.get("boot_id") for s in now.values()}),
                  f"previous {sorted(previous)} {ids}")

            # An unprivileged process fills the swap area with pages that
            # each hold a forged archive: the kernel writes them everywhere
            # but on the archive's pages (listed bad), so the next boot
            # reads none.
            page = forged_page()
            ssh_input(sshkey, "cat > /tmp/forged.page; chmod 644 /tmp/forged.page", page)
            swap_kib = int(out("awk 'NR == 2 {print $3}' /proc/swaps") or 0)
            pages = (32 << 8) + (swap_kib // 4) * 85 // 100
            filler = ("import mmap\n"
                      "page = open('/tmp/forged.page', 'rb').read()\n"
                      f"n = {pages}\n"
                      "m = mmap.mmap(-1, n * 4096)\n"
                      "for i in range(n):\n"
                      "    m[i * 4096:(i + 1) * 4096] = page\n")
            ssh_input(sshkey, "cat > /tmp/fill.py; chmod 644 /tmp/fill.py", filler.encode())
            # A cgroup of its own with 32 MiB of memory and any swap, the
            # process nobody's (the image has no D-Bus for systemd-run).
            filled = ssh(sshkey, "mkdir -p /sys/fs/cgroup/forge && echo 32M > /sys/fs/cgroup/forge/memory.max"
                                 " && echo max > /sys/fs/cgroup/forge/memory.swap.max"
                                 " && sh -c 'echo $$ > /sys/fs/cgroup/forge/cgroup.procs"
                                 " && exec setpriv --reuid=65534 --regid=65534 --clear-groups"
                                 " python3 /tmp/fill.py'; r=$?; rmdir /sys/fs/cgroup/forge; exit $r",
                         timeout=900)
            log(f"forged pages written by nobody: {filled.returncode} {filled.stderr.strip()[-200:]}")
            poweroff(qemu, sshkey)
            qemu = None
            # The swap image as the kernel left it, untouched since.
            with open(f"{tmp}/swap.img", "rb") as f:
                area = f.read()
            total = len(area) // 4096
            forged_pages = sum(1 for i in range(total) if area[i * 4096:(i + 1) * 4096] == page)
            check("forged pages fill most of the swap area", forged_pages > total // 2,
                  f"{forged_pages} of {total} pages")
            at = area[512 * 1024:512 * 1024 + 4096]
            check("the archive's page is neither forged nor the platform's any more",
                  at != page and at[:512] == b"\0" * 512, at[:100].hex())
            check("the data disk made to pass for the platform's was never written",
                  sha256_of(evil) == evil_sum)

            # A third boot on that swap area.
            qemu = boot(base, tmp, image, disks, root="/dev/vda1", serial="serial-3.log", extra=extra)
            up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0, limit=600, step=2)
            if check("third boot: SSH key login", up):
                wait_for("boot to finish",
                         lambda: out("systemctl is-system-running --wait") in ("running", "degraded"),
                         limit=300)
                forged = (out("hostname") != "gandi-test"
                          or FORGED_KEY.split()[1] in out("cat /root/.ssh/authorized_keys")
                          or out("getent shadow root | cut -d: -f2") == FORGED_HASH
                          or out("test -e /root/forged-run && echo ran") == "ran")
                archive = out("gandi-vm status | grep -E '^ +archive '")
                check("third boot: no forged page read as the platform's archive",
                      not forged and "no archive" in archive, archive)
                poweroff(qemu, sshkey)
                qemu = None
                # Turned off on the kernel command line: nothing of ours
                # runs, the disks already there are still served.
                qemu = boot(base, tmp, image, disks, root="/dev/vda1", serial="serial-3b.log",
                            extra=extra, append="gandi.disabled=1")
                up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0, limit=600, step=2)
                if check("gandi.disabled=1: SSH key login", up):
                    wait_for("boot to finish",
                             lambda: out("systemctl is-system-running --wait") in ("running", "degraded"),
                             limit=300)
                    units = "gandi-bootstrap gandi-config gandi-mount gandi-postboot"
                    conds = out(f"systemctl show -p ConditionResult --value {units}").split()
                    ran = out("journalctl -b -t gandi --no-pager -o cat | grep -c '^gandi-vm [a-z]*: '")
                    shown = out("gandi-vm status")
                    check("gandi.disabled=1: no stage of ours ran, and status says why",
                          conds == ["no"] * 4 and ran == "0" and "turned off" in shown,
                          f"{conds} {ran} {shown[:200]}")
                    check("gandi.disabled=1: the data disk still served",
                          ssh(sshkey, "ls /srv/vmdata").returncode == 0)
                # The admin renames the VM; then the disk is copied (a
                # custom image) and booted as another VM with the same
                # platform config, and the shell script as its script.
                ssh(sshkey, "echo admin-a > /etc/hostname; hostname admin-a")
                poweroff(qemu, sshkey)
                qemu = None
                copy = os.path.join(tmp, "custom.img")
                run(["cp", "--sparse=always", image, copy])
                os.remove(image)
                swap_disk(os.path.join(tmp, "swap-b.img"), config, [script, ("gandi/init", SHELL_INIT, 0o700)])
                extra_b = ["-uuid", "5f0e4a5c-9b1d-4c7e-8a3f-2d6b7c8e9f02", *vlan]
                qemu = boot(base, tmp, copy, [f"{tmp}/swap-b.img"], root="/dev/vda1",
                            serial="serial-4.log", extra=extra_b)
                up = wait_for("ssh", lambda: ssh(sshkey, "true", timeout=20).returncode == 0, limit=600, step=2)
                if check("custom image: SSH key login", up):
                    wait_for("boot to finish",
                             lambda: out("systemctl is-system-running --wait") in ("running", "degraded"),
                             limit=300)
                    check("custom image: a new instance gets its own platform values",
                          out("hostname") == "gandi-test"
                          and "new instance" in out("gandi-vm status | grep -E '^ +instance '"),
                          out("hostname") + " " + out("gandi-vm status | grep -E 'instance|hostname'")
                          + " dmi: " + out("cat /sys/class/dmi/id/product_uuid")
                          + " ledger: " + out("grep -o '\"instance\": *[^,]*' /var/lib/gandi/applied.json"))
                    ran = out("cat /root/init-ran").splitlines()
                    init = out("gandi-vm status | grep -E '^ +init '")
                    check("custom image: the platform's script (turned on) ran after ssh, its restart returned",
                          ran == ["ssh active", "restart 0"], " | ".join(ran) + " " + init)
                    check("custom image: the status lists what the script changed",
                          "/etc/resolv.conf" in init, init)
                    resolv = out("cat /etc/resolv.conf")
                    restore = out("gandi-vm status | grep -E '^ +restore '")
                    check("custom image: the native apply stands after the script",
                          "options timeout:1 attempts:3 rotate" in resolv and "nameserver 10.0.2.4" in resolv,
                          resolv.replace("\n", "; ") + " " + restore)
        ok = all(r for _, r in results)
    finally:
        if qemu:
            stop(qemu)
        mounts.close()
        passed = sum(1 for _, r in results if r)
        log(f"vm-test: {passed} passed, {len(results) - passed} failed")
        if not ok:
            for name in ("serial.log", "serial-2.log", "serial-3.log", "serial-4.log"):
                serial_log = os.path.join(tmp, name)
                if os.path.exists(serial_log):
                    keep = os.path.join(CACHE, f"last-failure-{name}")
                    shutil.copy(serial_log, keep)
                    log(f"serial log kept in {keep}")
        remove_tree(tmp)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
