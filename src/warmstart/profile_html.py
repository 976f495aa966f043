"""`warmstart profile --html`: one self-contained page (no network, no
external scripts or fonts) with an icicle chart of the run on a time axis
-- each import a bar from its start to its end, split into find, load and
execute, its nested imports below it -- hover for details, click to zoom,
and the same tables as the terminal report."""
import html
import json

COLORS = {"find": "#4e79a7", "load": "#f28e2b", "exec": "#59a14f",
          "interpreter": "#9c9c9c", "site": "#b07aa1", "imports": "#76b7b2",
          "program": "#edc948", "exit": "#bab0ac"}

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>warmstart profile: %(title)s</title>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 16px; margin: 0 0 4px; }
#chart { position: relative; border: 1px solid #ccc; overflow: hidden;
         background: #fafafa; }
.node { position: absolute; height: 20px; box-sizing: border-box;
        border-right: 1px solid #fff; overflow: hidden; cursor: pointer;
        display: flex; }
.node span.part { height: 100%%; flex: none; }
.node .label { position: absolute; left: 3px; top: 2px; font-size: 11px;
               white-space: nowrap; pointer-events: none; color: #111; }
#tip { position: fixed; display: none; background: #fff; border: 1px solid
       #888; padding: 6px 8px; font-size: 12px; pointer-events: none;
       box-shadow: 2px 2px 6px rgba(0,0,0,.2); z-index: 10; }
.legend span { display: inline-block; width: 10px; height: 10px;
               margin: 0 4px 0 12px; vertical-align: middle; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { padding: 2px 8px; text-align: right; border-bottom: 1px solid #eee; }
td:first-child, th:first-child, td:last-child, th:last-child { text-align: left; }
button { margin-left: 12px; }
</style></head><body>
<h1>warmstart profile: <code>%(title)s</code></h1>
<div>%(summary)s</div>
<div class="legend">%(legend)s<button id="reset">zoom out</button>
<span id="range" style="background:none;width:auto"></span></div>
<div id="chart"></div>
<div id="tip"></div>
%(tables)s
<script type="application/json" id="data">%(data)s</script>
<script>
(function () {
  var p = JSON.parse(document.getElementById("data").textContent);
  var colors = %(colors)s;
  var chart = document.getElementById("chart"), tip = document.getElementById("tip");
  var W = Math.max(chart.clientWidth, 600), ROW = 22;
  var wall = p.times_ms.wall, view = [0, wall];
  var t = p.times_ms, phases = [];
  var x = 0;
  function phase(name, ms) { if (ms > 0) { phases.push({name: name, start: x, ms: ms}); x += ms; } }
  phase("interpreter", t.interpreter || 0);
  phase("site", t.site + (t.interpreter === null ? 0 : 0));
  phase("imports", t.imports); phase("program", t.program); phase("exit", t.exit);
  var kids = p.modules.map(function () { return []; }), roots = [];
  p.modules.forEach(function (m, i) {
    if (m.parent >= 0) kids[m.parent].push(i); else roots.push(i);
  });
  var depthMax = 1;
  function px(ms) { return ms / (view[1] - view[0]) * W; }
  function left(ms) { return (ms - view[0]) / (view[1] - view[0]) * W; }
  function fmt(v) { return v === null ? "n/a" : v.toFixed(2) + " ms"; }
  function show(e, html) { tip.innerHTML = html; tip.style.display = "block";
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; }
  function bar(start, ms, depth, parts, label, info, data) {
    var l = left(start), w = px(ms);
    if (l + w < 0 || l > W || w < 0.5) return;
    var d = document.createElement("div");
    d.className = "node";
    d.style.left = l.toFixed(2) + "px"; d.style.width = w.toFixed(2) + "px";
    d.style.top = (depth * ROW) + "px";
    for (var k in data) d.setAttribute("data-" + k, data[k]);
    parts.forEach(function (pt) {
      var s = document.createElement("span");
      s.className = "part " + pt[0];
      s.style.width = (ms > 0 ? pt[1] / ms * 100 : 0).toFixed(3) + "%%";
      s.style.background = colors[pt[0]];
      d.appendChild(s);
    });
    if (w > 40) { var lb = document.createElement("span"); lb.className = "label";
      lb.textContent = label; d.appendChild(lb); }
    d.onmousemove = function (e) { show(e, info); };
    d.onmouseleave = function () { tip.style.display = "none"; };
    d.onclick = function (e) { e.stopPropagation(); view = [start, start + Math.max(ms, 0.001)]; draw(); };
    chart.appendChild(d);
    depthMax = Math.max(depthMax, depth + 1);
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
  function node(i, depth) {
    var m = p.modules[i];
    var info = "<b>" + esc(m.name) + "</b> (" + esc(m.kind) + ")<br>total " + fmt(m.total_ms) +
      "<br>find " + fmt(m.find_ms) + " · load " + fmt(m.load_ms) +
      " · execute " + fmt(m.exec_self_ms) + " (self)<br>imported by " +
      esc(m.importer || "(program)") + (m.error ? "<br>failed: " + esc(m.error) : "");
    bar(m.start_ms, m.total_ms, depth,
        [["find", m.find_ms], ["load", m.load_ms], ["exec", m.exec_ms]],
        m.name, info, {name: m.name, "total-ms": m.total_ms, kind: "module"});
    kids[i].forEach(function (c) { node(c, depth + 1); });
  }
  function draw() {
    chart.innerHTML = ""; depthMax = 1;
    phases.forEach(function (ph) {
      bar(ph.start, ph.ms, 0, [[ph.name, ph.ms]], ph.name + " " + ph.ms.toFixed(1) + " ms",
          "<b>" + ph.name + "</b><br>" + fmt(ph.ms), {name: ph.name, "total-ms": ph.ms, kind: "phase"});
    });
    roots.forEach(function (i) { node(i, 1); });
    chart.style.height = (depthMax * ROW + 4) + "px";
    document.getElementById("range").textContent =
      " showing " + view[0].toFixed(1) + "–" + view[1].toFixed(1) + " ms of " + wall.toFixed(1) + " ms";
    chart.setAttribute("data-view-ms", (view[1] - view[0]).toFixed(3));
    chart.setAttribute("data-width-px", W);
  }
  document.getElementById("reset").onclick = function () { view = [0, wall]; draw(); };
  draw();
})();
</script>
</body></html>
"""


def _table(title, rows):
    head = ("<tr><th>module</th><th>total ms</th><th>find</th><th>load</th>"
            "<th>execute (self)</th><th>imported by</th></tr>")
    body = "".join(
        f"<tr><td>{html.escape(m['name'])}</td><td>{m['total_ms']:.2f}</td>"
        f"<td>{m['find_ms']:.2f}</td><td>{m['load_ms']:.2f}</td>"
        f"<td>{m['exec_self_ms']:.2f}</td>"
        f"<td>{html.escape(m['importer'] or '(program)')}</td></tr>"
        for m in rows)
    return f"<h2 style='font-size:14px'>{title}</h2><table>{head}{body}</table>"


def render(p, top=20):
    t = p["times_ms"]
    mods = [m for m in p["modules"] if m["during"] == "program"]
    e = p["estimates"]
    summary = (
        f"Python {html.escape(p['python'])}, exit status {p['exit_code']}. "
        f"Wall time <b>{t['wall']:.1f} ms</b>; start-up "
        f"<b>{t['startup']:.1f} ms</b> = interpreter "
        f"{'n/a' if t['interpreter'] is None else '%.1f' % t['interpreter']}"
        f" + site {t['site']:.1f} + imports {t['imports']:.1f} ms (find "
        f"{t['find']:.1f}, load {t['load']:.1f}, execute {t['execute']:.1f}); "
        f"program {t['program']:.1f} ms; exit {t['exit']:.1f} ms.<br>"
        f"Code image: about {e['code_image']['saves_ms']:.0f} ms less "
        f"(~{e['code_image']['wall_ms']:.0f} ms wall). Warm server: "
        f"~{e['warm_server']['wall_ms']:.0f} ms wall.")
    legend = "".join(f"<span style='background:{COLORS[k]}'></span>{k}"
                     for k in ("find", "load", "exec"))
    tables = (_table("Slowest imports, including what they import",
                     sorted(mods, key=lambda m: -m["total_ms"])[:top])
              + _table("Slowest imports by their own time",
                       sorted(mods, key=lambda m: -m["self_ms"])[:top]))
    data = json.dumps(p).replace("</", "<\\/")
    return PAGE % {"title": html.escape(" ".join(p["command"])),
                   "summary": summary, "legend": legend, "tables": tables,
                   "data": data, "colors": json.dumps(COLORS)}
