#!/bin/sh
# Build the qus image with buildah (no Docker engine, no registry pulls:
# FROM scratch). Needs: buildah, qemu-user-static, a Rust toolchain.
#   packaging/container/build.sh [TAG]
set -eu
cd "$(dirname "$0")/../.."
tag=${1:-localhost/qus:latest}
storage=${BUILDAH_STORAGE_DRIVER:-vfs}
# Static binaries (glibc, no NSS use) so the image needs no libc.
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp packaging/container/Containerfile "$ctx/"
cp target/x86_64-unknown-linux-gnu/release/qus target/x86_64-unknown-linux-gnu/release/qusd "$ctx/"
mkdir "$ctx/emulators"
for f in /usr/bin/qemu-*-static; do
    [ -e "$f" ] || { echo "no /usr/bin/qemu-*-static: apt-get install -y qemu-user-static" >&2; exit 1; }
    cp "$f" "$ctx/emulators/"
done
buildah --storage-driver "$storage" bud --layers=false -f "$ctx/Containerfile" -t "$tag" "$ctx"
echo "built $tag"
