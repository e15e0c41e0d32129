/*
 * chost: the minimal C KVM host as a whole process, the baseline for `microvm GUEST.bin`.
 *
 *   chost [-r MIB] GUEST.bin
 *
 * Built by scripts/bench.sh, as plain C (no Swift runtime):
 *   clang -O2 -I Sources/CBaseline/include chost/main.c Sources/CBaseline/{khost,pagetables}.c -lpthread
 *
 * Boots the flat amd64 guest per docs/layout.md (16 MiB RAM by default), writes its console bytes to stdout,
 * exits with the guest's status (0 at HLT, the exit port's low 8 bits) or 1 on a host error.
 */
#include "cbaseline.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    uint64_t ram_mib = 16;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) ram_mib = strtoull(argv[++i], NULL, 0);
        else if (!path) path = argv[i];
        else { fprintf(stderr, "usage: chost [-r MIB] GUEST.bin\n"); return 1; }
    }
    if (!path) { fprintf(stderr, "usage: chost [-r MIB] GUEST.bin\n"); return 1; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0) { perror(path); return 1; }
    unsigned char *image = malloc((size_t)st.st_size);
    if (read(fd, image, (size_t)st.st_size) != st.st_size) { perror(path); return 1; }
    close(fd);
    char err[256];
    cb_vm *vm = cb_vm_create(image, (size_t)st.st_size, ram_mib << 20, err, sizeof err);
    if (!vm) { fprintf(stderr, "chost: %s\n", err); return 1; }
    int status = cb_vm_run(vm, STDOUT_FILENO, NULL, err, sizeof err);
    if (status < 0) { fprintf(stderr, "chost: %s\n", err); return 1; }
    if (status > 255) { fprintf(stderr, "chost: unexpected exit %d\n", status - 256); return 1; }
    return status; /* the kernel tears the VM down at exit */
}
