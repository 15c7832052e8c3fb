/* unit.c: the table-driven unit tests of the parsers and the routing table:
 * parse_uint, request_parse, the chunked framer, the names file and route.
 * Prints "ok - ..." or "not ok - ..." per case (a "#" line after a failure
 * says what came instead); exits 1 when any case failed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpgate.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define S(s)          s, sizeof(s) - 1 /* a literal and its length, NUL bytes included */
#define SHOW_MAX      72               /* bytes of an input shown in a test name */

static unsigned passed, failed;

/* One result line; when it failed and got is set, a "#" line with got. */
__attribute__((format(printf, 3, 4))) static void result(bool ok, const char *got, const char *fmt, ...)
{
        va_list ap;

        printf("%s - ", ok ? "ok" : "not ok");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        if (!ok && got)
                printf("#   got: %s\n", got);
        if (ok)
                passed++;
        else
                failed++;
}

/* s[0..len) quoted and escaped for a test name; four may share one printf. */
static const char *show(const char *s, size_t len)
{
        static char ring[4][SHOW_MAX * 4 + 8];
        static unsigned next;
        char *out = ring[next++ % ARRAY_SIZE(ring)], *o = out;

        *o++ = '"';
        for (size_t i = 0; i < len && i < SHOW_MAX; i++) {
                unsigned char c = (unsigned char)s[i];
                const char *esc = c == '\r' ? "\\r" : c == '\n' ? "\\n" : c == '\t' ? "\\t" : NULL;

                if (esc)
                        o = stpcpy(o, esc);
                else if (c == '"' || c == '\\')
                        o += sprintf(o, "\\%c", c);
                else if (c < 0x20 || c >= 0x7f)
                        o += sprintf(o, "\\x%02x", c);
                else
                        *o++ = (char)c;
        }
        strcpy(o, len > SHOW_MAX ? "\"..." : "\"");
        return out;
}

/* A result code as the tables write it: a number, or -ENAME. */
static const char *code(int r)
{
        static const struct {
                int e;
                const char *name;
        } names[] = {
                { EAGAIN, "-EAGAIN" },   { EINVAL, "-EINVAL" }, { ERANGE, "-ERANGE" },
                { ENOBUFS, "-ENOBUFS" }, { EPERM, "-EPERM" },   { ENOENT, "-ENOENT" },
        };
        static char ring[4][16]; /* four may share one printf */
        static unsigned next;
        char *out = ring[next++ % ARRAY_SIZE(ring)];

        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (r == -names[i].e)
                        return names[i].name;
        snprintf(out, sizeof(ring[0]), "%d", r);
        return out;
}

/* prefix, n copies of unit, suffix: a new buffer of *len bytes (plus NUL). */
static char *build(const char *prefix, const char *unit, size_t n, const char *suffix, size_t *len)
{
        size_t p = strlen(prefix), u = strlen(unit), s = strlen(suffix);
        char *buf = malloc(p + n * u + s + 1), *o;

        if (!buf) {
                perror("unit: malloc");
                exit(2);
        }
        o = stpcpy(buf, prefix);
        for (size_t i = 0; i < n; i++)
                o = stpcpy(o, unit);
        strcpy(o, suffix);
        *len = p + n * u + s;
        return buf;
}

/* ---- parse_uint ---- */

static const struct uint_case {
        const char *in;
        uint64_t max;
        int want;       /* 0, -EINVAL or -ERANGE */
        uint64_t value; /* when want is 0 */
} uint_cases[] = {
        { "0", 65535, 0, 0 },
        { "1024", 65535, 0, 1024 },
        { "65535", 65535, 0, 65535 },
        { "0080", 65535, 0, 80 },
        { "5", 5, 0, 5 },
        { "18446744073709551615", UINT64_MAX, 0, UINT64_MAX },
        { "65536", 65535, -ERANGE, 0 },
        { "6", 5, -ERANGE, 0 },
        { "9", 5, -ERANGE, 0 },
        { "1", 0, -ERANGE, 0 },
        { "10", 9, -ERANGE, 0 },
        { "18446744073709551616", UINT64_MAX, -ERANGE, 0 },
        { "99999999999999999999999", UINT64_MAX, -ERANGE, 0 },
        { "", 65535, -EINVAL, 0 },
        { "-1", 65535, -EINVAL, 0 },
        { "+1", 65535, -EINVAL, 0 },
        { " 1", 65535, -EINVAL, 0 },
        { "1 ", 65535, -EINVAL, 0 },
        { "0x10", 65535, -EINVAL, 0 },
        { "1a", 65535, -EINVAL, 0 },
        { "1.5", 65535, -EINVAL, 0 },
};

static void test_parse_uint(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(uint_cases); k++) {
                const struct uint_case *c = &uint_cases[k];
                uint64_t v = 0, w = 0;
                int r = parse_uint(c->in, strlen(c->in), c->max, &v);
                int rs = parse_uint_str(c->in, c->max, &w);
                char got[96], want[24];

                snprintf(got, sizeof(got), "%s (value %llu), parse_uint_str %s", code(r), (unsigned long long)v,
                         code(rs));
                snprintf(want, sizeof(want), "%llu", (unsigned long long)c->value);
                result(r == c->want && rs == r && (r != 0 || (v == c->value && w == v)), got,
                       "parse_uint %s max %llu -> %s", show(c->in, strlen(c->in)), (unsigned long long)c->max,
                       c->want ? code(c->want) : want);
        }
}

/* ---- request_parse ---- */

/* Valid heads and what request_parse() makes of them, written as
 * "method target version [length=N|chunked] [upgrade] [close] fields=N".
 * Also checked: line_len, head_len (through the first empty line, whatever
 * follows) and that the field spans tile the head, each ending in CRLF. */
