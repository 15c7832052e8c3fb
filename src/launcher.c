/* launcher.c: httpgate-launch, the privileged half of starting apps. One
 * process per connection on httpgate-launch.socket (Accept=yes, a unix
 * socket only the gate's user may open): reads an app name, finds the entry
 * in the names file itself, checks and resolves it, has launcher_unit.c
 * start it as a transient unit, answers the gate, and then tells the gate if
 * the unit stops before the gate hangs up. Never takes a user, directory or
 * command from its caller. The wire protocol is in httpgate.h (launch.c). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "launcher.h"

#define NAMES_DEFAULT    "/etc/httpgate/names"
#define NAME_READ_MS     5000 /* the gate sends its name at once */
#define LAUNCH_WATCH_SEC 120  /* watch a started unit for the gate this long */
#define MSGID_LAUNCH     "c3a1f0d2b4e54c6a9f7e8d1c2b3a4f50"

/* Exit codes (httpgate-launch(8)); the unit counts 1 and 3 as success. */
enum {
        LEXIT_STARTED = 0, /* the app runs (started now or before) */
        LEXIT_REFUSED = 1, /* the name was refused */
        LEXIT_APP = 3,     /* the app could not start, or stopped at once */
        LEXIT_BUS = 70,
        LEXIT_LOG = 73, /* --append-output: the log file cannot be opened */
        LEXIT_CONFIG = 78,
};

static bool to_journal;

void launcher_log(int prio, const char *result, const char *app, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (!to_journal) {
                fprintf(stderr, "httpgate-launch[%d]: %s\n", (int)getpid(), msg);
                return;
        }
        sd_journal_send("MESSAGE=%s", msg, "MESSAGE_ID=" MSGID_LAUNCH, "PRIORITY=%i", prio,
                        "SYSLOG_IDENTIFIER=httpgate-launch", "HTTPGATE_LAUNCH=%s", result, "HTTPGATE_APP=%s", app,
                        NULL);
}

/* Sends one answer line; the gate may be gone, which changes nothing here. */
static void answer(int fd, int status, const char *reason)
{
        char line[LAUNCH_LINE_MAX];
        int n = snprintf(line, sizeof(line), "%03d %.*s\n", status, REASON_MAX, reason);

        for (char *c = line + 4; c < line + n - 1; c++)
                if (*c == '\n' || *c == '\r')
                        *c = ' ';
        (void)!send(fd, line, (size_t)n, MSG_NOSIGNAL);
}

/* Reads "NAME\n" into name. Returns its length, or -EMSGSIZE (overlong),
 * -EILSEQ (a control character), -EINVAL (empty), -ETIMEDOUT, -ECONNRESET;
 * *got holds what arrived, for the log. */
static int read_name(int fd, char name[LAUNCH_NAME_MAX + 2], size_t *got)
{
        char *nl = NULL;

        *got = 0;
        while (!nl) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;
                int r = poll(&p, 1, NAME_READ_MS);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : -ETIMEDOUT;
                n = read(fd, name + *got, LAUNCH_NAME_MAX + 1 - *got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -ECONNRESET;
                *got += (size_t)n;
                nl = memchr(name, '\n', *got);
                if (!nl && *got > LAUNCH_NAME_MAX)
                        return -EMSGSIZE;
        }
        *got = (size_t)(nl - name);
        if (*got == 0)
                return -EINVAL;
        for (size_t i = 0; i < *got; i++)
                if ((unsigned char)name[i] <= 0x20 || name[i] == 0x7f)
                        return -EILSEQ; /* controls, and blanks, which no key holds */
        *nl = '\0';
        return (int)*got;
}

/* systemd's unit name escaping (systemd.unit(5), "String Escaping"): keeps
 * [A-Za-z0-9:_.], writes the rest as \xNN, and a leading "." too. */
