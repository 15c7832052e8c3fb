/* index.c: a lookup index kept beside a big names file, so that a
 * connection's cost does not grow with the file. Every connection is a new
 * process and would otherwise read and parse the whole file. The index maps
 * a key's hash to the offset and number of its line; it names the file's
 * identity (device, inode, size, mtime, ctime), so an edit makes it stale and
 * the next connection rebuilds it: no step for the admin. Small files are
 * parsed whole (names.c); this file only builds, checks and probes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpgate.h"

#define INDEX_MAGIC "HGNAMES2"
#define INDEX_NONE  UINT32_MAX

struct index_header {
        char magic[8];
        uint64_t dev, ino, size;
        int64_t mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
        uint32_t slots;          /* a power of two, at least twice the entries */
        uint32_t entries;
        struct index_slot dflt;  /* "@" or the only entry; off INDEX_NONE: none */
        uint32_t dirs;           /* distinct entry directories after the slots; INDEX_NONE: too many */
        uint32_t dirs_bytes;     /* ... NUL-terminated, one after the other */
};

static uint32_t key_hash(const char *k, size_t len)
{
        uint32_t h = 2166136261u; /* FNV-1a over the lower-cased key */

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)k[i];
                h = (h ^ (c >= 'A' && c <= 'Z' ? c + 32u : c)) * 16777619u;
        }
        return h;
}

static bool same_file(const struct index_header *h, const struct stat *st)
{
        return h->dev == (uint64_t)st->st_dev && h->ino == (uint64_t)st->st_ino && h->size == (uint64_t)st->st_size &&
               h->mtime_sec == st->st_mtim.tv_sec && h->mtime_nsec == st->st_mtim.tv_nsec &&
               h->ctime_sec == st->st_ctim.tv_sec && h->ctime_nsec == st->st_ctim.tv_nsec;
}

/* DIR/names-<hash of the path>.idx, DIR the cache or runtime directory. */
static void index_path(const char *names_path, char *out, size_t size)
{
        const char *dir = cache_dir();
        uint32_t h = key_hash(names_path, strlen(names_path));

        if (strcmp(dir, CACHE_DIR_DEFAULT) == 0)
                (void)mkdir(dir, 0755); /* there already, or the open says why */
        snprintf(out, size, "%s/names-%08x.idx", dir, h);
}

int index_open(const char *names_path, const struct stat *st, struct names_index *ret)
{
        char path[4096];
        struct stat ist;
        void *map;
        int fd;

        index_path(names_path, path, sizeof(path));
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &ist) < 0 || (size_t)ist.st_size < sizeof(struct index_header)) {
                close(fd);
                return -ESTALE;
        }
        map = mmap(NULL, (size_t)ist.st_size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (map == MAP_FAILED)
                return -errno;
        const struct index_header *h = map;
        if (memcmp(h->magic, INDEX_MAGIC, 8) != 0 || !same_file(h, st) || h->slots == 0 ||
            (h->slots & (h->slots - 1)) != 0 ||
            sizeof(*h) + (uint64_t)h->slots * sizeof(struct index_slot) + h->dirs_bytes != (uint64_t)ist.st_size ||
            (h->dirs_bytes && ((const char *)map)[ist.st_size - 1] != '\0')) {
                munmap(map, (size_t)ist.st_size);
                return -ESTALE;
        }
        *ret = (struct names_index){ .map = map, .len = (size_t)ist.st_size };
        return 0;
}

void index_close(struct names_index *x)
{
        if (x->map)
                munmap(x->map, x->len);
        *x = (struct names_index){ 0 };
}

int index_lookup(const struct names_index *x, const char *key, size_t len, struct index_slot *out, int max)
{
        const struct index_header *h = x->map;
        const struct index_slot *s = (const void *)(h + 1);
        uint32_t hash = key_hash(key, len), mask = h->slots - 1;
        int n = 0;

        for (uint32_t i = hash & mask, probes = 0; probes < h->slots; i = (i + 1) & mask, probes++) {
                if (s[i].off == INDEX_NONE)
                        break;
                if (s[i].hash == hash && n < max)
                        out[n++] = s[i];
        }
        return n;
}

