/*
 * outloop64 (amd64): the exit round-trip benchmark guest (Benchmarks/, issue 5).
 *
 * What it does: writes the byte '.' to the console port 0x3F8 100,000 times, one `out %al, %dx` each, then
 * executes `hlt`.
 *
 * What the host must see: exactly 100,000 single-byte OUT exits on port 0x3F8 (each a full round trip
 * guest -> KVM -> host user space -> KVM -> guest), then a HLT exit, which ends the run with status 0.
 * Host stdout: 100,000 '.' bytes (benchmarks run it with the console discarded).
 *
 * Relies on: 64-bit long mode entry (docs/layout.md); the image executable. Uses no stack and no RAM outside
 * the image, so any load address works.
 *
 * Syntax: AT&T (source, destination), as in every guest here.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    mov     $'.', %al                   /* the byte written each time */
    mov     $0x3F8, %dx                 /* console port */
    mov     $100000, %ecx               /* number of OUT exits */
1:  out     %al, %dx                    /* one exit per iteration */
    dec     %ecx
    jnz     1b
    hlt                                 /* host: run ends, status 0 */
2:  jmp     2b                          /* never reached: the host stops at hlt */