static const struct head_case {
        const char *in;
        const char *want;
} heads[] = {
        { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1 fields=1" },
        { "GET /a?b=c HTTP/1.0\r\n\r\n", "GET /a?b=c HTTP/1.0 close fields=0" },
        { "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET / HTTP/1.0 fields=1" },
        { "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET / HTTP/1.1 close fields=2" },
        { "HEAD /x HTTP/1.1\r\nhost: x:8080\r\n\r\n", "HEAD /x HTTP/1.1 fields=1" },
        { "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "OPTIONS * HTTP/1.1 fields=1" },
        { "DELETE /r/1 HTTP/1.1\r\nHost: x\r\n\r\n", "DELETE /r/1 HTTP/1.1 fields=1" },
        { "GET http://example.com:8080/a?b HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
          "GET http://example.com:8080/a?b HTTP/1.1 fields=1" },
        { "GET http://example.com/ HTTP/1.0\r\n\r\n", "GET http://example.com/ HTTP/1.0 close fields=0" },
        { "GET /%7e~!$&'()*+,;=:@ HTTP/1.1\r\nHost: x\r\n\r\n", "GET /%7e~!$&'()*+,;=:@ HTTP/1.1 fields=1" },
        { "GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Tab: a\tb\r\nX-Text: caf\xc3\xa9\r\n\r\n",
          "GET / HTTP/1.1 fields=4" },
        /* bodies */
        { "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", "POST /form HTTP/1.1 length=5 fields=2" },
        { "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "POST / HTTP/1.1 length=5 fields=2" },
        { "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", "POST / HTTP/1.0 length=3 close fields=1" },
        { "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "POST / HTTP/1.1 fields=2" },
        { "PUT / HTTP/1.1\r\nHost: x\r\ncontent-length:\t 42 \t\r\n\r\n", "PUT / HTTP/1.1 length=42 fields=2" },
        { "PATCH / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
          "PATCH / HTTP/1.1 length=7 fields=3" },
        { "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4611686018427387904\r\n\r\n",
          "POST / HTTP/1.1 length=4611686018427387904 fields=2" },
        { "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "POST / HTTP/1.1 chunked fields=2" },
        { "POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding:  Chunked \r\n\r\n5\r\nhello\r\n",
          "POST / HTTP/1.1 chunked fields=2" },
        /* upgrade needs both fields */
        { "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nOrigin: o\r\n\r\n",
          "GET /ws HTTP/1.1 upgrade fields=4" },
        { "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, upgrade\r\n\r\n",
          "GET /ws HTTP/1.1 upgrade fields=3" },
        { "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n", "GET /ws HTTP/1.1 fields=2" },
        { "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", "GET /ws HTTP/1.1 fields=2" },
        /* pipelined: the next head is not this one's */
        { "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\n", "GET / HTTP/1.1 fields=1" },
};

/* Refused heads and their status. */
static const struct refusal {
        const char *in;
        size_t len;
        int want;
} refusals[] = {
        /* line endings: CRLF only */
        { S("GET / HTTP/1.1\nHost: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\n\n"), 400 },
        { S("GET /\r HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\n\rX"), 400 },
        /* field syntax */
        { S("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\n: y\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nX(y): z\r\n\r\n"), 400 },
        /* NUL and control bytes */
        { S("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nX\0: b\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nX: a\x01\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: x\r\nX: a\x1b[0m\r\n\r\n"), 400 },
        { S("GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        /* non-ASCII in the request line */
        { S("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("G\xc3\x89T / HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\xff\r\nHost: x\r\n\r\n"), 400 },
        /* request line shape */
        { S("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S(" GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1 \r\nHost: x\r\n\r\n"), 400 },
        { S("GET /\r\nHost: x\r\n\r\n"), 400 },
        { S("GE(T / HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET / http/1.1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1\r\nHost: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.x\r\nHost: x\r\n\r\n"), 400 },
        { S("GET / HTTP/11.1\r\nHost: x\r\n\r\n"), 400 },
        /* Host (RFC 9112 3.2) */
        { S("GET / HTTP/1.1\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nX-Host: x\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400 },
        { S("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400 },
        { S("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400 },
        /* framing (RFC 9112 6) */
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 400 },
        { S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400 },
        /* RFC 9112 6.3: chunked not last, or twice: 400; other codings: 501 */
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"), 501 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5a\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4611686018427387905\r\n\r\n"), 400 },
        { S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400 },
        /* versions */
        { S("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505 },
        { S("GET / HTTP/3.0\r\nHost: x\r\n\r\n"), 505 },
        { S("GET / HTTP/0.9\r\n\r\n"), 505 },
};

/* Heads built to a bound: exactly at it, and one over. */
enum bound { HEAD_BYTES, LINE_BYTES, FIELD_COUNT };
static const char *const bound_name[] = { "head bytes", "request line bytes", "fields" };
static const struct head_bound {
        enum bound what;
        size_t size; /* of what */
        size_t max;  /* request_parse's max */
        int want;
} head_bounds[] = {
        { HEAD_BYTES, 64, 64, 0 },
        { HEAD_BYTES, 65, 64, 431 },
        { HEAD_BYTES, HEAD_MAX_DEFAULT, HEAD_MAX_DEFAULT, 0 },
        { HEAD_BYTES, HEAD_MAX_DEFAULT + 1, HEAD_MAX_DEFAULT, 431 },
        { HEAD_BYTES, HEAD_MAX_LIMIT, HEAD_MAX_LIMIT, 0 },
        { HEAD_BYTES, HEAD_MAX_LIMIT + 1, HEAD_MAX_LIMIT, 431 },
        { LINE_BYTES, REQUEST_LINE_MAX, HEAD_MAX_DEFAULT, 0 },
        { LINE_BYTES, REQUEST_LINE_MAX + 1, HEAD_MAX_DEFAULT, 414 },
        { LINE_BYTES, REQUEST_LINE_MAX + 1, HEAD_MAX_LIMIT, 414 },
        { LINE_BYTES, 100, 64, 414 },
        { FIELD_COUNT, FIELDS_MAX, HEAD_MAX_DEFAULT, 0 },
        { FIELD_COUNT, FIELDS_MAX + 1, HEAD_MAX_DEFAULT, 431 },
};

#define LINE_HEAD "GET /"
#define LINE_TAIL " HTTP/1.1\r\n"
#define HOST_LINE "Host: x\r\n"

/* A head whose bounded part has the given size; the last bytes are always
 * the empty line, so one byte over a byte bound moves it past max. */
static char *bound_head(enum bound what, size_t size, size_t *len)
{
        switch (what) {
        case HEAD_BYTES:
                return build(LINE_HEAD LINE_TAIL HOST_LINE "X: ", "a",
                             size - strlen(LINE_HEAD LINE_TAIL HOST_LINE "X: \r\n\r\n"), "\r\n\r\n", len);
        case LINE_BYTES:
                return build(LINE_HEAD, "a", size - strlen(LINE_HEAD LINE_TAIL), LINE_TAIL HOST_LINE "\r\n", len);
        case FIELD_COUNT: return build(LINE_HEAD LINE_TAIL HOST_LINE, "X: y\r\n", size - 1, "\r\n", len);
        }
        abort();
}

/* The parsed request as heads[] writes it, its parts read through the spans;
 * line_len and head_len only when they differ from the ones given. */
static void render_request(const char *in, const struct request *r, size_t line_len, size_t head_len, char *out,
                           size_t size)
{
        size_t off = r->line_len;
        bool tiled = true;
        int n;

        for (unsigned k = 0; k < r->n_fields; k++) {
                struct span f = r->fields[k];
                tiled &= f.off == off && f.len >= 2 && memcmp(in + f.off + f.len - 2, "\r\n", 2) == 0;
                off = f.off + f.len;
        }
        n = snprintf(out, size, "%.*s %.*s %.*s", (int)r->method.len, in + r->method.off, (int)r->target.len,
                     in + r->target.off, (int)r->version.len, in + r->version.off);
        if (r->framing == BODY_LENGTH)
                n += snprintf(out + n, size - (size_t)n, " length=%llu", (unsigned long long)r->content_length);
        snprintf(out + n, size - (size_t)n, "%s%s%s fields=%u%s", r->framing == BODY_CHUNKED ? " chunked" : "",
                 r->upgrade ? " upgrade" : "", r->close ? " close" : "", r->n_fields,
                 tiled && off + 2 == r->head_len ? "" : " (field spans do not tile the head)");
        if (r->line_len != line_len || r->head_len != head_len)
                snprintf(out + strlen(out), size - strlen(out), " line_len=%zu head_len=%zu", r->line_len, r->head_len);
}

static void test_request_heads(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(heads); k++) {
                const struct head_case *h = &heads[k];
                size_t len = strlen(h->in), n;
                size_t line_len = (size_t)(strstr(h->in, "\r\n") - h->in) + 2;
                size_t head_len = (size_t)(strstr(h->in, "\r\n\r\n") - h->in) + 4;
                char got[512];
                struct request r;
                int s = request_parse(h->in, len, HEAD_MAX_DEFAULT, &r), over;

                if (s == 0)
                        render_request(h->in, &r, line_len, head_len, got, sizeof(got));
                else
                        snprintf(got, sizeof(got), "%s", code(s));
                result(strcmp(got, h->want) == 0, got, "request %s -> %s", show(h->in, len), h->want);

                /* Property: every strict prefix of the head asks for more. */
                for (n = 0; n < head_len; n++)
                        if ((s = request_parse(h->in, n, HEAD_MAX_DEFAULT, &r)) != -EAGAIN)
                                break;
                snprintf(got, sizeof(got), "prefix of %zu bytes -> %s", n, code(s));
                result(n == head_len, got, "request: every strict prefix of %s needs more", show(h->in, len));

                /* Property: the head fits a max of its own size, not one less. */
                s = request_parse(h->in, len, head_len, &r);
                over = request_parse(h->in, len, head_len - 1, &r);
                snprintf(got, sizeof(got), "max %zu -> %s, max %zu -> %s", head_len, code(s), head_len - 1, code(over));
                result(s == 0 && over == 431, got, "request: %s fits max %zu, 431 at max %zu", show(h->in, len),
                       head_len, head_len - 1);
        }
}

static void test_request_refusals(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(refusals); k++) {
                const struct refusal *c = &refusals[k];
                struct request r;
                int s = request_parse(c->in, c->len, HEAD_MAX_DEFAULT, &r);

                result(s == c->want, code(s), "request %s -> %d", show(c->in, c->len), c->want);
        }
}

static void test_request_bounds(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(head_bounds); k++) {
                const struct head_bound *b = &head_bounds[k];
                struct request r;
                size_t len;
                char *in = bound_head(b->what, b->size, &len), got[64];
                int s = request_parse(in, len, b->max, &r);
                /* A reader stops at max bytes: those alone must say the same. */
                int at_max = len > b->max ? request_parse(in, b->max, b->max, &r) : s;

                snprintf(got, sizeof(got), "%d, first max bytes alone %d", s, at_max);
                result(s == b->want && at_max == s, got, "request bound: %s %zu, max %zu -> %d", bound_name[b->what],
                       b->size, b->max, b->want);
                free(in);
        }
}

/* ---- chunked_feed and friends ---- */

static const struct chunk_case {
        const char *in;
        size_t len;
        int status;          /* 0, or 400 for a refusal */
        const char *dropped; /* in = forwarded bytes, dropped (trailers), rest */
        const char *rest;    /* not consumed: what follows the body */
        bool done;
} chunk_cases[] = {
        { S("0\r\n\r\n"), 0, "\r\n", "", true },
        { S("5\r\nhello\r\n0\r\n\r\n"), 0, "\r\n", "", true },
        { S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), 0, "\r\n", "", true },
        { S("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"), 0, "\r\n", "", true },
        { S("000000000000005\r\nhello\r\n0\r\n\r\n"), 0, "\r\n", "", true },
        { S("4\r\n\r\n\r\n\r\n0\r\n\r\n"), 0, "\r\n", "", true },
        { S("3\r\na\0b\r\n0\r\n\r\n"), 0, "\r\n", "", true },
        /* extensions are forwarded (RFC 9112 7.1.1) */
        { S("5;name=value\r\nhello\r\n0;last\r\n\r\n"), 0, "\r\n", "", true },
        { S("5 ;a=\"b c\"\r\nhello\r\n0\r\n\r\n"), 0, "\r\n", "", true },
        /* trailers are dropped (7.1.2); the bytes after the body are left */
        { S("5\r\nhello\r\n0\r\nX-Trailer: a\r\nHost: evil\r\n\r\n"), 0, "X-Trailer: a\r\nHost: evil\r\n\r\n", "",
          true },
        { S("0\r\n\r\nGET / HTTP/1.1\r\n"), 0, "\r\n", "GET / HTTP/1.1\r\n", true },
        { S("1\r\na\r\n0\r\nX: y\r\n\r\n\r\n"), 0, "X: y\r\n\r\n", "\r\n", true },
        /* unfinished */
        { S("5\r\nhel"), 0, "", "", false },
        { S("5\r\nhello\r"), 0, "", "", false },
        { S("0\r\nX: y"), 0, "X: y", "", false },
        /* refusals */
        { S("-1\r\n"), 400, NULL, NULL, false },
        { S("0x5\r\nhello\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("0000000000000005\r\nhello\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("10000000000000000\r\n"), 400, NULL, NULL, false },
        { S("1 2\r\nx\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("g\r\n"), 400, NULL, NULL, false },
        { S("\r\n"), 400, NULL, NULL, false },
        { S(";x\r\n"), 400, NULL, NULL, false },
        { S("5\nhello\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("5\rhello\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("5;a\nhello\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("5;a\x01\r\nhello\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("5\r\nhello\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("5\r\nhelloX\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("5\r\nhello0\r\n\r\n"), 400, NULL, NULL, false },
        { S("5\r\nhello\r\r\n0\r\n\r\n"), 400, NULL, NULL, false },
        { S("0\r\nX: y\n\r\n"), 400, NULL, NULL, false },
        { S("0\r\nX: y\rZ\r\n\r\n"), 400, NULL, NULL, false },
        { S("0\r\nX: \x01\r\n\r\n"), 400, NULL, NULL, false },
        { S("0\r\n\rX"), 400, NULL, NULL, false },
        { S("0\r\n\n"), 400, NULL, NULL, false },
};

/* What feeding gave: status, forwarded and consumed bytes, done. */
struct fed {
        int status;
        size_t fwd, used;
        bool done;
};

static struct fed feed_whole(const char *in, size_t len)
{
        struct chunked c = { 0 };
        size_t fwd;
        int r = chunked_feed(&c, in, len, &fwd);

        if (r < 0)
                return (struct fed){ .status = -r };
        return (struct fed){ 0, fwd, (size_t)r, chunked_done(&c) };
}

static struct fed feed_bytes(const char *in, size_t len)
{
        struct chunked c = { 0 };
        struct fed f = { 0 };
        bool run = true; /* the forwarded bytes are a leading run */

        for (; f.used < len && !chunked_done(&c); f.used++) {
                size_t fwd;
                int r = chunked_feed(&c, in + f.used, 1, &fwd);
                if (r < 0)
                        return (struct fed){ .status = -r };
                if (r != 1 || fwd > 1 || (fwd && f.fwd != f.used))
                        run = false;
                f.fwd += fwd;
        }
        f.done = chunked_done(&c);
        if (!run)
                f.fwd = SIZE_MAX;
        return f;
}

static void render_fed(struct fed f, char *out, size_t size)
{
        if (f.status)
                snprintf(out, size, "%d", f.status);
        else
                snprintf(out, size, "fwd %zu, used %zu, %s", f.fwd, f.used, f.done ? "done" : "more");
}

/* Feeds in whole and byte by byte: both must give want. */
static void check_chunked(const char *in, size_t len, struct fed want, const char *name)
{
        char w[64], g[64], b[64], got[160];

        render_fed(want, w, sizeof(w));
        render_fed(feed_whole(in, len), g, sizeof(g));
        render_fed(feed_bytes(in, len), b, sizeof(b));
        snprintf(got, sizeof(got), "whole: %s; byte by byte: %s", g, b);
        result(strcmp(g, w) == 0 && strcmp(b, w) == 0, got, "chunked %s -> %s", name, w);
}

static void test_chunked(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(chunk_cases); k++) {
                const struct chunk_case *c = &chunk_cases[k];
                struct fed want = { .status = c->status, .done = c->done };

                if (!c->status) {
                        want.used = c->len - strlen(c->rest);
                        want.fwd = want.used - strlen(c->dropped);
                }
                check_chunked(c->in, c->len, want, show(c->in, c->len));
        }
}

/* Bodies built to a bound, counted in bytes with their CRLFs as
 * REQUEST_LINE_MAX is: exactly at it, one over, far over. */
enum chunk_bound { SIZE_LINE, TRAILERS };
static const char *const chunk_bound_name[] = { "size line bytes", "trailer section bytes" };
static const struct chunk_bound_case {
        enum chunk_bound what;
        size_t size;
        int status;
} chunk_bounds[] = {
        { SIZE_LINE, 64, 0 },
        { SIZE_LINE, CHUNK_LINE_MAX, 0 },
        { SIZE_LINE, CHUNK_LINE_MAX + 1, 400 },
        { SIZE_LINE, 2 * CHUNK_LINE_MAX, 400 },
        { TRAILERS, 64, 0 },
        { TRAILERS, TRAILER_MAX, 0 },
        { TRAILERS, TRAILER_MAX + 1, 400 },
        { TRAILERS, 2 * TRAILER_MAX, 400 },
};

static void test_chunked_bounds(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(chunk_bounds); k++) {
                const struct chunk_bound_case *b = &chunk_bounds[k];
                struct fed want = { .status = b->status, .done = true };
                size_t len;
                char *in = b->what == SIZE_LINE
                                   ? build("1;", "a", b->size - strlen("1;\r\n"), "\r\nx\r\n0\r\n\r\n", &len)
                                   : build("0\r\nX: ", "a", b->size - strlen("X: \r\n\r\n"), "\r\n\r\n", &len);
                char name[64];

                want.used = len;
                want.fwd = len - (b->what == SIZE_LINE ? strlen("\r\n") : b->size);
                snprintf(name, sizeof(name), "bound: %s %zu", chunk_bound_name[b->what], b->size);
                check_chunked(in, len, want, name);
                free(in);
        }
}

/* The relay splices chunk data itself and reports it to the framer. */
static const struct splice_step {
        const char *feed; /* bytes fed, or NULL for: */
        uint64_t skip;    /* data bytes spliced, chunked_consumed_data() */
        uint64_t left;    /* chunked_data_left() after the step */
        bool done;
} splice_steps[] = {
        { "a;x=y\r\n", 0, 10, false }, { NULL, 4, 6, false },
        { "xy", 0, 4, false },         { NULL, 4, 0, false },
        { "\r\n3\r", 0, 0, false },    { "\n", 0, 3, false },
        { NULL, 3, 0, false },         { "\r\n0\r\nX: y\r\n", 0, 0, false },
        { "\r\n", 0, 0, true },
};

static void test_chunked_splice(void)
{
        struct chunked c = { 0 };

        for (size_t k = 0; k < ARRAY_SIZE(splice_steps); k++) {
                const struct splice_step *st = &splice_steps[k];
                size_t fwd, len = st->feed ? strlen(st->feed) : 0;
                char got[96], step[96];
                int r = 0;

                if (st->feed) {
                        r = chunked_feed(&c, st->feed, len, &fwd);
                        snprintf(step, sizeof(step), "feed %s", show(st->feed, len));
                } else {
                        chunked_consumed_data(&c, st->skip);
                        snprintf(step, sizeof(step), "splice %llu", (unsigned long long)st->skip);
                }
                snprintf(got, sizeof(got), "consumed %d of %zu, left %llu, %s", r, len,
                         (unsigned long long)chunked_data_left(&c), chunked_done(&c) ? "done" : "more");
                result(r == (int)len && chunked_data_left(&c) == st->left && chunked_done(&c) == st->done, got,
                       "chunked step %zu: %s -> left %llu%s", k + 1, step, (unsigned long long)st->left,
                       st->done ? ", done" : "");
        }
}

/* ---- the names file ---- */

/* names_parse() writes into its text and names_free() frees it: a copy. */
static struct names parse_names(const char *text, size_t len, names_report_fn *report, void *data)
{
        struct names n;
        char *copy = malloc(len + 1);

        if (!copy || names_parse(memcpy(copy, text, len), len, &n, report, data) < 0) {
                perror("unit: names_parse");
                exit(2);
        }
        copy[len] = '\0';
        return n;
}

static const char names_fixture[] = "# the names file of the unit tests\n"                           /*  1 */
                                    "\n"                                                             /*  2 */
                                    "app 8081 alice /srv/app ^ pil app.l -main +\n"                  /*  3 */
                                    "  \tindented 8082 bob /srv/ind log/ind.log ./run a^b^c ^ end\n" /*  4 */
                                    "App 9999 carol /srv/dup ^ dup\n"                                /*  5 */
                                    "shop/store 8083 dave /srv/shop ^ pil shop.l\n"                  /*  6 */
                                    "go 0 https://example.com/\n"                                    /*  7 */
                                    "@ 8084 erin /srv/default ^ pil default.l\n"                     /*  8 */
                                    "bad\n"                                                          /*  9 */
                                    "badport x alice /srv ^ cmd\n"                                   /* 10 */
                                    "toobig 65536 alice /srv ^ cmd\n"                                /* 11 */
                                    "redir 0\n"                                                      /* 12 */
                                    "redir 0 http://a http://b\n"                                    /* 13 */
                                    "short 8085 alice /srv\n"                                        /* 14 */
                                    "nouser 8086 ^ /srv ^ cmd\n"                                     /* 15 */
                                    "reldir 8087 alice srv ^ cmd\n"                                  /* 16 */
                                    "/nokey 8088 alice /srv ^ cmd\n"                                 /* 17 */
                                    "nocmd 8089 alice /srv ^ ^\n"                                    /* 18 */
                                    "   # an indented comment\n"                                     /* 19 */
                                    "tab\t8090\talice\t/srv/tab\t^\tcmd\n"                           /* 20 */
                                    "crlf 8091 alice /srv/crlf ^ cmd\r\n"                            /* 21 */
                                    "last 8092 alice /srv/last ^ cmd x"; /* 22, no newline */

/* names_find() in the fixture: the entry written back as a line. */
static const struct names_lookup {
        const char *key;
        const char *want; /* "line: key[/prefix] port ...", or "none" */
} names_lookups[] = {
        { "app", "3: app 8081 alice /srv/app ^ [pil] [app.l] [-main] [+]" },
        { "APP", "3: app 8081 alice /srv/app ^ [pil] [app.l] [-main] [+]" },
        { "indented", "4: indented 8082 bob /srv/ind log/ind.log [./run] [a b c] [] [end]" },
        { "shop", "6: shop/store 8083 dave /srv/shop ^ [pil] [shop.l]" },
        { "SHOP", "6: shop/store 8083 dave /srv/shop ^ [pil] [shop.l]" },
        { "go", "7: go 0 https://example.com/" },
        { "@", "8: @ 8084 erin /srv/default ^ [pil] [default.l]" },
        { "tab", "20: tab 8090 alice /srv/tab ^ [cmd]" },
        { "crlf", "21: crlf 8091 alice /srv/crlf ^ [cmd]" },
        { "last", "22: last 8092 alice /srv/last ^ [cmd] [x]" },
        { "shop/store", "none" },
        { "ap", "none" },
        { "apps", "none" },
        { "", "none" },
        { "#", "none" },
        { "bad", "none" },
        { "badport", "none" },
        { "redir", "none" },
        { "nocmd", "none" },
};

/* The fixture's bad lines: each reported once, with a word of its reason. */
static const struct names_bad {
        unsigned line;
        const char *word;
} names_bad_lines[] = {
        { 9, "port" },     { 10, "port" },  { 11, "port" },     { 12, "URL" }, { 13, "URL" },
        { 14, "command" }, { 15, "empty" }, { 16, "absolute" }, { 17, "key" }, { 18, "command" },
};
#define NAMES_FIXTURE_ENTRIES 9

struct reports {
        unsigned n, line[32];
        char msg[32][80];
};

static void collect(unsigned line, const char *msg, void *data)
{
        struct reports *r = data;

        if (r->n < ARRAY_SIZE(r->line)) {
                r->line[r->n] = line;
                snprintf(r->msg[r->n], sizeof(r->msg[0]), "%s", msg);
        }
        r->n++;
}

static void render_entry(const struct name_entry *e, char *out, size_t size)
{
        int n;

        if (!e) {
                snprintf(out, size, "none");
                return;
        }
        n = snprintf(out, size, "%u: %s%s%s %u", e->line, e->key, e->prefix ? "/" : "", e->prefix ? e->prefix : "",
                     e->port);
        if (e->port == 0) {
                snprintf(out + n, size - (size_t)n, " %s", e->redirect);
                return;
        }
        n += snprintf(out + n, size - (size_t)n, " %s %s %s", e->user, e->dir, e->log ? e->log : "^");
        for (char **a = e->argv; *a && (size_t)n < size; a++)
                n += snprintf(out + n, size - (size_t)n, " [%s]", *a);
}

static void test_names(void)
{
        struct reports rep = { 0 };
        struct names n = parse_names(S(names_fixture), collect, &rep);
        char got[1024];
        unsigned reported = 0;
        int len;

        for (size_t k = 0; k < ARRAY_SIZE(names_lookups); k++) {
                const struct names_lookup *c = &names_lookups[k];
                render_entry(names_find(&n, c->key, strlen(c->key)), got, sizeof(got));
                result(strcmp(got, c->want) == 0, got, "names_find %s -> %s", show(c->key, strlen(c->key)), c->want);
        }
        for (size_t k = 0; k < ARRAY_SIZE(names_bad_lines); k++) {
                const struct names_bad *b = &names_bad_lines[k];
                unsigned i = 0;

                while (i < rep.n && i < ARRAY_SIZE(rep.line) && rep.line[i] != b->line)
                        i++;
                reported += i < rep.n;
                snprintf(got, sizeof(got), "%s", i < rep.n ? rep.msg[i] : "not reported");
                result(i < rep.n && strstr(rep.msg[i], b->word), got, "names: line %u reported (%s)", b->line, b->word);
        }
        len = snprintf(got, sizeof(got), "%zu entries, %u errors, reports:", n.n, n.errors);
        for (unsigned i = 0; i < rep.n && i < ARRAY_SIZE(rep.line) && (size_t)len < sizeof(got); i++)
                len += snprintf(got + len, sizeof(got) - (size_t)len, " %u (%s)", rep.line[i], rep.msg[i]);
        result(n.n == NAMES_FIXTURE_ENTRIES && n.errors == ARRAY_SIZE(names_bad_lines) &&
                       rep.n == ARRAY_SIZE(names_bad_lines) && reported == rep.n,
               got, "names: %d entries, %zu bad lines reported and skipped, nothing else", NAMES_FIXTURE_ENTRIES,
               ARRAY_SIZE(names_bad_lines));
        names_free(&n);
}

#define ARGS8  " c c c c c c c c"
#define ARGS64 ARGS8 ARGS8 ARGS8 ARGS8 ARGS8 ARGS8 ARGS8 ARGS8

/* Whole files: how many entries and bad lines, and the default entry. */
static const struct names_file {
        const char *text;
        size_t len;
        size_t entries;
        unsigned errors;
        const char *dflt; /* names_default()'s key, or NULL */
} names_files[] = {
        { S(""), 0, 0, NULL },
        { S("# nothing\n\n   \n"), 0, 0, NULL },
        { S("a 8080 u /d ^ c\n"), 1, 0, "a" },
        { S("a/pre 8080 u /d ^ c"), 1, 0, "a" },
        { S("go 0 http://x/\n"), 1, 0, "go" },
        { S("a 8080 u /d ^ c\nb 8081 u /d ^ c\n"), 2, 0, NULL },
        { S("a 8080 u /d ^ c\nA 8081 u /d ^ c\n"), 2, 0, NULL },
        { S("a 8080 u /d ^ c\n@ 8081 u /d ^ c\nb 8082 u /d ^ c\n"), 3, 0, "@" },
        { S("@ 8080 u /d ^ c\n@ 8081 u /d ^ c\n"), 2, 0, "@" },
        { S("a 8080 u /d ^ c\nb\n"), 1, 1, "a" },
        { S("a 8080 u /d ^ c\r\n\r\nb 8081 u /d ^ c\r\n"), 2, 0, NULL },
        { S("a 8080 u /d ^ c\0d\nb 8081 u /d ^ c\n"), 1, 1, "b" },
        { S("a 8080 u /d ^" ARGS64 "\n"), 1, 0, "a" },
        { S("a 8080 u /d ^" ARGS64 " c\nb 8081 u /d ^ c\n"), 1, 1, "b" },
};

/* The default is the first "@" entry, else the only one (both what
 * names_find() gives for that key), else none. */
static void test_names_files(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(names_files); k++) {
                const struct names_file *f = &names_files[k];
                struct names n = parse_names(f->text, f->len, NULL, NULL);
                const struct name_entry *d = names_default(&n);
                char got[96];

                snprintf(got, sizeof(got), "%zu entries, %u errors, default %s", n.n, n.errors, d ? d->key : "none");
                result(n.n == f->entries && n.errors == f->errors &&
                               (f->dflt ? d && d == names_find(&n, f->dflt, strlen(f->dflt)) : !d),
                       got, "names %s -> %zu entries, %u errors, default %s", show(f->text, f->len), f->entries,
                       f->errors, f->dflt ? f->dflt : "none");
                names_free(&n);
        }
}

/* A line of NAMES_LINE_MAX bytes or more is refused; one less is fine. */
static const struct names_line_bound {
        size_t len; /* without the newline */
        size_t entries;
} names_line_bounds[] = {
        { NAMES_LINE_MAX - 1, 1 },
        { NAMES_LINE_MAX, 0 },
};

static void test_names_bounds(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(names_line_bounds); k++) {
                const struct names_line_bound *b = &names_line_bounds[k];
                size_t len;
                char *text = build("a 8080 u /d ^ c ", "a", b->len - strlen("a 8080 u /d ^ c "), "\n", &len);
                struct names n = parse_names(text, len, NULL, NULL);
                char got[64];

                snprintf(got, sizeof(got), "%zu entries, %u errors", n.n, n.errors);
                result(n.n == b->entries && n.errors == 1 - b->entries, got,
                       "names bound: line of %zu bytes -> %zu entries", b->len, b->entries);
                names_free(&n);
                free(text);
        }
}

/* names_user(): unknown users and uid or gid 0 are refused. */
static const struct user_case {
        const char *user;
        int want;
} user_cases[] = {
        { "nobody", 0 },
        { "root", -EPERM },
        { "no-such-user-httpgate", -ENOENT },
};

static void test_names_user(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(user_cases); k++) {
                const struct user_case *c = &user_cases[k];
                struct name_entry e = { .key = "x", .user = c->user };
                uid_t uid = 0;
                gid_t gid = 0;
                char home[256] = "", got[320];
                int r = names_user(&e, &uid, &gid, home, sizeof(home));

                snprintf(got, sizeof(got), "%s uid %u gid %u home %s", code(r), (unsigned)uid, (unsigned)gid, home);
                result(r == c->want && (r < 0 || (uid != 0 && gid != 0 && home[0] == '/')), got, "names_user %s -> %s",
                       c->user, code(c->want));
        }
}

/* ---- route and route_rewrite ---- */

#define ROUTE_APPS                           \
        "app 8081 u /srv/app ^ cmd\n"        \
        "pre/prefix 8082 u /srv/pre ^ cmd\n" \
        "80 8083 u /srv/eighty ^ cmd\n"      \
        "70000 8084 u /srv/big ^ cmd\n"      \
        "go 0 https://example.com/\n"

/* Every setup denies ports 8443 and 9000. */
enum setup { AT, AT_PREFIX, AT_REDIRECT, SINGLE, NO_AT_PORT, NO_AT, FAILED, PORTS_ONLY, PORTS_DEFAULT };
static const struct route_setup {
        const char *name;
        const char *names; /* NULL: no names file */
        bool names_failed;
        unsigned default_port;
} setups[] = {
        [AT] = { "@", ROUTE_APPS "@ 8085 u /srv/default ^ cmd\n", false, 8090 },
        [AT_PREFIX] = { "@/home", ROUTE_APPS "@/home 8085 u /srv/default ^ cmd\n", false, 0 },
        [AT_REDIRECT] = { "@ redirect", ROUTE_APPS "@ 0 https://example.org/\n", false, 0 },
        [SINGLE] = { "single entry", "solo/s 8086 u /srv/solo ^ cmd\n", false, 0 },
        [NO_AT_PORT] = { "no @, port 8090", ROUTE_APPS, false, 8090 },
        [NO_AT] = { "no @", ROUTE_APPS, false, 0 },
        [FAILED] = { "names failed", NULL, true, 8090 },
        [PORTS_ONLY] = { "ports only", NULL, false, 0 },
        [PORTS_DEFAULT] = { "port 8090", NULL, false, 8090 },
};

/* Routes written as "key port target" ("-" for a bare port, "(default)"
 * when no key or port in the target matched), "redirect URL" or "error N". */
static const struct route_case {
        enum setup setup;
        const char *target;
        const char *want;
} route_cases[] = {
        /* /PORT/rest */
        { AT, "/1234/rest", "- 1234 /rest" },
        { AT, "/1234/a/b?c=d", "- 1234 /a/b?c=d" },
        { AT, "/1234?x=1", "- 1234 /?x=1" },
        { AT, "/1234", "- 1234 /" },
        { AT, "/1234/", "- 1234 /" },
        { AT, "/01234/x", "- 1234 /x" },
        { AT, "/1024/x", "- 1024 /x" },
        { AT, "/65535/x", "- 65535 /x" },
        { PORTS_ONLY, "/1234/rest", "- 1234 /rest" },
        { FAILED, "/1234/rest", "- 1234 /rest" },
        /* privileged and denied ports */
        { AT, "/1023/x", "error 403" },
        { AT, "/22/x", "error 403" },
        { AT, "/0/x", "error 403" },
        { AT, "/80/x", "80 8083 /x" },
        { AT, "/80", "80 8083 /" },
        { PORTS_ONLY, "/80/x", "error 403" },
        { FAILED, "/80/x", "error 403" },
        { AT, "/8443/x", "error 403" },
        { AT, "/9000", "error 403" },
        { PORTS_ONLY, "/9000?x", "error 403" },
        /* above 65535: a key, not a port */
        { AT, "/70000/x", "70000 8084 /x" },
        { AT, "/65536/x", "@ 8085 /65536/x (default)" },
        { AT, "/99999999999999999999999/x", "@ 8085 /99999999999999999999999/x (default)" },
        { PORTS_DEFAULT, "/65536/x", "- 8090 /65536/x (default)" },
        /* /app/rest */
        { AT, "/app/rest", "app 8081 /rest" },
        { AT, "/APP/rest?q", "app 8081 /rest?q" },
        { AT, "/app?x", "app 8081 /?x" },
        { AT, "/app", "app 8081 /" },
        { AT, "/app/", "app 8081 /" },
        { AT, "/pre/rest", "pre 8082 /prefix/rest" },
        { AT, "/pre/a/b?c", "pre 8082 /prefix/a/b?c" },
        { AT, "/pre?x", "pre 8082 /prefix?x" },
        { AT, "/pre", "pre 8082 /prefix" },
        { AT, "/pre/", "pre 8082 /prefix/" },
        { NO_AT, "/app/rest", "app 8081 /rest" },
        /* redirect entries */
        { AT, "/go/x", "redirect https://example.com/" },
        { AT, "/go", "redirect https://example.com/" },
        { AT_REDIRECT, "/elsewhere", "redirect https://example.org/" },
        { AT_REDIRECT, "/app/x", "app 8081 /x" },
        /* the default entry */
        { AT, "/apps/x", "@ 8085 /apps/x (default)" },
        { AT, "/", "@ 8085 / (default)" },
        { AT, "/?x", "@ 8085 /?x (default)" },
        { AT, "/index.html", "@ 8085 /index.html (default)" },
        { AT_PREFIX, "/foo/bar", "@ 8085 /home/foo/bar (default)" },
        { AT_PREFIX, "/", "@ 8085 /home (default)" },
        { AT_PREFIX, "/?x", "@ 8085 /home?x (default)" },
        { AT_PREFIX, "/app/x", "app 8081 /x" },
        { SINGLE, "/foo", "solo 8086 /s/foo (default)" },
        { SINGLE, "/solo/x", "solo 8086 /s/x" },
        /* no default entry */
        { NO_AT_PORT, "/foo", "- 8090 /foo (default)" },
        { NO_AT_PORT, "/", "- 8090 / (default)" },
        { PORTS_DEFAULT, "/foo?x", "- 8090 /foo?x (default)" },
        { NO_AT, "/foo", "error 404" },
        { NO_AT, "/", "error 404" },
        { PORTS_ONLY, "/foo", "error 404" },
        /* unreadable names file */
        { FAILED, "/app/x", "error 503" },
        { FAILED, "/foo", "error 503" },
        { FAILED, "/", "error 503" },
        /* not origin-form */
        { AT, "*", "error 400" },
        { AT, "", "error 400" },
        { AT, "http://x/", "error 400" },
};

static struct options setup_options(const struct route_setup *s)
{
        return (struct options){ .default_port = s->default_port, .deny = { 8443, 9000 }, .n_deny = 2 };
}

static struct names setup_names(const struct route_setup *s)
{
        return s->names ? parse_names(s->names, strlen(s->names), NULL, NULL) : (struct names){ 0 };
}

static void render_route(const struct route *r, const char *target, size_t len, char *out, size_t size)
{
        char path[256];
        int n;

        switch (r->kind) {
        case ROUTE_ERROR: snprintf(out, size, "error %d", r->status); return;
        case ROUTE_REDIRECT: snprintf(out, size, "redirect %s", r->entry ? r->entry->redirect : "(no entry)"); return;
        case ROUTE_PORT:
                n = route_rewrite(r, target, len, path, sizeof(path));
                snprintf(out, size, "%s %u %.*s%s", r->entry ? r->entry->key : "-", r->port, n < 0 ? 0 : n, path,
                         r->explicit_ ? "" : " (default)");
                return;
        }
        snprintf(out, size, "kind %d", (int)r->kind);
}

static void test_route(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(route_cases); k++) {
                const struct route_case *c = &route_cases[k];
                const struct route_setup *s = &setups[c->setup];
                struct options o = setup_options(s);
                struct names n = setup_names(s);
                struct route_table t = { s->names ? &n : NULL, s->names_failed, &o };
                struct route r;
                size_t len = strlen(c->target);
                char got[512];

                route(&t, c->target, len, &r);
                render_route(&r, c->target, len, got, sizeof(got));
                result(strcmp(got, c->want) == 0, got, "route [%s] %s -> %s", s->name, show(c->target, len), c->want);
                if (s->names)
                        names_free(&n);
        }
}

/* route_rewrite() into a buffer of exactly size bytes (ASan sees overruns). */
static const struct rewrite_case {
        const char *target;
        size_t size;
        int want; /* length, or -ENOBUFS */
} rewrite_cases[] = {
        { "/pre/rest", 64, 12 },  { "/pre/rest", 12, 12 }, { "/pre/rest", 11, -ENOBUFS }, { "/pre", 7, 7 },
        { "/pre", 6, -ENOBUFS },  { "/1234/rest", 5, 5 },  { "/1234/rest", 4, -ENOBUFS }, { "/1234", 1, 1 },
        { "/1234", 0, -ENOBUFS },
};

static void test_route_rewrite(void)
{
        const struct route_setup *s = &setups[AT];
        struct options o = setup_options(s);
        struct names n = setup_names(s);
        struct route_table t = { &n, false, &o };

        for (size_t k = 0; k < ARRAY_SIZE(rewrite_cases); k++) {
                const struct rewrite_case *c = &rewrite_cases[k];
                size_t len = strlen(c->target);
                char *out = malloc(c->size ? c->size : 1);
                struct route r;
                int w;

                route(&t, c->target, len, &r);
                w = route_rewrite(&r, c->target, len, out, c->size);
                result(w == c->want, code(w), "route_rewrite %s into %zu bytes -> %s", show(c->target, len), c->size,
                       code(c->want));
                free(out);
        }
        names_free(&n);
}

/* ---- response_parse: where a response ends ---- */

static const struct response_case {
        const char *in;
        size_t len;
        bool head_request;
        int ret;               /* 0, -EAGAIN or -EPROTO */
        const char *want;      /* "status framing[=length] [close] head=N" */
} response_cases[] = {
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), false, 0, "200 length=5 head=38" },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), false, 0, "200 chunked head=47" },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), false, 0, "200 chunked head=53" },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), false, 0, "200 eof close head=53" },
        { S("HTTP/1.1 200 OK\r\n\r\n"), false, 0, "200 eof close head=19" },
        { S("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"), false, 0, "200 length=2 close head=38" },
        { S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"), false, 0,
          "200 length=2 head=62" },
        { S("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"), false, 0,
          "200 length=2 close head=57" },
        { S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), false, 0, "200 eof close head=47" },
        /* no body: HEAD, 1xx, 204, 304 (RFC 9112 6.3 rule 1) */
        { S("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"), true, 0, "200 none head=39" },
        { S("HTTP/1.1 204 No Content\r\n\r\n"), false, 0, "204 none head=27" },
        { S("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), false, 0, "304 none head=49" },
        { S("HTTP/1.1 100 Continue\r\n\r\n"), false, 0, "100 none head=25" },
        { S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), false, 0,
          "101 none head=77" },
        /* PicoLisp 23.2: a bare LF ends a field line */
        { S("HTTP/1.1 200 OK\r\nSet-Cookie: a=b; path=/\n\r\n3\r\n"), false, 0, "200 eof close head=43" },
        { S("HTTP/1.1 200 OK\nContent-Length: 1\n\nx"), false, 0, "200 length=1 head=35" },
        { S("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), false, 0, "200 length=0 head=35" },
        { S("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\n"), false, 0, "200 length=1 head=55" },
        { S("HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 1\r\n\r\n"), false, 0, "200 length=1 head=53" },
        /* unfinished */
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), false, -EAGAIN, "" },
        { S("HTTP/1."), false, -EAGAIN, "" },
        { S("HTT"), false, -EAGAIN, "" },
        /* cannot be framed: the rest of the stream is the body */
        { S("garbage\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/2 200\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 20 OK\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 2000 OK\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 600 Odd\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n 6\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5\rX: y\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"), false, -EPROTO, "" },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n"), false, -EPROTO, "" },
};

static void render_response(const struct response *p, char *out, size_t size)
{
        static const char *fr[] = { "none", "length", "chunked", "eof" };
        int n = snprintf(out, size, "%u %s", p->status, fr[p->framing]);

        if (p->framing == RESP_LENGTH)
                n += snprintf(out + n, size - (size_t)n, "=%llu", (unsigned long long)p->content_length);
        snprintf(out + n, size - (size_t)n, "%s head=%zu", p->close ? " close" : "", p->head_len);
}

static void test_response_heads(void)
{
        for (size_t k = 0; k < ARRAY_SIZE(response_cases); k++) {
                const struct response_case *c = &response_cases[k];
                struct response p;
                char got[128] = "";
                int r = response_parse(c->in, c->len, RESPONSE_HEAD_MAX, c->head_request, &p);

                if (r == 0)
                        render_response(&p, got, sizeof(got));
                else
                        snprintf(got, sizeof(got), "%d (%s)", r, r == -EPROTO ? p.why : "more");
                char name[64];
                printable(name, sizeof(name), c->in, c->len < 24 ? c->len : 24);
                result(r == c->ret && strcmp(got, r == 0 ? c->want : got) == 0, got, "response %s... -> %s", name,
                       c->ret == 0 ? c->want : c->ret == -EAGAIN ? "more" : "cannot be framed");
        }
        /* a head longer than the bound cannot be framed; below it, more is needed */
        {
                size_t n = RESPONSE_HEAD_MAX + 10;
                char *big = malloc(n);
                struct response p;
                int r1, r2;

                memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
                memset(big + 20, 'a', n - 20);
                r1 = response_parse(big, RESPONSE_HEAD_MAX - 1, RESPONSE_HEAD_MAX, false, &p);
                r2 = response_parse(big, n, RESPONSE_HEAD_MAX, false, &p);
                result(r1 == -EAGAIN && r2 == -EPROTO, r2 == -EPROTO ? p.why : "?",
                       "response head bound: more below RESPONSE_HEAD_MAX, -EPROTO above");
                free(big);
        }
}

/* A response's chunked body goes out whole, trailers included. */
static void test_chunked_response(void)
{
        static const char in[] = "5\r\nhello\r\n0\r\nX-Trailer: a\r\n\r\nHTTP/1.1";
        struct chunked c = { .keep_trailers = true };
        size_t fwd, body = sizeof(in) - 1 - 8;
        int r = chunked_feed(&c, in, sizeof(in) - 1, &fwd);

        result(r == (int)body && fwd == body && chunked_done(&c), "", "chunked response: trailers forwarded, "
               "the next response left");
}

int main(void)
{
        test_parse_uint();
        test_request_heads();
        test_request_refusals();
        test_request_bounds();
        test_chunked();
        test_chunked_bounds();
        test_chunked_splice();
        test_response_heads();
        test_chunked_response();
        test_names();
        test_names_files();
        test_names_bounds();
        test_names_user();
        test_route();
        test_route_rewrite();
        printf("# %u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
