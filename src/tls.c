/* tls.c: the only file that includes GnuTLS. Chooses the certificate (the
 * command line's "key,cert" or single PEM, or a directory with one folder
 * per host name chosen by SNI), reads it fresh for every connection so that
 * a renewed certificate needs no reload, does the handshake within a time
 * bound, resumes sessions through tickets whose key every instance shares,
 * and moves records for client.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "httpgate.h"

#define TICKET_KEY_BYTES 64 /* GnuTLS's master ticket key */
#define HOSTNAME_MAX     255

#define CHAIN_MAX        16 /* certificates in a chain */

/* A connection's certificate, loaded when the handshake first needs it:
 * a resumed session needs none, and pays nothing for it. */
struct tls_state {
        const struct options *opt;
        gnutls_certificate_credentials_t creds;
        gnutls_pcert_st chain[CHAIN_MAX];
        unsigned chain_len;
        gnutls_privkey_t key;
        bool cert_failed;        /* the certificate, not the client, is at fault */
        bool loaded;
        char *why;
        size_t why_size;
};

static int fail(struct tls_state *t, int err, const char *fmt, const char *a, const char *b)
{
        snprintf(t->why, t->why_size, fmt, a, b);
        return err;
}

/* Refuses a certificate that is not valid now, with its file in the reason. */
static int check_dates(struct tls_state *t, gnutls_x509_crt_t crt, const char *cert)
{
        time_t now = time(NULL);

        if (gnutls_x509_crt_get_expiration_time(crt) < now)
                return fail(t, -EKEYEXPIRED, "certificate %s has expired%s", cert, "");
        if (gnutls_x509_crt_get_activation_time(crt) > now)
                return fail(t, -EKEYEXPIRED, "certificate %s is not valid yet%s", cert, "");
        return 0;
}

/* The key belongs to the certificate: the same public key. (GnuTLS's own
 * check signs and verifies, which costs a connection more than the rest of
 * the loading together.) */
static bool key_matches(gnutls_privkey_t key, gnutls_x509_crt_t crt)
{
        unsigned char a[64], b[64];
        size_t la = sizeof(a), lb = sizeof(b);
        gnutls_pubkey_t pub;
        bool same = false;

        if (gnutls_pubkey_init(&pub) < 0)
                return false;
        if (gnutls_pubkey_import_privkey(pub, key, 0, 0) == 0 &&
            gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &la) == 0 &&
            gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, b, &lb) == 0)
                same = la == lb && memcmp(a, b, la) == 0;
        gnutls_pubkey_deinit(pub);
        return same;
}

static int unusable(struct tls_state *t, const char *key, const char *cert)
{
        return fail(t, -EINVAL, "certificate %s with key %s: unusable (bad PEM?)", cert, key);
}

