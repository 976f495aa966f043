"""Tier 3: launches through a warm server behave like direct runs."""
import json
import re
import os
import pty
import signal
import struct
import subprocess
import sys
import time

import pytest

import warmstart
from warmstart import command

CLIENT = os.path.join(os.path.dirname(warmstart.__file__), "warmstart-exec")
PY = sys.executable


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["WARMSTART_SERVER_DIR"] = str(tmp_path / "servers")
    e.pop("WARMSTART_VERBOSE", None)
    yield e
    _kill_servers(e["WARMSTART_SERVER_DIR"])


def _kill_servers(d):
    """Every server process started for directory d, including one that
    a test's last launch is still starting."""
    for _ in range(2):
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"warmstart.server" in cmdline and d.encode() in cmdline:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.3)         # a recording run may spawn one at exit


def launch(args, env, cwd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 60)
    return subprocess.run([CLIENT, "--", PY, *args], env=env, cwd=cwd,
                          text=True, **kw)


def direct(args, env, cwd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 60)
    return subprocess.run([PY, *args], env=env, cwd=cwd, text=True, **kw)


def server_info(args, env, cwd, py=PY):
    """The info file of the server for this command, or None."""
    base = explain(args, env, cwd, py)["server"]
    try:
        with open(base + ".json") as f:
            return json.load(f)
    except OSError:
        return None


def explain(args, env, cwd, py=PY):
    out = subprocess.run([CLIENT, "--explain", "--", py, *args], env=env,
                         cwd=cwd, capture_output=True, check=True).stdout
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    return {"material": "\0".join(lines[:-1]) + "\0",
            "server": lines[-1].split(": ", 1)[1]}


def warm(args, env, cwd):
    """Launch once (direct, records, starts the server); wait until the
    server listens; return its pid."""
    launch(args, env, cwd)
    base = explain(args, env, cwd)["server"]
    for _ in range(300):
        info = server_info(args, env, cwd)
        if info and os.path.exists(base + ".sock"):
            return info["pid"]
        time.sleep(0.05)
    log = open(base + ".log").read() if os.path.exists(base + ".log") else ""
    raise AssertionError("server did not start:\n" + log)


PROBE = r"""
import json, os, sys, email.parser, argparse
out = {
    "argv": sys.argv, "orig_argv": sys.orig_argv[1:], "path": sys.path,
    "cwd": os.getcwd(), "umask": os.umask(0o22),
    "var": os.environ.get("WS_TEST_VAR"),
    "file": globals().get("__file__"), "name": __name__,
    "stdout": [sys.stdout.line_buffering, sys.stdout.write_through,
               sys.stdout.encoding, sys.stdout.errors, sys.stdout.name,
               sys.stdout.mode, sys.stdout.isatty()],
    "stderr": [sys.stderr.line_buffering, sys.stderr.errors, sys.stderr.name],
    "stdin": [sys.stdin.encoding, sys.stdin.name, sys.stdin.mode,
              sys.stdin.buffer.raw.name],
    "main_keys": sorted(k for k in vars(sys.modules["__main__"])
                        if k.startswith("__")),
    "flags": list(sys.flags),
}
print(json.dumps(out))
sys.stdout.flush()
code = int(sys.argv[1]) if len(sys.argv) > 1 else 0
sys.exit(code)
"""


@pytest.fixture
def project(tmp_path):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "probe.py").write_text(PROBE)
    (d / "helper.py").write_text("VALUE = 1\n")
    (d / "uses_helper.py").write_text(
        "import os, helper\nprint(helper.VALUE, os.getppid())\n")
    return d


def test_key_material_agrees_with_python(env, project):
    cases = [["probe.py", "a"], ["-c", "pass"], ["-Bc", "x=1", "arg"],
             ["-X", "dev", "-W", "ignore", "-m", "json.tool", "x"],
             ["-mjson.tool"], ["-O", "-u", "probe.py"],
             ["--check-hash-based-pycs", "never", "probe.py"]]
    for args in cases:
        got = explain(args, env, str(project))
        cmd = command.Command([os.fsencode(PY)] + [a.encode() for a in args],
                              {k.encode(): v.encode() for k, v in env.items()},
                              str(project).encode())
        # --explain's stdout and stderr are pipes; stdin is ours.
        material = cmd.key_material({k.encode(): v.encode()
                                     for k, v in env.items()},
                                    (os.isatty(0), False, False))
        assert got["material"].encode() == material, args
        d = command.server_dir({k.encode(): v.encode()
                                for k, v in env.items()})
        assert got["server"] == d.join(command.server_key(material))
        d.close()
    for args in (["-i", "probe.py"], ["-"], [], ["-S", "-c", "1"]):
        out = subprocess.run([CLIENT, "--explain", "--", PY, *args], env=env,
                             capture_output=True, text=True).stdout
        assert out.startswith("direct: "), args
        with pytest.raises(command.Direct):
            command.Command([os.fsencode(PY)] + [a.encode() for a in args],
                            {b"PATH": b"/bin"}, b"/")


