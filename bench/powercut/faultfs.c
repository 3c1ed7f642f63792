/*
 * faultfs: an LD_PRELOAD shim that records (and optionally fails) the file-system calls a process makes under one
 * directory, for the outbox power-cut bench (bench/powercut.py) and for tests of failing storage.
 *
 * Build (at run time, never committed):  gcc -shared -fPIC -O2 -o faultfs.so faultfs.c -ldl -lpthread
 *
 * Environment:
 *   FAULTFS_ROOT  the directory watched (the outbox's state folder). Without it the shim does nothing at all.
 *   FAULTFS_LOG   log mode: every state-changing call on a path under FAULTFS_ROOT (the folder itself included) is
 *                 appended to this binary log, in the order the calls completed, after the call succeeded:
 *                   write/pwrite/pwrite64/writev/pwritev/pwritev64  -> WRITE    path, offset, the bytes written
 *                   ftruncate/ftruncate64/truncate/truncate64, and  -> TRUNCATE path, new length
 *                     open/open64/openat/openat64/creat with O_TRUNC of an existing file
 *                   fsync/fdatasync of a file                       -> SYNC     path (offset 0 fsync, 1 fdatasync)
 *                   fsync/fdatasync of a directory                  -> DIRSYNC  path of the directory
 *                   open* with O_CREAT that created the file       -> CREATE   path
 *                   rename/renameat/renameat2                       -> RENAME   path, data = destination path
 *                   unlink/unlinkat                                 -> UNLINK   path
 *                   mkdir/mkdirat, rmdir (unlinkat AT_REMOVEDIR)    -> MKDIR / RMDIR path
 *                 A write to the file "markers" beside FAULTFS_ROOT (FAULTFS_ROOT/../markers) is logged as a MARKER
 *                 whose data is the text written, so a driver can note "recorded seq N" exactly in I/O order.
 *                 The log is written with the real libc calls under one mutex (thread-safe); the real call and its
 *                 log record happen under that mutex, so the log order is the order of the calls.
 *   FAULTFS_FAIL  fail mode: the path of a control file (best outside FAULTFS_ROOT). While that file exists, every
 *                 write, truncate, fsync/fdatasync, rename, unlink, mkdir and open for writing (O_WRONLY, O_RDWR,
 *                 O_CREAT or O_TRUNC) under FAULTFS_ROOT fails with the errno written in the control file as a
 *                 decimal number (e.g. "5" for EIO, "30" for EROFS; EIO when the file is empty or unreadable).
 *                 Reads and read-only opens keep working. Remove the file and calls succeed again. Both modes may
 *                 be used together (failed calls are not logged).
 *
 * Not seen: writes through mmap (SQLite's -shm wal-index, which SQLite rebuilds after a crash), glibc-internal
 * calls (stdio's own write), fallocate, copy_file_range/sendfile, and raw syscalls. SQLite 3.40 (Debian's
 * libsqlite3, used by CPython's _sqlite3) calls open64, pwrite64, write, fdatasync (also on the folder),
 * ftruncate64 and unlink; CPython's os/io modules call open64/openat64, write/writev, fsync/fdatasync,
 * rename/renameat, unlink/unlinkat and ftruncate64 (checked with nm -D).
 *
 * Log record (native endianness, x86-64/aarch64 little-endian): u32 magic|op (0xFA170000 | op), u32 path_len,
 * u64 offset, u64 data_len, then path_len bytes of path and data_len bytes of data.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_TRUNCATE, OP_SYNC, OP_CREATE, OP_RENAME, OP_UNLINK, OP_DIRSYNC, OP_MARKER, OP_MKDIR, OP_RMDIR };
#define MAGIC 0xFA170000u

struct rec {
    uint32_t magic_op;
    uint32_t path_len;
    uint64_t offset;
    uint64_t data_len;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char root[PATH_MAX];
static size_t root_len;
static char markers[PATH_MAX];
static char fail_path[PATH_MAX];
static int active, logging, failing;
static int log_fd = -1;

static int (*r_open)(const char *, int, ...);
static int (*r_open64)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...);
static int (*r_openat64)(int, const char *, int, ...);
static int (*r_creat)(const char *, mode_t);
static int (*r_creat64)(const char *, mode_t);
static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*r_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*r_writev)(int, const struct iovec *, int);
static ssize_t (*r_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*r_pwritev64)(int, const struct iovec *, int, off_t);
static int (*r_ftruncate)(int, off_t);
static int (*r_ftruncate64)(int, off_t);
static int (*r_truncate)(const char *, off_t);
static int (*r_truncate64)(const char *, off_t);
static int (*r_fsync)(int);
static int (*r_fdatasync)(int);
static int (*r_rename)(const char *, const char *);
static int (*r_renameat)(int, const char *, int, const char *);
static int (*r_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*r_unlink)(const char *);
static int (*r_unlinkat)(int, const char *, int);
static int (*r_mkdir)(const char *, mode_t);
static int (*r_mkdirat)(int, const char *, mode_t);
static int (*r_rmdir)(const char *);

#define RESOLVE(name) r_##name = dlsym(RTLD_NEXT, #name)

static void resolve_all(void) {
    RESOLVE(open); RESOLVE(open64); RESOLVE(openat); RESOLVE(openat64); RESOLVE(creat); RESOLVE(creat64);
    RESOLVE(write); RESOLVE(pwrite); RESOLVE(pwrite64); RESOLVE(writev); RESOLVE(pwritev); RESOLVE(pwritev64);
    RESOLVE(ftruncate); RESOLVE(ftruncate64); RESOLVE(truncate); RESOLVE(truncate64);
    RESOLVE(fsync); RESOLVE(fdatasync); RESOLVE(rename); RESOLVE(renameat); RESOLVE(renameat2);
    RESOLVE(unlink); RESOLVE(unlinkat); RESOLVE(mkdir); RESOLVE(mkdirat); RESOLVE(rmdir);
}

/* Every wrapper starts here: a call made before this library's constructor ran still reaches libc. */
#define READY() do { if (!r_rename) resolve_all(); } while (0)

