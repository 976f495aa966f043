"""Builds of CPython warmstart cannot test by running: the C core compiles
without a warning for a free-threaded build of this version (none can be
installed here), and compiles there to a module that refuses every image
(WS_SUPPORTED is 0, so imports are normal)."""
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror",
         "-Wno-missing-field-initializers", "-fno-strict-aliasing"]

needs_ft_headers = pytest.mark.skipif(
    sys.version_info < (3, 13) or not shutil.which("gcc"),
    reason="free-threaded builds exist from 3.13; needs gcc")


def _extension():
    """The C core's sources and include directories, as setup.py has them."""
    text = open(os.path.join(ROOT, "setup.py")).read()
    block = re.search(r"Extension\(\s*\"warmstart\._image\",(.*?)\n\)", text,
                      re.S).group(1)
    sources = re.findall(r'"(src/[^"]+\.c)"', block)
    dirs = re.findall(r'"(src/[^"]+)"', re.search(r"include_dirs=\[(.*?)\]",
                                                  block).group(1))
    assert len(sources) > 5 and dirs
    return sources, dirs


def _gcc(args, **kw):
    inc = sysconfig.get_paths()["include"]
    return subprocess.run(["gcc", *FLAGS, "-DPy_GIL_DISABLED=1", "-I" + inc,
                           *args], cwd=ROOT, capture_output=True, text=True,
                          **kw)


@needs_ft_headers
def test_free_threaded_build_compiles_without_warnings(tmp_path):
    sources, dirs = _extension()
    for src in sources:
        p = _gcc([*("-I" + d for d in dirs), "-c", src,
                  "-o", str(tmp_path / "x.o")])
        assert p.returncode == 0, (src, p.stderr[-3000:])


@needs_ft_headers
def test_free_threaded_build_refuses_images(tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text('#include "layout.h"\n'
                     "_Static_assert(!WS_SUPPORTED, \"free-threaded\");\n")
    p = _gcc(["-Isrc/image", "-fsyntax-only", str(probe)])
    assert p.returncode == 0, p.stderr[-3000:]
    # The same probe fails for this (GIL) build: the check can fail.
    q = subprocess.run(["gcc", *FLAGS, "-I" + sysconfig.get_paths()["include"],
                        "-Isrc/image", "-fsyntax-only", str(probe)],
                       cwd=ROOT, capture_output=True, text=True)
    assert q.returncode != 0 and "free-threaded" in q.stderr


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
def test_a_rebuild_into_the_same_build_directory_compiles_afresh(tmp_path):
    """build/ is named by the cache tag only: two interpreters of one x.y
    (pyenv's 3.11.7, Debian's 3.11.2) or two sets of flags share it, and a
    reused object file carries the other headers (then every image is
    refused: 'compiled against Python 3.11.7's headers').  The second
    build's flags must reach the extension it produces."""
    def build(cflags):
        env = dict(os.environ, WARMSTART_CFLAGS=cflags)
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext",
                        "--build-lib", str(tmp_path / "lib"),
                        "--build-temp", str(tmp_path / "tmp")],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        (so,) = (tmp_path / "lib" / "warmstart").glob("_image*.so")
        return so.read_bytes()

    probe = tmp_path / "probe.h"
    probe.write_text('__attribute__((used)) static const char '
                     'ws_probe[] = "WS_REBUILD_PROBE";\n')
    assert b"WS_REBUILD_PROBE" not in build("")
    assert b"WS_REBUILD_PROBE" in build(f"-include {probe}")
