"""Every source module of the standard library and site-packages: written
into one image, loaded in a fresh process, compared with marshal; with
each of the loader's ways of making mapped pages writable: page by page
(the default), whole chunks before their first write, and whole chunks
once an eighth of them is patched, which copies objects already
patched."""
import json

import pytest

from conftest import run_python

CHILD = r"""
import json, marshal, sys
import codecompare, warmstart
from warmstart import image
path, listing, threshold = sys.argv[1:4]
mods = json.load(open(listing))
img = warmstart.Image(path)
if threshold != "default":
    img.chunk_threshold = int(threshold)
bad, checked = {}, 0
for name, src, is_package in mods:
    if name not in img:
        continue
    expect = marshal.loads(marshal.dumps(image.compile_module(src)))
    got = img.get_code(name)
    assert img.get_code(name) is got
    # dis output derives from the fields diff() compares; reading it once,
    # for the default loader path, checks it, and saves minutes per run.
    d = codecompare.diff(got, expect, name, with_dis=threshold == "default")
    info = img.info(name)
    if info["origin"] != src or info["is_package"] != is_package:
        d.append(f"metadata {info}")
    if d:
        bad[name] = d[:5]
    checked += 1
print(json.dumps({"checked": checked, "bad": bad, "stats": img.stats()}))
"""


@pytest.mark.parametrize("threshold", ["default", "0", "262144"])
def test_every_module_matches_marshal(stdlib_image, tmp_path, threshold):
    path, mods, summary = stdlib_image
    # Only modules that do not compile may be missing (lib2to3 and test
    # data written in old syntax); the writer itself refuses none.
    for name, reason in summary["skipped"]:
        assert reason.startswith(("SyntaxError", "ValueError",
                                  "UnicodeDecodeError")), (name, reason)
    assert summary["modules"] + len(summary["skipped"]) == len(mods)
    assert summary["modules"] > 500
    listing = tmp_path / "mods.json"
    listing.write_text(json.dumps(mods))
    out = json.loads(run_python(CHILD, path, str(listing), threshold).stdout)
    assert out["checked"] == summary["modules"]
    assert out["bad"] == {}
    assert out["stats"]["modules"] == out["checked"]
    # Every 2 MiB chunk holding objects is copied, or none is.
    chunks = out["stats"]["chunks_private"]
    if threshold == "default":
        assert chunks == 0
    else:
        assert chunks >= summary["size"] // (2 << 20) * 3 // 4
