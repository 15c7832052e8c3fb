/* fuzz-names.c: the names-file parser on arbitrary bytes, then every entry's
 * promises: keys non-empty and findable, commands non-empty, ports in range. */
#include <stdlib.h>
#include <string.h>

#include "httpgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text = malloc(size + 1);
        struct names n;

        memcpy(text, data, size);
        text[size] = '\0';
        if (names_parse(text, size, &n, NULL, NULL) < 0) {
                free(text);
                return 0;
        }
        for (size_t i = 0; i < n.n; i++) {
                const struct name_entry *e = &n.v[i];
                if (!*e->key || e->port > 65535 || !names_find(&n, e->key, strlen(e->key)))
                        abort();
                if (e->port == 0 ? !e->redirect : (!e->argv || !e->argv[0][0] || e->dir[0] != '/'))
                        abort();
        }
        (void)names_default(&n);
        names_free(&n);
        return 0;
}
