#!/bin/bash
# Check the multi-arch images built by `packaging/container/build.sh --arch
# LIST`: the manifest list names every arch with the right architecture and
# variant, and each foreign image really works on a host of another arch.
#
# For each foreign image (arm64, s390x, …): take its root file system, and
# in a private user + mount + pid namespace with its own binfmt_misc, let
# this machine's qus register the emulator for that arch first (so the
# image's programs can run here at all), then run the image's own `qus
# register` under emulation with the image's own emulators. Its native
# probes must find x86_64 native (the kernel runs it) and leave it alone;
# the entries must point at the image's emulators (programs of the image's
# arch themselves); and a riscv64 and an s390x/aarch64 program must then
# run through them: nested emulation, slow and real.
#
#   tests/container/multiarch.sh MANIFEST ARCH[,ARCH…] [HOST-QUS]
set -uo pipefail
cd "$(dirname "$0")/../.."
manifest=${1:?manifest name}
arches=${2:?arch list}
host_qus=${3:-target/dist/qus}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
b() { buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}" "$@"; }
pass=0 fail=0
ok()  { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
[ -x "$host_qus" ] || { echo "multiarch: no $host_qus (cargo build --release)"; exit 1; }

declare -A variant=([amd64]="" [arm64]=v8 [arm]=v7 [ppc64le]="" [s390x]="" [386]="")
declare -A qemu=([amd64]=x86_64 [arm64]=aarch64 [arm]=arm [ppc64le]=ppc64le [s390x]=s390x [386]=i386)
declare -A elf=([amd64]="X86-64" [arm64]="AArch64" [arm]="ARM" [ppc64le]="PowerPC64" [s390x]="S/390" [386]="80386")

json=$(b manifest inspect "$manifest" 2>&1) || { bad "manifest $manifest: $json"; echo "multiarch: $pass passed, $fail failed"; exit 1; }
IFS=, read -r -a list <<<"$arches"
n=$(jq '.manifests | length' <<<"$json")
[ "$n" = "${#list[@]}" ] && ok "$manifest lists ${#list[@]} images" || bad "$manifest lists $n images, want ${#list[@]}"
for a in "${list[@]}"; do
    got=$(jq -r --arg a "$a" '.manifests[] | select(.platform.architecture == $a) | "\(.platform.os) \(.platform.variant // "")"' <<<"$json")
    [ "$got" = "linux ${variant[$a]}" ] && ok "manifest: linux/$a${variant[$a]:+/${variant[$a]}}" ||
        bad "manifest entry for $a: '$got', want 'linux ${variant[$a]}'"
    digest=$(jq -r --arg a "$a" '.manifests[] | select(.platform.architecture == $a) | .digest' <<<"$json")
    image_digest=$(b inspect --type image --format '{{.FromImageDigest}}' "localhost/qus-$a:$version" 2>/dev/null)
    [ -n "$digest" ] && [ "$digest" = "$image_digest" ] && ok "manifest's $a digest is localhost/qus-$a:$version" ||
        bad "$a digest $digest vs image $image_digest"
done

for a in "${list[@]}"; do
    [ "$a" = amd64 ] && continue
    echo "== the $a image, run under emulation"
    ctr=$(b from "localhost/qus-$a:$version")
    mnt=$(b mount "$ctr")
    # Debian's names: qemu-ARCH from QEMU 9.1 on, qemu-ARCH-static before.
    emu() { for n in "qemu-$1" "qemu-$1-static"; do [ -f "$mnt/usr/bin/$n" ] && echo "/usr/bin/$n"; done; true; }
    own=$(emu "${qemu[$a]}")
    [ -z "$own" ] && ok "$a image has no emulator for its own arch (qemu-${qemu[$a]})" ||
        bad "$a image carries $own"
    # From QEMU 10 Debian's 32-bit hosts (armhf, i386) carry only the
    # emulators of 32-bit guests: their images are checked with riscv32.
    prog=riscv64; case $a in arm | 386) prog=riscv32 ;; esac
    riscv=$(emu $prog)
    machine=$(readelf -h "$mnt$riscv" 2>/dev/null | sed -n 's/ *Machine: *//p')
    [[ $machine == *"${elf[$a]}"* ]] && ok "$a image's emulators are $a programs ($machine)" ||
        bad "$a image's ${riscv:-qemu-$prog} is '$machine'"
    machine=$(readelf -h "$mnt/usr/bin/qus" 2>/dev/null | sed -n 's/ *Machine: *//p')
    [[ $machine == *"${elf[$a]}"* ]] && ! readelf -l "$mnt/usr/bin/qus" | grep -q "program interpreter" &&
        ok "$a image's qus is a static $a program" || bad "$a image's qus: '$machine'"
    mkdir -p "$mnt/proc" "$mnt/run" "$mnt/tmp" "$mnt/etc/qus.d" "$mnt/dev"
    # What a container runtime provides: QEMU reads /dev/urandom at start.
    for d in null urandom; do touch "$mnt/dev/$d"; done
    cp "probes/bin/$prog" "$mnt/tmp/riscv64-program"
    other=s390x; [ "$a" = s390x ] && other=aarch64
    case $a in arm | 386) other=m68k ;; esac
    cp "probes/bin/$other" "$mnt/tmp/other-program"
    out=$(timeout 600 unshare --user --map-root-user --mount --pid --fork sh -c '
        set -e
        mnt=$1 host_qus=$2 arch=$3 state=$(mktemp -d) conf=$(mktemp -d)
        mount -t proc proc "$mnt/proc"
        for d in null urandom; do mount --bind "/dev/$d" "$mnt/dev/$d"; done
        mount -t binfmt_misc binfmt_misc "$mnt/proc/sys/fs/binfmt_misc"
        # This machine registers the emulator the image needs to run here.
        "$host_qus" --binfmt-misc "$mnt/proc/sys/fs/binfmt_misc" --state-dir "$state/s" \
            --config-dir "$conf" --log-level warn register "$arch" >/dev/null
        echo "== image qus register"
        chroot "$mnt" /usr/bin/qus register 2>&1 | tail -3
        echo "== image qus status --json"
        chroot "$mnt" /usr/bin/qus status --json
        echo "== entries"
        for e in "$mnt"/proc/sys/fs/binfmt_misc/qemu-*; do echo "$(basename "$e") $(sed -n "s/^interpreter //p" "$e")"; done
        echo "== programs"
        chroot "$mnt" /tmp/riscv64-program
        chroot "$mnt" /tmp/other-program
    ' sh "$mnt" "$(realpath "$host_qus")" "${qemu[$a]}" 2>&1)
    rc=$?
    [ $rc = 0 ] || { bad "$a nested run failed (rc $rc)"; echo "$out" | tail -20; }
    status_json=$(sed -n '/^== image qus status --json$/,/^== entries$/p' <<<"$out" | sed '1d;$d')
    x86=$(jq -r '.entries[] | select(.arch == "x86_64") | "\(.state) \(.detail)"' <<<"$status_json" 2>/dev/null)
    # The kernel's arch comes from /proc/sys/kernel/arch (QEMU answers
    # uname() with the emulated arch), so x86_64 is native by definition.
    [[ $x86 == "native the kernel's own arch (x86_64)" ]] &&
        ok "$a qus (run here) finds x86_64 native: the kernel runs it" || bad "$a qus on x86_64: '$x86'"
    grep -q "^qemu-x86_64 " <<<"$out" && bad "$a qus registered qemu-x86_64 over the host's own programs" ||
        ok "$a qus leaves x86_64 alone (no qemu-x86_64 entry)"
    entry=$(grep "^qemu-$prog " <<<"$out")
    [ "$entry" = "qemu-$prog $riscv" ] &&
        ok "qemu-$prog points at the $a image's emulator" || bad "$prog entry: '$entry'"
    grep -qx "qus-probe $prog" <<<"$out" &&
        ok "a $prog program runs through the $a image's emulator (nested emulation)" ||
        bad "$prog program under $a: $(tail -3 <<<"$out")"
    grep -qx "qus-probe $other" <<<"$out" &&
        ok "an $other program runs through the $a image's emulator (nested emulation)" ||
        bad "$other program under $a: $(tail -3 <<<"$out")"
    b umount "$ctr" >/dev/null
    b rm "$ctr" >/dev/null
done
echo "multiarch: $pass passed, $fail failed"
[ $fail = 0 ]
