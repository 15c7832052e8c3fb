/* reply.c: the gate's own answers: short error pages, 302 for redirect
 * entries, and 410 with the void file for expired session URLs. An answer
 * in the middle of a kept-alive connection keeps it; the others close it.
 * Writing is reply_write's, which relay.c also uses
 * for TLS clients. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpgate.h"

#define VOID_MAX (1u << 20) /* bytes of a void file sent */

const char *status_reason(int status)
{
        switch (status) {
        case 101: return "Switching Protocols";
        case 302: return "Found";
        case 400: return "Bad Request";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 408: return "Request Timeout";
        case 410: return "Gone";
        case 414: return "URI Too Long";
        case 431: return "Request Header Fields Too Large";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default:  return "Error";
        }
}

int reply_format(char *buf, size_t size, int status, const char *location, size_t body_len,
                 const char *type, bool keep)
{
        int n = snprintf(buf, size,
                         "HTTP/1.1 %d %s\r\n"
                         "Server: httpgate\r\n"
                         "%s%s%s"
                         "Content-Type: %s\r\n"
                         "Content-Length: %zu\r\n"
                         "%s"
                         "\r\n",
                         status, status_reason(status), location ? "Location: " : "",
                         location ? location : "", location ? "\r\n" : "", type, body_len,
                         keep ? "" : "Connection: close\r\n");
        return n < 0 || (size_t)n >= size ? -ENOBUFS : n;
}

static int reply_body(int status, char *buf, size_t size)
{
        int n = snprintf(buf, size, "<html><head><title>%d %s</title></head><body><h1>%d %s</h1></body></html>\n",
                         status, status_reason(status), status, status_reason(status));
        return n < 0 || (size_t)n >= size ? -ENOBUFS : n;
}

int reply_send(struct client *c, int status, const char *location, bool keep)
{
        char head[1024], body[256];
        int b = reply_body(status, body, sizeof(body));
        int h = reply_format(head, sizeof(head), status, location, b < 0 ? 0 : (size_t)b, "text/html; charset=utf-8",
                             keep);

        if (h < 0 || b < 0)
                return -ENOBUFS;
        if (client_write_all(c, head, (size_t)h) < 0 || client_write_all(c, body, (size_t)b) < 0)
                return -EIO;
        return h + b;
}

/* 410 Gone with the void file (normally HTML), as httpGate answers a request
 * for an expired session; the built-in page when there is none. */
int reply_void(struct client *c, const char *void_path, bool keep)
{
        char head[512], buf[16384];
        struct stat st;
        int fd = void_path ? open(void_path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : -1, h, r = 0;
        size_t left;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                if (fd >= 0)
                        close(fd);
                return reply_send(c, 410, NULL, keep);
        }
        left = (uint64_t)st.st_size < VOID_MAX ? (size_t)st.st_size : VOID_MAX;
        h = reply_format(head, sizeof(head), 410, NULL, left, "text/html; charset=utf-8", keep);
        if (h < 0 || client_write_all(c, head, (size_t)h) < 0)
                r = -EIO;
        while (r == 0 && left > 0) {
                ssize_t k = read(fd, buf, left < sizeof(buf) ? left : sizeof(buf));
                if (k <= 0) { /* shrank under us: pad, the length is promised */
                        memset(buf, ' ', sizeof(buf));
                        k = (ssize_t)(left < sizeof(buf) ? left : sizeof(buf));
                }
                r = client_write_all(c, buf, (size_t)k);
                left -= (size_t)k;
        }
        close(fd);
        return r < 0 ? r : h + (int)((uint64_t)st.st_size < VOID_MAX ? (size_t)st.st_size : VOID_MAX);
}
