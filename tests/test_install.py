"""Installing warmstart the ways users do puts the start-up hook in place.
An editable install (pip install -e) keeps the package and its C core in
the source tree: its hook names that tree, takes both start-up paths (the
C core's for a plain WARMSTART_IMAGE, _boot.main() for the rest) and
leaves sys.path as the editable install makes it (issue 15)."""
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("WARMSTART", "PYTHON"))}
    e.update(extra)
    return e


@pytest.fixture(scope="module")
def editable(tmp_path_factory):
    """A venv with warmstart installed editable from a copy of the tree
    (the in-place build writes the C core into the tree it installs)."""
    base = tmp_path_factory.mktemp("editable")
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", "*.so",
        "warmstart-exec", "tests", "bench", "fuzz"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    p = subprocess.run([py, "-m", "pip", "install", "-q", "-e", str(tree)],
                       capture_output=True, text=True, env=_env(),
                       timeout=600)
    if p.returncode != 0 and "Could not find a version" in p.stderr:
        pytest.skip("no setuptools for the isolated build: " + p.stderr[-300:])
    assert p.returncode == 0, p.stderr[-3000:]
    return py, tree


def run(py, code, cwd, **env):
    return subprocess.run([py, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=_env(**env), timeout=120)


PROGRAM = ("import json, email.parser, sys, warmstart; "
           "print(json.dumps([1]), warmstart.__file__); print(sys.path[1:])")


def test_editable_install_serves_from_an_image(editable, tmp_path):
    py, tree = editable
    img = tmp_path / "e.img"
    subprocess.run([py, "-m", "warmstart", "build", "-o", str(img),
                    "--modules", "json,email.parser"], check=True,
                   capture_output=True, env=_env())
    plain = run(py, PROGRAM, tmp_path)
    stats = tmp_path / "stats"
    warm = run(py, PROGRAM, tmp_path, WARMSTART_IMAGE=str(img),
               WARMSTART_STATS=str(stats))
    assert plain.returncode == warm.returncode == 0, warm.stderr
    assert (warm.stdout, warm.stderr) == (plain.stdout, plain.stderr)
    assert str(tree / "src" / "warmstart" / "__init__.py") in plain.stdout
    # Served, not merely imported: the stats name the image.
    text = stats.read_text()
    served = int(text.split("served ")[1].split()[0])
    assert served >= 2 and str(img) in text, text


def test_editable_install_takes_the_python_start_up_path(editable, tmp_path):
    """A damaged image goes through _boot.main(): one warning line, the
    program runs, and sys.path is as without warmstart."""
    py, _ = editable
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"junk")
    plain = run(py, PROGRAM, tmp_path)
    warm = run(py, PROGRAM, tmp_path, WARMSTART_IMAGE=str(bad))
    assert warm.returncode == 0 and warm.stdout == plain.stdout
    lines = warm.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"warmstart: cannot use image '{bad}'"), warm.stderr
    # WARMSTART=auto, the dispatcher's other path: an image is recorded,
    # then served.
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM.replace("; ", "\n"))
    cache = tmp_path / "cache"
    env = dict(WARMSTART="auto", WARMSTART_CACHE=str(cache))
    auto = subprocess.run([py, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=_env(**env), timeout=120)
    assert auto.returncode == 0, auto.stderr
    images = _wait_for(lambda: list(cache.glob("*.img")))
    again = subprocess.run([py, str(script)], capture_output=True, text=True,
                           cwd=tmp_path, env=_env(WARMSTART_STATS="1", **env),
                           timeout=120)
    assert again.stdout == auto.stdout and images
    assert "served" in again.stderr and str(images[0]) in again.stderr, \
        again.stderr


def _wait_for(probe, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    return probe()
