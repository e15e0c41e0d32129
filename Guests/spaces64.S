/*
 * spaces64 (amd64): runs in an address space the host built for it, then registers one it built itself.
 *
 * What it does: loads CR3 with the root the host left at 0x3F00 (an extra space sharing low memory with the
 * boot space and mapping 0x700000000000 only there), reads the quadword at 0x700000000000, loads the boot
 * root back, and reports the value (hypercall 1, record at 0x3800). Then copies the boot PML4 into the page
 * at 0x6000, registers that copy as a root of its own (hypercall 5) and reports the hypercall's result (the
 * new root's index), loads it into CR3 and halts there.
 *
 * What the host must see: reports [value] and [2] (the boot root is 0, the host's extra space 1), then HLT
 * with CR3 = 0x6000.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    mov     %cr3, %r12                  /* the boot root */
    mov     0x3F00, %rax
    mov     %rax, %cr3                  /* the host's extra space */
    movabs  $0x700000000000, %rbx
    mov     (%rbx), %r13                /* mapped only there */
    mov     %r12, %cr3

    mov     $0x3800, %edi               /* report (hypercall 1): the value read */
    movl    $1, (%rdi)
    movl    $1, 4(%rdi)
    mov     %r13, 16(%rdi)
    mov     %edi, %eax
    mov     $0x510, %dx
    out     %eax, %dx

    mov     $0x6000, %edi               /* a root of its own: a copy of the boot PML4 */
    mov     %r12, %rsi
    and     $-4096, %rsi
    mov     $512, %ecx
    cld
    rep movsq
    mov     $0x3800, %edi               /* register it (hypercall 5) */
    movl    $5, (%rdi)
    movl    $1, 4(%rdi)
    movq    $0x6000, 16(%rdi)
    mov     %edi, %eax
    out     %eax, %dx
    mov     8(%rdi), %r14               /* its index */

    movl    $1, (%rdi)                  /* report it */
    movl    $1, 4(%rdi)
    mov     %r14, 16(%rdi)
    mov     %edi, %eax
    out     %eax, %dx

    mov     $0x6000, %eax
    mov     %rax, %cr3
    hlt
1:  jmp     1b
