"""Sweeps: K models in one program equal K single runs; summaries, resume and errors."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxmlp
from jaxmlp.app._cli import main
from jaxmlp._data import MNIST, DatasetInfo
from jaxmlp._run import RunError
from jaxmlp._layout import check_memory, _estimate_bytes
from jaxmlp.app._cli import _parse_floats, _parse_seeds
from jaxmlp._sweep import Grid, format_summary, _summarize
from jaxmlp._trainer import train_many

quiet = lambda _: None


def _model(params, i):
    return [np.asarray(leaf)[i] for leaf in jax.tree.leaves(params)]


@pytest.mark.parametrize("grad, optimizer", [
    ("hand", {}), ("autodiff", {}),
    # Every part of make_optimizer at once, the lr and b1 traced per model under vmap:
    # AdamW's decoupled, masked weight decay, warm-up, then cosine decay, and clipping.
    ("hand", {"optimizer": "adamw", "weight_decay": 0.01, "warmup_steps": 10, "clip_norm": 0.5}),
    # Each model draws its own distortions and dropout masks, those of its single run; and
    # makes its own adversarial examples.
    ("hand", {"dropout": "0.2,0.5", "max_norm": 3.0, "augment": "alpha=34,sigma=4,shear=10",
              "ema": 0.9, "adversarial": 0.05}),
], ids=["sgd-hand", "sgd-autodiff", "adamw-warmup-clip", "augment-dropout-maxnorm-ema-adversarial"])
def test_independent_models_equal_single_runs(small, grad, optimizer):
    # (Compiled light, sweep and single runs alike: their agreement is what is checked.)
    half = small._replace(train_images=small.train_images[:3000],
                          train_labels=small.train_labels[:3000])
    config = jaxmlp.TrainConfig(arch="b", steps=30, grad=grad,  # past its first epoch (23)
                                **optimizer)
    # (Distortions make each step dearer: that case checks seed 5 of two models.)
    augmented = "augment" in optimizer
    grid = Grid(seeds=(0, 5), lrs=(3e-3,) if augmented else (3e-3, 1e-3) if optimizer
                else (0.1, 0.03), momenta=(0.9,))
    # Adam divides by sqrt(v): a gradient entry near 0 turns float32 rounding into more.
    atol = 2e-5 if optimizer else 2e-6
    sweep = train_many(config, grid, order="independent", data=half, log=quiet)
    for i in (1,) if augmented else (1, 2):  # seed 5 at lr 0.1; seed 0 at lr 0.03
        single = jaxmlp.train_and_evaluate(grid.configs(config)[i], data=half, log=quiet)
        assert grid.configs(config)[i].seed == grid.models()[i]["seed"]
        for a, b in zip(_model(sweep["params"], i), jax.tree.leaves(single["params"]),
                        strict=True):
            # vmap batches the matmuls: float32 sums in another order, nothing more.
            np.testing.assert_allclose(a, np.asarray(b), atol=atol, rtol=0)
        assert sweep["summary"]["models"][i]["test_acc"] == pytest.approx(
            single["test_accuracy"], abs=2e-4)


SHARDED = r"""
import json, jax, numpy as np
from jaxmlp._config import TrainConfig
from jaxmlp._data import _load_mnist
from jaxmlp._trainer import Grid, train_many
assert jax.device_count() == 4
data = _load_mnist(download=False)
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


@pytest.mark.production
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
    s = _summarize(grid, records, probs, labels)
    first, second = s["settings"]
    assert first["test_acc_mean"] == pytest.approx(0.7)
    assert first["test_acc_std"] == pytest.approx(0.2)  # sample std of 0.5, 0.7, 0.9
    assert (first["test_acc_min"], first["test_acc_max"]) == (0.5, 0.9)
    assert first["ensemble_test_acc"] == 1.0  # mean probs of example 1: 0.567 for class 1
    assert second["diverged"] == 1 and second["test_acc_mean"] == 1.0
    assert second["ensemble_test_acc"] == 0.5  # the diverged model does not vote
    assert s["best"] == {"lr": 0.1, "momentum": 0.9, "test_acc_mean": pytest.approx(0.7),
                         "ensemble_test_acc": 1.0, "setting": 0, "chosen_by": "ensemble_test_acc"}
    # One seed has no spread: null, never 0; said so in the printed table.
    one = _summarize(Grid(seeds=(0,), lrs=(0.1,), momenta=(0.9,)), records[:1], probs[:1], labels)
    assert one["settings"][0]["test_acc_std"] is None
    assert "lr 0.1, momentum 0.9, 1 seed: test accuracy 0.5000 (one model)" in format_summary(one)
    text = format_summary(s)
    assert "val_acc" not in text and "validation accuracy" not in text


def test_best_setting_is_chosen_on_validation_not_test():
    """Setting lr 0.1 wins on test, lr 0.2 on validation: with a validation split the
    validation ensemble chooses, and the test figures are only reported."""
    grid = Grid(seeds=(0, 1), lrs=(0.1, 0.2), momenta=(0.9,))
    test_accs, val_accs = [1.0, 0.5, 0.5, 0.5], [0.25, 0.75, 1.0, 0.5]
    records = [{**m, "val_acc": v, "val_loss": 0.2, "test_acc": t, "test_loss": 0.1,
                "train_acc": 0.9, "diverged": False}
               for m, t, v in zip(grid.models(), test_accs, val_accs)]
    labels = np.array([0, 1])
    # Test ensembles: lr 0.1 right twice (1.0); lr 0.2 says class 0 twice (0.5).
    probs = np.array([[[.9, .1], [.1, .9]], [[.8, .2], [.3, .7]],
                      [[.6, .4], [.9, .1]], [[.7, .3], [.6, .4]]])
    val_labels = np.array([1, 1, 0, 0])
    val_probs = np.array([[[.8, .2]] * 4, [[.4, .6]] * 4,  # lr 0.1: class 0 four times: 0.5
                          [[.1, .9], [.1, .9], [.9, .1], [.9, .1]],  # lr 0.2: right, right
                          [[.4, .6]] * 4])
    s = _summarize(grid, records, probs, labels, val_probs=val_probs, val_labels=val_labels)
    first, second = s["settings"]
    assert (first["ensemble_test_acc"], second["ensemble_test_acc"]) == (1.0, 0.5)
    assert (first["ensemble_val_acc"], second["ensemble_val_acc"]) == (0.5, 1.0)
    assert first["val_acc_mean"] == 0.5 and first["val_acc_std"] == pytest.approx(0.125 ** 0.5)
    assert (first["val_acc_min"], first["val_acc_max"]) == (0.25, 0.75)
    assert second["val_acc_mean"] == 0.75 and second["test_acc_mean"] == 0.5
    assert s["best"] == {"lr": 0.2, "momentum": 0.9, "val_acc_mean": 0.75,
                         "ensemble_val_acc": 1.0, "test_acc_mean": 0.5,
                         "ensemble_test_acc": 0.5, "setting": 1, "chosen_by": "ensemble_val_acc"}
    text = format_summary(s)
    assert "best setting (by validation ensemble): lr 0.2," in text
    assert "validation accuracy 0.5000 ± 0.3536 (min 0.2500, max 0.7500); ensemble 0.5000; " \
           "test accuracy 0.7500" in text
    # The same records without a validation split: test chooses, as before.
    plain = [{k: v for k, v in r.items() if not k.startswith("val")} for r in records]
    s = _summarize(grid, plain, probs, labels)
    assert s["best"]["lr"] == 0.1 and s["best"]["chosen_by"] == "ensemble_test_acc"
    assert "val_acc_mean" not in s["settings"][0]
    assert "best setting (by test ensemble: no validation split): lr 0.1" in format_summary(s)


def test_sweep_with_validation_split_and_lion(small, tmp_path):
    """Lion (decoupled weight decay, warm-up, clipping) with --val-size: each model is
    evaluated on the last 1000 training examples, never trained on them, and the
    validation ensemble picks the best setting."""
    config = jaxmlp.TrainConfig(arch="b", steps=60, optimizer="lion", val_size=1000,
                                warmup_steps=5, clip_norm=1.0, weight_decay=0.01)
    grid = Grid(seeds=(0, 1), lrs=(1e-3, 1e-5), momenta=(0.9,))
    lines = []
    result = train_many(config, grid, tmp_path / "sweep", data=small, log=lines.append)
    s = result["summary"]
    assert re.fullmatch(r"epoch 2, step 60: lr 0\.001, momentum 0\.9: val 0\.\d{4} ± 0\.\d{4}, "
                        r"test 0\.\d{4} ± 0\.\d{4} \| lr 1e-05, momentum 0\.9: val 0\.\d{4} ± "
                        r"0\.\d{4}, test 0\.\d{4} ± 0\.\d{4} \(4 of 4 models live\) \(\d+\.\d\ds\)",
                        lines[-1]), lines[-1]
    train = small.train_images[:5000], small.train_labels[:5000]
    val = small.train_images[5000:], small.train_labels[5000:]
    probs = {}
    for i, record in enumerate(s["models"]):
        run = jaxmlp.load_run(tmp_path / "sweep", model=i)
        assert run.info == MNIST and (run.config.lr, run.config.val_size) == (record["lr"], 1000)
        probs[i] = jaxmlp.predict(run.params, val[0], run.arch)
        assert record["val_acc"] == pytest.approx(np.mean(probs[i].argmax(1) == val[1]), abs=1e-6)
        train_acc = np.mean(jaxmlp.predict(run.params, train[0], run.arch).argmax(1) == train[1])
        assert record["train_acc"] == pytest.approx(train_acc, abs=1e-6)  # 5000, not 6000
        assert run.history[-1]["val_acc"] == record["val_acc"] and "val_loss" in run.history[0]
    for k, setting in enumerate(s["settings"]):
        members = (2 * k, 2 * k + 1)
        assert setting["val_acc_mean"] == pytest.approx(
            np.mean([s["models"][i]["val_acc"] for i in members]))
        ensemble = np.mean((probs[members[0]] + probs[members[1]]).argmax(1) == val[1])
        assert setting["ensemble_val_acc"] == pytest.approx(ensemble, abs=1e-6)
    best = max(s["settings"], key=lambda x: x["ensemble_val_acc"])
    assert s["best"]["lr"] == best["lr"] == 1e-3 and s["best"]["chosen_by"] == "ensemble_val_acc"
    assert json.loads((tmp_path / "sweep" / "summary.json").read_text()) == s
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["dataset"] == {
        "name": "mnist", "image_shape": [28, 28, 1], "num_classes": 10}
    # A sweep saved before datasets were recorded is an MNIST sweep.
    meta = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    del meta["dataset"]
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps(meta))
    assert jaxmlp.load_run(tmp_path / "sweep", model=3).info == MNIST


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    """CIFAR-100 as ``tfds.testing.mock_data`` fakes it: 3072 pixels, 100 classes (train and
    test hold the same 240 random examples), through ``load_dataset`` as a real one."""
    import tensorflow_datasets as tfds
    from jaxmlp import _data as data_module

    root = tmp_path_factory.mktemp("cifar100")
    with pytest.MonkeyPatch.context() as mp, tfds.testing.mock_data(num_examples=240):
        mp.setattr(data_module, "_check_reachable", lambda *args, **kwargs: None)
        return data_module.load_dataset("cifar100", data_dir=root, cache_dir=root / "cache")


