/*
 * cpassthrough: a FUSE passthrough on libfuse3's low-level API, the outside baseline of
 * bench/judges (the shape of libfuse's passthrough_ll: an O_PATH descriptor per node the
 * kernel knows, the *at() calls on it, reads and writes on the descriptor opened through
 * /proc/self/fd, libfuse's multi-threaded loop).
 *
 * Usage: cpassthrough [-o TIMEOUT] BACKING MOUNTPOINT
 *   serves in the foreground until unmounted (or SIGINT/SIGTERM). TIMEOUT is the entry and
 *   attribute timeout in seconds (default 1.0, passthrough_ll's "cache=normal").
 *
 * Built by bench/judges: cc -O2 -Wall cpassthrough.c $(pkg-config --cflags --libs fuse3)
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct node {
	struct node *next; /* hash chain */
	ino_t ino;
	dev_t dev;
	int fd; /* O_PATH */
	uint64_t refs; /* lookups the kernel holds */
};

#define BUCKETS (1u << 16)

static struct node *buckets[BUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct node root_node;
static double timeout = 1.0;

static struct node *node_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root_node : (struct node *)(uintptr_t)ino;
}

static int fd_of(fuse_ino_t ino)
{
	return node_of(ino)->fd;
}

static unsigned bucket_of(ino_t ino, dev_t dev)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;
	return (unsigned)(h >> 48) & (BUCKETS - 1);
}

/* the node for (ino, dev) with one more reference; takes ownership of fd */
static struct node *node_get(int fd, const struct stat *st)
{
	unsigned b = bucket_of(st->st_ino, st->st_dev);
	struct node *n;

	pthread_mutex_lock(&table_lock);
	for (n = buckets[b]; n; n = n->next)
		if (n->ino == st->st_ino && n->dev == st->st_dev)
			break;
	if (n) {
		n->refs++;
		pthread_mutex_unlock(&table_lock);
		close(fd);
		return n;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		pthread_mutex_unlock(&table_lock);
		close(fd);
		return NULL;
	}
	n->ino = st->st_ino;
	n->dev = st->st_dev;
	n->fd = fd;
	n->refs = 1;
	n->next = buckets[b];
	buckets[b] = n;
	pthread_mutex_unlock(&table_lock);
	return n;
}

static void node_put(struct node *n, uint64_t count)
{
	struct node **p;

	if (n == &root_node)
		return;
	pthread_mutex_lock(&table_lock);
	if (n->refs > count) {
		n->refs -= count;
		pthread_mutex_unlock(&table_lock);
		return;
	}
	for (p = &buckets[bucket_of(n->ino, n->dev)]; *p; p = &(*p)->next)
		if (*p == n) {
			*p = n->next;
			break;
		}
	pthread_mutex_unlock(&table_lock);
	close(n->fd);
	free(n);
}

static void proc_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* looks name up under parent and fills e; 0 or an errno */
static int do_lookup(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
	struct node *n;
	int fd;

	memset(e, 0, sizeof(*e));
	e->attr_timeout = timeout;
	e->entry_timeout = timeout;
	fd = openat(fd_of(parent), name, O_PATH | O_NOFOLLOW);
	if (fd < 0)
		return errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	n = node_get(fd, &e->attr);
	if (!n)
		return ENOMEM;
	e->ino = (uintptr_t)n;
	return 0;
}

static void reply_entry_or_err(fuse_req_t req, fuse_ino_t parent, const char *name, int res)
{
	struct fuse_entry_param e;
	int err = res < 0 ? errno : do_lookup(parent, name, &e);

	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void cp_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE; /* passthrough_ll's default: off */
}

static void cp_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(parent, name, &e);

	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void cp_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_put(node_of(ino), nlookup);
	fuse_reply_none(req);
}

static void cp_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		node_put(node_of(forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void cp_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (fstatat(fd_of(ino), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, timeout);
}

static void cp_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	char path[64];
	int fd = fd_of(ino);
	int res = 0;

	proc_path(path, sizeof(path), fd);
	if (valid & FUSE_SET_ATTR_MODE)
		res = fi ? fchmod(fi->fh, attr->st_mode) : chmod(path, attr->st_mode);
	if (!res && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		res = fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	}
	if (!res && (valid & FUSE_SET_ATTR_SIZE))
		res = fi ? ftruncate(fi->fh, attr->st_size) : truncate(path, attr->st_size);
	if (!res && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		res = fi ? futimens(fi->fh, tv) : utimensat(AT_FDCWD, path, tv, 0);
	}
	if (res < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	cp_getattr(req, ino, fi);
}

static void cp_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t len = readlinkat(fd_of(ino), "", buf, sizeof(buf));

	if (len < 0)
		fuse_reply_err(req, errno);
	else if (len == sizeof(buf))
		fuse_reply_err(req, ENAMETOOLONG);
	else {
		buf[len] = 0;
		fuse_reply_readlink(req, buf);
	}
}

static void cp_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	reply_entry_or_err(req, parent, name, mknodat(fd_of(parent), name, mode, rdev));
}

static void cp_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	reply_entry_or_err(req, parent, name, mkdirat(fd_of(parent), name, mode));
}

static void cp_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	reply_entry_or_err(req, parent, name, symlinkat(link, fd_of(parent), name));
}

static void cp_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	char path[64];

	proc_path(path, sizeof(path), fd_of(ino));
	reply_entry_or_err(req, parent, name,
			   linkat(AT_FDCWD, path, fd_of(parent), name, AT_SYMLINK_FOLLOW));
}

