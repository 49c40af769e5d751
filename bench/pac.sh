#!/bin/bash
# What users run: Debian 13's arm64 programs (built with pointer
# authentication and BTI, as today's images are) under each QEMU channel
# and CPU model, a non-arm guest, and natively; interleaved rounds, medians
# with the spread, as Markdown for bench/RESULTS.md.
#
#   bench/pac.sh [ROUNDS]        (default 3; run as root, after make)
#
# Workloads:
#   gzip    busybox gzip -6 | sha256sum of 4 MiB of text (the Debian 13
#           root's documentation): translated code, little system work
#           (Debian 13's static busybox)
#   spawn   a shell loop running `busybox true` 100 times: every exec goes
#           through binfmt_misc and starts the emulator again
#   dpkg    dpkg -i of sed, grep and gzip in a Debian 13 root (an overlay
#           of the machine tests' cached root): unpacking and configuring,
#           as every image build does (arm64 only, and natively)
# Configurations: for each channel (Debian's builds, packaging/qemu/
# channel.sh) the emulator's default CPU, a CPU without pointer
# authentication (cortex-a57), and `max,pauth-impdef=on` (PAC with QEMU's
# cheap implementation-defined cipher); "qus default": the distribution's
# 7.2 and the qus-qemu11 package's 11 both in search_path, no QEMU_CPU,
# qus choosing (what a Debian 12 host with the channel package runs);
# riscv64 per channel (gzip, spawn); native amd64.
# Every measurement runs in a private user + mount namespace with its own
# binfmt_misc, registered by the real qus: the host's entries are not
# touched.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cache=/var/cache/qus-bench
mkdir -p "$cache"
qus=$(realpath target/dist/qus 2>/dev/null || true)
[ -x "$qus" ] || { echo "pac.sh: no target/dist/qus: run make first" >&2; exit 1; }
[ "$(dpkg --print-architecture)" = amd64 ] || { echo "pac.sh: measures from an amd64 host" >&2; exit 1; }
channels=$(packaging/qemu/channel.sh --list)

for c in $channels; do
    d=$cache/qemu-$c
    if [ ! -e "$d/.version" ]; then
        rm -rf "$d" && mkdir -p "$d"
        packaging/qemu/channel.sh "$c" amd64 "$d" > "$d/.version"
    fi
done
bb_arm64=$(tests/machine/busybox.sh trixie arm64)
bb_riscv64=$(tests/machine/busybox.sh trixie riscv64)
bb_amd64=$(tests/machine/busybox.sh trixie amd64)
root_arm64=$(tests/machine/root.sh trixie arm64)
root_amd64=$(tests/machine/root.sh trixie amd64)
readelf -n "$bb_arm64" | grep 'PAC' >/dev/null || echo "pac.sh: warning: $bb_arm64 carries no PAC note" >&2
# Text, as most of what images compress is: the first 4 MiB of the
# Debian 13 root's documentation and licences, in name order.
if [ ! -e "$cache/input-text" ]; then
    { tar -C "$root_arm64" --sort=name --owner=0 --group=0 --mtime=@0 -cf - usr/share/doc usr/share/common-licenses || true; } |
        head -c 4194304 > "$cache/input-text.new"
    mv "$cache/input-text.new" "$cache/input-text"
fi
pkgs="sed grep gzip"

# The configurations: name arch channel cpu. "qus" as channel: both
# search dirs, qus picks.
configs=()
for c in $channels; do
    configs+=("$c:default aarch64 $c -" "$c:cortex-a57 aarch64 $c cortex-a57" "$c:pauth-impdef aarch64 $c max,pauth-impdef=on")
done
configs+=("qus-default aarch64 qus -")
for c in $channels; do configs+=("$c:riscv64 riscv64 $c -"); done
configs+=("native amd64 - -")

