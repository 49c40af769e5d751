#!/bin/bash
# Runs inside the booted container (from qus-boottest.service), checks qusd
# as a user would, writes KEY=VALUE lines to /root/results, powers off.
set -u
out=/root/results
: > "$out"
say() { printf '%s=%s\n' "$1" "$2" >> "$out"; }
wait_for() { # SECONDS COMMAND...
    local n=$(( $1 * 10 )); shift
    while [ $n -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
    return 1
}
bm=/proc/sys/fs/binfmt_misc
say boot_userspace_us "$(systemctl show -p UserspaceTimestampMonotonic --value)"
say qusd_active_us "$(systemctl show -p ActiveEnterTimestampMonotonic --value qusd)"
say enabled "$(systemctl is-enabled qusd)"
say active "$(systemctl is-active qusd)"
say status_text "$(systemctl show -p StatusText --value qusd)"
say nrestarts "$(systemctl show -p NRestarts --value qusd)"
say watchdog_usec "$(systemctl show -p WatchdogUSec --value qusd)"
say watchdog_timestamp "$(systemctl show -p WatchdogTimestampMonotonic --value qusd)"

# qusd mounted binfmt_misc in its own (hardened, private) mount namespace;
# the entries belong to the container's user namespace, so mounting the same
# instance here shows them too.
mountpoint -q "$bm" || mount -t binfmt_misc binfmt_misc "$bm"
emulators=$(ls /usr/bin/qemu-*-static | wc -l)
say emulators "$emulators"
say registered "$(qus --state-dir /run/qusd status --json | sed -n 's/.*"registered": \([0-9]*\).*/\1/p' | tail -1)"
say entries "$(ls $bm | grep -c '^qemu-')"
say aarch64_interpreter "$(sed -n 's/^interpreter //p' $bm/qemu-aarch64)"
say aarch64_test "$(qus --state-dir /run/qusd test aarch64 >/dev/null 2>&1 && echo pass || echo fail)"
say test_all "$(qus --state-dir /run/qusd test 2>&1 | grep -E '^[0-9]+ ' | tail -1)"
say setuid "$(qus --state-dir /run/qusd test aarch64 2>&1 | grep '^setuid:')"
say version "$(qus --state-dir /run/qusd status -v | grep '^qemu-aarch64 ' | sed -n 's/.*\[QEMU \([^];]*\).*/\1/p')"

# systemd-binfmt flushes every entry and registers Debian's own ones;
# qusd adopts those that name its emulator files (Debian's
# /usr/libexec/qemu-binfmt links) and registers the rest again.
systemctl restart systemd-binfmt
say binfmt_restart_result "$(systemctl show -p Result --value systemd-binfmt)"
same_emulator() {
    i=$(sed -n 's/^interpreter //p' $bm/qemu-aarch64 2>/dev/null)
    [ -n "$i" ] && [ "$(readlink -f "$i")" = "$(readlink -f /usr/bin/qemu-aarch64-static)" ]
}
if wait_for 15 same_emulator \
   && wait_for 15 test "$(ls $bm | grep -c '^qemu-')" -ge "$(ls /usr/lib/binfmt.d/qemu-*.conf | wc -l)"; then
    say restored_after_systemd_binfmt yes
else
    say restored_after_systemd_binfmt no
fi
say entries_after_restart "$(ls $bm | grep -c '^qemu-')"
say aarch64_interpreter_after_restart "$(sed -n 's/^interpreter //p' $bm/qemu-aarch64 2>/dev/null)"

# A drop-in, then `systemctl reload qusd`.
printf '[qemu]\nexclude = ["s390x"]\n' > /etc/qus.d/60-boottest.toml
systemctl reload qusd 2>> /root/reload.log
say reload_rc $?
if wait_for 15 test ! -e $bm/qemu-s390x; then say reload_applied yes; else say reload_applied no; fi
say status_after_reload "$(systemctl show -p StatusText --value qusd)"
say active_after_reload "$(systemctl is-active qusd)"

# The journal: real priorities and fields. A drop-in naming a missing
# interpreter gives a warning; -p warning shows it and none of the INFO
# lines; QUS_ARCH finds one arch's lines.
printf '[qemu.arch.riscv64]\ninterpreter = "/opt/missing/qemu-riscv64-static"\n' > /etc/qus.d/70-missing.toml
if wait_for 15 sh -c 'journalctl -u qusd -p warning --no-pager | grep -q /opt/missing/qemu-riscv64-static'; then
    say journal_warning yes
else
    say journal_warning no
fi
say journal_warning_info_lines "$(journalctl -u qusd -p warning --no-pager | grep -c 'registered qemu-')"
say journal_all_info_lines "$(journalctl -u qusd --no-pager | grep -c 'registered qemu-')"
say journal_arch_aarch64 "$(journalctl QUS_ARCH=aarch64 --no-pager | grep -c 'registered qemu-aarch64')"
say journal_action_field "$(journalctl QUS_ENTRY=qemu-aarch64 QUS_ACTION=registered -o verbose --no-pager | grep -c 'PRIORITY=6')"
rm -f /etc/qus.d/70-missing.toml

# Purge.
apt-get purge -y qus > /root/purge.log 2>&1
say purge_rc $?
say unit_after_purge "$(systemctl list-unit-files qusd.service --no-legend | wc -l)"
say wants_after_purge "$(ls /etc/systemd/system/*/qusd.service 2>/dev/null | wc -l)"
say active_after_purge "$(systemctl is-active qusd)"
say config_after_purge "$(ls /etc/qus.d 2>/dev/null | wc -l)"
say done yes
systemctl poweroff --no-block
