"""Materialising and running image code under valgrind's memcheck: no
invalid reads or writes, no use of uninitialised memory, also when the
image is mapped away from its preferred address and its chunks are
copied whole.

Some interpreters report errors of their own under memcheck (3.11 reports
uninitialised values in its evaluation loop, at start-up already).  So the
test runs a program without images as a baseline: with images there must
be no error in warmstart's code, no invalid access anywhere, and no kind
of error the baseline does not have."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import HERE

CHILD = r"""
import sys, types, warmstart, json, textwrap
if sys.argv[1] == "baseline":
    json.loads('[1, 2, {"a": "b"}]'), textwrap.fill("a " * 50, width=20)
    print("ok")
    raise SystemExit
img = warmstart.Image(sys.argv[1])
for n in img.modules():
    img.get_code(n)
img2 = warmstart.Image(sys.argv[1])
assert img2.header["relocated"]
img2.chunk_threshold = 0        # chunks copied whole before any write
m = types.ModuleType("j")
exec(img2.get_code("json.decoder"), m.__dict__)
assert m.JSONDecoder().decode('[1, 2, {"a": "b"}]') == [1, 2, {"a": "b"}]
assert img2.stats()["chunks_private"] > 0
t = types.ModuleType("t")
exec(img.get_code("textwrap"), t.__dict__)
assert t.fill("a " * 50, width=20).count("\n") == 4
print("ok")
"""


def memcheck(arg):
    env = dict(os.environ, PYTHONMALLOC="malloc", PYTHONPATH=HERE)
    p = subprocess.run(
        ["valgrind", "--leak-check=no", "--error-limit=no",
         "--num-callers=40",
         "--suppressions=" + os.path.join(HERE, "valgrind.supp"), sys.executable, "-c", CHILD, arg],
        capture_output=True, text=True, env=env, timeout=1200)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-5000:]
    (errors,) = re.findall(r"ERROR SUMMARY: (\d+) errors", p.stderr)
    kinds = set(re.findall(r"==\d+== ([A-Z][a-z].*?)(?: at 0x| of size|$)",
                           p.stderr, re.M))
    kinds = {k for k in kinds if not k.startswith(("Memcheck", "Copyright",
             "Using Valgrind", "Command", "HEAP", "ERROR SUMMARY", "For lists",
             "For counts", "All heap", "LEAK", "Rerun", "Use --"))}
    return int(errors), kinds, p.stderr


def test_memcheck(small_image):
    if not shutil.which("valgrind"):
        pytest.skip("valgrind not installed")
    baseline, base_kinds, _ = memcheck("baseline")
    errors, kinds, report = memcheck(small_image)
    blocks = re.split(r"==\d+== *\n", report)
    ours = [block for block in blocks if "_image.cpython" in block
            or re.search(r"\((image_load|image_write|image_type|module|checksum|"
                         r"fingerprint|interp_state)\.c:", block)]
    assert ours == [], "\n".join(ours)[:5000]
    assert not re.search(r"Invalid (read|write|free)|Mismatched free", report)
    if baseline == 0:
        assert errors == 0, report[-5000:]
    assert kinds <= base_kinds, (kinds, base_kinds, report[-5000:])
