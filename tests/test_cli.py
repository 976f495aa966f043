"""The command line: every error is one line on stderr with the right
exit status, checked before any work; help and version say what they
should (issue 15)."""
import os
import subprocess
import sys

import pytest

PY = sys.executable


def cli(*args, cwd=None, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    e.update(env or {})
    return subprocess.run([PY, "-m", "warmstart", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=300)


def one_line_error(p, status, start):
    assert p.returncode == status, (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), p.stderr
    assert "Traceback" not in p.stderr + p.stdout


@pytest.fixture
def img(tmp_path):
    path = tmp_path / "j.img"
    p = cli("build", "-o", str(path), "--modules", "json")
    assert p.returncode == 0, p.stderr
    return path


def test_build_of_a_missing_command(tmp_path):
    p = cli("build", "-o", str(tmp_path / "x.img"), "--", "nosuchcmd-ws")
    one_line_error(p, 127, "warmstart build: command not found: nosuchcmd-ws")
    assert not (tmp_path / "x.img").exists()


@pytest.mark.parametrize("what", ["build", "shim"])
def test_output_into_a_missing_directory(tmp_path, what):
    out = tmp_path / "no" / "such" / "out"
    args = ["--stdlib"] if what == "build" else ["--", PY]
    p = cli(what, "-o", str(out), *args)
    one_line_error(p, 1, f"warmstart {what}: cannot write {out}: no directory")
    assert not (tmp_path / "no").exists()       # not created by surprise


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_into_a_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    p = cli("build", "-o", str(ro / "x.img"), "--stdlib")
    one_line_error(p, 1, "warmstart build: cannot write")
    assert "not writable" in p.stderr


def test_build_of_a_missing_module(tmp_path):
    p = cli("build", "-o", str(tmp_path / "x.img"), "--modules",
            "json,nosuchmodule_ws")
    one_line_error(p, 1, "warmstart build: no such module: nosuchmodule_ws")
    assert not (tmp_path / "x.img").exists()


def test_run_errors(tmp_path, img):
    p = cli("run", str(img), "--", "nosuchcmd-ws")
    one_line_error(p, 127, "warmstart run: command not found: nosuchcmd-ws")
    p = cli("run", str(tmp_path / "none.img"), "--", PY, "-c", "pass")
    one_line_error(p, 1, "warmstart run: no image file")
    notexec = tmp_path / "plain.txt"
    notexec.write_text("x")
    p = cli("run", str(img), "--", str(notexec))
    one_line_error(p, 126, "warmstart run: cannot run")


def test_run_works(img):
    p = cli("run", str(img), "--", PY, "-c", "import json; print(json.dumps(7))")
    assert (p.returncode, p.stdout, p.stderr) == (0, "7\n", "")


def test_profile_output_checked_before_the_run(tmp_path):
    marker = tmp_path / "ran"
    p = cli("profile", "--html", "/nonexistent-ws/x.html", "--", PY, "-c",
            f"open({str(marker)!r}, 'w')")
    one_line_error(p, 1, "warmstart profile: cannot write /nonexistent-ws/x.html")
    assert not marker.exists()                  # nothing ran, nothing printed


def test_server_stop_of_an_unknown_key(tmp_path):
    p = cli("server", "stop", "0123456789abcdef",
            env={"WARMSTART_SERVER_DIR": str(tmp_path / "servers")})
    one_line_error(p, 1, "warmstart server: no server 0123456789abcdef")


def test_version_and_bare():
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("warmstart ")
    assert sys.version.split()[0] in p.stdout
    p = cli()
    assert p.returncode == 2 and p.stdout.startswith("usage: warmstart")
    assert "arguments are required" not in p.stderr
    for cmd in ("build", "profile", "exec"):
        assert cmd in p.stdout


@pytest.mark.parametrize("args, status", [(["--help"], (0, 1)),
                                          (["cache", "list"], (1,))])
def test_a_reader_that_leaves_gets_no_traceback(tmp_path, args, status):
    """`warmstart cache list | head`: stdout's reader is gone (newer
    argparse ignores a failed write of --help itself: status 0)."""
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    env["WARMSTART_CACHE"] = str(tmp_path / "cache")
    env["WARMSTART_SERVER_DIR"] = str(tmp_path / "servers")
    try:
        p = subprocess.run([PY, "-m", "warmstart", *args], stdout=w,
                           stderr=subprocess.PIPE, text=True, env=env,
                           timeout=60)
    finally:
        os.close(w)
    assert p.stderr == "" and p.returncode in status, p


@pytest.mark.parametrize("cmd", ["build", "info", "run", "exec", "server",
                                 "shim", "client-path", "profile",
                                 "cache", "doctor"])
def test_every_command_explains_itself(cmd):
    p = cli(cmd, "--help")
    assert p.returncode == 0
    head, _, examples = p.stdout.partition("\nexamples:\n")
    assert len([x for x in examples.splitlines() if x.strip()]) == 2, p.stdout
    # A description paragraph, and every option described.
    assert len(head.split("\n\n")) >= 3, p.stdout
    lines = head.splitlines()
    for k, line in enumerate(lines):
        s = line.strip()
        if s.startswith("-") and not s.startswith("-h"):
            # Its help on the same line, or (a long one) on the next.
            nxt = lines[k + 1] if k + 1 < len(lines) else ""
            assert "  " in s or (nxt.startswith("          ")
                                 and nxt.strip()), (cmd, line)


@pytest.mark.parametrize("value", ["1", "bogus"])
def test_warmstart_variable_other_than_auto_warns(value):
    p = subprocess.run([PY, "-c", "print('ran')"], capture_output=True,
                       text=True, env=dict(os.environ, WARMSTART=value))
    assert p.stdout == "ran\n"
    assert p.stderr == (f"warmstart: ignoring WARMSTART={value!r}: the only "
                        "mode is WARMSTART=auto\n")


def test_native_client_is_on_the_environments_path():
    """pip install puts warmstart-exec in the environment's bin/, next to
    python, and client-path still names the package's copy."""
    exe = os.path.join(os.path.dirname(PY), "warmstart-exec")
    assert os.access(exe, os.X_OK)
    with open(exe, "rb") as f:
        assert f.read(4) == b"\x7fELF"          # the binary, not a wrapper
    p = subprocess.run([exe, "--", PY, "-c", "print('via bin')"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, WARMSTART_SERVER_DIR="/nonexistent-ws/x"))
    assert p.stdout == "via bin\n", p.stderr
    assert os.access(cli("client-path").stdout.strip(), os.X_OK)


def test_exec_hands_over_before_importing_the_cli(tmp_path):
    """warmstart exec -- ... imports nothing of the CLI's before it execs
    the native client (its own Python start is already the cost)."""
    p = subprocess.run([PY, "-X", "importtime", "-m", "warmstart", "exec",
                        "--", PY, "-c", "print('ran')"], capture_output=True,
                       text=True, timeout=60,
                       env=dict(os.environ, WARMSTART_SERVER_DIR=str(tmp_path / "s")))
    assert p.stdout == "ran\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in
                p.stderr.splitlines() if line.startswith("import time:")}
    assert "warmstart" in imported            # it did run the CLI
    assert not imported & {"argparse", "subprocess", "shutil", "tempfile"}
