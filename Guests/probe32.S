/*
 * probe32 (i686): the probe guest, 32-bit protected mode with paging. The twin of probe64.S; see there and
 * docs/layout.md ("Probes", "Hypercalls") for the contract. Differences from amd64:
 *  - the IDT at 0x3000 has 8-byte interrupt gates (selector 0x08, type 0x8E); the frame is
 *    [vector, error code, EIP, CS, EFLAGS] (no stack switch at CPL 0), plus [ESP, SS] for an exception at
 *    CPL 3 (the CPU switched to SS0:ESP0 from the TSS);
 *  - the GDT at 0x3400 has 32-bit code segments (0x08 kernel, 0x18 user) and a 32-bit TSS (0x28, at 0x3480:
 *    ESP0 at +4, SS0 = 0x10 at +8); a probe at CPL 3 runs with DS = ES = SS = 0x23 (a null DS would fault
 *    in protected mode), ESP 0x9000;
 *  - virtual addresses are the low 32 bits of the probe's va, the probe list address the low 32 bits of
 *    boot info +64;
 *  - a read of 8 bytes is two 4-byte reads (va, then va+4), reported as low | high << 32; a write of 8
 *    bytes is two 4-byte writes (low half first);
 *  - the u64 hypercall arguments are written as two 32-bit halves; CR2 and EIP are zero-extended.
 *
 * User mode (probe flags bit 0, or boot-info flag bit 2): the access slot runs at CPL 3 after an `iret`; a
 * slot that succeeds executes `ud2` at user_done, and the #UD stub takes that as the way back to ring 0.
 *
 * Reports: hypercall 1 [i, 0, value, 0, 0, 0] per successful probe, [i, 1, vector, error code, CR2, EIP]
 * per fault, [i, 2, op, size, 0, 0] for an op or size outside the contract, [0xFFFFFFFF, 0, 0, 0, 0, 0]
 * when done, then `hlt`. Fatal exception (outside a probe): hypercall 2 [vector, error code, CR2, EIP],
 * then `hlt`. A #PF with P=1 W=1 inside a probe first asks the host to resolve copy-on-write (hypercall 3,
 * CR2 and the error code; at most 4 per probe); on result 0 the runtime `invlpg`s CR2 and `iret`s to retry.
 * Console mode (boot-info flag bit 0): `R ...`, `F ...` (then `out` 1 to port 0xF4) and `D\n` (then `out` 0
 * to port 0xF4) lines on port 0x3F8 in lowercase hex without leading zeros. Copy-on-write in console mode
 * only with flag bit 1 (a host answers on the console): the runtime prints `C <cr2> <error>\n` and reads one byte
 * from COM1, '0' = resolved (`invlpg` and retry), anything else = report the fault; without bit 1 a write
 * fault is reported like any fault.
 *
 * Memory it uses besides the stack: 0x3000-0x30FF IDT, 0x3400-0x342F GDT, 0x3480-0x34E7 TSS, 0x3800-0x383F
 * hypercall record (also the staging area for console reports), 0x3C00-0x3C3F the runtime's variables; for
 * probes at CPL 3 the user stack 0x8000-0x8FFF. Position-independent.
 */
    .code32

    .equ IDT,           0x3000          /* 32 gates x 8 bytes */
    .equ GDT,           0x3400          /* 6 descriptors x 8 bytes */
    .equ TSS,           0x3480          /* 104-byte 32-bit TSS */
    .equ HC,            0x3800          /* hypercall record */
    .equ HC_OP,         0x3800
    .equ HC_ARGC,       0x3804
    .equ HC_RESULT,     0x3808
    .equ HC_ARGS,       0x3810          /* u64[6] */
    .equ V_BOOT,        0x3C00          /* u32 boot-information block */
    .equ V_INDEX,       0x3C08          /* u32 index of the probe being run */
    .equ V_ESP,         0x3C10          /* u32 stack pointer to return to after a fault */
    .equ V_INPROBE,     0x3C18          /* u32 1 while a probe's access is under way */
    .equ V_FLAGS,       0x3C1C          /* u32 boot-info flags */
    .equ V_COWTRIES,    0x3C20          /* u32 copy-on-write resolutions in this probe */
    .equ V_IDTR,        0x3C26          /* limit u16 at 0x3C26, base u32 at 0x3C28 */
    .equ V_USER,        0x3C30          /* u32 1 while the probe being run runs at CPL 3 */
    .equ V_GDTR,        0x3C36          /* limit u16 at 0x3C36, base u32 at 0x3C38 */
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
 * The access slots: 16 bytes each from image offset 0x10, so the EIP of a faulting access is fixed:
 * slot k at load + 0x10 * (k + 1). k = 0-3 read of 1/2/4/8 bytes (EDI = va), 4-7 write of 1/2/4/8 bytes
 * (EBX:EAX = value), 8 execute (a fault in the callee reports EIP = va), 9 invlpg. The 8-byte slots are two
 * 4-byte accesses: a fault in the second (at va + 4) reports EIP = slot + 2.
 */
    .org    0x10, 0xcc                /* .org fails to assemble if a slot outgrows 16 bytes */
