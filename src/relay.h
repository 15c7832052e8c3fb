/* relay.h: the connection's own state, shared by relay.c (moving bytes,
 * waiting, timeouts), head.c (the request side: one request head at a time,
 * routed on its own) and inflight.c (the response side: the requests in
 * flight, in order, and where each response ends). Nothing else includes it. */
#pragma once

#include "httpgate.h"

enum rq { RQ_HEAD, RQ_BODY, RQ_CHUNKED, RQ_TUNNEL, RQ_CLOSED };

/* The response side of the exchange at the head of the queue. RS_RAW moves
 * `left` bytes as they are, then goes on to `after`. */
enum rs { RS_HEAD, RS_RAW, RS_CHUNKED, RS_TO_EOF, RS_TUNNEL, RS_DONE };

#define HEAD_EXTRA     1024 /* room for the gate's own header lines */
#define APPS_MAX       8    /* app connections one client connection keeps open */
#define INFLIGHT_MAX   16   /* requests forwarded (or to be answered) and not yet answered */
#define RESPONSE_PEEK  4096 /* first look at a response head; most fit */
#define LOG_FIELD_MAX  256  /* bytes of a Referer or User-Agent kept for the journal */
#define RESEND_MAX     8192 /* a longer head is not kept for a retry */

struct pipe {
        int fd[2];
        size_t len;  /* bytes inside */
        size_t cap;  /* nominal size */
        bool full;   /* a splice in found no room (pages, not bytes, ran out) */
        bool grown;  /* enlarged once, when first full */
};

/* One connection to an app, kept for its next request. */
struct app_conn {
        int fd;                       /* -1: the slot is free */
        unsigned port;
        const struct name_entry *entry;
        unsigned outstanding;         /* requests sent to it, not yet answered */
        unsigned answered;            /* responses it completed */
        bool eof, wr_shut;
        bool spent;                   /* takes no more requests: it said close, or its framing was lost */
};

/* One request in flight, in the client's order. */
struct exchange {
        int app;                      /* index into apps, or -1: the gate answers it */
        int status;                   /* the gate's answer, or the app's status (0: none yet) */
        const char *location;         /* the gate's 302 */
        const char *why;              /* the gate's answer: for the journal */
        bool head_method, upgrade, last;
        bool body_cut;                /* the client stopped inside its body: nothing to answer */
        int exit;                     /* the gate's answer: the exit code it asks for */
        char *resend;                 /* the head as sent, for one retry on a new connection (NULL: none) */
        size_t resend_len;
        bool retried;
        bool void_page;               /* the gate's 410: the void file of entry */
        const struct name_entry *entry;
        unsigned port;
        uint64_t start_us, first_us;  /* head complete; first response byte (0: none yet) */
        uint64_t bytes;               /* response bytes taken from the app */
        unsigned minor;
        char method[32];
        char target[TARGET_LOG_MAX + 1];
        char referer[LOG_FIELD_MAX + 1], agent[LOG_FIELD_MAX + 1];
        size_t method_len, target_len, referer_len, agent_len;
};

struct relay {
        struct conn_ctx *ctx;
        struct client *c;
        struct app_conn apps[APPS_MAX];
        int up_app;                   /* the app that client bytes go to now, or -1 */
        const struct name_entry *cur_entry; /* the app of the last routed request */
        unsigned cur_port;            /*   (targets no key claims stay with it) */
        bool client_eof, client_wr_shut;
        bool last;                    /* the client's last request went out (RFC 9112 9.6) */
        bool hold;                    /* an Upgrade went out: no more requests until it is answered */
        bool closing;                 /* ends once the client has every byte it is owed */
        bool deferred;                /* a complete head waits for the gate: no head timeout */

        enum rq rq;
        char *in;                     /* client bytes not yet handled */
        size_t in_len, in_cap;
        char *out;                    /* bytes for the app up_app, in order before `up` */
        size_t out_len, out_off, out_cap;
        uint64_t body_left;
        struct chunked ch;
        struct pipe up, down;         /* client->app, app->client */
        char *down_buf;               /* app->client bytes in hand: [down_off, down_len) for the client, */
        size_t down_len, down_off;    /*   then down_ahead bytes read from the app ahead_app, */
        size_t down_ahead;            /*   not yet framed (inflight.c, look) */
        int ahead_app;

        struct exchange q[INFLIGHT_MAX]; /* a ring: q[(q_first + i) % INFLIGHT_MAX] */
        char (*resend)[RESEND_MAX];   /* q[i]'s copy for a retry: resend[i] */
        unsigned q_first, q_len;
        enum rs rs, rs_after;         /* the response side of q's first */
        uint64_t rs_left;
        struct chunked rs_ch;
        size_t rs_head_got;           /* head bytes taken already (a head in pieces) */
        char *rs_head;                /* those bytes, RESPONSE_HEAD_MAX */

        uint64_t last_activity, head_start; /* ms */
        int answer_exit;              /* the exit code the last request asks for (httpgate(8)) */
        struct relay_stats st;
};

/* relay.c */
uint64_t relay_now_ms(void);
uint64_t relay_now_us(void);
int relay_pipe_open(struct pipe *p);
void relay_pipe_close(struct pipe *p);
bool relay_down_empty(const struct relay *r);
/* Ends the connection with an exit code and a word for the journal; the
 * first reason wins. Returns 1. */
int relay_finish(struct relay *r, int code, const char *end);

/* head.c */
/* The app of the request body the client is sending went away: the rest of
 * the client's stream can no longer be framed. What was for the app is
 * dropped, no more requests are read, and the connection ends after the
 * answers before. */
void relay_body_lost(struct relay *r);
/* A request body is on its way to the app up_app: in the pipe, or still
 * coming from the client. */
bool relay_in_body(const struct relay *r);
/* Client bytes from now on go to the app as a body or tunnel. */
int relay_enter_body(struct relay *r, enum rq state);
/* Handles buffered client bytes. Returns 1 when finished, 0 when something
 * changed, -EAGAIN when it needs I/O first. */
int relay_process_in(struct relay *r);

/* inflight.c */
struct request;
/* Queues a request: forwarded to app (index), or answered by the gate in its
 * turn (app -1; the caller sets status, why, location or void_page). The
 * caller has made sure that the queue is not full. */
struct exchange *inflight_push(struct relay *r, int app, const struct request *q, const char *head);
struct exchange *inflight_first(struct relay *r);
struct exchange *inflight_last(struct relay *r);
bool inflight_full(const struct relay *r);
/* The gate's answer to a request it cannot even queue (a bad head, a
 * timeout): logged now, given after the responses before it; ends the
 * connection. */
int inflight_answer_now(struct relay *r, int status, const char *why);
/* The app to read the next response bytes from (an index into apps), or
 * -1: nothing to read now. inflight_budget() then says how many may be
 * taken as they are (UINT64_MAX: to its end; 0: none yet); it may look at
 * the socket (MSG_PEEK) to find a head's end. */
int inflight_source(struct relay *r);
uint64_t inflight_budget(struct relay *r);
/* n bytes of the first exchange's response were taken from its app. */
void inflight_took(struct relay *r, uint64_t n);
/* The source app ended its stream. */
void inflight_app_eof(struct relay *r);
/* Completed responses, the gate's own answers in their turn, and the end of
 * the connection when one must end it. Returns 1 when finished, 0 when
 * something changed, -EAGAIN otherwise. */
int inflight_step(struct relay *r);
/* Closes app connection i; requests still waiting for it get 502. */
void relay_app_close(struct relay *r, int i);
/* The journal entry of a request (why: NULL for x's own reason). */
void inflight_log(struct relay *r, const struct exchange *x, const char *why);
/* Logs the requests still in flight when the connection ends. */
void inflight_abandon(struct relay *r);
