"""The start-up table is the one place that says which variable wakes
which tier: the .pth line, boot.c's fast path and the Python modules
must agree with it (issue 11)."""
import ast
import os
import re

import pytest

from warmstart import _boot

from test_importer import PTH, needs_pth

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def _read(*parts):
    with open(os.path.join(SRC, *parts)) as f:
        return f.read()


@needs_pth
def test_pth_line_tests_exactly_the_wake_variables():
    with open(PTH) as f:
        line = f.read()
    tested = re.findall(r"'(WARMSTART\w*)' in os\.environ", line)
    assert sorted(tested) == sorted(name for name, _ in _boot.WAKE)
    assert '__import__("warmstart._boot")._boot.main()' in line


def test_boot_c_defers_exactly_the_table_s_list():
    text = _read("importer", "boot.c")
    m = re.search(r"python_boot_vars\[\] = \{(.*?)\};", text, re.S)
    assert m, "boot.c: python_boot_vars not found"
    listed = re.findall(r'"(WARMSTART\w*)"', m.group(1))
    assert listed == list(_boot.NOT_IN_C)
    wake = {name for name, _ in _boot.WAKE}
    modifiers = {name for name, _ in _boot.MODIFIERS}
    assert set(listed) <= wake | modifiers
    assert not wake & modifiers


def _imported_modules(source):
    """Names of warmstart modules a source file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module)
            else:
                names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("name,forbidden", [
    ("importer.py", {"_boot", "profile_hook", "record", "build", "auto"}),
    ("record.py", {"_boot", "build", "auto", "server", "worker"}),
    ("build.py", {"_boot", "auto", "server"}),
])
def test_no_import_of_a_module_above(name, forbidden):
    imported = _imported_modules(_read("warmstart", name))
    assert not imported & forbidden, imported & forbidden


def test_every_variable_the_package_reads_is_in_the_table():
    """A WARMSTART* variable read anywhere in the Python package is in
    WAKE or MODIFIERS."""
    known = {name for name, _ in _boot.WAKE + _boot.MODIFIERS}
    read = set()
    pkg = os.path.join(SRC, "warmstart")
    for f in os.listdir(pkg):
        if f.endswith(".py"):
            read.update(re.findall(r"[\"'](WARMSTART(?:_[A-Z]+)*)[\"']",
                                   _read("warmstart", f)))
    assert read - known == set()


def test_protocol_py_and_protocol_h_agree():
    """protocol.h documents every message; protocol.py has the same tags
    and limits, and every tag it defines is documented there."""
    from warmstart import protocol
    text = _read("client", "protocol.h")
    documented = set(re.findall(r'^\s+"([A-Z ]{4})"', text, re.M))
    tags = {v.decode() for k, v in vars(protocol).items()
            if k.isupper() and isinstance(v, bytes) and len(v) == 4
            and k != "VERSION"}
    assert tags == documented
    defines = dict(re.findall(r"#define (WS_\w+) (.+)", text))
    assert defines["WS_PROTOCOL_VERSION"] == '"%s"' % protocol.VERSION.decode()
    assert defines["WS_MAX_MESSAGE"] == "(1u << 20)"
    assert protocol.MAX_MESSAGE == 1 << 20
    assert int(defines["WS_MAX_FDS"]) == protocol.MAX_FDS
    assert "WS_EXITED = %d" % protocol.EXITED in text
    assert "WS_SIGNALED = %d" % protocol.SIGNALED in text
