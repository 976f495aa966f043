"""The C core built with AddressSanitizer and UndefinedBehaviorSanitizer:
round trip of the standard library and replay of damaged images, clean."""
import glob
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

import test_bad_input
from conftest import HERE, run_python

ROOT = os.path.dirname(HERE)


def runtime(name):
    p = subprocess.run(["gcc", f"-print-file-name={name}"],
                       capture_output=True, text=True)
    path = p.stdout.strip()
    return path if p.returncode == 0 and os.path.isabs(path) else None


@pytest.fixture(scope="module")
def asan_build(tmp_path_factory):
    asan, ubsan = runtime("libasan.so"), runtime("libubsan.so")
    if not (asan and ubsan and shutil.which("gcc")):
        pytest.skip("gcc sanitizer runtimes not installed")
    out = tmp_path_factory.mktemp("asan")
    flags = "-fsanitize=address,undefined -fno-sanitize-recover=undefined " \
            "-fno-omit-frame-pointer -O1 -Werror"
    env = dict(os.environ, WARMSTART_CFLAGS=flags,
               WARMSTART_LDFLAGS="-fsanitize=address,undefined")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext",
                    "--build-lib", str(out / "lib"),
                    "--build-temp", str(out / "tmp")],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    for py in glob.glob(os.path.join(ROOT, "src", "warmstart", "*.py")):
        shutil.copy(py, out / "lib" / "warmstart")
    (so,) = glob.glob(str(out / "lib" / "warmstart" / "_image*.so"))
    with open(so, "rb") as f:
        blob = f.read()
    assert b"__asan_report" in blob and b"__ubsan_handle" in blob
    return {
        "PYTHONPATH": str(out / "lib") + os.pathsep + HERE,
        "LD_PRELOAD": f"{asan} {ubsan}",
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=0",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        "PYTHONMALLOC": "malloc",
    }


ROUNDTRIP = r"""
import marshal, sys, warmstart, codecompare
from warmstart import image
assert warmstart._image.__file__.startswith(sys.argv[2]), warmstart._image.__file__
mods = list(image.stdlib_modules(include_tests=False))
summary = warmstart.build_image(sys.argv[1], mods)
img = warmstart.Image(sys.argv[1])
bad = 0
for name, src, _ in mods:
    if name in img:
        ref = marshal.loads(marshal.dumps(image.compile_module(src)))
        bad += bool(codecompare.diff(img.get_code(name), ref, name, with_dis=False))
ns = {"__name__": "json_image"}
exec(img.get_code("json.decoder"), ns)
assert ns["JSONDecoder"]().decode('[1, "a", {"b": 2.5}]') == [1, "a", {"b": 2.5}]
print(summary["modules"], bad)
"""


def test_roundtrip_under_sanitizers(asan_build, tmp_path):
    lib = asan_build["PYTHONPATH"].split(os.pathsep)[0]
    p = run_python(ROUNDTRIP, str(tmp_path / "s.img"), lib, env=asan_build)
    modules, bad = map(int, p.stdout.split())
    assert modules > 500 and bad == 0
    assert "ERROR: AddressSanitizer" not in p.stderr
    assert "runtime error" not in p.stderr


PENDING = r"""
import os, sys, warmstart
from warmstart import _image, build
assert _image.__file__.startswith(sys.argv[2]), _image.__file__
assert "colorsys" not in sys.modules and "fractions" not in sys.modules
mods, _ = build.modules_from_names(["colorsys"])
build.write(sys.argv[1], mods)
try:
    _image.PendingFinder(42)
except TypeError:
    pass
print(repr(_image.PendingFinder.__new__(_image.PendingFinder)))
os.environ["WARMSTART_IMAGE"] = sys.argv[1]
assert _image.boot() and _image.boot()          # the first answer stands
from importlib.machinery import PathFinder
at = [type(f) for f in sys.meta_path].index(_image.PendingFinder)
pending = sys.meta_path[at]
assert sys.meta_path[at + 1] is PathFinder      # asked right before it
assert pending.finder is None
import fractions                                # not in the image
assert sys.meta_path[at] is pending and pending.finder is None
import colorsys                                 # in it: the finder takes over
finder = sys.meta_path[at]
assert type(finder).__name__ == "ImageFinder" and pending.finder is finder
assert finder.served == {"colorsys"}, finder.served
assert pending.find_spec("colorsys").origin == colorsys.__file__
warmstart.deactivate()
print(colorsys.rgb_to_hsv(1, 0, 0), finder not in sys.meta_path)
"""


