"""warmstart: CPython that starts warm.

  warmstart.Image(path)          an open code image (tier 1)
  warmstart.build_image(...)     compile modules into an image
  warmstart.activate(path)       serve imports from an image (tier 2)

See docs/architecture.md.  Attributes are loaded on first use, so that the
start-up hook can import the package without paying for what it does not
use (and without the C core in interpreters that cannot load it).
"""
__all__ = [
    "SUPPORTED", "Image", "ImageError", "activate", "build_image",
    "compile_module", "deactivate", "fingerprint", "stdlib_modules",
]
__version__ = "0.1.0"

_LAZY = {
    "SUPPORTED": "_image", "ImageError": "_image", "fingerprint": "_image",
    "Image": "image", "build_image": "image", "compile_module": "image",
    "stdlib_modules": "image", "activate": "importer",
    "deactivate": "importer",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'warmstart' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
