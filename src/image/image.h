/* Declarations shared by the parts of the code image core. */
#ifndef WS_IMAGE_H
#define WS_IMAGE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "image_format.h"
#include "layout.h"

/* warmstart.ImageError, created by ws_image_add (image_type.c). */
extern PyObject *ws_ImageError;

/* Add the Image type, write_image, fingerprint, ImageError and SUPPORTED
   to the extension module; -1 with an exception on error. */
int ws_image_add(PyObject *module);

/* Fingerprint of the running interpreter, and the comparison the loader
   makes.  ws_fingerprint_mismatch returns NULL when they agree, otherwise a
   new str saying what differs. */
void ws_fingerprint_fill(struct ws_fingerprint *fp);
PyObject *ws_fingerprint_mismatch(const struct ws_fingerprint *theirs);
PyObject *ws_fingerprint_to_dict(const struct ws_fingerprint *fp);

#if WS_SUPPORTED

/* image_write.c: write `entries`, an iterable of (name, code, meta) with
   meta a dict (or None) of is_package, origin, source_size,
   source_mtime_ns, source_hash.  Returns a summary dict. */
PyObject *ws_write_image(PyObject *path, PyObject *entries,
                         uint64_t preferred_base, const char *meta,
                         Py_ssize_t meta_len);

/* interp_state.c: take n consecutive code versions from the interpreter's
   counter, as the code object constructor would; 0 when it is exhausted. */
uint32_t ws_take_code_versions(uint32_t n);

/* The unit in which the loader can take the file's pages in one piece
   before writing (copy_chunk in image_load.c): a transparent huge page on
   x86-64. */
#define WS_CHUNK_SIZE ((uint64_t)2 << 20)

/* The lowest descriptor number an open image's file may take (see
   ws_image_open). */
#define WS_IMAGE_FD_FLOOR 48

/* Load-time state of one module. */
struct ws_module_state {
    PyObject *code;             /* the materialised code object, or NULL */
    PyObject *error;            /* why it cannot be materialised, or NULL */
    unsigned char entry_ok;     /* entry validated */
    unsigned char busy;         /* materialisation under way */
};

typedef struct {
    unsigned long long modules;     /* segments materialised */
    unsigned long long code_objects;
    unsigned long long atoms;       /* atoms resolved */
    unsigned long long interned;    /* of which interned */
    unsigned long long frozensets;
    unsigned long long words_patched;
    /* Time split, filled only when profiling is on.  ns_fixup includes
       ns_intern (the part spent interning strings); ns_chunks is the time
       spent making chunks private (copy_chunk). */
    unsigned long long ns_checksum, ns_fixup, ns_intern, ns_frozensets,
                       ns_chunks;
    unsigned long long chunks_private;  /* chunks copied in one piece */
    unsigned long long pages_read, reads;   /* copied from the file (bring) */
} ws_stats;

/* image_load.c: an open image. */
typedef struct {
    unsigned char *base;        /* private copy of the file, filled lazily */
    uint64_t size;              /* of the file */
    uint64_t map_size;          /* of the region: whole chunks */
    /* The file stays open to read pages on first use (image_load.c,
       bring); its identity is checked before every read. */
    int fd;
    dev_t dev;
    ino_t ino;
    unsigned char *page_read;   /* bitmap: page copied from the file */
    int64_t delta;              /* base - preferred_base */
    struct ws_header hdr;       /* validated copy */
    const struct ws_module *modules;
    const uint32_t *index;
    const char *names;
    unsigned char *atoms;
    const struct ws_atom *atomidx;
    unsigned char *heap;
    const unsigned char *reloc;
    const uint64_t *atom_checks;    /* per WS_ATOM_BLOCK of atoms+atomidx */
    uint64_t atom_region_size;
    unsigned char *atom_block_ok;   /* bitmap: block checked */
    /* Per WS_CHUNK_SIZE chunk of the file: bytes of objects patched so
       far (counted up to the chunk size), and whether the chunk has been
       made private in one piece.  See copy_chunk in image_load.c. */
    uint32_t *chunk_written;
    unsigned char *chunk_private;   /* bitmap */
    int64_t chunk_threshold;    /* bytes; < 0: never */
    PyObject **atom_objs;       /* resolved atoms, by number */
    PyObject **const_objs;      /* runtime objects, by enum ws_const */
    struct ws_module_state *mstate;
    void *side;                 /* one mapping holding the tables above */
    size_t side_size;
    uint32_t n_errors;          /* modules with mstate[i].error set */
    int profile;
    ws_stats stats;
} ws_image;

int ws_image_open(ws_image *img, const char *path);
/* The open image behind a warmstart._image.Image object, or NULL (no
   exception) if `op` is not an open Image (image_type.c). */
ws_image *ws_image_of(PyObject *op);
void ws_image_release(ws_image *img);
/* Make bytes [off, off + size) of the file present in img->base, or fail
   with an exception (the file changed, shrank or was closed). */
int ws_image_bring(ws_image *img, uint64_t off, uint64_t size);
/* Entry number of a module, -1 if absent, -2 with an exception set. */
Py_ssize_t ws_image_find(ws_image *img, const char *name, Py_ssize_t len);
/* The validated entry i, or NULL with an exception set. */
const struct ws_module *ws_image_entry(ws_image *img, uint32_t i);
/* New reference to module i's code object, or NULL with an exception. */
PyObject *ws_image_get_code(ws_image *img, uint32_t i);

#endif /* WS_SUPPORTED */
#endif /* WS_IMAGE_H */
