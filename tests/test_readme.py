"""The README's examples run as written."""
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(heading: str) -> str:
    section = README.read_text().split(f"## {heading}\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, f"no python block under {heading!r}"
    return found.group(1)


def test_use_a_trained_model_example_runs_verbatim(tfds_dir, cache_dir, mnist, tmp_path,
                                                   monkeypatch, capsys):
    from jaxmlp import TrainConfig, train_and_evaluate

    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(cache_dir))
    monkeypatch.chdir(tmp_path)
    trained = train_and_evaluate(TrainConfig(arch="a", steps=200), "runs/default", data=mnist,
                                 log=lambda _: None)
    namespace = {}
    exec(_python_block("Use a trained model"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{namespace['run'].arch} {trained['test_accuracy']}"
    predicted = np.asarray(namespace["probs"]).argmax(axis=1)
    assert out[1] == str(predicted) and namespace["probs"].shape == (5, 10)
    assert np.mean(predicted == mnist.test_labels[:5]) >= 0.8
