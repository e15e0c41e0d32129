/*
 * The page-table baseline: the plainest C that writes the same entries as the PageTables engine.
 *
 * Same bits as Sources/PageTables (EntryBits.swift, PageTable.swift): a read-write, non-executable leaf is
 * P|RW|A|D (0x63) plus NX (bit 63) on amd64; a large leaf adds PS (0x80); an entry referencing a table is
 * P|RW|A (0x23). Tables come from the arena in the order the engine takes them (root first, then each
 * table when the walk first needs it), so both produce byte-identical arenas.
 */
#include "cbaseline.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define E_P 0x1ull
#define E_RW 0x2ull
#define E_A 0x20ull
#define E_D 0x40ull
#define E_PS 0x80ull
#define E_NX (1ull << 63)
#define INTERMEDIATE (E_P | E_RW | E_A)
#define LEAF64 (E_P | E_RW | E_A | E_D | E_NX)
#define LEAF32 (E_P | E_RW | E_A | E_D)
#define ADDR64 0x000FFFFFFFFFF000ull
#define ADDR32 0xFFFFF000u
#define ADDR4M 0xFFC00000u
#define ADDR2M 0x000FFFFFFFE00000ull

struct arena {
    unsigned char *base;
    uint64_t pa;
    uint64_t next; /* offset of the next unused table */
};

static inline void *table_at(const struct arena *a, uint64_t table_pa) { return a->base + (table_pa - a->pa); }

/* The table an entry references, allocating (zeroed arena: nothing to clear) and linking it when absent. */
static inline uint64_t child64(struct arena *a, uint64_t *entry) {
    if (!(*entry & E_P)) {
        *entry = (a->pa + a->next) | INTERMEDIATE;
        a->next += 4096;
    }
    return *entry & ADDR64;
}

static inline uint32_t child32(struct arena *a, uint32_t *entry) {
    if (!(*entry & E_P)) {
        *entry = (uint32_t)(a->pa + a->next) | (uint32_t)INTERMEDIATE;
        a->next += 4096;
    }
    return *entry & ADDR32;
}

size_t cb_map_amd64(void *arena, uint64_t arena_pa, uint64_t va, uint64_t pa, uint64_t len, int large) {
    struct arena a = {arena, arena_pa, 4096}; /* the root is the first page */
    const uint64_t root = arena_pa, end = va + len, delta = pa - va;
    uint64_t v = va;
    while (v < end) {
        uint64_t *pml4 = table_at(&a, root);
        uint64_t *pdpt = table_at(&a, child64(&a, &pml4[(v >> 39) & 511]));
        uint64_t *pd = table_at(&a, child64(&a, &pdpt[(v >> 30) & 511]));
        unsigned i2 = (v >> 21) & 511;
        if (large && ((v | (v + delta)) & 0x1FFFFF) == 0 && end - v >= (1ull << 21)) {
            uint64_t n = (end - v) >> 21;
            if (n > 512 - i2) n = 512 - i2;
            uint64_t value = (v + delta) | LEAF64 | E_PS;
            for (uint64_t k = 0; k < n; k++, value += 1ull << 21) pd[i2 + k] = value;
            v += n << 21;
            continue;
        }
        uint64_t *pt = table_at(&a, child64(&a, &pd[i2]));
        unsigned i1 = (v >> 12) & 511;
        uint64_t n = (end - v) >> 12;
        if (n > 512 - i1) n = 512 - i1;
        uint64_t value = (v + delta) | LEAF64;
        for (uint64_t k = 0; k < n; k++, value += 4096) pt[i1 + k] = value;
        v += n << 12;
    }
    return a.next;
}

size_t cb_map_i686(void *arena, uint64_t arena_pa, uint64_t va, uint64_t pa, uint64_t len, int large) {
    struct arena a = {arena, arena_pa, 4096};
    const uint64_t end = va + len, delta = pa - va;
    uint64_t v = va;
    uint32_t *pd = table_at(&a, arena_pa);
    while (v < end) {
        unsigned i1 = (v >> 22) & 1023;
        if (large && ((v | (v + delta)) & 0x3FFFFF) == 0 && end - v >= (1ull << 22)) {
            uint64_t n = (end - v) >> 22;
            if (n > 1024 - i1) n = 1024 - i1;
            uint32_t value = (uint32_t)(v + delta) | (uint32_t)(LEAF32 | E_PS);
            for (uint64_t k = 0; k < n; k++, value += 1u << 22) pd[i1 + k] = value;
            v += n << 22;
            continue;
        }
        uint32_t *pt = table_at(&a, child32(&a, &pd[i1]));
        unsigned i0 = (v >> 12) & 1023;
        uint64_t n = (end - v) >> 12;
        if (n > 1024 - i0) n = 1024 - i0;
        uint32_t value = (uint32_t)(v + delta) | (uint32_t)LEAF32;
        for (uint64_t k = 0; k < n; k++, value += 4096) pt[i0 + k] = value;
        v += n << 12;
    }
    return a.next;
}

