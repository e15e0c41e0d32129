/*
 * hello64 (amd64): the smallest guest that proves the boot path works.
 *
 * What it does: writes "hello from microvm (amd64)\n" to the console port 0x3F8, one byte per
 * `out %al, %dx`, then executes `hlt`.
 *
 * What the host must see: 27 single-byte OUT exits on port 0x3F8 whose bytes, written to stdout,
 * are exactly "hello from microvm (amd64)\n"; then a HLT exit, which ends the run with status 0.
 *
 * Relies on: 64-bit long mode entry (docs/layout.md); the image executable. Uses no stack and no RAM
 * outside the image (the string is read RIP-relative, so any load address works).
 *
 * Syntax: AT&T (source, destination), as in every guest here.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    cld                                 /* lodsb must walk forwards */
    lea     msg(%rip), %rsi
    mov     $(msg_end - msg), %ecx
    mov     $0x3F8, %dx                 /* console port */
1:  lodsb
    out     %al, %dx                    /* one OUT exit per byte */
    loop    1b
    hlt                                 /* host: run ends, status 0 */
2:  jmp     2b                          /* never reached: the host stops at hlt */

msg:
    .ascii  "hello from microvm (amd64)\n"
msg_end:
