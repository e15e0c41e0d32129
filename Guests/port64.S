/*
 * port64 (amd64): writes to a port the host does not know.
 *
 * What it does: writes "port\n" to the console port 0x3F8, then writes the byte 0x11 to port 0x80
 * (`out %al, %dx`), then `hlt` (should the host carry on).
 *
 * What the host must see: "port\n" on stdout, then an 8-bit OUT exit on port 0x80 with value 0x11;
 * 0x80 is not a microvm port, so the host ends the run with a non-zero status and an unknown-port reason
 * (naming the port, direction, size and value). The OUT is label out_at, image offset 0x1b
 * (0x10001b with the default load address).
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end

    mov     $0x11, %al
    mov     $0x80, %dx                  /* not a microvm port */
    .globl out_at
out_at:
    out     %al, %dx                    /* -> unknown port: host ends the run */
    hlt                                 /* only if the host carried on */
2:  jmp     2b

msg:
    .ascii  "port\n"
msg_end:
