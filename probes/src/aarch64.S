// qus probe for aarch64: write(1, msg, len); exit(0). Linux syscalls 64/93.
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
    .ascii  "qus-probe aarch64\n"
    .set    len, . - msg
