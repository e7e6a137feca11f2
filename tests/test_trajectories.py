"""Single-run trajectories pinned (for issue 16's one trainer, which must reproduce them).

A few short runs on the real MNIST, each run's final params summarised per leaf (sum,
sum of squares, first and last element) and held to float32 tolerance against values
stored from commit 2e85476's trainer (`python tests/test_trajectories.py` prints them
anew; the noisy resumed run's since commit 8cc1c3b). Bitwise equality across commits is
checked on one machine by `python scripts/trajectories.py REF`, which trains these runs
with REF's package and the working tree's and compares every array bit for bit.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

STORED = Path(__file__).with_name("data") / "trajectories.json"

RUNS = {  # name: (TrainConfig settings, resume to these steps or None)
    "a-hand": (dict(arch="a", steps=100), None),
    "b-hand": (dict(arch="b", steps=100), None),
    "b-autodiff": (dict(arch="b", steps=100, grad="autodiff"), None),
    "b-resumed": (dict(arch="b", steps=60, schedule="constant", lr=0.05), 100),
    "b-val": (dict(arch="b", steps=100, val_size=5000), None),
    "b-adam": (dict(arch="b", steps=100, optimizer="adam", warmup_steps=10), None),
    # Every source of noise and every extra part of the update, resumed mid-epoch.
    "b-noisy-resumed": (dict(arch="b", steps=60, schedule="constant", lr=0.05, nesterov=True,
                             dropout="0.2,0.5", augment="alpha=34,sigma=4,rotation=10",
                             ema=0.99, max_norm=3.0, label_smoothing=0.1, clip_norm=5.0), 100),
}
NOISY = RUNS["b-noisy-resumed"][0]

# Sweeps, for scripts/trajectories.py only (bitwise on one machine; a sweep's models are held
# to their single runs by tests/test_sweep.py): name: (settings, grid, order, resume to).
SWEEPS = {
    "sweep-shared": (dict(arch="b", steps=60, schedule="constant"),
                     dict(seeds=(0, 1), lrs=(0.1, 0.03), momenta=(0.9, 0.0)), "shared", 100),
    "sweep-noisy-independent": (NOISY, dict(seeds=(0, 3), lrs=(0.05, 0.02), momenta=(0.9,)),
                                "independent", 100),
}


def final_params(name, data, folder):
    from jaxmlp import TrainConfig, train_and_evaluate

    settings, resume_to = RUNS[name]
    quiet = lambda line: None
    result = train_and_evaluate(TrainConfig(**settings), folder, data=data, log=quiet)
    if resume_to is not None:
        result = train_and_evaluate(TrainConfig(**{**settings, "steps": resume_to}), folder,
                                    resume=True, data=data, log=quiet)
    return [{k: np.asarray(v) for k, v in layer.items()} for layer in result["params"]]


def sweep_params(name, data, folder):
    from jaxmlp import Grid, TrainConfig, train_many

    settings, grid, order, resume_to = SWEEPS[name]
    quiet = lambda line: None
    train_many(TrainConfig(**settings), Grid(**grid), folder, order=order, data=data, log=quiet)
    result = train_many(TrainConfig(**{**settings, "steps": resume_to}), Grid(**grid), folder,
                        order=order, resume=True, data=data, log=quiet)
    return [{k: np.asarray(v) for k, v in layer.items()} for layer in result["params"]]


def summary(params) -> dict:
    return {f"{i}/{k}": [float(np.sum(v, dtype=np.float64)),
                         float(np.sum(np.square(v, dtype=np.float64))),
                         float(v.ravel()[0]), float(v.ravel()[-1])]
            for i, layer in enumerate(params) for k, v in sorted(layer.items())}


@pytest.mark.production
@pytest.mark.parametrize("name", list(RUNS))
def test_single_run_trajectories_are_today_s(name, mnist, tmp_path):
    stored = json.loads(STORED.read_text())[name]
    got = summary(final_params(name, mnist, tmp_path / name))
    assert set(got) == set(stored)
    for leaf, values in stored.items():
        np.testing.assert_allclose(got[leaf], values, rtol=2e-4, atol=2e-5, err_msg=leaf)


if __name__ == "__main__":  # print (or --save FILE: whole params, for a bitwise comparison)
    import tempfile

    from jaxmlp import load_dataset  # public: REF's package (scripts/trajectories.py) has it

    data = load_dataset("mnist", download=False)
    with tempfile.TemporaryDirectory() as tmp:
        params = {name: final_params(name, data, Path(tmp) / name) for name in RUNS}
        if sys.argv[1:2] == ["--save"]:
            params.update({name: sweep_params(name, data, Path(tmp) / name) for name in SWEEPS})
    if sys.argv[1:2] == ["--save"]:
        np.savez(sys.argv[2], **{f"{n}/{i}/{k}": v for n, p in params.items()
                                 for i, layer in enumerate(p) for k, v in layer.items()})
    else:
        print(json.dumps({n: summary(p) for n, p in params.items()}, indent=1))
