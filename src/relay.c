/* relay.c: the two-way byte mover. Every request head the client sends is
 * parsed (request.c), routed (route.c), cleaned and rewritten here; bodies
 * are measured (Content-Length, chunked.c) so the next head is found exactly;
 * the response direction is moved opaquely. Plain sockets move with
 * splice(2) through a pipe per direction; TLS clients through buffers.
 *
 * Request-side states:
 *   HEAD     reading and handling the next head
 *   BODY     Content-Length body: `body_left` bytes, spliced
 *   CHUNKED  chunked body, framed by chunked.c
 *   UPGRADE  an Upgrade head went out: wait for the app's status line
 *   TUNNEL   the app said 101: opaque both ways
 *   DRAIN    the app must finish before the gate may answer or switch apps:
 *            its write side is shut, the response direction runs to EOF
 *   CLOSED   the client finished sending
 *
 * Connection ends: both directions finished, a write fails, the idle timeout
 * (traffic either way resets it), or the head timeout (408). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "httpgate.h"

enum rq { RQ_HEAD, RQ_BODY, RQ_CHUNKED, RQ_UPGRADE, RQ_TUNNEL, RQ_DRAIN, RQ_CLOSED };

#define HEAD_EXTRA 1024 /* room for the gate's own header lines */
#define STATUS_PEEK 12  /* "HTTP/1.1 101" */

struct pipe {
        int fd[2];
        size_t len;  /* bytes inside */
        size_t cap;  /* nominal size */
        bool full;   /* a splice in found no room (pages, not bytes, ran out) */
        bool grown;  /* enlarged once, when first full */
};

struct relay {
        struct conn_ctx *ctx;
        struct client *c;
        int be;                       /* the app's socket, or -1 */
        unsigned be_port;
        const struct name_entry *be_entry;
        bool be_eof, be_wr_shut, client_eof, client_wr_shut;

        enum rq rq;
        char *in;                     /* client bytes not yet handled */
        size_t in_len, in_cap;
        char *out;                    /* bytes for the app, in order before `up` */
        size_t out_len, out_off, out_cap;
        uint64_t body_left;
        struct chunked ch;
        struct pipe up, down;         /* client->app, app->client */
        char *down_buf;               /* app->client for TLS clients and UPGRADE */
        size_t down_len, down_off;
        char status_line[STATUS_PEEK];
        size_t status_len;

        int pending_status;           /* DRAIN: answer this when the app is done */
        const char *pending_location;
        bool pending_void;
        char pending_void_path[4096];

        uint64_t last_activity, head_start; /* ms */
        struct relay_stats st;
};

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define PIPE_DEFAULT 65536 /* what pipe(7) gives; corrected by `full` */

