// CMemory: the few C calls guest memory needs that Swift's Glibc module does not offer.
//
// Why this shim exists:
// - `memfd_create` is declared only under _GNU_SOURCE, which Swift's Glibc module does not set, and
//   `syscall` is variadic, which Swift cannot call: one inline wrapper makes the system call.
// - The `MFD_*` constants come from <linux/memfd.h>. The seal commands and `SEEK_DATA` / `SEEK_HOLE`
//   live in <linux/fcntl.h> and glibc's <fcntl.h> under _GNU_SOURCE; the first clashes with glibc's own
//   `struct flock` when both are imported, the second is not visible to Swift. Their values are kernel ABI
//   (include/uapi/linux/fcntl.h, include/uapi/linux/fs.h), fixed since Linux 3.1 and 3.17, so they are
//   spelled out here, once.
// A system-library target may hold only a module map and headers, so every helper is `static inline`.

#ifndef CMEMORY_H
#define CMEMORY_H

#include <unistd.h>
#include <sys/syscall.h>
#include <linux/memfd.h>

/// `memfd_create(name, flags)`: an anonymous file in memory, or -1 with errno.
static inline int cmemory_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

static const unsigned int CMEMORY_MFD_CLOEXEC = MFD_CLOEXEC;
static const unsigned int CMEMORY_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;
static const int CMEMORY_F_ADD_SEALS = 1024 + 9;  // F_LINUX_SPECIFIC_BASE + 9
static const int CMEMORY_F_SEAL_SEAL = 0x0001;
static const int CMEMORY_F_SEAL_SHRINK = 0x0002;
static const int CMEMORY_F_SEAL_GROW = 0x0004;
static const int CMEMORY_F_SEAL_WRITE = 0x0008;
static const int CMEMORY_SEEK_DATA = 3;
static const int CMEMORY_SEEK_HOLE = 4;

#endif // CMEMORY_H
