/*
 * GuestSupport.h: what Swift cannot say itself, for Embedded Swift guests of microvm (amd64 and i686).
 *
 * Why a header: port I/O, control registers, `invlpg`, `lidt` and `hlt` are single instructions with no
 * Swift spelling. As `static inline` functions with inline assembly they are compiled by the Swift
 * compiler's own clang into the Swift code that calls them, so `Console.write` costs one `out` per byte,
 * not a call into an assembly helper (every instruction costs about a microsecond on an emulating KVM).
 * The same source serves both architectures: the constraints ("a", "Nd", "r") pick 32- or 64-bit registers.
 *
 * The functions are named after the instruction (Intel SDM Vol. 2); the layout they serve is docs/layout.md.
 */
#ifndef MICROVM_GUEST_SUPPORT_H
#define MICROVM_GUEST_SUPPORT_H

#include <stdint.h>

#define GUEST_INLINE static inline __attribute__((always_inline))

/* `out %al, %dx`: one byte to an I/O port. */
GUEST_INLINE void guest_outb(uint16_t port, uint8_t value) {
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

/* `out %eax, %dx`: four bytes to an I/O port (the hypercall port takes a 32-bit OUT of a record address). */
GUEST_INLINE void guest_outl(uint16_t port, uint32_t value) {
    __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

/* `in %dx, %al`: one byte from an I/O port. */
GUEST_INLINE uint8_t guest_inb(uint16_t port) {
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

/* `hlt`: on microvm the run ends here with status 0. */
GUEST_INLINE void guest_hlt(void) { __asm__ volatile("hlt" : : : "memory"); }

/* CR2: the linear address of the last page fault. */
GUEST_INLINE uintptr_t guest_read_cr2(void) {
    uintptr_t value;
    __asm__ volatile("mov %%cr2, %0" : "=r"(value));
    return value;
}

/* CR3: the physical address of the root page table (plus PCD/PWT in bits 3-4). */
GUEST_INLINE uintptr_t guest_read_cr3(void) {
    uintptr_t value;
    __asm__ volatile("mov %%cr3, %0" : "=r"(value));
    return value;
}

/* CR4: PSE (bit 4) tells whether an i686 PDE with PS=1 maps 4 MiB. */
GUEST_INLINE uintptr_t guest_read_cr4(void) {
    uintptr_t value;
    __asm__ volatile("mov %%cr4, %0" : "=r"(value));
    return value;
}

/* `invlpg`: drops the TLB entry of the page holding `address` (after the host remapped it). */
GUEST_INLINE void guest_invlpg(uintptr_t address) {
    __asm__ volatile("invlpg (%0)" : : "r"(address) : "memory");
}

/* A 64-bit load and store the compiler must perform exactly as written (memory another mapping changes). */
GUEST_INLINE uint64_t guest_read64(uintptr_t address) { return *(volatile const uint64_t *)address; }
GUEST_INLINE void guest_write64(uintptr_t address, uint64_t value) { *(volatile uint64_t *)address = value; }

/* `lidt`: loads the IDT register from a 6-byte (i686) or 10-byte (amd64) pseudo-descriptor. */
GUEST_INLINE void guest_lidt(const void *_Nonnull descriptor) {
    __asm__ volatile("lidt (%0)" : : "r"(descriptor) : "memory");
}

/*
 * The exception stubs in start64.S / start32.S: 32 entry points, one per vector 0-31, 16 bytes apart.
 * Each pushes the vector (and a zero where the CPU pushes no error code), saves the general registers and
 * calls microvm_exception (Exceptions.swift) with a pointer to the saved frame.
 */
extern char microvm_exception_stubs[];
GUEST_INLINE uintptr_t guest_exception_stubs(void) { return (uintptr_t)microvm_exception_stubs; }

/* The end of the loaded image (code, data and zero-filled globals), from the linker script. */
extern char __microvm_image_end[];
GUEST_INLINE uintptr_t guest_image_end(void) { return (uintptr_t)__microvm_image_end; }

/* The boot-information block's address (RDI / EDI at entry), stored by microvm_start (Runtime.swift); read by
 * Runtime.halt(), the exception handler and the heap. Swift reaches it through these two functions (a mutable C
 * global read directly from Swift 6 code is a concurrency error; a guest has one CPU and no threads). */
extern uintptr_t microvm_boot_info;
GUEST_INLINE uintptr_t guest_boot_info(void) { return microvm_boot_info; }
GUEST_INLINE void guest_set_boot_info(uintptr_t address) { microvm_boot_info = address; }

/* The bump allocator in support.c: posix_memalign hands out [start, end); free does nothing. The first
 * allocation sets up the default heap unless microvm_heap_init was called before. */
#define MICROVM_HEAP_SIZE (1u << 20)
/* Bytes of copy-on-write scratch frames right below the page-table arena (docs/layout.md): not for the heap. */
#define MICROVM_SCRATCH_SIZE (256u << 10)
void microvm_heap_init(uintptr_t start, uintptr_t end);
/* Bytes posix_memalign has handed out so far. */
uintptr_t microvm_heap_used(void);

/*
 * Calls (docs/layout.md, "Calls"; Calls.swift): the structures the host reads or writes, declared here so that
 * their layout is C's, checked below, and not left to Swift's. amd64 only: the table holds 64-bit addresses.
 */
#if defined(__x86_64__)
#pragma clang assume_nonnull begin

/* The call in progress, as an exported function gets it: the call area (one pointer, passed in RDI). */
typedef struct CallFrame {
    void *area;
} CallFrame;

/* One entry of the export table: the name's address and length, the function, a reserved word (0). */
typedef struct Export {
    const uint8_t *name;
    uint64_t nameLength;
    void (*function)(CallFrame);
    uint64_t reserved;
} Export;

/* One argument of a host function (hypercall 7): kind (0 none, 1 integer, 2 bytes, 3 string), reserved,
 * the integer or the bytes' guest address, their length. */
typedef struct HostArgument {
    uint32_t kind;
    uint32_t reserved;
    uint64_t value;
    uint64_t length;
} HostArgument;

_Static_assert(sizeof(CallFrame) == 8, "a call frame is the call area's address");
_Static_assert(sizeof(Export) == 32 && __builtin_offsetof(Export, function) == 16, "export table entry");
_Static_assert(sizeof(HostArgument) == 24 && __builtin_offsetof(HostArgument, value) == 8, "argument descriptor");

#pragma clang assume_nonnull end

/* `out %al, %dx` to the return port 0x511: the function returned; the host reads the call area. AL is whatever
 * it holds: the host takes any byte. The next call continues after the `out`. */
GUEST_INLINE void guest_call_return(void) { __asm__ volatile("outb %%al, %%dx" : : "d"((uint16_t)0x511) : "memory"); }
#endif

#endif
