"""Sweeps: K models in one program equal K single runs; summaries, resume and errors."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxmlp
from jaxmlp.cli import main
from jaxmlp.run import RunError
from jaxmlp.sweep import Grid, estimate_bytes, parse_floats, parse_seeds, summarize, train_many

quiet = lambda _: None


@pytest.fixture(scope="module")
def small(mnist):
    """A tenth of MNIST: these tests compare models, they need not train them well."""
    return mnist._replace(train_images=mnist.train_images[:6000],
                          train_labels=mnist.train_labels[:6000],
                          test_images=mnist.test_images[:2000], test_labels=mnist.test_labels[:2000])


def _model(params, i):
    return [np.asarray(leaf)[i] for leaf in jax.tree.leaves(params)]


@pytest.mark.mnist
@pytest.mark.parametrize("grad", ["hand", "autodiff"])
def test_independent_models_equal_single_runs(small, grad):
    config = jaxmlp.TrainConfig(arch="b", steps=50, grad=grad)  # past the slice's first epoch
    grid = Grid(seeds=(0, 5), lrs=(0.1, 0.03), momenta=(0.9,))
    sweep = train_many(config, grid, order="independent", data=small, log=quiet)
    for i in (1, 2):  # seed 5 at lr 0.1; seed 0 at lr 0.03
        single = jaxmlp.train_and_evaluate(grid.configs(config)[i], data=small, log=quiet)
        assert grid.configs(config)[i].seed == grid.models()[i]["seed"]
        for a, b in zip(_model(sweep["params"], i), jax.tree.leaves(single["params"]),
                        strict=True):
            # vmap batches the matmuls: float32 sums in another order, nothing more.
            np.testing.assert_allclose(a, np.asarray(b), atol=2e-6, rtol=0)
        assert sweep["summary"]["models"][i]["test_acc"] == pytest.approx(
            single["test_accuracy"], abs=2e-4)


SHARDED = r"""
import json, jax, numpy as np
from jaxmlp.config import TrainConfig
from jaxmlp.data import load_mnist
from jaxmlp.sweep import Grid, train_many
assert jax.device_count() == 4
data = load_mnist(download=False)
data = data._replace(train_images=data.train_images[:4000], train_labels=data.train_labels[:4000],
                     test_images=data.test_images[:1000], test_labels=data.test_labels[:1000])
out = {}
for order in ("independent",):  # the order whose batches are gathered per model, sharded
    runs = [train_many(TrainConfig(arch="b", steps=20, devices=d), Grid((0, 1), (0.1, 0.05), (0.9,)),
                       order=order, data=data, log=lambda _: None) for d in (1, 4)]
    leaves = [jax.tree.leaves(r["params"]) for r in runs]
    out[order] = max(float(np.max(np.abs(a - b))) for a, b in zip(*leaves))
    out[order + "_spread"] = float(np.std(leaves[0][0]))
