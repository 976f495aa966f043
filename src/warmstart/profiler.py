"""`warmstart profile`: where a program's start-up time goes (tier 4).

    warmstart profile [--json F] [--html F] [--budget 150ms] [--top N]
                      [--repeat N] -- python -m mytool args...

Runs the command with WARMSTART_PROFILE set (profile_hook.py times every
import in the child), times the whole process from here, and runs
`python -S` a few times more to know what the bare interpreter's start
costs.  With --repeat N the command runs N times and every time reported
is the median of the runs (median_profile).  The phases of one run, on
one clock:

  interpreter   spawn until Python runs code (estimated by `python -S`)
  site          site and its .pth files, up to sitecustomize/usercustomize
  imports       the program's imports: find + load + execute
  program       everything else the program does before it exits
  exit          from the last atexit handler until the process is gone

start-up = interpreter + site + imports (what --budget limits).  The JSON
schema ("warmstart-profile/1") is documented in docs/profile-schema.md.
"""
import marshal
import os
import statistics
import subprocess
import sys
import tempfile
import time

SCHEMA = "warmstart-profile/1"
# Fraction of find + load that a code image removes, measured by
# bench/import_time.py (43-58% on 3.11-3.13); and the cost of a launch
# through a warm server on this kind of machine (bench/server_launch.py).
IMAGE_REMOVES = 0.5
SERVER_LAUNCH_MS = 4.0
_now = time.perf_counter_ns


class ProfileError(Exception):
    pass


def run(command, env=None):
    """Run command under the hook; return (record, t_spawn, t_end, rc)."""
    env = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="warmstart-profile-") as tmp:
        out = os.path.join(tmp, "record")
        env["WARMSTART_PROFILE"] = out
        t_spawn = _now()
        try:
            p = subprocess.Popen(command, env=env)
        except OSError as e:
            raise ProfileError(f"cannot run {command[0]}: {e}")
        rc = p.wait()
        t_end = _now()
        try:
            with open(out, "rb") as f:
                record = marshal.load(f)
        except (OSError, EOFError, ValueError):
            record = None
    return record, t_spawn, t_end, rc


