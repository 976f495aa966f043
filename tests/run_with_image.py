"""python run_with_image.py IMAGE REPORT -m module args...

Runs a module as __main__ with the image serving every module it holds,
then writes the names of the modules served to REPORT (one per line)."""
import atexit
import runpy
import sys

import imageimport

image, report = sys.argv[1:3]
assert sys.argv[3] == "-m"
imageimport.install(image)


@atexit.register
def _report():
    with open(report, "w") as f:
        f.write("\n".join(sorted(imageimport.served)))


sys.argv = [sys.argv[4]] + sys.argv[5:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
