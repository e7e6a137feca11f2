"""Training on real MNIST: it learns, both gradient paths agree, resume is exact."""
import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxmlp._checkpoint import load_checkpoint, save_checkpoint
from jaxmlp._config import TrainConfig
from jaxmlp._trainer import train_and_evaluate
from jaxmlp._trainer import TrainingDiverged



def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_one_epoch_learns(mnist, tmp_path):
    lines = []
    result = train_and_evaluate(TrainConfig(arch="b", epochs=1, log_every=100), tmp_path,
                                data=mnist, log=lines.append)
    (record,) = result["history"]
    # From chance (J ≈ ln 10 ≈ 2.3, 10%) to a real classifier in one epoch.
    assert record["test_acc"] >= 0.93 and record["train_acc"] >= 0.93
    assert record["test_loss"] < 0.3 and record["train_loss"] < 0.3
    iters = [l for l in lines if l.startswith("iter ")]
    assert iters[0].startswith("iter 0, J=2.") and iters[1].startswith("iter 100, J=")
    assert len(iters) == 5  # steps 0, 100, ..., 400 of 468
    first, last = (float(l.split("J=")[1].split(",")[0]) for l in (iters[0], iters[-1]))
    assert last < first / 4


def test_hand_and_autodiff_trajectories_agree(small):
    runs = {g: train_and_evaluate(TrainConfig(arch="c", epochs=4, grad=g), data=small,
                                  log=lambda _: None) for g in ("hand", "autodiff")}
    hand, auto = (_leaves(runs[g]["params"]) for g in ("hand", "autodiff"))
    # 184 float32 SGD steps. On XLA:CPU today the two paths are bitwise equal (the hand
    # backward lowers to the same matmuls); the tolerance allows another backend's
    # reordering of float32 sums, and is far below any real gradient error.
    for a, b in zip(hand, auto, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    np.testing.assert_allclose([h["test_loss"] for h in runs["hand"]["history"]],
                               [h["test_loss"] for h in runs["autodiff"]["history"]], rtol=1e-4)


def test_adversarial_training_by_hand_and_autodiff_agree_and_learns(small):
    # Goodfellow et al. 2015's objective: both gradient paths give one trajectory, and it is
    # not the plain run's (the second pass counts).
    # (Preset b: c's ReLU outputs die under it, 36% after 2 epochs against 90% without.)
    runs = {g: train_and_evaluate(TrainConfig(arch="b", epochs=2, grad=g, adversarial=0.05),
                                  data=small, log=lambda _: None) for g in ("hand", "autodiff")}
    plain = train_and_evaluate(TrainConfig(arch="b", epochs=2), data=small, log=lambda _: None)
    hand, auto, base = (_leaves(r["params"]) for r in (runs["hand"], runs["autodiff"], plain))
    for a, b in zip(hand, auto, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(hand, base)) > 1e-2
    assert runs["hand"]["history"][-1]["test_acc"] > 0.85  # 0.895 (0.906 without)


class Killed(Exception):
    pass


def _kill_after_epoch(n):
    def log(line):
        if line.startswith(f"epoch {n},"):
            raise Killed(line)
    return log


@pytest.mark.parametrize("config", [
    TrainConfig(arch="b", epochs=2, lr=0.05),
    # Every optimizer part with state or a schedule: Adam's moments, AdamW's masked decay,
    # clipping, a warm-up that the resumed half must continue; and a validation split.
    # (On a fifth of MNIST: 54 steps an epoch, the warm-up ending in the second.)
    TrainConfig(arch="b", epochs=2, optimizer="adamw", warmup_steps=80, clip_norm=1.0,
                val_size=5000),
    # The recipes' parts: distortions and dropout's masks (both drawn per step), max-norm,
    # label smoothing and LeCun's tanh.
    pytest.param(  # distortions of 24,000 images: long enough that XLA's optimisation pays
        TrainConfig(arch="64:lecun_tanh,10:linear", epochs=2, dropout="0.2,0.5", max_norm=2.0,
                    label_smoothing=0.1, augment="alpha=34,sigma=4,rotation=10,translation=2",
                    ema=0.99, adversarial=0.05), marks=pytest.mark.production),
], ids=["sgd", "adamw-warmup-clip-val", "augment-dropout-maxnorm-smoothing-ema-adversarial"])
def test_killed_run_resumes_exactly(mnist, tmp_path, config):
    # Cosine schedule over the whole run: the resumed half must pick up mid-schedule.
    mnist = mnist._replace(train_images=mnist.train_images[:12_000],
                           train_labels=mnist.train_labels[:12_000])
    straight = train_and_evaluate(config, tmp_path / "straight", data=mnist, log=lambda _: None)
    with pytest.raises(Killed):
        train_and_evaluate(config, tmp_path / "split", data=mnist, log=_kill_after_epoch(1))
    resumed = train_and_evaluate(config, tmp_path / "split", resume=True, data=mnist,
                                 log=lambda _: None)
    for a, b in zip(_leaves(straight["params"]), _leaves(resumed["params"]), strict=True):
        np.testing.assert_array_equal(a, b)
    untimed = lambda history: [{k: v for k, v in h.items() if not k.endswith("_seconds")}
                               for h in history]
    assert untimed(resumed["history"]) == untimed(straight["history"])
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]


