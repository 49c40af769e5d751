#!/bin/bash
# The machine tests: Debian's own kernels booted under qemu-system (TCG)
# with systemd as PID 1, the host-wide binfmt_misc on systemd's automount,
# the distribution's QEMU packages, and the project's .deb installed,
# upgraded, removed and purged with dpkg (tests/machine/guest.sh says
# what is checked inside).
#
#   tests/machine/run.sh DEBDIR [MACHINE…]
#
# DEBDIR holds qus_*_amd64.deb and the QEMU channel package qus-qemu*_amd64.deb
# (and the same for arm64, for the arm64 host).
# Machines: debian12 (kernel 6.1, qemu-user-static 7.2), debian13 (6.12,
# qemu-user + qemu-user-binfmt 10.0, Docker), debian13-arm64 (an arm64
# host: QEMU's A64FX CPU model, which has no AArch32 at EL0, as Graviton 3
# and Apple silicon, so arm must be emulated). Default: all three.
#
# Prints one PASS/FAIL line per scenario and machine, the boot times, and
# "machine: N passed, M failed". Roots are built once and cached
# (root.sh); each run boots a fresh disk made from the cached root.
# Needs root, debootstrap, qemu-system-x86 and qemu-system-arm, e2fsprogs.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
debdir=$(realpath "$1")
shift
machines=("$@")
[ ${#machines[@]} -gt 0 ] || machines=(debian12 debian13 debian13-arm64)
for tool in qemu-system-x86_64 qemu-system-aarch64 mkfs.ext4 debugfs debootstrap dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "machine: $tool is missing (apt-get install qemu-system-x86 qemu-system-arm e2fsprogs debootstrap)"; exit 1; }
done
say() { echo "$*"; }
fail() { say "FAIL $1 $2 $3"; }

# qus_2.deb: the same package with a higher version, for the in-place upgrade.
next_deb() {
    local deb=$1 out=$2 x
    x=$(mktemp -d)
    dpkg-deb -R "$deb" "$x/p"
    sed -i 's/^Version: \(.*\)$/Version: \1+machine1/' "$x/p/DEBIAN/control"
    dpkg-deb -b -Zgzip "$x/p" "$out" >/dev/null
    rm -rf "$x"
}

# One machine, from the cached root to its results.
machine() {
    local name=$1 dist arch qemu_sys console foreign pac="" mem=1536 debarch
    case $name in
        debian12) dist=bookworm arch=amd64 ;;
        debian13) dist=trixie arch=amd64 mem=2048 ;;
        debian13-arm64) dist=trixie arch=arm64 ;;
        *) fail "$name" machine "unknown machine (known: debian12 debian13 debian13-arm64)"; return ;;
    esac
    local t_root=$SECONDS root
    root=$("$here/root.sh" "$dist" "$arch") || { fail "$name" root "cannot build the $dist $arch root"; return; }
    local deb
    deb=$(ls "$debdir"/qus_*_"$arch".deb 2>/dev/null | head -1)
    [ -n "$deb" ] || { fail "$name" deb "no qus_*_$arch.deb in $debdir"; return; }
    local work
    work=$(mktemp -d /var/tmp/qus-machine-$name.XXXXXX)
    # Keep the disk on failure, for a look; remove it otherwise.
    local g=$work/root
    mkdir -p "$g"
    tar -C "$root" --exclude=./var/cache/apt/archives -cf - . | tar -C "$g" -xf -
    mkdir -p "$g/qus/bin" "$g/qus/debs" "$g/var/cache/apt/archives/partial"
    cp "$deb" "$g/qus/qus_1.deb"
    # The QEMU channel package of the release, switched to and back live.
    cdeb=$(ls "$debdir"/qus-qemu*_"$arch".deb 2>/dev/null | sort -V | tail -1)
    [ -n "$cdeb" ] || { fail "$name" deb "no qus-qemu*_$arch.deb (QEMU channel package) in $debdir"; return; }
    cp "$cdeb" "$g/qus/qus-qemu.deb"
    next_deb "$deb" "$g/qus/qus_2.deb"
    # The distribution's QEMU packages, reinstalled later as an upgrade.
    case $dist in
        bookworm) cp "$root"/var/cache/apt/archives/qemu-user-static_*.deb "$g/qus/debs/" ;;
        *) cp "$root"/var/cache/apt/archives/qemu-user_*.deb "$root"/var/cache/apt/archives/qemu-user-binfmt_*.deb "$g/qus/debs/" ;;
    esac
    : > "$g/qus/foreign.txt"
    add_foreign() { # label debian-dist debian-arch uname-m entry
        local bb
        bb=$("$here/busybox.sh" "$2" "$3") || return 1
        # Named busybox: it picks its applet by argv[0].
        install -D -m755 "$bb" "$g/qus/bin/$1/busybox"
        echo "$1 /qus/bin/$1/busybox $4 $5" >> "$g/qus/foreign.txt"
    }
    if [ "$arch" = amd64 ]; then
        qemu_sys=(qemu-system-x86_64 -accel tcg -m "$mem" -smp 1)
        console=ttyS0
        add_foreign arm64-trixie trixie arm64 aarch64 qemu-aarch64 &&
            add_foreign s390x trixie s390x s390x qemu-s390x &&
            add_foreign riscv64 trixie riscv64 riscv64 qemu-riscv64 ||
            { fail "$name" foreign "cannot fetch Debian's busybox-static"; return; }
        pac=/qus/bin/arm64-trixie/busybox
    else
        qemu_sys=(qemu-system-aarch64 -accel tcg -M virt,gic-version=3 -cpu a64fx -m "$mem" -smp 1)
        console=ttyAMA0
        add_foreign amd64 trixie amd64 x86_64 qemu-x86_64 &&
            add_foreign armhf trixie armhf armv7l qemu-arm &&
            add_foreign i386 trixie i386 i686 qemu-i386 ||
            { fail "$name" foreign "cannot fetch Debian's busybox-static"; return; }
    fi
    if [ "$name" = debian13 ]; then
        # An arm64 image made offline: Debian 13's arm64 busybox alone.
        local img=$work/img
        mkdir -p "$img/bin"
        install -m755 "$("$here/busybox.sh" trixie arm64)" "$img/bin/busybox"
        for a in sh uname true; do ln -s busybox "$img/bin/$a"; done
        tar -C "$img" -cf "$g/qus/arm64-image.tar" .
    fi
    printf 'MACHINE=%s\nPAC_PROGRAM=%s\n' "$name" "$pac" > "$g/qus/machine.env"
    echo install > "$g/qus/phase"
    install -m755 "$here/guest.sh" "$g/qus/guest.sh"
    cat > "$g/etc/systemd/system/qus-machine.service" <<'UNIT'
