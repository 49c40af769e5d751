#!/bin/bash
# A real foreign program for the machine tests: Debian's static busybox of
# one release and architecture, cached once.
#
#   tests/machine/busybox.sh DIST ARCH   -> prints the cached busybox's path
#
# apt runs against a private state (its own sources, lists and
# architecture), so the machine's sources and dpkg architectures stay as
# they are. Debian 13's arm64 build carries pointer authentication and BTI
# (readelf -n: "AArch64 feature: BTI, PAC"), as today's images do.
set -euo pipefail
dist=$1 arch=$2
cache=${QUS_MACHINE_CACHE:-/var/cache/qus-machine}/busybox
out=$cache/$dist-$arch/busybox
if [ -x "$out" ]; then echo "$out"; exit 0; fi
state=$cache/apt/$dist-$arch
mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $dist main" > "$state/sources.list"
opts=(-q -o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o "Dir::State::status=/dev/null"
    -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o APT::Sandbox::User=root
    -o Acquire::Languages=none)
apt-get "${opts[@]}" update >/dev/null || { echo "busybox.sh: apt-get update for $dist $arch failed: is deb.debian.org reachable?" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get "${opts[@]}" download "busybox-static:$arch" >/dev/null) ||
    { echo "busybox.sh: cannot download busybox-static:$arch from $dist" >&2; exit 1; }
dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
mkdir -p "$(dirname "$out")"
bb=$tmp/x/usr/bin/busybox; [ -e "$bb" ] || bb=$tmp/x/bin/busybox
install -m755 "$bb" "$out.new"
mv "$out.new" "$out"
echo "$out"