def test_served_run_looks_like_direct_run(env, project):
    server = warm(["probe.py"], env, str(project))
    env = dict(env, WS_TEST_VAR="served")
    p_direct = direct(["probe.py", "7"], env, str(project))
    p_served = launch(["probe.py", "7"], env, str(project),
                      stdin=subprocess.DEVNULL)
    assert p_served.returncode == p_direct.returncode == 7
    a, b = json.loads(p_direct.stdout), json.loads(p_served.stdout)
    assert b == a
    assert b["var"] == "served"
    # ... and it was served: the worker is a child of the server.
    p = launch(["uses_helper.py"], env, str(project))
    assert p.stdout.split()[0] == "1"
    warm(["uses_helper.py"], env, str(project))
    p = launch(["uses_helper.py"], env, str(project))
    assert p.stdout.split() == ["1", str(server_info(
        ["uses_helper.py"], env, str(project))["pid"])]
    assert server != server_info(["uses_helper.py"], env, str(project))["pid"]


def test_dash_m_and_dash_c(env, project):
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "__main__.py").write_text(PROBE)
    for args in (["-m", "pkg", "3"], ["-c", PROBE, "3"]):
        warm(args, env, str(project))
        a = direct(args, env, str(project))
        b = launch(args, env, str(project))
        assert a.returncode == b.returncode == 3
        assert json.loads(b.stdout) == json.loads(a.stdout)


def test_cwd_umask_and_c_level_environment(env, project, tmp_path):
    prog = project / "where.py"
    prog.write_text("import os, subprocess\n"
                    "print(os.getcwd()); print(oct(os.umask(0)))\n"
                    "print(subprocess.run(['sh', '-c', 'echo $WS_TEST_VAR'],"
                    " capture_output=True, text=True).stdout.strip())\n")
    warm([str(prog)], env, str(project))
    other = tmp_path / "elsewhere"
    other.mkdir()
    p = launch([str(prog)], dict(env, WS_TEST_VAR="c-level"), str(other),
               preexec_fn=lambda: os.umask(0o027))
    assert p.stdout.split() == [str(other), "0o27", "c-level"]


def test_exit_status_and_tracebacks(env, project):
    prog = project / "fail.py"
    prog.write_text(
        "import sys, os, signal\n"
        "how = sys.argv[1]\n"
        "if how == 'raise':\n    def f():\n        raise ValueError('boom')\n    f()\n"
        "if how == 'exit-text': sys.exit('bad things')\n"
        "if how == 'signal': os.kill(os.getpid(), signal.SIGTERM)\n"
        "if how == '_exit': os._exit(42)\n"
        "if how == 'interrupt': raise KeyboardInterrupt\n")
    warm([str(prog), "none"], env, str(project))
    for how, code in [("raise", 1), ("exit-text", 1), ("signal", -15),
                      ("_exit", 42), ("interrupt", -2), ("none", 0)]:
        a = direct([str(prog), how], env, str(project))
        b = launch([str(prog), how], env, str(project))
        assert (a.returncode, b.returncode) == (code, code), how
        assert b.stderr == a.stderr, how


def test_signals_reach_the_program(env, project):
    prog = project / "sigs.py"
    prog.write_text(
        "import os, signal, sys, time\n"
        "# os.write: a handler that print()s can re-enter the print of\n"
        "# 'ready' still returning (RuntimeError), served or not.\n"
        "def h(s, f): os.write(1, b'got %s\\n' % signal.Signals(s).name.encode())\n"
        "for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGWINCH):\n"
        "    signal.signal(s, h)\n"
        "# Short sleeps: time.sleep() goes back to sleep after running the\n"
        "# handlers without looking again, so a signal that arrives while a\n"
        "# handler returns waits for the sleep to end -- in a direct run too.\n"
        "try:\n    print('ready', flush=True)\n"
        "    for _ in range(600): time.sleep(0.05)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True); sys.exit(5)\n")
    _signal_round(env, project, prog)


