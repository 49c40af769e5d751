#!/bin/bash
# What a QEMU channel buys: the same emulated workloads under each
# channel's aarch64 emulator (Debian's builds, packaging/qemu/channel.sh)
# and natively, interleaved (each round runs every channel, then native),
# as a Markdown table for bench/RESULTS.md.
#
#   bench/channels.sh [ROUNDS]        (default 5; run as root)
#
# Workloads, on Debian's static busybox (arm64 under emulation, amd64
# natively; the same busybox version):
#   compress  gzip -6 and sha256sum of a fixed 4 MiB input (seq's output):
#             translated code, little system work
#   spawn     a shell loop that runs `busybox true` 200 times: every exec
#             goes through binfmt_misc and starts the emulator again
# Each channel runs in a private user + mount namespace whose own
# binfmt_misc has qus's aarch64 entry for that channel's emulator, so the
# host's registrations are not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cache=/var/cache/qus-bench
mkdir -p "$cache"
channels=$(packaging/qemu/channel.sh --list)
qus=target/dist/qus
[ -x "$qus" ] || { echo "channels.sh: no $qus: run make first" >&2; exit 1; }

# The emulators of each channel, and busybox for both arches.
for c in $channels; do
    d=$cache/qemu-$c
    if [ ! -e "$d/.version" ]; then
        rm -rf "$d" && mkdir -p "$d"
        packaging/qemu/channel.sh "$c" "$(dpkg --print-architecture)" "$d" > "$d/.version"
    fi
done
for a in arm64 amd64; do
    if [ ! -x "$cache/busybox-$a" ]; then
        t=$(mktemp -d); chmod 755 "$t"
        dpkg --print-foreign-architectures | grep -qx "$a" || [ "$a" = "$(dpkg --print-architecture)" ] ||
            { dpkg --add-architecture "$a"; apt-get update -qq; }
        (cd "$t" && apt-get download -q "busybox-static:$a" >/dev/null)
        dpkg-deb -x "$t"/busybox-static_*.deb "$t/x"
        cp "$t/x/bin/busybox" "$cache/busybox-$a"
        rm -rf "$t"
    fi
done
[ -e "$cache/input" ] || seq 1 1000000 | head -c 4194304 > "$cache/input"

# run CHANNEL|native WORKLOAD: prints seconds.
run() {
    local c=$1 w=$2 bb
    if [ "$c" = native ]; then bb=$cache/busybox-amd64; else bb=$cache/busybox-arm64; fi
    local script
    case $w in
        compress) script="$bb gzip -6 -c $cache/input | $bb sha256sum >/dev/null" ;;
        spawn) script="i=0; while [ \$i -lt 200 ]; do $bb true; i=\$((i + 1)); done" ;;
    esac
    unshare --user --map-root-user --mount sh -c '
        c=$1 qus=$2 cache=$3 bb=$4 script=$5
        bm=$(mktemp -d) conf=$(mktemp -d) state=$(mktemp -d)
        mount -t binfmt_misc none "$bm"
        if [ "$c" != native ]; then
            printf "[qemu]\nsearch_path = [\"%s\"]\n" "$cache/qemu-$c" > "$conf/10-channel.toml"
            "$qus" --binfmt-misc "$bm" --state-dir "$state/s" --config-dir "$conf" --log-level warn \
                register aarch64 >/dev/null
        fi
        start=$(date +%s%N)
        "$bb" sh -c "$script"
        end=$(date +%s%N)
        echo "$(( (end - start) / 1000000 ))"
        umount "$bm" && rm -rf "$bm" "$conf" "$state"
    ' sh "$c" "$(realpath "$qus")" "$cache" "$bb" "$script"
}

declare -A times
for ((r = 0; r < rounds; r++)); do
    for w in compress spawn; do
        for c in $channels native; do
            times[$c.$w]+="$(run "$c" "$w") "
        done
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "Linux $(uname -r), $(nproc) CPUs, $rounds rounds interleaved; median ms (× native)."
echo
echo "| QEMU | emulator | compress 4 MiB (gzip + sha256) | spawn 200 × busybox true |"
echo "|---|---|---|---|"
nc=$(echo "${times[native.compress]}" | median)
ns=$(echo "${times[native.spawn]}" | median)
for c in $channels native; do
    mc=$(echo "${times[$c.compress]}" | median)
    ms=$(echo "${times[$c.spawn]}" | median)
    if [ "$c" = native ]; then v="native amd64 busybox"; else v=$(sed 's/^[0-9]*://' "$cache/qemu-$c/.version"); fi
    printf '| %s | %s | %s (%s×) | %s (%s×) |\n' "$c" "$v" "$mc" \
        "$(echo "scale=1; $mc / $nc" | bc)" "$ms" "$(echo "scale=1; $ms / $ns" | bc)"
done
