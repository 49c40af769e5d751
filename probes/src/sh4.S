! sh4 / sh4eb: write(1, msg, len); exit(0). Number in r3, args r4..r6, trapa.
    .text
    .global _start
_start:
    mov     #4, r3
    mov     #1, r4
    mova    msg, r0
    mov     r0, r5
    mov     #len, r6
    trapa   #0x13
    mov     #1, r3
    mov     #0, r4
    trapa   #0x11
    .balign 4
msg:
    .include "msg.s"
    .equ    len, . - msg