def _start(args, env, cwd):
    p = subprocess.Popen([CLIENT, "--", PY, *args], env=env, cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def _signal_round(env, project, prog):
    base = explain([str(prog)], env, str(project))["server"]
    p = _start([str(prog)], env, str(project))      # direct, records
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 5
    for _ in range(200):
        if os.path.exists(base + ".sock"):
            break
        time.sleep(0.05)
    p = _start([str(prog)], env, str(project))
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGWINCH):
        p.send_signal(sig)
        assert p.stdout.readline().strip() == "got " + sig.name
    p.send_signal(signal.SIGINT)
    assert p.stdout.readline().strip() == "interrupted"
    assert p.wait(10) == 5
    p = _start([str(prog)], env, str(project))
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == -signal.SIGTERM
    # A signal right after the program starts must not be lost either.
    for k in range(20):
        p = _start([str(prog)], env, str(project))
        p.send_signal(signal.SIGUSR1)
        assert p.stdout.readline().strip() == "got SIGUSR1", k
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 5, k


def test_killing_the_client_ends_the_program(env, project, tmp_path):
    prog = project / "sleeper.py"
    mark = tmp_path / "pid"
    prog.write_text("import os, sys, time\n"
                    f"open({str(mark)!r}, 'w').write(str(os.getpid()))\n"
                    "print('ready', flush=True)\n"
                    "if sys.argv[1:] == ['long']: time.sleep(60)\n")
    warm([str(prog)], env, str(project))
    p = _start([str(prog), "long"], env, str(project))
    pid = int(mark.read_text())
    assert pid != p.pid                 # served by a worker
    p.kill()
    p.wait()
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("program outlived its killed client")


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_server_death_mid_run(env, project):
    prog = project / "slow.py"
    prog.write_text("import sys, time\nprint('ready', flush=True)\n"
                    "if sys.argv[1:]: time.sleep(1); print('done'); sys.exit(9)\n")
    server = warm([str(prog)], env, str(project))
    p = _start([str(prog), "x"], env, str(project))
    os.kill(server, signal.SIGKILL)
    assert p.wait(20) == 9
    assert p.stdout.read().strip() == "done"
    # The next launch runs directly and starts a new server.
    q = launch([str(prog)], env, str(project))
    assert q.returncode == 0 and q.stdout.strip() == "ready"


def test_per_launch_state_differs(env, project):
    prog = project / "rand.py"
    prog.write_text("import random, tempfile, uuid, os\n"
                    "print(random.random(), tempfile.mktemp(), uuid.uuid4(),"
                    " os.getpid())\n")
    warm([str(prog)], env, str(project))
    outs = [launch([str(prog)], env, str(project)).stdout.split()
            for _ in range(3)]
    for column in zip(*outs):
        assert len(set(column)) == 3, column


def test_changed_module_retires_the_server(env, project):
    args = ["uses_helper.py"]
    server = warm(args, env, str(project))
    assert launch(args, env, str(project)).stdout.split() == ["1", str(server)]
    # (A different size: a .pyc records its source's mtime in whole
    # seconds, so a same-size edit within a second fools CPython itself.)
    (project / "helper.py").write_text("VALUE = 2  # edited\n")
    p = launch(args, env, str(project))
    assert p.stdout.split()[0] == "2"       # never the stale module
    assert not os.path.exists(f"/proc/{server}") or _zombie(server) or \
        _wait_gone(server)
    new = _wait_server(args, env, project)
    assert new != server
    assert launch(args, env, str(project)).stdout.split() == ["2", str(new)]
    # Files that no import can pick up do not retire it: a launch whose
    # output the shell redirects into a new file in sys.path[0].
    with open(project / "out.log", "w") as out:
        subprocess.run([CLIENT, "--", PY, *args], cwd=str(project), env=env,
                       stdout=out, check=True)
    assert (project / "out.log").read_text().split() == ["2", str(new)]
    (project / "notes.txt").write_text("x")
    assert launch(args, env, str(project)).stdout.split() == ["2", str(new)]
    # A new module that would shadow a preloaded one retires it.
    (project / "json.py").write_text("raise SystemExit('shadowed')\n")
    p = launch(["-c", "import json"], env, str(project))
    assert p.returncode == 1 and "shadowed" in p.stderr


def _wait_gone(pid):
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _wait_server(args, env, project, py=PY):
    for _ in range(300):
        info = server_info(args, env, str(project), py)
        if info and _alive(info["pid"]):
            return info["pid"]
        time.sleep(0.05)
    raise AssertionError("no new server")


def _alive(pid):
    return os.path.exists(f"/proc/{pid}") and not _zombie(pid)


def test_environment_change_means_another_server(env, project):
    args = ["uses_helper.py"]
    server = warm(args, env, str(project))
    p = launch(args, dict(env, PYTHONHASHSEED="7"), str(project))
    assert p.stdout.split()[1] != str(server)
    a = explain(args, env, str(project))["server"]
    b = explain(args, dict(env, LC_ALL="C"), str(project))["server"]
    c = explain(args, dict(env, UNRELATED="1"), str(project))["server"]
    assert a != b and a == c


