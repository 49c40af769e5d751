# alpha: write(1, msg, len); exit(0). Number in $0, args $16..$18, callsys.
    .text
    .set noreorder
    .set noat
    .global _start
_start:
    .ifdef SYS_probe
    lda     $16, 0($31)
    lda     $17, 0($31)
    lda     $18, 0($31)
    lda     $19, 0($31)
    lda     $20, 0($31)
    lda     $21, 0($31)
    lda     $0, SYS_probe($31)
    callsys
    bis     $0, $0, $16         # exit(the call's result: errno, $19 set)
    lda     $0, 1($31)
    callsys
    .endif
    br      $17, 1f             # $17 = address of msg
msg:
    .include "msg.s"
    .equ    len, . - msg
    .balign 4
1:  lda     $0, 4($31)
    lda     $16, 1($31)
    lda     $18, len($31)
    callsys
    lda     $0, 1($31)
    lda     $16, 0($31)
    callsys
