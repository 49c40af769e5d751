# ppc / ppc64 / ppc64le: write(1, msg, len); exit(0). Number in r0,
# arguments in r3..r5, `sc`. The 64-bit builds (--defsym ELFV2=1) mark the
# ELFv2 ABI, whose entry point is code, not a function descriptor.
    .ifdef ELFV2
    .abiversion 2
    .endif
    .text
    .global _start
_start:
    .ifdef SYS_probe
    li      3, 0
    li      4, 0
    li      5, 0
    li      6, 0
    li      7, 0
    li      8, 0
    li      0, SYS_probe
    sc
    li      0, 1                # exit(the call's result: errno, CR0.SO set)
    sc
    .endif
    bl      1f                  # lr = address of msg, position-independent
msg:
    .include "msg.s"
    .set    len, . - msg
    .balign 4
1:  mflr    4
    li      0, 4
    li      3, 1
    li      5, len
    sc
    li      0, 1
    li      3, 0
    sc
