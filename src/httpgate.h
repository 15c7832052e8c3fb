/* httpgate.h: the table of contents. Shared types, named limits and exit
 * codes, then one commented block per source file, in data-flow order
 * (DESIGN.md): intake, request, route, launch, relay, reply, log. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTPGATE_VERSION "0.1.0"

/* ---- limits: every buffer and every wait has a bound with a name ---- */
#define HEAD_MAX_DEFAULT    16384u  /* request line + fields, bytes */
#define HEAD_MAX_LIMIT      65536u  /* largest --max-head accepted */
#define REQUEST_LINE_MAX    8192u   /* longer request line: 414 */
#define FIELDS_MAX          100u    /* more header fields: 431 */
#define CHUNK_LINE_MAX      256u    /* chunk-size line incl. extensions */
#define TRAILER_MAX         8192u   /* trailer section, bytes (discarded) */
#define NAMES_LINE_MAX      4096u   /* one names-file line, as httpGate */
#define NAMES_ARGS_MAX      64u     /* command tokens of one entry */
#define METHODS_MAX         16u     /* entries of --methods */
#define DENY_MAX            64u     /* denied ports */
#define PIPE_BYTES          (256u * 1024u) /* splice pipe, F_SETPIPE_SZ */
#define RELAY_BUF           (64u * 1024u)  /* userspace copy paths */
#define TARGET_LOG_MAX      512     /* bytes of a target in the journal */
#define CONNECT_TIMEOUT_MS  5000    /* to a configured remote backend */
#define TLS_HANDSHAKE_TIMEOUT_MS 10000
#define WAIT_POLL_MAX_MS    5       /* backoff cap waiting for a port or lock */
#define REPLY_TIMEOUT_MS    10000   /* a client must take each part of an answer */

#define HEAD_TIMEOUT_DEFAULT  20    /* seconds */
#define IDLE_TIMEOUT_DEFAULT  420   /* seconds, as httpGate */
#define START_TIMEOUT_DEFAULT 20    /* seconds */

/* Exit codes: how a connection ended (listed in httpgate(8)). */
enum {
        EXIT_DONE     = 0,  /* both sides finished normally */
        EXIT_CLIENT   = 1,  /* client sent something refused; it got a 4xx */
        EXIT_TIMEOUT  = 2,  /* client went quiet: 408 or idle timeout */
        EXIT_BACKEND  = 3,  /* app not reachable or failed; client got a 5xx */
        EXIT_USAGE    = 64, /* bad command line */
        EXIT_INTAKE   = 65, /* no connection to serve (listening socket...) */
        EXIT_SOFTWARE = 70, /* broken invariant */
        EXIT_CONFIG   = 78, /* names file or certificate unusable */
};

struct span {
        uint32_t off, len; /* into the caller's buffer */
};

/* ---- options.c: the command line ---- */
struct options {
        const char *names_path;  /* NULL: no names file */
        unsigned default_port;   /* 0: none */
        unsigned deny[DENY_MAX];
        unsigned n_deny;
        const char *pem;         /* NULL or "": no TLS */
        unsigned head_timeout;   /* seconds */
        unsigned idle_timeout;
        unsigned start_timeout;
        unsigned max_head;       /* bytes */
        const char *void_path;   /* NULL: only the entry's directory */
        const char *backend;     /* NULL: loopback, ::1 then 127.0.0.1 */
        bool forwarded;          /* add Forwarded, X-Forwarded-* */
        const char *methods[METHODS_MAX];
        unsigned n_methods;
        const char *lock_dir;    /* fallback launcher's locks */
        const char *launcher;    /* launcher socket; NULL: LAUNCHER_SOCKET, "": none */
        const char *check_path;  /* --check FILE */
        const char *tls_dir;     /* one folder per host name (SNI) */
        const char *tls_priority;/* NULL: TLS_PRIORITY_DEFAULT */
        const char *tls_ticket_key; /* NULL: created in the state directory */
        bool sandbox;            /* --sandbox: sandbox.c, and no app started here */
};
/* Fills *o from argv. Returns 0, 1 when --help/--version was printed, or
 * -EINVAL after printing the problem. */