def test_start_hook_under_sanitizers(asan_build, tmp_path):
    lib = asan_build["PYTHONPATH"].split(os.pathsep)[0]
    env = dict(asan_build, WARMSTART_CHECK="none")
    p = run_python(PENDING, str(tmp_path / "p.img"), lib, env=env)
    assert p.stdout.split("\n")[:2] == [
        "<warmstart.PendingFinder>", "(0.0, 1.0, 1) True"], p.stdout + p.stderr
    assert "ERROR: AddressSanitizer" not in p.stderr
    assert "runtime error" not in p.stderr


def test_damaged_images_under_sanitizers(asan_build, small_image, tmp_path):
    corpus = tmp_path / "corpus"
    data = open(small_image, "rb").read()
    rng = random.Random(7)
    for k in range(60):
        d = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        test_bad_input.write(corpus, f"flip-{k}", d)
    for k in range(10):
        test_bad_input.write(corpus, f"cut-{k}", data[:rng.randrange(len(data))])
    for case in sorted(test_bad_input.EDITS):
        edit, _ = test_bad_input.EDITS[case]
        crafted, _ = test_bad_input.crafted(data, edit)
        test_bad_input.write(corpus, "crafted-" + case.replace(" ", "-"), crafted)
    p = run_python(test_bad_input.REPLAY, small_image, str(corpus),
                   env=asan_build)
    assert "ERROR: AddressSanitizer" not in p.stderr
    assert "runtime error" not in p.stderr
    results = json.loads(p.stdout)
    assert all(r["wrong"] == [] for r in results.values())
    assert len(results) == 70 + len(test_bad_input.EDITS)


def test_client_under_asan(asan_build, tmp_path):
    """warmstart-exec built with the sanitizers: served launches, the
    direct fallbacks, a retired server and a death by signal, clean."""
    import signal
    import time
    from test_server import _kill_servers
    lib = asan_build["PYTHONPATH"].split(os.pathsep)[0]
    client = os.path.join(lib, "warmstart", "warmstart-exec")
    with open(client, "rb") as f:
        assert b"__asan_report" in f.read()
    servers = str(tmp_path / "servers")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARMSTART", "PYTHONPATH"))}
    env.update(WARMSTART_SERVER_DIR=servers,
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    (tmp_path / "helper.py").write_text("V = 1\n")
    prog = tmp_path / "prog.py"
    prog.write_text("import os, signal, sys, helper, json\n"
                    "print(sys.argv[1:], helper.V, flush=True)\n"
                    "if sys.argv[1:] == ['die']:"
                    " os.kill(os.getpid(), signal.SIGTERM)\n"
                    "sys.exit(3)\n")

    def launch(*args, pre=()):
        return subprocess.run([client, *pre, "--", sys.executable, str(prog),
                               *args], env=env, cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=60)

    try:
        p = launch("a")
        assert p.returncode == 3 and p.stdout == "['a'] 1\n", p.stderr
        for _ in range(200):
            if glob.glob(os.path.join(servers, "*.sock")):
                break
            time.sleep(0.05)
        for args, code, out in [(("b", "c"), 3, "['b', 'c'] 1\n"),
                                (("die",), -signal.SIGTERM, "['die'] 1\n")]:
            p = launch(*args)
            assert (p.returncode, p.stdout) == (code, out), p.stderr
            assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr
        (tmp_path / "helper.py").write_text("V = 2  # edited\n")
        p = launch("d")                 # stale: NOPE, then direct
        assert (p.returncode, p.stdout) == (3, "['d'] 2\n"), p.stderr
        p = launch("e", pre=("--explain",))
        assert p.returncode == 0 and "server: " in p.stdout, p.stderr
        p = subprocess.run([client], capture_output=True, text=True)
        assert p.returncode == 2 and "usage" in p.stderr
    finally:
        _kill_servers(servers)
