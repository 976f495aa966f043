/* Integrity checksum for image data: detects truncation, bit flips and
   stray writes, not tampering.  A 64-bit hash in four independent lanes
   (the xxHash64 construction), fast enough that checking a module's
   objects costs a small fraction of fixing them up. */
#ifndef WS_CHECKSUM_H
#define WS_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t lane[4];
    uint64_t total;
    unsigned char tail[32];
    size_t ntail;
} ws_checksum_state;

void ws_checksum_init(ws_checksum_state *st);
void ws_checksum_update(ws_checksum_state *st, const void *data, size_t len);
uint64_t ws_checksum_final(const ws_checksum_state *st);
uint64_t ws_checksum(const void *data, size_t len);

#endif /* WS_CHECKSUM_H */