static int unit_name(const char *key, char *out, size_t size)
{
        size_t o = (size_t)snprintf(out, size, "%s", UNIT_PREFIX);

        for (const char *k = key; *k; k++) {
                unsigned char c = (unsigned char)*k;
                bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
                             c == '_' || (c == '.' && k != key);
                if (o + 5 >= size)
                        return -ENAMETOOLONG;
                if (plain)
                        out[o++] = (char)c;
                else
                        o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        }
        if (o + sizeof(".service") > size)
                return -ENAMETOOLONG;
        memcpy(out + o, ".service", sizeof(".service"));
        return 0;
}

/* dir + "/" + rel, or rel itself when absolute ("./x" loses its "./"). */
static int absolute(const char *dir, const char *rel, char *out, size_t size)
{
        int n;

        if (rel[0] == '/')
                n = snprintf(out, size, "%s", rel);
        else
                n = snprintf(out, size, "%s/%s", dir, rel[0] == '.' && rel[1] == '/' ? rel + 2 : rel);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The program ExecStart= runs: as written when absolute, against the entry's
 * directory when it has a "/", else the first executable in APP_PATH (the
 * PATH the app gets). Returns 0 or -ENOENT/-EACCES/-ENAMETOOLONG. */
static int resolve_program(const struct name_entry *e, char *out, size_t size)
{
        const char *cmd = e->argv[0];
        struct stat s;

        if (strchr(cmd, '/')) {
                if (absolute(e->dir, cmd, out, size) < 0)
                        return -ENAMETOOLONG;
                if (stat(out, &s) < 0)
                        return errno == ENOENT || errno == ENOTDIR ? -ENOENT : 0; /* EACCES: systemd decides */
                return S_ISREG(s.st_mode) && (s.st_mode & 0111) ? 0 : -EACCES;
        }
        for (const char *d = APP_PATH, *end; *d; d = *end ? end + 1 : end) {
                end = strchrnul(d, ':');
                if (snprintf(out, size, "%.*s/%s", (int)(end - d), d, cmd) >= (int)size)
                        return -ENAMETOOLONG;
                if (stat(out, &s) == 0 && S_ISREG(s.st_mode) && (s.st_mode & 0111))
                        return 0;
        }
        return -ENOENT;
}

/* Fills *a from the entry, or returns an answer status with the reason. */
static int prepare(const struct name_entry *e, struct app_unit *a, char *why, size_t size)
{
        char home[PATH_MAX];
        struct stat s;
        struct group gr, *g = NULL;
        char buf[4096];
        uid_t uid;
        gid_t gid;
        int r;

        memset(a, 0, sizeof(*a));
        a->e = e;
        if (unit_name(e->key, a->unit, sizeof(a->unit)) < 0)
                return snprintf(why, size, "name too long for a unit name"), 400;
        r = names_user(e, &uid, &gid, home, sizeof(home));
        if (r < 0)
                return snprintf(why, size, "user %s %s", e->user,
                                r == -EPERM ? "has uid or gid 0: refused" : "does not exist"),
                       403;
        snprintf(a->user, sizeof(a->user), "%s", e->user);
        if (getgrgid_r(gid, &gr, buf, sizeof(buf), &g) == 0 && g)
                snprintf(a->group, sizeof(a->group), "%s", g->gr_name);
        else
                snprintf(a->group, sizeof(a->group), "%u", (unsigned)gid);
        if (!e->dir || e->dir[0] != '/')
                return snprintf(why, size, "directory '%.200s' is not an absolute path", e->dir ? e->dir : ""), 503;
        if (stat(e->dir, &s) < 0 || !S_ISDIR(s.st_mode))
                return snprintf(why, size, "directory %.200s does not exist", e->dir), 503;
        r = resolve_program(e, a->exec, sizeof(a->exec));
        if (r < 0)
                return snprintf(why, size, "program %.100s %s (directory %.100s, PATH %s)", e->argv[0],
                                r == -EACCES ? "is not an executable file" : "not found", e->dir, APP_PATH),
                       503;
        if (e->log && *e->log) {
                if (absolute(e->dir, e->log, a->log, sizeof(a->log)) < 0)
                        return snprintf(why, size, "log file name too long"), 503;
                char dir[PATH_MAX];
                snprintf(dir, sizeof(dir), "%s", a->log);
                if (stat(dirname(dir), &s) < 0 || !S_ISDIR(s.st_mode))
                        return snprintf(why, size, "log directory of %.200s does not exist", a->log), 503;
        }
        if (*a->log) {
                ssize_t n = readlink("/proc/self/exe", a->helper, sizeof(a->helper) - 1);
                if (n <= 0)
                        return snprintf(why, size, "cannot find httpgate-launch itself: %s", strerror(errno)), 503;
                a->helper[n] = '\0';
        }
        snprintf(a->env_name, sizeof(a->env_name), "NAME=%s", e->key);
        snprintf(a->env_home, sizeof(a->env_home), "HOME=%s", home);
        snprintf(a->env_port, sizeof(a->env_port), "PORT=%u", e->port);
        snprintf(a->env_lang, sizeof(a->env_lang), "LANG=%s", getenv("LANG") ? getenv("LANG") : "C.UTF-8");
        return 0;
}

static void report(unsigned line, const char *msg, void *data)
{
        (void)line, (void)msg, (void)data; /* the gate and httpgate --check report bad lines */
}

static int refuse(int fd, int status, const char *shown, const char *why)
{
        launcher_log(LOG_WARNING, "refused", shown, "refused '%s': %s", shown, why);
        answer(fd, status, why);
        return LEXIT_REFUSED;
}

/* The connection: from systemd (Accept=yes, fd 3), else fd 0 (a test, inetd). */
static int take_connection(void)
{
        int n = sd_listen_fds(1);

        return n == 1 ? SD_LISTEN_FDS_START : STDIN_FILENO;
}

/* Reads the name and finds its entry. Returns the entry, or NULL after
 * refusing (answered and logged, *exit set). */
static const struct name_entry *take_entry(int fd, const struct names *names, int *exit_code)
{
        char name[LAUNCH_NAME_MAX + 2], shown[4 * (LAUNCH_NAME_MAX + 1) + 1], why[128];
        const struct name_entry *e;
        size_t got;
        int r = read_name(fd, name, &got);

        printable(shown, sizeof(shown), name, got < LAUNCH_NAME_MAX ? got : LAUNCH_NAME_MAX);
        switch (r) {
        case -EMSGSIZE:
                snprintf(why, sizeof(why), "name longer than %u bytes", LAUNCH_NAME_MAX);
                *exit_code = refuse(fd, 400, shown, why);
                return NULL;
        case -EILSEQ: *exit_code = refuse(fd, 400, shown, "name with a control character or blank"); return NULL;
        case -EINVAL: *exit_code = refuse(fd, 400, shown, "empty name"); return NULL;
        case -ETIMEDOUT: *exit_code = refuse(fd, 408, shown, "no name within 5 s"); return NULL;
        case -ECONNRESET: *exit_code = refuse(fd, 400, shown, "connection closed before a whole name"); return NULL;
        default: break;
        }
        if (r < 0) {
                snprintf(why, sizeof(why), "reading the name: %s", strerror(-r));
                *exit_code = refuse(fd, 400, shown, why);
                return NULL;
        }
        e = names_find(names, name, (size_t)r);
        if (!e || e->port == 0) {
                *exit_code = refuse(fd, 404, shown,
                                    e ? "a redirect entry, nothing to start" : "no such app in the names file");
                return NULL;
        }
        return e;
}

static int serve(int fd, const char *names_path)
{
        const struct name_entry *e;
        struct names names;
        struct app_unit a;
        char why[512];
        int r, status;

        /* Configuration and the bus first, then the first byte of the caller. */
        r = names_load(names_path, &names, report, NULL);
        if (r < 0) {
                snprintf(why, sizeof(why), "names file %s: %s", names_path, strerror(-r));
                launcher_log(LOG_ERR, "failed", "", "%s", why);
                answer(fd, 503, why);
                return LEXIT_CONFIG;
        }
        r = unit_bus_open();
        if (r < 0) {
                snprintf(why, sizeof(why), "system bus: %s", strerror(-r));
                launcher_log(LOG_ERR, "failed", "", "%s", why);
                answer(fd, 503, why);
                return LEXIT_BUS;
        }
        if (!(e = take_entry(fd, &names, &r)))
                return r;
        status = prepare(e, &a, why, sizeof(why));
        if (status) {
                char shown[4 * (LAUNCH_NAME_MAX + 1) + 1];
                printable(shown, sizeof(shown), e->key, strlen(e->key));
                return refuse(fd, status, shown, why);
        }

        r = unit_start(&a, fd, why, sizeof(why));
        if (r == -ECONNRESET) {
                launcher_log(LOG_INFO, "abandoned", e->key, "%s", why);
                return LEXIT_APP;
        }
        if (r < 0) {
                launcher_log(LOG_ERR, "failed", e->key, "%s: %s", e->key, why);
                answer(fd, 503, why);
                return LEXIT_APP;
        }
        snprintf(why, sizeof(why), "%s %s as %s", a.unit, r == UNIT_STARTED ? "started" : "running", a.user);
        launcher_log(LOG_INFO, r == UNIT_STARTED ? "started" : "running", e->key, "%s: %s", e->key, why);
        answer(fd, 200, why);

        if (unit_watch(&a, fd, LAUNCH_WATCH_SEC, why, sizeof(why)) > 0) {
                launcher_log(LOG_ERR, "stopped", e->key, "%s: %s", e->key, why);
                answer(fd, 503, why);
                return LEXIT_APP;
        }
        return LEXIT_STARTED;
}

/* --append-output LOG PROGRAM ARGV0 [ARG...]: runs inside the app's unit,
 * as the app's user, and opens the log file there, as httpGate does after
 * setuid. systemd's own StandardOutput=append: is not used because systemd
 * opens that file as root and follows symlinks: whoever owns the app's
 * directory could have root append the app's output to any file. */
static int append_output(int argc, char **argv)
{
        int fd;

        if (argc < 5) {
                fprintf(stderr, "usage: httpgate-launch --append-output LOG PROGRAM ARGV0 [ARG...]\n");
                return 64;
        }
        fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
                fprintf(stderr, "httpgate-launch: cannot open the log file %s: %s\n", argv[2], strerror(errno));
                return LEXIT_LOG;
        }
        if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) {
                fprintf(stderr, "httpgate-launch: dup2: %s\n", strerror(errno));
                return LEXIT_LOG;
        }
        execv(argv[3], argv + 4);
        fprintf(stderr, "httpgate-launch: cannot execute %s: %s\n", argv[3], strerror(errno));
        return 127;
}

int main(int argc, char **argv)
{
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat s;

        if (argc > 1 && strcmp(argv[1], "--append-output") == 0)
                return append_output(argc, argv);
        if (argc > 1 && argc <= 3 && strcmp(argv[1], "--stop-idle") == 0) {
                to_journal = true; /* httpgate-idle.service; its entries say what it stopped */
                return idle_check(argc == 3 ? argv[2] : NAMES_DEFAULT);
        }
        if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
                bool help = argc == 2 && strcmp(argv[1], "--help") == 0;
                if (argc == 2 && strcmp(argv[1], "--version") == 0)
                        return printf("httpgate-launch %s\n", HTTPGATE_VERSION), 0;
                fprintf(help ? stdout : stderr,
                        "usage: httpgate-launch [NAMES-FILE]   (default " NAMES_DEFAULT ")\n"
                        "       httpgate-launch --stop-idle [NAMES-FILE]\n"
                        "Started by httpgate-launch.socket for one connection: reads an app name,\n"
                        "starts that names entry as the unit " UNIT_PREFIX "NAME.service.\n"
                        "With --stop-idle (httpgate-idle.timer): stops the apps idle for the time\n"
                        "the file idle beside the names file gives them.\n");
                return help ? 0 : 64;
        }
        to_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &s) == 0 &&
                     s.st_dev == dev && s.st_ino == ino;
        signal(SIGPIPE, SIG_IGN); /* a vanished gate is an error return */
        return serve(take_connection(), argc == 2 ? argv[1] : NAMES_DEFAULT);
}
