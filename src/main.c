/* main.c: one connection, start to end. Reads the command line, takes the
 * connection (intake), reads the names file, does the TLS handshake, hands
 * everything to the relay, logs how it ended and exits with a code that says
 * so (httpgate(8) lists them). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "httpgate.h"

struct report_ctx {
        const char *path;
        FILE *out; /* --check prints; a connection logs */
};

static void report(unsigned line, const char *msg, void *data)
{
        const struct report_ctx *ctx = data;

        if (ctx->out)
                fprintf(ctx->out, "%s:%u: %s\n", ctx->path, line, msg);
        else
                log_msg(LOG_WARNING, "%s:%u: %s (line skipped)", ctx->path, line, msg);
}

/* --check: every syntax problem, and every entry whose user cannot run it. */
static int check(const char *path)
{
        struct report_ctx ctx = { path, stdout };
        struct names n;
        unsigned bad;
        int r = names_load(path, &n, report, &ctx);

        if (r < 0) {
                printf("%s: %s\n", path, strerror(-r));
                return EXIT_CONFIG;
        }
        bad = n.errors;
        for (size_t i = 0; i < n.n; i++) {
                const struct name_entry *e = &n.v[i];
                uid_t uid;
                gid_t gid;
                if (names_find(&n, e->key, strlen(e->key)) != e) {
                        printf("%s:%u: key %s appears earlier too; this line is never used\n", path, e->line, e->key);
                        bad++;
                }
                if (e->port == 0)
                        continue;
                r = names_user(e, &uid, &gid, NULL, 0);
                if (r < 0) {
                        printf("%s:%u: user %s %s\n", path, e->line, e->user,
                               r == -EPERM ? "has uid or gid 0: refused" : "does not exist");
                        bad++;
                }
        }
        printf("%s: %zu entries, %u problem%s\n", path, n.n, bad, bad == 1 ? "" : "s");
        names_free(&n);
        return bad ? EXIT_CONFIG : 0;
}

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
        struct options opt;
        struct client client;
        struct names names = { .fd = -1 };
        struct route_table table = { .opt = &opt };
        struct conn_ctx ctx = { .client = &client, .opt = &opt, .table = &table, .gate = "http" };
        struct relay_stats st;
        char why[512];
        uint64_t start = now_usec();
        int r;

        cpu_at_main();
        r = options_parse(argc, argv, &opt);
        if (r != 0)
                return r > 0 ? 0 : EXIT_USAGE;
        if (opt.check_path)
                return check(opt.check_path);
        log_init();
        signal(SIGPIPE, SIG_IGN); /* a vanished peer is an error return, not a signal */
#ifndef HTTPGATE_TLS
        if ((opt.pem && *opt.pem) || opt.tls_dir) {
                (void)tls_exec_sibling(argv, why, sizeof(why)); /* returns only on failure */
                log_msg(LOG_ERR, "%s", why);
                return EXIT_CONFIG;
        }
#endif

        if (client_intake(&client, why, sizeof(why)) < 0) {
                log_msg(LOG_ERR, "%s", why);
                return EXIT_INTAKE;
        }
        ctx.client_addr = client.addr;

        if (opt.names_path) {
                struct report_ctx rc = { opt.names_path, NULL };
                r = names_open(opt.names_path, &names, report, &rc);
                if (r < 0) {
                        log_msg(LOG_ERR, "names file %s: %s", opt.names_path, strerror(-r));
                        table.names_failed = true;
                } else {
                        table.names = &names;
                }
        }

        /* From here on the process is confined: before the first client byte. */
        if (opt.sandbox && (r = sandbox_enter(&opt, table.names, why, sizeof(why))) < 0) {
                log_msg(LOG_ERR, "%s: %s; connection not served", client.addr, why);
                if (!((opt.pem && *opt.pem) || opt.tls_dir))
                        (void)reply_send(&client, 503, NULL, false); /* unread request: the client may be gone */
                return EXIT_CONFIG;
        }

        if ((opt.pem && *opt.pem) || opt.tls_dir) {
                r = tls_accept(&client, &opt, &ctx.cipher, why, sizeof(why));
                if (r < 0) {
                        tls_end(&client);
                        log_msg(r == -EPROTO || r == -ETIMEDOUT ? LOG_NOTICE : LOG_ERR, "%s: %s", client.addr, why);
                        return r == -EPROTO || r == -ETIMEDOUT ? EXIT_CLIENT : EXIT_CONFIG;
                }
                ctx.gate = "https";
        }

        r = relay_serve(&ctx, &st);
        tls_end(&client);
        log_end(client.addr, st.app, st.port, &st, now_usec() - start);
#ifndef __SANITIZE_ADDRESS__
        /* Everything is said and sent: what the libraries' destructors
         * would free (GnuTLS's ASN.1 trees) goes with the process. */
        _exit(r);
#endif
        names_free(&names);
        return r;
}