slot_read1:
    movzbl  (%edi), %eax
    jmp     probe_ok32
    .org    0x20, 0xcc
slot_read2:
    movzwl  (%edi), %eax
    jmp     probe_ok32
    .org    0x30, 0xcc
slot_read4:
    mov     (%edi), %eax
    jmp     probe_ok32
    .org    0x40, 0xcc
slot_read8:
    mov     (%edi), %eax                /* 2 bytes */
    mov     4(%edi), %edx               /* at slot + 2 */
    jmp     probe_ok
    .org    0x50, 0xcc
slot_write1:
    mov     %al, (%edi)
    jmp     probe_ok0
    .org    0x60, 0xcc
slot_write2:
    mov     %ax, (%edi)
    jmp     probe_ok0
    .org    0x70, 0xcc
slot_write4:
    mov     %eax, (%edi)
    jmp     probe_ok0
    .org    0x80, 0xcc
slot_write8:
    mov     %eax, (%edi)                /* 2 bytes */
    mov     %ebx, 4(%edi)               /* at slot + 2 */
    jmp     probe_ok0
    .org    0x90, 0xcc
slot_execute:
    call    *%edi                       /* the host put a `ret` at its physical address */
    jmp     probe_ok0
    .org    0xa0, 0xcc
slot_invalidate:
    invlpg  (%edi)
    jmp     probe_ok0
    .org    0xb0, 0xcc
slots_end:

main:
    cld
    mov     %edi, V_BOOT
    movl    $0, V_INDEX
    movl    $0, V_INPROBE
    mov     76(%edi), %eax
    mov     %eax, V_FLAGS

    /*
     * The GDT (SDM Vol. 3A §3.4.5, §7.2.2): the boot GDT's kernel code and data at the same selectors, so
     * CS and SS stay valid, then user code and data with DPL 3, then the TSS descriptor (limit 0x67, base
     * TSS, type 9 = available 32-bit TSS, present, DPL 0). Accessed bits are pre-set; the CPU still writes
     * the TSS descriptor's busy bit at `ltr` (the page is writable).
     */
    movl    $0, GDT
    movl    $0, GDT + 4
    movl    $0x0000FFFF, GDT + 0x08     /* 0x08: code, execute/read, D=1, DPL 0 */
    movl    $0x00CF9B00, GDT + 0x0C
    movl    $0x0000FFFF, GDT + 0x10     /* 0x10: data, read/write, DPL 0 */
    movl    $0x00CF9300, GDT + 0x14
    movl    $0x0000FFFF, GDT + 0x18     /* 0x18: code, execute/read, D=1, DPL 3 */
    movl    $0x00CFFB00, GDT + 0x1C
    movl    $0x0000FFFF, GDT + 0x20     /* 0x20: data, read/write, DPL 3 */
    movl    $0x00CFF300, GDT + 0x24
    movl    $((TSS << 16) | 0x67), GDT + 0x28       /* 0x28: the TSS, base 15:0, limit 15:0 */
    movl    $(0x00008900 | (TSS >> 16)), GDT + 0x2C /* base 31:24 = 0 and 23:16, type 9, present */
    /* The TSS (SDM Vol. 3A §7.2.1): zero but ESP0 (+4, set per probe), SS0 (+8) and the I/O map base (+102). */
    mov     $TSS, %edi
    xor     %eax, %eax
    mov     $26, %ecx
1:  mov     %eax, (%edi)
    add     $4, %edi
    dec     %ecx
    jnz     1b
    movl    $KERNEL_DS, TSS + 8         /* SS0 */
    movw    $104, TSS + 102             /* past the TSS limit: no I/O bitmap, port I/O at CPL 3 faults */
    movw    $(6 * 8 - 1), V_GDTR
    movl    $GDT, V_GDTR + 2
    lgdt    V_GDTR
    mov     $TSS_SELECTOR, %ax
    ltr     %ax

    /* The IDT: gate i -> isr_table + 16*i, selector 0x08, type 0x8E (present 32-bit interrupt gate). */
    call    0f                          /* EAX := run-time address of label 0 */
0:  pop     %eax
    add     $(isr_table - 0b), %eax
    mov     $IDT, %edi
    mov     $32, %ecx
1:  mov     %eax, %edx
    mov     %dx, (%edi)                 /* offset 15:0 */
    movw    $0x08, 2(%edi)              /* selector */
    movw    $0x8E00, 4(%edi)            /* type/attributes 0x8E */
    shr     $16, %edx
    mov     %dx, 6(%edi)                /* offset 31:16 */
    add     $16, %eax
    add     $8, %edi
    dec     %ecx
    jnz     1b
    movw    $(32 * 8 - 1), V_IDTR
    movl    $IDT, V_IDTR + 2
    lidt    V_IDTR

/* The probe loop. Every register is scratch here: after a fault the handler comes back to `advance`. */
next_probe:
    mov     V_BOOT, %ebp
    mov     V_INDEX, %ecx
    cmp     72(%ebp), %ecx              /* probe count */
    jae     done
    mov     64(%ebp), %ebx              /* probe list (low half of the u64) */
    shl     $5, %ecx
    add     %ecx, %ebx                  /* this probe's record */
    mov     0(%ebx), %eax               /* op */
    mov     4(%ebx), %edx               /* size */
    mov     8(%ebx), %edi               /* virtual address (low half) */
    mov     16(%ebx), %esi              /* value, low half */
    mov     24(%ebx), %ecx              /* flags: bit 0 = at CPL 3 */
    mov     20(%ebx), %ebx              /* value, high half */
    mov     V_FLAGS, %ebp
    shr     $2, %ebp                    /* boot-info flag bit 2: every probe at CPL 3 */
    or      %ebp, %ecx
    and     $1, %ecx
    mov     %ecx, V_USER
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
    call    4f                          /* ECX += run-time address of slot_read1 */
4:  pop     %ebp
    lea     (slot_read1 - 4b)(%ebp, %ecx), %ecx
    movl    $0, V_COWTRIES
    mov     %esp, V_ESP
    mov     %esp, TSS + 4               /* ESP0: where an exception at CPL 3 lands */
    movl    $1, V_INPROBE
    mov     %esi, %eax                  /* value, low half, for the write slots */
    cmpl    $0, V_USER
    jne     5f
    jmp     *%ecx
5:  mov     $USER_DS, %edx
    mov     %dx, %ds                    /* `iret` to CPL 3 would null a DPL 0 DS and ES */
    mov     %dx, %es
    push    $USER_DS                    /* SS */
    push    $USER_STACK_TOP             /* ESP */
    push    $2                          /* EFLAGS: interrupts off, IOPL 0 */
    push    $USER_CS                    /* CS: CPL 3 */
    push    %ecx                        /* EIP: the slot */
    iret

probe_ok0:
    xor     %eax, %eax
probe_ok32:
    xor     %edx, %edx
probe_ok:                               /* EDX:EAX = the value to report; still at CPL 3 for a user probe */
    mov     %cs, %ecx
    test    $3, %cl
    jz      probe_report_ok
user_done:
    ud2                                 /* at CPL 3: the #UD here is the way back to ring 0 (user_return) */
probe_report_ok:
    movl    $0, V_INPROBE
    mov     V_INDEX, %ecx
    mov     %ecx, HC_ARGS
    movl    $0, HC_ARGS + 4
    movl    $0, HC_ARGS + 8             /* outcome 0: ok */
    movl    $0, HC_ARGS + 12
    mov     %eax, HC_ARGS + 16
    mov     %edx, HC_ARGS + 20
    call    clear_args_3_to_5
    jmp     report_and_advance

bad_probe:                              /* EAX = op, EDX = size */
    movl    $0, V_INPROBE
    mov     V_INDEX, %ecx
    mov     %ecx, HC_ARGS
    movl    $0, HC_ARGS + 4
    movl    $2, HC_ARGS + 8             /* outcome 2: not a valid probe */
    movl    $0, HC_ARGS + 12
    mov     %eax, HC_ARGS + 16
    movl    $0, HC_ARGS + 20
    call    clear_args_3_to_5
    mov     %edx, HC_ARGS + 24

report_and_advance:
    mov     $1, %eax                    /* report */
    mov     $6, %ecx
    call    emit
advance:
    incl    V_INDEX
    jmp     next_probe

done:
    testl   $1, V_FLAGS
    jnz     1f
    movl    $0xFFFFFFFF, HC_ARGS        /* index 0xFFFFFFFF: done */
    movl    $0, HC_ARGS + 4
    movl    $0, HC_ARGS + 8
    movl    $0, HC_ARGS + 12
    movl    $0, HC_ARGS + 16
    movl    $0, HC_ARGS + 20
    call    clear_args_3_to_5
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

/* clear_args_3_to_5: zero the u64 arguments 3, 4 and 5 at HC_ARGS. */
clear_args_3_to_5:
    movl    $0, HC_ARGS + 24
    movl    $0, HC_ARGS + 28
    movl    $0, HC_ARGS + 32
    movl    $0, HC_ARGS + 36
    movl    $0, HC_ARGS + 40
    movl    $0, HC_ARGS + 44
    ret

/*
 * emit: one report (EAX = 1, ECX = 6) or fatal exception (EAX = 2, ECX = 4) whose arguments are at
 * HC_ARGS: a hypercall, or in console mode one line `R ...` / `F ...`.
 * Clobbers EAX, ECX, EDX, ESI, EDI.
 */
emit:
    testl   $1, V_FLAGS
    jnz     1f
    jmp     hypercall
1:  push    %ebx
    mov     %ecx, %ebx
    cmp     $2, %eax
    mov     $'R', %al
    jne     2f
    mov     $'F', %al
2:  mov     $CONSOLE, %dx
    out     %al, %dx
    mov     $HC_ARGS, %esi
3:  mov     $' ', %al
    mov     $CONSOLE, %dx
    out     %al, %dx
    mov     (%esi), %eax
    mov     4(%esi), %edx
    call    put_hex64
    add     $8, %esi
    dec     %ebx
    jnz     3b
    mov     $'\n', %al
    mov     $CONSOLE, %dx
    out     %al, %dx
    pop     %ebx
    ret

/*
 * hypercall: operation EAX with ECX arguments already at HC_ARGS; returns the host's result, folded to
 * 32 bits (low | high, so zero exactly when the u64 is zero), in EAX. Clobbers EAX, EDX.
 */
hypercall:
    mov     %eax, HC_OP
    mov     %ecx, HC_ARGC
    movl    $1, HC_RESULT               /* a host that writes nothing leaves "not done" */
    movl    $0, HC_RESULT + 4
    mov     $HC, %eax
    mov     $HYPERCALL, %dx
    out     %eax, %dx
    mov     HC_RESULT, %eax
    or      HC_RESULT + 4, %eax
    ret

/*
 * put_hex64: EDX:EAX in lowercase hex, no leading zeros ("0" for zero), to the console.
 * Clobbers EAX, ECX, EDX, EDI.
 */
put_hex64:
    test    %edx, %edx
    jz      1f
    push    %eax
    mov     %edx, %eax
    mov     $1, %ecx
    call    put_hex32                   /* high half, no leading zeros */
    pop     %eax
    mov     $8, %ecx                    /* low half, all 8 digits */
    jmp     put_hex32
1:  mov     $1, %ecx
    jmp     put_hex32

/*
 * put_hex32: EAX in lowercase hex with at least ECX digits (1-8) and no other leading zeros.
 * Clobbers EAX, ECX, EDX, EDI.
 */
put_hex32:
    mov     %eax, %edi
    test    %eax, %eax
    jz      1f
    bsr     %eax, %edx                  /* highest set bit */
    shr     $2, %edx
    inc     %edx                        /* significant digits */
    cmp     %ecx, %edx
    jbe     1f
    mov     %edx, %ecx
1:  shl     $2, %ecx                    /* 4 * digits */
2:  sub     $4, %ecx                    /* shift of the next digit */
    mov     %edi, %eax
    shr     %cl, %eax
    and     $0xF, %eax
    cmp     $10, %al
    jb      3f
    add     $('a' - '0' - 10), %al
3:  add     $'0', %al
    mov     $CONSOLE, %dx
    out     %al, %dx
    test    %ecx, %ecx
    jnz     2b
    ret

/*
 * console_resolve: console mode with a host answering (boot-info flag bit 1): prints `C <cr2> <error>\n`
 * (CR2 in EBX, the #PF error code in EDI) and waits for one byte on COM1 (LSR 0x3FD bit 0, then RBR 0x3F8). EAX = 0 when it is '0' (the host
 * resolved the copy-on-write page), 1 for anything else. Clobbers EAX, ECX, EDX (keeps EDI).
 */
console_resolve:
    push    %edi
    mov     $CONSOLE, %dx
    mov     $'C', %al
    out     %al, %dx
    mov     $' ', %al
    out     %al, %dx
    mov     %ebx, %eax
    xor     %edx, %edx
    call    put_hex64
    mov     $CONSOLE, %dx
    mov     $' ', %al
    out     %al, %dx
    mov     (%esp), %eax                /* the saved EDI: the error code */
    xor     %edx, %edx
    call    put_hex64
    mov     $CONSOLE, %dx
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
    pop     %edi
    ret

/*
 * isr_common: the frame is [vector, error code, EIP, CS, EFLAGS] (+ [ESP, SS] from CPL 3); `pusha` saves the eight general
 * registers first so a copy-on-write retry resumes the faulting instruction with nothing changed.
 * After `pusha`: vector at 32(%esp), error code at 36, EIP at 40.
 */
isr_common:
    pusha
    mov     %cr2, %ebx
    mov     32(%esp), %esi              /* vector */
    mov     36(%esp), %edi              /* error code */
    mov     40(%esp), %ebp              /* EIP of the faulting instruction */
    cmpl    $0, V_INPROBE
    je      fatal
    cmp     $6, %esi
    jne     1f
    call    0f                          /* ECX := run-time address of user_done */
0:  pop     %ecx
    add     $(user_done - 0b), %ecx
    cmp     %ecx, %ebp
    je      user_return                 /* #UD at user_done: a probe at CPL 3 succeeded */
1:  cmp     $14, %esi
    jne     fault_report
    mov     %edi, %eax
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
    mov     %ebx, HC_ARGS
    movl    $0, HC_ARGS + 4
    mov     %edi, HC_ARGS + 8           /* the error code: U/S = 1 for a write at CPL 3 */
    movl    $0, HC_ARGS + 12
    mov     $3, %eax                    /* resolve copy-on-write at CR2 */
    mov     $2, %ecx
    call    hypercall
2:  test    %eax, %eax
    jnz     fault_report
    invlpg  (%ebx)
    popa
    add     $8, %esp                    /* vector, error code */
    iret                                /* retry the write (at CPL 3 again if it faulted there) */

/*
 * user_return: a probe at CPL 3 succeeded and raised #UD at user_done, with EDX:EAX (the value) untouched
 * by isr_common so far. The exception frame and the saved registers are dropped, and the kernel data
 * selectors are loaded again (SS is SS0 already).
 */
user_return:
    mov     V_ESP, %esp
    mov     $KERNEL_DS, %ecx
    mov     %cx, %ds
    mov     %cx, %es
    jmp     probe_report_ok

fault_report:
    mov     $KERNEL_DS, %eax            /* after a fault at CPL 3, DS and ES are the user's */
    mov     %ax, %ds
    mov     %ax, %es
    movl    $0, V_INPROBE
    mov     V_INDEX, %eax
    mov     %eax, HC_ARGS
    movl    $0, HC_ARGS + 4
    movl    $1, HC_ARGS + 8             /* outcome 1: fault */
    movl    $0, HC_ARGS + 12
    mov     %esi, HC_ARGS + 16
    movl    $0, HC_ARGS + 20
    call    clear_args_3_to_5
    mov     %edi, HC_ARGS + 24
    mov     %ebx, HC_ARGS + 32
    mov     %ebp, HC_ARGS + 40
    mov     $1, %eax
    mov     $6, %ecx
    call    emit
    mov     V_ESP, %esp                 /* drop the exception frame and the probe's own stack use */
    jmp     advance

fatal:
    call    clear_args_3_to_5
    mov     %esi, HC_ARGS
    movl    $0, HC_ARGS + 4
    mov     %edi, HC_ARGS + 8
    movl    $0, HC_ARGS + 12
    mov     %ebx, HC_ARGS + 16
    movl    $0, HC_ARGS + 20
    mov     %ebp, HC_ARGS + 24
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