__attribute__((constructor)) static void faultfs_init(void) {
    resolve_all();
    const char *r = getenv("FAULTFS_ROOT");
    if (!r || !*r || !realpath(r, root)) return;
    root_len = strlen(root);
    /* root's parent folder (root is a real absolute path) and "markers" in it */
    memcpy(markers, root, root_len + 1);
    char *slash = strrchr(markers, '/');
    if (slash && slash != markers && (size_t)(slash - markers) + 9 < sizeof markers) memcpy(slash, "/markers", 9);
    else memcpy(markers, "/markers", 9);
    const char *l = getenv("FAULTFS_LOG");
    if (l && *l) {
        log_fd = r_open64(l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        logging = log_fd >= 0;
        if (!logging) fprintf(stderr, "faultfs: cannot open log %s: %s\n", l, strerror(errno));
    }
    const char *f = getenv("FAULTFS_FAIL");
    if (f && *f) {
        snprintf(fail_path, sizeof fail_path, "%s", f);
        failing = 1;
    }
    active = 1;
}

/* ------------------------------------------------------------------ paths */

static int under_root(const char *p) {
    return active && strncmp(p, root, root_len) == 0 && (p[root_len] == '/' || p[root_len] == 0);
}

static int is_marker(const char *p) { return active && logging && strcmp(p, markers) == 0; }

static int fd_path(int fd, char *out) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n < 0) return -1;
    out[n] = 0;
    return 0;
}

/* Lexically normalise an absolute path ("//", "/./", "/../"). */
static void normalise(char *p) {
    char out[PATH_MAX];
    size_t o = 0;
    const char *s = p;
    while (*s) {
        while (*s == '/') s++;
        if (!*s) break;
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 1 && s[0] == '.') {
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--;
        } else if (o + 1 + n < sizeof out) {
            out[o++] = '/';
            memcpy(out + o, s, n);
            o += n;
        }
        s += n;
    }
    if (o == 0) out[o++] = '/';
    out[o] = 0;
    memcpy(p, out, o + 1);
}

/* The absolute path of `path` relative to `dirfd`, with its folder resolved through symlinks when it exists. */
static int abs_path(int dirfd, const char *path, char *out) {
    char buf[PATH_MAX * 2];
    if (!path) return -1;
    if (path[0] == '/') {
        snprintf(buf, sizeof buf, "%s", path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return -1;
        } else if (fd_path(dirfd, base) < 0) {
            return -1;
        }
        snprintf(buf, sizeof buf, "%s/%s", base, path);
    }
    if (strlen(buf) >= PATH_MAX) return -1;
    normalise(buf);
    char *slash = strrchr(buf, '/');
    char dir[PATH_MAX], real[PATH_MAX];
    if (slash && slash != buf) {
        size_t n = (size_t)(slash - buf);
        memcpy(dir, buf, n);
        dir[n] = 0;
        size_t rl, sl = strlen(slash);
        if (realpath(dir, real) && (rl = strlen(real)) + sl < PATH_MAX) {
            memcpy(out, real, rl);
            memcpy(out + rl, slash, sl + 1);
            return 0;
        }
    }
    snprintf(out, PATH_MAX, "%s", buf);
    return 0;
}

