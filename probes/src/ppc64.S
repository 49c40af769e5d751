# ppc64 / ppc64le (ELFv2 entry, no function descriptor): write; exit.
# Syscall number in r0, arguments in r3..r5, `sc`.
    .abiversion 2
    .text
    .global _start
_start:
    bl      1f                  # lr = address of msg, position-independent
msg:
    .include "msg.s"
    .equ    len, . - msg
    .balign 4
1:  mflr    4
    li      0, 4
    li      3, 1
    li      5, len
    sc
    li      0, 1
    li      3, 0
    sc
