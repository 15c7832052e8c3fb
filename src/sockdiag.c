/* sockdiag.c: the idle check's view of an app's sockets, from the kernel's
 * socket tables (NETLINK_SOCK_DIAG, inet_diag) rather than from /proc: one
 * dump of the listening sockets finds the app's ports by cgroup id, one
 * dump of the others counts the connections to those ports. Nothing is
 * allocated; each dump is read through one stack buffer. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <linux/inet_diag.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "sockdiag.h"

#define DIAG_BUF        (32 * 1024) /* netlink never makes a dump batch larger */
#define DIAG_BATCHES    16384       /* recv()s per dump: far more sockets than a machine has */
#define DIAG_TIMEOUT_S  5           /* one recv(); the kernel answers at once */
#define WALK_DEPTH      8           /* cgroup levels below the unit's */
#define WALK_ENTRIES    65536       /* entries read from one cgroup directory */

#define STATES_LISTEN    (1u << TCP_LISTEN)
#define STATES_CONNECTED ((1u << TCP_ESTABLISHED) | (1u << TCP_SYN_RECV) | (1u << TCP_FIN_WAIT1) | \
                          (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSE_WAIT) | (1u << TCP_LAST_ACK) | \
                          (1u << TCP_CLOSING))

struct scan {
        struct sockdiag_app *apps;
        size_t n_apps;
        uint8_t wanted[65536 / 8]; /* ports of any app: most connections are someone else's */
};

static bool has_cgroup(const struct sockdiag_app *a, uint64_t id)
{
        for (size_t i = 0; i < a->n_cgroups; i++)
                if (a->cgroups[i] == id)
                        return true;
        return false;
}

static bool has_port(const struct sockdiag_app *a, uint16_t port)
{
        for (size_t i = 0; i < a->n_ports; i++)
                if (a->ports[i] == port)
                        return true;
        return false;
}

static void on_listener(struct scan *s, uint16_t port, uint64_t cgroup)
{
        for (size_t i = 0; i < s->n_apps; i++) {
                struct sockdiag_app *a = &s->apps[i];

                if (!has_cgroup(a, cgroup) || has_port(a, port))
                        continue; /* an IPv4 and an IPv6 listener share a port */
                if (a->n_ports == SOCKDIAG_PORTS_MAX) {
                        a->ports_full = true;
                        continue;
                }
                a->ports[a->n_ports++] = port;
                s->wanted[port / 8] |= (uint8_t)(1u << (port % 8));
        }
}

static void on_connection(struct scan *s, uint16_t port)
{
        if (!(s->wanted[port / 8] & (1u << (port % 8))))
                return;
        for (size_t i = 0; i < s->n_apps; i++)
                if (has_port(&s->apps[i], port))
                        s->apps[i].connections++;
}

/* The attributes follow the inet_diag_msg; INET_DIAG_CGROUP_ID is there
 * whenever the kernel keeps socket cgroups, without being asked for. */
static bool find_cgroup(const struct nlmsghdr *h, uint64_t *id)
{
        size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct inet_diag_msg));

        while (off + NLA_HDRLEN <= h->nlmsg_len) {
                const struct nlattr *a = (const struct nlattr *)((const char *)h + off);

                if (a->nla_len < NLA_HDRLEN || a->nla_len > h->nlmsg_len - off)
                        return false;
                if ((a->nla_type & NLA_TYPE_MASK) == INET_DIAG_CGROUP_ID && a->nla_len >= NLA_HDRLEN + sizeof(*id)) {
                        memcpy(id, (const char *)a + NLA_HDRLEN, sizeof(*id)); /* may be unaligned */
                        return true;
                }
                off += NLA_ALIGN(a->nla_len);
        }
        return false;
}

static int on_socket(struct scan *s, bool listening, const struct nlmsghdr *h)
{
        const struct inet_diag_msg *m = NLMSG_DATA(h);
        uint64_t cgroup;

        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
                return -EBADMSG;
        if (m->idiag_state >= 32)
                return 0;
        /* The kernel filters by state already; checked again, as it costs nothing. */
        if (listening && (STATES_LISTEN & (1u << m->idiag_state)) && find_cgroup(h, &cgroup))
                on_listener(s, ntohs(m->id.idiag_sport), cgroup);
        else if (!listening && (STATES_CONNECTED & (1u << m->idiag_state)))
                on_connection(s, ntohs(m->id.idiag_sport));
        return 0;
}

/* One batch: several messages, the last one perhaps NLMSG_DONE. Returns 1
 * when the dump is over, 0 for more, or negative errno. */
static int on_batch(struct scan *s, bool listening, uint32_t seq, const char *buf, size_t len)
{
        size_t off = 0;

        while (len - off >= NLMSG_HDRLEN) {
                const struct nlmsghdr *h = (const struct nlmsghdr *)(buf + off);
                int r = 0;

                if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > len - off)
                        return -EBADMSG;
                if (h->nlmsg_seq != seq) {
                        /* not an answer to this dump */
                } else if (h->nlmsg_type == NLMSG_DONE) {
                        int err = 0; /* the dump's own error, if any */

                        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(err)))
                                memcpy(&err, NLMSG_DATA(h), sizeof(err));
                        return err < 0 ? err : 1;
                } else if (h->nlmsg_type == NLMSG_ERROR) {
                        struct nlmsgerr e;

                        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(e)))
                                return -EBADMSG;
                        memcpy(&e, NLMSG_DATA(h), sizeof(e));
                        if (e.error < 0)
                                return e.error;
                } else if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
                        r = on_socket(s, listening, h);
                }
                if (r < 0)
                        return r;
                off += NLMSG_ALIGN(h->nlmsg_len);
                if (off > len)
                        break;
        }
        return 0;
}

