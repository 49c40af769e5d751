# i386 / i486: write(1, msg, len); exit(0) with int $0x80 (4 / 1).
    .text
    .global _start
_start:
    mov     $4, %eax
    mov     $1, %ebx
    mov     $msg, %ecx
    mov     $len, %edx
    int     $0x80
    mov     $1, %eax
    xor     %ebx, %ebx
    int     $0x80
msg:
    .include "msg.s"
    .equ    len, . - msg
