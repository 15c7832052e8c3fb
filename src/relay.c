/* relay.c: the two-way byte mover. Every request head the client sends is
 * handled by head.c; bodies are measured (Content-Length, chunked.c) so the
 * next head is found exactly; the response direction is moved opaquely. Plain sockets move with
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

#include "relay.h"

uint64_t relay_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define PIPE_DEFAULT 65536 /* what pipe(7) gives; corrected by `full` */

int relay_pipe_open(struct pipe *p)
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

int relay_finish(struct relay *r, int code, const char *end)
{
        if (!r->st.end) {
                r->st.end = end;
                r->st.exit_code = code;
        }
        return 1;
}

bool relay_down_empty(const struct relay *r)
{
        return r->down.len == 0 && r->down_len == r->down_off;
}

/* ---- moving bytes ---- */

static void activity(struct relay *r)
{
        r->last_activity = relay_now_ms();
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
        case RQ_CLOSED: return r->last; /* to be dropped */
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
                if (relay_pipe_open(&r->up) < 0)
                        return relay_finish(r, EXIT_SOFTWARE, "no pipe");
                n = splice(r->c->in, NULL, r->up.fd[1], NULL, budget, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0 && errno == EAGAIN)
                        pipe_no_room(&r->up);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : relay_finish(r, EXIT_DONE, "client reset");
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
                return relay_finish(r, EXIT_DONE, "client reset");
        if (n == 0) {
                client_done_sending(r);
                return 0;
        }
        if (r->in_len == 0 && r->rq == RQ_HEAD && !r->head_start)
                r->head_start = relay_now_ms();
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
                        return errno == EAGAIN || errno == EINTR ? 0 : relay_finish(r, EXIT_DONE, "app closed");
                r->out_off += (size_t)n;
                if (r->out_off == r->out_len)
                        r->out_off = r->out_len = 0;
                activity(r);
        } else if (r->up.len > 0) {
                n = splice(r->up.fd[0], NULL, r->be, NULL, r->up.len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : relay_finish(r, EXIT_DONE, "app closed");
                pipe_took(&r->up, (size_t)n);
                activity(r);
        }
        return 0;
}

/* The client finished sending and the app has it all: pass the half-close on.
 * Only a real end of the client's stream: after a request that merely says it
 * is the last, some apps would take a half-close for a client gone. */
static void pass_half_close(struct relay *r)
{
        if (r->be >= 0 && !r->be_wr_shut && r->client_eof && r->rq != RQ_UPGRADE &&
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
                (void)relay_enter_body(r, RQ_TUNNEL); /* a failure has ended the relay */
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
                        return relay_finish(r, EXIT_DONE, "client reset");
                r->down_off += (size_t)n;
        } else if (r->down.len > 0) {
                n = splice(r->down.fd[0], NULL, r->c->out, NULL, r->down.len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : relay_finish(r, EXIT_DONE, "client reset");
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
        if (r->be < 0 || !r->be_eof || !relay_down_empty(r))
                return 0;
        if (r->rq == RQ_DRAIN) {
                close(r->be);
                r->be = -1;
                pipe_close(&r->up);
                if (r->pending_status)
                        return relay_answer(r, r->pending_status, r->pending_location,
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
                return relay_finish(r, EXIT_DONE, r->rq == RQ_CLOSED ? "closed" : "app closed");
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
                relay_log(r, NULL, NULL, 408, "request head timeout");
                r->head_start = 0;
                return relay_answer(r, 408, NULL, NULL);
        }
        if (now >= r->last_activity + (uint64_t)r->ctx->opt->idle_timeout * 1000)
                return relay_finish(r, EXIT_TIMEOUT, "idle timeout");
        return 0;
}

static int relay_loop(struct relay *r)
{
        for (;;) {
                struct pollfd p[3];
                int n = 0, ci = -1, co = -1, bi = -1, k;
                uint64_t now;

                /* Handle what is buffered until nothing changes. */
                while ((k = relay_process_in(r)) == 0)
                        ;
                if (k > 0 || r->st.end)
                        return 0;
                pass_half_close(r);
                if ((k = after_backend(r)) == 2)
                        continue;
                if (k || r->st.end)
                        return 0;
                if (r->rq == RQ_CLOSED && r->be < 0)
                        return relay_finish(r, EXIT_DONE, "client closed"), 0;
                if (r->c->tls && wants_read(r) && client_pending(r->c)) {
                        if (client_in(r) || r->st.end)
                                return 0;
                        continue;
                }
                /* Writes are tried before waiting: a socket is nearly always
                 * writable, so a request and its answer cost one wait each. */
                if (r->out_len > r->out_off || r->up.len > 0 || !relay_down_empty(r)) {
                        size_t before = pending(r);
                        if ((r->out_len > r->out_off || r->up.len > 0) && backend_out(r))
                                return 0;
                        if (!relay_down_empty(r) && client_out(r))
                                return 0;
                        if (r->st.end)
                                return 0;
                        if (pending(r) != before)
                                continue;
                }

                if (wants_read(r) || splice_budget(r))
                        ci = n, p[n++] = (struct pollfd){ .fd = r->c->in, .events = POLLIN };
                if (!relay_down_empty(r)) {
                        if (ci >= 0 && r->c->in == r->c->out)
                                p[ci].events |= POLLOUT, co = ci;
                        else
                                co = n, p[n++] = (struct pollfd){ .fd = r->c->out, .events = POLLOUT };
                }
                if (r->be >= 0) {
                        short ev = 0;
                        if (!r->be_eof && (r->c->tls || r->rq == RQ_UPGRADE ? relay_down_empty(r) : pipe_room(&r->down) > 0))
                                ev |= POLLIN;
                        if (r->out_len > r->out_off || r->up.len > 0)
                                ev |= POLLOUT;
                        if (ev)
                                bi = n, p[n++] = (struct pollfd){ .fd = r->be, .events = ev };
                }
                now = relay_now_ms();
                k = poll(p, (nfds_t)n, timeout_ms(r, now));
                if (k < 0 && errno != EINTR)
                        return relay_finish(r, EXIT_SOFTWARE, "poll failed"), 0;
                if (k <= 0) {
                        if (check_timeouts(r, relay_now_ms()) || r->st.end)
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
                if (r->st.end || check_timeouts(r, relay_now_ms()) || r->st.end)
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
        if (relay_pipe_open(&r.down) < 0) {
                relay_finish(&r, EXIT_SOFTWARE, "no pipe");
        } else {
                r.head_start = r.last_activity = relay_now_ms(); /* the first head counts from the connection */
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
