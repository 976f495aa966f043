/* Loading a code image.
 *
 * The format is described in image_format.h and docs/image-format.md.  In
 * short: objects are stored in the interpreter's own layout; words that
 * cannot be stored as they will be in memory are tagged and marked in a
 * per-module bitmap.  Loading is:
 *
 * Open (cost independent of the number of modules):
 *   1. read the header, check magic, format version, size, its checksum
 *      and the interpreter fingerprint;
 *   2. reserve anonymous memory for the whole file at the preferred
 *      address if it is free (a hint, never MAP_FIXED), anywhere
 *      otherwise; keep the file open, high up;
 *   3. map zeroed side tables (resolved atoms, module states).
 *
 * The file is never mapped.  Each page is copied into the reserved memory
 * by pread on the first use of anything in it (ws_image_bring), before it
 * is checked, and never read again: what the loader checked is what it
 * uses, and a later change to the file (cp over it, truncation) cannot
 * reach objects already handed out, as it would through a file mapping
 * (truncation takes even a private mapping's copied pages away).  A
 * change seen by a later read fails a checksum or reads short, and that
 * module falls back to the normal import.
 *
 * Materialise one module, on its first request:
 *   1. read the entry and its names, check its bounds and checksum; read
 *      the segment and its bitmap, check their checksum;
 *   2. walk the segment's objects in address order.  For each: check the
 *      header (type tag, immortal count, size within the segment) and set
 *      the real type; for each reference field check that it is marked,
 *      decode its tag, check the referent (heap: an earlier object of the
 *      same segment, so the graph has no cycles; atom and constant numbers
 *      in range; code fields of the right type) and store the real pointer.
 *      Atoms are resolved on first use: their block checksum, header and
 *      size are checked, the type set, and strings a normal load interns
 *      are interned.  Code objects get a fresh version where the
 *      interpreter needs one;
 *   3. check that exactly the marked words were the ones the objects
 *      needed;
 *   4. build the frozensets, innermost first.
 *
 * A failure at any step marks the module as failed, with the reason; its
 * half-patched segment is never handed out, and the caller falls back.
 * Nothing is ever unmapped: the objects are immortal (from 3.14 on, those
 * a normal load makes mortal get a count no program brings to zero,
 * layout.h) and may be referenced from anywhere until the process exits.
 */
#include "image.h"

#if WS_SUPPORTED

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"

/* The fuzz target (fuzz/) unmaps each image after use; it must not leave
   image strings in the interpreter's interned table. */
#ifndef WS_FUZZING
#  define WS_FUZZING 0
#endif

/* Does a computed checksum match the stored one?  The fuzz target is built
   with every comparison passing, so that mutated images get past them to
   the object walk and the fix-ups, whose bounds checks must then hold on
   their own; a checksum only ever guards against accidents. */
#if WS_FUZZING
#  define checksum_ok(computed, stored) ((void)(computed), (void)(stored), 1)
#else
#  define checksum_ok(computed, stored) ((computed) == (stored))
#endif

static unsigned long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull
           + (unsigned long long)ts.tv_nsec;
}

/* The running interpreter's types, by enum ws_type. */
static PyTypeObject *
type_of(uint64_t code)
{
    switch (code) {
    case WS_TYPE_CODE: return &PyCode_Type;
    case WS_TYPE_TUPLE: return &PyTuple_Type;
    case WS_TYPE_STR: return &PyUnicode_Type;
    case WS_TYPE_BYTES: return &PyBytes_Type;
    case WS_TYPE_INT: return &PyLong_Type;
    case WS_TYPE_FLOAT: return &PyFloat_Type;
    case WS_TYPE_COMPLEX: return &PyComplex_Type;
    case WS_TYPE_SLICE: return &PySlice_Type;
    default: return NULL;
    }
}

static int
bad_image(ws_image *img, const char *what)
{
    (void)img;
    PyErr_Format(ws_ImageError, "corrupt image: %s", what);
    return -1;
}

/* ---- Open ----------------------------------------------------------- */

static int
check_section(const struct ws_header *h, enum ws_section s, uint64_t min_size)
{
    const struct ws_section_entry *e = &h->sections[s];
    return e->offset % WS_PAGE_SIZE == 0 && e->offset >= WS_PAGE_SIZE
           && e->offset <= h->file_size && e->size <= h->file_size - e->offset
           && e->size >= min_size;
}

