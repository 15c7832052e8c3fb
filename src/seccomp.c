/* seccomp.c: the gate's system call filter, a BPF program fixed at compile
 * time (src/seccomp-gen.c writes its body when the gate is built; no
 * libseccomp, nothing built per connection): the calls a sandboxed
 * instance makes, and EPERM for everything else, among them execve, fork,
 * ptrace, kill, bind, listen, mount, unshare, setuid and mmap of executable
 * memory. sandbox.c installs it last. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>

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
#define BPF_JA  0x00
#define BPF_K   0x00
#define STMT(code, k)          { (uint16_t)(code), 0, 0, (uint32_t)(k) }
#define JUMP(code, k, jt, jf)  { (uint16_t)(code), (jt), (jf), (uint32_t)(k) }
#define SECCOMP_MODE_FILTER    2
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i)) /* little endian */
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

#if AUDIT_ARCH
static const struct sock_filter filter[] = {
        STMT(BPF_LD | BPF_W | BPF_ABS, ARCH),
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        STMT(BPF_RET | BPF_K, RET_KILL_PROCESS), /* another ABI: no way around the tree */
        STMT(BPF_LD | BPF_W | BPF_ABS, NR),
#ifdef X32_BIT
        JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_BIT, 0, 1),
        STMT(BPF_RET | BPF_K, RET_ERRNO(EPERM)),
#endif
/* The allowed calls as a search tree, and the argument checks of socket,
 * mmap, mprotect and ioctl (src/seccomp-gen.c has the list). */
#include "../build/seccomp-filter.h"
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
