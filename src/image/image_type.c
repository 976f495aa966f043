/* The Image type and the other Python entry points of tier 1 (the code
 * image), added to the extension by ws_image_add (src/core/module.c):
 *
 *   Image(path, profile=False)   open an image (ImageError if unusable)
 *     .get_code(name)            the module's code object, materialised once
 *     .info(name)                the module's metadata (dict)
 *     .modules()                 names of all modules, in image order
 *     name in image              membership without materialising
 *     .stats()                   counters (and times, when profiling)
 *     .chunk_threshold           bytes patched in a chunk after which it
 *                                is made private in one piece (-1: never)
 *   write_image(path, entries, preferred_base)
 *   fingerprint()                this interpreter's fingerprint (dict)
 *   ImageError, SUPPORTED        False on builds whose layout is not known
 */
#include "image.h"
#include "checksum.h"

PyObject *ws_ImageError;

#if WS_SUPPORTED

typedef struct {
    PyObject_HEAD
    ws_image img;
    int open;
    PyObject *path;
} ImageObject;

static int
Image_init(ImageObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", "profile", NULL};
    PyObject *path = NULL;
    int profile = 0;
    if (self->open) {
        PyErr_SetString(PyExc_RuntimeError, "image already open");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|p:Image", kwlist,
                                     PyUnicode_FSConverter, &path, &profile)) {
        return -1;
    }
    int r = ws_image_open(&self->img, PyBytes_AS_STRING(path));
    if (r == 0) {
        self->open = 1;
        self->img.profile = profile;
        self->path = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path));
        r = self->path ? 0 : -1;
    }
    Py_DECREF(path);
    return r;
}

static void
Image_dealloc(ImageObject *self)
{
    if (self->open) {
        ws_image_release(&self->img);
    }
    Py_XDECREF(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
check_open(ImageObject *self)
{
    if (!self->open) {
        PyErr_SetString(PyExc_ValueError, "image is not open");
        return -1;
    }
    return 0;
}

/* Entry number for `name`: -1 with KeyError set if absent, -2 on error. */
static Py_ssize_t
lookup(ImageObject *self, PyObject *name, int raise)
{
    if (check_open(self) < 0) {
        return -2;
    }
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "module name must be a str");
        return -2;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(name, &len);
    if (s == NULL) {
        return -2;
    }
    Py_ssize_t i = ws_image_find(&self->img, s, len);
    if (i == -1 && raise) {
        PyErr_SetObject(PyExc_KeyError, name);
    }
    return i;
}

static PyObject *
Image_get_code(ImageObject *self, PyObject *name)
{
    Py_ssize_t i = lookup(self, name, 1);
    if (i < 0) {
        return NULL;
    }
    return ws_image_get_code(&self->img, (uint32_t)i);
}

static PyObject *
entry_info(ImageObject *self, uint32_t i)
{
    const struct ws_module *e = ws_image_entry(&self->img, i);
    if (e == NULL) {
        return NULL;
    }
    const char *names = self->img.names;
    return Py_BuildValue(
        "{s:s#,s:s#,s:O,s:L,s:K,s:K,s:K,s:K,s:I,s:K,s:O}",
        "name", names + e->name_off, (Py_ssize_t)e->name_len,
        "origin", names + e->origin_off, (Py_ssize_t)e->origin_len,
        "is_package", (e->flags & WS_MODULE_PACKAGE) ? Py_True : Py_False,
        "source_mtime_ns", (long long)e->source_mtime_ns,
        "source_size", (unsigned long long)e->source_size,
        "source_dev", (unsigned long long)e->source_dev,
        "source_ino", (unsigned long long)e->source_ino,
        "source_hash", (unsigned long long)e->source_hash,
        "code_objects", (unsigned int)e->n_code,
        "bytes", (unsigned long long)e->seg_size,
        "materialised", self->img.mstate[i].code ? Py_True : Py_False);
}

static PyObject *
Image_info(ImageObject *self, PyObject *name)
{
    Py_ssize_t i = lookup(self, name, 1);
    if (i < 0) {
        return NULL;
    }
    return entry_info(self, (uint32_t)i);
}

static PyObject *
Image_modules(ImageObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open(self) < 0) {
        return NULL;
    }
    uint32_t n = self->img.hdr.n_modules;
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct ws_module *e = ws_image_entry(&self->img, i);
        PyObject *s = e ? PyUnicode_DecodeUTF8(self->img.names + e->name_off,
                                               e->name_len, "strict")
                        : NULL;
        if (s == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, s);
    }
    return list;
}

