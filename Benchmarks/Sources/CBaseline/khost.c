/*
 * A minimal C KVM host: the floor the Swift `Machine` is compared with. It performs the same kernel steps
 * microvm performs for an amd64 guest (docs/layout.md) and nothing more:
 *
 *   once per process: open /dev/kvm, KVM_GET_VCPU_MMAP_SIZE, KVM_GET_SUPPORTED_CPUID
 *   per VM:           KVM_CREATE_VM, mmap RAM, KVM_SET_USER_MEMORY_REGION, copy the image, write the tables,
 *                     GDT and boot-information block, KVM_CREATE_VCPU, mmap kvm_run, KVM_SET_CPUID2,
 *                     KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_REGS;
 *   per run:          a 10 s timeout as microvm arms it (a POSIX timer signalling this thread, SIGUSR1 with
 *                     a no-op handler), KVM_RUN until HLT / exit port, the timer deleted;
 *   teardown:         munmap + close everything.
 *
 * Derived from the throwaway /tmp/ckvm-run/ckvm-run.c that first checked the guests.
 */
#define _GNU_SOURCE
#include "cbaseline.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The guest contract (docs/layout.md), as MicroVM.Layout has it: the baseline is plain C and keeps its own copy. */
#define PAGE 4096ull
#define GDT_ADDR 0x1000ull
#define BOOTINFO_ADDR 0x2000ull
#define STACK_TOP 0x80000ull
#define LOAD_ADDR 0x100000ull

#define E_P 0x1ull
#define E_RW 0x2ull
#define E_A 0x20ull
#define E_D 0x40ull
#define E_PS 0x80ull
#define E_NX (1ull << 63)
#define INTERMEDIATE (E_P | E_RW | E_A)
#define LEAF (E_P | E_A | E_D)

struct cb_vm {
    int vm, vcpu;
    unsigned char *ram;
    uint64_t ram_size;
    struct kvm_run *run;
    unsigned char *console;
    size_t console_len, console_cap;
};

/* ---- process-wide state, set up once ---- */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int kvm_fd = -1, run_size = -1, init_errno;
static const char *init_failed;
static struct kvm_cpuid2 *supported_cpuid;

static void on_kick(int sig) { (void)sig; }

static void process_init(void) {
    struct sigaction action = {0};
    action.sa_handler = on_kick; /* no SA_RESTART: a kick makes KVM_RUN fail with EINTR */
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR1, &action, NULL);
    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) { init_failed = "open /dev/kvm"; init_errno = errno; return; }
    if (ioctl(kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) { init_failed = "KVM_GET_API_VERSION"; return; }
    run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < 0) { init_failed = "KVM_GET_VCPU_MMAP_SIZE"; init_errno = errno; return; }
    for (int n = 128;; n *= 2) {
        supported_cpuid = calloc(1, sizeof(*supported_cpuid) + n * sizeof(struct kvm_cpuid_entry2));
        supported_cpuid->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, supported_cpuid) == 0) break;
        int e = errno;
        free(supported_cpuid);
        supported_cpuid = NULL;
        if (e != E2BIG || n > 4096) { init_failed = "KVM_GET_SUPPORTED_CPUID"; init_errno = e; return; }
    }
}

static void fail(char *err, size_t errlen, const char *what, int code) {
    if (err && errlen) snprintf(err, errlen, "%s: %s", what, code ? strerror(code) : "failed");
}

/* Identity-maps [PAGE, ram) with 2 MiB leaves where aligned (4 KiB leaves in the first 2 MiB, page 0 left
 * out), everything read-write and NX except the image's pages, into an arena at the top of RAM: the same
 * address space microvm builds. Returns CR3. */
static uint64_t build_tables(unsigned char *ram, uint64_t ram_size, uint64_t image_size, uint64_t arena_base) {
    uint64_t next = arena_base;
#define ALLOC() (next += PAGE, next - PAGE)
#define T(pa) ((uint64_t *)(ram + (pa)))
    uint64_t pml4 = ALLOC(), pdpt = ALLOC(), pd = ALLOC(), pt = ALLOC();
    T(pml4)[0] = pdpt | INTERMEDIATE;
    uint64_t img_lo = LOAD_ADDR, img_hi = (LOAD_ADDR + image_size + PAGE - 1) & ~(PAGE - 1);
    for (uint64_t gib = 0; gib < ram_size; gib += 1ull << 30) {
        uint64_t dir = gib == 0 ? pd : ALLOC();
        T(pdpt)[gib >> 30] = dir | INTERMEDIATE;
        for (uint64_t a = gib == 0 ? 1ull << 21 : gib; a < ram_size && a < gib + (1ull << 30); a += 1ull << 21)
            T(dir)[(a >> 21) & 511] = a | LEAF | E_RW | E_NX | E_PS;
    }
    T(pd)[0] = pt | INTERMEDIATE;
    for (uint64_t a = PAGE; a < (1ull << 21) && a < ram_size; a += PAGE)
        T(pt)[a >> 12] = a | LEAF | E_RW | ((a >= img_lo && a < img_hi) ? 0 : E_NX);
#undef ALLOC
#undef T
    return pml4;
}

cb_vm *cb_vm_create(const void *image, size_t image_size, uint64_t ram_size, char *err, size_t errlen) {
    return cb_vm_create_ex(image, image_size, ram_size, 0, err, errlen);
}

int cb_vm_fd(const cb_vm *vm) { return vm->vm; }
int cb_vcpu_fd(const cb_vm *vm) { return vm->vcpu; }
void *cb_vm_ram(const cb_vm *vm) { return vm->ram; }
void *cb_vm_run_page(const cb_vm *vm) { return vm->run; }

cb_vm *cb_vm_create_ex(const void *image, size_t image_size, uint64_t ram_size, int dirty_ring_bytes, char *err,
                       size_t errlen) {
    pthread_once(&once, process_init);
    if (init_failed) { fail(err, errlen, init_failed, init_errno); return NULL; }
    const uint64_t arena_size = 16 * PAGE;
    if (ram_size < (4ull << 20) || ram_size % (2ull << 20) || LOAD_ADDR + image_size > ram_size - arena_size) {
        fail(err, errlen, "bad RAM or image size", EINVAL);
        return NULL;
    }
    cb_vm *vm = calloc(1, sizeof *vm);
    vm->vm = vm->vcpu = -1;
    vm->ram_size = ram_size;

    vm->vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm < 0) { fail(err, errlen, "KVM_CREATE_VM", errno); goto fail; }
    if (dirty_ring_bytes) {
        struct kvm_enable_cap cap = {.cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL, .args = {(uint64_t)dirty_ring_bytes}};
        if (ioctl(vm->vm, KVM_ENABLE_CAP, &cap) < 0) {
            cap.cap = KVM_CAP_DIRTY_LOG_RING;
            if (ioctl(vm->vm, KVM_ENABLE_CAP, &cap) < 0) { fail(err, errlen, "KVM_ENABLE_CAP(dirty ring)", errno); goto fail; }
        }
    }
    vm->ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (vm->ram == MAP_FAILED) { vm->ram = NULL; fail(err, errlen, "mmap RAM", errno); goto fail; }
    struct kvm_userspace_memory_region region = {
        .slot = 0, .flags = dirty_ring_bytes ? KVM_MEM_LOG_DIRTY_PAGES : 0, .guest_phys_addr = 0,
        .memory_size = ram_size, .userspace_addr = (uint64_t)(uintptr_t)vm->ram,
    };
    if (ioctl(vm->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) { fail(err, errlen, "KVM_SET_USER_MEMORY_REGION", errno); goto fail; }

    memcpy(vm->ram + LOAD_ADDR, image, image_size);
    const uint64_t arena_base = ram_size - arena_size;
    const uint64_t cr3 = build_tables(vm->ram, ram_size, image_size, arena_base);

    uint64_t *gdt = (uint64_t *)(vm->ram + GDT_ADDR);
    gdt[0] = 0;
    gdt[1] = 0x00AF9B000000FFFFull; /* 0x08: 64-bit code, accessed */
    gdt[2] = 0x00CF93000000FFFFull; /* 0x10: flat data, accessed */

    unsigned char *bi = vm->ram + BOOTINFO_ADDR;
#define PUT32(off, v) do { uint32_t _v = (v); memcpy(bi + (off), &_v, 4); } while (0)
#define PUT64(off, v) do { uint64_t _v = (v); memcpy(bi + (off), &_v, 8); } while (0)
    const uint64_t img_hi = (LOAD_ADDR + image_size + PAGE - 1) & ~(PAGE - 1);
    PUT32(0, 0x424D564D);
    PUT32(4, 1);
    PUT64(8, ram_size);
    PUT64(16, cr3);
    PUT64(24, arena_base);
    PUT64(32, arena_size);
    PUT64(40, LOAD_ADDR);
    PUT64(48, image_size);
    PUT32(56, 0);
    PUT32(60, 2);
    PUT64(64, PAGE); PUT64(72, PAGE); PUT64(80, ram_size - PAGE); PUT32(88, 1);
    PUT64(96, LOAD_ADDR); PUT64(104, LOAD_ADDR); PUT64(112, img_hi - LOAD_ADDR); PUT32(120, 3);
#undef PUT32
#undef PUT64

    vm->vcpu = ioctl(vm->vm, KVM_CREATE_VCPU, 0);
    if (vm->vcpu < 0) { fail(err, errlen, "KVM_CREATE_VCPU", errno); goto fail; }
    vm->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
    if (vm->run == MAP_FAILED) { vm->run = NULL; fail(err, errlen, "mmap kvm_run", errno); goto fail; }
    if (ioctl(vm->vcpu, KVM_SET_CPUID2, supported_cpuid) < 0) { fail(err, errlen, "KVM_SET_CPUID2", errno); goto fail; }

    struct kvm_sregs sregs;
    if (ioctl(vm->vcpu, KVM_GET_SREGS, &sregs) < 0) { fail(err, errlen, "KVM_GET_SREGS", errno); goto fail; }
    struct kvm_segment code = {.base = 0, .limit = 0xFFFFFFFF, .selector = 0x08, .type = 0xB, .present = 1, .s = 1, .l = 1, .g = 1};
    struct kvm_segment data = {.base = 0, .limit = 0xFFFFFFFF, .selector = 0x10, .type = 0x3, .present = 1, .s = 1, .db = 1, .g = 1};
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.ss = sregs.fs = sregs.gs = data;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = 3 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = (1u << 0) | (1u << 1) | (1u << 5) | (1u << 16) | (1u << 31); /* PE MP NE WP PG */
    sregs.cr4 = (1u << 5) | (1u << 9) | (1u << 10);                         /* PAE OSFXSR OSXMMEXCPT */
    sregs.efer = (1u << 8) | (1u << 10) | (1u << 11);                        /* LME LMA NXE */
    sregs.cr3 = cr3;
    if (ioctl(vm->vcpu, KVM_SET_SREGS, &sregs) < 0) { fail(err, errlen, "KVM_SET_SREGS", errno); goto fail; }
    struct kvm_regs regs = {0};
    regs.rip = LOAD_ADDR;
    regs.rsp = STACK_TOP;
    regs.rdi = BOOTINFO_ADDR;
    regs.rflags = 0x2;
    if (ioctl(vm->vcpu, KVM_SET_REGS, &regs) < 0) { fail(err, errlen, "KVM_SET_REGS", errno); goto fail; }
    return vm;
fail:
    cb_vm_destroy(vm);
    return NULL;
}

static void console_put(cb_vm *vm, unsigned char byte) {
    if (vm->console_len == vm->console_cap) {
        vm->console_cap = vm->console_cap ? vm->console_cap * 2 : 256;
        vm->console = realloc(vm->console, vm->console_cap);
    }
    vm->console[vm->console_len++] = byte;
}

int cb_vm_run(cb_vm *vm, int console_fd, uint64_t *exits, char *err, size_t errlen) {
    uint64_t count = 0;
    int status = -1;
    /* The timeout, armed the way microvm arms it (KVMKit VCPUAlarm): 10 s, then every 10 ms. */
    struct sigevent event = {0};
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGUSR1;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    int armed = timer_create(CLOCK_MONOTONIC, &event, &timer) == 0;
    if (armed) {
        struct itimerspec spec = {.it_interval = {0, 10000000}, .it_value = {10, 0}};
        timer_settime(timer, 0, &spec, NULL);
    }
    while (status < 0) {
        if (ioctl(vm->vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR) { status = 256; break; } /* timed out */
            if (errno == EAGAIN) continue;
            if (armed) timer_delete(timer);
            fail(err, errlen, "KVM_RUN", errno);
            return -1;
        }
        count++;
        struct kvm_run *k = vm->run;
        switch (k->exit_reason) {
        case KVM_EXIT_IO: {
            unsigned char *data = (unsigned char *)k + k->io.data_offset;
            if (k->io.direction == KVM_EXIT_IO_OUT && k->io.port == 0x3F8 && k->io.size == 1) {
                if (console_fd != CB_CONSOLE_DISCARD)
                    for (uint32_t i = 0; i < k->io.count; i++) console_put(vm, data[i]);
            } else if (k->io.direction == KVM_EXIT_IO_OUT && k->io.port == 0xF4) {
                status = data[0];
            } else {
                status = 256 + KVM_EXIT_IO;
            }
            break;
        }
        case KVM_EXIT_HLT: status = 0; break;
        default: status = 256 + (int)k->exit_reason; break;
        }
    }
    if (armed) timer_delete(timer);
    if (console_fd >= 0 && vm->console_len) {
        size_t off = 0;
        while (off < vm->console_len) {
            ssize_t w = write(console_fd, vm->console + off, vm->console_len - off);
            if (w < 0) { if (errno == EINTR) continue; break; }
            off += (size_t)w;
        }
        vm->console_len = 0;
    }
    if (exits) *exits = count;
    return status;
}

void cb_vm_destroy(cb_vm *vm) {
    if (!vm) return;
    if (vm->run) munmap(vm->run, run_size);
    if (vm->vcpu >= 0) close(vm->vcpu);
    if (vm->vm >= 0) close(vm->vm);
    if (vm->ram) munmap(vm->ram, vm->ram_size);
    free(vm->console);
    free(vm);
}

int cb_boot(const void *image, size_t image_size, uint64_t ram_size, char *err, size_t errlen) {
    cb_vm *vm = cb_vm_create(image, image_size, ram_size, err, errlen);
    if (!vm) return -1;
    int status = cb_vm_run(vm, CB_CONSOLE_DISCARD, NULL, err, errlen);
    cb_vm_destroy(vm);
    return status;
}
