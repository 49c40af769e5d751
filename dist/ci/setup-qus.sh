#!/bin/bash
# Register QEMU emulators for the platforms a CI job builds or runs, with
# qus: the steps of the GitHub Action (action.yml at the repository root),
# usable as is from GitLab CI or any shell.
#
#   QUS_PLATFORMS  arches or Docker platforms, comma- or space-separated
#                  (arm64,riscv64 | linux/arm/v7 | all); default: all
#   QUS_FLAGS      binfmt_misc flags; default: PF (see qus.d(5) on C)
#   QUS_QEMU       the QEMU channel to take the emulators from: 11 (the
#                  default), 10 or 7.2, Debian's packages for that line
#                  (packaging/qemu/channel.sh), whatever the runner's
#                  distribution ships; or "system" for the distribution's
#                  own qemu-user-static (Ubuntu 24.04: QEMU 8.2)
#   QUS_QEMU_DIR   where the channel's emulators go
#                  (default: /usr/local/lib/qus/qemu-CHANNEL)
#   QUS_BIN        a qus binary to use (default: qus on PATH, else built
#                  from this source tree with cargo)
#   QUS_SUDO       how to become root (default: sudo when not root)
#
# qus's own QUS_BINFMT_MISC / QUS_STATE_DIR / QUS_CONFIG_DIRS pass through.
# It puts the channel's emulators in /usr/local/lib/qus/qemu-CHANNEL and
# points qus at them with a drop-in (40-ci-qemu.toml in the first of
# QUS_CONFIG_DIRS, else /etc/qus.d), registers, then proves each platform runs a real foreign program
# (`qus test`), so a job fails here rather than in the middle of a build.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
platforms=${QUS_PLATFORMS:-all}
flags=${QUS_FLAGS:-PF}
if [ -z "${QUS_SUDO+set}" ]; then
    if [ "$(id -u)" = 0 ]; then QUS_SUDO=""; else QUS_SUDO="sudo"; fi
fi
sudo_do() { if [ -n "$QUS_SUDO" ]; then $QUS_SUDO "$@"; else "$@"; fi; }

qemu=${QUS_QEMU:-$("$src/packaging/qemu/channel.sh" --default)}
if [ "$qemu" = system ]; then
    if ! ls /usr/bin/qemu-*-static >/dev/null 2>&1; then
        echo "qus: installing qemu-user-static"
        if command -v apt-get >/dev/null; then
            sudo_do env DEBIAN_FRONTEND=noninteractive apt-get update -qq
            sudo_do env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static
        elif command -v dnf >/dev/null; then
            sudo_do dnf install -y -q qemu-user-static
        else
            echo "qus: no qemu-user-static and no apt-get or dnf to install it" >&2
            exit 1
        fi
    fi
else
    command -v apt-get >/dev/null && command -v dpkg >/dev/null || {
        echo "qus: QEMU channel $qemu needs apt-get and dpkg (Debian, Ubuntu); QUS_QEMU=system uses the distribution's emulators" >&2
        exit 1
    }
    # Ubuntu runners verify Debian's archive with Debian's keys.
    if [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
        sudo_do env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        sudo_do env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring
    fi
    dir=${QUS_QEMU_DIR:-/usr/local/lib/qus/qemu-$qemu}
    echo "qus: QEMU channel $qemu into $dir"
    sudo_do mkdir -p "$dir"
    version=$(sudo_do "$src/packaging/qemu/channel.sh" "$qemu" "$(dpkg --print-architecture)" "$dir")
    echo "qus: QEMU $version"
    confdir=${QUS_CONFIG_DIRS:-/etc/qus.d}
    confdir=${confdir##*:} # the last directory has the highest priority
    sudo_do mkdir -p "$confdir"
    printf '# Written by setup-qus.sh: the emulators of QEMU channel %s.\n[qemu]\nsearch_path = ["%s"]\n' \
        "$qemu" "$dir" | sudo_do tee "$confdir/40-ci-qemu.toml" >/dev/null
fi

qus=${QUS_BIN:-$(command -v qus || true)}
if [ -z "$qus" ]; then
    command -v cargo >/dev/null || { echo "qus: not installed, and no cargo to build it" >&2; exit 1; }
    echo "qus: building qus from $src"
    cargo install --quiet --locked --path "$src" --root "${RUNNER_TEMP:-/tmp}/qus" --bins
    qus=${RUNNER_TEMP:-/tmp}/qus/bin/qus
fi

read -r -a list <<<"${platforms//,/ }"
# -E: keep QUS_BINFMT_MISC and friends through sudo.
run_qus() { if [ -n "$QUS_SUDO" ]; then $QUS_SUDO -E "$qus" "$@"; else "$qus" "$@"; fi; }
run_qus register --flags "$flags" "${list[@]}"
if [ "${list[*]}" = all ]; then
    run_qus test
else
    run_qus test "${list[@]}"
fi
echo "qus: ready for: ${list[*]}"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    echo "platforms=${list[*]}" >> "$GITHUB_OUTPUT"
fi
