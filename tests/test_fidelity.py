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
