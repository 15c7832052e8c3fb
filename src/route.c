/* route.c: request target -> app entry | port | redirect | error, as
 * httpGate routes its first request (DESIGN.md "Routing"), and the rewritten
 * target. Owns no I/O; the names file is names.c's.
 *
 *   /1234/rest   port 1234 if >= 1024 and not denied        -> /rest
 *   /123/rest    below 1024: looked up as a key, else 403
 *   /app/rest    entry "app"                                 -> /prefix/rest or /rest
 *   /other       the "@" entry (or the only one), else the default port, else 404
 *
 * Deliberate differences from httpGate (httpgate.names(5) lists them): a
 * port above 65535, or with a sign ("+8080"), is a key, not a number; a
 * default entry's prefix is separated from the path by "/"; a names file with
 * several entries and no "@" has no default (httpGate used the first entry's
 * port). */
#include <errno.h>
#include <string.h>

#include "httpgate.h"

static void route_entry(const struct name_entry *e, struct route *r)
{
        if (e->port == 0) {
                r->kind = ROUTE_REDIRECT;
                r->entry = e;
                return;
        }
        r->kind = ROUTE_PORT;
        r->port = e->port;
        r->entry = e;
        r->prefix = e->prefix;
}

static void route_error(struct route *r, int status)
{
        r->kind = ROUTE_ERROR;
        r->status = status;
}

void route(const struct route_table *t, const char *target, size_t len, struct route *r)
{
        const struct names *names = t->names;
        const struct name_entry *e = NULL;
        size_t p = 1, q = 1; /* target[p..q) is the first path segment */
        uint64_t port;

        *r = (struct route){ .kind = ROUTE_ERROR, .status = 404 };
        if (len == 0 || target[0] != '/')
                return route_error(r, 400);
        while (q < len && target[q] != '/' && target[q] != '?')
                q++;

        if (parse_uint(target + p, q - p, 65535, &port) == 0) {
                r->explicit_ = true;
                r->rest_off = q;
                if (port < 1024) {
                        /* A privileged port can only be reached through a key. */
                        if (names && (e = names_find(names, target + p, q - p)))
                                return route_entry(e, r);
                        return route_error(r, 403);
                }
                if (options_port_denied(t->opt, (unsigned)port))
                        return route_error(r, 403);
                r->kind = ROUTE_PORT;
                r->port = (unsigned)port;
                return;
        }
        if (t->names_failed)
                return route_error(r, 503); /* said in the journal at start */
        if (names && q > p && (e = names_find(names, target + p, q - p))) {
                r->explicit_ = true;
                r->rest_off = q;
                return route_entry(e, r);
        }
        /* No key: the whole path goes to the default. */
        r->rest_off = p;
        if (names && (e = names_default(names))) {
                route_entry(e, r);
                r->slash = e->prefix && p < len && target[p] != '?' && target[p] != '/';
                return;
        }
        if (t->opt->default_port) {
                r->kind = ROUTE_PORT;
                r->port = t->opt->default_port;
                return;
        }
        route_error(r, 404);
}

/* "/" prefix rest, where a leading "/" of rest is dropped without a prefix,
 * exactly as httpGate writes it. */
int route_rewrite(const struct route *r, const char *target, size_t len, char *out, size_t size)
{
        size_t rest = r->rest_off, n = 0, plen = r->prefix ? strlen(r->prefix) : 0;

        if (!r->prefix && rest < len && target[rest] == '/')
                rest++;
        if (1 + plen + (r->slash ? 1 : 0) + (len - rest) > size)
                return -ENOBUFS;
        out[n++] = '/';
        memcpy(out + n, r->prefix ? r->prefix : "", plen);
        n += plen;
        if (r->slash)
                out[n++] = '/';
        memcpy(out + n, target + rest, len - rest);
        return (int)(n + len - rest);
}
