// aarch64 setuid probe: print "euid=root\n" when the effective uid is 0,
// else "euid=user\n"; exit 0. `qus test` installs it setuid root and runs
// it as another user: without the C flag binfmt_misc ignores the setuid
// bit of an emulated program. Syscalls: geteuid 175, write 64, exit 93.
    .text
    .global _start
_start:
    mov     x8, #175
    svc     #0
    cbnz    x0, 1f
    adr     x1, root
    mov     x2, #root_len
    b       2f
1:  adr     x1, user
    mov     x2, #user_len
2:  mov     x0, #1
    mov     x8, #64
    svc     #0
    mov     x0, #0
    mov     x8, #93
    svc     #0
root:
    .ascii  "euid=root\n"
    .equ    root_len, . - root
user:
    .ascii  "euid=user\n"
    .equ    user_len, . - user
