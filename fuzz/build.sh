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
    -L"$libdir" -Wl,-rpath,"$libdir" -lpython"$ver" -lm \
    -o "$out/fuzz_image"
$PYTHON fuzz/make_seeds.py "$out/seeds"
echo "built $out/fuzz_image; seeds in $out/seeds"
