"""A reader for the image file format (src/image/image_format.h), used by
the tests to make images that are consistent but malformed: it can change
any field and recompute the checksums that cover it."""
import struct

from warmstart import _image

HEADER = struct.Struct("<8sII IIII16sI64I 4x QQ 18Q IIII QQ")
MODULE = struct.Struct("<IIIIII QQQQ qQQQQ QQ")
ATOM = struct.Struct("<II")
SECTIONS = ("modules", "index", "names", "atoms", "atomidx", "heap", "reloc",
            "atomcheck", "meta")
PAGE = 4096

# enum ws_ref_kind / ws_type / ws_const
HEAP, ATOMREF, CONST, TYPE, FROZENSET = range(5)
T_CODE, T_TUPLE, T_SLICE = 1, 2, 8
assert HEADER.size == 504 and MODULE.size == 112


class ImageFile:
    def __init__(self, data):
        self.data = bytearray(data)
        f = HEADER.unpack_from(self.data, 0)
        self.preferred_base = f[73]
        self.file_size = f[74]
        raw = f[75:93]
        self.sections = {name: (raw[2 * i], raw[2 * i + 1])
                         for i, name in enumerate(SECTIONS)}
        self.n_modules, self.n_atoms, self.index_slots = f[93:96]

    # -- header ---------------------------------------------------------
    def reseal_header(self):
        struct.pack_into("<Q", self.data, HEADER.size - 8, 0)
        h = _image._checksum(bytes(self.data[:HEADER.size]))
        struct.pack_into("<Q", self.data, HEADER.size - 8, h)

    # -- modules --------------------------------------------------------
    def module_offset(self, i):
        return self.sections["modules"][0] + i * MODULE.size

    def module(self, i):
        v = MODULE.unpack_from(self.data, self.module_offset(i))
        keys = ("name_off", "name_len", "origin_off", "origin_len", "flags",
                "n_code", "seg_off", "seg_size", "reloc_off", "root_off",
                "mtime", "size", "dev", "ino", "hash", "seg_check",
                "entry_check")
        return dict(zip(keys, v))

    def set_module(self, i, **fields):
        m = self.module(i)
        m.update(fields)
        MODULE.pack_into(self.data, self.module_offset(i), *m.values())

    def module_name(self, i):
        m = self.module(i)
        start = self.sections["names"][0] + m["name_off"]
        return bytes(self.data[start:start + m["name_len"]]).decode()

    def reseal_module(self, i):
        """Recompute module i's segment and entry checksums."""
        m = self.module(i)
        seg = self.segment_bytes(i)
        bm = self.bitmap_bytes(i)
        self.set_module(i, seg_check=_image._checksum(bytes(seg + bm)))
        m = self.module(i)
        m["entry_check"] = 0
        entry = MODULE.pack(*m.values())
        names = self.sections["names"][0]
        name = self.data[names + m["name_off"]:names + m["name_off"] + m["name_len"]]
        origin = self.data[names + m["origin_off"]:
                           names + m["origin_off"] + m["origin_len"]]
        self.set_module(i, entry_check=_image._checksum(
            bytes(entry + name + origin)))

    # -- segments -------------------------------------------------------
    def segment_start(self, i):
        return self.sections["heap"][0] + self.module(i)["seg_off"]

    def segment_bytes(self, i):
        start = self.segment_start(i)
        return self.data[start:start + self.module(i)["seg_size"]]

    def bitmap_start(self, i):
        return self.sections["reloc"][0] + self.module(i)["reloc_off"]

    def bitmap_bytes(self, i):
        n = (self.module(i)["seg_size"] // 8 + 7) // 8
        start = self.bitmap_start(i)
        return self.data[start:start + n]

    def word(self, i, w):
        return struct.unpack_from("<Q", self.data, self.segment_start(i) + 8 * w)[0]

    def set_word(self, i, w, value):
        struct.pack_into("<Q", self.data, self.segment_start(i) + 8 * w, value)

    def marked(self, i, w):
        return self.data[self.bitmap_start(i) + w // 8] >> (w % 8) & 1

    def set_mark(self, i, w, on):
        at = self.bitmap_start(i) + w // 8
        if on:
            self.data[at] |= 1 << (w % 8)
        else:
            self.data[at] &= ~(1 << (w % 8)) & 0xFF

    def objects(self, i):
        """(word, type) of each object in module i's segment, in order."""
        nwords = self.module(i)["seg_size"] // 8
        w, out = 0, []
        while w < nwords:
            if self.word(i, w) == 0 and self.word(i, w + 1) == 0:
                w += 2          # GC head
            t = self.word(i, w + 1) >> 3
            out.append((w, t))
            size = self.word(i, w + 2)
            if t == T_TUPLE:
                w += TUPLE_ITEMS + size
            elif t == T_SLICE:
                w += 5
            else:
                w += (CODE_ADAPTIVE_OFFSET + 2 * size + 7) // 8
        return out

    def segment_address(self, i):
        """Preferred address of module i's segment."""
        return self.preferred_base + PAGE + self.module(i)["seg_off"]


CODE_ADAPTIVE_OFFSET = _image.fingerprint()["layout"][
    "offsetof(PyCodeObject, co_code_adaptive)"]
# Word of a tuple's first item (3.14 caches the hash in the word before).
TUPLE_ITEMS = _image.fingerprint()["layout"][
    "offsetof(PyTupleObject, ob_item)"] // 8
