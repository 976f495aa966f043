"""Machinery of the benchmark suite (suite.py), apart from its workloads
and configurations so that tests can drive it with fast fake ones
(tests/test_bench_harness.py): running a set of cells alternately,
checking their output, statistics, and the Markdown table and chart."""
import json
import os
import statistics
import subprocess
import time


class CheckFailed(Exception):
    """A run's exit status or output was not what the workload expects:
    its configuration is reported as broken, never as fast."""


class Cell:
    """One configuration of one workload: the argv and environment of a
    run, and the text its output must contain."""

    def __init__(self, name, argv, env, expect=""):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.expect = expect
        self.times = []         # seconds
        self.maxrss = []        # KiB
        self.error = None


def spawn(argv, env):
    """Run once: (seconds, exit status, output, peak RSS in KiB)."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read()
    p.stdout.close()
    _, status, usage = os.wait4(p.pid, 0)      # reaps it, with its rusage
    elapsed = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, p.returncode, out.decode("utf-8", "replace"), usage.ru_maxrss


def check(cell, rc, out):
    if rc != 0 or cell.expect not in out:
        raise CheckFailed(f"{cell.name}: exit status {rc}, expected "
                          f"{cell.expect!r} in output:\n{out[-600:]}")


def measure(cells, runs, warmups=2, runner=spawn):
    """Run the cells alternately (A B C A B C ...): warm-ups first, then
    `runs` rounds.  A cell whose run fails its check is dropped from the
    rounds with the error recorded.  Returns the cells."""
    for rnd in range(warmups + runs):
        for cell in cells:
            if cell.error:
                continue
            seconds, rc, out, rss = runner(cell.argv, cell.env)
            try:
                check(cell, rc, out)
            except CheckFailed as e:
                cell.error = str(e)
                continue
            if rnd >= warmups:
                cell.times.append(seconds)
                cell.maxrss.append(rss)
    return cells


def summary(cell, baseline=None):
    """Median, quartiles, spread, ratio to the baseline cell's median."""
    if cell.error or not cell.times:
        return {"error": cell.error or "no runs"}
    ms = sorted(t * 1e3 for t in cell.times)
    med = statistics.median(ms)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = q3 = med
    out = {"median_ms": round(med, 3), "q1_ms": round(q1, 3),
           "q3_ms": round(q3, 3), "spread": round((q3 - q1) / med, 4),
           "runs": len(ms), "maxrss_kib": int(statistics.median(cell.maxrss))}
    if baseline is not None and not baseline.error and baseline.times:
        out["speedup"] = round(statistics.median(
            t * 1e3 for t in baseline.times) / med, 3)
    return out


def markdown(results, configs):
    """One table: a row per (Python, workload), a column per
    configuration with its median and speed-up over stock; the floor."""
    head = ["Python", "workload"] + [c for c in configs] + ["floor"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    for py, per in results["pythons"].items():
        for wl, data in per["workloads"].items():
            row = [py, wl]
            for c in configs:
                s = data["configs"].get(c)
                if s is None or "unavailable" in s:
                    row.append("n/a")
                elif "error" in s:
                    row.append("broken")
                elif c == "stock" or "speedup" not in s:
                    row.append(f"{s['median_ms']:.1f} ms")
                else:
                    row.append(f"{s['median_ms']:.1f} ms ({s['speedup']:.1f}x)")
            floor = data.get("floor_ms")
            row.append("—" if floor is None else f"{floor:.1f} ms")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def chart(results, configs, path):
    """A PNG: per Python, grouped bars (median wall time per
    configuration, log scale) for each workload, the floor as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pythons = list(results["pythons"])
    fig, axes = plt.subplots(len(pythons), 1, squeeze=False,
                             figsize=(12, 3.6 * len(pythons)))
    width = 0.8 / max(len(configs), 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, py in zip(axes[:, 0], pythons):
        wls = list(results["pythons"][py]["workloads"])
        for k, c in enumerate(configs):
            xs, ys = [], []
            for i, wl in enumerate(wls):
                s = results["pythons"][py]["workloads"][wl]["configs"].get(c)
                if s and "median_ms" in s:
                    xs.append(i + (k - (len(configs) - 1) / 2) * width)
                    ys.append(s["median_ms"])
            ax.bar(xs, ys, width, label=c, color=colors[k % len(colors)])
        for i, wl in enumerate(wls):
            floor = results["pythons"][py]["workloads"][wl].get("floor_ms")
            if floor:
                ax.hlines(floor, i - 0.45, i + 0.45, colors="black",
                          linestyles="dashed", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylabel("wall time, ms (log)")
        ax.set_title(f"Python {py}  (dashed: the floor)")
        ax.set_xticks(range(len(wls)))
        ax.set_xticklabels(wls, rotation=15, fontsize=8)
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=colors[k % len(colors)], label=c)
                        for k, c in enumerate(configs)],
               loc="upper center", ncol=len(configs), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.6 * len(pythons))))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(results, configs, directory, stem):
    """results -> <stem>.json, <stem>.md, <stem>.png in directory."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, stem)
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(markdown(results, configs))
    chart(results, configs, base + ".png")
    return base
