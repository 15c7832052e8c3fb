/* relay.c: the floor of httpgate's design, for `make bench` only. It takes
 * one connection as fd 3 (systemd Accept=yes, systemd-socket-activate
 * --accept) or fd 0 (inetd), connects to 127.0.0.1:PORT and moves bytes both
 * ways with splice(2) until both directions are closed. No parsing, no names
 * file, no logging, no timeouts: whatever a per-connection gate costs above
 * this program is its own work.
 *
 *   relay PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (1 << 20) /* as socket-proxyd: fewer splice calls per MB */

struct dir {
        int from, to;
        int pipe[2];
        size_t queued;   /* bytes in the pipe, not yet written to `to` */
        int eof;         /* `from` said end of stream */
        int done;        /* `to` was shut down for writing */
};

/* Move what is ready, without blocking. Returns -1 on a broken connection. */
static int step(struct dir *d, short rev_from, short rev_to)
{
        ssize_t n;

        if (!d->eof && (rev_from & (POLLIN | POLLHUP | POLLERR))) {
                n = splice(d->from, NULL, d->pipe[1], NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n == 0)
                        d->eof = 1; /* the reader closed its side */
                else if (n > 0)
                        d->queued += (size_t)n;
                else if (errno != EAGAIN && errno != EINTR)
                        return -1; /* reset or similar: give up on the whole connection */
        }
        if (d->queued && (rev_to & (POLLOUT | POLLERR) || rev_from)) {
                n = splice(d->pipe[0], NULL, d->to, NULL, d->queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n > 0)
                        d->queued -= (size_t)n;
                else if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -1; /* the writer is gone */
        }
        if (d->eof && !d->queued && !d->done) {
                (void)shutdown(d->to, SHUT_WR); /* pass the half-close on */
                d->done = 1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        const char *fds = getenv("LISTEN_FDS");
        int client = fds && atoi(fds) >= 1 ? 3 : 0;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct dir up, down;
        int backend;

        if (argc != 2)
                return 64;
        a.sin_port = htons((unsigned short)atoi(argv[1]));
        backend = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (backend < 0 || connect(backend, (struct sockaddr *)&a, sizeof(a)) < 0)
                return 2;
        (void)fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK);
        (void)fcntl(backend, F_SETFL, O_NONBLOCK | O_RDWR);
        up = (struct dir){ .from = client, .to = backend };
        down = (struct dir){ .from = backend, .to = client };
        if (pipe2(up.pipe, O_CLOEXEC) < 0 || pipe2(down.pipe, O_CLOEXEC) < 0)
                return 1;
        (void)fcntl(down.pipe[1], F_SETPIPE_SZ, PIPE_BYTES); /* may be refused: the default works too */
        while (!(up.done && down.done)) {
                struct pollfd p[2] = {
                        { .fd = client, .events = (short)((up.eof ? 0 : POLLIN) | (down.queued ? POLLOUT : 0)) },
                        { .fd = backend, .events = (short)((down.eof ? 0 : POLLIN) | (up.queued ? POLLOUT : 0)) },
                };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return 1;
                }
                if (step(&up, p[0].revents, p[1].revents) < 0 || step(&down, p[1].revents, p[0].revents) < 0)
                        return 1;
        }
        return 0;
}
