/* sandbox.c: the gate confines itself, once, after intake and the names file
 * and before the first byte from the client: resource limits, not dumpable,
 * no new privileges, a Landlock ruleset for the file system and a seccomp
 * filter compiled into the binary. It stands in for the unit's namespace
 * settings, which systemd sets up anew for every connection (httpgate.units(5)
 * has the figures). Owns no policy about requests; main.c calls it as one
 * stage, with --sandbox. Everything it sets is irrevocable and inherited. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "httpgate.h"

/* ---- limits of a sandboxed instance ---- */
#define SANDBOX_FILES_MAX 64u            /* open descriptors: client, app, pipes, files */
#define SANDBOX_FILE_SIZE_MAX (1u << 20) /* bytes a write may grow a file to (ticket key) */

/* ---- Landlock (linux/landlock.h, written out: musl has no kernel headers) ---- */
#define LL_CREATE_RULESET_VERSION 1u
#define LL_RULE_PATH_BENEATH      1
#define LL_EXECUTE     (1ull << 0)
#define LL_WRITE_FILE  (1ull << 1)
#define LL_READ_FILE   (1ull << 2)
#define LL_READ_DIR    (1ull << 3)
#define LL_REMOVE_FILE (1ull << 5)
#define LL_MAKE_REG    (1ull << 8)
#define LL_TRUNCATE    (1ull << 14)          /* ABI 3 */
#define LL_IOCTL_DEV   (1ull << 15)          /* ABI 5 */
#define LL_FS_ABI1     ((1ull << 13) - 1)    /* execute .. make_sym */
#define LL_FS_ABI2     ((1ull << 14) - 1)    /* + refer */
#define LL_FS_ABI3     ((1ull << 15) - 1)    /* + truncate */
#define LL_FS_ABI5     ((1ull << 16) - 1)    /* + ioctl_dev */
#define LL_FILE_RIGHTS (LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV)
#define LL_SCOPE_ABSTRACT_UNIX (1ull << 0)   /* ABI 6 */
#define LL_SCOPE_SIGNAL        (1ull << 1)   /* ABI 6 */
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule       445
#define SYS_landlock_restrict_self  446
#endif

struct ll_ruleset_attr {
        uint64_t handled_access_fs, handled_access_net, scoped;
};
struct ll_path_beneath {
        uint64_t allowed_access;
        int32_t parent_fd;
} __attribute__((packed));

#define READ_ONLY  LL_READ_FILE
#define READ_TREE  (LL_READ_FILE | LL_READ_DIR)
#define WRITE_TREE (LL_READ_FILE | LL_READ_DIR | LL_WRITE_FILE | LL_MAKE_REG | LL_REMOVE_FILE | LL_TRUNCATE)

struct ruleset {
        int fd;
        uint64_t handled;
};

/* Allows access beneath path (or to the file path). A path that does not
 * exist is no error: the gate's own open of it will fail and say so. */
static int allow(const struct ruleset *rs, const char *path, uint64_t access)
{
        struct ll_path_beneath pb;
        struct stat st;
        int fd, r = 0;

        if (!path || !*path)
                return 0;
        fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return 0;
        if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
                access &= LL_FILE_RIGHTS;
        pb = (struct ll_path_beneath){ .allowed_access = access & rs->handled, .parent_fd = fd };
        if (pb.allowed_access && syscall(SYS_landlock_add_rule, rs->fd, LL_RULE_PATH_BENEATH, &pb, 0) < 0)
                r = -errno;
        close(fd);
        return r;
}

