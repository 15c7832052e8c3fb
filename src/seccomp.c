/* seccomp.c: the gate's system call filter, a BPF program fixed at compile
 * time (no libseccomp, nothing built per connection): the calls a
 * sandboxed instance makes, and EPERM for everything else, among them
 * execve, fork, ptrace, kill, bind, listen, mount, unshare, setuid and
 * mmap of executable memory. sandbox.c installs it last. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "httpgate.h"

/* linux/filter.h, linux/seccomp.h and linux/audit.h, written out (musl has
 * no kernel headers). */
struct sock_filter {
        uint16_t code;
        uint8_t jt, jf;
        uint32_t k;
};
struct sock_fprog {
        unsigned short len;
        const struct sock_filter *filter;
};
struct seccomp_data {
        int nr;
        uint32_t arch;
        uint64_t instruction_pointer;
        uint64_t args[6];
};
#define BPF_LD  0x00
#define BPF_JMP 0x05
#define BPF_RET 0x06
#define BPF_W   0x00
#define BPF_ABS 0x20
#define BPF_JEQ 0x10
#define BPF_JGE 0x30
#define BPF_JSET 0x40
#define BPF_K   0x00
#define STMT(code, k)          { (uint16_t)(code), 0, 0, (uint32_t)(k) }
#define JUMP(code, k, jt, jf)  { (uint16_t)(code), (jt), (jf), (uint32_t)(k) }
#define SECCOMP_MODE_FILTER    2
#define RET_ALLOW              0x7fff0000u
#define RET_ERRNO(e)           (0x00050000u | ((e) & 0xffff))
#define RET_KILL_PROCESS       0x80000000u

#if defined(__x86_64__)
#define AUDIT_ARCH 0xc000003eu
#define X32_BIT    0x40000000u  /* x32 calls on x86_64: refused */
#elif defined(__aarch64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define AUDIT_ARCH 0xc00000b7u
#else
#define AUDIT_ARCH 0 /* no filter for this architecture: sandbox_enter says so */
#endif

#define NR       offsetof(struct seccomp_data, nr)
#define ARCH     offsetof(struct seccomp_data, arch)
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i)) /* little endian */

/* Each allowed call is two instructions, so that the table reads as a list. */
#define ALLOW(nr) JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), STMT(BPF_RET | BPF_K, RET_ALLOW)

#if AUDIT_ARCH
static const struct sock_filter filter[] = {
        STMT(BPF_LD | BPF_W | BPF_ABS, ARCH),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        STMT(BPF_RET | BPF_K, RET_KILL_PROCESS), /* another ABI: no way around the list */
        STMT(BPF_LD | BPF_W | BPF_ABS, NR),
#ifdef X32_BIT
        JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_BIT, 0, 1),
        STMT(BPF_RET | BPF_K, RET_ERRNO(EPERM)),
#endif
        /* The relay's hot path first. */
        ALLOW(SYS_splice), ALLOW(SYS_read), ALLOW(SYS_write), ALLOW(SYS_ppoll),
#ifdef SYS_poll
        ALLOW(SYS_poll),
#endif
        ALLOW(SYS_recvfrom), ALLOW(SYS_sendto), ALLOW(SYS_recvmsg), ALLOW(SYS_sendmsg), ALLOW(SYS_readv),
        ALLOW(SYS_writev), ALLOW(SYS_close), ALLOW(SYS_shutdown), ALLOW(SYS_fcntl), ALLOW(SYS_clock_gettime),
        ALLOW(SYS_gettimeofday), ALLOW(SYS_clock_nanosleep), ALLOW(SYS_nanosleep), ALLOW(SYS_getrandom),
        /* Sockets to the app, the launcher and the journal; never a listener. */
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 6),
        STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 3, 0),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 2, 0),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 1, 0),
        STMT(BPF_RET | BPF_K, RET_ERRNO(EAFNOSUPPORT)),
        STMT(BPF_RET | BPF_K, RET_ALLOW),
        ALLOW(SYS_connect), ALLOW(SYS_setsockopt), ALLOW(SYS_getsockopt), ALLOW(SYS_getsockname),
        ALLOW(SYS_getpeername),
        /* Memory, but never executable: no code arrives after start. */
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 1, 0),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 0, 4),
        STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)),
        JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        STMT(BPF_RET | BPF_K, RET_ERRNO(EPERM)),
        STMT(BPF_RET | BPF_K, RET_ALLOW),
        ALLOW(SYS_munmap), ALLOW(SYS_mremap), ALLOW(SYS_madvise), ALLOW(SYS_brk),
        /* ioctl: only asking about a descriptor, never a terminal's input. */
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 6),
        STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1)),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, FIONREAD, 3, 0),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, FIONBIO, 2, 0),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, TCGETS, 1, 0),
        STMT(BPF_RET | BPF_K, RET_ERRNO(EPERM)),
        STMT(BPF_RET | BPF_K, RET_ALLOW),
        /* Files (Landlock decides which). */
        ALLOW(SYS_openat), ALLOW(SYS_fstat), ALLOW(SYS_newfstatat), ALLOW(SYS_statx), ALLOW(SYS_lseek),
        ALLOW(SYS_pread64), ALLOW(SYS_getdents64), ALLOW(SYS_faccessat), ALLOW(SYS_readlinkat), ALLOW(SYS_flock),
        ALLOW(SYS_fsync), ALLOW(SYS_fdatasync), ALLOW(SYS_ftruncate), ALLOW(SYS_linkat), ALLOW(SYS_unlinkat),
        ALLOW(SYS_renameat), ALLOW(SYS_mkdirat), ALLOW(SYS_pipe2), ALLOW(SYS_dup), ALLOW(SYS_dup3),
#ifdef SYS_faccessat2
        ALLOW(SYS_faccessat2),
#endif
#ifdef SYS_renameat2
        ALLOW(SYS_renameat2),
#endif
#ifdef SYS_open /* the calls x86_64 still has beside their *at forms */
        ALLOW(SYS_open), ALLOW(SYS_stat), ALLOW(SYS_lstat), ALLOW(SYS_access), ALLOW(SYS_readlink),
        ALLOW(SYS_link), ALLOW(SYS_unlink), ALLOW(SYS_rename), ALLOW(SYS_mkdir), ALLOW(SYS_pipe),
        ALLOW(SYS_dup2), ALLOW(SYS_select), ALLOW(SYS_time), ALLOW(SYS_getrlimit),
#endif
        ALLOW(SYS_pselect6), ALLOW(SYS_epoll_create1), ALLOW(SYS_epoll_ctl), ALLOW(SYS_epoll_pwait),
        /* The process itself. */
        ALLOW(SYS_rt_sigaction), ALLOW(SYS_rt_sigprocmask), ALLOW(SYS_rt_sigreturn), ALLOW(SYS_sigaltstack),
        ALLOW(SYS_restart_syscall), ALLOW(SYS_futex), ALLOW(SYS_sched_yield), ALLOW(SYS_getpid),
        ALLOW(SYS_gettid), ALLOW(SYS_getuid), ALLOW(SYS_geteuid), ALLOW(SYS_getgid), ALLOW(SYS_getegid),
        ALLOW(SYS_getrusage), ALLOW(SYS_uname), ALLOW(SYS_getcwd), ALLOW(SYS_exit), ALLOW(SYS_exit_group),
        STMT(BPF_RET | BPF_K, RET_ERRNO(EPERM)),
};
#endif

int seccomp_filter_install(void)
{
#if AUDIT_ARCH
        struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };

        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
                return -errno;
        return 0;
#else
        return -ENOTSUP;
#endif
}
