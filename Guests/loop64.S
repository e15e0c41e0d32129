/*
 * loop64 (amd64): never stops by itself, to test the host's timeout.
 *
 * What it does: writes "looping\n" to the console port 0x3F8, then spins forever (`1: jmp 1b`)
 * with interrupts off, making no further exits of its own.
 *
 * What the host must see: "looping\n" on stdout, then nothing until its timeout fires; the host ends the
 * run with a non-zero status and a timeout reason (RIP at the spin loop: label spin, image offset 0x15,
 * RIP 0x100015 with the default load address).
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end

    .globl spin
spin:
    jmp     spin                        /* forever */

msg:
    .ascii  "looping\n"
msg_end:
