/*
 * probe64 (amd64): the probe guest. Performs the host's probe list and reports every result or fault.
 *
 * What it does (docs/layout.md, "Probes" and "Hypercalls"):
 *  1. Installs an IDT at 0x3000 for vectors 0-31 (16-byte interrupt gates, selector 0x08) and `lidt`s it.
 *     Each stub pushes a 0 error code where the CPU pushes none, then the vector, and jumps to isr_common,
 *     which has the vector, the error code, CR2 and the faulting RIP.
 *  2. Reads the probe list address (boot info +64), the probe count (+72) and the flags (+76) from the
 *     boot-information block at RDI.
 *  3. For each probe i (32-byte records: op u32, size u32, va u64, value u64, reserved u64):
 *       read (1):       size 1/2/4/8 bytes at va, zero-extended          -> report [i, 0, value, 0, 0, 0]
 *       write (2):      the low `size` bytes of value at va               -> report [i, 0, 0, 0, 0, 0]
 *       execute (3):    `call va` (the host put a `ret` there)            -> report [i, 0, 0, 0, 0, 0]
 *       invalidate (4): `invlpg (va)`                                     -> report [i, 0, 0, 0, 0, 0]
 *     An op or size outside the contract is reported as [i, 2, op, size, 0, 0] (nothing is accessed).
 *     An exception during the access is reported as [i, 1, vector, error code, CR2, RIP] (RIP: the access
 *     slot below, fixed per op and size, or va itself for a fetch fault in an execute); the runtime then
 *     drops the exception frame (back to the stack pointer saved at the start of the probe) and goes on
 *     with probe i+1. Exception: a #PF with error code P=1 W=1 outside console mode first asks the host to
 *     resolve copy-on-write (hypercall 3, argument CR2; in console mode with flag bit 1 a `C` line, below);
 *     on result 0 it `invlpg`s CR2 and `iretq`s to retry the write (at most 4 resolutions per probe, then
 *     the fault is reported as above).
 *  4. After the last probe: reports [0xFFFFFFFF, 0, 0, 0, 0, 0] and halts.
 *  An exception outside a probe is fatal: hypercall 2 [vector, error code, CR2, RIP], then `hlt`.
 *
 * Reports go to the hypercall port 0x510 (32-bit OUT of the record address 0x3800; record: op u32,
 * argc u32, result u64, args u64[6]). With boot-info flag bit 0 (console mode, the QEMU oracle) they are
 * printed on the console port 0x3F8 instead, in lowercase hex without leading zeros:
 *     R <index> <outcome> <a> <b> <c> <d>\n       one per report
 *     F <vector> <error> <cr2> <rip>\n            fatal exception, then `out` 1 to port 0xF4, then `hlt`
 *     D\n                                         done, then `out` 0 to port 0xF4, then `hlt`
 * Copy-on-write in console mode needs boot-info flag bit 1 (a host answers on the console): on a write
 * fault (P=1 W=1) inside a probe the runtime prints
 *     C <cr2>\n                                   ask the host to resolve copy-on-write at CR2
 * and reads one byte from COM1 (polls LSR 0x3FD bit 0, reads 0x3F8): '0' = resolved (`invlpg` CR2 and
 * retry), anything else = not copy-on-write (the fault is reported). Without bit 1 no resolution is
 * attempted (a write fault is reported like any fault). The cap of 4 resolutions per probe holds in both.
 *
 * What the host must see (hypercall mode): one report hypercall per probe, in order, then the done report,
 * then HLT (status 0).
 *
 * Memory it uses besides the stack: 0x3000-0x31FF IDT, 0x3800-0x383F hypercall record (its argument
 * slots double as the staging area for console reports), 0x3C00-0x3C2F the runtime's variables.
 * Position-independent (the stubs' addresses are computed at run time).
 */
    .code64

    .equ IDT,           0x3000          /* 32 gates x 16 bytes */
    .equ HC,            0x3800          /* hypercall record */
    .equ HC_OP,         0x3800
    .equ HC_ARGC,       0x3804
    .equ HC_RESULT,     0x3808
    .equ HC_ARGS,       0x3810          /* u64[6] */
    .equ V_BOOT,        0x3C00          /* u64 boot-information block */
    .equ V_INDEX,       0x3C08          /* u64 index of the probe being run */
    .equ V_RSP,         0x3C10          /* u64 stack pointer to return to after a fault */
    .equ V_INPROBE,     0x3C18          /* u32 1 while a probe's access is under way */
    .equ V_FLAGS,       0x3C1C          /* u32 boot-info flags */
    .equ V_COWTRIES,    0x3C20          /* u32 copy-on-write resolutions in this probe */
    .equ V_IDTR,        0x3C26          /* limit u16 at 0x3C26, base u64 at 0x3C28 (8-aligned) */
    .equ CONSOLE,       0x3F8
    .equ CONSOLE_LSR,   0x3FD           /* COM1 line status: bit 0 = a received byte is ready */
    .equ EXIT,          0xF4
    .equ HYPERCALL,     0x510

    .section .text.start, "ax"
    .globl _start
_start:
    jmp     main

/*
 * The access slots: 16 bytes each from image offset 0x10, so the RIP of a faulting access is fixed:
 * slot k at load + 0x10 * (k + 1). k = 0-3 read of 1/2/4/8 bytes (RDI = va), 4-7 write of 1/2/4/8 bytes
 * (RSI = value), 8 execute (a fault in the callee reports RIP = va), 9 invlpg.
 * A fault in a slot is reported with that slot's first instruction as RIP.
 */
    .org    0x10, 0xcc                /* .org fails to assemble if a slot outgrows 16 bytes */
slot_read1:
    movzbl  (%rdi), %eax
    jmp     probe_ok
    .org    0x20, 0xcc
slot_read2:
    movzwl  (%rdi), %eax
    jmp     probe_ok
    .org    0x30, 0xcc
slot_read4:
    mov     (%rdi), %eax
    jmp     probe_ok
    .org    0x40, 0xcc
slot_read8:
    mov     (%rdi), %rax
    jmp     probe_ok
    .org    0x50, 0xcc
slot_write1:
    mov     %sil, (%rdi)
    jmp     probe_ok0
    .org    0x60, 0xcc
slot_write2:
    mov     %si, (%rdi)
    jmp     probe_ok0
    .org    0x70, 0xcc
slot_write4:
    mov     %esi, (%rdi)
    jmp     probe_ok0
    .org    0x80, 0xcc
slot_write8:
    mov     %rsi, (%rdi)
    jmp     probe_ok0
    .org    0x90, 0xcc
slot_execute:
    call    *%rdi                       /* the host put a `ret` at its physical address */
    jmp     probe_ok0
    .org    0xa0, 0xcc
slot_invalidate:
    invlpg  (%rdi)
    jmp     probe_ok0
    .org    0xb0, 0xcc
slots_end:

main:
    cld
    mov     %rdi, V_BOOT
    movq    $0, V_INDEX
    movl    $0, V_INPROBE
    mov     76(%rdi), %eax
    mov     %eax, V_FLAGS

    /* The IDT: gate i -> isr_table + 16*i, selector 0x08, IST 0, type 0x8E (present interrupt gate). */
    lea     isr_table(%rip), %rax
    mov     $IDT, %edi
    mov     $32, %ecx
1:  mov     %rax, %rdx
    mov     %dx, (%rdi)                 /* offset 15:0 */
    movw    $0x08, 2(%rdi)              /* selector */
    movw    $0x8E00, 4(%rdi)            /* IST 0, type/attributes 0x8E */
    shr     $16, %rdx
    mov     %dx, 6(%rdi)                /* offset 31:16 */
    shr     $16, %rdx
    mov     %edx, 8(%rdi)               /* offset 63:32 */
    movl    $0, 12(%rdi)
    add     $16, %rax
    add     $16, %rdi
    dec     %ecx
    jnz     1b
    movw    $(32 * 16 - 1), V_IDTR
    movq    $IDT, V_IDTR + 2
    lidt    V_IDTR

/* The probe loop. Every register is scratch here: after a fault the handler comes back to `advance`. */
next_probe:
    mov     V_BOOT, %r15
    mov     V_INDEX, %rcx
    mov     72(%r15), %eax              /* probe count */
    cmp     %rax, %rcx
    jae     done
    mov     64(%r15), %rbx              /* probe list */
    shl     $5, %rcx
    add     %rcx, %rbx                  /* this probe's record */
    mov     0(%rbx), %eax               /* op */
    mov     4(%rbx), %edx               /* size */
    mov     8(%rbx), %rdi               /* virtual address */
    mov     16(%rbx), %rsi              /* value */
    /* slot k: read 0 + log2(size), write 4 + log2(size), execute 8, invalidate 9 */
    mov     $8, %ecx
    cmp     $3, %eax
    je      2f
    mov     $9, %ecx
    cmp     $4, %eax
    je      2f
    cmp     $1, %eax
    je      1f
    cmp     $2, %eax
    jne     bad_probe
