#!/bin/bash
# make release: everything a release publishes, in target/release-assets/:
#
#   qus-VERSION-linux-ARCH.tar.gz    static qus and qusd with man pages, units,
#                                    completions and the example drop-in, laid
#                                    out from / (`tar -C / -xzf`), per host arch
#   qus_VERSION-1_ARCH.deb, qus-VERSION-1.ARCH.rpm   the packages, per host arch
#   qemu-X.Y-linux-ARCH.tar.zst      the default QEMU channel's emulators for the
#                                    Docker platform set, per host arch (what the
#                                    GitHub Action installs)
#   qus-qemuC_VERSION_ARCH.deb, qus-qemuC-VERSION.ARCH.rpm
#                                    the QEMU channel C as a package (all its
#                                    emulators under /usr/lib/qus/qemu/C and a
#                                    drop-in; packaging/qemu/package.sh), per
#                                    host arch, for each channel in
#                                    QUS_RELEASE_CHANNELS (default: the default
#                                    channel, 11; e.g. "11 10")
#   SHA256SUMS                       every file above
#
# ARCH: amd64, arm64, armv7, ppc64le, s390x, 386. Archives are reproducible
# (sorted, owner 0, mtime SOURCE_DATE_EPOCH, default: the last commit).
#
#   packaging/release.sh [ARCH,…]    (default: all six)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
die() { echo "release.sh: $*" >&2; exit 1; }
# shellcheck source=packaging/cross.sh
. packaging/cross.sh

arches=${1:-$cross_all}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
channel=$(packaging/qemu/channel.sh --default)
package_channels=${QUS_RELEASE_CHANNELS:-$channel}
out=target/release-assets
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
for tool in cargo-deb cargo-generate-rpm zstd; do
    command -v "$tool" >/dev/null || die "$tool is missing (cargo install cargo-deb cargo-generate-rpm; apt-get install zstd)"
done
IFS=, read -r -a list <<<"$arches"
for a in "${list[@]}"; do [ -n "$(cross_row "$a")" ] || die "unknown arch $a (known: $cross_all)"; done

scratch=$(mktemp -d)
# target/dist holds this machine's binaries, which the packages' asset
# lists name: each arch's are put there in turn and the host's put back.
mkdir -p target/dist "$scratch/dist"
cp -a target/dist/. "$scratch/dist/"
trap 'cp -a "$scratch/dist/." target/dist/; rm -rf "$scratch"' EXIT

make -s assets >&2
rm -rf "$out"
mkdir -p "$out"
tarball() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" "$@"; }
# The Docker platform set (what tonistiigi/binfmt and setup-qemu-action
# install by default), as QEMU names them.
docker_set="aarch64 arm riscv64 ppc64le s390x i386 x86_64 mips64el mips64 loongarch64"

for a in "${list[@]}"; do
    read -r _ variant triple _ deb own <<<"$(cross_row "$a")"
    name=$a
    [ "$a" = arm ] && name=arm$variant
    cross_build "$a" >/dev/null
    echo "release: $name ($triple)" >&2

    stage=$(mktemp -d -p "$scratch")
    make -s install DESTDIR="$stage" PREFIX=/usr DIST="target/$triple/release" >/dev/null
    tarball -C "$stage" -cf - . | gzip -9n > "$out/qus-$version-linux-$name.tar.gz"

    install -m755 "target/$triple/release/qus" "target/$triple/release/qusd" target/dist/
    cargo deb --no-build --no-strip --target "$triple" --output "$out/" >/dev/null
    cargo generate-rpm --target "$triple" -o "$out/" >/dev/null

    emu=$(mktemp -d -p "$scratch")
    qv=$(packaging/qemu/channel.sh "$channel" "$deb" "$emu")
    short=$(echo "${qv#*:}" | sed -E 's/^([0-9]+\.[0-9]+).*/\1/')
    files=()
    for q in $docker_set; do
        [ "$q" = "$own" ] && continue
        [ -f "$emu/qemu-$q" ] && files+=("qemu-$q")
        [ -f "$emu/qemu-$q-static" ] && files+=("qemu-$q-static")
    done
    # A 128 MiB window: the emulators share most of their code, and zstd's
    # own decoder takes windows up to 128 MiB without being asked.
    tarball -C "$emu" -cf - "${files[@]}" | zstd -q -19 --long=27 -T0 > "$out/qemu-$short-linux-$name.tar.zst"
    echo "release: $name: qemu $qv, ${#files[@]} emulators" >&2
    for c in $package_channels; do
        echo "release: $name: $(packaging/qemu/package.sh "$c" "$deb" "$out")" >&2
    done
    rm -rf "$stage" "$emu"
done
(cd "$out" && sha256sum -- * > SHA256SUMS)
ls -l "$out" >&2
