#!/bin/bash
# Register QEMU emulators for the platforms a CI job builds or runs, with
# qus: the steps of the GitHub Action (action.yml at the repository root),
# usable as is from GitLab CI or any shell. Nothing is built: qus comes
# from the release (checked against its SHA256SUMS), the emulators from a
# QEMU channel.
#
#   QUS_PLATFORMS    arches or Docker platforms, comma- or space-separated
#                    (arm64,riscv64 | linux/arm/v7 | all); default: all
#   QUS_FLAGS        binfmt_misc flags; default: PF (see qus.d(5) on C)
#   QUS_QEMU         the QEMU channel of the emulators: 11 (the default), 10
#                    or 7.2, Debian's builds of that line, not the runner
#                    distribution's (Ubuntu 24.04 ships 8.2); or "system" for
#                    the distribution's own qemu-user-static
#   QUS_QEMU_DIR     where the channel's emulators go
#                    (default: /usr/local/lib/qus/qemu-CHANNEL)
#   QUS_VERSION      the qus release to download (default: this checkout's)
#   QUS_RELEASE_URL  where its assets are (default: the GitHub release)
#   QUS_BIN          a qus binary to use instead of downloading one
#   QUS_BUILD        1: build qus from this checkout with cargo instead
#   QUS_SUDO         how to become root (default: sudo when not root)
#   QUS_IMAGE        run this qus image instead (ghcr.io/qus-project/qus:latest,
#                    ~10 MB for amd64): nothing else is downloaded, its qus
#                    registers its own emulators (give flags with F) and
#                    runs `qus test`; QUS_QEMU is then the image's tag's
#   QUS_ENGINE       the engine for QUS_IMAGE: docker (when present) or podman
#
# The default channel's emulators for the Docker platform set come from the
# release too (qemu-X.Y-linux-ARCH.tar.zst, ~9 MB); other channels, other
# platforms or a release without them: Debian's package for the channel
# (packaging/qemu/channel.sh, ~70 MB). They go in QUS_QEMU_DIR, and a drop-in
# (40-ci-qemu.toml in the last of QUS_CONFIG_DIRS, else /etc/qus.d) points
# qus at them. Then it registers and proves each platform runs a real
# foreign program (`qus test`), so a job fails here rather than in the
# middle of a build. qus's own QUS_BINFMT_MISC / QUS_STATE_DIR /
# QUS_CONFIG_DIRS pass through.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
platforms=${QUS_PLATFORMS:-all}
flags=${QUS_FLAGS:-PF}
version=${QUS_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/Cargo.toml" | head -1)}
release=${QUS_RELEASE_URL:-https://github.com/qus-project/qus/releases/download/v$version}
default_channel=$("$src/packaging/qemu/channel.sh" --default)
qemu=${QUS_QEMU:-$default_channel}
if [ -z "${QUS_SUDO+set}" ]; then
    if [ "$(id -u)" = 0 ]; then QUS_SUDO=""; else QUS_SUDO="sudo"; fi
fi
sudo_do() { if [ -n "$QUS_SUDO" ]; then $QUS_SUDO "$@"; else "$@"; fi; }
die() { echo "qus: $*" >&2; exit 1; }

# Every input is checked against its grammar before any use: no value
# becomes an option, a sed expression or a path outside what it names.
[[ $qemu =~ ^(system|[0-9]+(\.[0-9]+)*)$ ]] ||
    die "QUS_QEMU (the qemu input) must be a channel such as 11, 10 or 7.2, or system; got '$qemu'"
[[ $flags =~ ^[POCF]*$ ]] || die "QUS_FLAGS (the flags input) may only hold the letters P, O, C and F; got '$flags'"
[[ $version =~ ^[0-9A-Za-z][0-9A-Za-z.+~-]*$ ]] || die "QUS_VERSION must be a version such as 0.9.0; got '$version'"
read -r -a list <<<"${platforms//,/ }"
[ ${#list[@]} -gt 0 ] || die "QUS_PLATFORMS (the platforms input) names no platform"
for p in "${list[@]}"; do
    [[ $p =~ ^[A-Za-z0-9][A-Za-z0-9/._-]*$ ]] ||
        die "QUS_PLATFORMS (the platforms input): '$p' is not an arch or platform name (such as arm64, linux/arm/v7 or all)"
done

# Everything this script writes, qus itself included, goes into a directory
# it creates here (mktemp: new, owned by the caller, mode 0700), under a
# parent no one else can rename it in. Nothing goes to a fixed path such as
# /tmp/qus, which another local user could have made first and swap the
# binary in between install and run (qus runs as root).
parent=${RUNNER_TEMP:-${TMPDIR:-/tmp}}
[ -d "$parent" ] && [ ! -L "$parent" ] || die "$parent (RUNNER_TEMP or TMPDIR) is not a directory"
read -r p_uid p_mode < <(stat -c '%u %a' "$parent")
if [ "$p_uid" != "$(id -u)" ] && [ "$p_uid" != 0 ]; then
    die "$parent (RUNNER_TEMP or TMPDIR) belongs to uid $p_uid, not to you or root: not writing there"
fi
if (( 8#$p_mode & 8#022 )) && ! (( 8#$p_mode & 8#1000 )); then
    die "$parent (RUNNER_TEMP or TMPDIR) is writable by others without the sticky bit: not writing there"
fi
work=$(mktemp -d "$parent/qus-setup.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -n "${QUS_IMAGE:-}" ]; then
    [[ $QUS_IMAGE =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "QUS_IMAGE (the image input) is not an image reference; got '$QUS_IMAGE'"
    engine=${QUS_ENGINE:-$(command -v docker || command -v podman || true)}
    [ -n "$engine" ] || die "QUS_IMAGE needs docker or podman (or QUS_ENGINE)"
    [[ $flags == *F* ]] ||
        echo "qus: warning: flags $flags without F: the entries name the image's emulators, which are gone when its container exits" >&2
    echo "qus: $QUS_IMAGE with $engine"
    "$engine" run --rm --privileged "$QUS_IMAGE" register --flags "$flags" -- "${list[@]}"
    if [ "${list[*]}" = all ]; then
        "$engine" run --rm --privileged "$QUS_IMAGE" test
    else
        "$engine" run --rm --privileged "$QUS_IMAGE" test -- "${list[@]}"
    fi
    echo "qus: ready for: ${list[*]}"
    [ -z "${GITHUB_OUTPUT:-}" ] || echo "platforms=${list[*]}" >> "$GITHUB_OUTPUT"
    exit 0
fi

case $(uname -m) in
    x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; armv7l | armv8l) arch=armv7 ;;
    ppc64le) arch=ppc64le ;; s390x) arch=s390x ;; i?86) arch=386 ;;
    *) die "no qus release for $(uname -m)" ;;
esac

# The release's SHA256SUMS (once); fails if the release cannot be reached.
sums() {
    [ -e "$work/SHA256SUMS" ] ||
        curl -fsSL --retry 2 --connect-timeout 10 -o "$work/SHA256SUMS" "$release/SHA256SUMS"
}

# fetch NAME: one release asset into $work, checked against SHA256SUMS;
# fails if the release does not list it.
fetch() {
    sums || die "cannot download $release/SHA256SUMS"
    grep -q "  $1\$" "$work/SHA256SUMS" || return 1
    curl -fsSL --retry 3 --connect-timeout 10 -o "$work/$1" "$release/$1" || die "cannot download $release/$1"
    (cd "$work" && grep "  $1\$" SHA256SUMS | sha256sum -c --quiet -) ||
        die "$1 does not match its SHA256SUMS line: not installing it"
    echo "qus: $1 ($(wc -c < "$work/$1") bytes, sha256 ok)"
}

qus=${QUS_BIN:-}
if [ -z "$qus" ] && [ "${QUS_BUILD:-}" = 1 ]; then
    echo "qus: building qus from $src"
    cargo install --quiet --locked --path "$src" --root "$work/build" --bins
    qus=$work/build/bin/qus
elif [ -z "$qus" ]; then
    t=qus-$version-linux-$arch.tar.gz
    fetch "$t" || die "the release at $release has no $t"
    # Unpacked from the checked tarball, in the private directory, and run
    # from there: the file that runs is the file that was checked.
    tar -xzf "$work/$t" -C "$work" ./usr/bin/qus
    qus=$work/usr/bin/qus
fi

if [ "$qemu" = system ]; then
    if ! ls /usr/bin/qemu-*-static >/dev/null 2>&1; then
        echo "qus: installing qemu-user-static"
        if command -v apt-get >/dev/null; then
            sudo_do env DEBIAN_FRONTEND=noninteractive apt-get update -qq
            sudo_do env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static
        elif command -v dnf >/dev/null; then
            sudo_do dnf install -y -q qemu-user-static
        else
            die "no qemu-user-static and no apt-get or dnf to install it"
        fi
    fi
else
    dir=${QUS_QEMU_DIR:-/usr/local/lib/qus/qemu-$qemu}
    sudo_do mkdir -p "$dir"
    # The release's archive of this channel for this arch, if it has one.
    emu=""
    if sums 2>/dev/null; then
        emu=$(sed -n "s/^[0-9a-f]*  \(qemu-${qemu//./\\.}\(\.[0-9]*\)*-linux-$arch\.tar\.zst\)\$/\1/p" "$work/SHA256SUMS" | head -1)
    fi
    if [ -n "$emu" ] && fetch "$emu"; then
        # zstd's decoder takes the archive's 128 MiB window by default.
        zstd -dcq "$work/$emu" | sudo_do tar -xf - -C "$dir"
        echo "qus: QEMU channel $qemu from the release into $dir"
    else
        command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
            die "QEMU channel $qemu needs apt-get and dpkg (Debian, Ubuntu); QUS_QEMU=system uses the distribution's emulators"
        # Ubuntu runners verify Debian's archive with Debian's keys.
        if [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
            sudo_do env DEBIAN_FRONTEND=noninteractive apt-get update -qq
            sudo_do env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring
        fi
        echo "qus: QEMU channel $qemu from Debian's archive into $dir"
        v=$(sudo_do "$src/packaging/qemu/channel.sh" "$qemu" "$(dpkg --print-architecture)" "$dir")
        echo "qus: QEMU $v"
    fi
    confdir=${QUS_CONFIG_DIRS:-/etc/qus.d}
    confdir=${confdir##*:} # the last directory has the highest priority
    sudo_do mkdir -p "$confdir"
    printf '# Written by setup-qus.sh: the emulators of QEMU channel %s.\n[qemu]\nsearch_path = ["%s"]\n' \
        "$qemu" "$dir" | sudo_do tee "$confdir/40-ci-qemu.toml" >/dev/null
fi

# -E: keep QUS_BINFMT_MISC and friends through sudo.
run_qus() { if [ -n "$QUS_SUDO" ]; then $QUS_SUDO -E "$qus" "$@"; else "$qus" "$@"; fi; }
run_qus register --flags "$flags" -- "${list[@]}"
if [ "${list[*]}" = all ]; then
    run_qus test
else
    run_qus test -- "${list[@]}"
fi
echo "qus: ready for: ${list[*]}"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    echo "platforms=${list[*]}" >> "$GITHUB_OUTPUT"
fi
