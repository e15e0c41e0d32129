/*
 * devices64 (amd64): exercises an embedder's port and MMIO devices with every access size.
 *
 * What it does: OUT of 1, 2 and 4 bytes to port 0x100 (0x11, 0x2222, 0x33333333); IN of 1, 2 and 4 bytes
 * from port 0x100, each value echoed with a 4-byte OUT to port 0x101; stores of 1, 2, 4 and 8 bytes to
 * guest-physical 0xD0000000 + 0/2/4/8 (0x44, 0x5555, 0x66666666, 0x7777777777777777, through an identity
 * mapping the host adds, above RAM so no memory backs it); loads of 1, 2, 4 and 8 bytes from the same
 * addresses, each echoed to port 0x101 (the 8-byte one as low then high half); then `hlt`.
 *
 * What the host must see, in order: the three port writes, three port reads each followed by its echo,
 * four MMIO writes, four MMIO reads each followed by its echo (two for the 8-byte load), then HLT.
 * Relies on: `--map 0xd0000000=0xd0000000:4K:rw` (or the same mapping from the embedder).
 */
    .code64
    .section .text.start, "ax"
    .globl _start
_start:
    mov     $0x100, %dx
    mov     $0x11, %al
    out     %al, %dx
    mov     $0x2222, %ax
    out     %ax, %dx
    mov     $0x33333333, %eax
    out     %eax, %dx

    xor     %eax, %eax
    in      %dx, %al
    call    echo
    xor     %eax, %eax
    in      %dx, %ax
    call    echo
    in      %dx, %eax
    call    echo

    mov     $0xD0000000, %ebx
    movb    $0x44, (%rbx)
    movw    $0x5555, 2(%rbx)
    movl    $0x66666666, 4(%rbx)
    movabs  $0x7777777777777777, %rax
    mov     %rax, 8(%rbx)

    movzbl  (%rbx), %eax
    call    echo
    movzwl  2(%rbx), %eax
    call    echo
    movl    4(%rbx), %eax
    call    echo
    mov     8(%rbx), %rax
    call    echo
    shr     $32, %rax
    call    echo
    hlt
1:  jmp     1b

/* Writes EAX to port 0x101; leaves DX at 0x100. */
echo:
    mov     $0x101, %dx
    out     %eax, %dx
    mov     $0x100, %dx
    ret
