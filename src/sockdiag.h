/* sockdiag.h: which TCP ports a set of cgroups listens on, and how many
 * connections are open to them, asked of the kernel through
 * NETLINK_SOCK_DIAG. For the idle check: an app is one systemd unit, whose
 * processes (PicoLisp session children included) live in one cgroup v2
 * directory and the directories below it. Sees only the caller's network
 * namespace. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SOCKDIAG_PORTS_MAX 64   /* listening ports of one app that are counted */

struct sockdiag_app {
        const uint64_t *cgroups;     /* cgroup v2 ids of the unit's cgroup and its descendants */
        size_t n_cgroups;
        uint16_t ports[SOCKDIAG_PORTS_MAX]; /* out: TCP ports it listens on (IPv4 and IPv6, deduplicated) */
        size_t n_ports;
        bool ports_full;             /* out: it listens on more ports; those were not counted */
        unsigned connections;        /* out: TCP sockets on those local ports in a state a served
                                      * connection can be in: ESTABLISHED, SYN_RECV, FIN_WAIT1/2,
                                      * CLOSE_WAIT, LAST_ACK, CLOSING (not LISTEN, TIME_WAIT, CLOSE) */
};

/* Fills ports, ports_full and connections of each app from two dumps
 * (listening sockets, then the others), for AF_INET and AF_INET6. A
 * listener counts for an app when its cgroup id is one of the app's; a
 * connection counts by its local port alone. Returns 0 or negative errno;
 * after an error the outputs are incomplete. */
int sockdiag_scan(struct sockdiag_app *apps, size_t n_apps);

/* The cgroup v2 id of a cgroup directory (its inode number, as the kernel
 * reports it in INET_DIAG_CGROUP_ID on 64-bit machines), then those of every
 * directory below it, into ids (at most max). Returns the count, or negative
 * errno: -EMEDIUMTYPE when path is not on cgroup2, -ENOBUFS when more than
 * max directories, -ELOOP when deeper than the walk goes. Directories that
 * vanish during the walk are skipped. path is e.g.
 * /sys/fs/cgroup/system.slice/x.service. */
int sockdiag_cgroup_ids(const char *path, uint64_t *ids, size_t max);
