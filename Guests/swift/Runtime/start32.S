/*
 * start32.S: the first instructions of every i686 Embedded Swift guest, and its exception stubs.
 *
 * _start is the first byte of the image (linker script guest32.ld). The host enters it in 32-bit protected
 * mode with paging, ESP = 0x80000 and EDI = the boot-information block (docs/layout.md); _start passes EDI
 * to the Swift runtime's microvm_start (Runtime.swift) as its one stack argument (cdecl), with ESP 16-aligned
 * at the call as the i386 System V ABI asks, and EBP = 0 ending frame-pointer walks. microvm_start never
 * returns; if it did, the guest halts.
 *
 * microvm_exception_stubs: 32 entry points, 16 bytes apart, for vectors 0-31. Each makes the frame uniform,
 * [vector, error code, EIP, CS, EFLAGS], pushing a 0 error code where the CPU pushes none, saves the general
 * registers (`pushal`) and calls microvm_exception(frame) (Exceptions.swift), which returns only to retry the
 * faulting instruction; then the registers come back, vector and error code are dropped, and `iret`.
 */
    .code32
    .section .text.start, "ax"
    .globl _start
_start:
    cld                                 /* the C and Swift ABIs assume DF = 0 */
    xor     %ebp, %ebp
    sub     $12, %esp                   /* 12 + the argument = 16: ESP stays 16-aligned at the call */
    push    %edi                        /* the boot-information block */
    call    microvm_start
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
    pushal                              /* EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI: 32 bytes */
    lea     32(%esp), %eax              /* the frame: vector, error code, EIP, CS, EFLAGS */
    push    %eax
    cld
    call    microvm_exception           /* returns only to retry */
    add     $4, %esp
    popal
    add     $8, %esp                    /* vector, error code */
    iret
