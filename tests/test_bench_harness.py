"""The benchmark suite's machinery on fast fake workloads (the benchmark
itself is not a test)."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import harness  # noqa: E402


def fake_runner(times, outputs=None):
    """A runner that returns scripted times; records the call order."""
    calls = []

    def run(argv, env):
        name = argv[0]
        calls.append(name)
        k = sum(1 for c in calls if c == name) - 1
        out = (outputs or {}).get(name, "ok")
        return times[name][k % len(times[name])], 0, out, 1000 + k
    return run, calls


def test_alternation_and_warmups():
    cells = [harness.Cell(n, [n], {}, "ok") for n in "ABC"]
    run, calls = fake_runner({"A": [1.0], "B": [2.0], "C": [3.0]})
    harness.measure(cells, runs=3, warmups=2, runner=run)
    assert calls == list("ABC") * 5
    assert [len(c.times) for c in cells] == [3, 3, 3]


def test_statistics_and_speedup():
    base = harness.Cell("stock", ["stock"], {}, "ok")
    fast = harness.Cell("fast", ["fast"], {}, "ok")
    run, _ = fake_runner({"stock": [0.010, 0.012, 0.011, 0.030, 0.011],
                          "fast": [0.002, 0.0025, 0.002, 0.003, 0.002]})
    harness.measure([base, fast], runs=5, warmups=0, runner=run)
    s = harness.summary(base, base)
    assert s["median_ms"] == pytest.approx(11.0)
    assert s["q1_ms"] == pytest.approx(11.0) and s["q3_ms"] == pytest.approx(12.0)
    assert s["speedup"] == pytest.approx(1.0)
    f = harness.summary(fast, base)
    assert f["median_ms"] == pytest.approx(2.0)
    assert f["speedup"] == pytest.approx(5.5)
    assert f["runs"] == 5 and f["maxrss_kib"] == 1002


def test_output_check_marks_a_broken_configuration():
    good = harness.Cell("good", ["good"], {}, "expected")
    bad = harness.Cell("bad", ["bad"], {}, "expected")
    run, calls = fake_runner({"good": [0.01], "bad": [0.0001]},
                             {"good": "the expected text", "bad": "oops"})
    harness.measure([good, bad], runs=4, warmups=1, runner=run)
    assert bad.error and "expected 'expected'" in bad.error
    assert bad.times == [] and calls.count("bad") == 1   # dropped at once
    assert "error" in harness.summary(bad, good)
    assert len(good.times) == 4


def test_real_processes():
    cell = harness.Cell("py", [sys.executable, "-c", "print('hi')"], dict(os.environ), "hi")
    fail = harness.Cell("fail", [sys.executable, "-c", "raise SystemExit(3)"],
                        dict(os.environ), "")
    harness.measure([cell, fail], runs=2, warmups=1)
    assert len(cell.times) == 2 and all(t > 0 for t in cell.times)
    assert all(r > 1000 for r in cell.maxrss)          # KiB of a real python
    assert "exit status 3" in fail.error


def test_table_and_chart(tmp_path):
    pytest.importorskip("matplotlib")
    stock = harness.Cell("stock", ["stock"], {}, "ok")
    image = harness.Cell("image", ["image"], {}, "ok")
    broken = harness.Cell("server", ["server"], {}, "ok")
    run, _ = fake_runner({"stock": [0.1], "image": [0.05], "server": [0.001]},
                         {"server": "no"})
    harness.measure([stock, image, broken], runs=3, warmups=0, runner=run)
    configs = ["stock", "image", "server", "cds"]
    results = {"pythons": {"3.12.1": {"workloads": {"w1": {
        "floor_ms": 20.0,
        "configs": {"stock": harness.summary(stock, stock),
                    "image": harness.summary(image, stock),
                    "server": harness.summary(broken, stock),
                    "cds": {"unavailable": "not installable"}}}}}}}
    base = harness.write(results, configs, str(tmp_path), "r")
    md = open(base + ".md").read()
    assert "| 3.12.1 | w1 | 100.0 ms | 50.0 ms (2.0x) | broken | n/a | 20.0 ms |" in md
    assert json.load(open(base + ".json")) == results
    png = open(base + ".png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def _write(d, name, data):
    d.mkdir(exist_ok=True)
    (d / (name + ".json")).write_text(json.dumps(data))


def test_demo_summary_joins_the_scripts_results_by_command(tmp_path):
    """make demo's closing table: one row per command, the image figures
    from import_time.json and the server's from server_launch.json, each
    speed-up against the direct runs that alternated with it."""
    import demo_summary
    d = tmp_path / "3.12.1"
    pipv = ["-m", "pip", "--version"]
    _write(d, "import_time", {"python": "3.12.1", "workloads": [
        {"label": "pip --version", "argv": pipv,
         "stock_ms": 200.0, "image_ms": 160.0}]})
    _write(d, "server_launch", {"python": "3.12.1", "workloads": [
        {"label": "python -c pass", "argv": ["-c", "pass"],
         "direct_ms": 20.0, "served_ms": 4.0},
        {"label": "pip --version", "argv": pipv,
         "direct_ms": 210.0, "served_ms": 7.0}]})
    lines = demo_summary.summary([str(d)])
    text = "\n".join(lines)
    assert "Python 3.12.1" in text
    pip, = [line.split() for line in lines
            if line.startswith("  pip --version ") and "ms" in line]
    assert pip[2:] == ["200.0", "ms", "160.0", "ms", "1.25x",
                       "7.0", "ms", "30.0x"]
    bare, = [line.split() for line in lines
             if line.startswith("  python -c pass ") and "ms" in line]
    assert bare[3:] == ["20.0", "ms", "-", "-", "4.0", "ms", "5.00x"]
    assert "(no results from bench/materialise.py)" in text
    assert "pip --version 210.0 ms" in text     # the server runs' direct


def test_demo_summary_says_what_is_missing(tmp_path):
    import demo_summary
    text = "\n".join(demo_summary.summary([str(tmp_path / "3.15")]))
    assert "3.15: no results in" in text
