; hppa: write(1, msg, len); exit(0). Number in %r20, args %r26 %r25 %r24;
; gateway at 0x100 in space %sr2; the delay slot loads the number.
    .text
msg:
    .include "msg.s"
    .set    len, . - msg
    .align  4
    .globl  _start
_start:
    .ifdef SYS_probe
    ldi     0, %r26
    ldi     0, %r25
    ldi     0, %r24
    ldi     0, %r23
    ldi     0, %r22
    ldi     0, %r21
    ble     0x100(%sr2, %r0)
    ldi     SYS_probe, %r20
    copy    %r28, %r26          ; exit(the call's result)
    ble     0x100(%sr2, %r0)
    ldi     1, %r20
    .endif
    ldi     1, %r26
    ldil    L%msg, %r25
    ldo     R%msg(%r25), %r25
    ldi     len, %r24
    ble     0x100(%sr2, %r0)
    ldi     4, %r20
    ldi     0, %r26
    ble     0x100(%sr2, %r0)
    ldi     1, %r20
