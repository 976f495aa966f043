"""Serving imports from a code image (tier 2).

An ImageFinder placed on sys.meta_path right before PathFinder answers
for the modules an image holds, and only while PathFinder follows it:
every finder the normal import asks before PathFinder (a package's own
alias finder, say) is asked first, and one inserted between the two
makes the image step aside.  It returns exactly the spec the normal path finder would --
same origin, cached, submodule_search_locations, parent -- with a loader
that is a plain SourceFileLoader whose get_code() takes the code from the
image instead of reading, validating and unmarshalling the .pyc.  Everything else (get_source, resources, linecache, tracebacks,
runpy, reload) is SourceFileLoader's own behaviour.

A module is served from the image only when the normal import would load
the same file and that file has not changed:

* Trusted index.  The image records sys.path at build time, each package's
  __path__, the sys.path (or __path__) entry each module was found in, and
  the modification time of every directory searched up to it.  While the
  live search path matches that record up to the module's entry and none
  of those directories has changed (a new or removed file changes its
  directory's mtime), no other entry can shadow the module: the finder
  answers without searching.  Those directories are stat-ed at every
  lookup, as the normal FileFinder stats its directory at every find_spec,
  so a module file created while the program runs is seen as it would be.
* Otherwise the module is resolved the normal way (PathFinder), and the
  image's code is still used if that resolves to the file the image holds.
* The source file itself is checked before serving: size and mtime (as
  .pyc files are), or a content hash, or not at all for immutable
  deployments (check="mtime" | "hash" | "none").
* Extension modules the build saw imported are located the same way --
  a spec for the file the search would find, no search -- and loaded by
  the normal ExtensionFileLoader (the image holds no code for them).

Anything unusable -- a damaged image, a module that fails its checks --
means the normal import, with at most one warning line on stderr (every
reason with WARMSTART_VERBOSE=1 or python -v).

This module is imported during start-up or during the program's first
import from the image (see src/importer/boot.c), so it imports nothing
that site has not already imported (but the C core).
"""
import _imp
import _weakref
import marshal
import os
import sys

# importlib.machinery's classes, from the frozen modules every interpreter
# has loaded at start-up: importing the importlib package costs more than
# everything else activation does.
from _frozen_importlib import ModuleSpec
from _frozen_importlib_external import (ExtensionFileLoader, FileFinder,
                                        PathFinder, SourceFileLoader)

# The key of importlib.util.source_hash: the magic number's four bytes as
# an int (_imp has it from 3.14 on; _bootstrap_external before).
_RAW_MAGIC_NUMBER = getattr(_imp, "pyc_magic_number_token", None)
if _RAW_MAGIC_NUMBER is None:
    from _frozen_importlib_external import _RAW_MAGIC_NUMBER

try:
    from . import _image
    # The start-up hook may have loaded the C core ahead of its package
    # (boot.c): bind it as the import of a submodule would have.
    sys.modules[__package__]._image = _image
except ImportError:
    # The C core cannot load here: an isolated sub-interpreter, or an
    # interpreter the package was not built for.  boot() does nothing.
    _image = None

ImageError = _image.ImageError if _image else ImportError

# The build record's version (record.py says what a record holds); the
# finder reads it here, at every activation, without importing record.py.
RECORD_VERSION = 1
CHECK_MODES = ("mtime", "hash", "none")

_warned = False


def verbose():
    return bool(os.environ.get("WARMSTART_VERBOSE")) or sys.flags.verbose > 0


def warn(message):
    """One line on stderr per process; all of them when verbose."""
    global _warned
    if verbose():
        print(f"warmstart: {message}", file=sys.stderr)
    elif not _warned:
        _warned = True
        print(f"warmstart: {message} (importing normally; "
              f"WARMSTART_VERBOSE=1 for details)", file=sys.stderr)


def _dir_key(entry, cwd):
    """The directory a sys.path entry names ('' is the working directory)."""
    return os.path.join(cwd, entry) if not os.path.isabs(entry) else entry


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


# Loaders whose module is served from an image, by identity: id -> (weak
# reference, finder).  The loaders are plain SourceFileLoader instances --
# the very type, with the very attributes, so that type checks and loader
# equality (ModuleSpec.__eq__) behave as for a normal import -- and
# SourceFileLoader.get_code, while an image is active, first asks this
# table (in C: see src/importer/get_code_hook.c).
_image_loaders = {}
_get_code = (_image.GetCodeHook(_image_loaders, SourceFileLoader.get_code).method
             if _image else None)


def _forget(ref, key):
    entry = _image_loaders.get(key)
    if entry is not None and entry[0] is ref:
        del _image_loaders[key]


def image_loader(fullname, path, finder):
    """A SourceFileLoader for *path* whose get_code() uses the image."""
    loader = SourceFileLoader(fullname, path)
    key = id(loader)
    _image_loaders[key] = (
        _weakref.ref(loader, lambda ref, key=key: _forget(ref, key)), finder)
    return loader


def _hook_get_code(on):
    if on:
        SourceFileLoader.get_code = _get_code
    elif SourceFileLoader.__dict__.get("get_code") is _get_code:
        del SourceFileLoader.get_code


def read_record(image):
    """The build record of an open image, or None if it has none of this
    version.  EOFError, ValueError or TypeError: a damaged record."""
    meta = image.meta()
    record = marshal.loads(meta) if meta else None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None
    return record


class ImageFinder:
    """Meta-path finder for the modules of one image."""

    def __init__(self, image, check="mtime"):
        if check not in CHECK_MODES:
            raise ValueError(f"check must be one of {CHECK_MODES}")
        self.image = image
        self.check = check
        record = read_record(image)
        if record is None:
            raise ImageError(f"{image.path}: no build record for the importer")
        self.sys_path = record["sys_path"]
        self.cwd = record["cwd"]
        self.pkg_paths = record["pkg_paths"]
        self.entry = record["entry"]
        self.dir_mtimes = record["dir_mtimes"]
        self.ext = record.get("ext", {})    # extension modules: located
        if os.environ.get("WARMSTART_HUGEPAGES") == "1":
            # Materialise into huge pages (copy_chunk in image_load.c):
            # before the first write where the image was recorded from a
            # run (a run uses most of it), else once a chunk is an eighth
            # used.
            image.chunk_threshold = 0 if record.get("from_run") else 1 << 18
        self.path_hooks = list(sys.path_hooks)
        self._dir_changed = {}
        self._at = -1               # our place on sys.meta_path, last seen
        self._info = {}
        self.served = set()
        self.searched = set()       # served after a full path search
        self.fallbacks = {}
        # The common case in C (src/importer/find.c); it answers
        # NotImplemented for everything it does not decide itself.
        self._fast = _image.FindCore(
            image, self.entry, self.pkg_paths, self.sys_path,
            self.dir_mtimes, self._dir_changed, self.path_hooks,
            FileFinder, SourceFileLoader, self._spec, check == "mtime",
            self.cwd, self.ext, ExtensionFileLoader, self._ext_spec).find

    def __repr__(self):
        return f"<warmstart.ImageFinder {self.image.path!r}>"

    # -- the import protocol -------------------------------------------
    def find_spec(self, fullname, path=None, target=None):
        mp = sys.meta_path
        i = self._at
        if not (i + 1 < len(mp) and mp[i] is self and mp[i + 1] is PathFinder):
            spec = self._ask_between(fullname, path, target)
            if spec is not None:
                return None if spec is NotImplemented else spec
        spec = self._fast(fullname, path)
        if spec is not NotImplemented:
            return spec
        k = self.entry.get(fullname, -2)
        if k == -2:
            return None                     # not in the image
        info = self._module_info(fullname)
        if info is None:
            return None
        origin = info["origin"]
        parent = fullname.rpartition(".")[0]
        recorded = self.pkg_paths.get(parent) if parent else self.sys_path
        live = sys.path if path is None else path
        if (k >= 0 and recorded is not None
                and self._search_unchanged(live, recorded, k)):
            if not self._fresh(fullname, info):
                return None
            return self._spec(fullname, origin, info["is_package"])
        # The search path differs from the build: resolve normally, and
        # still serve the image's code if that finds the same file.
        spec = PathFinder.find_spec(fullname, path, target)
        if (spec is not None and spec.origin == origin
                and type(spec.loader) is SourceFileLoader
                and self._fresh(fullname, info)):
            spec.loader = image_loader(fullname, origin, self)
            self.searched.add(fullname)
        return spec

    def invalidate_caches(self):
        self._dir_changed.clear()

    def _ask_between(self, fullname, path, target):
        """We are not right before PathFinder: the normal import would
        ask the finders in between before PathFinder.  For a name the
        image holds, ask them here, in order; the first spec wins, as it
        would.  None: go on and serve.  NotImplemented: decline (no
        PathFinder after us, so no file would be found the normal way)."""
        mp = sys.meta_path
        i = self._at = _index(mp, self)
        j = _index(mp, PathFinder)
        if i < 0 or j <= i:
            return NotImplemented
        if fullname not in self.entry:
            return NotImplemented
        for f in mp[i + 1:j]:
            find = getattr(f, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                self._fallback(fullname, f"found first by {f!r}")
                return spec
        return None

    # -- checks ----------------------------------------------------------
    def _module_info(self, fullname):
        info = self._info.get(fullname)
        if info is None:
            try:
                info = self._info[fullname] = self.image.info(fullname)
            except (KeyError, ImageError) as e:
                self._fallback(fullname, str(e))
                return None
        return info

    def _search_unchanged(self, live, recorded, k):
        """Entries 0..k of the live search path are the recorded ones, are
        handled by the normal file finder, and their directories have not
        changed since the build."""
        if len(live) <= k or len(recorded) <= k:
            return False
        if sys.path_hooks != self.path_hooks:
            return False
        cwd = None
        cache = sys.path_importer_cache
        for i in range(k + 1):
            entry = live[i]
            if entry != recorded[i]:
                return False
            if not os.path.isabs(entry):
                if cwd is None:
                    cwd = os.getcwd()
                if cwd != self.cwd:
                    return False
            if entry in cache:
                finder = cache[entry]
                if finder is None:
                    # No hook took it: PathFinder passes over it (find.c).
                    if i == k:
                        return False
                    continue
                if type(finder) is not FileFinder:
                    return False
            # Stat-ed every time, as FileFinder does (find.c dir_unchanged).
            d = _dir_key(entry, self.cwd)
            if (d in self._dir_changed
                    or _mtime(d) != self.dir_mtimes.get(d, -1)):
                self._dir_changed[d] = True
                return False
        return True

    def _fresh(self, fullname, info):
        """The source is what the image's code was compiled from."""
        if self.check == "none":
            return True
        origin = info["origin"]
        try:
            if self.check == "hash":
                if not info["source_hash"]:
                    return self._fallback(fullname, "image has no source hash")
                with open(origin, "rb") as f:
                    data = f.read()
                ok = _source_hash(data) == info["source_hash"]
            else:
                st = os.stat(origin)
                ok = (st.st_mtime_ns == info["source_mtime_ns"]
                      and st.st_size == info["source_size"]
                      and (not info["source_ino"]
                           or (st.st_dev, st.st_ino)
                           == (info["source_dev"], info["source_ino"])))
        except OSError:
            ok = False
        if not ok:
            return self._fallback(fullname, "source changed since the build")
        return True

    def _fallback(self, fullname, why):
        self.fallbacks[fullname] = why
        if verbose():
            warn(f"{fullname}: {why}")
        return False

    # -- serving -------------------------------------------------------------
    def _spec(self, fullname, origin, is_package):
        loader = image_loader(fullname, origin, self)
        spec = ModuleSpec(fullname, loader, origin=origin, is_package=is_package)
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        return spec

    def _ext_spec(self, fullname, origin):
        # As FileFinder makes it (spec_from_file_location, not a package).
        spec = ModuleSpec(fullname, ExtensionFileLoader(fullname, origin),
                          origin=origin)
        spec.has_location = True
        return spec

    def _code(self, fullname):
        """The image's code for *fullname*, or None.  Only loaders this
        finder made ask, and they were made for the image's own file."""
        try:
            code = self.image.get_code(fullname)
        except ImageError as e:
            self._fallback(fullname, str(e))
            if not verbose():
                warn(str(e))
            return None
        self.served.add(fullname)
        return code


def _source_hash(data):
    # importlib.util.source_hash, without importing importlib.util (which
    # may itself be an import this finder is serving).
    return int.from_bytes(_imp.source_hash(_RAW_MAGIC_NUMBER, data), "little")


_active = []


def activate(path, check=None):
    """Serve imports from the image at *path*; returns the finder, or None
    (with one warning line) if the image cannot be used."""
    image = _open(path)
    finder = None if image is None else _finder(image, check)
    if finder is not None:
        install(finder)
    return finder


def _index(seq, obj):
    for i, x in enumerate(seq):
        if x is obj:
            return i
    return -1


def _place(finder):
    """Put finder on sys.meta_path right before PathFinder (at the end if
    PathFinder is not there: then it serves nothing)."""
    i = _index(sys.meta_path, PathFinder)
    sys.meta_path.insert(i if i >= 0 else len(sys.meta_path), finder)


def activate_at_start(path):
    """activate() as the start-up hook does it: open the image now (a bad
    one is reported now), but import nothing more until the program first
    imports a module the image holds.  A PendingFinder (boot.c) stands in
    for the ImageFinder until then."""
    image = _open(path)
    if image is not None:
        _place(_image.PendingFinder(image))


def _open(path):
    try:
        if _image is None or not _image.SUPPORTED:
            raise ImageError("code images are not supported by this "
                             "interpreter build")
        return _image.Image(os.fspath(path))
    except (OSError, ImageError, ValueError, TypeError) as e:
        warn(f"cannot use image {os.fspath(path)!r}: {e}")
        return None


def _finder(image, check=None):
    if check is None:
        check = os.environ.get("WARMSTART_CHECK", "mtime")
    try:
        return ImageFinder(image, check)
    except (OSError, ImageError, ValueError, KeyError, EOFError, TypeError) as e:
        warn(f"cannot use image {image.path!r}: {e}")
        return None


def _take_over(pending, image):
    """The start-up hook's PendingFinder (src/importer/boot.c) calls this
    on the first import its image can serve: the ImageFinder takes its
    place on sys.meta_path.  Returns the finder, or None."""
    global _booted
    _booted = True
    i = next((i for i, f in enumerate(sys.meta_path) if f is pending), None)
    if i is None:
        return None             # the program removed it meanwhile
    finder = _finder(image)
    if finder is None:
        # It stays and answers None: the import system may be iterating
        # over sys.meta_path right now, and a deletion would skip a finder.
        return None
    sys.meta_path[i] = finder           # in place, for the same reason
    _serving(finder)
    return finder


def install(finder):
    """Put *finder* on sys.meta_path, right before PathFinder."""
    _place(finder)
    _serving(finder)


def _serving(finder):
    _hook_get_code(True)
    _active.append(finder)


def deactivate():
    """Remove every finder activate() or the start-up hook installed."""
    if _image is not None and hasattr(_image, "PendingFinder"):
        sys.meta_path[:] = [f for f in sys.meta_path
                            if type(f) is not _image.PendingFinder]
    while _active:
        finder = _active.pop()
        try:
            sys.meta_path.remove(finder)
        except ValueError:
            pass
    _hook_get_code(False)