/* ------------------------------------------------------------------ log and failures */

static void put_all(const struct iovec *iov, int cnt) {
    struct iovec v[4];
    memcpy(v, iov, sizeof(struct iovec) * (size_t)cnt);
    int i = 0;
    while (i < cnt) {
        ssize_t n = r_writev(log_fd, v + i, cnt - i);
        if (n < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "faultfs: cannot write the log: %s\n", strerror(errno));
            abort();
        }
        while (i < cnt && (size_t)n >= v[i].iov_len) n -= (ssize_t)v[i++].iov_len;
        if (i < cnt) {
            v[i].iov_base = (char *)v[i].iov_base + n;
            v[i].iov_len -= (size_t)n;
        }
    }
}

/* Caller holds mu. */
static void log_rec(int op, const char *path, uint64_t offset, const void *data, size_t len) {
    if (!logging) return;
    struct rec h = {MAGIC | (uint32_t)op, (uint32_t)strlen(path), offset, (uint64_t)len};
    struct iovec iov[3] = {{&h, sizeof h}, {(void *)path, h.path_len}, {(void *)data, len}};
    put_all(iov, len ? 3 : 2);
}

/* The errno to fail with while the control file exists, else 0. */
static int fail_errno(void) {
    if (!failing || access(fail_path, F_OK) != 0) return 0;
    int fd = r_open64(fail_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return EIO;
    char buf[32] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    int e = n > 0 ? atoi(buf) : 0;
    return e > 0 ? e : EIO;
}

/* ------------------------------------------------------------------ writes */

static ssize_t do_write(int fd, const void *data, size_t len, off_t off, int positional,
                        ssize_t (*real)(int, const void *, size_t, off_t), ssize_t (*real_plain)(int, const void *, size_t)) {
    READY();
    char p[PATH_MAX];
    if (!active || fd_path(fd, p) < 0 || !(under_root(p) || is_marker(p)))
        return positional ? real(fd, data, len, off) : real_plain(fd, data, len);
    int marker = is_marker(p);
    if (!marker) {
        int e = fail_errno();
        if (e) { errno = e; return -1; }
    }
    pthread_mutex_lock(&mu);
    off_t at = off;
    if (!positional) {
        int fl = fcntl(fd, F_GETFL);
        struct stat st;
        if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0) at = st.st_size;
        else at = lseek(fd, 0, SEEK_CUR);
    }
    ssize_t n = positional ? real(fd, data, len, off) : real_plain(fd, data, len);
    int saved = errno;
    if (n > 0) {
        if (marker) log_rec(OP_MARKER, p, 0, data, (size_t)n);
        else log_rec(OP_WRITE, p, (uint64_t)at, data, (size_t)n);
    }
    pthread_mutex_unlock(&mu);
    errno = saved;
    return n;
}

ssize_t write(int fd, const void *buf, size_t n) { return do_write(fd, buf, n, 0, 0, NULL, r_write); }
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) { return do_write(fd, buf, n, off, 1, r_pwrite, NULL); }
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return do_write(fd, buf, n, off, 1, r_pwrite64, NULL); }

