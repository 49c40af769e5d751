#!/bin/sh
# Rebuild the probe programs in probes/bin from probes/src.
#
# Each probe is a tiny static ELF that writes "qus-probe ARCH\n" with the
# write syscall and exits 0. They are committed; the build of qus itself
# does not need this script. It needs Debian's cross binutils:
#   apt-get install binutils-aarch64-linux-gnu binutils-alpha-linux-gnu \
#     binutils-arm-linux-gnueabihf binutils-hppa-linux-gnu binutils-i686-linux-gnu \
#     binutils-m68k-linux-gnu binutils-mips-linux-gnu binutils-mipsel-linux-gnu \
#     binutils-mips64-linux-gnuabi64 binutils-mips64el-linux-gnuabi64 \
#     binutils-powerpc-linux-gnu binutils-powerpc64-linux-gnu \
#     binutils-powerpc64le-linux-gnu binutils-riscv64-linux-gnu \
#     binutils-s390x-linux-gnu binutils-sh4-linux-gnu binutils-sparc64-linux-gnu \
#     binutils-x86-64-linux-gnu
# and, for hexagon, LLVM's assembler and linker: apt-get install llvm-14 lld-14
# Arches without a Debian assembler (loongarch64, microblaze, or1k) are
# emitted byte by byte by gen.py, run at the end.
set -eu
cd "$(dirname "$0")"
mkdir -p bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The system calls `qus test` checks an emulator for, with their numbers:
# since Linux 5.1 new calls have one number on every arch (alpha adds 110,
# mips o32/n64/n32 add 4000/5000/6000). `nosys` is no call at all: what an
# arch's emulator answers for it is what "not implemented" looks like
# there (the exit status differs: -ENOSYS is 218, mips's errno 89, ppc's
# positive 38, …), so no errno table is needed.
syscalls="nosys:1000 pidfd_open:434 clone3:435 close_range:436 openat2:437 faccessat2:439 fchmodat2:452"

# build ARCH SOURCE TOOLCHAIN-PREFIX "AS FLAGS" "LD FLAGS"
# Writes bin/ARCH (the write probe) and bin/sys/ARCH/CALL for each call
# above: the call with every argument 0, then exit with its result.
build() {
    arch=$1 src=$2 prefix=$3 asflags=$4 ldflags=$5
    printf '    .ascii "qus-probe %s\\n"\n' "$arch" > "$tmp/msg.s"
    link "$arch" "$src" "$prefix" "$asflags" "$ldflags" "bin/$arch"
    echo "$arch: $(wc -c < "bin/$arch") bytes"
    case $arch in
        alpha) offset=110 ;;
        mips | mipsel) offset=4000 ;;
        mips64 | mips64el) offset=5000 ;;
        mipsn32 | mipsn32el) offset=6000 ;;
        *) offset=0 ;;
    esac
    mkdir -p "bin/sys/$arch"
    for c in $syscalls; do
        link "$arch" "$src" "$prefix" "$asflags --defsym SYS_probe=$((${c#*:} + offset))" "$ldflags" \
            "bin/sys/$arch/${c%%:*}"
    done
}

link() {
    if [ "$3" = llvm ]; then
        # shellcheck disable=SC2086
        llvm-mc -triple="$1" -filetype=obj $4 -I "$tmp" -o "$tmp/$1.o" "src/$2.S"
        # shellcheck disable=SC2086
        ld.lld-14 $5 -static -N -s --build-id=none -o "$6" "$tmp/$1.o"
        return
    fi
    # shellcheck disable=SC2086
    "$3-as" $4 -I "$tmp" -o "$tmp/$1.o" "src/$2.S"
    # -N: one segment, no page padding; no build-id; stripped.
    # shellcheck disable=SC2086
    "$3-ld" $5 -static -N -s --build-id=none --no-warn-rwx-segments \
        -o "$6" "$tmp/$1.o"
}

build aarch64     aarch64 aarch64-linux-gnu       ""          ""
build aarch64_be  aarch64 aarch64-linux-gnu       "-EB"       "-EB"
build alpha       alpha   alpha-linux-gnu         ""          ""
build arm         arm     arm-linux-gnueabihf     ""          ""
build armeb       arm     arm-linux-gnueabihf     "-EB"       "-EB"
build hexagon     hexagon llvm                    ""          ""
build hppa        hppa    hppa-linux-gnu          ""          ""
build i386        i386    i686-linux-gnu          ""          ""
build m68k        m68k    m68k-linux-gnu          ""          ""
build mips        mips    mips-linux-gnu          "--defsym SYS_write=4004 --defsym SYS_exit=4001" ""
build mipsel      mips    mipsel-linux-gnu        "--defsym SYS_write=4004 --defsym SYS_exit=4001" ""
build mipsn32     mips    mips64-linux-gnuabi64   "-n32 --defsym SYS_write=6001 --defsym SYS_exit=6058" "-m elf32btsmipn32"
build mipsn32el   mips    mips64el-linux-gnuabi64 "-n32 --defsym SYS_write=6001 --defsym SYS_exit=6058" "-m elf32ltsmipn32"
build mips64      mips    mips64-linux-gnuabi64   "--defsym SYS_write=5001 --defsym SYS_exit=5058" ""
build mips64el    mips    mips64el-linux-gnuabi64 "--defsym SYS_write=5001 --defsym SYS_exit=5058" ""
build ppc         ppc     powerpc-linux-gnu       ""          ""
build ppc64       ppc     powerpc64-linux-gnu     "--defsym ELFV2=1" ""
build ppc64le     ppc     powerpc64le-linux-gnu   "--defsym ELFV2=1" ""
build riscv32     riscv   riscv64-linux-gnu       "-march=rv32i -mabi=ilp32" "-m elf32lriscv"
build riscv64     riscv   riscv64-linux-gnu       ""          ""
build s390x       s390x   s390x-linux-gnu         ""          ""
build sh4         sh4     sh4-linux-gnu           ""          ""
build sh4eb       sh4     sh4-linux-gnu           "-big"      "-EB"
build sparc       sparc   sparc64-linux-gnu       "-32 -Av8 --defsym TRAP=0x10"      "-m elf32_sparc"
build sparc32plus sparc   sparc64-linux-gnu       "-32 -Av8plus --defsym TRAP=0x10"  "-m elf32_sparc"
build sparc64     sparc   sparc64-linux-gnu       "-64 -Av9 --defsym TRAP=0x6d"      "-m elf64_sparc"
build x86_64      x86_64  x86_64-linux-gnu        ""          ""

# The assembler marks sparc32plus code as plain EM_SPARC unless it uses v9
# instructions; the binfmt pattern wants EM_SPARC32PLUS (18), which QEMU
# runs the same way. i486 is i386 code with e_machine EM_486 (6), which
# Linux and QEMU accept.
python3 - <<'PY'
def patch(path, offset, value):
    b = bytearray(open(path, "rb").read())
    b[offset] = value
    open(path, "wb").write(b)
import glob, os
patch("bin/sparc32plus", 19, 18)
for f in glob.glob("bin/sys/sparc32plus/*"):
    patch(f, 19, 18)
b = bytearray(open("bin/i386", "rb").read())
b[18] = 6
open("bin/i486", "wb").write(b.replace(b"qus-probe i386\n", b"qus-probe i486\n"))
os.makedirs("bin/sys/i486", exist_ok=True)
for f in glob.glob("bin/sys/i386/*"):
    b = bytearray(open(f, "rb").read())
    b[18] = 6
    open(f.replace("/i386/", "/i486/"), "wb").write(b)
PY
chmod 755 bin/i486 bin/sys/i486/*
echo "i486: $(wc -c < bin/i486) bytes"

[ -s gen.py ] && python3 gen.py bin "$syscalls"

# The setuid probe (`qus test`'s C-flag check), for aarch64, the arch most
# emulated containers are: prints euid=root or euid=user.
aarch64-linux-gnu-as -o "$tmp/setuid-aarch64.o" src/setuid/aarch64.S
aarch64-linux-gnu-ld -static -N -s --build-id=none --no-warn-rwx-segments \
    -o bin/setuid-aarch64 "$tmp/setuid-aarch64.o"
echo "setuid-aarch64: $(wc -c < bin/setuid-aarch64) bytes"

# The pointer-authentication probe (`qus test`'s cost of PAC under the
# emulator's default CPU against a CPU model without it), for aarch64.
aarch64-linux-gnu-as --defsym ITERATIONS=1000000 -o "$tmp/aarch64-pac.o" src/aarch64-pac.S
aarch64-linux-gnu-ld -static -N -s --build-id=none --no-warn-rwx-segments \
    -o bin/aarch64-pac "$tmp/aarch64-pac.o"
echo "aarch64-pac: $(wc -c < bin/aarch64-pac) bytes"
