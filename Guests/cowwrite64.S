/*
 * cowwrite64 (amd64): writes to a copy-on-write page without the probe runtime.
 *
 * What it does: writes "cow\n" to the console port 0x3F8, then stores a qword at VA 0x40000000. It installs
 * no IDT: the IDT the host leaves is empty (limit 0).
 *
 * What the host must see: run with 0x40000000 mapped copy-on-write (e.g. `--map 0x40000000=0x200000:4K:rc`
 * or a `.copyOnWrite` extra mapping), the store raises #PF (error code P=1 W=1, CR2 0x40000000); it cannot
 * be delivered (beyond the IDT limit) -> #GP -> #DF -> triple fault: "cow\n" on stdout, then
 * KVM_EXIT_SHUTDOWN, a non-zero status and a reason naming the write to the copy-on-write page. Nothing asks
 * the host to resolve the fault: a guest without the runtime cannot take part in copy-on-write.
 * RIP at the shutdown is the store (label store_at, image offset 0x15: RIP 0x100015 with the default load
 * address).
 *
 * Position-independent; uses no stack.
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end
    .globl store_at
store_at:
    movq    $0x636f77, 0x40000000       /* #PF (write, present, read-only) -> triple fault */
    hlt                                 /* never reached */
2:  jmp     2b

msg:
    .ascii  "cow\n"
msg_end:
