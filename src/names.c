/* names.c: the names file, read as httpGate reads it, into an immutable
 * table. Owns parsing, key lookup and resolving an entry's user; routing is
 * in route.c and starting apps in backend.c/spawn.c.
 *
 * Line:  key[/prefix] port user dir log command...   (port > 0)
 *        key[/prefix] 0 URL                           (redirect)
 * Tokens are separated by spaces or tabs; "#" starts a comment line; a "^"
 * token is empty; a "^" inside a command token stands for a space. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpgate.h"

#define NAMES_FILE_MAX (256u << 20) /* bytes; far above 100 000 entries */

static char *next_token(char **p)
{
        char *s = *p, *t;

        s += strspn(s, " \t");
        if (*s == '\0')
                return NULL;
        t = s + strcspn(s, " \t");
        if (*t != '\0')
                *t++ = '\0';
        *p = t;
        return s;
}

/* A "^" token is empty; inside a command token "^" stands for a space. */
static char *caret(char *tok, bool spaces)
{
        if (strcmp(tok, "^") == 0)
                return tok + 1;
        if (spaces)
                for (char *c = tok; (c = strchr(c, '^')); c++)
                        *c = ' ';
        return tok;
}

static int parse_line(char *line, unsigned lineno, struct name_entry *e, char ***argv_store,
                      const char **problem)
{
        char *key, *port, *tok, *p = line;
        uint64_t v;
        size_t argc = 0;
        char *args[NAMES_ARGS_MAX + 1];

        memset(e, 0, sizeof(*e));
        e->line = lineno;
        key = next_token(&p);
        port = next_token(&p);
        if (!port)
                return *problem = "missing port", -EINVAL;
        if (parse_uint_str(port, 65535, &v) < 0)
                return *problem = "port is not a number from 0 to 65535", -EINVAL;
        e->port = (unsigned)v;
        e->key = key;
        if ((tok = strchr(key, '/'))) {
                *tok++ = '\0';
                e->prefix = tok;
        }
        if (*e->key == '\0')
                return *problem = "empty key", -EINVAL;
        if (e->port == 0) {
                if (!(e->redirect = next_token(&p)))
                        return *problem = "port 0 needs a URL to redirect to", -EINVAL;
                if (next_token(&p))
                        return *problem = "port 0 takes only a URL after it", -EINVAL;
                return 0;
        }
        e->user = next_token(&p);
        e->dir = next_token(&p);
        e->log = next_token(&p);
        if (!e->user || !e->dir || !e->log)
                return *problem = "needs user, directory, log and command", -EINVAL;
        if (strcmp(e->user, "^") == 0 || strcmp(e->dir, "^") == 0)
                return *problem = "user and directory cannot be empty", -EINVAL;
        if (e->dir[0] != '/')
                return *problem = "directory must be an absolute path", -EINVAL;
        e->log = strcmp(e->log, "^") == 0 ? NULL : e->log;
        while ((tok = next_token(&p))) {
                if (argc == NAMES_ARGS_MAX)
                        return *problem = "too many command arguments", -E2BIG;
                args[argc++] = caret(tok, true);
        }
        if (argc == 0 || args[0][0] == '\0')
                return *problem = "missing command", -EINVAL;
        args[argc] = NULL;
        e->argv = malloc((argc + 1) * sizeof(char *));
        if (!e->argv)
                return *problem = "out of memory", -ENOMEM;
        memcpy(e->argv, args, (argc + 1) * sizeof(char *));
        *argv_store = e->argv;
        return 0;
}

int names_parse(char *text, size_t len, struct names *ret, names_report_fn *report, void *data)
{
        size_t cap = 16, n = 0;
        unsigned lineno = 0, errors = 0;
        struct name_entry *v = malloc(cap * sizeof(*v));
        char *line = text, *end = text + len;

        if (!v)
                return -ENOMEM;
        while (line < end) {
                char *nl = memchr(line, '\n', (size_t)(end - line));
                char *stop = nl ? nl : end;
                const char *problem = NULL;
                char **argv = NULL;

                lineno++;
                char *eol = stop;
                *stop = '\0';
                if (eol > line && eol[-1] == '\r')
                        *--eol = '\0'; /* CRLF files work too */
                line += strspn(line, " \t");
                if (*line != '\0' && *line != '#') {
                        if (n == cap) {
                                struct name_entry *w = realloc(v, 2 * cap * sizeof(*v));
                                if (!w) {
                                        free(v);
                                        return -ENOMEM;
                                }
                                v = w, cap *= 2;
                        }
                        if ((size_t)(eol - line) >= NAMES_LINE_MAX)
                                problem = "line longer than 4095 bytes";
                        else if (memchr(line, '\0', (size_t)(eol - line)))
                                problem = "NUL byte in line";
                        else if (parse_line(line, lineno, &v[n], &argv, &problem) == 0)
                                n++;
                        if (problem) {
                                errors++;
                                free(argv);
                                if (report)
                                        report(lineno, problem, data);
                        }
                }
                line = stop + 1;
        }
        *ret = (struct names){ .v = v, .n = n, .text = text, .errors = errors, .fd = -1 };
        return 0;
}

static int load_fd(int fd, const struct stat *st, const char *path, bool index, struct names *ret,
                   names_report_fn *report, void *data);

static int open_names(const char *path, int *fd, struct stat *st)
{
        *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block the gate */
        if (*fd < 0)
                return -errno;
        if (fstat(*fd, st) < 0 || !S_ISREG(st->st_mode) || (uint64_t)st->st_size > NAMES_FILE_MAX) {
                int r = S_ISREG(st->st_mode) ? -EFBIG : -EINVAL;
                close(*fd);
                return r;
        }
        return 0;
}

int names_load(const char *path, struct names *ret, names_report_fn *report, void *data)
{
        struct stat st;
        int fd, r = open_names(path, &fd, &st);

        if (r < 0)
                return r;
        r = load_fd(fd, &st, path, false, ret, report, data);
        close(fd);
        return r;
}

int names_open(const char *path, struct names *ret, names_report_fn *report, void *data)
{
        struct stat st;
        int fd, r = open_names(path, &fd, &st);

        if (r < 0)
                return r;
        if ((uint64_t)st.st_size >= NAMES_INDEX_MIN && index_open(path, &st, &ret->index) == 0) {
                ret->v = NULL, ret->n = 0, ret->text = NULL, ret->errors = 0, ret->cached = NULL;
                ret->fd = fd;
                return 0;
        }
        r = load_fd(fd, &st, path, (uint64_t)st.st_size >= NAMES_INDEX_MIN, ret, report, data);
        close(fd);
        return r;
}

static int load_fd(int fd, const struct stat *stp, const char *path, bool index, struct names *ret,
                   names_report_fn *report, void *data)
{
        const struct stat st = *stp;
        char *text;
        size_t len = 0;
        int r;

        text = malloc((size_t)st.st_size + 1);
        if (!text) {
                close(fd);
                return -ENOMEM;
        }
        while (len < (size_t)st.st_size) {
                ssize_t k = read(fd, text + len, (size_t)st.st_size - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break; /* the file shrank while we read: use what we have */
                len += (size_t)k;
        }
        text[len] = '\0';
        r = names_parse(text, len, ret, report, data);
        if (r < 0) {
                free(text);
                return r;
        }
        if (index && len == (size_t)st.st_size)
                (void)index_write(path, &st, ret, text); /* without it, the next one parses again */
        return 0;
}

/* An entry read through the index: its line, parsed alone. */
struct names_cached {
        struct names_cached *next;
        struct name_entry e;
        char text[];
};

static const struct name_entry *parse_at(const struct names *n, struct index_slot at)
{
        struct names_cached *c = malloc(sizeof(*c) + NAMES_LINE_MAX + 1);
        const char *problem = NULL;
        char **argv = NULL;
        ssize_t len = c ? pread(n->fd, c->text, NAMES_LINE_MAX, at.off) : -1;
        char *nl;

        if (len <= 0) {
                free(c);
                return NULL;
        }
        c->text[len] = '\0';
        if ((nl = memchr(c->text, '\n', (size_t)len)))
                *nl = '\0';
        if (nl > c->text && nl[-1] == '\r')
                nl[-1] = '\0';
        if (parse_line(c->text, at.line, &c->e, &argv, &problem) < 0) {
                free(argv);
                free(c);
                return NULL; /* the index is stale after all: treat as absent */
        }
        c->next = n->cached;
        ((struct names *)n)->cached = c; /* a cache: the table stays the same to readers */
        return &c->e;
}

void names_free(struct names *n)
{
        for (size_t i = 0; i < n->n; i++)
                free(n->v[i].argv);
        while (n->cached) {
                struct names_cached *c = n->cached;
                n->cached = c->next;
                free(c->e.argv);
                free(c);
        }
        free(n->v);
        free(n->text);
        index_close(&n->index);
        if (n->fd >= 0)
                close(n->fd);
        *n = (struct names){ .fd = -1 };
}

static bool key_is(const struct name_entry *e, const char *key, size_t len)
{
        return strncasecmp(e->key, key, len) == 0 && e->key[len] == '\0';
}

const struct name_entry *names_find(const struct names *n, const char *key, size_t len)
{
        struct index_slot at[8];
        int k;

        if (n->index.map) {
                for (struct names_cached *c = n->cached; c; c = c->next)
                        if (key_is(&c->e, key, len))
                                return &c->e;
                k = index_lookup(&n->index, key, len, at, 8);
                for (int i = 0; i < k; i++) {
                        const struct name_entry *e = parse_at(n, at[i]);
                        if (e && key_is(e, key, len))
                                return e;
                }
                return NULL;
        }
        for (size_t i = 0; i < n->n; i++)
                if (key_is(&n->v[i], key, len))
                        return &n->v[i];
        return NULL;
}

const struct name_entry *names_default(const struct names *n)
{
        struct index_slot at;

        if (n->index.map)
                return index_default(&n->index, &at) ? parse_at(n, at) : NULL;
        if (n->n == 1)
                return &n->v[0];
        return names_find(n, "@", 1);
}

int names_dirs(const struct names *n, const char **out, unsigned max)
{
        unsigned count = 0;

        for (size_t k = 0; k < n->n; k++) {
                const char *d = n->v[k].dir;
                unsigned i = 0;
                if (!d || n->v[k].port == 0)
                        continue;
                while (i < count && strcmp(out[i], d) != 0)
                        i++;
                if (i < count)
                        continue;
                if (count == max)
                        return -E2BIG;
                out[count++] = d;
        }
        return (int)count;
}

int names_user(const struct name_entry *e, uid_t *uid, gid_t *gid, char *home, size_t home_size)
{
        struct passwd pw, *res = NULL;
        char buf[4096];

        if (getpwnam_r(e->user, &pw, buf, sizeof(buf), &res) != 0 || !res)
                return -ENOENT;
        if (pw.pw_uid == 0 || pw.pw_gid == 0)
                return -EPERM;
        *uid = pw.pw_uid;
        *gid = pw.pw_gid;
        if (home)
                snprintf(home, home_size, "%s", pw.pw_dir);
        return 0;
}
