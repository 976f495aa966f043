"""Whole-process import time with and without an image (the import tier).

For each workload, `warmstart build` records a run of the program, then
the program is run alternately with and without WARMSTART_IMAGE, in fresh
processes; medians and their ratio are reported.  Also measured:

* in-process, the time the import system spends finding modules and
  getting their code (find + stat + read + validate + unmarshal for a
  normal import; find + check + materialise with the image), summed over
  every import of the workload;
* the cost of activating an image that the program does not use
  (`python -c pass`), and of the start-up hook when no image is set;
* the image with WARMSTART_HUGEPAGES=1 as a third configuration (runs
  follow each other closely, so huge pages are at hand: its best case);
* WARMSTART=auto with the output read through pipes (as $(...) and
  subprocess read it): the first run, the second, and stock, image and
  auto runs alternating, all captured;
* the page floor: the time the kernel takes to make every page of the
  image's objects (heap and atoms sections) private, in one system call,
  with no other work.  Any loader that sets each object's ob_type writes
  nearly every one of those pages (all but those lying wholly inside one
  large object: 2-3% for sympy), and a workload recorded from a run
  materialises all of its modules, so the find + get_code time with an
  image cannot drop much below it.

Run it in a venv where warmstart is installed (make demo does).

    python bench/import_time.py [--runs N] [--heavy]

--heavy adds third-party workloads (installed into this venv if missing):
sympy, and on 3.11 boto3 and IPython.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

STDLIB = ("import json, email.parser, http.client, asyncio, typing, argparse, "
          "logging, unittest, xml.etree.ElementTree, decimal, dataclasses, "
          "urllib.request, tomllib, zipfile, csv, pathlib, subprocess")

# In-process: time spent in find_spec and get_code during the imports.
MEASURE = r"""
import sys, time
from importlib.machinery import PathFinder, SourceFileLoader
spent = [0, 0]
depth = [0, 0]
def timed(fn, slot):
    # Only the outermost call counts (the image finder may call PathFinder).
    def wrapper(*a, **k):
        depth[slot] += 1
        t = time.perf_counter_ns()
        try:
            return fn(*a, **k)
        finally:
            depth[slot] -= 1
            if depth[slot] == 0:
                spent[slot] += time.perf_counter_ns() - t
    return wrapper
image_finders = [f for f in sys.meta_path if type(f).__name__ == "ImageFinder"]
for f in image_finders:
    f.find_spec = timed(f.find_spec, 0)
PathFinder.find_spec = classmethod(timed(PathFinder.find_spec.__func__, 0))
SourceFileLoader.get_code = timed(SourceFileLoader.get_code, 1)
t0 = time.perf_counter_ns()
exec(compile(sys.argv[1], "<workload>", "exec"))
total = time.perf_counter_ns() - t0
print("MEASURE", spent[0], spent[1], total)
"""


def env_without_warmstart():
    return {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}


def timed_run(cmd, env):
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def side_by_side(cmd, image, runs, huge=False):
    """Medians (ms) of stock and image runs, alternating; with *huge*, of
    image runs with WARMSTART_HUGEPAGES=1 too."""
    plain_env = env_without_warmstart()
    envs = [plain_env, dict(plain_env, WARMSTART_IMAGE=image)]
    if huge:
        envs.append(dict(envs[1], WARMSTART_HUGEPAGES="1"))
    times = [[] for _ in envs]
    for _ in range(2):                      # warm the page cache
        for env in envs:
            timed_run(cmd, env)
    for _ in range(runs):
        for env, t in zip(envs, times):
            t.append(timed_run(cmd, env))
    return [statistics.median(t) * 1e3 for t in times]


def captured_run(cmd, env):
    """A run whose output is read through pipes, as $(...) or subprocess
    read it: it ends when every holder of the pipes has closed them."""
    t = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    return time.perf_counter() - t


def _wait_for_writers(cache):
    for _ in range(1200):
        busy = False
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    c = f.read()
            except OSError:
                continue
            busy |= b"warmstart.auto" in c and cache.encode() in c
        if not busy:
            return
        time.sleep(0.05)


def auto_captured(cmd, image, runs, tmp):
    """WARMSTART=auto with the output captured: the first run (which
    leaves an image writer behind), the second, and then stock, image and
    auto runs alternating, all captured; medians in ms."""
    plain = env_without_warmstart()
    cache = tempfile.mkdtemp(dir=tmp)
    auto = dict(plain, WARMSTART="auto", WARMSTART_CACHE=cache)
    first = captured_run(cmd, auto) * 1e3
    _wait_for_writers(cache)
    second = captured_run(cmd, auto) * 1e3
    _wait_for_writers(cache)
    envs = [plain, dict(plain, WARMSTART_IMAGE=image), auto]
    times = [[] for _ in envs]
    for _ in range(runs):
        for env, t in zip(envs, times):
            t.append(captured_run(cmd, env))
    return first, second, [statistics.median(t) * 1e3 for t in times]


def in_process(code, image, runs=5):
    out = {}
    for label, extra in (("plain", {}), ("image", {"WARMSTART_IMAGE": image})):
        env = dict(env_without_warmstart(), **extra)
        finds, gets = [], []
        for _ in range(runs):
            p = subprocess.run([sys.executable, "-c", MEASURE, code], env=env,
                               capture_output=True, text=True, check=True)
            f, g, _ = map(int, re.search(r"MEASURE (\d+) (\d+) (\d+)",
                                         p.stdout).groups())
            finds.append(f)
            gets.append(g)
        out[label] = (statistics.median(finds) / 1e6,
                      statistics.median(gets) / 1e6)
    return out


FLOOR = r"""
import mmap, os, sys, time
from warmstart import _image
path = sys.argv[1]
sections = _image.Image(path).header["sections"]
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
t = time.perf_counter_ns()
try:
    for name in ("heap", "atoms"):
        off, size = sections[name]
        m.madvise(MADV_POPULATE_WRITE, off, size)
    ns = time.perf_counter_ns() - t
