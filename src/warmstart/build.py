"""Making images for the importer: from a list of modules, from the
standard library, or from what a real run of a program imported.

Besides the code, an image for the importer carries a build record (its
meta section, marshalled): sys.path and the working directory at build
time, each package's __path__, the search-path entry each module was
found in, and the modification time of every directory searched.  The
finder (importer.py) trusts its index only while all of that still holds.
Extension modules a run imported are in the record too (their file and
entry, no code), so that the finder can locate them without a search.
"""
import marshal
import os
import sys

from . import image
from .importer import META_VERSION


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


def build_record(modules, sys_path, cwd, pkg_paths, from_run=False,
                 extensions=()):
    """The record the finder checks.  *modules*: (name, origin, is_package);
    *pkg_paths*: package name -> its __path__ (list of str); *from_run*:
    the modules are those a run imported, so a run of the same program
    uses most of the image; *extensions*: (name, origin) of extension
    modules to locate without a search."""
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
        "version": META_VERSION,
        "sys_path": sys_path,
        "cwd": cwd,
        "pkg_paths": pkg_paths,
        "entry": entry,
        "ext": ext,
        "dir_mtimes": dir_mtimes,
        "python": sys.version,
        "from_run": from_run,
    }


def write(out, modules, sys_path=None, cwd=None, pkg_paths=None,
          optimize=-1, progress=None, from_run=False, extensions=()):
    """Compile *modules* ((name, origin, is_package)) into an importer
    image at *out*.  Returns the writer's summary."""
    modules = list(modules)
    if sys_path is None:
        sys_path = list(sys.path)
    if cwd is None:
        cwd = os.getcwd()
    if pkg_paths is None:
        pkg_paths = {name: [os.path.dirname(origin)]
                     for name, origin, is_package in modules if is_package}
    record = build_record(modules, sys_path, cwd, pkg_paths, from_run,
                          extensions)
    # Images are written to a temporary file and renamed into place.
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return image.build_image(out, modules, optimize=optimize,
                             progress=progress, meta=marshal.dumps(record))


def modules_from_names(names):
    """(name, origin, is_package) for importable source modules; the
    others are returned as (name, reason)."""
    import importlib.util
    found, skipped = [], []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as e:
            skipped.append((name, f"{type(e).__name__}: {e}"))
            continue
        if spec is None:
            skipped.append((name, "not found"))
        elif not (spec.origin or "").endswith(".py") or not spec.has_location:
            skipped.append((name, f"not a source module ({spec.origin})"))
        else:
            found.append((name, spec.origin,
                          spec.submodule_search_locations is not None))
    return found, skipped


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


def progress_bar(done, total):
    """A one-line progress bar on stderr."""
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\rwarmstart: writing image [{'#' * filled}"
                     f"{'.' * (width - filled)}] {done}/{total} modules{end}")
    sys.stderr.flush()
