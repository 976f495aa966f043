"""Issue 13: an imaged, auto or served run is indistinguishable from a
direct run.  Each test compares stdout, stderr, exit status and side
effects with a direct run of the same command, and checks that the tier
was used where the right behaviour is to serve."""
import os
import subprocess
import sys

import pytest

PY = sys.executable

ALIAS_PKG = '''\
import sys
from importlib.machinery import PathFinder
from importlib.util import spec_from_file_location
import os

HERE = os.path.dirname(__file__)


class AliasFinder:
    """Maps the top-level name realmod to the copy vendored here, as some
    CLIs do for their dependencies."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "realmod":
            return spec_from_file_location(
                "realmod", os.path.join(HERE, "_vendor", "realmod.py"))
        return None


if {where!r} == "first":
    sys.meta_path.insert(0, AliasFinder())
else:
    sys.meta_path.insert(sys.meta_path.index(PathFinder), AliasFinder())
'''


def _run(args, cwd, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    e.update(env)
    return subprocess.run([PY, *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("where", ["first", "before-pathfinder"])
def test_other_meta_path_finders_are_asked_first(tmp_path, where):
    """A package's own finder is asked before the image, as it is asked
    before PathFinder in a direct run: the program runs the same copy of
    a library either way, and the image still serves the rest."""
    (tmp_path / "realmod.py").write_text('WHO = "top-level copy"\n')
    pkg = tmp_path / "vendorpkg"
    (pkg / "_vendor").mkdir(parents=True)
    (pkg / "__init__.py").write_text(ALIAS_PKG.format(where=where))
    (pkg / "_vendor" / "realmod.py").write_text('WHO = "vendored copy"\n')
    (pkg / "helper.py").write_text('X = 1\n')
    (tmp_path / "main.py").write_text(
        "import vendorpkg, vendorpkg.helper, realmod\n"
        "print(realmod.WHO, realmod.__file__)\n")
    img = tmp_path / "app.img"
    b = _run(["-m", "warmstart", "build", "-o", str(img), "--modules",
              "realmod,vendorpkg,vendorpkg.helper"], str(tmp_path),
             PYTHONPATH=str(tmp_path))
    assert b.returncode == 0, b.stderr
    direct = _run(["main.py"], str(tmp_path))
    assert direct.stdout.startswith("vendored copy"), direct
    imaged = _run(["main.py"], str(tmp_path), WARMSTART_IMAGE=str(img),
                  WARMSTART_STATS=str(tmp_path / "stats"))
    assert (imaged.returncode, imaged.stdout, imaged.stderr) == \
        (direct.returncode, direct.stdout, direct.stderr)
    stats = (tmp_path / "stats").read_text()
    # vendorpkg and its helper came from the image; realmod did not.
    assert "served 2 modules" in stats, stats


HEAVY = ("import json, email.parser, asyncio, decimal, argparse, logging, "
         "http.client, xml.dom.minidom, unittest, tarfile, zipfile, csv\n"
         "print('done', json.dumps([1]))\n")


def _writers(cache):
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"warmstart.auto" in cmd and str(cache).encode() in cmd:
            out.append(int(pid))
    return out


def _wait_for_writers(cache):
    import time
    for _ in range(600):
        if not _writers(cache):
            return
        time.sleep(0.05)
    raise AssertionError("image writer still running")


def test_auto_writer_detached_and_second_run_served(tmp_path):
    """WARMSTART=auto: whoever captures the output gets end-of-file when
    the program exits (the writer holds none of its descriptors); the
    second run of an unchanged program is served from the image, and
    neither it nor the third rewrites the image."""
    (tmp_path / "main.py").write_text(HEAVY)
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    direct = subprocess.run([PY, "main.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    env.update(WARMSTART="auto", WARMSTART_CACHE=str(cache))
    first = subprocess.run([PY, "main.py"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    writers = _writers(cache)
    # Alive after our end-of-file: so it did not hold the pipes.
    assert writers, "the writer had finished before the output ended"
    for pid in writers:
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == os.devnull
        assert os.getsid(pid) == pid and os.getpriority(
            os.PRIO_PROCESS, pid) >= 10
    _wait_for_writers(cache)
    assert (first.returncode, first.stdout, first.stderr) == \
        (direct.returncode, direct.stdout, direct.stderr)
    img = next(p for p in cache.iterdir() if p.name.endswith(".img"))
    ident = (os.stat(img).st_ino, os.stat(img).st_mtime_ns)
    for run in (2, 3):
        stats = tmp_path / f"stats{run}"
        r = subprocess.run([PY, "main.py"], cwd=tmp_path,
                           env=dict(env, WARMSTART_STATS=str(stats)),
                           capture_output=True, text=True)
        assert (r.returncode, r.stdout, r.stderr) == \
            (direct.returncode, direct.stdout, direct.stderr)
        served = int(stats.read_text().split("served ")[1].split()[0])
        assert served > 50, stats.read_text()
        assert "0 imported normally" in stats.read_text(), stats.read_text()
        _wait_for_writers(cache)
        assert (os.stat(img).st_ino, os.stat(img).st_mtime_ns) == ident
    assert sorted(p.name.split(".", 1)[1] for p in cache.iterdir()) == \
        ["img", "img.skip"]
