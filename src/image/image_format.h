/* The on-disk format of a warmstart code image.
 *
 * An image holds the compiled code of many modules, each object stored in
 * the exact memory layout of the interpreter that wrote it, so that loading
 * is a read plus a few fix-ups instead of an unmarshal.  docs/image-format.md
 * is the long version of this comment; keep the two in step.
 *
 * The file is only ever read by the build that wrote it: the fingerprint in
 * the header pins the interpreter version, build flags and every structure
 * size and offset the image relies on.  Endianness and word size therefore
 * never need converting; all integers are native.
 *
 * File layout (every section starts on a page boundary):
 *
 *   header     struct ws_header, checked in full when the image is opened
 *   modules    struct ws_module[n_modules]
 *   index      uint32_t[index_slots]: open-addressing hash table,
 *              slot = entry number + 1, 0 = empty; probing is linear
 *   names      module names and origin paths, UTF-8, not NUL-terminated
 *   meta       bytes the caller stores with the image (warmstart keeps its
 *              build record there: sys.path, directory times, flags)
 *   atoms      leaf objects (str, bytes, int, float, complex), each once
 *              per image, shared by all modules
 *   atomidx    struct ws_atom[n_atoms], directly after atoms
 *   atomcheck  uint64_t per WS_ATOM_BLOCK bytes of atoms + atomidx: the
 *              checksum of that block, checked before first use
 *   heap       one segment per module: its tuples and code objects
 *   reloc      one bitmap per segment: bit i set = word i needs a fix-up
 *
 * Pointer-sized words that need fixing up are *tagged*: the low three bits
 * say what the word means (enum ws_ref_kind).  Objects are 8-aligned, so a
 * heap pointer has tag 0 and is already correct when the file is mapped at
 * its preferred address.
 */
#ifndef WS_IMAGE_FORMAT_H
#define WS_IMAGE_FORMAT_H

#include <stdint.h>

#define WS_MAGIC "WSIMAGE1"
#define WS_MAGIC_SIZE 8
/* Written in place of magic[0] until the file is complete, so that an
   interrupted write reads as "unfinished image", not as "not an image". */
#define WS_MAGIC_UNFINISHED '!'
/* Format history: 1 first; 2 atom blocks checked lazily; 3 the source's
   device and inode in each module entry (a symlink switch that keeps
   size and mtime is a change); 4 slice objects in segments (3.14 makes
   slice constants) and small-int constants up to the runtime's bound. */
#define WS_FORMAT_VERSION 4
#define WS_PAGE_SIZE 4096
#define WS_ALIGN 8

/* What a tagged word means.  `word` is the value in the file, `delta` is
   (address the file is mapped at) - (header.preferred_base). */
enum ws_ref_kind {
    /* ptr = word + delta: an object earlier in the same segment. */
    WS_REF_HEAP = 0,
    /* ptr = resolved atom number (word >> 3), see struct ws_atom. */
    WS_REF_ATOM = 1,
    /* ptr = the runtime's own object number (word >> 3), enum ws_const. */
    WS_REF_CONST = 2,
    /* ob_type = the runtime's type number (word >> 3), enum ws_type.
       Only in the ob_type word of an object: it marks where objects start. */
    WS_REF_TYPE = 3,
    /* ptr = frozenset(tuple at (word & ~7) + delta), built at load: a set's
       table depends on randomised hashes, so it cannot be stored. */
    WS_REF_FROZENSET = 4,
};
#define WS_TAG_BITS 3
#define WS_TAG_MASK ((uint64_t)7)
#define WS_TAGGED(kind, value) (((uint64_t)(value) << WS_TAG_BITS) | (kind))

/* Types, as stored in ob_type.  0 is never a valid type. */
enum ws_type {
    WS_TYPE_CODE = 1,
    WS_TYPE_TUPLE,
    WS_TYPE_STR,
    WS_TYPE_BYTES,
    WS_TYPE_INT,
    WS_TYPE_FLOAT,
    WS_TYPE_COMPLEX,
    /* A constant slice (3.14+ compilers make them): GC head, header and
       three references, like a 3-item tuple without ob_size. */
    WS_TYPE_SLICE,
    WS_TYPE_COUNT
};

/* Objects the runtime owns and compares by identity. */
enum ws_const {
    WS_CONST_NONE = 0,
    WS_CONST_TRUE,
    WS_CONST_FALSE,
    WS_CONST_ELLIPSIS,
    WS_CONST_EMPTY_TUPLE,
    WS_CONST_EMPTY_STR,
    WS_CONST_EMPTY_BYTES,
    /* A new empty frozenset at each use (the compiler never makes one). */
    WS_CONST_EMPTY_FROZENSET,
    /* One-character latin-1 strings: base + character. */
    WS_CONST_CHAR = 0x100,
    /* The same, interned as a normal load would: base + character. */
    WS_CONST_CHAR_INTERNED = 0x200,
    /* One-byte bytes: base + byte. */
    WS_CONST_BYTE = 0x300,
    /* The small ints the runtime caches (WS_SMALL_INT_MIN to _MAX,
       layout.h: -5..256, 3.15 -5..1024): base - WS_SMALL_INT_MIN + value. */
    WS_CONST_SMALL_INT = 0x400,
};
#define WS_CONST_END (WS_CONST_SMALL_INT - WS_SMALL_INT_MIN + WS_SMALL_INT_MAX + 1)

enum ws_section {
    WS_SEC_MODULES = 0,
    WS_SEC_INDEX,
    WS_SEC_NAMES,
    WS_SEC_ATOMS,
    WS_SEC_ATOMIDX,
    WS_SEC_HEAP,
    WS_SEC_RELOC,
    WS_SEC_ATOMCHECK,
    WS_SEC_META,
    WS_SEC_COUNT
};

struct ws_section_entry {
    uint64_t offset;            /* from the start of the file, page-aligned */
    uint64_t size;              /* bytes used; the section may be padded */
};

/* Which interpreter wrote the image.  Any difference means refusal. */
#define WS_LAYOUT_MAX 64
struct ws_fingerprint {
    uint32_t hexversion;        /* PY_VERSION_HEX of the headers built against */
    uint32_t runtime_hexversion;/* Py_Version of the running libpython */
    uint32_t pyc_magic;         /* PyImport_GetMagicNumber() */
    uint32_t flags;             /* WS_FP_* build flags below */
    char cache_tag[16];         /* sys.implementation.cache_tag */
    uint32_t n_layout;          /* entries used in layout[] */
    /* sizeof/offsetof values, in the order of WS_LAYOUT_ITEMS (layout.h). */
    uint32_t layout[WS_LAYOUT_MAX];
};
#define WS_FP_DEBUG        0x01  /* Py_DEBUG */
#define WS_FP_TRACE_REFS   0x02  /* Py_TRACE_REFS */
#define WS_FP_GIL_DISABLED 0x04  /* Py_GIL_DISABLED */
#define WS_FP_BIG_ENDIAN   0x08
#define WS_FP_PTR64        0x10

struct ws_header {
    /* WS_MAGIC; the first byte is WS_MAGIC_UNFINISHED until the last write. */
    char magic[WS_MAGIC_SIZE];
    /* WS_FORMAT_VERSION: the layout of this file, not of the objects. */
    uint32_t format_version;
    /* sizeof(struct ws_header), a cheap guard against a changed struct. */
    uint32_t header_size;
    struct ws_fingerprint fingerprint;
    /* The address the file expects to be mapped at.  Heap pointers are
       stored as if it were; mapping elsewhere adds the difference to each. */
    uint64_t preferred_base;
    /* Exact size of the file; a shorter file is truncated, a longer one is
       not an image we wrote. */
    uint64_t file_size;
    struct ws_section_entry sections[WS_SEC_COUNT];
    uint32_t n_modules;
    uint32_t n_atoms;
    /* Size of the index hash table: a power of two, > n_modules. */
    uint32_t index_slots;
    uint32_t reserved;
    /* ws_checksum of the meta section, checked when it is read. */
    uint64_t meta_check;
    /* ws_checksum of this header with this field set to zero.  Per-module
       and per-atom data carry their own checksums, checked on first use, so
       opening an image costs the same whatever its size. */
    uint64_t header_check;
};

#define WS_MODULE_PACKAGE 0x1

/* One module.  Offsets into "names" are relative to that section; seg_off
   and root_off to the heap section, reloc_off to the reloc section. */
struct ws_module {
    uint32_t name_off, name_len;
    uint32_t origin_off, origin_len;
    uint32_t flags;             /* WS_MODULE_* */
    uint32_t n_code;            /* code objects in the segment */
    uint64_t seg_off, seg_size; /* the module's objects; 8-aligned */
    uint64_t reloc_off;         /* bitmap of seg_size / 8 bits */
    uint64_t root_off;          /* the module's code object */
    int64_t source_mtime_ns;    /* of the source the code was compiled from */
    uint64_t source_size;
    uint64_t source_dev, source_ino;    /* 0, 0: not recorded */
    uint64_t source_hash;       /* caller-supplied content hash, 0 = none */
    /* ws_checksum over the segment followed by its bitmap, checked before
       the segment is first fixed up. */
    uint64_t seg_check;
    /* ws_checksum over this entry (with entry_check zero), its name and
       its origin, checked whenever the entry is read. */
    uint64_t entry_check;
};

/* One leaf object in the atoms section. */
struct ws_atom {
    uint32_t offset8;           /* offset in the atoms section / 8 */
    /* Size in bytes (a multiple of 8) | WS_ATOM_* flags in the low bits. */
    uint32_t size_flags;
};
/* A normal load of the code interns this string. */
#define WS_ATOM_INTERN 0x1
#define WS_ATOM_FLAGS 0x7

/* Atoms and their index are checked in blocks of this many bytes, counted
   from the start of the atoms section through the end of atomidx, the
   first time an atom in the block is used.  Small enough that a program
   importing a few modules checks little more than what it uses, large
   enough that the check runs at memory speed. */
#define WS_ATOM_BLOCK 16384

/* The structs above are the file format.  Changing one fails the build
   here: bump WS_FORMAT_VERSION, update docs/image-format.md, then these. */
_Static_assert(sizeof(struct ws_section_entry) == 16, "file format changed");
_Static_assert(sizeof(struct ws_fingerprint) == 292, "file format changed");
_Static_assert(sizeof(struct ws_header) == 504, "file format changed");
_Static_assert(sizeof(struct ws_module) == 112, "file format changed");
_Static_assert(sizeof(struct ws_atom) == 8, "file format changed");

#endif /* WS_IMAGE_FORMAT_H */