static int load_pair(struct tls_state *t, const char *key, const char *cert)
{
        gnutls_datum_t cdata = { NULL, 0 }, kdata = { NULL, 0 };
        gnutls_x509_crt_t *crts = NULL;
        unsigned n = 0;
        int r;

        if (access(key, R_OK) < 0)
                return fail(t, -errno, "key %s: %s", key, strerror(errno));
        if (access(cert, R_OK) < 0)
                return fail(t, -errno, "certificate %s: %s", cert, strerror(errno));
        if (gnutls_load_file(cert, &cdata) < 0 || gnutls_load_file(key, &kdata) < 0) {
                r = fail(t, -EIO, "certificate %s with key %s: unreadable", cert, key);
        } else if (gnutls_x509_crt_list_import2(&crts, &n, &cdata, GNUTLS_X509_FMT_PEM, 0) < 0 || n == 0) {
                r = unusable(t, key, cert);
        } else if (n > CHAIN_MAX) {
                r = fail(t, -E2BIG, "certificate %s: a chain longer than the gate takes%s", cert, "");
        } else if ((r = check_dates(t, crts[0], cert)) < 0) {
                ;
        } else if (gnutls_privkey_init(&t->key) < 0 ||
                   gnutls_privkey_import_x509_raw(t->key, &kdata, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
                r = unusable(t, key, cert);
        } else if (!key_matches(t->key, crts[0])) {
                r = fail(t, -EINVAL, "key %s does not belong to certificate %s", key, cert);
        } else if (gnutls_pcert_import_x509_list(t->chain, crts, &n, 0) < 0) {
                r = unusable(t, key, cert);
        } else {
                t->chain_len = n;
                r = 0;
        }
        for (unsigned i = 0; crts && i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        gnutls_free(cdata.data);
        if (kdata.data) {
                explicit_bzero(kdata.data, kdata.size);
                gnutls_free(kdata.data);
        }
        if (r < 0 && t->key) {
                gnutls_privkey_deinit(t->key);
                t->key = NULL;
        }
        return r;
}

/* httpGate's form: "key,cert", or one file with key and chain in any order. */
static int load_pem_arg(struct tls_state *t, const char *pem)
{
        char key[4096];
        const char *comma = strchr(pem, ',');

        if (!comma)
                return load_pair(t, pem, pem);
        snprintf(key, sizeof(key), "%.*s", (int)(comma - pem), pem);
        return load_pair(t, key, comma + 1);
}

/* The directory form: DIR/<host>/privkey.pem and fullchain.pem, as certbot
 * lays out /etc/letsencrypt/live. Without SNI (or an unknown name): DIR/default,
 * else the command line's PEM. */
static int load_dir(struct tls_state *t, const char *host)
{
        const char *dir = t->opt->tls_dir;
        char key[4096], cert[4096];
        struct stat st;

        if (host && *host && !strchr(host, '/') && host[0] != '.') {
                snprintf(key, sizeof(key), "%s/%s/privkey.pem", dir, host);
                snprintf(cert, sizeof(cert), "%s/%s/fullchain.pem", dir, host);
                if (stat(cert, &st) == 0)
                        return load_pair(t, key, cert);
        }
        snprintf(key, sizeof(key), "%s/default/privkey.pem", dir);
        snprintf(cert, sizeof(cert), "%s/default/fullchain.pem", dir);
        if (stat(cert, &st) == 0 || !t->opt->pem || !*t->opt->pem)
                return load_pair(t, key, cert);
        return load_pem_arg(t, t->opt->pem);
}

/* GnuTLS asks for the certificate when the handshake needs one (not for a
 * resumed session); the server name is known by then. */
static int retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca, int nreqs, const gnutls_pk_algorithm_t *algos,
                    int nalgos, gnutls_pcert_st **chain, unsigned *chain_len, gnutls_privkey_t *key)
{
        struct tls_state *t = gnutls_session_get_ptr(s);
        char host[HOSTNAME_MAX + 1];
        size_t len = sizeof(host);
        unsigned type;
        uint64_t cpu = cpu_usec();
        int r;

        (void)req_ca, (void)nreqs, (void)algos, (void)nalgos;
        if (!t->loaded) { /* else the second ClientHello after a HelloRetryRequest */
                if (gnutls_server_name_get(s, host, &len, &type, 0) < 0 || type != GNUTLS_NAME_DNS)
                        host[0] = '\0';
                for (char *c = host; *c; c++)
                        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
                r = t->opt->tls_dir ? load_dir(t, host) : load_pem_arg(t, t->opt->pem);
                cpu_phases.tls_credentials += cpu_usec() - cpu;
                if (r < 0) {
                        t->cert_failed = true;
                        return -1;
                }
                t->loaded = true;
        }
        *chain = t->chain;
        *chain_len = t->chain_len;
        *key = t->key;
        return 0;
}

/* The shared ticket key: given, or created once in the state directory
 * (atomically: written aside, then linked into place; the loser of a race
 * uses the winner's key) and readable only by the gate's user. */
static int ticket_key(const struct options *o, gnutls_datum_t *key)
{
        static unsigned char buf[TICKET_KEY_BYTES];
        const char *dir = state_dir();
        char path[4096], tmp[4200];
        int fd;
        ssize_t n;

        if (o->tls_ticket_key) {
                snprintf(path, sizeof(path), "%s", o->tls_ticket_key);
        } else {
                if (strcmp(dir, STATE_DIR_DEFAULT) == 0)
                        (void)mkdir(dir, 0700); /* exists already, or the open below says why */
                snprintf(path, sizeof(path), "%s/ticket.key", dir);
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT && !o->tls_ticket_key) {
                snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
                fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd < 0)
                        return -errno;
                if (getrandom(buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
                    write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || fsync(fd) < 0) {
                        close(fd);
                        unlink(tmp);
                        return -EIO;
                }
                close(fd);
                if (link(tmp, path) < 0 && errno != EEXIST) {
                        unlink(tmp);
                        return -errno;
                }
                unlink(tmp);
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        }
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf));
        close(fd);
        if (n != (ssize_t)sizeof(buf))
                return -EINVAL;
        key->data = buf;
        key->size = sizeof(buf);
        return 0;
}

