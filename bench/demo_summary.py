"""The table that ends `make demo`: per interpreter and program, how long it
took to start directly, with its image and through its warm server.

Reads what one run of the three demo scripts wrote with --json, one
directory per interpreter (named as in PYTHONS):

    DIR/materialise.json    bench/materialise.py
    DIR/import_time.json    bench/import_time.py    (direct, with image)
    DIR/server_launch.json  bench/server_launch.py  (direct, warm server)

    python bench/demo_summary.py DIR [DIR ...]

Nothing here is measured: every figure is one of those files'.
"""
import json
import os
import shlex
import sys

COLUMNS = ("program", "direct", "with image", "speed-up", "warm server",
           "speed-up")


def load(directory, name):
    path = os.path.join(directory, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ms(value):
    return "-" if value is None else f"{value:.1f} ms"


def times(ratio):
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def programs(imports, launches):
    """One row per program (matched by python's arguments, so that the
    same command measured by both scripts is one row), in the order the
    server script ran them, then those only the import script ran."""
    rows = {}
    for source, key in ((launches, "server"), (imports, "image")):
        for w in (source or {}).get("workloads", []):
            row = rows.setdefault(tuple(w["argv"]),
                                  {"label": w["label"], "argv": w["argv"]})
            row[key] = w
    return list(rows.values())


def interpreter_block(name, directory):
    """The lines for one interpreter, and its rows (for the legend)."""
    mat = load(directory, "materialise")
    imports = load(directory, "import_time")
    launches = load(directory, "server_launch")
    version = next((r["python"] for r in (mat, imports, launches) if r), None)
    if version is None:
        return [f"{name}: no results in {directory}"], []
    title = f"Python {version}" + ("" if version == name else f" ({name})")
    rows = programs(imports, launches)
    table = [COLUMNS]
    second_direct = []
    for row in rows:
        image, server = row.get("image"), row.get("server")
        served = server and not server.get("error")
        # The direct time of the image runs where there are any, else of
        # the server's; each speed-up is against the direct runs that
        # alternated with it.
        direct = (image["stock_ms"] if image
                  else server["direct_ms"] if served else None)
        cells = [row["label"], ms(direct)]
        if image:
            cells += [ms(image["image_ms"]),
                      times(image["stock_ms"] / image["image_ms"])]
        else:
            cells += ["-", "-"]
        if served:
            cells += [ms(server["served_ms"]),
                      times(server["direct_ms"] / server["served_ms"])]
            if image:
                second_direct.append(
                    f"{row['label']} {ms(server['direct_ms'])}")
        elif server:
            cells += [server["error"], "-"]
        else:
            cells += ["-", "-"]
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = [title]
    for r in table:
        lines.append("  " + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    if second_direct:
        lines.append("  direct in the warm-server runs: "
                     + ", ".join(second_direct))
    if mat:
        lines.append(
            f"  materialising all {mat['modules']} stdlib modules:"
            f" marshal.loads {ms(mat['marshal_ms'])}, image"
            f" {ms(mat['image_ms'])} ({times(mat['marshal_ms'] / mat['image_ms'])})")
    for script, r in (("materialise", mat), ("import_time", imports),
                      ("server_launch", launches)):
        if r is None:
            lines.append(f"  (no results from bench/{script}.py)")
    return lines, rows


def command(argv, limit=72):
    text = "python " + shlex.join(argv)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def summary(directories):
    """The whole summary, as lines."""
    lines = ["Summary of this run: how long each program took to start"
             " (median of alternating runs):",
             "run directly, with WARMSTART_IMAGE set to an image recorded from"
             " it, and launched",
             "through warmstart-exec (its warm server); each speed-up is"
             " against the direct runs",
             "that alternated with it.", ""]
    legend = {}
    for directory in directories:
        name = os.path.basename(os.path.normpath(directory))
        block, rows = interpreter_block(name, directory)
        lines += block + [""]
        for row in rows:
            text = command(row["argv"])
            if text != row["label"]:
                legend.setdefault(row["label"], text)
    if legend:
        width = max(map(len, legend))
        lines += [f"  {label:{width}s}  {text}"
                  for label, text in legend.items()]
    return lines


def main(argv=None):
    directories = sys.argv[1:] if argv is None else argv
    if not directories:
        raise SystemExit(__doc__)
    print("\n".join(summary(directories)))


if __name__ == "__main__":
    main()
