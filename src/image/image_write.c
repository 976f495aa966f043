/* Writing a code image.
 *
 * Each module's code is first round-tripped through marshal, which gives a
 * fresh, never-executed object graph exactly as a normal import would build
 * it (same interning, same quickened bytecode, no specialisation or
 * instrumentation left behind by execution).  That graph is then copied
 * object by object, children before parents, into the module's segment;
 * leaf objects go to the image-wide atom table instead, once per distinct
 * value.  Every word the loader must fix up is tagged and marked in the
 * segment's bitmap (image_format.h).
 *
 * Errors while copying one module (an object the image cannot represent)
 * roll that module back and are reported in the summary; the rest of the
 * image is still written.
 */
#include "image.h"

#if WS_SUPPORTED

#include <errno.h>
#include <fcntl.h>
#include <marshal.h>
#include <string.h>
#include <unistd.h>

#include "checksum.h"

#define MAX_DEPTH 2000

/* Growable byte buffer. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
} wbuf;

static int
wbuf_reserve(wbuf *b, size_t extra)
{
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    unsigned char *p = PyMem_Realloc(b->data, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Append n zero bytes; returns their offset or -1. */
static Py_ssize_t
wbuf_zeros(wbuf *b, size_t n)
{
    if (wbuf_reserve(b, n) < 0) {
        return -1;
    }
    size_t off = b->len;
    memset(b->data + off, 0, n);
    b->len += n;
    return (Py_ssize_t)off;
}

static Py_ssize_t
wbuf_append(wbuf *b, const void *p, size_t n)
{
    Py_ssize_t off = wbuf_zeros(b, n);
    if (off >= 0 && n) {
        memcpy(b->data + off, p, n);
    }
    return off;
}

static void
wbuf_free(wbuf *b)
{
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static size_t
round_up(size_t n, size_t align)
{
    return (n + align - 1) & ~(align - 1);
}

typedef struct {
    uint64_t heap_base;         /* preferred address of the heap section */
    wbuf heap, bitmap, reloc, atoms, atomidx, modules, names, meta;
    PyObject *atom_keys;        /* atom bytes -> atom number */
    /* Current module. */
    size_t seg_start;
    PyObject *memo;             /* id(obj) -> tagged word, per module */
    uint32_t n_code;
    int depth;
} writer;

static uint64_t emit(writer *w, PyObject *op);

/* Mark the heap word at heap offset `off` as needing a fix-up. */
static int
mark(writer *w, size_t off)
{
    size_t word = (off - w->seg_start) / 8;
    size_t need = word / 8 + 1;
    if (need > w->bitmap.len && wbuf_zeros(&w->bitmap, need - w->bitmap.len) < 0) {
        return -1;
    }
    w->bitmap.data[word / 8] |= (unsigned char)(1u << (word % 8));
    return 0;
}

/* Store tagged word `v` at heap offset `off` and mark it. */
static int
put_word(writer *w, size_t off, uint64_t v)
{
    memcpy(w->heap.data + off, &v, sizeof v);
    return mark(w, off);
}

/* Fill in the object header of the copy at heap offset `off`. */
static int
put_header(writer *w, size_t off, enum ws_type type)
{
    ws_set_immortal(w->heap.data + off);
    return put_word(w, off + offsetof(PyObject, ob_type),
                    WS_TAGGED(WS_REF_TYPE, type));
}

static uint64_t
heap_ref(writer *w, size_t off)
{
    return w->heap_base + off;
}

/* ---- Atoms: leaf objects, one copy per image ---------------------- */

static void
atom_header(unsigned char *copy, enum ws_type type)
{
    uint64_t t = WS_TAGGED(WS_REF_TYPE, type);
    ws_set_immortal(copy);
    memcpy(copy + offsetof(PyObject, ob_type), &t, sizeof t);
}

/* Add the object image `copy` (size bytes, a multiple of 8) to the atom
   table, or find the identical one already there. */
static uint64_t
intern_atom(writer *w, unsigned char *copy, size_t size, uint32_t flags)
{
    PyObject *key = PyBytes_FromStringAndSize((char *)copy, (Py_ssize_t)size);
    if (key == NULL) {
        return 0;
    }
    uint64_t result = 0;
    PyObject *found = PyDict_GetItemWithError(w->atom_keys, key);
    if (found != NULL) {
        size_t i = PyLong_AsSize_t(found);
        struct ws_atom *a = (struct ws_atom *)w->atomidx.data + i;
        a->size_flags |= flags;
        result = WS_TAGGED(WS_REF_ATOM, i);
        goto done;
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    size_t n = w->atomidx.len / sizeof(struct ws_atom);
    if (n >= UINT32_MAX || w->atoms.len / 8 >= UINT32_MAX
        || size > UINT32_MAX - 8) {
        PyErr_SetString(ws_ImageError, "too many atoms for one image");
        goto done;
    }
    struct ws_atom a = {
        .offset8 = (uint32_t)(w->atoms.len / 8),
        .size_flags = (uint32_t)size | flags,
    };
    PyObject *num = PyLong_FromSize_t(n);
    if (num == NULL || PyDict_SetItem(w->atom_keys, key, num) < 0
        || wbuf_append(&w->atoms, copy, size) < 0
        || wbuf_append(&w->atomidx, &a, sizeof a) < 0) {
        Py_XDECREF(num);
        goto done;
    }
    Py_DECREF(num);
    result = WS_TAGGED(WS_REF_ATOM, n);
done:
    Py_DECREF(key);
    return result;
}

static uint64_t
emit_str(writer *w, PyObject *op)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(op);
    int interned = PyUnicode_CHECK_INTERNED(op) != 0;
    if (len == 0) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_EMPTY_STR);
    }
    if (len == 1 && PyUnicode_READ_CHAR(op, 0) < 256) {
        Py_UCS4 c = PyUnicode_READ_CHAR(op, 0);
        return WS_TAGGED(WS_REF_CONST,
                         (interned ? WS_CONST_CHAR_INTERNED : WS_CONST_CHAR) + c);
    }
    PyObject *src = op;
    if (!PyUnicode_IS_COMPACT(op)) {
        /* A legacy string: store it in the compact form. */
        src = PyUnicode_FromKindAndData(PyUnicode_KIND(op),
                                        PyUnicode_DATA(op), len);
        if (src == NULL) {
            return 0;
        }
    }
    else {
        Py_INCREF(src);
    }
    int kind = PyUnicode_KIND(src);
    size_t head = PyUnicode_IS_ASCII(src) ? sizeof(PyASCIIObject)
                                          : sizeof(PyCompactUnicodeObject);
    size_t used = head + (size_t)(len + 1) * kind;
    size_t size = round_up(used, WS_ALIGN);
    unsigned char *copy = PyMem_Calloc(1, size);
    uint64_t r = 0;
    if (copy == NULL) {
        PyErr_NoMemory();
    }
    else {
        memcpy(copy, src, head);
        memcpy(copy + head, PyUnicode_DATA(src), (size_t)(len + 1) * kind);
        atom_header(copy, WS_TYPE_STR);
        ws_str_clear_runtime_state((PyObject *)copy);
        r = intern_atom(w, copy, size, interned ? WS_ATOM_INTERN : 0);
        PyMem_Free(copy);
    }
    Py_DECREF(src);
    return r;
}

static uint64_t
emit_bytes(writer *w, PyObject *op)
{
    Py_ssize_t len = PyBytes_GET_SIZE(op);
    if (len == 0) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_EMPTY_BYTES);
    }
    if (len == 1) {
        return WS_TAGGED(WS_REF_CONST,
                         WS_CONST_BYTE + (unsigned char)PyBytes_AS_STRING(op)[0]);
    }
    size_t used = offsetof(PyBytesObject, ob_sval) + (size_t)len + 1;
    size_t size = round_up(used, WS_ALIGN);
    unsigned char *copy = PyMem_Calloc(1, size);
    if (copy == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    memcpy(copy, op, used);
    atom_header(copy, WS_TYPE_BYTES);
    Py_hash_t nohash = -1;
    memcpy(copy + WS_BYTES_HASH_OFFSET, &nohash, sizeof nohash);
    uint64_t r = intern_atom(w, copy, size, 0);
    PyMem_Free(copy);
    return r;
}

