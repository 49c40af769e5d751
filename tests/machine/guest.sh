#!/bin/bash
# Runs inside a booted machine (a Type=oneshot unit after multi-user.target),
# as root in the host's namespaces: what a user of that machine sees. One
# boot runs one phase; the phase writes the next one and powers off.
#
#   install  the distribution as installed: its entries (the baseline),
#            another tool's entry, then the project's .deb with dpkg -i
#   boot     after a reboot: qusd ready before sysinit.target, entries
#            host-wide, foreign programs, the automount, the writes of the
#            boot, systemd-binfmt restarted, rootless, Docker, the package
#            upgraded under a loop of foreign execs, the distribution's
#            QEMU upgraded, remove and purge
#
# Results go to /qus/results.txt, one line per scenario:
#   PASS|FAIL SCENARIO SECONDS DETAIL
# /qus/machine.env says what this machine has (see tests/machine/run.sh).
set -uo pipefail
export LC_ALL=C
. /qus/machine.env
bm=/proc/sys/fs/binfmt_misc
results=/qus/results.txt
phase=$(cat /qus/phase)
exec > >(tee -a /qus/guest.log) 2>&1

now() { date +%s.%N; }
# result PASS|FAIL NAME T0 DETAIL
result() {
    local took
    took=$(awk -v a="$3" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "$1 $2 $took ${4:-}" | tee -a "$results" >/dev/console
}
# pass_if NAME T0 DETAIL CMD...: PASS when CMD succeeds.
pass_if() {
    local name=$1 t0=$2 detail=$3
    shift 3
    if "$@"; then result PASS "$name" "$t0" "$detail"; else result FAIL "$name" "$t0" "$detail"; fi
}
# wait_for SECONDS CMD...: poll CMD until it succeeds or the deadline passes.
wait_for() {
    local end=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}

# name|enabled|interpreter|flags for every entry, sorted: what the kernel has.
entries() {
    local f
    for f in "$bm"/*; do
        case ${f##*/} in register | status) continue ;; esac
        [ -e "$f" ] || continue
        printf '%s|%s|%s|%s\n' "${f##*/}" "$(sed -n 1p "$f")" "$(sed -n 's/^interpreter //p' "$f")" \
            "$(sed -n 's/^flags: //p' "$f")"
    done | sort
}
# The foreign programs: "label path expected-uname-m entry" per line.
foreign_ok() {
    local label path want got bad=""
    while read -r label path want entry; do
        got=$("$path" uname -m 2>&1)
        [ "$got" = "$want" ] || bad="$bad $label($got)"
    done < /qus/foreign.txt
    [ -z "$bad" ] || { echo "foreign programs failed:$bad"; return 1; }
}
qusd_writes() { journalctl -b -u qusd -o cat | sed -n 's/.*: \([0-9][0-9]*\) writes to binfmt_misc.*/\1/p' | awk '{ s += $1 } END { print s + 0 }'; }
# The devices of the binfmt_misc mounts at its path (one per instance).
binfmt_devs() {
    awk '$5 == "/proc/sys/fs/binfmt_misc" { for (i = 7; i < NF; i++) if ($i == "-" && $(i + 1) == "binfmt_misc") print $3 }' "$1" |
        sort -u | paste -sd,
}
# The file system types mounted at binfmt_misc's path in a mountinfo, with
# counts ("autofs:1,binfmt_misc:1"); the type is the field after " - ".
binfmt_mounts() {
    awk '$5 == "/proc/sys/fs/binfmt_misc" { for (i = 7; i < NF; i++) if ($i == "-") { print $(i + 1); break } }' "$1" |
        sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = "," }'
}

other_line=':qus-machine-other:E::qusother::/usr/bin/true:'

case $phase in
install)
    t=$(now)
    wait_for 60 test -e "$bm/status"
    entries > /qus/baseline.txt
    n=$(grep -c . /qus/baseline.txt)
    pass_if distro-entries "$t" "$n entries from the distribution's binfmt.d at boot" test "$n" -gt 0
    # Another tool's entry, which qus must leave alone.
    echo "$other_line" > "$bm/register"
    entries > /qus/before-qus.txt

    t=$(now)
    if dpkg -i /qus/qus_1.deb > /qus/dpkg-install.log 2>&1 && wait_for 60 systemctl -q is-active qusd; then
        result PASS deb-install "$t" "dpkg -i $(dpkg-query -W -f '${Version}' qus); qusd active"
    else
        result FAIL deb-install "$t" "$(tail -3 /qus/dpkg-install.log | tr '\n' ' ') qusd: $(systemctl is-active qusd)"
    fi
    t=$(now)
    out=$(foreign_ok 2>&1)
    pass_if foreign-after-install "$t" "${out:-$(cut -d' ' -f1 /qus/foreign.txt | paste -sd,) run}" test -z "$out"
    echo "INFO writes-at-install $(qusd_writes)" >> "$results"
    echo boot > /qus/phase
    ;;