print("RESULT", json.dumps(out))
"""


@pytest.mark.mnist
def test_sharded_sweep_equals_unsharded(tfds_dir, cache_dir, mnist):
    env = {**os.environ, "TFDS_DATA_DIR": str(tfds_dir), "JAXMLP_CACHE_DIR": str(cache_dir),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ")[1])
    for order in ("independent",):
        # Models do not talk to each other: each device computes its own models alone.
        assert out[order] <= 1e-6 and out[order + "_spread"] > 0.01, out


def test_summary_statistics_and_ensembles_by_hand():
    grid = Grid(seeds=(0, 1, 2), lrs=(0.1, 0.2), momenta=(0.9,))
    accs = [0.5, 0.7, 0.9, 1.0, 1.0, 1.0]
    records = [{**m, "test_acc": a, "test_loss": 0.1, "train_acc": a, "diverged": False}
               for m, a in zip(grid.models(), accs)]
    records[5] = {**records[5], "test_acc": None, "diverged": True}
    labels = np.array([0, 1])
    # Setting 1's seeds: two vote wrongly on example 1 with low confidence, one rightly with high.
    probs = np.array([[[.9, .1], [.6, .4]], [[.9, .1], [.6, .4]], [[.9, .1], [.1, .9]],
                      [[.1, .9], [.2, .8]], [[.6, .4], [.2, .8]], [[1, 0], [0, 1]]])
    s = summarize(grid, records, probs, labels)
    first, second = s["settings"]
    assert first["test_acc_mean"] == pytest.approx(0.7)
    assert first["test_acc_std"] == pytest.approx(0.2)  # sample std of 0.5, 0.7, 0.9
    assert (first["test_acc_min"], first["test_acc_max"]) == (0.5, 0.9)
    assert first["ensemble_test_acc"] == 1.0  # mean probs of example 1: 0.567 for class 1
    assert second["diverged"] == 1 and second["test_acc_mean"] == 1.0
    assert second["ensemble_test_acc"] == 0.5  # the diverged model does not vote
    assert s["best"] == {"lr": 0.1, "momentum": 0.9, "test_acc_mean": pytest.approx(0.7),
                         "ensemble_test_acc": 1.0}


def test_grid_parsing():
    assert parse_seeds("4") == (0, 1, 2, 3) and parse_seeds("0,3,7") == (0, 3, 7)
    assert parse_seeds("9,") == (9,)
    assert parse_floats("0.02,0.05", "lr") == (0.02, 0.05)
    for text, message in [("0", "a count >= 1"), ("a,b", r"a count \(16\) or a list"),
                          ("1,1", "each seed once")]:
        with pytest.raises(ValueError, match=message):
            parse_seeds(text)
    with pytest.raises(ValueError, match="--lr takes numbers"):
        parse_floats("fast", "lr")
    grid = Grid((0, 1), (0.1, 0.2), (0.8, 0.9))
    assert len(grid.models()) == 8 and grid.models()[1] == {"seed": 1, "lr": 0.1, "momentum": 0.8}
    # Memory grows linearly in K (params, momentum, gradients, activations per model).
    one, eight = (estimate_bytes("wide", k, 128, "shared") for k in (1, 8))
    assert 7 * (one - estimate_bytes("wide", 0, 128, "shared")) == pytest.approx(
        eight - one, rel=1e-9)


@pytest.fixture
def env(tfds_dir, cache_dir, mnist, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(cache_dir))


@pytest.mark.mnist
def test_sweep_command_loads_resumes_and_refuses(env, mnist, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--arch", "a", "--seeds", "2", "--lr", "0.1,0.05", "--schedule",
            "constant", "--out", str(out)]
    assert main([*args, "--steps", "50"]) == 0
    printed = capsys.readouterr().out
    assert "lr 0.1, momentum 0.9, 2 seeds: test accuracy 0." in printed and "ensemble" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [(m["seed"], m["lr"]) for m in summary["models"]] == [
        (0, 0.1), (1, 0.1), (0, 0.05), (1, 0.05)]
    run = jaxmlp.load_run(out, model=2)
    assert (run.config.seed, run.config.lr, run.config.steps) == (0, 0.05, 50)
    probs = jaxmlp.predict(run.params, mnist.test_images, run.arch)
    assert np.mean(probs.argmax(1) == mnist.test_labels) == pytest.approx(
        summary["models"][2]["test_acc"], abs=1e-6)
    assert run.history[-1]["test_acc"] == summary["models"][2]["test_acc"]
    with pytest.raises(RunError, match="holds a sweep: load one of its models"):
        jaxmlp.load_run(out)
    # A second sweep on the folder is refused; a resume may only change the length.
    assert main([*args, "--steps", "50"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(out), "--lr", "0.2"]) == 2
    assert "--resume cannot change the grid" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(out), "--steps", "100", "--quiet"]) == 0
    capsys.readouterr()
    straight = train_many(jaxmlp.TrainConfig(arch="a", steps=100, schedule="constant"),
                          Grid((0, 1), (0.1, 0.05), (0.9,)), data=mnist, log=quiet)
    resumed = jaxmlp.load_run(out, model=3)
    np.testing.assert_array_equal(resumed.params[0]["w"],
                                  np.asarray(straight["params"][0]["w"])[3])


@pytest.mark.mnist
def test_sweep_failures_are_one_line(env, tmp_path, capsys):
    out = tmp_path / "sweep"
    for args, message in [
            (["--seeds", "0"], "--seeds takes a count >= 1"),
            (["--lr", "0.1,-1"], "learning rate must be positive, got -1.0"),
            (["--arch", "50:relu,5:linear"], "the output layer has 5 units"),
            (["--arch", "4096:relu,10:linear", "--seeds", "4096"], "4096 models of "
             "4096:relu,10:linear need about"),
            (["--devices", "3"], "asked for 3 devices but only 1 is available")]:
        assert main(["sweep", "--steps", "5", "--out", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxmlp sweep: error: ") and message in err, err
        assert err.count("\n") == 1 and not out.exists()
    # One model diverging does not stop the others.
    assert main(["sweep", "--arch", "b", "--steps", "30", "--lr", "0.05,1e30", "--schedule",
                 "constant", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [m["diverged"] for m in summary["models"]] == [False, True]
    assert summary["best"]["lr"] == 0.05 and "every model diverged" in capsys.readouterr().out
