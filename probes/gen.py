#!/usr/bin/env python3
"""Emit probe programs for arches Debian has no assembler for.

Each is a minimal static ELF: header, one PT_LOAD segment, the machine code
written out instruction by instruction (encodings from each ISA manual),
and the message. Same contract as the assembled probes: write
"qus-probe ARCH\\n" to stdout with the write syscall, then exit(0).

    python3 gen.py OUTDIR
"""

import os
import struct
import sys

BASE = 0x10000  # load address: above mmap_min_addr, reachable by every ISA's immediates


def build(machine, parts, *, bits=32, big=False, flags=0, entry_skip=0):
    """parts: a function (base_of_blob) -> bytes. Returns the ELF file."""
    end = ">" if big else "<"
    # e_shentsize must be a section header's size even with no sections:
    # QEMU's loader checks it.
    ehsize, phsize, shsize = (52, 32, 40) if bits == 32 else (64, 56, 64)
    blob_at = BASE + ehsize + phsize
    blob = parts(blob_at)
    total = ehsize + phsize + len(blob)
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 2 if big else 1, 1]) + bytes(9)
    entry = blob_at + entry_skip
    if bits == 32:
        eh = ident + struct.pack(end + "HHIIIIIHHHHHH", 2, machine, 1, entry, ehsize, 0,
                                 flags, ehsize, phsize, 1, shsize, 0, 0)
        ph = struct.pack(end + "IIIIIIII", 1, 0, BASE, BASE, total, total, 5, 0x1000)
    else:
        eh = ident + struct.pack(end + "HHIQQQIHHHHHH", 2, machine, 1, entry, ehsize, 0,
                                 flags, ehsize, phsize, 1, shsize, 0, 0)
        ph = struct.pack(end + "IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)
    return eh + ph + blob


def msg(arch):
    return f"qus-probe {arch}\n".encode()


# --- OpenRISC 1000 (big-endian, EM_OPENRISC 92); generic syscalls 64/93 ---
def or1k(arch, sysno=None):
    def addi(d, a, imm):
        return (0x27 << 26) | (d << 21) | (a << 16) | (imm & 0xFFFF)

    def sys_parts(at):
        words = [addi(r, 0, 0) for r in range(3, 9)] + [
            addi(11, 0, sysno),                                 # l.addi r11,r0,N
            0x20000001,                                         # l.sys 1
            (0x2A << 26) | (3 << 21) | (11 << 16),              # l.ori r3,r11,0: exit(result)
            addi(11, 0, 93),
            0x20000001,
        ]
        return struct.pack(">" + "I" * len(words), *words)

    def parts(at):
        m = msg(arch)
        code_len = 9 * 4
        addr = at + code_len
        words = [
            addi(11, 0, 64),                                    # l.addi r11,r0,64 (write)
            addi(3, 0, 1),                                      # l.addi r3,r0,1
            (0x06 << 26) | (4 << 21) | (addr >> 16),            # l.movhi r4,hi(msg)
            (0x2A << 26) | (4 << 21) | (4 << 16) | (addr & 0xFFFF),  # l.ori r4,r4,lo(msg)
            addi(5, 0, len(m)),                                 # l.addi r5,r0,len
            0x20000001,                                         # l.sys 1
            addi(11, 0, 93),                                    # l.addi r11,r0,93 (exit)
            addi(3, 0, 0),                                      # l.addi r3,r0,0
            0x20000001,                                         # l.sys 1
        ]
        return struct.pack(">" + "I" * len(words), *words) + m

    return build(92, sys_parts if sysno is not None else parts, big=True)


# --- MicroBlaze (EM 0xbaab as QEMU's binfmt patterns expect), big- or
# little-endian (microblazeel);
# syscall: number in r12, args r5..r7, `brki r14, 8`; write 4, exit 1 ---
def microblaze(arch, big, sysno=None):
    def addik(d, a, imm):
        return (0x0C << 26) | (d << 21) | (a << 16) | (imm & 0xFFFF)

    syscall = (0x2E << 26) | (14 << 21) | (0x0C << 16) | 8   # brki r14, 8

    def sys_parts(at):
        words = [addik(r, 0, 0) for r in range(5, 11)] + [
            addik(12, 0, sysno),
            syscall,
            (0x04 << 26) | (5 << 21) | (3 << 16),   # addk r5, r3, r0: exit(result)
            addik(12, 0, 1),
            syscall,
        ]
        return struct.pack((">" if big else "<") + "I" * len(words), *words)

    def parts(at):
        m = msg(arch)
        addr = at + 9 * 4
        words = [
            addik(12, 0, 4),                   # write
            addik(5, 0, 1),
            (0x2C << 26) | (addr >> 16),       # imm hi(msg)
            addik(6, 0, addr & 0xFFFF),        # addik r6, r0, lo(msg)
            addik(7, 0, len(m)),
            syscall,
            addik(12, 0, 1),                   # exit
            addik(5, 0, 0),
            syscall,
        ]
        return struct.pack((">" if big else "<") + "I" * len(words), *words) + m

    return build(0xBAAB, sys_parts if sysno is not None else parts, big=big)


# --- LoongArch64 (little-endian, EM_LOONGARCH 258); a7 = number, a0..a2;
# generic syscalls 64/93 ---
def loongarch64(arch, sysno=None):
    def addi_d(rd, rj, si12):
        return (0x0B << 22) | ((si12 & 0xFFF) << 10) | (rj << 5) | rd

    def sys_parts(at):
        words = [addi_d(r, 0, 0) for r in range(4, 10)] + [
            addi_d(11, 0, sysno),                         # a7 = N
            0x002B0000,                                   # syscall 0
            addi_d(11, 0, 93),                            # exit(result, in a0)
            0x002B0000,
        ]
        return struct.pack("<" + "I" * len(words), *words)

    def parts(at):
        m = msg(arch)
        words = [
            addi_d(4, 0, 1),                              # a0 = 1
            (0x0C << 25) | (((8 * 4 - 4) // 4) << 5) | 5,  # pcaddi a1, msg (PC-relative)
            addi_d(6, 0, len(m)),                         # a2 = len
            addi_d(11, 0, 64),                            # a7 = write
            0x002B0000,                                   # syscall 0
            addi_d(4, 0, 0),
            addi_d(11, 0, 93),                            # a7 = exit
            0x002B0000,
        ]
        return struct.pack("<" + "I" * len(words), *words) + m

    # e_flags: LP64D ABI, object ABI v1 (what the toolchain emits).
    return build(258, sys_parts if sysno is not None else parts, bits=64, flags=0x43)


# --- Xtensa (EM_XTENSA 94), little- or big-endian, windowed ABI as QEMU's
# default core; syscall: number in a2, args a6, a3, a4; write 13, exit 118 ---
def xtensa(arch, big, sysno=None):
    def rri8(op0, t, s, r, imm8):
        if big:
            return bytes([(op0 << 4) | t, (s << 4) | r, imm8 & 0xFF])
        return bytes([(t << 4) | op0, (r << 4) | s, imm8 & 0xFF])

    def movi(t, imm):
        return rri8(0x2, t, (imm >> 8) & 0xF, 0xA, imm & 0xFF)

    syscall = bytes([0x00, 0x05, 0x00]) if big else bytes([0x00, 0x50, 0x00])

    def l32r(t, pc, literal):
        imm16 = (0x10000 + (literal - ((pc + 3) & ~3)) // 4) & 0xFFFF
        if big:
            return bytes([(0x1 << 4) | t, imm16 >> 8, imm16 & 0xFF])
        return bytes([(t << 4) | 0x1, imm16 & 0xFF, imm16 >> 8])

    # or a6, a2, a2 (mov a6, a2): RRR, op0 0, op1 0, op2 2, r 6, s 2, t 2.
    mov_a6_a2 = bytes([0x02, 0x26, 0x02]) if big else bytes([0x20, 0x62, 0x20])

    def sys_parts(at):
        code = b"".join([movi(r, 0) for r in (6, 3, 4, 5, 8, 9)] + [
            movi(2, sysno),
            syscall,
            mov_a6_a2,                                    # exit(result)
            movi(2, 118),
            syscall,
        ])
        return code

    def parts(at):
        m = msg(arch)
        # [literal: address of msg][code][msg]; `at` is 4-aligned.
        literal_at = at
        code_at = at + 4
        code_len = 8 * 3
        msg_at = code_at + code_len
        code = b"".join([
            movi(2, 13),                                  # a2 = write
            movi(6, 1),                                   # a6 = fd 1
            l32r(3, code_at + 6, literal_at),             # a3 = msg
            movi(4, len(m)),                              # a4 = len
            syscall,
            movi(2, 118),                                 # a2 = exit
            movi(6, 0),
            syscall,
        ])
        assert len(code) == code_len
        return struct.pack((">" if big else "<") + "I", msg_at) + code + m

    if sysno is not None:
        return build(94, sys_parts, big=big)
    return build(94, parts, big=big, entry_skip=4)


PROBES = {
    "or1k": lambda n=None: or1k("or1k", n),
    "microblaze": lambda n=None: microblaze("microblaze", True, n),
    "microblazeel": lambda n=None: microblaze("microblazeel", False, n),
    "loongarch64": lambda n=None: loongarch64("loongarch64", n),
    "xtensa": lambda n=None: xtensa("xtensa", False, n),
    "xtensaeb": lambda n=None: xtensa("xtensaeb", True, n),
}


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bin"
    # "name:number …": the system call probes (see build.sh).
    calls = [c.split(":") for c in (sys.argv[2] if len(sys.argv) > 2 else "").split()]
    for name, make in PROBES.items():
        data = make()
        write(f"{out}/{name}", data)
        print(f"{name}: {len(data)} bytes")
        os.makedirs(f"{out}/sys/{name}", exist_ok=True)
        for call, number in calls:
            write(f"{out}/sys/{name}/{call}", make(int(number)))