int index_dirs(const struct names_index *x, const char **first, size_t *bytes)
{
        const struct index_header *h = x->map;

        if (h->dirs == INDEX_NONE)
                return -E2BIG;
        *first = (const char *)(h + 1) + (size_t)h->slots * sizeof(struct index_slot);
        *bytes = h->dirs_bytes;
        return 0;
}

bool index_default(const struct names_index *x, struct index_slot *out)
{
        const struct index_header *h = x->map;

        *out = h->dflt;
        return h->dflt.off != INDEX_NONE;
}

/* The distinct directories of n's app entries, packed NUL-terminated into
 * a new buffer; *count is INDEX_NONE beyond INDEX_DIRS_MAX of them. */
static char *dir_list(const struct names *n, uint32_t *count, size_t *bytes)
{
        const char *seen[INDEX_DIRS_MAX];
        int k = names_dirs(n, seen, INDEX_DIRS_MAX);
        size_t len = 0;
        char *out;

        *count = k < 0 ? INDEX_NONE : (uint32_t)k, *bytes = 0;
        for (int i = 0; i < k; i++)
                len += strlen(seen[i]) + 1;
        if (k < 0 || !(out = malloc(len + 1)))
                return NULL;
        for (int i = 0; i < k; i++) {
                memcpy(out + *bytes, seen[i], strlen(seen[i]) + 1);
                *bytes += strlen(seen[i]) + 1;
        }
        return out;
}

/* Written aside and renamed into place: a reader sees the old index or the
 * new one, never half of one. Failure only costs speed. */
int index_write(const char *names_path, const struct stat *st, const struct names *n, const char *text_start)
{
        char path[4096], tmp[4200];
        struct index_header h = { .magic = INDEX_MAGIC };
        const struct name_entry *d = names_default(n);
        struct index_slot *s;
        size_t bytes, dirs_bytes;
        uint32_t slots = 16, dirs;
        char *dirs_text = dir_list(n, &dirs, &dirs_bytes);
        int fd, r = 0;

        while (slots < 2 * n->n + 1)
                slots *= 2;
        bytes = sizeof(h) + (size_t)slots * sizeof(*s);
        s = malloc((size_t)slots * sizeof(*s));
        if (!s || (dirs != INDEX_NONE && !dirs_text)) {
                free(s);
                free(dirs_text);
                return -ENOMEM;
        }
        for (uint32_t i = 0; i < slots; i++)
                s[i].off = INDEX_NONE;
        for (size_t k = 0; k < n->n; k++) {
                const struct name_entry *e = &n->v[k];
                uint32_t hash = key_hash(e->key, strlen(e->key)), i = hash & (slots - 1);
                bool dup = false;
                for (; s[i].off != INDEX_NONE; i = (i + 1) & (slots - 1))
                        dup |= s[i].hash == hash && strcasecmp(text_start + s[i].off, e->key) == 0;
                if (!dup) /* of duplicate keys, the first one wins */
                        s[i] = (struct index_slot){ .hash = hash, .off = (uint32_t)(e->key - text_start), .line = e->line };
        }
        h.dev = (uint64_t)st->st_dev, h.ino = (uint64_t)st->st_ino, h.size = (uint64_t)st->st_size;
        h.mtime_sec = st->st_mtim.tv_sec, h.mtime_nsec = st->st_mtim.tv_nsec;
        h.ctime_sec = st->st_ctim.tv_sec, h.ctime_nsec = st->st_ctim.tv_nsec;
        h.slots = slots;
        h.entries = (uint32_t)n->n;
        h.dflt = d ? (struct index_slot){ .hash = 0, .off = (uint32_t)(d->key - text_start), .line = d->line }
                   : (struct index_slot){ .off = INDEX_NONE };
        h.dirs = dirs;
        h.dirs_bytes = (uint32_t)dirs_bytes;

        index_path(names_path, path, sizeof(path));
        snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
                free(s);
                free(dirs_text);
                return -errno;
        }
        if (write(fd, &h, sizeof(h)) != (ssize_t)sizeof(h) ||
            write(fd, s, bytes - sizeof(h)) != (ssize_t)(bytes - sizeof(h)) ||
            (dirs_bytes && write(fd, dirs_text, dirs_bytes) != (ssize_t)dirs_bytes) || rename(tmp, path) < 0) {
                r = -errno ? -errno : -EIO;
                unlink(tmp);
        }
        close(fd);
        free(s);
        free(dirs_text);
        return r;
}
