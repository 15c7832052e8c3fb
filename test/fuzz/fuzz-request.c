/* fuzz-request.c: the request-head parser on arbitrary bytes. Checks the
 * parser's promises, not just that it survives: spans inside the input, a
 * complete head never longer than the bound, statuses from the list. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "httpgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct request r;
        size_t max = 1024 + (size % 4096);
        char *buf = malloc(size ? size : 1); /* exact size: ASan sees any overread */
        int s;

        memcpy(buf, data, size);
        s = request_parse(buf, size, max, &r);
        if (s == 0) {
                if (r.head_len > size || r.head_len > max || r.line_len > r.head_len)
                        abort();
                if (r.method.off + r.method.len > r.head_len || r.target.off + r.target.len > r.head_len)
                        abort();
                for (unsigned i = 0; i < r.n_fields; i++)
                        if (r.fields[i].off + r.fields[i].len > r.head_len)
                                abort();
                if (r.framing == BODY_CHUNKED && r.minor == 0)
                        abort();
        } else if (s != -EAGAIN && s != 400 && s != 414 && s != 431 && s != 501 && s != 505) {
                abort();
        } else if (s == -EAGAIN && size >= max) {
                abort(); /* "need more" past the bound would wait forever */
        }
        free(buf);
        return 0;
}
