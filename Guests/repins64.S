/*
 * repins64 (amd64): reads a string from the console port, which is output-only.
 *
 * What it does: writes "rep ins\n" to the console port 0x3F8, then `rep insb` of 4 bytes from port 0x3F8
 * into the stack area at 0x70000, then `hlt`.
 *
 * What the host must see: "rep ins\n" on stdout, then an IN string exit (port 0x3F8, size 1, count 4):
 * no device answers reads of 0x3F8, so the host ends the run with an unknown-port line naming the port,
 * `rep ins` and the count (label ins_at, 0x100023 with the default load address; RIP stays on the
 * `rep insb`, which has not completed).
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end
    mov     $0x70000, %edi              /* destination: inside the mapped stack area */
    mov     $4, %ecx
    mov     $0x3F8, %dx
    .globl ins_at
ins_at:
    rep insb                            /* -> IN string exit */
    hlt
2:  jmp     2b

msg:
    .ascii  "rep ins\n"
msg_end:
