/* head.c: one request head at a time. Parses it (request.c), routes it
 * (route.c), answers it when the gate must (reply.c), opens or switches the
 * app (backend.c), and queues the rewritten head (rewrite.c) and the bytes of
 * its body for relay.c to move. Owns no sockets' waiting: relay.c does. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

/* One journal entry per request; rt (when routed) names the app, else the
 * app the connection is with. */
void relay_log(struct relay *r, const struct request *q, const struct route *rt, int status, const char *why)
{
        const char *head = r->in;
        const struct name_entry *e = rt ? rt->entry : r->be_entry;
        struct log_request l = {
                .app = e ? e->key : NULL,
                .port = rt ? rt->port : r->be_port,
                .client = r->ctx->client_addr,
                .method = q ? head + q->method.off : NULL,
                .method_len = q ? q->method.len : 0,
                .target = q ? head + q->target.off : NULL,
                .target_len = q ? q->target.len : 0,
                .status = status,
                .why = why,
        };
        log_request(&l);
}

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

/* Answers now when no response can be in flight, else after the app has
 * finished (DRAIN), so that the answer never lands inside a response. */
/* Answers now when no response can be in flight, else after the app has
 * finished (DRAIN), so that the answer never lands inside a response. */
int relay_answer(struct relay *r, int status, const char *location, const char *void_path)
{
        if (r->be >= 0 && !(r->be_eof && relay_down_empty(r))) {
                r->pending_status = status;
                r->pending_location = location;
                r->pending_void = void_path != NULL;
                if (void_path)
                        snprintf(r->pending_void_path, sizeof(r->pending_void_path), "%s", void_path);
                r->rq = RQ_DRAIN;
                if (!r->be_wr_shut && shutdown(r->be, SHUT_WR) == 0)
                        r->be_wr_shut = true;
                return 0;
        }
        if (void_path)
                (void)reply_void(r->c, void_path); /* the client may be gone: nothing to add */
        else
                (void)reply_send(r->c, status, location);
        return relay_finish(r, exit_for(status), status < 400 ? "redirected" : "answered with an error");
}

static int out_add(struct relay *r, const void *p, size_t n)
{
        if (r->out_len + n > r->out_cap)
                return -ENOBUFS;
        memcpy(r->out + r->out_len, p, n);
        r->out_len += n;
        return 0;
}

/* ---- one request head ---- */

static const char *void_file(const struct relay *r, const struct route *rt, char *buf, size_t size)
{
        if (rt->entry && rt->entry->dir) {
                snprintf(buf, size, "%s/void", rt->entry->dir);
                if (access(buf, R_OK) == 0)
                        return buf;
        }
        if (r->ctx->opt->void_path)
                return r->ctx->opt->void_path;
        return "";
}