def test_one_plus_one_epochs_equal_two(small, tmp_path):
    # A finished 1-epoch run extended to 2 (constant learning rate: no horizon to move).
    quiet = lambda _: None
    config = TrainConfig(arch="b", epochs=2, lr=0.05, schedule="constant", momentum=0.5)
    straight = train_and_evaluate(config, tmp_path / "straight", data=small, log=quiet)
    train_and_evaluate(TrainConfig(arch="b", epochs=1, lr=0.05, schedule="constant", momentum=0.5),
                       tmp_path / "split", data=small, log=quiet)
    resumed = train_and_evaluate(config, tmp_path / "split", resume=True, data=small, log=quiet)
    for a, b in zip(_leaves(straight["params"]), _leaves(resumed["params"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_divergence_stops_and_keeps_last_good_checkpoint(small, tmp_path):
    quiet = lambda _: None
    config = TrainConfig(arch="a", epochs=2, lr=0.1)
    train_and_evaluate(TrainConfig(arch="a", epochs=1, lr=0.1), tmp_path, data=small, log=quiet)
    good = (tmp_path / "checkpoint.npz").read_bytes()
    # Poison the saved state (params and momentum): the next epoch's loss is NaN.
    with np.load(tmp_path / "checkpoint.npz") as f:
        arrays = {k: f[k].copy() for k in f.files}
    arrays["params/0/w"][0, 0] = arrays["opt_state/0/trace/0/w"][0, 0] = np.nan
    np.savez(tmp_path / "checkpoint.npz", **arrays)
    poisoned = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 46 \(epoch 2\).*"
                                                r"last good checkpoint \(step 46\)"):
        train_and_evaluate(config, tmp_path, resume=True, data=small, log=quiet)
    # Nothing was written over the checkpoint the run resumed from.
    assert (tmp_path / "checkpoint.npz").read_bytes() == poisoned != good


def test_adam_with_a_validation_split_stops_on_validation_accuracy(mnist, tmp_path):
    # The test labels are shuffled here, so test accuracy stays near chance: a target met
    # after the first epoch can only have been met on the validation split.
    rng = np.random.default_rng(0)
    data = mnist._replace(test_labels=rng.permutation(mnist.test_labels))
    config = TrainConfig(arch="b", epochs=3, optimizer="adam", lr=1e-3, val_size=5000,
                         target_accuracy=0.9)
    lines = []
    result = train_and_evaluate(config, tmp_path, data=data, log=lines.append)
    (record,) = result["history"]  # stopped after epoch 1 of 3
    assert record["step"] == 55_000 // 128  # 5000 held out: fewer steps per epoch
    assert record["val_acc"] >= 0.9 and record["test_acc"] < 0.2
    assert result["val_accuracy"] == record["val_acc"]
    assert any(l.startswith("reached validation accuracy") for l in lines)
    assert any("| val J=" in l for l in lines)
    saved = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert saved["val_acc"] == record["val_acc"] and "val_loss" in saved
    # The held-out examples are the last 5000 of the training split, scored as such.
    from jaxmlp._metrics import evaluate
    from jaxmlp._arch import parse_arch

    held = evaluate(result["params"], mnist.train_images[-5000:], mnist.train_labels[-5000:],
                    parse_arch("b"))
    assert held["accuracy"] == pytest.approx(record["val_acc"], abs=1e-6)
    # Resumed for more epochs, the run is still done: it stopped at its target, and says so.
    lines.clear()
    again = train_and_evaluate(dataclasses.replace(config, epochs=5), tmp_path, resume=True,
                               data=data, log=lines.append)
    assert again["steps"] == record["step"] and len(again["history"]) == 1
    assert lines[-1].startswith(f"the run stopped at its target at step {record['step']} "
                                f"(val_acc {record['val_acc']:.4f} >= 0.9): nothing to do")
    # Without a validation split the same target looks at the test accuracy: never met.
    config = TrainConfig(arch="b", epochs=2, optimizer="adam", lr=1e-3, target_accuracy=0.9)
    assert len(train_and_evaluate(config, data=data, log=lambda _: None)["history"]) == 2


def test_huge_learning_rate_diverges_with_clear_error(small):
    with pytest.raises(TrainingDiverged, match=r"Try a smaller `lr`\.$"):
        train_and_evaluate(TrainConfig(arch="b", epochs=1, lr=1e30, schedule="constant"),
                           data=small, log=lambda _: None)
    with pytest.raises(TrainingDiverged, match=r"Try a smaller `lr` or `weight_decay`\.$"):
        train_and_evaluate(TrainConfig(arch="a", steps=20, weight_decay=1e6), data=small,
                           log=lambda _: None)


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    state = {"params": [{"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3, np.float32)}],
             "step": np.int32(7)}
    save_checkpoint(tmp_path / "c.npz", state)
    back = load_checkpoint(tmp_path / "c.npz", state)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(_leaves(back), _leaves(state)):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away
    with np.load(tmp_path / "c.npz") as f:  # readable names, not arr_0, arr_1, ...
        assert sorted(f.files) == ["params/0/b", "params/0/w", "step"]
    # The names it lacks are jaxmlp's own; the ones it holds besides are counted, not quoted.
    with pytest.raises(ValueError, match=r"does not fit this run \(missing \['a', 'b'\], "
                                         r"3 arrays it does not need\)"):
        load_checkpoint(tmp_path / "c.npz", {"a": np.zeros(1), "b": np.zeros(1)})
    with pytest.raises(ValueError, match=r"params/0/b is \(3,\) float32, expected \(4,\)"):
        load_checkpoint(tmp_path / "c.npz", {"params": [{"b": np.zeros(4, np.float32),
                                                         "w": np.zeros((2, 3))}], "step": 0})
    with pytest.raises(FileNotFoundError, match="no file"):
        load_checkpoint(tmp_path / "missing.npz", state)


def test_bad_configs(mnist):
    with pytest.raises(ValueError, match="`batch_size` 60001 is larger than the 60000"):
        train_and_evaluate(TrainConfig(batch_size=60001), data=mnist)
    # Settings that can never work are refused when the config is built (tests/test_config.py
    # has more); those that depend on the data, when training starts.
    for settings, message in [(dict(lr=-0.1), "`lr` must be positive"),
                              (dict(arch="7:gelu"), "unknown activation 'gelu'"),
                              (dict(grad="numeric"), "`grad` must be one of"),
                              (dict(momentum=1.0), "`momentum` must be in"),
                              (dict(epochs=0), "`epochs` must be >= 1")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**settings)
    for config, message in [(TrainConfig(epochs=1, warmup_steps=500),
                             "`warmup_steps` 500 is not shorter than the run"),
                            (TrainConfig(val_size=60000), "`val_size` 60000 leaves no training"),
                            (TrainConfig(dataset="fashion_mnist"), "the data given is mnist"),
                            (TrainConfig(arch="50:relu,12:linear"),
                             "the output layer has 12 units but mnist has 10 classes: end "
                             r"`arch` with a layer of 10 units \(e.g. `arch` "
                             "'50:relu,10:linear'\\)")]:
        with pytest.raises(ValueError, match=message):
            train_and_evaluate(config, data=mnist)


def test_shuffle_is_a_keyed_permutation():
    from jaxmlp._epoch import shuffle

    a, b = shuffle(jax.random.key(0), 1000), shuffle(jax.random.key(1), 1000)
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))
    np.testing.assert_array_equal(a, shuffle(jax.random.key(0), 1000))  # same key, same order
    assert not np.array_equal(a, b) and not np.array_equal(a, np.arange(1000))
    # Uniform enough: each position's mean index over 200 keys is near (n − 1)/2.
    means = np.mean([np.asarray(shuffle(jax.random.key(k), 50)) for k in range(200)], axis=0)
    assert np.abs(means - 24.5).max() < 5


def test_dropout_resumes_exactly_mid_epoch_and_never_drops_in_evaluation(small, tmp_path):
    # Step s of epoch e draws its masks from fold_in(fold_in(data_key, e), s): a run stopped
    # at step 30 and resumed to 60 takes the masks the straight run took.
    from jaxmlp import evaluate

    config = TrainConfig(arch="b", steps=60, dropout="0.2,0.5", schedule="constant")
    quiet = lambda _: None
    straight = train_and_evaluate(config, tmp_path / "straight", data=small, log=quiet)
    train_and_evaluate(dataclasses.replace(config, steps=30), tmp_path / "split", data=small,
                       log=quiet)
    resumed = train_and_evaluate(config, tmp_path / "split", resume=True, data=small, log=quiet)
    for a, b in zip(_leaves(straight["params"]), _leaves(resumed["params"]), strict=True):
        np.testing.assert_array_equal(a, b)
    plain = train_and_evaluate(dataclasses.replace(config, dropout=None), data=small, log=quiet)
    assert not np.array_equal(_leaves(plain["params"])[0], _leaves(straight["params"])[0])
    # The recorded test accuracy is the undropped network's.
    test = evaluate(straight["params"], small.test_images, small.test_labels, "b")
    assert straight["test_accuracy"] == test["accuracy"]
    with pytest.raises(ValueError, match="`dropout` takes IN,HIDDEN, two probabilities"):
        TrainConfig(dropout="0.5")
    with pytest.raises(ValueError, match="`dropout` takes IN,HIDDEN"):
        TrainConfig(dropout="0.2,1")


def test_training_metrics_come_from_a_fixed_sample_of_train_eval_size(mnist):
    from jaxmlp import evaluate

    small = mnist._replace(train_images=mnist.train_images[:6000],
                           train_labels=mnist.train_labels[:6000])
    run = lambda n: train_and_evaluate(TrainConfig(arch="a", steps=20, train_eval_size=n),
                                       data=small, log=lambda _: None)
    for n, rows in ((1000, 1000), (0, 6000)):  # 0: the whole split
        result = run(n)
        want = evaluate(result["params"], small.train_images[:rows], small.train_labels[:rows], "a")
        assert result["history"][-1]["train_acc"] == want["accuracy"]
    assert TrainConfig().train_eval_size == 10_000


def test_ema_is_what_a_run_evaluates_saves_and_returns(mnist, tmp_path):
    # The average lives in the optimizer state (so in checkpoint.npz, resumed with it);
    # model.npz, the recorded accuracy and the returned params are the average's.
    from jaxmlp import evaluate, load_run

    small = mnist._replace(train_images=mnist.train_images[:6000],
                           train_labels=mnist.train_labels[:6000])
    # A constant learning rate: the last weights stay far from their average.
    config = TrainConfig(arch="b", steps=60, ema=0.9, schedule="constant")
    result = train_and_evaluate(config, tmp_path / "run", data=small, log=lambda _: None)
    saved = dict(np.load(tmp_path / "run" / "checkpoint.npz"))
    average = [saved[f"opt_state/1/params/{j}/w"] for j in range(3)]
    trained = [saved[f"params/{j}/w"] for j in range(3)]
    assert np.abs(average[0] - trained[0]).max() > 1e-3   # not the last weights
    for j in range(3):
        np.testing.assert_array_equal(np.asarray(result["params"][j]["w"]), average[j])
        np.testing.assert_array_equal(load_run(tmp_path / "run").params[j]["w"], average[j])
    test = evaluate(result["params"], small.test_images, small.test_labels, "b")
    assert result["test_accuracy"] == test["accuracy"]
    # A sweep's model i, as `jaxmlp eval --model i` reads it, is its average too.
    from jaxmlp import Grid, train_many

    sweep = train_many(config, Grid(seeds=(0, 1), lrs=(0.1,), momenta=(0.9,)),
                       tmp_path / "sweep", data=small, log=lambda _: None)
    for i in (0, 1):
        np.testing.assert_array_equal(load_run(tmp_path / "sweep", model=i).params[0]["w"],
                                      np.asarray(sweep["params"][0]["w"])[i])
    np.testing.assert_allclose(np.asarray(sweep["params"][0]["w"])[0], average[0], atol=2e-6)
