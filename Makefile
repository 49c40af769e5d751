# Build and install qus from source, the way distributions package it:
#   make && make install DESTDIR=/tmp/stage PREFIX=/usr
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
CARGO ?= cargo
ASSETS := target/assets

# What ships is in $(DIST): statically linked binaries (glibc's static
# libc, position-independent) built for the host's target triple. Nothing
# to load at start-up, so a cold `qus register` at boot is ~0.4 ms (about
# a fifth) faster, and one binary runs on any distribution, in containers
# and chroots. qus uses no NSS (no user or host name lookups), the one
# thing static glibc cannot do. STATIC=0 builds the usual dynamically
# linked binaries instead. (`--target` keeps the static flag off the
# build's own proc-macros, which must stay dynamic.)
STATIC ?= 1
DIST := target/dist
TRIPLE = $(shell rustc -vV | sed -n 's/^host: //p')

.PHONY: all build assets install check deb rpm image images release clean

all: build assets

build:
ifeq ($(STATIC),1)
	RUSTFLAGS="-C target-feature=+crt-static $(RUSTFLAGS)" \
	  $(CARGO) build --release --locked --target $(TRIPLE)
	install -Dm755 -t $(DIST) target/$(TRIPLE)/release/qus target/$(TRIPLE)/release/qusd
else
	$(CARGO) build --release --locked
	install -Dm755 -t $(DIST) target/release/qus target/release/qusd
endif

# Man pages and shell completions generated from the CLI definitions,
# by an example built with the same profile, target and flags as the
# binaries: it reuses their build instead of a second (debug) one.
assets:
ifeq ($(STATIC),1)
	RUSTFLAGS="-C target-feature=+crt-static $(RUSTFLAGS)" \
	  $(CARGO) run --release --quiet --example assets --locked --target $(TRIPLE) -- $(ASSETS)
else
	$(CARGO) run --release --quiet --example assets --locked -- $(ASSETS)
endif
	cp man/qus.d.5 $(ASSETS)/man/qus.d.5
	gzip -9nf $(ASSETS)/man/qus.1 $(ASSETS)/man/qusd.8 $(ASSETS)/man/qus.d.5

# No build here: `make && sudo make install` must work without cargo in
# root's PATH. The units name $(BINDIR), wherever PREFIX puts it.
install:
	@for f in $(DIST)/qus $(DIST)/qusd $(ASSETS)/man/qus.1.gz; do \
	  test -e $$f || { echo "make install: $$f is missing: run 'make' first (as yourself)"; exit 1; }; \
	done
	install -Dm755 $(DIST)/qus $(DESTDIR)$(BINDIR)/qus
	install -Dm755 $(DIST)/qusd $(DESTDIR)$(BINDIR)/qusd
	install -dm755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR)
	sed 's|/usr/bin/qus|$(BINDIR)/qus|g' dist/systemd/qusd.service > $(DESTDIR)$(UNITDIR)/qusd.service
	for u in qus-podman qusd-podman; do \
	  sed 's|/usr/bin/qus|$(BINDIR)/qus|g' dist/systemd/user/$$u.service > $(DESTDIR)$(USERUNITDIR)/$$u.service; \
	done
	chmod 644 $(DESTDIR)$(UNITDIR)/qusd.service $(DESTDIR)$(USERUNITDIR)/*.service
	install -Dm644 etc/qus.d/50-example.toml $(DESTDIR)$(SYSCONFDIR)/qus.d/50-example.toml
ifeq ($(PREFIX),/usr)
	# Where packages drop vendor defaults; qus reads /usr/lib/qus.d
	# whatever PREFIX is, so a /usr/local install makes no directory of it.
	install -dm755 $(DESTDIR)/usr/lib/qus.d
endif
	install -Dm644 $(ASSETS)/man/qus.1.gz $(DESTDIR)$(MANDIR)/man1/qus.1.gz
	install -Dm644 $(ASSETS)/man/qusd.8.gz $(DESTDIR)$(MANDIR)/man8/qusd.8.gz
	install -Dm644 $(ASSETS)/man/qus.d.5.gz $(DESTDIR)$(MANDIR)/man5/qus.d.5.gz
	for b in qus qusd; do \
	  install -Dm644 $(ASSETS)/completions/$$b.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/$$b; \
	  install -Dm644 $(ASSETS)/completions/_$$b $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_$$b; \
	  install -Dm644 $(ASSETS)/completions/$$b.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/$$b.fish; \
	done

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

deb: all
	$(CARGO) deb --no-build --no-strip

rpm: all
	$(CARGO) generate-rpm

# QEMU=11|10|7.2 picks the QEMU channel (default: 11, which is :latest).
QEMU ?=
QEMU_OPT = $(if $(QEMU),--qemu $(QEMU))

image:
	packaging/container/build.sh $(QEMU_OPT)

# Every host arch (amd64, arm64, arm/v7, ppc64le, s390x, 386) in one
# manifest list tagged with the qus and QEMU versions.
images:
	packaging/container/build.sh $(QEMU_OPT) --all

# Every release asset (tarballs, .deb and .rpm per host arch, the QEMU
# channel's emulators, SHA256SUMS) in target/release-assets.
release:
	packaging/release.sh

clean:
	$(CARGO) clean
