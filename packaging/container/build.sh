#!/bin/bash
# Build the qus image with buildah (no Docker engine, no registry pulls:
# FROM scratch).
#
#   packaging/container/build.sh [--qemu CHANNEL] [TAG]      this machine's arch only
#   packaging/container/build.sh [--qemu CHANNEL] --arch arm64,s390x [--manifest NAME]
#   packaging/container/build.sh [--qemu CHANNEL] --all [--manifest NAME]   (= make images)
#
# Each image also gets a drop-in for tonistiigi/binfmt, tagged TAG-binfmt
# (and NAME:binfmt for the manifest): the same image with /usr/bin/binfmt
# (qus under that name, tonistiigi's command line) as entry point.
#
# The emulators come from a QEMU channel (packaging/qemu/channel.sh: 11,
# the default; 10; 7.2), Debian's packages for that line, downloaded
# (nothing installed), whatever this machine has installed.
#
# With --arch/--all, each image is cross-built: static qus/qusd for that
# arch (rustup target + Debian's cross gcc), that arch's emulators from the
# channel, minus the emulator for the arch itself (an arm64 image has no
# qemu-aarch64, as a real arm64 host needs none), FROM scratch with
# --arch/--variant set, all joined in one manifest list tagged with the qus
# and the QEMU version: localhost/qus:0.1.0-qemu11.1 and
# localhost/qus:qemu11.1, and :latest for the default channel.
#
# Anything missing (a rustup target, a cross compiler, a package) stops the
# build with a message naming it: it never ships fewer arches than asked.
set -euo pipefail
# A failure inside $(…) must stop the build too.
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
storage=${BUILDAH_STORAGE_DRIVER:-vfs}
b() { buildah --storage-driver "$storage" "$@"; }
die() { echo "build.sh: $*" >&2; exit 1; }

# Scratch directories (build contexts, unpacked packages) live under one
# directory that goes on any exit, failed builds included: a context holds
# ~150 MB of emulators. (Made here, in the main shell: the functions below
# run in $(…) subshells, whose own traps and variables do not come back.)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# shellcheck source=packaging/cross.sh
. packaging/cross.sh
table=$cross_table all=$cross_all host_deb=$cross_host_deb
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

channel=$(packaging/qemu/channel.sh --default)
arches="" manifest="" tag=""
while [ $# -gt 0 ]; do
    case $1 in
        --all) arches=$all ;;
        --arch) arches=${2:?--arch needs a list}; shift ;;
        --arch=*) arches=${1#--arch=} ;;
        --manifest) manifest=${2:?--manifest needs a name}; shift ;;
        --qemu) channel=${2:?--qemu needs a channel}; shift ;;
        --qemu=*) channel=${1#--qemu=} ;;
        -*) die "unknown option $1" ;;
        *) tag=$1 ;;
    esac
    shift
done

packaging/qemu/channel.sh --list | grep -qxF "$channel" ||
    die "unknown QEMU channel '$channel' (known: $(packaging/qemu/channel.sh --list | paste -sd' '))"
default_channel=$(packaging/qemu/channel.sh --default)

row() { cross_row "$1"; }

# The emulators for one Debian arch, in $2, from the QEMU channel asked
# for (never this machine's own packages); prints their Debian version.
emulators_for() {
    packaging/qemu/channel.sh "$channel" "$1" "$2"
}

# Build one arch's image; prints the QEMU version it carries.
build_one() {
    local arch=$1 image=$2
    local r variant target linker deb qemu
    r=$(row "$arch")
    [ -n "$r" ] || die "unknown arch $arch (known: $all)"
    read -r _ variant target _ deb qemu <<<"$r"
    cross_build "$arch" >/dev/null
    local ctx
    ctx=$(mktemp -d -p "$scratch")
    cp packaging/container/Containerfile "$ctx/"
    cp "target/$target/release/qus" "target/$target/release/qusd" "$ctx/"
    # qus started as binfmt answers tonistiigi/binfmt's command line. A
    # link, added from a tar (COPY follows links and would add a second
    # 3 MB copy of qus; ADD unpacks a local tar as it is).
    mkdir -p "$ctx/links/usr/bin"
    ln -s qus "$ctx/links/usr/bin/binfmt"
    tar -C "$ctx/links" --owner=0 --group=0 --numeric-owner -cf "$ctx/links.tar" usr/bin/binfmt
    mkdir "$ctx/emulators"
    local qv
    qv=$(emulators_for "$deb" "$ctx/emulators")
    # No emulator for the image's own arch: its host runs those natively.
    rm -f "$ctx/emulators/qemu-$qemu-static" "$ctx/emulators/qemu-$qemu"
    local vflag=()
    [ "$variant" != - ] && vflag=(--variant "$variant")
    # Rebuilding a tag leaves its previous image untagged (~350 MB each
    # with vfs): remove it once the new one is in place, unless something
    # else still uses it (then rmi refuses and it stays).
    local old
    old=$(b images -q --no-trunc "$image" 2>/dev/null | head -1 || true)
    b bud --layers=false --arch "$arch" "${vflag[@]}" \
        --label "org.qus.qemu.channel=$channel" --label "org.qus.qemu.version=$qv" \
        -f "$ctx/Containerfile" -t "$image" "$ctx" >&2
    # The published form of the same files: the OCI layout's latest,
    # binfmt, full and gzip images for this arch (oci.py).
    if [ -n "$layout" ]; then
        packaging/container/oci.py arch "$layout" "$arch" "$variant" "$ctx" \
            --version "$version" --channel "$channel" --qemu-version "$qv" >&2
    fi
    local new
    new=$(b images -q --no-trunc "$image" 2>/dev/null | head -1 || true)
    if [ -n "$old" ] && [ "$old" != "$new" ]; then
        b rmi "$old" >/dev/null 2>&1 || true
    fi
    rm -rf "$ctx"
    # The drop-in for tonistiigi/binfmt (setup-qemu-action's image:): the
    # same image with binfmt as its entry point.
    local ctr drop_in old_drop_in new_drop_in
    drop_in=$(binfmt_tag "$image")
    old_drop_in=$(b images -q --no-trunc "$drop_in" 2>/dev/null | head -1 || true)
    ctr=$(b from "$image")
    b config --entrypoint '["/usr/bin/binfmt"]' --cmd '[]' "$ctr" >/dev/null
    b commit -q "$ctr" "$drop_in" >/dev/null
    b rm "$ctr" >/dev/null
    new_drop_in=$(b images -q --no-trunc "$drop_in" 2>/dev/null | head -1 || true)
    if [ -n "$old_drop_in" ] && [ "$old_drop_in" != "$new_drop_in" ]; then
        b rmi "$old_drop_in" >/dev/null 2>&1 || true
    fi
    echo "$qv"
}

