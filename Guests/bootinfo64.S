/*
 * bootinfo64 (amd64): prints what the host put in the boot-information block, and the live CR3.
 *
 * What it does: reads the boot-information block whose address the host passes in RDI (0x2000,
 * docs/layout.md) and prints to the console port 0x3F8 two lines:
 *
 *     magic=<M> ram=<R> cr3=<C> load=<L>\n
 *     cr3reg=<X>\n
 *
 * where M is the u32 at +0 (read little-endian, so the magic 0x424D564D "MVMB" prints as 424d564d),
 * R the u64 at +8 (RAM size), C the u64 at +16 (page-table root), L the u64 at +40 (load address), and X
 * the CR3 register itself (`mov %cr3, %rbx`); M as 8 lowercase hex digits, the others as 16, zero-padded.
 * Then `hlt`.
 *
 * What the host must see (16 MiB RAM, default load address):
 *     magic=424d564d ram=0000000001000000 cr3=<16 hex> load=0000000000100000\n
 *     cr3reg=<16 hex>\n
 * with the same 16 hex digits in cr3= and cr3reg= (the block tells the truth), then a HLT exit, status 0.
 *
 * Uses the stack (call/ret) at 0x80000.
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    cld
    mov     %rdi, %r12                  /* boot-information block */

    lea     s_magic(%rip), %rsi
    call    puts
    mov     0(%r12), %ebx               /* magic, u32 */
    mov     $8, %ecx
    call    put_hex

    lea     s_ram(%rip), %rsi
    call    puts
    mov     8(%r12), %rbx               /* RAM size, u64 */
    mov     $16, %ecx
    call    put_hex

    lea     s_cr3(%rip), %rsi
    call    puts
    mov     16(%r12), %rbx              /* page-table root, u64 */
    mov     $16, %ecx
    call    put_hex

    lea     s_load(%rip), %rsi
    call    puts
    mov     40(%r12), %rbx              /* load address, u64 */
    mov     $16, %ecx
    call    put_hex

    lea     s_cr3reg(%rip), %rsi        /* "\ncr3reg=" */
    call    puts
    mov     %cr3, %rbx                  /* the live root */
    mov     $16, %ecx
    call    put_hex

    lea     s_nl(%rip), %rsi
    call    puts
    hlt                                 /* host: run ends, status 0 */
2:  jmp     2b

/*
 * puts: write the NUL-terminated string at RSI to the console, one `out %al, %dx` per byte.
 * Clobbers RAX, RDX, RSI.
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
 * put_hex: write the low 4*ECX bits of RBX as ECX lowercase hex digits (1 <= ECX <= 16),
 * most significant first. Clobbers RAX, RBX, RCX, RDX.
 */
put_hex:
    mov     %ecx, %eax
    shl     $2, %ecx
    neg     %ecx
    add     $64, %ecx                   /* CL = 64 - 4*digits (a count of 64 is taken as 0: fine) */
    rol     %cl, %rbx                   /* the first digit wanted is now in the top nibble */
    mov     %eax, %ecx
    mov     $0x3F8, %dx
1:  rol     $4, %rbx                    /* next nibble into the bottom */
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
