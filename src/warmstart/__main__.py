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
import argparse
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
import time


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
    from . import build, image
    out = os.path.abspath(args.output)
    progress = build.progress_bar if sys.stderr.isatty() else None
    if args.stdlib or args.modules:
        mods, skipped = [], []
        if args.stdlib:
            mods += list(image.stdlib_modules(include_tests=False))
        if args.modules:
            found, skipped = build.modules_from_names(
                [m for m in args.modules.split(",") if m])
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
        print("warmstart build: give --stdlib, --modules or a command "
              "after --", file=sys.stderr)
        return 2
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
            print("warmstart build: the command's interpreter did not record "
                  "its imports (is warmstart installed for it?)",
                  file=sys.stderr)
            return 1
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
    env = dict(os.environ, WARMSTART_IMAGE=os.path.abspath(args.image))
    exe = shutil.which(command[0]) or command[0]
    os.execve(exe, command, env)


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
    # Convenience only: this Python process costs what the client saves.
    # Launch warmstart-exec itself (or a shim) where start-up matters.
    command = _command(args, "exec")
    pre = ["--preload", args.preload] if args.preload else []
    os.execv(client_path(), [client_path(), *pre, "--", *command])


def cmd_shim(args):
    """Write an executable that launches the command through its warm
    server: a two-line sh script (dash starts in about a millisecond)."""
    import shlex
    command = _command(args, "shim")
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
    from . import server
    found = server.servers()
    if args.keys:
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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="warmstart", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write an image")
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--modules", help="comma-separated module names")
    b.add_argument("--stdlib", action="store_true",
                   help="the whole standard library")
    b.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- python ...: record what this command imports")
    i = sub.add_parser("info", help="what is in an image, and does it fit")
    i.add_argument("image")
    i.add_argument("-v", "--verbose", action="store_true")
    r = sub.add_parser("run", help="run a command with an image active")
    r.add_argument("image")
    r.add_argument("command", nargs=argparse.REMAINDER)
    e = sub.add_parser("exec", help="run a command through its warm server")
    e.add_argument("--preload", help="comma-separated modules to preload "
                   "besides those the command imports")
    e.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("server", help="list, stop or restart warm servers")
    s.add_argument("action", choices=["status", "stop", "restart"])
    s.add_argument("keys", nargs="*", help="servers to act on (default: all)")
    h = sub.add_parser("shim", help="write an executable that launches a "
                       "command through its warm server")
    h.add_argument("-o", "--output", required=True)
    h.add_argument("--preload")
    h.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("client-path", help="print the native client's path")
    pr = sub.add_parser("profile", help="where a program's start-up time "
                        "goes, and what each tier would save")
    pr.add_argument("--json", metavar="FILE", help="write the profile as JSON")
    pr.add_argument("--html", metavar="FILE",
                    help="write an interactive, self-contained HTML page")
    pr.add_argument("--budget", metavar="TIME",
                    help="exit with status 3 if start-up exceeds TIME "
                    "(e.g. 150ms)")
    pr.add_argument("--top", type=int, default=10,
                    help="rows per table (default 10)")
    pr.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.cmd == "client-path":
        print(client_path())
        return 0
    if args.cmd == "profile":
        from . import profiler
        return profiler.main(args, _command(args, "profile"))
    return {"build": cmd_build, "info": cmd_info, "run": cmd_run,
            "exec": cmd_exec, "server": cmd_server,
            "shim": cmd_shim}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
