! sh4 / sh4eb: write(1, msg, len); exit(0). Number in r3, args r4..r6, trapa.
    .text
    .global _start
_start:
    .ifdef SYS_probe
    mov.l   9f, r3
    mov     #0, r4
    mov     #0, r5
    mov     #0, r6
    mov     #0, r7
    trapa   #0x14
    mov     r0, r4              ! exit(the call's result)
    mov     #1, r3
    trapa   #0x11
    .balign 4
9:  .long   SYS_probe
    .endif
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
