/*
 * scribble64 (amd64): after its snapshot point, writes to every page it can reach, rewrites its page tables
 * and switches to a root of its own; a reset must undo all of it.
 *
 * What it does: asks for a snapshot (hypercall 4, record at 0x3800). After the request: reads the arena
 * base from the boot-information block; stores 0x5C5C5C5C5C5C5C5C into the first quadword of every page
 * from 0x1000 up to the copy-on-write scratch frames below the arena (the boot-information block, the GDT,
 * the stack's page and its own code page included); clears the page-table entry that maps 0x5000; copies
 * its PML4 into the page at 0x6000 and loads CR3 with it; prints "scribbled\n" and halts.
 *
 * What the host must see: a run that stops at the snapshot request, then "scribbled\n" and HLT. After a
 * reset, memory must equal the snapshot byte for byte, and running again must print the same.
 * Relies on: the default layout (RAM identity-mapped read-write, 4 KiB leaves where the tables are edited:
 * run it with --page-size 4k), 256 KiB of scratch frames below the arena.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    mov     $0x3800, %edi               /* hypercall record: op 4 (snapshot), no arguments */
    movl    $4, (%rdi)
    movl    $0, 4(%rdi)
    mov     %edi, %eax
    mov     $0x510, %dx
    out     %eax, %dx                   /* -> the run stops here; reset runs continue below */

    mov     0x2018, %r13                /* boot information: arena base */
    sub     $0x40000, %r13              /* the scratch frames below it are not mapped */
    movabs  $0x000FFFFFFFFFF000, %r8    /* address bits of an entry */
    mov     %cr3, %r12
    and     %r8, %r12                   /* PML4 */

    /* Find the PTE of 0x5000 before the stores scribble over anything: PML4[0] -> PDPT[0] -> PD[0] -> PT. */
    mov     (%r12), %rax
    and     %r8, %rax
    mov     (%rax), %rax
    and     %r8, %rax
    mov     (%rax), %rax
    and     %r8, %rax                   /* the PT of 0-2 MiB */
    lea     (5 * 8)(%rax), %r15         /* its entry for 0x5000 */

    movabs  $0x5C5C5C5C5C5C5C5C, %r14
    mov     $0x1000, %ebx
1:  mov     %r14, (%rbx)                /* every page up to the scratch frames */
    add     $0x1000, %rbx
    cmp     %r13, %rbx
    jb      1b

    movq    $0, (%r15)                  /* unmap 0x5000 */
    invlpg  0x5000

    mov     $0x6000, %edi               /* a root of its own: a copy of the PML4 */
    mov     %r12, %rsi
    mov     $512, %ecx
    cld
    rep movsq
    mov     $0x6000, %eax
    mov     %rax, %cr3

    lea     msg(%rip), %rsi
    mov     $(msg_end - msg), %ecx
    mov     $0x3F8, %dx
2:  lodsb
    out     %al, %dx
    loop    2b
    hlt
3:  jmp     3b

msg:
    .ascii  "scribbled\n"
msg_end:
