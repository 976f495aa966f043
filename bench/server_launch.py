"""Whole-process wall time of a command run directly vs launched through
its warm server (tier 3), side by side in one session.

For each workload: a first launch through warmstart-exec runs the command
directly, records its imports and starts the server; once the server
listens, direct runs and served launches alternate (A B A B ...) after
warm-ups, and their medians and ratio are reported.  Every served run's
output is compared with the direct run's, so a broken configuration
cannot look fast.

Run it in a venv where warmstart is installed (make demo does).

    python bench/server_launch.py [--runs N] [--heavy]

--heavy adds sympy and, on 3.11, `aws --version` (installed into this
venv if missing).
"""
import argparse
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--heavy", action="store_true")
    args = ap.parse_args()
    py = sys.executable
    workloads = [("python -c pass", [py, "-c", "pass"]),
                 ("stdlib set", [py, "-c", STDLIB]),
                 ("pip --version", [py, "-m", "pip", "--version"])]
    if args.heavy:
        if ensure("sympy"):
            workloads.append(("import sympy", [py, "-c", "import sympy"]))
        if sys.version_info[:2] == (3, 11) and ensure("awscli"):
            aws = shutil.which("aws", path=os.path.dirname(py))
            if aws:
                workloads.append(("aws --version", [py, aws, "--version"]))
    print(f"Python {sys.version.split()[0]}: direct vs through the warm "
          f"server, median of {args.runs} alternating runs")
    true = shutil.which("true")
    floor = statistics.median(run([true], os.environ)[0]
                              for _ in range(args.runs * 2)) * 1e3
    print(f"  (this harness spawning /bin/true takes {floor:.1f} ms: part of "
          f"every figure below)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("WARMSTART")}
        env["WARMSTART_SERVER_DIR"] = os.path.join(tmp, "servers")
        try:
            for label, cmd in workloads:
                r = side_by_side(cmd, env, args.runs)
                if r is None:
                    print(f"  {label:15s} no server (see its log)")
                    continue
                direct, served = r
                print(f"  {label:15s} direct {direct:7.1f} ms   served "
                      f"{served:6.1f} ms   {direct / served:5.1f}x faster")
        finally:
            subprocess.run([py, "-m", "warmstart", "server", "stop"], env=env,
                           capture_output=True)


if __name__ == "__main__":
    main()