static PyObject *
Image_stats(ImageObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open(self) < 0) {
        return NULL;
    }
    const ws_stats *s = &self->img.stats;
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
        "modules", s->modules, "code_objects", s->code_objects,
        "atoms", s->atoms, "interned", s->interned,
        "frozensets", s->frozensets, "words_patched", s->words_patched,
        "ns_checksum", s->ns_checksum,
        "ns_fixup", s->ns_fixup, "ns_intern", s->ns_intern,
        "ns_frozensets", s->ns_frozensets,
        "chunks_private", s->chunks_private, "ns_chunks", s->ns_chunks,
        "pages_read", s->pages_read, "reads", s->reads);
}

static int
Image_contains(ImageObject *self, PyObject *name)
{
    Py_ssize_t i = lookup(self, name, 0);
    return i >= 0 ? 1 : (i == -1 ? 0 : -1);
}

static PyObject *
Image_get_path(ImageObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->path ? self->path : Py_None);
}

static PyObject *
Image_get_header(ImageObject *self, void *Py_UNUSED(c))
{
    if (check_open(self) < 0) {
        return NULL;
    }
    const struct ws_header *h = &self->img.hdr;
    PyObject *fp = ws_fingerprint_to_dict(&h->fingerprint);
    if (fp == NULL) {
        return NULL;
    }
    static const char *const names[WS_SEC_COUNT] = {
        [WS_SEC_MODULES] = "modules", [WS_SEC_INDEX] = "index",
        [WS_SEC_NAMES] = "names", [WS_SEC_ATOMS] = "atoms",
        [WS_SEC_ATOMIDX] = "atomidx", [WS_SEC_HEAP] = "heap",
        [WS_SEC_RELOC] = "reloc", [WS_SEC_ATOMCHECK] = "atomcheck",
        [WS_SEC_META] = "meta",
    };
    PyObject *sections = PyDict_New();
    for (int i = 0; sections != NULL && i < WS_SEC_COUNT; i++) {
        PyObject *v = Py_BuildValue("(KK)",
                                    (unsigned long long)h->sections[i].offset,
                                    (unsigned long long)h->sections[i].size);
        if (v == NULL || PyDict_SetItemString(sections, names[i], v) < 0) {
            Py_CLEAR(sections);
        }
        Py_XDECREF(v);
    }
    if (sections == NULL) {
        Py_DECREF(fp);
        return NULL;
    }
    return Py_BuildValue(
        "{s:I,s:K,s:K,s:K,s:O,s:I,s:I,s:N,s:N}",
        "format_version", h->format_version,
        "file_size", (unsigned long long)h->file_size,
        "preferred_base", (unsigned long long)h->preferred_base,
        "mapped_base", (unsigned long long)(uintptr_t)self->img.base,
        "relocated", self->img.delta ? Py_True : Py_False,
        "modules", h->n_modules, "atoms", h->n_atoms,
        "fingerprint", fp,
        "sections", sections);
}

static PyObject *
Image_meta(ImageObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open(self) < 0) {
        return NULL;
    }
    const struct ws_section_entry *s = &self->img.hdr.sections[WS_SEC_META];
    if (ws_image_bring(&self->img, s->offset, s->size) < 0) {
        return NULL;
    }
    const unsigned char *p = self->img.base + s->offset;
    if (ws_checksum(p, s->size) != self->img.hdr.meta_check) {
        PyErr_SetString(ws_ImageError, "corrupt image: metadata checksum");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)s->size);
}

static PyMethodDef Image_methods[] = {
    {"meta", (PyCFunction)Image_meta, METH_NOARGS,
     "meta() -> bytes stored with the image by its writer"},
    {"get_code", (PyCFunction)Image_get_code, METH_O,
     "get_code(name) -> code\n\nThe module's code object, materialised on "
     "first use.\nKeyError if absent, ImageError if it cannot be loaded."},
    {"info", (PyCFunction)Image_info, METH_O,
     "info(name) -> dict\n\nThe module's metadata."},
    {"modules", (PyCFunction)Image_modules, METH_NOARGS,
     "modules() -> list of module names"},
    {"stats", (PyCFunction)Image_stats, METH_NOARGS,
     "stats() -> dict of load counters (times only with profile=True)"},
    {NULL}
};

static PyObject *
Image_get_chunk_threshold(ImageObject *self, void *Py_UNUSED(c))
{
    if (check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)self->img.chunk_threshold);
}

