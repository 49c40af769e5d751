#!/bin/sh
# Regenerate the probe programs in probes/bin from probes/src.
# Needs Debian's cross binutils (the build of qus itself does not):
#   apt-get install binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf \
#     binutils-riscv64-linux-gnu binutils-s390x-linux-gnu binutils-powerpc64le-linux-gnu
set -eu
cd "$(dirname "$0")"
mkdir -p bin
build() { # arch toolchain-prefix [as flags]
    arch=$1; prefix=$2; shift 2
    "$prefix-as" "$@" -o "bin/$arch.o" "src/$arch.S"
    # -N: one RWX segment (no page padding); no build-id; stripped.
    "$prefix-ld" -static -N -s --build-id=none --no-warn-rwx-segments -o "bin/$arch" "bin/$arch.o"
    rm "bin/$arch.o"
    echo "$arch: $(wc -c < "bin/$arch") bytes"
}
build aarch64 aarch64-linux-gnu
build arm arm-linux-gnueabihf
build riscv64 riscv64-linux-gnu
build s390x s390x-linux-gnu
build ppc64le powerpc64le-linux-gnu
