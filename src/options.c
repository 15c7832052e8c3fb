/* options.c: the command line. httpGate's positional form without the
 * listen port (systemd owns it): DEFAULT [PEM [DENY-PORT...]], plus a long
 * option for every setting. Owns parsing and the queries on the result. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpgate.h"

static const char *const default_methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };

static void usage(FILE *f)
{
        fprintf(f,
                "usage: httpgate [OPTION...] DEFAULT [PEM [DENY-PORT...]]\n"
                "       httpgate --check NAMES-FILE\n"
                "Serves one HTTP connection on fd 3 (systemd Accept=yes) or fd 0 (inetd).\n"
                "DEFAULT is a port or a names file; an empty PEM means no TLS.\n\n"
                "  -n, --names=FILE          names file (as httpGate)\n"
                "  -p, --default-port=PORT   port for requests no entry claims\n"
                "  -d, --deny=PORT[,PORT...] ports never forwarded to (403)\n"
                "      --head-timeout=SEC    request head timeout (%u)\n"
                "      --idle-timeout=SEC    idle timeout, both directions (%u)\n"
                "      --start-timeout=SEC   wait for a started app (%u)\n"
                "      --max-head=BYTES      largest request head (%u)\n"
                "      --void=FILE           void file for expired sessions\n"
                "      --backend=ADDR        app address (default ::1, then 127.0.0.1)\n"
                "      --forwarded           add Forwarded and X-Forwarded-* headers\n"
                "      --methods=LIST        methods forwarded (GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS)\n"
                "      --lock-dir=DIR        start locks without systemd\n"
                "      --launcher=SOCKET     app launcher (" LAUNCHER_SOCKET "; empty: none)\n"
                "      --pem=KEY,CERT|PEM    TLS certificate, as the positional PEM\n"
                "      --tls-dir=DIR         TLS: DIR/HOST/privkey.pem and fullchain.pem, by SNI\n"
                "      --tls-priority=STR    TLS: GnuTLS priority string (TLS 1.2 and 1.3)\n"
                "      --tls-ticket-key=FILE TLS: 64-byte session ticket key (default: state dir)\n"
                "      --sandbox             confine this process before the first client byte\n"
                "                            (Landlock, a seccomp filter, limits; starts no app itself)\n"
                "      --check=FILE          check a names file, print problems, exit\n"
                "  -h, --help                this text\n"
                "  -V, --version             the version\n",
                HEAD_TIMEOUT_DEFAULT, IDLE_TIMEOUT_DEFAULT, START_TIMEOUT_DEFAULT, HEAD_MAX_DEFAULT);
}

static int number(const char *what, const char *s, uint64_t min, uint64_t max, unsigned *ret)
{
        uint64_t v;

        if (parse_uint_str(s, max, &v) < 0 || v < min) {
                fprintf(stderr, "httpgate: %s must be a number from %llu to %llu, not '%s'\n", what,
                        (unsigned long long)min, (unsigned long long)max, s);
                return -EINVAL;
        }
        *ret = (unsigned)v;
        return 0;
}

static int deny_list(struct options *o, char *list)
{
        for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o->n_deny == DENY_MAX) {
                        fprintf(stderr, "httpgate: at most %u denied ports\n", DENY_MAX);
                        return -EINVAL;
                }
                if (number("a denied port", t, 1, 65535, &o->deny[o->n_deny]) < 0)
                        return -EINVAL;
                o->n_deny++;
        }
        return 0;
}

static int method_list(struct options *o, char *list)
{
        o->n_methods = 0;
        for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o->n_methods == METHODS_MAX) {
                        fprintf(stderr, "httpgate: at most %u methods\n", METHODS_MAX);
                        return -EINVAL;
                }
                o->methods[o->n_methods++] = t;
        }
        return 0;
}

/* DEFAULT: a port, or else the names file (as httpGate decides). */
static int positional_default(struct options *o, const char *s)
{
        uint64_t v;

        if (parse_uint_str(s, 65535, &v) == 0) {
                if (v == 0)
                        return fprintf(stderr, "httpgate: the default port cannot be 0\n"), -EINVAL;
                o->default_port = (unsigned)v;
        } else {
                o->names_path = s;
        }
        return 0;
}

