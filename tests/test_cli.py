"""jaxmlp-train end to end, and each bad input's message."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxmlp.cli import main

pytestmark = pytest.mark.mnist


@pytest.fixture
def env(tfds_dir, cache_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(cache_dir))
    return {**os.environ}


def test_cli_writes_every_output(env, mnist, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", "--arch", "a", "--epochs", "2", "--log-every", "200",
         "--out", str(out), "--no-download", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("iter 0, J=") and ", accu=" in lines[0]
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
    (["--lr", "-0.1"], "learning rate must be positive, got -0.1"),
    (["--batch-size", "60001"], "batch size 60001 is larger than the 60000 training examples"),
    (["--data-dir", "/nonexistent/tfds"], "data dir /nonexistent/tfds does not exist"),
    (["--resume", "/nonexistent/run"], "no config.json there"),
])
def test_bad_input_fails_with_a_clear_message(env, mnist, tmp_path, capsys, args, message):
    code = main([*args, "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress",
                 "--no-download"] if "--resume" not in args else [*args, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("jaxmlp-train: error: ") and message in err
    assert "Traceback" not in err


def test_resume_refuses_to_change_the_run(env, mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--arch", "a", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    assert main(["--resume", str(out), "--lr", "0.5", "--no-progress"]) == 2
    assert "--resume cannot change lr" in capsys.readouterr().err


def test_default_output_folder_is_named_after_the_arch():
    from jaxmlp.cli import build_parser, config_from_args

    for argv, folder in [([], "runs/b"), (["--arch", "wide"], "runs/wide"),
                         (["--arch", "50:relu,10:linear"], "runs/50_relu_10_linear"),
                         (["--out", "elsewhere"], "elsewhere")]:
        assert str(config_from_args(build_parser().parse_args(argv))[1]) == folder
