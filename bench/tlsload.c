/* tlsload.c: TLS handshakes per second, for `make bench` only. WORKERS
 * processes each open connection after connection for SECONDS: a TLS
 * handshake (full, or resumed with the session ticket of the previous
 * connection), one small GET with `Connection: close`, the whole answer.
 * Prints "conns/s resumed-fraction errors". GnuTLS, as the gate's own side.
 *
 *   tlsload HOST PORT PATH SECONDS WORKERS full|resume
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct counts {
        long ok, resumed, errors;
};

/* One connection; returns 0 when the whole answer arrived. */
static int one(gnutls_certificate_credentials_t cred, const struct sockaddr_in *a, const char *req,
               gnutls_datum_t *sess, int resume, int *was_resumed)
{
        gnutls_session_t s;
        char buf[16384];
        int fd, r, got = 0, one_ = 1, status_ok = 0;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof(one_));
        gnutls_init(&s, GNUTLS_CLIENT);
        gnutls_set_default_priority(s);
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
        gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9);
        if (resume && sess->data)
                gnutls_session_set_data(s, sess->data, sess->size);
        gnutls_transport_set_int(s, fd);
        do
                r = gnutls_handshake(s);
        while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0)
                goto out;
        *was_resumed = gnutls_session_is_resumed(s);
        if (gnutls_record_send(s, req, strlen(req)) < 0) {
                r = -1;
                goto out;
        }
        for (;;) {
                r = (int)gnutls_record_recv(s, buf, sizeof(buf));
                if (r > 0) {
                        if (got == 0)
                                status_ok = r >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0;
                        got += r;
                        continue;
                }
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
                        continue;
                break; /* 0: closed cleanly; PREMATURE_TERMINATION: closed without close_notify */
        }
        r = status_ok ? 0 : -1;
        if (r == 0 && resume) {
                /* TLS 1.3 tickets arrive after the handshake: take the session now. */
                if (sess->data)
                        gnutls_free(sess->data);
                sess->data = NULL;
                if (gnutls_session_get_data2(s, sess) < 0)
                        sess->data = NULL;
        }
out:
        gnutls_deinit(s);
        close(fd);
        return r < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
        struct sockaddr_in a = { .sin_family = AF_INET };
        char req[512];
        int workers, p[2];
        double secs, t0;
        struct counts total = { 0, 0, 0 };

        if (argc != 7)
                return 64;
        inet_pton(AF_INET, argv[1], &a.sin_addr);
        a.sin_port = htons((unsigned short)atoi(argv[2]));
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", argv[3]);
        secs = atof(argv[4]);
        workers = atoi(argv[5]);
        int resume = strcmp(argv[6], "resume") == 0;
        if (pipe(p) < 0)
                return 1;
        t0 = now();
        for (int w = 0; w < workers; w++) {
                if (fork() == 0) {
                        gnutls_certificate_credentials_t cred;
                        gnutls_datum_t sess = { NULL, 0 };
                        struct counts c = { 0, 0, 0 };

                        gnutls_global_init();
                        gnutls_certificate_allocate_credentials(&cred); /* no verification: a bench */
                        while (now() - t0 < secs) {
                                int res = 0;
                                if (one(cred, &a, req, &sess, resume, &res) == 0) {
                                        c.ok++;
                                        c.resumed += res;
                                } else {
                                        c.errors++;
                                }
                        }
                        if (write(p[1], &c, sizeof(c)) != (ssize_t)sizeof(c))
                                _exit(1);
                        _exit(0);
                }
        }
        close(p[1]);
        for (int w = 0; w < workers; w++) {
                struct counts c;
                if (read(p[0], &c, sizeof(c)) == (ssize_t)sizeof(c)) {
                        total.ok += c.ok;
                        total.resumed += c.resumed;
                        total.errors += c.errors;
                }
        }
        while (wait(NULL) > 0)
                ;
        double el = now() - t0;
        printf("%.1f %.3f %ld\n", (double)total.ok / el, total.ok ? (double)total.resumed / (double)total.ok : 0.0,
               total.errors);
        return 0;
}
