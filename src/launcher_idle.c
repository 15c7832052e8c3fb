/* launcher_idle.c: httpgate-launch --stop-idle, run by httpgate-idle.service
 * (a oneshot) on httpgate-idle.timer: stops the apps that sit idle. Idle is
 * decided from facts: no TCP connection to any port the app's unit listens
 * on (its main port and the session ports its children open: the kernel
 * says, through sockdiag.c, by the unit's cgroup), and no request routed to
 * it for its idle time (the gate's mark, mark.c; the unit's own start counts
 * as one). The idle times are in the file "idle" beside the names file
 * (httpgate.names(5)); without that file idle stopping is off: nothing is
 * stopped, and the marks directory goes, so that the gates stop marking. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "launcher.h"
#include "sockdiag.h"

#define IDLE_FILE       "idle"      /* beside the names file */
#define IDLE_FILE_MAX   (64 * 1024) /* bytes of it read */
#define IDLE_RULES_MAX  1024        /* lines of it kept */
#define IDLE_APPS_MAX   512         /* running apps looked at in one run */
#define CGROUPS_MAX     64          /* cgroups of one unit (its own and those below) */
#define CGROUP_ROOT     "/sys/fs/cgroup"
#define CGROUP_HYBRID   "/sys/fs/cgroup/unified"
#define GATE_USER       "httpgate"
#define MSGID_IDLE_STOP "7d4f2a1b9c8e4f60a5b3c2d1e0f9a8b7"

struct idle_rule {
        char key[LAUNCH_NAME_MAX + 1]; /* "*": every app without a line of its own */
        unsigned long seconds;         /* 0: never stopped */
};

struct idle_app {
        char unit[UNIT_NAME_MAX + 1];
        char key[LAUNCH_NAME_MAX + 1];
        const struct name_entry *e;
        unsigned long limit;
        uint64_t since_usec;           /* its start, or its last request's mark, if later */
        uint64_t cgroups[CGROUPS_MAX];
        struct sockdiag_app diag;
};

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* "600", "600s", "10min", "2h". */
static int parse_seconds(const char *s, unsigned long *out)
{
        char *end;
        unsigned long v;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || v > 366ul * 86400)
                return -EINVAL;
        if (strcmp(end, "min") == 0 || strcmp(end, "m") == 0)
                v *= 60;
        else if (strcmp(end, "h") == 0)
                v *= 3600;
        else if (*end && strcmp(end, "s") != 0)
                return -EINVAL;
        *out = v;
        return 0;
}

/* Reads DIR/idle: "KEY TIME" or "* TIME" lines, "#" comments. Returns the
 * number of rules, -ENOENT (off), or another negative errno. */
static int read_rules(const char *names_path, struct idle_rule *rules, size_t max)
{
        char path[4096], buf[IDLE_FILE_MAX + 1], *line, *save = NULL;
        const char *slash = strrchr(names_path, '/');
        size_t n = 0, len = 0;
        unsigned lineno = 0;
        ssize_t k;
        int fd;

        snprintf(path, sizeof(path), "%.*s%s", slash ? (int)(slash - names_path + 1) : 0, names_path, IDLE_FILE);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        while (len < IDLE_FILE_MAX && (k = read(fd, buf + len, IDLE_FILE_MAX - len)) > 0)
                len += (size_t)k;
        close(fd);
        buf[len] = '\0';
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char key[LAUNCH_NAME_MAX + 2], value[32], extra[2];
                int f;

                lineno++;
                if (strchr(line, '#'))
                        *strchr(line, '#') = '\0';
                f = sscanf(line, "%65s %31s %1s", key, value, extra);
                if (f <= 0)
                        continue;
                if (f != 2 || strlen(key) > LAUNCH_NAME_MAX || n == max ||
                    parse_seconds(value, &rules[n].seconds) < 0) {
                        launcher_log(LOG_WARNING, "idle", "", "%s:%u: not \"KEY SECONDS\" (line skipped)", path,
                                     lineno);
                        continue;
                }
                snprintf(rules[n++].key, sizeof(rules->key), "%s", key);
        }
        return (int)n;
}