def test_sweep_on_another_dataset(cifar100, tmp_path, capsys):
    info = DatasetInfo("cifar100", (32, 32, 3), 100)
    assert cifar100.info == info and cifar100.train_images.shape == (240, 3072)
    out = tmp_path / "sweep"
    config = jaxmlp.TrainConfig(arch="16:relu,100:linear", dataset="cifar100", steps=8,
                                batch_size=32, val_size=40, schedule="constant")
    with pytest.raises(ValueError, match="the output layer has 10 units but cifar100 has 100"):
        train_many(dataclasses.replace(config, arch="b"), Grid((0,), (0.1,), (0.9,)), out,
                   data=cifar100, log=quiet)
    assert not out.exists()  # a start that fails leaves nothing
    with pytest.raises(ValueError, match="`warmup_steps` 8 is not shorter than the run"):
        train_many(dataclasses.replace(config, warmup_steps=8), Grid((0,), (0.1,), (0.9,)), out,
                   data=cifar100, log=quiet)
    assert not out.exists()
    # One setting diverges: its models' probabilities (100 classes) take no part.
    grid = Grid(seeds=(0, 1), lrs=(0.01, 1e30), momenta=(0.9,))
    s = train_many(config, grid, out, data=cifar100, log=quiet)["summary"]
    assert [m["diverged"] for m in s["models"]] == [False, False, True, True]
    assert s["settings"][1]["ensemble_val_acc"] is None and s["best"]["lr"] == 0.01
    for i in (0, 1):
        run = jaxmlp.load_run(out, model=i)
        assert run.info == info and run.config.dataset == "cifar100"
        assert run.params[0]["w"].shape == (3072, 16) and run.params[1]["w"].shape == (16, 100)
        probs = jaxmlp.predict(run.params, cifar100.test_images, run.arch)
        assert probs.shape == (240, 100)
        assert np.mean(probs.argmax(1) == cifar100.test_labels) == pytest.approx(
            s["models"][i]["test_acc"], abs=1e-6)
    # The data's own dataset must be the config's.
    with pytest.raises(ValueError, match="the data given is cifar100"):
        train_many(jaxmlp.TrainConfig(steps=2), grid, data=cifar100, log=quiet)


def test_grid_parsing(tmp_path, capsys):
    assert _parse_seeds("4") == (0, 1, 2, 3) and _parse_seeds("0,3,7") == (0, 3, 7)
    # One seed alone is a list of one, written with a trailing comma as Python writes it
    # (a count names seeds 0 to N-1); one trailing comma only: "9,," is a typo.
    assert _parse_seeds("7,") == (7,) and _parse_seeds("0,3,") == (0, 3)
    # The flags are only parsed; the values' rules are the Grid's, said in the flags' words.
    assert _parse_seeds("1,1") == (1, 1) and _parse_floats("0.1,0.1", "lr") == (0.1, 0.1)
    for flag, value, said in [("--seeds", "3,1,3", "--seeds must list each value once, got 3 "
                               "twice"),
                              ("--lr", "0.1,0.1", "--lr must list each value once, got 0.1 twice"),
                              ("--momentum", "0.5,1", r"--momentum must be a number in \[0, 1\)")]:
        assert main(["sweep", flag, value, "--out", str(tmp_path / "s")]) == 2
        assert re.search(said, capsys.readouterr().err)
    assert not (tmp_path / "s").exists()
    assert _parse_floats("0.02,0.05", "lr") == (0.02, 0.05)
    for text, message in [("0", "a count from 1 to 100000"), ("a,b", r"a count \(16\) or a list"),
                          ("100001", "a count from 1 to 100000"),
                          ("9,,", r"or a list \(0,3,7; 7, for seed 7 alone\), got '9,,'"),
                          ("", "a count"),
                          ("0,,1", "or a list"), (",", "or a list")]:
        with pytest.raises(ValueError, match=message):
            _parse_seeds(text)
    for text in ("fast", "", "0.1,,0.2", ","):  # an empty item is a typo, not a default
        with pytest.raises(ValueError, match="--lr takes numbers"):
            _parse_floats(text, "lr")
    # A grid too large to even list is refused before its configs are built.
    with pytest.raises(ValueError, match="the grid has 200000 models, more than 100000"):
        Grid(tuple(range(100_000)), (0.1, 0.2), (0.9,))
    grid = Grid((0, 1), (0.1, 0.2), (0.8, 0.9))
    assert len(grid.models()) == 8 and grid.models()[1] == {"seed": 1, "lr": 0.1, "momentum": 0.8}
    # Memory grows linearly in K (params, optimizer state, gradients, activations per model).
    config = jaxmlp.TrainConfig(arch="wide")
    size = lambda k, config=config, in_dim=784: _estimate_bytes(
        config, k, "shared", in_dim=in_dim, num_examples=70_000)
    one, eight = size(1), size(8)
    assert 7 * (one - size(0)) == pytest.approx(eight - one, rel=1e-9)
    # Adam holds two moments where SGD holds one momentum; CIFAR's inputs are 4x MNIST's.
    params = (784 + 1) * 1024 + (1024 + 1) * 1024 + (1024 + 1) * 10
    assert size(1, jaxmlp.TrainConfig(arch="wide", optimizer="adam")) - one == 4 * params
    assert size(0, in_dim=3072) - size(0) == (3072 - 784) * (128 * 4 + 70_000)


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
    assert f"{out} already holds a sweep (" in capsys.readouterr().err
    # train pointed at it is told the command that resumes it.
    assert main(["train", "--steps", "5", "--out", str(out)]) == 2
    assert f"resume it with jaxmlp sweep --resume {out}, replace it" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(out), "--lr", "0.2"]) == 2
    assert "--resume cannot change the grid" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(out), "--steps", "100", "--quiet"]) == 0
    capsys.readouterr()
    straight = train_many(jaxmlp.TrainConfig(arch="a", steps=100, schedule="constant"),
                          Grid((0, 1), (0.1, 0.05), (0.9,)), data=mnist, log=quiet)
    resumed = jaxmlp.load_run(out, model=3)
    np.testing.assert_array_equal(resumed.params[0]["w"],
                                  np.asarray(straight["params"][0]["w"])[3])


