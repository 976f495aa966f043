import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import warmstart  # noqa: E402
from warmstart import build, image  # noqa: E402


def run_python(code, *args, env=None, timeout=900, check=True):
    """Run *code* in a fresh interpreter (the one running the tests)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = HERE + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    p = subprocess.run([sys.executable, "-c", code, *args], env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"child failed ({p.returncode}):\n"
                             f"{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def small_modules():
    """A few dozen stdlib modules with a variety of constants."""
    wanted = {"json", "json.decoder", "json.encoder", "json.scanner",
              "enum", "dataclasses", "typing", "string", "textwrap",
              "fractions", "decimal", "_pydecimal", "colorsys", "difflib",
              "heapq", "bisect", "keyword", "tokenize", "token", "ast",
              "functools", "collections", "reprlib", "abc", "numbers",
              "inspect", "dis", "opcode", "traceback", "linecache"}
    return [m for m in image.stdlib_modules(include_tests=False)
            if m[0] in wanted]


@pytest.fixture(scope="session")
def small_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "small.img"
    summary = warmstart.build_image(path, small_modules())
    assert summary["skipped"] == []
    return str(path)


@pytest.fixture(scope="session")
def stdlib_image(tmp_path_factory):
    """The whole standard library (tests included) and site-packages, with
    a build record, so that the import tier can serve it."""
    path = tmp_path_factory.mktemp("img") / "stdlib.img"
    mods = list(image.stdlib_modules()) + list(image.site_modules())
    seen, unique = set(), []
    for m in mods:
        if m[0] not in seen:
            seen.add(m[0])
            unique.append(m)
    summary = build.write(path, unique)
    return str(path), unique, summary
