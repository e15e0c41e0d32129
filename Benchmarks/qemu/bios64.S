/*
 * bios64: a 64 KiB `-bios` image that lets QEMU (`-M microvm`) boot the same flat amd64 guests microvm
 * boots, for the whole-process peer comparison (issue 5). Built by scripts/bench.sh:
 *
 *   clang -target x86_64-unknown-none-elf -c bios64.S
 *   ld.lld -Ttext=0xf0000 ...; llvm-objcopy -O binary --only-section=.text  -> exactly 65,536 bytes
 *
 * QEMU maps the image at 0xFFFF0000 and at 0xF0000; the CPU resets in real mode at 0xFFFFFFF0, the last 16
 * bytes (CS base 0xFFFF0000, so real-mode offsets are offsets into the image). It is linked at the low
 * alias 0xF0000, so once out of real mode all code and data run there, inside the identity-mapped first
 * GiB (the top alias is not mapped by the tables). From there:
 *   1. real mode: load a GDT, set CR0.PE, far-jump to 32-bit code (the far jump's bytes are written by hand:
 *      clang encodes `ljmp $sel, $sym` in .code16 with a zero segment, design.md §5);
 *   2. protected mode: copy the GDT to 0x1000 (docs/layout.md) and reload it from there, write 4-level
 *      tables at 0x9000 identity-mapping the first 1 GiB with 2 MiB pages (user-accessible), set CR4.PAE,
 *      CR3, EFER.LME|NXE, CR0.PG, far-jump to 64-bit code;
 *   3. long mode: enter the guest (loaded at 0x100000 by `-device loader,...,force-raw=on`) with `iretq` at
 *      CPL 3 with IOPL 3, RSP 0x80000 and RDI 0x2000 (no boot-information block: hello64 does not read it).
 *
 * Why CPL 3: under KVM, QEMU does not end the run at the guest's `hlt` (the vCPU just sleeps). At CPL 3
 * the same `hlt` raises #GP; the IDT has limit 0, so #GP -> #DF -> triple fault, and with `-no-reboot`
 * QEMU exits (status 0). IOPL 3 keeps every `out` to the console port legal at CPL 3, so the guest runs
 * exactly the same instructions and prints exactly the same bytes as under microvm.
 */
    .set GDT_LOW, 0x1000
    .set PML4, 0x9000
    .set PDPT, 0xa000
    .set PD, 0xb000

    .text
    .globl _start
_start:
bios_start:

/* ---- 1. real mode (CS base 0xFFFF0000, offsets are relative to bios_start) ---- */
    .code16
start16:
    cli
    cld
    lgdtl   %cs:(gdtr_rom - bios_start)   /* 32-bit base: the GDT in this ROM */
    mov     %cr0, %eax
    or      $1, %eax                      /* PE */
    mov     %eax, %cr0
    /* ljmpl $0x08, $start32, by hand: 66 EA imm32 sel16 */
    .byte   0x66, 0xea
    .long   start32
    .word   0x08

/* ---- 2. protected mode, flat 32-bit segments ---- */
    .code32
start32:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
    /* GDT to 0x1000, reloaded from there (low memory stays mapped once paging is on). */
    mov     $gdt, %esi
    mov     $GDT_LOW, %edi
    mov     $(gdt_end - gdt), %ecx
    rep movsb
    lgdtl   gdtr_low
    /* Tables: clear three pages, link PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = i * 2 MiB (P|RW|US|PS). */
    mov     $PML4, %edi
    xor     %eax, %eax
    mov     $(3 * 4096 / 4), %ecx
    rep stosl
    movl    $(PDPT | 0x7), PML4
    movl    $(PD | 0x7), PDPT
    mov     $PD, %edi
    mov     $0x87, %eax
    mov     $512, %ecx
1:  mov     %eax, (%edi)
    add     $0x200000, %eax
    add     $8, %edi
    loop    1b
    mov     %cr4, %eax
    or      $((1 << 5) | (1 << 9) | (1 << 10)), %eax    /* PAE, OSFXSR, OSXMMEXCPT */
    mov     %eax, %cr4
    mov     $PML4, %eax
    mov     %eax, %cr3
    mov     $0xc0000080, %ecx                           /* EFER */
    rdmsr
    or      $((1 << 8) | (1 << 11)), %eax               /* LME, NXE */
    wrmsr
    mov     %cr0, %eax
    or      $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1)), %eax  /* PG, WP, NE, MP */
    mov     %eax, %cr0
    /* ljmp $0x18, $start64, by hand: EA imm32 sel16 */
    .byte   0xea
    .long   start64
    .word   0x18

/* ---- 3. long mode: drop to CPL 3 at the guest's entry ---- */
    .code64
start64:
    lidt    idtr_null                   /* limit 0: any exception ends in a triple fault */
    mov     $0x7000, %esp
    pushq   $0x23                       /* SS: user data, RPL 3 */
    pushq   $0x80000                    /* RSP */
    pushq   $0x3002                     /* RFLAGS: IOPL 3, interrupts off */
    pushq   $0x2b                       /* CS: user 64-bit code, RPL 3 */
    pushq   $0x100000                   /* RIP: the guest's load address */
    mov     $0x2000, %edi               /* RDI: where microvm's boot-information block would be */
    iretq

    .p2align 3
gdt:
    .quad   0                           /* 0x00 null */
    .quad   0x00cf9b000000ffff          /* 0x08 32-bit code, accessed */
    .quad   0x00cf93000000ffff          /* 0x10 flat data, accessed */
    .quad   0x00af9b000000ffff          /* 0x18 64-bit code, accessed */
    .quad   0x00cff3000000ffff          /* 0x20 user data (DPL 3), accessed */
    .quad   0x00affb000000ffff          /* 0x28 user 64-bit code (DPL 3), accessed */
gdt_end:
gdtr_rom:
    .word   gdt_end - gdt - 1
    .long   gdt
gdtr_low:
    .word   gdt_end - gdt - 1
    .long   GDT_LOW
idtr_null:
    .word   0
    .quad   0

/* ---- the reset vector: the last 16 bytes ---- */
    .org    0xfff0
reset:
    .code16
    /* jmp start16 (near, rel16 wraps within the 64 KiB segment): E9 and (0 - 0xFFF3) & 0xFFFF */
    .byte   0xe9
    .word   (start16 - bios_start - 0xfff3) & 0xffff
    .org    0x10000, 0xf4
