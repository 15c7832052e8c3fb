/* tls.c: the only file that includes GnuTLS. Loads the certificate named on
 * the command line, does the handshake on the client socket with a bound on
 * time, and moves records for client.c. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>

#include "httpgate.h"

#define TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

static gnutls_certificate_credentials_t creds;

/* "key,cert", or one file holding the key and the chain in any order. */
static int load_pem(const char *pem, char *why, size_t why_size)
{
        char key[4096];
        const char *cert = pem, *comma = strchr(pem, ',');
        int r;

        if (comma) {
                snprintf(key, sizeof(key), "%.*s", (int)(comma - pem), pem);
                cert = comma + 1;
        } else {
                snprintf(key, sizeof(key), "%s", pem);
        }
        if ((r = gnutls_certificate_allocate_credentials(&creds)) < 0 ||
            (r = gnutls_certificate_set_x509_key_file2(creds, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
                snprintf(why, why_size, "certificate %s, key %s: %s", cert, key, gnutls_strerror(r));
                return -EINVAL;
        }
        return 0;
}

int tls_accept(struct client *c, const char *pem, const char **cipher, char *why, size_t why_size)
{
        gnutls_session_t s;
        gnutls_datum_t alpn = { (unsigned char *)"http/1.1", 8 };
        int r;

        if (load_pem(pem, why, why_size) < 0)
                return -EINVAL;
        if ((r = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL)) < 0 ||
            (r = gnutls_priority_set_direct(s, TLS_PRIORITY, NULL)) < 0 ||
            (r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds)) < 0 ||
            (r = gnutls_alpn_set_protocols(s, &alpn, 1, 0)) < 0) {
                snprintf(why, why_size, "TLS setup: %s", gnutls_strerror(r));
                return -EINVAL;
        }
        gnutls_transport_set_int2(s, c->in, c->out);
        gnutls_handshake_set_timeout(s, TLS_HANDSHAKE_TIMEOUT_MS);
        c->tls = s;
        do {
                r = gnutls_handshake(s);
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        struct pollfd p = { .fd = gnutls_record_get_direction(s) ? c->out : c->in,
                                            .events = gnutls_record_get_direction(s) ? POLLOUT : POLLIN };
                        if (poll(&p, 1, TLS_HANDSHAKE_TIMEOUT_MS) <= 0) {
                                snprintf(why, why_size, "TLS handshake timed out");
                                return -ETIMEDOUT;
                        }
                }
        } while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0) {
                snprintf(why, why_size, "TLS handshake: %s", gnutls_strerror(r));
                return -EPROTO;
        }
        *cipher = gnutls_cipher_suite_get_name(gnutls_kx_get(s), gnutls_cipher_get(s), gnutls_mac_get(s));
        if (!*cipher)
                *cipher = gnutls_cipher_get_name(gnutls_cipher_get(s));
        return 0;
}

static ssize_t tls_errno(ssize_t r)
{
        if (r == GNUTLS_E_AGAIN)
                return -EAGAIN;
        if (r == GNUTLS_E_INTERRUPTED)
                return -EINTR;
        if (r == GNUTLS_E_PREMATURE_TERMINATION)
                return 0; /* a client that closed without close_notify: EOF */
        return -ECONNRESET;
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

void tls_bye(struct client *c)
{
        (void)gnutls_bye(c->tls, GNUTLS_SHUT_WR); /* best effort: the socket closes next */
}
