#!/usr/bin/env python3
"""make vm-test-matrix: every release and network stack we claim, booted.

Variants: Debian 11, 12 and 13 with systemd-networkd (Debian 13 with the
kernel's predictable NIC names, no net.ifnames=0), and Debian 12 with
ifupdown, with NetworkManager (its keyfiles) and with netplan (rendering
to networkd). One debootstrap per release, cached under
/var/cache/gandi-vm-test as the system test's image is; the stack variants
are derived from the Debian 12 image, cached too.

On each, one smaller set of checks than `make vm-test`'s (which stay on
the Debian 12 networkd image):
  - boot with a platform config: a static IPv4 and IPv6 on vif 0, two
    more public NICs (vif 1 and 2), a private VLAN (vif 3), two resolvers
    of each family; SSH in with the platform's key;
  - the addresses and routes are the platform's, as the real stack
    applied them (netplan: `networkctl status` names netplan's file);
  - two public NICs that both answer: vif 1 and vif 2 are each on a tap
    of their own, each tap in a network namespace of its own with
    rp_filter=1 and a client off the NIC's subnet; a TCP connection to
    each address from its own side gets sshd's banner (a reply leaving
    through vif 0's default route never comes back);
  - a data disk served under /srv;
  - a NIC hot-plugged and configured (DHCP on a network of its own);
  - a reboot: the admin's edit of our network file kept.

Prints one table, variant by check; exits 1 when a check fails. Variants
run two at a time (GANDI_VM_JOBS); GANDI_VM_VARIANTS picks some
(space-separated names). Everything started is stopped, every namespace,
tap, mount and loop device removed, also on failure.

Usage: matrix.py DEB
       matrix.py --variant NAME DEB OUT.json   (one variant; what the
                                                matrix runs for each)
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_test as vt  # noqa: E402

# name: (release, stack, predictable NIC names)
VARIANTS = {
    "debian11-networkd": ("bullseye", "networkd", False),
    "debian12-networkd": ("bookworm", "networkd", False),
    "debian13-networkd": ("trixie", "networkd", True),
    "debian12-ifupdown": ("bookworm", "ifupdown", False),
    "debian12-networkmanager": ("bookworm", "networkmanager", False),
    "debian12-netplan": ("bookworm", "netplan", False),
}
STACK_VERSION = "1"  # bump when the stacks' recipe changes
# The packages of each stack (D-Bus where the stack's own tools need it:
# nmcli, networkctl status).
STACK_PACKAGES = {"ifupdown": ["ifupdown"], "networkmanager": ["network-manager", "dbus"],
                  "netplan": ["netplan.io", "dbus"]}

# Our network file of interface IFACE, per stack.
NET_FILE = {
    "networkd": "/etc/systemd/network/50-gandi-{}.network",
    "ifupdown": "/etc/network/interfaces.d/gandi-{}",
    "networkmanager": "/etc/NetworkManager/system-connections/gandi-{}.nmconnection",
    "netplan": "/etc/netplan/00-gandi-{}.yaml",
}
# The admin's own netplan file (an interface that is not there).
ADMIN_NETPLAN = ("network:\n  version: 2\n  ethernets:\n    admin0:\n      match:\n"
                 "        macaddress: \"52:54:00:00:00:99\"\n      dhcp4: true\n")

MAC = {0: "52:54:00:12:34:56", 1: "52:54:00:00:00:31", 2: "52:54:00:00:00:32",
       3: "52:54:00:00:00:33", "hot": "52:54:00:00:00:35"}
ADDR = {0: "10.0.2.15", 1: "192.0.2.10", 2: "198.51.100.10", 3: "10.0.9.15"}
GATEWAY = {1: "192.0.2.1", 2: "198.51.100.1"}
CLIENT = {1: "203.0.113.1", 2: "203.0.113.2"}

CHECKS = [
    "SSH with the platform's key",
    "addresses and routes as the stack applied them",
    "two public NICs both answer",
    "data disk served under /srv",
    "hot-plugged NIC configured",
    "reboot: admin's network edit kept",
    "vif 0 at the coldplug: one unit of ours, no process once marked",
]


def stack_image(base, stack):
    """The image of `release` with `stack`: the release's pristine image,
    or one derived from it with the stack's packages (cached)."""
    if stack == "networkd":
        return base
    recipe = f"{base} {stack} {STACK_VERSION} {' '.join(STACK_PACKAGES[stack])}"
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    dest = f"{base}-{stack}-{key}"
    if os.path.exists(os.path.join(dest, "rootfs.img")):
        return dest
    vt.log(f"deriving the {stack} image in {dest} (once; reused after)")
    work = dest + ".new"
    vt.remove_tree(work)
    os.makedirs(work)
    for f in ("vmlinuz", "initrd.img"):
        shutil.copy(os.path.join(base, f), os.path.join(work, f))
    img = os.path.join(work, "rootfs.img")
    vt.run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), img])
    mounts = vt.Mounts()
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    try:
        mounts.mount("-o", "loop", img, mnt)
        policy = os.path.join(mnt, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        mounts.mount("-t", "proc", "proc", os.path.join(mnt, "proc"))
        mounts.mount("--bind", "/dev", os.path.join(mnt, "dev"))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        packages = STACK_PACKAGES[stack]
        vt.run(["chroot", mnt, "apt-get", "update", "-q"], env=env)
        vt.run(["chroot", mnt, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)
        vt.run(["chroot", mnt, "apt-get", "clean"])
        if stack == "ifupdown":
            with open(os.path.join(mnt, "etc/network/interfaces"), "w") as f:
                f.write("source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n")
            vt.run(["chroot", mnt, "systemctl", "disable", "systemd-networkd"])
            vt.run(["chroot", mnt, "systemctl", "enable", "networking"])
        elif stack == "networkmanager":
            vt.run(["chroot", mnt, "systemctl", "disable", "systemd-networkd"])
            vt.run(["chroot", mnt, "systemctl", "enable", "NetworkManager"])
        elif stack == "netplan":
            path = os.path.join(mnt, "etc/netplan/90-admin.yaml")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(ADMIN_NETPLAN)
            os.chmod(path, 0o600)
        os.remove(policy)
    finally:
        mounts.close()
    os.rmdir(mnt)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.rename(work, dest)
    return dest


def release_image(release):
    base = os.path.join(vt.CACHE, f"vm-{vt.image_key(release)}")
    if not os.path.exists(os.path.join(base, "rootfs.img")):
        vt.build_image(base, release)
    return base


class Upstreams:
    """Two taps, each moved (with QEMU holding it) into a network namespace
    of its own: the gateway's address on the tap, a client address on
    lo, rp_filter=1. Removed on close."""

    def __init__(self, tag):
        self.tag = tag
        self.taps = {n: f"gvt{tag}{n}" for n in (1, 2)}
        self.ns = {n: f"gv-up-{tag}-{n}" for n in (1, 2)}
        self.moved = False

    def create_taps(self):
        for tap in self.taps.values():
            subprocess.run(["ip", "link", "del", tap], capture_output=True)
            vt.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])

    def qemu_args(self):
        out = []
        for n, tap in self.taps.items():
            out += ["-netdev", f"tap,id=t{n},ifname={tap},script=no,downscript=no",
                    "-device", f"virtio-net-pci,netdev=t{n},mac={MAC[n]},addr={hex(0x10 + n)}"]
        return out

    def enter(self):
        for n, tap in self.taps.items():
            ns = self.ns[n]
            # One left by a killed run of the same tag goes first.
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            vt.run(["ip", "netns", "add", ns])
            vt.run(["ip", "link", "set", tap, "netns", ns])
            for cmd in (["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1"],
                        ["sysctl", "-q", "-w", "net.ipv4.conf.default.rp_filter=1"],
                        ["sysctl", "-q", "-w", f"net.ipv4.conf.{tap}.rp_filter=1"],
                        ["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{CLIENT[n]}/32", "dev", "lo"],
                        ["ip", "addr", "add", f"{GATEWAY[n]}/24", "dev", tap],
                        ["ip", "link", "set", tap, "up"]):
                vt.run(["ip", "netns", "exec", ns, *cmd])
        self.moved = True

    def connect(self, n):
        """A TCP connection from the client of upstream n to vif n's
        address, port 22: sshd's banner, or what went wrong."""
        probe = ("import socket,sys\n"
                 "s=socket.socket(); s.settimeout(5)\n"
                 f"s.bind(('{CLIENT[n]}', 0)); s.connect(('{ADDR[n]}', 22))\n"
                 "sys.stdout.write(s.recv(64).decode(errors='replace'))\n")
        r = subprocess.run(["ip", "netns", "exec", self.ns[n], "python3", "-c", probe],
                           text=True, capture_output=True, timeout=30)
        return r.stdout.strip() or r.stderr.strip().splitlines()[-1:]

    def close(self):
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for tap in self.taps.values():
            subprocess.run(["ip", "link", "del", tap], capture_output=True)


