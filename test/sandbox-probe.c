/* sandbox-probe: what a sandboxed gate instance can do, asked from inside.
 *
 * tier-51 puts it in place of httpgate in a unit's ExecStart= (a drop-in),
 * with the unit's own arguments. It takes its connection and the names file
 * and enters the sandbox exactly as main.c does (options_parse,
 * client_intake, names_open, sandbox_enter), then reads one request whose
 * body lists directories (one per line, from `find / -xdev -type d` run
 * by the test), tries everything a compromised gate might try, and answers
 * with a JSON object: each attempt and its outcome ("ok" or the errno name).
 * It is a test program: it is never installed. */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "httpgate.h"

#define BODY_MAX (8u << 20) /* the directory list */

static char *out;
static size_t out_len, out_cap;

static void put(const char *fmt, ...)
{
        va_list ap;
        int n;

        for (;;) {
                va_start(ap, fmt);
                n = vsnprintf(out + out_len, out_cap - out_len, fmt, ap);
                va_end(ap);
                if (n >= 0 && (size_t)n < out_cap - out_len)
                        break;
                out_cap = out_cap * 2 + 4096;
                if (!(out = realloc(out, out_cap)))
                        abort();
        }
        out_len += (size_t)n;
}

/* "ok", or the errno's name (glibc's strerrorname_np). */
static const char *result(int r)
{
        const char *name = r < 0 ? strerrorname_np(-r) : "ok";

        return name ? name : "unknown errno";
}

static int err(long r)
{
        return r < 0 ? -errno : 0;
}

/* O_CREAT|O_EXCL in dir; removed again unless keep names the file. */
static int create(const char *dir, const char *keep)
{
        char path[4200];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, keep ? keep : "hgprobe-tmp");
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        close(fd);
        if (!keep)
                (void)unlink(path); /* a sandbox that lets it create lets it remove */
        return 0;
}

static int open_as(const char *path, int flags)
{
        int fd = open(path, flags | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

static int unix_stream(const char *path, int *fd_ret)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        if (fd_ret)
                *fd_ret = fd;
        else
                close(fd);
        return 0;
}

static void align(char *b, size_t *n, size_t a)
{
        while (*n % a)
                b[(*n)++] = 0;
}

static void u32(char *b, size_t *n, uint32_t v)
{
        memcpy(b + *n, &v, 4);
        *n += 4;
}

static void header_field(char *b, size_t *n, uint8_t code, char sig, const char *s)
{
        align(b, n, 8);
        b[(*n)++] = (char)code;
        b[(*n)++] = 1;
        b[(*n)++] = sig;
        b[(*n)++] = 0;
        align(b, n, 4);
        u32(b, n, (uint32_t)strlen(s));
        memcpy(b + *n, s, strlen(s) + 1);
        *n += strlen(s) + 1;
}

/* D-Bus: AUTH EXTERNAL, BEGIN, then org.freedesktop.DBus.Hello. "talked"
 * when the bus answered with our unique name, else what stopped it. */
static const char *bus_hello(const char *path, char *what, size_t what_size)
{
        char msg[512], reply[4096], auth[128], dec[16];
        size_t n = 0, fields;
        ssize_t got = 0;
        int fd, r = unix_stream(path, &fd);
        struct timeval tv = { .tv_sec = 3 };

        if (r < 0) {
                snprintf(what, what_size, "connect: %s", result(r));
                return what;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        /* A NUL, then EXTERNAL with the uid's decimal digits, hex-encoded. */
        snprintf(dec, sizeof(dec), "%u", (unsigned)getuid());
        auth[0] = 0;
        n = 1 + (size_t)snprintf(auth + 1, sizeof(auth) - 1, "AUTH EXTERNAL ");
        for (const char *d = dec; *d; d++)
                n += (size_t)snprintf(auth + n, sizeof(auth) - n, "%02x", (unsigned char)*d);
        n += (size_t)snprintf(auth + n, sizeof(auth) - n, "\r\n");
        if (write(fd, auth, n) != (ssize_t)n || (got = read(fd, reply, sizeof(reply) - 1)) <= 0) {
                snprintf(what, what_size, "auth: %s", got == 0 ? "closed" : result(-errno));
                close(fd);
                return what;
        }
        reply[got] = 0;
        if (strncmp(reply, "OK ", 3) != 0) {
                snprintf(what, what_size, "auth: %.40s", reply);
                close(fd);
                return what;
        }
        n = 0;
        msg[n++] = 'l'; /* little endian */
        msg[n++] = 1;   /* method call */
        msg[n++] = 0;
        msg[n++] = 1;
        u32(msg, &n, 0); /* body length */
        u32(msg, &n, 1); /* serial */
        fields = n;
        u32(msg, &n, 0); /* header fields' length, below */
        header_field(msg, &n, 1, 'o', "/org/freedesktop/DBus");
        header_field(msg, &n, 6, 's', "org.freedesktop.DBus");
        header_field(msg, &n, 2, 's', "org.freedesktop.DBus");
        header_field(msg, &n, 3, 's', "Hello");
        {
                uint32_t len = (uint32_t)(n - fields - 4);
                memcpy(msg + fields, &len, 4);
        }
        align(msg, &n, 8);
        if (write(fd, "BEGIN\r\n", 7) != 7 || write(fd, msg, n) != (ssize_t)n) {
                snprintf(what, what_size, "hello: %s", result(-errno));
                close(fd);
                return what;
        }
        got = read(fd, reply, sizeof(reply) - 1);
        close(fd);
        if (got <= 0) {
                snprintf(what, what_size, "hello: %s", got == 0 ? "closed by the bus" : result(-errno));
                return what;
        }
        reply[got] = 0;
        for (ssize_t i = 0; i + 2 < got; i++)
                if (reply[i] == ':' && reply[i + 1] == '1' && reply[i + 2] == '.') {
                        snprintf(what, what_size, "talked (unique name %.20s)", reply + i);
                        return what;
                }
        snprintf(what, what_size, "hello: answered without a name (%zd bytes)", got);
        return what;
}

static int try_exec(void)
{
        char *argv[] = { "/bin/true", NULL };

        execve("/bin/true", argv, environ);
        return -errno;
}

static int try_fork(void)
{
        pid_t p = fork();

        if (p == 0)
                _exit(0);
        if (p < 0)
                return -errno;
        (void)waitpid(p, NULL, 0);
        return 0;
}

static int try_socket(int family, int type, int protocol)
{
        int fd = socket(family, type | SOCK_CLOEXEC, protocol);

        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

static int try_listen(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
                r = -errno;
        close(fd);
        return r;
}

/* An address of the machine's that is not loopback (tier-51 adds it). */
static int try_connect_out(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80), .sin_addr.s_addr = htonl(0x0a630001) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                r = -errno;
        close(fd);
        return r;
}

static int try_exec_memory(void)
{
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED) {
                p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p != MAP_FAILED && mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0)
                        return 0;
                return -EPERM;
        }
        return 0;
}

