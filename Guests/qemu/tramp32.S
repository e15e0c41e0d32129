/*
 * tramp32 (QEMU oracle, i686): a 64 KiB `-bios` image that starts a microvm i686 guest under
 * qemu-system-i386 (TCG) from the memory image the host built (Tests/MicroVMTests/QEMUOracleTests.swift).
 *
 * QEMU loads RAM with the host's bytes (`-device loader`: [0, 0xA0000) and [0x100000, RAM size)): the GDT at
 * 0x1000, the boot-information block at 0x2000, the page tables in the arena, the guest image at its load
 * address. This image then builds the entry state of docs/layout.md ("Entry state i686"):
 *  1. real mode at 0xFFFFFFF0: jump to bios_start (offset 0; IP wraps within the 64 KiB segment);
 *  2. `lgdt` the host's GDT (base 0x1000, limit 23: 0x08 32-bit code, 0x10 data), CR0.PE, far jump to
 *     0x08:pm32 at the image's low alias (0xF0000 + offset; the far jump's bytes are emitted by hand:
 *     clang's assembler encodes `ljmp` in .code16 with a zero segment);
 *  3. data segments 0x10, ESP 0x80000, CR3 from boot info +16, CR4 |= PSE | OSFXSR | OSXMMEXCPT (PSE is
 *     harmless without 4 MiB leaves: a PDE with PS=0 still points at a table), EFLAGS 0x2, EDI 0x2000;
 *  4. CR0 = PE|MP|ET|NE|WP|PG, then `jmp *%ebx` to the load address (boot info +40), or, in a version-2
 *     block (an ELF guest), to the entry point in the extension after the N mapping records (boot info
 *     +80 + 32 * N, N at +60). That jump is fetched
 *     through the host's tables: the host identity-maps RAM below the image, and i686 has no NX, so the
 *     low alias of this image (guest-physical 0xF0000, the BIOS in QEMU) is readable and executable there.
 * A load address or entry point at or above 4 GiB (high half non-zero) prints a line and exits QEMU with
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
    lgdtl   %cs:(host_gdtr - bios_start) /* CS base is 0xFFFF0000 here: the high alias of this image */
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
    cmpl    $0, BOOT_INFO + 44          /* load address, high half */
    jne     bad_load
    mov     BOOT_INFO + 40, %ebx        /* load address = entry (version 1) */
    cmpl    $2, BOOT_INFO + 4           /* version 2: the entry point follows the mapping records */
    jb      1f
    mov     BOOT_INFO + 60, %eax
    shl     $5, %eax
    cmpl    $0, BOOT_INFO + 84(%eax)    /* entry point, high half */
    jne     bad_load
    mov     BOOT_INFO + 80(%eax), %ebx
1:
    mov     BOOT_INFO + 16, %eax        /* page-table root */
    mov     %eax, %cr3
    mov     %cr4, %eax
    or      $(0x10 | 0x200 | 0x400), %eax   /* PSE | OSFXSR | OSXMMEXCPT */
    mov     %eax, %cr4
    pushl   $2
    popfl                               /* EFLAGS = 0x2: interrupts off */
    mov     $BOOT_INFO, %edi
    xor     %eax, %eax
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %esi, %esi
    xor     %ebp, %ebp
    mov     $0x80010033, %eax           /* PG | WP | NE | ET | MP | PE */
    mov     %eax, %cr0
    jmp     *%ebx                       /* fetched through the host's tables (see above) */

bad_load:
    mov     $(BIOS_BASE + (msg - bios_start)), %esi
    mov     $(msg_end - msg), %ecx
    mov     $0x3F8, %dx
1:  lodsb
    out     %al, %dx
    loop    1b
    mov     $0x7F, %al
    out     %al, $0xF4                  /* isa-debug-exit: QEMU exits with status 255 */
2:  hlt
    jmp     2b

host_gdtr:
    .word   23                          /* null, 0x08 code, 0x10 data */
    .long   0x1000
msg:
    .ascii  "tramp32: the load address or entry point is above 4 GiB\n"
msg_end:

    /* The reset vector: real mode, CS:IP = 0xF000:0xFFF0 (linear 0xFFFFFFF0). */
    .org    0xFFF0, 0
    .code16
    .byte   0xE9                        /* jmp rel16 to offset 0: 0xFFF3 + 0x000D wraps to 0x0000 */
    .word   0x10000 - 0xFFF3
    .org    0x10000, 0
