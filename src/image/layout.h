/* Everything warmstart knows about one CPython version's object layout.
 *
 * The writer and the loader use the interpreter's own structs (they are
 * compiled against its headers), so most layout facts come for free.  What
 * is left is here: which builds are supported, the immortal reference count,
 * the fields of a code object that are per-process state, and the few places
 * where str and int differ between versions.  Supporting a new version means
 * editing this file only.  Sources: shared/notes/cpython-object-layouts.md.
 */
#ifndef WS_LAYOUT_H
#define WS_LAYOUT_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* The builds whose layout has been checked.  Anything else compiles to a
   module that refuses every image, so imports fall back to normal. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 \
    && SIZEOF_VOID_P == 8 && !PY_BIG_ENDIAN && !defined(Py_DEBUG) \
    && !defined(Py_TRACE_REFS) && !defined(Py_GIL_DISABLED) \
    && PYLONG_BITS_IN_DIGIT == 30
#  define WS_SUPPORTED 1
#else
#  define WS_SUPPORTED 0
#endif

#if WS_SUPPORTED

/* The sizes of the structs this file describes, as checked for each
   version.  A header that changes one (a new minor version, a patched
   build) fails the build here, the place to update (docs/porting.md). */
#if PY_VERSION_HEX >= 0x030D0000
#  define WS_SIZEOF_CODE 208
#  define WS_SIZEOF_ASCII 40
#  define WS_SIZEOF_COMPACT 56
#elif PY_VERSION_HEX >= 0x030C0000
#  define WS_SIZEOF_CODE 200
#  define WS_SIZEOF_ASCII 40
#  define WS_SIZEOF_COMPACT 56
#else
#  define WS_SIZEOF_CODE 192
#  define WS_SIZEOF_ASCII 48
#  define WS_SIZEOF_COMPACT 72
#endif
_Static_assert(sizeof(PyCodeObject) == WS_SIZEOF_CODE,
               "PyCodeObject changed: check layout.h (docs/porting.md)");
_Static_assert(sizeof(PyASCIIObject) == WS_SIZEOF_ASCII,
               "PyASCIIObject changed: check layout.h (docs/porting.md)");
_Static_assert(sizeof(PyCompactUnicodeObject) == WS_SIZEOF_COMPACT,
               "PyCompactUnicodeObject changed: check layout.h "
               "(docs/porting.md)");

/* PyGC_Head is not public; in GIL builds of 3.11-3.13 it is two words
   in front of every object of a GC type (tuple here).  All zero means
   "untracked", which is what image objects must be. */
#define WS_GC_HEAD_SIZE (2 * sizeof(uintptr_t))

/* The reference count stored in every image object.  3.12+: the exact
   immortal value, the only one Py_INCREF leaves alone.  3.11 has no
   immortality: a count that no program can bring down to zero. */
#if PY_VERSION_HEX >= 0x030C0000
#  define WS_IMMORTAL_REFCNT ((Py_ssize_t)0xFFFFFFFFu)
#else
#  define WS_IMMORTAL_REFCNT ((Py_ssize_t)1 << 40)
#endif

/* Code object fields that point to objects, in the order the writer emits
   them, each with the one image type (image_format.h) it must hold: the
   writer refuses a code object whose field holds another, the loader an
   image whose tagged word points to another.  A version that adds or
   retypes a reference field changes this table and nothing else. */
#define WS_CODE_REF_FIELDS(X) \
    X(co_consts, WS_TYPE_TUPLE) \
    X(co_names, WS_TYPE_TUPLE) \
    X(co_exceptiontable, WS_TYPE_BYTES) \
    X(co_localsplusnames, WS_TYPE_TUPLE) \
    X(co_localspluskinds, WS_TYPE_BYTES) \
    X(co_filename, WS_TYPE_STR) \
    X(co_name, WS_TYPE_STR) \
    X(co_qualname, WS_TYPE_STR) \
    X(co_linetable, WS_TYPE_BYTES)

/* Bytes per bytecode unit (_Py_CODEUNIT, internal since 3.13); Py_SIZE of
   a code object counts units. */
#define WS_CODE_UNIT_SIZE 2

/* Where the digits of an int start, and how many there are. */
#if PY_VERSION_HEX >= 0x030C0000
#  define WS_LONG_DIGITS_OFFSET offsetof(PyLongObject, long_value.ob_digit)
static inline Py_ssize_t
ws_long_ndigits(PyObject *op)
{
    return (Py_ssize_t)(((PyLongObject *)op)->long_value.lv_tag >> 3);
}
#else
#  define WS_LONG_DIGITS_OFFSET offsetof(PyLongObject, ob_digit)
static inline Py_ssize_t
ws_long_ndigits(PyObject *op)
{
    Py_ssize_t n = Py_SIZE(op);
    return n < 0 ? -n : n;
}
#endif

/* bytes caches its hash in ob_shash, the word before the data.  The field
   is declared deprecated (3.11+) but still used, so reach it by offset. */