def platform_config(pub):
    return {
        "vm_hostname": "matrix",
        "vm_conf": {"ssh_key": pub + "\r\n"},
        "nameservers": ["10.0.2.3", "10.0.2.4", "fec0::3", "fec0::4"],
        "vif": [
            {"vif_number": 0, "pna": [
                {"pna_address": ADDR[0], "pbn": {"pbn_network": "10.0.2.0/24", "pbn_gateway": "10.0.2.2"}},
                {"pna_address": "fec0::15", "pbn": {"pbn_network": "fec0::/64", "pbn_gateway": "fec0::2"}}]},
            {"vif_number": 1, "pna": [
                {"pna_address": ADDR[1], "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": GATEWAY[1]}}]},
            {"vif_number": 2, "pna": [
                {"pna_address": ADDR[2], "pbn": {"pbn_network": "198.51.100.0/24", "pbn_gateway": GATEWAY[2]}}]},
            {"vif_number": 3, "pna": [{"pna_address": ADDR[3], "pvn": {"pvn_network": "10.0.9.0/24"}}]},
        ],
    }


def variant(name, deb, out_json):
    release, stack, ifnames = VARIANTS[name]
    base = stack_image(release_image(release), stack)
    tmp = tempfile.mkdtemp(prefix=f"gandi-vm-matrix.{name}.")
    mounts = vt.Mounts()
    ups = Upstreams(str(os.getpid() % 100000))
    qemu = None
    got = {}

    def check(label, ok, detail=""):
        got[label] = bool(ok)
        return vt.check(f"{name}: {label}", ok, detail)

    try:
        image = os.path.join(tmp, "root.img")
        vt.run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), image])

        def setup(mnt):
            with open(os.path.join(mnt, "etc/fstab"), "w") as f:
                f.write("/dev/vda1 / ext4 errors=remount-ro 0 1\n")
            # When SSH never comes, the serial log (kept on failure) still
            # says how the network stood: a minute after boot, the guest
            # writes it to the kernel's log, which the console shows.
            with open(os.path.join(mnt, "usr/local/sbin/net-state"), "w") as f:
                f.write("#!/bin/sh\nsleep 60\n(ip addr; ip route; ip rule; nmcli dev 2>/dev/null; "
                        "networkctl --no-pager 2>/dev/null; journalctl -b --no-pager -u NetworkManager "
                        "-u systemd-networkd -u networking -u 'gandi-iface@*' | tail -40) 2>&1 | "
                        "while read -r l; do echo \"net-state: $l\" > /dev/kmsg; done\n")
            os.chmod(os.path.join(mnt, "usr/local/sbin/net-state"), 0o755)
            with open(os.path.join(mnt, "etc/systemd/system/net-state.service"), "w") as f:
                f.write("[Unit]\nDescription=the network's state to the console\n[Service]\n"
                        "Type=simple\nExecStart=/usr/local/sbin/net-state\n"
                        "[Install]\nWantedBy=multi-user.target\n")
            os.symlink("/etc/systemd/system/net-state.service",
                       os.path.join(mnt, "etc/systemd/system/multi-user.target.wants/net-state.service"))
        vt.install_package(image, deb, mounts, tmp, setup)
        disk = os.path.join(tmp, "disk.img")
        vt.platform_disk(image, disk, 256)
        os.remove(image)
        key = os.path.join(tmp, "id")
        vt.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
        config = platform_config(open(key + ".pub").read().strip())
        vt.swap_disk(os.path.join(tmp, "swap.img"), config)
        vt.data_disk(os.path.join(tmp, "data.img"), "vmdata", 128)
        disks = [f"{tmp}/swap.img", f"{tmp}/data.img"]
        vlan = ["-netdev", "user,id=n9,net=10.0.9.0/24",
                "-device", f"virtio-net-pci,netdev=n9,mac={MAC[3]},addr=0x13"]
        ups.create_taps()
        extra = [*ups.qemu_args(), *vlan]
        qemu = vt.boot(base, tmp, disk, disks, root="/dev/vda1", extra=extra, ifnames=ifnames)
        qmp = vt.Qmp(os.path.join(tmp, "qmp.sock"))
        up = vt.wait_for("ssh", lambda: vt.ssh(key, "true", timeout=20).returncode == 0, limit=900, step=2)
        if not check(CHECKS[0], up):
            raise SystemExit(1)

        def out(c):
            return vt.ssh(key, c).stdout.strip()

        vt.wait_for("boot to finish", lambda: out("systemctl is-system-running --wait") in ("running", "degraded"),
                    limit=600)

        def iface(mac):
            return out(f"ip -o link | awk -F': ' 'tolower($0) ~ /{mac}/ {{print $2}}'").split("@")[0]

        names = {n: iface(MAC[n]) for n in (0, 1, 2, 3)}
        vt.log(f"{name}: interfaces {names}")

        # The platform's addresses and routes, as the stack applied them.
        def applied():
            a0 = out(f"ip -o addr show dev {names[0]}")
            a3 = out(f"ip -4 -o addr show dev {names[3]}")
            first = (out("ip -4 route show default").splitlines() or [""])[0]
            ok = (f"{ADDR[0]}/24" in a0 and "fec0::15/64" in a0 and f"{ADDR[3]}/24" in a3
                  and "dynamic" not in out(f"ip -4 -o addr show dev {names[0]}")
                  and f"default via 10.0.2.2 dev {names[0]} " in first + " " and "metric 1024" in first)
            return ok, f"{a0} | {a3} | {first}"
        vt.wait_for("addresses", lambda: applied()[0], limit=120, step=2)
        ok, detail = applied()
        resolv = out("cat /etc/resolv.conf")
        ok = ok and "nameserver 10.0.2.3" in resolv and "nameserver fec0::" in resolv
        if stack == "netplan":
            # networkd applied netplan's rendering of our file: its state
            # says which file, and `networkctl status` shows it in force.
            state = out(f"cat /run/systemd/netif/links/$(cat /sys/class/net/{names[0]}/ifindex)")
            status = out(f"networkctl status --no-pager {names[0]}")
            rendered = f"/run/systemd/network/10-netplan-{names[0]}.network"
            ok = (ok and f"NETWORK_FILE={rendered}" in state and rendered in status
                  and ADDR[0] in status and "configured" in status)
            detail += " | " + " ".join(status.split())[:400]
            admin = out("sha256sum /etc/netplan/90-admin.yaml").split()[:1]
            want = hashlib.sha256(ADMIN_NETPLAN.encode()).hexdigest()
            ok = ok and admin == [want]
            detail += f" | admin's file {'untouched' if admin == [want] else 'CHANGED'}"
        check(CHECKS[1], ok, detail)

        # Each public NIC answers from its own side.
        ups.enter()
        answers = {n: ups.connect(n) for n in (1, 2)}
        rules = out("ip -4 rule show")
        check(CHECKS[2], all(str(a).startswith("SSH-") for a in answers.values()),
              f"{answers} | {' '.join(rules.split())}")

        # vif 0 (in CONFIG_NODHCP by default: bootstrap's) took no process
        # of ours at the coldplug: bootstrap prepared it and marked it, and
        # the rule started its unit that has none. Where the kernel's names
        # change after bootstrap ran (predictable names), the mark is of
        # the earlier name and the unit with a process runs: said, allowed.
        v0 = names[0]
        kept_unit = out(f"systemctl is-active gandi-iface-kept@{v0}.service")
        started = out(f"systemctl show -p ExecMainStartTimestampMonotonic --value gandi-iface@{v0}.service")
        nics = out("gandi-vm status | grep -E '^ +nics '")
        # Where udev handled the coldplug's event before bootstrap wrote its
        # mark (the order of the two is not fixed), the unit with a process
        # ran instead: still one unit of ours for the NIC, as before.
        no_process = kept_unit == "active" and started in ("", "0")
        with_process = kept_unit != "active" and out(f"systemctl is-active gandi-iface@{v0}.service") == "active"
        if with_process:
            vt.log(f"{name}: vif 0's coldplug came before bootstrap's mark: gandi-iface@{v0} ran")
        check(CHECKS[6], no_process or with_process,
              f"kept unit {kept_unit}, gandi-iface@{v0} started at {started or '-'}; {' '.join(nics.split())}")

        served = vt.ssh(key, "ls /srv/vmdata >/dev/null && findmnt -n -o FSTYPE /srv/vmdata")
        check(CHECKS[3], served.stdout.strip() == "ext4", (served.stdout + served.stderr).strip())

        qmp.cmd("netdev_add", type="user", id="n5", net="10.0.3.0/24")
        qmp.cmd("device_add", driver="virtio-net-pci", netdev="n5", id="nic5", bus="rp2", mac=MAC["hot"])
        hot = vt.wait_for("the hot-plugged NIC", lambda: iface(MAC["hot"]) != "", limit=60)
        hot_name = iface(MAC["hot"]) if hot else ""
        got_addr = hot and vt.wait_for(
            "its lease", lambda: "inet 10.0.3." in out(f"ip -4 addr show dev {hot_name}"), limit=180, step=2)
        check(CHECKS[4], got_addr, f"{hot_name}: {out(f'ip -4 -o addr show dev {hot_name}') if hot_name else 'no NIC'}"
              + ("" if got_addr else " | " + out(f"journalctl --no-pager -b -u gandi-iface@{hot_name} | tail -5")))

        # A reboot with the admin's edit of vif 0's file.
        netfile = NET_FILE[stack].format(names[0])
        vt.ssh(key, f"echo '# kept by the admin' >> {netfile}")
        vt.poweroff(qemu, key)
        qemu = None
        ups.close()
        ups.create_taps()
        qemu = vt.boot(base, tmp, disk, disks, root="/dev/vda1", serial="serial-2.log", extra=extra,
                       ifnames=ifnames)
        up = vt.wait_for("ssh", lambda: vt.ssh(key, "true", timeout=20).returncode == 0, limit=900, step=2)
        kept = up and "# kept by the admin" in out(f"cat {netfile}")
        network = out("gandi-vm status | grep -E '^ +network '") if up else ""
        check(CHECKS[5], kept and f"{names[0]} kept" in network, network)
    except subprocess.CalledProcessError as e:
        vt.check(f"{name}: setup", False, f"{e.cmd}: {e.stderr[-300:] if e.stderr else ''}")
    except subprocess.TimeoutExpired as e:
        vt.check(f"{name}: a command timed out", False, str(e.cmd)[:300])
    finally:
        if qemu:
            vt.stop(qemu)
        ups.close()
        mounts.close()
        with open(out_json, "w") as f:
            json.dump(got, f)
        if not all(got.get(c) for c in CHECKS):
            for s in ("serial.log", "serial-2.log"):
                if os.path.exists(os.path.join(tmp, s)):
                    keep = os.path.join(vt.CACHE, f"last-failure-{name}-{s}")
                    shutil.copy(os.path.join(tmp, s), keep)
                    vt.log(f"{name}: serial log kept in {keep}")
        vt.remove_tree(tmp)
    return 0 if all(got.get(c) for c in CHECKS) else 1


