/* relay.c: the byte mover. It knows nothing of HTTP: head.c says where
 * each request goes and how much of the client's bytes may be spliced now;
 * inflight.c says which app the next response bytes come from and how many
 * may be taken as they are. Plain sockets move with splice(2) through a pipe
 * per direction; TLS clients through buffers.
 *
 * Request-side states (head.c):
 *   HEAD     reading and handling the next head
 *   BODY     Content-Length body: `body_left` bytes, spliced
 *   CHUNKED  chunked body, framed by chunked.c
 *   TUNNEL   the app said 101: opaque both ways
 *   CLOSED   the client finished sending (or its last request went out)
 *
 * Connection ends: every answer given and the client done or told so, a
 * write fails, the idle timeout (traffic either way resets it), or the head
 * timeout (408). */
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
        return relay_now_us() / 1000;
}

uint64_t relay_now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#define PIPE_DEFAULT 65536 /* what pipe(7) gives; corrected by `full` */

void relay_pipe_close(struct pipe *p)
{
        if (p->fd[0] >= 0) {
                close(p->fd[0]);
                close(p->fd[1]);
        }
        p->fd[0] = p->fd[1] = -1;
        p->len = 0;
}

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
        if ((r->rq == RQ_BODY || r->rq == RQ_CHUNKED) && inflight_last(r))
                inflight_last(r)->body_cut = true;
        if ((r->rq == RQ_HEAD && (r->in_len > 0 || r->hold)) || (r->rq == RQ_TUNNEL && r->in_len > 0))
                return; /* process_in answers the partial head, or passes the bytes on; the Upgrade's answer decides */
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

static bool up_pending(const struct relay *r)
{
        return r->out_len > r->out_off || r->up.len > 0;
}

/* A send to the app failed: it closed or reset the connection. Its
 * requests are answered as when it closes (inflight.c: sent once more, or
 * 502), in their turn. */
static int app_gone(struct relay *r)
{
        int i = r->up_app;
        struct app_conn *a = &r->apps[i];

        if (r->rs == RS_TUNNEL)
                return relay_finish(r, EXIT_DONE, "app closed");
        if (relay_in_body(r))
                relay_body_lost(r);
        r->out_len = r->out_off = 0;
        r->up_app = -1;
        if (a->outstanding == 0)
                relay_app_close(r, i);
        else
                a->eof = a->wr_shut = true;
        return 0;
}

