# i386 / i486: write(1, msg, len); exit(0) with int $0x80 (4 / 1).
    .text
    .global _start
_start:
    .ifdef SYS_probe
    mov     $SYS_probe, %eax
    xor     %ebx, %ebx
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %esi, %esi
    xor     %edi, %edi
    xor     %ebp, %ebp
    int     $0x80
    mov     %eax, %ebx          # exit(the call's result)
    mov     $1, %eax
    int     $0x80
    .endif
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