static int try_mqueue(void)
{
        mqd_t q = mq_open("/hgprobe", O_CREAT | O_EXCL | O_RDWR, 0600, NULL);

        if (q == (mqd_t)-1)
                return -errno;
        mq_close(q);
        mq_unlink("/hgprobe");
        return 0;
}

static int try_list(const char *dir)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

static void quote(const char *s)
{
        put("\"");
        for (; *s; s++)
                put(*s == '"' || *s == '\\' ? "\\%c" : (unsigned char)*s < 0x20 ? "\\u%04x" : "%c", *s);
        put("\"");
}

/* The status lines that say what the kernel holds this process to. */
static void status(int fd)
{
        char buf[8192];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        const char *keys[] = { "CapEff", "CapBnd", "NoNewPrivs", "Seccomp", "Seccomp_filters" };

        put("\"status\": {");
        buf[n > 0 ? n : 0] = 0;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                char *p = strstr(buf, keys[i]), *e;
                put("%s\"%s\": ", i ? ", " : "", keys[i]);
                if (!p || p[strlen(keys[i])] != ':') {
                        put("null");
                        continue;
                }
                p += strlen(keys[i]) + 1;
                p += strspn(p, " \t");
                e = strchr(p, '\n');
                put("\"%.*s\"", e ? (int)(e - p) : (int)strlen(p), p);
        }
        put("}");
}

static char *read_request(struct client *c, size_t *body_len)
{
        size_t cap = BODY_MAX + 65536, len = 0, want = 0;
        char *buf = malloc(cap + 1), *body = NULL;

        while (buf && len < cap) {
                ssize_t n = read(c->in, buf + len, cap - len);
                if (n <= 0)
                        break;
                len += (size_t)n;
                buf[len] = 0;
                if (!body && (body = strstr(buf, "\r\n\r\n"))) {
                        char *cl = strcasestr(buf, "\r\nContent-Length:");
                        body += 4;
                        want = cl && cl < body ? strtoul(cl + 17, NULL, 10) : 0;
                }
                if (body && (size_t)(buf + len - body) >= want)
                        break;
        }
        *body_len = body ? (size_t)(buf + len - body) : 0;
        return body;
}

int main(int argc, char **argv)
{
        struct options opt;
        struct client client;
        struct names names = { .fd = -1 };
        char why[512], what[256], marker[64];
        const char *cred = getenv("CREDENTIALS_DIRECTORY");
        int self_status = open("/proc/self/status", O_RDONLY | O_CLOEXEC), abi, r;
        size_t body_len;
        char *body;

        if (options_parse(argc, argv, &opt) != 0)
                return EXIT_USAGE;
        log_init();
        signal(SIGPIPE, SIG_IGN);
        if (client_intake(&client, why, sizeof(why)) < 0)
                return EXIT_INTAKE;
        if (opt.names_path && names_open(opt.names_path, &names, NULL, NULL) < 0)
                return EXIT_CONFIG;
        abi = sandbox_enter(&opt, &names, why, sizeof(why));
        if (abi < 0) {
                dprintf(client.out, "HTTP/1.1 503 Sandbox\r\nConnection: close\r\n\r\n%s\n", why);
                return EXIT_CONFIG;
        }

        body = read_request(&client, &body_len);
        snprintf(marker, sizeof(marker), "hgprobe-marker-%d", (int)getpid());
        put("{\"landlock_abi\": %d, \"uid\": %u, \"marker\": \"%s\", ", abi, (unsigned)getuid(), marker);
        status(self_status);

        put(", \"create\": {");
        const char *dirs[] = { "/etc", "/etc/httpgate", "/usr", "/usr/bin", "/opt", "/home", "/home/hgapp1", "/root",
                               "/run", "/run/httpgate", "/run/systemd", "/srv/echo", "/var", "/var/lib", "/var/log",
                               "/var/lib/httpgate", "/var/cache/httpgate", "/dev", "/tmp", "/var/tmp", "/dev/shm",
                               "/run/lock", "/dev/mqueue" };
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
                put("%s\"%s\": \"%s\"", i ? ", " : "", dirs[i], result(create(dirs[i], marker)));
        put("}, \"append\": {");
        const char *files[] = { "/etc/httpgate/names", "/etc/passwd", "/srv/echo/echo.py", "/usr/bin/httpgate" };
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
                put("%s\"%s\": \"%s\"", i ? ", " : "", files[i], result(open_as(files[i], O_WRONLY | O_APPEND)));
        snprintf(why, sizeof(why), "%s/key.pem", cred ? cred : "/nonexistent");
        put("}, \"read\": {\"/etc/httpgate/key.pem\": \"%s\", \"/etc/shadow\": \"%s\", \"/etc/passwd\": \"%s\", "
            "\"/proc/1/status\": \"%s\", \"$CREDENTIALS_DIRECTORY/key.pem\": \"%s\"}",
            result(open_as("/etc/httpgate/key.pem", O_RDONLY)), result(open_as("/etc/shadow", O_RDONLY)),
            result(open_as("/etc/passwd", O_RDONLY)), result(open_as("/proc/1/status", O_RDONLY)),
            cred ? result(open_as(why, O_RDONLY)) : "no credentials");
        put(", \"list\": {\"/proc\": \"%s\", \"/\": \"%s\", \"/etc\": \"%s\"}", result(try_list("/proc")),
            result(try_list("/")), result(try_list("/etc")));
        put(", \"connect\": {\"/run/httpgate/launch.sock\": \"%s\", \"/run/systemd/private\": \"%s\"",
            result(unix_stream("/run/httpgate/launch.sock", NULL)), bus_hello("/run/systemd/private", what, sizeof(what)));
        put(", \"/run/dbus/system_bus_socket\": ");
        quote(bus_hello("/run/dbus/system_bus_socket", what, sizeof(what)));
        put("}, \"do\": {\"execve /bin/true\": \"%s\", \"fork\": \"%s\", \"ptrace PID 1\": \"%s\", "
            "\"ptrace its parent\": \"%s\", \"kill PID 1\": \"%s\", \"kill its parent\": \"%s\", "
            "\"setuid 0\": \"%s\", \"unshare user namespace\": \"%s\", \"executable memory\": \"%s\", "
            "\"message queue\": \"%s\", \"listen on 127.0.0.1\": \"%s\", \"connect to 10.99.0.1:80\": \"%s\"",
            result(try_exec()), result(try_fork()), result(err(ptrace(PTRACE_ATTACH, 1, NULL, NULL))),
            result(err(ptrace(PTRACE_ATTACH, getppid(), NULL, NULL))), result(err(kill(1, 0))),
            result(err(kill(getppid(), 0))), result(err(setuid(0))), result(err(unshare(CLONE_NEWUSER))),
            result(try_exec_memory()), result(try_mqueue()), result(try_listen()), result(try_connect_out()));
        put("}, \"socket\": {\"AF_NETLINK\": \"%s\", \"AF_PACKET\": \"%s\", \"AF_INET raw\": \"%s\", "
            "\"AF_VSOCK\": \"%s\", \"AF_INET6 stream\": \"%s\", \"AF_UNIX dgram\": \"%s\"}",
            result(try_socket(AF_NETLINK, SOCK_RAW, 0)), result(try_socket(AF_PACKET, SOCK_RAW, 0)),
            result(try_socket(AF_INET, SOCK_RAW, 1 /* ICMP */)), result(try_socket(40 /* AF_VSOCK */, SOCK_STREAM, 0)),
            result(try_socket(AF_INET6, SOCK_STREAM, 0)), result(try_socket(AF_UNIX, SOCK_DGRAM, 0)));

        /* Every directory the test listed: which ones take a new file. */
        put(", \"walked\": %s, \"writable\": [", body_len ? "true" : "false");
        r = 0;
        for (char *line = body, *next; line && line < body + body_len; line = next) {
                next = memchr(line, '\n', (size_t)(body + body_len - line));
                if (next)
                        *next++ = 0;
                if (*line && create(line, NULL) == 0) {
                        put(r++ ? ", " : "");
                        quote(line);
                }
                if (!next)
                        break;
        }
        put("]}");

        dprintf(client.out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", out_len);
        (void)client_write_all(&client, out, out_len);
        return 0;
}
