"""The import tier: a program imports exactly as before, with the modules
the image knows coming from it."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
import zipfile

import pytest

import warmstart
from warmstart import build

PTH = os.path.join(sysconfig.get_paths()["purelib"], "00-warmstart.pth")
needs_pth = pytest.mark.skipif(not os.path.exists(PTH),
                               reason="warmstart is not installed (no .pth)")

FILES = {
    "app/__init__.py": """
        from . import util
        from .util import VALUE
        import importlib.resources
        DATA = importlib.resources.files(__name__).joinpath("data.txt").read_text()
    """,
    "app/util.py": """
        VALUE = 42
        def fail():
            raise ValueError("boom from util")
    """,
    "app/data.txt": "resource data\n",
    "app/circ_a.py": """
        from . import circ_b
        A = 1
        def b():
            return circ_b.B
    """,
    "app/circ_b.py": """
        from . import circ_a
        B = 2
    """,
    "app/__main__.py": """
        import sys, traceback, inspect, pkgutil, importlib, linecache
        import app, app.circ_a, app.util
        import ns.part
        print("value", app.VALUE, app.DATA.strip(), app.circ_a.b())
        print("ns", ns.part.X, list(ns.__path__) == [ns.part.__file__.rsplit("/", 1)[0]])
        print("file", app.util.__file__.endswith("app/util.py"),
              app.util.__spec__.cached.endswith(".pyc"), app.__path__ == [app.__file__.rsplit("/", 1)[0]])
        # 3.15 no longer sets __cached__: present exactly when a normal import sets it.
        print("cached", getattr(app.util, "__cached__", None) == app.util.__spec__.cached,
              "__cached__" in vars(app.util), "__cached__" in vars(app))
        print("spec", app.util.__spec__.name, app.util.__spec__.parent,
              app.util.__spec__.has_location, app.__spec__.submodule_search_locations is not None)
        try:
            app.util.fail()
        except ValueError:
            tb = traceback.format_exc()
        print("traceback", 'raise ValueError("boom from util")' in tb)
        print("source", inspect.getsource(app.util.fail).splitlines()[0])
        print("iter", sorted(m.name for m in pkgutil.iter_modules(app.__path__)))
        importlib.reload(app.util)
        del sys.modules["app.circ_b"]
        import app.circ_b
        print("reimport", app.circ_b.B)
    """,
    "nsroot/ns/part.py": "X = 'namespace part'\n",
}


def make_project(root):
    for rel, text in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def run(args, cwd, image=None, extra_env=None, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    env["PYTHONPATH"] = str(cwd / "nsroot")
    if image:
        env["WARMSTART_IMAGE"] = str(image)
        env["WARMSTART_STATS"] = "1"
    env.update(extra_env or {})
    p = subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def served(stderr):
    m = re.search(r"warmstart: served (\d+) modules", stderr)
    return int(m.group(1)) if m else None


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "proj")


@pytest.fixture
def app_image(project):
    img = project.parent / "app.img"
    p = run(["-m", "warmstart", "build", "-o", str(img), "--",
             sys.executable, "-m", "app"], cwd=project)
    assert "wrote" in p.stdout, p.stdout + p.stderr
    return img


@needs_pth
def test_program_behaves_the_same(project, app_image):
    plain = run(["-m", "app"], project)
    warm = run(["-m", "app"], project, image=app_image)
    assert warm.stdout == plain.stdout
    assert "value 42 resource data 2" in plain.stdout
    n = served(warm.stderr)
    assert n is not None and n > 20, warm.stderr
    assert "imported normally" in warm.stderr
    # The program's own modules came from the image.
    img = warmstart.Image(app_image)
    for name in ("app", "app.util", "app.circ_a", "app.circ_b", "ns.part"):
        assert name in img, name


@needs_pth
def test_spec_equals_path_finder(project, app_image):
    code = r"""
