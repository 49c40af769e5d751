#!/bin/bash
# QEMU channels: the emulators of one QEMU release line, taken from
# Debian's archive (never from whatever this machine has installed), so an
# image, a CI job or a test can pin a line and roll back to an older one.
#
#   packaging/qemu/channel.sh CHANNEL DEBIAN-ARCH DEST   copy the emulators into DEST,
#                                                        print the Debian version
#   packaging/qemu/channel.sh --list                     the channels, newest first
#   packaging/qemu/channel.sh --default                  the default channel
#
# channel  suites searched            package           QEMU
# 11       trixie-backports, sid      qemu-user         11.x (the default: `latest`)
# 10       trixie                     qemu-user         10.0
# 7.2      bookworm                   qemu-user-static  7.2 (rollback)
#
# From 1:9.1 Debian's static emulators are in qemu-user, named
# /usr/bin/qemu-ARCH (static-pie), with alias links (qemu-arm64 ->
# qemu-aarch64); before, qemu-user-static's /usr/bin/qemu-ARCH-static.
# Only regular files are copied: an alias link is not another emulator.
#
# A host arch for which Debian has no build of a channel (11 for armhf and
# i386: the newest there is 10.2) takes the newest version the channel's
# suites have, and says so on stderr.
#
# apt runs against a private state under /var/cache/qus/apt (its own
# sources, lists and architecture), so the machine's sources, its dpkg
# architectures and its installed packages stay as they are. Packages are
# kept in /var/cache/qus/debs/CHANNEL/ARCH; lists are refreshed once a day
# or when a download fails.
set -euo pipefail
shopt -s inherit_errexit
die() { echo "channel.sh: $*" >&2; exit 1; }

channels="11:trixie-backports sid:qemu-user
10:trixie:qemu-user
7.2:bookworm:qemu-user-static"
default=11

case ${1:-} in
    --list) echo "$channels" | cut -d: -f1; exit 0 ;;
    --default) echo "$default"; exit 0 ;;
esac
[ $# -eq 3 ] || die "usage: channel.sh CHANNEL DEBIAN-ARCH DEST (channels: $(echo "$channels" | cut -d: -f1 | paste -sd' '))"
channel=$1 arch=$2 dest=$3
row=$(echo "$channels" | awk -F: -v c="$channel" '$1 == c')
[ -n "$row" ] || die "unknown QEMU channel '$channel' (known: $(echo "$channels" | cut -d: -f1 | paste -sd' '))"
IFS=: read -r _ suites package <<<"$row"
[ -d "$dest" ] || die "$dest is not a directory"

cache=${QUS_CACHE:-/var/cache/qus}
state=$cache/apt/$channel-$arch
debs=$cache/debs/$channel/$arch
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$debs"
: > "$state/sources.list"
for s in $suites; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $s main" >> "$state/sources.list"
done
apt_opts=(-q -o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
    -o "Dir::State::status=/dev/null"
    -o "APT::Architecture=$arch" -o "APT::Architectures=$arch"
    -o APT::Sandbox::User=root -o Acquire::Languages=none
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false)

refresh() {
    apt-get "${apt_opts[@]}" update >/dev/null ||
        die "apt-get update failed for channel $channel ($suites, $arch): is deb.debian.org reachable?"
    touch "$state/updated"
}
if [ ! -e "$state/updated" ] || [ -n "$(find "$state/updated" -mmin +1440)" ]; then
    refresh
fi

# The newest version of the package whose upstream version is the
# channel's (1:11.1.3+ds-2~bpo13+1 is in channel 11), else the newest at all.
pick() {
    local all
    all=$(apt-cache "${apt_opts[@]}" madison "$package" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}')
    [ -n "$all" ] || return 1
    local mine
    mine=$(echo "$all" | awk -v c="$channel" '{v = $0; sub(/^[0-9]+:/, "", v); n = length(c); if (substr(v, 1, n) == c && substr(v, n + 1, 1) !~ /[0-9]/) print $0}')
    newest() { local best=""; while read -r v; do
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
    done; echo "$best"; }
    if [ -n "$mine" ]; then
        echo "$mine" | newest
    else
        local v
        v=$(echo "$all" | newest)
        echo "channel.sh: Debian has no QEMU $channel build for $arch; using $v, the newest in $suites" >&2
        echo "$v"
    fi
}
version=$(pick) || { refresh; version=$(pick); } ||
    die "no $package for $arch in $suites"

# The name apt-get download gives it (the epoch's colon escaped).
file=$debs/${package}_${version/:/%3a}_$arch.deb
if [ ! -e "$file" ]; then
    get() { (cd "$debs" && apt-get "${apt_opts[@]}" download "$package:$arch=$version" >/dev/null) && [ -e "$file" ]; }
    get || { refresh; get; } || die "cannot download $package:$arch=$version"
    # Older versions of the channel are not kept.
    find "$debs" -name '*.deb' ! -name "$(basename "$file")" -delete
fi

x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
dpkg-deb -x "$file" "$x"
n=0
for f in "$x"/usr/bin/qemu-*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    cp "$f" "$dest/"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || die "$file holds no emulators"
echo "$version"
