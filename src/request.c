/* request.c: the incremental RFC 9112 request-head parser. It looks at the
 * caller's buffer and never writes to it; it returns 0, -EAGAIN for "need
 * more", or the HTTP status to answer with. Framing decisions (RFC 9112 6)
 * are made here, so that relay.c only moves what this file has measured.
 *
 *   request-line = method SP request-target SP HTTP-version CRLF   (3)
 *   field-line   = field-name ":" OWS field-value OWS CRLF         (5)
 *   head         = request-line *( field-line ) CRLF
 *
 * Strict on purpose: CRLF only (a bare LF or CR is 400), no whitespace
 * before ":" (400, RFC 9112 5.1), no obs-fold (400, 5.2), no control bytes
 * in values, visible ASCII in the target. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "httpgate.h"

/* tchar (RFC 9110 5.6.2) */
static bool is_tchar(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_vchar(unsigned char c)
{
        return c > 0x20 && c < 0x7f;
}

bool field_is(const char *buf, struct span f, const char *n)
{
        size_t l = strlen(n);

        return f.len > l && buf[f.off + l] == ':' && strncasecmp(buf + f.off, n, l) == 0;
}

/* The value of field f, without OWS and CRLF. */
static struct span field_value(const char *buf, struct span f)
{
        uint32_t a = f.off, b = f.off + f.len - 2;

        while (buf[a] != ':')
                a++;
        a++;
        while (a < b && (buf[a] == ' ' || buf[a] == '\t'))
                a++;
        while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t'))
                b--;
        return (struct span){ a, b - a };
}

/* The next non-empty element of a comma-separated list value (RFC 9110
 * 5.6.1) from *i, OWS trimmed, into [*a, *b). False at the end. */
static bool list_next(const char *buf, size_t *i, size_t end, size_t *a, size_t *b)
{
        while (*i < end) {
                *a = *i;
                while (*i < end && buf[*i] != ',')
                        (*i)++;
                *b = (*i)++;
                while (*a < *b && (buf[*a] == ' ' || buf[*a] == '\t'))
                        (*a)++;
                while (*b > *a && (buf[*b - 1] == ' ' || buf[*b - 1] == '\t'))
                        (*b)--;
                if (*b > *a)
                        return true;
        }
        return false;
}

static bool is_token(const char *buf, size_t a, size_t b, const char *token)
{
        return b - a == strlen(token) && strncasecmp(buf + a, token, b - a) == 0;
}

static bool list_has(const char *buf, struct span v, const char *token)
{
        size_t i = v.off, a, b;

        while (list_next(buf, &i, v.off + v.len, &a, &b))
                if (is_token(buf, a, b, token))
                        return true;
        return false;
}

static int parse_request_line(const char *buf, size_t len, struct request *r)
{
        const char *cr = memchr(buf, '\r', len), *lf = memchr(buf, '\n', len);
        size_t i = 0, end;

        if (lf && (!cr || lf < cr))
                return 400; /* bare LF */
        for (i = 0; i < (cr ? (size_t)(cr - buf) : len); i++)
                if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f)
                        return 400; /* no request line holds these: fail early */
        i = 0;
        if (!cr)
                return len >= REQUEST_LINE_MAX ? 414 : -EAGAIN;
        end = (size_t)(cr - buf);
        if (end + 2 > REQUEST_LINE_MAX)
                return 414;
        if (end + 1 >= len)
                return -EAGAIN;
        if (buf[end + 1] != '\n')
                return 400;

        while (i < end && is_tchar((unsigned char)buf[i]))
                i++;
        if (i == 0 || i == end || buf[i] != ' ')
                return 400;
        r->method = (struct span){ 0, (uint32_t)i };
        r->target.off = (uint32_t)++i;
        while (i < end && is_vchar((unsigned char)buf[i]))
                i++;
        if (i == r->target.off || i == end || buf[i] != ' ')
                return 400;
        r->target.len = (uint32_t)(i - r->target.off);
        r->version = (struct span){ (uint32_t)(i + 1), (uint32_t)(end - i - 1) };
        if (r->version.len != 8 || memcmp(buf + i + 1, "HTTP/", 5) != 0 ||
            buf[i + 6] < '0' || buf[i + 6] > '9' || buf[i + 7] != '.' || buf[i + 8] < '0' ||
            buf[i + 8] > '9')
                return 400;
        if (buf[i + 6] != '1')
                return 505;
        r->minor = (unsigned)(buf[i + 8] - '0');
        r->line_len = end + 2;
        return 0;
}