static int app_out(struct relay *r)
{
        int fd = r->up_app >= 0 ? r->apps[r->up_app].fd : -1;
        ssize_t n;

        if (fd < 0) {
                /* The app went away under a request: nothing can reach it,
                 * and the answers before go out first. */
                if (relay_in_body(r))
                        relay_body_lost(r);
                r->out_len = r->out_off = 0;
                return 0;
        }
        if (r->out_len > r->out_off) {
                n = send(fd, r->out + r->out_off, r->out_len - r->out_off, MSG_NOSIGNAL);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : app_gone(r);
                r->out_off += (size_t)n;
                if (r->out_off == r->out_len)
                        r->out_off = r->out_len = 0;
                activity(r);
        } else if (r->up.len > 0) {
                n = splice(r->up.fd[0], NULL, fd, NULL, r->up.len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : app_gone(r);
                pipe_took(&r->up, (size_t)n);
                activity(r);
        }
        return 0;
}

/* The client finished sending and the apps have it all: pass the half-close
 * on to those that still owe an answer, and close the others. Only a real
 * end of the client's stream: after a request that merely says it is the
 * last, some apps would take a half-close for a client gone. */
static void pass_half_close(struct relay *r)
{
        if (!r->client_eof || r->hold || up_pending(r) || r->in_len > 0)
                return;
        for (int i = 0; i < APPS_MAX; i++) {
                struct app_conn *a = &r->apps[i];
                if (a->fd < 0 || a->wr_shut)
                        continue;
                if (a->outstanding == 0 && r->rs != RS_TUNNEL)
                        relay_app_close(r, i);
                else if (shutdown(a->fd, SHUT_WR) == 0)
                        a->wr_shut = true;
        }
}

/* Response bytes from the app whose answer is next, as many as inflight.c
 * allows and the way to the client has room for. */
static int app_in(struct relay *r)
{
        int i = inflight_source(r);
        uint64_t budget;
        size_t room;
        ssize_t n;

        if (i < 0)
                return 0;
        room = r->c->tls ? (relay_down_empty(r) ? RELAY_BUF : 0) : pipe_room(&r->down);
        if ((room == 0 && !r->down_ahead) || (budget = inflight_budget(r)) == 0)
                return 0;
        if (inflight_source(r) != i)
                return 0; /* the head ended the answer (a 1xx, a 204...) */
        if (r->down_ahead) {
                /* read ahead (inflight.c, look): taken where they are */
                n = (ssize_t)(budget < r->down_ahead ? budget : r->down_ahead);
                r->down_len += (size_t)n;
                r->down_ahead -= (size_t)n;
                inflight_took(r, (uint64_t)n);
                activity(r);
                return 0;
        }
        if (room == 0)
                return 0;
        if (budget < room)
                room = (size_t)budget;
        if (r->c->tls) {
                n = read(r->apps[i].fd, r->down_buf, room);
                if (n > 0) {
                        r->down_off = 0;
                        r->down_len = (size_t)n;
                }
        } else {
                n = splice(r->apps[i].fd, NULL, r->down.fd[1], NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n > 0)
                        r->down.len += (size_t)n;
                else if (n < 0 && errno == EAGAIN)
                        pipe_no_room(&r->down);
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0)
                inflight_app_eof(r);
        else
                inflight_took(r, (uint64_t)n);
        activity(r);
        return 0;
}

/* An app connection with nothing to answer became readable: it closed (or
 * sent bytes nobody asked for); either way it is done. */
static void app_idle_in(struct relay *r, int i)
{
        char b;
        ssize_t n = recv(r->apps[i].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n > 0)
                log_msg(LOG_WARNING, "%s: app on port %u sent bytes without a request; its connection is closed",
                        r->ctx->client_addr, r->apps[i].port);
        relay_app_close(r, i);
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

/* A tunnel ends when both sides have: each side's end reaches the other. */
static int tunnel_step(struct relay *r)
{
        struct app_conn *a = r->up_app >= 0 ? &r->apps[r->up_app] : NULL;

        if (r->rs != RS_TUNNEL || !a || !a->eof || r->down_ahead || !relay_down_empty(r))
                return 0;
        if (!r->client_wr_shut) {
                if (!r->c->tls)
                        (void)shutdown(r->c->out, SHUT_WR);
                else
                        tls_bye(r->c);
                r->client_wr_shut = true;
        }
        if (r->rq == RQ_CLOSED)
                return relay_finish(r, EXIT_DONE, "closed");
        return 0;
}

/* Bytes accepted from one side and not yet given to the other. */
static size_t pending(const struct relay *r)
{
        return (r->out_len - r->out_off) + r->up.len + r->down.len + (r->down_len - r->down_off);
}

static bool head_timer(const struct relay *r)
{
        return r->rq == RQ_HEAD && r->head_start && !r->deferred;
}

static int timeout_ms(const struct relay *r, uint64_t now)
{
        uint64_t idle = r->last_activity + (uint64_t)r->ctx->opt->idle_timeout * 1000, t = idle;

        if (head_timer(r)) {
                uint64_t h = r->head_start + (uint64_t)r->ctx->opt->head_timeout * 1000;
                t = h < t ? h : t;
        }
        return t <= now ? 0 : (int)(t - now > 60000 ? 60000 : t - now);
}

static int check_timeouts(struct relay *r, uint64_t now)
{
        if (head_timer(r) && now >= r->head_start + (uint64_t)r->ctx->opt->head_timeout * 1000) {
                r->head_start = 0;
                if (inflight_full(r))
                        return relay_finish(r, EXIT_TIMEOUT, "request head timeout");
                return inflight_answer_now(r, 408, "request head timeout");
        }
        if (now >= r->last_activity + (uint64_t)r->ctx->opt->idle_timeout * 1000)
                return relay_finish(r, EXIT_TIMEOUT, "idle timeout");
        return 0;
}

#define POLL_MAX (2 + APPS_MAX)

static int relay_loop(struct relay *r)
{
        for (;;) {
                struct pollfd p[POLL_MAX];
                int n = 0, ci = -1, co = -1, ai[APPS_MAX], src, k;
                uint64_t now;

                /* Handle what is buffered until nothing changes. */
                while ((k = relay_process_in(r)) == 0 && !r->st.end)
                        ;
                if (k > 0 || r->st.end)
                        return 0;
                while ((k = inflight_step(r)) == 0 && !r->st.end)
                        ;
                if (k > 0 || r->st.end)
                        return 0;
                pass_half_close(r);
                if (tunnel_step(r) || r->st.end)
                        return 0;
                if (r->down_ahead) {
                        /* response bytes in hand: no wait for them */
                        size_t before = r->down_ahead;
                        app_in(r);
                        if (r->st.end)
                                return 0;
                        if (r->down_ahead != before)
                                continue;
                }
                if (r->c->tls && wants_read(r) && client_pending(r->c)) {
                        if (client_in(r) || r->st.end)
                                return 0;
                        continue;
                }
                /* Writes are tried before waiting: a socket is nearly always
                 * writable, so a request and its answer cost one wait each. */
                if (up_pending(r) || !relay_down_empty(r)) {
                        size_t before = pending(r);
                        if (up_pending(r) && app_out(r))
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
                src = inflight_source(r);
                for (int i = 0; i < APPS_MAX; i++) {
                        struct app_conn *a = &r->apps[i];
                        short ev = 0;

                        ai[i] = -1;
                        if (a->fd < 0)
                                continue;
                        if (i == src && (r->c->tls ? relay_down_empty(r) : pipe_room(&r->down) > 0))
                                ev |= POLLIN;
                        else if (a->outstanding == 0 && !a->eof && r->rs != RS_TUNNEL)
                                ev |= POLLIN; /* only its end can come */
                        if (i == r->up_app && up_pending(r))
                                ev |= POLLOUT;
                        if (ev)
                                ai[i] = n, p[n++] = (struct pollfd){ .fd = a->fd, .events = ev };
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
                for (int i = 0; i < APPS_MAX; i++) {
                        short re = ai[i] >= 0 ? p[ai[i]].revents : 0;
                        if (!re)
                                continue;
                        if ((re & (POLLOUT | POLLERR | POLLHUP)) && i == r->up_app && app_out(r))
                                return 0;
                        if (r->apps[i].fd < 0 || !(re & (POLLIN | POLLERR | POLLHUP)))
                                continue;
                        if (i == src)
                                app_in(r);
                        else if (r->apps[i].outstanding == 0)
                                app_idle_in(r, i);
                }
                if (r->st.end)
                        return 0;
                if (co >= 0 && (p[co].revents & (POLLOUT | POLLERR | POLLHUP)) && client_out(r))
                        return 0;
                if (ci >= 0 && (p[ci].revents & (POLLIN | POLLERR | POLLHUP)) && client_in(r))
                        return 0;
                if (r->st.end || check_timeouts(r, relay_now_ms()) || r->st.end)
                        return 0;
        }
}

/* After the connection's last answer, what the client still sends is read
 * and dropped for a moment: closing on unread bytes would make the kernel
 * reset the connection, and the client could lose the answer. */
#define LINGER_MS    1000
#define LINGER_BYTES (1u << 20)

static void linger(struct relay *r)
{
        uint64_t end = relay_now_ms() + LINGER_MS;
        size_t dropped = 0;

        if (r->client_eof || !r->client_wr_shut)
                return;
        while (dropped < LINGER_BYTES) {
                uint64_t now = relay_now_ms();
                struct pollfd p = { .fd = r->c->in, .events = POLLIN };
                ssize_t n;

                if (now >= end || (!client_pending(r->c) && poll(&p, 1, (int)(end - now)) <= 0))
                        return;
                n = client_read(r->c, r->in, r->in_cap);
                if (n == -EAGAIN || n == -EINTR)
                        continue;
                if (n <= 0)
                        return;
                dropped += (size_t)n;
        }
}

/* One connection per process: the buffers are static, and only the pages a
 * connection touches are ever mapped. */
static char in_buf[HEAD_MAX_LIMIT > RELAY_BUF ? HEAD_MAX_LIMIT : RELAY_BUF];
static char out_buf[sizeof(in_buf) + HEAD_EXTRA];
static char down_buf[RELAY_BUF];
static char rs_head[RESPONSE_HEAD_MAX];
static char resend[INFLIGHT_MAX][RESEND_MAX];

int relay_serve(struct conn_ctx *ctx, struct relay_stats *st)
{
        static struct relay r; /* big (the queue): not on the stack */
        static bool used;
        size_t cap = ctx->opt->max_head > RELAY_BUF ? ctx->opt->max_head : RELAY_BUF;

        /* Zero from the start; writing zeros over it would map all its
         * pages for the one connection a process serves. */
        if (used)
                memset(&r, 0, sizeof(r));
        used = true;
        r.ctx = ctx;
        r.c = ctx->client;
        r.up_app = -1;
        r.up.fd[0] = r.up.fd[1] = r.down.fd[0] = r.down.fd[1] = -1;
        for (int i = 0; i < APPS_MAX; i++)
                r.apps[i].fd = -1;
        r.in_cap = cap;
        r.out_cap = cap + HEAD_EXTRA;
        r.in = in_buf;
        r.out = out_buf;
        r.down_buf = down_buf;
        r.rs_head = rs_head;
        r.resend = resend;
        if (relay_pipe_open(&r.down) < 0) {
                relay_finish(&r, EXIT_SOFTWARE, "no pipe");
        } else {
                r.head_start = r.last_activity = relay_now_ms(); /* the first head counts from the connection */
                relay_loop(&r);
        }
        inflight_abandon(&r);
        linger(&r);
        if (r.st.exit_code == EXIT_DONE && r.answer_exit)
                r.st.exit_code = r.answer_exit;
        for (int i = 0; i < APPS_MAX; i++)
                if (r.apps[i].fd >= 0)
                        close(r.apps[i].fd);
        relay_pipe_close(&r.up);
        relay_pipe_close(&r.down);
        *st = r.st;
        st->app = r.cur_entry ? r.cur_entry->key : NULL;
        st->port = r.cur_port;
        return st->exit_code;
}
