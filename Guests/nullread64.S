/*
 * nullread64 (amd64): dereferences a null-ish pointer.
 *
 * What it does: writes "null\n" to the console port 0x3F8, loads an IDT descriptor with limit 0
 * (so "no IDT installed" holds whatever IDTR the host left), then reads the qword at address 0x10.
 * Page 0 is never mapped (docs/layout.md), so the read raises #PF with CR2 = 0x10; the #PF cannot be
 * delivered (beyond the IDT limit) -> #GP -> #DF -> triple fault.
 *
 * What the host must see: "null\n" on stdout, then KVM_EXIT_SHUTDOWN; the host ends the run with a
 * non-zero status and a triple-fault reason. RIP at the shutdown is the faulting mov (label read_at,
 * image offset 0x21: RIP 0x100021 with the default load address); CR2 = 0x10.
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end

    lidt    null_idtr(%rip)             /* IDT limit 0: no vector can be delivered */
    mov     $0x10, %ebx
    .globl read_at
read_at:
    mov     (%rbx), %rax                /* #PF at 0x10 -> triple fault -> KVM_EXIT_SHUTDOWN */
    hlt                                 /* never reached */
2:  jmp     2b

null_idtr:
    .word   0                           /* limit */
    .quad   0                           /* base */
msg:
    .ascii  "null\n"
msg_end:
