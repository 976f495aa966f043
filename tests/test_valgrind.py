"""Materialising and running image code under valgrind's memcheck: no
invalid reads or writes, no use of uninitialised memory, also when the
image is mapped away from its preferred address."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import HERE

CHILD = r"""
import sys, types, warmstart
img = warmstart.Image(sys.argv[1])
for n in img.modules():
    img.get_code(n)
img2 = warmstart.Image(sys.argv[1])
assert img2.header["relocated"]
m = types.ModuleType("j")
exec(img2.get_code("json.decoder"), m.__dict__)
assert m.JSONDecoder().decode('[1, 2, {"a": "b"}]') == [1, 2, {"a": "b"}]
t = types.ModuleType("t")
exec(img.get_code("textwrap"), t.__dict__)
assert t.fill("a " * 50, width=20).count("\n") == 4
print("ok")
"""


def test_memcheck(small_image):
    if not shutil.which("valgrind"):
        pytest.skip("valgrind not installed")
    env = dict(os.environ, PYTHONMALLOC="malloc", PYTHONPATH=HERE)
    p = subprocess.run(
        ["valgrind", "--error-exitcode=99", "--leak-check=no", "-q",
         sys.executable, "-c", CHILD, small_image],
        capture_output=True, text=True, env=env, timeout=1200)
    assert p.returncode == 0, p.stderr[-5000:]
    assert p.stdout.strip() == "ok"
