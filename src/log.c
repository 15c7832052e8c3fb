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
static int pid; /* for the stderr lines; no process that logs forks after log_init */

void log_init(void)
{
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        pid = (int)getpid();
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

/* Bounded appending without stdio: the per-request entry is a dozen
 * pieces, and printf's cost per piece shows in make bench. A newline inside
 * a value becomes a space, so the simple form of the journal protocol
 * always applies; one byte stays free for a field's closing newline. */
static void put(struct entry *e, const char *s, size_t n)
{
        size_t room = e->len < sizeof(e->buf) - 1 ? sizeof(e->buf) - 1 - e->len : 0;

        if (n > room)
                n = room;
        for (size_t i = 0; i < n; i++)
                e->buf[e->len++] = s[i] == '\n' ? ' ' : s[i];
}

static void put_str(struct entry *e, const char *s)
{
        put(e, s, strlen(s));
}

static void put_uint(struct entry *e, unsigned long long v)
{
        char d[24];
        size_t i = sizeof(d);

        do
                d[--i] = (char)('0' + v % 10);
        while (v /= 10);
        put(e, d + i, sizeof(d) - i);
}

static void end_field(struct entry *e)
{
        if (e->len < sizeof(e->buf))
                e->buf[e->len++] = '\n';
}

static void field_str(struct entry *e, const char *key, const char *v)
{
        put_str(e, key);
        put_str(e, v);
        end_field(e);
}

static void field_uint(struct entry *e, const char *key, unsigned long long v)
{
        put_str(e, key);
        put_uint(e, v);
        end_field(e);
}

/* Appends "KEY=value\n", formatted. */
__attribute__((format(printf, 2, 3))) static void field(struct entry *e, const char *fmt, ...)
{
        char v[ENTRY_MAX];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(v, sizeof(v), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        put(e, v, (size_t)n < sizeof(v) ? (size_t)n : sizeof(v) - 1);
        end_field(e);
}

/* Sends the entry; false when journald cannot be reached. */
static bool journal_send(struct entry *e, int prio)
{
        static const struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET };
        static int fd = -1;

        field_uint(e, "PRIORITY=", (unsigned)prio);
        field_str(e, "SYSLOG_IDENTIFIER=", "httpgate");
        if (fd < 0 && (fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
                return false;
        return sendto(fd, e->buf, e->len, MSG_NOSIGNAL, (const struct sockaddr *)&sa, sizeof(sa)) >= 0;
}

/* One line on stderr, "httpgate[PID]: ...", in one write: whole among
 * other processes' lines, and one system call (stdio writes an unbuffered
 * stream in pieces). Silently bounded. */
__attribute__((format(printf, 1, 2))) static void stderr_line(const char *fmt, ...)
{
        char line[ENTRY_MAX];
        va_list ap;
        int a = snprintf(line, sizeof(line), "httpgate[%d]: ", pid), n;

        va_start(ap, fmt);
        n = vsnprintf(line + a, sizeof(line) - (size_t)a - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        n = a + (n < (int)sizeof(line) - a - 1 ? n : (int)sizeof(line) - a - 2);
        line[n++] = '\n';
        (void)!write(STDERR_FILENO, line, (size_t)n);
}

/* The same for a message already built. */
static void stderr_msg(const struct entry *m)
{
        stderr_line("%.*s", (int)m->len, m->buf);
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
                struct entry e; /* not zeroed: len says what is written */

                e.len = 0;
                field(&e, "MESSAGE=%s", msg);
                if (journal_send(&e, prio))
                        return;
        }
        if (!no_stderr)
                stderr_line("%s", msg);
}

void log_request(const struct log_request *r)
{
        char method[64], target[FIELD_MAX], referer[FIELD_MAX], agent[FIELD_MAX];
        const char *app = r->app ? r->app : "-";
        int worst = r->status ? r->status : r->app_status;
        int prio = worst >= 500 ? LOG_WARNING : worst >= 400 ? LOG_NOTICE : LOG_INFO;
        struct entry m, e; /* not zeroed: len says what is written */

        m.len = e.len = 0;
        clean(method, sizeof(method), r->method ? r->method : "", r->method ? r->method_len : 0);
        clean(target, sizeof(target), r->target ? r->target : "",
              r->target ? (r->target_len < TARGET_LOG_MAX ? r->target_len : TARGET_LOG_MAX + 1) : 0);
        /* "CLIENT METHOD TARGET -> APP:PORT STATUS[ APP_STATUS N bytes T us][: why]" */
        put_str(&m, r->client);
        put(&m, " ", 1);
        put_str(&m, method);
        put(&m, " ", 1);
        put_str(&m, target);
        put(&m, " -> ", 4);
        put_str(&m, app);
        put(&m, ":", 1);
        put_uint(&m, r->port);
        put(&m, " ", 1);
        if (r->status)
                put_uint(&m, (unsigned)r->status);
        else
                put_str(&m, "forwarded");
        if (!r->status && r->app_status) {
                put(&m, " ", 1);
                put_uint(&m, (unsigned)r->app_status);
                put(&m, " ", 1);
                put_uint(&m, (unsigned long long)r->response_bytes);
                put(&m, " bytes ", 7);
                put_uint(&m, (unsigned long long)r->duration_usec);
                put(&m, " us", 3);
        }
        if (r->why) {
                put(&m, ": ", 2);
                put_str(&m, r->why);
        }
        if (to_journal) {
                put_str(&e, "MESSAGE=");
                put(&e, m.buf, m.len);
                end_field(&e);
                field_str(&e, "MESSAGE_ID=", MSGID_REQUEST);
                field_str(&e, "HTTPGATE_APP=", r->app ? r->app : "");
                field_uint(&e, "HTTPGATE_PORT=", r->port);
                field_str(&e, "HTTPGATE_CLIENT=", r->client);
                field_str(&e, "HTTPGATE_METHOD=", method);
                field_str(&e, "HTTPGATE_TARGET=", target);
                field_uint(&e, "HTTPGATE_PROTOCOL=HTTP/1.", r->minor);
                if (r->status)
                        field_uint(&e, "HTTPGATE_STATUS=", (unsigned)r->status);
                else
                        field_str(&e, "HTTPGATE_STATUS=", "forwarded");
                field_str(&e, "HTTPGATE_REASON=", r->why ? r->why : "");
                if (r->referer_len) {
                        clean(referer, sizeof(referer), r->referer, r->referer_len);
                        field_str(&e, "HTTPGATE_REFERER=", referer);
                }
                if (r->agent_len) {
                        clean(agent, sizeof(agent), r->agent, r->agent_len);
                        field_str(&e, "HTTPGATE_USER_AGENT=", agent);
                }
                if (r->app_status)
                        field_uint(&e, "HTTPGATE_APP_STATUS=", (unsigned)r->app_status);
                if (r->answered) {
                        field_uint(&e, "HTTPGATE_RESPONSE_BYTES=", (unsigned long long)r->response_bytes);
                        field_uint(&e, "HTTPGATE_FIRST_BYTE_USEC=", (unsigned long long)r->first_byte_usec);
                }
                field_uint(&e, "HTTPGATE_DURATION_USEC=", (unsigned long long)r->duration_usec);
                if (journal_send(&e, prio))
                        return;
        }
        if (!no_stderr)
                stderr_msg(&m);
}

void log_end(const char *client, const char *app, unsigned port, const struct relay_stats *s, uint64_t usec)
{
        unsigned long long up = s->up, down = s->down, gate = cpu_usec() - cpu_phases.main;
        const struct cpu_phases *c = &cpu_phases;
        char tls[64] = "";
        struct entry e; /* not zeroed: len says what is written */

        e.len = 0;
        if (to_journal) {
                field(&e, "MESSAGE=%s done: %u requests, %llu bytes up, %llu down, %s", client, s->requests, up, down,
                      s->end);
                field_str(&e, "MESSAGE_ID=", MSGID_END);
                field_str(&e, "HTTPGATE_APP=", app ? app : "");
                field_uint(&e, "HTTPGATE_PORT=", port);
                field_str(&e, "HTTPGATE_CLIENT=", client);
                field_uint(&e, "HTTPGATE_REQUESTS=", s->requests);
                field_uint(&e, "HTTPGATE_BYTES_UP=", up);
                field_uint(&e, "HTTPGATE_BYTES_DOWN=", down);
                field_uint(&e, "HTTPGATE_DURATION_USEC=", (unsigned long long)usec);
                field_uint(&e, "HTTPGATE_CPU_START_USEC=", c->main);
                field_uint(&e, "HTTPGATE_CPU_EXEC_USEC=", c->exec);
                field_uint(&e, "HTTPGATE_CPU_INIT_USEC=", c->init);
                field_uint(&e, "HTTPGATE_CPU_USEC=", gate);
                if (c->tls_handshake) {
                        field_uint(&e, "HTTPGATE_TLS_CREDENTIALS_USEC=", c->tls_credentials);
                        field_uint(&e, "HTTPGATE_TLS_HANDSHAKE_USEC=", c->tls_handshake);
                }
                field_str(&e, "HTTPGATE_END=", s->end);
                field(&e, "HTTPGATE_EXIT=%d", s->exit_code);
                if (journal_send(&e, LOG_INFO))
                        return;
        }
        if (c->tls_handshake)
                snprintf(tls, sizeof(tls), ",credentials:%llu,handshake:%llu", (unsigned long long)c->tls_credentials,
                         (unsigned long long)c->tls_handshake);
        if (!no_stderr)
                stderr_line("%s done %s:%u requests=%u up=%llu down=%llu %llums cpu=exec:%llu,init:%llu,gate:%llu%s end=%s",
                            client, app ? app : "-", port, s->requests, up, down, (unsigned long long)(usec / 1000),
                            (unsigned long long)c->exec, (unsigned long long)c->init, gate, tls, s->end);
}