static ssize_t do_writev(int fd, const struct iovec *iov, int cnt, off_t off, int positional,
                         ssize_t (*real)(int, const struct iovec *, int, off_t)) {
    READY();
    char p[PATH_MAX];
    if (!active || fd_path(fd, p) < 0 || !(under_root(p) || is_marker(p)))
        return positional ? real(fd, iov, cnt, off) : r_writev(fd, iov, cnt);
    int marker = is_marker(p);
    if (!marker) {
        int e = fail_errno();
        if (e) { errno = e; return -1; }
    }
    pthread_mutex_lock(&mu);
    off_t at = off;
    if (!positional) {
        int fl = fcntl(fd, F_GETFL);
        struct stat st;
        if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0) at = st.st_size;
        else at = lseek(fd, 0, SEEK_CUR);
    }
    ssize_t n = positional ? real(fd, iov, cnt, off) : r_writev(fd, iov, cnt);
    int saved = errno;
    if (n > 0 && logging) {
        char *all = malloc((size_t)n);
        if (!all) abort();
        size_t got = 0;
        for (int i = 0; i < cnt && got < (size_t)n; i++) {
            size_t take = iov[i].iov_len < (size_t)n - got ? iov[i].iov_len : (size_t)n - got;
            memcpy(all + got, iov[i].iov_base, take);
            got += take;
        }
        if (marker) log_rec(OP_MARKER, p, 0, all, got);
        else log_rec(OP_WRITE, p, (uint64_t)at, all, got);
        free(all);
    }
    pthread_mutex_unlock(&mu);
    errno = saved;
    return n;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) { return do_writev(fd, iov, cnt, 0, 0, NULL); }
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) { return do_writev(fd, iov, cnt, off, 1, r_pwritev); }
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
    return do_writev(fd, iov, cnt, off, 1, r_pwritev64);
}

/* ------------------------------------------------------------------ truncate and sync */

static int do_ftruncate(int fd, off_t len, int (*real)(int, off_t)) {
    READY();
    char p[PATH_MAX];
    if (!active || fd_path(fd, p) < 0 || !under_root(p)) return real(fd, len);
    int e = fail_errno();
    if (e) { errno = e; return -1; }
    pthread_mutex_lock(&mu);
    int rc = real(fd, len);
    int saved = errno;
    if (rc == 0) log_rec(OP_TRUNCATE, p, (uint64_t)len, NULL, 0);
    pthread_mutex_unlock(&mu);
    errno = saved;
    return rc;
}

int ftruncate(int fd, off_t len) { return do_ftruncate(fd, len, r_ftruncate); }
int ftruncate64(int fd, off_t len) { return do_ftruncate(fd, len, r_ftruncate64); }

static int do_truncate(const char *path, off_t len, int (*real)(const char *, off_t)) {
    READY();
    char p[PATH_MAX];
    if (!active || abs_path(AT_FDCWD, path, p) < 0 || !under_root(p)) return real(path, len);
    int e = fail_errno();
    if (e) { errno = e; return -1; }
    pthread_mutex_lock(&mu);
    int rc = real(path, len);
    int saved = errno;
    if (rc == 0) log_rec(OP_TRUNCATE, p, (uint64_t)len, NULL, 0);
    pthread_mutex_unlock(&mu);
    errno = saved;
    return rc;
}

int truncate(const char *path, off_t len) { return do_truncate(path, len, r_truncate); }
int truncate64(const char *path, off_t len) { return do_truncate(path, len, r_truncate64); }

static int do_sync(int fd, int data_only) {
    READY();
    int (*real)(int) = data_only ? r_fdatasync : r_fsync;
    char p[PATH_MAX];
    if (!active || fd_path(fd, p) < 0 || !under_root(p)) return real(fd);
    int e = fail_errno();
    if (e) { errno = e; return -1; }
    struct stat st;
    int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    pthread_mutex_lock(&mu);
    int rc = real(fd);
    int saved = errno;
    if (rc == 0) log_rec(is_dir ? OP_DIRSYNC : OP_SYNC, p, (uint64_t)data_only, NULL, 0);
    pthread_mutex_unlock(&mu);
    errno = saved;
    return rc;
}

int fsync(int fd) { return do_sync(fd, 0); }
int fdatasync(int fd) { return do_sync(fd, 1); }

/* ------------------------------------------------------------------ open */

