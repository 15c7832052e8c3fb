/* rewrite.c: the head the app gets. From a parsed request and the target
 * route.c rewrote: the request line, the gate's own X-Pil lines (and
 * Forwarded ones when asked), then the client's fields without the ones the
 * gate owns. Pure: no I/O, no state; relay.c decides when. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "httpgate.h"

/* The path to route on: origin-form as is; absolute-form by its path
 * (RFC 9112 3.2.2), empty when it has none; "*" (OPTIONS only) empty with
 * *asterisk set. Returns 0 or 400. */
int target_path(const char *head, const struct request *q, struct span *path, bool *asterisk)
{
        const char *s = head + q->target.off;
        uint32_t len = q->target.len, i;

        *asterisk = false;
        *path = (struct span){ 0, 0 };
        if (s[0] == '/') {
                *path = q->target;
                return 0;
        }
        if (len == 1 && s[0] == '*') {
                *asterisk = true;
                return q->method.len == 7 && memcmp(head + q->method.off, "OPTIONS", 7) == 0 ? 0 : 400;
        }
        if (len > 7 && strncasecmp(s, "http://", 7) == 0)
                i = 7;
        else if (len > 8 && strncasecmp(s, "https://", 8) == 0)
                i = 8;
        else
                return 400;
        while (i < len && s[i] != '/' && s[i] != '?')
                i++;
        if (i < len && s[i] == '/')
                *path = (struct span){ q->target.off + i, len - i };
        return 0;
}

/* Fields the app must not get from the client: the gate's own, and an
 * Upgrade the gate will not follow. */
static bool dropped(const struct conn_ctx *ctx, const char *head, struct span f, bool no_upgrade)
{
        if (field_is(head, f, "x-pil") || (no_upgrade && field_is(head, f, "upgrade")))
                return true;
        return ctx->opt->forwarded && (field_is(head, f, "forwarded") || field_is(head, f, "x-forwarded-for") ||
                                       field_is(head, f, "x-forwarded-proto") || field_is(head, f, "x-forwarded-host"));
}

struct out {
        char *p;
        size_t len, cap;
        bool full;
};

static void add(struct out *o, const void *p, size_t n)
{
        if (o->full || o->len + n > o->cap) {
                o->full = true;
                return;
        }
        memcpy(o->p + o->len, p, n);
        o->len += n;
}

__attribute__((format(printf, 2, 3))) static void addf(struct out *o, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (o->full)
                return;
        va_start(ap, fmt);
        n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= o->cap - o->len)
                o->full = true;
        else
                o->len += (size_t)n;
}

int head_rewrite(const struct conn_ctx *ctx, const struct request *q, const char *head, const char *target,
                 size_t tlen, bool no_upgrade, char *buf, size_t cap)
{
        struct out o = { buf, 0, cap, false };
        const char *a = ctx->client_addr;

        add(&o, head + q->method.off, q->method.len);
        add(&o, " ", 1);
        add(&o, target, tlen);
        add(&o, head + q->version.off - 1, q->line_len - q->version.off + 1); /* " HTTP/1.x" CRLF */
        addf(&o, "X-Pil: *Gate=%s\r\nX-Pil: *Adr=%s\r\n", ctx->gate, a);
        if (ctx->cipher)
                addf(&o, "X-Pil: *Cipher=%s\r\n", ctx->cipher);
        for (unsigned k = 0; k < q->n_fields; k++)
                if (!dropped(ctx, head, q->fields[k], no_upgrade))
                        add(&o, head + q->fields[k].off, q->fields[k].len);
        if (ctx->opt->forwarded) {
                /* RFC 7239 6: an IPv6 address is quoted and bracketed. */
                if (strchr(a, ':'))
                        addf(&o, "Forwarded: for=\"[%s]\";proto=%s\r\n", a, ctx->gate);
                else
                        addf(&o, "Forwarded: for=%s;proto=%s\r\n", a, ctx->gate);
                addf(&o, "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n", a, ctx->gate);
        }
        add(&o, "\r\n", 2);
        return o.full ? -ENOBUFS : (int)o.len;
}
