/* seccomp-gen.c: writes the gate's system call filter as a C array (the
 * build runs it once; seccomp.c includes what it prints). The allowed calls
 * are sorted by number and searched as a balanced tree, not a list: the
 * kernel runs a new filter once for every system call number when it is
 * installed (to cache the constant answers), and every call of the gate
 * runs it again, so its depth is what each connection pays (a list of 110
 * calls cost 200 µs to install, the tree about 10). Build tooling only:
 * never part of the gate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

enum kind { ALLOW, SOCKET, MEMORY, IOCTL };
struct call {
        const char *name;
        long nr;
        enum kind kind;
};

#define A(x) { #x, SYS_##x, ALLOW }
static struct call calls[] = {
        /* the relay */
        A(splice), A(read), A(write), A(ppoll), A(recvfrom), A(sendto), A(recvmsg), A(sendmsg), A(readv), A(writev),
        A(close), A(shutdown), A(fcntl), A(clock_gettime), A(gettimeofday), A(clock_nanosleep), A(nanosleep),
        A(getrandom), A(pselect6), A(epoll_create1), A(epoll_ctl), A(epoll_pwait),
        /* sockets to the app, the launcher and the journal; never a listener */
        { "socket", SYS_socket, SOCKET }, A(connect), A(setsockopt), A(getsockopt), A(getsockname), A(getpeername),
        /* memory, never executable */
        { "mmap", SYS_mmap, MEMORY }, { "mprotect", SYS_mprotect, MEMORY }, A(munmap), A(mremap), A(madvise), A(brk),
        { "ioctl", SYS_ioctl, IOCTL },
        /* files: Landlock decides which */
        A(openat), A(fstat), A(newfstatat), A(statx), A(lseek), A(pread64), A(getdents64), A(faccessat),
        A(readlinkat), A(flock), A(fsync), A(fdatasync), A(ftruncate), A(linkat), A(unlinkat), A(renameat),
        A(mkdirat), A(pipe2), A(dup), A(dup3), A(utimensat),
#ifdef SYS_faccessat2
        A(faccessat2),
#endif
#ifdef SYS_renameat2
        A(renameat2),
#endif
#ifdef SYS_open /* x86_64 keeps these beside their *at forms */
        A(open), A(stat), A(lstat), A(access), A(readlink), A(link), A(unlink), A(rename), A(mkdir), A(pipe),
        A(dup2), A(select), A(time), A(getrlimit), A(poll),
#endif
        /* the process itself */
        A(rt_sigaction), A(rt_sigprocmask), A(rt_sigreturn), A(sigaltstack), A(restart_syscall), A(futex),
        A(sched_yield), A(getpid), A(gettid), A(getuid), A(geteuid), A(getgid), A(getegid), A(getrusage), A(uname),
        A(getcwd), A(exit), A(exit_group),
};
#define N_CALLS (sizeof(calls) / sizeof(calls[0]))

struct insn {
        char code[48];    /* C expression of the opcode */
        long k;
        int jt, jf;
        enum kind ja;     /* ALLOW: none; else a jump to that block */
        const char *note;
};

static struct insn prog[1024];
static int n_prog;

static int emit(const char *code, long k, int jt, int jf, const char *note)
{
        if (n_prog == (int)(sizeof(prog) / sizeof(prog[0])) || jt > 255 || jf > 255) {
                fprintf(stderr, "seccomp-gen: program too large\n");
                exit(1);
        }
        prog[n_prog] = (struct insn){ .k = k, .jt = jt, .jf = jf, .note = note };
        snprintf(prog[n_prog].code, sizeof(prog[0].code), "%s", code);
        return n_prog++;
}

static int by_nr(const void *a, const void *b)
{
        const struct call *x = a, *y = b;
        return x->nr < y->nr ? -1 : x->nr > y->nr;
}

