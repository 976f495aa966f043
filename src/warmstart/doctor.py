"""`warmstart doctor [-- COMMAND]`: why a speed-up does not show.

Without a command: this installation (interpreter, C core, variables)
and the caches (caches.py).  With one: what each tier would do with it,
and why not.  The program itself never runs.  The command's own
interpreter is started with the command's own argv and environment, and
WARMSTART_DOCTOR set; its start-up hook (_boot.main) then calls probe(),
which notes sys.path where the auto cache keys it (at the hook), then
sys.path as the program would see it, at the audit event the interpreter
raises just before it runs the program (cpython.run_file, run_module,
run_command, ...), and exits there.  So the image tiers are judged by the
interpreter that would run the program, with its options, sys.path and
cwd; the warm server by the native client's own --explain.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

# How many stale modules a line names.
SHOWN = 5


# -- in the command's interpreter -----------------------------------------

def probe(out):
    """Called by _boot.main() at start-up when WARMSTART_DOCTOR is set:
    report to the file *out* and exit before the program runs."""
    from . import _boot, auto
    entry = _boot.entry_point()
    at_hook = list(sys.path)
    report = {"python": sys.version.split()[0], "executable": sys.executable,
              "entry": entry, "auto_key": auto.cache_key(entry, at_hook)}
    busy = []

    def hook(event, args):
        if not event.startswith("cpython.run_") or busy:
            return
        busy.append(event)
        report["event"] = event
        report["sys_path"] = list(sys.path)
        try:
            report.update(_tiers(report))
        except Exception as e:          # a report, not a traceback
            report["error"] = f"{type(e).__name__}: {e}"
        fd = os.open(out, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        with os.fdopen(fd, "w") as f:
            json.dump(report, f)
        os._exit(0)

    sys.addaudithook(hook)


def _tiers(report):
    from . import auto
    out = {}
    image = os.environ.get("WARMSTART_DOCTOR_IMAGE")
    if image:
        out["image"] = _check_image(image, report["sys_path"])
    from . import privdir
    name = report["auto_key"] + ".img"
    where = auto.cache_dir()
    try:
        cache = privdir.PrivateDir(where, 0o022, create=False)
    except FileNotFoundError:
        out["auto"] = {"cache": where, "file": os.path.join(where, name),
                       "problem": "no image yet"}
        return out
    except OSError as e:
        out["auto"] = {"problem": f"the cache directory {where} cannot be "
                       f"used: {e}"}
        return out
    try:
        a = {"cache": cache.path, "file": cache.join(name)}
        if cache.stat(name) is None:
            a["problem"] = "no image yet"
        elif auto._own_file(cache, name) is None:
            a["problem"] = "the cached image is not a private file of ours"
        else:
            a.update(_check_image(cache.join(name), report["sys_path"]))
        if cache.exists(name + ".writing"):
            a["writing"] = True
        a["skipped"] = len(auto._skip_list(cache, name))
        out["auto"] = a
    finally:
        cache.close()
    return out


def _check_image(path, live_path):
    """Would this image serve here: opens, fits, has a record, and which
    of its modules are stale?"""
    from . import importer
    try:
        finder = importer.ImageFinder(importer._image.Image(path),
                                      os.environ.get("WARMSTART_CHECK")
                                      or "mtime")
    except (OSError, importer.ImageError, ValueError, KeyError,
            EOFError) as e:
        return {"problem": str(e)}
    names = list(finder.image.modules())
    stale = []
    for name in names:
        info = finder._module_info(name)
        if info is None or not finder._fresh(name, info):
            stale.append([name, finder.fallbacks.get(name, "")])
    changed = [p for p in finder.sys_path if p not in live_path]
    added = [p for p in live_path if p not in finder.sys_path]
    return {"modules": len(names), "stale": stale,
            "path_removed": changed, "path_added": added,
            "path_reordered": not changed and not added
            and finder.sys_path != live_path}


# -- in `warmstart doctor` --------------------------------------------------

def _say(*lines):
    for line in lines:
        print(line)


def installation():
    from . import __version__, caches
    _say(f"warmstart {__version__}, run by Python "
         f"{sys.version.split()[0]} ({sys.executable})")
    try:
        from . import _image
        _image.fingerprint()
        _say("  C core: loads")
    except ImportError as e:
        _say(f"  C core: does not load ({e}): every tier is off")
    hook = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "00-warmstart.pth")
    _say("  start-up hook: " + (hook if os.path.exists(hook) else
         "not next to the package (an editable install keeps it in "
         "site-packages)"))
    from ._boot import MODIFIERS, WAKE
    known = dict(WAKE + MODIFIERS)
    for k in sorted(os.environ):
        if not k.startswith("WARMSTART"):
            continue
        v = os.environ[k]
        note = known.get(k, "not a warmstart variable: a typo?")
        if k == "WARMSTART" and v not in ("auto", "0", ""):
            note = "ignored: the only mode is WARMSTART=auto"
        _say(f"  {k}={v}: {note}")
    limit, warning = caches.cap()
    if warning:
        _say(f"  {warning}")
    _caches(limit)


def _caches(limit):
    from . import auto, caches, command, privdir
    cap_text = f"cap {limit / 2**20:.0f} MiB" if limit else "no cap"
    where = auto.cache_dir()
    try:
        d = privdir.PrivateDir(where, 0o022, create=False)
    except FileNotFoundError:
        _say(f"auto cache: {where} (not created yet)")
    except OSError as e:
        _say(f"auto cache: {where}: not usable: {e}")
    else:
        try:
            es = caches.image_entries(d)
            _say(f"auto cache: {d.path}: {len(es)} images, "
                 f"{sum(e.size for e in es) / 2**20:.1f} MiB ({cap_text}, "
                 f"WARMSTART_CACHE_MAX)")
        finally:
            d.close()
    d = command.server_dir(os.environb, create=False)
    if d is None:
        dirs = " or ".join(os.fsdecode(p) for p in command.server_dirs(
            os.environb))
        _say(f"server directory: {dirs} (none usable yet)")
        return
    try:
        es = caches.server_entries(d)
        states = {}
        for e in es:
            states[e.state] = states.get(e.state, 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        _say(f"server directory: {d.path}: {len(es)} servers"
             + (f" ({counts})" if counts else "")
             + f", {sum(e.size for e in es) / 1024:.0f} KiB")
    finally:
        d.close()


def interpreter_options(argv):
    """The interpreter's own options in a Python command line, without the
    program: ["-O", "-X", "dev"] of python -OX dev -m tool.  None if the
    command has no program (python -, or an interactive interpreter)."""
    out, i = [], 1
    while i < len(argv):
        a = argv[i]
        if a == b"--check-hash-based-pycs" and i + 1 < len(argv):
            out += argv[i:i + 2]
            i += 2
            continue
        if not a.startswith(b"-") or a == b"-":
            return out if a != b"-" else None
        for j in range(1, len(a)):
            c = a[j:j + 1]
            if c in (b"c", b"m"):
                if j > 1:
                    out.append(a[:j])
                return out
            if c in (b"W", b"X"):
                if j + 1 == len(a):
                    out += argv[i:i + 2]
                    i += 1
                else:
                    out.append(a)
                break
        else:
            out.append(a)
        i += 1
    return None


def _run_probe(argv, exe, env):
    """Start the command's interpreter as the command would, up to its
    program: the probe's report, or None and why."""
    with tempfile.TemporaryDirectory(prefix="warmstart-doctor-") as tmp:
        out = os.path.join(tmp, "report.json")
        os.close(os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        env = dict(env, WARMSTART=b"auto", WARMSTART_DOCTOR=os.fsencode(out))
        env = {os.fsencode(k): v for k, v in env.items()}
        try:
            p = subprocess.run(argv, executable=exe, env=env,
                               stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, str(e)
        with open(out) as f:
            text = f.read()
        if not text:
            err = p.stderr.decode(errors="replace").strip().splitlines()
            return None, (err[-1] if err else f"exit status {p.returncode}")
        return json.loads(text), None


def probe_command(argv, exe):
    """The probe's report for a command, or None and why.  The program
    must not run: it is started only once the same interpreter, with the
    same options, has shown that its start-up hook stops it (a check run
    of -c pass); -S, which skips the hook, is not started at all."""
    opts = interpreter_options(argv)
    if opts is None:
        return None, "no program to look at"
    if any(o.startswith(b"-") and not o.startswith(b"--")
           and b"S" in o.split(b"X")[0].split(b"W")[0] for o in opts):
        return None, "-S skips site, and with it warmstart's start-up hook"
    env = {k: v for k, v in os.environb.items()
           if not k.startswith(b"WARMSTART")
           or k in (b"WARMSTART_CACHE", b"WARMSTART_CACHE_MAX",
                    b"WARMSTART_CHECK")}
    image = os.environb.get(b"WARMSTART_IMAGE")
    if image:
        env[b"WARMSTART_DOCTOR_IMAGE"] = os.path.abspath(image)
    check, why = _run_probe([argv[0], *opts, b"-c", b"pass"], exe, env)
    if check is None:
        return None, why
    return _run_probe(argv, exe, env)


def _image_lines(what, r):
    if "problem" in r:
        return [f"{what}: not used: {r['problem']}"]
    stale = r["stale"]
    lines = [f"{what}: {r['modules']} modules, "
             f"{r['modules'] - len(stale)} would be served"]
    if stale:
        names = ", ".join(n for n, _ in stale[:SHOWN])
        more = f" and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
        lines.append(f"  stale (source changed since the build): {names}"
                     f"{more}")
    if r["path_removed"] or r["path_added"] or r["path_reordered"]:
        lines.append("  sys.path differs from the build, so each module is "
                     "served only after a full path search:")
        for p in r["path_removed"][:SHOWN]:
            lines.append(f"    no longer on it: {p}")
        for p in r["path_added"][:SHOWN]:
            lines.append(f"    new on it: {p}")
        if r["path_reordered"]:
            lines.append("    the same entries in another order")
    return lines


def command_report(argv):
    from . import command
    cwd = os.getcwdb()
    bargv = [os.fsencode(a) for a in argv]
    _say("", "for: " + " ".join(argv))
    try:
        cmd = command.Command(bargv, dict(os.environb), cwd)
        pargv, exe = cmd.argv, cmd.exe
        if pargv != bargv:
            _say("  a console script: " + " ".join(map(os.fsdecode, pargv)))
    except command.Direct:
        # Not for the server (which says why below); the image tiers may
        # still act, if it is a Python at all.
        pargv, exe = bargv, shutil.which(bargv[0]) or bargv[0]
    if command._is_python_name(os.fsencode(exe)) or pargv != bargv:
        report, problem = probe_command(pargv, exe)
        _image_tiers(report, problem, exe)
    else:
        _say(f"  {argv[0]} is not a Python interpreter nor a Python script: "
             f"no tier acts on it")
    _server(argv)
    return 0


def _image_tiers(report, problem, exe):
    if report is None:
        _say(f"  image tiers: not looked at: {os.fsdecode(exe)}: {problem} "
             f"(is warmstart installed for that interpreter?)")
        return
    _say(f"  interpreter: Python {report['python']} "
         f"({report['executable']}), program: {report['entry']}")
    if "error" in report:
        _say(f"  the check failed there: {report['error']}")
    if "image" in report:
        _say(*("  " + x for x in _image_lines(
            f"WARMSTART_IMAGE={os.environ['WARMSTART_IMAGE']}",
            report["image"])))
    a = report.get("auto", {})
    if "cache" in a:
        lines = _image_lines(f"WARMSTART=auto: {a['file']}", a)
        if a.get("problem") == "no image yet":
            lines = [f"WARMSTART=auto: no image yet ({a['file']}); the "
                     f"first run with WARMSTART=auto records one, written "
                     f"after it exits"]
        if a.get("writing"):
            lines.append("  being rewritten now")
        if a.get("skipped"):
            lines.append(f"  {a['skipped']} modules cannot be imaged "
                         f"(they import normally)")
        _say(*("  " + x for x in lines))
    elif a:
        _say(f"  WARMSTART=auto: {a['problem']}")


def _server(argv):
    """The warm server: the native client decides, as at every launch."""
    from . import caches, command
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "warmstart-exec")
    p = subprocess.run([client, "--explain", "--", *argv],
                       capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    if not lines or lines[-1].startswith("direct:"):
        why = lines[-1][len("direct: "):] if lines else p.stderr.strip()
        _say(f"  warm server: runs directly: {why}")
        return
    key = os.path.basename(lines[-1].split("server: ", 1)[-1])
    d = command.server_dir(os.environb, create=False)
    entry, refused = None, ""
    if d is not None:
        try:
            entry = next((e for e in caches.server_entries(d)
                          if e.key == key), None)
            if entry is not None and entry.state == "refused":
                refused = d.read(key + ".refused").decode(errors="replace")
        except OSError:
            pass
        finally:
            d.close()
    if entry is None:
        _say(f"  warm server {key}: none yet; the first `warmstart-exec -- "
             f"...` run starts one")
    elif entry.state == "running":
        info = entry.info
        _say(f"  warm server {key}: running (pid {info['pid']}, "
             f"{info['modules']} modules preloaded): launches are served")
    elif entry.state == "refused":
        _say(f"  warm server {key}: refused: {refused.strip()}")
    else:
        _say(f"  warm server {key}: {entry.state}; the next "
             f"`warmstart-exec -- ...` run starts it again")


def main(argv):
    installation()
    if argv:
        return command_report(argv)
    return 0