def test_preload_that_starts_threads_is_refused(env, project):
    (project / "threaded.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")
    prog = project / "uses_threads.py"
    prog.write_text("import threaded\nprint('ok')\n")
    p = launch([str(prog)], env, str(project))
    assert p.stdout.strip() == "ok"
    base = explain([str(prog)], env, str(project))["server"]
    for _ in range(200):
        if os.path.exists(base + ".refused"):
            break
        time.sleep(0.05)
    assert "started threads" in open(base + ".refused").read()
    p = launch([str(prog)], env, str(project))
    assert p.returncode == 0 and p.stdout.strip() == "ok"
    status = subprocess.run([PY, "-m", "warmstart", "server", "status"],
                            env=env, capture_output=True, text=True)
    assert "started threads" in status.stdout


def test_atexit_threads_and_buffered_output(env, project):
    prog = project / "ending.py"
    prog.write_text(
        "import atexit, threading, time, sys\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "def late():\n    time.sleep(0.2); print('thread done')\n"
        "threading.Thread(target=late).start()\n"
        "sys.stdout.write('no newline')\n")
    warm([str(prog)], env, str(project))
    a = direct([str(prog)], env, str(project))
    b = launch([str(prog)], env, str(project))
    assert b.stdout == a.stdout == "no newlinethread done\natexit ran\n"


def test_stdin_and_redirections(env, project, tmp_path):
    prog = project / "cat.py"
    prog.write_text("import sys\nname = input('name? ')\n"
                    "print('hello', name); print('err', file=sys.stderr)\n")
    (tmp_path / "in.txt").write_text("world\n")
    launch([str(prog)], env, str(project), input="x\n")
    _wait_server([str(prog)], env, project)
    outs = []
    for cmd in ([PY, str(prog)], [CLIENT, "--", PY, str(prog)]):
        with open(tmp_path / "in.txt") as i, open(tmp_path / "out.txt", "w") as o:
            p = subprocess.run(cmd, stdin=i, stdout=o, stderr=subprocess.STDOUT,
                               env=env, timeout=30)
        assert p.returncode == 0
        outs.append((tmp_path / "out.txt").read_text())
    # Same text, and in the same order (block-buffered stdout to a file
    # unless PYTHONUNBUFFERED, line-buffered stderr), as a direct run.
    assert outs[1] == outs[0]
    assert sorted(outs[0].replace("name? ", "").splitlines()) == [
        "err", "hello world"]


# A minimal job-control shell for the pty tests: runs the command as the
# terminal's foreground process group (so Ctrl-C and Ctrl-Z reach it as in
# a shell), reports a stop, resumes the job like `fg`, exits with its code.
MINI_SHELL = r"""
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, os.getpid())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execv(sys.argv[1], sys.argv[1:])
try:
    os.setpgid(pid, pid)        # as a shell does; the child may be first
except OSError:
    pass
while True:
    _, status = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        os.write(1, b"[stopped]\r\n")
        os.kill(-pid, signal.SIGCONT)
        continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)
"""


