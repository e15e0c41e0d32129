/*
 * sse64 (amd64): runs an SSE instruction, which a KVM that emulates guest code (kvm_pvm) cannot execute.
 *
 * What it does: writes "sse\n" to the console port 0x3F8, then `pxor %xmm0, %xmm0` (bytes 66 0f ef c0),
 * then `hlt`.
 *
 * What the host must see: "sse\n" on stdout. On kvm_intel / kvm_amd the guest runs natively and halts
 * (status 0). On kvm_pvm the emulator fails at the `pxor` (label pxor_at, 0x100013 with the default load
 * address): KVM_EXIT_INTERNAL_ERROR with suberror 1, which the host reports as one line naming RIP and the
 * instruction bytes.
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end
    .globl pxor_at
pxor_at:
    pxor    %xmm0, %xmm0                /* SSE2: the entry state enables SSE (CR4.OSFXSR) */
    hlt
2:  jmp     2b

msg:
    .ascii  "sse\n"
msg_end:
