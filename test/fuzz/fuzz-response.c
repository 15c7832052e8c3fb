/* fuzz-response.c: the response-head parser on arbitrary bytes. A head it
 * accepts ends inside the input at a line end, and every shorter prefix of
 * the input asks for more or is refused the same way: the gate decides where
 * a response ends from the bytes it has, never from bytes it has not seen.
 * The first byte picks HEAD or not. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "httpgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        bool head = size && (data[0] & 1);
        const char *buf = size ? (const char *)data + 1 : "";
        size_t len = size ? size - 1 : 0, max = len < 512 ? 512 : len + 1;
        struct response p, q;
        int r = response_parse(buf, len, max, head, &p);

        if (r != 0 && r != -EAGAIN && r != -EPROTO)
                abort();
        if (r == 0) {
                if (p.head_len == 0 || p.head_len > len || buf[p.head_len - 1] != '\n')
                        abort();
                if (p.status < 100 || p.status > 599 || (p.framing == RESP_TO_EOF && !p.close))
                        abort();
                /* the same head alone gives the same answer */
                if (response_parse(buf, p.head_len, max, head, &q) != 0 || q.head_len != p.head_len ||
                    q.framing != p.framing || q.content_length != p.content_length || q.close != p.close)
                        abort();
                /* one byte less is never a complete head */
                if (response_parse(buf, p.head_len - 1, max, head, &q) == 0)
                        abort();
        }
        return 0;
}
