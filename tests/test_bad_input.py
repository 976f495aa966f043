"""Bad images give a clean ImageError (or KeyError for a name the damaged
index cannot find), never a crash and never a wrong object."""
import json
import os
import random
import struct
import sys

import pytest

import warmstart
from conftest import run_python
from imagefile import (ATOMREF, CONST, FROZENSET, HEAP, T_CODE, T_TUPLE,
                       TUPLE_ITEMS, ImageFile)

# Runs every image in a directory; each module must either load and equal
# the pristine image's code, or fail cleanly.  Prints one line per image
# before trying it, so a crash names its culprit.
REPLAY = r"""
import json, os, sys
import codecompare, warmstart
pristine_path, corpus = sys.argv[1:3]
pristine = warmstart.Image(pristine_path)
names = pristine.modules()
results = {}
for fn in sorted(os.listdir(corpus)):
    print("trying", fn, flush=True, file=sys.stderr)
    outcome = {"ok": 0, "errors": set(), "wrong": []}
    try:
        img = warmstart.Image(os.path.join(corpus, fn))
    except warmstart.ImageError as e:
        outcome["errors"].add(str(e).split(": ", 1)[-1])
    else:
        for n in names:
            try:
                got = img.get_code(n)
            except KeyError:
                outcome["errors"].add("not found")
                continue
            except warmstart.ImageError as e:
                outcome["errors"].add(str(e).split(": ", 2)[-1])
                continue
            if codecompare.diff(got, pristine.get_code(n), n, with_dis=False):
                outcome["wrong"].append(n)
            else:
                outcome["ok"] += 1
    outcome["errors"] = sorted(outcome["errors"])
    results[fn] = outcome
print(json.dumps(results))
"""


def replay(pristine, corpus):
    out = run_python(REPLAY, pristine, str(corpus)).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def pristine(small_image):
    with open(small_image, "rb") as f:
        return f.read()


def write(corpus, name, data):
    corpus.mkdir(exist_ok=True)
    (corpus / name).write_bytes(bytes(data))


def test_mutated_corpus(small_image, pristine, tmp_path):
    """Random bit flips, byte overwrites and truncations, everywhere."""
    rng = random.Random(20261126)
    img = ImageFile(pristine)
    corpus = tmp_path / "corpus"
    # Flips in each section, weighted so that small sections get some.
    for sec, (off, size) in img.sections.items():
        for k in range(12 if size else 0):
            data = bytearray(pristine)
            pos = off + rng.randrange(max(size, 1))
            data[pos] ^= 1 << rng.randrange(8)
            write(corpus, f"flip-{sec}-{k}", data)
    for k in range(20):
        data = bytearray(pristine)
        pos = rng.randrange(len(data))
        data[pos:pos + 8] = rng.randbytes(8)
        write(corpus, f"overwrite-{k}", data[:len(pristine)])
    for k, cut in enumerate([0, 7, 100, 503, 504, 4096, 4097]
                            + [rng.randrange(len(pristine)) for _ in range(10)]):
        write(corpus, f"truncate-{k}", pristine[:cut])
    for k in range(5):
        pos = rng.randrange(1, 400)
        data = bytearray(pristine)
        data[pos] ^= 0x10
        write(corpus, f"header-{k}", data)
    results = replay(small_image, corpus)
    assert len(results) == len(os.listdir(corpus))
    for name, r in results.items():
        assert r["wrong"] == [], name
        if name.startswith(("truncate", "header")):
            assert r["errors"] and r["ok"] == 0, (name, r)
    # Damage inside a module's objects is caught by its checksum.
    heap_flips = [r for n, r in results.items() if n.startswith("flip-heap")]
    assert all(any("checksum" in e for e in r["errors"]) for r in heap_flips), \
        heap_flips


def test_open_errors(tmp_path, pristine):
    def refused(data, match):
        p = tmp_path / "x.img"
        p.write_bytes(bytes(data))
        with pytest.raises(warmstart.ImageError, match=match):
            warmstart.Image(p)

    refused(b"", "not a warmstart image")
    refused(b"hello world" * 100, "not a warmstart image")
    unfinished = bytearray(pristine)
    unfinished[0] = ord("!")
    refused(unfinished, "not completely written")
    refused(pristine[:-1], "header checksum|truncated")
    refused(pristine + b"\0" * 4096, "truncated or extended")
    with pytest.raises(FileNotFoundError):
        warmstart.Image(tmp_path / "missing.img")
    with pytest.raises(warmstart.ImageError):
        warmstart.Image(tmp_path)


def test_foreign_fingerprint(tmp_path, pristine):
    """A consistent image from another interpreter is refused by name."""
    img = ImageFile(pristine)
    cases = {
        # Byte offsets in struct ws_header (the fingerprint starts at 16).
        "hexversion": (20, r"interpreter: Python \d+\.\d+\.\d+, this is "
                       + ".".join(map(str, sys.version_info[:3])) + "$"),
        # Same runtime, a C core compiled against other headers.
        "header": (16, r"compiled against Python \d+\.\d+\.\d+'s headers, "
                   r"this one against \d+\.\d+\.\d+'s$"),
        "magic": (24, "bytecode magic"),
        "flags": (28, "build flags"),
        "layout": (52 + 4 * 5, "sizeof|offsetof"),
    }
    for name, (offset, match) in cases.items():
        f = ImageFile(bytes(img.data))
        (v,) = struct.unpack_from("<I", f.data, offset)
        struct.pack_into("<I", f.data, offset, v ^ 0x100)
        f.reseal_header()
        p = tmp_path / f"{name}.img"
        p.write_bytes(bytes(f.data))
        with pytest.raises(warmstart.ImageError, match=match):
            warmstart.Image(p)


def crafted(pristine, edit):
    """Apply *edit(f, i, objects)* to the first module and reseal it so
    that only the structural checks can catch the change."""
    f = ImageFile(pristine)
    i = next(k for k in range(f.n_modules) if f.module_name(k) == "json.decoder")
    edit(f, i, f.objects(i))
    f.reseal_module(i)
    return f.data, f.module_name(i)


def first(objs, t):
    return next(w for w, ty in objs if ty == t)


def tuple_after_code(objs):
    c = first(objs, T_CODE)
    return next(w for w, ty in objs if ty == T_TUPLE and w > c)


EDITS = {
    # A tuple item that points at the tuple itself: a cycle.
    "cycle": (lambda f, i, o: f.set_word(
        i, first(o, T_TUPLE) + TUPLE_ITEMS, f.segment_address(i) + 8 * first(o, T_TUPLE)),
        "heap pointer"),
    # A pointer past the end of the segment (into another module).
    "escape": (lambda f, i, o: f.set_word(
        i, first(o, T_TUPLE) + TUPLE_ITEMS,
        f.segment_address(i) + f.module(i)["seg_size"] + 64), "heap pointer"),
    "atom number": (lambda f, i, o: f.set_word(
        i, first(o, T_TUPLE) + TUPLE_ITEMS, (10 ** 9 << 3) | ATOMREF), "atom number"),
    "constant number": (lambda f, i, o: f.set_word(
        i, first(o, T_TUPLE) + TUPLE_ITEMS, (0x7777 << 3) | CONST), "constant number"),
    "bad tag": (lambda f, i, o: f.set_word(
        i, first(o, T_TUPLE) + TUPLE_ITEMS, (5 << 3) | 6), "tag"),
    "unmarked": (lambda f, i, o: f.set_mark(i, first(o, T_TUPLE) + TUPLE_ITEMS, False),
                 "unmarked"),
    "extra mark": (lambda f, i, o: f.set_mark(i, first(o, T_CODE) + 6, True),
                   "relocation bitmap"),
    "tuple size": (lambda f, i, o: f.set_word(i, first(o, T_TUPLE) + 2, 1 << 40),
                   "tuple size"),
    "code size": (lambda f, i, o: f.set_word(i, first(o, T_CODE) + 2, 1 << 40),
                  "code size"),
    # co_consts (word 3 of a code object) pointing at a str atom.
    "field type": (lambda f, i, o: f.set_word(
        i, first(o, T_CODE) + 3, f.word(i, first(o, T_CODE) + 14)),
        "wrong type"),
    "frozenset of non-tuple": (lambda f, i, o: f.set_word(
        i, tuple_after_code(o) + TUPLE_ITEMS,
        f.segment_address(i) + 8 * first(o, T_CODE) | FROZENSET),
        "non-object"),
    # A segment that ends inside the root code object's fixed part, or
    # inside its object header: the room left is checked before the
    # variable part is compared with it (no unsigned wrap-around).
    "truncated code": (lambda f, i, o: f.set_module(
        i, seg_size=f.module(i)["root_off"] - f.module(i)["seg_off"] + 40),
        "code size"),
    "truncated header": (lambda f, i, o: f.set_module(
        i, seg_size=f.module(i)["root_off"] - f.module(i)["seg_off"] + 8),
        "object header"),
    "segment bounds": (lambda f, i, o: f.set_module(i, seg_size=1 << 50),
                       "module entry"),
    "root": (lambda f, i, o: f.set_module(i, root_off=f.module(i)["seg_off"]
                                          + 8 * (first(o, T_TUPLE) - 2)),
             "root|heap pointer"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_crafted_segment(case, tmp_path, pristine):
    edit, match = EDITS[case]
    data, name = crafted(pristine, edit)
    p = tmp_path / "c.img"
    p.write_bytes(bytes(data))
    code = f"""
import warmstart, sys
img = warmstart.Image({str(p)!r})
try:
    img.get_code({name!r})
except warmstart.ImageError as e:
    print("ERR", e)
else:
    print("LOADED")
# Other modules are unaffected.
print(img.get_code("json") is not None)
"""
    out = run_python(code).stdout.splitlines()
    assert out[0].startswith("ERR"), out
    import re
    assert re.search(match, out[0]), out[0]
    assert out[1] == "True"


def test_failure_is_remembered(tmp_path, pristine):
    f = ImageFile(pristine)
    i = 0
    start = f.segment_start(i)
    f.data[start + 40] ^= 0xFF
    p = tmp_path / "bad.img"
    p.write_bytes(bytes(f.data))
    img = warmstart.Image(p)
    name = f.module_name(i)
    for _ in range(2):
        with pytest.raises(warmstart.ImageError, match="module checksum"):
            img.get_code(name)
    assert img.info(name)["materialised"] is False


def test_meta_checked(tmp_path):
    from warmstart import _image
    p = tmp_path / "m.img"
    _image.write_image(str(p), [("x", compile("A = 1", "x.py", "exec"), None)],
                       0x300000000000, meta=b'{"sys_path": []}')
    assert warmstart.Image(p).meta() == b'{"sys_path": []}'
    f = ImageFile(p.read_bytes())
    f.data[f.sections["meta"][0] + 3] ^= 1
    p.write_bytes(bytes(f.data))
    img = warmstart.Image(p)
    with pytest.raises(warmstart.ImageError, match="metadata"):
        img.meta()
    assert img.get_code("x").co_consts[0] == 1
