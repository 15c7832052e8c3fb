/* util.c: the one bounded number parser. Every number that comes from a
 * client, a names file or the command line goes through here. */
#include <errno.h>
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