layout=""

# localhost/qus:ci -> localhost/qus:ci-binfmt
binfmt_tag() { echo "$1-binfmt"; }

if [ -z "$arches" ]; then
    # This machine's arch only (what CI's container check and the .deb use).
    host_arch=$(echo "$table" | awk -v d="$host_deb" '$5 == d {print $1}')
    [ -n "$host_arch" ] || die "no image recipe for this machine ($host_deb)"
    qv=$(build_one "$host_arch" "${tag:-localhost/qus:latest}")
    echo "built ${tag:-localhost/qus:latest} (QEMU $qv, channel $channel)"
    exit 0
fi

# Every arch asked for, or nothing: check them all before building any.
IFS=, read -r -a list <<<"$arches"
for a in "${list[@]}"; do [ -n "$(row "$a")" ] || die "unknown arch $a (known: $all)"; done
manifest_base=${manifest:-localhost/qus}
# The multi-arch images also go to an OCI image layout, compressed as
# published (zstd with a 128 MiB window; see oci.py): QUS_OCI_LAYOUT,
# default target/oci. An earlier build's unfinished arches are dropped.
layout=${QUS_OCI_LAYOUT:-target/oci}
rm -rf "$layout/pending"
mkdir -p "$layout"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
QUS_CREATED=$(git log -1 --format=%cI 2>/dev/null || true)
export SOURCE_DATE_EPOCH QUS_CREATED
qemu_version=""
images=()
for a in "${list[@]}"; do
    qv=$(build_one "$a" "localhost/qus-$a:$version") || exit 1
    short=$(echo "$qv" | sed -E 's/^[0-9]+://; s/^([0-9]+\.[0-9]+).*/\1/')
    images+=("localhost/qus-$a:$version")
    echo "built localhost/qus-$a:$version (QEMU $qv)"
    # An arch Debian has no build of the channel for (channel.sh said so)
    # does not name the channel's tag.
    case $short in "$channel" | "$channel".*) ;; *) continue ;; esac
    if [ -n "$qemu_version" ] && [ "$short" != "$qemu_version" ]; then
        die "QEMU versions differ between arches ($qemu_version vs $short for $a)"
    fi
    qemu_version=$short
done
[ -n "$qemu_version" ] || die "no arch asked for has a build of QEMU channel $channel"
# VERSION-qemuX.Y and qemuX.Y pin a QEMU line; latest is the default
# channel's (it moves to a new channel when the default does, which the
# tests decide).
tags=("$manifest_base:$version-qemu$qemu_version" "$manifest_base:qemu$qemu_version")
[ "$channel" = "$default_channel" ] && tags+=("$manifest_base:latest")
# tag IMAGE-SUFFIX: one manifest list per tag, of each arch's image (or of
# its binfmt drop-in).
for t in "${tags[@]}" "$manifest_base:binfmt"; do
    b manifest rm "$t" >/dev/null 2>&1 || b rmi "$t" >/dev/null 2>&1 || true
    b manifest create "$t" >/dev/null
    for i in "${images[@]}"; do
        [ "$t" = "$manifest_base:binfmt" ] && i=$(binfmt_tag "$i")
        b manifest add "$t" "containers-storage:$i" >/dev/null
    done
done
tags+=("$manifest_base:binfmt")
echo "manifest ${tags[*]}: ${list[*]}"
refs=("$version-qemu$qemu_version=latest" "qemu$qemu_version=latest"
      "qemu$qemu_version-full=full" "qemu$qemu_version-binfmt=binfmt")
[ "$channel" = "$default_channel" ] && refs+=(latest=latest full=full binfmt=binfmt gzip=gzip)
packaging/container/oci.py index "$layout" "${refs[@]}"
echo "OCI layout $layout: ${refs[*]%%=*}"
