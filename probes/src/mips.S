# mips o32 / n32 / n64, either endianness: write(1, msg, len); exit(0).
# Number in $2 ($v0): NR_BASE + 4 (write) / NR_BASE + 1 (exit) for o32,
# per-ABI numbers passed by build.sh as SYS_write / SYS_exit.
    .text
    .set noreorder
    .set noat
    .global __start
__start:
    .ifdef SYS_probe
    li      $4, 0
    li      $5, 0
    li      $6, 0
    li      $7, 0
    li      $2, SYS_probe
    syscall
    move    $4, $2              # exit(the call's result: errno with $7 set)
    li      $2, SYS_exit
    syscall
    .endif
    li      $4, 1
    bal     1f                  # $31 = address of msg (after the delay slot)
    nop
msg:
    .include "msg.s"
    .equ    len, . - msg
    .balign 4
1:  move    $5, $31
    li      $6, len
    li      $2, SYS_write
    syscall
    li      $4, 0
    li      $2, SYS_exit
    syscall
