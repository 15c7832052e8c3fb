/* relay.h: the relay's own state, shared by relay.c (moving bytes, waiting,
 * timeouts) and head.c (one request head at a time: route, answer, forward).
 * Nothing outside these two files includes it. */
#pragma once

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
        bool last;                    /* the client's last request went out (RFC 9112 9.6) */

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

/* relay.c */
uint64_t relay_now_ms(void);
int relay_pipe_open(struct pipe *p);
bool relay_down_empty(const struct relay *r);
/* Ends the connection with an exit code and a word for the journal; the
 * first reason wins. Returns 1. */
int relay_finish(struct relay *r, int code, const char *end);

/* head.c */
void relay_log(struct relay *r, const struct request *q, const struct route *rt, int status, const char *why);
/* Answers status now, or after the app has finished (DRAIN). Returns 1 when
 * the connection is finished, else 0. */
int relay_answer(struct relay *r, int status, const char *location, const char *void_path);
/* Client bytes from now on go to the app as a body or tunnel. */
int relay_enter_body(struct relay *r, enum rq state);
/* Handles buffered client bytes. Returns 1 when finished, 0 when something
 * changed, -EAGAIN when it needs I/O first. */
int relay_process_in(struct relay *r);