int options_parse(int argc, char **argv, struct options *o);
bool options_method_allowed(const struct options *o, const char *m, size_t len);
bool options_port_denied(const struct options *o, unsigned port);

/* ---- util.c: bounded number parsing, printable bytes, directories ---- */
/* Parses decimal digits s[0..len) into *ret, refusing empty input, any
 * non-digit and values above max. Returns 0 or -EINVAL/-ERANGE. */
int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *ret);
int parse_uint_str(const char *s, uint64_t max, uint64_t *ret);
/* Copies s[0..len) into out (NUL-terminated, at most size bytes), visible
 * ASCII as is and everything else as \xHH. Returns the length written. */
size_t printable(char *out, size_t size, const char *s, size_t len);
/* The gate's own directories: systemd's CacheDirectory= (or
 * RuntimeDirectory=) and StateDirectory=, else these. */
#define CACHE_DIR_DEFAULT "/var/cache/httpgate"
#define STATE_DIR_DEFAULT "/var/lib/httpgate"
const char *cache_dir(void);
const char *state_dir(void);

/* ---- names.c: the names file, parsed into an immutable table ---- */
struct name_entry {
        const char *key;       /* without the "/prefix" */
        const char *prefix;    /* NULL: none; inserted after "/" */
        unsigned port;         /* 0: redirect entry */
        const char *redirect;  /* port 0: the Location URL */
        const char *user;
        const char *dir;
        const char *log;       /* NULL: "^" */
        char **argv;           /* NULL-terminated command */
        unsigned line;
};
struct names_index {
        void *map;             /* the mapped index file */
        size_t len;
};
struct names_cached;
struct names {
        struct name_entry *v;  /* all entries, when parsed whole */
        size_t n;
        char *text;            /* the file, tokens point into it */
        unsigned errors;       /* bad lines (reported, skipped) */
        struct names_index index; /* or: lines found through the index */
        int fd;                /* ... read from here */
        struct names_cached *cached; /* entries parsed so far */
};
/* Problems are passed one by one to report(line, message, data). */
typedef void names_report_fn(unsigned line, const char *msg, void *data);
/* Reads and parses path whole. Returns 0 or negative errno when the file
 * cannot be read; bad lines are reported and skipped, never fatal. */
int names_load(const char *path, struct names *ret, names_report_fn *report, void *data);
/* For a connection: as names_load, but a big file is looked up through its
 * index (index.c), built here when missing or stale. */
int names_open(const char *path, struct names *ret, names_report_fn *report, void *data);
int names_parse(char *text, size_t len, struct names *ret, names_report_fn *report, void *data);
void names_free(struct names *n);
/* Case-insensitive key lookup; the first entry of a key wins. */
const struct name_entry *names_find(const struct names *n, const char *key, size_t len);
/* The "@" entry, else the only entry, else NULL (as httpGate). */
const struct name_entry *names_default(const struct names *n);
/* The distinct directories of the app entries of a file parsed whole, into
 * out: their number, or -E2BIG when there are more than max. */
int names_dirs(const struct names *n, const char **out, unsigned max);
/* Resolves the entry's user; refuses unknown users and uid/gid 0.
 * Returns 0 or -ENOENT/-EPERM. */
int names_user(const struct name_entry *e, uid_t *uid, gid_t *gid, char *home, size_t home_size);

/* ---- index.c: the lookup index of a big names file ---- */
#define NAMES_INDEX_MIN (64u << 10) /* smaller files are parsed whole */
struct index_slot {
        uint32_t hash, off, line; /* off: of the line's key in the file */
};
struct stat;
int index_open(const char *names_path, const struct stat *st, struct names_index *ret);
void index_close(struct names_index *x);
/* Candidate lines for key (same hash), at most max. */
int index_lookup(const struct names_index *x, const char *key, size_t len, struct index_slot *out, int max);
bool index_default(const struct names_index *x, struct index_slot *out);
/* The distinct directories of the file's app entries (for their void
 * files), *bytes of them packed NUL-terminated from *first. Returns 0, or
 * -E2BIG when there were more than INDEX_DIRS_MAX. */
#define INDEX_DIRS_MAX 256u
int index_dirs(const struct names_index *x, const char **first, size_t *bytes);
/* Writes the index of the parsed file n whose text began at text_start. */
int index_write(const char *names_path, const struct stat *st, const struct names *n, const char *text_start);

/* ---- request.c: incremental RFC 9112 request-head parser ---- */
enum framing { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };
struct request {
        struct span method, target, version;
        unsigned minor;              /* HTTP/1.minor */
        size_t head_len;             /* bytes through the empty line */
        size_t line_len;             /* request line incl. CRLF */
        enum framing framing;
        uint64_t content_length;
        bool upgrade;                /* Connection: upgrade + Upgrade */
        bool close;                  /* Connection: close, or 1.0 without keep-alive */
        unsigned n_fields;
        struct span fields[FIELDS_MAX]; /* each field line incl. CRLF */
};
/* Parses buf[0..len). Returns 0 with *ret filled, -EAGAIN for "need more"
 * (len < max), or an HTTP status (400, 414, 431, 501, 505) to reply with.
 * Looks, never writes. */
int request_parse(const char *buf, size_t len, size_t max, struct request *ret);
/* True when field line f (incl. CRLF) has the name n (case-insensitive). */
bool field_is(const char *buf, struct span f, const char *n);

/* ---- response.c: where an app's response ends (RFC 9112 6.3) ---- */
#define RESPONSE_HEAD_MAX   65536u  /* a longer response head is passed on to the app's EOF */
enum resp_framing { RESP_NONE, RESP_LENGTH, RESP_CHUNKED, RESP_TO_EOF };
struct response {
        unsigned status, minor;
        size_t head_len;             /* bytes through the empty line */
        enum resp_framing framing;   /* RESP_NONE also for 1xx: another head follows */
        uint64_t content_length;
        bool close;                  /* the app closes after it (or said so) */
        const char *why;             /* -EPROTO: what is wrong */
};
/* Parses the response head in buf[0..len) to a request (head_request: it
 * was HEAD). Returns 0, -EAGAIN for "need more" (len < max), or -EPROTO
 * when the head cannot be framed: the rest of the stream is then the body. */
int response_parse(const char *buf, size_t len, size_t max, bool head_request, struct response *ret);

/* ---- chunked.c: the chunked-body framer (RFC 9112 7.1) ---- */
struct chunked {
        int state;
        uint64_t left;         /* data bytes left in this chunk */
        unsigned line;         /* bytes of the current size/trailer line */
        unsigned trailer;      /* bytes of the trailer section */
        bool any_digit;
        bool keep_trailers;    /* a response's: the trailers go out too */
};
/* Consumes buf[0..len): *fwd gets the number of leading bytes to forward
 * (chunk framing and data; trailers are dropped, and the caller adds the
 * final CRLF once chunked_done()). Returns bytes consumed (less than len
 * once the body ends), or -400. chunked_data_left() lets the caller splice
 * data bytes directly and report them with chunked_consumed_data(). */
int chunked_feed(struct chunked *c, const char *buf, size_t len, size_t *fwd);
bool chunked_done(const struct chunked *c);
uint64_t chunked_data_left(const struct chunked *c);
void chunked_consumed_data(struct chunked *c, uint64_t n);

/* ---- route.c: request target -> app entry | port | redirect | error ---- */
enum route_kind { ROUTE_PORT, ROUTE_REDIRECT, ROUTE_ERROR };
struct route {
        enum route_kind kind;
        int status;                    /* ROUTE_ERROR: 400, 403, 404, 503 */
        unsigned port;
        const struct name_entry *entry;/* NULL for a bare port */
        bool explicit_;                /* a key or port in the target matched */
        const char *prefix;            /* NULL or the entry's prefix */
        size_t rest_off;               /* forward "/" prefix target[rest_off..] */
        bool slash;                    /* insert "/" between prefix and rest */
};
struct route_table {
        const struct names *names;     /* may be NULL */
        bool names_failed;             /* unreadable names file: 503 */
        const struct options *opt;
};
/* target[0..len) is an origin-form target starting with "/". */
void route(const struct route_table *t, const char *target, size_t len, struct route *ret);
/* Writes the rewritten target into out (at most size bytes). Returns its
 * length or -ENOBUFS. */
int route_rewrite(const struct route *r, const char *target, size_t len, char *out, size_t size);

/* ---- backend.c: connecting to the app; starting it and waiting ---- */
struct backend_result {
        int fd;          /* connected socket, or -1 */
        int status;      /* when fd < 0: 502, 503, 504 */
        const char *why; /* for the journal */
};
int backend_connect(const struct options *o, unsigned port);
/* Connects to the route's port; when refused and the route has an entry,
 * starts the app (once, under a lock) and waits up to start_timeout. */
struct backend_result backend_open(const struct options *o, const struct route *r);

/* ---- launch.c: asking the privileged launcher (httpgate-launch) ---- */
/* The wire protocol, on a unix stream socket (httpgate-launch.socket):
 *   gate:     NAME "\n"                (at most LAUNCH_NAME_MAX bytes)
 *   launcher: STATUS " " REASON "\n"   (at most LAUNCH_LINE_MAX bytes)
 * STATUS 200: the app's unit is started or was already running; the launcher
 * then keeps the connection open and writes one more line, "503 REASON", if
 * the unit stops before the gate hangs up. Any other STATUS: not started. */
#define LAUNCHER_SOCKET  "/run/httpgate/launch.sock"
#define LAUNCH_NAME_MAX  64u   /* bytes of an app name on the wire */
#define LAUNCH_LINE_MAX  256u  /* bytes of one answer line, newline included */
/* Starts r->entry through the launcher and waits, up to the start timeout,
 * until its port accepts or its unit fails. Returns 0 with *ret filled, or
 * negative errno when no launcher is reachable or it does not know the
 * entry (the caller falls back to spawn.c). */
int launch_app(const struct options *o, const struct route *r, struct backend_result *ret);

/* ---- spawn.c: the fallback launcher, without systemd ---- */
/* Starts the entry's command detached. Returns the pid or negative errno;
 * *why says what failed. */
pid_t spawn_app(const struct name_entry *e, const char **why);

/* ---- client.c: intake and the client's reads and writes ---- */
struct client {
        int in, out;             /* the same socket, or fd 0 and 1 under inetd */
        void *tls;               /* gnutls_session_t, or NULL */
        bool tls_resumed;
        char addr[64];           /* the peer, IPv4-mapped shown as IPv4 */
};
/* Takes the connection from systemd (fd 3) or inetd (fd 0). Returns 0, or
 * negative errno with the reason in why. */
int client_intake(struct client *c, char *why, size_t why_size);
void client_address(int fd, char *out, size_t size);
ssize_t client_read(struct client *c, void *buf, size_t len);   /* -EAGAIN, 0 = EOF */
ssize_t client_write(struct client *c, const void *buf, size_t len);
int client_write_all(struct client *c, const void *buf, size_t len); /* bounded by REPLY_TIMEOUT_MS */

/* ---- tls.c: the only file that includes GnuTLS ---- */
/* TLS 1.2 and 1.3 only, forward-secret AEAD suites only; the client's order
 * decides between AES-GCM (fast with AES-NI) and ChaCha20 (fast without);
 * X25519 first, so that common clients need no HelloRetryRequest. */
#define TLS_PRIORITY_DEFAULT \
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:" \
        "-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1"
/* Picks and loads the certificate (o->pem, or o->tls_dir by SNI) and does
 * the handshake on c, bounded by TLS_HANDSHAKE_TIMEOUT_MS. Returns 0 or
 * negative errno with the reason (naming the file) in why. */
int tls_accept(struct client *c, const struct options *o, const char **cipher, char *why, size_t why_size);
ssize_t tls_read(struct client *c, void *buf, size_t len);
ssize_t tls_write(struct client *c, const void *buf, size_t len);
size_t client_pending(struct client *c); /* decrypted bytes buffered */
void tls_bye(struct client *c);
void tls_end(struct client *c); /* frees the session */

/* ---- sandbox.c: the instance confines itself ---- */
/* Resource limits, not dumpable, no new privileges, Landlock (the
 * directories o and n name, httpgate.units(5)) and the seccomp filter, in
 * that order. Returns the Landlock ABI in force (0: the kernel has none,
 * said once in the journal), or negative errno with why: the caller must
 * then not read from the client. */
int sandbox_enter(const struct options *o, const struct names *n, char *why, size_t why_size);

/* ---- seccomp.c: the system call filter, fixed at compile time ---- */
/* Installs it (no_new_privs must be set). Returns 0 or negative errno. */
int seccomp_filter_install(void);

/* ---- notls.c: the plain build's stand-ins for tls.c ---- */
/* Replaces this process with httpgate-tls beside it; returns only on error. */
int tls_exec_sibling(char **argv, char *why, size_t why_size);

/* ---- reply.c: canned answers ---- */
const char *status_reason(int status);
/* Writes a complete short answer; keep: the connection stays open, else
 * Connection: close. Returns the bytes written or negative errno. */
int reply_send(struct client *c, int status, const char *location, bool keep);
/* 410 with the void file's contents (or a built-in page). */
int reply_void(struct client *c, const char *void_path, bool keep);
int reply_format(char *buf, size_t size, int status, const char *location, size_t body_len, const char *type,
                 bool keep);

/* ---- relay.c: the two-way byte mover ---- */
struct relay_stats {
        uint64_t up, down;       /* bytes client->app, app->client */
        unsigned requests;
        const char *app;         /* the last app served */
        unsigned port;
        const char *end;         /* how it ended, for the journal */
        int exit_code;
};
struct conn_ctx {
        struct client *client;
        const struct options *opt;
        const struct route_table *table;
        const char *client_addr;
        const char *gate;          /* "http" or "https" */
        const char *cipher;        /* TLS: the negotiated suite */
};
/* Serves every request of the connection until both sides are done.
 * Returns the exit code, also in st->exit_code. */
int relay_serve(struct conn_ctx *ctx, struct relay_stats *st);

/* ---- rewrite.c: the head the app gets ---- */
/* The path to route on (origin-form, or absolute-form's path; "*" sets
 * *asterisk). Returns 0 or 400. */
int target_path(const char *head, const struct request *q, struct span *path, bool *asterisk);
/* Writes request line, X-Pil lines, the client's fields minus the gate's own
 * (and Upgrade when no_upgrade), Forwarded lines when configured, and the
 * empty line into buf. Returns the length or -ENOBUFS. */
int head_rewrite(const struct conn_ctx *ctx, const struct request *q, const char *head, const char *target,
                 size_t tlen, bool no_upgrade, char *buf, size_t cap);

/* ---- log.c: journal with structured fields, or plain stderr ---- */
void log_init(void);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One request: fields APP, PORT, CLIENT, METHOD, TARGET (bounded), STATUS,
 * and for an answered request the response's: APP_STATUS, RESPONSE_BYTES,
 * FIRST_BYTE_USEC, DURATION_USEC. */
/* ---- mark.c: the time of an app's last request, for the idle checker ---- */
#define MARK_DIR "/run/httpgate/seen" /* made by the checker (root) while idle stopping is on */
void mark_request(const struct name_entry *e);

/* ---- cpu.c: where an instance's CPU time goes ---- */
struct cpu_phases {
        uint64_t exec;            /* before the first initializer: fork's child, exec, loading, libc */
        uint64_t init;            /* the libraries' initializers, to main */
        uint64_t main;            /* the process's CPU time at main */
        uint64_t tls_credentials; /* reading and checking key and certificate */
        uint64_t tls_handshake;   /* the handshake, without the credentials */
};
extern struct cpu_phases cpu_phases;
uint64_t cpu_usec(void); /* CPU time of this process so far (µs) */
void cpu_at_main(void);

struct log_request {
        const char *app;
        unsigned port;
        const char *client;
        const char *method; size_t method_len;
        const char *target; size_t target_len;
        const char *referer; size_t referer_len;
        const char *agent; size_t agent_len;
        unsigned minor;           /* HTTP/1.minor */
        int status;               /* the gate's answer; 0: forwarded */
        int app_status;           /* the app's status; 0: none */
        bool answered;            /* a response (or a part) reached the client */
        uint64_t response_bytes, first_byte_usec, duration_usec;
        const char *why;
};
void log_request(const struct log_request *r);
/* The end of the connection: how it ended, its bytes, its wall time (usec)
 * and where its CPU time went (cpu.c). */
void log_end(const char *client, const char *app, unsigned port, const struct relay_stats *s, uint64_t usec);
