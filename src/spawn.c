/* spawn.c: the fallback launcher, for machines without a reachable systemd
 * manager (inetd, containers, `make run`): fork, new session, drop to the
 * entry's user when root, chdir to its directory, stdout and stderr appended
 * to its log file, a clean environment, exec. Failures before exec come back
 * through a close-on-exec pipe so that the gate can say what went wrong. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "httpgate.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2) /* linux/close_range.h, which musl lacks */
#endif

#define APP_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct spawn_error {
        int err;
        char stage[32];
};

static _Noreturn void child_fail(int fd, const char *stage)
{
        struct spawn_error e = { .err = errno };

        snprintf(e.stage, sizeof(e.stage), "%s", stage);
        (void)!write(fd, &e, sizeof(e)); /* nothing more to do if the gate is gone */
        _exit(127);
}

static bool is_socket(int fd)
{
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static _Noreturn void child(const struct name_entry *e, uid_t uid, gid_t gid, const char *home, int err_fd)
{
        char port[16];
        const char *lang = getenv("LANG");
        int null = open("/dev/null", O_RDWR | O_CLOEXEC), out;

        /* Nothing of the gate's connection may reach the app. */
        if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                child_fail(err_fd, "close_range");
        if (null < 0 || dup2(null, STDIN_FILENO) < 0)
                child_fail(err_fd, "stdin");
        if (is_socket(STDOUT_FILENO) && dup2(null, STDOUT_FILENO) < 0)
                child_fail(err_fd, "stdout");
        if (is_socket(STDERR_FILENO) && dup2(null, STDERR_FILENO) < 0)
                child_fail(err_fd, "stderr");
        if (setsid() < 0)
                child_fail(err_fd, "setsid");
        if (geteuid() == 0) {
                if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
                        child_fail(err_fd, "setuid");
        }
        if (chdir(e->dir) < 0)
                child_fail(err_fd, "chdir");
        if (e->log) {
                if ((out = open(e->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0)
                        child_fail(err_fd, "open log");
                if (dup2(out, STDOUT_FILENO) < 0)
                        child_fail(err_fd, "open log");
        }
        if (dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
                child_fail(err_fd, "stderr");
        snprintf(port, sizeof(port), "%u", e->port);
        if (clearenv() != 0 || setenv("NAME", e->key, 1) || setenv("HOME", home, 1) || setenv("PORT", port, 1) ||
            setenv("LANG", lang ? lang : "C.UTF-8", 1) || setenv("PATH", APP_PATH, 1))
                child_fail(err_fd, "environment");
        signal(SIGPIPE, SIG_DFL);
        execvp(e->argv[0], e->argv);
        child_fail(err_fd, "exec");
}

pid_t spawn_app(const struct name_entry *e, const char **why)
{
        static char msg[128];
        char home[PATH_MAX];
        uid_t uid;
        gid_t gid;
        int p[2], r;
        pid_t pid;
        struct spawn_error err;
        ssize_t n;

        r = names_user(e, &uid, &gid, home, sizeof(home));
        if (r < 0) {
                *why = r == -EPERM ? "the entry's user is root (uid or gid 0): refused"
                                   : "the entry's user does not exist";
                return r;
        }
        if (geteuid() != 0 && uid != geteuid()) {
                /* Only root can become the entry's user; never run its command as another. */
                *why = "the gate is not root and cannot run the app as the entry's user";
                return -EPERM;
        }
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                close(p[0]);
                child(e, uid, gid, home, p[1]);
        }
        close(p[1]);
        while ((n = read(p[0], &err, sizeof(err))) < 0 && errno == EINTR)
                ;
        close(p[0]);
        if (n == (ssize_t)sizeof(err)) {
                (void)waitpid(pid, NULL, 0);
                err.stage[sizeof(err.stage) - 1] = '\0';
                snprintf(msg, sizeof(msg), "%s: %s", err.stage, strerror(err.err));
                *why = msg;
                return -err.err;
        }
        return pid;
}