[Unit]
Description=qus machine test
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/qus/guest.sh
TimeoutStartSec=1800
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
UNIT
    mkdir -p "$g/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/qus-machine.service "$g/etc/systemd/system/multi-user.target.wants/"
    ln -sf /dev/null "$g/etc/systemd/system/serial-getty@$console.service"
    echo "/dev/vda / ext4 defaults 0 1" > "$g/etc/fstab"
    echo "qus-$name" > "$g/etc/hostname"
    # A second, unprivileged user for the rootless commands.
    grep -q '^qususer:' "$g/etc/passwd" || {
        echo 'qususer:x:1000:1000::/home/qususer:/bin/sh' >> "$g/etc/passwd"
        echo 'qususer:x:1000:' >> "$g/etc/group"
        echo 'qususer:!:20000::::::' >> "$g/etc/shadow"
        install -d -m 0755 -o 1000 -g 1000 "$g/home/qususer"
    }
    local kernel initrd
    kernel=$(ls "$g"/boot/vmlinuz-* | head -1) initrd=$(ls "$g"/boot/initrd.img-* | head -1)
    cp "$kernel" "$work/vmlinuz"; cp "$initrd" "$work/initrd"
    mkfs.ext4 -q -d "$g" "$work/disk.img" 4G || { fail "$name" disk "mkfs.ext4 -d failed"; return; }
    rm -rf "$g"
    say "machine: $name: root ready in $((SECONDS - t_root)) s ($(basename "$(dirname "$root")"))"

    local boot=0 phase=install boots=""
    while [ "$phase" != done ] && [ $boot -lt 3 ]; do
        boot=$((boot + 1))
        local t0=$SECONDS
        timeout 1500 "${qemu_sys[@]}" -nographic -no-reboot -nic none \
            -kernel "$work/vmlinuz" -initrd "$work/initrd" \
            -append "root=/dev/vda rw console=$console quiet panic=-1" \
            -drive "file=$work/disk.img,if=virtio,format=raw" > "$work/console-$boot.log" 2>&1
        local rc=$?
        boots="$boots boot $boot ($phase): $((SECONDS - t0)) s;"
        local next
        next=$(debugfs -R 'cat /qus/phase' "$work/disk.img" 2>/dev/null)
        if [ "$next" = "$phase" ]; then
            fail "$name" "boot-$boot" "the $phase phase did not run (qemu rc $rc); console: $(tail -5 "$work/console-$boot.log" | tr -d '\r' | paste -sd' ')"
            break
        fi
        phase=$next
    done
    say "machine: $name:$boots"
    local line status scenario took detail
    while read -r status scenario took detail; do
        case $status in
            PASS | FAIL) say "$status $name $scenario (${took} s) $detail" ;;
            INFO) say "     $name $scenario $took" ;;
        esac
    done < <(debugfs -R 'cat /qus/results.txt' "$work/disk.img" 2>/dev/null)
    # A failure in CI leaves no disk to read: show qusd's last words there.
    if debugfs -R 'cat /qus/results.txt' "$work/disk.img" 2>/dev/null | grep -q '^FAIL '; then
        for log in qusd-install.log qusd-boot.log; do
            say "machine: $name: last 40 lines of /qus/$log:"
            debugfs -R "cat /qus/$log" "$work/disk.img" 2>/dev/null | tail -40 | sed "s/^/    /"
        done
    fi
    if [ "$phase" != done ]; then
        fail "$name" phases "stopped in phase $phase; console of the last boot: $work/console-$boot.log"
        return
    fi
    if [ "${QUS_MACHINE_KEEP:-}" = 1 ]; then say "machine: $name: disk kept in $work"; else rm -rf "$work"; fi
}

