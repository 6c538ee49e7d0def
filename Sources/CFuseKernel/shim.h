// The kernel's FUSE wire protocol and the mount/loop interfaces a FUSE daemon needs.
// Headers only: the protocol is spoken directly over /dev/fuse, so nothing is linked.
#ifndef SCOUT_CFUSEKERNEL_SHIM_H
#define SCOUT_CFUSEKERNEL_SHIM_H
#include <linux/fuse.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <fcntl.h>

static inline unsigned long cfk_fuse_dev_ioc_clone(void) { return FUSE_DEV_IOC_CLONE; }
static inline unsigned long cfk_loop_ctl_get_free(void) { return LOOP_CTL_GET_FREE; }
static inline unsigned long cfk_loop_ctl_add(void) { return LOOP_CTL_ADD; }
static inline unsigned long cfk_loop_ctl_remove(void) { return LOOP_CTL_REMOVE; }
static inline unsigned long cfk_loop_configure(void) { return LOOP_CONFIGURE; }
static inline unsigned long cfk_loop_set_fd(void) { return LOOP_SET_FD; }
static inline unsigned long cfk_loop_set_status64(void) { return LOOP_SET_STATUS64; }
static inline unsigned long cfk_loop_clr_fd(void) { return LOOP_CLR_FD; }
static inline int cfk_ioctl_ulong(int fd, unsigned long req, unsigned long arg) { return ioctl(fd, req, arg); }
static inline int cfk_ioctl_ptr(int fd, unsigned long req, void *arg) { return ioctl(fd, req, arg); }
/* names the calling thread (prctl is variadic, so Swift cannot call it) */
static inline int cfk_set_thread_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL); }
/* process_vm_readv/writev(2) through syscall(2) (glibc declares them only with _GNU_SOURCE) */
#include <sys/uio.h>
static inline long cfk_process_vm_readv(int pid, const struct iovec *local, unsigned long liovcnt,
                                        const struct iovec *remote, unsigned long riovcnt) {
    return syscall(SYS_process_vm_readv, pid, local, liovcnt, remote, riovcnt, 0UL);
}
static inline long cfk_process_vm_writev(int pid, const struct iovec *local, unsigned long liovcnt,
                                         const struct iovec *remote, unsigned long riovcnt) {
    return syscall(SYS_process_vm_writev, pid, local, liovcnt, remote, riovcnt, 0UL);
}
/* renameat2(2) through syscall(2), which is variadic (glibc's wrapper needs _GNU_SOURCE) */
static inline int cfk_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}
/* the effective capability set of thread or process pid through capget(2): no text of
   /proc/PID/status for the kernel to generate and us to parse; -1 (errno set) when it fails */
#include <linux/capability.h>
static inline int cfk_capget_effective(int pid, unsigned long long *eff) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, pid };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return -1;
    *eff = ((unsigned long long)d[1].effective << 32) | d[0].effective;
    return 0;
}
/* O_TMPFILE and O_PATH are hidden behind _GNU_SOURCE in glibc's headers; the values are the kernel's (x86-64, arm64 differ) */
#ifndef O_TMPFILE
#  if defined(__aarch64__)
#    define CFK_O_TMPFILE (020000000 | 040000)
#  else
#    define CFK_O_TMPFILE (020000000 | 0200000)
#  endif
#else
#  define CFK_O_TMPFILE O_TMPFILE
#endif
static inline int cfk_seek_data(void) { return 3; }
static inline int cfk_seek_hole(void) { return 4; }
static inline int cfk_o_tmpfile(void) { return CFK_O_TMPFILE; }
#ifdef O_PATH
static inline int cfk_o_path(void) { return O_PATH; }
#else
static inline int cfk_o_path(void) { return 010000000; }
#endif
#endif
