"""Issue 12: another local user must never act as you through warmstart.

Each test is an attack as a hostile local user would try it: where the
test runs as root it creates an unprivileged attacker, else it skips.
Each passes when the attack fails and the program still gives what a
direct run gives; where a positive control is possible, the same
attack with the check out of the way is shown to work, so that the test
can fail."""
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

import warmstart
from test_server import CLIENT, PY, _kill_servers, direct, launch, warm

ATTACKER = "wsattacker"

PROBE = """\
import os, sys
print("ran", sys.argv[1:], os.getppid() == int(os.environ.get("WS_PARENT", "-1")))
"""


@pytest.fixture(scope="module")
def attacker():
    """(uid, gid) of an unprivileged user made for these tests."""
    if os.getuid() != 0:
        pytest.skip("needs root to create the attacking user")
    if shutil.which("useradd") is None:
        pytest.skip("useradd not installed")
    try:
        pwd.getpwnam(ATTACKER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-r", "-s", "/bin/false", ATTACKER],
                       check=True, capture_output=True)
    pw = pwd.getpwnam(ATTACKER)
    yield pw.pw_uid, pw.pw_gid


def as_attacker(attacker, args, **kw):
    uid, gid = attacker
    return subprocess.run(args, user=uid, group=gid, extra_groups=[],
                          capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def shared(tmp_path):
    """A directory everyone can reach (pytest's tmp_path is 0700)."""
    d = tmp_path / "shared"
    d.mkdir()
    for p in (tmp_path, tmp_path.parent, tmp_path.parent.parent):
        os.chmod(p, os.stat(p).st_mode | 0o711)
    d.chmod(0o755)
    return d


@pytest.fixture
def prog(shared):
    p = shared / "prog.py"
    p.write_text(PROBE)
    p.chmod(0o644)
    return p


def base_env():
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("WARMSTART") or k == "XDG_RUNTIME_DIR":
            del e[k]
    return e


def same_as_direct(served, env, args, cwd):
    d = direct(args, env, cwd)
    assert (served.returncode, served.stdout) == (d.returncode, d.stdout)


def fallback_dir():
    return f"/tmp/warmstart-{os.getuid()}"


# -- 1. the server directory ------------------------------------------------

def test_runtime_dir_inside_another_users_directory(attacker, shared, prog):
    """`su` without `-` keeps the caller's XDG_RUNTIME_DIR: root's server
    directory would sit in a directory the attacker owns, who can swap
    it at any moment.  It is not used: nothing of root's is written
    there, and what the attacker puts there (a record whose module list
    the server would import) never runs."""
    home = shared / "attacker-run"
    home.mkdir()
    os.chown(home, *attacker)
    # Root's directory, as an earlier warmstart made it, then swapped by
    # the attacker for one of his own with a planted record.
    (home / "warmstart").mkdir(mode=0o700)
    as_attacker(attacker, ["mv", str(home / "warmstart"), str(home / "old")],
                check=True)
    as_attacker(attacker, ["mkdir", "-m", "0777", str(home / "warmstart")],
                check=True)
    marker = shared / "pwned"
    (shared / "pwnmod.py").write_text(f"open({str(marker)!r}, 'w')\n")
    env = base_env()
    env["XDG_RUNTIME_DIR"] = str(home)
    env["PYTHONPATH"] = str(shared)
    try:
        for _ in range(2):
            r = launch([str(prog), "x"], env, str(shared))
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith("ran ['x']")
            assert r.stderr == ""       # a silent fall-back to /tmp
            time.sleep(1)
        planted = sorted(os.listdir(home / "warmstart"))
        assert planted == [], planted      # no environment, no log of root's
        assert not marker.exists()
        # The fall-back directory is private, and it served the launch.
        st = os.lstat(fallback_dir())
        assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
        info = _server_info(fallback_dir(), str(prog))
        assert info is not None
        env["WS_PARENT"] = str(info["pid"])
        r = launch([str(prog), "x"], env, str(shared))
        assert r.stdout.strip() == "ran ['x'] True", r.stdout
    finally:
        _kill_servers(fallback_dir())


def _server_info(d, script):
    for n in os.listdir(d):
        if n.endswith(".json"):
            with open(os.path.join(d, n)) as f:
                info = json.load(f)
            if script in info["argv"]:
                return info
    return None


def test_server_dir_under_a_writable_parent(attacker, shared, prog):
    """A WARMSTART_SERVER_DIR whose parent others can write (so that they
    can rename it away and put their own in its place) is refused with
    one line, and the command runs directly."""
    parent = shared / "open"
    parent.mkdir()
    parent.chmod(0o777)
    env = base_env()
    env["WARMSTART_SERVER_DIR"] = str(parent / "servers")
    r = launch([str(prog), "y"], env, str(shared))
    same_as_direct(r, env, [str(prog), "y"], str(shared))
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "writable by other users" in lines[0], lines
    assert "running directly" in lines[0]
    time.sleep(1)
    assert not (parent / "servers").exists() or \
        os.listdir(parent / "servers") == []


def test_server_dir_of_mode_0755_refused(shared, prog):
    d = shared / "servers"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    env = base_env()
    env["WARMSTART_SERVER_DIR"] = str(d)
    r = launch([str(prog), "z"], env, str(shared))
    same_as_direct(r, env, [str(prog), "z"], str(shared))
    assert "must be 0700" in r.stderr
    time.sleep(1)
    assert os.listdir(d) == []


def test_symlinks_in_the_server_dir_are_not_followed(shared, prog, tmp_path):
    """A <key>.log symlink (to a file only root may write) is replaced,
    not written through; a <key>.preload symlink is not read."""
    env = base_env()
    d = tmp_path / "servers"
    env["WARMSTART_SERVER_DIR"] = str(d)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    out = subprocess.run([CLIENT, "--explain", "--", PY, str(prog)], env=env,
                         cwd=str(shared), capture_output=True, text=True,
                         check=True).stdout
    base = out.splitlines()[-1].split(": ", 1)[1]
    os.symlink(victim, base + ".log")
    try:
        warm([str(prog)], env, str(shared))
        assert victim.read_text() == "precious\n"
        assert not os.path.islink(base + ".log")
        for suffix in (".log", ".preload", ".json", ".sock"):
            st = os.lstat(base + suffix)
            assert stat.S_IMODE(st.st_mode) == 0o600, suffix
        # A record replaced by a symlink to another record is not read.
        _kill_servers(str(d))
        os.rename(base + ".preload", str(tmp_path / "saved"))
        os.symlink(tmp_path / "saved", base + ".preload")
        os.unlink(base + ".sock")
        p = subprocess.run([PY, "-c", "import warmstart.server as s; s.main()",
                            base], capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and "refusing" in p.stderr, p.stderr
    finally:
        _kill_servers(str(d))


# -- 2. who answers on the socket -------------------------------------------

class FakeServer:
    """A listener that records what reaches it and answers RUN with
    `reply` (PID 1 by default)."""

    def __init__(self, path, reply=b"PID \x04\x00\x00\x00\x01\x00\x00\x00"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.reply = reply
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(20)
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(5)
            self.received = conn.recv(1 << 16)
            conn.sendall(self.reply)
            time.sleep(0.5)
            conn.close()
        except OSError:
            pass


def test_client_refuses_a_server_of_another_user(attacker, shared, prog,
                                                 tmp_path):
    """A socket another user listens on (as one in a directory that was
    his) gets none of our fds, environment or launches."""
    env = base_env()
    d = tmp_path / "servers"
    env["WARMSTART_SERVER_DIR"] = str(d)
    env["WS_SECRET"] = "token-123"
    out = subprocess.run([CLIENT, "--explain", "--", PY, str(prog)], env=env,
                         cwd=str(shared), capture_output=True, text=True,
                         check=True).stdout
    base = out.splitlines()[-1].split(": ", 1)[1]
    own = shared / "att"
    own.mkdir()
    os.chown(own, *attacker)
    sock = own / "fake.sock"
    # The attacker's own interpreter: ours may be in a directory he
    # cannot enter (pyenv under /root).
    their_python = "/usr/bin/python3"
    if not os.path.exists(their_python):
        pytest.skip("no interpreter the attacking user can run")
    fake = subprocess.Popen(
        [their_python, "-c", f"""
import socket, time
s = socket.socket(socket.AF_UNIX); s.bind({str(sock)!r}); s.listen(4)
print("ready", flush=True)
s.settimeout(20)
try:
    c, _ = s.accept(); c.settimeout(3)
    got = c.recv(65536)
    print("GOT", len(got), b"token-123" in got, flush=True)
except OSError as e:
    print("nothing", e, flush=True)
"""], user=attacker[0], group=attacker[1], extra_groups=[],
        stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout.readline().strip() == "ready"
        os.rename(sock, base + ".sock")      # planted where root looks
        r = launch([str(prog), "a"], env, str(shared))
        same_as_direct(r, env, [str(prog), "a"], str(shared))
        assert "not this user's" in r.stderr
        got = fake.communicate(timeout=30)[0]
        assert "token-123" not in got and "True" not in got, got
        assert got.startswith("GOT 0") or got.startswith("nothing"), got
    finally:
        fake.kill()
        _kill_servers(str(d))


def test_client_ignores_a_pid_that_is_not_the_servers_child(shared, prog,
                                                           tmp_path):
    """A peer that answers RUN with pid 1 (to which a relayed Ctrl-C would
    go as kill(-1)) is not a warm server: the client runs directly."""
    env = base_env()
    d = tmp_path / "servers"
    env["WARMSTART_SERVER_DIR"] = str(d)
    out = subprocess.run([CLIENT, "--explain", "--", PY, str(prog)], env=env,
                         cwd=str(shared), capture_output=True, text=True,
                         check=True).stdout
    base = out.splitlines()[-1].split(": ", 1)[1]
    fake = FakeServer(base + ".sock")
    r = launch([str(prog), "b"], env, str(shared))
    fake.thread.join(30)
    assert fake.received.startswith(b"RUN ")       # our own uid: it may ask
    assert "not its child; running directly" in r.stderr
    same_as_direct(r, env, [str(prog), "b"], str(shared))
    _kill_servers(str(d))


# -- 3. planted images ------------------------------------------------------

REAL, EVIL = 'print("real!")\n', 'print("PWNED")\n'


def _write_evil(shared):
    (shared / "mod.py").write_text(EVIL)


def _restore_real(shared):
    """mod.py prints real! again, with the size and mtime it had while
    it printed PWNED: an image made meanwhile is not stale by mtime."""
    src = shared / "mod.py"
    st = os.stat(src)
    src.write_text(REAL)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))


def _planted_image(shared, out, env):
    """An image whose code for module `mod` prints PWNED, while mod.py
    (same size, same mtime) prints real!."""
    _write_evil(shared)
    subprocess.run([PY, "-m", "warmstart", "build", "-o", str(out),
                    "--modules", "mod"], env=env, cwd=str(shared),
                   check=True, capture_output=True)
    _restore_real(shared)
    return out


def test_image_writable_by_another_user_is_refused(attacker, shared):
    env = base_env()
    env["PYTHONPATH"] = str(shared)
    img = _planted_image(shared, shared / "app.img", env)
    env["WARMSTART_IMAGE"] = str(img)
    # Control: an image of our own is used (the planted code runs), so
    # what follows is the ownership check at work, not a stale source.
    ours = subprocess.run([PY, "-c", "import mod"], env=env, cwd=str(shared),
                          capture_output=True, text=True)
    assert ours.stdout == "PWNED\n", ours
    os.chown(img, *attacker)
    p = subprocess.run([PY, "-c", "import mod"], env=env, cwd=str(shared),
                       capture_output=True, text=True)
    assert p.stdout == "real!\n"
    assert p.returncode == 0
    assert p.stderr.count("\n") == 1 and "owned by uid" in p.stderr, p.stderr
    os.chown(img, 0, 0)
    img.chmod(0o666)
    p = subprocess.run([PY, "-c", "import mod"], env=env, cwd=str(shared),
                       capture_output=True, text=True)
    assert p.stdout == "real!\n" and "writable by other users" in p.stderr


def test_auto_ignores_a_planted_cache_image(attacker, shared, tmp_path):
    """WARMSTART=auto with the cache in another user's directory, or an
    image of another user's in our cache: the planted code never runs."""
    (shared / "main.py").write_text("import mod\n")
    env = base_env()
    env["WARMSTART"] = "auto"
    cache = tmp_path / "cache"
    env["WARMSTART_CACHE"] = str(cache)
    args = [PY, str(shared / "main.py")]
    _write_evil(shared)
    first = subprocess.run(args, env=env, cwd=str(shared), capture_output=True,
                           text=True)
    assert first.stdout == "PWNED\n"
    _wait_for_writers(cache)
    _restore_real(shared)
    target = cache / next(n for n in os.listdir(cache) if n.endswith(".img"))
    evil = tmp_path / "evil.img"
    shutil.copy(target, evil)
    ours = subprocess.run(args, env=env, cwd=str(shared), capture_output=True,
                          text=True)
    assert ours.stdout == "PWNED\n", ours       # the control
    _wait_for_writers(cache)
    # Planted: the attacker's copy, his file (a writer may have replaced
    # the image meanwhile).
    target.unlink()
    shutil.copy(evil, target)
    os.chown(target, *attacker)
    p = subprocess.run(args, env=env, cwd=str(shared), capture_output=True,
                       text=True)
    assert p.stdout == "real!\n", p
    assert "ignoring" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    # The whole cache in a directory the attacker can change.
    open_dir = shared / "opencache"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    env["WARMSTART_CACHE"] = str(open_dir / "c")
    p = subprocess.run(args, env=env, cwd=str(shared), capture_output=True,
                       text=True)
    assert p.stdout == "real!\n"
    assert "not using the cache directory" in p.stderr
    time.sleep(1)
    assert not (open_dir / "c").exists()


def _wait_for_writers(cache):
    """Until no auto-mode image writer for cache is running."""
    for _ in range(600):
        busy = False
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            busy |= b"warmstart.auto" in cmd and str(cache).encode() in cmd
        if not busy:
            return
        time.sleep(0.05)
    raise AssertionError("image writer still running")


# -- 4. confinement ---------------------------------------------------------

CONFINED = """\
import ctypes, os, sys
st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
ioprio = ctypes.CDLL(None).syscall(252, 1, 0)       # ioprio_get(self)
print(os.readlink("/proc/self/ns/net"), st["NoNewPrivs"].strip(),
      st["CapEff"].strip(), repr(st["Groups"].strip()), os.nice(0),
      sorted(os.sched_getaffinity(0)), ioprio)
print(os.getppid() == int(os.environ.get("WS_PARENT", "-1")))
"""


@pytest.fixture
def confined_env(tmp_path, shared):
    (shared / "confined.py").write_text(CONFINED)
    env = base_env()
    env["WARMSTART_SERVER_DIR"] = str(tmp_path / "servers")
    args = [str(shared / "confined.py")]
    pid = warm(args, env, str(shared))
    env["WS_PARENT"] = str(pid)
    yield env, args
    _kill_servers(env["WARMSTART_SERVER_DIR"])


def _run_both(wrapper, env, args, cwd):
    served = subprocess.run([*wrapper, CLIENT, "--", PY, *args], env=env,
                            cwd=cwd, capture_output=True, text=True, timeout=60)
    plain = subprocess.run([*wrapper, PY, *args], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=60)
    return served, plain


@pytest.mark.parametrize("wrapper", [
    ["unshare", "-n"],
    ["setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"],
    ["setpriv", "--groups=4242"],
], ids=["netns", "no-new-privs", "groups"])
def test_confined_caller_is_not_served(wrapper, confined_env, shared):
    if shutil.which(wrapper[0]) is None:
        pytest.skip(f"{wrapper[0]} not installed")
    if os.getuid() != 0:
        pytest.skip("needs root to confine a caller")
    env, args = confined_env
    # The server itself still serves an unconfined caller.
    r = launch(args, env, str(shared))
    assert r.stdout.splitlines()[1] == "True", r
    served, plain = _run_both(wrapper, env, args, str(shared))
    first = plain.stdout.splitlines()[0]
    if wrapper[0] == "unshare":
        # Every `unshare -n` makes another namespace: compare its kind.
        assert served.stdout.split()[0] != r.stdout.split()[0]
        assert served.stdout.split()[1:] == plain.stdout.split()[1:]
    else:
        assert served.stdout.splitlines()[0] == first
    assert served.stdout.splitlines()[1] == "False"     # run directly
    assert served.returncode == plain.returncode == 0


def test_what_a_caller_may_lower_is_applied(confined_env, shared):
    """nice, CPU affinity and I/O class are the caller's, and served."""
    env, args = confined_env
    if shutil.which("taskset") is None or shutil.which("ionice") is None:
        pytest.skip("taskset or ionice not installed")
    wrapper = ["nice", "-n", "7", "taskset", "-c", "0", "ionice", "-c", "3"]
    served, plain = _run_both(wrapper, env, args, str(shared))
    assert served.stdout.splitlines()[0] == plain.stdout.splitlines()[0]
    assert served.stdout.splitlines()[1] == "True"      # served
