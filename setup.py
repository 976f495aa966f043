"""Build the C core.  Metadata lives in pyproject.toml.

WARMSTART_CFLAGS adds compiler flags (the tests use it for -Werror and the
sanitizers); the default build is warning-clean with -Wall -Wextra.
"""
import os
import shlex

from setuptools import Extension, setup

extra = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
         "-fno-strict-aliasing"]
extra += shlex.split(os.environ.get("WARMSTART_CFLAGS", ""))
link = shlex.split(os.environ.get("WARMSTART_LDFLAGS", ""))

image = Extension(
    "warmstart._image",
    sources=[
        "src/image/module.c",
        "src/image/image_write.c",
        "src/image/image_load.c",
        "src/image/checksum.c",
        "src/image/fingerprint.c",
        "src/image/interp_state.c",
    ],
    depends=[
        "src/image/image_format.h",
        "src/image/layout.h",
        "src/image/image.h",
        "src/image/checksum.h",
    ],
    include_dirs=["src/image"],
    extra_compile_args=extra,
    extra_link_args=link,
)

setup(ext_modules=[image])
