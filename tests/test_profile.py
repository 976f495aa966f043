"""Tier 4: `warmstart profile` attributes time to the right module and
phase, and its outputs (terminal, JSON, HTML, budget) work."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from warmstart import profiler

PY = sys.executable

# Three kinds of known cost: find (a path hook that sleeps), load (a
# loader whose get_data sleeps under the standard get_code), execute (a
# body that sleeps, and a nested import that spins).
PROGRAM = r"""
import sys, time
from importlib.machinery import FileFinder, SourceFileLoader

SLOW = sys.argv[1]

class SlowLoader(SourceFileLoader):
    slept = set()
    def get_data(self, path):
        if self.name == "sl" and self.name not in self.slept:
            self.slept.add(self.name)
            time.sleep(0.040)
        return super().get_data(path)

class SlowFinder(FileFinder):
    def find_spec(self, fullname, target=None):
        if fullname == "sf":
            time.sleep(0.050)
        return super().find_spec(fullname, target)

def hook(path):
    if path != SLOW:
        raise ImportError
    return SlowFinder(path, (SlowLoader, [".py"]))

sys.path_hooks.insert(0, hook)
sys.path.insert(0, SLOW)
sys.path_importer_cache.clear()
import sf, sl, sx, circ_a
print("done", sf.V, sl.V, sx.V)
if len(sys.argv) > 2:
    import broken
"""


@pytest.fixture
def workload(tmp_path):
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sf.py").write_text("V = 'f'\n")
    (slow / "sl.py").write_text("V = 'l'\n")
    (slow / "sx.py").write_text("import time\ntime.sleep(0.060)\n"
                                "import sxchild\nV = 'x'\n")
    (slow / "sxchild.py").write_text(
        "import time\nend = time.perf_counter() + 0.030\n"
        "while time.perf_counter() < end:\n    pass\n")
    (slow / "circ_a.py").write_text("import circ_b\nX = circ_b.Y\n")
    (slow / "circ_b.py").write_text("import circ_a\nY = 1\n")
    (slow / "broken.py").write_text("import json\nraise RuntimeError('at import')\n")
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    return tmp_path, [PY, "-B", str(prog), str(slow)]


def profile(cmd, *opts, cwd=None, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    e.update(env or {})
    return subprocess.run([PY, "-m", "warmstart", "profile", *opts, "--", *cmd],
                          capture_output=True, text=True, cwd=cwd, env=e,
                          timeout=120)


def by_name(p):
    return {m["name"]: m for m in p["modules"]}


def test_attribution_to_find_load_execute(workload):
    tmp, cmd = workload
    r = profile(cmd, "--json", str(tmp / "p.json"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done f l x\n"          # the program's stdout untouched
    p = json.loads((tmp / "p.json").read_text())
    m = by_name(p)
    # Known costs, with room for a noisy 2-core machine on the high side.
    assert 50 <= m["sf"]["find_ms"] < 90
    assert m["sf"]["load_ms"] < 20 and m["sf"]["exec_self_ms"] < 20
    assert 40 <= m["sl"]["load_ms"] < 80
    assert m["sl"]["find_ms"] < 20
    assert 60 <= m["sx"]["exec_self_ms"] < 100
    assert 30 <= m["sxchild"]["exec_self_ms"] < 70
    assert m["sxchild"]["importer"] == "sx"
    assert m["sx"]["total_ms"] >= m["sx"]["exec_self_ms"] + m["sxchild"]["total_ms"]
    # Circular: circ_b is nested in circ_a, once.
    assert m["circ_b"]["importer"] == "circ_a"
    assert [x["name"] for x in p["modules"]].count("circ_a") == 1
    t = p["times_ms"]
    assert t["imports"] >= 180
    assert abs(t["find"] + t["load"] + t["execute"] - t["imports"]) < 1.0
    assert t["startup"] <= t["wall"]
    # The terminal report names the slow modules and the phases.
    assert re.search(r"imports\s+\d+\.\d ms", r.stderr)
    assert "sx" in r.stderr and "find" in r.stderr and "What warmstart" in r.stderr
    assert all(len(line) <= 80 for line in r.stderr.splitlines())
    assert "\033[" not in r.stderr                 # no colour off a terminal


SCHEMA = {
    "schema": str, "command": list, "runs": int, "runs_startup_ms": list,
    "python": str, "executable": str,
    "exit_code": int, "times_ms": dict, "counts": dict, "pth": list,
    "before_profiling": list, "modules": list, "top_level": list,
    "estimates": dict,
}
TIMES = ("wall", "startup", "interpreter", "site", "imports", "find", "load",
         "execute", "program", "exit")
MODULE = {"name": str, "parent": int, "importer": (str, type(None)),
          "kind": str, "error": (str, type(None)), "start_ms": float,
          "total_ms": float, "find_ms": float, "load_ms": float,
          "exec_ms": float, "exec_self_ms": float, "self_ms": float,
          "during": str, "runs": int}


def test_json_schema(workload):
    tmp, cmd = workload
    r = profile(cmd, "--json", str(tmp / "p.json"))
    p = json.loads((tmp / "p.json").read_text())
    assert p["schema"] == "warmstart-profile/1"
    assert p["runs"] == 1
    assert p["runs_startup_ms"] == [p["times_ms"]["startup"]]
    for key, typ in SCHEMA.items():
        assert isinstance(p[key], typ), key
    for key in TIMES:
        v = p["times_ms"][key]
        assert v is None or (isinstance(v, (int, float)) and v >= 0), key
    kinds = {"source", "bytecode", "extension", "builtin", "frozen",
             "namespace", "image", "failed", "other"}
    for m in p["modules"]:
        for key, typ in MODULE.items():
            assert isinstance(m[key], typ), (key, m)
        assert m["kind"] in kinds and m["during"] in ("site", "program")
        assert -1 <= m["parent"] < len(p["modules"])
    for est in ("code_image", "warm_server"):
        assert p["estimates"][est]["wall_ms"] <= p["times_ms"]["wall"]
    # The schema documented is the schema written.
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs",
                            "profile-schema.md")).read()
    for key in list(SCHEMA) + list(TIMES) + list(MODULE):
        assert f"`{key}`" in doc, key


def test_budget_and_failing_program(workload):
    tmp, cmd = workload
    assert profile(cmd, "--budget", "1ms").returncode == 3
    assert profile(cmd, "--budget", "100s").returncode == 0
    assert profile(cmd, "--budget", "soon").returncode == 2
    r = profile(cmd + ["fail"], "--json", str(tmp / "f.json"))
    direct = subprocess.run(cmd + ["fail"], capture_output=True, text=True)
    assert r.returncode == direct.returncode == 1
    # The traceback is the direct run's (the hook's frames are dropped as
    # importlib's own are), followed by the report.
    assert r.stderr.startswith(direct.stderr)
    assert "RuntimeError: at import" in r.stderr
    m = by_name(json.loads((tmp / "f.json").read_text()))
    assert m["broken"]["kind"] == "failed" and m["broken"]["error"] == "RuntimeError"
    assert m["json"]["importer"] == "broken"


def test_with_an_image(workload, tmp_path):
    tmp, cmd = workload
    code = "import json, email.parser"
    img = str(tmp_path / "app.img")
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    subprocess.run([PY, "-m", "warmstart", "build", "-o", img, "--", PY, "-c",
                    code], check=True, capture_output=True, env=e)
    r = profile([PY, "-c", code], "--json", str(tmp / "i.json"),
                env={"WARMSTART_IMAGE": img})
    assert r.returncode == 0, r.stderr
    p = json.loads((tmp / "i.json").read_text())
    m = by_name(p)
    assert m["email.parser"]["kind"] == "image" and p["image"] == img
    assert "already active" in r.stderr


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium")
def test_html_renders_in_a_browser(workload):
    tmp, cmd = workload
    page = tmp / "p.html"
    r = profile(cmd, "--html", str(page), "--json", str(tmp / "p.json"))
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert "http://" not in text and "https://" not in text   # self-contained
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--window-size=1200,900"]
    dom = subprocess.run(browser + ["--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    nodes = re.findall(r'<div class="node" ([^>]*)>', dom)
    assert nodes, dom[:2000]
    chart = re.search(r'id="chart"[^>]*data-view-ms="([\d.]+)"[^>]*'
                      r'data-width-px="(\d+)"', dom)
    view_ms, width = float(chart.group(1)), int(chart.group(2))
    sized = {}
    for attrs in nodes:
        a = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        w = float(re.search(r"width: ([\d.]+)px", a["style"]).group(1))
        sized[a["data-name"]] = (float(a["data-total-ms"]), w)
    for name in ("sx", "sxchild", "sf", "sl", "imports"):
        ms, w = sized[name]
        assert abs(w - ms / view_ms * width) < 1.0, (name, ms, w)
    assert sized["sx"][1] > sized["sxchild"][1] > 0
    shot = tmp / "p.png"
    subprocess.run(browser + [f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20000          # a drawn chart, not a blank page


class Page(HTMLParser):
    """A page's elements (tag, attributes, own text, children) and the
    tags that did not balance: html.parser accepts anything, so the check
    is ours (the page closes every element that is not void)."""
    VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base",
            "col", "embed", "source", "track", "wbr"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.elements, self.stack, self.unbalanced = [], [], []
        self.feed(text)
        self.close()
        self.unbalanced += [e["tag"] for e in self.stack]

    def handle_starttag(self, tag, attrs):
        e = {"tag": tag, "attrs": dict(attrs), "text": "", "children": []}
        if self.stack:
            self.stack[-1]["children"].append(e)
        self.elements.append(e)
        if tag not in self.VOID:
            self.stack.append(e)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1]["tag"] == tag:
            self.stack.pop()
        else:
            self.unbalanced.append("/" + tag)

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]["text"] += data

    def having(self, cls):
        return [e for e in self.elements
                if cls in e["attrs"].get("class", "").split()]


def check_static_page(text, p):
    """Self-contained, balanced, one of each id, and carrying the profile."""
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>")
    assert page.unbalanced == []
    ids = [e["attrs"]["id"] for e in page.elements if "id" in e["attrs"]]
    assert len(ids) == len(set(ids))
    for e in page.elements:
        assert not {"src", "href"} & set(e["attrs"]), e
    assert "http://" not in text and "https://" not in text
    assert "url(" not in text and "@import" not in text
    data = [e for e in page.elements if e["attrs"].get("id") == "data"][0]
    assert json.loads(data["text"]) == p


def shown_digits(ms):
    """Decimals of a block's time text (the page's short())."""
    return 0 if ms >= 100 else 1 if ms >= 1 else 2


def assert_time_text(text, ms):
    """text ends with ms as the page prints it (JavaScript's toFixed and
    Python round a half differently, hence the half-unit tolerance)."""
    number = re.search(r"(\d+(?:\.(\d+))?) ms$", text)
    assert number, text
    digits = shown_digits(ms)
    assert len(number.group(2) or "") == digits, (text, ms)
    assert abs(float(number.group(1)) - ms) <= 0.5 * 10 ** -digits + 1e-9


def px(style, prop):
    return float(re.search(rf"{prop}: ([-\d.]+)px", style).group(1))


def dump_dom(page):
    return subprocess.run([_chromium(), "--headless", "--no-sandbox",
                           "--disable-gpu", "--window-size=1200,900",
                           "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120).stdout


def check_axis(doc):
    """The axis of the chart's view: round steps (1, 2 or 5 times a power
    of ten), about 5 to 10 of them across the view, each label where its
    time is; returns the chart's view (start, length) and width."""
    chart = [e for e in doc.elements if e["attrs"].get("id") == "chart"][0]
    start = float(chart["attrs"]["data-view-start-ms"])
    view_ms = float(chart["attrs"]["data-view-ms"])
    width = float(chart["attrs"]["data-width-px"])
    ticks = doc.having("tick")
    values = [float(t["attrs"]["data-ms"]) for t in ticks]
    assert 4 <= len(values) <= 11, values
    step = values[1] - values[0]
    assert all(b - a == pytest.approx(step)
               for a, b in zip(values, values[1:]))
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5), step
    assert start - 1e-6 <= values[0] < start + step
    assert values[-1] <= start + view_ms < values[-1] + 2 * step
    for t, v in zip(ticks, values):
        assert t["text"] == t["attrs"]["data-ms"] + " ms"
        left = px(t["attrs"]["style"], "left")
        assert abs(left - (v - start) / view_ms * width) < 1, (t, start)
    return start, view_ms, width


# Test-only: hover the narrowest block and keep what the tooltip says,
# then click a module's block to zoom to it.
HOVER_AND_ZOOM = """<script>
var nodes = [].slice.call(document.querySelectorAll(".node"));
nodes.sort(function (a, b) { return a.offsetWidth - b.offsetWidth; });
var n = nodes[0];
n.dispatchEvent(new MouseEvent("mousemove", {clientX: 5, clientY: 5}));
var b = document.body;
b.setAttribute("data-hovered", n.getAttribute("data-name"));
b.setAttribute("data-hovered-ms", n.getAttribute("data-total-ms"));
b.setAttribute("data-hovered-label", n.querySelector(".label") ? "y" : "n");
b.setAttribute("data-tip", document.getElementById("tip").textContent);
document.querySelector('.node[data-name="%s"]').click();
</script></body>"""


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium")
def test_html_axis_and_block_times(workload):
    tmp, cmd = workload
    page = tmp / "p.html"
    r = profile(cmd, "--html", str(page), "--json", str(tmp / "p.json"))
    assert r.returncode == 0, r.stderr
    p = json.loads((tmp / "p.json").read_text())
    check_static_page(page.read_text(), p)
    doc = Page(dump_dom(page))
    start, view_ms, _ = check_axis(doc)
    assert start == 0
    assert view_ms == pytest.approx(p["times_ms"]["wall"], abs=1e-3)

    # Every block's text ends with its time; the slowest module's block is
    # wide enough for its name and time, as the JSON has them.
    labelled, wide = {}, set()
    for n in doc.having("node"):
        a = n["attrs"]
        labels = [c for c in n["children"]
                  if c["attrs"].get("class") == "label"]
        if labels:
            assert_time_text(labels[0]["text"], float(a["data-total-ms"]))
            labelled[(a["data-kind"], a["data-name"])] = labels[0]["text"]
        if px(a["style"], "width") > 150:
            wide.add((a["data-kind"], a["data-name"]))
    program = [m for m in p["modules"] if m["during"] == "program"]
    slowest = max(program, key=lambda m: m["total_ms"])
    assert slowest["name"] == "sx"
    text = labelled[("module", "sx")]
    assert text.startswith("sx ")
    assert_time_text(text, slowest["total_ms"])
    # The phases are labelled with their name and duration (where the
    # block is wide enough for both: the narrow ones by their duration).
    assert ("phase", "imports") in wide
    assert_time_text(labelled[("phase", "imports")], p["times_ms"]["imports"])
    for kind, name in wide:
        assert labelled[(kind, name)].startswith(name + " ")

    # A block too narrow for any text still has its time in its tooltip;
    # zoomed to sxchild, the axis is that of the new view.
    zoomed = tmp / "zoomed.html"
    zoomed.write_text(page.read_text().replace(
        "</body>", HOVER_AND_ZOOM % "sxchild"))
    doc = Page(dump_dom(zoomed))
    body = [e for e in doc.elements if e["tag"] == "body"][0]["attrs"]
    assert body["data-hovered-label"] == "n"
    assert body["data-tip"].startswith(body["data-hovered"])
    ms = float(body["data-hovered-ms"])
    shown = [float(x)
             for x in re.findall(r"(\d+\.\d\d) ms", body["data-tip"])]
    assert any(abs(x - ms) <= 0.005 + 1e-9 for x in shown), body
    start, view_ms, _ = check_axis(doc)
    sxchild = by_name(p)["sxchild"]
    assert start == pytest.approx(sxchild["start_ms"], abs=1e-3)
    assert view_ms == pytest.approx(sxchild["total_ms"], abs=1e-3)


def fake_run(startup, modules, exit_code=0, interpreter=5.0, pth=()):
    """A profile as analyse makes it, of made-up numbers: modules are
    (name, parent index, total_ms), every other time of a module a part of
    its total_ms (find a tenth, load a fifth...), its start_ms its index."""
    ms = []
    for i, (name, parent, total) in enumerate(modules):
        ms.append({
            "name": name, "parent": parent,
            "importer": modules[parent][0] if parent >= 0 else None,
            "kind": "source", "error": None, "during": "program",
            "start_ms": float(i), "total_ms": total,
            "find_ms": round(total * 0.1, 3), "load_ms": round(total * 0.2, 3),
            "exec_ms": round(total * 0.7, 3),
            "exec_self_ms": round(total * 0.5, 3),
            "self_ms": round(total * 0.8, 3)})
    return {
        "schema": profiler.SCHEMA, "command": ["python", "x.py"],
        "python": "3.12.1", "executable": "/usr/bin/python3",
        "exit_code": exit_code, "image": None,
        "times_ms": {"wall": startup + 10.0, "startup": startup,
                     "interpreter": interpreter, "site": 2.0,
                     "imports": startup - 7.0, "find": 1.0, "load": 2.0,
                     "execute": 3.0, "program": 1.0, "exit": 1.0},
        "counts": {"imports": len(modules), "site_imports": 0,
                   "before_profiling": 3, "failed": 0},
        "pth": [{"file": f, "ms": v} for f, v in pth],
        "before_profiling": ["sys", "builtins", "_io"],
        "modules": ms,
        "top_level": [i for i, m in enumerate(ms) if m["parent"] < 0],
        "estimates": {"code_image": {"saves_ms": 1.0, "wall_ms": startup,
                                     "modules": len(modules)},
                      "warm_server": {"saves_ms": startup, "wall_ms": 5.0}},
    }


def test_median_profile_of_known_runs():
    runs = [
        fake_run(100.0, [("a", -1, 10.0), ("b", 0, 4.0), ("d", -1, 1.0),
                         ("d", -1, 3.0)], pth=[("x.pth", 0.5)]),
        fake_run(300.0, [("a", -1, 30.0), ("c", -1, 9.0)], exit_code=3,
                 interpreter=None, pth=[("x.pth", 1.5)]),
        fake_run(200.0, [("a", -1, 20.0), ("b", 0, 8.0), ("d", -1, 2.0)],
                 exit_code=2, interpreter=7.0, pth=[("x.pth", 1.0)]),
    ]
    p = profiler.median_profile(runs)
    assert p["runs"] == 3 and p["runs_startup_ms"] == [100.0, 300.0, 200.0]
    assert p["exit_code"] == 3                  # the first that failed
    t = p["times_ms"]
    assert t["startup"] == 200.0 and t["wall"] == 210.0
    assert t["interpreter"] == 6.0              # of the runs that measured it
    assert p["counts"]["imports"] == 3 and type(p["counts"]["imports"]) is int
    assert p["estimates"]["code_image"]["wall_ms"] == 200.0
    assert p["pth"] == [{"file": "x.pth", "ms": 1.0}]
    names = [(m["name"], m["runs"]) for m in p["modules"]]
    # Every import of any run once, in the order of their median start
    # (b and c tie: b came first); the second "d" of run 1 is its own.
    assert names == [("a", 3), ("b", 2), ("c", 1), ("d", 2), ("d", 1)]
    a, b, c, d, d2 = p["modules"]
    assert a["total_ms"] == 20.0 and a["find_ms"] == 2.0
    assert a["self_ms"] == 16.0 and a["exec_self_ms"] == 10.0
    assert b["total_ms"] == 6.0                 # (4 + 8) / 2: two runs
    assert d["total_ms"] == 1.5 and d2["total_ms"] == 3.0
    assert c["total_ms"] == 9.0 and c["start_ms"] == 1.0
    assert b["parent"] == 0 and b["importer"] == "a"
    assert [x["parent"] for x in (a, c, d, d2)] == [-1] * 4
    assert p["top_level"] == [0, 2, 3, 4]
    header = profiler.report(p).splitlines()[0]
    assert header.startswith("warmstart profile, median of 3 runs: ")
    # Of an even number of runs, times are the mean of the middle two and
    # counts the lower one: a count some run had.
    p = profiler.median_profile(runs[:2])
    assert p["times_ms"]["startup"] == 200.0
    assert p["counts"]["imports"] == 2
    # One run is its own median.
    p = profiler.median_profile(runs[:1])
    assert p["modules"] == [dict(m, runs=1) for m in runs[0]["modules"]]
    assert p["times_ms"] == runs[0]["times_ms"]
    assert "median" not in profiler.report(p)


REPEATED = r"""
import sys
with open(sys.argv[1], "a") as f:
    f.write("ran\n")
run = len(open(sys.argv[1]).read().splitlines())
import every
if run == 2:
    import second
    sys.exit(5)
"""


def test_repeat_runs_the_command_n_times(tmp_path):
    (tmp_path / "every.py").write_text("import time\ntime.sleep(0.02)\n")
    (tmp_path / "second.py").write_text("")
    prog = tmp_path / "prog.py"
    prog.write_text(REPEATED)
    ran = tmp_path / "ran"
    out = tmp_path / "p.json"
    page = tmp_path / "p.html"
    r = profile([PY, "-B", str(prog), str(ran)], "--repeat", "3", "--json",
                str(out), "--html", str(page), "--budget", "100s")
    assert ran.read_text() == "ran\n" * 3
    # The second run's failure is the exit status, as in one run of it;
    # it comes before the budget (met here).
    assert r.returncode == 5, r.stderr
    assert "median of 3 runs" in r.stderr.splitlines()[0]
    assert all(len(line) <= 80 for line in r.stderr.splitlines())
    p = json.loads(out.read_text())
    assert p["runs"] == 3 and len(p["runs_startup_ms"]) == 3
    assert p["exit_code"] == 5 and p["over_budget"] is False
    assert sorted(p["runs_startup_ms"])[1] == p["times_ms"]["startup"]
    m = by_name(p)
    assert m["every"]["runs"] == 3 and m["every"]["importer"] is None
    assert 20 <= m["every"]["exec_self_ms"] < 60
    assert m["second"]["runs"] == 1
    check_static_page(page.read_text(), p)
    assert "Median of 3 runs" in page.read_text()


@pytest.mark.parametrize("n", ["0", "-2"])
def test_repeat_below_one_is_refused(tmp_path, n):
    marker = tmp_path / "ran"
    r = profile([PY, "-c", f"open({str(marker)!r}, 'w')"], "--repeat", n)
    assert r.returncode == 2
    assert r.stderr == (f"warmstart profile: --repeat must be at least 1, "
                        f"not {n}\n")
    assert not marker.exists()