import sys
from importlib.machinery import PathFinder
# (Other .pth files may put their finders before it, e.g. setuptools'.)
finder = next(f for f in sys.meta_path if type(f).__name__ == "ImageFinder")
import importlib.metadata
print(importlib.metadata.version("pip") != "")
import importlib
for name, path in (("app", None), ("inspect", None),
                   ("importlib.resources", importlib.__path__)):
    assert name in finder.image, name
    mine, ref = finder.find_spec(name, path), PathFinder.find_spec(name, path)
    print(name, mine == ref and mine.cached == ref.cached
          and mine.parent == ref.parent and mine.has_location
          and mine.submodule_search_locations == ref.submodule_search_locations)
import app
mine = finder.find_spec("app.util", app.__path__)
ref = PathFinder.find_spec("app.util", app.__path__)
print("app.util", mine == ref and type(mine.loader) is type(ref.loader))
"""
    out = run(["-c", code], project, image=app_image).stdout.split("\n")
    assert out[:5] == ["True", "app True", "inspect True",
                       "importlib.resources True", "app.util True"], out


CHECK_EXT = r"""
import sys
from importlib.machinery import PathFinder
finder = next(f for f in sys.meta_path if type(f).__name__ == "ImageFinder")
same = 0
for name in finder.ext:
    parent = name.rpartition(".")[0]
    __import__(parent or "sys")
    path = sys.modules[parent].__path__ if parent else None
    mine, ref = finder._fast(name, path), PathFinder.find_spec(name, path)
    same += (mine == ref and mine.cached == ref.cached
             and mine.has_location == ref.has_location
             and mine.submodule_search_locations is None)
# A top-level one to shadow (which ones are files and which are built
# in depends on the build: Debian's has binascii built in).
victim = sorted(n for n in finder.ext if "." not in n)[0]
mod = __import__(victim)
print(len(finder.ext), same, victim, getattr(mod, "X", "extension"))
"""


@needs_pth
def test_extension_modules_located(project, app_image):
    # The extension modules the recorded run imported are located without
    # a search, with the spec the path finder gives -- while the search
    # path is the recorded one (run -m, as the build was) and nothing
    # shadows them.
    (project / "check_ext.py").write_text(CHECK_EXT)
    n, same, victim, what = run(["-m", "check_ext"], project,
                                image=app_image).stdout.split()
    assert int(n) >= 3 and same == n and what == "extension"
    (project / f"{victim}.py").write_text("X = 'shadow'\n")
    n, same, again, what = run(["-m", "check_ext"], project,
                               image=app_image).stdout.split()
    assert int(same) == int(n) - 1 and what == "shadow" and again == victim


@needs_pth
def test_deleted_source(project, app_image):
    (project / "app" / "util.py").unlink()
    p = run(["-c", "import app"], project, image=app_image, check=False)
    plain = run(["-c", "import app"], project, check=False)
    assert p.returncode == plain.returncode == 1
    last = [l for l in plain.stderr.splitlines() if l.strip()][-1]
    assert "util" in last and last in p.stderr


@needs_pth
def test_warmstart_run(project, app_image):
    p = subprocess.run([sys.executable, "-m", "warmstart", "run",
                        str(app_image), "--", sys.executable, "-c",
                        "import sys, app; print([type(f).__name__ for f in "
                        "sys.meta_path if type(f).__name__ == 'ImageFinder'][0],"
                        " app.VALUE)"],
                       cwd=project, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(project / "nsroot")))
    assert p.stdout.split() == ["ImageFinder", "42"], p.stderr


@needs_pth
def test_activated_once(project, app_image):
    code = ("import sys; print(sum(type(f).__name__ in "
            "('ImageFinder', 'PendingFinder') for f in sys.meta_path))")
    assert run(["-c", code], project, image=app_image).stdout.strip() == "1"


LAZY = """
import sys
def finders():
    return [type(f).__name__ for f in sys.meta_path
            if type(f).__name__ in ("PendingFinder", "ImageFinder")]
print(finders(), "warmstart.importer" in sys.modules)
import colorsys
f = [f for f in sys.meta_path if type(f).__name__ == "ImageFinder"]
print(finders(), "warmstart.importer" in sys.modules,
      f and "colorsys" in f[0].served)
import warmstart
warmstart.deactivate()
print(finders())
"""


@needs_pth
@pytest.mark.parametrize("stats", [False, True])
def test_start_hook_is_lazy(tmp_path, stats):
    """An image is opened at start-up, but the Python half of the import
    tier is imported only when the program imports a module the image
    holds (boot.c; with WARMSTART_STATS, importer.boot() does the same)."""
    img = tmp_path / "c.img"
    mods, _ = build.modules_from_names(["colorsys"])
    build.write(str(img), mods)
    p = run(["-c", LAZY], tmp_path, image=img,
            extra_env={} if stats else {"WARMSTART_STATS": ""})
    # (With WARMSTART_STATS the Python half is imported at start-up.)
    assert p.stdout.splitlines() == [
        f"['PendingFinder'] {stats}", "['ImageFinder'] True True", "[]"], p.stderr
    p = run(["-c", "import json"], tmp_path, image=img)
    assert "served 0 modules from" in p.stderr and "none imported" in p.stderr


@needs_pth
def test_take_over_refused(tmp_path):
    """An image the ImageFinder refuses when it takes over (here: a bad
    WARMSTART_CHECK) leaves the program importing normally, every finder
    after it still asked, with one warning line."""
    img = tmp_path / "c.img"
    mods, _ = build.modules_from_names(["colorsys"])
    build.write(str(img), mods)
    code = ("import colorsys, fractions, sys; print(colorsys.rgb_to_hsv(1, 0, 0),"
            " fractions.Fraction(1, 3), *[type(f).__name__ for f in sys.meta_path"
            " if type(f).__name__ in ('PendingFinder', 'ImageFinder')])")
    p = run(["-c", code], tmp_path, image=img,
            extra_env={"WARMSTART_STATS": "", "WARMSTART_CHECK": "bogus"})
    assert p.stdout.split() == ["(0.0,", "1.0,", "1)", "1/3", "PendingFinder"]
    assert p.stderr.count("warmstart:") == 1, p.stderr
    assert "check must be one of" in p.stderr


@needs_pth
def test_start_hook_with_broken_package(tmp_path):
    """The C core loads from site-packages; if the package that it hands
    over to cannot be imported (a shadowing or damaged installation), the
    program still runs, importing normally, with one line saying why."""
    img = tmp_path / "c.img"
    mods, _ = build.modules_from_names(["colorsys"])
    build.write(str(img), mods)
    shadow = tmp_path / "shadow" / "warmstart"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise RuntimeError('damaged')\n")
    p = run(["-c", "import colorsys; print(colorsys.rgb_to_hsv(1, 0, 0))"],
            tmp_path, image=img,
            extra_env={"WARMSTART_STATS": "", "PYTHONPATH": str(shadow.parent)})
    assert p.stdout.strip() == "(0.0, 1.0, 1)"
    assert p.stderr.count("warmstart:") == 1, p.stderr
    assert "damaged" in p.stderr and "importing normally" in p.stderr


@needs_pth
def test_importtime_still_reports(project, app_image):
    warm = run(["-X", "importtime", "-c", "import app.util"], project,
               image=app_image)
    assert re.search(r"import time:.*\|\s+app\.util$", warm.stderr, re.M)


def edit(path, old, new):
    """Edit a source and drop its .pyc.  CPython validates a .pyc by its
    source's size and mtime in whole seconds, so the normal import that
    warmstart falls back to would itself run a same-size edit made within
    the second from the stale .pyc; these tests are about warmstart's
    check."""
    path.write_text(path.read_text().replace(old, new))
    try:
        os.unlink(importlib.util.cache_from_source(str(path)))
    except FileNotFoundError:
        pass


@needs_pth
def test_stale_source_is_not_served(project, app_image):
    util = project / "app" / "util.py"
    edit(util, "VALUE = 42", "VALUE = 43")
    warm = run(["-c", "import app; print(app.VALUE)"], project, image=app_image)
    assert warm.stdout.strip() == "43"
    assert "app.util: source changed" in warm.stderr


@needs_pth
def test_check_modes(project, app_image):
    util = project / "app" / "util.py"
    st = os.stat(util)
    # Same size, same mtime, different content: only a content hash sees it.
    edit(util, "VALUE = 42", "VALUE = 24")
    os.utime(util, ns=(st.st_atime_ns, st.st_mtime_ns))
    code = "import app; print(app.VALUE)"
    assert run(["-c", code], project, image=app_image,
               extra_env={"WARMSTART_CHECK": "hash"}).stdout.strip() == "24"
    assert run(["-c", code], project, image=app_image,
               extra_env={"WARMSTART_CHECK": "mtime"}).stdout.strip() == "42"
    # Unchecked mode trusts the image (immutable deployments).
    util.write_text("VALUE = 7\n")
    assert run(["-c", code], project, image=app_image,
               extra_env={"WARMSTART_CHECK": "none"}).stdout.strip() == "42"


@needs_pth
def test_new_shadowing_file(project, app_image, tmp_path):
    # sys.path[0] is the project; a new module earlier on the path wins.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "colorsys.py").write_text("WHO = 'shadow'\n")
    build_img = tmp_path / "cs.img"
    run(["-m", "warmstart", "build", "-o", str(build_img), "--", sys.executable,
         "-c", "import colorsys"], shadow.parent)
    code = "import colorsys; print(getattr(colorsys, 'WHO', 'stdlib'))"
    env = {"PYTHONPATH": str(shadow)}
    (shadow / "colorsys.py").unlink()
    time.sleep(0.01)
    # Built while the shadow existed: the image holds the shadow's code.
    # Now the shadow is gone, so the stdlib module must be imported.
    out = run(["-c", code], tmp_path, image=build_img, extra_env=env)
    assert out.stdout.strip() == "stdlib"
    # And the other way round: an image of the stdlib module, then a new
    # shadowing file appears earlier on the path.
    img2 = tmp_path / "cs2.img"
    run(["-m", "warmstart", "build", "-o", str(img2), "--", sys.executable,
         "-c", "import colorsys"], tmp_path, extra_env=env)
    (shadow / "colorsys.py").write_text("WHO = 'shadow'\n")
    out = run(["-c", code], tmp_path, image=img2, extra_env=env)
    assert out.stdout.strip() == "shadow"


# Imports some modules from the image, changes the image file in place
# the way a careless deploy or a full disk would, then uses those modules
# and imports more that the image holds.
CHANGE_UNDER_RUN = """
import os, sys
import app.util
path = os.environ.get("WARMSTART_IMAGE")
how = sys.argv[1]
if path and how != "none":
    data = open(path, "rb").read()
    if how == "truncate":
        os.truncate(path, 0)
    elif how in ("closed", "reused"):        # a daemon's close-all
        os.closerange(3, 1024)
        if how == "reused":
            fd = os.open(path + ".other", os.O_RDWR | os.O_CREAT)
            os.write(fd, data)
            for n in range(3, 100):
                os.dup2(fd, n)
    elif how == "shrink":
        os.truncate(path, len(data) // 3)
    else:
        with open(path, "wb") as f:         # what cp does: O_TRUNC, write
            f.write(data if how == "same" else bytes(b ^ 0x5A for b in data))
import app.circ_a, inspect, pkgutil
print(app.util.VALUE, app.circ_a.b(), inspect.getsource(app.util.fail).split()[1])
try:
    app.util.fail()
except ValueError as e:
    print(e, sorted(m.name for m in pkgutil.iter_modules(app.__path__)))
"""


@needs_pth
@pytest.mark.parametrize("how", ["truncate", "shrink", "cp", "same",
                                 "closed", "reused"])
def test_image_changed_under_running_program(project, app_image, how):
    """Code already handed out never reads the file again; a later import
    that finds the file changed falls back with one line (image_load.c)."""
    (project / "change.py").write_text(CHANGE_UNDER_RUN)
    direct = run(["change.py", how], project)
    p = run(["change.py", how], project, image=app_image)
    assert p.stdout == direct.stdout
    n = served(p.stderr)
    lines = [l for l in p.stderr.splitlines()       # less the stats
             if not l.startswith(("warmstart: served", "warmstart:   "))]
    if how == "same":
        # The same bytes read again: everything is still served.
        assert lines == [], p.stderr
        assert n >= 5, p.stderr
    elif how == "shrink":
        # What the rest of the file still holds may be served.
        assert not lines or len(lines) == 1 and "shrank" in lines[0], p.stderr
        assert n >= 1, p.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("warmstart: "), p.stderr
        why = {"truncate": "shrank", "cp": "checksum", "closed": "closed",
               "reused": "names another file"}[how]
        assert why in lines[0], lines[0]
        assert n >= 1, p.stderr         # app and app.util came from it


def searched(stderr):
    m = re.search(r"warmstart: served \d+ modules from .* \((\d+) after a "
                  r"full path search\)", stderr)
    return int(m.group(1)) if m else None


@needs_pth
def test_changed_directory_on_the_path(tmp_path):
    # sys.path[0] is the working directory; files come and go there.  The
    # image still answers without a path search where the finder of that
    # entry agrees nothing there shadows the module -- and not otherwise.
    work = tmp_path / "work"
    work.mkdir()
    img = tmp_path / "cs.img"
    code = ("import colorsys, json; print(getattr(colorsys, 'WHO', 'stdlib'),"
            " json.__file__ == json.__spec__.origin)")
    run(["-m", "warmstart", "build", "-o", str(img), "--", sys.executable,
         "-c", code], work)
    before = run(["-c", code], work, image=img)
    assert before.stdout.split() == ["stdlib", "True"]
    n, searches = served(before.stderr), searched(before.stderr)
    assert n >= 3
    (work / "notes.txt").write_text("unrelated\n")
    (work / "json").mkdir()             # a namespace portion: passed over
    after = run(["-c", code], work, image=img)
    assert after.stdout == before.stdout
    # One search at most: the one that creates the entry's finder.
    assert served(after.stderr) == n
    assert searched(after.stderr) <= searches + 1
    (work / "colorsys.py").write_text("WHO = 'shadow'\n")
    shadowed = run(["-c", code], work, image=img)
    assert shadowed.stdout.split() == ["shadow", "True"]
    assert served(shadowed.stderr) == n - 1


@needs_pth
def test_huge_pages_opt_in(project, app_image):
    # WARMSTART_HUGEPAGES=1: an image recorded from a run is materialised
    # into whole copied chunks; the program behaves the same.
    code = ("import app, app.circ_a, warmstart.importer as i; print(app.VALUE, "
            "[f.image.stats()['chunks_private'] for f in i._active])")
    plain = run(["-c", code], project, image=app_image)
    huge = run(["-c", code], project, image=app_image,
               extra_env={"WARMSTART_HUGEPAGES": "1"})
    assert plain.stdout.split() == ["42", "[0]"]
    assert huge.stdout.split()[0] == "42" and huge.stdout.split()[1] != "[0]"
    assert served(huge.stderr) == served(plain.stderr) > 0


@needs_pth
def test_changed_sys_path_still_serves_same_files(project, app_image, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    code = ("import sys; sys.path.insert(0, %r); import app.util, json; "
            "print(app.util.VALUE)" % str(other))
    warm = run(["-c", code], project, image=app_image)
    assert warm.stdout.strip() == "42"
    assert served(warm.stderr) >= 2
    # A different module of the same name earlier on the path wins.
    (other / "app").mkdir()
    (other / "app" / "__init__.py").write_text("VALUE = 'other'\n")
    code = "import sys; sys.path.insert(0, %r); import app; print(app.VALUE)" % str(other)
    assert run(["-c", code], project, image=app_image).stdout.strip() == "other"


@needs_pth
def test_zipimport_shadowing(project, app_image, tmp_path):
    z = tmp_path / "mods.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("app/__init__.py", "VALUE = 'zip'\n")
    code = "import app; print(app.VALUE)"
    env = {"PYTHONPATH": f"{z}:{project / 'nsroot'}"}
    assert run(["-c", code], tmp_path, image=app_image,
               extra_env=env).stdout.strip() == "zip"


@needs_pth
@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "missing"])
def test_bad_image_one_warning(project, app_image, damage, tmp_path):
    bad = tmp_path / "bad.img"
    data = bytearray(app_image.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        # Inside app.util's objects: caught by that module's checksum.
        from imagefile import ImageFile
        f = ImageFile(data)
        i = next(k for k in range(f.n_modules) if f.module_name(k) == "app.util")
        data[f.segment_start(i) + 16] ^= 0xFF
    elif damage == "foreign":
        data[20] ^= 1                 # the fingerprint (header checksum too)
    if damage != "missing":
        bad.write_bytes(bytes(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    env.update(PYTHONPATH=str(project / "nsroot"), WARMSTART_IMAGE=str(bad))
    p = subprocess.run([sys.executable, "-m", "app"], cwd=project, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "value 42 resource data 2" in p.stdout
    lines = [l for l in p.stderr.splitlines() if l.startswith("warmstart")]
    assert len(lines) == 1, p.stderr


@needs_pth
def test_real_programs(tmp_path):
    (tmp_path / "x.json").write_text('{"b": [1, 2, {"c": null}]}')
    for args in (["-m", "pip", "--version"],
                 ["-m", "json.tool", "x.json"],
                 ["-m", "pydoc", "colorsys"]):
        img = tmp_path / "p.img"
        run(["-m", "warmstart", "build", "-o", str(img), "--", sys.executable,
             *args], tmp_path)
        plain = run(args, tmp_path)
        warm = run(args, tmp_path, image=img)
        assert warm.stdout == plain.stdout, args
        assert served(warm.stderr) > 10, (args, warm.stderr)


def test_build_modules_and_info(tmp_path):
    img = tmp_path / "m.img"
    p = subprocess.run([sys.executable, "-m", "warmstart", "build", "-o",
                        str(img), "--modules", "json,email.parser"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr      # a missing one: test_cli.py
    i = subprocess.run([sys.executable, "-m", "warmstart", "info", "-v",
                        str(img)], capture_output=True, text=True)
    assert "fits this interpreter: yes" in i.stdout
    assert re.search(r"email\.parser\s+module", i.stdout)


def test_activate_api(tmp_path):
    img = tmp_path / "a.img"
    mods, _ = build.modules_from_names(["colorsys"])
    build.write(str(img), mods)
    code = f"""
import sys, warmstart
f = warmstart.activate({str(img)!r})
import colorsys
print(type(colorsys.__loader__).__name__, "colorsys" in f.served)
warmstart.deactivate()
print(f not in sys.meta_path)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, cwd=tmp_path)
    assert p.stdout.split() == ["SourceFileLoader", "True", "True"], p.stderr


@needs_pth
def test_auto_mode(project, tmp_path):
    cache = tmp_path / "cache"
    env = {"WARMSTART": "auto", "WARMSTART_CACHE": str(cache),
           "WARMSTART_STATS": "1"}
    first = run(["-m", "app"], project, extra_env=env)
    assert "no image active" in first.stderr
    images = _wait_for(lambda: list(cache.glob("*.img")))
    assert len(images) == 1
    second = run(["-m", "app"], project, extra_env=env)
    assert second.stdout == first.stdout
    assert served(second.stderr) > 20
    # A changed module is imported normally, then the image is refreshed.
    util = project / "app" / "util.py"
    edit(util, "42", "43")
    mtime = images[0].stat().st_mtime_ns
    third = run(["-m", "app"], project, extra_env=env)
    assert "value 43" in third.stdout
    _wait_for(lambda: images[0].stat().st_mtime_ns != mtime)
    fourth = run(["-m", "app"], project, extra_env=env)
    assert "value 43" in fourth.stdout
    assert "imported normally" in fourth.stderr
    assert "app.util" not in fourth.stderr.split("imported normally")[1]


@needs_pth
def test_auto_mode_unwritable_cache(project, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"WARMSTART": "auto", "WARMSTART_CACHE": str(blocker / "cache")}
    for _ in range(2):
        p = run(["-m", "app"], project, extra_env=env)
        assert "value 42" in p.stdout and p.stderr == ""


