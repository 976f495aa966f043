"""Whole-process wall time of a command run directly vs launched through
its warm server (tier 3), side by side in one session.

For each workload: a first launch through warmstart-exec runs the command
directly, records its imports and starts the server; once the server
listens, direct runs and served launches alternate (A B A B ...) after
warm-ups, and their medians and ratio are reported.  Every served run's
output is compared with the direct run's, so a broken configuration
cannot look fast.

Run it in a venv where warmstart is installed (make demo does).

    python bench/server_launch.py [--runs N] [--heavy] [--json FILE] [-v]

-v also prints what spawning a process costs this harness.

--heavy adds sympy and, on 3.11, `aws --version` (installed into this
venv if missing).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import warmstart

CLIENT = os.path.join(os.path.dirname(warmstart.__file__), "warmstart-exec")
STDLIB = ("import json, email.parser, http.client, asyncio, typing, argparse, "
          "logging, unittest, xml.etree.ElementTree, decimal, dataclasses, "
          "urllib.request, tomllib, zipfile, csv, pathlib, subprocess")


def run(cmd, env):
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t, p.returncode, p.stdout


def wait_for_server(cmd, env):
    out = subprocess.run([CLIENT, "--explain", "--", *cmd], env=env,
                         capture_output=True, text=True, check=True).stdout
    base = out.splitlines()[-1].split(": ", 1)[1]
    for _ in range(600):
        if os.path.exists(base + ".sock"):
            return True
        if os.path.exists(base + ".refused"):
            return False
        time.sleep(0.05)
    return False


def side_by_side(cmd, env, runs):
    served_cmd = [CLIENT, "--", *cmd]
    run(served_cmd, env)                     # direct; starts the server
    if not wait_for_server(cmd, env):
        return None
    direct, served = [], []
    for _ in range(3):
        run(cmd, env)
        run(served_cmd, env)
    for _ in range(runs):
        t1, rc1, out1 = run(cmd, env)
        t2, rc2, out2 = run(served_cmd, env)
        if (rc1, out1) != (rc2, out2):
            raise SystemExit(f"served run differs from direct run: {cmd}\n"
                             f"{rc1} {out1[:200]!r}\n{rc2} {out2[:200]!r}")
        direct.append(t1)
        served.append(t2)
    return statistics.median(direct) * 1e3, statistics.median(served) * 1e3


def ensure(package, module=None):
    try:
        __import__(module or package)
        return True
    except ImportError:
        pass
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                           package], capture_output=True).returncode == 0


def workload_line(w, width):
    """The line printed for one workload's results *w*."""
    if w.get("error"):
        return f"  {w['label']:{width}s} {w['error']}"
    return (f"  {w['label']:{width}s} direct {w['direct_ms']:7.1f} ms   served "
            f"{w['served_ms']:6.1f} ms   "
            f"{w['direct_ms'] / w['served_ms']:5.1f}x faster")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--heavy", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also print the harness's own cost per process")
    args = ap.parse_args()
    py = sys.executable
    # python's arguments for each workload (-c ... and -m pip --version as
    # in import_time.py, so that make demo can set them side by side).
    workloads = [("python -c pass", ["-c", "pass"]),
                 ("stdlib set", ["-c", STDLIB]),
                 ("pip --version", ["-m", "pip", "--version"])]
    if args.heavy:
        if ensure("sympy"):
            workloads.append(("import sympy", ["-c", "import sympy"]))
        if sys.version_info[:2] == (3, 11) and ensure("awscli"):
            aws = shutil.which("aws", path=os.path.dirname(py))
            if aws:
                workloads.append(("aws --version", [aws, "--version"]))
    width = max(15, *(len(label) for label, _ in workloads))
    result = {"python": sys.version.split()[0], "runs": args.runs,
              "workloads": []}
    print(f"Python {result['python']}: direct vs through the warm "
          f"server, median of {args.runs} alternating runs")
    true = shutil.which("true")
    floor = statistics.median(run([true], os.environ)[0]
                              for _ in range(args.runs * 2)) * 1e3
    result["harness_ms"] = floor
    if args.verbose:
        print(f"  (this harness spawning /bin/true takes {floor:.1f} ms: part"
              f" of every figure below)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("WARMSTART")}
        env["WARMSTART_SERVER_DIR"] = os.path.join(tmp, "servers")
        try:
            for label, argv in workloads:
                w = {"label": label, "argv": argv}
                r = side_by_side([py, *argv], env, args.runs)
                if r is None:
                    w["error"] = "no server (see its log)"
                else:
                    w["direct_ms"], w["served_ms"] = r
                result["workloads"].append(w)
                print(workload_line(w, width), flush=True)
        finally:
            subprocess.run([py, "-m", "warmstart", "server", "stop"], env=env,
                           capture_output=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
