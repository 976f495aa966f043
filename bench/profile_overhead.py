"""How much `warmstart profile` disturbs what it measures: the wall time
of `python -c "import email.parser, json, asyncio"` as the profiler
measures it, next to the same command unprofiled, alternating, in one
session.

    python bench/profile_overhead.py [--runs N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from warmstart import profiler

CODE = "import email.parser, json, asyncio"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    cmd = [sys.executable, "-c", CODE]
    plain, profiled, imports = [], [], []
    for i in range(args.runs + 2):
        t = time.perf_counter_ns()
        subprocess.run(cmd, env=env, check=True)
        dt = time.perf_counter_ns() - t
        record, t0, t1, rc = profiler.run(cmd, env)
        p = profiler.analyse(record, t0, t1, rc, cmd)
        if i >= 2:                              # warm-ups
            plain.append(dt / 1e6)
            profiled.append(p["times_ms"]["wall"])
            imports.append(p["counts"]["imports"])
    a, b = statistics.median(plain), statistics.median(profiled)
    print(f"Python {sys.version.split()[0]}: {CODE!r}, median of {args.runs}")
    print(f"  unprofiled {a:6.1f} ms   profiled {b:6.1f} ms   overhead "
          f"{b - a:+5.1f} ms ({100 * (b - a) / a:+.0f}%) for "
          f"{statistics.median(imports):.0f} timed imports")


if __name__ == "__main__":
    main()