static uint64_t
emit_int(writer *w, PyObject *op)
{
    int overflow;
    long v = PyLong_AsLongAndOverflow(op, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return 0;
    }
    if (!overflow && v >= WS_SMALL_INT_MIN && v <= WS_SMALL_INT_MAX) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_SMALL_INT - WS_SMALL_INT_MIN + v);
    }
    Py_ssize_t nd = ws_long_ndigits(op);
    size_t used = WS_LONG_DIGITS_OFFSET + (size_t)(nd ? nd : 1) * sizeof(digit);
    size_t size = round_up(used, WS_ALIGN);
    unsigned char *copy = PyMem_Calloc(1, size);
    if (copy == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    memcpy(copy, op, WS_LONG_DIGITS_OFFSET + (size_t)nd * sizeof(digit));
    atom_header(copy, WS_TYPE_INT);
    uint64_t r = intern_atom(w, copy, size, 0);
    PyMem_Free(copy);
    return r;
}

/* float and complex: no pointers, no caches; copied verbatim. */
static uint64_t
emit_plain(writer *w, PyObject *op, size_t used, enum ws_type type)
{
    unsigned char copy[64] = {0};
    size_t size = round_up(used, WS_ALIGN);
    memcpy(copy, op, used);
    atom_header(copy, type);
    return intern_atom(w, copy, size, 0);
}

/* ---- Heap objects: tuples and code, per module --------------------- */

/* Emit the items of `seq` (a tuple) as a tuple object in the segment;
   returns the heap offset of the object, or -1. */
static Py_ssize_t
emit_tuple_object(writer *w, PyObject *seq)
{
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    uint64_t *words = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (words == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t off = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        words[i] = emit(w, PyTuple_GET_ITEM(seq, i));
        if (words[i] == 0) {
            goto done;
        }
    }
    size_t size = WS_GC_HEAD_SIZE + offsetof(PyTupleObject, ob_item)
                  + (size_t)n * sizeof(PyObject *);
    Py_ssize_t gc = wbuf_zeros(&w->heap, size);
    if (gc < 0) {
        goto done;
    }
    size_t obj = (size_t)gc + WS_GC_HEAD_SIZE;
    ((PyVarObject *)(w->heap.data + obj))->ob_size = n;
    ws_tuple_clear_hash(w->heap.data + obj);
    if (put_header(w, obj, WS_TYPE_TUPLE) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t slot = obj + offsetof(PyTupleObject, ob_item) + (size_t)i * 8;
        if (put_word(w, slot, words[i]) < 0) {
            goto done;
        }
    }
    off = (Py_ssize_t)obj;
done:
    PyMem_Free(words);
    return off;
}

static uint64_t
emit_tuple(writer *w, PyObject *op)
{
    if (PyTuple_GET_SIZE(op) == 0) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_EMPTY_TUPLE);
    }
    Py_ssize_t off = emit_tuple_object(w, op);
    return off < 0 ? 0 : heap_ref(w, (size_t)off);
}

/* A constant slice: its three references, then the object, in the
   segment after a zeroed GC head (slices are a GC type). */
static uint64_t
emit_slice(writer *w, PyObject *op)
{
    PySliceObject *sl = (PySliceObject *)op;
    uint64_t start = emit(w, sl->start);
    uint64_t stop = start ? emit(w, sl->stop) : 0;
    uint64_t step = stop ? emit(w, sl->step) : 0;
    if (step == 0) {
        return 0;
    }
    Py_ssize_t gc = wbuf_zeros(&w->heap, WS_GC_HEAD_SIZE + sizeof(PySliceObject));
    if (gc < 0) {
        return 0;
    }
    size_t obj = (size_t)gc + WS_GC_HEAD_SIZE;
    if (put_header(w, obj, WS_TYPE_SLICE) < 0
        || put_word(w, obj + offsetof(PySliceObject, start), start) < 0
        || put_word(w, obj + offsetof(PySliceObject, stop), stop) < 0
        || put_word(w, obj + offsetof(PySliceObject, step), step) < 0) {
        return 0;
    }
    return heap_ref(w, obj);
}

static uint64_t
emit_frozenset(writer *w, PyObject *op)
{
    if (PySet_GET_SIZE(op) == 0) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_EMPTY_FROZENSET);
    }
    PyObject *items = PySequence_Tuple(op);
    if (items == NULL) {
        return 0;
    }
    Py_ssize_t off = emit_tuple_object(w, items);
    Py_DECREF(items);
    return off < 0 ? 0 : heap_ref(w, (size_t)off) | WS_REF_FROZENSET;
}

