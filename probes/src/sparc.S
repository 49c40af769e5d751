! sparc / sparc32plus / sparc64: write(1, msg, len); exit(0).
! Number in %g1, args %o0..%o2; trap TRAP (0x10 for 32-bit, 0x6d for 64-bit).
    .text
    .global _start
_start:
    .ifdef SYS_probe
    mov     0, %o0
    mov     0, %o1
    mov     0, %o2
    mov     0, %o3
    mov     0, %o4
    mov     0, %o5
    mov     SYS_probe, %g1
    ta      TRAP
    mov     1, %g1              ! exit(the call's result: errno, carry set)
    ta      TRAP
    nop
    .endif
    mov     1, %o0
    sethi   %hi(msg), %o1
    or      %o1, %lo(msg), %o1
    mov     len, %o2
    mov     4, %g1
    ta      TRAP
    mov     0, %o0
    mov     1, %g1
    ta      TRAP
    nop
msg:
    .include "msg.s"
    .equ    len, . - msg