def test_sweep_failures_are_one_line(env, tmp_path, capsys):
    out = tmp_path / "sweep"
    for args, message in [
            (["--seeds", "0"], "--seeds takes a count from 1 to 100000 (3: seeds 0, 1, 2) or a "
             "list (0,3,7; 7, for seed 7 alone), got '0'"),
            (["--seeds", "0,,1"], "--seeds takes a count (16) or a list (0,3,7; 7, for seed 7 "
             "alone), got '0,,1'"),
            (["--seeds", ","], "--seeds takes a count (16) or a list (0,3,7; 7, for seed 7 "
             "alone), got ','"),
            (["--lr", "0.1,-1"], "--lr must be a positive number, got -1.0"),
            (["--seeds", "0,99999999999999999999999"],
             "--seeds must be an int in [0, 2**32), got 999… (23 digits)"),
            (["--momentum", "0.9,0.9"], "--momentum must list each value once"),
            (["--arch", "50:relu,5:linear"], "the output layer has 5 units"),
            (["--arch", "4096:relu,10:linear", "--seeds", "4096"], "4096 models of "
             "4096:relu,10:linear on mnist need about"),
            (["--warmup-steps", "5"], "--warmup-steps 5 is not shorter than the run (5 steps)"),
            (["--val-size", "60000"], "--val-size 60000 leaves no training examples"),
            (["--val-size", "59990"], "--batch-size 128 is larger than the 10 training examples "
                                      "(--val-size 59990 holds out the rest)"),
            # 1 device, or one per core if this test is the first to start JAX (cli._sweep)
            (["--devices", "3"], "asked for 3 devices but only")]:
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


def test_a_sweep_stops_at_its_target_once_every_live_model_reached_it(mnist, capsys):
    config = jaxmlp.TrainConfig(arch="b", epochs=3, target_accuracy=0.9)
    both = train_many(config, Grid((0, 1), (0.1,), (0.9,)), data=mnist)
    assert both["steps"] == 468 and min(
        m["test_acc"] for m in both["history"][-1]["models"]) >= 0.9
    assert "reached test accuracy" in capsys.readouterr().out
    # A model that learns nothing at lr 1e-6 keeps the sweep going to its end.
    slow = train_many(config, Grid((0,), (0.1, 1e-6), (0.9,)), data=mnist)
    assert slow["steps"] == 3 * 468 and slow["history"][0]["models"][0]["test_acc"] >= 0.9


def test_a_sweep_takes_seeds_not_seed(capsys):
    with pytest.raises(SystemExit):  # not read as an abbreviation of --seeds
        main(["sweep", "--seed", "3"])
    assert ("unrecognized arguments: --seed 3 (a sweep takes --seeds: a count or a list)"
            in capsys.readouterr().err)


