"""A served launch through two (or more) warmstart installations, side by
side: for a change to the launch path, its cost.

Each NAME=VENV is a venv with a version of warmstart installed.  For each,
the first launch starts its server; then launches of `python -c pass`
through each venv's warmstart-exec alternate (the order reversed every
round) and the medians are reported against the first.  Stop the servers
of earlier runs first (`warmstart server stop`, or kill them): a server
lives on between runs and keeps the code it started with.

    python bench/launch_ab.py [--runs N] before=/tmp/a after=/tmp/b
"""
import argparse
import glob
import os
import statistics
import time


def client(venv):
    found = glob.glob(os.path.join(
        venv, "lib", "python3*", "site-packages", "warmstart",
        "warmstart-exec"))
    if not found:
        raise SystemExit(f"no warmstart-exec in {venv}")
    return [found[0], "--", os.path.join(venv, "bin", "python"),
            "-c", "pass"]


def once(cmd, devnull):
    t = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)])
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed: status {status}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("arms", nargs="+", metavar="NAME=VENV")
    args = ap.parse_args()
    arms = [a.split("=", 1) for a in args.arms]
    cmds = {name: client(venv) for name, venv in arms}
    devnull = os.open(os.devnull, os.O_RDWR)
    for cmd in cmds.values():
        once(cmd, devnull)              # direct; starts the server
    time.sleep(2)
    for cmd in cmds.values():
        for _ in range(20):
            once(cmd, devnull)
    times = {name: [] for name in cmds}
    order = list(cmds.items())
    for i in range(args.runs):
        for name, cmd in (order if i % 2 == 0 else order[::-1]):
            times[name].append(once(cmd, devnull))
    base = statistics.median(times[order[0][0]])
    print(f"served `python -c pass`, {args.runs} alternating rounds, "
          f"{time.strftime('%Y-%m-%d')}")
    for name, t in times.items():
        m = statistics.median(t)
        q = statistics.quantiles(t, n=10)
        print(f"  {name:12s} median {m * 1e3:6.3f} ms  p10 {q[0] * 1e3:6.3f}"
              f"  p90 {q[-1] * 1e3:6.3f}  vs {order[0][0]}: "
              f"{(m - base) * 1e3:+.3f} ms")


if __name__ == "__main__":
    main()