def _pty_run(args, env, cwd, script, timeout=20):
    """Run the client as the foreground job of a shell on a new
    pseudo-terminal; script(master_fd, pid) drives it and returns."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            os.execve(PY, [PY, "-c", MINI_SHELL, CLIENT, "--", PY, *args],
                      env)
        finally:
            os._exit(127)
    try:
        return script(fd, pid)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)


def _read_until(fd, text, timeout=10):
    import select
    buf = b""
    end = time.monotonic() + timeout
    while text.encode() not in buf:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {text!r} in {buf!r}")
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    assert text.encode() in buf, buf
    return buf


def test_terminal_ctrl_c_ctrl_z_winsize_getpass(env, project):
    import fcntl
    import termios
    prog = project / "tty.py"
    prog.write_text(
        "import getpass, os, sys, time\n"
        "print('tty', sys.stdin.isatty(), sys.stdout.isatty(),"
        " sys.stdout.line_buffering, os.get_terminal_size().columns)\n"
        "if sys.argv[1:] == ['quick']: sys.exit(0)\n"
        "pw = getpass.getpass('pw: ')\n"
        "print('pw', pw[::-1])\n"
        "try:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
        "    print('ctrl-c'); sys.exit(3)\n")
    launch([str(prog), "quick"], env, str(project))
    server = _wait_server([str(prog), "quick"], env, project)

    def drive(fd, pid):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("4H", 30, 91, 0, 0))
        out = _read_until(fd, "pw: ")
        # Line-buffered on a terminal, unless unbuffered (-u, PYTHONUNBUFFERED).
        line = not env.get("PYTHONUNBUFFERED")
        assert f"tty True True {line} 91".encode() in out
        os.write(fd, b"secret\n")
        out = _read_until(fd, "pw terces")
        assert b"secret" not in out         # no echo
        os.write(fd, b"\x1a")               # Ctrl-Z stops the job,
        _read_until(fd, "[stopped]")        # the shell resumes it
        time.sleep(0.2)
        os.write(fd, b"\x03")               # Ctrl-C
        _read_until(fd, "ctrl-c")
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    assert _pty_run([str(prog)], env, str(project), drive) == 3
    assert _alive(server)


def test_many_clients_no_leaks(env, project):
    args = ["uses_helper.py"]
    server = warm(args, env, str(project))
    fds_before = len(os.listdir(f"/proc/{server}/fd"))
    procs = [subprocess.Popen([CLIENT, "--", PY, *args], cwd=str(project),
                              env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert outs == [["1", str(server)]] * 8
    for _ in range(500):
        p = subprocess.run([CLIENT, "--", PY, *args], cwd=str(project),
                           env=env, stdout=subprocess.PIPE, timeout=30)
        assert p.returncode == 0
    time.sleep(0.3)
    base = explain(args, env, str(project))["server"]
    assert _alive(server), open(base + ".log").read()
    assert len(os.listdir(f"/proc/{server}/fd")) == fds_before
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server)],
                              capture_output=True, text=True).stdout.split()
    assert len(children) <= 1       # the spare, waiting for the next launch


def test_fallbacks(env, project, tmp_path):
    args = ["probe.py"]
    base = explain(args, env, str(project))["server"]
    os.makedirs(os.path.dirname(base), exist_ok=True)
    # A socket file nobody listens on; then a server dir others can write.
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(base + ".sock")
    s.close()
    a = direct(args, env, str(project))
    b = launch(args, dict(env, WARMSTART_SERVER_DIR=os.path.dirname(base)),
               str(project))
    assert json.loads(a.stdout) == json.loads(b.stdout)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    e = dict(env, WARMSTART_SERVER_DIR=str(shared))
    assert subprocess.run([CLIENT, "--explain", "--", PY, *args], env=e,
                          cwd=str(project), capture_output=True,
                          text=True).stdout.startswith(
                              "direct: no private server directory")
    b = launch(args, e, str(project))
    assert b.returncode == 0 and json.loads(b.stdout) == json.loads(a.stdout)
    # Not a Python command line we serve: run as is.
    p = launch(["-S", "-c", "import sys; print(sys.flags.no_site)"], env,
               str(project))
    assert p.stdout.strip() == "1"


def test_stop_status_restart_and_idle_timeout(env, project):
    args = ["uses_helper.py"]
    server = warm(args, env, str(project))
    st = subprocess.run([PY, "-m", "warmstart", "server", "status"], env=env,
                        capture_output=True, text=True)
    assert "running" in st.stdout and str(server) in st.stdout
    subprocess.run([PY, "-m", "warmstart", "server", "restart"], env=env,
                   check=True, capture_output=True)
    assert _wait_gone(server)
    new = _wait_server(args, env, project)
    assert launch(args, env, str(project)).stdout.split() == ["1", str(new)]
    subprocess.run([PY, "-m", "warmstart", "server", "stop"], env=env,
                   check=True, capture_output=True)
    assert _wait_gone(new)
    e = dict(env, WARMSTART_SERVER_IDLE="0.5")
    launch(args, e, str(project))
    idle = _wait_server(args, e, project)
    for _ in range(100):
        if not _alive(idle):
            break
        time.sleep(0.1)
    assert not _alive(idle)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_other_users_are_refused(env, project):
    args = ["uses_helper.py"]
    warm(args, env, str(project))
    base = explain(args, env, str(project))["server"]
    os.chmod(os.path.dirname(base), 0o711)
    os.chmod(base + ".sock", 0o777)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import socket
            # Enter the directory first: pytest's parents are private.
            os.chdir(os.path.dirname(base))
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.connect(os.path.basename(base) + ".sock")
            s.sendall(b"STOP" + struct.pack("=I", 0))
            os.write(w, b"closed" if s.recv(8) == b"" else b"answered")
        except (ConnectionResetError, BrokenPipeError):
            os.write(w, b"closed")
        except BaseException as e:
            os.write(w, repr(e).encode())
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 16) == b"closed"
    os.waitpid(pid, 0)
    assert "refused a client of uid 65534" in open(base + ".log").read()
    assert launch(args, env, str(project)).returncode == 0


def test_environment_changes_made_by_imports_are_kept(env, project):
    # awscli sets AWS_DATA_PATH when imported; a served launch must see
    # its client's environment with the same change.
    (project / "setsenv.py").write_text(
        "import os\nos.environ['WS_SET_BY_IMPORT'] = 'yes'\n"
        "os.environ.pop('WS_REMOVED_BY_IMPORT', None)\n")
    prog = project / "envprog.py"
    prog.write_text("import os, setsenv\n"
                    "print(os.environ.get('WS_SET_BY_IMPORT'),"
                    " os.environ.get('WS_REMOVED_BY_IMPORT'),"
                    " os.environ.get('WS_TEST_VAR'), os.getppid())\n")
    e = dict(env, WS_REMOVED_BY_IMPORT="1")
    server = warm([str(prog)], e, str(project))
    p = launch([str(prog)], dict(e, WS_TEST_VAR="mine"), str(project))
    assert p.stdout.split() == ["yes", "None", "mine", str(server)]


def test_circular_imports_and_aliases_are_preloaded_in_context(env, project):
    # Importing circ_b first would fail (circular); the program imports
    # circ_a, which imports circ_b.
    # And a package registered under an alias must stay the aliased one.
    (project / "circ_a.py").write_text("import circ_b\nX = circ_b.Y\n")
    (project / "circ_b.py").write_text("import circ_a\nY = 1\n")
    (project / "vendored").mkdir()
    (project / "vendored" / "__init__.py").write_text(
        "import sys\nfrom vendored import inner\nsys.modules['inner'] = inner\n")
    (project / "vendored" / "inner.py").write_text("WHO = 'vendored'\n")
    (project / "inner.py").write_text("WHO = 'top-level'\n")
    prog = project / "circ.py"
    prog.write_text("import os, circ_a, vendored, inner\n"
                    "print(circ_a.X, inner.WHO, os.getppid())\n")
    server = warm([str(prog)], env, str(project))
    p = launch([str(prog)], env, str(project))
    assert p.stdout.split() == ["1", "vendored", str(server)]
    log = open(explain([str(prog)], env, str(project))["server"] + ".log").read()
    assert "not preloaded" not in log


INTERACTIVE = r"""
import os, sys
what = sys.argv[1]
if what == "pdb":
    x = 41
    import pdb; pdb.set_trace()
    print("after", x)
