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

Workloads: a set of stdlib imports, `import pip._internal.cli.main`, and
`python -m pip --version` (the program server_launch.py launches too).
Run it in a venv where warmstart is installed (make demo does).

    python bench/import_time.py [--runs N] [--heavy] [--json FILE] [-v]

By default only the wall times (stock, image, huge pages) are printed; -v
prints the rest measured above.

--heavy adds third-party workloads (installed into this venv if missing):
sympy, and on 3.11 boto3 and IPython.
"""
import argparse
import json
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
how, what, *rest = sys.argv[1:]
if how == "-m":
    import runpy                        # before the clock: -m imports it too
t0 = time.perf_counter_ns()
if how == "-c":
    exec(compile(what, "<workload>", "exec"))
else:
    sys.argv[:] = [what, *rest]         # as python -m MODULE ARGS sees them
    try:
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
total = time.perf_counter_ns() - t0
print("\nMEASURE", spent[0], spent[1], total)
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


def in_process(argv, image, runs=5):
    """Medians (ms) of the find and get_code time of the workload *argv*
    (python's arguments, "-c CODE" or "-m MODULE ..."), stock and image."""
    out = {}
    for label, extra in (("plain", {}), ("image", {"WARMSTART_IMAGE": image})):
        env = dict(env_without_warmstart(), **extra)
        finds, gets = [], []
        for _ in range(runs):
            p = subprocess.run([sys.executable, "-c", MEASURE, *argv], env=env,
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


def workload_lines(w, width, verbose=False):
    """The lines printed for one workload's results *w*: stock against
    image, and with *verbose* the in-process split, WARMSTART=auto and the
    page floor."""
    plain, warm, huge = w["stock_ms"], w["image_ms"], w["huge_ms"]
    lines = [f"  {w['label']:{width}s} stock {plain:7.1f} ms   image"
             f" {warm:7.1f} ms   {100 * (plain - warm) / plain:4.1f}% less"
             f" wall time; huge pages {huge:7.1f} ms"
             f" ({100 * (plain - huge) / plain:4.1f}% less)"]
    if not verbose:
        return lines
    pad = " " * width
    ip = w["in_process_ms"]
    before, after = sum(ip["stock"].values()), sum(ip["image"].values())
    lines.append(
        f"  {pad} find+get_code in-process: stock {before:6.1f} ms"
        f" (find {ip['stock']['find']:.1f}, code {ip['stock']['code']:.1f}),"
        f" image {after:6.1f} ms (find {ip['image']['find']:.1f},"
        f" code {ip['image']['code']:.1f}): "
        f"{100 * (before - after) / before:4.1f}% removed")
    a = w["auto_captured_ms"]
    lines.append(
        f"  {pad} WARMSTART=auto, output captured: first run"
        f" {a['first']:.1f} ms, second {a['second']:.1f} ms; alternating:"
        f" stock {a['stock']:.1f}, image {a['image']:.1f},"
        f" auto {a['auto']:.1f} ms"
        f" ({'not slower' if a['auto'] <= a['image'] * 1.03 else 'SLOWER'}"
        f" than the image)")
    floor = w["page_floor_ms"]
    if floor is None:
        lines.append(f"  {pad} page floor: not measured (the kernel lacks"
                     f" MADV_POPULATE_WRITE)")
    else:
        lines.append(
            f"  {pad} page floor: {w['page_floor_bytes'] / 2**20:.1f} MB of"
            f" objects made private in {floor:.1f} ms ="
            f" {100 * floor / before:.1f}% of stock find+get_code (about"
            f" {100 * (before - floor) / before:.0f}% at most can be"
            f" removed)")
    return lines


def overhead_lines(r, verbose=False):
    """What warmstart costs a program that does not use the image (only
    with *verbose*: a detail next to the workloads)."""
    if not verbose:
        return []
    a = r["activation_ms"]
    return [f"  activation, image not used (python -c pass): "
            f"{a['image'] - a['stock']:+.2f} ms ({a['stock']:.1f} ->"
            f" {a['image']:.1f} ms)",
            f"  start-up hook with no image set: {r['hook_us']:.1f} us per"
            f" interpreter start (site reads, compiles and runs"
            f" 00-warmstart.pth)"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--heavy", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also print the in-process split, WARMSTART=auto,"
                         " the page floor and the activation costs")
    args = ap.parse_args()
    # python's arguments for each workload; "pip --version" is the program
    # server_launch.py launches too, so that make demo can set them side by
    # side.
    workloads = [("stdlib set", ["-c", STDLIB]),
                 ("import pip", ["-c", "import pip._internal.cli.main"]),
                 ("pip --version", ["-m", "pip", "--version"])]
    if args.heavy:
        if ensure("sympy"):
            workloads.append(("sympy", ["-c", "import sympy"]))
        if sys.version_info[:2] == (3, 11):
            if ensure("boto3"):
                workloads.append(("boto3", ["-c", "import boto3"]))
            if ensure("IPython"):
                workloads.append(("IPython", ["-c", "import IPython"]))
    width = max(len(label) for label, _ in workloads)
    result = {"python": sys.version.split()[0], "runs": args.runs,
              "workloads": []}
    print(f"Python {result['python']}: python -c 'import ...' and "
          f"python -m pip --version, median of {args.runs} alternating runs")
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv in workloads:
            image = os.path.join(tmp, f"{label.replace(' ', '_')}.img")
            subprocess.run([sys.executable, "-m", "warmstart", "build", "-o",
                            image, "--", sys.executable, *argv],
                           check=True, capture_output=True,
                           env=env_without_warmstart())
            cmd = [sys.executable, *argv]
            plain, warm, huge = side_by_side(cmd, image, args.runs, huge=True)
            ip = in_process(argv, image)
            first, second, (c_plain, c_image, c_auto) = auto_captured(
                cmd, image, args.runs, tmp)
            floor, size = page_floor(image)
            w = {"label": label, "argv": argv, "stock_ms": plain,
                 "image_ms": warm, "huge_ms": huge,
                 "in_process_ms": {k: {"find": ip[p][0], "code": ip[p][1]}
                                   for k, p in (("stock", "plain"),
                                                ("image", "image"))},
                 "auto_captured_ms": {"first": first, "second": second,
                                      "stock": c_plain, "image": c_image,
                                      "auto": c_auto},
                 "page_floor_ms": floor, "page_floor_bytes": size}
            result["workloads"].append(w)
            print("\n".join(workload_lines(w, width, args.verbose)),
                  flush=True)
        # Activation with an image the program does not use.
        unused = os.path.join(tmp, "unused.img")
        subprocess.run([sys.executable, "-m", "warmstart", "build", "-o",
                        unused, "--modules", "colorsys"], check=True,
                       capture_output=True, env=env_without_warmstart())
        plain, warm = side_by_side([sys.executable, "-c", "pass"], unused,
                                   max(args.runs * 4, 40))
        result["activation_ms"] = {"stock": plain, "image": warm}
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
    result["hook_us"] = (time.perf_counter() - t) / n * 1e6
    os.environ.update(env_saved)
    lines = overhead_lines(result, args.verbose)
    if lines:
        print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
