// aarch64 / aarch64_be: write(1, msg, len); exit(0). Syscalls 64/93 in x8.
    .text
    .global _start
_start:
    mov     x0, #1
    adr     x1, msg
    mov     x2, #len
    mov     x8, #64
    svc     #0
    mov     x0, #0
    mov     x8, #93
    svc     #0
msg:
    .include "msg.s"
    .equ    len, . - msg
