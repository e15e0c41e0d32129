/*
 * start64.S: the first instructions of every amd64 Embedded Swift guest, and its exception stubs.
 *
 * _start is the first byte of the image (linker script guest64.ld). The host enters it in long mode with
 * RSP = 0x80000 and RDI = the boot-information block (docs/layout.md); _start hands RDI to the Swift
 * runtime's microvm_start (Runtime.swift) with the System V stack alignment a call expects (RSP = 0x80000 is
 * 16-aligned, so the call leaves RSP + 8 aligned in the callee) and RBP = 0 ending frame-pointer walks.
 * microvm_start never returns; if it did, the guest halts (host: status 0).
 *
 * microvm_exception_stubs: 32 entry points, 16 bytes apart, for vectors 0-31 (the IDT that
 * Exceptions.install() builds points at them). Each makes the frame uniform, [vector, error code, RIP, CS,
 * RFLAGS, RSP, SS], pushing a 0 error code where the CPU pushes none, then saves the nine registers a C-ABI
 * call may clobber and calls microvm_exception(frame) (Exceptions.swift). That function returns only to
 * retry the faulting instruction (a copy-on-write page the host has just made writable); the stub restores
 * the registers, drops vector and error code, and `iretq`s.
 * Stack at the call: the CPU aligned RSP to 16 before its 5 (or 6) pushes; 7 qwords of frame and 9 saved
 * registers are 128 bytes, so RSP is 16-aligned at the `call`, as the ABI wants.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    cld                                 /* the C and Swift ABIs assume DF = 0 */
    xor     %ebp, %ebp
    call    microvm_start               /* RDI = boot-information block */
1:  hlt
    jmp     1b

    .section .text.microvm_exceptions, "ax"

    .macro  stub vector
    .balign 16
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    push    $\vector                    /* the CPU pushed an error code */
    .else
    push    $0
    push    $\vector
    .endif
    jmp     exception_common
    .endm

    .balign 16
    .globl  microvm_exception_stubs
microvm_exception_stubs:
    .irp    v, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    stub    \v
    .endr

exception_common:
    push    %rax
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    lea     72(%rsp), %rdi              /* the frame: vector, error code, RIP, CS, RFLAGS, RSP, SS */
    cld
    call    microvm_exception           /* returns only to retry */
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rax
    add     $16, %rsp                   /* vector, error code */
    iretq
