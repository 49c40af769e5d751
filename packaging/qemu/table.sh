#!/bin/bash
# The channel table: for each host arch the images are built for and each
# QEMU channel, the QEMU version Debian has, how many emulators it ships
# (alias links not counted) and their size in an image (minus the host's
# own arch), as a Markdown table. Downloads each package once (cached).
#
#   packaging/qemu/table.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# debian-arch  qemu name of the arch itself
hosts="amd64:x86_64 arm64:aarch64 armhf:arm ppc64el:ppc64le s390x:s390x i386:i386"
echo "| host | channel | QEMU | emulators | image bytes (raw) |"
echo "|---|---|---|---|---|"
for h in $hosts; do
    deb=${h%%:*} own=${h#*:}
    for c in $(packaging/qemu/channel.sh --list); do
        read -r version file < <(packaging/qemu/channel.sh --deb "$c" "$deb")
        # Regular files in /usr/bin named qemu-*: the emulators.
        listing=$(dpkg-deb -c "$file" | awk '$1 ~ /^-/ && $6 ~ /^\.\/usr\/bin\/qemu-/ {print $3, $6}')
        n=$(echo "$listing" | wc -l)
        bytes=$(echo "$listing" | awk -v a="./usr/bin/qemu-$own" '$2 != a && $2 != a "-static" {s += $1} END {print s}')
        echo "| $deb | $c | ${version#*:} | $n | $bytes |"
    done
done
