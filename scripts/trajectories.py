"""Are single runs bitwise the same trajectories as at another commit, on this machine?

    python scripts/trajectories.py [REF]        # REF: a commit, default HEAD

Trains the short runs of ``tests/test_trajectories.py`` (presets a and b, both gradient
paths, resumed, a validation split, Adam, and dropout + augmentation + EMA + max-norm +
label smoothing + clipping resumed mid-epoch), and two resumed sweeps of four models (shared
order; independent with that noise), twice on this machine: with the package as
it is at REF (checked out into a temporary git worktree) and with the working tree's; then
compares every parameter array bit for bit. Prints one line per run and exits 1 if any
array differs. Bits are compared on one machine only: other CPUs round differently
(``tests/test_trajectories.py`` holds the runs to float32 tolerance across machines).

Needs the MNIST data the tests use (``$TFDS_DATA_DIR``; ``make`` sets it beside
``../shared``). About 80 s in all on the 2-core AMD EPYC.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "tests" / "test_trajectories.py"


def with_mnist() -> None:
    """``$TFDS_DATA_DIR`` as the tests and ``make`` have it, unless it is set."""
    if "TFDS_DATA_DIR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
        os.environ["TFDS_DATA_DIR"] = str(ROOT.parent / "shared" / "data" / "tensorflow_datasets")


@contextlib.contextmanager
def at_commit(ref: str):
    """The repository as it is at ``ref``, checked out into a temporary git worktree (its
    path), removed again on leaving."""
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach",
                        str(path), ref], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                           check=True)


def _save(package_root: Path, out: Path) -> None:
    """The runs' final params, trained by the package under ``package_root``, into ``out``."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}  # ahead of the editable install
    subprocess.run([sys.executable, str(RUNS), "--save", str(out)], env=env, check=True,
                   cwd=package_root)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", nargs="?", default="HEAD", help="the commit to compare against")
    ref = parser.parse_args(argv).ref
    with_mnist()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with at_commit(ref) as package_root:
            _save(package_root, tmp / "ref.npz")
        _save(ROOT, tmp / "now.npz")
        before, after = np.load(tmp / "ref.npz"), np.load(tmp / "now.npz")
        runs = sorted({n.split("/")[0] for n in before.files})
        if set(before.files) != set(after.files):
            print(f"the runs' arrays differ: {sorted(set(before.files) ^ set(after.files))}")
            return 1
        failed = False
        print(f"{'run':<24} {'arrays':>6} {'bitwise':>8} {'max |diff|':>11}   (vs {ref})")
        for run in runs:
            names = [n for n in before.files if n.startswith(run + "/")]
            same = sum(np.array_equal(before[n].view(np.uint8), after[n].view(np.uint8))
                       for n in names)
            diff = max(float(np.max(np.abs(before[n] - after[n]))) for n in names)
            failed |= same != len(names)
            print(f"{run:<24} {len(names):>6} {same:>8} {diff:>11.3g}")
    print("bitwise the same" if not failed else "DIFFERENT")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
