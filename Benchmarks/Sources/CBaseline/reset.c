/*
 * Reset to a snapshot at the KVM floor: the C reference microvm's Machine.reset() is compared with. The
 * technique is the product's, written as directly as C allows (design brief §5, "reset with the dirty ring"):
 *
 *   once:      a VM from cb_vm_create_ex with a 1 MiB dirty ring; its RAM copied into a sealed memfd, and
 *              replaced in place (MAP_FIXED) by a private mapping of it, so the guest starts from the snapshot;
 *              a read-only view of the memfd to copy pages back from; the ring mapped from the vCPU fd;
 *              registers, special registers and events read once; kvm_run syncs all three.
 *   per cycle: walk the ring from the fetch index (acquire loads), each dirty entry's page noted once in a
 *              bitmap and a list, the entry marked reset (release store); KVM_RESET_DIRTY_RINGS if any;
 *              memcpy each noted page back; stage regs, sregs and events in kvm_run.s.regs with
 *              kvm_dirty_regs; KVM_RUN until HLT.
 */
#define _GNU_SOURCE
#include "cbaseline.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RING_BYTES (1 << 20)

struct cb_reset {
    cb_vm *vm;
    int vm_fd, vcpu_fd, memfd;
    unsigned char *ram;
    const unsigned char *snapshot;
    uint64_t ram_size;
    struct kvm_run *run;
    struct kvm_dirty_gfn *ring;
    uint32_t ring_count, fetch;
    uint64_t *bitmap;
    uint32_t *pages;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_vcpu_events events;
    int has_timer;
    timer_t timer;
};

static void failed(char *err, size_t errlen, const char *what) {
    if (err && errlen) snprintf(err, errlen, "%s: %s", what, strerror(errno));
}

cb_reset *cb_reset_create(const void *image, size_t image_size, uint64_t ram_size, int timer, char *err, size_t errlen) {
    cb_reset *r = calloc(1, sizeof *r);
    r->memfd = -1;
    r->vm = cb_vm_create_ex(image, image_size, ram_size, RING_BYTES, err, errlen);
    if (!r->vm) { free(r); return NULL; }
    r->vm_fd = cb_vm_fd(r->vm);
    r->vcpu_fd = cb_vcpu_fd(r->vm);
    r->ram = cb_vm_ram(r->vm);
    r->run = cb_vm_run_page(r->vm);
    r->ram_size = ram_size;

    r->memfd = (int)syscall(SYS_memfd_create, "cb-snapshot", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (r->memfd < 0 || ftruncate(r->memfd, (off_t)ram_size) < 0) { failed(err, errlen, "memfd"); goto fail; }
    for (uint64_t off = 0; off < ram_size; off += 4096) {
        const uint64_t *words = (const uint64_t *)(r->ram + off);
        uint64_t any = 0;
        for (int i = 0; i < 512; i++) any |= words[i];
        if (any && pwrite(r->memfd, r->ram + off, 4096, (off_t)off) != 4096) { failed(err, errlen, "pwrite"); goto fail; }
    }
    if (fcntl(r->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) { failed(err, errlen, "seal"); goto fail; }
    if (mmap(r->ram, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, r->memfd, 0) != r->ram) { failed(err, errlen, "mmap private"); goto fail; }
    r->snapshot = mmap(NULL, ram_size, PROT_READ, MAP_SHARED, r->memfd, 0);
    if (r->snapshot == MAP_FAILED) { r->snapshot = NULL; failed(err, errlen, "mmap view"); goto fail; }
    r->ring = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, r->vcpu_fd, KVM_DIRTY_LOG_PAGE_OFFSET * 4096);
    if (r->ring == MAP_FAILED) { r->ring = NULL; failed(err, errlen, "mmap ring"); goto fail; }
    r->ring_count = RING_BYTES / sizeof(struct kvm_dirty_gfn);
    r->bitmap = calloc((ram_size / 4096 + 63) / 64, 8);
    r->pages = calloc(r->ring_count, sizeof(uint32_t));
    if (ioctl(r->vcpu_fd, KVM_GET_REGS, &r->regs) < 0 || ioctl(r->vcpu_fd, KVM_GET_SREGS, &r->sregs) < 0 ||
        ioctl(r->vcpu_fd, KVM_GET_VCPU_EVENTS, &r->events) < 0) { failed(err, errlen, "get state"); goto fail; }
    r->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
    if (timer) {
        struct sigevent event = {0};
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = SIGUSR1;
        event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        if (timer_create(CLOCK_MONOTONIC, &event, &r->timer) < 0) { failed(err, errlen, "timer_create"); goto fail; }
        r->has_timer = 1;
    }
    return r;
fail:
    cb_reset_destroy(r);
    return NULL;
}

int cb_reset_cycle(cb_reset *r, uint64_t *dirtied) {
    /* Harvest. */
    uint32_t n = 0, harvested = 0;
    for (;;) {
        struct kvm_dirty_gfn *gfn = &r->ring[r->fetch & (r->ring_count - 1)];
        uint32_t flags = __atomic_load_n(&gfn->flags, __ATOMIC_ACQUIRE);
        if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) break;
        uint64_t page = gfn->offset;
        if (gfn->slot == 0 && page < r->ram_size / 4096 && !(r->bitmap[page >> 6] & (1ull << (page & 63)))) {
            r->bitmap[page >> 6] |= 1ull << (page & 63);
            r->pages[n++] = (uint32_t)page;
        }
        __atomic_store_n(&gfn->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
        r->fetch++;
        harvested++;
    }
    if (harvested && ioctl(r->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0) return -1;
    /* Copy back. */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t page = r->pages[i];
        memcpy(r->ram + page * 4096, r->snapshot + page * 4096, 4096);
        r->bitmap[page >> 6] = 0;
    }
    if (dirtied) *dirtied = n;
    /* Registers through kvm_run. */
    r->run->s.regs.regs = r->regs;
    r->run->s.regs.sregs = r->sregs;
    r->run->s.regs.events = r->events;
    r->run->kvm_dirty_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
    /* Run to HLT. */
    if (r->has_timer) {
        struct itimerspec spec = {.it_interval = {0, 5000000}, .it_value = {0, 5000000}};
        timer_settime(r->timer, 0, &spec, NULL);
    }
    int status = -1;
    for (;;) {
        if (ioctl(r->vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            break;
        }
        if (r->run->exit_reason == KVM_EXIT_HLT) { status = 0; break; }
        status = 256 + (int)r->run->exit_reason;
        break;
    }
    if (r->has_timer) {
        struct itimerspec stop = {0};
        timer_settime(r->timer, 0, &stop, NULL);
    }
    return status;
}

void cb_reset_destroy(cb_reset *r) {
    if (!r) return;
    if (r->has_timer) timer_delete(r->timer);
    if (r->ring) munmap(r->ring, RING_BYTES);
    if (r->snapshot) munmap((void *)r->snapshot, r->ram_size);
    if (r->memfd >= 0) close(r->memfd);
    free(r->bitmap);
    free(r->pages);
    cb_vm_destroy(r->vm);
    free(r);
}
