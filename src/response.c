/* response.c: where an app's response ends (RFC 9112 6.3). It reads the
 * status line and the fields that decide framing, and looks, never writes:
 * the gate forwards every response byte as the app sent it.
 *
 * Lenient where PicoLisp 23.2 is (a bare LF ends a line, as in its
 * Set-Cookie lines; a line without a colon is passed on and ignored), strict
 * where framing is at stake, since the client must find the same end as the
 * gate: one Content-Length of digits only, no Content-Length beside
 * Transfer-Encoding, no folded Content-Length or Transfer-Encoding line, no
 * bare CR or NUL anywhere in the head. A head that breaks these rules, or
 * that is not HTTP/1.x at all, is -EPROTO: the caller then passes the rest
 * of that app's bytes on as they come, to its end of stream. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "httpgate.h"

static bool name_is(const char *line, size_t len, const char *name)
{
        size_t l = strlen(name);

        return len > l && line[l] == ':' && strncasecmp(line, name, l) == 0;
}

/* "Content-Length :": RFC 9112 5.1 forbids the space; some parsers take it
 * for the field, others not, so a framing field with it cannot be trusted. */
static bool spaced_name(const char *line, size_t len, const char *name)
{
        size_t l = strlen(name), i = l;

        if (len <= l || strncasecmp(line, name, l) != 0)
                return false;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
                i++;
        return i > l && i < len && line[i] == ':';
}

/* The value of "name: value" without OWS. */
static void value_of(const char *line, size_t len, size_t *a, size_t *b)
{
        *a = (size_t)((const char *)memchr(line, ':', len) - line) + 1;
        *b = len;
        while (*a < *b && (line[*a] == ' ' || line[*a] == '\t'))
                (*a)++;
        while (*b > *a && (line[*b - 1] == ' ' || line[*b - 1] == '\t'))
                (*b)--;
}

/* The last coding of a Transfer-Encoding value (a list) is chunked. */
static bool ends_chunked(const char *v, size_t len)
{
        size_t b = len, a;

        while (b > 0 && (v[b - 1] == ' ' || v[b - 1] == '\t' || v[b - 1] == ','))
                b--;
        a = b;
        while (a > 0 && v[a - 1] != ',' && v[a - 1] != ' ' && v[a - 1] != '\t')
                a--;
        return b - a == 7 && strncasecmp(v + a, "chunked", 7) == 0;
}

static bool has_token(const char *v, size_t len, const char *token)
{
        size_t l = strlen(token);

        for (size_t i = 0; i + l <= len; i++)
                if (strncasecmp(v + i, token, l) == 0 && (i == 0 || strchr(" \t,", v[i - 1])) &&
                    (i + l == len || strchr(" \t,", v[i + l])))
                        return true;
        return false;
}

static int unframeable(struct response *ret, const char *why)
{
        ret->why = why;
        return -EPROTO;
}

int response_parse(const char *buf, size_t len, size_t max, bool head_request, struct response *ret)
{
        size_t i = 0, lines = 0;
        bool te = false, chunked = false, cl = false, keep_alive = false, last_framing = false;
        uint64_t length = 0;

        *ret = (struct response){ .framing = RESP_TO_EOF };
        if (len >= 1 && memcmp(buf, "HTTP/1.", len < 7 ? len : 7) != 0)
                return unframeable(ret, "response is not HTTP/1.x");
        for (;;) {
                const char *line = buf + i, *lf = memchr(line, '\n', len - i);
                size_t n;

                if (!lf)
                        return len >= max ? unframeable(ret, "response head too long") : -EAGAIN;
                n = (size_t)(lf - line);
                i += n + 1;
                if (n > 0 && line[n - 1] == '\r')
                        n--;
                if (memchr(line, '\r', n) || memchr(line, '\0', n))
                        return unframeable(ret, "bare CR or NUL in the response head");
                if (i > max)
                        return unframeable(ret, "response head too long");
                if (lines++ == 0) {
                        /* HTTP/1.x SP 3DIGIT [SP reason] */
                        if (n < 12 || line[7] < '0' || line[7] > '9' || line[8] != ' ' || line[9] < '1' ||
                            line[9] > '5' || line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
                            (n > 12 && line[12] != ' '))
                                return unframeable(ret, "bad response status line");
                        ret->minor = (unsigned)(line[7] - '0');
                        ret->status = (unsigned)((line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0'));
                        continue;
                }
                if (n == 0)
                        break;
                if (line[0] == ' ' || line[0] == '\t') {
                        /* obs-fold: harmless, unless it continues a framing field */
                        if (last_framing)
                                return unframeable(ret, "folded framing field in the response");
                        continue;
                }
                last_framing = false;
                if (spaced_name(line, n, "content-length") || spaced_name(line, n, "transfer-encoding"))
                        return unframeable(ret, "space before the colon of a framing field in the response");
                if (name_is(line, n, "content-length")) {
                        size_t a, b;
                        value_of(line, n, &a, &b);
                        if (cl)
                                return unframeable(ret, "two Content-Length fields in the response");
                        if (parse_uint(line + a, b - a, UINT64_MAX >> 1, &length) != 0)
                                return unframeable(ret, "bad Content-Length in the response");
                        cl = last_framing = true;
                } else if (name_is(line, n, "transfer-encoding")) {
                        size_t a, b;
                        value_of(line, n, &a, &b);
                        te = last_framing = true;
                        chunked = ends_chunked(line + a, b - a);
                } else if (name_is(line, n, "connection")) {
                        size_t a, b;
                        value_of(line, n, &a, &b);
                        if (has_token(line + a, b - a, "close"))
                                ret->close = true;
                        if (has_token(line + a, b - a, "keep-alive"))
                                keep_alive = true;
                }
        }
        ret->head_len = i;
        if (ret->minor == 0 && !keep_alive)
                ret->close = true;
        /* RFC 9112 6.3, in its order */
        if (head_request || ret->status < 200 || ret->status == 204 || ret->status == 304) {
                ret->framing = RESP_NONE;
        } else if (te && cl) {
                return unframeable(ret, "Content-Length beside Transfer-Encoding in the response");
        } else if (te) {
                ret->framing = chunked && ret->minor > 0 ? RESP_CHUNKED : RESP_TO_EOF;
        } else if (cl) {
                ret->framing = RESP_LENGTH;
                ret->content_length = length;
        }
        if (ret->framing == RESP_TO_EOF)
                ret->close = true;
        return 0;
}
