| m68k: write(1, msg, len); exit(0). Number in %d0, args %d1..%d3, trap #0.
    .text
    .global _start
_start:
    .ifdef SYS_probe
    move.l  #SYS_probe, %d0
    moveq   #0, %d1
    moveq   #0, %d2
    moveq   #0, %d3
    moveq   #0, %d4
    moveq   #0, %d5
    trap    #0
    move.l  %d0, %d1            | exit(the call's result)
    moveq   #1, %d0
    trap    #0
    .endif
    moveq   #4, %d0
    moveq   #1, %d1
    lea     msg(%pc), %a0
    move.l  %a0, %d2
    moveq   #len, %d3
    trap    #0
    moveq   #1, %d0
    moveq   #0, %d1
    trap    #0
msg:
    .include "msg.s"
    .equ    len, . - msg