static int do_open(int dirfd, const char *path, int flags, mode_t mode, int at) {
    READY();
    char p[PATH_MAX];
    int (*real_open)(const char *, int, ...) = r_open64 ? r_open64 : r_open;
    if (!active || abs_path(at ? dirfd : AT_FDCWD, path, p) < 0 || !under_root(p)) {
        return at ? r_openat64(dirfd, path, flags, mode) : real_open(path, flags, mode);
    }
    int writing = (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
    if (writing) {
        int e = fail_errno();
        if (e) { errno = e; return -1; }
    }
    if (!writing) return at ? r_openat64(dirfd, path, flags, mode) : real_open(path, flags, mode);
    pthread_mutex_lock(&mu);
    struct stat st;
    int existed = stat(p, &st) == 0;
    int fd = at ? r_openat64(dirfd, path, flags, mode) : real_open(path, flags, mode);
    int saved = errno;
    if (fd >= 0) {
        if ((flags & O_CREAT) && !existed) log_rec(OP_CREATE, p, 0, NULL, 0);
        else if ((flags & O_TRUNC) && existed && S_ISREG(st.st_mode) && st.st_size > 0)
            log_rec(OP_TRUNCATE, p, 0, NULL, 0);
    }
    pthread_mutex_unlock(&mu);
    errno = saved;
    return fd;
}

static mode_t va_mode(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = va_mode(flags, ap); va_end(ap);
    return do_open(AT_FDCWD, path, flags, m, 0);
}
int open64(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = va_mode(flags, ap); va_end(ap);
    return do_open(AT_FDCWD, path, flags, m, 0);
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = va_mode(flags, ap); va_end(ap);
    return do_open(dirfd, path, flags, m, 1);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = va_mode(flags, ap); va_end(ap);
    return do_open(dirfd, path, flags, m, 1);
}
int creat(const char *path, mode_t mode) { return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0); }
int creat64(const char *path, mode_t mode) { return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0); }

/* ------------------------------------------------------------------ names */

static int do_rename(int olddir, const char *oldp, int newdir, const char *newp, unsigned int rflags, int kind) {
    READY();
    char a[PATH_MAX], b[PATH_MAX];
    int watched = active && abs_path(olddir, oldp, a) == 0 && abs_path(newdir, newp, b) == 0 &&
                  (under_root(a) || under_root(b));
    if (watched) {
        int e = fail_errno();
        if (e) { errno = e; return -1; }
        pthread_mutex_lock(&mu);
    }
    int rc = kind == 0   ? r_rename(oldp, newp)
             : kind == 1 ? r_renameat(olddir, oldp, newdir, newp)
                         : r_renameat2(olddir, oldp, newdir, newp, rflags);
    if (watched) {
        int saved = errno;
        if (rc == 0) log_rec(OP_RENAME, a, 0, b, strlen(b));
        pthread_mutex_unlock(&mu);
        errno = saved;
    }
    return rc;
}

int rename(const char *o, const char *n) { return do_rename(AT_FDCWD, o, AT_FDCWD, n, 0, 0); }
int renameat(int od, const char *o, int nd, const char *n) { return do_rename(od, o, nd, n, 0, 1); }
int renameat2(int od, const char *o, int nd, const char *n, unsigned int f) { return do_rename(od, o, nd, n, f, 2); }

static int do_name_op(int dirfd, const char *path, int op, int (*call)(int, const char *, int, mode_t), int flags,
                      mode_t mode) {
    READY();
    char p[PATH_MAX];
    int watched = active && abs_path(dirfd, path, p) == 0 && under_root(p);
    if (watched) {
        int e = fail_errno();
        if (e) { errno = e; return -1; }
        pthread_mutex_lock(&mu);
    }
    int rc = call(dirfd, path, flags, mode);
    if (watched) {
        int saved = errno;
        if (rc == 0) log_rec(op, p, 0, NULL, 0);
        pthread_mutex_unlock(&mu);
        errno = saved;
    }
    return rc;
}

static int call_unlink(int d, const char *p, int f, mode_t m) { (void)d; (void)f; (void)m; return r_unlink(p); }
static int call_unlinkat(int d, const char *p, int f, mode_t m) { (void)m; return r_unlinkat(d, p, f); }
static int call_mkdir(int d, const char *p, int f, mode_t m) { (void)d; (void)f; return r_mkdir(p, m); }
static int call_mkdirat(int d, const char *p, int f, mode_t m) { (void)f; return r_mkdirat(d, p, m); }
static int call_rmdir(int d, const char *p, int f, mode_t m) { (void)d; (void)f; (void)m; return r_rmdir(p); }

int unlink(const char *p) { return do_name_op(AT_FDCWD, p, OP_UNLINK, call_unlink, 0, 0); }
int unlinkat(int d, const char *p, int f) {
    return do_name_op(d, p, (f & AT_REMOVEDIR) ? OP_RMDIR : OP_UNLINK, call_unlinkat, f, 0);
}
int mkdir(const char *p, mode_t m) { return do_name_op(AT_FDCWD, p, OP_MKDIR, call_mkdir, 0, m); }
int mkdirat(int d, const char *p, mode_t m) { return do_name_op(d, p, OP_MKDIR, call_mkdirat, 0, m); }
int rmdir(const char *p) { return do_name_op(AT_FDCWD, p, OP_RMDIR, call_rmdir, 0, 0); }
