/* backend.c: reaching the app. Connects on loopback (::1, then 127.0.0.1,
 * since apps bind either) or to the configured address; when nothing
 * listens and the route names an entry, starts the app once under a lock
 * (spawn.c does the starting) and waits until its port accepts, with a
 * short backoff, up to the start timeout. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "httpgate.h"

#define WAIT_FIRST_MS 1 /* first retry after starting: well within 10 ms */

static int connect_to(const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0, one = 1;
        socklen_t l = sizeof(err);
        struct pollfd p;

        if (fd < 0)
                return -errno;
        if (connect(fd, sa, len) == 0)
                goto done;
        if (errno != EINPROGRESS) {
                err = -errno;
                close(fd);
                return err;
        }
        p = (struct pollfd){ .fd = fd, .events = POLLOUT };
        if (poll(&p, 1, timeout_ms) <= 0) {
                close(fd);
                return -ETIMEDOUT;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
                close(fd);
                return err ? -err : -EIO;
        }
done:
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* heads are small */
        return fd;
}

int backend_connect(const struct options *o, unsigned port)
{
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
        struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        int fd;

        if (o->backend) {
                if (inet_pton(AF_INET6, o->backend, &a6.sin6_addr) == 1)
                        return connect_to((struct sockaddr *)&a6, sizeof(a6), CONNECT_TIMEOUT_MS);
                if (inet_pton(AF_INET, o->backend, &a4.sin_addr) == 1)
                        return connect_to((struct sockaddr *)&a4, sizeof(a4), CONNECT_TIMEOUT_MS);
                return -EINVAL;
        }
        a6.sin6_addr = in6addr_loopback;
        fd = connect_to((struct sockaddr *)&a6, sizeof(a6), CONNECT_TIMEOUT_MS);
        if (fd >= 0)
                return fd;
        a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return connect_to((struct sockaddr *)&a4, sizeof(a4), CONNECT_TIMEOUT_MS);
}

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

        (void)nanosleep(&ts, NULL); /* EINTR only shortens one backoff step */
}

/* One lock file per port, so that concurrent first requests start the app
 * once. Without a usable lock directory the start goes on unlocked: a second
 * copy of the app fails to bind its port and exits, which is harmless. */
static int lock_port(const struct options *o, unsigned port, uint64_t deadline)
{
        const char *dir = o->lock_dir ? o->lock_dir : getenv("RUNTIME_DIRECTORY");
        char path[4096];
        unsigned wait = WAIT_FIRST_MS;
        int fd;

        if (!dir) {
                dir = "/run/httpgate";
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        dir = "/tmp";
        }
        snprintf(path, sizeof(path), "%s/start-%u.lock", dir, port);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                log_msg(LOG_WARNING, "cannot open lock %s: %s; starting unlocked", path, strerror(errno));
                return -1;
        }
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK || now_ms() >= deadline) {
                        close(fd);
                        return -ETIMEDOUT;
                }
                sleep_ms(wait);
                wait = wait * 2 > WAIT_POLL_MAX_MS ? WAIT_POLL_MAX_MS : wait * 2;
        }
        return fd;
}

static struct backend_result fail(int status, const char *why)
{
        return (struct backend_result){ .fd = -1, .status = status, .why = why };
}

struct backend_result backend_open(const struct options *o, const struct route *r)
{
        static char why[256];
        uint64_t deadline = now_ms() + (uint64_t)o->start_timeout * 1000;
        unsigned wait = WAIT_FIRST_MS;
        int fd = backend_connect(o, r->port), lock, status;
        pid_t pid;
        const char *spawn_why = NULL;

        if (fd >= 0)
                return (struct backend_result){ .fd = fd };
        if (!r->entry || fd != -ECONNREFUSED) {
                snprintf(why, sizeof(why), "port %u: %s", r->port, strerror(-fd));
                return fail(502, why);
        }
        /* The privileged launcher starts the app as a systemd unit (launch.c);
         * only where none answers does the gate start it itself, below. */
        struct backend_result launched;
        if (launch_app(o, r, &launched) == 0)
                return launched;
        if (o->sandbox) {
                snprintf(why, sizeof(why), "no launcher started %s, and a sandboxed gate (--sandbox) starts no app itself",
                         r->entry->key);
                return fail(503, why);
        }
        lock = lock_port(o, r->port, deadline);
        if (lock == -ETIMEDOUT)
                return fail(504, "another start of the app did not finish in time");
        /* Someone else may have started it while we waited for the lock. */
        if ((fd = backend_connect(o, r->port)) >= 0)
                goto out;
        pid = spawn_app(r->entry, &spawn_why);
        if (pid < 0) {
                snprintf(why, sizeof(why), "cannot start %s: %s", r->entry->key, spawn_why ? spawn_why : strerror((int)-pid));
                fd = -1;
                goto out;
        }
        log_msg(LOG_INFO, "started %s (pid %d) for port %u", r->entry->key, (int)pid, r->port);
        for (;;) {
                if ((fd = backend_connect(o, r->port)) >= 0)
                        goto out;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        snprintf(why, sizeof(why), "%s exited before listening on port %u (%s %d)", r->entry->key,
                                 r->port, WIFEXITED(status) ? "status" : "signal",
                                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                        fd = -1;
                        goto out;
                }
                if (now_ms() >= deadline) {
                        if (lock >= 0)
                                close(lock);
                        snprintf(why, sizeof(why), "%s did not listen on port %u within %us", r->entry->key,
                                 r->port, o->start_timeout);
                        return fail(504, why);
                }
                sleep_ms(wait);
                wait = wait * 2 > WAIT_POLL_MAX_MS ? WAIT_POLL_MAX_MS : wait * 2;
        }
out:
        if (lock >= 0)
                close(lock);
        return fd >= 0 ? (struct backend_result){ .fd = fd } : fail(503, why);
}
