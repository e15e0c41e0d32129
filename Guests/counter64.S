/*
 * counter64 (amd64): the snapshot demo. State set up before the snapshot point carries over to every
 * restored run; what a run writes after the point is gone at the next reset.
 *
 * What it does: prints "initialising\n", sets `counter` (a word in the image) to 41, then asks for a snapshot
 * (hypercall 4, record at 0x3800). After the request it reads `counter` and the first byte of `scratch`,
 * adds one to `counter`, stores 0x2a into `scratch`, prints "counter = NN, scratch = MM\n" (NN the new
 * counter, MM the scratch byte it read, both decimal), and halts.
 *
 * What the host must see: a run that stops at the snapshot request; then, run on from there (or restored
 * from the snapshot, or reset to it and run again), "counter = 42, scratch = 0\n" and HLT, every time: the 41
 * was written before the snapshot, the 42 and the 0x2a after it.
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   init, init_end
    movl    $41, counter(%rip)

    mov     $0x3800, %edi               /* hypercall record (docs/layout.md): op 4 (snapshot), no arguments */
    movl    $4, (%rdi)
    movl    $0, 4(%rdi)
    mov     %edi, %eax
    mov     $0x510, %dx
    out     %eax, %dx                   /* -> the run stops here; restored runs continue below */

    mov     counter(%rip), %eax
    inc     %eax
    mov     %eax, counter(%rip)
    movzbl  scratch(%rip), %ebx
    movb    $0x2a, scratch(%rip)

    PRINT   text, text_end
    mov     counter(%rip), %eax
    call    decimal                     /* the new counter */
    PRINT   middle, middle_end
    mov     %ebx, %eax
    call    decimal                     /* the scratch byte read before the store */
    mov     $0x3F8, %dx
    mov     $'\n', %al
    out     %al, %dx
    hlt
1:  jmp     1b

/* Prints EAX (below 1000) in decimal, no leading zeros. Clobbers EAX, ECX, EDX, ESI. */
decimal:
    xor     %ecx, %ecx                  /* digits pushed */
    mov     $10, %esi
2:  xor     %edx, %edx
    div     %esi
    add     $'0', %dl
    push    %rdx
    inc     %ecx
    test    %eax, %eax
    jnz     2b
    mov     $0x3F8, %dx
3:  pop     %rax
    out     %al, %dx
    loop    3b
    ret

init:
    .ascii  "initialising\n"
init_end:
text:
    .ascii  "counter = "
text_end:
middle:
    .ascii  ", scratch = "
middle_end:
    .balign 8
counter:
    .long   0
    .balign 4096
scratch:
    .byte   0
    .balign 4096
