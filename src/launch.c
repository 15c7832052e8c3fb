/* launch.c: the gate's side of starting an app through the privileged
 * launcher (launcher.c, behind httpgate-launch.socket). Sends the app's name,
 * reads the answer, then waits for the app's port. Knows nothing of sd-bus;
 * backend.c falls back to spawn.c when no launcher answers.
 *
 * Why the connection stays open while the gate waits: the gate has no bus
 * connection (by design it cannot start or watch units), so only the
 * launcher sees the app's unit. Keeping the connection open turns "the unit
 * stopped before it listened" into a line pushed to the gate the moment
 * systemd says so: no polling, no second request, no state kept between the
 * two programs. The gate hangs up as soon as the port accepts, which tells
 * the launcher to stop watching; both sides bound the wait (the gate by its
 * start timeout, the launcher by LAUNCH_WATCH_SEC in launcher.c). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "httpgate.h"

#define LAUNCH_WAIT_FIRST_MS 1 /* first look at the port after the answer */

static uint64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int left_ms(uint64_t deadline)
{
        uint64_t now = mono_ms();

        return now >= deadline ? 0 : (int)(deadline - now);
}

/* Connects to the launcher's socket, bounded by the deadline (a full
 * backlog blocks a unix connect; SO_SNDTIMEO bounds it). */
static int launcher_connect(const char *path, uint64_t deadline)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int ms = left_ms(deadline), fd;
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* unbounded only if this fails */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* The launcher's answers; a second line may arrive in the same read as the
 * first, so bytes after a newline are kept for the next call. */
struct lines {
        char buf[2 * LAUNCH_LINE_MAX + 1];
        size_t len;
};

/* Reads one answer line into out (NUL-terminated, at most LAUNCH_LINE_MAX
 * bytes with its newline), with the status cut off. Returns the status
 * (100..599), or -ETIMEDOUT, -ECONNRESET (closed first), -EPROTO. */
static int read_line(int fd, struct lines *l, char out[LAUNCH_LINE_MAX], uint64_t deadline)
{
        uint64_t status;
        size_t n;
        char *nl;

        while (!(nl = memchr(l->buf, '\n', l->len))) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t got;
                int r;

                if (l->len >= LAUNCH_LINE_MAX)
                        return -EPROTO; /* no newline within LAUNCH_LINE_MAX */
                r = poll(&p, 1, left_ms(deadline));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : -ETIMEDOUT;
                got = read(fd, l->buf + l->len, sizeof(l->buf) - 1 - l->len);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        return -ECONNRESET;
                l->len += (size_t)got;
        }
        n = (size_t)(nl - l->buf); /* line length without the newline */
        if (n < 4 || n >= LAUNCH_LINE_MAX || l->buf[3] != ' ' || parse_uint(l->buf, 3, 599, &status) < 0 ||
            status < 100)
                return -EPROTO;
        memcpy(out, l->buf + 4, n - 4);
        out[n - 4] = '\0';
        l->len -= n + 1;
        memmove(l->buf, nl + 1, l->len);
        return (int)status;
}

static int fail(struct backend_result *ret, int status, const char *why)
{
        *ret = (struct backend_result){ .fd = -1, .status = status, .why = why };
        return 0;
}

int launch_app(const struct options *o, const struct route *r, struct backend_result *ret)
{
        static char why[LAUNCH_LINE_MAX + 128];
        const char *path = o->launcher ? o->launcher : LAUNCHER_SOCKET, *key = r->entry->key;
        uint64_t deadline = mono_ms() + (uint64_t)o->start_timeout * 1000;
        char line[LAUNCH_LINE_MAX], msg[LAUNCH_NAME_MAX + 2];
        struct lines lines = { .len = 0 };
        unsigned wait = LAUNCH_WAIT_FIRST_MS;
        int lfd, fd, status;
        size_t len = strlen(key);

        if (!*path)
                return -ENOENT; /* --launcher= : never use one */
        lfd = launcher_connect(path, deadline);
        /* No launcher, or not one for this gate's user (a gate run by hand or
         * by a test on a machine where httpgate is installed). */
        if (lfd == -ENOENT || lfd == -ECONNREFUSED || lfd == -EACCES || lfd == -EPERM) {
                log_msg(LOG_INFO, "no launcher at %s (%s): starting %s directly", path, strerror(-lfd), key);
                return lfd;
        }
        if (lfd < 0) {
                snprintf(why, sizeof(why), "launcher %s: %s", path, strerror(-lfd));
                return fail(ret, lfd == -ETIMEDOUT ? 504 : 503, why);
        }
        if (len > LAUNCH_NAME_MAX) {
                close(lfd);
                snprintf(why, sizeof(why), "app name longer than %u bytes cannot be launched", LAUNCH_NAME_MAX);
                return fail(ret, 503, why);
        }
        memcpy(msg, key, len);
        msg[len++] = '\n';
        /* One small write into an empty socket buffer: never partial. */
        if (send(lfd, msg, len, MSG_NOSIGNAL) != (ssize_t)len) {
                snprintf(why, sizeof(why), "launcher %s: %s", path, strerror(errno));
                close(lfd);
                return fail(ret, 503, why);
        }
        status = read_line(lfd, &lines, line, deadline);
        if (status == 404) {
                /* The launcher reads its own names file, which does not have
                 * this entry: this gate serves another one (`make run`). */
                close(lfd);
                log_msg(LOG_INFO, "the launcher at %s does not know %s (%s): starting it directly", path, key, line);
                return -ESRCH;
        }
        if (status != 200) {
                close(lfd);
                if (status == -ETIMEDOUT)
                        snprintf(why, sizeof(why), "launcher did not answer for %s within %us", key, o->start_timeout);
                else if (status < 0)
                        snprintf(why, sizeof(why), "launcher %s: %s", path, strerror(-status));
                else
                        snprintf(why, sizeof(why), "launcher: %s", line);
                return fail(ret, status == -ETIMEDOUT ? 504 : 503, why);
        }
        log_msg(LOG_INFO, "%s: %s (by the launcher)", key, line);

        for (;;) {
                if ((fd = backend_connect(o, r->port)) >= 0)
                        break;
                if (left_ms(deadline) == 0) {
                        snprintf(why, sizeof(why), "%s did not listen on port %u within %us", key, r->port,
                                 o->start_timeout);
                        if (lfd >= 0)
                                close(lfd);
                        return fail(ret, 504, why);
                }
                if (lfd < 0) {
                        (void)poll(NULL, 0, (int)wait); /* the launcher stopped watching: just wait */
                } else {
                        struct pollfd p = { .fd = lfd, .events = POLLIN };
                        if (lines.len > 0 || poll(&p, 1, (int)wait) > 0) {
                                status = read_line(lfd, &lines, line, deadline);
                                if (status > 0) {
                                        close(lfd);
                                        snprintf(why, sizeof(why), "%s", line);
                                        return fail(ret, 503, why);
                                }
                                close(lfd); /* closed without a word: its watch ended */
                                lfd = -1;
                        }
                }
                wait = wait * 2 > WAIT_POLL_MAX_MS ? WAIT_POLL_MAX_MS : wait * 2;
        }
        if (lfd >= 0)
                close(lfd); /* the app listens: the launcher may stop watching */
        *ret = (struct backend_result){ .fd = fd };
        return 0;
}