# Machines boot side by side, as many at once as there are cores (each
# guest has one vCPU; TCG runs it on one host thread). Roots are built
# first, one at a time (debootstrap is network- and disk-bound). Each
# machine's lines are printed together when it is done.
jobs=${QUS_MACHINE_JOBS:-$(nproc)}
for m in "${machines[@]}"; do
    case $m in
        debian12) "$here/root.sh" bookworm amd64 >/dev/null ;;
        debian13) "$here/root.sh" trixie amd64 >/dev/null ;;
        debian13-arm64) "$here/root.sh" trixie arm64 >/dev/null ;;
    esac || echo "machine: building the root of $m failed"
done
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
running=0
for m in "${machines[@]}"; do
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    (machine "$m" > "$logs/$m.log" 2>&1; cat "$logs/$m.log") &
    running=$((running + 1))
done
wait
passed=$(cat "$logs"/*.log | grep -c '^PASS ')
failed=$(cat "$logs"/*.log | grep -c '^FAIL ')
# The matrix: machine by scenario.
scenarios=$(cat "$logs"/*.log | awk '/^(PASS|FAIL) / { print $3 }' | awk '!seen[$0]++')
printf '%-24s' scenario; for m in "${machines[@]}"; do printf ' %-15s' "$m"; done; echo
for sc in $scenarios; do
    printf '%-24s' "$sc"
    for m in "${machines[@]}"; do
        r=$(awk -v s="$sc" '($1 == "PASS" || $1 == "FAIL") && $3 == s { print $1; exit }' "$logs/$m.log")
        printf ' %-15s' "${r:--}"
    done
    echo
done
echo "machine: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
