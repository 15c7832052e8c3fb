/* client.c: the client side of the connection: intake of the socket from
 * systemd (fd 3) or inetd (fd 0), its address, and reads and writes that go
 * through TLS when there is a session. The plain path is splice-able; see
 * relay.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "httpgate.h"

/* The connection: fd 3 when systemd passed exactly one (LISTEN_FDS=1 for
 * this pid), else fd 0. A listening socket means Accept=no: refuse, clearly. */
int client_intake(struct client *c, char *why, size_t why_size)
{
        const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
        int fd = 0, listening = 0, type = 0, one = 1;
        socklen_t l = sizeof(listening);

        if (fds && pid && (pid_t)atol(pid) == getpid()) {
                if (strcmp(fds, "1") != 0) {
                        snprintf(why, why_size, "LISTEN_FDS=%s: expected exactly one connection socket", fds);
                        return -EINVAL;
                }
                fd = 3;
        }
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) < 0) {
                snprintf(why, why_size, "fd %d is not a socket (%s): start httpgate from a socket unit with "
                         "Accept=yes, systemd-socket-activate --accept, or inetd", fd, strerror(errno));
                return -ENOTSOCK;
        }
        if (listening) {
                snprintf(why, why_size, "fd %d is a listening socket: set Accept=yes in the socket unit "
                         "(or use systemd-socket-activate --accept)", fd);
                return -EINVAL;
        }
        l = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_STREAM) {
                snprintf(why, why_size, "fd %d is not a stream socket", fd);
                return -EINVAL;
        }
        *c = (struct client){ .in = fd, .out = fd };
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        /* Each answer leaves at once: with Nagle's algorithm, a small write
         * behind another (a TLS flight, then the session tickets, then the
         * answer) waits for the client's delayed ACK, 40 ms. (Fails, and
         * does not matter, on a Unix socket.) */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        client_address(fd, c->addr, sizeof(c->addr));
        return 0;
}

/* The peer's address as text; IPv4-mapped IPv6 addresses shown as IPv4. */
void client_address(int fd, char *out, size_t size)
{
        struct sockaddr_storage ss;
        socklen_t l = sizeof(ss);

        snprintf(out, size, "unknown");
        if (getpeername(fd, (struct sockaddr *)&ss, &l) < 0)
                return;
        if (ss.ss_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)size);
        } else if (ss.ss_family == AF_INET6) {
                struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a))
                        inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)size);
                else
                        inet_ntop(AF_INET6, a, out, (socklen_t)size);
        } else if (ss.ss_family == AF_UNIX) {
                snprintf(out, size, "local");
        }
}

ssize_t client_read(struct client *c, void *buf, size_t len)
{
        ssize_t n;

        if (c->tls)
                return tls_read(c, buf, len);
        n = read(c->in, buf, len);
        return n < 0 ? -errno : n;
}

ssize_t client_write(struct client *c, const void *buf, size_t len)
{
        ssize_t n;

        if (c->tls)
                return tls_write(c, buf, len);
        n = write(c->out, buf, len);
        return n < 0 ? -errno : n;
}

/* Writes all of buf, waiting at most REPLY_TIMEOUT_MS for the client to
 * take each part: a client that reads nothing cannot hold the gate. */
int client_write_all(struct client *c, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                ssize_t n = client_write(c, p, len);
                if (n == -EAGAIN || n == -EINTR) {
                        struct pollfd pfd = { .fd = c->out, .events = POLLOUT };
                        if (poll(&pfd, 1, REPLY_TIMEOUT_MS) <= 0)
                                return -ETIMEDOUT;
                        continue;
                }
                if (n < 0)
                        return (int)n;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}