static void cp_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, unlinkat(fd_of(parent), name, 0) < 0 ? errno : 0);
}

static void cp_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, unlinkat(fd_of(parent), name, AT_REMOVEDIR) < 0 ? errno : 0);
}

static void cp_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	int res = renameat2(fd_of(parent), name, fd_of(newparent), newname, flags);

	fuse_reply_err(req, res < 0 ? errno : 0);
}

static int reopen(fuse_ino_t ino, int flags)
{
	char path[64];

	proc_path(path, sizeof(path), fd_of(ino));
	return open(path, flags & ~O_NOFOLLOW);
}

static void cp_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int fd = reopen(ino, fi->flags);

	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fi->fh = fd;
	fuse_reply_open(req, fi);
}

static void cp_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	int fd = openat(fd_of(parent), name, (fi->flags | O_CREAT) & ~O_NOFOLLOW, mode);
	int err;

	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	err = do_lookup(parent, name, &e);
	if (err) {
		close(fd);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = fd;
	fuse_reply_create(req, &e, fi);
}

static void cp_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	(void)ino;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fi->fh;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void cp_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
	ssize_t res;

	(void)ino;
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = fi->fh;
	out.buf[0].pos = off;
	res = fuse_buf_copy(&out, in, 0);
	if (res < 0)
		fuse_reply_err(req, -res);
	else
		fuse_reply_write(req, (size_t)res);
}

static void cp_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	/* closing a duplicate reports the errors close() of the original would */
	fuse_reply_err(req, close(dup(fi->fh)) < 0 ? errno : 0);
}

static void cp_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	close(fi->fh);
	fuse_reply_err(req, 0);
}

static void cp_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	int res = datasync ? fdatasync(fi->fh) : fsync(fi->fh);
	fuse_reply_err(req, res < 0 ? errno : 0);
}

static void cp_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, fallocate(fi->fh, mode, off, len) < 0 ? errno : 0);
}

struct dir_handle {
	DIR *dir;
	off_t offset;
	struct dirent *entry;
};

static void cp_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_handle *d = calloc(1, sizeof(*d));
	int fd;

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fd = openat(fd_of(ino), ".", O_RDONLY | O_DIRECTORY);
	if (fd < 0 || !(d->dir = fdopendir(fd))) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)d;
	fuse_reply_open(req, fi);
}

static void cp_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t left = size;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dir, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		size_t len;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dir);
			if (!d->entry) {
				if (errno && p == buf) {
					free(buf);
					fuse_reply_err(req, errno);
					return;
				}
				break;
			}
		}
		memset(&st, 0, sizeof(st));
		st.st_ino = d->entry->d_ino;
		st.st_mode = (mode_t)d->entry->d_type << 12;
		len = fuse_add_direntry(req, p, left, d->entry->d_name, &st, d->entry->d_off);
		if (len > left)
			break;
		p += len;
		left -= len;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	fuse_reply_buf(req, buf, size - left);
	free(buf);
}

static void cp_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;

	(void)ino;
	closedir(d->dir);
	free(d);
	fuse_reply_err(req, 0);
}

static void cp_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	int fd = dirfd(d->dir);

	(void)ino;
	fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0);
}

static void cp_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(fd_of(ino), &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
	.init = cp_init,
	.lookup = cp_lookup,
	.forget = cp_forget,
	.forget_multi = cp_forget_multi,
	.getattr = cp_getattr,
	.setattr = cp_setattr,
	.readlink = cp_readlink,
	.mknod = cp_mknod,
	.mkdir = cp_mkdir,
	.symlink = cp_symlink,
	.link = cp_link,
	.unlink = cp_unlink,
	.rmdir = cp_rmdir,
	.rename = cp_rename,
	.open = cp_open,
	.create = cp_create,
	.read = cp_read,
	.write_buf = cp_write_buf,
	.flush = cp_flush,
	.release = cp_release,
	.fsync = cp_fsync,
	.fallocate = cp_fallocate,
	.opendir = cp_opendir,
	.readdir = cp_readdir,
	.releasedir = cp_releasedir,
	.fsyncdir = cp_fsyncdir,
	.statfs = cp_statfs,
};

int main(int argc, char **argv)
{
	char *fuse_argv[] = { argv[0], "-o", "default_permissions,fsname=cpassthrough,subtype=cpassthrough", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
	struct fuse_loop_config *config;
	struct fuse_session *se;
	struct rlimit lim;
	int opt, ret = 1;

	while ((opt = getopt(argc, argv, "o:")) != -1) {
		if (opt != 'o')
			goto usage;
		timeout = strtod(optarg, NULL);
	}
	if (argc - optind != 2)
		goto usage;
	/* one descriptor per inode the kernel holds: raise the soft limit to the hard one */
	if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
		lim.rlim_cur = lim.rlim_max;
		setrlimit(RLIMIT_NOFILE, &lim);
	}
	root_node.fd = open(argv[optind], O_PATH | O_DIRECTORY);
	if (root_node.fd < 0) {
		fprintf(stderr, "cpassthrough: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	root_node.refs = 2;
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		return 1;
	if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[optind + 1]) != 0)
		goto out;
	config = fuse_loop_cfg_create();
	ret = fuse_session_loop_mt(se, config) != 0;
	fuse_loop_cfg_destroy(config);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
out:
	fuse_session_destroy(se);
	return ret;
usage:
	fprintf(stderr, "usage: %s [-o TIMEOUT] BACKING MOUNTPOINT\n", argv[0]);
	return 64;
}