boot)
    # Entries live as long as the boot: the other tool registers again.
    echo "$other_line" > "$bm/register"
    # qusd is up before sysinit.target, as systemd-binfmt is.
    t=$(now)
    q=$(systemctl show -P ActiveEnterTimestampMonotonic qusd)
    s=$(systemctl show -P ActiveEnterTimestampMonotonic sysinit.target)
    pass_if ready-before-sysinit "$t" "qusd ready at ${q}us, sysinit.target at ${s}us (monotonic)" \
        test "$q" -gt 0 -a "$q" -le "$s"

    t=$(now)
    inst=$(qus status --json | grep -o '"instance": *"[a-z]*"' | grep -o '[a-z]*"$' | tr -d '"')
    missing=""
    while read -r label path want entry; do
        [ "$(sed -n 1p "$bm/$entry" 2>/dev/null)" = enabled ] || missing="$missing $entry"
    done < /qus/foreign.txt
    pass_if host-wide "$t" "instance: $inst; entries of the foreign arches enabled in the host's binfmt_misc${missing:+; missing:$missing}" \
        test "$inst" = host -a -z "$missing"

    t=$(now)
    out=$(foreign_ok 2>&1)
    pass_if foreign-at-boot "$t" "${out:-$(cut -d' ' -f1 /qus/foreign.txt | paste -sd,) run}" test -z "$out"
    if [ -n "${PAC_PROGRAM:-}" ]; then
        t=$(now)
        got=$(echo qus | "$PAC_PROGRAM" gzip -c | "$PAC_PROGRAM" gunzip -c 2>&1)
        pass_if pac-program "$t" "Debian 13's arm64 busybox (BTI, PAC) gzip round trip: $got" test "$got" = qus
    fi

    # The host's namespace has one binfmt_misc, on the automount; qusd's
    # has that one bound in, and qusd mounted none of its own.
    t=$(now)
    host_m=$(binfmt_mounts /proc/self/mountinfo)
    pid=$(systemctl show -P MainPID qusd)
    qusd_m=$(binfmt_mounts "/proc/$pid/mountinfo")
    mounted=$(journalctl -b -u qusd -o cat | grep -c 'mounted binfmt_misc')
    # The instances by device number: qusd's namespace may show the host's
    # mount more than once (systemd binds it in, and the host's mount
    # propagates there too), but never another instance.
    host_dev=$(binfmt_devs /proc/self/mountinfo)
    qusd_dev=$(binfmt_devs "/proc/$pid/mountinfo")
    one_instance() {
        [ "$host_m" = "autofs:1,binfmt_misc:1" ] && [ "$mounted" = 0 ] && [ -n "$host_dev" ] && [ "$qusd_dev" = "$host_dev" ]
    }
    pass_if automount "$t" "host: $host_m ($host_dev); qusd's namespace: $qusd_m ($qusd_dev); qusd mounted: $mounted" one_instance

    # What the boot wrote: the distribution's entries that qus would
    # register as they are (same emulator file, F) are adopted, not rewritten.
    t=$(now)
    w=$(qusd_writes)
    entries > /qus/boot-entries.txt
    rewritten=$(join -t'|' <(sort /qus/baseline.txt) <(sort /qus/boot-entries.txt) | awk -F'|' '$3 != $6 || $4 != $7 { print $1 }' | paste -sd' ')
    echo "INFO writes-at-boot $w" >> "$results"
    pass_if boot-writes "$t" "$w writes to binfmt_misc by qusd this boot; distribution entries rewritten: ${rewritten:-none}" \
        test -z "$rewritten"

    # systemd-binfmt flushes every entry when it restarts: qusd puts back
    # its own, and (guard others) the other tool's.
    t=$(now)
    printf '[guard]\nothers = true\n' > /etc/qus.d/90-machine-guard.toml
    guard_read() { qus config 2>/dev/null | grep -q 90-machine-guard; }
    wait_for 30 guard_read
    before=$(entries)
    w0=$(qusd_writes)
    systemctl restart systemd-binfmt
    as_before() { [ "$(entries)" = "$before" ]; }
    wait_for 60 as_before
    after=$(entries)
    pass_if restart-systemd-binfmt "$t" "$(echo "$after" | grep -c .) entries back; other tool's: $(echo "$after" | grep -c qus-machine-other); qusd wrote $(($(qusd_writes) - w0))" \
        test "$after" = "$before"
    entries > /qus/entries-after-restart.txt

    # Rootless: from Linux 6.7 a user namespace has its own binfmt_misc;
    # before, the rootless commands refuse and say what they need.
    t=$(now)
    read -r label path want entry < /qus/foreign.txt
    install -d -m 0700 -o qususer -g qususer /run/user/1000
    out=$(setpriv --reuid=qususer --regid=qususer --init-groups env HOME=/home/qususer XDG_RUNTIME_DIR=/run/user/1000 \
        qus run -- "$path" uname -m 2>&1)
    rc=$?
    major=$(uname -r | cut -d. -f1) minor=$(uname -r | cut -d. -f2)
    if [ "$major" -gt 6 ] || { [ "$major" = 6 ] && [ "$minor" -ge 7 ]; }; then
        pass_if rootless "$t" "qus run as a user on $(uname -r): $out" test "$rc" = 0 -a "$out" = "$want"
    else
        refused() { [ "$rc" != 0 ] && echo "$out" | grep -q '6\.7'; }
        pass_if rootless "$t" "qus run as a user on $(uname -r) refuses: $(echo "$out" | tail -1)" refused
    fi

    if command -v docker >/dev/null; then
        t=$(now)
        wait_for 120 docker info >/dev/null 2>&1
        out=$( (docker import --platform linux/arm64 /qus/arm64-image.tar qus-machine/arm64:test >/dev/null &&
            docker run --rm --network none --platform linux/arm64 qus-machine/arm64:test uname -m) 2>&1)
        pass_if docker-arm64 "$t" "docker run --platform linux/arm64 … uname -m: $out" test "$out" = aarch64
    fi

    # The package upgraded in place while a foreign program is exec'd
    # every 20 ms: not one exec fails.
    t=$(now)
    rm -f /run/qus-loop.*
    (n=0; while [ ! -e /run/qus-loop.stop ]; do
        "$path" true || echo x >> /run/qus-loop.fail
        n=$((n + 1)); echo $n > /run/qus-loop.count; sleep 0.02
    done) &
    loop=$!
    wait_for 30 test -s /run/qus-loop.count
    pid0=$(systemctl show -P MainPID qusd)
    dpkg -i /qus/qus_2.deb > /qus/dpkg-upgrade.log 2>&1
    rc=$?
    restarted() { [ "$(systemctl show -P MainPID qusd)" != "$pid0" ] && systemctl -q is-active qusd; }
    wait_for 60 restarted
    c0=$(cat /run/qus-loop.count)
    looped_on() { [ "$(cat /run/qus-loop.count)" -ge $((c0 + 10)) ]; }
    wait_for 30 looped_on
    touch /run/qus-loop.stop; wait $loop
    fails=$(cat /run/qus-loop.fail 2>/dev/null | wc -l)
    pass_if qus-upgrade "$t" "dpkg -i $(dpkg-query -W -f '${Version}' qus) (rc $rc), qusd pid $pid0 -> $(systemctl show -P MainPID qusd); $(cat /run/qus-loop.count) execs, $fails failed" \
        test "$rc" = 0 -a "$fails" = 0 -a "$(systemctl show -P MainPID qusd)" != "$pid0"

    # The distribution's QEMU package upgraded (reinstalled: new files):
    # a foreign program started before keeps running, the entries follow.
    # systemd's dpkg trigger on binfmt.d restarts systemd-binfmt, which
    # flushes every entry: the guard is still on, so the other tool's
    # entry comes back too.
    t=$(now)
    w0=$(qusd_writes)
    "$path" sh -c 'sleep 3; echo survived' > /run/qus-long.out 2>&1 &
    long=$!
    started() { [ -s "/proc/$long/cmdline" ]; }
    wait_for 10 started
    dpkg -i /qus/debs/*.deb > /qus/dpkg-qemu.log 2>&1
    rc=$?
    wait $long
    stale_gone() { qus status --check >/dev/null 2>&1; }
    wait_for 60 stale_gone
    # The flush can come after qus's own entries are right again (systemd's
    # trigger runs at the end of dpkg): wait for the other tool's entry too,
    # before the guard goes.
    other_back() { [ -e "$bm/qus-machine-other" ]; }
    wait_for 60 other_back
    other=$(other_back && echo back || echo missing)
    out=$(foreign_ok 2>&1)
    pass_if distro-qemu-upgrade "$t" "dpkg -i $(cd /qus/debs && ls | paste -sd' ') (rc $rc); running program: $(cat /run/qus-long.out); status --check: $(qus status --check >/dev/null 2>&1 && echo ok || echo problems); other tool's entry: $other; ${out:-foreign programs run}" \
        test "$rc" = 0 -a "$(cat /run/qus-long.out)" = survived -a -z "$out" -a "$other" = back
    qus status --check > /qus/status-after-qemu-upgrade.txt 2>&1
    entries > /qus/entries-after-qemu-upgrade.txt
    echo "INFO writes-at-qemu-upgrade $(($(qusd_writes) - w0))" >> "$results"
    rm -f /etc/qus.d/90-machine-guard.toml

    # The QEMU channel package: installed, every entry with an older
    # emulator switches to the channel's at once (qusd sees the emulators
    # and the drop-in appear); removed, back to the distribution's. A
    # foreign program runs all along.
    t=$(now)
    read -r label path want entry < /qus/foreign.txt
    interp() { sed -n 's/^interpreter //p' "$bm/$entry"; }
    version_of() { qus status -v 2>/dev/null | awk -v e="$entry" '$1 == e' | grep -o 'QEMU [0-9][0-9.]*' | head -1; }
    ch_before=$(interp) v_before=$(version_of)
    rm -f /run/qus-ch.stop
    "$path" sh -c 'n=0; while [ ! -e /run/qus-ch.stop ]; do n=$((n + 1)); sleep 0.05; done; echo survived $n' > /run/qus-ch.out 2>&1 &
    long=$!
    started() { [ -s "/proc/$long/cmdline" ]; }
    wait_for 10 started
    dpkg -i /qus/qus-qemu.deb > /qus/dpkg-channel.log 2>&1
    rc_in=$?
    on_channel() { case $(interp) in /usr/lib/qus/qemu/*) return 0 ;; esac; return 1; }
    wait_for 60 on_channel
    during=$(interp) v_during=$(version_of)
    out_during=$(foreign_ok 2>&1)
    dpkg -r "$(dpkg-deb -f /qus/qus-qemu.deb Package)" >> /qus/dpkg-channel.log 2>&1
    rc_out=$?
    back() { [ "$(interp)" = "$ch_before" ]; }
    wait_for 60 back
    after=$(interp) v_after=$(version_of)
    out_after=$(foreign_ok 2>&1)
    touch /run/qus-ch.stop; wait $long
    ran=$(cat /run/qus-ch.out)
    pass_if channel-package "$t" "$entry: $v_before -> $v_during ($during) -> $v_after ($after); dpkg rc $rc_in/$rc_out; foreign programs ${out_during:-run}/${out_after:-run}; the program started before: $ran" \
        test "$rc_in" = 0 -a "$rc_out" = 0 -a "$after" = "$ch_before" -a -n "$v_during" -a "$v_during" != "$v_before" \
            -a "${during#/usr/lib/qus/qemu/}" != "$during" -a -z "$out_during" -a -z "$out_after" -a "${ran%% *}" = survived

    # Remove, then purge: the distribution's entries as they were before qus,
    # the other tool's untouched, nothing of qus's left.
    t=$(now)
    dpkg -r qus > /qus/dpkg-remove.log 2>&1
    rc=$?
    as_before_qus() { entries > "/qus/entries-$1.txt"; diff /qus/before-qus.txt "/qus/entries-$1.txt" > "/qus/$1.diff"; }
    if [ "$rc" = 0 ] && as_before_qus remove; then
        result PASS remove "$t" "dpkg -r: the entries are as before qus was installed"
    else
        result FAIL remove "$t" "dpkg -r (rc $rc): entries differ from before qus: $(grep '^[<>]' /qus/remove.diff | head -4 | paste -sd' ')"
    fi
    t=$(now)
    dpkg --purge qus > /qus/dpkg-purge.log 2>&1
    rc=$?
    if [ "$rc" = 0 ] && as_before_qus purge && [ ! -e /usr/bin/qusd ]; then
        result PASS purge "$t" "dpkg --purge: the entries are as before qus; /etc/qus.d: $(ls -A /etc/qus.d 2>/dev/null | wc -l) files"
    else
        result FAIL purge "$t" "dpkg --purge (rc $rc): entries differ from before qus: $(grep '^[<>]' /qus/purge.diff | head -4 | paste -sd' ')"
    fi
    echo done > /qus/phase
    ;;
*)
    echo "guest.sh: unknown phase $phase" >&2
    echo done > /qus/phase
    ;;
esac
# For a look afterwards (debugfs -R 'cat /qus/qusd-PHASE.log' disk.img).
journalctl -b -u qusd -o short-monotonic > "/qus/qusd-$phase.log" 2>&1
entries > "/qus/entries-end-$phase.txt"
sync
systemctl poweroff --no-block
