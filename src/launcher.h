/* launcher.h: what the two files of httpgate-launch share. launcher.c owns
 * the socket protocol, the checks on the name and the names entry, and the
 * journal; launcher_unit.c owns everything said on the bus. */
#pragma once

#include <limits.h>
#include <stdbool.h>

#include "httpgate.h"

#define UNIT_PREFIX   "httpgate-app-"
#define UNIT_NAME_MAX 255 /* systemd's limit, suffix included */
#define APP_PATH      "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define REASON_MAX    200 /* bytes of a reason on the wire */

/* Everything StartTransientUnit needs, checked and resolved by launcher.c
 * from the names entry alone; nothing in it comes from the caller. */
struct app_unit {
        char unit[UNIT_NAME_MAX + 1]; /* httpgate-app-<escaped key>.service */
        const struct name_entry *e;
        char exec[PATH_MAX];   /* absolute program */
        char log[PATH_MAX];    /* absolute log file, or "": journal */
        char helper[PATH_MAX]; /* with a log: this program, which opens it */
        char user[64], group[64];
        char env_name[LAUNCH_NAME_MAX + 8], env_home[PATH_MAX + 8], env_port[16], env_lang[64];
};

/* What the launcher saw of the unit, from its signals. */
struct unit_state {
        char active[32]; /* ActiveState: "" until known */
        char result[32]; /* Service Result, e.g. "exit-code" */
        int exec_code;   /* ExecMainCode: CLD_EXITED, CLD_KILLED... */
        int exec_status; /* ExecMainStatus */
};

enum start_outcome { UNIT_STARTED = 1, UNIT_RUNNING = 2 };

/* Connects to the system bus. Returns 0 or negative errno. */
int unit_bus_open(void);

/* Starts the unit and waits for its job. Returns UNIT_STARTED, UNIT_RUNNING
 * (it existed already: someone else is starting it or it runs), or negative
 * errno with the reason in why. client is the gate's socket: its hang-up
 * ends the wait with -ECONNRESET. */
int unit_start(const struct app_unit *a, int client, char *why, size_t size);
/* After a start: returns 1 with the reason in why when the unit stops before
 * the gate hangs up, 0 when the gate hangs up first or after watch_sec. */
int unit_watch(const struct app_unit *a, int client, unsigned watch_sec, char *why, size_t size);

/* The idle checker's questions (launcher_idle.c). The apps' units that
 * run now: their names into names (at most max); returns how many, or
 * negative errno. */
int unit_list_apps(char (*names)[UNIT_NAME_MAX + 1], size_t max);
/* A unit's cgroup (below the cgroup root) and when it became active, in µs
 * since the epoch. Returns 0 or negative errno. */
int unit_app_facts(const char *unit, char *cgroup, size_t size, uint64_t *active_since_usec);
/* Queues the unit's stop. Returns 0 or negative errno with the reason in why. */
int unit_stop(const char *unit, char *why, size_t size);

/* httpgate-launch --stop-idle NAMES-FILE: returns the exit code. */
int idle_check(const char *names_path);

/* The journal: one entry per answer, with HTTPGATE_LAUNCH=result. */
void launcher_log(int prio, const char *result, const char *app, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
