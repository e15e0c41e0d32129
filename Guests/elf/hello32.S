/*
 * hello32.elf (i686 ELF32 guest): the i686 counterpart of hello64.elf, proven under QEMU (kvm_pvm cannot
 * run 32-bit paging; Tests/MicroVMTests/ELFQEMUTests.swift boots it through Guests/qemu/tramp32.bin).
 *
 * Linked by Guests/elf/i686.ld: .text R-X at virtual 0xC0000000 (physical 0x100000), .rodata R-- the page
 * after, .data + .bss RW- the page after that (.bss is 0x2008 bytes, so zero-fill crosses pages).
 *
 * Every entry first installs an IDT (in .data) whose only present gate is #PF (vector 14); the handler
 * prints "page fault: error EEEEEEEE cr2 CCCCCCCC eip IIIIIIII\n" and writes 0x21 to the exit port (QEMU's
 * isa-debug-exit then ends with status 0x43).
 *
 * Entry table (the first bytes of .text; pick one with the configuration's entry point):
 *   +0x00  _start (e_entry): the normal run below
 *   +0x10  writes a byte of .rodata                                  -> #PF, error 3 (P=1 W=1)
 *   +0x20  calls a `ret` in .data: i686 paging has no NX, so this runs, prints
 *          "executed .data: i686 has no NX\n" and writes 0 to the exit port
 *   +0x30  writes the identity alias of .text's frame (0x100000)     -> #PF, error 3
 *   +0x40  writes a byte of .text                                    -> #PF, error 3
 * Each prints one line saying what it is about to do first. Should a write succeed, it prints "survived\n"
 * and writes 1 to the exit port.
 *
 * The normal run prints, then writes 0 to the exit port (microvm: status 0; QEMU: status 1):
 *   hello from an ELF guest (i686)
 *   data ok, bss zero, data and bss writable
 *   seg c0000000 00100000 00001000 12
 *   seg c0001000 00101000 00001000 10
 *   seg c0002000 00102000 00003000 11
 *   bootinfo version 2 entry c0000000 segments 3
 * (the low halves of the boot-information records' u64 fields; see hello64.S).
 *
 * Relies on: 32-bit protected mode with paging, ESP = 0x80000, EDI = the boot-information block.
 */
    .equ CONSOLE, 0x3F8
    .equ EXIT, 0xF4
    .equ VIRTUAL_BASE, 0xC0000000
    .equ PHYSICAL_BASE, 0x100000

    .code32
    .section .text.start, "ax"
    .globl _start
_start:
    mov     $main, %ebx
    jmp     start
    .balign 16
    mov     $write_rodata, %ebx         /* +0x10 */
    jmp     start
    .balign 16
    mov     $fetch_data, %ebx           /* +0x20 */
    jmp     start
    .balign 16
    mov     $write_text_alias, %ebx     /* +0x30 */
    jmp     start
    .balign 16
    mov     $write_text, %ebx           /* +0x40 */
    jmp     start

    .text
/* Installs the #PF gate and the IDT, then jumps to EBX with EDI unchanged. */
start:
    cld
    mov     $page_fault, %eax
    mov     %ax, idt + 14 * 8           /* offset 15:0 */
    movw    $0x08, idt + 14 * 8 + 2     /* code selector */
    movw    $0x8E00, idt + 14 * 8 + 4   /* present, DPL 0, 32-bit interrupt gate */
    shr     $16, %eax
    mov     %ax, idt + 14 * 8 + 6       /* offset 31:16 */
    lidt    idtr
    jmp     *%ebx

main:
    mov     %edi, %ebp                  /* the boot-information block */
    mov     $greeting, %esi
    call    puts

    /* .data came from the file */
    cmpl    $0x55667788, data_word
    jne     data_wrong
    cmpl    $0x11223344, data_word + 4
    jne     data_wrong
    /* .bss reads zero, every byte of every page */
    mov     $bss_start, %edi
1:  cmp     $bss_end, %edi
    jae     2f
    cmpb    $0, (%edi)
    jne     bss_dirty
    inc     %edi
    jmp     1b
2:  /* both are writable */
    movl    $-1, bss_end - 4
    movl    $0x5A, data_word
    cmpl    $-1, bss_end - 4
    jne     bss_dirty
    mov     $data_ok, %esi
    call    puts

    /* the mapping records that are segments (flag bit 4) */
    mov     60(%ebp), %ecx              /* mapping count N */
    lea     80(%ebp), %edi              /* the first record */
3:  test    %ecx, %ecx
    jz      5f
    push    %ecx
    testl   $0x10, 24(%edi)
    jz      4f
    mov     $seg_prefix, %esi
    call    puts
    mov     0(%edi), %eax               /* virtual, low half */
    call    hex8
    call    space
    mov     8(%edi), %eax               /* physical, low half */
    call    hex8
    call    space
    mov     16(%edi), %eax              /* length, low half */
    call    hex8
    call    space
    mov     24(%edi), %eax              /* flags */
    mov     $2, %ecx
    call    hex
    call    newline
