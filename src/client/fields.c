/* NUL-terminated fields in a growing buffer; see fields.h. */
#include "fields.h"

#include <stdlib.h>
#include <string.h>

int
ws_fields_put(ws_fields *b, const char *prefix, const char *s)
{
    size_t lp = strlen(prefix), ls = strlen(s), need = b->len + lp + ls + 1;

    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < need)
            cap *= 2;
        p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, prefix, lp);
    memcpy(b->data + b->len + lp, s, ls + 1);
    b->len = need;
    return 0;
}
