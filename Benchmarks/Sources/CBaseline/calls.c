/*
 * Calls into a guest at the KVM floor: the C reference Machine.call is compared with. The guest is
 * Guests/calls64.bin (docs/layout.md, "Calls"); the host is cb_vm_create's VM, run to the guest's ready
 * hypercall once, then per call:
 *
 *   host -> guest: write the function index, the argument count and the argument descriptors into the call
 *                  area (guest-physical 0x200000, identity-mapped), KVM_RUN, check the exit is an OUT to port
 *                  0x511, read the status and the result.
 *   guest -> host: the same for `shout`, whose guest function makes hypercall 7 on the way: the exit is an
 *                  OUT to 0x510 with the record's address; the host reads the record, the name and the byte
 *                  argument it names (identity-mapped, as the guest lays them out), calls its "log" (which
 *                  returns 41), writes the result buffer and the record's status, and runs the guest on.
 */
#define _GNU_SOURCE
#include "cbaseline.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define AREA 0x200000ull

struct cb_calls {
    cb_vm *vm;
    int vcpu;
    unsigned char *ram;
    struct kvm_run *run;
    uint64_t ram_size;
    unsigned char scratch[4096];
};

/* Runs until an OUT to `port`; serves hypercall 7 on the way. Returns 0, or -1 on anything else. */
static int run_until(cb_calls *c, uint16_t port) {
    for (;;) {
        if (ioctl(c->vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        struct kvm_run *k = c->run;
        if (k->exit_reason != KVM_EXIT_IO || k->io.direction != KVM_EXIT_IO_OUT) return -1;
        if (k->io.port == port) return 0;
        if (k->io.port != 0x510 || k->io.size != 4) return -1;
        uint32_t record;
        memcpy(&record, (unsigned char *)k + k->io.data_offset, 4);
        if (record + 64 > c->ram_size) return -1;
        unsigned char *r = c->ram + record;
        uint32_t op;
        memcpy(&op, r, 4);
        if (op == 6) return port == 0x510 ? 0 : -1; /* ready */
        if (op != 7) return -1;
        uint64_t args[6];
        memcpy(args, r + 16, sizeof args);
        /* The name, then one byte argument: bounds-checked copies out of RAM, as the Swift host makes. */
        if (args[1] > 64 || args[0] + args[1] > c->ram_size || args[3] > 8) return -1;
        char name[65];
        memcpy(name, c->ram + args[0], args[1]);
        name[args[1]] = 0;
        uint64_t status = 1;
        if (strcmp(name, "log") == 0 && args[2] + 24 * args[3] <= c->ram_size) {
            unsigned char *descriptor = c->ram + args[2];
            uint64_t value, length;
            memcpy(&value, descriptor + 8, 8);
            memcpy(&length, descriptor + 16, 8);
            if (length <= sizeof c->scratch && value + length <= c->ram_size) {
                memcpy(c->scratch, c->ram + value, length); /* the argument, handed to "log" */
                uint64_t result[2] = {1, 41};              /* kind integer, value 41 */
                if (args[5] >= 16 && args[4] + 16 <= c->ram_size) {
                    memcpy(c->ram + args[4], result, 16);
                    status = 0;
                }
            }
        }
        memcpy(r + 8, &status, 8);
    }
}

cb_calls *cb_calls_create(const void *image, size_t image_size, char *err, size_t errlen) {
    cb_calls *c = calloc(1, sizeof *c);
    c->ram_size = 16ull << 20;
    c->vm = cb_vm_create(image, image_size, c->ram_size, err, errlen);
    if (!c->vm) { free(c); return NULL; }
    c->vcpu = cb_vcpu_fd(c->vm);
    c->ram = cb_vm_ram(c->vm);
    c->run = cb_vm_run_page(c->vm);
    /* As Machine does: KVM leaves the registers in kvm_run after every exit. */
    c->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
    if (run_until(c, 0x510) != 0) {
        if (err && errlen) snprintf(err, errlen, "the guest did not become ready");
        cb_calls_destroy(c);
        return NULL;
    }
    return c;
}

static void put32(cb_calls *c, uint64_t at, uint32_t v) { memcpy(c->ram + AREA + at, &v, 4); }
static void put64(cb_calls *c, uint64_t at, uint64_t v) { memcpy(c->ram + AREA + at, &v, 8); }
static uint64_t get64(cb_calls *c, uint64_t at) { uint64_t v; memcpy(&v, c->ram + AREA + at, 8); return v; }
static uint32_t get32(cb_calls *c, uint64_t at) { uint32_t v; memcpy(&v, c->ram + AREA + at, 4); return v; }

int64_t cb_calls_add(cb_calls *c, int64_t a, int64_t b) {
    put32(c, 0, 0);  /* add */
    put32(c, 4, 2);
    put32(c, 8, 0);
    put32(c, 12, 0);
    put32(c, 32, 1); put32(c, 36, 0); put64(c, 40, (uint64_t)a); put64(c, 48, 0);
    put32(c, 56, 1); put32(c, 60, 0); put64(c, 64, (uint64_t)b); put64(c, 72, 0);
    if (run_until(c, 0x511) != 0 || get32(c, 8) != 0 || get32(c, 12) != 1) return INT64_MIN;
    return (int64_t)get64(c, 16);
}

int cb_calls_nothing(cb_calls *c) {
    put32(c, 0, 6);  /* nothing */
    put32(c, 4, 0);
    put32(c, 8, 0);
    put32(c, 12, 0);
    if (run_until(c, 0x511) != 0 || get32(c, 8) != 0) return -1;
    return 0;
}

int64_t cb_calls_shout(cb_calls *c, const char *text, size_t length) {
    put32(c, 0, 2);  /* shout */
    put32(c, 4, 1);
    put32(c, 8, 0);
    put32(c, 12, 0);
    put32(c, 32, 3); put32(c, 36, 0); put64(c, 40, 256); put64(c, 48, length);
    memcpy(c->ram + AREA + 256, text, length);
    if (run_until(c, 0x511) != 0 || get32(c, 8) != 0) return INT64_MIN;
    return (int64_t)get64(c, 16);
}

void cb_calls_destroy(cb_calls *c) {
    if (!c) return;
    cb_vm_destroy(c->vm);
    free(c);
}
