"""Zero-config mode (WARMSTART=auto).

The first run of a program records what it imports; at exit a separate
process writes an image into the per-user cache, keyed by interpreter,
sys.path, optimisation level and entry point.  Later runs use it.  When a
run imports source modules the image does not serve (new, changed or
missing ones), the image is rewritten the same way.  An unwritable cache
means no image and a run that works as usual.

  WARMSTART_CACHE   cache directory (default: $XDG_CACHE_HOME/warmstart,
                    or ~/.cache/warmstart)
  WARMSTART_CACHE_MAX  its size cap (caches.py; default 1G)
"""
import marshal
import os
import sys


# A writer that has not finished after this long is taken to have died.
WRITER_SECONDS = 300


def cache_dir():
    d = os.environ.get("WARMSTART_CACHE")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "warmstart")
    return d


def cache_key(entry, sys_path):
    from ._image import _checksum
    text = "\0".join([sys.version, sys.executable, entry,
                      str(sys.flags.optimize), *sys_path])
    return "%016x" % _checksum(text.encode("utf-8", "surrogateescape"))


def _open_cache(create):
    """The cache directory, opened and checked (privdir.py: ours, nobody
    else can write it or a directory above it), or None.  A cache that
    another user could have planted an image in is ignored with one
    warning line; one that cannot be created, silently."""
    from . import privdir
    d = cache_dir()
    try:
        return privdir.PrivateDir(d, 0o022, create)
    except privdir.Unsafe as e:
        from .importer import warn
        warn(f"not using the cache directory {d!r}: {e}")
    except OSError as e:
        from .importer import verbose, warn
        if verbose():
            warn(f"no cache directory {d!r}: {e}")
    return None


def _own_file(cache, name):
    """name's lstat if it is a regular file in cache of ours that no one
    else can write, else None.  (The loader checks the image it opens as
    well, but allows root's images, which an image someone put into our
    cache is not.)"""
    import stat
    st = cache.stat(name)
    if st is None:
        return None
    if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid()
            or st.st_mode & 0o022):
        from .importer import warn
        warn(f"ignoring {cache.join(name)!r}: not a file of this user's "
             f"that only this user can write")
        return None
    return st


def _mark_used(cache, name, st):
    """The access time says when a run last used an image: the cache's
    size cap removes the least recently used first (caches.py).  Set at
    most once an hour (one utimensat), whatever the mount's atime policy."""
    import time
    now = time.time()
    if now - st.st_atime > 3600:
        try:
            os.utime(name, (now, st.st_mtime), dir_fd=cache.fd,
                     follow_symlinks=False)
        except OSError:
            pass


def start(entry, sys_path):
    from . import _boot, importer
    cache = _open_cache(create=True)
    if cache is None:
        return
    try:
        name = cache_key(entry, sys_path) + ".img"
        path = cache.join(name)
        finder = None
        st = _own_file(cache, name)
        if st is not None:
            try:
                finder = importer.ImageFinder(importer._image.Image(path))
            except (OSError, importer.ImageError, ValueError, KeyError,
                    EOFError):
                finder = None           # rewritten at exit
            else:
                importer.install(finder)
                _mark_used(cache, name, st)
    finally:
        cache.close()           # no descriptor of ours while the program runs
    snapshot = _boot.PathSnapshot()
    sys.meta_path.append(snapshot)
    import atexit
    # Imported before the image could serve them (site, encodings, us):
    # never missing from it.
    before = set(sys.modules)
    # On every start: exiting is imported only at exit.
    atexit.register(_exit, path, finder, snapshot, before)


def _exit(*args):
    from . import exiting
    exiting.run(_at_exit, *args)


def _skip_list(cache, name):
    try:
        return set(marshal.loads(cache.read(name + ".skip")))
    except (OSError, EOFError, ValueError, TypeError):
        return set()


def _missing(found, finder, before, skipped):
    """The modules this run imported that the image should have served
    and did not: not in it (new), or in it and refused (stale).  Not:
    what was imported before the image was active, __main__, warmstart's
    own modules, what the writer could not store, and modules of the
    image that another finder answered for (an import hook's alias)."""
    out = []
    stale = set(_stale(finder)) if finder is not None else set()
    for m in found:
        name = m[0]
        if (name in before or name == "__main__" or name in skipped
                or name == "warmstart" or name.startswith("warmstart.")):
            continue
        if finder is None or name not in finder.entry or name in stale:
            out.append(m)
    return out


def _stale(finder):
    """Modules of the image refused as stale (not those another finder
    answered for first: that repeats at every run, the image is right)."""
    return [n for n, why in finder.fallbacks.items()
            if not why.startswith("found first by")]


def _maybe_missing(finder, before):
    """A cheap first look, at every exit: could a source module of this
    run be missing from the image?  (_missing decides, at a cost.)"""
    if finder is None or _stale(finder):
        return True
    from _frozen_importlib_external import SourceFileLoader
    entry = finder.entry
    for name, mod in list(sys.modules.items()):
        if (name in entry or name in before or name == "__main__"
                or name.startswith("warmstart")):
            continue
        spec = getattr(mod, "__spec__", None)
        if isinstance(getattr(spec, "loader", None), SourceFileLoader):
            return True
    return False


def _at_exit(path, finder, snapshot, before):
    if not _maybe_missing(finder, before):
        return                  # the image has every module: nothing to do
    from . import record
    from .fds import inheritable as inheritable_fds
    run = record.capture(snapshot)
    cache = _open_cache(create=False)
    if cache is None:
        return
    name = os.path.basename(path)
    job_name = None
    try:
        if not _missing(run["modules"], finder, before,
                        _skip_list(cache, name)):
            return
        # One writer per image: another one at work makes this one moot.
        st = cache.stat(name + ".writing")
        if st is not None:
            import time
            if time.time() - st.st_mtime < WRITER_SECONDS:
                return
            cache.unlink(name + ".writing")
        os.close(cache.create(name + ".writing"))
        del run["other"]
        job = {"out": path, "run": run}
        job_name = "%s.job.%d" % (name, os.getpid())
        with os.fdopen(cache.create_fresh(job_name), "wb") as f:
            marshal.dump(job, f)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("WARMSTART")
               or k in ("WARMSTART_CACHE", "WARMSTART_CACHE_MAX")}
        # The image is written by another process, after this one exits,
        # in a session of its own and holding none of our descriptors:
        # whoever reads this program's output through a pipe gets its
        # end-of-file when the program exits, not when the writer does.
        actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull,
                    os.O_RDWR, 0) for fd in (0, 1, 2)]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in inheritable_fds()]
        os.posix_spawn(sys.executable, [sys.executable, "-m", "warmstart.auto",
                                        cache.join(job_name)], env,
                       file_actions=actions, setsid=True)
        job_name = None
    except OSError as e:
        from .importer import verbose, warn
        if verbose():
            warn(f"cannot write cache image {path!r}: {e}")
        # Nothing left behind (a full disk, say).
        if job_name is not None:
            cache.unlink(job_name)
            cache.unlink(name + ".writing")
    finally:
        cache.close()


def _write(job_path):
    """Entry point of the writer process: the job file and the image are
    in the cache directory, opened and checked again here."""
    from . import privdir
    try:
        os.nice(10)             # a background job: the user's work first
    except OSError:
        pass
    d, job_name = os.path.split(job_path)
    cache = privdir.PrivateDir(d, 0o022, create=False)
    try:
        job = marshal.loads(cache.read(job_name))
        cache.unlink(job_name)
        name = os.path.basename(job["out"])
        from . import build
        summary = build.write_run(cache.join(name), job["run"])
        cache.write(name + ".skip",
                    marshal.dumps([n for n, _ in summary["skipped"]]))
        from . import caches
        caches.trim_images(cache)
    finally:
        cache.unlink(job_name)
        cache.unlink(job_name.split(".job.")[0] + ".writing")


if __name__ == "__main__":
    _write(sys.argv[1])