static int parse_field(const char *buf, size_t off, size_t end)
{
        size_t i = off;

        while (i < end && is_tchar((unsigned char)buf[i]))
                i++;
        if (i == off || i == end || buf[i] != ':')
                return 400; /* empty name, whitespace before ":" or no ":" */
        for (i++; i < end; i++) {
                unsigned char c = (unsigned char)buf[i];
                if (c < 0x20 ? c != '\t' : c == 0x7f)
                        return 400;
        }
        return 0;
}

/* Content-Length, Transfer-Encoding and Connection decide the framing
 * (RFC 9112 6.1-6.3, 9.3). */
static int parse_framing(const char *buf, struct request *r)
{
        bool have_cl = false, have_te = false, te_last_chunked = false, keep_alive = false;
        unsigned n_chunked = 0, n_other = 0, n_host = 0;
        bool conn_upgrade = false, has_upgrade = false;

        r->close = false;
        for (unsigned k = 0; k < r->n_fields; k++) {
                struct span f = r->fields[k], v;
                if (field_is(buf, f, "content-length")) {
                        uint64_t cl;
                        v = field_value(buf, f);
                        if (parse_uint(buf + v.off, v.len, UINT64_C(1) << 62, &cl) < 0)
                                return 400; /* lists, signs, hex, absurd values */
                        if (have_cl && cl != r->content_length)
                                return 400;
                        have_cl = true;
                        r->content_length = cl;
                } else if (field_is(buf, f, "transfer-encoding")) {
                        size_t i, a, b;
                        v = field_value(buf, f);
                        have_te = true;
                        for (i = v.off; list_next(buf, &i, v.off + v.len, &a, &b);) {
                                te_last_chunked = is_token(buf, a, b, "chunked");
                                n_chunked += te_last_chunked;
                                n_other += !te_last_chunked;
                        }
                } else if (field_is(buf, f, "connection")) {
                        v = field_value(buf, f);
                        if (list_has(buf, v, "close"))
                                r->close = true;
                        if (list_has(buf, v, "keep-alive"))
                                keep_alive = true;
                        if (list_has(buf, v, "upgrade"))
                                conn_upgrade = true;
                } else if (field_is(buf, f, "upgrade")) {
                        has_upgrade = true;
                } else if (field_is(buf, f, "host")) {
                        n_host++;
                }
        }
        if (n_host > 1 || (n_host == 0 && r->minor >= 1))
                return 400; /* RFC 9112 3.2 */
        if (have_te) {
                if (r->minor == 0 || have_cl)
                        return 400; /* RFC 9112 6.1: TE on 1.0, or TE with CL */
                /* RFC 9112 6.3: chunked must be the last coding, and only
                 * once; other codings are not understood here (501). */
                if (!te_last_chunked || n_chunked > 1)
                        return 400;
                if (n_other)
                        return 501;
                r->framing = BODY_CHUNKED;
        } else if (have_cl && r->content_length > 0) {
                r->framing = BODY_LENGTH;
        } else {
                r->framing = BODY_NONE;
        }
        if (r->minor == 0 && !keep_alive)
                r->close = true;
        r->upgrade = conn_upgrade && has_upgrade;
        return 0;
}

int request_parse(const char *buf, size_t len, size_t max, struct request *r)
{
        size_t i;
        int s;

        memset(r, 0, sizeof(*r));
        s = parse_request_line(buf, len < max ? len : max, r);
        if (s == -EAGAIN && len >= max)
                return 414;
        if (s != 0)
                return s;
        for (i = r->line_len;;) {
                const char *cr, *lf;
                size_t avail = (len < max ? len : max) - i;

                if (avail == 0)
                        return len >= max ? 431 : -EAGAIN;
                cr = memchr(buf + i, '\r', avail);
                lf = memchr(buf + i, '\n', avail);
                if (lf && (!cr || lf < cr))
                        return 400; /* bare LF */
                if (!cr)
                        return len >= max ? 431 : -EAGAIN;
                if ((size_t)(cr - buf) + 2 > max)
                        return 431;
                if ((size_t)(cr - buf) + 1 >= len)
                        return -EAGAIN;
                if (cr[1] != '\n')
                        return 400; /* bare CR */
                if (cr == buf + i) { /* the empty line */
                        r->head_len = i + 2;
                        break;
                }
                if (buf[i] == ' ' || buf[i] == '\t')
                        return 400; /* obs-fold, or whitespace after the start line */
                if ((s = parse_field(buf, i, (size_t)(cr - buf))) != 0)
                        return s;
                if (r->n_fields == FIELDS_MAX)
                        return 431;
                r->fields[r->n_fields++] = (struct span){ (uint32_t)i, (uint32_t)(cr + 2 - buf - i) };
                i = (size_t)(cr - buf) + 2;
        }
        return parse_framing(buf, r);
}