1:  cmp     $1, %edx                    /* size must be 1, 2, 4 or 8 */
    je      3f
    cmp     $2, %edx
    je      3f
    cmp     $4, %edx
    je      3f
    cmp     $8, %edx
    jne     bad_probe
3:  bsf     %edx, %ecx                  /* log2(size) */
    cmp     $2, %eax
    jne     2f
    add     $4, %ecx
2:  shl     $4, %ecx
    lea     slot_read1(%rip), %r8
    add     %rcx, %r8
    movl    $0, V_COWTRIES
    mov     %rsp, V_RSP
    movl    $1, V_INPROBE
    jmp     *%r8

probe_ok0:
    xor     %eax, %eax
probe_ok:                               /* RAX = the value to report */
    movl    $0, V_INPROBE
    mov     V_INDEX, %rcx
    mov     %rcx, HC_ARGS
    movq    $0, HC_ARGS + 8             /* outcome 0: ok */
    mov     %rax, HC_ARGS + 16
    movq    $0, HC_ARGS + 24
    movq    $0, HC_ARGS + 32
    movq    $0, HC_ARGS + 40
    jmp     report_and_advance

bad_probe:                              /* EAX = op, EDX = size */
    movl    $0, V_INPROBE
    mov     V_INDEX, %rcx
    mov     %rcx, HC_ARGS
    movq    $2, HC_ARGS + 8             /* outcome 2: not a valid probe */
    mov     %rax, HC_ARGS + 16
    mov     %rdx, HC_ARGS + 24
    movq    $0, HC_ARGS + 32
    movq    $0, HC_ARGS + 40

report_and_advance:
    mov     $1, %eax                    /* report */
    mov     $6, %ecx
    call    emit
advance:
    incq    V_INDEX
    jmp     next_probe

done:
    testl   $1, V_FLAGS
    jnz     1f
    movl    $0xFFFFFFFF, HC_ARGS        /* index 0xFFFFFFFF: done (a u64: high half below) */
    movl    $0, HC_ARGS + 4
    movq    $0, HC_ARGS + 8
    movq    $0, HC_ARGS + 16
    movq    $0, HC_ARGS + 24
    movq    $0, HC_ARGS + 32
    movq    $0, HC_ARGS + 40
    mov     $1, %eax
    mov     $6, %ecx
    call    emit
    jmp     2f                          /* host: the hlt ends the run, status 0 */
1:  mov     $CONSOLE, %dx
    mov     $'D', %al
    out     %al, %dx
    mov     $'\n', %al
    out     %al, %dx
    xor     %eax, %eax
    out     %al, $EXIT                  /* QEMU's isa-debug-exit: status 1; microvm: status 0 */
2:  hlt
    jmp     2b

/*
 * emit: one report (EAX = 1, ECX = 6) or fatal exception (EAX = 2, ECX = 4) whose arguments are at
 * HC_ARGS: a hypercall, or in console mode one line `R ...` / `F ...`.
 * Clobbers RAX, RCX, RDX, RSI, R8, R9.
 */
emit:
    testl   $1, V_FLAGS
    jnz     1f
    jmp     hypercall
1:  mov     %ecx, %r8d
    cmp     $2, %eax
    mov     $'R', %al
    jne     2f
    mov     $'F', %al
2:  mov     $CONSOLE, %dx
    out     %al, %dx
    mov     $HC_ARGS, %esi
3:  mov     $' ', %al
    out     %al, %dx
    mov     (%rsi), %rax
    call    put_hex
    add     $8, %rsi
    dec     %r8d
    jnz     3b
    mov     $'\n', %al
    out     %al, %dx
    ret

/*
 * hypercall: operation EAX with ECX arguments already at HC_ARGS; returns the host's result in RAX.
 * Clobbers RAX, RDX.
 */
hypercall:
    mov     %eax, HC_OP
    mov     %ecx, HC_ARGC
    movq    $1, HC_RESULT               /* a host that writes nothing leaves "not done" */
    mov     $HC, %eax
    mov     $HYPERCALL, %dx
    out     %eax, %dx
    mov     HC_RESULT, %rax
    ret

/*
 * put_hex: RAX in lowercase hex, no leading zeros ("0" for zero), to the console.
 * Clobbers RAX, RCX, RDX, R9.
 */
put_hex:
    mov     %rax, %r9
    xor     %ecx, %ecx
    test    %rax, %rax
    jz      1f
    bsr     %rax, %rcx                  /* highest set bit */
    and     $~3, %ecx                   /* shift of the top digit */
1:  mov     $CONSOLE, %dx
2:  mov     %r9, %rax
    shr     %cl, %rax
    and     $0xF, %eax
    cmp     $10, %al
    jb      3f
    add     $('a' - '0' - 10), %al
3:  add     $'0', %al
    out     %al, %dx
    sub     $4, %ecx
    jns     2b
    ret

/*
 * console_resolve: console mode with a host answering (boot-info flag bit 1): prints `C <cr2>\n` (CR2 in
 * RBX) and waits for one byte on COM1 (LSR 0x3FD bit 0, then RBR 0x3F8). RAX = 0 when it is '0' (the host
 * resolved the copy-on-write page), 1 for anything else. Clobbers RAX, RCX, RDX, R9.
 */
console_resolve:
    mov     $CONSOLE, %dx
    mov     $'C', %al
    out     %al, %dx
    mov     $' ', %al
    out     %al, %dx
    mov     %rbx, %rax
    call    put_hex
    mov     $'\n', %al
    out     %al, %dx                    /* put_hex leaves DX = CONSOLE */
    mov     $CONSOLE_LSR, %dx
1:  in      %dx, %al
    test    $1, %al                     /* data ready */
    jz      1b
    mov     $CONSOLE, %dx
    in      %dx, %al
    cmp     $'0', %al
    setne   %al
    movzbl  %al, %eax
    ret

/*
 * isr_common: the frame is [vector, error code, RIP, CS, RFLAGS, RSP, SS]; all 15 general registers are
 * saved first so a copy-on-write retry resumes the faulting instruction with nothing changed.
 */
isr_common:
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %rbp
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %cr2, %rbx
    mov     120(%rsp), %r12             /* vector */
    mov     128(%rsp), %r13             /* error code */
    mov     136(%rsp), %r14             /* RIP of the faulting instruction */
    cmpl    $0, V_INPROBE
    je      fatal
    cmp     $14, %r12
    jne     fault_report
    mov     %r13d, %eax
    and     $3, %eax
    cmp     $3, %eax                    /* P=1 (present) and W=1 (write) */
    jne     fault_report
    cmpl    $4, V_COWTRIES
    jae     fault_report
    testl   $1, V_FLAGS
    jz      1f
    testl   $2, V_FLAGS
    jz      fault_report                /* console mode, no host answering: report it */
    incl    V_COWTRIES
    call    console_resolve             /* `C <cr2>`, then the host's answer byte */
    jmp     2f
1:  incl    V_COWTRIES
    mov     %rbx, HC_ARGS
    mov     $3, %eax                    /* resolve copy-on-write at CR2 */
    mov     $1, %ecx
    call    hypercall
2:  test    %rax, %rax
    jnz     fault_report
    invlpg  (%rbx)
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rbp
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
    add     $16, %rsp                   /* vector, error code */
    iretq                               /* retry the write */

fault_report:
    movl    $0, V_INPROBE
    mov     V_INDEX, %rax
    mov     %rax, HC_ARGS
    movq    $1, HC_ARGS + 8             /* outcome 1: fault */
    mov     %r12, HC_ARGS + 16
    mov     %r13, HC_ARGS + 24
    mov     %rbx, HC_ARGS + 32
    mov     %r14, HC_ARGS + 40
    mov     $1, %eax
    mov     $6, %ecx
    call    emit
    mov     V_RSP, %rsp                 /* drop the exception frame and the probe's own stack use */
    jmp     advance

fatal:
    mov     %r12, HC_ARGS
    mov     %r13, HC_ARGS + 8
    mov     %rbx, HC_ARGS + 16
    mov     %r14, HC_ARGS + 24
    mov     $2, %eax                    /* fatal exception */
    mov     $4, %ecx
    call    emit
    testl   $1, V_FLAGS
    jz      1f
    mov     $1, %al
    out     %al, $EXIT                  /* console mode: end the run (QEMU status 3) */
1:  hlt
    jmp     1b

/* The 32 exception stubs, 16 bytes apart. Vectors 8, 10-14, 17, 21, 29 and 30 come with an error code. */
    .macro  isr vector
    .balign 16
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    push    $\vector
    .else
    push    $0
    push    $\vector
    .endif
    jmp     isr_common
    .endm

    .balign 16
isr_table:
    .irp    v, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    isr     \v
    .endr
