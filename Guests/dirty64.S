/*
 * dirty64 (amd64): the reset benchmark's guest. Writes one quadword into each of N pages, then halts.
 *
 * What it does: reads N from the quadword at image offset 8 (`count`, 1 in the committed binary; the
 * benchmark patches it), stores N into the first quadword of each page from 0x200000 on, N pages in all,
 * and executes `hlt`. Three instructions per page and four more: the guest does as little as this emulating
 * KVM allows (each instruction is emulated, about 1 us).
 *
 * What the host must see: HLT (status 0), with exactly the N pages at 0x200000 + i * 4096 written.
 * Relies on: at least 0x200000 + N * 4096 bytes of RAM, identity-mapped read-write.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    jmp     1f
    .balign 8
    .globl count
count:
    .quad   1                           /* N: pages to write */
1:  mov     count(%rip), %rcx
    mov     $0x200000, %ebx
2:  mov     %rcx, (%rbx)
    add     $0x1000, %rbx
    dec     %rcx
    jnz     2b
    hlt
3:  jmp     3b
