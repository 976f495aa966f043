"""The start-up dispatcher: 00-warmstart.pth calls main() when one of
the variables of WAKE is set and the C core's fast path (boot.c) did not
handle the request alone.  main() decides which tier wakes; the start-up
half of each tier's work is here too, so that a start imports no more
of our modules than the tiers it wakes.  Imports only what site has
already imported, plus the C core.
"""
import os
import sys

# The variables that wake warmstart at start-up, and what each wakes.  The
# .pth line tests for exactly these (setup.py builds it from this table).
WAKE = (
    ("WARMSTART_IMAGE", "serve imports from this image (importer.py)"),
    ("WARMSTART_RECORD", "record what this run imports; write that image "
                         "at exit (record.py, build.py)"),
    ("WARMSTART", "=auto: use and maintain a cached image for this "
                  "interpreter, sys.path and entry point (auto.py)"),
    ("WARMSTART_SERVE", "set by warmstart-exec: this run starts a warm "
                        "server at exit (server.py)"),
    ("WARMSTART_PROFILE", "set by `warmstart profile`: time this run's "
                          "imports (profile_hook.py)"),
)

# Read by the tiers once awake; none of them wakes anything alone.
MODIFIERS = (
    ("WARMSTART_STATS", "=1: at exit, what the image served, on stderr "
                        "(=FILE: appended to FILE)"),
    ("WARMSTART_CHECK", "mtime|hash|none: how sources are checked"),
    ("WARMSTART_HUGEPAGES", "=1: materialise into huge pages"),
    ("WARMSTART_PRELOAD", "modules a server imports besides the run's"),
    ("WARMSTART_CACHE", "the auto cache directory"),
    ("WARMSTART_VERBOSE", "=1: every reason, on stderr"),
    ("WARMSTART_PROGRESS", "=1: a progress bar while an image is written"),
    ("WARMSTART_REPORT", "FILE: what a recorded image holds and lacks"),
    ("WARMSTART_SERVER_DIR", "where servers' sockets live"),
    ("WARMSTART_SERVER_IDLE", "seconds an idle server lives (600)"),
    ("WARMSTART_SERVER_MAX", "servers per user (32)"),
    ("WARMSTART_CACHE_MAX", "size cap of the auto cache and of the server "
                            "directory (1G; caches.py)"),
    ("WARMSTART_DOCTOR", "set by `warmstart doctor`: report, then exit "
                         "before the program runs (doctor.py)"),
    ("WARMSTART_DOCTOR_IMAGE", "set by `warmstart doctor` to the image "
                               "WARMSTART_IMAGE names, which it checks"),
)

# Requests that boot.c's fast path (a plain WARMSTART_IMAGE) leaves to
# main().  WARMSTART=auto yields to WARMSTART_IMAGE, so it is not one.
# tests/test_layout.py checks boot.c's list against this one.
NOT_IN_C = ("WARMSTART_STATS", "WARMSTART_RECORD", "WARMSTART_SERVE",
            "WARMSTART_PROFILE")

_booted = False


def main():
    """Only the first call acts: site may read the .pth twice (a venv's
    lib64 is a link to lib)."""
    global _booted
    if _booted:
        return
    _booted = True
    try:
        from . import _image
    except ImportError:
        return          # the C core cannot load here: nothing wakes
    if not _image._is_main_interpreter():
        return          # images and servers serve the main interpreter only
    env = os.environ
    if "WARMSTART_DOCTOR" in env:
        # `warmstart doctor` started this interpreter to look, not to run.
        from . import doctor
        doctor.probe(env.pop("WARMSTART_DOCTOR"))
        return
    serve = env.pop("WARMSTART_SERVE", None)
    preload = env.pop("WARMSTART_PRELOAD", None)
    if env.get("WARMSTART_STATS"):
        _stats_at_exit(env["WARMSTART_STATS"])
    image = env.get("WARMSTART_IMAGE")
    if image:
        from . import importer
        importer.activate_at_start(image)
    if env.get("WARMSTART_RECORD"):
        _record_at_exit(env["WARMSTART_RECORD"])
    elif not image and env.get("WARMSTART") == "auto":
        from . import auto
        auto.start(entry_point(), list(sys.path))
    elif env.get("WARMSTART") not in (None, "", "auto", "0"):
        sys.stderr.write(f"warmstart: ignoring WARMSTART="
                         f"{env['WARMSTART']!r}: the only mode is "
                         f"WARMSTART=auto\n")
    if serve:
        # warmstart-exec found no server for this command: this run
        # records what it imports and starts one at exit (server.py).
        # After activation: the recorder goes first on sys.meta_path, so
        # that it sees the imports an image serves too.
        serve_at_exit(serve, preload)
    profile = env.pop("WARMSTART_PROFILE", None)
    if profile:
        # Last, so that an image's get_code is timed too.
        from . import profile_hook
        profile_hook.install(profile)


def run_target():
    """What this process runs, from sys.orig_argv: ("-m", module),
    ("-c", None), ("script", path) or ("interactive", None)."""
    args = (getattr(sys, "orig_argv", None) or [])[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-m" and i + 1 < len(args):
            return "-m", args[i + 1]
        if a.startswith("-m") and len(a) > 2:
            return "-m", a[2:]
        if a.startswith("-c"):
            return "-c", None
        if a in ("-X", "-W"):
            i += 2
            continue
        if a.startswith("-") and a != "-":
            i += 1
            continue
        return ("script", os.path.abspath(a)) if a != "-" else ("-c", None)
    return "interactive", None


def entry_point():
    """The program, as the auto cache's key names it."""
    kind, value = run_target()
    return f"{kind} {value}" if value else kind


def expected_path0():
    """What the interpreter puts (or has put) in sys.path[0] for this run:
    it is inserted after start-up hooks such as this one run.  None with
    -P/-I (safe_path)."""
    if getattr(sys.flags, "safe_path", False):
        return None
    kind, value = run_target()
    if kind == "-m":
        return os.getcwd()
    if kind == "script":
        return os.path.dirname(os.path.realpath(value))
    return ""


class PathSnapshot:
    """The start-up half of capturing a run (record.capture is the exit
    half): takes sys.path as the program will see it, at the first import
    after start-up, with sys.path[0] as the interpreter will set it."""

    def __init__(self):
        self.path0 = expected_path0()
        self.sys_path = None
        self.cwd = None

    def find_spec(self, fullname, path=None, target=None):
        if self.sys_path is None:
            p = list(sys.path)
            if self.path0 is not None and (not p or p[0] != self.path0):
                p.insert(0, self.path0)
            self.sys_path = p
            self.cwd = os.getcwd()
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
        return None


def _record_at_exit(out, claim=True):
    """WARMSTART_RECORD: at exit, write an image of the source modules
    this run imported."""
    from . import exiting

    if claim:
        # With several Python processes under one `warmstart build`, the
        # first one to start records.
        try:
            fd = os.open(out + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except OSError:
            return
    snapshot = PathSnapshot()
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
        from . import build, record
        run = record.capture(snapshot)
        progress = None
        if os.environ.get("WARMSTART_PROGRESS"):
            progress = build.progress_bar
        summary = build.write_run(out, run, progress=progress)
        report = os.environ.get("WARMSTART_REPORT")
        if report:
            import marshal
            with open(report, "wb") as f:
                marshal.dump({"summary": summary, "other": run["other"]}, f)

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
