/*
 * mmio64 (amd64): touches a mapped virtual address that has no RAM behind it.
 *
 * Needs: --map 0xd0000000=0xd0000000:4K:rw (VA 0xD0000000 -> PA 0xD0000000, writable). The page tables
 * translate the store, but no memory slot backs PA 0xD0000000, so KVM reports KVM_EXIT_MMIO.
 *
 * What it does: writes "mmio\n" to the console port 0x3F8, then stores the byte 0xAB to VA 0xD0000000
 * (through a register holding the address), then `hlt` (should the host carry on).
 *
 * What the host must see: "mmio\n" on stdout, then an MMIO write exit: phys_addr 0xD0000000, len 1,
 * data 0xAB, RIP at the store (label store_at, image offset 0x1a: RIP 0x10001a with the default load
 * address); the host ends the run with a non-zero status and "access to unbacked physical memory".
 * Without the --map the store hits an unmapped page instead (#PF, no usable IDT: triple fault).
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end

    mov     $0xD0000000, %eax           /* 32-bit mov zero-extends: RAX = 0x00000000D0000000 */
    .globl store_at
store_at:
    movb    $0xAB, (%rax)               /* -> KVM_EXIT_MMIO (write, 1 byte, 0xAB) */
    hlt                                 /* only if the host carried on after the MMIO exit */
2:  jmp     2b

msg:
    .ascii  "mmio\n"
msg_end:
