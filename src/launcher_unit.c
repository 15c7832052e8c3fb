/* launcher_unit.c: httpgate-launch's conversation with the system manager,
 * the only sd-bus code in httpgate. Starts an app as a transient unit
 * (StartTransientUnit), waits for its job (JobRemoved), then watches the
 * unit's state (PropertiesChanged) for the gate. Takes an app_unit that
 * launcher.c has checked; decides nothing about names, users or paths. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-bus.h>

#include "launcher.h"

#define JOB_SEC        30u /* the start job; the gate gives up sooner */
#define EXISTS_SEC     5   /* an existing unit on its way out: retry this long */
#define EXISTS_WAIT_MS 20  /* between those retries */
#define BUS_CALL_USEC  (10 * 1000000ULL)

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MGR  "org.freedesktop.systemd1.Manager"
#define SD_UNIT "org.freedesktop.systemd1.Unit"
#define SD_SVC  "org.freedesktop.systemd1.Service"

static sd_bus *bus;
static char *unit_path;        /* the unit's object path */
static char job_path[256];     /* "" until StartTransientUnit answered */
static char job_result[32];    /* JobRemoved's result: "" while pending */
static bool job_done, changed; /* changed: a PropertiesChanged arrived */
static struct unit_state st;

static uint64_t mono_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int unit_bus_open(void)
{
        return sd_bus_open_system(&bus);
}

static int on_job_removed(sd_bus_message *m, void *data, sd_bus_error *err)
{
        const char *path, *unit, *result;
        uint32_t id;

        (void)data;
        (void)err;
        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0; /* not ours to judge; keep waiting */
        if (*job_path && strcmp(path, job_path) == 0) {
                snprintf(job_result, sizeof(job_result), "%s", result);
                job_done = true;
        }
        return 0;
}

static void read_string_variant(sd_bus_message *m, char *out, size_t size)
{
        const char *s;

        if (sd_bus_message_read(m, "v", "s", &s) >= 0)
                snprintf(out, size, "%s", s);
}

/* PropertiesChanged(s interface, a{sv} changed, as invalidated): keeps the
 * few values that say how the unit stopped, for the reason; the first
 * failure seen stays (a later signal may be about a fresh, empty unit of the
 * same name). Whether the unit runs is asked anew (current_running) after
 * each signal: queued signals may be older than what the launcher knows. */
static int on_properties(sd_bus_message *m, void *data, sd_bus_error *err)
{
        const char *iface, *name;
        int exec_code = 0, exec_status = 0;

        (void)data;
        (void)err;
        if (sd_bus_message_read(m, "s", &iface) < 0 || sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return 0;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &name) < 0)
                        return 0;
                if (strcmp(iface, SD_UNIT) == 0 && strcmp(name, "ActiveState") == 0)
                        read_string_variant(m, st.active, sizeof(st.active));
                else if (strcmp(iface, SD_SVC) == 0 && strcmp(name, "Result") == 0 &&
                         (!*st.result || strcmp(st.result, "success") == 0))
                        read_string_variant(m, st.result, sizeof(st.result));
                else if (strcmp(iface, SD_SVC) == 0 && strcmp(name, "ExecMainCode") == 0 && st.exec_code == 0)
                        (void)sd_bus_message_read(m, "v", "i", &exec_code); /* stays 0: unknown */
                else if (strcmp(iface, SD_SVC) == 0 && strcmp(name, "ExecMainStatus") == 0 && st.exec_code == 0)
                        (void)sd_bus_message_read(m, "v", "i", &exec_status);
                else if (sd_bus_message_skip(m, "v") < 0)
                        return 0;
                if (sd_bus_message_exit_container(m) < 0)
                        return 0;
        }
        if (exec_code != 0) { /* code and status come in the same signal */
                st.exec_code = exec_code;
                st.exec_status = exec_status;
        }
        changed = true;
        return 0;
}

/* Dispatches bus messages until *flag, the gate's hang-up (-ECONNRESET) or
 * the deadline (-ETIMEDOUT). Nothing spins: it sleeps in poll(2). */
static int run_until(const bool *flag, int client, uint64_t deadline)
{
        for (;;) {
                struct pollfd p[2];
                uint64_t now, until, t = UINT64_MAX;
                int r = sd_bus_process(bus, NULL);

                if (r < 0)
                        return r;
                if (*flag)
                        return 0;
                if (r > 0)
                        continue; /* more may be queued */
                now = mono_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                (void)sd_bus_get_timeout(bus, &t); /* UINT64_MAX: none */
                until = t < deadline ? t : deadline;
                p[0] = (struct pollfd){ .fd = sd_bus_get_fd(bus), .events = (short)sd_bus_get_events(bus) };
                p[1] = (struct pollfd){ .fd = client, .events = POLLIN | POLLRDHUP };
                r = poll(p, 2, until <= now ? 0 : (int)((until - now + 999) / 1000));
                if (r < 0 && errno != EINTR)
                        return -errno;
                /* The gate sends nothing after the name: readable means gone. */
                if (r > 0 && p[1].revents)
                        return -ECONNRESET;
        }
}

/* ExecStart=: the entry's command; with a log file, behind
 * "httpgate-launch --append-output LOG PROGRAM", which opens the log as the
 * app's user (launcher.c says why not StandardOutput=append:). */
static int append_exec(sd_bus_message *m, const struct app_unit *a)
{
        int r;

        if ((r = sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
            (r = sd_bus_message_append(m, "s", "ExecStart")) < 0 ||
            (r = sd_bus_message_open_container(m, 'v', "a(sasb)")) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "(sasb)")) < 0 ||
            (r = sd_bus_message_open_container(m, 'r', "sasb")) < 0 ||
            (r = sd_bus_message_append(m, "s", *a->log ? a->helper : a->exec)) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "s")) < 0)
                return r;
        if (*a->log && (r = sd_bus_message_append(m, "ssss", a->helper, "--append-output", a->log, a->exec)) < 0)
                return r;
        for (char **arg = a->e->argv; *arg; arg++)
                if ((r = sd_bus_message_append(m, "s", *arg)) < 0)
                        return r;
        if ((r = sd_bus_message_close_container(m)) < 0 || (r = sd_bus_message_append(m, "b", 0)) < 0)
                return r;
        for (int i = 0; i < 4; i++)
                if ((r = sd_bus_message_close_container(m)) < 0)
                        return r;
        return 0;
}

/* The transient unit's settings (httpgate.units(5) lists them). */
static int start_message(const struct app_unit *a, sd_bus_message **ret)
{
        sd_bus_message *m = NULL;
        char desc[LAUNCH_NAME_MAX + 32];
        int r;

        snprintf(desc, sizeof(desc), "httpgate app %s", a->e->key);
        r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MGR, "StartTransientUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", a->unit, "fail");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s", desc, "Type", "s",
                                          "exec", "User", "s", a->user, "Group", "s", a->group, "WorkingDirectory", "s",
                                          a->e->dir, "KillMode", "s", "mixed", "CollectMode", "s", "inactive-or-failed",
                                          "Environment", "as", 5, a->env_name, a->env_home, a->env_port, a->env_lang,
                                          "PATH=" APP_PATH);
        if (r >= 0)
                r = append_exec(m, a);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0); /* aux: unused */
        if (r < 0)
                sd_bus_message_unref(m);
        else
                *ret = m;
        return r;
}

static bool is_running(const char *state)
{
        return strcmp(state, "active") == 0 || strcmp(state, "activating") == 0 || strcmp(state, "reloading") == 0;
}

/* The unit's ActiveState now, into st.active ("gone" once collected). Asks
 * GetUnit first: a property read on a unit's path would load an empty unit
 * of that name when it is gone. */
static bool current_running(const struct app_unit *a)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        char *state = NULL;
        int r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MGR, "GetUnit", &err, &reply, "s", a->unit);

        sd_bus_message_unref(reply);
        sd_bus_error_free(&err);
        if (r >= 0)
                r = sd_bus_get_property_string(bus, SD_DEST, unit_path, SD_UNIT, "ActiveState", &err, &state);
        sd_bus_error_free(&err);
        snprintf(st.active, sizeof(st.active), "%s", r < 0 ? "gone" : state);
        free(state);
        return r >= 0 && is_running(st.active);
}

/* Once the unit is known to have stopped: the signals systemd sent before
 * it answered are dispatched, and while the unit is still loaded its exit
 * status is read directly (its last change signal may not be sent yet). */
static void gather_exit(void)
{
        char *result = NULL;
        int32_t code = 0, status = 0;

        while (sd_bus_process(bus, NULL) > 0)
                ;
        if (st.exec_code != 0 || strcmp(st.active, "gone") == 0)
                return;
        if (sd_bus_get_property_trivial(bus, SD_DEST, unit_path, SD_SVC, "ExecMainCode", NULL, 'i', &code) >= 0 &&
            sd_bus_get_property_trivial(bus, SD_DEST, unit_path, SD_SVC, "ExecMainStatus", NULL, 'i', &status) >= 0 &&
            code != 0) {
                st.exec_code = code;
                st.exec_status = status;
        }
        if (sd_bus_get_property_string(bus, SD_DEST, unit_path, SD_SVC, "Result", NULL, &result) >= 0 &&
            (!*st.result || strcmp(st.result, "success") == 0))
                snprintf(st.result, sizeof(st.result), "%s", result);
        free(result);
}

static void stop_reason(const struct app_unit *a, char *why, size_t size)
{
        gather_exit();
        if (st.exec_code == CLD_EXITED && st.exec_status == 73 && *a->log) /* launcher.c: LEXIT_LOG */
                snprintf(why, size, "%s could not open its log file %.100s as %s", a->unit, a->log, a->user);
        else if (st.exec_code == CLD_EXITED)
                snprintf(why, size, "%s stopped before listening on port %u: exit status %d (%s)", a->unit, a->e->port,
                         st.exec_status, *st.result ? st.result : st.active);
        else if (st.exec_code == CLD_KILLED || st.exec_code == CLD_DUMPED)
                snprintf(why, size, "%s stopped before listening on port %u: signal %s (%s)", a->unit, a->e->port,
                         sigabbrev_np(st.exec_status) ? sigabbrev_np(st.exec_status) : "?",
                         *st.result ? st.result : st.active);
        else
                snprintf(why, size, "%s stopped before listening on port %u: %s (%s)", a->unit, a->e->port,
                         *st.active ? st.active : "gone", *st.result ? st.result : "no result");
}

/* The unit exists already: running (or starting) is success, on its way out
 * means wait until systemd has collected it and start it again. Returns
 * UNIT_RUNNING, 0 to retry, or negative errno with why. */
static int existing(const struct app_unit *a, char *why, size_t size)
{
        if (current_running(a))
                return UNIT_RUNNING;
        snprintf(why, size, "%s exists and is %s", a->unit, st.active);
        return 0;
}

int unit_start(const struct app_unit *a, int client, char *why, size_t size)
{
        uint64_t deadline = mono_usec() + JOB_SEC * 1000000ULL, retry_end = mono_usec() + EXISTS_SEC * 1000000ULL;
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", a->unit, &unit_path);
        /* Listen before asking, so that no signal can be missed. */
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, SD_DEST, SD_PATH, SD_MGR, "JobRemoved", on_job_removed, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, SD_DEST, unit_path, "org.freedesktop.DBus.Properties",
                                        "PropertiesChanged", on_properties, NULL);
        if (r >= 0)
                r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MGR, "Subscribe", &err, NULL, NULL);
        if (r < 0) {
                snprintf(why, size, "system bus: %s", err.message ? err.message : strerror(-r));
                sd_bus_error_free(&err);
                return r;
        }
        for (;;) {
                if ((r = start_message(a, &m)) < 0) {
                        snprintf(why, size, "building the request: %s", strerror(-r));
                        return r;
                }
                r = sd_bus_call(bus, m, BUS_CALL_USEC, &err, &reply);
                m = sd_bus_message_unref(m);
                if (r >= 0 || !sd_bus_error_has_name(&err, "org.freedesktop.systemd1.UnitExists"))
                        break;
                sd_bus_error_free(&err);
                if ((r = existing(a, why, size)) != 0)
                        return r;
                if (strcmp(st.active, "inactive") == 0 || strcmp(st.active, "failed") == 0) {
                        /* Stopped, but not collected yet (PID 1 does that when it
                         * gets to it, which under load takes a while): start it
                         * as it is; its job is waited for like a new one's. */
                        r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MGR, "StartUnit", &err, &reply, "ss",
                                               a->unit, "replace");
                        break;
                }
                if (mono_usec() >= retry_end)
                        return -EBUSY; /* why says in which state */
                (void)poll(NULL, 0, EXISTS_WAIT_MS);
        }
        if (r < 0) {
                snprintf(why, size, "StartTransientUnit %s: %s", a->unit, err.message ? err.message : strerror(-r));
                sd_bus_error_free(&err);
                return r;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0)
                snprintf(job_path, sizeof(job_path), "%s", path);
        sd_bus_message_unref(reply);
        if (r < 0) {
                snprintf(why, size, "StartTransientUnit %s: bad reply", a->unit);
                return r;
        }
        r = run_until(&job_done, client, deadline);
        if (r == -ETIMEDOUT)
                snprintf(why, size, "the start job of %s did not finish within %us", a->unit, JOB_SEC);
        else if (r == -ECONNRESET)
                snprintf(why, size, "the gate hung up while %s was starting", a->unit);
        else if (r < 0)
                snprintf(why, size, "system bus: %s", strerror(-r));
        if (r < 0)
                return r;
        while (sd_bus_process(bus, NULL) > 0)
                ; /* take in the exit status, if it came with the job */
        if (strcmp(job_result, "done") != 0 || !current_running(a)) {
                stop_reason(a, why, size);
                if (strcmp(job_result, "done") != 0 && st.exec_code == 0)
                        snprintf(why, size, "%s could not start: job %s", a->unit, job_result);
                return -ECHILD;
        }
        return UNIT_STARTED;
}

int unit_watch(const struct app_unit *a, int client, unsigned watch_sec, char *why, size_t size)
{
        uint64_t deadline = mono_usec() + watch_sec * 1000000ULL;

        for (;;) {
                changed = false;
                if (run_until(&changed, client, deadline) < 0)
                        return 0; /* the gate hung up, the watch ended or the bus went: nothing to report */
                while (sd_bus_process(bus, NULL) > 0)
                        ; /* all that is queued, so that the exit status is in */
                if (!current_running(a))
                        break;
        }
        stop_reason(a, why, size);
        return 1;
}

/* ---- for the idle checker (launcher_idle.c) ---- */

int unit_list_apps(char (*names)[UNIT_NAME_MAX + 1], size_t max)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        const char *states[] = { "active", "reloading", NULL }, *patterns[] = { UNIT_PREFIX "*.service", NULL };
        size_t n = 0;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MGR, "ListUnitsByPatterns");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, (char **)states);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, (char **)patterns);
        if (r >= 0)
                r = sd_bus_call(bus, m, BUS_CALL_USEC, &err, &reply);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "(ssssssouso)");
        while (r >= 0) {
                const char *name;

                r = sd_bus_message_read(reply, "(ssssssouso)", &name, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                        NULL, NULL);
                if (r <= 0)
                        break;
                if (n < max)
                        snprintf(names[n++], UNIT_NAME_MAX + 1, "%s", name);
        }
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        sd_bus_error_free(&err);
        return r < 0 ? r : (int)n;
}

int unit_app_facts(const char *unit, char *cgroup, size_t size, uint64_t *active_since_usec)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        char *cg = NULL;
        int r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MGR, "GetUnit", &err, &reply, "s", unit);

        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0)
                r = sd_bus_get_property_string(bus, SD_DEST, path, SD_SVC, "ControlGroup", &err, &cg);
        if (r >= 0)
                r = sd_bus_get_property_trivial(bus, SD_DEST, path, SD_UNIT, "ActiveEnterTimestamp", &err, 't',
                                                active_since_usec);
        if (r >= 0)
                snprintf(cgroup, size, "%s", cg);
        free(cg);
        sd_bus_message_unref(reply);
        sd_bus_error_free(&err);
        return r < 0 ? r : 0;
}

int unit_stop(const char *unit, char *why, size_t size)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MGR, "StopUnit", &err, &reply, "ss", unit, "replace");

        if (r < 0)
                snprintf(why, size, "%s", err.message ? err.message : strerror(-r));
        sd_bus_message_unref(reply);
        sd_bus_error_free(&err);
        return r < 0 ? r : 0;
}