elif what == "pager":
    import pydoc
    pydoc.pager("\n".join("line %d" % i for i in range(200)))
    print("pager done")
elif what == "curses":
    import curses
    def main(scr):
        scr.addstr(0, 0, "curses ok")
        scr.refresh()
        return scr.getkey()
    print("key", curses.wrapper(main))
print("parent", os.getppid())
"""


def _read_for(fd, seconds):
    import select
    buf, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _warm_on_a_terminal(args, env, project):
    """Launch once on a pseudo-terminal (which of fds 0-2 are terminals
    is part of the key); the pid of the server that starts."""
    def drain(fd, pid):
        _read_for(fd, 3)
        os.waitpid(pid, 0)
    _pty_run(args, env, str(project), drain)
    d = env["WARMSTART_SERVER_DIR"]
    for _ in range(300):
        for n in os.listdir(d):
            if n.endswith(".json"):
                try:
                    with open(os.path.join(d, n)) as f:
                        info = json.load(f)
                except (OSError, ValueError):
                    continue
                if info["argv"][1:2] == args[:1] and _alive(info["pid"]):
                    return info["pid"]
        time.sleep(0.05)
    raise AssertionError("no server for the terminal")


def _plain_text(out):
    """Terminal output without escape sequences and carriage returns:
    3.15's pdb draws its prompt and echo through pyrepl, in colour."""
    return re.sub(rb"\x1b(\[[0-9;?]*[A-Za-z@]|[=>])", b"", out).replace(b"\r", b"")


def test_pdb_pager_and_curses_on_a_terminal(env, project):
    prog = project / "inter.py"
    prog.write_text(INTERACTIVE)
    env = dict(env, TERM="xterm")
    server = _warm_on_a_terminal([str(prog), "quick"], env, project)
    for what, keys, expect in [
            ("pdb", [b"p x\n", b"c\n"], [b"(Pdb) p x\n41", b"after 41"]),
            ("pager", [b" ", b"q"], [b"line 30", b"pager done"]),
            ("curses", [b"z"], [b"curses ok", b"key z"])]:
        def drive(fd, pid):
            out = _read_for(fd, 1.5)
            for k in keys:
                os.write(fd, k)
                out += _read_for(fd, 0.8)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status), out
        rc, out = _pty_run([str(prog), what], env, str(project), drive)
        assert rc == 0, (what, out)
        out = _plain_text(out)
        for e in expect:
            assert e in out, (what, out)
        assert f"parent {server}".encode() in out, (what, out)


