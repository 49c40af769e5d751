#!/bin/bash
# Build (once) and cache a Debian guest root for the machine tests:
#
#   tests/machine/root.sh DIST ARCH   -> prints the cached root's path
#
# The root holds systemd, a Debian kernel and its initrd in /boot, and the
# distribution's own QEMU user-mode packages, as a user's host would. It is
# cached under $QUS_MACHINE_CACHE (default /var/cache/qus-machine), keyed by
# the package list, so a change to the list builds a new root and an
# unchanged one is never fetched twice. Needs root, debootstrap; a foreign
# ARCH also needs qemu-user-static (the second stage runs emulated).
set -euo pipefail
dist=$1 arch=$2
cache=${QUS_MACHINE_CACHE:-/var/cache/qus-machine}
mirror=${QUS_MACHINE_MIRROR:-http://deb.debian.org/debian}
case $arch in
    amd64) kernel=linux-image-amd64 ;;
    arm64) kernel=linux-image-arm64 ;;
    *) echo "root.sh: no kernel package known for $arch" >&2; exit 2 ;;
esac
# The distribution's QEMU, as its users install it: Debian 12 has
# qemu-user-static; from Debian 13 on qemu-user + qemu-user-binfmt.
case $dist in
    bookworm) qemu=qemu-user-static ;;
    trixie) qemu=qemu-user,qemu-user-binfmt ;;
    *) echo "root.sh: unknown distribution $dist" >&2; exit 2 ;;
esac
# Debian 13 on amd64 also has Docker (docker.io), for the end-to-end run of
# an arm64 image.
extra=""
[ "$dist-$arch" = trixie-amd64 ] && extra=docker.io,docker-cli
pkgs=systemd,systemd-sysv,dbus,$kernel,initramfs-tools,kmod,udev,procps,util-linux,passwd,$qemu${extra:+,$extra}
key=$(printf '%s %s %s v1' "$dist" "$arch" "$pkgs" | sha256sum | cut -c1-12)
dir=$cache/$dist-$arch-$key
if [ -e "$dir/.complete" ]; then
    echo "$dir/root"
    exit 0
fi
mkdir -p "$cache"
rm -rf "$dir"
mkdir -p "$dir"
t0=$(date +%s)
if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    debootstrap --variant=minbase --arch="$arch" --include="$pkgs" "$dist" "$dir/root" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
        { tail -20 "$dir/debootstrap.log" >&2; echo "root.sh: debootstrap $dist $arch failed (log: $dir/debootstrap.log)" >&2; exit 1; }
else
    "$(dirname "$0")/foreign-stage.sh" "$dist" "$arch" "$pkgs" "$dir/root" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
        { tail -20 "$dir/debootstrap.log" >&2; echo "root.sh: foreign debootstrap $dist $arch failed (log: $dir/debootstrap.log)" >&2; exit 1; }
fi
ls "$dir"/root/boot/vmlinuz-* "$dir"/root/boot/initrd.img-* >/dev/null ||
    { echo "root.sh: $dist $arch root has no kernel or initrd in /boot" >&2; exit 1; }
touch "$dir/.complete"
echo "root.sh: built $dist $arch root in $(( $(date +%s) - t0 )) s" >&2
echo "$dir/root"
