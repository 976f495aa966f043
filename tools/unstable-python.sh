#!/bin/sh
# Install CPython X.Y from Debian unstable's binary packages into a private
# root, for machines whose own release has no such interpreter (Debian 12).
#
#   tools/unstable-python.sh 3.14      # or 3.15, ...
#   tools/unstable-python.sh -f 3.14   # throw away the cached root first
#
# The last line on stdout is the path of a working pythonX.Y; progress and
# apt's output go to stderr.  The system's apt sources, lists, caches and
# dpkg database are not touched: apt runs on a configuration of its own
# (own sources.list, state, cache, an empty dpkg status file), and the .debs
# of the whole dependency closure (libc6 included) are unpacked with dpkg -x.
# The interpreter is then patched (patchelf) to use the private dynamic
# loader and, through DT_RPATH, the private libraries, for the lib-dynload
# modules too.  Processes it spawns (sh, gcc, ...) keep the system's glibc.
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/warmstart-pythons/X.Y/ .  A root is
# built in a temporary directory beside it, checked, stamped (.complete) and
# renamed into place in one rename(2); a cached root is reused only when its
# stamp names its own path and its interpreter runs.  Moving the cache makes
# the roots rebuild (the patched paths are absolute).
#
# Environment: WARMSTART_DEBIAN_MIRROR (default: the Debian mirror of the
# system's sources, else http://deb.debian.org/debian), WARMSTART_DEBIAN_SUITE
# (default: unstable).  Needs patchelf (installed with apt-get when missing
# and running as root) and debian-archive-keyring.
set -eu

prog=unstable-python
say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { say "error: $*"; exit 1; }

force=0
case "${1:-}" in -f|--force) force=1; shift ;; esac
[ $# -eq 1 ] || die "usage: $0 [-f] X.Y   (e.g. 3.14)"
ver=$1
case "$ver" in
    3.[0-9]|3.[0-9][0-9]) ;;
    *) die "not a CPython version: $ver (expected 3.NN)" ;;
esac

cache=${XDG_CACHE_HOME:-$HOME/.cache}/warmstart-pythons
final=$cache/$ver
py=$final/usr/bin/python$ver

# Imports that need the private shared libraries (libssl, libsqlite3,
# libffi, liblzma, libbz2, libmpdec inside _decimal, libreadline, libgdbm).
# -I: no PYTHON* variables, no user site.
CHECK_IMPORTS='import ssl, sqlite3, ctypes, zlib, lzma, bz2, _decimal, readline, dbm.gnu, venv, ensurepip'

# Runs the interpreter of a finished root; succeeds when it is the wanted
# version, lives where it is, and its extension modules load.
root_ok() {
    [ -f "$1/.complete" ] && [ -x "$1/usr/bin/python$ver" ] || return 1
    [ -e "$1/usr/lib/python$ver/test/test_json" ] || return 1
    [ -d "$1/usr/lib/debug/.build-id" ] || return 1    # libc6-dbg
    [ "$(ls "$1"/usr/lib/*-linux-gnu/.debug 2>/dev/null | wc -l)" -ge 2 ] || return 1
    [ "$(sed -n 's/^root=//p' "$1/.complete")" = "$1" ] || return 1
    "$1/usr/bin/python$ver" -I -c "$CHECK_IMPORTS
import sys
sys.exit(sys.version_info[:2] != tuple(map(int, sys.argv[1].split('.')))
         or sys.prefix != sys.argv[2])" "$ver" "$1/usr" >/dev/null 2>&1
}

if [ "$force" = 0 ] && root_ok "$final"; then
    printf '%s\n' "$py"
    exit 0
fi

mkdir -p "$cache"

# One builder per version at a time; the others wait and then reuse.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.$ver.lock"
    flock 9
    if [ "$force" = 0 ] && root_ok "$final"; then
        printf '%s\n' "$py"
        exit 0
    fi
fi

work=""
tmp=""
cleanup() {
    [ -z "$work" ] || rm -rf "$work"
    [ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Leftovers of killed runs (we hold the lock, so none is in progress).
rm -rf "$cache/.$ver.tmp."* "$cache/.$ver.work."* "$cache/.$ver.stale."*

# --- tools ------------------------------------------------------------------
sys_install() {  # package: from the system's own sources
    [ "$(id -u)" = 0 ] || die "$1 is missing: apt-get install $1 (as root)"
    say "installing $1 from the system's sources"
    apt-get install -y -q "$1" >&2 \
        || { apt-get update -q >&2 && apt-get install -y -q "$1" >&2; } \
        || die "could not install $1"
}
command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    || die "needs Debian's dpkg and apt-get"
command -v patchelf >/dev/null 2>&1 || sys_install patchelf
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || sys_install debian-archive-keyring
[ -f "$keyring" ] || die "no $keyring"

# The Debian mirror the system already uses (one-line and deb822 sources).
detect_mirror() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed -n -e 's/^[[:space:]]*deb[[:space:]][[:space:]]*\(\[[^]]*\][[:space:]]*\)\{0,1\}\([^[:space:]]*\).*/\2/p' \
               -e 's/^URIs:[[:space:]]*//p' "$f" | tr ' \t' '\n\n'
    done | grep -E '^https?://[^/]+(/.*)?/debian/?$' | head -n 1
}
mirror=${WARMSTART_DEBIAN_MIRROR:-$(detect_mirror || true)}
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
suite=${WARMSTART_DEBIAN_SUITE:-unstable}
arch=$(dpkg --print-architecture)

# --- private apt ------------------------------------------------------------
work=$(mktemp -d "$cache/.$ver.work.XXXXXX")
mkdir -p "$work/state/lists/partial" "$work/cache/archives/partial" \
         "$work/empty" "$work/debs" "$work/log"
: >"$work/status"
printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$suite" \
    >"$work/sources.list"
# Read after the system's configuration (apt-get -c), so its network
# settings (proxies, Check-Valid-Until, ...) apply, while every location
# is private and the system's hooks (appstream, packagekit) do not run.
cat >"$work/apt.conf" <<EOF
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Pre-Invoke;
#clear DPkg::Post-Invoke;
#clear DPkg::Pre-Install-Pkgs;
Dir::Etc::SourceList "$work/sources.list";
Dir::Etc::SourceParts "$work/empty";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$work/empty";
Dir::Etc::Trusted "/dev/null";
Dir::Etc::TrustedParts "$work/empty";
Dir::State "$work/state";
Dir::State::Lists "$work/state/lists";
Dir::State::status "$work/status";
Dir::State::extended_states "$work/state/extended_states";
Dir::Cache "$work/cache";
Dir::Cache::archives "$work/cache/archives";
Dir::Cache::pkgcache "$work/cache/pkgcache.bin";
Dir::Cache::srcpkgcache "$work/cache/srcpkgcache.bin";
Dir::Log "$work/log";
APT::Architecture "$arch";
#clear APT::Architectures;
APT::Architectures { "$arch"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::AllowUnauthenticated "false";
Acquire::AllowInsecureRepositories "false";
Acquire::Languages "none";
EOF
[ "$(id -u)" != 0 ] || echo 'APT::Sandbox::User "root";' >>"$work/apt.conf"
papt() { "$@" -c "$work/apt.conf"; }
log=$work/apt.log
run_logged() {
    "$@" >>"$log" 2>&1 || { cat "$log" >&2; die "failed: $*"; }
}

say "python$ver: reading the $suite index of $mirror"
run_logged apt-get -c "$work/apt.conf" -q update

# The test suite too: the tests run CPython's own Lib/test suites with the
# standard library served from an image.  libc6-dbg: valgrind needs the
# symbols of the private dynamic loader (--extra-debuginfo-path).
pkgs="python$ver python$ver-venv python$ver-dev libpython$ver python$ver-gdbm libpython$ver-testsuite libc6-dbg"
apt-get -c "$work/apt.conf" -s install $pkgs >"$work/sim.txt" 2>>"$log" \
    || { grep -h '^E:' "$log" "$work/sim.txt" >&2 || cat "$work/sim.txt" >&2
         die "python$ver is not installable from $suite"; }
closure=$(sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p' "$work/sim.txt")
[ -n "$closure" ] || die "empty package closure for python$ver"
n=$(printf '%s\n' $closure | wc -l)
say "python$ver: downloading $n packages"
(cd "$work/debs" && run_logged apt-get -c "$work/apt.conf" -q download $closure)

# --- the root ---------------------------------------------------------------
tmp=$(mktemp -d "$cache/.$ver.tmp.XXXXXX")
chmod 755 "$tmp"
say "python$ver: unpacking into $final"
for deb in "$work/debs"/*.deb; do
    dpkg -x "$deb" "$tmp"
done
printf '%s\n' $closure >"$tmp/.packages"

bin=$tmp/usr/bin/python$ver
[ -x "$bin" ] || die "no usr/bin/python$ver in the packages"
# The multiarch directory: where the real pyconfig.h is.
triplet=""
for d in "$tmp"/usr/include/*/python"$ver"/pyconfig.h; do
    [ -f "$d" ] || continue
    triplet=${d#"$tmp/usr/include/"}
    triplet=${triplet%%/*}
done
[ -n "$triplet" ] || die "no multiarch pyconfig.h for python$ver"
libdir=usr/lib/$triplet
# The private loader, named as the binary names the system's.
interp=$(patchelf --print-interpreter "$bin")
ldso=""
for c in "$tmp$interp" "$tmp/usr$interp" "$tmp/$libdir/${interp##*/}"; do
    if [ -e "$c" ]; then
        ldso=$(readlink -f "$c")
        break
    fi
done
[ -n "$ldso" ] && [ -x "$ldso" ] || die "no private $interp"
ldso=$final/${ldso#"$tmp/"}

# Absolute final paths: the root is patched for where it will live.
patchelf --set-interpreter "$ldso" --force-rpath \
    --set-rpath "$final/$libdir" "$bin"

# Runs the temporary root's interpreter (its PT_INTERP names the final path).
tpy() {
    "$tmp/$libdir/${ldso##*/}" --library-path "$tmp/$libdir" "$bin" -I "$@"
}

# valgrind must read the private loader's symbols (it redirects strlen
# there) and libc's (its reports and tests/valgrind.supp name libc's
# vectorised functions); it looks for the file .gnu_debuglink names in a
# .debug directory beside the library, not in the root's usr/lib/debug.
for lib in "${ldso##*/}" libc.so.6; do
    id=$(readelf -n "$tmp/$libdir/$lib" 2>/dev/null \
         | sed -n 's/.*Build ID: *//p')
    dbg=$tmp/usr/lib/debug/.build-id/$(printf %.2s "$id")/${id#??}.debug
    if [ -n "$id" ] && [ -f "$dbg" ]; then
        mkdir -p "$tmp/$libdir/.debug"
        cp "$dbg" "$tmp/$libdir/.debug/"
    else
        say "python$ver: no symbols for $lib; valgrind will not run"
    fi
done

# Debian-isms.  pyconfig.h is a multiarch wrapper that includes
# <TRIPLET/pythonX.Y/pyconfig.h>, found only with -I ROOT/usr/include, which
# would also bring in the private libc6-dev headers: put the real one there.
cp -f "$tmp/usr/include/$triplet/python$ver/pyconfig.h" \
    "$tmp/usr/include/python$ver/pyconfig.h"

# sysconfig's install locations of this Python name /usr: point them at the
# root (the wheels of ensurepip/venv, headers, config dir, ...).  LIBDIR,
# INCLUDEDIR and CONFINCLUDEDIR stay the system's: they name the generic
# lib/include directories, whose private copies hold glibc 2.4x's libraries
# and headers; put in front of a build (-L, -I) they would make extensions
# and programs that need a newer glibc than the system has.
tpy - "$tmp" "$final" <<'EOF'
import glob, os, re, sys
tmp, final = sys.argv[1], sys.argv[2]
keys = ("prefix exec_prefix host_prefix host_exec_prefix BINDIR BINLIBDEST "
        "CONFINCLUDEPY DESTLIB DESTSHARED EXENAME INCLUDEPY LIBDEST LIBPC "
        "LIBPL MACHDESTLIB SCRIPTDIR WHEEL_PKG_DIR").split()
libs = glob.glob(os.path.join(tmp, "usr/lib/python3.*"))
files = [f for d in libs for f in
         glob.glob(os.path.join(d, "_sysconfigdata_*.py")) +
         glob.glob(os.path.join(d, "_sysconfig_vars_*.json"))
         if not os.path.islink(f)]
if not any(f.endswith(".py") for f in files):
    sys.exit("no _sysconfigdata_*.py")
for f in files:
    q = '"' if f.endswith(".json") else "'"
    text = open(f, encoding="utf-8").read()
    for k in keys:
        pat = re.compile(r"(%s%s%s:\s*%s)/usr\b" % (q, re.escape(k), q, q))
        text, n = pat.subn(lambda m: m.group(1) + final + "/usr", text)
        if k in ("INCLUDEPY", "WHEEL_PKG_DIR") and n != 1:
            sys.exit("%s: %s not found once" % (f, k))
    open(f, "w", encoding="utf-8").write(text)
for pc in glob.glob(os.path.join(tmp, "usr/lib/*/pkgconfig/python-3*.pc")):
    text = open(pc, encoding="utf-8").read()
    text = re.sub(r"(?m)^prefix=/usr$", "prefix=" + final + "/usr", text)
    open(pc, "w", encoding="utf-8").write(text)
EOF

# The byte code that Debian's postinst (py3compile) would have made
# (serially: worker processes would start sys.executable, which cannot run
# before the rename).
# The test suite holds files that must not compile (badsyntax_*, bad
# codings): its failures there are expected.
tpy -m compileall -q -x '/test/' "$tmp/usr/lib/python$ver" >/dev/null \
    || die "compileall failed"
tpy -m compileall -q "$tmp/usr/lib/python$ver/test" >/dev/null 2>&1 || :

# Check before committing: the imports, through the private loader.
tpy -c "$CHECK_IMPORTS" >/dev/null 2>>"$log" \
    || { cat "$log" >&2; die "python$ver does not import its modules"; }
sysver=$(tpy -c 'import sys; print(sys.version.replace("\n", " "))')

printf 'root=%s\nversion=%s\nmirror=%s %s\nbuilt=%s\n' "$final" "$sysver" \
    "$mirror" "$suite" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$tmp/.complete"

# Commit: move any stale root aside, then one rename.
if [ -e "$final" ] || [ -L "$final" ]; then
    stale=$(mktemp -d "$cache/.$ver.stale.XXXXXX")
    mv "$final" "$stale/old"
    rm -rf "$stale"
fi
mv -T "$tmp" "$final"
tmp=""

if ! root_ok "$final"; then
    rm -f "$final/.complete"
    die "python$ver does not run from $final"
fi
wheels=$("$py" -I -c 'import sysconfig; print(sysconfig.get_config_var("WHEEL_PKG_DIR"))')
ls "$wheels"/pip-*.whl >/dev/null 2>&1 \
    || { rm -f "$final/.complete"; die "no pip wheel in $wheels"; }
say "python$ver: $sysver"
printf '%s\n' "$py"
