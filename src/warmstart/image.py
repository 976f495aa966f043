"""Python glue for the code image core (src/image, in C).

Finding modules and compiling them is done here, the way the import system
would do it; storing and mapping code objects is done by warmstart._image.
"""
import hashlib
import importlib.util
import os
import sys
import sysconfig
import warnings

from . import _image

ImageError = _image.ImageError

# Images are mapped at an address derived from their content, in a range
# the kernel does not use for anything else on x86-64 Linux (between the
# program's heap and the shared-library area).  The address is only a hint.
_BASE_LO = 0x2000_0000_0000
_BASE_SPAN = 0x3000_0000_0000
_BASE_ALIGN = 1 << 30


def Image(path, profile=False):
    """Open the image at *path*; raises ImageError if it cannot be used."""
    if not _image.SUPPORTED:
        raise ImageError("code images are not supported by this interpreter "
                         "build")
    return _image.Image(os.fspath(path), profile=profile)


def _preferred_base(names):
    digest = hashlib.blake2b("\0".join(names).encode(), digest_size=8)
    slot = int.from_bytes(digest.digest(), "little") % (_BASE_SPAN // _BASE_ALIGN)
    return _BASE_LO + slot * _BASE_ALIGN


def compile_module(path, optimize=-1, source=None):
    """Compile the source file *path* as SourceLoader.source_to_code does."""
    if source is None:
        with open(path, "rb") as f:
            source = f.read()
    with warnings.catch_warnings():
        # Warnings about the source (invalid escapes...) belong to the run
        # that imports it, not to the build.
        warnings.simplefilter("ignore")
        return compile(source, path, "exec", dont_inherit=True,
                       optimize=optimize)


def source_meta(path, is_package, source):
    st = os.stat(path)
    return {
        "origin": path,
        "is_package": is_package,
        "source_mtime_ns": st.st_mtime_ns,
        "source_size": st.st_size,
        "source_dev": st.st_dev,
        "source_ino": st.st_ino,
        "source_hash": int.from_bytes(importlib.util.source_hash(source),
                                      "little"),
    }


def build_image(path, modules, optimize=-1, progress=None, meta=b""):
    """Compile *modules* and write them as one image at *path*.

    *modules* is an iterable of (name, source path, is_package).  Returns
    the writer's summary; modules that fail to compile or cannot be stored
    are listed in summary["skipped"] as (name, reason).  *meta* is stored
    with the image (Image.meta()).
    """
    modules = list(modules)
    skipped = []

    def entries():
        for i, (name, src, is_package) in enumerate(modules):
            if progress is not None:
                progress(i, len(modules))
            try:
                st_before = os.stat(src)
                with open(src, "rb") as f:
                    source = f.read()
                code = compile_module(src, optimize, source)
                info = source_meta(src, is_package, source)
                if info["source_mtime_ns"] != st_before.st_mtime_ns:
                    raise OSError("source changed while it was compiled")
            except (SyntaxError, ValueError, OSError, UnicodeDecodeError) as e:
                skipped.append((name, f"{type(e).__name__}: {e}"))
                continue
            yield name, code, info

    base = _preferred_base([m[0] for m in modules])
    summary = _image.write_image(os.fspath(path), entries(), base, meta)
    summary["skipped"] = skipped + summary["skipped"]
    if progress is not None:
        progress(len(modules), len(modules))
    return summary


def _walk_package_dir(root, prefix=""):
    """Yield (name, path, is_package) for the .py files under *root*."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if entry.is_dir(follow_symlinks=False):
            if not name.isidentifier() or name == "__pycache__":
                continue
            init = os.path.join(entry.path, "__init__.py")
            if os.path.isfile(init):
                yield prefix + name, init, True
                yield from _walk_package_dir(entry.path, prefix + name + ".")
        elif (name.endswith(".py") and name != "__init__.py"
              and entry.is_file()):
            # is_file: a dangling link (Debian's sitecustomize.py names a
            # file in /etc) is no module to the import system either.
            stem = name[:-3]
            if stem.isidentifier():
                yield prefix + stem, entry.path, False


def stdlib_modules(include_tests=True):
    """(name, path, is_package) for every source module of the standard
    library of the running interpreter (not site-packages)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    for name, path, is_package in _walk_package_dir(stdlib):
        if name.split(".")[0] in ("site-packages", "dist-packages"):
            continue
        if not include_tests and (name == "test" or name.startswith("test.")
                                  or ".test" in name):
            continue
        yield name, path, is_package


def site_modules():
    """(name, path, is_package) for the source modules in site-packages."""
    seen = set()
    for d in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]):
        if d in seen or not os.path.isdir(d):
            continue
        seen.add(d)
        yield from _walk_package_dir(d)
