// CKVM: the C side of KVMKit, and nothing else.
//
// Why this shim exists:
// - Every KVM request code in <linux/kvm.h> is a function-like macro (`_IO`, `_IOR`, `_IOW`, `_IOWR`
//   applied to a type), and Swift's Clang importer imports only simple object-like macros. Each code the
//   Swift side uses is therefore re-exported below as a `static const unsigned long`, which imports as a
//   plain `UInt` whose value the compiler computed from the kernel's own header (no hand-copied numbers).
// - A few flags (`KVM_MEM_READONLY = (1UL << 1)`) are expressions with a type suffix that the importer
//   also skips; they are re-exported the same way.
// - `ioctl(2)` is variadic in C, and Swift cannot call C variadic functions. Glibc's Swift overlay has a
//   few non-variadic wrappers, but one explicit pointer form and one explicit integer form here keep the
//   call sites in KVMKit uniform and independent of what a given overlay version provides.
// - Flexible array members (`kvm_cpuid2.entries`) are not imported at all; `ckvm_cpuid2_entries` hands
//   Swift a typed pointer to the first element, so the offset comes from the compiler, not a guess.
// - `kvm_run.immediate_exit` is written by a kicking thread while the vCPU thread may be inside KVM_RUN
//   or about to enter it. A plain Swift store to that byte would be a data race; the kernel reads it with
//   READ_ONCE, so an atomic store from C is the sound way to publish it across threads.
// - The dirty ring (`struct kvm_dirty_gfn` entries shared with the kernel) is a producer/consumer queue:
//   the kernel publishes an entry by storing its `flags` with release semantics after writing `slot` and
//   `offset`, and collects harvested entries by reading `flags` with acquire semantics. Swift has no
//   atomic access to a field of an imported C struct in shared memory, so the two sides of that protocol
//   (load-acquire of `flags`, store-release of the reset mark) are C helpers.
// - `kvm_run.s.regs` sits inside a union Swift imports as a computed property (reading it copies the whole
//   2 KiB union); `ckvm_sync_regs` hands Swift a pointer to it instead, at the compiler's offset.
// - VCPUAlarm's `SIGEV_THREAD_ID` timer needs the kernel thread id (`gettid` is declared only under
//   _GNU_SOURCE) and `sigev_notify_thread_id`, a macro over an anonymous union member.
//
// A system-library target may hold only a module map and headers, so every helper is `static inline`.

#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

// MARK: - System (/dev/kvm) requests

static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;

// MARK: - VM requests

static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_ENABLE_CAP = KVM_ENABLE_CAP;  // also a vCPU request
static const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
static const unsigned long CKVM_CLEAR_DIRTY_LOG = KVM_CLEAR_DIRTY_LOG;
static const unsigned long CKVM_RESET_DIRTY_RINGS = KVM_RESET_DIRTY_RINGS;

// MARK: - vCPU requests

static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_TRANSLATE = KVM_TRANSLATE;
static const unsigned long CKVM_SET_SIGNAL_MASK = KVM_SET_SIGNAL_MASK;
static const unsigned long CKVM_GET_XSAVE = KVM_GET_XSAVE;
static const unsigned long CKVM_GET_XSAVE2 = KVM_GET_XSAVE2;
static const unsigned long CKVM_SET_XSAVE = KVM_SET_XSAVE;
static const unsigned long CKVM_GET_XCRS = KVM_GET_XCRS;
static const unsigned long CKVM_SET_XCRS = KVM_SET_XCRS;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
static const unsigned long CKVM_SET_GUEST_DEBUG = KVM_SET_GUEST_DEBUG;

// MARK: - Flags the importer skips