# run ARCH CHANNEL CPU WORKLOAD: prints milliseconds ("-" when the
# workload is not run for that arch).
run() {
    local arch=$1 c=$2 cpu=$3 w=$4 bb root dirs
    case $arch in
        aarch64) bb=$bb_arm64 root=$root_arm64 ;;
        riscv64) bb=$bb_riscv64 root="" ;;
        amd64) bb=$bb_amd64 root=$root_amd64 ;;
    esac
    [ "$w" = dpkg ] && [ -z "$root" ] && { echo -; return; }
    case $c in
        -) dirs="" ;;
        qus) dirs="\"$cache/qemu-7.2\", \"$cache/qemu-11\"" ;;
        *) dirs="\"$cache/qemu-$c\"" ;;
    esac
    unshare --user --map-root-user --mount sh -ec '
        arch=$1 dirs=$2 cpu=$3 w=$4 bb=$5 root=$6 qus=$7 input=$8 pkgs=$9
        t=$(mktemp -d)
        mkdir "$t/bm" "$t/conf"
        mount -t binfmt_misc none "$t/bm"
        if [ -n "$dirs" ]; then
            printf "[qemu]\nsearch_path = [%s]\n" "$dirs" > "$t/conf/10-bench.toml"
            "$qus" --binfmt-misc "$t/bm" --state-dir "$t/state" --config-dir "$t/conf" --log-level warn \
                register "$arch" >/dev/null
        fi
        [ "$cpu" = - ] || export QEMU_CPU="$cpu"
        case $w in
            gzip) set -- "$bb" sh -c "\"$bb\" gzip -6 -c \"$input\" | \"$bb\" sha256sum >/dev/null" ;;
            spawn) set -- "$bb" sh -c "i=0; while [ \$i -lt 100 ]; do \"$bb\" true; i=\$((i + 1)); done" ;;
            dpkg)
                mkdir "$t/upper" "$t/work" "$t/root"
                mount -t overlay overlay -o "lowerdir=$root,upperdir=$t/upper,workdir=$t/work" "$t/root"
                mount --rbind /dev "$t/root/dev"
                debs=$(for p in $pkgs; do ls "$t/root/var/cache/apt/archives/${p}_"*.deb | sed "s|^$t/root||"; done)
                set -- chroot "$t/root" /usr/bin/dpkg -i $debs ;;
        esac
        start=$(date +%s%N)
        "$@" >/dev/null 2>"$t/err" || { echo "pac.sh: $w failed under $arch ${cpu}: $(tail -3 "$t/err")" >&2; exit 1; }
        end=$(date +%s%N)
        echo $(( (end - start) / 1000000 ))
    ' sh "$arch" "$dirs" "$cpu" "$w" "$bb" "$root" "$qus" "$cache/input-text" "$pkgs"
}

workloads="gzip spawn dpkg"
declare -A times
for ((r = 0; r < rounds; r++)); do
    for w in $workloads; do
        for cfg in "${configs[@]}"; do
            read -r name arch c cpu <<<"$cfg"
            times[$name.$w]+="$(run "$arch" "$c" "$cpu" "$w") "
        done
    done
    echo "pac.sh: round $((r + 1)) of $rounds done" >&2
done

# median and spread (min-max) of a list of numbers; "-" for none.
stats() {
    local xs
    xs=$(tr ' ' '\n' | grep -E '^[0-9]+$' | sort -n) || true
    [ -n "$xs" ] || { echo "- - -"; return; }
    echo "$xs" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)], a[1], a[NR]}'
}
ratio() { [ "$1" = - ] || [ "$2" = - ] && echo - || echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }

echo "Linux $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $rounds rounds interleaved."
echo "Median ms (min-max), and x native. QEMU: $(for c in $channels; do printf '%s = %s; ' "$c" "$(sed 's/^[0-9]*://' "$cache/qemu-$c/.version")"; done)"
echo
printf '| configuration |'
for w in $workloads; do printf ' %s |' "$w"; done
echo
printf '|---|'
for w in $workloads; do printf -- '---|'; done
echo
declare -A med spread
for cfg in "${configs[@]}"; do
    read -r name _ <<<"$cfg"
    for w in $workloads; do
        read -r m lo hi <<<"$(echo "${times[$name.$w]}" | stats)"
        med[$name.$w]=$m
        spread[$name.$w]="$lo-$hi"
    done
done
for cfg in "${configs[@]}"; do
    read -r name _ <<<"$cfg"
    printf '| %s |' "$name"
    for w in $workloads; do
        m=${med[$name.$w]}
        if [ "$m" = - ]; then printf ' - |'; else printf ' %s (%s) %sx |' "$m" "${spread[$name.$w]}" "$(ratio "$m" "${med[native.$w]}")"; fi
    done
    echo
done

# The goal: qus's default on a host with the channel package against the
# fastest CPU model of the newest channel, and against the host's own 7.2.
newest=$(echo "$channels" | head -1)
echo
for w in $workloads; do
    q=${med[qus-default.$w]}
    [ "$q" = - ] && continue
    best=""
    for cpu in default cortex-a57 pauth-impdef; do
        m=${med[$newest:$cpu.$w]}
        if [ -z "$best" ] || [ "$m" -lt "$best" ]; then best=$m bestname=$newest:$cpu; fi
    done
    old=${med[7.2:default.$w]}
    echo "- $w: qus default $q ms = $(ratio "$q" "$best")x the fastest $newest model ($bestname, $best ms; goal <= 1.2); 7.2's default is $(ratio "$old" "$q")x slower ($old ms; goal >= 10)"
done