static void parent_of(const char *path, char *out, size_t size)
{
        const char *slash = strrchr(path, '/');

        if (!slash)
                snprintf(out, size, ".");
        else
                snprintf(out, size, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

/* DIR/void for each directory of the names file's app entries: from its
 * index, or from the whole file when it was parsed (the index is made from
 * the same list). */
static int allow_void_files(const struct ruleset *rs, const struct names *n)
{
        const char *dirs[INDEX_DIRS_MAX], *packed;
        size_t bytes;
        char buf[4096];
        int count = 0, r = 0;

        if (!n)
                return 0;
        if (!n->index.map)
                count = names_dirs(n, dirs, INDEX_DIRS_MAX);
        else if (index_dirs(&n->index, &packed, &bytes) < 0)
                count = -E2BIG;
        else /* by its length: index_open checked that it ends with a NUL inside the file */
                for (const char *p = packed; p < packed + bytes && count < (int)INDEX_DIRS_MAX; p += strlen(p) + 1)
                        dirs[count++] = p;
        if (count < 0) {
                /* XXX More app directories than INDEX_DIRS_MAX: any void
                 * file stays readable (read only, as far as the gate's user
                 * may), rather than a rule per directory for every
                 * connection. */
                return allow(rs, "/", READ_ONLY);
        }
        for (int i = 0; i < count && !r; i++) {
                snprintf(buf, sizeof(buf), "%s/void", dirs[i]);
                r = allow(rs, buf, READ_ONLY);
        }
        return r;
}

/* Where the gate reads and writes after this point (httpgate.units(5)). */
static int add_rules(const struct ruleset *rs, const struct options *o, const struct names *n)
{
        char buf[4096];
        int r = 0;

        /* Its own directories, as index.c and tls.c find them: the names
         * index; with TLS, the ticket key (the plain gate has no business
         * with it). */
        r = r ?: allow(rs, cache_dir(), WRITE_TREE);
        r = r ?: allow(rs, MARK_DIR, WRITE_TREE); /* while idle stopping is on (mark.c) */
        if ((o->pem && *o->pem) || o->tls_dir)
                r = r ?: allow(rs, state_dir(), WRITE_TREE);
        if (o->tls_ticket_key)
                r = r ?: allow(rs, o->tls_ticket_key, READ_ONLY);
        /* Certificates: systemd's copies, the files given, certbot's tree
         * (live/ links into archive/, beside it). */
        r = r ?: allow(rs, getenv("CREDENTIALS_DIRECTORY"), READ_TREE);
        for (const char *p = o->pem; p && *p && !r;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                snprintf(buf, sizeof(buf), "%.*s", (int)len, p);
                r = allow(rs, buf, READ_ONLY);
                p = comma ? comma + 1 : p + len;
        }
        if (o->tls_dir) {
                parent_of(o->tls_dir, buf, sizeof(buf));
                r = r ?: allow(rs, o->tls_dir, READ_TREE);
                r = r ?: allow(rs, buf, READ_TREE);
        }
        /* Void files: --void, and DIR/void of each entry's directory. */
        r = r ?: allow(rs, o->void_path, READ_ONLY);
        return r ?: allow_void_files(rs, n);
}

/* Returns the ABI version in force (> 0), 0 when the kernel has no
 * Landlock, or negative errno when it has and the ruleset failed. */
static int landlock(const struct options *o, const struct names *n)
{
        struct ll_ruleset_attr attr = { 0 };
        struct ruleset rs;
        size_t attr_size = sizeof(attr.handled_access_fs);
        long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
        int r;

        /* ENOSYS: an older kernel; EOPNOTSUPP: switched off at boot; EPERM: a
         * container manager's filter that does not know it (nspawn 252). */
        if (abi < 0)
                return errno == ENOSYS || errno == EOPNOTSUPP || errno == EPERM ? 0 : -errno;
        attr.handled_access_fs = abi >= 5 ? LL_FS_ABI5 : abi >= 3 ? LL_FS_ABI3 : abi >= 2 ? LL_FS_ABI2 : LL_FS_ABI1;
        if (abi >= 6) {
                /* No signals to processes outside this instance, no abstract
                 * unix sockets outside it. */
                attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
                attr_size = sizeof(attr);
        }
        rs.handled = attr.handled_access_fs;
        rs.fd = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
        if (rs.fd < 0)
                return -errno;
        r = add_rules(&rs, o, n);
        if (r == 0 && syscall(SYS_landlock_restrict_self, rs.fd, 0) < 0)
                r = -errno;
        close(rs.fd);
        return r < 0 ? r : (int)abi;
}

/* Said once per machine (a mark in the cache directory), not per connection. */
static void landlock_missing(void)
{
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/landlock-unavailable", cache_dir());
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return;
        close(fd);
        log_msg(LOG_WARNING, "sandbox: this kernel has no Landlock; the file system is not confined by the gate. "
                             "httpgate.units(5) has the drop-in that confines it with systemd's namespaces");
}

static int limits(void)
{
        const struct {
                int resource;
                rlim_t max;
        } lim[] = {
                { RLIMIT_NOFILE, SANDBOX_FILES_MAX },
                { RLIMIT_FSIZE, SANDBOX_FILE_SIZE_MAX },
                { RLIMIT_NPROC, 0 }, /* no fork (the filter refuses it too) */
                { RLIMIT_CORE, 0 },  /* a core would hold TLS keys */
        };

        /* A write past the size limit fails with EFBIG instead of killing. */
        signal(SIGXFSZ, SIG_IGN);
        for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
                struct rlimit rl;
                if (getrlimit(lim[i].resource, &rl) < 0)
                        return -errno;
                if (rl.rlim_max > lim[i].max)
                        rl.rlim_max = lim[i].max;
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(lim[i].resource, &rl) < 0)
                        return -errno;
        }
        return 0;
}

int sandbox_enter(const struct options *o, const struct names *n, char *why, size_t why_size)
{
        int r, abi;

        if ((r = limits()) < 0) {
                snprintf(why, why_size, "sandbox: resource limits: %s", strerror(-r));
                return r;
        }
        /* Not dumpable: no other process of the gate's user may ptrace this
         * one or read its memory through /proc (other instances' TLS keys). */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                r = -errno;
                snprintf(why, why_size, "sandbox: prctl: %s", strerror(errno));
                return r;
        }
        abi = landlock(o, n);
        if (abi < 0) {
                snprintf(why, why_size, "sandbox: Landlock: %s", strerror(-abi));
                return abi;
        }
        if (abi == 0)
                landlock_missing();
        if ((r = seccomp_filter_install()) < 0) {
                snprintf(why, why_size, "sandbox: seccomp filter: %s", strerror(-r));
                return r;
        }
        return abi;
}