static int pipe_open(struct pipe *p)
{
        if (p->fd[0] >= 0)
                return 0;
        if (pipe2(p->fd, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        p->cap = PIPE_DEFAULT;
        p->full = p->grown = false;
        return 0;
}

static size_t pipe_room(const struct pipe *p)
{
        return p->full || p->len >= p->cap ? 0 : p->cap - p->len;
}

/* A splice into p found no room although bytes wait in it: no more splicing
 * in until some go out (else poll would wake us for nothing, forever). The
 * first time, the pipe grows to PIPE_BYTES: only big transfers pay for it. */
static void pipe_no_room(struct pipe *p)
{
        int sz;

        if (p->len == 0)
                return; /* the source had nothing after all */
        p->full = true;
        if (!p->grown) {
                p->grown = true;
                sz = fcntl(p->fd[0], F_SETPIPE_SZ, PIPE_BYTES); /* best effort */
                if (sz > 0 && (size_t)sz > p->len) {
                        p->cap = (size_t)sz;
                        p->full = false;
                }
        }
}

static void pipe_took(struct pipe *p, size_t n)
{
        p->len -= n;
        if (n)
                p->full = false;
}

static void pipe_close(struct pipe *p)
{
        if (p->fd[0] >= 0) {
                close(p->fd[0]);
                close(p->fd[1]);
        }
        p->fd[0] = p->fd[1] = -1;
        p->len = 0;
}

/* ---- ending ---- */

static int finish(struct relay *r, int code, const char *end)
{
        if (!r->st.end) {
                r->st.end = end;
                r->st.exit_code = code;
        }
        return 1;
}

/* One journal entry per request; rt (when routed) names the app, else the
 * app the connection is with. */
static void log_req(struct relay *r, const struct request *q, const struct route *rt, int status, const char *why)
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
static bool down_empty(const struct relay *r)
{
        return r->down.len == 0 && r->down_len == r->down_off;
}

static int answer(struct relay *r, int status, const char *location, const char *void_path)
{
        if (r->be >= 0 && !(r->be_eof && down_empty(r))) {
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
        return finish(r, exit_for(status), status < 400 ? "redirected" : "answered with an error");
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
                log_req(r, q, rt, 410, b.why);
                r->be = -1;
                return answer(r, 410, NULL, void_file(r, rt, vbuf, sizeof(vbuf)));
        }
        log_req(r, q, rt, b.status, b.why);
        return answer(r, b.status, NULL, NULL);
}

/* Client bytes to the app from now on, spliced through the up pipe
 * (opened on the first body: most connections never need it). */
static int enter_body(struct relay *r, enum rq state)
{
        r->rq = state;
        if (!r->c->tls && pipe_open(&r->up) < 0)
                return finish(r, EXIT_SOFTWARE, "no pipe");
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
                log_req(r, NULL, NULL, s, "bad request head");
                return answer(r, s, NULL, NULL);
        }
        if (!options_method_allowed(r->ctx->opt, r->in + q.method.off, q.method.len)) {
                log_req(r, &q, NULL, 501, "method not forwarded");
                return answer(r, 501, NULL, NULL);
        }
        if (target_path(r->in, &q, &path, &asterisk) != 0) {
                log_req(r, &q, NULL, 400, "target form not accepted");
                return answer(r, 400, NULL, NULL);
        }
        if (path.len)
                route(r->ctx->table, r->in + path.off, path.len, &rt);
        else
                route(r->ctx->table, "/", 1, &rt);
        /* On a connection with an app, a target no key claims stays with it,
         * unchanged, as httpGate forwards every later request. */
        stay = r->be >= 0 && (asterisk || (!rt.explicit_ && !(rt.kind == ROUTE_PORT && rt.port == r->be_port)));
        if (rt.kind == ROUTE_ERROR && !stay) {
                log_req(r, &q, &rt, rt.status,
                        rt.status == 403 ? "port refused"
                        : rt.status == 503 ? "names file unreadable" : "no such app and no default");
                s = answer(r, rt.status, NULL, NULL);
                if (rt.status == 503 && r->st.end)
                        r->st.exit_code = EXIT_CONFIG;
                return s;
        }
        if (rt.kind == ROUTE_REDIRECT && !stay) {
                log_req(r, &q, &rt, 302, NULL);
                return answer(r, 302, rt.entry->redirect, NULL);
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
                log_req(r, &q, NULL, 414, "rewritten target too long");
                return answer(r, 414, NULL, NULL);
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
                log_req(r, &q, NULL, 431, "head too large after rewriting");
                return answer(r, 431, NULL, NULL);
        }
        r->out_len += (size_t)k;
        log_req(r, &q, NULL, 0, NULL);
        r->st.requests++;
        consume_in(r, q.head_len);
        r->head_start = 0;
        if (q.framing == BODY_LENGTH) {
                r->body_left = q.content_length;
                return enter_body(r, RQ_BODY);
        } else if (q.framing == BODY_CHUNKED) {
                r->ch = (struct chunked){ 0 };
                return enter_body(r, RQ_CHUNKED);
        } else if (tunnel) {
                r->rq = RQ_UPGRADE;
                r->status_len = 0;
        }
        return 0;
}

/* Moves buffered client bytes forward according to the state. Returns 1 when
 * the connection is finished, 0 when something changed, -EAGAIN otherwise. */
static int process_in(struct relay *r)
{
        size_t fwd, n;
        int k;

        if (r->out_len > r->out_off || r->up.len > 0)
                return -EAGAIN; /* the app must take what it has first */
        r->out_len = r->out_off = 0;
        switch (r->rq) {
        case RQ_HEAD:
                if (r->in_len == 0 && r->client_eof)
                        r->rq = RQ_CLOSED;
                if (r->in_len == 0)
                        return -EAGAIN;
                if (!r->head_start)
                        r->head_start = now_ms();
                /* RFC 9112 2.2: an empty line before a request line is ignored
                 * (some clients add one after a body). */
                if (r->in_len >= 2 && r->in[0] == '\r' && r->in[1] == '\n') {
                        consume_in(r, 2);
                        return 0;
                }
                k = handle_head(r);
                if (k == -EAGAIN && r->client_eof) {
                        log_req(r, NULL, NULL, 400, "client closed inside a request head");
                        return answer(r, 400, NULL, NULL);
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
                        log_req(r, NULL, NULL, 400, "malformed chunked body");
                        return answer(r, 400, NULL, NULL);
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
        default:
                return -EAGAIN;
        }
}

/* ---- moving bytes ---- */

static void activity(struct relay *r)
{
        r->last_activity = now_ms();
}

/* How many client bytes may be spliced straight to the app now. */
static size_t splice_budget(const struct relay *r)
{
        uint64_t want;

        if (r->c->tls || r->in_len > 0 || r->client_eof || pipe_room(&r->up) == 0)
                return 0;
        switch (r->rq) {
        case RQ_BODY: want = r->body_left; break;
        case RQ_CHUNKED: want = chunked_data_left(&r->ch); break;
        case RQ_TUNNEL: want = SIZE_MAX; break;
        default: return 0;
        }
        return want < pipe_room(&r->up) ? (size_t)want : pipe_room(&r->up);
}

static bool wants_read(const struct relay *r)
{
        if (r->client_eof || r->in_len >= r->in_cap)
                return false;
        switch (r->rq) {
        case RQ_HEAD: return true;
        case RQ_CHUNKED: return r->c->tls || r->in_len > 0 || chunked_data_left(&r->ch) == 0;
        case RQ_BODY:
        case RQ_TUNNEL: return r->c->tls;
        default: return false;
        }
}

static void client_done_sending(struct relay *r)
{
        r->client_eof = true;
        if (r->rq == RQ_HEAD && r->in_len > 0)
                return; /* process_in answers the partial head */
        if (r->rq != RQ_DRAIN && r->rq != RQ_UPGRADE)
                r->rq = RQ_CLOSED;
}

static int client_in(struct relay *r)
{
        size_t budget = splice_budget(r);
        ssize_t n;

        if (budget) {
                if (pipe_open(&r->up) < 0)
                        return finish(r, EXIT_SOFTWARE, "no pipe");
                n = splice(r->c->in, NULL, r->up.fd[1], NULL, budget, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0 && errno == EAGAIN)
                        pipe_no_room(&r->up);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : finish(r, EXIT_DONE, "client reset");
                if (n == 0) {
                        client_done_sending(r);
                        return 0;
                }
                r->up.len += (size_t)n;
                r->st.up += (uint64_t)n;
                activity(r);
                if (r->rq == RQ_BODY && (r->body_left -= (uint64_t)n) == 0)
                        r->rq = RQ_HEAD;
                else if (r->rq == RQ_CHUNKED)
                        chunked_consumed_data(&r->ch, (uint64_t)n);
                return 0;
        }
        if (!wants_read(r))
                return 0;
        n = client_read(r->c, r->in + r->in_len, r->in_cap - r->in_len);
        if (n == -EAGAIN || n == -EINTR)
                return 0;
        if (n < 0)
                return finish(r, EXIT_DONE, "client reset");
        if (n == 0) {
                client_done_sending(r);
                return 0;
        }
        if (r->in_len == 0 && r->rq == RQ_HEAD && !r->head_start)
                r->head_start = now_ms();
        r->in_len += (size_t)n;
        r->st.up += (uint64_t)n;
        activity(r);
        return 0;
}

static int backend_out(struct relay *r)
{
        ssize_t n;

        if (r->be < 0)
                return 0;
        if (r->out_len > r->out_off) {
                n = send(r->be, r->out + r->out_off, r->out_len - r->out_off, MSG_NOSIGNAL);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : finish(r, EXIT_DONE, "app closed");
                r->out_off += (size_t)n;
                if (r->out_off == r->out_len)
                        r->out_off = r->out_len = 0;
                activity(r);
        } else if (r->up.len > 0) {
                n = splice(r->up.fd[0], NULL, r->be, NULL, r->up.len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : finish(r, EXIT_DONE, "app closed");
                pipe_took(&r->up, (size_t)n);
                activity(r);
        }
        return 0;
}

/* The client finished sending and the app has it all: pass the half-close on. */
static void pass_half_close(struct relay *r)
{
        if (r->be >= 0 && !r->be_wr_shut && (r->rq == RQ_CLOSED || r->client_eof) && r->rq != RQ_UPGRADE &&
            r->out_len == r->out_off && r->up.len == 0 && r->in_len == 0 && shutdown(r->be, SHUT_WR) == 0)
                r->be_wr_shut = true;
}

/* The status line of the answer to an Upgrade request decides: 101 makes the
 * connection an opaque tunnel; anything else keeps it HTTP. Lenient, since
 * some apps end lines with a bare LF. */
static void watch_upgrade(struct relay *r, const char *p, size_t n)
{
        size_t k = STATUS_PEEK - r->status_len;

        if (r->rq != RQ_UPGRADE)
                return;
        if (k > n)
                k = n;
        memcpy(r->status_line + r->status_len, p, k);
        r->status_len += k;
        if (r->status_len < STATUS_PEEK && !r->be_eof)
                return;
        if (r->status_len == STATUS_PEEK && memcmp(r->status_line, "HTTP/1.", 7) == 0 &&
            memcmp(r->status_line + 8, " 101", 4) == 0)
                (void)enter_body(r, RQ_TUNNEL); /* a failure has ended the relay */
        else
                r->rq = RQ_HEAD;
        if (r->client_eof && r->in_len == 0)
                r->rq = RQ_CLOSED;
}

static int backend_in(struct relay *r)
{
        ssize_t n;

        if (r->be < 0 || r->be_eof)
                return 0;
        if (r->c->tls || r->rq == RQ_UPGRADE) {
                if (r->down_len > r->down_off)
                        return 0;
                n = read(r->be, r->down_buf, r->rq == RQ_UPGRADE ? STATUS_PEEK - r->status_len : RELAY_BUF);
                if (n > 0) {
                        r->down_off = 0;
                        r->down_len = (size_t)n;
                        watch_upgrade(r, r->down_buf, (size_t)n);
                }
        } else {
                if (pipe_room(&r->down) == 0)
                        return 0;
                n = splice(r->be, NULL, r->down.fd[1], NULL, pipe_room(&r->down), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n > 0)
                        r->down.len += (size_t)n;
                else if (n < 0 && errno == EAGAIN)
                        pipe_no_room(&r->down);
        }
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : (r->be_eof = true, 0);
        if (n == 0) {
                r->be_eof = true;
                watch_upgrade(r, "", 0);
        }
        activity(r);
        return 0;
}

static int client_out(struct relay *r)
{
        ssize_t n;

        if (r->down_len > r->down_off) {
                n = client_write(r->c, r->down_buf + r->down_off, r->down_len - r->down_off);
                if (n == -EAGAIN || n == -EINTR)
                        return 0;
                if (n < 0)
                        return finish(r, EXIT_DONE, "client reset");
                r->down_off += (size_t)n;
        } else if (r->down.len > 0) {
                n = splice(r->down.fd[0], NULL, r->c->out, NULL, r->down.len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : finish(r, EXIT_DONE, "client reset");
                pipe_took(&r->down, (size_t)n);
        } else {
                return 0;
        }
        r->st.down += (uint64_t)n;
        activity(r);
        return 0;
}

/* What to do once the app has sent everything. Returns 1 when finished, 2
 * when the held head may now go to the next app, 0 otherwise. */
static int after_backend(struct relay *r)
{
        if (r->be < 0 || !r->be_eof || !down_empty(r))
                return 0;
        if (r->rq == RQ_DRAIN) {
                close(r->be);
                r->be = -1;
                pipe_close(&r->up);
                if (r->pending_status)
                        return answer(r, r->pending_status, r->pending_location,
                                      r->pending_void ? r->pending_void_path : NULL);
                r->rq = RQ_HEAD; /* the held head goes to the next app */
                return 2;
        }
        if (!r->client_wr_shut) {
                /* The app's half-close reaches the client. */
                if (!r->c->tls)
                        (void)shutdown(r->c->out, SHUT_WR);
                else
                        tls_bye(r->c);
                r->client_wr_shut = true;
        }
        if (r->rq == RQ_CLOSED || (r->rq == RQ_HEAD && r->in_len == 0))
                return finish(r, EXIT_DONE, r->rq == RQ_CLOSED ? "closed" : "app closed");
        return 0;
}

/* Bytes accepted from one side and not yet given to the other. */
static size_t pending(const struct relay *r)
{
        return (r->out_len - r->out_off) + r->up.len + r->down.len + (r->down_len - r->down_off);
}

static int timeout_ms(const struct relay *r, uint64_t now)
{
        uint64_t idle = r->last_activity + (uint64_t)r->ctx->opt->idle_timeout * 1000, t = idle;

        if (r->rq == RQ_HEAD && r->head_start) {
                uint64_t h = r->head_start + (uint64_t)r->ctx->opt->head_timeout * 1000;
                t = h < t ? h : t;
        }
        return t <= now ? 0 : (int)(t - now > 60000 ? 60000 : t - now);
}

static int check_timeouts(struct relay *r, uint64_t now)
{
        if (r->rq == RQ_HEAD && r->head_start && now >= r->head_start + (uint64_t)r->ctx->opt->head_timeout * 1000) {
                log_req(r, NULL, NULL, 408, "request head timeout");
                r->head_start = 0;
                return answer(r, 408, NULL, NULL);
        }
        if (now >= r->last_activity + (uint64_t)r->ctx->opt->idle_timeout * 1000)
                return finish(r, EXIT_TIMEOUT, "idle timeout");
        return 0;
}

static int relay_loop(struct relay *r)
{
        for (;;) {
                struct pollfd p[3];
                int n = 0, ci = -1, co = -1, bi = -1, k;
                uint64_t now;

                /* Handle what is buffered until nothing changes. */
                while ((k = process_in(r)) == 0)
                        ;
                if (k > 0 || r->st.end)
                        return 0;
                pass_half_close(r);
                if ((k = after_backend(r)) == 2)
                        continue;
                if (k || r->st.end)
                        return 0;
                if (r->rq == RQ_CLOSED && r->be < 0)
                        return finish(r, EXIT_DONE, "client closed"), 0;
                if (r->c->tls && wants_read(r) && client_pending(r->c)) {
                        if (client_in(r) || r->st.end)
                                return 0;
                        continue;
                }
                /* Writes are tried before waiting: a socket is nearly always
                 * writable, so a request and its answer cost one wait each. */
                if (r->out_len > r->out_off || r->up.len > 0 || !down_empty(r)) {
                        size_t before = pending(r);
                        if ((r->out_len > r->out_off || r->up.len > 0) && backend_out(r))
                                return 0;
                        if (!down_empty(r) && client_out(r))
                                return 0;
                        if (r->st.end)
                                return 0;
                        if (pending(r) != before)
                                continue;
                }

                if (wants_read(r) || splice_budget(r))
                        ci = n, p[n++] = (struct pollfd){ .fd = r->c->in, .events = POLLIN };
                if (!down_empty(r)) {
                        if (ci >= 0 && r->c->in == r->c->out)
                                p[ci].events |= POLLOUT, co = ci;
                        else
                                co = n, p[n++] = (struct pollfd){ .fd = r->c->out, .events = POLLOUT };
                }
                if (r->be >= 0) {
                        short ev = 0;
                        if (!r->be_eof && (r->c->tls || r->rq == RQ_UPGRADE ? down_empty(r) : pipe_room(&r->down) > 0))
                                ev |= POLLIN;
                        if (r->out_len > r->out_off || r->up.len > 0)
                                ev |= POLLOUT;
                        if (ev)
                                bi = n, p[n++] = (struct pollfd){ .fd = r->be, .events = ev };
                }
                now = now_ms();
                k = poll(p, (nfds_t)n, timeout_ms(r, now));
                if (k < 0 && errno != EINTR)
                        return finish(r, EXIT_SOFTWARE, "poll failed"), 0;
                if (k <= 0) {
                        if (check_timeouts(r, now_ms()) || r->st.end)
                                return 0;
                        continue;
                }
                if (bi >= 0 && (p[bi].revents & (POLLOUT | POLLERR | POLLHUP)) && backend_out(r))
                        return 0;
                if (bi >= 0 && (p[bi].revents & (POLLIN | POLLERR | POLLHUP)) && backend_in(r))
                        return 0;
                if (co >= 0 && (p[co].revents & (POLLOUT | POLLERR | POLLHUP)) && client_out(r))
                        return 0;
                if (ci >= 0 && (p[ci].revents & (POLLIN | POLLERR | POLLHUP)) && client_in(r))
                        return 0;
                if (r->st.end || check_timeouts(r, now_ms()) || r->st.end)
                        return 0;
        }
}

/* One connection per process: the buffers are static, and only the pages a
 * connection touches are ever mapped. */
static char in_buf[HEAD_MAX_LIMIT > RELAY_BUF ? HEAD_MAX_LIMIT : RELAY_BUF];
static char out_buf[sizeof(in_buf) + HEAD_EXTRA];
static char down_buf[RELAY_BUF];

int relay_serve(struct conn_ctx *ctx, struct relay_stats *st)
{
        struct relay r = {
                .ctx = ctx,
                .c = ctx->client,
                .be = -1,
                .up = { .fd = { -1, -1 } },
                .down = { .fd = { -1, -1 } },
        };
        size_t cap = ctx->opt->max_head > RELAY_BUF ? ctx->opt->max_head : RELAY_BUF;

        r.in_cap = cap;
        r.out_cap = cap + HEAD_EXTRA;
        r.in = in_buf;
        r.out = out_buf;
        r.down_buf = down_buf;
        if (pipe_open(&r.down) < 0) {
                finish(&r, EXIT_SOFTWARE, "no pipe");
        } else {
                r.head_start = r.last_activity = now_ms(); /* the first head counts from the connection */
                relay_loop(&r);
        }
        if (r.be >= 0)
                close(r.be);
        pipe_close(&r.up);
        pipe_close(&r.down);
        *st = r.st;
        st->app = r.be_entry ? r.be_entry->key : NULL;
        st->port = r.be_port;
        return st->exit_code;
}