static int handshake(gnutls_session_t s, struct client *c, char *why, size_t why_size)
{
        int r;

        do {
                r = gnutls_handshake(s);
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        bool out = gnutls_record_get_direction(s);
                        struct pollfd p = { .fd = out ? c->out : c->in, .events = out ? POLLOUT : POLLIN };
                        if (poll(&p, 1, TLS_HANDSHAKE_TIMEOUT_MS) <= 0) {
                                snprintf(why, why_size, "TLS handshake timed out");
                                return -ETIMEDOUT;
                        }
                }
        } while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0 && !*why)
                snprintf(why, why_size, "TLS handshake: %s", gnutls_strerror(r));
        return r < 0 ? -EPROTO : 0;
}

int tls_accept(struct client *c, const struct options *o, const char **cipher, char *why, size_t why_size)
{
        static struct tls_state t;
        gnutls_session_t s;
        gnutls_datum_t alpn = { (unsigned char *)"http/1.1", 8 }, key;
        const char *prio = o->tls_priority ? o->tls_priority : TLS_PRIORITY_DEFAULT;
        uint64_t cpu;
        int r;

        t = (struct tls_state){ .opt = o, .why = why, .why_size = why_size };
        why[0] = '\0';
        if ((r = gnutls_certificate_allocate_credentials(&t.creds)) < 0 ||
            (gnutls_certificate_set_retrieve_function2(t.creds, retrieve), 0) ||
            (r = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL)) < 0 ||
            (r = gnutls_priority_set_direct(s, prio, NULL)) < 0 ||
            (r = gnutls_alpn_set_protocols(s, &alpn, 1, 0)) < 0) {
                snprintf(why, why_size, "TLS setup (priority \"%s\"): %s", prio, gnutls_strerror(r));
                return -EINVAL;
        }
        if ((r = ticket_key(o, &key)) == 0)
                (void)gnutls_session_ticket_enable_server(s, &key); /* without: full handshakes */
        else
                log_msg(LOG_WARNING, "TLS session ticket key unusable (%s): no resumption", strerror(-r));
        gnutls_session_set_ptr(s, &t);
        if ((r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t.creds)) < 0) {
                snprintf(why, why_size, "TLS setup: %s", gnutls_strerror(r));
                return -EINVAL;
        }
        gnutls_transport_set_int2(s, c->in, c->out);
        gnutls_handshake_set_timeout(s, TLS_HANDSHAKE_TIMEOUT_MS);
        c->tls = s;
        cpu = cpu_usec();
        r = handshake(s, c, why, why_size);
        cpu_phases.tls_handshake = cpu_usec() - cpu - cpu_phases.tls_credentials;
        if (r < 0)
                return t.cert_failed ? -EINVAL : r;
        *cipher = gnutls_ciphersuite_get(s); /* the IANA name, right for 1.2 and 1.3 */
        c->tls_resumed = gnutls_session_is_resumed(s);
        return 0;
}

static ssize_t tls_errno(ssize_t r)
{
        if (r == GNUTLS_E_AGAIN)
                return -EAGAIN;
        if (r == GNUTLS_E_INTERRUPTED)
                return -EINTR;
        if (r == GNUTLS_E_PREMATURE_TERMINATION)
                return 0; /* closed without close_notify: EOF all the same */
        return -ECONNRESET; /* renegotiation attempts included: refused */
}

ssize_t tls_read(struct client *c, void *buf, size_t len)
{
        ssize_t r = gnutls_record_recv(c->tls, buf, len);

        return r >= 0 ? r : tls_errno(r);
}

ssize_t tls_write(struct client *c, const void *buf, size_t len)
{
        ssize_t r = gnutls_record_send(c->tls, buf, len);

        return r >= 0 ? r : tls_errno(r);
}

size_t client_pending(struct client *c)
{
        return c->tls ? gnutls_record_check_pending(c->tls) : 0;
}

void tls_end(struct client *c)
{
        struct tls_state *t;

        if (!c->tls)
                return;
        t = gnutls_session_get_ptr(c->tls);
        gnutls_deinit(c->tls);
        if (t && t->creds)
                gnutls_certificate_free_credentials(t->creds);
        for (unsigned i = 0; t && i < t->chain_len; i++)
                gnutls_pcert_deinit(&t->chain[i]);
        if (t && t->key)
                gnutls_privkey_deinit(t->key);
        c->tls = NULL;
}

void tls_bye(struct client *c)
{
        (void)gnutls_bye(c->tls, GNUTLS_SHUT_WR); /* best effort: the socket closes next */
}
