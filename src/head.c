/* head.c: the request side, one request head at a time. Parses it
 * (request.c), routes it on its own (route.c), picks the app connection it
 * goes to (an open one for the same port, else a new one: backend.c), and
 * queues the rewritten head (rewrite.c) and its body for relay.c to move.
 * What the gate answers itself is queued too (inflight.c), so that every
 * answer leaves in the client's order. Owns no waiting: relay.c does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "relay.h"

static int exit_for(int status)
{
        if (status == 408)
                return EXIT_TIMEOUT;
        if (status == 501 || status == 505)
                return EXIT_CLIENT; /* the client asked for what the gate does not do */
        if (status == 410)
                return EXIT_BACKEND; /* only sent when the session's app is not there */
        return status >= 500 ? EXIT_BACKEND : status >= 400 ? EXIT_CLIENT : EXIT_DONE;
}

static void consume_in(struct relay *r, size_t n)
{
        memmove(r->in, r->in + n, r->in_len - n);
        r->in_len -= n;
}

/* The gate answers q itself, in its turn. The connection stays open unless
 * the request is the client's last or has a body (which would have to be
 * read and dropped first) or the client's stream can no longer be framed. */
static int gate_answer(struct relay *r, const struct request *q, int status, const char *why, bool close)
{
        struct exchange *x = inflight_push(r, -1, q->head_len ? q : NULL, r->in);

        x->status = status;
        x->why = why;
        x->exit = status == 503 && close ? EXIT_CONFIG : exit_for(status);
        if (close || q->close || q->framing == BODY_CHUNKED || (q->framing == BODY_LENGTH && q->content_length > 0)) {
                x->last = true;
                r->last = true;
                r->rq = RQ_CLOSED; /* what the client still sends is read and dropped */
        } else {
                consume_in(r, q->head_len);
        }
        r->head_start = 0;
        return 0;
}

int inflight_answer_now(struct relay *r, int status, const char *why)
{
        static const struct request none;

        return gate_answer(r, &none, status, why, true);
}

/* An open connection to port that may take another request. PicoLisp
 * closes after each answer on its main port, so an idle one may have
 * closed since the last wait: a request that could not be sent again
 * (look_first) looks whether it did; the others are sent again on a new
 * connection if it did (inflight.c, retry). */
