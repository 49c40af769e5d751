#!/bin/bash
# QEMU channels: the emulators of one QEMU release line, taken from
# Debian's archive (never from whatever this machine has installed), so an
# image, a CI job or a test can pin a line and roll back to an older one.
#
#   packaging/qemu/channel.sh CHANNEL DEBIAN-ARCH DEST   copy the emulators into DEST,
#                                                        print the Debian version
#   packaging/qemu/channel.sh --deb CHANNEL DEBIAN-ARCH  print the version and the cached
#                                                        package's path (nothing extracted)
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
deb_only=""
if [ "${1:-}" = --deb ]; then deb_only=1; shift; set -- "$@" /; fi
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

# The versions to try, best first: the channel's own (its upstream
# version starts with the channel: 1:11.1.3+ds-2~bpo13+1 is in 11),
# newest first, then (no build of the channel for this arch) the others.
candidates() {
    local all
    all=$(apt-cache "${apt_opts[@]}" madison "$package" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}')
    [ -n "$all" ] || return 1
    # dpkg's order (sort -V does not know ~); a handful of versions.
    newest_first() {
        local vs i j t
        mapfile -t vs < <(grep . | sort -u)
        for ((i = 0; i < ${#vs[@]}; i++)); do
            for ((j = i + 1; j < ${#vs[@]}; j++)); do
                if dpkg --compare-versions "${vs[j]}" gt "${vs[i]}"; then
                    t=${vs[i]} vs[i]=${vs[j]} vs[j]=$t
                fi
            done
            echo "${vs[i]}"
        done
    }
    local mine
    mine=$(echo "$all" | awk -v c="$channel" '{v = $0; sub(/^[0-9]+:/, "", v); n = length(c); if (substr(v, 1, n) == c && substr(v, n + 1, 1) !~ /[0-9]/) print $0}')
    echo "$mine" | newest_first
    echo "$all" | grep -vxF -f <(echo "$mine") | newest_first || true
}
list=$(candidates) || { refresh; list=$(candidates); } || die "no $package for $arch in $suites"

# The SHA256 the signed index (verified by apt-get update) gives a version.
indexed_sha256() {
    apt-cache "${apt_opts[@]}" show "$package:$arch=$1" 2>/dev/null | sed -n 's/^SHA256: //p' | head -1
}
# Is this file the package the signed index lists? Checked on every use,
# a cached file too: a cache is only as trusted as whoever could write it
# (a restored CI cache, a planted file with the expected name).
matches_index() {
    local want
    want=$(indexed_sha256 "$2")
    [ -n "$want" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$want" ]
}

# The first candidate that downloads (a mirror may list a build it does not
# have yet), from the cache if it is there and matches the index.
version="" file=""
for v in $list; do
    # The name apt-get download gives it (the epoch's colon escaped).
    f=$debs/${package}_${v/:/%3a}_$arch.deb
    if [ -e "$f" ] && ! matches_index "$f" "$v"; then
        echo "channel.sh: $f does not match the SHA256 of the signed index: not using it; downloading again" >&2
        rm -f "$f"
    fi
    if [ -e "$f" ] || { (cd "$debs" && apt-get "${apt_opts[@]}" download "$package:$arch=$v" >/dev/null 2>&1) && [ -e "$f" ]; }; then
        matches_index "$f" "$v" ||
            die "$f does not match the SHA256 the signed index gives $package:$arch=$v: not unpacking it"
        version=$v file=$f
        break
    fi
    echo "channel.sh: $package:$arch=$v is listed but cannot be downloaded; trying the next" >&2
done
[ -n "$version" ] || { refresh; die "cannot download $package:$arch from $suites (tried: $(echo $list))"; }
case ${version#*:} in
    "$channel" | "$channel".* | "$channel"+*) ;;
    *) echo "channel.sh: Debian has no QEMU $channel build for $arch; using $version, the newest in $suites" >&2 ;;
esac
# Older versions of the channel are not kept.
find "$debs" -name '*.deb' ! -name "$(basename "$file")" -delete

if [ -n "$deb_only" ]; then echo "$version $file"; exit 0; fi
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
