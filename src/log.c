/* log.c: journal entries with structured fields when stderr is the journal
 * (JOURNAL_STREAM names it), a socket (inetd) or /dev/null (the units),
 * plain lines on stderr otherwise. Client bytes go
 * only into their own bounded fields, never into MESSAGE unescaped.
 * Entries go to journald over its native datagram protocol
 * (systemd.io/JOURNAL_NATIVE_PROTOCOL): the per-connection process then
 * needs no libsystemd, which every connection would pay for loading. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "httpgate.h"

#define MSGID_REQUEST "5b2d6a0c1f9e4b7fa3c8e1d2f4a6b901"
#define MSGID_END     "9e1f4c3b2a7d4e8f8b6c5a4d3e2f1a07"
#define FIELD_MAX     (TARGET_LOG_MAX + 64)
#define ENTRY_MAX     8192 /* bytes of one journal entry */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static bool to_journal, no_stderr;

void log_init(void)
{
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        to_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                     st.st_dev == dev && st.st_ino == ino;
        /* Under inetd, stderr is the client's socket: never write there.
         * Under the units it is /dev/null (StandardError=null: no journal
         * stream to set up per connection): nobody would read it. */
        if (!to_journal && fstat(STDERR_FILENO, &st) == 0 &&
            (S_ISSOCK(st.st_mode) || (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3))))
                to_journal = no_stderr = true;
}

struct entry {
        char buf[ENTRY_MAX];
        size_t len;
};

/* Appends "KEY=value\n"; a newline inside a value becomes a space, so the
 * simple form of the protocol always applies. Silently bounded. */
__attribute__((format(printf, 2, 3))) static void field(struct entry *e, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (e->len + 2 >= sizeof(e->buf))
                return;
        va_start(ap, fmt);
        n = vsnprintf(e->buf + e->len, sizeof(e->buf) - e->len - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t)n > sizeof(e->buf) - e->len - 2)
                n = (int)(sizeof(e->buf) - e->len - 2);
        for (char *c = e->buf + e->len; c < e->buf + e->len + n; c++)
                if (*c == '\n')
                        *c = ' ';
        e->len += (size_t)n;
        e->buf[e->len++] = '\n';
}