/* Is op stored as image type t (a code object's reference fields)? */
static int
has_image_type(PyObject *op, int t)
{
    switch (t) {
    case WS_TYPE_TUPLE:
        return PyTuple_CheckExact(op);
    case WS_TYPE_STR:
        return PyUnicode_CheckExact(op);
    case WS_TYPE_BYTES:
        return PyBytes_CheckExact(op);
    default:
        return 0;
    }
}

static uint64_t
emit_code(writer *w, PyCodeObject *co)
{
#define EMIT_FIELD(f, want) \
    if (!has_image_type(co->f, want)) { \
        PyErr_Format(ws_ImageError, "code object %R: " #f " is a %.100s", \
                     co, Py_TYPE(co->f)->tp_name); \
        return 0; \
    } \
    uint64_t w_##f = emit(w, co->f); \
    if (w_##f == 0) { \
        return 0; \
    }
    WS_CODE_REF_FIELDS(EMIT_FIELD)
#undef EMIT_FIELD

    size_t used = offsetof(PyCodeObject, co_code_adaptive)
                  + (size_t)Py_SIZE(co) * WS_CODE_UNIT_SIZE;
    Py_ssize_t off = wbuf_zeros(&w->heap, round_up(used, WS_ALIGN));
    if (off < 0) {
        return 0;
    }
    unsigned char *dst = w->heap.data + off;
    memcpy(dst, co, used);
    ws_code_clear_runtime_state((PyCodeObject *)dst);
    if (put_header(w, (size_t)off, WS_TYPE_CODE) < 0) {
        return 0;
    }
#define PUT_FIELD(f, want) \
    if (put_word(w, (size_t)off + offsetof(PyCodeObject, f), w_##f) < 0) { \
        return 0; \
    }
    WS_CODE_REF_FIELDS(PUT_FIELD)
#undef PUT_FIELD
    w->n_code++;
    return heap_ref(w, (size_t)off);
}

static uint64_t
emit_uncached(writer *w, PyObject *op)
{
    if (op == Py_None) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_NONE);
    }
    if (op == Py_True) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_TRUE);
    }
    if (op == Py_False) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_FALSE);
    }
    if (op == Py_Ellipsis) {
        return WS_TAGGED(WS_REF_CONST, WS_CONST_ELLIPSIS);
    }
    if (PyUnicode_CheckExact(op)) {
        return emit_str(w, op);
    }
    if (PyBytes_CheckExact(op)) {
        return emit_bytes(w, op);
    }
    if (PyLong_CheckExact(op)) {
        return emit_int(w, op);
    }
    if (PyFloat_CheckExact(op)) {
        return emit_plain(w, op, sizeof(PyFloatObject), WS_TYPE_FLOAT);
    }
    if (PyComplex_CheckExact(op)) {
        return emit_plain(w, op, sizeof(PyComplexObject), WS_TYPE_COMPLEX);
    }
    if (Py_IS_TYPE(op, &PySlice_Type)) {
        return emit_slice(w, op);
    }
    if (PyTuple_CheckExact(op)) {
        return emit_tuple(w, op);
    }
    if (PyFrozenSet_CheckExact(op)) {
        return emit_frozenset(w, op);
    }
    if (PyCode_Check(op)) {
        return emit_code(w, (PyCodeObject *)op);
    }
    PyErr_Format(ws_ImageError, "cannot store an object of type %.100s: %.200R",
                 Py_TYPE(op)->tp_name, op);
    return 0;
}

/* Emit any object; returns its tagged word, or 0 with an exception set.
   Objects reached twice within a module are stored once (by identity, as
   marshal's references do). */
