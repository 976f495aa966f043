"""Tier 4: `warmstart profile` attributes time to the right module and
phase, and its outputs (terminal, JSON, HTML, budget) work."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

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
    "schema": str, "command": list, "python": str, "executable": str,
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
          "during": str}


def test_json_schema(workload):
    tmp, cmd = workload
    r = profile(cmd, "--json", str(tmp / "p.json"))
    p = json.loads((tmp / "p.json").read_text())
    assert p["schema"] == "warmstart-profile/1"
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
