"""Opening an image vs the number of modules in it: should be flat.

Writes images of 10, 100, 1,000 and 5,000 modules (stdlib code under
generated names), then times Image() on each, alternating between them so
that all sizes see the same machine state.  Also times one lookup plus the
materialisation of one small module, which should be flat as well.

    python bench/open_scaling.py [--rounds N]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

import warmstart
from warmstart import _image, image

SIZES = (10, 100, 1000, 5000)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    codes = []
    for name, path, _ in image.stdlib_modules(include_tests=False):
        try:
            codes.append(image.compile_module(path))
        except (SyntaxError, ValueError, OSError):
            continue
    probe = compile("X = 1\n", "probe.py", "exec")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for n in SIZES:
            entries = [("probe", probe, None)] + [
                (f"m{i:05d}", codes[i % len(codes)], None) for i in range(n - 1)]
            paths[n] = os.path.join(tmp, f"{n}.img")
            _image.write_image(paths[n], entries,
                               image._preferred_base([str(n)]))
        opens = {n: [] for n in SIZES}
        firsts = {n: [] for n in SIZES}
        sizes = {n: os.path.getsize(p) for n, p in paths.items()}
        for _ in range(args.rounds):
            for n in SIZES:
                t0 = time.perf_counter_ns()
                img = warmstart.Image(paths[n])
                t1 = time.perf_counter_ns()
                img.get_code("probe")
                t2 = time.perf_counter_ns()
                opens[n].append(t1 - t0)
                firsts[n].append(t2 - t1)
    base = statistics.median(opens[SIZES[0]])
    print(f"Python {sys.version.split()[0]}: open and first get_code, "
          f"median of {args.rounds}")
    for n in SIZES:
        o = statistics.median(opens[n])
        f = statistics.median(firsts[n])
        print(f"  {n:5d} modules ({sizes[n] / 1e6:6.1f} MB): open "
              f"{o / 1e3:6.1f} us ({o / base:4.2f}x of 10), "
              f"lookup+materialise one module {f / 1e3:5.1f} us")


if __name__ == "__main__":
    main()
