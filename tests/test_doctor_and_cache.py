"""`warmstart doctor` says what each tier would do with a command and why
not, without running the program; the caches keep under their cap, least
recently used first; `warmstart cache list|clean` (issue 15)."""
import os
import subprocess
import sys
import time

import pytest

from test_importer import needs_pth
from test_server import _kill_servers, explain, warm
from warmstart import caches

PY = sys.executable


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    e["WARMSTART_CACHE"] = str(tmp_path / "cache")
    e["WARMSTART_SERVER_DIR"] = str(tmp_path / "servers")
    yield e
    _kill_servers(e["WARMSTART_SERVER_DIR"])


@pytest.fixture
def prog(tmp_path):
    """A program that leaves a mark when it runs."""
    d = tmp_path / "app"
    d.mkdir()
    (d / "helper.py").write_text("VALUE = 1\n")
    (d / "prog.py").write_text(
        "import helper, json, email.parser, pathlib\n"
        "pathlib.Path('ran').write_text('x')\n"
        "print('value', helper.VALUE)\n")
    return d


def ws(*args, env, cwd=None):
    return subprocess.run([PY, "-m", "warmstart", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def doctor(env, cwd, *command):
    p = ws("doctor", "--", *command, env=env, cwd=cwd)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert not (cwd / "ran").exists(), "doctor ran the program"
    return p.stdout


def wait_for(probe, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.1)
    return probe()


def test_doctor_without_a_command(env):
    env.update(WARMSTART="1", WARMSTART_IMAG="x.img", WARMSTART_CHECK="hash")
    p = ws("doctor", env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "C core: loads" in out
    assert "WARMSTART=1: ignored: the only mode is WARMSTART=auto" in out
    assert "WARMSTART_IMAG=x.img: not a warmstart variable: a typo?" in out
    assert "WARMSTART_CHECK=hash: mtime|hash|none" in out
    assert f"auto cache: {env['WARMSTART_CACHE']} (not created yet)" in out


@needs_pth
def test_doctor_follows_the_auto_image_of_a_command(env, prog):
    out = doctor(env, prog, PY, "prog.py")
    assert f"program: script {prog / 'prog.py'}" in out
    assert "WARMSTART=auto: no image yet" in out
    # The run that records; its image is written after it exits.
    run = subprocess.run([PY, "prog.py"], cwd=prog, capture_output=True,
                         text=True, env=dict(env, WARMSTART="auto"))
    assert run.stdout == "value 1\n"
    os.unlink(prog / "ran")
    cache = env["WARMSTART_CACHE"]
    assert wait_for(lambda: [n for n in os.listdir(cache)
                             if n.endswith(".img")]
                    and not any(n.endswith(".writing")
                                for n in os.listdir(cache)))
    out = doctor(env, prog, PY, "prog.py")
    line = next(x for x in out.splitlines() if "WARMSTART=auto:" in x)
    n = int(line.split(": ")[-1].split()[0])
    assert n > 20 and line.endswith(f"{n} modules, {n} would be served"), out
    (prog / "helper.py").write_text("VALUE = 22\n")
    out = doctor(env, prog, PY, "prog.py")
    assert f"{n} modules, {n - 1} would be served" in out
    assert "stale (source changed since the build): helper\n" in out


@needs_pth
def test_doctor_reports_a_bad_image_and_a_changed_sys_path(env, prog,
                                                           tmp_path):
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"junk")
    out = doctor(dict(env, WARMSTART_IMAGE=str(bad)), prog, PY, "prog.py")
    assert f"WARMSTART_IMAGE={bad}: not used: {bad}: not a warmstart image" \
        in out
    img = tmp_path / "app.img"
    p = ws("build", "-o", str(img), "--", PY, "prog.py", env=env, cwd=prog)
    assert p.returncode == 0, p.stderr
    os.unlink(prog / "ran")
    other = tmp_path / "extra"
    other.mkdir()
    out = doctor(dict(env, WARMSTART_IMAGE=str(img), PYTHONPATH=str(other)),
                 prog, PY, "prog.py")
    assert "sys.path differs from the build" in out
    assert f"new on it: {other}" in out


def test_doctor_on_the_warm_server(env, prog):
    out = doctor(env, prog, PY, "prog.py")
    key = os.path.basename(explain(["prog.py"], env, prog)["server"])
    assert f"warm server {key}: none yet" in out
    warm(["prog.py"], env, prog)
    os.unlink(prog / "ran")
    out = doctor(env, prog, PY, "prog.py")
    assert f"warm server {key}: running (pid " in out
    out = doctor(env, prog, PY, "-i", "prog.py")
    assert "warm server: runs directly: interpreter option run directly" \
        in out


def test_sizes_and_the_cap_variable():
    assert caches.parse_size("500M") == 500 << 20
    assert caches.parse_size("2g") == 2 << 30
    assert caches.parse_size("1KiB") == 1024
    assert caches.parse_size("77") == 77
    for bad in ("", "1.5G", "M", "-1", "5X"):
        with pytest.raises(ValueError):
            caches.parse_size(bad)
    assert caches.cap({}) == (caches.DEFAULT_MAX, None)
    assert caches.cap({"WARMSTART_CACHE_MAX": "0"}) == (None, None)
    limit, warning = caches.cap({"WARMSTART_CACHE_MAX": "lots"})
    assert limit == caches.DEFAULT_MAX and "not a size" in warning


@needs_pth
def test_auto_cache_keeps_under_its_cap_least_recently_used_first(
        env, prog):
    (prog / "other.py").write_text("import json, tomllib\nprint('other')\n")
    auto = dict(env, WARMSTART="auto")
    cache = env["WARMSTART_CACHE"]

    def images():
        names = os.listdir(cache) if os.path.isdir(cache) else []
        if any(n.endswith(".writing") for n in names):
            return None
        return sorted(n for n in names if n.endswith(".img"))

    subprocess.run([PY, "prog.py"], cwd=prog, env=auto, check=True,
                   capture_output=True)
    assert wait_for(lambda: images())
    (first,) = images()
    # A second program's image, written under a cap that holds one image:
    # the older one goes, the new one stays.
    subprocess.run([PY, "other.py"], cwd=prog, check=True,
                   capture_output=True,
                   env=dict(auto, WARMSTART_CACHE_MAX="1K"))
    assert wait_for(lambda: images() and images() != [first])
    (second,) = images()
    assert second != first
    assert not [n for n in os.listdir(cache) if n.startswith(first[:16])]


def _fake_server_files(d, key, age):
    os.makedirs(d, mode=0o700, exist_ok=True)
    for suffix in (".preload", ".log"):
        path = os.path.join(d, key + suffix)
        with open(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600), "wb") as f:
            f.write(b"x" * 10000)
        os.utime(path, (time.time() - age, time.time() - age))


def test_server_directory_keeps_under_its_cap(env, prog):
    d = env["WARMSTART_SERVER_DIR"]
    _fake_server_files(d, "00000000000000aa", 7200)
    _fake_server_files(d, "00000000000000bb", 3600)
    # The running server's own files are a few KiB; each fake is 20000 B.
    env["WARMSTART_CACHE_MAX"] = "30K"
    warm(["prog.py"], env, prog)
    left = os.listdir(d)
    # The older stopped server's files went, the younger one's fit.
    assert not [n for n in left if n.startswith("00000000000000aa")], left
    assert [n for n in left if n.startswith("00000000000000bb")], left
    key = os.path.basename(explain(["prog.py"], env, prog)["server"])
    assert key + ".sock" in left


def test_cache_list_and_clean(env, prog):
    d = env["WARMSTART_SERVER_DIR"]
    _fake_server_files(d, "00000000000000cc", 60)
    warm(["prog.py"], env, prog)
    key = os.path.basename(explain(["prog.py"], env, prog)["server"])
    p = ws("cache", "list", env=env)
    assert p.returncode == 0, p.stderr
    assert f"server directory: {d}  2 entries" in p.stdout
    rows = {line.split()[0]: line.split()[2] for line in p.stdout.splitlines()
            if line.startswith("  ")}
    assert rows == {key: "running", "00000000000000cc": "stopped"}, p.stdout
    p = ws("cache", "clean", "nosuchkey", env=env)
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        "warmstart cache: no entry nosuchkey (warmstart cache list lists "
        "them)"]
    p = ws("cache", "clean", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("removed 1 entries; kept 1 in use")
    left = os.listdir(d)
    assert not [n for n in left if n.startswith("00000000000000cc")]
    assert key + ".sock" in left


def test_doctor_never_runs_the_program(env, prog):
    """Where the start-up hook would not stop the program (-S; an
    interpreter without warmstart), doctor does not start it."""
    out = doctor(env, prog, PY, "-S", "prog.py")
    assert "-S skips site, and with it warmstart's start-up hook" in out
    out = doctor(env, prog, "/bin/true", "prog.py")
    assert "/bin/true is not a Python interpreter nor a Python script" in out
    base = getattr(sys, "_base_executable", PY)
    bare = subprocess.run([base, "-c", "import warmstart"],
                          capture_output=True)
    if bare.returncode == 0:
        pytest.skip(f"{base} has warmstart installed")
    out = doctor(env, prog, base, "prog.py")
    assert "image tiers: not looked at" in out, out


def test_interpreter_options():
    from warmstart.doctor import interpreter_options as opts
    assert opts([b"py", b"-OX", b"dev", b"-m", b"tool", b"-x"]) == \
        [b"-OX", b"dev"]
    assert opts([b"py", b"-X", b"dev", b"-W", b"error", b"s.py", b"-S"]) \
        == [b"-X", b"dev", b"-W", b"error"]
    assert opts([b"py", b"-Bmtool"]) == [b"-B"]
    assert opts([b"py", b"-Ic", b"pass"]) == [b"-I"]
    assert opts([b"py", b"-"]) is None
    assert opts([b"py", b"-O"]) is None