static int dump(int fd, struct scan *s, uint8_t family, bool listening, uint32_t seq)
{
        struct {
                struct nlmsghdr h;
                struct inet_diag_req_v2 r;
        } req = {
                .h = {
                        .nlmsg_len = sizeof(req),
                        .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                        .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                        .nlmsg_seq = seq,
                },
                .r = {
                        .sdiag_family = family,
                        .sdiag_protocol = IPPROTO_TCP,
                        .idiag_states = listening ? STATES_LISTEN : STATES_CONNECTED,
                },
        };
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        union {
                char b[DIAG_BUF];
                struct nlmsghdr align;
        } buf;

        if (sendto(fd, &req, sizeof(req), 0, (const struct sockaddr *)&kernel, sizeof(kernel)) < 0)
                return -errno;
        for (unsigned n = 0; n < DIAG_BATCHES; n++) {
                struct sockaddr_nl from = { 0 };
                struct iovec iov = { .iov_base = buf.b, .iov_len = sizeof(buf.b) };
                struct msghdr msg = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t got = recvmsg(fd, &msg, 0);
                int r;

                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
                if (msg.msg_flags & MSG_TRUNC)
                        return -EMSGSIZE; /* a batch larger than netlink makes them */
                if (from.nl_pid != 0)
                        continue; /* only the kernel answers */
                r = on_batch(s, listening, seq, buf.b, (size_t)got);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        return -EOVERFLOW;
}

int sockdiag_scan(struct sockdiag_app *apps, size_t n_apps)
{
        static const uint8_t families[] = { AF_INET, AF_INET6 };
        struct timeval tv = { .tv_sec = DIAG_TIMEOUT_S };
        struct scan s = { .apps = apps, .n_apps = n_apps };
        uint32_t seq = 0;
        int fd, r = 0;

        if (n_apps > 0 && !apps)
                return -EINVAL;
        for (size_t i = 0; i < n_apps; i++) {
                if (apps[i].n_cgroups > 0 && !apps[i].cgroups)
                        return -EINVAL;
                apps[i].n_ports = 0;
                apps[i].ports_full = false;
                apps[i].connections = 0;
        }
        if (n_apps == 0)
                return 0;
        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
                r = -errno;
        /* All listeners first: a connection counts only once its port is known. */
        for (size_t i = 0; r == 0 && i < sizeof(families); i++)
                r = dump(fd, &s, families[i], true, ++seq);
        for (size_t i = 0; r == 0 && i < sizeof(families); i++)
                r = dump(fd, &s, families[i], false, ++seq);
        close(fd);
        return r;
}

/* Records the directories below dir (which it closes) at depth levels
 * under the unit's cgroup. */
static int walk(int dir, dev_t dev, unsigned depth, uint64_t *ids, size_t max, size_t *n)
{
        DIR *d = fdopendir(dir);
        int r = 0;

        if (!d) {
                r = -errno;
                close(dir);
                return r;
        }
        for (unsigned k = 0; r == 0; k++) {
                struct dirent *e;
                struct stat st;
                int sub;

                errno = 0;
                e = readdir(d);
                if (!e) {
                        r = -errno; /* 0 at the end */
                        break;
                }
                if (k == WALK_ENTRIES) {
                        r = -E2BIG;
                        break;
                }
                if ((e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) ||
                    strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                        /* a cgroup removed meanwhile has no processes left */
                        if (errno != ENOENT && errno != ENOTDIR)
                                r = -errno;
                        continue;
                }
                if (fstat(sub, &st) < 0)
                        r = -errno;
                else if (st.st_dev != dev)
                        ; /* something mounted here is not part of the tree */
                else if (depth == WALK_DEPTH)
                        r = -ELOOP;
                else if (*n == max)
                        r = -ENOBUFS;
                else {
                        ids[(*n)++] = (uint64_t)st.st_ino;
                        r = walk(sub, dev, depth + 1, ids, max, n);
                        continue; /* walk closed sub */
                }
                close(sub);
        }
        closedir(d);
        return r;
}

int sockdiag_cgroup_ids(const char *path, uint64_t *ids, size_t max)
{
        struct statfs sf;
        struct stat st;
        size_t n = 0;
        int fd, r;

        if (!path || (max > 0 && !ids))
                return -EINVAL;
        if (max > INT_MAX)
                max = INT_MAX; /* the count is returned as an int */
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstatfs(fd, &sf) < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        /* Elsewhere (cgroup v1, a plain directory) an inode is no cgroup id. */
        if (sf.f_type != CGROUP2_SUPER_MAGIC) {
                close(fd);
                return -EMEDIUMTYPE;
        }
        if (max == 0) {
                close(fd);
                return -ENOBUFS;
        }
        ids[n++] = (uint64_t)st.st_ino;
        r = walk(fd, st.st_dev, 0, ids, max, &n);
        return r < 0 ? r : (int)n;
}
