# The host arches qus ships for, and how to cross-build its static
# binaries for each. Sourced by packaging/container/build.sh (the images)
# and packaging/release.sh (the release assets); the caller defines die().
#
# docker-arch  variant  rust-target                     cross-gcc                   debian-arch  qemu-name
cross_table="amd64   -   x86_64-unknown-linux-gnu        x86_64-linux-gnu-gcc        amd64    x86_64
arm64   v8  aarch64-unknown-linux-gnu       aarch64-linux-gnu-gcc       arm64    aarch64
arm     v7  armv7-unknown-linux-gnueabihf   arm-linux-gnueabihf-gcc     armhf    arm
ppc64le -   powerpc64le-unknown-linux-gnu   powerpc64le-linux-gnu-gcc   ppc64el  ppc64le
s390x   -   s390x-unknown-linux-gnu         s390x-linux-gnu-gcc         s390x    s390x
386     -   i686-unknown-linux-gnu          i686-linux-gnu-gcc          i386     i386"
cross_all=$(echo "$cross_table" | awk '{print $1}' | paste -sd,)
cross_host_deb=$(dpkg --print-architecture)

# The table's row for a Docker arch name (empty if unknown).
cross_row() { echo "$cross_table" | awk -v a="$1" '$1 == a'; }

# Build static qus and qusd for a Docker arch into target/TRIPLE/release
# (glibc +crt-static, no NSS use: they run on any distribution and FROM
# scratch); prints the triple. Anything missing stops with its name.
cross_build() {
    local r variant target linker deb
    r=$(cross_row "$1")
    [ -n "$r" ] || die "unknown arch $1 (known: $cross_all)"
    read -r _ variant target linker deb _ <<<"$r"
    rustup target list --installed 2>/dev/null | grep -qx "$target" ||
        rustup target add "$target" >&2 ||
        die "rust target $target is missing and 'rustup target add $target' failed"
    local env_linker=()
    if [ "$deb" != "$cross_host_deb" ]; then
        command -v "$linker" >/dev/null ||
            die "no cross compiler $linker for $1: apt-get install gcc-${linker%-gcc}"
        env_linker=("CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER=$linker")
    fi
    env "${env_linker[@]}" RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target" >&2
    echo "$target"
}
