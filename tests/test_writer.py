"""Writing images: what cannot be stored is reported and left out, the
rest is written; metadata round-trips; the file never changes on use."""
import hashlib
import os
import types

import pytest

import warmstart
from warmstart import _image

BASE = 0x300000000000


def code_with_const(value):
    co = compile("X = 1\n", "weird.py", "exec")
    return co.replace(co_consts=co.co_consts + (value,))


def test_unrepresentable_constant_skips_only_that_module(tmp_path):
    p = tmp_path / "w.img"
    entries = [
        ("good", compile("A = 'fine'\n", "good.py", "exec"), None),
        ("weird", code_with_const([1, 2]), None),
        ("also_good", compile("B = (1, 2.5)\n", "also_good.py", "exec"),
         {"is_package": True, "origin": "/x/also_good/__init__.py",
          "source_mtime_ns": 123, "source_size": 45, "source_hash": 6}),
    ]
    summary = _image.write_image(str(p), entries, BASE)
    assert summary["modules"] == 2
    [(name, reason)] = summary["skipped"]
    assert name == "weird" and "list" in reason and "[1, 2]" in reason
    img = warmstart.Image(p)
    assert img.modules() == ["good", "also_good"]
    assert "weird" not in img
    info = img.info("also_good")
    assert info["is_package"] is True
    assert (info["origin"], info["source_mtime_ns"], info["source_size"],
            info["source_hash"]) == ("/x/also_good/__init__.py", 123, 45, 6)
    ns = {}
    exec(img.get_code("good"), ns)
    assert ns["A"] == "fine"
    with pytest.raises(KeyError):
        img.get_code("weird")


def test_duplicate_names(tmp_path):
    co = compile("A = 1\n", "a.py", "exec")
    summary = _image.write_image(str(tmp_path / "d.img"),
                                 [("a", co, None), ("a", co, None)], BASE)
    assert summary["modules"] == 1
    assert summary["skipped"] == [("a", "module a appears twice")]


def test_file_unchanged_by_use(tmp_path, small_image):
    p = tmp_path / "copy.img"
    p.write_bytes(open(small_image, "rb").read())
    os.chmod(p, 0o444)
    before = hashlib.sha256(p.read_bytes()).hexdigest()
    img = warmstart.Image(p)
    for name in img.modules():
        m = types.ModuleType(name)
        code = img.get_code(name)
        if name in ("json.decoder", "textwrap", "colorsys"):
            exec(code, m.__dict__)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == before


def test_unwritable_destination(tmp_path):
    co = compile("A = 1\n", "a.py", "exec")
    with pytest.raises(OSError):
        _image.write_image(str(tmp_path / "no" / "such" / "dir.img"),
                           [("a", co, None)], BASE)
    assert not list(tmp_path.iterdir())


def test_sections_laid_out_as_documented(small_image):
    """header["sections"]: every section page-aligned, inside the file, no
    two overlapping; the atom index is the next section after the atoms."""
    h = warmstart.Image(small_image).header
    sections = h["sections"]
    assert set(sections) == {"modules", "index", "names", "atoms", "atomidx",
                             "heap", "reloc", "atomcheck", "meta"}
    spans = sorted((off, off + size) for off, size in sections.values())
    for off, end in spans:
        assert off % 4096 == 0 and off >= 4096 and end <= h["file_size"]
    for (_, end), (off, _) in zip(spans, spans[1:]):
        assert end <= off
    atoms_off, atoms_size = sections["atoms"]
    assert sections["atomidx"][0] == (atoms_off + atoms_size + 4095) // 4096 * 4096
    assert sections["atomidx"][1] == 8 * h["atoms"]
    assert sections["heap"][1] > 0 and sections["reloc"][1] > 0