def interpreter_start_ns(executable, env=None, runs=3):
    """Spawn until `python -S` runs its first line, median of runs."""
    code = "import time; print(time.perf_counter_ns())"
    samples = []
    for _ in range(runs):
        t = _now()
        p = subprocess.run([executable, "-S", "-c", code], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            return None
        samples.append(int(p.stdout) - t)
    return statistics.median(samples)


def analyse(record, t_spawn, t_end, rc, command, core_ns=None):
    """The profile as a JSON-able dict (schema: docs/profile-schema.md)."""
    ms = lambda ns: round(ns / 1e6, 3)       # noqa: E731
    events = record["events"]
    kinds = record["kinds"]
    n = len(events)
    children = [[] for _ in range(n)]
    for i, ev in enumerate(events):
        if ev[1] >= 0:
            children[ev[1]].append(i)
    modules = []
    for i, (name, parent, start, end, find, load, error) in enumerate(events):
        total = max(end - start, 0)
        nested = sum(events[c][3] - events[c][2] for c in children[i])
        exec_all = max(total - find - load, 0)
        modules.append({
            "name": name,
            "parent": parent,
            "importer": events[parent][0] if parent >= 0 else None,
            "kind": kinds.get(name, "failed") if not error else "failed",
            "error": error,
            "start_ms": ms(start - t_spawn),
            "total_ms": ms(total),
            "find_ms": ms(find),
            "load_ms": ms(load),
            "exec_ms": ms(exec_all),
            "exec_self_ms": ms(max(exec_all - nested, 0)),
            "self_ms": ms(find + load + max(exec_all - nested, 0)),
        })
    site_names = ("sitecustomize", "usercustomize")
    site_end = record["t_hook"]
    for ev in events:
        if ev[1] < 0 and ev[0] in site_names:
            site_end = max(site_end, ev[3])
    top = [m for m, ev in zip(modules, events) if ev[1] < 0]
    for m, ev in zip(modules, events):
        m["during"] = "site" if ev[2] < site_end else "program"
    imports_ns = sum(ev[3] - ev[2] for ev in events
                     if ev[1] < 0 and ev[2] >= site_end)
    before_site_end = site_end - t_spawn
    if core_ns is None or core_ns > record["t_hook"] - t_spawn:
        core_ns = None
    interpreter_ns = core_ns if core_ns is not None else 0
    site_ns = before_site_end - interpreter_ns
    t_exit = record["t_exit"]
    program_ns = max(t_exit - site_end - imports_ns, 0)
    exit_ns = max(t_end - t_exit, 0)
    prog = [m for m in modules if m["during"] == "program"]
    find = sum(m["find_ms"] for m in prog)
    load = sum(m["load_ms"] for m in prog)
    execute = sum(m["exec_self_ms"] for m in prog)
    startup_ns = before_site_end + imports_ns
    wall_ns = t_end - t_spawn
    source = [m for m in prog if m["kind"] in ("source", "bytecode")]
    image_saves = IMAGE_REMOVES * sum(m["find_ms"] + m["load_ms"]
                                      for m in source)
    # A served launch skips start-up and the heap's teardown at exit.
    server_wall = ms(program_ns) + SERVER_LAUNCH_MS
    return {
        "schema": SCHEMA,
        "command": list(command),
        "python": record["python"],
        "executable": record["executable"],
        "exit_code": rc,
        "image": record.get("image"),
        "times_ms": {
            "wall": ms(wall_ns),
            "startup": ms(startup_ns),
            "interpreter": ms(interpreter_ns) if core_ns is not None else None,
            "site": ms(site_ns),
            "imports": ms(imports_ns),
            "find": round(find, 3),
            "load": round(load, 3),
            "execute": round(execute, 3),
            "program": ms(program_ns),
            "exit": ms(exit_ns),
        },
        "counts": {
            "imports": len(prog),
            "site_imports": len(modules) - len(prog),
            "before_profiling": len(record["before"]),
            "failed": sum(1 for m in prog if m["kind"] == "failed"),
        },
        "pth": [{"file": f, "ms": ms(e - s)} for f, s, e in record["pth"]],
        "before_profiling": list(record["before"]),
        "modules": modules,
        "top_level": [modules.index(m) for m in top],
        "estimates": {
            "code_image": {
                "saves_ms": round(image_saves, 3),
                "wall_ms": round(ms(wall_ns) - image_saves, 3),
                "modules": len(source),
            },
            "warm_server": {
                "saves_ms": round(ms(wall_ns) - server_wall, 3),
                "wall_ms": round(server_wall, 3),
            },
        },
    }


# -- several runs: the median profile --------------------------------------

# A module's times that are medians over the runs that imported it.
MODULE_TIMES = ("start_ms", "total_ms", "find_ms", "load_ms", "exec_ms",
                "exec_self_ms", "self_ms")


def _median(values):
    """The median of the values that are not None (None if none is).  Of
    whole numbers (counts) the lower median, so that a count stays one a
    run had; times are rounded as analyse rounds them."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if all(type(v) is int for v in vals):
        return statistics.median_low(vals)
    return round(statistics.median(vals), 3)


def _median_fields(dicts):
    """Field by field median of dicts of one shape (nested dicts too)."""
    out = {}
    for key, value in dicts[0].items():
        vals = [d.get(key) for d in dicts]
        out[key] = (_median_fields(vals) if isinstance(value, dict)
                    else _median(vals))
    return out


def _occurrences(items, field):
    """(item[field], k) for each item, k counting the earlier items of that
    name: the k-th import of a module in one run is the k-th in another
    (a module may be imported twice in a run, after a failed attempt)."""
    seen = {}
    keys = []
    for item in items:
        n = item[field]
        keys.append((n, seen.get(n, 0)))
        seen[n] = seen.get(n, 0) + 1
    return keys


def median_profile(profiles):
    """One profile of several runs of a command, each analyse's output:
    every time is the median over the runs (a module's over the runs that
    imported it, its count in `runs`).  Medians do not add up the way one
    run's times do (self_ms is the median of each run's self_ms, not the
    sum of the medians of its parts).  A module's parent, kind, error and
    phase are those of the first run that imported it."""
    first = profiles[0]
    merged = {}                 # key -> {"runs": [module...], "parent": key}
    for p in profiles:
        keys = _occurrences(p["modules"], "name")
        for m, key in zip(p["modules"], keys):
            entry = merged.setdefault(key, {
                "runs": [],
                "parent": keys[m["parent"]] if m["parent"] >= 0 else None})
            entry["runs"].append(m)
    modules = []
    for key, entry in merged.items():
        m = dict(entry["runs"][0])
        for field in MODULE_TIMES:
            m[field] = _median(r[field] for r in entry["runs"])
        m["runs"] = len(entry["runs"])
        modules.append((key, entry["parent"], m))
    # In the order they started, as in one run's profile (stable: ties
    # keep the first run's order).
    modules.sort(key=lambda x: x[2]["start_ms"])
    index = {key: i for i, (key, _, _) in enumerate(modules)}
    for _, parent, m in modules:
        m["parent"] = index[parent] if parent is not None else -1
    modules = [m for _, _, m in modules]

    pth = {}
    for p in profiles:
        for x, key in zip(p["pth"], _occurrences(p["pth"], "file")):
            pth.setdefault(key, []).append(x["ms"])
    out = {}
    for key, value in first.items():
        out[key] = value
        if key == "command":            # near the top, where it is read
            out["runs"] = len(profiles)
            out["runs_startup_ms"] = [p["times_ms"]["startup"]
                                      for p in profiles]
    out.update({
        # The status a single run would give: the first failure's.
        "exit_code": next((p["exit_code"] for p in profiles
                           if p["exit_code"] != 0), 0),
        "times_ms": _median_fields([p["times_ms"] for p in profiles]),
        "counts": _median_fields([p["counts"] for p in profiles]),
        "pth": [{"file": f, "ms": _median(v)} for (f, _), v in pth.items()],
        "modules": modules,
        "top_level": [i for i, m in enumerate(modules) if m["parent"] < 0],
        "estimates": _median_fields([p["estimates"] for p in profiles]),
    })
    return out


# -- the terminal report ---------------------------------------------------

class _Style:
    def __init__(self, color):
        self.color = color

    def __call__(self, text, code):
        return f"\033[{code}m{text}\033[0m" if self.color else text


def _clip(text, width):
    return text if len(text) <= width else text[:width - 1] + "…"


def report(p, top=10, color=False):
    """The profile as text for an 80-column terminal."""
    st = _Style(color)
    t = p["times_ms"]
    lines = []
    cmd = " ".join(p["command"])
    runs = p.get("runs", 1)
    median = f", median of {runs} runs" if runs > 1 else ""
    lines.append(st(_clip(f"warmstart profile{median}: {cmd}", 80), "1"))
    lines.append(f"Python {p['python']}, exit status {p['exit_code']}"
                 + (f", image {p['image']}" if p["image"] else ""))
    lines.append("")

    def row(label, value, note=""):
        v = "   n/a  " if value is None else f"{value:8.1f}"
        lines.append(f"  {label:<24s}{v} ms  {note}"[:80].rstrip())

    row("wall time", t["wall"])
    row("interpreter start", t["interpreter"], "(as `python -S`)")
    row("site and .pth files", t["site"])
    c = p["counts"]
    row("imports", t["imports"], f"({c['imports']} modules"
        + (f", {c['failed']} not found or failed)" if c["failed"] else ")"))
    lines.append("      " + st(f"find {t['find']:.1f}", "34") + " · "
                 + st(f"load {t['load']:.1f}", "33") + " · "
                 + st(f"execute {t['execute']:.1f}", "32") + " ms")
    row("program's own work", t["program"])
    row("exit", t["exit"])
    spread = ""
    if runs > 1:
        each = p["runs_startup_ms"]
        spread = f" (runs {min(each):.1f}–{max(each):.1f})"
    lines.append(st(f"  start-up (interpreter + site + imports): "
                    f"{t['startup']:.1f} ms{spread}", "1"))
    slow_pth = sorted(p["pth"], key=lambda x: -x["ms"])[:3]
    for x in slow_pth:
        if x["ms"] >= 0.5:
            lines.append(f"    .pth {_clip(x['file'], 60):60s} {x['ms']:6.1f} ms")

    mods = [m for m in p["modules"] if m["during"] == "program"]
    header = (f"  {'module':<30s} {'total':>7s} {'find':>6s} {'load':>6s} "
              f"{'exec':>6s}  imported by")

    def table(title, key):
        lines.append("")
        lines.append(st(title, "1"))
        lines.append(header)
        for m in sorted(mods, key=lambda m: -m[key])[:top]:
            by = m["importer"] or "(program)"
            kind = "" if m["kind"] in ("source", "image") else f" [{m['kind']}]"
            lines.append(_clip(
                f"  {_clip(m['name'] + kind, 30):<30s} {m[key]:7.1f} "
                f"{m['find_ms']:6.1f} {m['load_ms']:6.1f} "
                f"{m['exec_self_ms']:6.1f}  {by}", 80))

    table("Slowest imports, including what they import (ms)", "total_ms")
    table("Slowest imports by their own time (ms)", "self_ms")
    e = p["estimates"]
    lines.append("")
    lines.append(st("What warmstart would save", "1"))
    if p["image"]:
        lines.append("  code image:  already active for this run")
    else:
        lines.append(f"  code image:  ~{e['code_image']['wall_ms']:.0f} ms wall"
                     f" (saves ~{e['code_image']['saves_ms']:.0f} ms: about "
                     f"half of find + load")
        lines.append(f"               of the {e['code_image']['modules']} "
                     f"source modules)")
    lines.append(f"  warm server: ~{e['warm_server']['wall_ms']:.0f} ms wall "
                 f"(the program's own work and a ~{SERVER_LAUNCH_MS:.0f} ms "
                 f"launch)")
    return "\n".join(lines) + "\n"


def parse_duration(text):
    """'150ms', '0.2s', '150' (ms) -> milliseconds."""
    s = text.strip().lower()
    try:
        if s.endswith("ms"):
            return float(s[:-2])
        if s.endswith("s"):
            return float(s[:-1]) * 1000
        return float(s)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 150ms, 0.2s)")


def main(args, command):
    """warmstart profile: returns the exit status."""
    import json
    budget = None
    if args.budget:
        try:
            budget = parse_duration(args.budget)
        except ValueError as e:
            print(f"warmstart profile: {e}", file=sys.stderr)
            return 2
    repeat = getattr(args, "repeat", 1)
    runs = []
    for _ in range(repeat):
        try:
            record, t_spawn, t_end, rc = run(command)
        except ProfileError as e:
            print(f"warmstart profile: {e}", file=sys.stderr)
            return 127
        if record is None:
            print("warmstart profile: the command's interpreter did not run "
                  "warmstart's hook (is warmstart installed for it, and is "
                  "it a Python command?)", file=sys.stderr)
            return rc or 1
        runs.append((record, t_spawn, t_end, rc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    core = interpreter_start_ns(runs[0][0]["executable"], env,
                                runs=max(3, repeat))
    p = median_profile([analyse(*r, command, core) for r in runs])
    rc = p["exit_code"]
    if budget is not None:
        p["budget_ms"] = budget
        p["over_budget"] = p["times_ms"]["startup"] > budget
    # Like -X importtime: the report goes to stderr, the program's stdout
    # stays the program's.
    out = sys.stderr
    color = out.isatty() and not os.environ.get("NO_COLOR")
    out.write(report(p, top=args.top, color=color))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(p, f, indent=1)
    if args.html:
        from . import profile_html
        with open(args.html, "w") as f:
            f.write(profile_html.render(p))
    if rc != 0:
        return rc
    if budget is not None and p["over_budget"]:
        print(f"warmstart profile: start-up {p['times_ms']['startup']:.1f} ms "
              f"exceeds the budget of {budget:g} ms", file=out)
        return 3
    return 0
