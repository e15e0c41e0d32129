/*
 * hello64.elf (amd64 ELF guest): proves the ELF loader from inside the guest, and that the host's tables
 * give each segment exactly its permissions at its virtual address and on the identity map of its frames.
 *
 * Linked by Guests/elf/amd64.ld: .text R-X at virtual 0xFFFFFFFF80000000 (physical 0x100000), .rodata R--
 * the page after, .data + .bss RW- the page after that (.bss is 0x2008 bytes, so zero-fill crosses pages).
 *
 * Entry table (the first bytes of .text; pick one with --entry, e.g. --entry 0xffffffff80000010):
 *   +0x00  _start (e_entry): the normal run below
 *   +0x10  writes a byte of .rodata                                  -> #PF (P=1 W=1) -> triple fault
 *   +0x20  calls a `ret` in .data                                    -> #PF (I/D=1, NX) -> triple fault
 *   +0x30  writes the identity alias of .text's frame (0x100000)     -> #PF (P=1 W=1) -> triple fault
 *   +0x40  calls the identity alias of the `ret` in .data's frame    -> #PF (I/D=1, NX) -> triple fault
 *   +0x50  writes a byte of .text                                    -> #PF (P=1 W=1) -> triple fault
 * Each prints one line saying what it is about to do; no IDT is installed, so the fault ends the run with
 * the host's triple-fault line (RIP and CR2 with their translations). Should the access succeed, it prints
 * "survived\n" and writes 1 to the exit port.
 *
 * The normal run prints, then halts (status 0):
 *   hello from an ELF guest (amd64)
 *   data ok, bss zero, data and bss writable
 *   seg ffffffff80000000 0000000000100000 0000000000001000 12
 *   seg ffffffff80001000 0000000000101000 0000000000001000 10
 *   seg ffffffff80002000 0000000000102000 0000000000003000 11
 *   bootinfo version 2 entry ffffffff80000000 segments 3
 * The `seg` lines are the boot-information records with flag bit 4 (virtual, physical, length, flags: bit 0
 * write, bit 1 exec, bit 4 segment); the last line is the version-2 extension after the records
 * (docs/layout.md). A data or bss check that fails prints "data wrong" / "bss not zero" and writes 2 to
 * the exit port.
 *
 * Relies on: long mode, RSP = 0x80000 (identity-mapped stack), RDI = the boot-information block.
 */
    .equ CONSOLE, 0x3F8
    .equ EXIT, 0xF4
    .equ VIRTUAL_BASE, 0xFFFFFFFF80000000
    .equ PHYSICAL_BASE, 0x100000

    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    jmp     main
    .balign 16
    jmp     write_rodata                /* +0x10 */
    .balign 16
    jmp     fetch_data                  /* +0x20 */
    .balign 16
    jmp     write_text_alias            /* +0x30 */
    .balign 16
    jmp     fetch_data_alias            /* +0x40 */
    .balign 16
    jmp     write_text                  /* +0x50 */

    .text
main:
    cld
    mov     %rdi, %r15                  /* the boot-information block */
    lea     greeting(%rip), %rsi
    call    puts

    /* .data came from the file */
    movabs  $0x1122334455667788, %rax
    cmp     data_word(%rip), %rax
    jne     data_wrong
    /* .bss reads zero, every byte of every page */
    lea     bss_start(%rip), %rdi
    lea     bss_end(%rip), %rcx
1:  cmp     %rcx, %rdi
    jae     2f
    cmpb    $0, (%rdi)
    jne     bss_dirty
    inc     %rdi
    jmp     1b
2:  /* both are writable */
    movq    $-1, bss_end - 8(%rip)
    movq    $0x5A, data_word(%rip)
    cmpq    $-1, bss_end - 8(%rip)
    jne     bss_dirty
    lea     data_ok(%rip), %rsi
    call    puts

    /* the mapping records that are segments (flag bit 4) */
    mov     60(%r15), %r12d             /* mapping count N */
    lea     80(%r15), %r13              /* the first record */
3:  test    %r12d, %r12d
    jz      5f
    testl   $0x10, 24(%r13)
    jz      4f
    lea     seg_prefix(%rip), %rsi
    call    puts
    mov     0(%r13), %rax               /* virtual */
    mov     $16, %ecx
    call    hex
    call    space
    mov     8(%r13), %rax               /* physical */
    mov     $16, %ecx
    call    hex
    call    space
    mov     16(%r13), %rax              /* length */
    mov     $16, %ecx
    call    hex
    call    space
    mov     24(%r13), %eax              /* flags */
    mov     $2, %ecx
    call    hex
    call    newline
