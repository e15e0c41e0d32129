/*
 * flood64 (amd64): prints without end.
 *
 * What it does: writes "flood\n" to the console port 0x3F8 over and over, one `out` per byte, forever.
 *
 * What the host must see: an endless stream of "flood\n" lines on stdout; the run ends only by the timeout
 * (status 124), a console write error (closed or full standard output, a broken pipe: status 74) or a signal.
 * The host must hold its memory flat and its timeout must fire even when stdout blocks.
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end
    jmp     _start

msg:
    .ascii  "flood\n"
msg_end:
