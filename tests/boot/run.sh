#!/bin/bash
# The real boot test: build the .deb, install it into a minimal Debian root,
# boot systemd as PID 1 in systemd-nspawn with its own user namespace, check
# qusd from inside (tests/boot/inside.sh), read the results.
#
#   tests/boot/run.sh path/to/qus.deb
#
# Needs root, systemd-container, debootstrap. The debootstrap output is
# cached in $QUS_BOOT_CACHE (default /var/cache/qus-boot), outside the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deb=$(realpath "$1")
cache=${QUS_BOOT_CACHE:-/var/cache/qus-boot}
mirror=${QUS_BOOT_MIRROR:-http://deb.debian.org/debian}
base=$cache/bookworm-base
t0=$(date +%s.%N)

if [ ! -e "$base/.complete" ]; then
    rm -rf "$base.tmp"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,qemu-user-static \
        bookworm "$base.tmp" "$mirror"
    touch "$base.tmp/.complete"
    rm -rf "$base"
    mv "$base.tmp" "$base"
fi
t_base=$(date +%s.%N)

root=$(mktemp -d /var/tmp/qus-boot.XXXXXX)
# A fresh cgroup per run: the container's systemd creates children owned by
# its random UID range, which a later run could not reuse.
cg=qus-boot-$$
cleanup() {
    rm -rf "$root"
    for h in unified systemd; do
        [ -d "/sys/fs/cgroup/$h/$cg" ] && find "/sys/fs/cgroup/$h/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    true
}
trap cleanup EXIT
cp -a "$base/." "$root/"

# Install the package the Debian way (postinst enables the unit; nothing
# is started in the chroot: no systemd runs there).
cp "$deb" "$root/root/qus.deb"
chroot "$root" dpkg -i /root/qus.deb
# The unit as installed: systemd-analyze verify, and the exposure scores of
# qusd.service and of Debian's systemd-binfmt.service side by side.
unit=$root/lib/systemd/system/qusd.service
if systemd-analyze verify --root="$root" --man=no "$unit"; then verify=ok; else verify=failed; fi
score() { systemd-analyze security --offline=true --root="$root" "$1" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'; }
score_qusd=$(score "$unit")
score_binfmt=$(score "$root/lib/systemd/system/systemd-binfmt.service")
install -m755 "$here/inside.sh" "$root/usr/local/bin/qus-boottest"
cat > "$root/etc/systemd/system/qus-boottest.service" <<'UNIT'
[Unit]
Description=qus boot test
After=qusd.service multi-user.target
Wants=qusd.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/qus-boottest
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/qus-boottest.service \
    "$root/etc/systemd/system/multi-user.target.wants/qus-boottest.service"
echo qus-boot > "$root/etc/hostname"

# systemd in the container needs a cgroup of its own.
mkdir -p "/sys/fs/cgroup/unified/$cg" "/sys/fs/cgroup/systemd/$cg"
t_boot=$(date +%s.%N)
set +e
(
    echo $BASHPID > "/sys/fs/cgroup/unified/$cg/cgroup.procs"
    echo $BASHPID > "/sys/fs/cgroup/systemd/$cg/cgroup.procs"
    exec timeout 300 systemd-nspawn -q -D "$root" -b -U --private-network \
        --register=no --keep-unit --console=read-only
) > "$cache/last-boot.log" 2>&1
rc=$?
set -e
t_end=$(date +%s.%N)
echo "systemd-nspawn exited with $rc (0 = powered off)"
results=$root/root/results
if [ ! -s "$results" ]; then
    echo "no results from inside; console:" >&2
    tail -50 "$cache/last-boot.log" >&2
    exit 1
fi
cat "$results"

fail=0
expect() { # KEY PATTERN
    local v
    v=$(sed -n "s/^$1=//p" "$results")
    if [[ "$v" =~ $2 ]]; then echo "ok   $1 = $v"; else echo "FAIL $1 = '$v' (want /$2/)"; fail=1; fi
}
[ "$verify" = ok ] && echo "ok   systemd-analyze verify qusd.service" || { echo "FAIL systemd-analyze verify qusd.service"; fail=1; }
echo "systemd-analyze security --offline: qusd.service $score_qusd, systemd-binfmt.service $score_binfmt (lower is better)"
expect enabled '^enabled$'
expect active '^active$'
expect status_text 'registered, 0 errors'
expect nrestarts '^0$'
expect watchdog_usec '^30s$'
expect watchdog_timestamp '^[1-9][0-9]*$'
expect aarch64_interpreter '^/usr/bin/qemu-aarch64-static$'
expect aarch64_test '^pass$'
expect test_all ' pass'
expect setuid '^setuid: needs the C flag'
expect version '^[0-9]+\.[0-9]+'
expect journal_warning '^yes$'
expect journal_warning_info_lines '^0$'
expect journal_all_info_lines '^[1-9][0-9]*$'
expect journal_arch_aarch64 '^[1-9]'
expect journal_action_field '^[1-9]'
expect binfmt_restart_result '^success$'
expect restored_after_systemd_binfmt '^yes$'
expect aarch64_interpreter_after_restart '^(/usr/bin/qemu-aarch64-static|/usr/libexec/qemu-binfmt/aarch64-binfmt-P)$'
expect reload_rc '^0$'
expect reload_applied '^yes$'
expect active_after_reload '^active$'
expect purge_rc '^0$'
expect unit_after_purge '^0$'
expect wants_after_purge '^0$'
expect active_after_purge '^(inactive|unknown)$'
expect done '^yes$'
reg=$(sed -n 's/^registered=//p' "$results")
ent=$(sed -n 's/^entries=//p' "$results")
if [ -n "$reg" ] && [ "$reg" = "$ent" ] && [ "$reg" -ge 30 ]; then
    echo "ok   every emulator registered ($reg entries)"
else
    echo "FAIL registered=$reg entries=$ent"; fail=1
fi
[ "$rc" = 0 ] || { echo "FAIL container did not power off cleanly ($rc)"; fail=1; }
u0=$(sed -n 's/^boot_userspace_us=//p' "$results")
u1=$(sed -n 's/^qusd_active_us=//p' "$results")
[ -n "$u0" ] && [ -n "$u1" ] && printf 'qusd ready (READY=1, 32 entries) %.0f ms after systemd started in the container\n' "$(echo "($u1 - $u0) / 1000" | bc -l)"
printf 'timings: base %.1f s, copy+install %.1f s, boot+checks+poweroff %.1f s\n' \
    "$(echo "$t_base - $t0" | bc)" "$(echo "$t_boot - $t_base" | bc)" "$(echo "$t_end - $t_boot" | bc)"
if [ $fail = 0 ]; then echo "boot test: 1 passed, 0 failed"; else echo "boot test: 0 passed, 1 failed"; tail -60 "$cache/last-boot.log"; fi
exit $fail
