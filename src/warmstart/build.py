"""Making images for the importer: from a list of modules, from the
standard library, or from what a real run of a program imported.

Besides the code, an image for the importer carries a build record (its
meta section; record.py says what is in it).
"""
import marshal
import os
import sys

from . import image, record


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
    meta = record.build(modules, sys_path, cwd, pkg_paths, from_run,
                        extensions)
    # Images are written to a temporary file and renamed into place; the
    # directory must exist (the CLI says so before any work).
    return image.build_image(out, modules, optimize=optimize,
                             progress=progress, meta=marshal.dumps(meta))


def write_run(out, run, progress=None):
    """Write an importer image at *out* of a run record.capture() took."""
    return write(out, run["modules"], sys_path=run["sys_path"],
                 cwd=run["cwd"], pkg_paths=run["pkg_paths"],
                 optimize=run["optimize"], progress=progress, from_run=True,
                 extensions=run["extensions"])


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


def progress_bar(done, total):
    """A one-line progress bar on stderr."""
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\rwarmstart: writing image [{'#' * filled}"
                     f"{'.' * (width - filled)}] {done}/{total} modules{end}")
    sys.stderr.flush()
