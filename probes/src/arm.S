@ arm / armeb (EABI): write(1, msg, len); exit(0). Syscalls 4/1 in r7.
    .text
    .arm
    .global _start
_start:
    mov     r0, #1
    adr     r1, msg
    mov     r2, #len
    mov     r7, #4
    svc     #0
    mov     r0, #0
    mov     r7, #1
    svc     #0
msg:
    .include "msg.s"
    .equ    len, . - msg