def matrix(deb):
    names = os.environ.get("GANDI_VM_VARIANTS", "").split() or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants: {' '.join(unknown)} (known: {' '.join(VARIANTS)})")
    jobs = max(1, int(os.environ.get("GANDI_VM_JOBS", "2")))
    os.makedirs(vt.CACHE, exist_ok=True)
    start = time.time()
    # Images first, one at a time (each is a debootstrap or an apt-get).
    for n in names:
        release, stack, _ = VARIANTS[n]
        stack_image(release_image(release), stack)
    vt.log(f"images ready in {time.time() - start:.0f} s")
    tmp = tempfile.mkdtemp(prefix="gandi-vm-matrix.")
    running = {}
    done = {}
    pending = list(names)
    me = os.path.abspath(__file__)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                n = pending.pop(0)
                out = os.path.join(tmp, f"{n}.json")
                running[n] = (subprocess.Popen([sys.executable, me, "--variant", n, deb, out]), out)
            time.sleep(2)
            for n, (p, out) in list(running.items()):
                if p.poll() is not None:
                    try:
                        done[n] = json.load(open(out))
                    except (OSError, ValueError):
                        done[n] = {}
                    del running[n]
    finally:
        for p, _ in running.values():
            p.terminate()
            p.wait()
        vt.remove_tree(tmp)
    width = max(len(n) for n in names)
    heads = [f"{i + 1}" for i in range(len(CHECKS))]
    vt.log("")
    vt.log("checks: " + "; ".join(f"{h} {c}" for h, c in zip(heads, CHECKS)))
    vt.log(f"{'variant'.ljust(width)}  " + "  ".join(h.rjust(4) for h in heads))
    failed = 0
    for n in names:
        cells = []
        for c in CHECKS:
            v = done.get(n, {}).get(c)
            cells.append({True: "pass", False: "FAIL", None: "-"}[v])
            failed += v is not True
        vt.log(f"{n.ljust(width)}  " + "  ".join(x.rjust(4) for x in cells))
    vt.log(f"vm-test-matrix: {len(names) * len(CHECKS) - failed} passed, {failed} failed or not run, "
           f"{time.time() - start:.0f} s")
    return 1 if failed else 0


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        sys.exit("vm-test-matrix: run as root")
    if len(sys.argv) == 5 and sys.argv[1] == "--variant":
        sys.exit(variant(sys.argv[2], os.path.abspath(sys.argv[3]), sys.argv[4]))
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(matrix(os.path.abspath(sys.argv[1])))


if __name__ == "__main__":
    main()
