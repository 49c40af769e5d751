#!/bin/bash
# The published images: bytes per tag and platform (raw and compressed,
# from the OCI layout `make images` writes), then pull times from a local
# registry by rootless podman and the Action's time with image: (both from
# tests/container/registry.sh, which starts and stops that registry on
# 127.0.0.1). Not part of `cargo bench`: it needs `make images` first, and
# root (podman runs as the rootless tests' user).
#
#   bench/images.sh [LAYOUT]        (default target/oci; prints Markdown)
set -euo pipefail
cd "$(dirname "$0")/.."
layout=${1:-target/oci}
[ -f "$layout/index.json" ] || { echo "images: no OCI layout at $layout: make images" >&2; exit 1; }
for t in jq zstd; do command -v $t >/dev/null || { echo "images: $t is missing: apt-get install $t" >&2; exit 1; }; done
blob() { cat "$layout/blobs/sha256/${1#sha256:}"; }
ref() { jq -r --arg r "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' "$layout/index.json"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

echo "Linux $(uname -r), $(nproc) CPUs; QEMU (amd64) $(blob "$(blob "$(blob "$(ref latest)" | jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest')" | jq -r .config.digest)" | jq -r '.config.Labels["org.qus.qemu.version"]')."
echo
echo "| tag | platform | emulators | raw MB | compressed MB |"
echo "|---|---|---|---|---|"
for tag in latest binfmt gzip full; do
    idx=$(ref "$tag")
    [ -n "$idx" ] || { echo "images: the layout at $layout has no tag $tag: make images" >&2; exit 1; }
    for m in $(blob "$idx" | jq -r '.manifests[].digest'); do
        plat=$(blob "$idx" | jq -r --arg m "$m" '.manifests[] | select(.digest == $m) | .platform | "linux/" + .architecture + (if .variant then "/" + .variant else "" end)')
        raw=0 comp=0 n=0
        for l in $(blob "$m" | jq -r '.layers[].digest'); do
            type=$(blob "$m" | jq -r --arg l "$l" '.layers[] | select(.digest == $l) | .mediaType')
            size=$(blob "$m" | jq -r --arg l "$l" '.layers[] | select(.digest == $l) | .size')
            case $type in *zstd) dec=(zstd -dcq) ;; *) dec=(gzip -dc) ;; esac
            raw=$((raw + $(blob "$l" | "${dec[@]}" | wc -c)))
            n=$((n + $(blob "$l" | "${dec[@]}" | tar -t | grep -c '^usr/bin/qemu-' || true)))
            comp=$((comp + size))
        done
        echo "| $tag | $plat | $n | $(mb "$raw") | $(mb "$comp") |"
    done
done
echo
echo "tonistiigi/binfmt:latest (its published figures): ~81 MB raw, ~24 MB compressed for amd64."
echo
if [ "$(id -u)" = 0 ]; then
    out=$(tests/container/registry.sh "$layout" 2>&1)
    echo "Rootless podman, local registry on 127.0.0.1 (amd64 image):"
    echo
    echo "| what | bytes | ms |"
    echo "|---|---|---|"
    echo "$out" | awk '/^pull / { printf "| pull %s | %s | %s |\n", $2, $3, $4 }
                      /^action-image / { printf "| setup-qus.sh with QUS_IMAGE to qus test passing | | %s |\n", $2 }'
    echo "$out" | grep -q '^registry: [0-9]* passed, 0 failed$' || { echo "$out" | grep FAIL; exit 1; }
else
    echo "images: the pull times need root (tests/container/registry.sh runs podman as another user): sudo $0" >&2
    exit 1
fi
