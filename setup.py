"""Build the C core.  Metadata lives in pyproject.toml.

WARMSTART_CFLAGS adds compiler flags (the tests use it for -Werror and the
sanitizers); the default build is warning-clean with -Wall -Wextra.
"""
import os
import shlex

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py


class build_py_with_pth(build_py):
    """Install src/warmstart.pth next to the package as 00-warmstart.pth:
    the start-up hook that acts when a WARMSTART* variable is set and
    costs a few dictionary lookups otherwise.  site reads .pth files in
    sorted order; "00-" puts this one first, so that an image serves the
    imports of the other .pth files and the profiler times each of them."""

    def run(self):
        super().run()
        self.copy_file(os.path.join("src", "warmstart.pth"),
                       os.path.join(self.build_lib, "00-warmstart.pth"))

class build_ext_and_client(build_ext):
    """Also build warmstart-exec, the native client of the warm server
    (src/client/), into the package: no Python starts in it."""

    def run(self):
        super().run()
        sources = [os.path.join("src", "client", f) for f in
                   ("main.c", "command.c", "protocol.c", "procutil.c",
                    "fields.c")]
        sources.append(os.path.join("src", "image", "checksum.c"))
        tmp = os.path.join(self.build_temp, "client")
        objects = self.compiler.compile(
            sources, output_dir=tmp, include_dirs=["src/image"],
            extra_postargs=extra)
        out = os.path.join("src" if self.inplace else self.build_lib,
                           "warmstart")
        self.mkpath(out)
        self.compiler.link_executable(
            objects, "warmstart-exec", output_dir=out, extra_postargs=link)


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
        "src/importer/get_code_hook.c",
        "src/importer/find.c",
    ],
    depends=[
        "src/image/image_format.h",
        "src/image/layout.h",
        "src/image/image.h",
        "src/image/checksum.h",
        "src/importer/get_code_hook.h",
        "src/importer/find.h",
    ],
    include_dirs=["src/image", "src/importer"],
    extra_compile_args=extra,
    extra_link_args=link,
)

setup(ext_modules=[image], cmdclass={"build_py": build_py_with_pth,
                                     "build_ext": build_ext_and_client})
