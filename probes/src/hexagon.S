// hexagon: write(1, msg, len); exit(0). Generic syscalls 64/93 in r6, args
// r0..r5, trap0(#1). Assembled by LLVM (llvm-mc, ld.lld): Debian has no
// hexagon binutils.
    .text
    .globl _start
_start:
    .ifdef SYS_probe
    { r0 = #0; r1 = #0; r2 = #0; r3 = #0 }
    { r4 = #0; r5 = #0 }
    { r6 = ##SYS_probe }
    trap0(#1)
    { r6 = #93 }                // exit(the call's result, in r0)
    trap0(#1)
    .endif
    { r0 = #1 }
    { r1 = ##msg }
    { r2 = #len }
    { r6 = #64 }
    trap0(#1)
    { r0 = #0 }
    { r6 = #93 }
    trap0(#1)
msg:
    .include "msg.s"
    .equ    len, . - msg
