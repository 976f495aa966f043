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
#include <string.h>

/* The builds whose layout has been checked.  Anything else compiles to a
   module that refuses every image, so imports fall back to normal. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x03100000 \
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
#if PY_VERSION_HEX >= 0x030E0000
#  define WS_SIZEOF_CODE 216
#  define WS_SIZEOF_ASCII 40
#  define WS_SIZEOF_COMPACT 56
#elif PY_VERSION_HEX >= 0x030D0000
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

/* The first word of every image object: its reference count, and from
   3.14 on the flags beside it.  3.14+: what _Py_SetImmortalUntracked
   stores on 64-bit builds -- the initial immortal count in the low 32
   bits, _Py_IMMORTAL_FLAGS in ob_flags (bits 48-63; the stack references
   of the eval loop test that bit), no overflow.  3.12-3.13: the exact
   immortal value, the only one Py_INCREF leaves alone.  3.11 has no
   immortality: a count that no program can bring down to zero. */
#if PY_VERSION_HEX >= 0x030E0000
#  define WS_IMMORTAL_WORD ((uint64_t)_Py_IMMORTAL_INITIAL_REFCNT \
                            | ((uint64_t)_Py_IMMORTAL_FLAGS << 48))
_Static_assert(offsetof(PyObject, ob_flags) == 6,
               "ob_flags moved: check WS_IMMORTAL_WORD (docs/porting.md)");
#elif PY_VERSION_HEX >= 0x030C0000
#  define WS_IMMORTAL_WORD ((uint64_t)0xFFFFFFFFu)
#else
#  define WS_IMMORTAL_WORD ((uint64_t)1 << 40)
#endif

/* Store and check that word; the whole word, whatever its fields. */
static inline void
ws_set_immortal(void *op)
{
    uint64_t w = WS_IMMORTAL_WORD;
    memcpy(op, &w, sizeof w);
}

static inline int
ws_is_immortal_word(const void *op)
{
    uint64_t w;
    memcpy(&w, op, sizeof w);
    return w == WS_IMMORTAL_WORD;
}

/* 3.14+: what a loaded object's first word becomes when a normal load
   would give a mortal object -- every object but interned strings.  The
   runtime observes immortality (the eval loop specialises LOAD_CONST on
   it, and "every immortal string is interned": interning an immortal
   str later marks it to be freed at exit).  The count is one that no
   program brings down to zero, as on 3.11; increments reaching 2**31
   saturate into immortality.  Before 3.14 image objects stay immortal. */
#if PY_VERSION_HEX >= 0x030E0000
#  define WS_MORTAL_AT_LOAD 1
#  define WS_MORTAL_WORD ((uint64_t)1 << 30)
#else
#  define WS_MORTAL_AT_LOAD 0
#endif

static inline void
ws_set_mortal_at_load(void *op)
{
#if WS_MORTAL_AT_LOAD
    uint64_t w = WS_MORTAL_WORD;
    memcpy(op, &w, sizeof w);
#else
    (void)op;
#endif
}

/* The ints the runtime caches (and marshal returns): stored as references
   to them, never copied, so that identity is as after a normal load.
   3.15 caches up to 1024. */
#define WS_SMALL_INT_MIN (-5)
#if PY_VERSION_HEX >= 0x030F0000
#  define WS_SMALL_INT_MAX 1024
#else
#  define WS_SMALL_INT_MAX 256
#endif
#ifdef _PY_NSMALLPOSINTS
_Static_assert(WS_SMALL_INT_MAX == _PY_NSMALLPOSINTS - 1,
               "small int cache changed: check layout.h");
#endif

/* 3.14+: a tuple caches its hash (from its items' randomised hashes) in
   ob_hash: -1, "not computed", in the image and after fix-up. */
#if PY_VERSION_HEX >= 0x030E0000
#  define WS_TUPLE_HASH 1
static inline void
ws_tuple_clear_hash(void *op)
{
    ((PyTupleObject *)op)->ob_hash = -1;
}
#else
#  define WS_TUPLE_HASH 0
static inline void
ws_tuple_clear_hash(void *op)
{
    (void)op;
}
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
#if PY_VERSION_HEX >= 0x030E0000
    co->_co_unique_id = 0;      /* used by free-threaded builds only */
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

/* An image str that interning made the canonical object.  3.14+ frees
   the immortal interned strings at finalisation (_PyUnicode_ClearInterned
   makes them mortal, then clears the table), which would hand image
   memory to free().  Interned as the runtime's own static strings are,
   it is left alone there.  (Its object header is left as is: the eval
   loop's stack references treat static immortals apart.) */
static inline void
ws_str_interned_at_load(PyObject *op)
{
#if PY_VERSION_HEX >= 0x030E0000
    PyASCIIObject *a = (PyASCIIObject *)op;
    if (a->state.interned == SSTATE_INTERNED_IMMORTAL) {
        a->state.interned = SSTATE_INTERNED_IMMORTAL_STATIC;
    }
#else
    (void)op;
#endif
}

/* Fix-ups a mapped str needs before use.  3.11 requires a compact
   non-ASCII string whose characters are wchar_t-sized to share its data
   as its wstr, as PyUnicode_New sets it up.  3.14+ marks every image str
   statically allocated: unicode_dealloc then revives it instead of
   freeing it.  The runtime can take any str to zero: interning one later
   as immortal (the code constructor does, for names) hands it to
   _PyUnicode_ClearInterned, which makes it mortal again at exit and
   frees it. */
static inline void
ws_str_fix_at_load(PyObject *op)
{
    PyASCIIObject *a = (PyASCIIObject *)op;
#if PY_VERSION_HEX < 0x030C0000
    if (!a->state.ascii && a->state.kind == sizeof(wchar_t)) {
        PyCompactUnicodeObject *c = (PyCompactUnicodeObject *)op;
        a->wstr = (wchar_t *)(c + 1);
        c->wstr_length = a->length;
    }
#elif PY_VERSION_HEX >= 0x030E0000
    a->state.statically_allocated = 1;
#else
    (void)a;
#endif
}

#endif /* WS_SUPPORTED */
#endif /* WS_LAYOUT_H */