@needs_pth
def test_concurrent_cache_writers(project, tmp_path):
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    env.update(WARMSTART="auto", WARMSTART_CACHE=str(cache),
               PYTHONPATH=str(project / "nsroot"))
    procs = [subprocess.Popen([sys.executable, "-m", "app"], cwd=project,
                              env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    outs = [p.communicate()[0] for p in procs]
    assert all("value 42" in o for o in outs)
    images = _wait_for(lambda: list(cache.glob("*.img")))
    # Let every writer finish; then the one image left is whole.
    _wait_for(lambda: not list(cache.glob("*.tmp.*"))
              and not list(cache.glob("*.job.*")))
    assert len(images) == 1
    img = warmstart.Image(images[0])
    for name in img.modules():
        img.get_code(name)
    env["WARMSTART_STATS"] = "1"
    p = subprocess.run([sys.executable, "-m", "app"], cwd=project, env=env,
                       capture_output=True, text=True)
    assert served(p.stderr) > 20


def _wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


@needs_pth
def test_record_env_var_twice(tmp_path):
    out = tmp_path / "r.img"
    for _ in range(2):
        if out.exists():
            out.unlink()
        run(["-c", "import colorsys"], tmp_path,
            extra_env={"WARMSTART_RECORD": str(out)})
        assert "colorsys" in warmstart.Image(out)
    assert not (tmp_path / "r.img.claim").exists()


@needs_pth
def test_build_from_script(project, tmp_path):
    script = project / "main.py"
    script.write_text("import app, colorsys\nprint('script', app.VALUE)\n")
    img = tmp_path / "s.img"
    p = run(["-m", "warmstart", "build", "-o", str(img), "--", sys.executable,
             str(script)], tmp_path)
    assert "wrote" in p.stdout
    info = subprocess.run([sys.executable, "-m", "warmstart", "info", str(img)],
                          capture_output=True, text=True).stdout
    # sys.path[0] of a script run is the script's directory.
    assert f"built with sys.path: ['{project}'" in info
    # importlib.resources brings extension modules along (math, _random...).
    assert int(re.search(r"located without a search: (\d+)", info).group(1)) >= 1
    warm = run([str(script)], tmp_path, image=img)
    assert warm.stdout == "script 42\n"
    assert served(warm.stderr) >= 3


SUBINTERP = r"""
import sys, _testcapi
check = ("import sys, colorsys; assert not any(type(f).__name__ in "
         "('PendingFinder', 'ImageFinder') for f in sys.meta_path)")
assert _testcapi.run_in_subinterp(check) == 0
try:
    import _interpreters as interpreters            # 3.13
except ImportError:
    try:
        import _xxsubinterpreters as interpreters   # 3.12: isolated ones
    except ImportError:
        interpreters = None
if interpreters is not None:
    i = interpreters.create()
    try:
        interpreters.run_string(i, check)
    finally:
        interpreters.destroy(i)
import colorsys
print(*[type(f).__name__ for f in sys.meta_path
        if type(f).__name__ in ("PendingFinder", "ImageFinder")])
"""


@needs_pth
def test_sub_interpreters_import_normally(tmp_path):
    """Images serve the main interpreter only: a sub-interpreter (legacy or
    isolated, where the C core cannot load) reads the .pth too and must
    import normally, without a warning."""
    pytest.importorskip("_testcapi")
    img = tmp_path / "c.img"
    mods, _ = build.modules_from_names(["colorsys"])
    build.write(str(img), mods)
    p = run(["-c", SUBINTERP], tmp_path, image=img,
            extra_env={"WARMSTART_STATS": ""})
    assert p.stdout.split() == ["ImageFinder"], p.stdout
    assert "warmstart" not in p.stderr, p.stderr
