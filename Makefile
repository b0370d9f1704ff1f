# gandi-vm: build, install, packages, tests, demo and benchmarks.
# Targets that need system packages install them first (scripts/install-deps).

CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
# /etc/default/gandi on Debian, /etc/sysconfig/gandi in the RPM.
SETTINGS_FILE ?= /etc/default/gandi
UNITDIR ?= $(PREFIX)/lib/systemd/system
UDEVDIR ?= $(PREFIX)/lib/udev
# The map is a program of its own; /etc/auto.gandi is a link to it
# (absolute in the .deb, across top-level folders as Debian's policy
# wants; relative in the RPM, as Fedora's rpmlint wants).
LIBEXECDIR ?= $(PREFIX)/libexec/gandi-vm
MAP_LINK ?= $(LIBEXECDIR)/gandi-map
# Debian's zsh reads vendor-completions; Fedora's and RHEL's site-functions.
ZSH_COMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
# The shipped binary is linked statically: autofs starts it on every lookup,
# and a static executable starts faster (no loader, no shared libraries to
# map and relocate). It also runs on any distribution the RPM lands on.
# --target keeps the flag off the build scripts and proc-macros.
# SHA-256 (the ledger's hashes of what we wrote) in its compact form where
# the CPU has no SHA instructions: the unrolled one is 3,500 instructions
# that QEMU translates at every start of a stage, for hashes of a few
# small files.
HOST := $(or $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p'),x86_64-unknown-linux-gnu)
STATIC := --target $(HOST) --config 'target.$(HOST).rustflags=["-C","target-feature=+crt-static","--cfg","sha2_backend_soft=\"compact\""]'
BIN := target/$(HOST)/boot/gandi-vm
MAP := target/$(HOST)/release/gandi-map
DOCS := target/docs
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DIST := dist

.PHONY: all build deps docs install deb rpm packages check-packages test lint unit unprivileged \
	verify-units fault-test vm-test vm-test-matrix vm-fault-test vm-bench bench demo clean

all: build

deps:
	./scripts/install-deps

# The map with the release profile; gandi-vm with `boot` (Cargo.toml).
build:
	$(CARGO) build --release --locked $(STATIC) --bin gandi-map
	$(CARGO) build --profile boot --locked $(STATIC) --bin gandi-vm

docs:
	rm -rf $(DOCS)
	$(CARGO) run --locked --quiet -p xtask -- docs $(DOCS)

# Installs under DESTDIR, with the shipped folders at their system places.
install: build docs
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/gandi-vm
	install -D -m 0755 $(MAP) $(DESTDIR)$(LIBEXECDIR)/gandi-map
	install -d $(DESTDIR)/etc $(DESTDIR)/etc/gandi/hooks
	ln -sfn $(MAP_LINK) $(DESTDIR)/etc/auto.gandi
	install -D -m 0644 auto.master.d/gandi.autofs $(DESTDIR)/etc/auto.master.d/gandi.autofs
	install -D -m 0644 etc/default/gandi $(DESTDIR)$(SETTINGS_FILE)
	install -D -m 0644 etc/gandi/sysctl.conf $(DESTDIR)/etc/gandi/sysctl.conf
	install -d $(DESTDIR)$(UDEVDIR)/rules.d
	for r in udev/rules.d/*.rules; do \
		sed 's#/usr/bin/gandi-vm#$(PREFIX)/bin/gandi-vm#g' $$r > $(DESTDIR)$(UDEVDIR)/rules.d/$$(basename $$r); \
		chmod 0644 $(DESTDIR)$(UDEVDIR)/rules.d/$$(basename $$r); \
	done
	install -d $(DESTDIR)$(UNITDIR)
	for u in systemd/system/*; do \
		sed 's#/usr/bin/gandi-vm#$(PREFIX)/bin/gandi-vm#g' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u); \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$u); \
	done
	install -d $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5
	for m in $(DOCS)/man8/*.8; do gzip -9n < $$m > $(DESTDIR)$(PREFIX)/share/man/man8/$$(basename $$m).gz; done
	gzip -9n < $(DOCS)/man5/gandi.5 > $(DESTDIR)$(PREFIX)/share/man/man5/gandi.5.gz
	install -D -m 0644 $(DOCS)/completions/gandi-vm.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/gandi-vm
	install -D -m 0644 $(DOCS)/completions/_gandi-vm $(DESTDIR)$(ZSH_COMPDIR)/_gandi-vm
	install -D -m 0644 $(DOCS)/completions/gandi-vm.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/gandi-vm.fish
	install -D -m 0644 LICENSE $(DESTDIR)$(PREFIX)/share/licenses/gandi-vm/LICENSE

# gandi-vm's .deb, and gandi-hosting-vm2 3.0: a transitional package that
# moves a VM of the original suite to gandi-vm on `apt upgrade`.
deb: deps build docs
	rm -rf $(DIST)/deb-root $(DIST)/transitional-root
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DIST)/deb-root PREFIX=/usr
	# Debian's copyright names the licence in /usr/share/common-licenses.
	rm -rf $(DIST)/deb-root/usr/share/licenses
	install -D -m 0644 packaging/deb/copyright $(DIST)/deb-root/usr/share/doc/gandi-vm/copyright
	gzip -9n < packaging/changelog > $(DIST)/deb-root/usr/share/doc/gandi-vm/changelog.gz
	install -D -m 0644 packaging/deb/lintian-overrides $(DIST)/deb-root/usr/share/lintian/overrides/gandi-vm
	install -d $(DIST)/deb-root/DEBIAN
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' \
		-e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DIST)/deb-root | cut -f1)/" \
		packaging/deb/control.in > $(DIST)/deb-root/DEBIAN/control
	install -m 0644 packaging/deb/conffiles $(DIST)/deb-root/DEBIAN/conffiles
	./scripts/deb-preinst packaging/deb/preinst $(DIST)/deb-root > $(DIST)/deb-root/DEBIAN/preinst
	chmod 0755 $(DIST)/deb-root/DEBIAN/preinst
	install -m 0755 packaging/deb/postinst packaging/deb/postrm $(DIST)/deb-root/DEBIAN/
	dpkg-deb --root-owner-group -Zxz --build $(DIST)/deb-root $(DIST)/gandi-vm_$(VERSION)_$(ARCH).deb
	install -D -m 0644 packaging/deb/copyright $(DIST)/transitional-root/usr/share/doc/gandi-hosting-vm2/copyright
	gzip -9n < packaging/deb/transitional.changelog > $(DIST)/transitional-root/usr/share/doc/gandi-hosting-vm2/changelog.gz
	install -d $(DIST)/transitional-root/DEBIAN
	install -m 0644 packaging/deb/transitional.control $(DIST)/transitional-root/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(DIST)/transitional-root $(DIST)/gandi-hosting-vm2_3.0_all.deb

rpm: deps build docs
	rm -rf $(DIST)/rpm-root $(DIST)/rpmbuild
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DIST)/rpm-root PREFIX=/usr \
		SETTINGS_FILE=/etc/sysconfig/gandi ZSH_COMPDIR=/usr/share/zsh/site-functions \
		MAP_LINK=../usr/libexec/gandi-vm/gandi-map
	# Units enabled by `systemctl preset` on the first install only.
	install -D -m 0644 packaging/rpm/80-gandi-vm.preset $(DIST)/rpm-root/usr/lib/systemd/system-preset/80-gandi-vm.preset
	# The spec with its %changelog made from packaging/changelog.
	mkdir -p $(DIST)/rpmbuild
	{ cat packaging/rpm/gandi-vm.spec; echo; echo '%changelog'; ./scripts/rpm-changelog packaging/changelog; } \
		> $(DIST)/rpmbuild/gandi-vm.spec
	rpmbuild -bb --quiet \
		--define "_topdir $(CURDIR)/$(DIST)/rpmbuild" \
		--define "version $(VERSION)" \
		--define "stage $(CURDIR)/$(DIST)/rpm-root" \
		--define "_rpmdir $(CURDIR)/$(DIST)" \
		--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
		--define "__os_install_post %{nil}" \
		$(DIST)/rpmbuild/gandi-vm.spec

packages: deb rpm

# File lists, maintainer scripts, man pages; the .deb installed into and
# purged from a scratch Debian root.
check-packages: packages
	BIN=$(BIN) ./scripts/check-packages $(DIST)/gandi-vm_$(VERSION)_$(ARCH).deb $(DIST)/gandi-vm-$(VERSION)-1.x86_64.rpm $(DOCS) \
		$(DIST)/gandi-hosting-vm2_3.0_all.deb

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --locked

# The same tests as a normal user: system tests skipped, and said so.
unprivileged:
	./scripts/test-unprivileged

# systemd-analyze verify on the shipped units (with the test build's binary).
verify-units:
	$(CARGO) build --locked
	./scripts/verify-units target/debug/gandi-vm

test: deps lint unit unprivileged verify-units check-packages

# Processes killed at random moments, broken state, a pulled disk, load
# (fixed seeds; a few minutes here). One test at a time: each one drives
# loop devices, udevd or automount of its own. Then, in a VM (this host
# refuses online ext4 resizing), a grower of a mounted ext4 killed while
# it works.
fault-test: deps deb
	$(CARGO) test --locked --test faults -- --ignored --test-threads=1
	./tests/vm/vm_test.py --grower $(DIST)/gandi-vm_$(VERSION)_$(ARCH).deb

# Boots a Debian 12 VM with the package (TCG) and checks every promise.
vm-test: deb
	./tests/vm/vm_test.py $(DIST)/gandi-vm_$(VERSION)_$(ARCH).deb

# Every release and network stack we claim, booted (tests/vm/matrix.py):
# Debian 11, 12, 13 with networkd (13 with predictable NIC names), Debian
# 12 with ifupdown, NetworkManager and netplan; a smaller set of checks on
# each, two VMs at a time (GANDI_VM_JOBS), one table at the end.
vm-test-matrix: deb
	./tests/vm/matrix.py $(DIST)/gandi-vm_$(VERSION)_$(ARCH).deb

# Power cuts (QEMU killed) during bootstrap, root growth and data growth,
# three times each; the VM must come back whole (about 20 minutes).
vm-fault-test: deb
	./tests/vm/vm_test.py --faults $(DIST)/gandi-vm_$(VERSION)_$(ARCH).deb

# The same image booted bare, with our package, and with cloud-init, 10
# interleaved first boots each (GANDI_BENCH_BOOTS) plus second boots of
# bare and ours (GANDI_BENCH_SECOND): close to two hours here.
vm-bench: deb
	./tests/vm/vm_test.py --bench $(DIST)/gandi-vm_$(VERSION)_$(ARCH).deb

demo: deps build
	BIN=$(BIN) MAP=$(MAP) ./scripts/demo

# The map is timed beside another build's (BENCH_BASE, a revision; empty
# for none): by default the last release before the folders (0.3.0 as
# first built, flat src/).
BENCH_BASE ?= 2400806
BASE_DIR := target/bench-base

bench: deps build
ifneq ($(BENCH_BASE),)
	rm -rf $(BASE_DIR) && git worktree prune
	git worktree add --detach --force $(BASE_DIR) $(BENCH_BASE)
	# Its program map where it has one (maps/main.rs), else gandi-vm, which
	# acted as the map through a link named auto.gandi.
	cd $(BASE_DIR) && if [ -f maps/main.rs ]; then bin=gandi-map; else bin=gandi-vm; fi && \
		$(CARGO) build --release --locked $(STATIC) --bin $$bin && \
		ln -sfn target/$(HOST)/release/$$bin baseline-map
	GANDI_BENCH_BASELINE=$(BASE_DIR)/baseline-map \
		$(CARGO) bench --locked $(STATIC) --bench map
	git worktree remove --force $(BASE_DIR)
else
	$(CARGO) bench --locked $(STATIC) --bench map
endif
	$(CARGO) bench --locked $(STATIC) --bench boot

clean:
	$(CARGO) clean
	rm -rf $(DIST)
