"""CPython's own test suites, run on standard-library code taken from the
image, give the same results as on normally imported code."""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = ["test_json", "test_enum", "test_dataclasses", "test_typing",
          "test_inspect", "test_traceback", "test_dis", "test_unittest",
          "test_argparse", "test_pickle", "test_functools"]


def regrtest(args, report=None):
    cmd = [sys.executable]
    if report is not None:
        cmd += [os.path.join(HERE, "run_with_image.py"), *report]
    cmd += ["-m", "test", *SUITES]
    env = dict(os.environ, PYTHONPATH=HERE)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       timeout=1800)
    total = re.findall(r"^Total tests: .*$", p.stdout, re.M)
    result = re.findall(r"^Result: .*$", p.stdout, re.M)
    return p.returncode, total, result, p.stdout[-3000:]


def test_suites_same_with_image(stdlib_image, tmp_path):
    path = stdlib_image[0]
    served_file = tmp_path / "served"
    with_img = regrtest([], report=[path, str(served_file)])
    without = regrtest([])
    assert with_img[0] == without[0] == 0, with_img[3]
    assert with_img[1:3] == without[1:3]
    served = set(served_file.read_text().split())
    # The code under test and the tests themselves came from the image.
    for name in ("json", "enum", "dataclasses", "typing", "inspect",
                 "traceback", "dis", "unittest", "argparse", "pickle",
                 "functools", "test.test_dis", "test.test_typing"):
        assert name in served, name
    assert len(served) > 200