static int open_app(struct relay *r, unsigned port, bool look_first)
{
        for (int i = 0; i < APPS_MAX; i++) {
                struct app_conn *a = &r->apps[i];
                char b;

                if (a->fd < 0 || a->port != port || a->spent || a->eof || a->wr_shut)
                        continue;
                if (look_first && a->outstanding == 0 && recv(a->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0) {
                        relay_app_close(r, i); /* closed, or bytes nobody asked for */
                        continue;
                }
                return i;
        }
        return -1;
}

/* A free slot; an idle connection is closed to make one. -1: all busy. */
static int free_app(struct relay *r)
{
        int idle = -1;

        for (int i = 0; i < APPS_MAX; i++) {
                if (r->apps[i].fd < 0)
                        return i;
                if (r->apps[i].outstanding == 0 && idle < 0)
                        idle = i;
        }
        if (idle >= 0)
                relay_app_close(r, idle);
        return idle;
}

static const char *names_error(int status)
{
        return status == 403 ? "port refused" : status == 503 ? "names file unreadable" : "no such app and no default";
}

/* Client bytes to the app from now on, spliced through the up pipe
 * (opened on the first body: most connections never need it). */
int relay_enter_body(struct relay *r, enum rq state)
{
        r->rq = state;
        if (!r->c->tls && relay_pipe_open(&r->up) < 0)
                return relay_finish(r, EXIT_SOFTWARE, "no pipe");
        return 0;
}

/* A request the gate may send again when an app closes a kept connection
 * without answering it (PicoLisp's main port reads no second request):
 * no body, and a method that asks for nothing to be done (RFC 9110 9.2.2). */
static bool retry_safe(const struct request *q, const char *head)
{
        const char *m = head + q->method.off;

        return q->framing == BODY_NONE && ((q->method.len == 3 && memcmp(m, "GET", 3) == 0) ||
                                           (q->method.len == 4 && memcmp(m, "HEAD", 4) == 0) ||
                                           (q->method.len == 7 && memcmp(m, "OPTIONS", 7) == 0));
}

/* The head is complete, but the gate must wait: its time does not count. */
static int defer(struct relay *r)
{
        r->deferred = true;
        return -EAGAIN;
}

bool relay_in_body(const struct relay *r)
{
        return r->up.len > 0 || r->rq == RQ_BODY || r->rq == RQ_CHUNKED;
}

void relay_body_lost(struct relay *r)
{
        struct exchange *x = inflight_last(r);

        r->last = true;
        r->rq = RQ_CLOSED;
        r->out_len = r->out_off = 0;
        if (r->up.len > 0)
                relay_pipe_close(&r->up); /* reopened for nobody: the client sends no more requests */
        if (x)
                x->last = true;
}

/* The request whose body the client broke: the app has part of it and can
 * not answer it. The gate answers 400 in its place, when its response has
 * not begun, and the connection ends after it. */
static int body_broken(struct relay *r)
{
        struct exchange *x = inflight_last(r);
        struct app_conn *a;

        relay_body_lost(r);
        if (r->up_app < 0)
                return 0; /* its app went away before: x has its 502 */
        a = &r->apps[r->up_app];
        a->spent = true;
        if (!a->wr_shut && shutdown(a->fd, SHUT_WR) == 0)
                a->wr_shut = true;
        if (!x || x->app != r->up_app)
                return relay_finish(r, EXIT_CLIENT, "malformed chunked body");
        if (x == inflight_first(r) && x->bytes > 0)
                return 0; /* the app answered before the body ended: its answer goes out */
        /* Two entries: what the app got (part of it), then the gate's answer. */
        inflight_log(r, x, "the client's chunked body is malformed: the gate answers in the app's place");
        x->app = -1;
        x->status = 400;
        x->exit = EXIT_CLIENT;
        x->why = "malformed chunked body";
        if (--a->outstanding == 0)
                relay_app_close(r, r->up_app);
        return 0;
}

static int handle_head(struct relay *r)
{
        struct request q;
        struct route rt;
        struct span path = { 0, 0 };
        bool asterisk, tunnel, stay, safe;
        char target[HEAD_MAX_LIMIT];
        int s = request_parse(r->in, r->in_len, r->ctx->opt->max_head, &q), tlen, k, i;
        struct exchange *x;

        if (s == -EAGAIN)
                return -EAGAIN;
        if (s > 0)
                return inflight_answer_now(r, s, "bad request head");
        if (!options_method_allowed(r->ctx->opt, r->in + q.method.off, q.method.len))
                return gate_answer(r, &q, 501, "method not forwarded", false);
        if (target_path(r->in, &q, &path, &asterisk) != 0)
                return gate_answer(r, &q, 400, "target form not accepted", false);
        if (path.len)
                route(r->ctx->table, r->in + path.off, path.len, &rt);
        else
                route(r->ctx->table, "/", 1, &rt);
        /* A target no key claims stays with the app of the request before,
         * unchanged, as httpGate forwards every later request. */
        stay = r->cur_port && (asterisk || (!rt.explicit_ && !(rt.kind == ROUTE_PORT && rt.port == r->cur_port)));
        if (stay) {
                rt.kind = ROUTE_PORT;
                rt.port = r->cur_port;
                rt.entry = r->cur_entry;
        } else if (rt.kind == ROUTE_ERROR) {
                return gate_answer(r, &q, rt.status, names_error(rt.status), rt.status == 503);
        } else if (rt.kind == ROUTE_REDIRECT) {
                s = gate_answer(r, &q, 302, NULL, false);
                inflight_last(r)->location = rt.entry->redirect;
                return s;
        }
        /* An Upgrade goes out alone: its answer may turn the connection
         * into a tunnel, so nothing may be in flight around it. */
        tunnel = q.upgrade && q.framing == BODY_NONE;
        if (tunnel && r->q_len > 0)
                return defer(r);
        if (stay || asterisk) {
                memcpy(target, r->in + q.target.off, q.target.len);
                tlen = (int)q.target.len;
        } else if (path.len == 0) {
                tlen = (memcpy(target, "/", 1), 1);
        } else if ((tlen = route_rewrite(&rt, r->in + path.off, path.len, target, sizeof(target))) < 0) {
                return gate_answer(r, &q, 414, "rewritten target too long", false);
        }
        safe = retry_safe(&q, r->in) && q.head_len + HEAD_EXTRA <= RESEND_MAX;
        if ((i = open_app(r, rt.port, !safe)) < 0) {
                struct backend_result b;

                if ((i = free_app(r)) < 0)
                        return defer(r); /* every app connection has a response to give first */
                b = backend_open(r->ctx->opt, &rt);
                if (b.fd < 0) {
                        /* An expired session URL ("~" in the target) gets httpGate's 410. */
                        bool expired = memchr(r->in + q.target.off, '~', q.target.len) != NULL;
                        s = gate_answer(r, &q, expired ? 410 : b.status, b.why, false);
                        x = inflight_last(r);
                        x->entry = rt.entry;
                        x->port = rt.port;
                        x->void_page = expired;
                        return s;
                }
                r->apps[i] = (struct app_conn){ .fd = b.fd, .port = rt.port, .entry = rt.entry };
        }
        k = head_rewrite(r->ctx, &q, r->in, target, (size_t)tlen, q.upgrade && !tunnel, r->out + r->out_len,
                         r->out_cap - r->out_len);
        if (k < 0)
                return gate_answer(r, &q, 431, "head too large after rewriting", false);
        x = inflight_push(r, i, &q, r->in);
        if ((r->apps[i].answered || r->apps[i].outstanding) && k <= RESEND_MAX && safe) {
                x->resend = r->resend[x - r->q];
                memcpy(x->resend, r->out + r->out_len, (size_t)k);
                x->resend_len = (size_t)k;
        }
        r->out_len += (size_t)k;
        x->upgrade = tunnel;
        x->entry = rt.entry;
        x->port = rt.port;
        r->apps[i].outstanding++;
        mark_request(rt.entry ? rt.entry : r->cur_entry); /* a session port's request is its app's */
        r->up_app = i;
        r->cur_port = rt.port;
        r->cur_entry = rt.entry;
        r->st.requests++;
        consume_in(r, q.head_len);
        r->head_start = 0;
        r->last = x->last = q.close && !tunnel;
        r->hold = tunnel;
        if (q.framing == BODY_LENGTH) {
                r->body_left = q.content_length;
                return relay_enter_body(r, RQ_BODY);
        } else if (q.framing == BODY_CHUNKED) {
                r->ch = (struct chunked){ 0 };
                return relay_enter_body(r, RQ_CHUNKED);
        }
        return 0;
}

static int out_add(struct relay *r, const void *p, size_t n)
{
        if (r->out_len + n > r->out_cap)
                return -ENOBUFS;
        memcpy(r->out + r->out_len, p, n);
        r->out_len += n;
        return 0;
}

/* Moves buffered client bytes forward according to the state. Returns 1 when
 * the connection is finished, 0 when something changed, -EAGAIN otherwise. */
int relay_process_in(struct relay *r)
{
        size_t fwd, n;
        int k;

        if (r->out_len > r->out_off || r->up.len > 0)
                return -EAGAIN; /* the app must take what it has first */
        r->out_len = r->out_off = 0;
        switch (r->rq) {
        case RQ_HEAD:
                if ((r->in_len == 0 && r->client_eof) || r->last)
                        r->rq = RQ_CLOSED;
                if (r->rq == RQ_CLOSED)
                        return 0;
                if (r->in_len == 0)
                        return -EAGAIN;
                k = r->deferred;
                r->deferred = false;
                if (r->hold || inflight_full(r))
                        return defer(r);
                if (k || !r->head_start)
                        r->head_start = relay_now_ms(); /* a wait for the gate does not count */
                /* RFC 9112 2.2: an empty line before a request line is ignored
                 * (some clients add one after a body). */
                if (r->in_len >= 2 && r->in[0] == '\r' && r->in[1] == '\n') {
                        consume_in(r, 2);
                        return 0;
                }
                k = handle_head(r);
                if (k == -EAGAIN && r->client_eof && !r->deferred)
                        return inflight_answer_now(r, 400, "client closed inside a request head");
                return k;
        case RQ_BODY:
                if (r->in_len == 0)
                        return -EAGAIN;
                n = r->in_len < r->body_left ? r->in_len : (size_t)r->body_left;
                (void)out_add(r, r->in, n);
                consume_in(r, n);
                if ((r->body_left -= n) == 0)
                        r->rq = RQ_HEAD;
                return 0;
        case RQ_CHUNKED:
                if (r->in_len == 0)
                        return -EAGAIN;
                k = chunked_feed(&r->ch, r->in, r->in_len, &fwd);
                if (k < 0)
                        return body_broken(r);
                (void)out_add(r, r->in, fwd);
                consume_in(r, (size_t)k);
                if (chunked_done(&r->ch)) {
                        (void)out_add(r, "\r\n", 2);
                        r->rq = RQ_HEAD;
                }
                return 0;
        case RQ_TUNNEL:
                if (r->in_len == 0 && r->client_eof) {
                        r->rq = RQ_CLOSED; /* everything before the end went out */
                        return 0;
                }
                if (r->in_len == 0)
                        return -EAGAIN;
                (void)out_add(r, r->in, r->in_len);
                consume_in(r, r->in_len);
                return 0;
        case RQ_CLOSED:
                /* After the last request, what the client still sends is read
                 * and dropped: closing on unread bytes would reset the
                 * connection under the answer. */
                r->in_len = 0;
                return -EAGAIN;
        default:
                return -EAGAIN;
        }
}
