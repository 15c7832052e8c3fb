/* inflight.c: the response side. The requests in flight form a queue in the
 * client's order; the first one's response is read from its app, and only
 * its bytes: response.c finds where its head ends, the head and a body of
 * known length are then taken as they are (spliced), a chunked body is
 * framed by chunked.c, and the next request's answer follows. The gate's
 * own answers wait in the same queue for their turn. Each request gets one
 * journal entry when its answer is complete (or the connection ends).
 *
 * The first exchange's response side (r->rs):
 *   HEAD     looking for the end of a response head (MSG_PEEK, then taken)
 *   RAW      `rs_left` bytes to take as they are, then `rs_after`
 *   CHUNKED  a chunked body: framing lines through chunked.c, data spliced
 *   TO_EOF   the body ends with the app's stream (RFC 9112 6.3 rule 8, or a
 *            response the gate cannot frame); the connection ends after it
 *   TUNNEL   the app said 101: opaque both ways
 *   DONE     the response is complete */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "relay.h"

struct exchange *inflight_first(struct relay *r)
{
        return r->q_len ? &r->q[r->q_first] : NULL;
}

struct exchange *inflight_last(struct relay *r)
{
        return r->q_len ? &r->q[(r->q_first + r->q_len - 1) % INFLIGHT_MAX] : NULL;
}

bool inflight_full(const struct relay *r)
{
        return r->q_len == INFLIGHT_MAX;
}

static size_t keep(char *dst, size_t size, const char *src, size_t len)
{
        size_t n = len < size ? len : size;

        memcpy(dst, src, n);
        return n;
}

/* A field's value, without OWS and CRLF, for the journal. */
static void keep_field(const char *head, const struct request *q, const char *name, char *dst, size_t size,
                       size_t *len)
{
        for (unsigned i = 0; i < q->n_fields; i++) {
                struct span f = q->fields[i];
                size_t a, b;

                if (!field_is(head, f, name))
                        continue;
                a = f.off + strlen(name) + 1;
                b = f.off + f.len - 2;
                while (a < b && (head[a] == ' ' || head[a] == '\t'))
                        a++;
                while (b > a && (head[b - 1] == ' ' || head[b - 1] == '\t'))
                        b--;
                *len = keep(dst, size, head + a, b - a);
                return;
        }
}

struct exchange *inflight_push(struct relay *r, int app, const struct request *q, const char *head)
{
        struct exchange *x = &r->q[(r->q_first + r->q_len++) % INFLIGHT_MAX];

        *x = (struct exchange){ .app = app, .start_us = relay_now_us(), .minor = 1 };
        if (q) {
                x->method_len = keep(x->method, sizeof(x->method), head + q->method.off, q->method.len);
                x->target_len = keep(x->target, sizeof(x->target), head + q->target.off, q->target.len);
                keep_field(head, q, "referer", x->referer, sizeof(x->referer), &x->referer_len);
                keep_field(head, q, "user-agent", x->agent, sizeof(x->agent), &x->agent_len);
                x->head_method = q->method.len == 4 && memcmp(head + q->method.off, "HEAD", 4) == 0;
                x->minor = q->minor;
        }
        return x;
}

void inflight_log(struct relay *r, const struct exchange *x, const char *why)
{
        uint64_t now = relay_now_us();
        struct log_request l = {
                .app = x->entry ? x->entry->key : NULL,
                .port = x->port,
                .client = r->ctx->client_addr,
                .method = x->method, .method_len = x->method_len,
                .target = x->target, .target_len = x->target_len,
                .referer = x->referer, .referer_len = x->referer_len,
                .agent = x->agent, .agent_len = x->agent_len,
                .minor = x->minor,
                .status = x->app < 0 ? x->status : 0,
                .app_status = x->app >= 0 ? x->status : 0,
                .response_bytes = x->bytes,
                .first_byte_usec = x->first_us ? x->first_us - x->start_us : 0,
                .duration_usec = now - x->start_us,
                .answered = x->app < 0 || x->first_us,
                .why = why ? why : x->why,
        };
        log_request(&l);
        r->answer_exit = x->app < 0 ? x->exit : EXIT_DONE; /* the last request decides */
}

static void pop(struct relay *r)
{
        if (r->q[r->q_first].upgrade)
                r->hold = false; /* answered otherwise than by a 101 */
        r->q_first = (r->q_first + 1) % INFLIGHT_MAX;
        r->q_len--;
        r->rs = RS_HEAD;
        r->rs_head_got = 0;
}

/* Read-ahead bytes of app i that no request asked for. */
static void drop_ahead(struct relay *r, int i, bool warn)
{
        if (!r->down_ahead || r->ahead_app != i)
                return;
        if (warn)
                log_msg(LOG_WARNING, "%s: app on port %u sent %zu bytes beyond its response; its connection is closed",
                        r->ctx->client_addr, r->apps[i].port, r->down_ahead);
        r->down_ahead = 0;
        r->apps[i].spent = true;
}

/* The first exchange's response is complete. */
static void complete(struct relay *r, const char *why)
{
        struct exchange *x = inflight_first(r);
        struct app_conn *a = &r->apps[x->app];

        inflight_log(r, x, why);
        a->outstanding--;
        a->answered++;
        if (x->last)
                r->closing = true;
        pop(r);
        if (a->outstanding == 0)
                drop_ahead(r, (int)(a - r->apps), true);
        if (a->outstanding == 0 && (a->spent || a->eof))
                relay_app_close(r, (int)(a - r->apps));
}

/* The response can no longer be framed: the rest of the app's stream is
 * its body, and the connection ends with it. */
static void lose_framing(struct relay *r, struct exchange *x, const char *why)
{
        struct app_conn *a = &r->apps[x->app];

        log_msg(LOG_WARNING, "%s: app %s port %u: %s; passed on to its end, then the connection closes",
                r->ctx->client_addr, x->entry ? x->entry->key : "-", a->port, why);
        a->spent = true;
        x->last = r->last = true;
        x->why = why;
        r->rs = RS_TO_EOF;
        /* Its end is the response's end: an app that waits for the next
         * request is told there is none. */
        if (a->outstanding == 1 && !(r->up_app == x->app && (r->out_len > r->out_off || relay_in_body(r))) &&
            !a->wr_shut && shutdown(a->fd, SHUT_WR) == 0)
                a->wr_shut = true;
}

static void enter(struct relay *r, enum rs next)
{
        struct exchange *x = inflight_first(r);

        r->rs = next;
        if (next == RS_HEAD) {
                r->rs_head_got = 0; /* a 1xx went out: the final head follows */
        } else if (next == RS_TUNNEL) {
                for (int i = 0; i < APPS_MAX; i++)
                        if (i != x->app && r->apps[i].fd >= 0)
                                relay_app_close(r, i);
                r->up_app = x->app;
                r->hold = false;
                if (relay_enter_body(r, r->client_eof ? RQ_CLOSED : RQ_TUNNEL))
                        return;
        } else if (next == RS_DONE) {
                complete(r, NULL);
        }
}

/* The head ends at len bytes of rs_head: what to take, and what comes next. */
static uint64_t head_found(struct relay *r, struct exchange *x, const struct response *p)
{
        uint64_t left = p->head_len - r->rs_head_got;

        x->status = (int)p->status;
        if (p->status == 101 && !x->upgrade) {
                lose_framing(r, x, "101 to a request without Upgrade");
                return UINT64_MAX;
        }
        if (p->close) {
                r->apps[x->app].spent = true;
                x->last = r->last = true; /* the client was told, or must assume, that it ends */
        }
        r->rs = RS_RAW;
        if (p->status == 101) {
                x->last = r->last = false;
                r->rs_after = RS_TUNNEL;
        } else if (p->status < 200) {
                r->rs_after = RS_HEAD;
        } else if (p->framing == RESP_LENGTH) {
                left += p->content_length;
                r->rs_after = RS_DONE;
        } else if (p->framing == RESP_CHUNKED) {
                r->rs_ch = (struct chunked){ .keep_trailers = true };
                r->rs_after = RS_CHUNKED;
        } else {
                r->rs_after = p->framing == RESP_NONE ? RS_DONE : RS_TO_EOF;
        }
        if (p->status >= 200)
                r->hold = false; /* an Upgrade refused: requests go on */
        r->rs_left = left;
        if (left == 0)
                enter(r, r->rs_after);
        return left;
}

/* Response bytes not yet framed, at most want: those read ahead, else what
 * the app has sent. An app with only this request to answer has its bytes
 * read into down_buf (they are this response's, or bytes nobody asked
 * for), where they are taken from without another system call: a small
 * response costs one read and one write. Otherwise, or while spliced bytes
 * are still on their way (they go first), a look (MSG_PEEK) into buf.
 * *len 0: nothing (yet), or the app ended (a->eof). */