static int open_backend(struct relay *r, const struct route *rt, const struct request *q, const char *head)
{
        struct backend_result b = backend_open(r->ctx->opt, rt);
        char vbuf[4096];

        r->be_port = rt->port;
        r->be_entry = rt->entry;
        if (b.fd >= 0) {
                r->be = b.fd;
                r->be_eof = r->be_wr_shut = false;
                return 0;
        }
        /* An expired session URL ("~" in the target) gets httpGate's 410. */
        if (memchr(head + q->target.off, '~', q->target.len)) {
                relay_log(r, q, rt, 410, b.why);
                r->be = -1;
                return relay_answer(r, 410, NULL, void_file(r, rt, vbuf, sizeof(vbuf)));
        }
        relay_log(r, q, rt, b.status, b.why);
        return relay_answer(r, b.status, NULL, NULL);
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

static void consume_in(struct relay *r, size_t n)
{
        memmove(r->in, r->in + n, r->in_len - n);
        r->in_len -= n;
}

static int handle_head(struct relay *r)
{
        struct request q;
        struct route rt;
        struct span path = { 0, 0 };
        bool asterisk, tunnel, stay;
        char target[HEAD_MAX_LIMIT];
        int s = request_parse(r->in, r->in_len, r->ctx->opt->max_head, &q), tlen, k;

        if (s == -EAGAIN)
                return -EAGAIN;
        if (s > 0) {
                relay_log(r, NULL, NULL, s, "bad request head");
                return relay_answer(r, s, NULL, NULL);
        }
        if (!options_method_allowed(r->ctx->opt, r->in + q.method.off, q.method.len)) {
                relay_log(r, &q, NULL, 501, "method not forwarded");
                return relay_answer(r, 501, NULL, NULL);
        }
        if (target_path(r->in, &q, &path, &asterisk) != 0) {
                relay_log(r, &q, NULL, 400, "target form not accepted");
                return relay_answer(r, 400, NULL, NULL);
        }
        if (path.len)
                route(r->ctx->table, r->in + path.off, path.len, &rt);
        else
                route(r->ctx->table, "/", 1, &rt);
        /* On a connection with an app, a target no key claims stays with it,
         * unchanged, as httpGate forwards every later request. */
        stay = r->be >= 0 && (asterisk || (!rt.explicit_ && !(rt.kind == ROUTE_PORT && rt.port == r->be_port)));
        if (rt.kind == ROUTE_ERROR && !stay) {
                relay_log(r, &q, &rt, rt.status,
                        rt.status == 403 ? "port refused"
                        : rt.status == 503 ? "names file unreadable" : "no such app and no default");
                s = relay_answer(r, rt.status, NULL, NULL);
                if (rt.status == 503 && r->st.end)
                        r->st.exit_code = EXIT_CONFIG;
                return s;
        }
        if (rt.kind == ROUTE_REDIRECT && !stay) {
                relay_log(r, &q, &rt, 302, NULL);
                return relay_answer(r, 302, rt.entry->redirect, NULL);
        }
        if (r->be >= 0 && rt.port != r->be_port && rt.explicit_) {
                /* Another app: let this one finish, then connect anew. */
                r->rq = RQ_DRAIN;
                if (!r->be_wr_shut && shutdown(r->be, SHUT_WR) == 0)
                        r->be_wr_shut = true;
                return 0;
        }
        if (stay || asterisk) {
                memcpy(target, r->in + q.target.off, q.target.len);
                tlen = (int)q.target.len;
        } else if (path.len == 0) {
                tlen = (memcpy(target, "/", 1), 1);
        } else if ((tlen = route_rewrite(&rt, r->in + path.off, path.len, target, sizeof(target))) < 0) {
                relay_log(r, &q, NULL, 414, "rewritten target too long");
                return relay_answer(r, 414, NULL, NULL);
        }
        if (r->be < 0) {
                if ((s = open_backend(r, &rt, &q, r->in)) != 0)
                        return s;
        }
        /* Only on a connection's first request can the gate be sure that the
         * next response bytes answer it: a later Upgrade is not passed on. */
        tunnel = q.upgrade && r->st.requests == 0 && q.framing == BODY_NONE;
        k = head_rewrite(r->ctx, &q, r->in, target, (size_t)tlen, q.upgrade && !tunnel, r->out + r->out_len,
                         r->out_cap - r->out_len);
        if (k < 0) {
                relay_log(r, &q, NULL, 431, "head too large after rewriting");
                return relay_answer(r, 431, NULL, NULL);
        }
        r->out_len += (size_t)k;
        relay_log(r, &q, NULL, 0, NULL);
        r->st.requests++;
        consume_in(r, q.head_len);
        r->head_start = 0;
        r->last = q.close && !tunnel;
        if (q.framing == BODY_LENGTH) {
                r->body_left = q.content_length;
                return relay_enter_body(r, RQ_BODY);
        } else if (q.framing == BODY_CHUNKED) {
                r->ch = (struct chunked){ 0 };
                return relay_enter_body(r, RQ_CHUNKED);
        } else if (tunnel) {
                r->rq = RQ_UPGRADE;
                r->status_len = 0;
        }
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
                if (!r->head_start)
                        r->head_start = relay_now_ms();
                /* RFC 9112 2.2: an empty line before a request line is ignored
                 * (some clients add one after a body). */
                if (r->in_len >= 2 && r->in[0] == '\r' && r->in[1] == '\n') {
                        consume_in(r, 2);
                        return 0;
                }
                k = handle_head(r);
                if (k == -EAGAIN && r->client_eof) {
                        relay_log(r, NULL, NULL, 400, "client closed inside a request head");
                        return relay_answer(r, 400, NULL, NULL);
                }
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
                if (k < 0) {
                        relay_log(r, NULL, NULL, 400, "malformed chunked body");
                        return relay_answer(r, 400, NULL, NULL);
                }
                (void)out_add(r, r->in, fwd);
                consume_in(r, (size_t)k);
                if (chunked_done(&r->ch)) {
                        (void)out_add(r, "\r\n", 2);
                        r->rq = RQ_HEAD;
                }
                return 0;
        case RQ_TUNNEL:
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
