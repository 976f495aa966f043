"""`warmstart profile --html`: one self-contained page (no network, no
external scripts or fonts) with an icicle chart of the run on a time axis
-- each import a bar from its start to its end, split into find, load and
execute, its nested imports below it -- under the phases of the run,
with a time axis; each block shows its time where it fits (its tooltip
always does); hover for details, click to zoom, and the same tables as
the terminal report.  The chart is drawn by the page's script, so that
zooming redraws it, axis included."""
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
.tick { position: absolute; top: 0; height: 16px; padding-left: 3px;
        border-left: 1px solid #666; font-size: 11px; line-height: 16px;
        white-space: nowrap; color: #444; }
.grid { position: absolute; width: 0; border-left: 1px solid #e6e6e6; }
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
  var W = Math.max(chart.clientWidth, 600), ROW = 22, AXIS = 18;
  var wall = p.times_ms.wall, view = [0, wall];
  var t = p.times_ms, phases = [];
  var x = 0;
  function phase(name, ms) { if (ms > 0) { phases.push({name: name, start: x, ms: ms}); x += ms; } }
  // Without a `python -S` measure, site includes the interpreter's start.
  phase("interpreter", t.interpreter || 0);
  phase("site", t.site);
  phase("imports", t.imports); phase("program", t.program); phase("exit", t.exit);
  var kids = p.modules.map(function () { return []; }), roots = [];
  p.modules.forEach(function (m, i) {
    if (m.parent >= 0) kids[m.parent].push(i); else roots.push(i);
  });
  var depthMax = 1;
  // Text widths from a canvas: measuring in the page would lay it out
  // again for every block.
  var ctx = document.createElement("canvas").getContext("2d");
  if (ctx) ctx.font = "11px system-ui, sans-serif";
  function textWidth(s) { return ctx ? ctx.measureText(s).width : s.length * 6.5; }
  function px(ms) { return ms / (view[1] - view[0]) * W; }
  function left(ms) { return (ms - view[0]) / (view[1] - view[0]) * W; }
  function fmt(v) { return v === null ? "n/a" : v.toFixed(2) + " ms"; }
  // A block's time: three significant digits or so.
  function short(v) { return v.toFixed(v >= 100 ? 0 : v >= 1 ? 1 : 2) + " ms"; }
  function show(e, html) { tip.innerHTML = html; tip.style.display = "block";
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; }
  // Ticks 1, 2 or 5 times a power of ten apart: the smallest such step
  // that leaves at most ten intervals (hence at least four), or a larger
  // one where the labels would run into each other (a narrow window).
  function bigger(s) {
    var p = Math.pow(10, Math.floor(Math.log10(s) + 1e-9)), m = Math.round(s / p);
    return (m === 1 ? 2 : m === 2 ? 5 : 10) * p;
  }
  function decimals(s) { return Math.max(0, -Math.floor(Math.log10(s) + 1e-9)); }
  function axis() {
    var range = view[1] - view[0];
    if (!(range > 0)) return;
    var s = Math.pow(10, Math.floor(Math.log10(range / 10)));
    while (range / s > 10) s = bigger(s);
    while (px(s) < textWidth(view[1].toFixed(decimals(s)) + " ms") + 12) s = bigger(s);
    var digits = decimals(s);
    for (var k = Math.ceil(view[0] / s - 1e-9); k * s <= view[1] + 1e-9; k++) {
      var ms = k * s, l = left(ms), text = ms.toFixed(digits) + " ms";
      if (l + 3 + textWidth(text) > W) break;        // its label would be cut
      var g = document.createElement("div");
      g.className = "grid"; g.style.left = l.toFixed(2) + "px";
      g.style.top = AXIS + "px"; g.style.bottom = "0";
      chart.appendChild(g);
      var d = document.createElement("div");
      d.className = "tick"; d.style.left = l.toFixed(2) + "px";
      d.setAttribute("data-ms", ms.toFixed(digits));
      d.textContent = text;
      chart.appendChild(d);
    }
  }
  // The fullest of the texts that fits in the block, if any does.
  function label(texts, w) {
    for (var i = 0; i < texts.length; i++)
      if (textWidth(texts[i]) + 6 <= w) return texts[i];
    return null;
  }
  function bar(start, ms, depth, parts, texts, info, data) {
    var l = left(start), w = px(ms);
    if (l + w < 0 || l > W || w < 0.5) return;
    var d = document.createElement("div");
    d.className = "node";
    d.style.left = l.toFixed(2) + "px"; d.style.width = w.toFixed(2) + "px";
    d.style.top = (AXIS + depth * ROW) + "px";
    for (var k in data) d.setAttribute("data-" + k, data[k]);
    parts.forEach(function (pt) {
      var s = document.createElement("span");
      s.className = "part " + pt[0];
      s.style.width = (ms > 0 ? pt[1] / ms * 100 : 0).toFixed(3) + "%%";
      s.style.background = colors[pt[0]];
      d.appendChild(s);
    });
    // A block cut by the view's left edge shows its text at the edge.
    var text = label(texts, Math.min(w, l + w, W - Math.max(l, 0)));
    if (text !== null) { var lb = document.createElement("span"); lb.className = "label";
      lb.textContent = text; if (l < 0) lb.style.left = (3 - l) + "px"; d.appendChild(lb); }
    d.onmousemove = function (e) { show(e, info); };
    d.onmouseleave = function () { tip.style.display = "none"; };
    d.onclick = function (e) { e.stopPropagation(); view = [start, start + Math.max(ms, 0.001)]; draw(); };
    chart.appendChild(d);
    depthMax = Math.max(depthMax, depth + 1);
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
  var runs = p.runs || 1;
  function node(i, depth) {
    var m = p.modules[i];
    var info = "<b>" + esc(m.name) + "</b> (" + esc(m.kind) + ")<br>total " + fmt(m.total_ms) +
      "<br>find " + fmt(m.find_ms) + " · load " + fmt(m.load_ms) +
      " · execute " + fmt(m.exec_self_ms) + " (self)<br>imported by " +
      esc(m.importer || "(program)") + (m.error ? "<br>failed: " + esc(m.error) : "") +
      (runs > 1 ? "<br>imported in " + m.runs + " of " + runs + " runs: medians of those" : "");
    var time = short(m.total_ms);
    bar(m.start_ms, m.total_ms, depth,
        [["find", m.find_ms], ["load", m.load_ms], ["exec", m.exec_ms]],
        [m.name + " " + time, time], info,
        {name: m.name, "total-ms": m.total_ms, kind: "module"});
    kids[i].forEach(function (c) { node(c, depth + 1); });
  }
  function draw() {
    chart.innerHTML = ""; depthMax = 1;
    axis();
    phases.forEach(function (ph) {
      var time = short(ph.ms);
      bar(ph.start, ph.ms, 0, [[ph.name, ph.ms]], [ph.name + " " + time, time],
          "<b>" + ph.name + "</b><br>" + fmt(ph.ms), {name: ph.name, "total-ms": ph.ms, kind: "phase"});
    });
    roots.forEach(function (i) { node(i, 1); });
    chart.style.height = (AXIS + depthMax * ROW + 4) + "px";
    document.getElementById("range").textContent =
      " showing " + view[0].toFixed(1) + "–" + view[1].toFixed(1) + " ms of " + wall.toFixed(1) + " ms";
    chart.setAttribute("data-view-ms", (view[1] - view[0]).toFixed(3));
    chart.setAttribute("data-view-start-ms", view[0].toFixed(3));
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
    runs = p.get("runs", 1)
    summary = (
        (f"Median of {runs} runs. " if runs > 1 else "") +
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
