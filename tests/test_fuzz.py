"""A short libFuzzer run of the loader (fuzz/fuzz_image.c), when clang with
libFuzzer is installed.  Longer runs: see fuzz/build.sh."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import HERE

ROOT = os.path.dirname(HERE)
SECONDS = int(os.environ.get("WARMSTART_FUZZ_SECONDS", "20"))


# The embedded interpreter's own allocations live until exit.  Its home is
# the test interpreter's: a relocated one (tools/unstable-python.sh) cannot
# find it from the fuzzer's path or its compiled-in prefix.
RUN_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0",
               PYTHONHOME=sys.base_prefix)


def test_fuzz_loader(tmp_path):
    if not shutil.which("clang"):
        pytest.skip("clang not installed")
    build = tmp_path / "build"
    env = dict(os.environ, PYTHON=sys.executable)
    p = subprocess.run(["sh", os.path.join(ROOT, "fuzz", "build.sh")],
                       cwd=ROOT, env=dict(env, FUZZ_OUT=str(build)),
                       capture_output=True, text=True)
    if p.returncode != 0 and "fuzzer" in p.stderr and "cannot find" in p.stderr:
        pytest.skip("libFuzzer runtime not installed")
    assert p.returncode == 0, p.stderr[-3000:]
    # Inputs that once crashed the loader (under the build's Python or
    # another): each must now give a clean error.
    regressions = sorted(os.path.join(ROOT, "fuzz", "regressions", n)
                         for n in os.listdir(os.path.join(ROOT, "fuzz",
                                                          "regressions"))
                         if n.endswith(".img"))
    if regressions:
        rerun = subprocess.run(
            [str(build / "fuzz_image"), "-detect_leaks=0", *regressions],
            capture_output=True, text=True, timeout=300,
            env=RUN_ENV)
        assert rerun.returncode == 0, rerun.stderr[-4000:]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    run = subprocess.run(
        [str(build / "fuzz_image"), f"-max_total_time={SECONDS}",
         "-detect_leaks=0", "-rss_limit_mb=4096",
         f"-artifact_prefix={tmp_path}/", str(corpus), str(build / "seeds")],
        capture_output=True, text=True, timeout=SECONDS + 300,
        env=RUN_ENV)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done" in run.stderr
