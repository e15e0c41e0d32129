/*
 * calls64 (amd64): a guest that exports functions for the host to call, and calls a host function back.
 * The guest side of the call ABI (docs/layout.md, "Calls") in a few instructions.
 *
 * What it does: makes the ready hypercall (6) with its export table and a 2-page call area at 0x200000,
 * then waits in its dispatch loop: each time the host enters it, it reads the function index from the call
 * area, calls that function with RDI = the call area, and writes port 0x511 to return. Exports:
 *   add(a, b)        -> a + b (integers)
 *   upper(s)         -> s with a-z made A-Z (bytes or string; the result is a string in the call area)
 *   shout(s)         -> calls the host function "log" with s; returns what "log" returned, plus 1
 *   fail()           -> status 7, no result
 *   crash()          -> writes to unmapped 0x40000000 (a fault mid-call)
 *   spin()           -> loops for ever (a call that never returns)
 *   nothing()        -> returns at once, no result (the round-trip benchmark)
 *
 * What the host must see: a run that ends ready, with those seven names; then each call one entry and one
 * exit (port 0x511), except shout, which also makes hypercall 7. A call to nothing() runs 9 instructions:
 * the 8 of the dispatch loop (load the index, scale it, find the table, point RDI at the call area, call,
 * load the port, out, jmp) and its `ret`.
 * Relies on: the default load address 0x100000 (the export table holds absolute addresses), RAM up to
 * 0x202000 identity-mapped read-write.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    mov     $0x3800, %edi               /* hypercall record: op 6 (ready), 4 arguments */
    movl    $6, (%rdi)
    movl    $4, 4(%rdi)
    lea     exports(%rip), %rax
    mov     %rax, 16(%rdi)              /* the export table */
    movq    $7, 24(%rdi)                /* entries */
    movq    $0x200000, 32(%rdi)         /* the call area */
    movq    $0x2000, 40(%rdi)           /* its size */
    mov     %edi, %eax
    mov     $0x510, %dx
    out     %eax, %dx                   /* -> the run ends ready; each call enters below */

dispatch:
    mov     0x200000, %eax              /* the function index (the host checked it) */
    shl     $5, %eax
    lea     exports(%rip), %rcx
    mov     $0x200000, %edi             /* the call area, for the function */
    call    *16(%rcx,%rax)
    mov     $0x511, %dx
    out     %al, %dx                    /* return: -> exit; the next call continues here */
    jmp     dispatch

/* Call area fields (docs/layout.md): +8 status, +12 result kind, +16 value / offset, +24 length,
 * +32 + 24 i: argument i (kind, value / offset, length). */

f_add:
    mov     40(%rdi), %rax              /* argument 0 */
    add     64(%rdi), %rax              /* + argument 1 */
    movl    $1, 12(%rdi)                /* an integer */
    mov     %rax, 16(%rdi)
    ret

f_upper:
    mov     40(%rdi), %rsi              /* argument 0: offset of its bytes */
    mov     48(%rdi), %rcx              /* and their count */
    lea     (%rdi,%rsi), %rsi
    mov     $4096, %rdx                 /* the result goes at offset 4096 of the call area */
    lea     (%rdi,%rdx), %r8
    movl    $3, 12(%rdi)                /* a string */
    mov     %rdx, 16(%rdi)
    mov     %rcx, 24(%rdi)
    test    %rcx, %rcx
    jz      2f
1:  movb    (%rsi), %al
    cmp     $'a', %al
    jb      3f
    cmp     $'z', %al
    ja      3f
    sub     $32, %al
3:  movb    %al, (%r8)
    inc     %rsi
    inc     %r8
    dec     %rcx
    jnz     1b
2:  ret

f_shout:
    push    %rdi
    mov     %rdi, %r9                   /* the call area */
    mov     $0x3800, %edi               /* hypercall record: op 7, 6 arguments */
    movl    $7, (%rdi)
    movl    $6, 4(%rdi)
    lea     name_log(%rip), %rax
    mov     %rax, 16(%rdi)              /* the name */
    movq    $3, 24(%rdi)
    lea     32(%r9), %rax
    mov     %rax, 32(%rdi)              /* the argument descriptors: the call's own, unchanged */
    movq    $1, 40(%rdi)
    movq    $0x3C00, 48(%rdi)           /* the result buffer */
    movq    $0x400, 56(%rdi)
    /* The host reads a byte argument at its address: make the descriptor's offset an address. */
    mov     40(%r9), %rax
    add     %r9, %rax
    mov     %rax, 40(%r9)
    mov     %edi, %eax
    mov     $0x510, %dx
    out     %eax, %dx
    pop     %rdi
    mov     0x3808, %rax                /* the hypercall's status */
    test    %rax, %rax
    jnz     4f
    mov     0x3C08, %rax                /* the host function's integer result */
    inc     %rax
    movl    $1, 12(%rdi)
    mov     %rax, 16(%rdi)
    ret
4:  movl    $9, 8(%rdi)                 /* status 9: the host function failed */
    ret

f_fail:
    movl    $7, 8(%rdi)
    ret

f_crash:
    movb    $1, 0x40000000
    ret

f_spin:
5:  jmp     5b

f_nothing:
    ret

    .balign 8
exports:
    .quad   name_add, 3, f_add, 0
    .quad   name_upper, 5, f_upper, 0
    .quad   name_shout, 5, f_shout, 0
    .quad   name_fail, 4, f_fail, 0
    .quad   name_crash, 5, f_crash, 0
    .quad   name_spin, 4, f_spin, 0
    .quad   name_nothing, 7, f_nothing, 0
name_add:       .ascii "add"
name_upper:     .ascii "upper"
name_shout:     .ascii "shout"
name_fail:      .ascii "fail"
name_crash:     .ascii "crash"
name_spin:      .ascii "spin"
name_nothing:   .ascii "nothing"
name_log:       .ascii "log"
