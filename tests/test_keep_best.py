"""--keep-best and --early-stop (issue 26): the saved model is the epoch best by validation,
and a run stops once validation stops improving; both resume bit for bit."""
import json

import numpy as np
import pytest

import jaxmlp
from jaxmlp._run import best_epoch
from jaxmlp.app._cli import main

quiet = lambda line: None


def _noise():
    # Random pixels and labels: validation accuracy wanders, so the best epoch is rarely the
    # last (each test checks that it is not, so that it shows something).
    rng = np.random.default_rng(1)
    x, y = rng.random((600, 4, 4)).astype(np.float32), rng.integers(0, 3, 600)
    return jaxmlp.Dataset.from_arrays(x[:500], y[:500], x[500:], y[500:], name="noise")


SETTINGS = dict(arch="32:relu,3:linear", dataset="noise", batch_size=25, val_size=100,
                schedule="constant", train_eval_size=0)


def _model(folder):
    with np.load(folder / "model.npz") as f:
        return {k: f[k] for k in f.files if k.startswith("params/")}


def test_best_epoch_by_hand():
    history = [{"epoch": 1, "val_acc": 0.5, "val_loss": 2.0},
               {"epoch": 2, "val_acc": 0.7, "val_loss": 1.5},
               {"epoch": 3, "val_acc": 0.7, "val_loss": 1.2},  # a tie: the earlier stays
               {"epoch": 4, "val_acc": 0.6, "val_loss": 1.2}]
    assert best_epoch(history, "val_acc")["epoch"] == 2
    assert best_epoch(history, "val_loss")["epoch"] == 3
    assert best_epoch(history[:1], "val_acc")["epoch"] == 1


@pytest.mark.parametrize("metric", ["val_acc", "val_loss"])
def test_the_saved_model_is_the_best_epoch_s(metric, tmp_path):
    data = _noise()
    config = jaxmlp.TrainConfig(**SETTINGS, epochs=6, keep_best=metric)
    result = jaxmlp.train_and_evaluate(config, tmp_path / "kept", data=data, log=quiet)
    history = [json.loads(l) for l in (tmp_path / "kept" / "metrics.jsonl").read_text().splitlines()]
    best = best_epoch(history, metric)
    assert len(history) == 6 and best["epoch"] < 6, "the data should make another epoch best"
    # The best epoch's model is that of a run that ends there (a constant rate: the same steps).
    jaxmlp.train_and_evaluate(jaxmlp.TrainConfig(**SETTINGS, epochs=best["epoch"]),
                              tmp_path / "short", data=data, log=quiet)
    kept, short = _model(tmp_path / "kept"), _model(tmp_path / "short")
    assert kept.keys() == short.keys()
    for name in kept:
        np.testing.assert_array_equal(kept[name], short[name])
    # What the call returns is that model and its epoch's figures; the checkpoint is the last.
    assert result["kept_epoch"] == best["epoch"] and result["test_accuracy"] == best["test_acc"]
    for i, layer in enumerate(result["params"]):
        np.testing.assert_array_equal(np.asarray(layer["w"]), kept[f"params/{i}/w"])
    with np.load(tmp_path / "kept" / "checkpoint.npz") as f:
        assert int(f["step"]) == 6 * 16
    # `jaxmlp runs` (and the serve page) show the kept model's figures, not the last epoch's.
    from jaxmlp.app._pages import describe_run

    row = describe_run(tmp_path, tmp_path / "kept")
    assert (row["test_acc"], row["val_acc"]) == (best["test_acc"], best["val_acc"])


def test_early_stop_stops_and_resumes_bit_for_bit(tmp_path, capsys):
    data = _noise()
    config = jaxmlp.TrainConfig(**SETTINGS, epochs=30, keep_best="val_acc", early_stop=3)
    lines = []
    jaxmlp.train_and_evaluate(config, tmp_path / "a", data=data, log=lines.append)
    history = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    best = best_epoch(history, "val_acc")
    assert len(history) == best["epoch"] + 3 < 30
    assert lines[-1] == (f"no better val_acc in 3 epochs (best {best['val_acc']:.4f}, epoch "
                         f"{best['epoch']}): stopping")
    # Resumed as it is: nothing to do, the same model. With more patience: it trains on,
    # exactly as a run that had that patience from the start.
    lines.clear()
    again = jaxmlp.train_and_evaluate(config, tmp_path / "a", resume=True, data=data,
                                      log=lines.append)
    assert lines[-1].startswith(f"the run stopped early at step {len(history) * 16}")
    assert again["kept_epoch"] == best["epoch"]
    patient = jaxmlp.TrainConfig(**{**SETTINGS, "epochs": 30, "keep_best": "val_acc",
                                    "early_stop": 6})
    jaxmlp.train_and_evaluate(patient, tmp_path / "a", resume=True, data=data, log=quiet)
    jaxmlp.train_and_evaluate(patient, tmp_path / "b", data=data, log=quiet)
    _same_records(tmp_path)
    for name in ("model.npz", "checkpoint.npz"):
        with np.load(tmp_path / "a" / name) as a, np.load(tmp_path / "b" / name) as b:
            assert a.files == b.files
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")


def _same_records(tmp_path) -> bool:
    # The timings differ between runs; every figure of every epoch must not.
    read = lambda run: [{k: v for k, v in json.loads(l).items() if not k.endswith("seconds")}
                        for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    assert read("a") == read("b")
    return True


@pytest.mark.parametrize("settings, message", [
    (dict(keep_best="val_acc", val_size=0), "`keep_best` chooses by validation: it needs a "
                                            "validation split (`val_size`)"),
    (dict(early_stop=2, val_size=0), "`early_stop` watches validation: it needs a validation "
                                     "split (`val_size`)"),
    (dict(early_stop=0, val_size=10), "`early_stop` must be >= 1, got 0"),
    (dict(keep_best="test_acc", val_size=10), "`keep_best` must be one of ('val_acc', "
                                              "'val_loss'), got 'test_acc'"),
])
def test_what_cannot_choose_by_validation_is_refused(settings, message):
    with pytest.raises(ValueError) as e:
        jaxmlp.TrainConfig(**settings)
    assert message in str(e.value)


def test_the_command_line_refuses_them_for_a_sweep_and_on_a_changed_resume(tmp_path, capsys):
    np.savez(tmp_path / "noise.npz", **dict(zip(
        ("x_train", "y_train", "x_test", "y_test"),
        (lambda d: (d.train_images.reshape(-1, 4, 4), d.train_labels, d.test_images.reshape(
            -1, 4, 4), d.test_labels))(_noise()))))
    common = ["--dataset", f"npz:{tmp_path / 'noise.npz'}", "--arch", "8:relu,3:linear",
              "--val-size", "100", "--batch-size", "25", "--no-progress"]
    assert main(["sweep", *common, "--seeds", "2", "--keep-best", "val_acc",
                 "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err == ("jaxmlp sweep: error: --keep-best and --early-stop are "
                                       "for single runs: a sweep trains every model to the end "
                                       "(its summary names the best setting)\n")
    assert not (tmp_path / "s").exists()
    assert main(["train", *common, "--epochs", "2", "--keep-best", "val_loss",
                 "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("model.npz is epoch ") and out[-2].endswith(", the best by val_loss")
    assert main(["train", *common, "--resume", str(tmp_path / "r"), "--keep-best",
                 "val_acc"]) == 2
    assert "--resume cannot change --keep-best" in capsys.readouterr().err


def test_log_every_zero_logs_no_iter_lines():
    # Issue 26: `--log-every 0` was refused, where most tools read it as "off".
    data = _noise()
    for every, expected in ((0, []), (7, ["iter 0", "iter 7", "iter 14", "iter 21", "iter 28"])):
        lines = []
        jaxmlp.train_and_evaluate(jaxmlp.TrainConfig(**SETTINGS, epochs=2, log_every=every),
                                  data=data, log=lines.append)
        assert [l.split(",")[0] for l in lines if l.startswith("iter")] == expected
    with pytest.raises(ValueError, match="`log_every` must be >= 0"):
        jaxmlp.TrainConfig(log_every=-1)


def test_extending_a_cosine_run_says_its_learning_rate_rises_again(tmp_path):
    # Issue 26: extending a finished cosine run restarted its learning rate without a word.
    data = _noise()
    for kind, expected in (("cosine", "the cosine schedule now ends at step 80, not 40: the "
                                      "learning rate at step 40 is 50.0% of its peak (it was "
                                      "0.0%)"),
                           ("constant", None)):
        settings = {**SETTINGS, "schedule": kind, "val_size": 0}
        jaxmlp.train_and_evaluate(jaxmlp.TrainConfig(**settings, epochs=2), tmp_path / kind,
                                  data=data, log=quiet)
        lines = []
        jaxmlp.train_and_evaluate(jaxmlp.TrainConfig(**settings, epochs=4), tmp_path / kind,
                                  resume=True, data=data, log=lines.append)
        notes = [l for l in lines if l.startswith("the cosine schedule")]
        assert notes == ([expected] if expected else []), lines[:3]
