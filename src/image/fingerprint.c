/* The interpreter fingerprint stored in every image (image_format.h). */
#include "image.h"

#include <string.h>
#include <stdio.h>

static const char *const layout_names[] = {
#if WS_SUPPORTED
#  define NAME(expr) #expr,
    WS_LAYOUT_ITEMS(NAME)
#  undef NAME
#endif
    NULL
};

static uint32_t
build_flags(void)
{
    uint32_t f = 0;
#ifdef Py_DEBUG
    f |= WS_FP_DEBUG;
#endif
#ifdef Py_TRACE_REFS
    f |= WS_FP_TRACE_REFS;
#endif
#ifdef Py_GIL_DISABLED
    f |= WS_FP_GIL_DISABLED;
#endif
#if PY_BIG_ENDIAN
    f |= WS_FP_BIG_ENDIAN;
#endif
#if SIZEOF_VOID_P == 8
    f |= WS_FP_PTR64;
#endif
    return f;
}

void
ws_fingerprint_fill(struct ws_fingerprint *fp)
{
    memset(fp, 0, sizeof *fp);
    fp->hexversion = PY_VERSION_HEX;
    fp->runtime_hexversion = (uint32_t)Py_Version;
    fp->pyc_magic = (uint32_t)PyImport_GetMagicNumber();
    fp->flags = build_flags();
    const char *tag = PyImport_GetMagicTag();
    if (tag != NULL) {
        strncpy(fp->cache_tag, tag, sizeof fp->cache_tag - 1);
    }
#if WS_SUPPORTED
    uint32_t n = 0;
#  define VALUE(expr) fp->layout[n++] = (uint32_t)(expr);
    WS_LAYOUT_ITEMS(VALUE)
#  undef VALUE
    fp->n_layout = n;
#endif
}

/* A PY_VERSION_HEX as people write it: 3.12.1, 3.15.0b2. */
static void
format_version(char *buf, size_t size, uint32_t hex)
{
    unsigned level = (hex >> 4) & 0xf, serial = hex & 0xf;
    const char *tag = level == 0xa ? "a" : level == 0xb ? "b"
                      : level == 0xc ? "rc" : "";
    if (*tag) {
        snprintf(buf, size, "%u.%u.%u%s%u", (unsigned)(hex >> 24),
                 (unsigned)((hex >> 16) & 0xff),
                 (unsigned)((hex >> 8) & 0xff), tag, serial);
    }
    else {
        snprintf(buf, size, "%u.%u.%u", (unsigned)(hex >> 24),
                 (unsigned)((hex >> 16) & 0xff),
                 (unsigned)((hex >> 8) & 0xff));
    }
}

PyObject *
ws_fingerprint_mismatch(const struct ws_fingerprint *theirs)
{
    struct ws_fingerprint ours;
    ws_fingerprint_fill(&ours);
    char t[32], o[32];
    if (theirs->runtime_hexversion != ours.runtime_hexversion) {
        format_version(t, sizeof t, theirs->runtime_hexversion);
        format_version(o, sizeof o, ours.runtime_hexversion);
        return PyUnicode_FromFormat("Python %s, this is %s", t, o);
    }
    if (theirs->hexversion != ours.hexversion) {
        /* Same interpreter, C cores compiled against different headers
           (a build directory shared by two interpreters of one x.y). */
        format_version(t, sizeof t, theirs->hexversion);
        format_version(o, sizeof o, ours.hexversion);
        return PyUnicode_FromFormat(
            "its C core was compiled against Python %s's headers, "
            "this one against %s's", t, o);
    }
    if (theirs->pyc_magic != ours.pyc_magic) {
        return PyUnicode_FromFormat("bytecode magic %x, this is %x",
                                    theirs->pyc_magic, ours.pyc_magic);
    }
    if (theirs->flags != ours.flags) {
        return PyUnicode_FromFormat("build flags %x, this is %x",
                                    theirs->flags, ours.flags);
    }
    if (memcmp(theirs->cache_tag, ours.cache_tag, sizeof ours.cache_tag) != 0) {
        return PyUnicode_FromFormat("cache tag %.16s, this is %s",
                                    theirs->cache_tag, ours.cache_tag);
    }
    if (theirs->n_layout != ours.n_layout) {
        return PyUnicode_FromFormat("%u layout values, this has %u",
                                    theirs->n_layout, ours.n_layout);
    }
    for (uint32_t i = 0; i < ours.n_layout; i++) {
        if (theirs->layout[i] != ours.layout[i]) {
            return PyUnicode_FromFormat("%s is %u, here %u", layout_names[i],
                                        theirs->layout[i], ours.layout[i]);
        }
    }
    if (memcmp(theirs, &ours, sizeof ours) != 0) {
        return PyUnicode_FromString("fingerprint differs");
    }
    return NULL;
}

PyObject *
ws_fingerprint_to_dict(const struct ws_fingerprint *fp)
{
    char tag[sizeof fp->cache_tag + 1] = {0};
    memcpy(tag, fp->cache_tag, sizeof fp->cache_tag);
    PyObject *layout = PyDict_New();
    if (layout == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < fp->n_layout && i < WS_LAYOUT_MAX
                         && layout_names[i] != NULL; i++) {
        PyObject *v = PyLong_FromUnsignedLong(fp->layout[i]);
        if (v == NULL || PyDict_SetItemString(layout, layout_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(layout);
            return NULL;
        }
        Py_DECREF(v);
    }
    return Py_BuildValue(
        "{s:k,s:k,s:k,s:s,s:N,s:O,s:O,s:O,s:O,s:i}",
        "hexversion", (unsigned long)fp->runtime_hexversion,
        "header_hexversion", (unsigned long)fp->hexversion,
        "pyc_magic", (unsigned long)fp->pyc_magic,
        "cache_tag", tag,
        "layout", layout,
        "debug", (fp->flags & WS_FP_DEBUG) ? Py_True : Py_False,
        "trace_refs", (fp->flags & WS_FP_TRACE_REFS) ? Py_True : Py_False,
        "gil_disabled", (fp->flags & WS_FP_GIL_DISABLED) ? Py_True : Py_False,
        "big_endian", (fp->flags & WS_FP_BIG_ENDIAN) ? Py_True : Py_False,
        "pointer_bits", (fp->flags & WS_FP_PTR64) ? 64 : 32);
}
