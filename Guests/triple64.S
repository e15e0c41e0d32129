/*
 * triple64 (amd64): ends in a triple fault.
 *
 * What it does: writes "about to triple fault\n" to the console port 0x3F8, then loads an IDT
 * descriptor with limit 0 and base 0 (`lidt`), then executes `ud2`.
 * The #UD (vector 6) cannot be delivered: its gate lies beyond the IDT limit, so the CPU raises #GP,
 * which cannot be delivered either -> #DF (vector 8) -> also beyond the limit -> triple fault.
 *
 * What the host must see: "about to triple fault\n" on stdout, then KVM_EXIT_SHUTDOWN; the host ends the
 * run with a non-zero status and a triple-fault reason. RIP at the shutdown is the ud2 (label ud2_at,
 * image offset 0x1c: RIP 0x10001c with the default load address).
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end

    lidt    null_idtr(%rip)             /* IDT limit 0: no vector can be delivered */
    .globl ud2_at
ud2_at:
    ud2                                 /* #UD -> #GP -> #DF -> triple fault -> KVM_EXIT_SHUTDOWN */
    hlt                                 /* never reached */
2:  jmp     2b

null_idtr:
    .word   0                           /* limit */
    .quad   0                           /* base */
msg:
    .ascii  "about to triple fault\n"
msg_end:
