/*
 * exit64 (amd64): exercises the exit port.
 *
 * What it does: writes "exiting with 42\n" to the console port 0x3F8 (one byte per `out %al, %dx`),
 * then writes the byte 42 to the exit port 0xF4 (`out %al, %dx`). Should the host not stop there, it
 * executes `hlt` (which would end the run with status 0: a host that gets this wrong is visible).
 *
 * What the host must see: "exiting with 42\n" on stdout, then an 8-bit OUT exit on port 0xF4 with
 * value 42; the host exits with status 42.
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end

    mov     $42, %al
    mov     $0xF4, %dx                  /* exit port: host exits with the low 8 bits */
    out     %al, %dx
    hlt                                 /* only if the host ignored the exit port */
2:  jmp     2b

msg:
    .ascii  "exiting with 42\n"
msg_end:
