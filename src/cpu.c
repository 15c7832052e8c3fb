/* cpu.c: where one instance's CPU time goes, phase by phase: the work
 * before the gate's first instruction (the fork's child, exec, loading,
 * libc's start), the libraries' initializers (GnuTLS's, in httpgate-tls),
 * and the gate's own phases, which the TLS code marks. The journal's end
 * entry and the stderr line carry them; make bench adds them up. */
#include <time.h>

#include "httpgate.h"

struct cpu_phases cpu_phases;

uint64_t cpu_usec(void)
{
        struct timespec ts;

        if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
                return 0;
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The first initializer of a static program (priority 101 sorts before the
 * libraries' own): what the process used until here is the exec's. With a
 * shared GnuTLS (TLS_LINK=shared) its initializers run earlier and count as
 * the exec's too. */
__attribute__((constructor(101))) static void at_first_initializer(void)
{
        cpu_phases.exec = cpu_usec();
}

void cpu_at_main(void)
{
        uint64_t now = cpu_usec();

        cpu_phases.init = now > cpu_phases.exec ? now - cpu_phases.exec : 0;
        cpu_phases.main = now;
}
