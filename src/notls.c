/* notls.c: the TLS side of the plain build. The plain gate links no GnuTLS,
 * because every connection is a new process and loading GnuTLS costs more
 * than everything else it does; when a certificate is configured it becomes
 * its sibling httpgate-tls (same sources, with tls.c) by exec, before it has
 * touched the connection. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "httpgate.h"

int tls_exec_sibling(char **argv, char *why, size_t why_size)
{
        char self[PATH_MAX], path[PATH_MAX + 16];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        char *slash;

        if (n <= 0) {
                snprintf(why, why_size, "cannot find my own path: %s", strerror(errno));
                return -errno;
        }
        self[n] = '\0';
        slash = strrchr(self, '/');
        snprintf(path, sizeof(path), "%.*s/httpgate-tls", slash ? (int)(slash - self) : 0, self);
        execv(path, argv);
        snprintf(why, why_size, "TLS needs %s: %s", path, strerror(errno));
        return -errno;
}

int tls_accept(struct client *c, const struct options *o, const char **cipher, char *why, size_t why_size)
{
        (void)c, (void)o, (void)cipher;
        snprintf(why, why_size, "this build has no TLS");
        return -ENOSYS;
}

ssize_t tls_read(struct client *c, void *buf, size_t len)
{
        (void)c, (void)buf, (void)len;
        return -ENOSYS;
}

ssize_t tls_write(struct client *c, const void *buf, size_t len)
{
        (void)c, (void)buf, (void)len;
        return -ENOSYS;
}

size_t client_pending(struct client *c)
{
        (void)c;
        return 0;
}

void tls_end(struct client *c)
{
        (void)c;
}

void tls_bye(struct client *c)
{
        (void)c;
}
