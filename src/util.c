/* util.c: the one bounded number parser (every number from a client, a
 * names file or the command line goes through here), the one way bytes
 * from outside are made printable for a log, and where the gate's own
 * directories are. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpgate.h"

int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *ret)
{
        uint64_t v = 0;

        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                unsigned d = (unsigned char)s[i] - '0';

                if (d > 9)
                        return -EINVAL;
                if (d > max || v > (max - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int parse_uint_str(const char *s, uint64_t max, uint64_t *ret)
{
        return parse_uint(s, strlen(s), max, ret);
}

size_t printable(char *out, size_t size, const char *s, size_t len)
{
        size_t o = 0;

        for (size_t i = 0; i < len && o + 5 < size; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c >= 0x20 && c < 0x7f && c != '\\')
                        out[o++] = (char)c;
                else
                        o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        }
        out[o] = '\0';
        return o;
}

const char *cache_dir(void)
{
        const char *d = getenv("CACHE_DIRECTORY");

        return d ? d : getenv("RUNTIME_DIRECTORY") ? getenv("RUNTIME_DIRECTORY") : CACHE_DIR_DEFAULT;
}

const char *state_dir(void)
{
        const char *d = getenv("STATE_DIRECTORY");

        return d ? d : STATE_DIR_DEFAULT;
}
