#!/bin/sh
# Build the libFuzzer target against PYTHON (default: python3) and write
# seed images for it.  Needs clang with libFuzzer (Debian: clang,
# libclang-rt-14-dev).
#   fuzz/build.sh            -> fuzz/build/fuzz_image, fuzz/build/seeds/
#   ASAN_OPTIONS=detect_leaks=0 fuzz/build/fuzz_image -max_total_time=60 \
#       fuzz/build/corpus fuzz/build/seeds
# FUZZ_OUT changes the output directory.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CC=${CC:-clang}
inc=$($PYTHON -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
libdir=$($PYTHON -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
ver=$($PYTHON -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))')
# An interpreter with a private C library (tools/unstable-python.sh): its
# libpython and libc sit beside its prefix, not in LIBDIR; link against
# that libpython (its newer symbol versions are resolved at run time) and
# run with that root's dynamic loader, searched first through DT_RPATH.
link=""
if [ ! -e "$libdir/libpython$ver.so" ]; then
    priv=$($PYTHON -c 'import sys, sysconfig; print(sys.base_prefix + "/lib/" + sysconfig.get_config_var("MULTIARCH"))')
    if [ -e "$priv/libpython$ver.so" ] && [ -e "$priv/ld-linux-x86-64.so.2" ]; then
        libdir=$priv
        link="-Wl,--allow-shlib-undefined -Wl,--disable-new-dtags -Wl,--dynamic-linker=$priv/ld-linux-x86-64.so.2"
    fi
fi
out=${FUZZ_OUT:-fuzz/build}
mkdir -p "$out"
$CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DWS_FUZZING=1 -Wall -Wextra -Werror -Wno-missing-field-initializers \
    -I"$inc" -Isrc/shared -Isrc/image -Isrc/importer -Isrc/server \
    fuzz/fuzz_image.c src/core/module.c src/image/image_type.c \
    src/image/image_load.c src/image/image_write.c src/shared/checksum.c \
    src/image/fingerprint.c \
    src/image/interp_state.c src/importer/get_code_hook.c src/importer/find.c \
    src/importer/boot.c src/server/identity.c src/server/pages.c \
    -L"$libdir" -Wl,-rpath,"$libdir" $link -lpython"$ver" -lm \
    -o "$out/fuzz_image"
$PYTHON fuzz/make_seeds.py "$out/seeds"
echo "built $out/fuzz_image; seeds in $out/seeds"