def test_cpu_devices_share_the_hosts_memory(mnist):
    # A sweep on CPU makes one XLA device per core; each reports the whole host's memory,
    # which the cores share: two of them must not count it twice.
    import types

    from jaxmlp._layout import _available_bytes

    host = _available_bytes(jax.devices("cpu")[0])
    cores = [types.SimpleNamespace(platform="cpu", memory_stats=lambda: None)] * 2
    config = jaxmlp.TrainConfig(arch="wide")
    per_model = _estimate_bytes(config, 1, "shared", in_dim=784, num_examples=0) - \
        _estimate_bytes(config, 0, "shared", in_dim=784, num_examples=0)
    k = int(1.2 * host / per_model)  # over 80% of the host, under 160%
    with pytest.raises(ValueError, match=f"{k} models of wide on mnist need about .* GiB, more "
                                         r"than 80% of the .* GiB available"):
        check_memory(config, k, "shared", mnist, cores)
    check_memory(config, k // 4, "shared", mnist, cores)  # 30% of the host: fits


def test_sweep_models_from_the_command_line_and_their_faults(env, tmp_path, capsys):
    """Issue 15: a diverged model is refused, not loaded as NaN; --resume ignores no --out;
    eval/predict name a sweep's model with --model I; help speaks of sweeps only."""
    out = tmp_path / "sweep"
    assert main(["sweep", "--arch", "b", "--steps", "30", "--lr", "0.05,1e30", "--schedule",
                 "constant", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    with pytest.raises(RunError, match=r"model 1 of the sweep in .* diverged: it has no usable"):
        jaxmlp.load_run(out, model=1)
    for model in ("1", True, 1.0):
        with pytest.raises(RunError, match="model must be an integer index"):
            jaxmlp.load_run(out, model=model)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["sweep", "--resume", str(out), "--out", str(tmp_path / "b"), "--steps",
                 "60"]) == 2
    assert "--resume DIR writes to DIR; drop --out" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / "b").exists()
    # eval and predict: a sweep's folder needs --model, named as a command, not as Python.
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds a sweep: name one of its models with --model I" in err
    assert "load_run" not in err and err.count("\n") == 1
    assert main(["eval", str(out), "--model", "1"]) == 2
    assert "diverged" in capsys.readouterr().err
    assert main(["eval", str(out), "--model", "0"]) == 0
    report = json.loads((out / "models" / "0" / "eval.json").read_text())
    said = capsys.readouterr().out
    assert f"test accuracy {report['test_acc']:.4f}" in said
    assert f"wrote {out}/models/0/eval.json, confusion.png" in said  # where it wrote them
    assert jaxmlp.load_run(out, model=0).evaluation == report
    digit = tmp_path / "digit.npy"
    np.save(digit, np.zeros((28, 28), np.uint8))
    assert main(["predict", str(out), "--model", "0", "--json", str(digit)]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == str(digit)
    # A link planted as models/ would lead eval's files outside the folder: refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(out / "models")
    (out / "models").symlink_to(outside)
    assert main(["eval", str(out), "--model", "0"]) == 1
    assert "is a symbolic link" in capsys.readouterr().err and not any(outside.iterdir())
    # The sweep's help describes a sweep: its target, its own device rule, train's flags
    # (the multi-host ones too: its models split over the processes, issue 29).
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal
    assert "stop once every live model's validation (else test) accuracy" in text
    assert "default: all" not in text and "as many as divide" in text
    assert "--no-progress" in text and "--coordinator" in text and "--distributed" in text


def test_the_one_loop_gives_a_sweep_every_feature_of_a_single_run(small, tmp_path, capsys):
    """iter lines, the progress bar, startup and evaluation times, Ctrl-C that keeps the
    finished epochs, and a bit-exact resume: the loop of `jaxmlp train` is the sweep's."""
    from jaxmlp._trainer import TrainingInterrupted

    config = jaxmlp.TrainConfig(arch="b", epochs=3, log_every=20)  # 46 steps an epoch
    grid = Grid((0, 1), (0.1,), (0.9,))
    whole = train_many(config, grid, tmp_path / "whole", data=small, progress=True)
    out, err = capsys.readouterr()
    assert "iter 0, J=" in out and "iter 40, J=" in out and "(mean of 2 models)" in out
    assert "138/138" in err  # tqdm's bar, on stderr, to the last step
    first = whole["history"][0]
    assert first["startup_seconds"] > 0 and first["eval_seconds"] > 0
    assert "startup_seconds" not in whole["history"][1]

    def stop_after_epoch_2(line):
        if line.startswith("epoch 2,"):
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as stopped:
        train_many(config, grid, tmp_path / "cut", data=small, log=stop_after_epoch_2)
    assert stopped.value.step == 92  # epoch 2 was saved before it was announced
    resumed = train_many(config, grid, tmp_path / "cut", data=small, resume=True, log=quiet)
    for a, b in zip(jax.tree.leaves(whole["params"]), jax.tree.leaves(resumed["params"])):
        np.testing.assert_array_equal(a, b)
    assert [h["step"] for h in resumed["history"]] == [46, 92, 138]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_sweep_s_model_with_ema_loads_its_average(optimizer, tmp_path):
    # The average lives in the optimizer state, where the chain put it (after max-norm, and
    # beside SGD's trace or Adam's moments): load_run finds it by the optimizer's own
    # structure (_run._ema_name), and it is what the sweep evaluated and returned.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, 96).astype(np.int32)
    data = jaxmlp.Dataset(images[:64], labels[:64], images[64:], labels[64:])
    config = jaxmlp.TrainConfig(arch="8:relu,10:linear", steps=6, batch_size=16, ema=0.5,
                                max_norm=1.0, optimizer=optimizer, train_eval_size=16)
    grid = Grid(seeds=(0, 1), lrs=(0.05,), momenta=(0.9,))
    sweep = train_many(config, grid, tmp_path / "sweep", data=data, log=quiet)
    for i in range(2):
        run = jaxmlp.load_run(tmp_path / "sweep", model=i)
        last = [np.asarray(leaf) for leaf in jax.tree.leaves(run.params)]
        for a, b in zip(_model(sweep["params"], i), last, strict=True):
            np.testing.assert_array_equal(a, b)
    with np.load(tmp_path / "sweep" / "checkpoint.npz") as saved:  # not the last weights
        assert not np.array_equal(saved["params/0/w"][1], _model(sweep["params"], 1)[1])


def test_an_epoch_line_speaks_per_setting_validation_first():
    from types import SimpleNamespace

    from jaxmlp._sweep import Stack

    def line(lrs, accs, splits=("train", "val", "test")):
        grid = Grid(seeds=(0, 1), lrs=lrs, momenta=(0.9,))
        models = [{"diverged": a is None, "val_acc": a, "test_acc": None if a is None else a + 0.01}
                  for a in accs]
        return Stack.describe(SimpleNamespace(grid=grid), {"models": models}, list(splits))

    # Issue 26: one diverged setting no longer hides in "0.7295 ± 0.3898 over 8 models".
    assert line((0.05, 0.1), [0.9, 0.92, None, None]) == (
        "lr 0.05, momentum 0.9: val 0.9100 ± 0.0141, test 0.9200 ± 0.0141 | "
        "lr 0.1, momentum 0.9: diverged (2 of 4 models live)")
    assert line((0.05,), [0.5, 0.5], splits=("train", "test")) == (
        "lr 0.05, momentum 0.9: test 0.5100 ± 0.0000 (2 of 2 models live)")
    assert line((0.05,), [0.5, None], splits=("train", "test")) == (  # one live seed: no ±
        "lr 0.05, momentum 0.9: test 0.5100 (1 of 2 models live)")
    many = line((1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3), [0.8, 0.8, 0.9, 0.9, 0.95, 0.95, 0.97,
                                                     0.97, 0.96, 0.96, 0.1, 0.1])
    assert many.split(" | ")[:4] == [
        "lr 0.003, momentum 0.9: val 0.9000 ± 0.0000, test 0.9100 ± 0.0000",
        "lr 0.01, momentum 0.9: val 0.9500 ± 0.0000, test 0.9600 ± 0.0000",
        "lr 0.03, momentum 0.9: val 0.9700 ± 0.0000, test 0.9800 ± 0.0000",
        "lr 0.1, momentum 0.9: val 0.9600 ± 0.0000, test 0.9700 ± 0.0000"]
    assert many.endswith("… the best 4 of 6 settings by val accuracy (12 of 12 models live)")
