"""CPython's tests of the import system and of the areas the import tier
touches, run with the whole standard library served from an image
(activated the way users do, by WARMSTART_IMAGE), give the same results as
without it."""
import os
import re
import subprocess
import sys

import pytest

from test_importer import needs_pth

SUITES = ["test_importlib", "test_import", "test_runpy", "test_pkgutil",
          "test_inspect", "test_traceback", "test_linecache",
          "test_zipimport", "test_modulefinder", "test_site", "test_pydoc",
          "test_doctest", "test_cmd_line_script"]


def regrtest(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    env.update(env_extra)
    p = subprocess.run([sys.executable, "-m", "test", *SUITES],
                       capture_output=True, text=True, env=env, timeout=3000)
    total = re.findall(r"^Total tests: .*$", p.stdout, re.M)
    result = re.findall(r"^Result: .*$", p.stdout, re.M)
    return p, total, result


@needs_pth
def test_import_suites_same_with_image(tmp_path):
    img = tmp_path / "stdlib.img"
    subprocess.run([sys.executable, "-m", "warmstart", "build", "-o", str(img),
                    "--stdlib"], check=True, capture_output=True)
    stats = tmp_path / "stats"
    warm, wtotal, wresult = regrtest({"WARMSTART_IMAGE": str(img),
                                      "WARMSTART_STATS": str(stats)})
    plain, ptotal, presult = regrtest({})
    assert (wtotal, wresult) == (ptotal, presult), warm.stdout[-4000:]
    assert warm.returncode == plain.returncode
    # The regrtest process itself (the first to write) and its children.
    served = [int(n) for n in re.findall(r"served (\d+) modules",
                                         stats.read_text())]
    assert max(served) > 150, stats.read_text()[-2000:]
