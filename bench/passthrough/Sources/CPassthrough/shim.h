// Syscalls and constants the passthrough needs that Swift's Glibc module does not expose.
#ifndef SCOUT_CPASSTHROUGH_SHIM_H
#define SCOUT_CPASSTHROUGH_SHIM_H
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

static inline int cpt_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}
static inline int cpt_fallocate(int fd, int mode, long long offset, long long len) {
    return (int)syscall(SYS_fallocate, fd, mode, offset, len);
}
static inline int cpt_open3(const char *path, int flags, unsigned int mode) { return open(path, flags, mode); }
static inline int cpt_openat3(int dirfd, const char *path, int flags, unsigned int mode) { return openat(dirfd, path, flags, mode); }
#if defined(__aarch64__)
static inline int cpt_o_tmpfile(void) { return 020000000 | 040000; }
#else
static inline int cpt_o_tmpfile(void) { return 020000000 | 0200000; }
#endif
static inline int cpt_o_path(void) { return 010000000; }
static inline int cpt_at_empty_path(void) { return 0x1000; }
#endif