static int
Image_set_chunk_threshold(ImageObject *self, PyObject *v, void *Py_UNUSED(c))
{
    if (check_open(self) < 0) {
        return -1;
    }
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete chunk_threshold");
        return -1;
    }
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    self->img.chunk_threshold = n < 0 ? -1 : (int64_t)n;
    return 0;
}

static PyGetSetDef Image_getset[] = {
    {"chunk_threshold", (getter)Image_get_chunk_threshold,
     (setter)Image_set_chunk_threshold,
     "bytes patched in a 2 MiB chunk of the image after which the chunk "
     "is copied into a huge page in one piece\n(0: before its first "
     "write; -1, the default: never, every page is copied on its first "
     "write)", NULL},
    {"path", (getter)Image_get_path, NULL, "image file", NULL},
    {"header", (getter)Image_get_header, NULL,
     "header fields (dict); sections: name -> (file offset, size)", NULL},
    {NULL}
};

static PySequenceMethods Image_as_sequence = {
    .sq_contains = (objobjproc)Image_contains,
};

static PyTypeObject ImageType;

ws_image *
ws_image_of(PyObject *op)
{
    if (!PyObject_TypeCheck(op, &ImageType) || !((ImageObject *)op)->open) {
        return NULL;
    }
    return &((ImageObject *)op)->img;
}

static PyTypeObject ImageType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "warmstart._image.Image",
    .tp_basicsize = sizeof(ImageObject),
    .tp_dealloc = (destructor)Image_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Image(path, profile=False)\n\nAn open code image.",
    .tp_methods = Image_methods,
    .tp_getset = Image_getset,
    .tp_as_sequence = &Image_as_sequence,
    .tp_init = (initproc)Image_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *
write_image(PyObject *Py_UNUSED(mod), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", "entries", "preferred_base", "meta",
                             NULL};
    PyObject *path, *entries;
    unsigned long long base;
    Py_buffer meta = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UOK|y*:write_image", kwlist,
                                     &path, &entries, &base, &meta)) {
        return NULL;
    }
    PyObject *r = ws_write_image(path, entries, base, meta.buf, meta.len);
    if (meta.obj != NULL) {
        PyBuffer_Release(&meta);
    }
    return r;
}

#else /* !WS_SUPPORTED */

static PyObject *
write_image(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(args),
            PyObject *Py_UNUSED(kwds))
{
    PyErr_SetString(ws_ImageError, "code images are not supported by this "
                    "interpreter build");
    return NULL;
}

#endif /* WS_SUPPORTED */

static PyObject *
fingerprint(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(ignored))
{
    struct ws_fingerprint fp;
    ws_fingerprint_fill(&fp);
    return ws_fingerprint_to_dict(&fp);
}

/* For tests: a code object's co_version (0 before 3.12). */
static PyObject *
code_version(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    if (!PyCode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "expected a code object");
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    return PyLong_FromUnsignedLong(((PyCodeObject *)arg)->co_version);
#else
    return PyLong_FromLong(0);
#endif
}

static PyMethodDef image_functions[] = {
    {"_code_version", code_version, METH_O, "co_version of a code object"},
    {"write_image", (PyCFunction)(void (*)(void))write_image,
     METH_VARARGS | METH_KEYWORDS,
     "write_image(path, entries, preferred_base, meta=b'') -> summary dict\n\n"
     "entries: iterable of (name, code, meta); meta is None or a dict with\n"
     "is_package, origin, source_size, source_mtime_ns, source_hash.\n"
     "Modules that cannot be stored are listed in summary['skipped']."},
    {"fingerprint", fingerprint, METH_NOARGS,
     "fingerprint() -> dict describing this interpreter's object layout"},
    {NULL}
};

int
ws_image_add(PyObject *m)
{
    if (ws_ImageError == NULL) {
        ws_ImageError = PyErr_NewExceptionWithDoc(
            "warmstart.ImageError",
            "An image cannot be used: corrupt, truncated, foreign or written "
            "by another interpreter.", PyExc_ImportError, NULL);
        if (ws_ImageError == NULL) {
            return -1;
        }
    }
    if (PyModule_AddFunctions(m, image_functions) < 0
        || PyModule_AddObjectRef(m, "ImageError", ws_ImageError) < 0
        || PyModule_AddObjectRef(m, "SUPPORTED",
                                 WS_SUPPORTED ? Py_True : Py_False) < 0) {
        return -1;
    }
#if WS_SUPPORTED
    if (PyType_Ready(&ImageType) < 0
        || PyModule_AddObjectRef(m, "Image", (PyObject *)&ImageType) < 0) {
        return -1;
    }
#endif
    return 0;
}