static int
check_header(const struct ws_header *h, uint64_t file_size, const char *path)
{
    if (memcmp(h->magic, WS_MAGIC, WS_MAGIC_SIZE) != 0) {
        if (h->magic[0] == WS_MAGIC_UNFINISHED
            && memcmp(h->magic + 1, &WS_MAGIC[1], WS_MAGIC_SIZE - 1) == 0) {
            PyErr_Format(ws_ImageError, "%s: image was not completely written",
                         path);
        }
        else {
            PyErr_Format(ws_ImageError, "%s: not a warmstart image", path);
        }
        return -1;
    }
    if (h->format_version != WS_FORMAT_VERSION
        || h->header_size != sizeof(struct ws_header)) {
        PyErr_Format(ws_ImageError, "%s: image format %u (header of %u "
                     "bytes), this warmstart reads format %d (%d bytes)",
                     path, h->format_version, h->header_size,
                     WS_FORMAT_VERSION, (int)sizeof(struct ws_header));
        return -1;
    }
    struct ws_header copy = *h;
    copy.header_check = 0;
    if (!checksum_ok(ws_checksum(&copy, sizeof copy), h->header_check)) {
        PyErr_Format(ws_ImageError, "%s: corrupt image (header checksum)", path);
        return -1;
    }
    if (h->file_size != file_size) {
        PyErr_Format(ws_ImageError, "%s: image is %llu bytes, expected %llu "
                     "(truncated or extended)", path,
                     (unsigned long long)file_size,
                     (unsigned long long)h->file_size);
        return -1;
    }
    PyObject *why = ws_fingerprint_mismatch(&h->fingerprint);
    if (why != NULL) {
        PyErr_Format(ws_ImageError, "%s: image was written by another "
                     "interpreter: %U", path, why);
        Py_DECREF(why);
        return -1;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    int ok = h->preferred_base % WS_PAGE_SIZE == 0
             && (h->index_slots & (h->index_slots - 1)) == 0
             && h->index_slots > h->n_modules
             && check_section(h, WS_SEC_MODULES,
                              (uint64_t)h->n_modules * sizeof(struct ws_module))
             && h->sections[WS_SEC_MODULES].size
                == (uint64_t)h->n_modules * sizeof(struct ws_module)
             && check_section(h, WS_SEC_INDEX, (uint64_t)h->index_slots * 4)
             && check_section(h, WS_SEC_NAMES, 0)
             && check_section(h, WS_SEC_ATOMS, 0)
             && h->sections[WS_SEC_ATOMS].size / 8 <= UINT32_MAX
             && check_section(h, WS_SEC_ATOMIDX,
                              (uint64_t)h->n_atoms * sizeof(struct ws_atom))
             && check_section(h, WS_SEC_HEAP, 0)
             && h->sections[WS_SEC_HEAP].offset == WS_PAGE_SIZE
             && h->sections[WS_SEC_HEAP].size % 8 == 0
             && check_section(h, WS_SEC_RELOC, 0)
             && h->sections[WS_SEC_ATOMIDX].offset >= h->sections[WS_SEC_ATOMS].offset
             && check_section(h, WS_SEC_ATOMCHECK, 0)
             && check_section(h, WS_SEC_META, 0)
             && h->sections[WS_SEC_ATOMCHECK].size
                == (h->sections[WS_SEC_ATOMIDX].offset
                    + h->sections[WS_SEC_ATOMIDX].size
                    - h->sections[WS_SEC_ATOMS].offset + WS_ATOM_BLOCK - 1)
                   / WS_ATOM_BLOCK * sizeof(uint64_t);
    if (!ok) {
        PyErr_Format(ws_ImageError, "%s: corrupt image (section table)", path);
        return -1;
    }
    return 0;
}

int
ws_image_open(ws_image *img, const char *path)
{
    memset(img, 0, sizeof *img);
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(ws_ImageError, "code images can only be used in the "
                        "main interpreter");
        return -1;
    }
    img->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    struct stat st;
    void *map = MAP_FAILED;
    struct ws_header *h = &img->hdr;
    if (fstat(fd, &st) < 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        goto fail;
    }
    /* Code from the image runs as us: another user who can change the
       file could make it run anything.  Root and we may own it; nobody
       else may write it.  (The fuzz target's memfd is 0777.) */
    if (!WS_FUZZING && st.st_uid != getuid() && st.st_uid != 0) {
        PyErr_Format(ws_ImageError, "%s: image is owned by uid %u, not by "
                     "this user or root", path, (unsigned)st.st_uid);
        goto fail;
    }
    if (!WS_FUZZING && (st.st_mode & 022)) {
        PyErr_Format(ws_ImageError, "%s: image is writable by other users "
                     "(mode %o)", path, (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)
        || (uint64_t)st.st_size < sizeof(struct ws_header)) {
        PyErr_Format(ws_ImageError, "%s: not a warmstart image (too small)",
                     path);
        goto fail;
    }
    ssize_t n = pread(fd, h, sizeof *h, 0);
    if (n != (ssize_t)sizeof *h) {
        if (n < 0) {
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        }
        else {
            PyErr_Format(ws_ImageError, "%s: short read", path);
        }
        goto fail;
    }
    if (check_header(h, (uint64_t)st.st_size, path) < 0) {
        goto fail;
    }
    /* A hint, not MAP_FIXED: an occupied range makes the kernel choose.
       The region covers whole chunks, so that the last one too can be
       made one huge page (copy_chunk); the part past the end of the file
       stays zero.  Memory is only taken for the pages that are used. */
    uint64_t map_size = (h->file_size + WS_CHUNK_SIZE - 1)
                        & ~(WS_CHUNK_SIZE - 1);
    map = mmap((void *)(uintptr_t)h->preferred_base, map_size,
               PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        PyErr_NoMemory();
        goto fail;
    }
    /* Out of the way of the program's own descriptors, so that its first
       open() gets the number it gets in a direct run, and of those a
       client hands to a served program (worker.py); still within the
       descriptor table every process starts with (64). */
    int high = fcntl(fd, F_DUPFD_CLOEXEC, WS_IMAGE_FD_FLOOR);
    if (high >= 0) {
        close(fd);
        fd = high;
    }
    img->fd = fd;
    img->dev = st.st_dev;
    img->ino = st.st_ino;
    img->base = map;
    img->size = h->file_size;
    img->map_size = map_size;
    img->delta = (int64_t)((uintptr_t)map - h->preferred_base);
    img->modules = (const struct ws_module *)(img->base
                                              + h->sections[WS_SEC_MODULES].offset);
    img->index = (const uint32_t *)(img->base + h->sections[WS_SEC_INDEX].offset);
    img->names = (const char *)(img->base + h->sections[WS_SEC_NAMES].offset);
    img->atoms = img->base + h->sections[WS_SEC_ATOMS].offset;
    img->atomidx = (const struct ws_atom *)(img->base
                                            + h->sections[WS_SEC_ATOMIDX].offset);
    img->heap = img->base + h->sections[WS_SEC_HEAP].offset;
    img->reloc = img->base + h->sections[WS_SEC_RELOC].offset;
    img->atom_checks = (const uint64_t *)(img->base
                                          + h->sections[WS_SEC_ATOMCHECK].offset);
    img->atom_region_size = h->sections[WS_SEC_ATOMIDX].offset
                            + h->sections[WS_SEC_ATOMIDX].size
                            - h->sections[WS_SEC_ATOMS].offset;
    /* The side tables, zeroed: one anonymous mapping, so that their cost
       at open does not depend on how many modules and atoms there are
       (pages are only touched when used). */
    uint64_t blocks = h->sections[WS_SEC_ATOMCHECK].size / sizeof(uint64_t);
    size_t n_mstate = (size_t)h->n_modules * sizeof(struct ws_module_state);
    size_t n_atoms = (size_t)h->n_atoms * sizeof(PyObject *);
    size_t n_consts = WS_CONST_END * sizeof(PyObject *);
    size_t n_blocks = (size_t)(blocks / 8 + 8) & ~(size_t)7;
    size_t chunks = (size_t)(h->file_size / WS_CHUNK_SIZE + 1);
    size_t n_written = chunks * sizeof(uint32_t);
    size_t n_private = (chunks / 8 + 8) & ~(size_t)7;
    size_t n_pages = (size_t)(map_size / WS_PAGE_SIZE / 8 + 8) & ~(size_t)7;
    img->side_size = n_mstate + n_atoms + n_consts + n_blocks + n_written
                     + n_private + n_pages;
    void *side = mmap(NULL, img->side_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (side == MAP_FAILED) {
        PyErr_NoMemory();
        /* Nothing from the region has been handed out yet. */
        munmap(map, map_size);
        img->base = NULL;
        img->fd = -1;
        goto fail;
    }
    img->side = side;
    img->mstate = side;
    img->atom_objs = (PyObject **)((char *)side + n_mstate);
    img->const_objs = (PyObject **)((char *)side + n_mstate + n_atoms);
    img->atom_block_ok = (unsigned char *)side + n_mstate + n_atoms + n_consts;
    img->chunk_written = (uint32_t *)(img->atom_block_ok + n_blocks);
    img->chunk_private = (unsigned char *)img->chunk_written + n_written;
    img->page_read = img->chunk_private + n_private;
    img->chunk_threshold = -1;          /* page by page unless asked */
    return 0;

fail:
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

/* Close the file and free the side tables.  The region stays: objects
   in it may be alive. */
void
ws_image_release(ws_image *img)
{
    if (img->fd >= 0) {
        close(img->fd);
        img->fd = -1;
    }
    if (img->side == NULL) {
        return;
    }
    for (uint32_t i = 0; img->n_errors && i < img->hdr.n_modules; i++) {
        Py_CLEAR(img->mstate[i].error);
    }
    munmap(img->side, img->side_size);
    img->side = NULL;
    img->mstate = NULL;
    img->atom_objs = NULL;
    img->const_objs = NULL;
    img->atom_block_ok = NULL;
    img->page_read = NULL;
}

/* ---- Reading the file ----------------------------------------------- */

#ifndef MADV_POPULATE_WRITE
#  define MADV_POPULATE_WRITE 23      /* Linux 5.14 */
#endif

static int
page_read(const ws_image *img, uint64_t p)
{
    return img->page_read[p / 8] & (1u << (p % 8));
}

/* Copy pages [p, q) of the file to `to` (where page p goes).  The descriptor
   is checked first: a program may have closed it and opened something
   else at its number. */
static int
read_into(ws_image *img, unsigned char *to, uint64_t p, uint64_t q)
{
    struct stat st;
    if (img->fd < 0 || fstat(img->fd, &st) < 0
        || st.st_dev != img->dev || st.st_ino != img->ino) {
        PyErr_SetString(ws_ImageError, "the image's file descriptor was "
                        "closed or now names another file");
        return -1;
    }
    uint64_t start = p * WS_PAGE_SIZE;
    uint64_t end = q * WS_PAGE_SIZE < img->size ? q * WS_PAGE_SIZE : img->size;
    while (start < end) {
        size_t want = end - start < (uint64_t)SSIZE_MAX
                      ? (size_t)(end - start) : (size_t)SSIZE_MAX;
        ssize_t n = pread(img->fd, to + (start - p * WS_PAGE_SIZE), want,
                          (off_t)start);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (n == 0) {
            PyErr_SetString(ws_ImageError, "the image file shrank since it "
                            "was opened");
            return -1;
        }
        start += (uint64_t)n;
    }
    img->stats.pages_read += q - p;
    img->stats.reads++;
    return 0;
}

static void
mark_read(ws_image *img, uint64_t p, uint64_t q)
{
    for (uint64_t k = p; k < q; k++) {
        img->page_read[k / 8] |= (unsigned char)(1u << (k % 8));
    }
}

/* Copy pages [p, q) from the file into the region. */
static int
read_pages(ws_image *img, uint64_t p, uint64_t q)
{
    static int no_populate;
    /* Pages taken in one call cost less than one fault each while pread
       copies.  A kernel older than 5.14 answers EINVAL, and the loader
       stops asking; other failures leave the pages to be faulted in. */
    if (q - p > 1 && !no_populate
        && madvise(img->base + p * WS_PAGE_SIZE,
                   (size_t)((q - p) * WS_PAGE_SIZE),
                   MADV_POPULATE_WRITE) < 0 && errno == EINVAL) {
        no_populate = 1;
    }
    if (read_into(img, img->base + p * WS_PAGE_SIZE, p, q) < 0) {
        return -1;
    }
    mark_read(img, p, q);
    return 0;
}

int
ws_image_bring(ws_image *img, uint64_t off, uint64_t size)
{
    if (size == 0) {
        return 0;
    }
    if (off > img->size || size > img->size - off) {
        return bad_image(img, "read past the end of the file");
    }
    uint64_t p = off / WS_PAGE_SIZE, last = (off + size - 1) / WS_PAGE_SIZE;
    while (p <= last) {
        if (page_read(img, p)) {
            p++;
            continue;
        }
        uint64_t q = p + 1;
        while (q <= last && !page_read(img, q)) {
            q++;
        }
        if (read_pages(img, p, q) < 0) {
            return -1;
        }
        p = q;
    }
    return 0;
}

/* bring, for a range given by its address in the region. */
static int
bring_at(ws_image *img, const void *p, uint64_t size)
{
    return ws_image_bring(img, (uint64_t)((const unsigned char *)p - img->base),
                          size);
}

/* ---- Module index --------------------------------------------------- */

/* 1: entry e is sound; 0: it is not; -1: it could not be read (an
   exception is set). */
static int
entry_valid(ws_image *img, const struct ws_module *e)
{
    const struct ws_header *h = &img->hdr;
    uint64_t names = h->sections[WS_SEC_NAMES].size;
    uint64_t heap = h->sections[WS_SEC_HEAP].size;
    uint64_t reloc = h->sections[WS_SEC_RELOC].size;
    if (bring_at(img, e, sizeof *e) < 0) {
        return -1;
    }
    if ((uint64_t)e->name_off + e->name_len > names
        || (uint64_t)e->origin_off + e->origin_len > names
        || e->seg_off % 8 || e->seg_size % 8 || e->seg_size == 0
        || e->seg_off > heap || e->seg_size > heap - e->seg_off
        || e->root_off < e->seg_off || e->root_off % 8
        || e->root_off - e->seg_off >= e->seg_size
        || e->reloc_off % 8 || e->reloc_off > reloc
        || (e->seg_size / 8 + 7) / 8 > reloc - e->reloc_off) {
        return 0;
    }
    if (bring_at(img, img->names + e->name_off, e->name_len) < 0
        || bring_at(img, img->names + e->origin_off, e->origin_len) < 0) {
        return -1;
    }
    struct ws_module copy = *e;
    copy.entry_check = 0;
    ws_checksum_state st;
    ws_checksum_init(&st);
    ws_checksum_update(&st, &copy, sizeof copy);
    ws_checksum_update(&st, img->names + e->name_off, e->name_len);
    ws_checksum_update(&st, img->names + e->origin_off, e->origin_len);
    return checksum_ok(ws_checksum_final(&st), e->entry_check);
}

const struct ws_module *
ws_image_entry(ws_image *img, uint32_t i)
{
    if (i >= img->hdr.n_modules) {
        PyErr_SetString(PyExc_IndexError, "module number out of range");
        return NULL;
    }
    const struct ws_module *e = &img->modules[i];
    if (!img->mstate[i].entry_ok) {
        int ok = entry_valid(img, e);
        if (ok <= 0) {
            if (ok == 0) {
                bad_image(img, "module entry");
            }
            return NULL;
        }
        img->mstate[i].entry_ok = 1;
    }
    return e;
}

Py_ssize_t
ws_image_find(ws_image *img, const char *name, Py_ssize_t len)
{
    uint32_t mask = img->hdr.index_slots - 1;
    uint32_t s = (uint32_t)ws_checksum(name, (size_t)len) & mask;
    for (uint32_t probes = 0; probes <= mask; probes++, s = (s + 1) & mask) {
        if (bring_at(img, &img->index[s], sizeof img->index[s]) < 0) {
            return -2;
        }
        uint32_t v = img->index[s];
        if (v == 0) {
            return -1;
        }
        if (v > img->hdr.n_modules) {
            bad_image(img, "module index");
            return -2;
        }
        const struct ws_module *e = ws_image_entry(img, v - 1);
        if (e == NULL) {
            return -2;
        }
        if (e->name_len == (uint64_t)len
            && memcmp(img->names + e->name_off, name, (size_t)len) == 0) {
            return v - 1;
        }
    }
    return -1;
}

/* ---- Atoms and runtime constants ------------------------------------ */

static const char *
check_atom_object(unsigned char *p, uint64_t size, uint64_t type)
{
    if (!ws_is_immortal_word(p)) {
        return "atom reference count";
    }
    switch (type) {
    case WS_TYPE_STR: {
        PyASCIIObject *a = (PyASCIIObject *)p;
        unsigned int kind = a->state.kind;
        uint64_t head = a->state.ascii ? sizeof(PyASCIIObject)
                                       : sizeof(PyCompactUnicodeObject);
        if (!a->state.compact || a->state.interned
            || (kind != 1 && kind != 2 && kind != 4)
            || (a->state.ascii && kind != 1) || a->length < 1
            || size < head
            || (uint64_t)a->length >= (size - head) / kind) {
            return "atom string header";
        }
        /* What the runtime would follow or trust: no cached UTF-8 or
           wchar_t buffer (pointers the writer cleared), the terminating
           NUL in place, and on 3.11 a string marked ready (else it is
           rebuilt from a wstr it does not have). */
        const unsigned char *data = (const unsigned char *)p + head;
        int bad = 0;
        for (unsigned int k = 0; k < kind; k++) {
            bad |= data[(uint64_t)a->length * kind + k];
        }
        if (!a->state.ascii) {
            const PyCompactUnicodeObject *c = (const PyCompactUnicodeObject *)p;
            bad |= c->utf8 != NULL || c->utf8_length != 0;
#if PY_VERSION_HEX < 0x030C0000
            bad |= c->wstr_length != 0;
#endif
        }
#if PY_VERSION_HEX < 0x030C0000
        bad |= a->wstr != NULL || !a->state.ready;
#else
        bad |= a->state.statically_allocated;
#endif
        if (bad) {
            return "atom string state";
        }
        break;
    }
    case WS_TYPE_BYTES: {
        Py_ssize_t n = Py_SIZE((PyObject *)p);
        if (n < 2 || size <= offsetof(PyBytesObject, ob_sval)
            || (uint64_t)n >= size - offsetof(PyBytesObject, ob_sval)) {
            return "atom bytes size";
        }
        break;
    }
    case WS_TYPE_INT: {
        Py_ssize_t nd = ws_long_ndigits((PyObject *)p);
        if (nd < 1 || size < WS_LONG_DIGITS_OFFSET
            || (uint64_t)nd > (size - WS_LONG_DIGITS_OFFSET) / sizeof(digit)) {
            return "atom int size";
        }
        break;
    }
    case WS_TYPE_FLOAT:
        if (size < sizeof(PyFloatObject)) {
            return "atom float size";
        }
        break;
    case WS_TYPE_COMPLEX:
        if (size < sizeof(PyComplexObject)) {
            return "atom complex size";
        }
        break;
    default:
        return "atom type";
    }
    return NULL;
}

/* Small pages, or the whole chunk at once.
 *
 * Every page that holds an object is read from the file into the region
 * before the object is materialised, and each page the region takes costs
 * the kernel a fault or, taken in one call for a run (read_pages), a
 * little less: with the copy, as much as all the other work of
 * materialising.  A chunk (WS_CHUNK_SIZE bytes of the file, aligned) can
 * instead be taken in one piece: copied into fresh anonymous memory,
 * which the kernel backs with one transparent huge page, and moved over
 * the chunk with mremap.  That costs about as much as 100 page faults, so it
 * pays only where much of the chunk is used: the loader counts the bytes
 * patched in each chunk and copies the chunk once they pass
 * chunk_threshold (0: before the first write; -1, the default: never).
 *
 * It is not the default because a huge page is only cheap where the
 * kernel has one at hand: in a VM that hands free memory back to its
 * host (virtio-balloon free page reporting, as on the machine this was
 * measured on), a process started after a pause gets huge pages the host
 * must first fault in again, and materialising costs twice the page-by-
 * page time instead of 0.6 of it (bench/materialise.py measures both).
 *
 * The copy is of the chunk's current contents, objects already patched
 * included, and of the file where a page was not read yet.  It is made
 * while holding the GIL, which every writer and reader of image objects
 * holds; mremap replaces the pages under the process's memory map lock,
 * so there is no moment at which the range is unmapped to anyone.  On failure the chunk simply stays as it was. */
static void
copy_chunk(ws_image *img, uint64_t c)
{
    unsigned long long t0 = img->profile ? now_ns() : 0;
    uint64_t off = c * WS_CHUNK_SIZE;
    uint64_t n = img->size - off < WS_CHUNK_SIZE ? img->size - off
                                                 : WS_CHUNK_SIZE;
    size_t len = (size_t)WS_CHUNK_SIZE;
    /* Twice the room, to place the copy on a chunk boundary as huge pages
       need; the rest is given back. */
    unsigned char *raw = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        return;
    }
    unsigned char *copy = (unsigned char *)(((uintptr_t)raw + len - 1)
                                            & ~(uintptr_t)(len - 1));
    if (copy > raw) {
        munmap(raw, (size_t)(copy - raw));
    }
    munmap(copy + len, (size_t)(raw + len - copy));
#ifdef MADV_HUGEPAGE
    (void)madvise(copy, len, MADV_HUGEPAGE);
#endif
    /* The chunk as the region has it, and the pages not yet read straight
       from the file. */
    uint64_t p0 = off / WS_PAGE_SIZE, pn = (off + n - 1) / WS_PAGE_SIZE + 1;
    for (uint64_t p = p0, q; p < pn; p = q) {
        int have = page_read(img, p) != 0;
        for (q = p + 1; q < pn && (page_read(img, q) != 0) == have; q++) {
        }
        if (have) {
            memcpy(copy + (p - p0) * WS_PAGE_SIZE,
                   img->base + p * WS_PAGE_SIZE,
                   (size_t)((q - p) * WS_PAGE_SIZE));
        }
        else if (read_into(img, copy + (p - p0) * WS_PAGE_SIZE, p, q) < 0) {
            PyErr_Clear();      /* the chunk stays as it was */
            munmap(copy, len);
            return;
        }
    }
    if (mremap(copy, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
               img->base + off) == MAP_FAILED) {
        munmap(copy, len);
        return;
    }
    mark_read(img, p0, pn);
    img->stats.chunks_private++;
    if (img->profile) {
        img->stats.ns_chunks += now_ns() - t0;
    }
}

/* Account for `size` bytes at `p` about to be patched. */
static void
before_patch(ws_image *img, const unsigned char *p, uint64_t size)
{
    if (img->chunk_threshold < 0 || size == 0) {
        return;
    }
    uint64_t lo = (uint64_t)(p - img->base), hi = lo + size;
    for (uint64_t c = lo / WS_CHUNK_SIZE; c <= (hi - 1) / WS_CHUNK_SIZE; c++) {
        unsigned char bit = (unsigned char)(1u << (c % 8));
        if (img->chunk_private[c / 8] & bit) {
            continue;
        }
        uint64_t a = c * WS_CHUNK_SIZE > lo ? c * WS_CHUNK_SIZE : lo;
        uint64_t b = (c + 1) * WS_CHUNK_SIZE < hi ? (c + 1) * WS_CHUNK_SIZE : hi;
        uint64_t w = img->chunk_written[c] + (b - a);
        img->chunk_written[c] = (uint32_t)(w < WS_CHUNK_SIZE ? w : WS_CHUNK_SIZE);
        if (w > (uint64_t)img->chunk_threshold) {
            img->chunk_private[c / 8] |= bit;
            copy_chunk(img, c);
        }
    }
}

/* Check block b of the atoms + atomidx region, once. */
static int
check_atom_block(ws_image *img, uint64_t b)
{
    if (img->atom_block_ok[b / 8] & (1u << (b % 8))) {
        return 0;
    }
    uint64_t off = b * WS_ATOM_BLOCK;
    uint64_t n = img->atom_region_size - off;
    if (n > WS_ATOM_BLOCK) {
        n = WS_ATOM_BLOCK;
    }
    if (bring_at(img, img->atoms + off, n) < 0
        || bring_at(img, &img->atom_checks[b], sizeof img->atom_checks[b]) < 0) {
        return -1;
    }
    if (!checksum_ok(ws_checksum(img->atoms + off, n), img->atom_checks[b])) {
        return bad_image(img, "atom checksum");
    }
    img->atom_block_ok[b / 8] |= (unsigned char)(1u << (b % 8));
    return 0;
}

/* Check the blocks covering bytes [off, off + size) of the atom region. */
static int
check_atom_range(ws_image *img, uint64_t off, uint64_t size)
{
    for (uint64_t b = off / WS_ATOM_BLOCK; b <= (off + size - 1) / WS_ATOM_BLOCK;
         b++) {
        if (check_atom_block(img, b) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The object for atom i, resolved on first use: checked, typed, interned
   where a normal load would intern it.  Borrowed (the image owns it). */
static PyObject *
resolve_atom(ws_image *img, uint64_t i)
{
    if (i >= img->hdr.n_atoms) {
        bad_image(img, "atom number");
        return NULL;
    }
    if (img->atom_objs[i] != NULL) {
        return img->atom_objs[i];
    }
    const struct ws_atom *a = &img->atomidx[i];
    if (check_atom_range(img, (uint64_t)((const unsigned char *)a - img->atoms),
                         sizeof *a) < 0) {
        return NULL;
    }
    uint64_t off = (uint64_t)a->offset8 * 8;
    uint64_t size = a->size_flags & ~(uint64_t)WS_ATOM_FLAGS;
    uint32_t flags = a->size_flags & WS_ATOM_FLAGS;
    if (size < sizeof(PyObject) + 8
        || off > img->hdr.sections[WS_SEC_ATOMS].size
        || size > img->hdr.sections[WS_SEC_ATOMS].size - off) {
        bad_image(img, "atom bounds");
        return NULL;
    }
    if (check_atom_range(img, off, size) < 0) {
        return NULL;
    }
    unsigned char *p = img->atoms + off;
    uint64_t tw;
    memcpy(&tw, p + offsetof(PyObject, ob_type), sizeof tw);
    const char *why = (tw & WS_TAG_MASK) == WS_REF_TYPE
                      ? check_atom_object(p, size, tw >> WS_TAG_BITS)
                      : "atom type";
    if (why != NULL) {
        bad_image(img, why);
        return NULL;
    }
    before_patch(img, p, size);
    PyObject *op = (PyObject *)p;
    Py_SET_TYPE(op, type_of(tw >> WS_TAG_BITS));
    if (PyUnicode_CheckExact(op)) {
        ws_str_fix_at_load(op);
        if ((flags & WS_ATOM_INTERN) && !WS_FUZZING) {
            /* Release builds only (layout.h): the string is immortal (3.12+)
               or has a count no program can bring to zero (3.11), so it can
               become the canonical interned object; if the runtime already
               has one, that one is used instead. */
            unsigned long long t0 = img->profile ? now_ns() : 0;
            PyUnicode_InternInPlace(&op);
            if (op == (PyObject *)p) {
                ws_str_interned_at_load(op);
            }
            img->stats.interned++;
            if (img->profile) {
                img->stats.ns_intern += now_ns() - t0;
            }
        }
        else {
            ws_set_mortal_at_load(op);
        }
    }
    else {
        ws_set_mortal_at_load(op);
    }
    img->atom_objs[i] = op;
    img->stats.atoms++;
    return op;
}

static int
const_valid(uint64_t v)
{
    return v <= WS_CONST_EMPTY_FROZENSET
           || (v >= WS_CONST_CHAR && v < WS_CONST_END);
}

/* New reference to the runtime object for constant v (already checked). */
static PyObject *
make_const(uint64_t v)
{
    if (v >= WS_CONST_SMALL_INT) {
        return PyLong_FromLong((long)v - WS_CONST_SMALL_INT + WS_SMALL_INT_MIN);
    }
    if (v >= WS_CONST_BYTE) {
        char c = (char)(v - WS_CONST_BYTE);
        return PyBytes_FromStringAndSize(&c, 1);
    }
    if (v >= WS_CONST_CHAR_INTERNED) {
        PyObject *s = PyUnicode_FromOrdinal((int)(v - WS_CONST_CHAR_INTERNED));
        if (s != NULL) {
            PyUnicode_InternInPlace(&s);
        }
        return s;
    }
    if (v >= WS_CONST_CHAR) {
        return PyUnicode_FromOrdinal((int)(v - WS_CONST_CHAR));
    }
    switch (v) {
    case WS_CONST_NONE: return Py_NewRef(Py_None);
    case WS_CONST_TRUE: return Py_NewRef(Py_True);
    case WS_CONST_FALSE: return Py_NewRef(Py_False);
    case WS_CONST_ELLIPSIS: return Py_NewRef(Py_Ellipsis);
    case WS_CONST_EMPTY_TUPLE: return PyTuple_New(0);
    case WS_CONST_EMPTY_STR: return PyUnicode_New(0, 0);
    case WS_CONST_EMPTY_BYTES: return PyBytes_FromStringAndSize(NULL, 0);
    }
    Py_UNREACHABLE();
}

/* The runtime object for constant v, cached per image.  Borrowed: the
   cache holds one reference per constant for as long as the process
   lives, which covers every slot that points to it. */
static PyObject *
resolve_const(ws_image *img, uint64_t v)
{
    if (!const_valid(v)) {
        bad_image(img, "constant number");
        return NULL;
    }
    PyObject *op = img->const_objs[v];
    if (op == NULL) {
        op = img->const_objs[v] = make_const(v);
    }
    return op;
}

/* ---- Materialising a module ----------------------------------------- */

typedef struct {
    ws_image *img;
    uint64_t *words;            /* the segment */
    const unsigned char *bitmap;
    uint64_t nwords;
    uint64_t lo;                /* preferred address of the segment */
    uint64_t marked;            /* words the objects say must be marked */
    uint32_t n_code;
    uint32_t version;           /* next code version to hand out, or 0 */
    /* FROZENSET words, for pass 2. */
    uint64_t **frozen;
    size_t n_frozen, cap_frozen;
} segment;

static int
is_marked(const segment *s, uint64_t word)
{
    return word < s->nwords && (s->bitmap[word / 8] >> (word % 8)) & 1;
}

static int
remember_frozenset(segment *s, uint64_t *slot)
{
    if (s->n_frozen == s->cap_frozen) {
        size_t cap = s->cap_frozen ? 2 * s->cap_frozen : 16;
        uint64_t **p = PyMem_Realloc(s->frozen, cap * sizeof *p);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->frozen = p;
        s->cap_frozen = cap;
    }
    s->frozen[s->n_frozen++] = slot;
    return 0;
}

/* Check and rewrite the reference in word `at` of the object that starts
   at word `obj`.  It must be marked, and refer to an object of type `want`
   unless that is 0. */
static int
fix_ref(segment *s, uint64_t obj, uint64_t at, uint64_t want)
{
    if (!is_marked(s, at)) {
        return bad_image(s->img, "unmarked reference");
    }
    s->marked++;
    uint64_t v = s->words[at];
    uint64_t kind = v & WS_TAG_MASK, arg = v >> WS_TAG_BITS;
    PyObject *op;
    switch (kind) {
    case WS_REF_HEAP:
    case WS_REF_FROZENSET: {
        /* An earlier object of the same segment: no cycles, no escapes.
           Earlier objects are already fixed up, so their type word holds
           a real type, which no other marked word can. */
        uint64_t addr = v & ~WS_TAG_MASK;
        if (addr < s->lo || addr >= s->lo + obj * 8) {
            return bad_image(s->img, "heap pointer out of range");
        }
        uint64_t w = (addr - s->lo) / 8 + offsetof(PyObject, ob_type) / 8;
        PyTypeObject *t = (PyTypeObject *)(uintptr_t)s->words[w];
        if (!is_marked(s, w) || (t != &PyTuple_Type && t != &PyCode_Type
                                 && t != &PySlice_Type)
            || (kind == WS_REF_FROZENSET && t != &PyTuple_Type)) {
            return bad_image(s->img, "heap pointer to a non-object");
        }
        if (kind == WS_REF_FROZENSET) {
            /* Built in pass 2; the items tuple meanwhile. */
            s->words[at] = addr + (uint64_t)s->img->delta;
            return want ? bad_image(s->img, "wrong type in a code object field")
                        : remember_frozenset(s, &s->words[at]);
        }
        if (want && t != type_of(want)) {
            return bad_image(s->img, "wrong type in a code object field");
        }
        s->words[at] = addr + (uint64_t)s->img->delta;
        return 0;
    }
    case WS_REF_ATOM:
        op = resolve_atom(s->img, arg);
        break;
    case WS_REF_CONST:
        if (arg == WS_CONST_EMPTY_FROZENSET) {
            s->words[at] = 0;
            return want ? bad_image(s->img, "wrong type in a code object field")
                        : remember_frozenset(s, &s->words[at]);
        }
        op = resolve_const(s->img, arg);
        break;
    default:
        return bad_image(s->img, "bad reference tag");
    }
    if (op == NULL) {
        return -1;
    }
    if (want && Py_TYPE(op) != type_of(want)) {
        return bad_image(s->img, "wrong type in a code object field");
    }
    s->words[at] = (uint64_t)(uintptr_t)op;
    return 0;
}

/* Pass 1: walk the objects of the segment in address order, check each
   and fix it up.  Objects only point to earlier ones, so everything an
   object refers to is final when it is reached.  On failure the segment
   is left half-done; it is never handed out. */
static int
fix_segment(segment *s, uint64_t root_word)
{
    const uint64_t gc_words = WS_GC_HEAD_SIZE / 8;
    const uint64_t type_word = offsetof(PyObject, ob_type) / 8;
    uint64_t w = 0;
    int root_seen = 0;
    /* Every subtraction below is of a smaller value from a larger one:
       room (the words left in the segment) is checked against each fixed
       part before the variable part is compared with what is left. */
    const uint64_t var_words = sizeof(PyVarObject) / 8;
    while (w < s->nwords) {
        uint64_t t = 0;
        if (s->nwords - w < var_words) {
            return bad_image(s->img, "object header");
        }
        if (is_marked(s, w + type_word)
            && (s->words[w + type_word] & WS_TAG_MASK) == WS_REF_TYPE) {
            t = s->words[w + type_word] >> WS_TAG_BITS;
        }
        else if (s->nwords - w >= gc_words + var_words && s->words[w] == 0
                 && s->words[w + 1] == 0) {
            /* A zeroed GC head, then a GC object. */
            w += gc_words;
            if (is_marked(s, w + type_word)
                && (s->words[w + type_word]
                    == WS_TAGGED(WS_REF_TYPE, WS_TYPE_TUPLE)
                    || s->words[w + type_word]
                       == WS_TAGGED(WS_REF_TYPE, WS_TYPE_SLICE))) {
                t = s->words[w + type_word] >> WS_TAG_BITS;
            }
        }
        if (t != WS_TYPE_TUPLE && t != WS_TYPE_CODE && t != WS_TYPE_SLICE) {
            return bad_image(s->img, "object header");
        }
        if (!ws_is_immortal_word(&s->words[w])) {
            return bad_image(s->img, "object reference count");
        }
        ws_set_mortal_at_load(&s->words[w]);
        s->marked++;            /* the type word */
        s->words[w + type_word] = (uint64_t)(uintptr_t)type_of(t);
        uint64_t room = s->nwords - w;
        if (t == WS_TYPE_SLICE) {
            const uint64_t size = sizeof(PySliceObject) / 8;
            if (room < size) {
                return bad_image(s->img, "slice size");
            }
            if (fix_ref(s, w, w + offsetof(PySliceObject, start) / 8, 0) < 0
                || fix_ref(s, w, w + offsetof(PySliceObject, stop) / 8, 0) < 0
                || fix_ref(s, w, w + offsetof(PySliceObject, step) / 8, 0) < 0) {
                return -1;
            }
            w += size;
            continue;
        }
        Py_ssize_t n = ((PyVarObject *)&s->words[w])->ob_size;
        if (t == WS_TYPE_TUPLE) {
            uint64_t head = offsetof(PyTupleObject, ob_item) / 8;
            if (n < 1 || room < head || (uint64_t)n > room - head) {
                return bad_image(s->img, "tuple size");
            }
            for (uint64_t i = 0; i < (uint64_t)n; i++) {
                if (fix_ref(s, w, w + head + i, 0) < 0) {
                    return -1;
                }
            }
            ws_tuple_clear_hash(&s->words[w]);  /* whatever the file says */
            w += head + (uint64_t)n;
            continue;
        }
        uint64_t head = offsetof(PyCodeObject, co_code_adaptive);
        if (n < 1 || room * 8 < head
            || (uint64_t)n > (room * 8 - head) / WS_CODE_UNIT_SIZE) {
            return bad_image(s->img, "code size");
        }
#define FIX_CODE_FIELD(f, want) \
        if (fix_ref(s, w, w + offsetof(PyCodeObject, f) / 8, want) < 0) { \
            return -1; \
        }
        WS_CODE_REF_FIELDS(FIX_CODE_FIELD)
#undef FIX_CODE_FIELD
#if WS_NEEDS_CODE_VERSION
        ((PyCodeObject *)&s->words[w])->co_version = s->version;
        if (s->version != 0) {
            s->version++;
        }
#endif
        root_seen |= (w == root_word);
        w += (head + (uint64_t)n * WS_CODE_UNIT_SIZE + 7) / 8;
        s->n_code++;
    }
    if (!root_seen) {
        return bad_image(s->img, "module root is not a code object");
    }
    /* Exactly the words the objects need are marked, no others. */
    uint64_t total = 0;
    uint64_t full = s->nwords / 8, i = 0;     /* bytes wholly in use */
    for (; i + 8 <= full; i += 8) {
        uint64_t b;
        memcpy(&b, s->bitmap + i, 8);
        total += (uint64_t)__builtin_popcountll(b);
    }
    for (; i < full; i++) {
        total += (uint64_t)__builtin_popcount(s->bitmap[i]);
    }
    if (s->nwords % 8) {
        total += (uint64_t)__builtin_popcount(
            s->bitmap[full] & ((1u << (s->nwords % 8)) - 1));
    }
    if (total != s->marked) {
        return bad_image(s->img, "relocation bitmap");
    }
    return 0;
}

PyObject *
ws_image_get_code(ws_image *img, uint32_t i)
{
    const struct ws_module *e = ws_image_entry(img, i);
    if (e == NULL) {
        return NULL;
    }
    struct ws_module_state *ms = &img->mstate[i];
    if (ms->code != NULL) {
        return Py_NewRef(ms->code);
    }
    if (ms->error != NULL) {
        PyErr_SetObject(ws_ImageError, ms->error);
        return NULL;
    }
    if (ms->busy) {
        PyErr_SetString(ws_ImageError, "module is being materialised "
                        "(re-entrant request)");
        return NULL;
    }
    ms->busy = 1;
    int prof = img->profile;
    segment s = {
        .img = img,
        .words = (uint64_t *)(img->heap + e->seg_off),
        .bitmap = img->reloc + e->reloc_off,
        .nwords = e->seg_size / 8,
        .lo = img->hdr.preferred_base + WS_PAGE_SIZE + e->seg_off,
    };
    /* A chunk taken whole reads the segment on the way (copy_chunk). */
    before_patch(img, (unsigned char *)s.words, e->seg_size);
    if (bring_at(img, s.words, e->seg_size) < 0
        || bring_at(img, s.bitmap, (s.nwords + 7) / 8) < 0) {
        goto fail;
    }
    /* Chunk copies made while resolving atoms are not fix-up time. */
    unsigned long long t0 = prof ? now_ns() : 0, t1, copies;
    ws_checksum_state st;
    ws_checksum_init(&st);
    ws_checksum_update(&st, s.words, e->seg_size);
    ws_checksum_update(&st, s.bitmap, (s.nwords + 7) / 8);
    if (!checksum_ok(ws_checksum_final(&st), e->seg_check)) {
        bad_image(img, "module checksum");
        goto fail;
    }
    if (prof) {
        t1 = now_ns();
        img->stats.ns_checksum += t1 - t0;
        t0 = t1;
    }
#if WS_NEEDS_CODE_VERSION
    s.version = ws_take_code_versions(e->n_code);
#endif
    copies = img->stats.ns_chunks;
    if (fix_segment(&s, (e->root_off - e->seg_off) / 8) < 0) {
        goto fail;
    }
    if (s.n_code != e->n_code) {
        bad_image(img, "code object count");
        goto fail;
    }
    if (prof) {
        t1 = now_ns();
        img->stats.ns_fixup += t1 - t0 - (img->stats.ns_chunks - copies);
        t0 = t1;
    }
    /* Pass 2: frozensets, in address order, so that sets nested in the
       items of another set exist before it is built.  Until then a slot
       holds its items tuple (or 0 for an empty set). */
    for (size_t k = 0; k < s.n_frozen; k++) {
        PyObject *items = (PyObject *)(uintptr_t)*s.frozen[k];
        *s.frozen[k] = (uint64_t)(uintptr_t)Py_None;
        PyObject *fs = PyFrozenSet_New(items);
        if (fs == NULL) {
            goto fail;
        }
        /* The image keeps this reference forever. */
        *s.frozen[k] = (uint64_t)(uintptr_t)fs;
        img->stats.frozensets++;
    }
    if (prof) {
        img->stats.ns_frozensets += now_ns() - t0;
    }
    PyObject *code = (PyObject *)(img->heap + e->root_off);
    img->stats.modules++;
    img->stats.code_objects += s.n_code;
    img->stats.words_patched += s.marked;
    ms->code = code;
    ms->busy = 0;
    PyMem_Free(s.frozen);
    return Py_NewRef(code);

fail:
    PyMem_Free(s.frozen);
    ms->busy = 0;
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyObject *msg = value ? PyObject_Str(value) : NULL;
        PyObject *name = PyUnicode_DecodeUTF8(img->names + e->name_off,
                                              (Py_ssize_t)e->name_len,
                                              "replace");
        if (msg != NULL && name != NULL) {
            ms->error = PyUnicode_FromFormat("module %U: %U", name, msg);
            img->n_errors += ms->error != NULL;
        }
        Py_XDECREF(msg);
        Py_XDECREF(name);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        if (ms->error == NULL) {
            return NULL;
        }
        PyErr_SetObject(ws_ImageError, ms->error);
    }
    return NULL;
}

#endif /* WS_SUPPORTED */
