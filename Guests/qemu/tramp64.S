/*
 * tramp64 (QEMU oracle, amd64): a 64 KiB `-bios` image that starts a microvm amd64 guest under
 * qemu-system-x86_64 (TCG) from the memory image the host built (Tests/MicroVMTests/QEMUOracleTests.swift).
 *
 * QEMU loads RAM with the host's bytes (`-device loader`: [0, 0xA0000) and [0x100000, RAM size)): the GDT at
 * 0x1000, the boot-information block at 0x2000, the page tables in the arena, the guest image at its load
 * address. This image then builds the entry state of docs/layout.md ("Entry state amd64"):
 *  1. real mode at 0xFFFFFFF0: jump to bios_start (offset 0);
 *  2. `lgdt` this image's own GDT (0x08 32-bit code, 0x10 data, 0x18 64-bit code), CR0.PE, far jump to
 *     0x08:pm32 at the low alias 0xF0000 + offset (bytes emitted by hand, see tramp32.S);
 *  3. CR4 = PAE | OSFXSR | OSXMMEXCPT, EFER |= LME | NXE, CR3 = this image's own tables (below), CR0 =
 *     PE|MP|ET|NE|WP|PG: long mode, compatibility mode; far jump to 0x18:lm64;
 *  4. 64-bit: `lgdt` the host's GDT (0x1000, limit 23), reload CS = 0x08 (far return) and the data segments
 *     (0x10), RSP 0x80000, RDI 0x2000, RFLAGS 0x2, RAX = the host's root (boot info +16); then
 *  5. `mov %rax, %cr3` in the LAST three bytes of this image (guest-physical 0xFFFFD-0xFFFFF), so the next
 *     instruction is fetched, through the host's tables, at 0x100000: the guest's first byte.
 *
 * Why the detour through our own tables: once paging is on, every fetch is translated, and the host maps
 * the RAM below the image (where this image's low alias lies) read-write but no-execute; without NXE the
 * NX bits are reserved bits, which fault too. So the host's tables are switched in by an instruction that
 * our tables map executable (a 2 MiB identity leaf over [0, 2 MiB), in ROM, A and D pre-set so the walker
 * never writes them) and whose successor is the guest's first instruction. Hence the one restriction: the
 * load address (= entry) must be 0x100000, the default; otherwise this prints a line and exits QEMU with
 * status 255.
 */
    .equ BIOS_BASE, 0xF0000             /* where the low alias of this image lives */
    .equ BOOT_INFO, 0x2000

    .section .text.start, "ax"
    .globl bios_start

    .code16
bios_start:
    cli
    cld
    lgdtl   %cs:(tramp_gdtr - bios_start) /* CS base is 0xFFFF0000 here: the high alias of this image */
    mov     %cr0, %eax
    or      $1, %eax                    /* PE */
    mov     %eax, %cr0
    .byte   0x66, 0xEA                  /* ljmpl $0x08, $pm32 (operand-size prefix: 32-bit offset) */
    .long   BIOS_BASE + (pm32 - bios_start)
    .word   0x08

    .code32
pm32:
    mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
    mov     $0x80000, %esp
    mov     %cr4, %eax
    or      $(0x20 | 0x200 | 0x400), %eax   /* PAE | OSFXSR | OSXMMEXCPT */
    mov     %eax, %cr4
    mov     $(BIOS_BASE + (pml4 - bios_start)), %eax
    mov     %eax, %cr3
    mov     $0xC0000080, %ecx           /* IA32_EFER */
    rdmsr
    or      $((1 << 8) | (1 << 11)), %eax   /* LME | NXE */
    wrmsr
    mov     $0x80010033, %eax           /* PG | WP | NE | ET | MP | PE: long mode becomes active */
    mov     %eax, %cr0
    .byte   0xEA                        /* ljmp $0x18, $lm64 */
    .long   BIOS_BASE + (lm64 - bios_start)
    .word   0x18

    .code64
lm64:
    mov     $0x80000, %esp
    lgdt    host_gdtr(%rip)
    pushq   $0x08                       /* CS = the host's 64-bit code segment */
    lea     1f(%rip), %rax
    push    %rax
    lretq
1:  mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
    cmpq    $0x100000, BOOT_INFO + 40   /* load address: must be where switch_cr3 falls through to */
    jne     bad_load
    pushq   $2
    popfq                               /* RFLAGS = 0x2: interrupts off */
    mov     $BOOT_INFO, %edi
    xor     %ebx, %ebx
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %esi, %esi
    xor     %ebp, %ebp
    mov     BOOT_INFO + 16, %rax        /* the host's page-table root */
    jmp     switch_cr3

bad_load:
    lea     msg(%rip), %rsi
    mov     $(msg_end - msg), %ecx
    mov     $0x3F8, %dx
1:  lodsb
    out     %al, %dx
    loop    1b
    mov     $0x7F, %al
    out     %al, $0xF4                  /* isa-debug-exit: QEMU exits with status 255 */
2:  hlt
    jmp     2b

    .balign 8
tramp_gdtr:
    .word   31
    .long   BIOS_BASE + (tramp_gdt - bios_start)
    .balign 8
host_gdtr:
    .word   23                          /* the host's GDT: null, 0x08 64-bit code, 0x10 data */
    .quad   0x1000
    .balign 8
tramp_gdt:                              /* Accessed bits pre-set: the CPU never writes this (ROM) GDT */
    .quad   0
    .quad   0x00CF9B000000FFFF          /* 0x08: 32-bit code */
    .quad   0x00CF93000000FFFF          /* 0x10: data */
    .quad   0x00AF9B000000FFFF          /* 0x18: 64-bit code */
msg:
    .ascii  "tramp64: the load address must be 0x100000\n"
msg_end:

    /* Our own tables: [0, 2 MiB) identity, one 2 MiB leaf, writable, executable; A and D pre-set. */
    .balign 4096
pml4:
    .quad   BIOS_BASE + (pdpt - bios_start) + 0x23  /* P | RW | A */
    .fill   511, 8, 0
pdpt:
    .quad   BIOS_BASE + (pd - bios_start) + 0x23    /* P | RW | A */
    .fill   511, 8, 0
pd:
    .quad   0x0 + 0xE3                              /* P | RW | A | D | PS: 2 MiB at 0 */
    .fill   511, 8, 0

    /* The reset vector: real mode, CS:IP = 0xF000:0xFFF0 (linear 0xFFFFFFF0). */
    .org    0xFFF0, 0
    .code16
    .byte   0xE9                        /* jmp rel16 to offset 0: 0xFFF3 + 0x000D wraps to 0x0000 */
    .word   0x10000 - 0xFFF3
    .org    0xFFFD, 0
    .code64
switch_cr3:                             /* guest-physical 0xFFFFD: the last instruction of the image */
    mov     %rax, %cr3                  /* 0F 22 D8; the next fetch is 0x100000 through the host's tables */
    .org    0x10000, 0