static uint64_t
emit(writer *w, PyObject *op)
{
    PyObject *key = PyLong_FromVoidPtr(op);
    if (key == NULL) {
        return 0;
    }
    uint64_t r = 0;
    PyObject *hit = PyDict_GetItemWithError(w->memo, key);
    if (hit != NULL) {
        r = PyLong_AsUnsignedLongLong(hit);
        goto done;
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    if (++w->depth > MAX_DEPTH) {
        PyErr_SetString(ws_ImageError, "object graph nested too deeply");
        w->depth--;
        goto done;
    }
    r = emit_uncached(w, op);
    w->depth--;
    if (r != 0) {
        PyObject *val = PyLong_FromUnsignedLongLong(r);
        if (val == NULL || PyDict_SetItem(w->memo, key, val) < 0) {
            r = 0;
        }
        Py_XDECREF(val);
    }
done:
    Py_DECREF(key);
    return r;
}

/* ---- Modules -------------------------------------------------------- */

typedef struct {
    const char *name;
    Py_ssize_t name_len;
    const char *origin;
    Py_ssize_t origin_len;
    int is_package;
    int64_t mtime_ns;
    uint64_t size, hash, dev, ino;
} module_meta;

static int
meta_int(PyObject *meta, const char *key, int is_signed, void *out)
{
    PyObject *v = PyDict_GetItemString(meta, key);
    if (v == NULL || v == Py_None) {
        return 0;
    }
    if (is_signed) {
        *(int64_t *)out = PyLong_AsLongLong(v);
    }
    else {
        *(uint64_t *)out = PyLong_AsUnsignedLongLongMask(v);
    }
    return PyErr_Occurred() ? -1 : 0;
}

static int
parse_meta(PyObject *meta, module_meta *m)
{
    if (meta == Py_None) {
        return 0;
    }
    if (!PyDict_Check(meta)) {
        PyErr_SetString(PyExc_TypeError, "module metadata must be a dict or None");
        return -1;
    }
    PyObject *pkg = PyDict_GetItemString(meta, "is_package");
    if (pkg != NULL && (m->is_package = PyObject_IsTrue(pkg)) < 0) {
        return -1;
    }
    PyObject *origin = PyDict_GetItemString(meta, "origin");
    if (origin != NULL && origin != Py_None) {
        m->origin = PyUnicode_AsUTF8AndSize(origin, &m->origin_len);
        if (m->origin == NULL) {
            return -1;
        }
    }
    if (meta_int(meta, "source_mtime_ns", 1, &m->mtime_ns) < 0
        || meta_int(meta, "source_size", 0, &m->size) < 0
        || meta_int(meta, "source_dev", 0, &m->dev) < 0
        || meta_int(meta, "source_ino", 0, &m->ino) < 0
        || meta_int(meta, "source_hash", 0, &m->hash) < 0) {
        return -1;
    }
    return 0;
}

/* Copy one module's code into a new segment and add its entry.  On error
   the segment is rolled back and an exception is set. */
static int
write_module(writer *w, const module_meta *m, PyObject *code)
{
    /* A fresh graph, as a normal import would have it. */
    PyObject *data = PyMarshal_WriteObjectToString(code, Py_MARSHAL_VERSION);
    if (data == NULL) {
        return -1;
    }
    PyObject *fresh = PyMarshal_ReadObjectFromString(PyBytes_AS_STRING(data),
                                                     PyBytes_GET_SIZE(data));
    Py_DECREF(data);
    if (fresh == NULL) {
        return -1;
    }
    w->seg_start = w->heap.len;
    w->bitmap.len = 0;
    w->n_code = 0;
    PyDict_Clear(w->memo);
    uint64_t root = emit(w, fresh);
    Py_DECREF(fresh);
    PyDict_Clear(w->memo);
    if (root == 0) {
        goto fail;
    }

    struct ws_module e = {0};
    e.seg_off = w->seg_start;
    e.seg_size = w->heap.len - w->seg_start;
    e.root_off = root - w->heap_base;
    e.n_code = w->n_code;
    e.flags = m->is_package ? WS_MODULE_PACKAGE : 0;
    e.source_mtime_ns = m->mtime_ns;
    e.source_size = m->size;
    e.source_dev = m->dev;
    e.source_ino = m->ino;
    e.source_hash = m->hash;

    size_t bitmap_size = round_up(e.seg_size / 8, 8) / 8;
    if (w->bitmap.len < bitmap_size
        && wbuf_zeros(&w->bitmap, bitmap_size - w->bitmap.len) < 0) {
        goto fail;
    }
    Py_ssize_t r = wbuf_append(&w->reloc, w->bitmap.data, bitmap_size);
    if (r < 0 || wbuf_zeros(&w->reloc, round_up(bitmap_size, 8) - bitmap_size) < 0) {
        goto fail;
    }
    e.reloc_off = (uint64_t)r;
    ws_checksum_state st;
    ws_checksum_init(&st);
    ws_checksum_update(&st, w->heap.data + e.seg_off, e.seg_size);
    ws_checksum_update(&st, w->bitmap.data, bitmap_size);
    e.seg_check = ws_checksum_final(&st);

    Py_ssize_t name_off = wbuf_append(&w->names, m->name, (size_t)m->name_len);
    Py_ssize_t origin_off = wbuf_append(&w->names, m->origin, (size_t)m->origin_len);
    if (name_off < 0 || origin_off < 0) {
        goto fail;
    }
    if (w->names.len > UINT32_MAX) {
        PyErr_SetString(ws_ImageError, "module names and paths too long");
        goto fail;
    }
    e.name_off = (uint32_t)name_off;
    e.name_len = (uint32_t)m->name_len;
    e.origin_off = (uint32_t)origin_off;
    e.origin_len = (uint32_t)m->origin_len;
    if (wbuf_append(&w->modules, &e, sizeof e) < 0) {
        goto fail;
    }
    return 0;

fail:
    w->heap.len = w->seg_start;
    return -1;
}

/* ---- The file ------------------------------------------------------- */

static uint64_t
entry_check(const struct ws_module *e, const char *names)
{
    struct ws_module copy = *e;
    copy.entry_check = 0;
    ws_checksum_state st;
    ws_checksum_init(&st);
    ws_checksum_update(&st, &copy, sizeof copy);
    ws_checksum_update(&st, names + e->name_off, e->name_len);
    ws_checksum_update(&st, names + e->origin_off, e->origin_len);
    return ws_checksum_final(&st);
}

static int
build_index(writer *w, uint32_t n, uint32_t *slots_out, wbuf *index)
{
    uint32_t slots = 8;
    while (slots < 2 * (uint64_t)n) {
        slots *= 2;
    }
    if (wbuf_zeros(index, (size_t)slots * 4) < 0) {
        return -1;
    }
    uint32_t *table = (uint32_t *)index->data;
    struct ws_module *mods = (struct ws_module *)w->modules.data;
    for (uint32_t i = 0; i < n; i++) {
        const char *name = (const char *)w->names.data + mods[i].name_off;
        uint64_t h = ws_checksum(name, mods[i].name_len);
        uint32_t s = (uint32_t)h & (slots - 1);
        while (table[s] != 0) {
            s = (s + 1) & (slots - 1);
        }
        table[s] = i + 1;
        mods[i].entry_check = entry_check(&mods[i], (const char *)w->names.data);
    }
    *slots_out = slots;
    return 0;
}

static int
write_all(int fd, const void *data, size_t len, uint64_t off)
{
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Number of checksum blocks over atoms + atomidx (laid out already). */
static uint64_t
atom_blocks(const struct ws_header *h)
{
    uint64_t start = h->sections[WS_SEC_ATOMS].offset;
    uint64_t end = h->sections[WS_SEC_ATOMIDX].offset
                   + h->sections[WS_SEC_ATOMIDX].size;
    return (end - start + WS_ATOM_BLOCK - 1) / WS_ATOM_BLOCK;
}

/* The checksum of each block of the atoms and atomidx sections as they
   will be in the file (padding between them included, as zeros). */
static int
atom_block_checks(writer *w, const struct ws_header *h, wbuf *out)
{
    uint64_t start = h->sections[WS_SEC_ATOMS].offset;
    uint64_t len = h->sections[WS_SEC_ATOMIDX].offset
                   + h->sections[WS_SEC_ATOMIDX].size - start;
    unsigned char *region = PyMem_Calloc(1, len ? len : 1);
    if (region == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(region, w->atoms.data, w->atoms.len);
    memcpy(region + (h->sections[WS_SEC_ATOMIDX].offset - start),
           w->atomidx.data, w->atomidx.len);
    int r = 0;
    for (uint64_t b = 0; b < atom_blocks(h); b++) {
        uint64_t off = b * WS_ATOM_BLOCK;
        uint64_t n = len - off < WS_ATOM_BLOCK ? len - off : WS_ATOM_BLOCK;
        uint64_t c = ws_checksum(region + off, n);
        if (wbuf_append(out, &c, sizeof c) < 0) {
            r = -1;
            break;
        }
    }
    PyMem_Free(region);
    return r;
}

/* Lay out the sections, write them to a temporary file, write the magic
   last and rename the file into place.  Returns the file size or -1. */
static int64_t
write_file(writer *w, PyObject *path)
{
    uint32_t n = (uint32_t)(w->modules.len / sizeof(struct ws_module));
    wbuf index = {0}, atomcheck = {0};
    PyObject *tmp = NULL, *tmp_b = NULL, *path_b = NULL;
    int64_t result = -1;
    int fd = -1;
    struct ws_header h;
    memset(&h, 0, sizeof h);
    if (build_index(w, n, &h.index_slots, &index) < 0) {
        goto done;
    }
    size_t n_atoms = w->atomidx.len / sizeof(struct ws_atom);

    memcpy(h.magic, WS_MAGIC, WS_MAGIC_SIZE);
    h.format_version = WS_FORMAT_VERSION;
    h.header_size = sizeof h;
    ws_fingerprint_fill(&h.fingerprint);
    h.preferred_base = w->heap_base - WS_PAGE_SIZE;
    h.n_modules = n;
    h.n_atoms = (uint32_t)n_atoms;

    /* Heap first: its file offset is fixed (one page), so heap pointers can
       be written before the other sections' sizes are known. */
    const wbuf *content[WS_SEC_COUNT];
    content[WS_SEC_HEAP] = &w->heap;
    content[WS_SEC_RELOC] = &w->reloc;
    content[WS_SEC_ATOMS] = &w->atoms;
    content[WS_SEC_ATOMIDX] = &w->atomidx;
    content[WS_SEC_MODULES] = &w->modules;
    content[WS_SEC_INDEX] = &index;
    content[WS_SEC_NAMES] = &w->names;
    content[WS_SEC_ATOMCHECK] = &atomcheck;
    content[WS_SEC_META] = &w->meta;
    static const enum ws_section order[WS_SEC_COUNT] = {
        WS_SEC_HEAP, WS_SEC_RELOC, WS_SEC_ATOMS, WS_SEC_ATOMIDX,
        WS_SEC_ATOMCHECK, WS_SEC_MODULES, WS_SEC_INDEX, WS_SEC_NAMES,
        WS_SEC_META,
    };
    uint64_t off = WS_PAGE_SIZE;
    for (int i = 0; i < WS_SEC_COUNT; i++) {
        enum ws_section s = order[i];
        h.sections[s].offset = off;
        h.sections[s].size = s == WS_SEC_ATOMCHECK
                             ? atom_blocks(&h) * sizeof(uint64_t)
                             : content[s]->len;
        off = round_up(off + h.sections[s].size, WS_PAGE_SIZE);
        if (s == WS_SEC_ATOMCHECK && atom_block_checks(w, &h, &atomcheck) < 0) {
            goto done;
        }
    }
    h.file_size = off;
    h.meta_check = ws_checksum(w->meta.data, w->meta.len);
    h.header_check = 0;
    h.header_check = ws_checksum(&h, sizeof h);

    tmp = PyUnicode_FromFormat("%U.tmp.%d", path, (int)getpid());
    if (tmp == NULL || !PyUnicode_FSConverter(tmp, &tmp_b)
        || !PyUnicode_FSConverter(path, &path_b)) {
        goto done;
    }
    const char *tmp_c = PyBytes_AS_STRING(tmp_b);
    /* A name of our own, never a file or symlink someone left there: a
       leftover of a dead process with our pid is removed first. */
    unlink(tmp_c);
    fd = open(tmp_c, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              0644);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, tmp);
        goto done;
    }
    struct ws_header unfinished = h;
    unfinished.magic[0] = WS_MAGIC_UNFINISHED;
    int bad = write_all(fd, &unfinished, sizeof unfinished, 0) < 0;
    for (int s = 0; s < WS_SEC_COUNT && !bad; s++) {
        bad = write_all(fd, content[s]->data, content[s]->len,
                        h.sections[s].offset) < 0;
    }
    bad = bad || ftruncate(fd, (off_t)h.file_size) < 0;
    bad = bad || write_all(fd, h.magic, 1, 0) < 0;
    if (bad || close(fd) < 0) {
        fd = -1;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, tmp);
        unlink(tmp_c);
        goto done;
    }
    fd = -1;
    if (rename(tmp_c, PyBytes_AS_STRING(path_b)) < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        unlink(tmp_c);
        goto done;
    }
    result = (int64_t)h.file_size;
done:
    if (fd >= 0) {
        close(fd);
    }
    Py_XDECREF(tmp);
    Py_XDECREF(tmp_b);
    Py_XDECREF(path_b);
    wbuf_free(&index);
    wbuf_free(&atomcheck);
    return result;
}

