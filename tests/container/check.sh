#!/bin/bash
# Check the image built by packaging/container/build.sh: its contents and
# config, then run its default command (`qus register`) and `qus test` from
# the image's own root file system, chrooted, in a private user + pid +
# mount namespace with its own binfmt_misc instance (no Docker engine here,
# and the host's registrations must not be touched).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-localhost/qus:latest}
b() { buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}" "$@"; }
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

entry=$(b inspect --type image "$tag" | python3 -c '
import json, sys
c = json.load(sys.stdin)["OCIv1"]["config"]
print(json.dumps(c.get("Entrypoint")), json.dumps(c.get("Cmd")))')
check "entrypoint + cmd are qus register ($entry)" '[ "$entry" = "[\"/usr/bin/qus\"] [\"register\"]" ]'
size=$(b images --format '{{.Size}}' "$tag" 2>/dev/null | head -1)
ctr=$(b from "$tag")
trap 'b umount "$ctr" >/dev/null 2>&1; b rm "$ctr" >/dev/null 2>&1' EXIT
mnt=$(b mount "$ctr")
files=$(cd "$mnt" && find . -type f | sort)
check "qus and qusd present" '[ -x "$mnt/usr/bin/qus" ] && [ -x "$mnt/usr/bin/qusd" ]'
check "/usr/bin/binfmt is a link to qus, not a second copy" '[ "$(readlink "$mnt/usr/bin/binfmt")" = qus ]'
n=$(find "$mnt/usr/bin" -name 'qemu-*' -type f | wc -l)
check "$n QEMU emulators" '[ "$n" -ge 30 ]'
check "nothing else in the image" '[ "$(echo "$files" | grep -vc -e "^./usr/bin/qemu-[^/]*$" -e "^./usr/bin/qusd\?$" -e "^./usr/bin/binfmt$")" = 0 ]'
# The image carries the default QEMU channel, as its labels and the
# emulators themselves say.
channel=$(packaging/qemu/channel.sh --default)
labels=$(b inspect --type image --format '{{index .ImageAnnotations "x"}}{{.OCIv1.Config.Labels}}' "$tag")
emu=$(find "$mnt/usr/bin" -name 'qemu-*' -type f | sort | head -1)
emu_version=$("$emu" -version | sed -n 's/.* version \([0-9.]*\).*/\1/p')
check "the image carries QEMU channel $channel (labels: $labels; $(basename "$emu") $emu_version)" \
    '[[ $labels == *"org.qus.qemu.channel:$channel "* ]] && [[ $emu_version == "$channel".* ]]'
# readelf's output first: a missing or failing readelf fails the check.
for b in qus qusd; do
    hdr=$(readelf -l "$mnt/usr/bin/$b" 2>&1) || hdr="readelf failed (apt-get install binutils): $hdr"
    check "$b is static (no ELF interpreter)" '[[ $hdr == *"Program Headers"* && $hdr != *"program interpreter"* ]]'
done

out=$(unshare --user --map-root-user --mount --pid --fork sh -c '
    set -e
    mnt=$1
    mkdir -p "$mnt/proc"
    mount -t proc proc "$mnt/proc"
    mount -t binfmt_misc binfmt_misc "$mnt/proc/sys/fs/binfmt_misc"
    chroot "$mnt" /usr/bin/qus register 2>&1
    chroot "$mnt" /usr/bin/qus test 2>&1
    umount "$mnt/proc/sys/fs/binfmt_misc" "$mnt/proc"
' sh "$mnt") || { echo "$out"; fail=1; }
echo "$out" | tail -4
# Every emulator but those of arches this machine runs itself (i386 on
# x86_64) is registered, and every registered one with a probe passes.
registered=$(echo "$out" | sed -n 's/^qus: \([0-9]*\) registered, 0 errors.*/\1/p')
check "default command registered the emulators ($registered of $n)" '[ -n "$registered" ] && [ "$registered" -ge $((n - 2)) ]'
summary=$(echo "$out" | grep -E '^[0-9]+ [a-z-]+(, [0-9]+ [a-z-]+)*$' | tail -1)
passed=$(echo "$summary" | grep -oE '[0-9]+ pass' | cut -d' ' -f1)
check "qus test passes in the image ($summary)" '[[ $summary != *fail* ]] && [ "${passed:-0}" -ge $((registered - 2)) ]'

# The tonistiigi/binfmt drop-in (TAG-binfmt), run with
# docker/setup-qemu-action's exact sequence: --version, --uninstall
# qemu-* (reset), --install PLATFORMS, then no arguments, whose stdout
# must be the JSON it parses (platforms = supported.join(',')).
drop_in="$tag-binfmt"
entry=$(b inspect --type image "$drop_in" | python3 -c '
import json, sys
c = json.load(sys.stdin)["OCIv1"]["config"]
print(json.dumps(c.get("Entrypoint")))')
check "$drop_in's entry point is /usr/bin/binfmt ($entry)" '[ "$entry" = "[\"/usr/bin/binfmt\"]" ]'
seq_out=$(unshare --user --map-root-user --mount --pid --fork sh -c '
    set -e
    mnt=$1
    mount -t proc proc "$mnt/proc"
    mount -t binfmt_misc binfmt_misc "$mnt/proc/sys/fs/binfmt_misc"
    # What a container runtime provides (qus runs emulators with
    # stdin from /dev/null to ask their version).
    mkdir -p "$mnt/dev" && touch "$mnt/dev/null" && mount --bind /dev/null "$mnt/dev/null"
    echo "== version"; chroot "$mnt" /usr/bin/binfmt --version 2>&1
    echo "== reset"; chroot "$mnt" /usr/bin/binfmt --uninstall "qemu-*" 2>/dev/null >/dev/null
    echo "== install"; chroot "$mnt" /usr/bin/binfmt --install arm64,riscv64,linux/arm/v7 2>&1 >/dev/null
    echo "== status"; chroot "$mnt" /usr/bin/binfmt 2>/dev/null
    echo "== stderr of status"; chroot "$mnt" /usr/bin/binfmt 2>&1 >/dev/null
    echo "== run"; cat "$2" > "$mnt/tmp-probe"; chmod 755 "$mnt/tmp-probe"; chroot "$mnt" /tmp-probe
    echo "== unknown flag"; chroot "$mnt" /usr/bin/binfmt --reset 2>/dev/null || echo "exit $?"
    umount "$mnt/dev/null" "$mnt/proc/sys/fs/binfmt_misc" "$mnt/proc"
' sh "$mnt" "$PWD/probes/bin/riscv64" 2>&1) || { echo "$seq_out"; fail=1; }
status=$(sed -n '/^== status$/,/^== stderr of status$/p' <<<"$seq_out" | sed '1d;$d')
platforms=$(python3 -c 'import json, sys; print(",".join(json.loads(sys.argv[1])["supported"]))' "$status" 2>&1)
check "--version answers on stderr ($(sed -n '/^== version$/{n;p}' <<<"$seq_out"))" 'grep -q "^binfmt/qus-.* qemu/'"$channel"'\." <<<"$seq_out"'
# This namespace's binfmt_misc is its own (not the host's): each line says
# so after tonistiigi's OK, and one line before them says why.
check "--install logs each platform as tonistiigi does, saying the host's binfmt_misc is not the one" \
    'grep -q "^installing: arm64 OK (in this user namespace.s own binfmt_misc, not the host.s)$" <<<"$seq_out" &&
     grep -q "^installing: linux/arm/v7 OK (in this user namespace.s own binfmt_misc, not the host.s)$" <<<"$seq_out" &&
     grep -q "this binfmt_misc is this user namespace.s own, not the host.s" <<<"$seq_out"'
check "qus says on stderr that it registers PF, not CF" 'grep -q "not tonistiigi/binfmt.s CF" <<<"$seq_out"'
check "stdout with no arguments is the JSON setup-qemu-action parses: platforms=$platforms" \
    '[[ $platforms == linux/amd64,* && $platforms == *linux/arm64* && $platforms == *linux/riscv64* && $platforms == *linux/arm/v7* ]]'
check "a status run writes nothing to stderr" '[ -z "$(sed -n "/^== stderr of status$/,/^== run$/p" <<<"$seq_out" | sed "1d;\$d")" ]'
check "a riscv64 program runs after the drop-in registered it" 'grep -qx "qus-probe riscv64" <<<"$seq_out"'
check "an unknown flag exits 2, as Go's flag package does" 'grep -qx "exit 2" <<<"$seq_out"'
rm -f "$mnt/tmp-probe"
echo "image size: $size"
if [ $fail = 0 ]; then echo "container: 1 passed, 0 failed"; else echo "container: 0 passed, 1 failed"; fi
exit $fail
