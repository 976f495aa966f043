"""Build the C core.  Metadata lives in pyproject.toml.

WARMSTART_CFLAGS adds compiler flags (the tests use it for -Werror and the
sanitizers); the default build is warning-clean with -Wall -Wextra.
"""
import os
import shlex

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from distutils.command.build_scripts import build_scripts  # setuptools provides distutils

HERE = os.path.dirname(os.path.abspath(__file__))


# The start-up hook, 00-warmstart.pth.  site executes a .pth line that
# starts with "import"; the line is made from the parts below.  When no
# variable of _boot.WAKE is set it costs a few dictionary lookups.
# Otherwise it loads the C core straight from its file next to the .pth --
# no search of sys.path, no Python module of ours -- and lets boot()
# (boot.c) handle a plain WARMSTART_IMAGE; everything else, and any
# failure, is left to _boot.main(), the start-up dispatcher.  site runs
# the line with its own locals, sitedir among them (3.11 to 3.13);
# without it, the slow way is taken.  Every token here is parsed at each
# start-up with such a variable: keep it short.
def _wake_vars():
    # The table, from the source (setup.py cannot import the package).
    import importlib.util
    path = os.path.join(HERE, "src", "warmstart", "_boot.py")
    spec = importlib.util.spec_from_file_location("_warmstart_boot", path)
    boot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(boot)
    return [name for name, _ in boot.WAKE]


# Compiled at every activation: kept to few statements (each one adds to
# the compile time, about 35 us in all here).
PTH_BOOT = """\
try:
    import _imp, _frozen_importlib as b, _frozen_importlib_external as e
    core = sitedir + "/warmstart/_image" + _imp.extension_suffixes()[0]
    done = b._load(e.spec_from_file_location("warmstart._image", core)).boot()
except (ImportError, NameError):
    done = False
done or __import__("warmstart._boot")._boot.main()
"""

# The same for an editable install (pip install -e): the package and its
# C core (built in place) stay in the source tree, whose directory the
# build writes into the line.  site runs this .pth before the editable
# install's own (which puts that directory on sys.path), so the package is
# loaded from its file, as the path finder would load it there, and
# sys.path is left as it will be.
PTH_BOOT_EDITABLE = """\
import _imp, _frozen_importlib as b, _frozen_importlib_external as e
pkg = %r
try:
    core = pkg + "/_image" + _imp.extension_suffixes()[0]
    done = b._load(e.spec_from_file_location("warmstart._image", core)).boot()
except ImportError:
    done = False
done or b._load(e.spec_from_file_location("warmstart", pkg + "/__init__.py",
    submodule_search_locations=[pkg])) and __import__("warmstart._boot")._boot.main()
"""


def pth_line(package_dir=None):
    # A second reading (site may read the .pth twice: a venv's lib64 is a
    # link to lib) finds the C core loaded and stops there.
    test = " or ".join(f"{v!r} in os.environ" for v in _wake_vars())
    boot = PTH_BOOT if package_dir is None else PTH_BOOT_EDITABLE % package_dir
    return (f"import os, sys; ({test}) and 'warmstart._image' not in "
            f"sys.modules and exec({boot!r})\n")


class build_py_with_pth(build_py):
    """Install the start-up hook next to the package as 00-warmstart.pth.
    site reads .pth files in sorted order; "00-" puts this one first, so
    that an image serves the imports of the other .pth files and the
    profiler times each of them."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            # setuptools' editable_wheel installs into the wheel it is
            # making through the install command: the hook goes there,
            # naming the package in the source tree.
            where = self.get_finalized_command("install").install_lib
            line = pth_line(os.path.join(HERE, "src", "warmstart"))
        else:
            where, line = self.build_lib, pth_line()
        with open(os.path.join(where, "00-warmstart.pth"), "w") as f:
            f.write(line)


# The client again, as a script of the distribution: pip puts it in the
# environment's bin/, so that `warmstart-exec` is on PATH in an activated
# venv.  A wheel's scripts may be binaries; build_scripts (which runs
# after build_ext) would read it as Python: build_binary_scripts copies.
CLIENT_SCRIPT = os.path.join("build", "client-script", "warmstart-exec")


class build_binary_scripts(build_scripts):
    """Copy the scripts (one ELF executable) as they are."""

    def copy_scripts(self):
        self.mkpath(self.build_dir)
        outfiles = []
        for script in self.scripts:
            out = os.path.join(self.build_dir, os.path.basename(script))
            self.copy_file(script, out)
            os.chmod(out, 0o755)
            outfiles.append(out)
        return outfiles, outfiles


class build_ext_and_client(build_ext):
    """Also build warmstart-exec, the native client of the warm server
    (src/client/), into the package (client-path finds it there) and as
    a script: no Python starts in it.

    Always compiled afresh: build/ is keyed by the cache tag only, so two
    3.11 interpreters (pyenv's 3.11.7, Debian's 3.11.2) or two sets of
    WARMSTART_CFLAGS would otherwise share objects, and an extension built
    against another interpreter's headers is refused by every image."""

    def finalize_options(self):
        super().finalize_options()
        self.force = True

    def run(self):
        super().run()
        sources = [os.path.join("src", "client", f) for f in
                   ("main.c", "command.c", "protocol.c", "procutil.c",
                    "fields.c", "privdir.c")]
        sources.append(os.path.join("src", "shared", "checksum.c"))
        tmp = os.path.join(self.build_temp, "client")
        objects = self.compiler.compile(
            sources, output_dir=tmp, include_dirs=["src/shared"],
            extra_postargs=extra)
        out = os.path.join("src" if self.inplace else self.build_lib,
                           "warmstart")
        self.mkpath(out)
        self.compiler.link_executable(
            objects, "warmstart-exec", output_dir=out, extra_postargs=link)
        self.mkpath(os.path.dirname(CLIENT_SCRIPT))
        self.copy_file(os.path.join(out, "warmstart-exec"), CLIENT_SCRIPT)


extra = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
         "-fno-strict-aliasing"]
extra += shlex.split(os.environ.get("WARMSTART_CFLAGS", ""))
link = shlex.split(os.environ.get("WARMSTART_LDFLAGS", ""))

image = Extension(
    "warmstart._image",
    sources=[
        "src/core/module.c",
        "src/image/image_type.c",
        "src/image/image_write.c",
        "src/image/image_load.c",
        "src/shared/checksum.c",
        "src/image/fingerprint.c",
        "src/image/interp_state.c",
        "src/importer/get_code_hook.c",
        "src/importer/find.c",
        "src/importer/boot.c",
        "src/server/identity.c",
        "src/server/pages.c",
    ],
    depends=[
        "src/image/image_format.h",
        "src/image/layout.h",
        "src/image/image.h",
        "src/shared/checksum.h",
        "src/importer/get_code_hook.h",
        "src/importer/find.h",
        "src/importer/boot.h",
        "src/server/identity.h",
        "src/server/pages.h",
    ],
    include_dirs=["src/shared", "src/image", "src/importer", "src/server"],
    extra_compile_args=extra,
    extra_link_args=link,
)

setup(ext_modules=[image], scripts=[CLIENT_SCRIPT],
      cmdclass={"build_py": build_py_with_pth,
                "build_scripts": build_binary_scripts,
                "build_ext": build_ext_and_client})
