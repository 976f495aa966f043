/* A growing byte buffer of NUL-terminated fields: the form of both the
   key material (command.c) and the RUN payload (protocol.c). */
#ifndef WS_FIELDS_H
#define WS_FIELDS_H

#include <stddef.h>

typedef struct {
    char *data;
    size_t len, cap;
} ws_fields;

/* Append prefix and s as one field (s's NUL included); -1 if out of
   memory, after which the buffer is still valid to free. */
int ws_fields_put(ws_fields *b, const char *prefix, const char *s);

#endif /* WS_FIELDS_H */
