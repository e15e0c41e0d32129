/*
 * support.c: the C library functions an Embedded Swift guest links against, freestanding (no libc here).
 *
 *  - posix_memalign / free: the Swift runtime allocates objects through these. A bump allocator over the
 *    RAM after the image (1 MiB from the next page, never into the copy-on-write scratch below the arena),
 *    set up by the first allocation, so a guest that allocates nothing pays nothing; free never gives memory
 *    back. Guests are short-lived: they print, report and halt.
 *  - memset / memcpy / memmove: the compiler emits calls to them for large copies and zeroing. Each is one
 *    `rep stosb` / `rep movsb`: a single instruction for the emulating KVM to run, where a byte loop would be
 *    five per byte. memmove copies backwards (DF=1) when the destination overlaps above the source.
 *  - putchar: what Embedded Swift's `print` writes through; it goes to the console port 0x3F8.
 *  - i686 only, the compiler-rt builtins LLVM calls for 64-bit integers on a 32-bit CPU (no libgcc or
 *    compiler-rt is linked): __udivdi3 / __umoddi3 (UInt64 `/` and `%`), __lshrdi3 / __ashldi3 (64-bit shifts
 *    by a variable count, which -Osize turns into calls). Written on 32-bit halves only, so they never call
 *    themselves; a division by a divisor below 2^32 takes two `divl`.
 *
 * Built with -ffreestanding (so clang never turns these bodies into calls to themselves) and the same
 * no-SSE, no-red-zone flags as the Swift code (Guests/swift/README.md).
 */
#include <stddef.h>
#include <stdint.h>

#include "GuestSupport.h"

uintptr_t microvm_boot_info;

/* The heap: [heap_next, heap_end), set up by the first allocation unless microvm_heap_init came first. */
static uintptr_t heap_start;
static uintptr_t heap_next;
static uintptr_t heap_end;

void microvm_heap_init(uintptr_t start, uintptr_t end) {
    heap_start = start;
    heap_next = start;
    heap_end = end;
}

/* The default heap: from the page after the image, MICROVM_HEAP_SIZE bytes, but never into the copy-on-write
 * scratch frames below the page-table arena (arena base from the boot-information block, offset 24). */
static void heap_default(void) {
    uintptr_t start = ((uintptr_t)__microvm_image_end + 0xFFF) & ~(uintptr_t)0xFFF;
    uint64_t limit = *(const volatile uint64_t *)(microvm_boot_info + 24) - MICROVM_SCRATCH_SIZE;
    uint64_t end = (uint64_t)start + MICROVM_HEAP_SIZE;
    if (end > limit) end = limit > start ? limit : start;
    microvm_heap_init(start, (uintptr_t)end);
}

uintptr_t microvm_heap_used(void) { return heap_next - heap_start; }

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (heap_end == 0) heap_default();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return 22; /* EINVAL */
    uintptr_t start = (heap_next + alignment - 1) & ~(uintptr_t)(alignment - 1);
    if (start < heap_next || start > heap_end || heap_end - start < size) return 12; /* ENOMEM */
    heap_next = start + size;
    *result = (void *)start;
    return 0;
}

void free(void *pointer) { (void)pointer; }

void *memset(void *destination, int value, size_t count) {
    void *cursor = destination;
    __asm__ volatile("rep stosb" : "+D"(cursor), "+c"(count) : "a"(value) : "memory");
    return destination;
}

void *memcpy(void *destination, const void *source, size_t count) {
    void *to = destination;
    __asm__ volatile("rep movsb" : "+D"(to), "+S"(source), "+c"(count) : : "memory");
    return destination;
}

void *memmove(void *destination, const void *source, size_t count) {
    if ((uintptr_t)destination <= (uintptr_t)source || (uintptr_t)destination >= (uintptr_t)source + count)
        return memcpy(destination, source, count);
    /* Overlapping with the destination above: copy from the last byte down, then restore DF=0. */
    void *to = (char *)destination + count - 1;
    const void *from = (const char *)source + count - 1;
    __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(to), "+S"(from), "+c"(count) : : "memory");
    return destination;
}

int putchar(int character) {
    guest_outb(0x3F8, (uint8_t)character);
    return (uint8_t)character;
}

#if defined(__i386__)
/* A u64 as its two 32-bit halves (little-endian). */
typedef union {
    uint64_t all;
    struct {
        uint32_t low, high;
    } half;
} u64_halves;

uint64_t __lshrdi3(uint64_t value, int count) {
    u64_halves in = {.all = value}, out;
    count &= 63;
    if (count == 0) return value;
    if (count >= 32) {
        out.half.low = in.half.high >> (count - 32);
        out.half.high = 0;
    } else {
        out.half.low = (in.half.low >> count) | (in.half.high << (32 - count));
        out.half.high = in.half.high >> count;
    }
    return out.all;
}

uint64_t __ashldi3(uint64_t value, int count) {
    u64_halves in = {.all = value}, out;
    count &= 63;
    if (count == 0) return value;
    if (count >= 32) {
        out.half.high = in.half.low << (count - 32);
        out.half.low = 0;
    } else {
        out.half.high = (in.half.high << count) | (in.half.low >> (32 - count));
        out.half.low = in.half.low << count;
    }
    return out.all;
}

/* `divl`: (high:low) / divisor, which must not overflow 32 bits (high < divisor). */
static inline uint32_t divide_32(uint32_t high, uint32_t low, uint32_t divisor, uint32_t *remainder) {
    uint32_t quotient;
    __asm__("divl %4" : "=a"(quotient), "=d"(*remainder) : "a"(low), "d"(high), "rm"(divisor));
    return quotient;
}

/* Unsigned 64-bit division with remainder. A divisor below 2^32 takes two `divl` (long division by 32-bit
 * digits); a larger one makes a quotient below 2^32, found bit by bit with shifts by one and subtractions. */
static uint64_t divide_64(uint64_t dividend, uint64_t divisor, uint64_t *remainder) {
    u64_halves n = {.all = dividend}, d = {.all = divisor}, q;
    if (d.half.high == 0) {
        if (d.half.low == 0) __builtin_trap(); /* ud2: the runtime reports #UD */
        uint32_t rest;
        q.half.high = divide_32(0, n.half.high, d.half.low, &rest);
        q.half.low = divide_32(rest, n.half.low, d.half.low, &rest);
        *remainder = rest;
        return q.all;
    }
    uint64_t rest = 0;
    uint64_t quotient = 0;
    for (int bit = 0; bit < 64; bit++) {
        rest = (rest << 1) | (dividend >> 63); /* shifts by constants: inline, no libcall */
        dividend <<= 1;
        quotient <<= 1;
        if (rest >= divisor) {
            rest -= divisor;
            quotient |= 1;
        }
    }
    *remainder = rest;
    return quotient;
}

uint64_t __udivdi3(uint64_t dividend, uint64_t divisor) {
    uint64_t remainder;
    return divide_64(dividend, divisor, &remainder);
}

uint64_t __umoddi3(uint64_t dividend, uint64_t divisor) {
    uint64_t remainder;
    divide_64(dividend, divisor, &remainder);
    return remainder;
}
#endif
