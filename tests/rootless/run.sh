#!/bin/bash
# Rootless multi-arch, tested as a real unprivileged user with real podman,
# buildah and the kernel's per-user-namespace binfmt_misc (Linux 6.7+).
#
# Run as root (it only sets up and then drops to the user): the user, its
# subordinate ids and the arm64/s390x busybox root file systems come from
# tests/rootless/setup.sh, which .ci/run runs first. Every qus, podman and
# buildah command below runs as that user; the host's binfmt_misc must
# come out exactly as it went in.
#
# Usage: tests/rootless/run.sh [QUS_BINARY_DIR]   (default: target/debug)
set -uo pipefail
cd "$(dirname "$0")/../.."
user=${QUS_ROOTLESS_USER:-qustest}
cache=/var/cache/qus-rootless
bindir=${1:-target/debug}
pass=0 fail=0
ok()  { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
die() { echo "rootless: $*"; echo "rootless: 0 passed, 1 failed"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the tests drop to user $user themselves)"
id "$user" >/dev/null 2>&1 || die "no user $user: run tests/rootless/setup.sh first"
for t in podman buildah runc newuidmap setpriv; do
    command -v "$t" >/dev/null || die "$t is missing: run tests/rootless/setup.sh (apt-get install podman buildah runc uidmap)"
done
for a in arm64 s390x; do
    [ -f "$cache/rootfs-$a.tar" ] || die "no $a root file system in $cache: run tests/rootless/setup.sh"
done
[ -x "$bindir/qus" ] || die "no $bindir/qus: build first (cargo build)"

uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
# The user must be able to run the binaries: copy them somewhere it can.
bin=$(mktemp -d /tmp/qus-rootless.XXXXXX)
trap 'rm -rf "$bin"' EXIT
cp "$bindir/qus" "$bindir/qusd" "$bin/"
chmod 0755 "$bin" "$bin/qus" "$bin/qusd"
for a in arm64 s390x; do
    mkdir -p "$bin/$a"
    cp "$cache/rootfs-$a/bin/busybox" "$bin/$a/busybox"
done
chmod -R a+rX "$bin"

# shellcheck source=tests/rootless/lib.sh
. tests/rootless/lib.sh
as_user_dir=$bin as_user_path=$bin
before=$(host_listing)

# A clean start: no podman namespace left from an earlier run, no records.
as_user podman system migrate >/dev/null 2>&1
rm -rf "/run/user/$uid/qus" "$home/.config/qus.d"
for a in arm64 s390x; do
    as_user podman image exists "localhost/qus-$a" ||
        as_user podman import --arch "$a" "$cache/rootfs-$a.tar" "localhost/qus-$a" >/dev/null ||
        bad "podman import $a"
done

echo "== podman"
out=$(as_user podman run --rm --arch arm64 localhost/qus-arm64 /bin/uname -m 2>&1)
[[ $out == *"exec format error"* ]] && ok "before: arm64 container fails with exec format error" ||
    bad "before: expected exec format error, got: $out"

out=$(as_user podman unshare qus register aarch64 2>&1)
[[ $out == *"1 registered"* && $out == *"private to this user namespace"* ]] &&
    ok "podman unshare qus register aarch64 (no other flag), says the instance is private" ||
    bad "podman unshare qus register: $out"
out=$(as_user podman run --rm --arch arm64 localhost/qus-arm64 /bin/uname -m 2>&1)
[ "$out" = aarch64 ] && ok "after: arm64 container prints aarch64" || bad "after: $out"

out=$(as_user qus podman register s390x 2>&1)
[[ $out == *"1 registered"* ]] && ok "qus podman register s390x" || bad "qus podman register s390x: $out"
out=$(as_user podman run --rm --arch s390x localhost/qus-s390x /bin/uname -m 2>&1)
[ "$out" = s390x ] && ok "s390x (big-endian) container prints s390x" || bad "s390x container: $out"

out=$(as_user qus --config-dir /nonexistent/qus.d podman status 2>&1); rc=$?
[ $rc = 1 ] && [[ $out == *"configuration directory /nonexistent/qus.d does not exist"* ]] &&
    ok "options before 'podman' go along to the qus inside" || bad "qus --config-dir … podman status (rc $rc): $out"
out=$(as_user qus podman status 2>&1)
[[ $out == *"instance:    private to this user namespace"* && $out == *"/run/user/$uid/qus/binfmt_misc"* ]] &&
    ok "qus podman status names the private instance" || bad "qus podman status: $out"
json=$(as_user qus podman status --json 2>/dev/null)
inst=$(jq -r .binfmt_misc.instance <<<"$json" 2>/dev/null)
state=$(jq -r '.entries[] | select(.arch == "aarch64") | .state' <<<"$json" 2>/dev/null)
[ "$inst" = private ] && [ "$state" = registered ] && ok "status --json: instance private, aarch64 registered" ||
    bad "status --json: instance=$inst aarch64=$state"
out=$(as_user qus status 2>&1)
[[ $out == *"instance:    the host's"* ]] && ok "plain qus status as the user names the host's instance" ||
    bad "plain qus status: $out"
out=$(as_user qus register aarch64 2>&1); rc=$?
[ $rc = 1 ] && [[ $out == *"needs root"* && $out == *"qus podman register"* ]] &&
    ok "host register as the user: exit 1 with what to do instead" || bad "host register as user (rc $rc): $out"

out=$(as_user qus disable s390x 2>&1); rc=$?
[ $rc = 1 ] && [[ $out == *"Permission denied"* && $out == *"hint: this needs root: run it with sudo"* ]] &&
    ok "a permission error as the user comes with what to do" || bad "qus disable as user (rc $rc): $out"
out=$(as_user timeout 10 qusd 2>&1); rc=$?
[ $rc = 1 ] && [[ $out == *"needs root"* ]] && ok "qusd as a plain user on the host exits 1 at once, saying why" ||
    bad "qusd as user (rc $rc): $out"

# The user's own drop-ins count inside its namespace.
as_user mkdir -p "$home/.config/qus.d"
as_user sh -c "printf '[qemu]\nexclude = [\"s390x\"]\n' > $home/.config/qus.d/60-mine.toml"
out=$(as_user qus podman config 2>&1)
[[ $out == *"$home/.config/qus.d/60-mine.toml"* ]] && ok "user drop-in in ~/.config/qus.d is read in podman's namespace" ||
    bad "qus podman config: $out"
out=$(as_user qus podman register 2>&1)
out=$(as_user podman run --rm --arch s390x localhost/qus-s390x /bin/uname -m 2>&1)
[[ $out == *"exec format error"* ]] && ok "excluding s390x in the user's drop-in unregisters it there" ||
    bad "after exclude: $out"
rm -rf "$home/.config/qus.d"
# A drop-in others can write is refused, and nothing changes.
as_user mkdir -p "$home/.config/qus.d"
as_user sh -c "printf '[qemu]\nexclude = [\"aarch64\"]\n' > $home/.config/qus.d/61-open.toml; chmod 0666 $home/.config/qus.d/61-open.toml"
out=$(as_user qus podman register 2>&1); rc=$?
[ $rc != 0 ] && [[ $out == *"61-open.toml"* && $out == *"writable"* ]] && ok "a drop-in writable by others is refused (rc $rc)" ||
    bad "open drop-in (rc $rc): $out"
out=$(as_user podman run --rm --arch arm64 localhost/qus-arm64 /bin/uname -m 2>&1)
[ "$out" = aarch64 ] && ok "... and aarch64 stays registered" || bad "after refused drop-in: $out"
rm -rf "$home/.config/qus.d"

echo "== qusd in podman's namespace (the user service's command)"
# Until the deadline, run "$@" until it prints $want (no fixed sleeps).
wait_output() {
    local want=$1 deadline=$((SECONDS + 20)) out; shift
    while [ $SECONDS -lt $deadline ]; do
        out=$("$@" 2>&1)
        [[ $out == *"$want"* ]] && return 0
    done
    echo "waited 20 s for '$want'; last output: $out"
    return 1
}
as_user qus podman unregister --all >/dev/null 2>&1
as_user mkdir -p "$home/.config/qus.d" "$home/emu"
as_user sh -c "printf '[qemu]\nsearch_path = [\"$home/emu\"]\ntargets = [\"aarch64\"]\n' > $home/.config/qus.d/50-mine.toml"
log=$(mktemp); chmod 0666 "$log"
as_user sh -c "exec podman unshare qusd --log-level debug >$log 2>&1" &
qusd_pid=$!
trap 'pkill -u "$user" -x qusd; rm -rf "$bin" "$log"' EXIT
wait_output "quiet: every event so far is handled" cat "$log" && ok "rootless qusd started in podman's namespace" || bad "qusd start: $(cat "$log")"
as_user cp /usr/bin/qemu-aarch64-static "$home/emu/qemu-aarch64-static"
wait_output aarch64 as_user podman run --rm --arch arm64 localhost/qus-arm64 /bin/uname -m &&
    ok "an emulator copied into the user's search dir: qusd registers it, arm64 runs" ||
    bad "rootless qusd did not register: $(tail -5 "$log")"
as_user rm "$home/emu/qemu-aarch64-static"
wait_output "exec format error" as_user podman run --rm --arch arm64 localhost/qus-arm64 /bin/uname -m &&
    ok "the emulator removed: qusd unregisters it" || bad "rootless qusd did not unregister: $(tail -5 "$log")"
pkill -u "$user" -x qusd
wait "$qusd_pid" 2>/dev/null
rm -rf "$home/.config/qus.d" "$home/emu"

echo "== qus run"
out=$(as_user qus run -- ./arm64/busybox uname -m 2>&1)
[ "$out" = aarch64 ] && ok "qus run -- arm64 busybox uname -m prints aarch64" || bad "qus run arm64: $out"
out=$(as_user qus run --arch linux/s390x -- ./s390x/busybox uname -m 2>&1)
[ "$out" = s390x ] && ok "qus run --arch linux/s390x prints s390x" || bad "qus run s390x: $out"
out=$(as_user qus run --arch arm64 -- /usr/sbin/chroot "$cache/rootfs-arm64" /bin/sh -c 'uname -m; cat /proc/self/uid_map | head -1' 2>&1)
[[ $out == aarch64* ]] && ok "qus run -- chroot arm64-rootfs /bin/sh" || bad "qus run chroot: $out"
as_user qus run --arch arm64 -- ./arm64/busybox sh -c 'exit 7' >/dev/null 2>&1; rc=$?
[ $rc = 7 ] && ok "qus run exits with the command's status" || bad "qus run exit status $rc, want 7"
out=$(as_user qus run --arch arm64 -- ./s390x/busybox uname -m 2>&1); rc=$?
[ $rc = 126 ] && [[ $out == *"Exec format error"* ]] && ok "an unregistered arch: 126 and a clear error" ||
    bad "unregistered arch (rc $rc): $out"
out=$(as_user qus run -- ./arm64/busybox cat /proc/self/uid_map 2>&1)
[[ $(echo "$out" | wc -l) -ge 2 && $out == *" $uid "* ]] && ok "qus run maps the user to root plus its subordinate ids" ||
    bad "qus run uid_map: $out"
[ ! -e "/run/user/$uid/qus/binfmt_misc/qemu-s390x" ] && ok "qus run leaves nothing in the user's runtime dir" ||
    bad "qus run leaked into /run/user/$uid/qus"

echo "== buildah"
as_user buildah rm qus-c >/dev/null 2>&1
out=$(as_user qus buildah --arch arm64 from --name qus-c --arch arm64 localhost/qus-arm64 2>&1)
[[ $out == *qus-c* ]] && ok "qus buildah from" || bad "qus buildah from: $out"
out=$(as_user qus buildah --arch arm64 run --network=none qus-c -- uname -m 2>&1)
[ "$out" = aarch64 ] && ok "qus buildah run: arm64 RUN step prints aarch64" || bad "qus buildah run: $out"
out=$(as_user buildah run --network=none qus-c -- uname -m 2>&1)
[[ $out == *"exec format error"* ]] && ok "plain buildah run (no qus) still fails: buildah's namespace is per invocation" ||
    bad "plain buildah run: $out"
as_user buildah rm qus-c >/dev/null 2>&1

echo "== the image's entry points in a user namespace's own instance"
# What rootless podman --privileged, LXD/Incus and Sysbox give a container
# on Linux 6.7+: podman's user namespace (the one rootless containers run
# in), with binfmt_misc mounted afresh at the usual path. The entry points
# register there, must say that the host never uses it, and keep their
# stdout as their peers' (tonistiigi's JSON).
ln -sf qus "$bin/binfmt"
as_user qus podman unregister --all >/dev/null 2>&1
errf=$(mktemp); chmod 0666 "$errf"
out=$(as_user podman unshare unshare --mount sh -c "binfmt --install arm64 2>$errf"); rc=$?
err=$(cat "$errf")
supported=$(jq -r '.supported | join(",")' <<<"$out" 2>/dev/null)
[ $rc = 0 ] && [[ $supported == *linux/arm64* ]] && [[ $err == *"this user namespace's own, not the host's"* ]] &&
    [[ $err == *"installing: arm64 OK (in this user namespace's own binfmt_misc, not the host's)"* ]] &&
    ok "binfmt --install in podman's namespace: valid JSON ($supported), says the host's binfmt_misc is not used" ||
    bad "binfmt --install in podman's namespace (rc $rc): $out / $err"
out=$(as_user podman run --rm --arch arm64 localhost/qus-arm64 /bin/uname -m 2>&1)
[ "$out" = aarch64 ] && ok "... where podman's containers use it: arm64 prints aarch64" || bad "after binfmt --install: $out"
out=$(as_user podman unshare unshare --mount sh -c "qus --reset -p yes 2>$errf"); rc=$?
err=$(cat "$errf")
[[ $err == *"this user namespace's own, not the host's"* && $out == *"as binfmt interpreter for aarch64 (in this user namespace's own binfmt_misc, not the host's)"* ]] &&
    ok "--reset -p yes in podman's namespace says where the entries went" || bad "--reset in podman's namespace (rc $rc): $out / $err"
as_user podman unshare unshare --mount sh -c "binfmt --uninstall 'qemu-*'" >/dev/null 2>&1
as_user qus podman unregister --all >/dev/null 2>&1
rm -f "$errf" "$bin/binfmt"

echo "== host untouched"
after=$(host_listing)
[ "$before" = "$after" ] && ok "host binfmt_misc unchanged ($(echo "$before" | head -1))" ||
    { bad "host binfmt_misc changed"; diff <(echo "$before") <(echo "$after"); }

as_user podman system migrate >/dev/null 2>&1
echo "rootless: $pass passed, $fail failed"
[ $fail = 0 ]
