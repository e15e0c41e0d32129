/*
 * probe64 (amd64): the probe guest. Performs the host's probe list and reports every result or fault.
 *
 * What it does (docs/layout.md, "Probes" and "Hypercalls"):
 *  1. Installs its own GDT at 0x3400 (null, 0x08 kernel code, 0x10 kernel data, 0x18 user code and 0x20 user
 *     data with DPL 3, 0x28 a 64-bit TSS at 0x3480) and `ltr`s the TSS; installs an IDT at 0x3000 for
 *     vectors 0-31 (16-byte interrupt gates, selector 0x08) and `lidt`s it. Each stub pushes a 0 error
 *     code where the CPU pushes none, then the vector, and jumps to isr_common, which has the vector, the
 *     error code, CR2 and the faulting RIP.
 *  2. Reads the probe list address (boot info +64), the probe count (+72) and the flags (+76) from the
 *     boot-information block at RDI.
 *  3. For each probe i (32-byte records: op u32, size u32, va u64, value u64, flags u32, reserved u32):
 *       read (1):       size 1/2/4/8 bytes at va, zero-extended          -> report [i, 0, value, 0, 0, 0]
 *       write (2):      the low `size` bytes of value at va               -> report [i, 0, 0, 0, 0, 0]
 *       execute (3):    `call va` (the host put a `ret` there)            -> report [i, 0, 0, 0, 0, 0]
 *       invalidate (4): `invlpg (va)`                                     -> report [i, 0, 0, 0, 0, 0]
 *     An op or size outside the contract is reported as [i, 2, op, size, 0, 0] (nothing is accessed).
 *     User mode: a probe whose flags have bit 0 set (or every probe, with boot-info flag bit 2) runs its
 *     access slot at CPL 3: the runtime stores RSP in the TSS's RSP0 and `iretq`s to the slot with
 *     CS 0x1B, SS 0x23, RSP 0x9000 (the user stack page 0x8000-0x8FFF), RFLAGS 0x2. Any exception comes
 *     back to ring 0 on the RSP0 stack (a #PF's error code has U/S, bit 2, set for a user access). A slot
 *     that succeeds comes back the same way: it executes `ud2` at user_done, and the #UD stub recognises
 *     that RIP and reports the value. (Not `int n` or `syscall`: a KVM that emulates guest code, as
 *     kvm_pvm does, raises #UD for `int n` outside real mode and does not leave CPL 3 on `syscall`;
 *     exceptions it delivers like any CPU.) The host must map the image and the user stack page
 *     user-accessible (it does when it lists such probes; docs/layout.md).
 *     An exception during the access is reported as [i, 1, vector, error code, CR2, RIP] (RIP: the access
 *     slot below, fixed per op and size, or va itself for a fetch fault in an execute); the runtime then
 *     drops the exception frame (back to the stack pointer saved at the start of the probe) and goes on
 *     with probe i+1 (in ring 0; a probe at CPL 3 is entered afresh). Exception: a #PF with error code P=1
 *     W=1 outside console mode first asks the host to resolve copy-on-write (hypercall 3, arguments CR2 and
 *     the error code, whose U/S bit says whether a user access faulted; in console mode with flag bit 1 a
 *     `C` line, below); on result 0 it `invlpg`s CR2 and `iretq`s to retry the write, at CPL 3 again if it
 *     faulted there (at most 4 resolutions per probe, then the fault is reported as above).
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
 *     C <cr2> <error>\n                           ask the host to resolve copy-on-write at CR2
 * and reads one byte from COM1 (polls LSR 0x3FD bit 0, reads 0x3F8): '0' = resolved (`invlpg` CR2 and
 * retry), anything else = not copy-on-write (the fault is reported). Without bit 1 no resolution is
 * attempted (a write fault is reported like any fault). The cap of 4 resolutions per probe holds in both.
 *
 * What the host must see (hypercall mode): one report hypercall per probe, in order, then the done report,
 * then HLT (status 0).
 *
 * Memory it uses besides the stack: 0x3000-0x31FF IDT, 0x3400-0x3437 GDT, 0x3480-0x34E7 TSS, 0x3800-0x383F
 * hypercall record (its argument slots double as the staging area for console reports), 0x3C00-0x3C3F the
 * runtime's variables; for probes at CPL 3 the user stack 0x8000-0x8FFF.
 * Position-independent (the stubs' addresses are computed at run time).
 */
    .code64

    .equ IDT,           0x3000          /* 32 gates x 16 bytes */
    .equ GDT,           0x3400          /* 7 descriptors x 8 bytes (the TSS descriptor takes two) */
    .equ TSS,           0x3480          /* 104-byte 64-bit TSS */
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
    .equ V_USER,        0x3C30          /* u32 1 while the probe being run runs at CPL 3 */
    .equ V_GDTR,        0x3C36          /* limit u16 at 0x3C36, base u64 at 0x3C38 (8-aligned) */
    .equ KERNEL_CS,     0x08
    .equ KERNEL_DS,     0x10
    .equ USER_CS,       0x18 | 3        /* selector with RPL 3 */
    .equ USER_DS,       0x20 | 3
    .equ TSS_SELECTOR,  0x28
    .equ USER_STACK_TOP, 0x9000         /* the user stack page is 0x8000-0x8FFF */
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

    /*
     * The GDT (SDM Vol. 3A §3.4.5, §7.2.3): the boot GDT's kernel code and data at the same selectors, so
     * CS and SS stay valid, then user code and data with DPL 3, then the TSS descriptor (16 bytes in
     * IA-32e mode: limit 0x67, base TSS, type 9 = available 64-bit TSS, present, DPL 0). Accessed bits are
     * pre-set; the CPU still writes the TSS descriptor's busy bit at `ltr` (the page is writable).
     */
    movq    $0, GDT
    movabs  $0x00AF9B000000FFFF, %rax   /* 0x08: code, execute/read, L=1, DPL 0 */
    mov     %rax, GDT + 0x08
    movabs  $0x00CF93000000FFFF, %rax   /* 0x10: data, read/write, DPL 0 */
    mov     %rax, GDT + 0x10
    movabs  $0x00AFFB000000FFFF, %rax   /* 0x18: code, execute/read, L=1, DPL 3 */
    mov     %rax, GDT + 0x18
    movabs  $0x00CFF3000000FFFF, %rax   /* 0x20: data, read/write, DPL 3 */
    mov     %rax, GDT + 0x20
    movabs  $(0x0000890000000067 | (TSS << 16)), %rax
    mov     %rax, GDT + 0x28            /* 0x28: the TSS, base 31:0 here (TSS < 16 MiB) ... */
    movq    $0, GDT + 0x30              /* ... base 63:32 and reserved */
    /* The TSS (SDM Vol. 3A §7.7): zero but RSP0 (+4, set per probe) and the I/O map base (+102). */
    mov     $TSS, %edi
    xor     %eax, %eax
    mov     $13, %ecx
1:  mov     %rax, (%rdi)
    add     $8, %rdi
    dec     %ecx
    jnz     1b
    movw    $104, TSS + 102             /* past the TSS limit: no I/O bitmap, port I/O at CPL 3 faults */
    movw    $(7 * 8 - 1), V_GDTR
    movq    $GDT, V_GDTR + 2
    lgdt    V_GDTR
    mov     $TSS_SELECTOR, %ax
    ltr     %ax

    /* The IDT: gate i -> isr_table + 16*i, selector 0x08, IST 0, type 0x8E (present interrupt gate, DPL 0). */
    lea     isr_table(%rip), %rax
    mov     $IDT, %edi
    mov     $32, %ecx
1:  mov     %rax, %rdx
    mov     %dx, (%rdi)                 /* offset 15:0 */
    movw    $KERNEL_CS, 2(%rdi)         /* selector */
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
    mov     24(%rbx), %r9d              /* flags: bit 0 = at CPL 3 */
    mov     V_FLAGS, %r10d
    shr     $2, %r10d                   /* boot-info flag bit 2: every probe at CPL 3 */
    or      %r10d, %r9d
    and     $1, %r9d
    mov     %r9d, V_USER
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
    mov     %rsp, TSS + 4               /* RSP0: where an exception at CPL 3 lands */
    movl    $1, V_INPROBE
    cmpl    $0, V_USER
    jne     5f
    jmp     *%r8
5:  push    $USER_DS                    /* SS */
    push    $USER_STACK_TOP             /* RSP */
    push    $2                          /* RFLAGS: interrupts off, IOPL 0 */
    push    $USER_CS                    /* CS: CPL 3 */
    push    %r8                         /* RIP: the slot */
    iretq

probe_ok0:
    xor     %eax, %eax
probe_ok:                               /* RAX = the value to report; still at CPL 3 for a user probe */
    mov     %cs, %ecx
    test    $3, %cl
    jz      probe_report_ok
user_done:
    ud2                                 /* at CPL 3: the #UD here is the way back to ring 0 (user_return) */
probe_report_ok:
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
 * console_resolve: console mode with a host answering (boot-info flag bit 1): prints `C <cr2> <error>\n`
 * (CR2 in RBX, the #PF error code in R13) and waits for one byte on COM1 (LSR 0x3FD bit 0, then RBR 0x3F8). RAX = 0 when it is '0' (the host
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
    mov     $' ', %al
    out     %al, %dx                    /* put_hex leaves DX = CONSOLE */
    mov     %r13, %rax
    call    put_hex
    mov     $'\n', %al
    out     %al, %dx
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
 * isr_common: the frame is [vector, error code, RIP, CS, RFLAGS, RSP, SS] (on the RSP0 stack for an
 * exception at CPL 3); all 15 general registers are
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
    cmp     $6, %r12
    jne     1f
    lea     user_done(%rip), %rcx
    cmp     %rcx, %r14
    je      user_return                 /* #UD at user_done: a probe at CPL 3 succeeded */
1:  cmp     $14, %r12
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
    mov     %r13, HC_ARGS + 8           /* the error code: U/S = 1 for a write at CPL 3 */
    mov     $3, %eax                    /* resolve copy-on-write at CR2 */
    mov     $2, %ecx
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
    iretq                               /* retry the write (at CPL 3 again if it faulted there) */

/*
 * user_return: a probe at CPL 3 succeeded and raised #UD at user_done, with RAX (the value) untouched by
 * isr_common so far. The exception frame and the saved registers are dropped, and the kernel data selectors
 * are loaded again (an exception from CPL 3 in IA-32e mode loads a null SS).
 */
user_return:
    mov     V_RSP, %rsp
    mov     $KERNEL_DS, %ecx
    mov     %cx, %ss
    mov     %cx, %ds
    mov     %cx, %es
    jmp     probe_report_ok

fault_report:
    mov     $KERNEL_DS, %eax            /* after a fault at CPL 3, SS is null: load the kernel's again */
    mov     %ax, %ss
    mov     %ax, %ds
    mov     %ax, %es
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