static unsigned long limit_of(const char *key, const struct idle_rule *rules, size_t n)
{
        unsigned long any = 0;

        for (size_t i = 0; i < n; i++) {
                if (strcmp(rules[i].key, key) == 0)
                        return rules[i].seconds;
                if (strcmp(rules[i].key, "*") == 0)
                        any = rules[i].seconds;
        }
        return any;
}

/* The marks directory, the gate's to write while idle stopping is on. */
static void marks_on(void)
{
        struct passwd *pw = getpwnam(GATE_USER);
        struct stat st;

        if (mkdir(MARK_DIR, 0750) < 0 && errno != EEXIST) {
                launcher_log(LOG_ERR, "idle", "", "%s: %s", MARK_DIR, strerror(errno));
                return;
        }
        if (lstat(MARK_DIR, &st) < 0 || !S_ISDIR(st.st_mode)) {
                launcher_log(LOG_ERR, "idle", "", "%s is not a directory", MARK_DIR);
                return;
        }
        if (pw && (st.st_uid != pw->pw_uid || st.st_gid != pw->pw_gid) && chown(MARK_DIR, pw->pw_uid, pw->pw_gid) < 0)
                launcher_log(LOG_ERR, "idle", "", "%s: %s", MARK_DIR, strerror(errno));
}

/* Off: the directory and its marks go (the gates then stop marking). */
static void marks_off(void)
{
        DIR *d = opendir(MARK_DIR);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
        (void)rmdir(MARK_DIR);
}

/* The time of the app's last request, as the gate marked it (0: none). */
static uint64_t mark_usec(const char *key)
{
        char path[sizeof(MARK_DIR) + LAUNCH_NAME_MAX + 2];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", MARK_DIR, key);
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
                return 0;
        return (uint64_t)st.st_mtim.tv_sec * 1000000 + (uint64_t)st.st_mtim.tv_nsec / 1000;
}

/* httpgate-app-KEY.service back to KEY (launcher.c's escaping: \xNN). */
static int key_of(const char *unit, char *key, size_t size)
{
        const char *p = unit + strlen(UNIT_PREFIX), *end = strrchr(unit, '.');
        size_t o = 0;

        if (strncmp(unit, UNIT_PREFIX, strlen(UNIT_PREFIX)) != 0 || !end || strcmp(end, ".service") != 0)
                return -EINVAL;
        while (p < end && o + 1 < size) {
                unsigned v;
                if (p[0] == '\\' && p + 3 < end && p[1] == 'x' && sscanf(p + 2, "%2x", &v) == 1) {
                        key[o++] = (char)v;
                        p += 4;
                } else {
                        key[o++] = *p++;
                }
        }
        key[o] = '\0';
        return p == end ? 0 : -ENAMETOOLONG;
}

static void ports_text(const struct sockdiag_app *d, char *out, size_t size)
{
        size_t o = 0;

        out[0] = '\0';
        for (size_t i = 0; i < d->n_ports && o + 8 < size; i++)
                o += (size_t)snprintf(out + o, size - o, "%s%u", i ? " " : "", d->ports[i]);
}

static void stop(struct idle_app *a, uint64_t now)
{
        unsigned long idle = (unsigned long)((now - a->since_usec) / 1000000);
        uint64_t mark = mark_usec(a->key);
        char ports[SOCKDIAG_PORTS_MAX * 6 + 1], why[256];

        if (mark > a->since_usec && (now - mark) / 1000000 < a->limit)
                return; /* a request came meanwhile */
        ports_text(&a->diag, ports, sizeof(ports));
        if (unit_stop(a->unit, why, sizeof(why)) < 0) {
                launcher_log(LOG_ERR, "idle", a->key, "app %s: stopping %s failed: %s", a->key, a->unit, why);
                return;
        }
        sd_journal_send("MESSAGE=app %s stopped: idle for %lu s (its idle time is %lu s), no connection to port%s %s",
                        a->key, idle, a->limit, a->diag.n_ports == 1 ? "" : "s", ports, "MESSAGE_ID=" MSGID_IDLE_STOP,
                        "PRIORITY=%i", LOG_INFO, "SYSLOG_IDENTIFIER=httpgate-launch", "HTTPGATE_LAUNCH=stopped-idle",
                        "HTTPGATE_APP=%s", a->key, "HTTPGATE_PORT=%u", a->e->port, "HTTPGATE_UNIT=%s", a->unit,
                        "HTTPGATE_IDLE_SEC=%lu", idle, "HTTPGATE_IDLE_LIMIT_SEC=%lu", a->limit,
                        "HTTPGATE_LISTEN_PORTS=%s", ports, "HTTPGATE_CONNECTIONS=0", NULL);
}

int idle_check(const char *names_path)
{
        static struct idle_rule rules[IDLE_RULES_MAX];
        static struct idle_app apps[IDLE_APPS_MAX];
        static char units[IDLE_APPS_MAX][UNIT_NAME_MAX + 1];
        static struct sockdiag_app diag[IDLE_APPS_MAX];
        struct names names;
        size_t n = 0;
        uint64_t now;
        int n_rules, n_units, r;

        n_rules = read_rules(names_path, rules, IDLE_RULES_MAX);
        if (n_rules == -ENOENT) {
                marks_off();
                return 0;
        }
        if (n_rules < 0) {
                launcher_log(LOG_ERR, "idle", "", "the idle file beside %s: %s", names_path, strerror(-n_rules));
                return 78;
        }
        marks_on();
        if ((r = names_load(names_path, &names, NULL, NULL)) < 0) {
                launcher_log(LOG_ERR, "idle", "", "names file %s: %s", names_path, strerror(-r));
                return 78;
        }
        if ((r = unit_bus_open()) < 0 || (n_units = unit_list_apps(units, IDLE_APPS_MAX)) < 0) {
                launcher_log(LOG_ERR, "idle", "", "the system bus: %s", strerror(-(r < 0 ? r : n_units)));
                return 70;
        }
        for (int i = 0; i < n_units; i++) {
                struct idle_app *a = &apps[n];
                char cg[1024], path[sizeof(cg) + sizeof(CGROUP_HYBRID)];
                uint64_t mark;
                int k;

                memset(a, 0, sizeof(*a));
                memcpy(a->unit, units[i], sizeof(a->unit)); /* the same size, NUL-terminated */
                if (key_of(a->unit, a->key, sizeof(a->key)) < 0 ||
                    !(a->e = names_find(&names, a->key, strlen(a->key))) || a->e->port == 0)
                        continue; /* not an entry of this names file (any more): not ours to stop */
                if ((a->limit = limit_of(a->key, rules, (size_t)n_rules)) == 0)
                        continue;
                if (unit_app_facts(a->unit, cg, sizeof(cg), &a->since_usec) < 0 || !cg[0])
                        continue;
                /* cgroup v2 at the root, or beside v1 (systemd's "hybrid" layout) */
                snprintf(path, sizeof(path), "%s%s", CGROUP_ROOT, cg);
                k = sockdiag_cgroup_ids(path, a->cgroups, CGROUPS_MAX);
                if (k == -EMEDIUMTYPE || k == -ENOENT) {
                        snprintf(path, sizeof(path), "%s%s", CGROUP_HYBRID, cg);
                        k = sockdiag_cgroup_ids(path, a->cgroups, CGROUPS_MAX);
                }
                if (k <= 0) {
                        launcher_log(LOG_WARNING, "idle", a->key, "app %s: its cgroup %s: %s (not stopped)", a->key,
                                     cg, strerror(k < 0 ? -k : ENOENT));
                        continue;
                }
                if ((mark = mark_usec(a->key)) > a->since_usec)
                        a->since_usec = mark;
                a->diag.cgroups = a->cgroups;
                a->diag.n_cgroups = (size_t)k;
                n++;
        }
        for (size_t i = 0; i < n; i++)
                diag[i] = apps[i].diag;
        if (n && (r = sockdiag_scan(diag, n)) < 0) {
                launcher_log(LOG_ERR, "idle", "", "sock_diag: %s (nothing stopped)", strerror(-r));
                return 70;
        }
        now = now_usec();
        for (size_t i = 0; i < n; i++) {
                apps[i].diag = diag[i];
                if (diag[i].connections == 0 && !diag[i].ports_full && now > apps[i].since_usec &&
                    (now - apps[i].since_usec) / 1000000 >= apps[i].limit)
                        stop(&apps[i], now);
        }
        names_free(&names);
        return 0;
}
