"""The jaxmlp command end to end (train, and each bad input's message)."""
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmlp import TrainConfig
from jaxmlp.app._cli import main



def test_cli_writes_every_output(env, mnist, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", "--arch", "a", "--epochs", "2", "--log-every", "200",
         "--out", str(out), "--no-download", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == ("model 784 → 10 linear: 7,850 parameters, 7,840 multiply-adds an "
                        "example")
    assert lines[1].startswith("iter 0, J=") and ", accu=" in lines[1]
    assert any(l.startswith("iter 400, J=") for l in lines)
    assert lines[-1].startswith("final test accuracy 0.9") and str(out) in lines[-1]
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["step"] == 2 * 468
    for r in records:
        assert {"epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc",
                "epoch_seconds"} <= set(r)
        assert 0.85 < r["test_acc"] < 1 and 0 < r["test_loss"] < 0.6 and r["epoch_seconds"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "a" and config["epochs"] == 2 and config["grad"] == "hand"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(out / "checkpoint.npz") as f:
        assert (784, 10) in [f[k].shape for k in f.files]
    # Resume a finished run for one more epoch.
    proc = subprocess.run([sys.executable, "scripts/train.py", "--resume", str(out),
                           "--epochs", "3", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resumed from" in proc.stdout and "after 1404 steps" in proc.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("args, message", [
    (["--arch", "50:relu,10"], "bad layer '10'"),
    (["--arch", "50:swish,10:linear"], "unknown activation 'swish'"),
    (["--arch", "d"], "bad layer 'd' in architecture 'd'"),
    (["--arch", "0:relu,10:linear"], "layer width must be positive"),
    (["--lr", "-0.1"], "--lr must be positive, got -0.1"),
    (["--batch-size", "60001"], "--batch-size 60001 is larger than the 60000 training examples"),
    (["--data-dir", "/nonexistent/tfds"], "--data-dir /nonexistent/tfds does not exist"),
    (["--resume", "/nonexistent/run"], "no run folder at /nonexistent/run"),
])
def test_bad_input_fails_with_a_clear_message(env, mnist, tmp_path, capsys, args, message):
    code = main(["train", *args, "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--no-progress", "--no-download"] if "--resume" not in args
                else ["train", *args, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("jaxmlp train: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_resume_refuses_to_change_the_run(env, mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--arch", "a", "--steps", "50", "--out", str(out), "--no-progress"]) == 0
    assert main(["train", "--resume", str(out), "--lr", "0.5", "--no-progress"]) == 2
    assert "--resume cannot change --lr" in capsys.readouterr().err
    # Refused before the other dataset is looked for (it is not on this machine).
    assert main(["train", "--resume", str(out), "--dataset", "fashion_mnist", "--no-progress"]) == 2
    assert "--resume cannot change --dataset" in capsys.readouterr().err


def test_optimizer_and_validation_flags_are_recorded_and_resumable(env, mnist, tmp_path,
                                                                   capsys):
    out = tmp_path / "run"
    flags = ["--optimizer", "adam", "--lr", "1e-3", "--val-size", "5000", "--warmup-steps", "20",
             "--clip-norm", "2", "--weight-decay", "1e-5", "--no-progress", "--log-every", "1000"]
    assert main(["train", "--arch", "a", "--steps", "100", "--out", str(out), *flags]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("final test accuracy 0.") and "(validation 0." in last
    config = json.loads((out / "config.json").read_text())
    assert {k: config[k] for k in ("optimizer", "lr", "val_size", "warmup_steps", "clip_norm",
                                   "weight_decay", "dataset")} == {
        "optimizer": "adam", "lr": 1e-3, "val_size": 5000, "warmup_steps": 20, "clip_norm": 2.0,
        "weight_decay": 1e-5, "dataset": "mnist"}
    assert config["steps"] == 100 and "epochs" not in config  # its length, not the default's
    (record,) = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0.5 < record["val_acc"] <= 1 and record["val_loss"] > 0
    for change in (["--optimizer", "sgd"], ["--val-size", "0"], ["--warmup-steps", "0"],
                   ["--clip-norm", "1"]):
        assert main(["train", "--resume", str(out), *change, "--no-progress"]) == 2
        assert f"--resume cannot change {change[0]}:" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--steps", "150", "--no-progress"]) == 0
    assert "after 150 steps" in capsys.readouterr().out


def test_default_output_folder_is_named_after_the_arch():
    from jaxmlp.app._cli import _build_parser, _config_from_args

    for argv, folder in [([], "runs/b"), (["--arch", "wide"], "runs/wide"),
                         (["--arch", "50:relu,10:linear"], "runs/50_relu_10_linear"),
                         (["--out", "elsewhere"], "elsewhere"),
                         (["--dataset", "emnist/letters", "--arch", "c"],
                          "runs/emnist_letters-c")]:
        assert str(_config_from_args(_build_parser().parse_args(["train", *argv]))[1]) == folder
    # A 40-layer spec: cut, with a digest of the whole, so the name stays a valid file name.
    deep = ",".join(["20:relu"] * 40 + ["10:linear"])
    name = _config_from_args(_build_parser().parse_args(["train", "--arch", deep]))[1].name
    assert len(name) <= 64 and name.startswith("20_relu_20_relu")
    other = _config_from_args(_build_parser().parse_args(
        ["train", "--arch", deep.replace("10:linear", "10:relu")]))[1].name
    assert other != name


def test_help_states_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in text and text.count("(default: 10)") == 1
    assert "epochs to train (default: 10)" in text and "peak learning rate (default: 0.1 for sgd, 0.001 for adam" in text


@pytest.fixture(scope="module")
def trained(tfds_dir, cache_dir, mnist, tmp_path_factory):
    """A 2-epoch preset-a run, through `jaxmlp train --quiet`."""
    out = tmp_path_factory.mktemp("cli") / "a"
    env = {**os.environ, "TFDS_DATA_DIR": str(tfds_dir), "JAXMLP_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--arch", "a",
                           "--epochs", "2", "--out", str(out), "--quiet", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # --quiet: no iter or epoch lines, only the result.
    assert proc.stdout.splitlines() == [f"final test accuracy {json.loads((out / 'metrics.jsonl').read_text().splitlines()[-1])['test_acc']:.4f} after 936 steps; outputs in {out}"]
    return out


def test_eval_writes_the_report_and_pictures(env, mnist, trained, capsys):
    assert main(["eval", str(trained), "--no-download"]) == 0
    out = capsys.readouterr().out
    report = json.loads((trained / "eval.json").read_text())
    assert {"test_loss", "test_acc", "per_class_acc", "confusion"} <= set(report)
    last = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])
    # The same model on the same split as the last epoch's evaluation.
    assert report["test_acc"] == pytest.approx(last["test_acc"], abs=1e-6)
    assert report["test_loss"] == pytest.approx(last["test_loss"], rel=1e-5)
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10_000
    np.testing.assert_array_equal(confusion.sum(1), np.bincount(mnist.test_labels, minlength=10))
    assert np.trace(confusion) == round(report["test_acc"] * 10_000)
    np.testing.assert_allclose(report["per_class_acc"], np.diag(confusion) / confusion.sum(1))
    for m in report["mistakes"]:
        assert m["predicted"] != m["label"] == mnist.test_labels[m["index"]]
    for name in ("confusion.png", "mistakes.png", "weights.png"):
        assert (trained / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"test accuracy {report['test_acc']:.4f}" in out
    # The matrix on the terminal too (issue 26: the README promised it), as eval.json has it.
    lines = out.splitlines()
    start = lines.index("confusion (rows: true class, columns: predicted class):")
    assert lines[start + 1].split() == [str(c) for c in range(10)]
    printed = [[int(n) for n in line.split()] for line in lines[start + 2:start + 12]]
    assert [row[0] for row in printed] == list(range(10))
    np.testing.assert_array_equal([row[1:] for row in printed], confusion)


def test_confusion_of_many_classes_says_where_it_is():
    from jaxmlp.app._cli import _confusion_text

    assert _confusion_text([[0] * 47] * 47) == (
        "confusion: 47 classes, in eval.json and confusion.png")
    assert _confusion_text([[12345, 0], [1, 2]]).splitlines()[1:] == [
        "         0     1", "   0 12345     0", "   1     1     2"]


def test_predict_images_and_arrays(env, mnist, trained, tmp_path, capsys):
    from PIL import Image

    digits = mnist.test_images[:8]
    np.save(tmp_path / "eight.npy", digits.reshape(8, 28, 28))
    # A photo-like input: dark ink on white, 200×200.
    Image.fromarray(255 - digits[0].reshape(28, 28)).resize((200, 200)).save(tmp_path / "d.png")
    assert main(["predict", str(trained), str(tmp_path / "eight.npy"), str(tmp_path / "d.png"),
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [f"{tmp_path}/eight.npy[{i}]" for i in range(8)] + [
        f"{tmp_path}/d.png"]
    predicted = [r["digit"] for r in rows[:8]]
    assert sum(p == y for p, y in zip(predicted, mnist.test_labels[:8])) >= 7
    assert rows[8]["digit"] == mnist.test_labels[0]  # inverted automatically, then recognised
    for r in rows:
        probs = [t["prob"] for t in r["top3"]]
        assert probs == sorted(probs, reverse=True) and r["top3"][0]["digit"] == r["digit"]
        assert 0 < sum(probs) <= 1 + 1e-6
    assert main(["predict", str(trained), str(tmp_path / "eight.npy")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{tmp_path}/eight.npy[0]: {predicted[0]}  ({predicted[0]}: ")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["predict", str(trained), str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxmlp predict: error: ") and "bad.png" in err
    assert main(["predict", str(tmp_path), str(tmp_path / "d.png")]) == 2
    assert "is not a run folder: it has no config.json" in capsys.readouterr().err


def test_gradcheck_command(capsys, monkeypatch):
    assert main(["gradcheck", "c", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("PASS: hand backward pass equals jax.grad")
    assert sum(" w " in l or " b " in l for l in out) == 6  # a w and a b row per layer
    # A wrong backward pass is caught: drop the ReLU derivative of every hidden layer.
    import jaxmlp._activations as activations

    relu = activations.ACTIVATIONS["relu"]
    monkeypatch.setitem(activations.ACTIVATIONS, "relu",
                        relu._replace(grad=lambda z, a: jax.numpy.ones_like(z)))
    # (another batch size: a new program, traced with the broken rule, not a cached one)
    assert main(["gradcheck", "c", "--batch-size", "5"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL")
    assert main(["gradcheck", "7:gelu"]) == 2
    assert "unknown activation 'gelu'" in capsys.readouterr().err


def test_toy_command_prints_the_trace(capsys):
    assert main(["toy", "--iterations", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1:4] == [
        "iteration = 0", "z = [[0.0, 0.0], [0.0, 0.0]]", "dz = [[-0.25, 0.25], [0.25, -0.25]]"]


def test_first_run_prints_nothing_but_its_lines(tfds_dir, tmp_path):
    # Empty caches: TensorFlow reads the data, and must not say so.
    env = {**os.environ, "TFDS_DATA_DIR": str(tfds_dir), "JAXMLP_CACHE_DIR": str(tmp_path / "c")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--arch", "a", "--steps",
                           "3", "--out", str(tmp_path / "run"), "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert [l.split(" ")[0] for l in proc.stdout.splitlines()] == ["model", "iter", "epoch", "final"]


def test_a_near_miss_flag_or_a_list_for_train_gets_a_hint(capsys):
    for argv, hint in [(["train", "--epoch", "2"], "unrecognized arguments: --epoch 2 (did you "
                                                     "mean --epochs?)"),
                       (["eval", "r", "--ensemle"], "(did you mean --ensemble?)"),
                       (["train", "--lr", "0.1,0.2"], "invalid float value: '0.1,0.2' (a list of "
                                                      "values is for jaxmlp sweep --lr)"),
                       (["train", "--seed", "1,2"], "(a list of values is for jaxmlp sweep "
                                                    "--seeds)"),
                       (["train", "--zzz"], "unrecognized arguments: --zzz (see"),
                       (["sweep", "--lr", "0.05", "0.1"], "unrecognized arguments: 0.1 (lists "
                                                          "are comma-separated: --lr 0.05,0.1)"),
                       (["train", "--seeds", "3"], "(a list of seeds is for jaxmlp sweep "
                                                   "--seeds; train takes one --seed)")]:
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert hint in err and err.count("\n") == 1, (argv, err)
    assert main(["sweep", "--lr", "0.1,x"]) == 2  # a sweep takes the list: no hint there
    assert capsys.readouterr().err.endswith("error: --lr takes numbers separated by commas, "
                                            "got '0.1,x'\n")


def test_a_recipe_sets_its_settings_and_given_flags_override_them():
    from jaxmlp.app._cli import _config_from_args, _parse, _sweep_settings
    from jaxmlp._recipes import RECIPES

    config, out = _config_from_args(_parse(["train", "--recipe", "simard2003", "--lr", "0.1"]))
    recipe = RECIPES["simard2003"].settings
    assert (config.arch, config.augment, config.epochs, config.nesterov) == (
        recipe["arch"], recipe["augment"], recipe["epochs"], True)
    assert config.lr == 0.1 and out == Path("runs/simard2003")     # the flag wins
    config, _ = _config_from_args(_parse(["train", "--recipe", "simard2003", "--steps", "7"]))
    assert config.steps == 7 and config.epochs == TrainConfig.epochs  # steps replace epochs
    # A committee's recipe gives a sweep its seeds, lr and momentum unless flags do.
    config, grid, order, out = _sweep_settings(_parse(["sweep", "--recipe", "meier2011"]))
    assert grid.seeds == tuple(range(8)) and grid.lrs == (0.05,) and grid.momenta == (0.9,)
    assert config.augment == "alpha=34,sigma=4" and out == Path("runs/sweep-meier2011")
    _, grid, _, _ = _sweep_settings(_parse(["sweep", "--recipe", "meier2011", "--seeds", "2",
                                            "--lr", "0.1,0.2"]))
    assert grid.seeds == (0, 1) and grid.lrs == (0.1, 0.2)


# --- Issue 24 ---------------------------------------------------------------------------


def test_a_recipe_on_resume_never_trains_a_finished_run(env, mnist, tmp_path, capsys):
    # Issue 24.2: the recipe's 120 epochs counted as a requested length: R trained on.
    out = tmp_path / "R"
    quick = ["--no-progress", "--quiet", "--train-eval-size", "100"]
    assert main(["train", "--recipe", "simard2003", "--arch", "a", "--epochs", "1", "--out",
                 str(out), *quick]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--resume", str(out), "--recipe", "simard2003", "--arch", "a",
                 "--no-progress"]) == 0
    assert "the run is already complete at step 468: nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    # A recipe whose settings are not the run's is refused by name (nothing changes).
    assert main(["train", "--resume", str(out), "--recipe", "dropout2014", "--arch", "a"]) == 2
    assert capsys.readouterr().err == (
        f"jaxmlp train: error: --recipe dropout2014 sets dropout, max_norm otherwise than the "
        f"run in {out} has them, and a resume cannot change them: resume without --recipe "
        "(the run keeps its own settings)\n")
    # A step-counted run: the recipe brings no --epochs, so none is blamed.
    steps = tmp_path / "S"
    assert main(["train", "--recipe", "simard2003", "--arch", "a", "--steps", "5", "--out",
                 str(steps), *quick]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(steps), "--recipe", "simard2003", "--arch", "a",
                 "--no-progress"]) == 0
    assert "already complete at step 5" in capsys.readouterr().out
    # A finished run whose curves were never drawn (a signal after its last epoch was saved)
    # gets them from a resume that has nothing else to do; one that has them keeps them.
    (steps / "curves.png").unlink()
    model = (steps / "model.npz").read_bytes()
    assert main(["train", "--resume", str(steps), "--no-progress"]) == 0
    assert (steps / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (steps / "model.npz").read_bytes() == model
    # The same settings spelled another way are the same settings (issue 24.8).
    assert main(["train", "--resume", str(out), "--augment", "sigma=4,alpha=34.0",
                 "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_library_names_become_flags_but_a_file_s_keys_stay():
    from jaxmlp.app._cli import _in_flags

    assert _in_flags("`batch_size` 60001 is larger than the 60000 training examples") == (
        "--batch-size 60001 is larger than the 60000 training examples")
    assert _in_flags("`timeout_s` must be at most 3600") == "--init-timeout must be at most 3600"
    assert _in_flags("runs/a/config.json: `lr` must be positive") == (
        "runs/a/config.json: `lr` must be positive")  # the key as the file spells it
    assert _in_flags("`no_such_setting` is kept") == "`no_such_setting` is kept"
    assert _in_flags("epoch 1: loss 0.3") == "epoch 1: loss 0.3"


def test_a_negative_value_reaches_the_settings_rule(tmp_path, capsys):
    # Issue 24.8: argparse said "expected one argument" for --dropout -0.1,0.5.
    for args, message in [(["--dropout", "-0.1,0.5"],
                           "--dropout takes IN,HIDDEN, two probabilities in [0, 1), got '-0.1,0.5'"),
                          (["--momentum", "-.5"], "--momentum must be in [0, 1), got -0.5"),
                          (["--lr", "-1e-3"], "--lr must be positive, got -0.001"),
                          # not a number to argparse, but to float(): the rule's line too
                          (["--lr", "-inf"], "--lr must be positive, got -inf"),
                          (["--momentum", "-NaN"], "--momentum must be in [0, 1), got nan")]:
        assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
        assert capsys.readouterr().err == f"jaxmlp train: error: {message}\n"
    with pytest.raises(SystemExit) as e:  # a flag without a value: still a usage error
        main(["train", "--quiet", "-0.5"])
    assert e.value.code == 2 and "unrecognized arguments: -0.5" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["alpha=1,sigma=1e308"], "augment sigma must be in [0.01, 1000] pixels, got 1e+308"),
    (["alpha=1,sigma=1e9"], "augment sigma must be in [0.01, 1000] pixels, got 1e+09"),
    (["alpha=1e39"], "augment alpha must be in [0, 10000] pixels, got 1e+39"),
    (["alpha=1", "--seed", "99999999999999999999999"],
     "--seed must be an int in [0, 2**32), got 999… (23 digits)"),
    (["alpha=1", "--images", "100000"], "--images must be in [1, 64], got 100000"),
    (["alpha=1", "--out", ""], "'' names no file to write"),
    (["alpha=1", "--out", "sub/"], "'sub/' names no file to write"),
    (["alpha=١٢"], "augment alpha must be a number, got '١٢'"),
])
def test_augment_refuses_bad_input_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["augment", *args]) == 2
    assert capsys.readouterr().err == f"jaxmlp augment: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_augment_writes_its_picture_by_the_run_folders_rules(env, tmp_path, monkeypatch,
                                                             capsys):
    # Issue 24.7: a dangling link was replaced without --overwrite; a failed write exited 2
    # with errno text naming a temporary file, and left the folders it made.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere")
    assert main(["augment", "alpha=34", "--out", "dangling.png", "--images", "1"]) == 2
    assert capsys.readouterr().err == ("jaxmlp augment: error: dangling.png exists (a symbolic "
                                       "link): pass --overwrite to replace it, or choose "
                                       "another name\n")
    assert (tmp_path / "dangling.png").is_symlink() and not (tmp_path / "nowhere").exists()
    (tmp_path / "dir.png").mkdir()
    for overwrite in ([], ["--overwrite"]):
        assert main(["augment", "alpha=34", "--out", "dir.png", *overwrite]) == 2
        assert "dir.png is a folder, not a file to write" in capsys.readouterr().err
    # A write that fails: exit 1, the file named, no temporary file or new folder left.
    script = ("import resource, sys; from jaxmlp.app._cli import main; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
              "sys.exit(main(['augment', 'alpha=34', '--out', 'new/deeper/a.png']))")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "jaxmlp augment: error: cannot write new/deeper/a.png: File too large\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.png", "dir.png"]
    # A name too long for the file system: no folder made on the way is left either.
    assert main(["augment", "alpha=34", "--images", "1", "--draws", "1",
                 "--out", f"made/{'a' * 300}/x.png"]) == 1
    assert "File name too long" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.png", "dir.png"]
    # With --overwrite the link itself is replaced, never followed.
    assert main(["augment", "alpha=34", "--out", "dangling.png", "--overwrite",
                 "--images", "1", "--draws", "1"]) == 0
    assert not (tmp_path / "dangling.png").is_symlink() and not (tmp_path / "nowhere").exists()
    assert (tmp_path / "dangling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failed_start_leaves_no_temporary_folder(tmp_path):
    # Issue 24.7: TFDS made an empty /tmp/tmp…tfds folder on every start on unprepared data.
    empty, temp = tmp_path / "tfds", tmp_path / "tmp"
    empty.mkdir(), temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "JAXMLP_CACHE_DIR": str(tmp_path / "cache")}
    # (jaxmlp augment and eval load through the same data.load_dataset.)
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--dataset", "fashion_mnist",
                           "--no-download", "--out", str(tmp_path / "run"), "--data-dir",
                           str(empty)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "is not prepared in" in proc.stderr, proc.stderr
    assert list(temp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tfds", "tmp"]


def test_a_number_too_large_for_a_float_is_named_as_written(tmp_path, capsys):
    # float("1e400") is inf: the range checks then quoted "inf", a value no one typed.
    for command, message in [
            (["train", "--lr", "1e400"], "argument --lr: '1e400' is too large to hold as a number"),
            (["toy", "--lr", "-1E400"], "argument --lr: '-1E400' is too large to hold as a number"),
            (["sweep", "--lr", "0.1,1e400"], "--lr is too large to hold as a number, got '1e400'"),
            (["train", "--augment", "alpha=1e400"],
             "augment alpha is too large to hold as a number, got '1e400'"),
            # inf written as such is a number the range check names
            (["train", "--lr", "inf"], "--lr must be positive, got inf"),
            # a float64 past float32's range: positive, but not a number training can hold
            (["toy", "--lr", "1e308"], "--lr must be a positive number within float32's range, "
                                       "got 1e+308 (inf as a float32")]:
        with pytest.raises(SystemExit) if "argument" in message else _nothing():
            out = ["--out", str(tmp_path / "never")] if command[0] != "toy" else []
            assert main([*command, *out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"jaxmlp {command[0]}: error: {message}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_gradcheck_and_toy_refuse_what_would_overflow_or_never_end(capsys):
    for command, message in [
            (["gradcheck", "a", "--seed", "99999999999999999999999"],
             "--seed must be an int in [0, 2**32), got 999… (23 digits)"),
            (["toy", "--iterations", "10000000"], "--iterations must be a positive int below 1001"),
            (["toy", "--lr", "nan"], "--lr must be a finite number"),
            (["toy", "--lr", "-inf"], "--lr must be a finite number, got -inf")]:
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"jaxmlp {command[0]}: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize("command, message", [
    # Python's int() and float() read other scripts' digits and underscores: not ours.
    (["train", "--epochs", "١٢"], "argument --epochs: invalid int value: '١٢'"),
    (["train", "--lr", "1_0"], "argument --lr: invalid float value: '1_0'"),
    (["train", "--arch", "１０:linear"], "bad width '１０' in architecture '１０:linear'"),
    (["sweep", "--seeds", "١"], "--seeds takes a count (16) or a list (0,3,7; 7, for seed 7 "
                                  "alone), got '١'"),
    (["eval", "runs/x", "--model", "１"], "argument --model: invalid int value: '１'"),
    (["serve", "--port", "١"], "argument --port: invalid int value: '١'"),
])
def test_numbers_are_ascii(command, message, capsys):
    with pytest.raises(SystemExit) if "argument" in message else _nothing():
        assert main(command) == 2
    assert message in capsys.readouterr().err


@contextlib.contextmanager
def _nothing():
    yield


@pytest.mark.parametrize("args, message", [
    (["--init-timeout", "nan"], "the init timeout must be a positive number of seconds, got nan"),
    (["--init-timeout", "1e308"], "the init timeout (--init-timeout) must be at most"),
    (["--log-every", "99999999999999999999999"], "--log-every must be at most 2147483647"),
    (["--train-eval-size", "2147483648"], "--train-eval-size must be at most 2147483647"),
    (["--dropout", "0.99999999999,0"], "--dropout takes IN,HIDDEN, two probabilities in [0, 1)"),
    (["--label-smoothing", "0.9999999999"], "--label-smoothing must be in [0, 1), got 0.9999999999"),
    (["--adversarial", "2"], "--adversarial must be in [0, 1] (a pixel's range), got 2"),
    (["--data-dir", ""], "--data-dir must name a folder (or be left unset), got ''"),
    (["--nesterov", "--momentum", "0"], "--nesterov needs a --momentum above 0\n"),
])
def test_every_flag_has_a_range(args, message, tmp_path, capsys):
    # Found by a fresh-eyes test: each was accepted (and --init-timeout even unused).
    assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_an_empty_out_is_refused(tmp_path, monkeypatch, capsys):
    # An unset shell variable: not the default folder (it trained into runs/a).
    monkeypatch.chdir(tmp_path)
    for command in ("train", "sweep"):
        assert main([command, "--arch", "a", "--out", ""]) == 2
        assert capsys.readouterr().err == (f"jaxmlp {command}: error: --out needs a folder, got "
                                           "an empty string\n")
    assert list(tmp_path.iterdir()) == []


def test_runs_lists_every_run_with_its_settings_and_results(served_runs, tmp_path, capsys):
    import shutil

    from conftest import SERVED_ARCH

    from jaxmlp import summary

    root, data, config = served_runs
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    assert main(["runs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "kind", "dataset", "arch", "params", "optimizer", "lr",
                                "epochs", "val", "acc", "test", "acc", "time"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"one", "grid/sweep"}
    records = [json.loads(line) for line in (root / "one" / "metrics.jsonl").read_text().splitlines()]
    one = rows["one"]
    assert one[1:4] == ["run", "mnist", SERVED_ARCH]
    assert one[4] == f"{summary(SERVED_ARCH).params:,}" and one[5:8] == ["sgd", "0.1", "2/2"]
    # The model the folder holds: its last epoch (not the best test figure of any epoch).
    assert one[8:10] == [f"{records[-1]['val_acc']:.4f}", f"{records[-1]['test_acc']:.4f}"]
    sweep = rows["grid/sweep"]
    assert sweep[1:4] == ["sweep", "of", "4"] and sweep[8:10] == ["0.05..0.1", "(2)"]
    assert sweep[6] == f"{summary('16:relu,10:linear').params:,}" and sweep[11] == "-"
    best = json.loads((root / "grid" / "sweep" / "summary.json").read_text())["best"]
    assert sweep[12] == f"{best['ensemble_test_acc']:.4f}"  # the best setting's ensemble
    assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == before

    # Sorted by a column (accuracies best first); a run that cannot be read says why, last.
    shutil.copytree(root, tmp_path / "runs")
    (tmp_path / "runs" / "one" / "config.json").write_text("{")
    assert main(["runs", str(tmp_path / "runs"), "--sort", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("grid/sweep ") and lines[2].startswith("one  cannot be read: ")
    assert "config.json is not valid JSON" in lines[2] and len(lines) == 3
    assert main(["runs", str(tmp_path / "runs" / "grid"), "--sort", "params"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("sweep ")
    (tmp_path / "empty").mkdir()
    assert main(["runs", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out == f"no runs under {tmp_path / 'empty'}\n"
    assert main(["runs", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"jaxmlp runs: error: no folder at {tmp_path / 'nope'}\n"


def test_runs_sorts_best_first_and_unknown_values_last():
    from jaxmlp.app._cli import _runs_table

    def row(path, test, params):
        return {"path": path, "kind": "run", "dataset": "mnist", "arch": "b", "params": params,
                "optimizer": "sgd", "lr": [0.1], "epochs": 1, "planned_epochs": 2,
                "planned_steps": None, "val_acc": None, "test_acc": test,
                "seconds": None}

    rows = [row("a", 0.9, 5), row("b", None, None), row("c", 0.95, 3)]
    order = lambda sort: [line.split()[0] for line in _runs_table(rows, sort).splitlines()[1:]]
    assert order("test") == ["c", "a", "b"] and order("params") == ["c", "a", "b"]
    assert order("run") == ["a", "b", "c"]
    assert _runs_table(rows, "run").splitlines()[1].split()[7:] == ["1/2", "-", "0.9000", "-"]


def test_a_plain_shell_finds_the_data_make_train_found(env, tfds_dir, tmp_path):
    # Issue 26: `make train` ran with the Makefile's TFDS_DATA_DIR; then, in a shell without
    # it, `jaxmlp train` said "mnist is not prepared in ~/tensorflow_datasets".
    plain = {k: v for k, v in env.items() if k != "TFDS_DATA_DIR"}
    plain["HOME"] = str(tmp_path / "home")  # no ~/tensorflow_datasets there
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--arch", "a", "--steps", "2",
                           "--out", str(tmp_path / "run"), "--no-progress"], env=plain,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data_dir"] == str(tfds_dir.resolve())
