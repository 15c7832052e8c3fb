/* fuzz-chunked.c: the chunked framer on arbitrary bytes, fed whole and in
 * pieces split by the first byte: both ways must agree on where the body ends
 * and what is forwarded, and forwarding never outruns consuming. */
#include <stdlib.h>
#include <string.h>

#include "httpgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const char *buf, size_t size, size_t step, size_t *consumed, size_t *fwd_total, bool *done)
{
        struct chunked c = { 0 };
        size_t off = 0;

        *fwd_total = 0;
        while (off < size && !chunked_done(&c)) {
                size_t n = size - off < step ? size - off : step, fwd;
                int k = chunked_feed(&c, buf + off, n, &fwd);
                if (k < 0)
                        return k;
                if (fwd > (size_t)k || (size_t)k > n)
                        abort();
                if (fwd > 0 && *fwd_total != off)
                        abort(); /* forwarded bytes are always a prefix of the body */
                *fwd_total += fwd;
                off += (size_t)k;
                if (k == 0 && !chunked_done(&c))
                        abort(); /* no progress without an end */
        }
        *consumed = off;
        *done = chunked_done(&c);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t step = size ? 1 + data[0] % 7 : 1, c1, c2, f1, f2;
        bool d1, d2;
        char *buf = malloc(size ? size : 1);
        int a, b;

        memcpy(buf, data, size);
        a = run(buf, size, size ? size : 1, &c1, &f1, &d1);
        b = run(buf, size, step, &c2, &f2, &d2);
        if ((a < 0) != (b < 0))
                abort();
        if (a == 0 && (d1 != d2 || (d1 && c1 != c2)))
                abort();
        free(buf);
        return 0;
}
