/* tls-alloc.c: the memory allocator of the static musl httpgate-tls
 * (Makefile, TLS_LINK=musl). GnuTLS allocates and frees some thousand
 * small blocks per handshake, its ASN.1 trees above all; musl's allocator
 * gives memory back to the kernel as soon as it can, and the unmapping,
 * TLB flushes and new page faults cost more than GnuTLS's own work there
 * (make bench, the TLS phases). One process serves one connection, so this
 * allocator never gives small blocks back: a freed block waits on the list
 * of its size class for the next allocation of that class, and what the
 * process holds is bounded by the connection's peak. Blocks above
 * BLOCK_MAX get a mapping of their own, unmapped when freed. One thread. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/mman.h>

#define ALIGN       16              /* what malloc promises on x86_64 */
#define CLASS_MIN   16              /* class k holds blocks of CLASS_MIN << k bytes */
#define CLASSES     13              /* up to BLOCK_MAX */
#define BLOCK_MAX   (CLASS_MIN << (CLASSES - 1))
#define ARENA_CHUNK (512u * 1024u)  /* small blocks are cut from mappings this big */
#define OWN_MAP     CLASSES         /* the block has a mapping of its own */
#define OFFSET      (CLASSES + 1)   /* aligned_alloc's: `size` bytes into a block */

/* Before each block, ALIGN bytes. */
struct head {
        size_t size;                /* OWN_MAP: the mapping's length; OFFSET: the offset */
        size_t cls;
};

static void *free_list[CLASSES];
static char *arena_next, *arena_end;

static struct head *head_of(void *p)
{
        return (struct head *)((char *)p - sizeof(struct head));
}

static size_t class_of(size_t n)
{
        size_t k = 0;

        while ((size_t)CLASS_MIN << k < n)
                k++;
        return k;
}

static void *map(size_t len)
{
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED) {
                errno = ENOMEM;
                return NULL;
        }
        return p;
}

/* malloc's body, for calloc too: the compiler would turn a malloc call
 * followed by a memset of zeros into a call of calloc, that is, itself. */
static void *take(size_t n)
{
        struct head *h;
        size_t k, len;

        if (n > BLOCK_MAX) {
                if (n > SIZE_MAX / 2)
                        return errno = ENOMEM, NULL;
                len = (n + sizeof(*h) + 4095) & ~(size_t)4095;
                if (!(h = map(len)))
                        return NULL;
                *h = (struct head){ .size = len, .cls = OWN_MAP };
                return h + 1;
        }
        k = class_of(n ? n : 1);
        if (free_list[k]) {
                void *p = free_list[k];
                free_list[k] = *(void **)p;
                return p;
        }
        len = sizeof(*h) + ((size_t)CLASS_MIN << k);
        if ((size_t)(arena_end - arena_next) < len) {
                if (!(arena_next = map(ARENA_CHUNK)))
                        return arena_end = NULL, NULL;
                arena_end = arena_next + ARENA_CHUNK;
        }
        h = (struct head *)arena_next;
        arena_next += len;
        *h = (struct head){ .size = 0, .cls = k };
        return h + 1;
}

void *malloc(size_t n)
{
        return take(n);
}

void free(void *p)
{
        struct head *h;

        if (!p)
                return;
        h = head_of(p);
        if (h->cls == OFFSET) {
                free((char *)p - h->size);
        } else if (h->cls == OWN_MAP) {
                munmap(h, h->size);
        } else {
                *(void **)p = free_list[h->cls];
                free_list[h->cls] = p;
        }
}

size_t malloc_usable_size(void *p)
{
        struct head *h;

        if (!p)
                return 0;
        h = head_of(p);
        if (h->cls == OFFSET)
                return malloc_usable_size((char *)p - h->size) - h->size;
        if (h->cls == OWN_MAP)
                return h->size - sizeof(*h);
        return (size_t)CLASS_MIN << h->cls;
}

void *calloc(size_t a, size_t b)
{
        void *p;

        if (b && a > SIZE_MAX / b)
                return errno = ENOMEM, NULL;
        if ((p = take(a * b)))
                memset(p, 0, a * b);
        return p;
}

void *realloc(void *p, size_t n)
{
        size_t have = malloc_usable_size(p);
        void *q;

        if (p && n <= have)
                return p;
        if (!(q = malloc(n)))
                return NULL;
        if (p) {
                memcpy(q, p, have);
                free(p);
        }
        return q;
}

void *aligned_alloc(size_t align, size_t n)
{
        char *raw, *p;

        if (align <= ALIGN)
                return malloc(n);
        if (align & (align - 1))
                return errno = EINVAL, NULL;
        if (n > SIZE_MAX - align - sizeof(struct head) || !(raw = malloc(n + align + sizeof(struct head))))
                return errno = ENOMEM, NULL;
        p = (char *)(((uintptr_t)raw + sizeof(struct head) + align - 1) & ~(uintptr_t)(align - 1));
        *head_of(p) = (struct head){ .size = (size_t)(p - raw), .cls = OFFSET };
        return p;
}

int posix_memalign(void **res, size_t align, size_t n)
{
        void *p;

        if (align < sizeof(void *) || (align & (align - 1)))
                return EINVAL;
        if (!(p = aligned_alloc(align, n)))
                return ENOMEM;
        *res = p;
        return 0;
}

void *memalign(size_t align, size_t n)
{
        return aligned_alloc(align, n);
}
