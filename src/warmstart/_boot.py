"""Start-up work beyond activating an image (importer.boot does that),
used when one of these is set:

  WARMSTART_IMAGE=app.img   serve imports from app.img
  WARMSTART_RECORD=out.img  record what this run imports; write out.img at exit
  WARMSTART=auto            zero-config: use and maintain a cached image for
                            this interpreter, sys.path and entry point
  WARMSTART_CHECK=mtime|hash|none   how sources are checked (default mtime)
  WARMSTART_HUGEPAGES=1     materialise into huge pages (importer.py)
  WARMSTART_STATS=1         at exit, print on stderr what the image served
                            (=FILE: append it to FILE instead)

Imports only what site has already imported, plus the C core.
"""
import os
import sys


def _record_at_exit(out, claim=True):
    """At exit, write an image of the source modules this run imported."""
    from . import exiting
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
                              optimize=sys.flags.optimize, progress=progress,
                              from_run=True,
                              extensions=build.extensions_from_run(sys.modules))
        report = os.environ.get("WARMSTART_REPORT")
        if report:
            import marshal
            with open(report, "wb") as f:
                marshal.dump({"summary": summary, "other": other}, f)

    exiting.register(write)


class _RootImports:
    """Meta-path observer: notes, in order, the imports that started while
    no other module's body was executing (from the program's own code, a
    function, runpy).  Importing these "roots" in the same order repeats
    the program's imports exactly, nested and circular ones included; the
    plain sys.modules order would import a module out of its context
    (half-initialised partners of a circular import, aliases such as a
    vendored package registered under another name)."""

    def __init__(self):
        self.roots = []

    def find_spec(self, fullname, path=None, target=None):
        f = sys._getframe(1)
        while f is not None:
            if (f.f_code.co_name == "<module>"
                    and f.f_globals.get("__name__") != "__main__"):
                return None
            f = f.f_back
        self.roots.append(fullname)
        return None


def serve_at_exit(base, preload=None):
    """For a run that warmstart-exec started with WARMSTART_SERVE=base
    (already removed from os.environ): note the start-up argv,
    environment and cwd now and, at exit, the modules the program
    imported; then write <base>.preload and start a server from it
    (server.py)."""
    from . import exiting
    tty = [os.isatty(fd) for fd in range(3)]
    try:
        size = tuple(os.get_terminal_size(tty.index(True)))
    except (ValueError, OSError):
        size = None
    record = {
        "argv": [os.fsencode(a) for a in sys.orig_argv],
        "tty": tty,
        "size": size,
        "env": _launch_env(base, tty),
        "cwd": os.getcwdb(),
        "flags": tuple(sys.flags),
        "warnoptions": list(sys.warnoptions),
        "xoptions": {k: str(v) for k, v in sys._xoptions.items()},
        "extra": preload.split(",") if preload else [],
        "executable": sys.executable,
    }
    roots = _RootImports()
    sys.meta_path.insert(0, roots)

    def at_exit():
        # Only roots the program really imported (not mere find_spec
        # probes), taken before the server code below is imported.
        record["modules"] = [n for n in roots.roots if n in sys.modules]
        record["argv_at_exit"] = list(sys.argv)
        files = None
        try:
            import subprocess
            from . import server
            record["spawn_flags"] = subprocess._args_from_interpreter_flags()
            # The directory is opened and checked again here: the name in
            # WARMSTART_SERVE is only a name (server.Files).
            files = server.Files(base)
            server.write_record(files, record)
            server.spawn(files, record)
        except Exception as e:          # never disturb the program's exit
            if files is not None:
                files.unlink(".lock")
            if os.environ.get("WARMSTART_VERBOSE"):
                print(f"warmstart: no server: {e}", file=sys.stderr)
        finally:
            if files is not None:
                files.close()

    exiting.register(at_exit)


def _launch_env(base, tty):
    """The environment the client launched this run with.  The interpreter
    may have changed it before any hook of ours ran: PEP 538 locale
    coercion (LANG=C, no LC_ALL) sets LC_CTYPE.  The server must start
    from the client's environment (and its key is the client's), so undo
    what the key in WARMSTART_SERVE says the client did not have."""
    from . import command
    env = dict(os.environb)
    key = os.path.basename(os.fsdecode(base))
    try:
        cmd = command.Command([os.fsencode(a) for a in sys.orig_argv], env,
                              os.getcwdb())
    except (command.Direct, OSError):
        return env
    candidates = [env]
    for was in (None, b"C", b"POSIX"):      # what coercion replaced
        e = dict(env)
        if was is None:
            e.pop(b"LC_CTYPE", None)
        else:
            e[b"LC_CTYPE"] = was
        candidates.append(e)
    for e in candidates:
        if command.server_key(cmd.key_material(e, tty)) == key:
            return e
    return env


def _stats_at_exit(where):
    from . import exiting

    def report():
        from . import importer
        lines = []
        for f in importer._active:
            lines.append(f"warmstart: served {len(f.served)} modules from "
                         f"{f.image.path} ({len(f.searched)} after a full "
                         f"path search); {len(f.fallbacks)} imported normally")
            for name, why in sorted(f.fallbacks.items()):
                lines.append(f"warmstart:   {name}: {why}")
        for f in sys.meta_path:
            if type(f).__name__ == "PendingFinder" and f.finder is None:
                lines.append(f"warmstart: served 0 modules from "
                             f"{f.image.path} (none imported)")
        if not lines:
            lines.append("warmstart: no image active")
        if where == "1":
            print("\n".join(lines), file=sys.stderr)
        else:
            with open(where, "a") as out:
                out.write(f"pid {os.getpid()}\n" + "\n".join(lines) + "\n")

    exiting.register(report)


def main():
    if os.environ.get("WARMSTART_STATS"):
        _stats_at_exit(os.environ["WARMSTART_STATS"])
    image = os.environ.get("WARMSTART_IMAGE")
    if image:
        from . import importer
        importer.activate_at_start(image)
    record = os.environ.get("WARMSTART_RECORD")
    if record:
        _record_at_exit(record)
    elif not image and os.environ.get("WARMSTART") == "auto":
        from . import auto
        auto.start(auto.entry_point(), list(sys.path))