/* Record why `name` was left out, clearing the exception. */
static int
skip_module(PyObject *skipped, PyObject *name)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *reason = value ? PyObject_Str(value) : NULL;
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (reason == NULL) {
        return -1;
    }
    PyObject *item = PyTuple_Pack(2, name, reason);
    Py_DECREF(reason);
    if (item == NULL) {
        return -1;
    }
    int r = PyList_Append(skipped, item);
    Py_DECREF(item);
    return r;
}

PyObject *
ws_write_image(PyObject *path, PyObject *entries, uint64_t preferred_base,
               const char *meta, Py_ssize_t meta_len)
{
    if (preferred_base % WS_PAGE_SIZE != 0 || preferred_base == 0) {
        PyErr_SetString(PyExc_ValueError, "preferred base must be a non-zero "
                        "multiple of the page size");
        return NULL;
    }
    writer w;
    memset(&w, 0, sizeof w);
    w.heap_base = preferred_base + WS_PAGE_SIZE;
    if (meta_len > 0 && wbuf_append(&w.meta, meta, (size_t)meta_len) < 0) {
        return NULL;
    }
    PyObject *result = NULL, *skipped = NULL, *seen = NULL, *it = NULL,
             *item = NULL;
    w.atom_keys = PyDict_New();
    w.memo = PyDict_New();
    skipped = PyList_New(0);
    seen = PySet_New(NULL);
    it = PyObject_GetIter(entries);
    if (w.atom_keys == NULL || w.memo == NULL || skipped == NULL
        || seen == NULL || it == NULL) {
        goto done;
    }
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *name, *code, *meta = Py_None;
        if (!PyArg_ParseTuple(item, "UO!|O:entry", &name, &PyCode_Type,
                              &code, &meta)) {
            goto done;
        }
        module_meta m = {0};
        m.name = PyUnicode_AsUTF8AndSize(name, &m.name_len);
        if (m.name == NULL || parse_meta(meta, &m) < 0) {
            goto done;
        }
        int dup = PySet_Contains(seen, name);
        if (dup < 0 || PySet_Add(seen, name) < 0) {
            goto done;
        }
        if (dup) {
            PyErr_Format(ws_ImageError, "module %U appears twice", name);
        }
        if (dup || write_module(&w, &m, code) < 0) {
            if (!PyErr_ExceptionMatches(ws_ImageError)
                && !PyErr_ExceptionMatches(PyExc_ValueError)) {
                goto done;
            }
            if (skip_module(skipped, name) < 0) {
                goto done;
            }
        }
        Py_CLEAR(item);
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    int64_t size = write_file(&w, path);
    if (size < 0) {
        goto done;
    }
    result = Py_BuildValue(
        "{s:n,s:n,s:L,s:n,s:n,s:n,s:O}",
        "modules", (Py_ssize_t)(w.modules.len / sizeof(struct ws_module)),
        "atoms", (Py_ssize_t)(w.atomidx.len / sizeof(struct ws_atom)),
        "size", (long long)size,
        "heap_bytes", (Py_ssize_t)w.heap.len,
        "atom_bytes", (Py_ssize_t)w.atoms.len,
        "reloc_bytes", (Py_ssize_t)w.reloc.len,
        "skipped", skipped);
done:
    Py_XDECREF(item);
    Py_XDECREF(it);
    Py_XDECREF(seen);
    Py_XDECREF(skipped);
    Py_XDECREF(w.atom_keys);
    Py_XDECREF(w.memo);
    wbuf_free(&w.heap);
    wbuf_free(&w.bitmap);
    wbuf_free(&w.reloc);
    wbuf_free(&w.atoms);
    wbuf_free(&w.atomidx);
    wbuf_free(&w.modules);
    wbuf_free(&w.names);
    wbuf_free(&w.meta);
    return result;
}

#endif /* WS_SUPPORTED */