static inline uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static inline uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

uint64_t cb_walk_amd64(const void *arena, uint64_t arena_pa, uint64_t va, uint64_t len) {
    const struct arena a = {(unsigned char *)arena, arena_pa, 0};
    const uint64_t first = va, last = va + len - 1;
    uint64_t sum = 0;
    const uint64_t *pml4 = table_at(&a, arena_pa);
    for (unsigned i3 = (first >> 39) & 511; i3 <= ((last >> 39) & 511); i3++) {
        uint64_t e3 = pml4[i3];
        if (!(e3 & E_P)) continue;
        const uint64_t b3 = (uint64_t)i3 << 39, f3 = max64(first, b3), l3 = min64(last, b3 + (1ull << 39) - 1);
        const uint64_t *pdpt = table_at(&a, e3 & ADDR64);
        for (unsigned i2 = (f3 >> 30) & 511; i2 <= ((l3 >> 30) & 511); i2++) {
            uint64_t e2 = pdpt[i2];
            if (!(e2 & E_P)) continue;
            const uint64_t b2 = b3 + ((uint64_t)i2 << 30), f2 = max64(f3, b2), l2 = min64(l3, b2 + (1ull << 30) - 1);
            const uint64_t *pd = table_at(&a, e2 & ADDR64);
            for (unsigned i1 = (f2 >> 21) & 511; i1 <= ((l2 >> 21) & 511); i1++) {
                uint64_t e1 = pd[i1];
                if (!(e1 & E_P)) continue;
                const uint64_t b1 = b2 + ((uint64_t)i1 << 21), f1 = max64(f2, b1), l1 = min64(l2, b1 + (1ull << 21) - 1);
                if (e1 & E_PS) {
                    sum += (e1 & ADDR2M) + (f1 - b1) + (l1 - f1 + 1);
                    continue;
                }
                const uint64_t *pt = table_at(&a, e1 & ADDR64);
                if (f1 == b1 && l1 == b1 + (1ull << 21) - 1) { /* the whole table: every leaf is whole */
                    for (unsigned i0 = 0; i0 < 512; i0++)
                        if (pt[i0] & E_P) sum += (pt[i0] & ADDR64) + 4096;
                    continue;
                }
                for (unsigned i0 = (f1 >> 12) & 511; i0 <= ((l1 >> 12) & 511); i0++) {
                    uint64_t e0 = pt[i0];
                    if (!(e0 & E_P)) continue;
                    const uint64_t b0 = b1 + ((uint64_t)i0 << 12), f0 = max64(f1, b0), l0 = min64(l1, b0 + 4095);
                    sum += (e0 & ADDR64) + (f0 - b0) + (l0 - f0 + 1);
                }
            }
        }
    }
    return sum;
}

uint64_t cb_walk_i686(const void *arena, uint64_t arena_pa, uint64_t va, uint64_t len) {
    const struct arena a = {(unsigned char *)arena, arena_pa, 0};
    const uint64_t first = va, last = va + len - 1;
    uint64_t sum = 0;
    const uint32_t *pd = table_at(&a, arena_pa);
    for (unsigned i1 = (first >> 22) & 1023; i1 <= ((last >> 22) & 1023); i1++) {
        uint32_t e1 = pd[i1];
        if (!(e1 & E_P)) continue;
        const uint64_t b1 = (uint64_t)i1 << 22, f1 = max64(first, b1), l1 = min64(last, b1 + (1ull << 22) - 1);
        if (e1 & E_PS) {
            sum += (e1 & ADDR4M) + (f1 - b1) + (l1 - f1 + 1);
            continue;
        }
        const uint32_t *pt = table_at(&a, e1 & ADDR32);
        if (f1 == b1 && l1 == b1 + (1ull << 22) - 1) { /* the whole table: every leaf is whole */
            for (unsigned i0 = 0; i0 < 1024; i0++)
                if (pt[i0] & E_P) sum += (uint64_t)(pt[i0] & ADDR32) + 4096;
            continue;
        }
        for (unsigned i0 = (f1 >> 12) & 1023; i0 <= ((l1 >> 12) & 1023); i0++) {
            uint32_t e0 = pt[i0];
            if (!(e0 & E_P)) continue;
            const uint64_t b0 = b1 + ((uint64_t)i0 << 12), f0 = max64(f1, b0), l0 = min64(l1, b0 + 4095);
            sum += (e0 & ADDR32) + (f0 - b0) + (l0 - f0 + 1);
        }
    }
    return sum;
}

uint64_t cb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cb_resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (uint64_t)resident * 4096ull : 0;
}