/// `kvm_userspace_memory_region.flags`: the guest may read but not write the slot (writes exit as MMIO).
static const unsigned int CKVM_MEM_READONLY = KVM_MEM_READONLY;
/// `kvm_userspace_memory_region.flags`: KVM logs the guest's writes to the slot (dirty bitmap or ring).
static const unsigned int CKVM_MEM_LOG_DIRTY_PAGES = KVM_MEM_LOG_DIRTY_PAGES;
/// `kvm_dirty_gfn.flags`: the entry holds a page the guest dirtied, not yet harvested.
static const unsigned int CKVM_DIRTY_GFN_F_DIRTY = KVM_DIRTY_GFN_F_DIRTY;
/// `kvm_dirty_gfn.flags`: userspace harvested the entry; KVM_RESET_DIRTY_RINGS may recycle it.
static const unsigned int CKVM_DIRTY_GFN_F_RESET = KVM_DIRTY_GFN_F_RESET;
/// The page offset of the dirty ring in a vCPU descriptor's mapping (64 on x86).
static const unsigned long CKVM_DIRTY_LOG_PAGE_OFFSET = KVM_DIRTY_LOG_PAGE_OFFSET;
/// `kvm_run.kvm_valid_regs` / `kvm_dirty_regs` bits.
static const unsigned long long CKVM_SYNC_X86_REGS = KVM_SYNC_X86_REGS;
static const unsigned long long CKVM_SYNC_X86_SREGS = KVM_SYNC_X86_SREGS;
static const unsigned long long CKVM_SYNC_X86_EVENTS = KVM_SYNC_X86_EVENTS;
/// `kvm_guest_debug.control` bits.
static const unsigned int CKVM_GUESTDBG_ENABLE = KVM_GUESTDBG_ENABLE;
static const unsigned int CKVM_GUESTDBG_SINGLESTEP = KVM_GUESTDBG_SINGLESTEP;
static const unsigned int CKVM_GUESTDBG_USE_SW_BP = KVM_GUESTDBG_USE_SW_BP;
static const unsigned int CKVM_GUESTDBG_USE_HW_BP = KVM_GUESTDBG_USE_HW_BP;
/// `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`: the first argument of KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 that
/// makes KVM_GET_DIRTY_LOG stop re-protecting pages (KVM_CLEAR_DIRTY_LOG does it instead).
static const unsigned long long CKVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;

// MARK: - Helpers

/// `ioctl(fd, req, arg)` with a pointer argument, callable from Swift (the C function is variadic).
static inline int ckvm_ioctl(int fd, unsigned long req, void *arg) {
    return ioctl(fd, req, arg);
}

/// `ioctl(fd, req, arg)` with an integer argument (KVM_CREATE_VM type, KVM_CREATE_VCPU id,
/// KVM_CHECK_EXTENSION capability, or 0 for requests that take none).
static inline int ckvm_ioctl_int(int fd, unsigned long req, unsigned long arg) {
    return ioctl(fd, req, arg);
}

/// The first element of `cpuid->entries` (a flexible array member Swift cannot see). The caller allocated
/// room for `cpuid->nent` elements after the header.
static inline struct kvm_cpuid_entry2 *ckvm_cpuid2_entries(struct kvm_cpuid2 *cpuid) {
    return cpuid->entries;
}

/// `&run->s.regs`: the registers KVM copies out after KVM_RUN (`kvm_valid_regs`) and loads before it
/// (`kvm_dirty_regs`).
static inline struct kvm_sync_regs *ckvm_sync_regs(struct kvm_run *run) {
    return &run->s.regs;
}

/// Loads a dirty-ring entry's `flags` with acquire semantics: if it says dirty, the `slot` and `offset`
/// the kernel wrote before publishing are visible afterwards.
static inline __u32 ckvm_dirty_gfn_load_flags(const struct kvm_dirty_gfn *gfn) {
    return __atomic_load_n(&gfn->flags, __ATOMIC_ACQUIRE);
}

/// Marks a harvested dirty-ring entry for reset with release semantics: the reads of `slot` and `offset`
/// happen before the kernel can see the entry as free and overwrite it.
static inline void ckvm_dirty_gfn_mark_reset(struct kvm_dirty_gfn *gfn) {
    __atomic_store_n(&gfn->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
}

/// Atomically stores `kvm_run.immediate_exit`: safe to call from a thread other than the vCPU's.
static inline void ckvm_store_immediate_exit(struct kvm_run *run, unsigned char value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}

/// Atomically loads `kvm_run.immediate_exit`.
static inline unsigned char ckvm_load_immediate_exit(const struct kvm_run *run) {
    return __atomic_load_n(&run->immediate_exit, __ATOMIC_SEQ_CST);
}

/// The first real-time signal the C library leaves to applications (`SIGRTMIN` is a macro over a call).
static inline int ckvm_sigrtmin(void) {
    return SIGRTMIN;
}

/// The calling thread's kernel thread id (`gettid`), which `SIGEV_THREAD_ID` timers need; glibc only
/// declares `gettid` under _GNU_SOURCE, which Swift's Glibc module does not set.
static inline int ckvm_gettid(void) {
    return (int)syscall(SYS_gettid);
}

/// Points a `sigevent` at one thread (`sigev_notify_thread_id` is a macro over a union member).
static inline void ckvm_sigevent_set_thread(struct sigevent *event, int tid) {
    event->_sigev_un._tid = tid;
}

#endif // CKVM_H
