/*
 * C baselines for the microvm benchmark suite (compiled with -O2).
 *
 *  - Page-table loops: plain C that writes the same entries as the PageTables engine (same flag bits, same
 *    table order: root first, then each new table as the walk needs it) into a zeroed arena, and a plain
 *    C walk that visits the same leaves as the engine's forEachLeaf.
 *  - A minimal KVM host (khost.c) that boots a flat amd64 guest per docs/layout.md, as microvm does:
 *    used in-process by microvm-bench and as the standalone `chost` executable.
 */
#ifndef CBASELINE_H
#define CBASELINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- page tables ----
 * `arena` is host memory holding zeros whose first byte is guest-physical `arena_pa`; tables are taken from
 * it in order (the root is the first page). Maps [va, va + len) -> [pa, pa + len) read-write, not executable:
 * leaves P|RW|A|D (+NX on amd64) = 0x63 | 1<<63, large leaves additionally PS (0x80), intermediate entries
 * P|RW|A = 0x23. `large`: use 2 MiB (amd64) / 4 MiB (i686) leaves wherever VA, PA and length allow.
 * All arguments are assumed page-aligned and in range (no checks: this is the floor, not a product).
 * Returns the bytes of arena used. */
size_t cb_map_amd64(void *arena, uint64_t arena_pa, uint64_t va, uint64_t pa, uint64_t len, int large);
size_t cb_map_i686(void *arena, uint64_t arena_pa, uint64_t va, uint64_t pa, uint64_t len, int large);

/* Walks the present leaves of [va, va + len) in tables whose root is the first page of `arena` and returns
 * a checksum (sum of the leaf parts' physical address + length), as a trivial translate body would. */
uint64_t cb_walk_amd64(const void *arena, uint64_t arena_pa, uint64_t va, uint64_t len);
uint64_t cb_walk_i686(const void *arena, uint64_t arena_pa, uint64_t va, uint64_t len);

/* ---- minimal KVM host ----
 * One VM = /dev/kvm (opened once per process), KVM_CREATE_VM, anonymous mmap RAM as slot 0, the image at
 * 0x100000, 4-level tables in an arena at the top of RAM (RAM identity-mapped except page 0, 2 MiB leaves
 * where aligned, the image's pages executable), GDT at 0x1000, boot-information block at 0x2000, one vCPU
 * with the supported CPUID (read once per process), long-mode special registers, RSP 0x80000, RDI 0x2000. */
typedef struct cb_vm cb_vm;

enum { CB_CONSOLE_DISCARD = -1 };

/* Builds a VM ready to run. Returns NULL and fills `err` on failure. */
cb_vm *cb_vm_create(const void *image, size_t image_size, uint64_t ram_size, char *err, size_t errlen);
/* The same with a dirty ring of `dirty_ring_bytes` (0: none) enabled before the vCPU, and dirty logging on RAM. */
cb_vm *cb_vm_create_ex(const void *image, size_t image_size, uint64_t ram_size, int dirty_ring_bytes, char *err,
                       size_t errlen);
/* The VM's and vCPU's descriptors, RAM and kvm_run page (for reset.c). */
int cb_vm_fd(const cb_vm *vm);
int cb_vcpu_fd(const cb_vm *vm);
void *cb_vm_ram(const cb_vm *vm);
void *cb_vm_run_page(const cb_vm *vm);

/* ---- reset to a snapshot, at the KVM floor (reset.c) ----
 * A VM built as cb_vm_create builds it, with a 1 MiB dirty ring, whose RAM is then copied into a sealed memfd
 * (the snapshot) and replaced by a private mapping of it; registers, special registers and events are read
 * once. A cycle resets and runs: harvest the ring, copy each page it names back from the snapshot's read-only
 * view, KVM_RESET_DIRTY_RINGS, stage the registers in kvm_run (sync_regs), KVM_RUN to HLT. With `timer`, each
 * run is bracketed by arming and disarming a per-VM POSIX timer, as a host that enforces timeouts must. */
typedef struct cb_reset cb_reset;
cb_reset *cb_reset_create(const void *image, size_t image_size, uint64_t ram_size, int timer, char *err, size_t errlen);
/* One reset + run to HLT; returns 0, or -1 / 256 + exit reason. `dirtied` (may be NULL) gets the pages restored. */
int cb_reset_cycle(cb_reset *reset, uint64_t *dirtied);
void cb_reset_destroy(cb_reset *reset);
/* Runs to HLT (status 0), the exit port (its low 8 bits) or another exit (256 + the KVM exit reason; 256 alone
 * after the 10 s timeout, which is armed as microvm arms it: a POSIX timer sending SIGUSR1 to this thread).
 * Console bytes go to `console_fd` (written once at the end), or nowhere with CB_CONSOLE_DISCARD.
 * `exits` (may be NULL) receives the number of exits. Returns -1 with `err` filled on an ioctl failure. */
int cb_vm_run(cb_vm *vm, int console_fd, uint64_t *exits, char *err, size_t errlen);
/* Closes the vCPU and VM, unmaps RAM and the run page. */
void cb_vm_destroy(cb_vm *vm);

/* create -> run (console discarded) -> destroy; returns the status or -1. */
int cb_boot(const void *image, size_t image_size, uint64_t ram_size, char *err, size_t errlen);

/* ---- calls into a guest, at the KVM floor (calls.c) ----
 * Guests/calls64.bin booted with cb_vm_create and run to its ready hypercall; then each call writes the call
 * area, runs the guest until it writes port 0x511 and reads the result (`shout` also serves hypercall 7). */
typedef struct cb_calls cb_calls;
cb_calls *cb_calls_create(const void *image, size_t image_size, char *err, size_t errlen);
int64_t cb_calls_add(cb_calls *calls, int64_t a, int64_t b);                    /* INT64_MIN on failure */
int cb_calls_nothing(cb_calls *calls);                                         /* 0, or -1 */
int64_t cb_calls_shout(cb_calls *calls, const char *text, size_t length);       /* 42, or INT64_MIN */
void cb_calls_destroy(cb_calls *calls);

/* The clock the harness uses (CLOCK_MONOTONIC), in nanoseconds. */
uint64_t cb_now_ns(void);

/* Resident set size of this process in bytes (from /proc/self/statm). */
uint64_t cb_resident_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
