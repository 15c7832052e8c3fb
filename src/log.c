/* log.c: journal entries with structured fields when stderr is the journal
 * (JOURNAL_STREAM names it), plain lines on stderr otherwise. Client bytes go
 * only into their own bounded fields, never into MESSAGE unescaped. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "httpgate.h"

#define MSGID_REQUEST "5b2d6a0c1f9e4b7fa3c8e1d2f4a6b901"
#define MSGID_END     "9e1f4c3b2a7d4e8f8b6c5a4d3e2f1a07"
#define FIELD_MAX     (TARGET_LOG_MAX + 64)

static bool to_journal;

void log_init(void)
{
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        to_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                     st.st_dev == dev && st.st_ino == ino;
}

/* Copies client bytes printable, escaping the rest, at most TARGET_LOG_MAX. */
static void clean(char *out, size_t size, const char *s, size_t len)
{
        size_t o = 0;

        for (size_t i = 0; i < len && o + 5 < size; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c >= 0x20 && c < 0x7f && c != '\\')
                        out[o++] = (char)c;
                else
                        o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        }
        if (len > TARGET_LOG_MAX && o + 4 < size)
                o += (size_t)snprintf(out + o, size - o, "...");
        out[o] = '\0';
}

void log_msg(int prio, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (to_journal)
                sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%i", prio, "SYSLOG_IDENTIFIER=httpgate", NULL);
        else
                fprintf(stderr, "httpgate[%d]: %s\n", (int)getpid(), msg);
}

void log_request(const struct log_request *r)
{
        char method[64], target[FIELD_MAX], status[16];
        int prio = r->status >= 500 ? LOG_WARNING : r->status >= 400 ? LOG_NOTICE : LOG_INFO;

        clean(method, sizeof(method), r->method ? r->method : "", r->method ? r->method_len : 0);
        clean(target, sizeof(target), r->target ? r->target : "",
              r->target ? (r->target_len < TARGET_LOG_MAX ? r->target_len : TARGET_LOG_MAX + 1) : 0);
        if (r->status)
                snprintf(status, sizeof(status), "%d", r->status);
        else
                snprintf(status, sizeof(status), "forwarded");
        if (!to_journal) {
                fprintf(stderr, "httpgate[%d]: %s %s %s -> %s:%u %s%s%s\n", (int)getpid(), r->client, method,
                        target, r->app ? r->app : "-", r->port, status, r->why ? ": " : "", r->why ? r->why : "");
                return;
        }
        sd_journal_send("MESSAGE=%s %s %s -> %s:%u %s%s%s", r->client, method, target,
                        r->app ? r->app : "-", r->port, status, r->why ? ": " : "", r->why ? r->why : "",
                        "MESSAGE_ID=" MSGID_REQUEST, "PRIORITY=%i", prio, "SYSLOG_IDENTIFIER=httpgate",
                        "HTTPGATE_APP=%s", r->app ? r->app : "", "HTTPGATE_PORT=%u", r->port,
                        "HTTPGATE_CLIENT=%s", r->client, "HTTPGATE_METHOD=%s", method,
                        "HTTPGATE_TARGET=%s", target, "HTTPGATE_STATUS=%s", status,
                        "HTTPGATE_REASON=%s", r->why ? r->why : "", NULL);
}

void log_end(const char *client, const char *app, unsigned port, const struct relay_stats *s, uint64_t usec)
{
        if (!to_journal) {
                fprintf(stderr, "httpgate[%d]: %s done %s:%u requests=%u up=%llu down=%llu %llums end=%s\n",
                        (int)getpid(), client, app ? app : "-", port, s->requests, (unsigned long long)s->up,
                        (unsigned long long)s->down, (unsigned long long)(usec / 1000), s->end);
                return;
        }
        sd_journal_send("MESSAGE=%s done: %u requests, %llu bytes up, %llu down, %s", client, s->requests,
                        (unsigned long long)s->up, (unsigned long long)s->down, s->end,
                        "MESSAGE_ID=" MSGID_END, "PRIORITY=%i", LOG_INFO, "SYSLOG_IDENTIFIER=httpgate",
                        "HTTPGATE_APP=%s", app ? app : "", "HTTPGATE_PORT=%u", port, "HTTPGATE_CLIENT=%s", client,
                        "HTTPGATE_REQUESTS=%u", s->requests, "HTTPGATE_BYTES_UP=%llu",
                        (unsigned long long)s->up, "HTTPGATE_BYTES_DOWN=%llu", (unsigned long long)s->down,
                        "HTTPGATE_DURATION_USEC=%llu", (unsigned long long)usec, "HTTPGATE_END=%s", s->end,
                        "HTTPGATE_EXIT=%d", s->exit_code, NULL);
}
