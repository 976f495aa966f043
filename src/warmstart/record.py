"""The build record: what an image for the importer holds besides code.

An importer image carries its record as the meta section, marshalled.
The finder (importer.py) trusts its index only while all of it holds:

  version     RECORD_VERSION; another version is no record at all
  sys_path    sys.path at build time (str entries only)
  cwd         the working directory, for relative entries
  pkg_paths   package name -> its __path__
  entry       module name -> index of the sys.path (or __path__) entry
              the path finder found it in; -1: not found by the same
              search (served only after a full search)
  ext         extension modules: name -> (file, entry index); no code
  dir_mtimes  directory -> st_mtime_ns (None if missing) of every
              directory searched up to a module's entry
  python      sys.version of the writer
  from_run    the modules are those one run imported (a run of the same
              program uses most of the image)

Records are made by `warmstart build` (build.py), by a run with
WARMSTART_RECORD, and by WARMSTART=auto's writer.  A run is captured
one way for both of the latter: _boot.PathSnapshot takes sys.path as the
program sees it at its first import, capture() takes the rest at exit.

The version and the reader are importer.py's (RECORD_VERSION,
read_record): the finder reads the record at every activation, where one
more module import of ours would cost 60-90 us.
"""
import os
import sys

from .importer import RECORD_VERSION, read_record

VERSION = RECORD_VERSION
read = read_record


def capture(snapshot, modules=None):
    """At the exit of a recorded run: what an image of it is built from.
    *snapshot*: the run's _boot.PathSnapshot; *modules*: its sys.modules.
    The result is marshallable (auto.py hands it to a writer process):
    modules ((name, origin, is_package)), pkg_paths, extensions, other
    ((name, why not imaged)), sys_path, cwd, optimize."""
    if modules is None:
        modules = sys.modules
    found, pkg_paths, other = modules_from_run(modules)
    sys_path = (snapshot.sys_path if snapshot.sys_path is not None
                else sys.path)
    return {
        "modules": found,
        "pkg_paths": pkg_paths,
        "extensions": extensions_from_run(modules),
        "other": other,
        "sys_path": [p for p in sys_path if isinstance(p, str)],
        "cwd": snapshot.cwd or os.getcwd(),
        "optimize": sys.flags.optimize,
    }


def modules_from_run(modules_dict):
    """From a finished run's sys.modules: the source modules with their
    package paths, and the others with why they are not imaged."""
    from importlib.machinery import SourceFileLoader
    found, pkg_paths, other = [], {}, []
    for name, mod in list(modules_dict.items()):
        spec = getattr(mod, "__spec__", None)
        if spec is None:
            other.append((name, "no spec (__main__ or created at run time)"))
            continue
        if (isinstance(spec.loader, SourceFileLoader) and spec.has_location
                and (spec.origin or "").endswith(".py")):
            is_package = spec.submodule_search_locations is not None
            found.append((name, spec.origin, is_package))
            if is_package:
                pkg_paths[name] = [p for p in mod.__path__ if isinstance(p, str)]
        elif spec.origin in ("built-in", "frozen"):
            other.append((name, spec.origin))
        elif spec.submodule_search_locations is not None and spec.origin is None:
            other.append((name, "namespace package"))
        else:
            other.append((name, f"not a source module ({spec.origin})"))
    found.sort()
    return found, pkg_paths, other


def extensions_from_run(modules_dict):
    """(name, origin) of the extension modules a run imported from files."""
    from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader
    found = []
    for name, mod in list(modules_dict.items()):
        spec = getattr(mod, "__spec__", None)
        if (spec is not None and type(spec.loader) is ExtensionFileLoader
                and spec.has_location and isinstance(spec.origin, str)
                and spec.origin.endswith(tuple(EXTENSION_SUFFIXES))):
            found.append((name, spec.origin))
    return sorted(found)


def build(modules, sys_path, cwd, pkg_paths, from_run=False, extensions=()):
    """The record for *modules* ((name, origin, is_package)); *pkg_paths*:
    package name -> its __path__ (list of str); *extensions*: (name,
    origin) of extension modules to locate without a search."""
    sys_path = [p for p in sys_path if isinstance(p, str)]
    entry, ext, dirs = {}, {}, set()

    def locate(name, origin, is_package):
        parent = name.rpartition(".")[0]
        search = pkg_paths.get(parent) if parent else sys_path
        k = -1 if search is None else _entry_index(name, origin, is_package,
                                                    search, cwd)
        if k >= 0:
            for e in search[:k + 1]:
                dirs.add(e if os.path.isabs(e) else os.path.join(cwd, e))
        return k

    for name, origin, is_package in modules:
        entry[name] = locate(name, origin, is_package)
    for name, origin in extensions:
        if name not in entry:
            k = locate(name, origin, False)
            if k >= 0:
                ext[name] = (origin, k)
    dir_mtimes = {}
    for d in dirs:
        try:
            dir_mtimes[d] = os.stat(d).st_mtime_ns
        except OSError:
            dir_mtimes[d] = None
    return {
        "version": VERSION,
        "sys_path": sys_path,
        "cwd": cwd,
        "pkg_paths": pkg_paths,
        "entry": entry,
        "ext": ext,
        "dir_mtimes": dir_mtimes,
        "python": sys.version,
        "from_run": from_run,
    }


def _entry_index(name, origin, is_package, search, cwd):
    """Index of the entry of *search* where the path finder finds *name*
    at *origin*; -1 if it finds something else (or nothing)."""
    from importlib.machinery import PathFinder
    last = name.rpartition(".")[2]
    # A package's __init__.py, or a module file: name.py, or an extension
    # module's name.<suffix> (whichever the path finder found).
    want = (os.path.join(last, "__init__.py") if is_package
            else os.path.basename(origin))
    if not is_package and not want.startswith(last + "."):
        return -1
    try:
        spec = PathFinder.find_spec(name, search)
    except (ImportError, ValueError):
        return -1
    if spec is None or spec.origin != origin:
        return -1
    for i, entry in enumerate(search):
        d = entry if os.path.isabs(entry) else os.path.join(cwd, entry)
        if os.path.join(d, want) == origin:
            return i
    return -1
