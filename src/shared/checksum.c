/* ws_checksum: the xxHash64 algorithm (public domain description by Yann
   Collet), written for incremental use over non-contiguous pieces. */
#include "checksum.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t
rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t
read64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t
read32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t
round64(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static inline uint64_t
merge(uint64_t acc, uint64_t lane)
{
    acc ^= round64(0, lane);
    return acc * P1 + P4;
}

void
ws_checksum_init(ws_checksum_state *st)
{
    st->lane[0] = P1 + P2;
    st->lane[1] = P2;
    st->lane[2] = 0;
    st->lane[3] = (uint64_t)0 - P1;
    st->total = 0;
    st->ntail = 0;
}

static void
consume_blocks(ws_checksum_state *st, const unsigned char *p, size_t nblocks)
{
    uint64_t a = st->lane[0], b = st->lane[1], c = st->lane[2], d = st->lane[3];
    for (size_t i = 0; i < nblocks; i++, p += 32) {
        a = round64(a, read64(p));
        b = round64(b, read64(p + 8));
        c = round64(c, read64(p + 16));
        d = round64(d, read64(p + 24));
    }
    st->lane[0] = a;
    st->lane[1] = b;
    st->lane[2] = c;
    st->lane[3] = d;
}

void
ws_checksum_update(ws_checksum_state *st, const void *data, size_t len)
{
    const unsigned char *p = data;
    if (len == 0) {
        return;                 /* data may be NULL */
    }
    st->total += len;
    if (st->ntail) {
        size_t take = 32 - st->ntail;
        if (take > len) {
            take = len;
        }
        memcpy(st->tail + st->ntail, p, take);
        st->ntail += take;
        p += take;
        len -= take;
        if (st->ntail < 32) {
            return;
        }
        consume_blocks(st, st->tail, 1);
        st->ntail = 0;
    }
    consume_blocks(st, p, len / 32);
    p += len & ~(size_t)31;
    len &= 31;
    memcpy(st->tail, p, len);
    st->ntail = len;
}

uint64_t
ws_checksum_final(const ws_checksum_state *st)
{
    uint64_t h;
    if (st->total >= 32) {
        h = rotl(st->lane[0], 1) + rotl(st->lane[1], 7)
            + rotl(st->lane[2], 12) + rotl(st->lane[3], 18);
        for (int i = 0; i < 4; i++) {
            h = merge(h, st->lane[i]);
        }
    }
    else {
        h = st->lane[2] + P5;
    }
    h += st->total;

    const unsigned char *p = st->tail;
    size_t len = st->ntail;
    for (; len >= 8; len -= 8, p += 8) {
        h ^= round64(0, read64(p));
        h = rotl(h, 27) * P1 + P4;
    }
    if (len >= 4) {
        h ^= (uint64_t)read32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4;
        len -= 4;
    }
    for (; len > 0; len--, p++) {
        h ^= (*p) * P5;
        h = rotl(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t
ws_checksum(const void *data, size_t len)
{
    ws_checksum_state st;
    ws_checksum_init(&st);
    ws_checksum_update(&st, data, len);
    return ws_checksum_final(&st);
}
