// Assembled by probes/build.sh with --defsym ITERATIONS=1000000.
// qus's pointer-authentication probe: N calls of a function that signs and
// checks its return address (paciasp/autiasp, as every function of a
// program built with -mbranch-protection=standard does), then
// "qus-probe aarch64-pac\n" and exit 0. paciasp and autiasp are in the
// hint space: a CPU without pointer authentication runs them as NOPs.
    .text
    .global _start
_start:
    movz x19, #(ITERATIONS & 0xffff)
    movk x19, #(ITERATIONS >> 16), lsl #16
1:  bl   signed
    subs x19, x19, #1
    b.ne 1b
    mov  x0, #1
    adr  x1, msg
    mov  x2, #(msgend - msg)
    mov  x8, #64            // write
    svc  #0
    mov  x0, #0
    mov  x8, #93            // exit
    svc  #0
signed:
    hint #25                // paciasp
    hint #29                // autiasp
    ret
msg:
    .ascii "qus-probe aarch64-pac\n"
msgend:
