#!/bin/bash
# The published images through a real registry and a real engine: the OCI
# layout `make images` writes (target/oci) is pushed as it is (no
# recompression) to Debian's docker-registry, started here on 127.0.0.1
# and stopped at the end, then pulled by rootless podman as the rootless
# tests' user and run with docker/setup-qemu-action's exact sequence; a
# foreign container runs afterwards. Every registration lands in that
# user's own binfmt_misc instance: the host's must come out as it went in.
#
#   tests/container/registry.sh [LAYOUT]      (run as root; default target/oci)
#
# Prints bytes pulled and pull times (bench/images.sh reports them too).
set -uo pipefail
cd "$(dirname "$0")/../.."
layout=${1:-target/oci}
user=${QUS_ROOTLESS_USER:-qustest}
cache=/var/cache/qus-rootless
pass=0 fail=0
ok()  { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
die() { echo "registry: $*"; echo "registry: 0 passed, 1 failed"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (podman runs as user $user)"
for t in docker-registry skopeo podman jq curl setpriv; do
    command -v "$t" >/dev/null || die "$t is missing: apt-get install docker-registry skopeo podman jq curl util-linux"
done
id "$user" >/dev/null 2>&1 || die "no user $user: run tests/rootless/setup.sh first"
[ -f "$cache/rootfs-arm64.tar" ] || die "no arm64 root file system in $cache: run tests/rootless/setup.sh"
[ -f "$layout/index.json" ] || die "no OCI layout at $layout: make images"

uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
# shellcheck source=tests/rootless/lib.sh
. tests/rootless/lib.sh
before=$(host_listing)

# The registry: loopback only, its own storage, gone at the end.
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/data
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
registry=$!
# Images pulled from a test registry (any port): the pulls below must
# move their bytes, which podman skips for layers it already has (by
# their uncompressed digest, whatever the compression).
drop_pulled() {
    as_user podman images --format '{{.Repository}}:{{.Tag}}' | grep '^127\.0\.0\.1:' |
        while read -r i; do as_user podman rmi -f "$i" >/dev/null 2>&1; done
}
cleanup() {
    kill "$registry" 2>/dev/null; wait "$registry" 2>/dev/null
    drop_pulled
    as_user podman system migrate >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
up=""
for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && { up=1; break; }
    kill -0 "$registry" 2>/dev/null || break
    sleep 0.1
done
[ -n "$up" ] || die "docker-registry did not answer on 127.0.0.1:$port: $(cat "$work/registry.log")"
ok "docker-registry listens on 127.0.0.1:$port"

repo=127.0.0.1:$port/qus
refs=$(jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"]' "$layout/index.json")
for r in latest binfmt full gzip; do
    grep -qx "$r" <<<"$refs" || bad "the layout has no $r ref (has: $(echo $refs))"
done
# Push each ref as published: --preserve-digests refuses any change.
for r in latest binfmt full gzip; do
    if out=$(skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$layout:$r" "docker://$repo:$r" 2>&1); then
        want=$(jq -r --arg r "$r" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' "$layout/index.json")
        got=$(skopeo inspect --raw --tls-verify=false "docker://$repo:$r" | sha256sum | cut -d' ' -f1)
        [ "sha256:$got" = "$want" ] && ok "pushed $r as published ($want)" || bad "$r: registry has sha256:$got, layout $want"
    else bad "skopeo copy $r: $out"; fi
done

# What one amd64 pull of a ref moves: its index, the amd64 manifest, the
# config and the layers (from the layout, which is what was pushed).
blob() { cat "$layout/blobs/sha256/${1#sha256:}"; }
bytes_of() {
    local idx m
    idx=$(jq -r --arg r "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' "$layout/index.json")
    m=$(blob "$idx" | jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest')
    echo $(( $(blob "$idx" | wc -c) + $(blob "$m" | wc -c) + $(blob "$m" | jq '[.config.size] + [.layers[].size] | add') ))
}
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

# The default tag: the Docker platform set, small enough, for every arch.
latest_bytes=$(bytes_of latest)
[ "$latest_bytes" -le 12000000 ] && ok "latest for amd64 is $latest_bytes bytes compressed (at most 12 MB)" ||
    bad "latest for amd64 is $latest_bytes bytes compressed, over 12 MB"
idx=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "latest") | .digest' "$layout/index.json")
plats=$(blob "$idx" | jq -r '[.manifests[].platform | .architecture + (if .variant then "/" + .variant else "" end)] | join(" ")')
echo "     latest: $plats"
m=$(blob "$idx" | jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest')
emus=$(for l in $(blob "$m" | jq -r '.layers[].digest'); do blob "$l" | zstd -dcq | tar -t; done |
    sed -n 's|^usr/bin/\(qemu-.*\)|\1|p' | sed 's/-static$//' | sort | paste -sd' ')
[ "$emus" = "qemu-aarch64 qemu-arm qemu-i386 qemu-loongarch64 qemu-mips64 qemu-mips64el qemu-ppc64le qemu-riscv64 qemu-s390x" ] &&
    ok "latest for amd64 holds the Docker platform set: $emus" || bad "latest for amd64 holds: $emus"
media=$(blob "$m" | jq -r '[.layers[].mediaType] | unique | join(" ")')
[ "$media" = "application/vnd.oci.image.layer.v1.tar+zstd" ] && ok "latest's layers are zstd" || bad "latest's layers: $media"

as_user podman system migrate >/dev/null 2>&1
drop_pulled
for r in gzip binfmt; do
    drop_pulled
    t=$(date +%s%N)
    if out=$(as_user podman pull -q --tls-verify=false "$repo:$r" 2>&1); then
        took=$(ms "$t")
        ok "rootless podman pulled $r ($(bytes_of "$r") bytes for amd64, $took ms)"
        echo "pull $r $(bytes_of "$r") $took"
    else bad "podman pull $r: $out"; fi
done
# latest shares binfmt's layers: only its config and manifests are new.
t=$(date +%s%N)
as_user podman pull -q --tls-verify=false "$repo:latest" >/dev/null 2>&1 &&
    ok "rootless podman pulled latest after binfmt in $(ms "$t") ms (same layers)" || bad "podman pull latest"

# setup-qemu-action's sequence, as src/main.ts runs it (docker run
# --rm --privileged IMAGE ARGS), with podman. A rootless engine's
# binfmt_misc is the user namespace's own, dropped when its last mount
# goes: without a mount that outlives the container, qus says so.
img=$repo:binfmt
out=$(as_user podman run --rm --privileged "$img" --install arm64 2>&1 >/dev/null)
[[ $out == *"drops its entries when this container exits"* && $out == *"podman unshare mount"* ]] &&
    ok "with nothing keeping the instance, --install says the entries go with the container" ||
    bad "no warning about the instance's lifetime: $out"
# As the docs say: keep one mount in podman's own namespace first.
as_user podman unshare mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    bad "podman unshare mount binfmt_misc"
v=$(as_user podman run --rm --privileged "$img" --version 2>&1)
[[ $v == binfmt/qus-*" qemu/"* ]] && ok "--version: $v" || bad "--version: $v"
as_user podman run --rm --privileged "$img" --uninstall "qemu-*" >/dev/null 2>&1 || bad "--uninstall qemu-* failed"
inst=$(as_user podman run --rm --privileged "$img" --install arm64,s390x 2>&1 >/dev/null)
[[ $inst == *"installing: arm64 OK"* && $inst == *"installing: s390x OK"* ]] &&
    ok "--install arm64,s390x: $(grep -c '^installing: .* OK$' <<<"$inst") OK" || bad "--install: $inst"
json=$(as_user podman run --rm --privileged "$img" 2>/dev/null)
platforms=$(jq -r '.supported | join(",")' <<<"$json" 2>&1)
[[ $platforms == linux/amd64,* && $platforms == *linux/arm64* && $platforms == *linux/s390x* ]] &&
    ok "status JSON parses as setup-qemu-action's: platforms=$platforms" || bad "status JSON: $json"

# A foreign container afterwards, from Debian's arm64 busybox.
as_user podman image exists localhost/qus-arm64 ||
    as_user podman import --arch arm64 "$cache/rootfs-arm64.tar" localhost/qus-arm64 >/dev/null 2>&1 ||
    bad "podman import arm64"
m=$(as_user podman run --rm --arch arm64 localhost/qus-arm64 /bin/uname -m 2>&1)
[ "$m" = aarch64 ] && ok "an arm64 container runs afterwards (uname -m: $m)" || bad "arm64 container: $m"

# The Action with image: (QUS_IMAGE), podman as its engine: registers
# with the image's qus and runs the image's qus test.
# (Under /tmp itself: the caller's TMPDIR may be a directory only root
# can enter, as the packaging test's is.)
act=$(mktemp -d /tmp/qus-action.XXXXXX); chmod 0755 "$act"; mkdir -p "$act/dist/ci" "$act/packaging/qemu"
cp dist/ci/setup-qus.sh "$act/dist/ci/"; cp packaging/qemu/channel.sh "$act/packaging/qemu/"; cp Cargo.toml "$act/"
chmod -R a+rX "$act"
t=$(date +%s%N)
aout=$(as_user env QUS_IMAGE="$repo:latest" QUS_ENGINE=podman QUS_PLATFORMS=riscv64,linux/ppc64le \
    "$act/dist/ci/setup-qus.sh" 2>&1)
took=$(ms "$t")
rm -rf "$act"
[[ $aout == *"2 pass"* && $aout == *"qus: ready for: riscv64 linux/ppc64le"* ]] &&
    ok "setup-qus.sh with QUS_IMAGE (the action's image:) registered and tested 2 platforms in $took ms" ||
    bad "setup-qus.sh with QUS_IMAGE: $aout"
echo "action-image $took"

# multiarch's line against latest, the image's default entry point.
ma=$(as_user podman run --rm --privileged "$repo:latest" --reset -p yes 2>/dev/null)
[[ $ma == *"as binfmt interpreter for aarch64"* ]] &&
    ok "--reset -p yes on latest: $(grep -c '^Setting ' <<<"$ma") arches" || bad "--reset -p yes: $ma"

after=$(host_listing)
[ "$before" = "$after" ] && ok "the host's binfmt_misc is as it was" || bad "the host's binfmt_misc changed"
echo "registry: $pass passed, $fail failed"
[ "$fail" = 0 ]