#define WS_BYTES_HASH_OFFSET (offsetof(PyBytesObject, ob_sval) - sizeof(Py_hash_t))

/* sizeof/offsetof values recorded in the image's fingerprint and compared
   on load.  Append only within a format version. */
#define WS_LAYOUT_ITEMS(X) \
    X(sizeof(PyObject)) X(sizeof(PyVarObject)) \
    X(offsetof(PyObject, ob_type)) X(WS_GC_HEAD_SIZE) \
    X(sizeof(PyASCIIObject)) X(sizeof(PyCompactUnicodeObject)) \
    X(offsetof(PyASCIIObject, hash)) X(offsetof(PyASCIIObject, state)) \
    X(WS_BYTES_HASH_OFFSET) X(offsetof(PyBytesObject, ob_sval)) \
    X(WS_LONG_DIGITS_OFFSET) X(sizeof(digit)) X(PyLong_SHIFT) \
    X(sizeof(PyFloatObject)) X(sizeof(PyComplexObject)) \
    X(offsetof(PyTupleObject, ob_item)) \
    X(sizeof(PyCodeObject)) X(offsetof(PyCodeObject, co_code_adaptive)) \
    X(offsetof(PyCodeObject, co_consts)) X(offsetof(PyCodeObject, co_names)) \
    X(offsetof(PyCodeObject, co_exceptiontable)) \
    X(offsetof(PyCodeObject, co_flags)) \
    X(offsetof(PyCodeObject, co_localsplusnames)) \
    X(offsetof(PyCodeObject, co_localspluskinds)) \
    X(offsetof(PyCodeObject, co_filename)) \
    X(offsetof(PyCodeObject, co_name)) \
    X(offsetof(PyCodeObject, co_qualname)) \
    X(offsetof(PyCodeObject, co_linetable)) \
    X(offsetof(PyCodeObject, co_weakreflist)) \
    X(offsetof(PyCodeObject, _co_firsttraceable)) \
    X(offsetof(PyCodeObject, co_extra)) \
    X(sizeof(wchar_t))

/* Clear the fields of a code object copy that belong to the process that
   made it: caches, instrumentation, weak references, version.  What stays
   is what a fresh, never-executed object of this build holds (the writer
   copies from one).  co_version is 0 here; on 3.13+ the loader assigns a
   fresh one (see ws_take_code_versions). */
static inline void
ws_code_clear_runtime_state(PyCodeObject *co)
{
    co->co_weakreflist = NULL;
    co->co_extra = NULL;
#if PY_VERSION_HEX >= 0x030C0000
    co->co_version = 0;
    co->_co_cached = NULL;
    co->_co_instrumentation_version = 0;
    co->_co_monitoring = NULL;
#else
    co->_co_code = NULL;
    co->_co_linearray = NULL;
    co->_co_linearray_entry_size = 0;
#endif
#if PY_VERSION_HEX >= 0x030D0000
    co->co_executors = NULL;
#endif
}

/* Does a code object need a co_version from the interpreter at load?
   3.12 assigns function versions lazily when co_version is 0; 3.13 does
   not, so 0 would disable call specialisation. */
#define WS_NEEDS_CODE_VERSION (PY_VERSION_HEX >= 0x030D0000)

/* Prepare a copy of a compact str for the image: no cached hash, not
   interned, no cached UTF-8 or wchar_t buffers (those point into the
   writer's heap).  `state` is reached through the struct so the compiler
   lays out the bit fields. */
static inline void
ws_str_clear_runtime_state(PyObject *copy)
{
    PyASCIIObject *a = (PyASCIIObject *)copy;
    a->hash = -1;
    a->state.interned = 0;
#if PY_VERSION_HEX >= 0x030C0000
    a->state.statically_allocated = 0;
#else
    a->wstr = NULL;
#endif
    if (!a->state.ascii) {
        PyCompactUnicodeObject *c = (PyCompactUnicodeObject *)copy;
        c->utf8 = NULL;
        c->utf8_length = 0;
#if PY_VERSION_HEX < 0x030C0000
        c->wstr_length = 0;
#endif
    }
}

/* Fix-ups a mapped str needs before use.  3.11 requires a compact
   non-ASCII string whose characters are wchar_t-sized to share its data
   as its wstr, as PyUnicode_New sets it up. */
static inline void
ws_str_fix_at_load(PyObject *op)
{
#if PY_VERSION_HEX < 0x030C0000
    PyASCIIObject *a = (PyASCIIObject *)op;
    if (!a->state.ascii && a->state.kind == sizeof(wchar_t)) {
        PyCompactUnicodeObject *c = (PyCompactUnicodeObject *)op;
        a->wstr = (wchar_t *)(c + 1);
        c->wstr_length = a->length;
    }
#else
    (void)op;
#endif
}

#endif /* WS_SUPPORTED */
#endif /* WS_LAYOUT_H */
