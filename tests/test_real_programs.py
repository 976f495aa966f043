"""Issue 13, with real programs from PyPI (installed by the test extras):
each class of state a module takes at import, compared with a direct run
of the same command, with a check that the tier was used.

  httpie     binds sys.argv as main()'s default argument, and asks at
             import whether stdin, stdout and stderr are terminals
             (httpie.context.Environment): served launches with other
             arguments, on a terminal and through a pipe
  matplotlib reads MPLBACKEND at import into its rcParams
  setuptools installs its own meta-path finder (_distutils_hack), which
             maps the top-level name distutils to the copy it vendors
"""
import os
import subprocess
import sys

import pytest

from test_fidelity import _pty_job
from test_server import CLIENT, _kill_servers, env, warm  # noqa: F401

PY = sys.executable
HTTP = os.path.join(os.path.dirname(PY), "http")
SERVED = "warmstart-exec: served: pid "


def _client(args, env, cwd):
    """A launch with WARMSTART_VERBOSE=1, so that the client says on
    stderr whether a server ran it; (result without the client's lines,
    whether it was served)."""
    r = subprocess.run([CLIENT, "--", PY, *args], cwd=cwd, text=True,
                       env=dict(env, WARMSTART_VERBOSE="1"),
                       capture_output=True, timeout=120)
    lines = r.stderr.splitlines(keepends=True)
    ours = [x for x in lines if x.startswith("warmstart-exec: ")]
    r.stderr = "".join(x for x in lines if x not in ours)
    return r, any(x.startswith(SERVED) for x in ours)


def _direct(args, env, cwd):
    return subprocess.run([PY, *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120)


def test_httpie_argv_bound_at_import(env, tmp_path):
    """httpie.core.main(args=sys.argv): each served launch sends its own
    request, not the first launch's."""
    base = [HTTP, "--offline", "--ignore-stdin", "--print=HB", "example.org"]
    warm([*base, "first=1"], env, str(tmp_path))
    for item in ("second=2", "third=3"):
        r, served = _client([*base, item], env, str(tmp_path))
        d = _direct([*base, item], env, str(tmp_path))
        assert served, r.stderr
        assert (r.returncode, r.stdout, r.stderr) == \
            (d.returncode, d.stdout, d.stderr)
        assert item.replace("=", '": "') in r.stdout


def test_httpie_colours_on_a_terminal_and_not_through_a_pipe(env, tmp_path):
    """httpie decides at import (class attributes of Environment) whether
    its streams are terminals: colours on a terminal, none through a
    pipe, served or not."""
    base = [HTTP, "--offline", "--ignore-stdin", "--print=HB", "example.org"]
    e = dict(env, TERM="xterm-256color")
    e.pop("NO_COLOR", None)
    # The first launch on a terminal records and starts that server.
    _pty_job([CLIENT, "--", PY, *base, "a=1"], e, str(tmp_path),
             interrupt=False)
    rc_d, out_d = _pty_job([PY, *base, "b=2"], e, str(tmp_path),
                           interrupt=False)
    assert b"\x1b[" in out_d                       # colours, directly
    for _ in range(50):                            # until it is served
        rc, out = _pty_job([CLIENT, "--", PY, *base, "b=2"],
                           dict(e, WARMSTART_VERBOSE="1"), str(tmp_path),
                           interrupt=False)
        if out.startswith(SERVED.encode()):
            break
        __import__("time").sleep(0.1)
    else:
        raise AssertionError("never served on the terminal")
    assert (rc, out.split(b"\n", 1)[1]) == (rc_d, out_d)
    # Through a pipe: no colours, exactly as a direct run.
    d = _direct([*base, "c=3"], e, str(tmp_path))
    assert "\x1b[" not in d.stdout
    warm([*base, "c=3"], e, str(tmp_path))
    r, served = _client([*base, "c=3"], e, str(tmp_path))
    assert served
    assert (r.returncode, r.stdout, r.stderr) == \
        (d.returncode, d.stdout, d.stderr)


MPL = """\
import matplotlib
print(matplotlib.get_backend(), matplotlib.rcParams["backend"])
"""


def test_matplotlib_backend_read_at_import(env, tmp_path):
    """MPLBACKEND is read when matplotlib is imported: a launch with
    another value gets its own backend (another server, or a direct run),
    and one with the recorded value is served."""
    prog = tmp_path / "backend.py"
    prog.write_text(MPL)
    e = dict(env, MPLCONFIGDIR=str(tmp_path / "mpl"), MPLBACKEND="agg")
    warm([str(prog)], e, str(tmp_path))
    for backend, served_expected in (("svg", False), ("agg", True),
                                     ("pdf", False)):
        e2 = dict(e, MPLBACKEND=backend)
        r, served = _client([str(prog)], e2, str(tmp_path))
        d = _direct([str(prog)], e2, str(tmp_path))
        assert d.stdout.split()[0] == backend
        assert (r.returncode, r.stdout, r.stderr) == \
            (d.returncode, d.stdout, d.stderr)
        assert served == served_expected, backend


DISTUTILS = """\
import distutils.core, os
print(os.path.relpath(distutils.__file__, os.path.dirname(os.__file__)),
      type(distutils.__spec__.loader).__name__)
"""


def test_setuptools_distutils_alias_finder(tmp_path):
    """setuptools' _distutils_hack (a .pth line in every venv with
    setuptools) puts its finder first on sys.meta_path and answers
    distutils with setuptools._distutils.  With an image of a run that
    imported it, the program gets the copy a direct run gets, and the
    image still serves what it may."""
    prog = tmp_path / "du.py"
    prog.write_text(DISTUTILS)
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART")}
    e.pop("SETUPTOOLS_USE_DISTUTILS", None)
    img = tmp_path / "out" / "du.img"
    img.parent.mkdir()
    rec = subprocess.run([PY, str(prog)], env=dict(e, WARMSTART_RECORD=str(img)),
                         capture_output=True, text=True, cwd=tmp_path)
    assert rec.returncode == 0 and img.exists(), rec.stderr
    d = subprocess.run([PY, str(prog)], env=e, capture_output=True,
                       text=True, cwd=tmp_path)
    assert "setuptools" in d.stdout, d     # the alias finder's copy
    stats = tmp_path / "out" / "stats"
    r = subprocess.run([PY, str(prog)], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(e, WARMSTART_IMAGE=str(img),
                                           WARMSTART_STATS=str(stats)))
    assert (r.returncode, r.stdout, r.stderr) == \
        (d.returncode, d.stdout, d.stderr)
    served = int(stats.read_text().split("served ")[1].split()[0])
    assert served > 10, stats.read_text()
