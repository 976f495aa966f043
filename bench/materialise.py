"""Materialising code from an image vs unmarshalling the same .pyc bytes.

Builds one image of the whole standard library, then, in fresh processes
run alternately so that both see the same machine state:

  marshal   every module's .pyc body is already in memory; time
            marshal.loads() over all of them;
  image     the image is opened; time get_code() over all modules;
  huge      the same, with chunks copied into huge pages before their
            first write (WARMSTART_HUGEPAGES=1; image_load.c).

The image sides are also run "cold", each after 10 s without work: where
the machine is a VM that hands free memory back to its host, huge pages
are then slow to get (--cold 0 leaves this out).

Each side runs in a new process because an image materialises a module
once per process.  Prints medians, the ratio and the image size against
the .pyc files it replaces; with -v, also where the image's time goes.

    python bench/materialise.py [--repeat N] [--no-tests] [--json FILE] [-v]
"""
import argparse
import json
import marshal
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

import warmstart
from warmstart import image

CHILD = r"""
import json, marshal, resource, sys, time
mode, image_path, blobs_path = sys.argv[1:4]
def minflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
if mode == "marshal":
    with open(blobs_path, "rb") as f:
        blobs = marshal.load(f)
    # Results are kept, as an import keeps its module's code alive.
    keep = []
    f0 = minflt(); t0 = time.perf_counter_ns()
    for b in blobs:
        keep.append(marshal.loads(b))
    t1 = time.perf_counter_ns()
    print(json.dumps({"ns": t1 - t0, "minflt": minflt() - f0}))
else:
    from warmstart import _image
    profile = mode.startswith("profile")
    t0 = time.perf_counter_ns()
    img = _image.Image(image_path, profile=profile)
    if mode.endswith("huge"):
        img.chunk_threshold = 0
    t1 = time.perf_counter_ns()
    names = img.modules()
    keep = []
    f0 = minflt(); t2 = time.perf_counter_ns()
    for n in names:
        keep.append(img.get_code(n))
    t3 = time.perf_counter_ns()
    out = {"ns": t3 - t2, "open_ns": t1 - t0, "minflt": minflt() - f0}
    out.update(img.stats())
    if profile:
        # What one copy-on-write page fault costs here: write one byte in
        # each page of a fresh private mapping of the same file.
        import mmap
        with open(image_path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        n = len(m) // 4096
        t4 = time.perf_counter_ns()
        for p in range(0, n * 4096, 4096):
            m[p] = 1
        out["ns_per_fault"] = (time.perf_counter_ns() - t4) / n
    print(json.dumps(out))
"""


def run_child(mode, image_path, blobs_path, pause=0):
    time.sleep(pause)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, image_path, blobs_path],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def report(r, verbose=False):
    """The lines printed for result *r*: the headline figures, and with
    *verbose* the details (open time, profile, page faults)."""
    lines = [
        f"Python {r['python']}: {r['modules']} stdlib modules, "
        f"{r['code_objects']} code objects",
        f"  marshal.loads (pyc bytes in memory): {r['marshal_ms']:8.2f} ms",
        f"  image get_code (lazy, all modules):  {r['image_ms']:8.2f} ms"
        f"   -> {r['speedup']}x faster",
        f"  the same into huge pages:            {r['huge_ms']:8.2f} ms"
        f"   -> {r['huge_speedup']}x faster"]
    if r["cold_image_ms"]:
        lines.append(f"  cold (after 10 s idle): image {r['cold_image_ms']:.2f}"
                     f" ms, huge pages {r['cold_huge_ms']:.2f} ms")
    lines.append(f"  size: image {r['image_bytes'] / 1e6:.1f} MB vs .pyc "
                 f"{r['pyc_bytes'] / 1e6:.1f} MB -> {r['size_ratio']}x")
    if not verbose:
        return lines
    p, hp = r["profile_ms"], r["huge_profile_ms"]
    lines += [
        f"  image open: {r['open_us']:.1f} us",
        f"  where the image time goes (profiled run): checksums "
        f"{p['checksum']} ms, fix-up {p['fixup']} ms (interning "
        f"{r['interned']} strings: {p['intern']} ms), frozensets "
        f"{p['frozensets']} ms; with huge pages: fix-up {hp['fixup']} ms, "
        f"copying {r['huge_chunks']} chunks {hp['chunks']} ms",
        f"  page faults: image {r['minflt_image']:.0f}, marshal "
        f"{r['minflt_marshal']:.0f}; at {r['ns_per_fault'] / 1e3:.1f} us "
        f"each, ~{r['fault_ms_estimate']} ms of the image time"]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-tests", action="store_true",
                    help="leave out the stdlib's test package")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also print where the image's time goes")
    ap.add_argument("--cold", type=int, default=2,
                    help="cold runs of each image side (default 2)")
    args = ap.parse_args()

    mods = list(image.stdlib_modules(include_tests=not args.no_tests))
    with tempfile.TemporaryDirectory() as tmp:
        img_path = os.path.join(tmp, "stdlib.img")
        t0 = time.perf_counter()
        summary = warmstart.build_image(img_path, mods)
        build_s = time.perf_counter() - t0
        stored = set(warmstart.Image(img_path).modules())
        # The .pyc bodies of exactly the modules in the image.
        blobs = []
        for name, path, _ in mods:
            if name in stored:
                blobs.append(marshal.dumps(image.compile_module(path)))
        blobs_path = os.path.join(tmp, "blobs")
        with open(blobs_path, "wb") as f:
            marshal.dump(blobs, f)
        pyc_bytes = sum(len(b) + 16 for b in blobs)

        m_runs, i_runs, h_runs = [], [], []
        for _ in range(args.repeat):
            m_runs.append(run_child("marshal", img_path, blobs_path))
            i_runs.append(run_child("image", img_path, blobs_path))
            h_runs.append(run_child("huge", img_path, blobs_path))
        prof = run_child("profile", img_path, blobs_path)
        prof_huge = run_child("profile-huge", img_path, blobs_path)
        cold_i, cold_h = [], []
        for _ in range(args.cold):
            cold_i.append(run_child("image", img_path, blobs_path, 10))
            cold_h.append(run_child("huge", img_path, blobs_path, 10))

    m_ms = statistics.median(r["ns"] for r in m_runs) / 1e6
    i_ms = statistics.median(r["ns"] for r in i_runs) / 1e6
    h_ms = statistics.median(r["ns"] for r in h_runs) / 1e6
    ci_ms = statistics.median(r["ns"] for r in cold_i) / 1e6 if cold_i else None
    ch_ms = statistics.median(r["ns"] for r in cold_h) / 1e6 if cold_h else None
    open_us = statistics.median(r["open_ns"] for r in i_runs) / 1e3
    result = {
        "python": sys.version.split()[0],
        "modules": len(stored),
        "code_objects": prof["code_objects"],
        "skipped": len(summary["skipped"]),
        "build_s": round(build_s, 2),
        "marshal_ms": round(m_ms, 2),
        "image_ms": round(i_ms, 2),
        "speedup": round(m_ms / i_ms, 1),
        "huge_ms": round(h_ms, 2),
        "huge_speedup": round(m_ms / h_ms, 1),
        "cold_image_ms": ci_ms and round(ci_ms, 2),
        "cold_huge_ms": ch_ms and round(ch_ms, 2),
        "open_us": round(open_us, 1),
        "pyc_bytes": pyc_bytes,
        "image_bytes": summary["size"],
        "size_ratio": round(summary["size"] / pyc_bytes, 2),
        "minflt_marshal": statistics.median(r["minflt"] for r in m_runs),
        "minflt_image": statistics.median(r["minflt"] for r in i_runs),
        "profile_ms": {k[3:]: round(prof[k] / 1e6, 2)
                       for k in prof if k.startswith("ns_")
                       and k != "ns_per_fault"},
        "fault_ms_estimate": round(
            statistics.median(r["minflt"] for r in i_runs)
            * prof["ns_per_fault"] / 1e6, 1),
        "atoms": prof["atoms"], "interned": prof["interned"],
        "huge_profile_ms": {k[3:]: round(prof_huge[k] / 1e6, 2)
                            for k in prof_huge if k.startswith("ns_")
                            and k != "ns_per_fault"},
        "huge_chunks": prof_huge["chunks_private"],
        "ns_per_fault": prof["ns_per_fault"],
    }
    print("\n".join(report(result, args.verbose)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