int options_parse(int argc, char **argv, struct options *o)
{
        enum { O_HEAD = 256, O_IDLE, O_START, O_MAXHEAD, O_VOID, O_BACKEND, O_FWD, O_METHODS, O_LOCK, O_CHECK,
               O_TLSDIR, O_TLSPRIO, O_TICKET, O_LAUNCHER, O_PEM, O_SANDBOX };
        static const struct option longopts[] = {
                { "names", required_argument, NULL, 'n' },
                { "default-port", required_argument, NULL, 'p' },
                { "deny", required_argument, NULL, 'd' },
                { "head-timeout", required_argument, NULL, O_HEAD },
                { "idle-timeout", required_argument, NULL, O_IDLE },
                { "start-timeout", required_argument, NULL, O_START },
                { "max-head", required_argument, NULL, O_MAXHEAD },
                { "void", required_argument, NULL, O_VOID },
                { "backend", required_argument, NULL, O_BACKEND },
                { "forwarded", no_argument, NULL, O_FWD },
                { "methods", required_argument, NULL, O_METHODS },
                { "lock-dir", required_argument, NULL, O_LOCK },
                { "check", required_argument, NULL, O_CHECK },
                { "launcher", required_argument, NULL, O_LAUNCHER },
                { "pem", required_argument, NULL, O_PEM },
                { "tls-dir", required_argument, NULL, O_TLSDIR },
                { "tls-priority", required_argument, NULL, O_TLSPRIO },
                { "tls-ticket-key", required_argument, NULL, O_TICKET },
                { "sandbox", no_argument, NULL, O_SANDBOX },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        int c, r = 0;

        *o = (struct options){
                .head_timeout = HEAD_TIMEOUT_DEFAULT,
                .idle_timeout = IDLE_TIMEOUT_DEFAULT,
                .start_timeout = START_TIMEOUT_DEFAULT,
                .max_head = HEAD_MAX_DEFAULT,
        };
        for (size_t i = 0; i < sizeof(default_methods) / sizeof(*default_methods); i++)
                o->methods[o->n_methods++] = default_methods[i];

        while (r == 0 && (c = getopt_long(argc, argv, "+n:p:d:hV", longopts, NULL)) != -1) {
                switch (c) {
                case 'n': o->names_path = optarg; break;
                case 'p': r = number("--default-port", optarg, 1, 65535, &o->default_port); break;
                case 'd': r = deny_list(o, optarg); break;
                case O_HEAD: r = number("--head-timeout", optarg, 1, 3600, &o->head_timeout); break;
                case O_IDLE: r = number("--idle-timeout", optarg, 1, 86400 * 7, &o->idle_timeout); break;
                case O_START: r = number("--start-timeout", optarg, 1, 3600, &o->start_timeout); break;
                case O_MAXHEAD: r = number("--max-head", optarg, 1024, HEAD_MAX_LIMIT, &o->max_head); break;
                case O_VOID: o->void_path = optarg; break;
                case O_BACKEND: o->backend = optarg; break;
                case O_FWD: o->forwarded = true; break;
                case O_METHODS: r = method_list(o, optarg); break;
                case O_LOCK: o->lock_dir = optarg; break;
                case O_CHECK: o->check_path = optarg; break;
                case O_LAUNCHER: o->launcher = optarg; break;
                case O_PEM: o->pem = optarg; break;
                case O_TLSDIR: o->tls_dir = optarg; break;
                case O_TLSPRIO: o->tls_priority = optarg; break;
                case O_TICKET: o->tls_ticket_key = optarg; break;
                case O_SANDBOX: o->sandbox = true; break;
                case 'h': usage(stdout); return 1;
                case 'V': printf("httpgate %s\n", HTTPGATE_VERSION); return 1;
                default: usage(stderr); return -EINVAL;
                }
        }
        if (r < 0)
                return r;
        if (o->check_path)
                return 0;
        if (optind < argc)
                r = positional_default(o, argv[optind++]);
        if (r == 0 && optind < argc)
                o->pem = argv[optind++];
        while (r == 0 && optind < argc)
                r = deny_list(o, argv[optind++]);
        if (r < 0)
                return r;
        if (!o->names_path && !o->default_port) {
                fprintf(stderr, "httpgate: need a default port or a names file (see --help)\n");
                return -EINVAL;
        }
        return 0;
}

bool options_method_allowed(const struct options *o, const char *m, size_t len)
{
        for (unsigned i = 0; i < o->n_methods; i++)
                if (strlen(o->methods[i]) == len && strncmp(o->methods[i], m, len) == 0)
                        return true;
        return false;
}

bool options_port_denied(const struct options *o, unsigned port)
{
        for (unsigned i = 0; i < o->n_deny; i++)
                if (o->deny[i] == port)
                        return true;
        return false;
}
