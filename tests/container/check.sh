#!/bin/bash
# Check the image built by packaging/container/build.sh: its contents and
# config, then run its default command (`qus register`) and `qus test` from
# the image's own root file system, chrooted, in a private user + pid +
# mount namespace with its own binfmt_misc instance (no Docker engine here,
# and the host's registrations must not be touched).
set -euo pipefail
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
n=$(ls "$mnt"/usr/bin/qemu-*-static | wc -l)
check "$n QEMU emulators" '[ "$n" -ge 30 ]'
check "nothing else in the image" '[ "$(echo "$files" | grep -vc -e "^./usr/bin/qemu-.*-static$" -e "^./usr/bin/qusd\?$")" = 0 ]'
check "qus is static (no ELF interpreter)" '! readelf -l "$mnt/usr/bin/qus" | grep "program interpreter" >/dev/null'
check "qusd is static (no ELF interpreter)" '! readelf -l "$mnt/usr/bin/qusd" | grep "program interpreter" >/dev/null'

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
check "default command registered the emulators" 'echo "$out" | grep "32 registered, 0 errors" >/dev/null'
check "qus test passes in the image" 'echo "$out" | grep "30 pass" >/dev/null'
echo "image size: $size"
if [ $fail = 0 ]; then echo "container: 1 passed, 0 failed"; else echo "container: 0 passed, 1 failed"; fi
exit $fail