def test_clients_starting_the_server_at_once(env, project):
    # Eight first launches together: all run, one server starts.
    args = ["uses_helper.py"]
    procs = [subprocess.Popen([CLIENT, "--", PY, *args], cwd=str(project),
                              env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    assert [p.communicate(timeout=60)[0].split()[0] for p in procs] == ["1"] * 8
    server = _wait_server(args, env, project)
    time.sleep(1.0)
    procs = {int(pid) for pid in os.listdir("/proc") if pid.isdigit()
             and _cmdline_has(pid, env["WARMSTART_SERVER_DIR"])
             and _cmdline_has(pid, "warmstart.server")}
    # Servers, not their forked children (which share their command line).
    servers = [pid for pid in procs if _ppid(pid) not in procs]
    assert servers == [server]
    assert launch(args, env, str(project)).stdout.split() == ["1", str(server)]


def _cmdline_has(pid, text):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_status_reports_private_memory(env, project):
    args = ["uses_helper.py"]
    server = warm(args, env, str(project))
    launch(args, env, str(project))         # a spare child exists after it
    time.sleep(0.3)
    st = subprocess.run([PY, "-m", "warmstart", "server", "status"], env=env,
                        capture_output=True, text=True).stdout
    m = re.search(r"private memory: server ([\d.]+) MiB, each child "
                  r"([\d.]+)-([\d.]+) MiB", st)
    assert m, st
    # After fork the server's pages are shared with its children: a
    # child's own memory is what it has written since.
    assert 0 < float(m.group(3)) < 50


def test_server_with_an_image_preloads_what_the_image_serves(env, project, tmp_path):
    img = str(tmp_path / "app.img")
    subprocess.run([PY, "-m", "warmstart", "build", "-o", img, "--", PY,
                    "uses_helper.py"], cwd=str(project), env=env, check=True,
                   capture_output=True)
    e = dict(env, WARMSTART_IMAGE=img)
    prog = ["-c", "import helper; print(helper.VALUE)"]
    warm(prog, e, str(project))
    base = explain(prog, e, str(project))["server"]
    with open(base + ".preload", "rb") as f:
        import marshal
        assert "helper" in marshal.load(f)["modules"]


def test_numpy_global_generator_is_reseeded(env, project):
    # NumPy does not reseed its global generator at fork (random does).
    pytest.importorskip("numpy")
    prog = project / "np.py"
    prog.write_text("import numpy, os\nprint(numpy.random.random(), os.getppid())\n")
    server = warm([str(prog)], env, str(project))
    outs = [launch([str(prog)], env, str(project)).stdout.split()
            for _ in range(3)]
    assert all(o[1] == str(server) for o in outs)
    assert len({o[0] for o in outs}) == 3


def test_threads_that_survive_fork_are_refused(env, project):
    # An OS thread that threading does not know about and that no
    # pthread_atfork handler stops: refused, like Python threads.
    (project / "rawthread.py").write_text(
        "import _thread, time\n_thread.start_new_thread(time.sleep, (3600,))\n")
    prog = project / "uses_raw.py"
    prog.write_text("import rawthread\nprint('ok')\n")
    assert launch([str(prog)], env, str(project)).stdout.strip() == "ok"
    base = explain([str(prog)], env, str(project))["server"]
    for _ in range(200):
        if os.path.exists(base + ".refused"):
            break
        time.sleep(0.05)
    assert "do not stop at fork" in open(base + ".refused").read()
    assert launch([str(prog)], env, str(project)).stdout.strip() == "ok"


def test_shim_and_exec_commands(env, project, tmp_path):
    shim = tmp_path / "bin" / "mytool"
    shim.parent.mkdir()
    # The shim names the interpreter by its absolute, normalised path (the
    # test may run as ../.venv/bin/python): that is the command's key.
    py = os.path.abspath(PY)
    p = subprocess.run([PY, "-m", "warmstart", "shim", "-o", str(shim), "--",
                        PY, str(project / "uses_helper.py")], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert os.access(shim, os.X_OK)
    first = subprocess.run([str(shim), "x"], env=env, capture_output=True,
                           text=True, cwd=str(tmp_path))
    assert first.stdout.split()[0] == "1"
    server = _wait_server([str(project / "uses_helper.py")], env, project, py)
    again = subprocess.run([str(shim), "x"], env=env, capture_output=True,
                           text=True, cwd=str(tmp_path))
    assert again.stdout.split() == ["1", str(server)]
    viaexec = subprocess.run([PY, "-m", "warmstart", "exec", "--", py,
                              str(project / "uses_helper.py")], env=env,
                             capture_output=True, text=True)
    assert viaexec.stdout.split() == ["1", str(server)]


SUITES = ["test_json", "test_enum", "test_random", "test_tempfile",
          "test_uuid", "test_atexit", "test_getpass", "test_signal"]


def test_cpython_suites_through_the_server(env, tmp_path):
    # CPython's own tests, run by regrtest in forked workers of one server
    # (the first run, of test_json, records and starts it).
    work = tmp_path / "work"
    work.mkdir()
    args = ["-m", "test", "-q"]
    server = warm(args + ["test_json"], env, str(work))
    for suite in SUITES:
        p = launch(args + [suite], env, str(work), timeout=300)
        assert p.returncode == 0 and "SUCCESS" in p.stdout, (suite, p.stdout[-2000:])
    log = open(explain(args + ["x"], env, str(work))["server"] + ".log").read()
    assert "retiring" not in log, log
    assert _alive(server)


CONSOLE_SCRIPT = """\
import os, sys, helper
print(sys.argv, sys.orig_argv[1:], helper.VALUE, file=sys.stderr)
print(os.getppid())
"""


@pytest.mark.parametrize("form", ["path", "name on PATH", "env"])
def test_console_scripts_are_served(env, project, tmp_path, form):
    """A program run by its path or by a name on PATH whose #! names
    Python (a console script such as /venv/bin/black) is served as the
    command the kernel makes of it; argv is a direct run's."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "ws-tool"
    shebang = "#!/usr/bin/env " + os.path.basename(PY) if form == "env" \
        else "#!" + PY
    tool.write_text(shebang + "\n" + CONSOLE_SCRIPT)
    tool.chmod(0o755)
    env = dict(env, PATH=os.path.dirname(PY) + ":" + str(bindir) + ":"
               + env["PATH"], PYTHONPATH=str(project))
    prog = "ws-tool" if form == "name on PATH" else str(tool)
    def run_client(*args):
        return subprocess.run([CLIENT, "--", prog, *args], env=env,
                              cwd=str(project), capture_output=True,
                              text=True, timeout=60)
    got = explain_cmd = subprocess.run(
        [CLIENT, "--explain", "--", prog, "x"], env=env, cwd=str(project),
        capture_output=True, text=True).stdout
    assert not got.startswith("direct"), got
    interp = os.path.basename(PY) if form == "env" else PY
    cmd = command.Command([prog.encode(), b"x"],
                          {k.encode(): v.encode() for k, v in env.items()},
                          str(project).encode())
    assert cmd.argv[:2] == [interp.encode(), str(tool).encode()]
    material = cmd.key_material({k.encode(): v.encode() for k, v in env.items()},
                                (os.isatty(0), False, False))
    assert explain_cmd.rsplit("server: ", 1)[0].replace("\n", "\0").encode() \
        == material
    run_client("0")
    base = explain_cmd.rsplit("server: ", 1)[1].strip()
    for _ in range(300):
        if os.path.exists(base + ".sock"):
            break
        time.sleep(0.05)
    server = json.load(open(base + ".json"))["pid"]
    r = run_client("a", "--version")
    d = subprocess.run([prog, "a", "--version"], env=env, cwd=str(project),
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == str(server)
    assert (r.returncode, r.stderr) == (d.returncode, d.stderr)
    assert "'--version'" in r.stderr


def test_scripts_of_other_interpreters_run_directly(env, tmp_path):
    sh = tmp_path / "hello"
    sh.write_text("#!/bin/sh\necho hello \"$@\"\n")
    sh.chmod(0o755)
    out = subprocess.run([CLIENT, "--explain", "--", str(sh)], env=env,
                         capture_output=True, text=True).stdout
    assert out == "direct: a #! script of another interpreter\n"
    r = subprocess.run([CLIENT, "--", str(sh), "x"], env=env,
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "hello x\n")


def test_interpreter_named_python_that_is_a_script_is_still_served(env, tmp_path):
    """A pyenv shim: `python` on PATH is a #!/bin/sh script that execs
    the real interpreter.  It is the interpreter, not a console script:
    served as before, not run directly as "another interpreter"."""
    bindir = tmp_path / "shims"
    bindir.mkdir()
    shim = bindir / "python"
    shim.write_text(f'#!/bin/sh\nexec {PY} "$@"\n')
    shim.chmod(0o755)
    e = dict(env, PATH=str(bindir) + ":" + env["PATH"])
    out = subprocess.run([CLIENT, "--explain", "--", "python", "-c", "pass"],
                         env=e, capture_output=True, text=True).stdout
    assert not out.startswith("direct"), out
    assert f"exe={shim}\n" in out