except OSError:                 # a kernel older than 5.14
    ns = -1
print("FLOOR", ns, sections["heap"][1] + sections["atoms"][1])
"""


def page_floor(image, runs=5):
    """Median ms to make the image's object pages private, and their bytes."""
    times = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, "-c", FLOOR, image],
                           env=env_without_warmstart(), capture_output=True,
                           text=True, check=True)
        ns, size = map(int, re.search(r"FLOOR (-?\d+) (\d+)", p.stdout).groups())
        if ns < 0:
            return None, size
        times.append(ns)
    return statistics.median(times) / 1e6, size


def ensure(package):
    try:
        __import__(package)
        return True
    except ImportError:
        pass
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", package],
                       capture_output=True, text=True)
    return p.returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--heavy", action="store_true")
    args = ap.parse_args()
    workloads = [("stdlib set", STDLIB),
                 ("pip", "import pip._internal.cli.main")]
    if args.heavy:
        if ensure("sympy"):
            workloads.append(("sympy", "import sympy"))
        if sys.version_info[:2] == (3, 11):
            if ensure("boto3"):
                workloads.append(("boto3", "import boto3"))
            if ensure("IPython"):
                workloads.append(("IPython", "import IPython"))
    print(f"Python {sys.version.split()[0]}: python -c 'import ...', "
          f"median of {args.runs} alternating runs")
    with tempfile.TemporaryDirectory() as tmp:
        for label, code in workloads:
            image = os.path.join(tmp, f"{label.replace(' ', '_')}.img")
            subprocess.run([sys.executable, "-m", "warmstart", "build", "-o",
                            image, "--", sys.executable, "-c", code],
                           check=True, capture_output=True,
                           env=env_without_warmstart())
            cmd = [sys.executable, "-c", code]
            plain, warm, huge = side_by_side(cmd, image, args.runs, huge=True)
            ip = in_process(code, image)
            before = sum(ip["plain"])
            after = sum(ip["image"])
            print(f"  {label:10s} stock {plain:7.1f} ms   image {warm:7.1f} ms"
                  f"   {100 * (plain - warm) / plain:4.1f}% less wall time;"
                  f" huge pages {huge:7.1f} ms"
                  f" ({100 * (plain - huge) / plain:4.1f}% less)")
            print(f"  {'':10s} find+get_code in-process: stock {before:6.1f} ms"
                  f" (find {ip['plain'][0]:.1f}, code {ip['plain'][1]:.1f}),"
                  f" image {after:6.1f} ms (find {ip['image'][0]:.1f},"
                  f" code {ip['image'][1]:.1f}): "
                  f"{100 * (before - after) / before:4.1f}% removed")
            first, second, (c_plain, c_image, c_auto) = auto_captured(
                cmd, image, args.runs, tmp)
            print(f"  {'':10s} WARMSTART=auto, output captured: first run"
                  f" {first:.1f} ms, second {second:.1f} ms; alternating:"
                  f" stock {c_plain:.1f}, image {c_image:.1f},"
                  f" auto {c_auto:.1f} ms"
                  f" ({'not slower' if c_auto <= c_image * 1.03 else 'SLOWER'}"
                  f" than the image)")
            floor, size = page_floor(image)
            if floor is None:
                print(f"  {'':10s} page floor: not measured (the kernel lacks"
                      f" MADV_POPULATE_WRITE)")
                continue
            print(f"  {'':10s} page floor: {size / 2**20:.1f} MB of objects made"
                  f" private in {floor:.1f} ms = {100 * floor / before:.1f}% of"
                  f" stock find+get_code (about"
                  f" {100 * (before - floor) / before:.0f}% at most can be"
                  f" removed)")
        # Activation with an image the program does not use.
        unused = os.path.join(tmp, "unused.img")
        subprocess.run([sys.executable, "-m", "warmstart", "build", "-o",
                        unused, "--modules", "colorsys"], check=True,
                       capture_output=True, env=env_without_warmstart())
        plain, warm = side_by_side([sys.executable, "-c", "pass"], unused,
                                   max(args.runs * 4, 40))
        print(f"  activation, image not used (python -c pass): "
              f"{warm - plain:+.2f} ms ({plain:.1f} -> {warm:.1f} ms)")
    # The .pth file when no image is set, in-process: the installed one,
    # read, compiled and run as site does at every interpreter start.
    import site
    import warmstart
    sitedir = os.path.dirname(os.path.dirname(warmstart.__file__))
    env_saved = {k: os.environ.pop(k) for k in list(os.environ)
                 if k.startswith("WARMSTART")}
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        site.addpackage(sitedir, "00-warmstart.pth", set())
    per = (time.perf_counter() - t) / n * 1e6
    os.environ.update(env_saved)
    print(f"  start-up hook with no image set: {per:.1f} us per interpreter"
          f" start (site reads, compiles and runs 00-warmstart.pth)")

if __name__ == "__main__":
    main()
