"""python run_with_image.py IMAGE REPORT -m module args...

Runs a module as __main__ with the import tier serving every module the
image holds (warmstart.importer.activate, as a program would), then writes
the names of the modules served to REPORT (one per line)."""
import atexit
import runpy
import sys

from warmstart import importer

image, report = sys.argv[1:3]
assert sys.argv[3] == "-m"
finder = importer.activate(image)
assert finder is not None, image


@atexit.register
def _report():
    with open(report, "w") as f:
        f.write("\n".join(sorted(finder.served)))


sys.argv = [sys.argv[4]] + sys.argv[5:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