/* calls[lo..hi): all paths end in a return or a jump to a block. */
static void tree(size_t lo, size_t hi)
{
        if (hi - lo <= 3) {
                for (size_t i = lo; i < hi; i++) {
                        emit("BPF_JMP | BPF_JEQ | BPF_K", calls[i].nr, 0, 1, calls[i].name);
                        if (calls[i].kind == ALLOW)
                                emit("BPF_RET | BPF_K", -1, 0, 0, "RET_ALLOW");
                        else
                                prog[emit("BPF_JMP | BPF_JA", 0, 0, 0, NULL)].ja = calls[i].kind;
                }
                emit("BPF_RET | BPF_K", -2, 0, 0, "RET_ERRNO(EPERM)");
                return;
        }
        size_t mid = lo + (hi - lo) / 2;
        int at = emit("BPF_JMP | BPF_JGE | BPF_K", calls[mid].nr, 0, 0, calls[mid].name);
        tree(lo, mid);
        prog[at].jt = n_prog - at - 1;
        if (prog[at].jt > 255) {
                fprintf(stderr, "seccomp-gen: jump too far\n");
                exit(1);
        }
        tree(mid, hi);
}

struct value {
        long k;
        const char *name;
};

/* A block that allows the call when the argument is one of three values,
 * else returns deny. Returns where it starts. */
static const char *const arg_lo[] = { "ARG_LO(0)", "ARG_LO(1)", "ARG_LO(2)" }; /* k = -10 - i */

static int one_of(int arg, const struct value v[3], long deny)
{
        int at = emit("BPF_LD | BPF_W | BPF_ABS", -10 - arg, 0, 0, arg_lo[arg]);

        for (int i = 0; i < 3; i++)
                emit("BPF_JMP | BPF_JEQ | BPF_K", v[i].k, 3 - i, 0, v[i].name);
        emit("BPF_RET | BPF_K", deny, 0, 0, NULL);
        emit("BPF_RET | BPF_K", -1, 0, 0, NULL);
        return at;
}

static const char *k_text(long k, char *buf, size_t size)
{
        if (k == -1)
                return "RET_ALLOW";
        if (k == -2)
                return "RET_ERRNO(EPERM)";
        if (k == -3)
                return "RET_ERRNO(EAFNOSUPPORT)";
        snprintf(buf, size, "%ld", k);
        return buf;
}

int main(void)
{
        int block[4] = { 0 };
        char buf[32];

        qsort(calls, N_CALLS, sizeof(calls[0]), by_nr);
        tree(0, N_CALLS);
        /* socket(): AF_UNIX, AF_INET, AF_INET6 only */
        block[SOCKET] = one_of(0, (const struct value[]){ { 1, "AF_UNIX" }, { 2, "AF_INET" },
                                                                     { 10, "AF_INET6" } }, -3);
        /* mmap(), mprotect(): never PROT_EXEC */
        block[MEMORY] = emit("BPF_LD | BPF_W | BPF_ABS", -12, 0, 0, arg_lo[2]);
        emit("BPF_JMP | BPF_JSET | BPF_K", 4, 0, 1, "PROT_EXEC");
        emit("BPF_RET | BPF_K", -2, 0, 0, NULL);
        emit("BPF_RET | BPF_K", -1, 0, 0, NULL);
        /* ioctl(): FIONREAD, FIONBIO, TCGETS only (no terminal input) */
        block[IOCTL] = one_of(1, (const struct value[]){ { 0x541b, "FIONREAD" }, { 0x5421, "FIONBIO" },
                                                                    { 0x5401, "TCGETS" } }, -2);

        printf("/* Made by src/seccomp-gen.c: %zu calls allowed, %d instructions. */\n", N_CALLS, n_prog);
        for (int i = 0; i < n_prog; i++) {
                const struct insn *p = &prog[i];
                long k = p->ja ? block[p->ja] - i - 1 : p->k;
                const char *kt = p->k <= -10 ? p->note : k_text(k, buf, sizeof(buf));
                printf("        { %s, %d, %d, %s },%s%s%s\n", p->code, p->jt, p->jf, kt,
                       p->note && p->k > -10 ? " /* " : "", p->note && p->k > -10 ? p->note : "",
                       p->note && p->k > -10 ? " */" : "");
        }
        return 0;
}