4:  add     $32, %r13
    dec     %r12d
    jmp     3b
5:  /* the version-2 extension follows the last record: entry u64, segment count u32 */
    lea     version_prefix(%rip), %rsi
    call    puts
    mov     4(%r15), %eax
    mov     $1, %ecx
    call    hex
    lea     entry_prefix(%rip), %rsi
    call    puts
    mov     0(%r13), %rax
    mov     $16, %ecx
    call    hex
    lea     segments_prefix(%rip), %rsi
    call    puts
    mov     8(%r13), %eax
    mov     $1, %ecx
    call    hex
    call    newline
    hlt                                 /* host: status 0 */
6:  jmp     6b

data_wrong:
    lea     data_wrong_msg(%rip), %rsi
    jmp     fail
bss_dirty:
    lea     bss_dirty_msg(%rip), %rsi
fail:
    call    puts
    mov     $2, %al
    out     %al, $EXIT
7:  jmp     7b

/* The entries that must fault. */
write_rodata:
    lea     about_rodata(%rip), %rsi
    call    puts
    movb    $0x55, rodata_byte(%rip)
    jmp     survived
fetch_data:
    lea     about_data(%rip), %rsi
    call    puts
    call    data_ret
    jmp     survived
write_text_alias:
    lea     about_text_alias(%rip), %rsi
    call    puts
    movb    $0x55, PHYSICAL_BASE        /* absolute: the identity map of .text's first frame */
    jmp     survived
fetch_data_alias:
    lea     about_data_alias(%rip), %rsi
    call    puts
    movabs  $(data_ret - VIRTUAL_BASE + PHYSICAL_BASE), %rax
    call    *%rax
    jmp     survived
write_text:
    lea     about_text(%rip), %rsi
    call    puts
    movb    $0x55, _start(%rip)
survived:
    lea     survived_msg(%rip), %rsi
    call    puts
    mov     $1, %al
    out     %al, $EXIT
8:  jmp     8b

/* puts: the NUL-terminated string at RSI. Clobbers RAX, RDX, RSI. */
puts:
    mov     $CONSOLE, %dx
1:  lodsb
    test    %al, %al
    jz      2f
    out     %al, %dx
    jmp     1b
2:  ret

/* hex: the low ECX (1-16) hex digits of RAX, most significant first. Clobbers RAX, RCX, RDX, R8, R9. */
hex:
    mov     %rax, %r8
    mov     %ecx, %r9d
    mov     $CONSOLE, %dx
1:  dec     %r9d
    lea     (,%r9,4), %ecx
    mov     %r8, %rax
    shr     %cl, %rax
    and     $0xF, %eax
    cmp     $10, %al
    jb      2f
    add     $('a' - '0' - 10), %al
2:  add     $'0', %al
    out     %al, %dx
    test    %r9d, %r9d
    jnz     1b
    ret

space:
    mov     $' ', %al
    jmp     putc
newline:
    mov     $'\n', %al
putc:
    mov     $CONSOLE, %dx
    out     %al, %dx
    ret

    .section .rodata, "a"
rodata_byte:
greeting:           .asciz "hello from an ELF guest (amd64)\n"
data_ok:            .asciz "data ok, bss zero, data and bss writable\n"
data_wrong_msg:     .asciz "data wrong\n"
bss_dirty_msg:      .asciz "bss not zero\n"
seg_prefix:         .asciz "seg "
version_prefix:     .asciz "bootinfo version "
entry_prefix:       .asciz " entry "
segments_prefix:    .asciz " segments "
about_rodata:       .asciz "writing .rodata\n"
about_data:         .asciz "executing .data\n"
about_text_alias:   .asciz "writing the identity alias of .text\n"
about_data_alias:   .asciz "executing the identity alias of .data\n"
about_text:         .asciz "writing .text\n"
survived_msg:       .asciz "survived\n"

    .data
data_word:
    .quad   0x1122334455667788
data_ret:
    ret                                 /* a valid instruction in a non-executable segment */

    .bss
    .balign 8
bss_start:
    .skip   0x2008
bss_end:
