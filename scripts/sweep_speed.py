"""Is a K = 16 sweep's epoch as fast as at another commit, on this machine?

    python scripts/sweep_speed.py [REF] [--rounds 3] [--k 16] [--arch b]

Times the trainer's own sweep epoch (``jaxmlp._sweep.Stack.train``: K models of preset b,
every order) with the package as it is at REF (checked out into a temporary git worktree)
and with the working tree's, in turns (REF, now, REF, now, …: a drift of the machine's
speed falls on both), each in a fresh process: 4 epochs of the full MNIST training split,
the first (it compiles) left out. Prints every round's figures, then the medians and
now / REF: below 1 is faster. Needs the MNIST data the tests use (``$TFDS_DATA_DIR``).
About 3 minutes with the defaults on the 2-core AMD EPYC.
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from trajectories import ROOT, at_commit, with_mnist  # scripts/: this script's folder

CHILD = r"""
import json, sys, time
import numpy as np
from jaxmlp import Grid, TrainConfig
try:
    from jaxmlp._data import _load_mnist
    from jaxmlp._sweep import Stack
except ImportError:  # a commit before the modules were made private (issue 25)
    from jaxmlp.data import _load_mnist
    from jaxmlp.sweep import _Stack as Stack

k, arch = int(sys.argv[1]), sys.argv[2]
data = _load_mnist(download=False)
config = TrainConfig(arch=arch, epochs=5)
spe = len(data.train_labels) // config.batch_size
out = {}
for order in ("shared", "independent"):
    stack = Stack(config, Grid(tuple(range(k)), (0.1,), (0.9,)), order, data)
    state, _, n = stack.start(None, None, spe)
    params, opt_state = stack.place(state, n)
    times = []
    for epoch in range(1, 5):
        begin = time.perf_counter()
        params, opt_state, losses, _, compile_s = stack.train(params, opt_state, epoch, 0, spe)
        times.append(time.perf_counter() - begin - compile_s)
        assert np.isfinite(losses).all()
    out[order] = float(np.median(times[1:]))
print(json.dumps(out))
"""


def _epoch_seconds(package_root: Path, k: int, arch: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package_root)}  # ahead of the editable install
    done = subprocess.run([sys.executable, "-c", CHILD, str(k), arch], env=env, check=True,
                          cwd=package_root, capture_output=True, text=True)
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", nargs="?", default="HEAD", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--arch", default="b")
    args = parser.parse_args(argv)
    with_mnist()
    figures: dict = {"ref": [], "now": []}
    with at_commit(args.ref) as ref:
        for i in range(args.rounds):
            for which, root in (("ref", ref), ("now", ROOT)):
                figures[which].append(_epoch_seconds(root, args.k, args.arch))
                print(f"round {i + 1} {which:<4} " + "  ".join(
                    f"{order} {s:.3f} s" for order, s in figures[which][-1].items()),
                    flush=True)
    print(f"K = {args.k} models of preset {args.arch}, seconds per epoch (median of "
          f"{args.rounds} rounds), now / {args.ref}:")
    for order in figures["ref"][0]:
        before = float(np.median([f[order] for f in figures["ref"]]))
        after = float(np.median([f[order] for f in figures["now"]]))
        print(f"  {order:<12} {args.ref}: {before:.3f}  now: {after:.3f}  now/ref: "
              f"{after / before:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
