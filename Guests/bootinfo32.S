/*
 * bootinfo32 (i686): the 32-bit twin of bootinfo64.
 *
 * What it does: reads the boot-information block whose address the host passes in EDI (0x2000,
 * docs/layout.md) with 32-bit loads and prints to the console port 0x3F8 two lines:
 *
 *     magic=<M> ram=<R> cr3=<C> load=<L>\n
 *     cr3reg=<X>\n
 *
 * where M is the u32 at +0 (8 hex digits; the magic 0x424D564D "MVMB" prints as 424d564d), R, C, L the
 * u64 fields at +8 (RAM size), +16 (page-table root) and +40 (load address), each printed as 16 hex digits
 * (high dword, then low dword), and X the CR3 register (`mov %cr3, %ebx`) as 8 hex digits; lowercase,
 * zero-padded. Then `hlt`.
 *
 * What the host must see (16 MiB RAM, default load address):
 *     magic=424d564d ram=0000000001000000 cr3=<16 hex> load=0000000000100000\n
 *     cr3reg=<8 hex>\n
 * with cr3= equal to 00000000 followed by the 8 digits of cr3reg=; then a HLT exit, status 0.
 *
 * Uses the stack (call/ret) at 0x80000; finds its own address with call/pop, so any load address works.
 */
    .code32
    .section .text.start, "ax"
    .globl _start
_start:
    cld
    mov     %edi, %ebp                  /* boot-information block */
    call    0f                          /* EDI := run-time address of label 0 (base for the strings) */
0:  pop     %edi

    lea     (s_magic - 0b)(%edi), %esi
    call    puts
    mov     0(%ebp), %ebx               /* magic, u32 */
    call    put_hex8

    lea     (s_ram - 0b)(%edi), %esi
    call    puts
    mov     $8, %eax                    /* RAM size, u64 */
    call    put_u64

    lea     (s_cr3 - 0b)(%edi), %esi
    call    puts
    mov     $16, %eax                   /* page-table root, u64 */
    call    put_u64

    lea     (s_load - 0b)(%edi), %esi
    call    puts
    mov     $40, %eax                   /* load address, u64 */
    call    put_u64

    lea     (s_cr3reg - 0b)(%edi), %esi /* "\ncr3reg=" */
    call    puts
    mov     %cr3, %ebx                  /* the live root */
    call    put_hex8

    lea     (s_nl - 0b)(%edi), %esi
    call    puts
    hlt                                 /* host: run ends, status 0 */
2:  jmp     2b

/*
 * put_u64: write the u64 at EBP + EAX as 16 hex digits (high dword first).
 * Clobbers EAX, EBX, ECX, EDX.
 */
put_u64:
    push    %eax
    mov     4(%ebp,%eax), %ebx          /* high half */
    call    put_hex8
    pop     %eax
    mov     (%ebp,%eax), %ebx           /* low half */
    jmp     put_hex8                    /* tail call */

/*
 * puts: write the NUL-terminated string at ESI to the console, one `out %al, %dx` per byte.
 * Clobbers EAX, EDX, ESI.
 */
puts:
    mov     $0x3F8, %dx
1:  lodsb
    test    %al, %al
    jz      9f
    out     %al, %dx
    jmp     1b
9:  ret

/*
 * put_hex8: write EBX as 8 lowercase hex digits, most significant first.
 * Clobbers EAX, EBX, ECX, EDX.
 */
put_hex8:
    mov     $8, %ecx
    mov     $0x3F8, %dx
1:  rol     $4, %ebx                    /* next nibble into the bottom */
    mov     %bl, %al
    and     $0x0F, %al
    cmp     $10, %al
    jb      3f
    add     $('a' - '0' - 10), %al
3:  add     $'0', %al
    out     %al, %dx
    dec     %ecx
    jnz     1b
    ret

s_magic:  .asciz "magic="
s_ram:    .asciz " ram="
s_cr3:    .asciz " cr3="
s_load:   .asciz " load="
s_cr3reg: .asciz "\ncr3reg="
s_nl:     .asciz "\n"
