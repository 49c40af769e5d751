#!/bin/bash
# debootstrap of a foreign-architecture root (an arm64 machine built on an
# x86_64 one), used by root.sh:
#
#   foreign-stage.sh DIST ARCH PACKAGES ROOT MIRROR
#
# The first stage unpacks; the second runs the packages' scripts under
# QEMU user-mode emulation, in a user namespace that maps root's ids 1:1
# (so the files belong to the ids they name) and that has its own
# binfmt_misc instance (Linux 6.7+): the host's registrations are neither
# used nor touched. mknod is refused in a user namespace, so debootstrap's
# device set-up is skipped: the guest kernel's devtmpfs provides /dev.
# The initrd lists the few modules a virtio disk needs (MODULES=list):
# the default (most) runs realpath per module under emulation for ~30 min.
set -euo pipefail
dist=$1 arch=$2 pkgs=$3 root=$4 mirror=$5
case $arch in
    arm64) qarch=aarch64 ;;
    *) echo "foreign-stage.sh: no emulator known for $arch" >&2; exit 2 ;;
esac
emu=$(command -v "qemu-$qarch-static" || command -v "qemu-$qarch" || true)
[ -n "$emu" ] || { echo "foreign-stage.sh: needs qemu-$qarch-static (apt-get install qemu-user-static)" >&2; exit 1; }
conf=/usr/lib/binfmt.d/qemu-$qarch.conf
[ -e "$conf" ] || { echo "foreign-stage.sh: $conf missing (apt-get install qemu-user-static)" >&2; exit 1; }
# root's ids, 1:1, for the second stage's user namespace (newuidmap asks
# /etc/subuid even for root), only while it runs: left there, it would make
# uid 65534 one of root's own subordinate ids for everything else on this
# machine (qus's safety rules read /etc/subuid too).
added=""
for f in /etc/subuid /etc/subgid; do
    grep -qx 'root:0:65536' "$f" 2>/dev/null || { echo 'root:0:65536' >> "$f"; added="$added $f"; }
done
cleanup() { for f in $added; do sed -i '/^root:0:65536$/d' "$f"; done; }
trap cleanup EXIT

debootstrap --foreign --variant=minbase --arch="$arch" --include="$pkgs" "$dist" "$root" "$mirror"
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo MODULES=list > "$root/etc/initramfs-tools/conf.d/qus-machine.conf"
mkdir -p "$root/etc/initramfs-tools"
printf '%s\n' virtio_mmio virtio_pci virtio_blk ext4 crc32c_generic >> "$root/etc/initramfs-tools/modules"
# Skip what a user namespace cannot do (mknod, the sanity checks on it).
cat >> "$root/debootstrap/functions" <<'FN'
setup_devices () { :; }
check_sane_mount () { :; }
FN
# The entry: Debian's own magic and mask, this machine's emulator, F (the
# kernel opens it now, so the root needs no copy of it).
line=$(sed -n "s|^\(:qemu-$qarch:M::[^:]*:[^:]*:\)[^:]*:.*|\1$emu:F|p" "$conf")
# Debian 13's arm64 packages carry pointer authentication, which QEMU 7.2's
# default CPU emulates ~15x slower; cortex-a57 has none.
unshare --user --map-users=0,0,65536 --map-groups=0,0,65536 --mount --pid --net --fork \
    env QEMU_CPU=cortex-a57 LINE="$line" ROOT="$root" sh -c '
    set -e
    mkdir -p /tmp/qus-fs-bm && mount -t binfmt_misc none /tmp/qus-fs-bm
    printf "%s" "$LINE" > /tmp/qus-fs-bm/register
    chroot "$ROOT" /debootstrap/debootstrap --second-stage'
