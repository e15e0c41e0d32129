/*
 * alias64 (amd64): rewrites its own page tables so that a full walk of them would visit billions of leaves.
 *
 * What it does: writes "alias\n" to the console port 0x3F8; reads CR3 and, through the identity map of the
 * page-table arena, points PML4 entries 1-255 at the PDPT of entry 0, PDPT entries 1-511 at the PD of
 * entry 0, and PD entries 8-511 at the page table that maps 0-2 MiB; then `hlt`. Nothing it runs on moves:
 * with 16 MiB of RAM it only uses 0-16 MiB, which PD entries 0-7 map as before.
 *
 * What the host must see: "alias\n", then HLT (status 0). With --dump-tables the dump after the run stays
 * bounded: the walk stops after its table budget and the dump after its line budget, each saying so.
 */
    .include "console64.inc"
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    PRINT   msg, msg_end
    movabs  $0x000FFFFFFFFFF000, %r8    /* address bits 51:12 of an entry */
    mov     %cr3, %rax
    and     %r8, %rax                   /* PML4 */
    mov     (%rax), %rbx
    and     %r8, %rbx                   /* PDPT of PML4 entry 0 */
    mov     (%rbx), %rcx
    and     %r8, %rcx                   /* PD of PDPT entry 0 */
    mov     (%rcx), %rdx
    and     %r8, %rdx                   /* PT of PD entry 0: 0-2 MiB */

    mov     %rbx, %r9
    or      $7, %r9                     /* -> PDPT, P | R/W | U/S */
    mov     %rcx, %r10
    or      $7, %r10                    /* -> PD */
    mov     %rdx, %r11
    or      $7, %r11                    /* -> PT */

    mov     $1, %esi
1:  mov     %r9, (%rax,%rsi,8)          /* PML4[1..255] -> PDPT */
    inc     %esi
    cmp     $256, %esi
    jne     1b
    mov     $1, %esi
2:  mov     %r10, (%rbx,%rsi,8)         /* PDPT[1..511] -> PD */
    inc     %esi
    cmp     $512, %esi
    jne     2b
    mov     $8, %esi
3:  mov     %r11, (%rcx,%rsi,8)         /* PD[8..511] -> PT */
    inc     %esi
    cmp     $512, %esi
    jne     3b
    hlt
4:  jmp     4b

msg:
    .ascii  "alias\n"
msg_end:
