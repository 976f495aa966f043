"""warmstart command line.

  warmstart build -o app.img -- python -m mytool --help
  warmstart build -o app.img -- python script.py args...
  warmstart build -o app.img --modules json,email.parser
  warmstart build -o app.img --stdlib
  warmstart info app.img [-v]
  warmstart run app.img -- python -m mytool ...
  warmstart exec [--preload MODULES] -- python -m mytool ...
  warmstart server status | stop [KEY...] | restart [KEY...]
  warmstart shim -o ~/bin/mytool -- /venv/bin/python /venv/bin/mytool
  warmstart client-path
  warmstart profile [--json F] [--html F] [--budget 150ms] -- python ...
"""
import os
import sys

from . import __version__

# argparse, shutil, subprocess and the rest are imported where they are
# used: `warmstart exec` hands over to the native client before any of
# them (the Python start is already what the client saves).


def _fail(what, message, status=1):
    """One line on stderr and the exit status: the CLI's only error form."""
    print(f"warmstart {what}: {message}", file=sys.stderr)
    return status


def _output_problem(path):
    """Why *path* cannot be written as a new file, or None.  Checked before
    any work, so that a long build or profile is not lost at the end; the
    directory is never created."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        return f"cannot write {path}: it is a directory"
    if not os.path.isdir(parent):
        return f"cannot write {path}: no directory {parent}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write {path}: directory {parent} is not writable"
    return None


def _program_problem(command):
    """(message, status) when command[0] cannot be run, as a shell says
    it (127 not found, 126 not executable), or None."""
    import shutil
    name = command[0]
    exe = shutil.which(name) if os.sep not in name else name
    if exe is None or not os.path.exists(exe):
        return f"command not found: {name}", 127
    if os.path.isdir(exe) or not os.access(exe, os.X_OK):
        return f"cannot run {name}: not an executable file", 126
    return None


def _print_summary(summary, other=()):
    print(f"warmstart: wrote {summary['modules']} modules, "
          f"{summary['size'] / 1e6:.1f} MB")
    for name, reason in summary["skipped"]:
        print(f"  skipped {name}: {reason}")
    kinds = {}
    for name, reason in other:
        kinds.setdefault(reason.split(" (")[0], []).append(name)
    for reason, names in sorted(kinds.items()):
        print(f"  not imaged ({reason}): {len(names)}")


def cmd_build(args):
    import marshal
    import subprocess
    import tempfile
    from . import build, image
    out = os.path.abspath(args.output)
    problem = _output_problem(out)
    if problem:
        return _fail("build", problem)
    progress = build.progress_bar if sys.stderr.isatty() else None
    if args.stdlib or args.modules:
        mods, skipped = [], []
        if args.stdlib:
            mods += list(image.stdlib_modules(include_tests=False))
        if args.modules:
            found, skipped = build.modules_from_names(
                [m for m in args.modules.split(",") if m])
            missing = [f"{n} ({why})" for n, why in skipped
                       if why == "not found" or why.startswith(
                           ("ModuleNotFoundError", "ImportError"))]
            if missing:
                return _fail("build", "no such module: " + ", ".join(missing))
            mods += found
        seen = set()
        mods = [m for m in mods if not (m[0] in seen or seen.add(m[0]))]
        summary = build.write(out, mods, optimize=sys.flags.optimize,
                              progress=progress)
        summary["skipped"] = skipped + summary["skipped"]
        _print_summary(summary)
        return 0
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _fail("build", "give --stdlib, --modules or a command "
                     "after --", 2)
    problem = _program_problem(command)
    if problem:
        return _fail("build", *problem)
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report")
        env = dict(os.environ, WARMSTART_RECORD=out, WARMSTART_REPORT=report)
        env.pop("WARMSTART_IMAGE", None)
        env.pop("WARMSTART", None)
        if progress:
            env["WARMSTART_PROGRESS"] = "1"
        try:
            os.unlink(out + ".claim")
        except FileNotFoundError:
            pass
        try:
            rc = subprocess.call(command, env=env)
        finally:
            try:
                os.unlink(out + ".claim")
            except FileNotFoundError:
                pass
        if not os.path.exists(report):
            return _fail("build", "the command's interpreter did not record "
                         "its imports (is warmstart installed for it?)")
        with open(report, "rb") as f:
            data = marshal.load(f)
    _print_summary(data["summary"], data["other"])
    if rc != 0:
        print(f"warmstart build: note: the command exited with status {rc}")
    return 0


def cmd_info(args):
    from . import _image
    print(f"image: {args.image}")
    try:
        img = _image.Image(os.path.abspath(args.image))
    except (OSError, _image.ImageError) as e:
        print(f"unusable here: {e}")
        return 1
    h = img.header
    fp = h["fingerprint"]
    print(f"fits this interpreter: yes ({sys.version.split()[0]}, "
          f"{fp['cache_tag']})")
    print(f"modules: {h['modules']}, atoms: {h['atoms']}, "
          f"size: {h['file_size'] / 1e6:.1f} MB")
    try:
        from . import record as build_record
        record = build_record.read(img)
    except (_image.ImageError, EOFError, ValueError, TypeError) as e:
        print(f"build record: unreadable ({e})")
        record = None
    if record:
        trusted = sum(1 for k in record["entry"].values() if k >= 0)
        print(f"built with sys.path: {record['sys_path']}")
        print(f"modules found by a trusted index: {trusted} of "
              f"{len(record['entry'])}")
        print(f"extension modules located without a search: "
              f"{len(record.get('ext', {}))}")
    if args.verbose:
        for name in img.modules():
            i = img.info(name)
            kind = "package" if i["is_package"] else "module"
            print(f"  {name:40s} {kind:7s} {i['bytes']:8d} B  {i['origin']}")
    return 0


def cmd_run(args):
    command = _command(args, "run")
    if not os.path.isfile(args.image):
        return _fail("run", f"no image file {args.image}")
    problem = _program_problem(command)
    if problem:
        return _fail("run", *problem)
    import shutil
    env = dict(os.environ, WARMSTART_IMAGE=os.path.abspath(args.image))
    exe = shutil.which(command[0]) if os.sep not in command[0] else command[0]
    try:
        os.execve(exe, command, env)
    except OSError as e:
        return _fail("run", f"cannot run {command[0]}: {e.strerror}", 126)


def client_path():
    """The native client, warmstart-exec, installed inside the package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "warmstart-exec")


