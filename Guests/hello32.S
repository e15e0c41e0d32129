/*
 * hello32 (i686): the 32-bit twin of hello64.
 *
 * What it does: writes "hello from microvm (i686)\n" to the console port 0x3F8, one byte per
 * `out %al, %dx`, then executes `hlt`.
 *
 * What the host must see: 26 single-byte OUT exits on port 0x3F8 whose bytes, written to stdout,
 * are exactly "hello from microvm (i686)\n"; then a HLT exit, which ends the run with status 0.
 *
 * Relies on: 32-bit protected mode with paging (docs/layout.md). Uses the stack once (call/pop to
 * find its own address, so any load address works).
 */
    .code32
    .section .text.start, "ax"
    .globl _start
_start:
    cld                                 /* lodsb must walk forwards */
    call    0f                          /* EBX := run-time address of label 0 */
0:  pop     %ebx
    lea     (msg - 0b)(%ebx), %esi
    mov     $(msg_end - msg), %ecx
    mov     $0x3F8, %dx                 /* console port */
1:  lodsb
    out     %al, %dx                    /* one OUT exit per byte */
    loop    1b
    hlt                                 /* host: run ends, status 0 */
2:  jmp     2b                          /* never reached: the host stops at hlt */

msg:
    .ascii  "hello from microvm (i686)\n"
msg_end:
