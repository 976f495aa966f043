"""warmstart: CPython that starts warm.

Tier 1, the code image: compiled modules stored in the interpreter's own
memory layout and mapped instead of unmarshalled.  See docs/architecture.md.
"""
from ._image import SUPPORTED, ImageError, fingerprint
from .image import Image, build_image, compile_module, stdlib_modules

__all__ = [
    "SUPPORTED", "Image", "ImageError", "build_image", "compile_module",
    "fingerprint", "stdlib_modules",
]
__version__ = "0.1.0"