def _command(args, what):
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(f"warmstart {what}: give a command after --", file=sys.stderr)
        sys.exit(2)
    return command


def cmd_exec(args):
    # Only the forms _exec_fast leaves (no "--"): the Python start-up is
    # what the client saves; launch warmstart-exec itself where it counts.
    command = _command(args, "exec")
    pre = ["--preload", args.preload] if args.preload else []
    os.execv(client_path(), [client_path(), *pre, "--", *command])


def cmd_shim(args):
    """Write an executable that launches the command through its warm
    server: a two-line sh script (dash starts in about a millisecond)."""
    import shlex
    import shutil
    command = _command(args, "shim")
    problem = _output_problem(args.output)
    if problem:
        return _fail("shim", problem)
    problem = _program_problem(command)
    if problem:
        return _fail("shim", *problem)
    exe = shutil.which(command[0]) or command[0]
    words = [client_path()]
    if args.preload:
        words += ["--preload", args.preload]
    words += ["--", os.path.abspath(exe)] + command[1:]
    text = ("#!/bin/sh\n# generated by `warmstart shim`\nexec "
            + " ".join(shlex.quote(w) for w in words) + ' "$@"\n')
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, args.output)
    print(f"warmstart: wrote {args.output}")
    return 0


def cmd_server(args):
    import time
    from . import server
    found = server.servers()
    if args.keys:
        known = {os.path.basename(s[0]) for s in found}
        unknown = [k for k in args.keys if k not in known]
        if unknown:
            return _fail("server", "no server " + ", ".join(unknown)
                         + " (warmstart server status lists them)")
        found = [s for s in found if os.path.basename(s[0]) in args.keys]
    if args.action == "status":
        if not found:
            print("no warm servers")
        for base, info, state in found:
            key = os.path.basename(base)
            if info:
                age = time.time() - info["started"]
                print(f"{key}  {state}  pid {info['pid']}  "
                      f"up {age:.0f} s  Python {info['python']}  "
                      f"{info['modules']} modules")
                print(f"    {' '.join(info['argv'])}  (in {info['cwd']})")
                if state == "running":
                    mem = server.private_memory(info["pid"])
                    kids = [server.private_memory(c)
                            for c in server.children(info["pid"])]
                    kids = [k for k in kids if k is not None]
                    line = (f"    private memory: server "
                            f"{(mem or 0) / 2**20:.1f} MiB")
                    if kids:
                        line += (f", each child {min(kids) / 2**20:.1f}"
                                 f"-{max(kids) / 2**20:.1f} MiB "
                                 f"({len(kids)} now)")
                    print(line)
            else:
                print(f"{key}  {state}")
        return 0
    for base, info, state in found:
        key = os.path.basename(base)
        if args.action == "stop":
            was = server.stop(base)
            print(f"{key}: {'stopped' if was else 'was not running'}")
        else:
            try:
                server.restart(base)
                print(f"{key}: restarted")
            except OSError as e:
                print(f"{key}: cannot restart: {e}")
    return 0