/* Sends the entry; false when journald cannot be reached. */
static bool journal_send(struct entry *e, int prio)
{
        static const struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET };
        static int fd = -1;

        field(e, "PRIORITY=%d", prio);
        field(e, "SYSLOG_IDENTIFIER=httpgate");
        if (fd < 0 && (fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
                return false;
        return sendto(fd, e->buf, e->len, MSG_NOSIGNAL, (const struct sockaddr *)&sa, sizeof(sa)) >= 0;
}

/* Copies client bytes printable, escaping the rest, at most TARGET_LOG_MAX. */
static void clean(char *out, size_t size, const char *s, size_t len)
{
        size_t o = printable(out, size, s, len);

        if (len > TARGET_LOG_MAX && o + 4 < size)
                snprintf(out + o, size - o, "...");
}

void log_msg(int prio, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (to_journal) {
                struct entry e = { .len = 0 };
                field(&e, "MESSAGE=%s", msg);
                if (journal_send(&e, prio))
                        return;
        }
        if (!no_stderr)
                fprintf(stderr, "httpgate[%d]: %s\n", (int)getpid(), msg);
}

void log_request(const struct log_request *r)
{
        char method[64], target[FIELD_MAX], status[16], referer[FIELD_MAX], agent[FIELD_MAX], answer[64] = "";
        const char *app = r->app ? r->app : "-", *sep = r->why ? ": " : "", *why = r->why ? r->why : "";
        int worst = r->status ? r->status : r->app_status;
        int prio = worst >= 500 ? LOG_WARNING : worst >= 400 ? LOG_NOTICE : LOG_INFO;
        struct entry e = { .len = 0 };

        clean(method, sizeof(method), r->method ? r->method : "", r->method ? r->method_len : 0);
        clean(target, sizeof(target), r->target ? r->target : "",
              r->target ? (r->target_len < TARGET_LOG_MAX ? r->target_len : TARGET_LOG_MAX + 1) : 0);
        snprintf(status, sizeof(status), r->status ? "%d" : "forwarded", r->status);
        if (!r->status && r->app_status)
                snprintf(answer, sizeof(answer), " %d %llu bytes %llu us", r->app_status,
                         (unsigned long long)r->response_bytes, (unsigned long long)r->duration_usec);
        if (to_journal) {
                field(&e, "MESSAGE=%s %s %s -> %s:%u %s%s%s%s", r->client, method, target, app, r->port, status, answer,
                      sep, why);
                field(&e, "MESSAGE_ID=" MSGID_REQUEST);
                field(&e, "HTTPGATE_APP=%s", r->app ? r->app : "");
                field(&e, "HTTPGATE_PORT=%u", r->port);
                field(&e, "HTTPGATE_CLIENT=%s", r->client);
                field(&e, "HTTPGATE_METHOD=%s", method);
                field(&e, "HTTPGATE_TARGET=%s", target);
                field(&e, "HTTPGATE_PROTOCOL=HTTP/1.%u", r->minor);
                field(&e, "HTTPGATE_STATUS=%s", status);
                field(&e, "HTTPGATE_REASON=%s", why);
                if (r->referer_len) {
                        clean(referer, sizeof(referer), r->referer, r->referer_len);
                        field(&e, "HTTPGATE_REFERER=%s", referer);
                }
                if (r->agent_len) {
                        clean(agent, sizeof(agent), r->agent, r->agent_len);
                        field(&e, "HTTPGATE_USER_AGENT=%s", agent);
                }
                if (r->app_status)
                        field(&e, "HTTPGATE_APP_STATUS=%d", r->app_status);
                if (r->answered) {
                        field(&e, "HTTPGATE_RESPONSE_BYTES=%llu", (unsigned long long)r->response_bytes);
                        field(&e, "HTTPGATE_FIRST_BYTE_USEC=%llu", (unsigned long long)r->first_byte_usec);
                }
                field(&e, "HTTPGATE_DURATION_USEC=%llu", (unsigned long long)r->duration_usec);
                if (journal_send(&e, prio))
                        return;
        }
        if (!no_stderr)
                fprintf(stderr, "httpgate[%d]: %s %s %s -> %s:%u %s%s%s%s\n", (int)getpid(), r->client, method, target,
                        app, r->port, status, answer, sep, why);
}

uint64_t log_cpu_usec(void)
{
        struct rusage ru;

        /* Only the journal's entry has the CPU fields: nothing to pay otherwise. */
        if (!to_journal || getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
               (uint64_t)ru.ru_stime.tv_usec;
}

void log_end(const char *client, const char *app, unsigned port, const struct relay_stats *s, uint64_t usec,
             uint64_t cpu_at_start)
{
        unsigned long long up = s->up, down = s->down;
        struct entry e = { .len = 0 };

        if (to_journal) {
                field(&e, "MESSAGE=%s done: %u requests, %llu bytes up, %llu down, %s", client, s->requests, up, down,
                      s->end);
                field(&e, "MESSAGE_ID=" MSGID_END);
                field(&e, "HTTPGATE_APP=%s", app ? app : "");
                field(&e, "HTTPGATE_PORT=%u", port);
                field(&e, "HTTPGATE_CLIENT=%s", client);
                field(&e, "HTTPGATE_REQUESTS=%u", s->requests);
                field(&e, "HTTPGATE_BYTES_UP=%llu", up);
                field(&e, "HTTPGATE_BYTES_DOWN=%llu", down);
                field(&e, "HTTPGATE_DURATION_USEC=%llu", (unsigned long long)usec);
                field(&e, "HTTPGATE_CPU_START_USEC=%llu", (unsigned long long)cpu_at_start);
                field(&e, "HTTPGATE_CPU_USEC=%llu", (unsigned long long)(log_cpu_usec() - cpu_at_start));
                field(&e, "HTTPGATE_END=%s", s->end);
                field(&e, "HTTPGATE_EXIT=%d", s->exit_code);
                if (journal_send(&e, LOG_INFO))
                        return;
        }
        if (!no_stderr)
                fprintf(stderr, "httpgate[%d]: %s done %s:%u requests=%u up=%llu down=%llu %llums end=%s\n", (int)getpid(),
                client, app ? app : "-", port, s->requests, up, down, (unsigned long long)(usec / 1000), s->end);
}