static const char *look(struct relay *r, struct app_conn *a, char *buf, size_t want, size_t *len)
{
        ssize_t n;

        *len = 0;
        if (!r->down_ahead && a->outstanding == 1 && r->down.len == 0) {
                if (r->down_off == r->down_len)
                        r->down_off = r->down_len = 0;
                if (r->down_len < RELAY_BUF) {
                        n = read(a->fd, r->down_buf + r->down_len, RELAY_BUF - r->down_len);
                        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                                a->eof = true;
                        if (n <= 0)
                                return buf;
                        r->down_ahead = (size_t)n;
                        r->ahead_app = (int)(a - r->apps);
                }
        }
        if (r->down_ahead) {
                *len = r->down_ahead < want ? r->down_ahead : want;
                return r->down_buf + r->down_len;
        }
        n = recv(a->fd, buf, want, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                a->eof = true;
        *len = n < 0 ? 0 : (size_t)n;
        return buf;
}

static uint64_t head_budget(struct relay *r, struct exchange *x, struct app_conn *a)
{
        size_t got = r->rs_head_got, want = got < RESPONSE_PEEK ? RESPONSE_PEEK - got : RESPONSE_HEAD_MAX - got;
        struct response p;
        size_t n;
        int k;

        for (;;) {
                const char *seen = look(r, a, r->rs_head + got, want, &n);

                if (n == 0)
                        return 0;
                if (seen != r->rs_head + got)
                        memcpy(r->rs_head + got, seen, n);
                if (!x->first_us)
                        x->first_us = relay_now_us();
                k = response_parse(r->rs_head, got + n, RESPONSE_HEAD_MAX, x->head_method, &p);
                if (k == 0)
                        return head_found(r, x, &p);
                if (k == -EPROTO) {
                        x->status = (int)p.status;
                        lose_framing(r, x, p.why);
                        return UINT64_MAX;
                }
                if (n < want || got + want >= RESPONSE_HEAD_MAX)
                        return n; /* all head: take it, and look again when more comes */
                want = RESPONSE_HEAD_MAX - got; /* a big head: one more look, at all of it */
        }
}

static uint64_t chunk_budget(struct relay *r, struct exchange *x, struct app_conn *a)
{
        uint64_t data = chunked_data_left(&r->rs_ch);
        const char *p;
        size_t fwd, n;
        int k;

        if (data)
                return data;
        if ((p = look(r, a, r->rs_head, RESPONSE_PEEK, &n)), n == 0)
                return 0;
        k = chunked_feed(&r->rs_ch, p, n, &fwd);
        if (k < 0) {
                lose_framing(r, x, "malformed chunked response");
                return UINT64_MAX;
        }
        r->rs = RS_RAW;
        r->rs_after = chunked_done(&r->rs_ch) ? RS_DONE : RS_CHUNKED;
        r->rs_left = (uint64_t)k;
        return (uint64_t)k;
}

int inflight_source(struct relay *r)
{
        struct exchange *x = inflight_first(r);

        if (!x || x->app < 0 || r->rs == RS_DONE || (r->apps[x->app].eof && !r->down_ahead))
                return -1;
        return x->app;
}

uint64_t inflight_budget(struct relay *r)
{
        struct exchange *x = inflight_first(r);
        struct app_conn *a = &r->apps[x->app];

        switch (r->rs) {
        case RS_RAW: return r->rs_left;
        case RS_HEAD: return head_budget(r, x, a);
        case RS_CHUNKED: return chunk_budget(r, x, a);
        case RS_TO_EOF:
        case RS_TUNNEL: return UINT64_MAX;
        default: return 0;
        }
}

void inflight_took(struct relay *r, uint64_t n)
{
        struct exchange *x = inflight_first(r);

        x->bytes += n;
        switch (r->rs) {
        case RS_HEAD:
                r->rs_head_got += (size_t)n;
                break;
        case RS_RAW:
                if ((r->rs_left -= n) == 0)
                        enter(r, r->rs_after);
                break;
        case RS_CHUNKED:
                chunked_consumed_data(&r->rs_ch, n);
                break;
        default:
                break;
        }
}

void inflight_app_eof(struct relay *r)
{
        struct exchange *x = inflight_first(r);

        if (x && x->app >= 0)
                r->apps[x->app].eof = true;
}

static void shut_client(struct relay *r)
{
        if (r->client_wr_shut)
                return;
        if (!r->c->tls)
                (void)shutdown(r->c->out, SHUT_WR);
        else
                tls_bye(r->c);
        r->client_wr_shut = true;
}

/* The gate's own answer, in its turn. */
static int answer(struct relay *r, struct exchange *x)
{
        bool close = x->last || (r->client_eof && r->q_len == 1 && r->rq == RQ_CLOSED);
        char vbuf[4096];
        const char *void_path = NULL;
        int n;

        if (x->void_page) {
                void_path = r->ctx->opt->void_path;
                if (x->entry && x->entry->dir) {
                        snprintf(vbuf, sizeof(vbuf), "%s/void", x->entry->dir);
                        if (access(vbuf, R_OK) == 0)
                                void_path = vbuf;
                }
                n = reply_void(r->c, void_path ? void_path : "", !close);
        } else {
                n = reply_send(r->c, x->status, x->location, !close);
        }
        x->first_us = relay_now_us();
        if (n > 0) {
                x->bytes = (uint64_t)n;
                r->st.down += (uint64_t)n;
        }
        inflight_log(r, x, NULL);
        pop(r);
        if (n < 0)
                return relay_finish(r, EXIT_DONE, "client reset");
        r->last_activity = relay_now_ms();
        if (close) {
                shut_client(r);
                return relay_finish(r, EXIT_DONE, x->status < 400 ? "redirected" : "answered with an error");
        }
        return 0;
}

/* An app closed its connection: the requests still waiting for it get 502
 * in their turn. */
void relay_app_close(struct relay *r, int i)
{
        struct app_conn *a = &r->apps[i];

        for (unsigned k = 0; k < r->q_len; k++) {
                struct exchange *x = &r->q[(r->q_first + k) % INFLIGHT_MAX];
                if (x->app == i) {
                        x->app = -1;
                        x->status = 502;
                        x->why = "the app closed the connection without answering";
                        x->exit = EXIT_BACKEND;
                }
        }
        drop_ahead(r, i, false);
        if (r->up_app == i && relay_in_body(r))
                relay_body_lost(r);
        if (r->up_app == i)
                r->up_app = -1;
        close(a->fd);
        *a = (struct app_conn){ .fd = -1 };
}

/* The app closed a kept connection without a byte of the answer: the
 * request goes once more, on a new connection, when that is safe (head.c
 * kept a copy) and nothing else waits on the old one. */
static int retry(struct relay *r, struct exchange *x)
{
        struct app_conn *a = &r->apps[x->app];
        struct route rt = { .kind = ROUTE_PORT, .port = a->port, .entry = a->entry };
        struct backend_result b;

        if (!x->resend || x->retried || a->outstanding != 1 || r->closing ||
            (r->up_app == x->app && (r->out_len > r->out_off || r->up.len > 0)))
                return -1;
        b = backend_open(r->ctx->opt, &rt);
        if (b.fd < 0)
                return -1;
        if (send(b.fd, x->resend, x->resend_len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)x->resend_len) {
                close(b.fd);
                return -1;
        }
        close(a->fd);
        a->fd = b.fd;
        a->eof = a->wr_shut = false;
        a->answered = 0;
        x->retried = true;
        return 0;
}

int inflight_step(struct relay *r)
{
        struct exchange *x = inflight_first(r);
        struct app_conn *a;

        if (!x) {
                if (relay_down_empty(r) && (r->closing || r->rq == RQ_CLOSED)) {
                        shut_client(r);
                        return relay_finish(r, EXIT_DONE, r->st.requests ? "closed" : "client closed");
                }
                return -EAGAIN;
        }
        if (r->closing && relay_down_empty(r)) {
                shut_client(r);
                return relay_finish(r, EXIT_DONE, "closed");
        }
        if (x->app < 0)
                return relay_down_empty(r) ? answer(r, x) : -EAGAIN;
        a = &r->apps[x->app];
        if (!a->eof || r->down_ahead)
                return -EAGAIN;
        switch (r->rs) {
        case RS_HEAD:
                if (x->bytes == 0 && x->body_cut) {
                        x->last = true;
                        complete(r, "the client stopped inside its request body");
                        return 0;
                }
                if (x->bytes == 0) {
                        if (retry(r, x) < 0)
                                relay_app_close(r, x->app); /* x gets a 502 */
                        return 0;
                }
                /* fall through */
        case RS_RAW:
        case RS_CHUNKED:
                x->last = true;
                complete(r, "the app closed inside its response");
                return 0;
        case RS_TO_EOF:
                x->last = true;
                complete(r, NULL);
                return 0;
        default:
                return -EAGAIN; /* TUNNEL: relay.c ends it */
        }
}

void inflight_abandon(struct relay *r)
{
        while (r->q_len) {
                struct exchange *x = inflight_first(r);
                bool tunnel = r->rs == RS_TUNNEL;

                inflight_log(r, x, tunnel ? NULL : x->app < 0 ? "not answered: the connection ended"
                                                              : "no complete response: the connection ended");
                pop(r);
        }
}