def _size(n):
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _ago(t):
    import time
    s = max(0, time.time() - t)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def cmd_cache(args):
    from . import auto, caches, command, privdir
    places = []
    try:
        places.append(("auto cache", privdir.PrivateDir(
            auto.cache_dir(), 0o022, create=False), caches.image_entries))
    except FileNotFoundError:
        pass
    except OSError as e:
        return _fail("cache", f"cannot use the cache {auto.cache_dir()}: {e}")
    d = command.server_dir(os.environb, create=False)
    if d is not None:
        places.append(("server directory", d, caches.server_entries))
    limit, warning = caches.cap()
    if warning:
        print(f"warmstart: {warning}", file=sys.stderr)
    try:
        found = [(what, d, e) for what, d, list_ in places for e in list_(d)]
        if args.keys:
            unknown = set(args.keys) - {e.key for _, _, e in found}
            if unknown:
                return _fail("cache", "no entry " + ", ".join(sorted(unknown))
                             + " (warmstart cache list lists them)")
            found = [f for f in found if f[2].key in args.keys]
        if args.action == "list":
            for what, d, list_ in places:
                entries = [e for w, _, e in found if w == what]
                total = sum(e.size for e in entries)
                cap_text = _size(limit) if limit else "no cap"
                print(f"{what}: {d.path}  {len(entries)} entries, "
                      f"{_size(total)} (cap {cap_text})")
                for e in entries:
                    about = ""
                    if e.info:
                        about = "  " + " ".join(e.info.get("argv", []))
                    print(f"  {e.key}  {e.kind:6s} {e.state:13s} "
                          f"{_size(e.size):>10s}  used {_ago(e.used)}{about}")
            if not places:
                print("nothing cached")
            return 0
        removed = kept = 0
        for _, d, e in found:
            if e.busy:
                kept += 1
                continue
            caches.remove(d, e)
            removed += 1
        print(f"removed {removed} entries"
              + (f"; kept {kept} in use (warmstart server stop stops "
                 f"running servers)" if kept else ""))
        return 0
    finally:
        for _, d, _ in places:
            d.close()


def _sub(sub, name, summary, description, examples):
    """A subcommand whose --help has a description and two examples."""
    import argparse
    return sub.add_parser(
        name, help=summary, description=description,
        epilog="examples:\n" + "\n".join("  " + e for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter)


def _exec_fast(argv):
    """warmstart exec [--preload M] -- COMMAND: straight to the client,
    with nothing more imported.  None when argv is another form."""
    if argv[:1] != ["exec"]:
        return None
    pre, rest = [], argv[1:]
    if rest[:1] == ["--preload"] and len(rest) > 1:
        pre, rest = rest[:2], rest[2:]
    elif rest[:1] and rest[0].startswith("--preload="):
        pre, rest = ["--preload", rest[0].split("=", 1)[1]], rest[1:]
    if rest[:1] != ["--"] or len(rest) < 2:
        return None             # help, errors: argparse says it
    try:
        os.execv(client_path(), [client_path(), *pre, *rest])
    except OSError as e:
        sys.exit(_fail("exec", f"cannot run the native client "
                       f"{client_path()}: {e.strerror}", 127))


def main(argv=None):
    try:
        try:
            return _main(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()      # here, where a closed pipe is caught
    except BrokenPipeError:
        # `warmstart cache list | head`: the reader left; say nothing more,
        # and let the interpreter's final flush of stdout fail quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


def _main(argv):
    _exec_fast(argv)
    import argparse
    ap = argparse.ArgumentParser(
        prog="warmstart", description="CPython that starts warm: code "
        "images, an import path served from them, warm servers, and a "
        "start-up profiler.",
        epilog="examples:\n  warmstart build -o app.img -- python -m mytool"
        "\n  warmstart-exec -- python -m mytool   (the fast form)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version",
                    version=f"warmstart {__version__} (Python "
                    f"{sys.version.split()[0]})")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    b = _sub(sub, "build", "write an image",
             "Write a code image: of what a command imports (recorded from "
             "one real run), of named modules, or of the standard library.",
             ["warmstart build -o app.img -- python -m mytool --help",
              "warmstart build -o json.img --modules json,email.parser"])
    b.add_argument("-o", "--output", required=True, metavar="IMAGE",
                   help="the image file to write (its directory must exist)")
    b.add_argument("--modules", metavar="NAMES",
                   help="comma-separated module names to image")
    b.add_argument("--stdlib", action="store_true",
                   help="the whole standard library")
    b.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- python ...: record what this command imports")
    i = _sub(sub, "info", "what is in an image, and does it fit",
             "Say whether an image fits this interpreter, what it holds and "
             "the sys.path it was built with.",
             ["warmstart info app.img", "warmstart info -v app.img"])
    i.add_argument("image", help="the image file")
    i.add_argument("-v", "--verbose", action="store_true",
                   help="also list every module with its size and origin")
    r = _sub(sub, "run", "run a command with an image active",
             "Run a command with WARMSTART_IMAGE set: its imports are served "
             "from the image where the image holds the same file.",
             ["warmstart run app.img -- python -m mytool",
              "warmstart run app.img -- mytool --help"])
    r.add_argument("image", help="the image file")
    r.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- the command and its arguments")
    e = _sub(sub, "exec", "run a command through its warm server",
             "Hand the command to the native client, warmstart-exec, which "
             "runs it through a warm server (started by the first run). "
             "Where speed counts, run warmstart-exec itself: this form "
             "starts a Python first.",
             ["warmstart exec -- python -m mytool",
              "warmstart exec --preload numpy -- python script.py"])
    e.add_argument("--preload", metavar="MODULES",
                   help="comma-separated modules to preload besides those "
                   "the command imports")
    e.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- the command and its arguments")
    s = _sub(sub, "server", "list, stop or restart warm servers",
             "Show the warm servers of this user (state, pid, memory, why "
             "one was refused), or stop or restart them.",
             ["warmstart server status", "warmstart server stop 1a2b3c4d5e6f7a8b"])
    s.add_argument("action", choices=["status", "stop", "restart"],
                   help="status, stop or restart")
    s.add_argument("keys", nargs="*",
                   help="servers to act on, by key (default: all)")
    c = _sub(sub, "cache", "list or clean the auto cache and the server "
             "directory",
             "List what warmstart keeps for this user (the auto cache's "
             "images, the server directory's files), or remove it. Each "
             "directory is kept under WARMSTART_CACHE_MAX (default 1G), "
             "least recently used first. Running servers are never removed: "
             "warmstart server stop stops them.",
             ["warmstart cache list", "warmstart cache clean"])
    c.add_argument("action", choices=["list", "clean"], help="list or clean")
    c.add_argument("keys", nargs="*",
                   help="entries to remove, by key (default: all)")
    d = _sub(sub, "doctor", "why a speed-up does not show",
             "Check this installation (interpreter, C core, start-up hook, "
             "variables, caches) and, for a command, what each tier would do "
             "with it and why not. Nothing of the command is run but its "
             "interpreter, to read its sys.path.",
             ["warmstart doctor", "warmstart doctor -- python -m mytool"])
    d.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- the command, as you run it")
    h = _sub(sub, "shim", "write an executable that launches a command "
             "through its warm server",
             "Write a small sh script that runs the command through "
             "warmstart-exec, to put on PATH in place of the command.",
             ["warmstart shim -o ~/bin/black -- /venv/bin/python /venv/bin/black",
              "warmstart shim -o ~/bin/mytool --preload yaml -- python -m mytool"])
    h.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the script to write (its directory must exist)")
    h.add_argument("--preload", metavar="MODULES",
                   help="comma-separated modules to preload")
    h.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- the command and its arguments")
    _sub(sub, "client-path", "print the native client's path",
         "Print the path of warmstart-exec, the native client.",
         ["warmstart client-path", '"$(warmstart client-path)" -- python -c pass'])
    pr = _sub(sub, "profile", "where a program's start-up time goes, and "
              "what each tier would save",
              "Run the command (once, or N times for medians) and report "
              "each import's find, load and execute time, who imported it, "
              "and what an image or a warm server would save. The report "
              "goes to stderr.",
              ["warmstart profile -- python -m mytool --help",
               "warmstart profile --repeat 5 --html report.html "
               "--budget 150ms -- mytool"])
    pr.add_argument("--json", metavar="FILE", help="write the profile as JSON")
    pr.add_argument("--html", metavar="FILE",
                    help="write an interactive, self-contained HTML page")
    pr.add_argument("--budget", metavar="TIME",
                    help="exit with status 3 if start-up exceeds TIME "
                    "(e.g. 150ms)")
    pr.add_argument("--top", type=int, default=10,
                    help="rows per table (default 10)")
    pr.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run the command N times and report the median "
                    "of each time (default 1)")
    pr.add_argument("command", nargs=argparse.REMAINDER,
                    help="-- the command and its arguments")
    args = ap.parse_args(argv)
    if args.cmd is None:
        ap.print_help()
        return 2
    if args.cmd == "client-path":
        print(client_path())
        return 0
    if args.cmd == "profile":
        # Checked before the run, not after the report.
        if args.repeat < 1:
            return _fail("profile", f"--repeat must be at least 1, not "
                         f"{args.repeat}", 2)
        for out in (args.json, args.html):
            problem = out and _output_problem(out)
            if problem:
                return _fail("profile", problem)
        from . import profiler
        return profiler.main(args, _command(args, "profile"))
    if args.cmd == "doctor":
        from . import doctor
        return doctor.main(args.command[1:] if args.command[:1] == ["--"]
                           else args.command)
    return {"build": cmd_build, "info": cmd_info, "run": cmd_run,
            "exec": cmd_exec, "server": cmd_server, "cache": cmd_cache,
            "shim": cmd_shim}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
