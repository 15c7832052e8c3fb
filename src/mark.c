/* mark.c: the gate's mark of a request routed to an app, for the idle
 * checker (httpgate-launch --stop-idle, run by httpgate-idle.timer): the
 * modification time of MARK_DIR/KEY is the time of that app's last
 * request. One system call per request at most (utimensat), one a second
 * per app in a process; none once the directory turned out to be absent or
 * closed to the gate: the checker makes it only while idle stopping is on.
 * An app's open connections count for the checker by themselves (it sees
 * them through sock_diag); the mark covers the short ones in between. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "httpgate.h"

#define MARK_EVERY_MS 1000 /* a busy app needs no mark per request */
#define MARKED_MAX    8    /* apps remembered per process */

static bool off;
static struct {
        const struct name_entry *e;
        uint64_t at_ms;
} marked[MARKED_MAX];
static unsigned next_slot;

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void mark_request(const struct name_entry *e)
{
        char path[sizeof(MARK_DIR) + LAUNCH_NAME_MAX + 2];
        uint64_t now;
        unsigned i;
        int fd;

        if (off || !e || e->port == 0 || !e->key[0] || e->key[0] == '.' || strchr(e->key, '/') ||
            strlen(e->key) > LAUNCH_NAME_MAX)
                return;
        now = now_ms();
        for (i = 0; i < MARKED_MAX && marked[i].e != e; i++)
                ;
        if (i < MARKED_MAX && now - marked[i].at_ms < MARK_EVERY_MS)
                return;
        snprintf(path, sizeof(path), "%s/%s", MARK_DIR, e->key);
        if (utimensat(AT_FDCWD, path, NULL, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT ||
                    (fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0640)) < 0) {
                        off = true; /* no directory, or not the gate's to write: idle stopping is off */
                        return;
                }
                close(fd);
        }
        if (i == MARKED_MAX)
                i = next_slot++ % MARKED_MAX;
        marked[i].e = e;
        marked[i].at_ms = now;
}
