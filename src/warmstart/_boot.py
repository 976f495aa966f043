"""Start-up work beyond activating an image (importer.boot does that),
used when one of these is set:

  WARMSTART_IMAGE=app.img   serve imports from app.img
  WARMSTART_RECORD=out.img  record what this run imports; write out.img at exit
  WARMSTART=auto            zero-config: use and maintain a cached image for
                            this interpreter, sys.path and entry point
  WARMSTART_CHECK=mtime|hash|none   how sources are checked (default mtime)
  WARMSTART_STATS=1         at exit, print on stderr what the image served
                            (=FILE: append it to FILE instead)

Imports only what site has already imported, plus the C core.
"""
import os
import sys


def _record_at_exit(out, claim=True):
    """At exit, write an image of the source modules this run imported."""
    import atexit
    from .auto import _PathSnapshot

    if claim:
        # With several Python processes under one `warmstart build`, the
        # first one to start records.
        try:
            fd = os.open(out + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except OSError:
            return
    snapshot = _PathSnapshot()
    sys.meta_path.append(snapshot)

    def write():
        try:
            _write()
        finally:
            if claim:
                try:
                    os.unlink(out + ".claim")
                except OSError:
                    pass

    def _write():
        from . import build
        found, pkg_paths, other = build.modules_from_run(sys.modules)
        progress = None
        if os.environ.get("WARMSTART_PROGRESS"):
            progress = build.progress_bar
        summary = build.write(out, found, sys_path=snapshot.sys_path or sys.path,
                              cwd=snapshot.cwd, pkg_paths=pkg_paths,
                              optimize=sys.flags.optimize, progress=progress)
        report = os.environ.get("WARMSTART_REPORT")
        if report:
            import marshal
            with open(report, "wb") as f:
                marshal.dump({"summary": summary, "other": other}, f)

    atexit.register(write)


def _stats_at_exit(where):
    import atexit

    def report():
        from . import importer
        lines = []
        for f in importer._active:
            lines.append(f"warmstart: served {len(f.served)} modules from "
                         f"{f.image.path}; {len(f.fallbacks)} imported normally")
            for name, why in sorted(f.fallbacks.items()):
                lines.append(f"warmstart:   {name}: {why}")
        if not importer._active:
            lines.append("warmstart: no image active")
        if where == "1":
            print("\n".join(lines), file=sys.stderr)
        else:
            with open(where, "a") as out:
                out.write(f"pid {os.getpid()}\n" + "\n".join(lines) + "\n")

    atexit.register(report)


def main():
    if os.environ.get("WARMSTART_STATS"):
        _stats_at_exit(os.environ["WARMSTART_STATS"])
    image = os.environ.get("WARMSTART_IMAGE")
    if image:
        from . import importer
        importer.activate(image)
    record = os.environ.get("WARMSTART_RECORD")
    if record:
        _record_at_exit(record)
    elif not image and os.environ.get("WARMSTART") == "auto":
        from . import auto
        auto.start(auto.entry_point(), list(sys.path))