4:  pop     %ecx
    add     $32, %edi
    dec     %ecx
    jmp     3b
5:  /* the version-2 extension follows the last record: entry u64, segment count u32 */
    mov     $version_prefix, %esi
    call    puts
    mov     4(%ebp), %eax
    mov     $1, %ecx
    call    hex
    mov     $entry_prefix, %esi
    call    puts
    mov     0(%edi), %eax
    call    hex8
    mov     $segments_prefix, %esi
    call    puts
    mov     8(%edi), %eax
    mov     $1, %ecx
    call    hex
    call    newline
    mov     $0, %al
    out     %al, $EXIT                  /* microvm: status 0; QEMU: status 1 */
6:  hlt
    jmp     6b

data_wrong:
    mov     $data_wrong_msg, %esi
    jmp     fail
bss_dirty:
    mov     $bss_dirty_msg, %esi
fail:
    call    puts
    mov     $2, %al
    out     %al, $EXIT
7:  jmp     7b

/* The entries that test the permissions. */
write_rodata:
    mov     $about_rodata, %esi
    call    puts
    movb    $0x55, rodata_byte
    jmp     survived
fetch_data:
    mov     $about_data, %esi
    call    puts
    call    data_ret                    /* no NX on i686: returns */
    mov     $no_nx_msg, %esi
    call    puts
    mov     $0, %al
    out     %al, $EXIT
    jmp     7b
write_text_alias:
    mov     $about_text_alias, %esi
    call    puts
    movb    $0x55, PHYSICAL_BASE        /* the identity map of .text's first frame */
    jmp     survived
write_text:
    mov     $about_text, %esi
    call    puts
    movb    $0x55, _start
survived:
    mov     $survived_msg, %esi
    call    puts
    mov     $1, %al
    out     %al, $EXIT
8:  jmp     8b

/* #PF: the CPU pushed the error code, then EIP, CS, EFLAGS. */
page_fault:
    mov     $pf_prefix, %esi
    call    puts
    mov     0(%esp), %eax
    call    hex8
    mov     $pf_cr2, %esi
    call    puts
    mov     %cr2, %eax
    call    hex8
    mov     $pf_eip, %esi
    call    puts
    mov     4(%esp), %eax
    call    hex8
    call    newline
    mov     $0x21, %al
    out     %al, $EXIT
9:  hlt
    jmp     9b

/* puts: the NUL-terminated string at ESI. Clobbers EAX, EDX, ESI. */
puts:
    mov     $CONSOLE, %dx
1:  lodsb
    test    %al, %al
    jz      2f
    out     %al, %dx
    jmp     1b
2:  ret

/* hex8: the 8 hex digits of EAX. hex: the low ECX (1-8) digits. Clobber EAX, EBX, ECX, EDX. */
hex8:
    mov     $8, %ecx
hex:
    mov     %eax, %ebx
    mov     $CONSOLE, %dx
1:  dec     %ecx
    push    %ecx
    shl     $2, %ecx
    mov     %ebx, %eax
    shr     %cl, %eax
    pop     %ecx
    and     $0xF, %eax
    cmp     $10, %al
    jb      2f
    add     $('a' - '0' - 10), %al
2:  add     $'0', %al
    out     %al, %dx
    test    %ecx, %ecx
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
greeting:           .asciz "hello from an ELF guest (i686)\n"
data_ok:            .asciz "data ok, bss zero, data and bss writable\n"
data_wrong_msg:     .asciz "data wrong\n"
bss_dirty_msg:      .asciz "bss not zero\n"
seg_prefix:         .asciz "seg "
version_prefix:     .asciz "bootinfo version "
entry_prefix:       .asciz " entry "
segments_prefix:    .asciz " segments "
about_rodata:       .asciz "writing .rodata\n"
about_data:         .asciz "executing .data\n"
no_nx_msg:          .asciz "executed .data: i686 has no NX\n"
about_text_alias:   .asciz "writing the identity alias of .text\n"
about_text:         .asciz "writing .text\n"
survived_msg:       .asciz "survived\n"
pf_prefix:          .asciz "page fault: error "
pf_cr2:             .asciz " cr2 "
pf_eip:             .asciz " eip "

    .data
data_word:
    .quad   0x1122334455667788
data_ret:
    ret                                 /* an instruction in a non-executable segment */
    .balign 8
idtr:
    .word   16 * 8 - 1                  /* vectors 0-15 */
    .long   idt
    .balign 8
idt:
    .fill   16 * 8, 1, 0

    .bss
    .balign 8
bss_start:
    .skip   0x2008
bss_end:
