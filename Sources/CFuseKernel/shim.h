// The kernel's FUSE wire protocol and the mount/loop interfaces a FUSE daemon needs.
// Headers only: the protocol is spoken directly over /dev/fuse, so nothing is linked.
#ifndef SCOUT_CFUSEKERNEL_SHIM_H
#define SCOUT_CFUSEKERNEL_SHIM_H
#include <linux/fuse.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>

static inline unsigned long cfk_fuse_dev_ioc_clone(void) { return FUSE_DEV_IOC_CLONE; }
static inline unsigned long cfk_loop_ctl_get_free(void) { return LOOP_CTL_GET_FREE; }
static inline unsigned long cfk_loop_configure(void) { return LOOP_CONFIGURE; }
static inline unsigned long cfk_loop_set_fd(void) { return LOOP_SET_FD; }
static inline unsigned long cfk_loop_set_status64(void) { return LOOP_SET_STATUS64; }
static inline unsigned long cfk_loop_clr_fd(void) { return LOOP_CLR_FD; }
static inline int cfk_ioctl_ulong(int fd, unsigned long req, unsigned long arg) { return ioctl(fd, req, arg); }
static inline int cfk_ioctl_ptr(int fd, unsigned long req, void *arg) { return ioctl(fd, req, arg); }
#endif
