"""Child side of `warmstart profile` (tier 4): times every import of this
process and writes the record at exit.

Installed by the start-up hook when WARMSTART_PROFILE=<file> is set,
from 00-warmstart.pth, which site reads before the other .pth files (an
image, if any, is already active).  It wraps, in importlib's frozen bootstrap:

  _find_and_load   one event per import: start, end, importer (the
                   import on top of the stack, or none: the program/site)
  _find_spec       the find phase (meta-path search, stat/listdir)
  get_code / create_module of the loaders in use
                   the load phase (read + validate + unmarshal, from an
                   image, or dlopen + init for an extension)

and site.addpackage, to time the .pth files processed after this one
(all the others in its site-packages, and those of later directories).
Execution is what remains of an import: its own module body (self) and
its nested imports.  Everything is perf_counter_ns (CLOCK_MONOTONIC), so
the parent can place the events on its own clock.
"""
import os
import sys
import time

_now = time.perf_counter_ns


def install(out):
    from . import exiting
    import importlib._bootstrap as bs
    import importlib._bootstrap_external as bse

    t_hook = _now()
    events = []          # [name, parent, start, end, find, load, error]
    stack = []
    pth = []
    before = list(sys.modules)

    find_and_load = bs._find_and_load

    def _find_and_load(name, import_):
        ev = [name, stack[-1] if stack else -1, _now(), 0, 0, 0, None]
        stack.append(len(events))
        events.append(ev)
        try:
            return find_and_load(name, import_)
        except BaseException as e:
            ev[6] = type(e).__name__
            raise
        finally:
            ev[3] = _now()
            stack.pop()

    find_spec = bs._find_spec

    def _find_spec(name, path, target=None):
        t = _now()
        try:
            return find_spec(name, path, target)
        finally:
            if stack and events[stack[-1]][0] == name:
                events[stack[-1]][4] += _now() - t

    def add_load(name, t):
        if stack and events[stack[-1]][0] == name:
            events[stack[-1]][5] += _now() - t

    def timed_get_code(fn):
        def get_code(self, fullname):
            t = _now()
            try:
                return fn(self, fullname)
            finally:
                add_load(fullname, t)
        get_code.__doc__ = fn.__doc__
        return get_code

    def timed_create_module(fn):
        def create_module(*args):
            t = _now()
            try:
                return fn(*args)
            finally:
                add_load(args[-1].name, t)
        create_module.__doc__ = fn.__doc__
        return create_module

    for cls in (bse.SourceFileLoader, bse.SourcelessFileLoader):
        cls.get_code = _importlib_frame(timed_get_code(cls.get_code))
    bse.ExtensionFileLoader.create_module = _importlib_frame(
        timed_create_module(bse.ExtensionFileLoader.create_module))
    for cls in (bs.BuiltinImporter, bs.FrozenImporter):
        orig = cls.__dict__.get("create_module")
        if isinstance(orig, staticmethod):
            cls.create_module = staticmethod(_importlib_frame(
                timed_create_module(orig.__func__)))

    site = sys.modules.get("site")
    if site is not None and hasattr(site, "addpackage"):
        addpackage = site.addpackage

        def _addpackage(sitedir, name, known_paths):
            t = _now()
            try:
                return addpackage(sitedir, name, known_paths)
            finally:
                pth.append((os.path.join(sitedir, name), t, _now()))
        site.addpackage = _addpackage

    bs._find_and_load = _importlib_frame(_find_and_load)
    bs._find_spec = _importlib_frame(_find_spec)

    def write():
        import marshal
        t_exit = _now()
        served = set()
        try:
            from . import importer
            for f in importer._active:
                served |= set(f.served)
        except Exception:
            pass
        kinds = {}
        for ev in events:
            kinds[ev[0]] = _kind(sys.modules.get(ev[0]), ev[0] in served)
        record = {
            "version": 1, "t_hook": t_hook, "t_exit": t_exit,
            "events": events, "pth": pth, "before": before, "kinds": kinds,
            "executable": sys.executable, "python": sys.version.split()[0],
            "argv": list(sys.orig_argv),
            "image": os.environ.get("WARMSTART_IMAGE") or None,
        }
        tmp = f"{out}.{os.getpid()}"
        with open(tmp, "wb") as f:
            marshal.dump(record, f)
        os.replace(tmp, out)

    # Registered first, so it runs last: it sees every import.
    exiting.register(write)


def _importlib_frame(fn):
    """fn, with its frames filed under importlib's bootstrap: the import
    system drops those from the traceback of a failed import
    (remove_importlib_frames in Python/import.c), so a profiled program's
    tracebacks are the ones a direct run prints."""
    fn.__code__ = fn.__code__.replace(
        co_filename="<frozen importlib._bootstrap>")
    return fn


def _kind(module, served):
    if module is None:
        return "failed"
    if served:
        return "image"
    spec = getattr(module, "__spec__", None)
    if spec is None:
        return "other"
    if spec.origin in ("built-in", "frozen"):
        return "builtin" if spec.origin == "built-in" else "frozen"
    if spec.origin is None and spec.submodule_search_locations is not None:
        return "namespace"
    return {"SourceFileLoader": "source", "SourcelessFileLoader": "bytecode",
            "ExtensionFileLoader": "extension"}.get(
                type(spec.loader).__name__, "other")
