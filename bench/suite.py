"""Start-up benchmark suite: warmstart against stock CPython and its
peers, side by side.  `make bench` (full) and `make bench-quick` run it.

    python bench/suite.py [--quick] [--runs N] [--venvs DIR]
                          [--pythons 3.11.7,3.12.1,3.13.0] [--out DIR]

For every interpreter it uses the benchmark venv DIR/bench-<version>
(made by `make bench`: the pinned packages of requirements.txt,
warmstart, and code-data-share where it installs).  For every workload,
each configuration is prepared (an image recorded, a server started), the
configurations then alternate run by run after warm-ups, and every run's
output is checked.  Also measured: the floor (`python -S -c pass` plus
the time the program spends executing module bodies, from `warmstart
profile`), peak RSS, and PSS / private memory of 8 concurrent processes
with and without an image.  Results: bench/results/<date>-<machine>.json,
.md and .png (and latest.* copies that README embeds).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import harness

STDLIB = ("import json, email.parser, http.client, asyncio, typing, argparse, "
          "logging, unittest; print('ok')")

# name, arguments after the interpreter ({bin} is the venv's bin), text
# the output must contain, code that imports the same (for memory), quick?
WORKLOADS = [
    ("python -c pass", ["-c", "pass"], "", "pass", True),
    ("stdlib set", ["-c", STDLIB], "ok", STDLIB.split(";")[0], True),
    ("pip --version", ["-m", "pip", "--version"], "pip ", None, True),
    ("sympy", ["-c", "import sympy; print(sympy.__version__)"], "1.14", "import sympy", False),
    ("boto3", ["-c", "import boto3; print(boto3.__version__)"], "1.44", "import boto3", False),
    ("IPython", ["-c", "import IPython; print('ok')"], "ok", "import IPython", False),
    ("pydantic", ["-c", "import pydantic\nclass M(pydantic.BaseModel):\n"
                  "    x: int\nprint(M(x='7').x)"], "7", "import pydantic", False),
    ("flask", ["-c", "import flask; print(flask.Flask('app').name)"], "app",
     "import flask", False),
    ("rich", ["-c", "import rich.console, rich.table; print('ok')"], "ok",
     "import rich.console, rich.table", False),
    ("black --version", ["{bin}/black", "--version"], "black", None, False),
    ("pytest --version", ["{bin}/pytest", "--version"], "pytest", None, False),
]

CONFIGS = ["stock", "frozen_modules=on", "code-data-share", "image", "server",
           "image+server"]


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("WARMSTART", "PYCDS", "PYTHON"))}


class Venv:
    def __init__(self, path):
        self.path = path
        self.python = os.path.join(path, "bin", "python")
        self.bin = os.path.join(path, "bin")
        out = subprocess.run([self.python, "-c", "import sys, warmstart; "
                              "print(sys.version.split()[0]); "
                              "print(warmstart.__file__)"],
                             capture_output=True, text=True, check=True)
        self.version, pkg = out.stdout.split()
        self.client = os.path.join(os.path.dirname(pkg), "warmstart-exec")
        self.has_cds = subprocess.run(
            [self.python, "-c", "import cds"], capture_output=True).returncode == 0

    def has(self, args):
        return all(os.path.exists(a) for a in args if a.startswith("/"))


def prepare(venv, name, args, expect, tmp):
    """The cells for one workload: {config: Cell or error text}."""
    py = venv.python
    args = [a.replace("{bin}", venv.bin) for a in args]
    cmd = [py] + args
    env = clean_env()
    cells = {"stock": harness.Cell("stock", cmd, env, expect),
             "frozen_modules=on": harness.Cell(
                 "frozen_modules=on", [py, "-X", "frozen_modules=on"] + args,
                 env, expect)}
    slug = "".join(c if c.isalnum() else "_" for c in name)
    if venv.has_cds:
        lst, arc = os.path.join(tmp, slug + ".lst"), os.path.join(tmp, slug + ".cds")
        subprocess.run(cmd, env=dict(env, PYCDSMODE="TRACE", PYCDSLIST=lst),
                       capture_output=True)
        p = subprocess.run([py, "-c", "import cds.dump, sys; "
                            "cds.dump.run_dump(sys.argv[1], sys.argv[2])",
                            lst, arc], env=env, capture_output=True, text=True)
        if p.returncode == 0:
            cells["code-data-share"] = harness.Cell(
                "code-data-share", cmd,
                dict(env, PYCDSMODE="SHARE", PYCDSARCHIVE=arc), expect)
        else:
            cells["code-data-share"] = "dump failed: " + p.stderr[-300:]
    else:
        cells["code-data-share"] = None     # not installable for this Python
    img = os.path.join(tmp, slug + ".img")
    p = subprocess.run([py, "-m", "warmstart", "build", "-o", img, "--"] + cmd,
                       env=env, capture_output=True, text=True)
    if p.returncode == 0:
        cells["image"] = harness.Cell(
            "image", cmd, dict(env, WARMSTART_IMAGE=img), expect)
    else:
        cells["image"] = "build failed: " + p.stderr[-300:]
    senv = dict(env, WARMSTART_SERVER_DIR=os.path.join(tmp, "servers"))
    cells["server"] = _server_cell("server", venv, cmd, senv, expect)
    if isinstance(cells["image"], harness.Cell):
        cells["image+server"] = _server_cell(
            "image+server", venv, cmd, dict(senv, WARMSTART_IMAGE=img), expect)
    return cells


def _server_cell(label, venv, cmd, env, expect):
    argv = [venv.client, "--"] + cmd
    subprocess.run(argv, env=env, capture_output=True)     # starts it
    base = subprocess.run([venv.client, "--explain", "--"] + cmd, env=env,
                          capture_output=True, text=True).stdout
    base = base.splitlines()[-1].split(": ", 1)[-1]
    for _ in range(600):
        if os.path.exists(base + ".sock"):
            return harness.Cell(label, argv, env, expect)
        if os.path.exists(base + ".refused"):
            return "server refused: " + open(base + ".refused").read().strip()
        time.sleep(0.05)
    return "server did not start"


def floor_ms(venv, args, runs):
    """`python -S -c pass` plus the module bodies' execution time."""
    env = clean_env()
    bare = statistics.median(
        harness.spawn([venv.python, "-S", "-c", "pass"], env)[0] * 1e3
        for _ in range(runs))
    execs = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "p.json")
        args = [a.replace("{bin}", venv.bin) for a in args]
        for _ in range(3):
            p = subprocess.run([venv.python, "-m", "warmstart", "profile",
                                "--json", out, "--", venv.python] + args,
                               env=env, capture_output=True)
            if p.returncode != 0:
                return None
            with open(out) as f:
                execs.append(json.load(f)["times_ms"]["execute"])
    return round(bare + statistics.median(execs), 3)


def memory(venv, code, n=8, img=None):
    """PSS and private memory (MiB) of n concurrent processes that have
    run `code` (with the image img if given)."""
    hold = code + "\nimport sys; print('ready', flush=True); sys.stdin.read()"
    env = clean_env()
    if img:
        env["WARMSTART_IMAGE"] = img
    procs = [subprocess.Popen([venv.python, "-c", hold], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(n)]
    pss = private = 0
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            with open(f"/proc/{p.pid}/smaps_rollup") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line
                              and not line.startswith("0"))
            kib = lambda k: int(fields[k].split()[0])     # noqa: E731
            pss += kib("Pss")
            private += kib("Private_Clean") + kib("Private_Dirty")
    finally:
        for p in procs:
            p.stdin.close()
            p.wait()
    return {"pss_mib": round(pss / 1024, 1), "private_mib": round(private / 1024, 1)}


def machine():
    info = {"hostname": socket.gethostname(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gov = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    info["governor"] = open(gov).read().strip() if os.path.exists(gov) else \
        "not exposed (virtual machine?)"
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="three workloads, 5 runs (a few minutes)")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--venvs", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", ".venv"))
    ap.add_argument("--pythons", default="3.11.7,3.12.1,3.13.0")
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args()
    runs = args.runs or (5 if args.quick else 15)
    workloads = [w for w in WORKLOADS if w[4] or not args.quick]
    m = machine()
    print(f"{m.get('cpu', '?')}, {m['cpus']} CPUs, governor {m['governor']}, "
          f"load {m['loadavg'][0]:.2f}; {runs} alternating runs per cell")
    results = {"date": datetime.date.today().isoformat(), "machine": m,
               "mode": "quick" if args.quick else "full", "runs": runs,
               "configs": CONFIGS, "pythons": {}}
    for ver in args.pythons.split(","):
        path = os.path.join(args.venvs, f"bench-{ver}")
        if not os.path.exists(path):
            print(f"== Python {ver}: no venv {path} (make bench makes it)")
            continue
        venv = Venv(path)
        per = results["pythons"][venv.version] = {"workloads": {}, "memory": {}}
        print(f"== Python {venv.version}")
        with tempfile.TemporaryDirectory(prefix="wsbench-") as tmp:
            try:
                for name, wargs, expect, code, _ in workloads:
                    if not venv.has([a.replace("{bin}", venv.bin) for a in wargs]):
                        continue
                    cells = prepare(venv, name, wargs, expect, tmp)
                    live = [c for c in cells.values() if isinstance(c, harness.Cell)]
                    harness.measure(live, runs)
                    stock = cells["stock"]
                    data = {"configs": {}, "floor_ms": floor_ms(venv, wargs, runs)}
                    for c in CONFIGS:
                        cell = cells.get(c)
                        if cell is None:
                            data["configs"][c] = {"unavailable": "not installable "
                                                  "for this Python"}
                        elif isinstance(cell, str):
                            data["configs"][c] = {"error": cell}
                        else:
                            data["configs"][c] = harness.summary(cell, stock)
                    per["workloads"][name] = data
                    line = "  ".join(
                        f"{c} {s['median_ms']:.1f}" if "median_ms" in s else f"{c} —"
                        for c, s in data["configs"].items())
                    print(f"  {name:17s} {line}  floor {data['floor_ms']}")
                    if code and name in ("stdlib set", "sympy", "IPython"):
                        img = cells["image"].env.get("WARMSTART_IMAGE") \
                            if isinstance(cells["image"], harness.Cell) else None
                        per["memory"][name] = {"stock": memory(venv, code)}
                        if img:
                            per["memory"][name]["image"] = memory(venv, code, img=img)
            finally:
                subprocess.run([venv.python, "-m", "warmstart", "server", "stop"],
                               env=dict(clean_env(), WARMSTART_SERVER_DIR=os.path.join(
                                   tmp, "servers")), capture_output=True)
    m["loadavg_after"] = os.getloadavg()
    stem = f"{results['date']}-{m['hostname']}" + ("-quick" if args.quick else "")
    base = harness.write(results, CONFIGS, args.out, stem)
    for ext in (".json", ".md", ".png"):
        shutil.copy(base + ext, os.path.join(args.out, "latest" + ext))
    print(open(base + ".md").read())
    print(f"wrote {base}.json, .md, .png")


if __name__ == "__main__":
    sys.exit(main())
