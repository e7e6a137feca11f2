"""TrainConfig checks every setting's type and range when it is built (issue 15.4)."""
import pytest

import jaxmlp
from jaxmlp import TrainConfig


@pytest.mark.parametrize("settings, error, message", [
    (dict(epochs=1.5), TypeError, r"setting .epochs. has the wrong type: 1.5 \(expected int\)"),
    (dict(lr="0.1"), TypeError, r"setting .lr. has the wrong type: .0.1. \(expected float or None\)"),
    (dict(seed=True), TypeError, "setting 'seed' has the wrong type: True"),
    (dict(arch=3), TypeError, r"setting .arch. has the wrong type: 3 \(expected str\)"),
    (dict(epochs=0), ValueError, "epochs must be >= 1, got 0"),
    (dict(lr=-1.0), ValueError, "learning rate must be positive, got -1.0"),
    (dict(momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (dict(arch="5:nope"), ValueError, "unknown activation"),
])
def test_bad_settings_are_refused_on_construction(settings, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**settings)


def test_good_settings_and_ints_for_floats_are_kept():
    config = TrainConfig(arch="a", epochs=2, lr=1, momentum=0)  # 1 for 1.0, as JSON may write
    assert (config.epochs, config.lr, config.momentum) == (2, 1, 0)
    assert TrainConfig(optimizer="adam").lr == 1e-3  # an unset lr is the optimizer's


def test_training_takes_only_a_config(tmp_path):
    with pytest.raises(TypeError, match="config must be a jaxmlp.TrainConfig, got str"):
        jaxmlp.train_and_evaluate("x", tmp_path / "run")
    from jaxmlp.sweep import Grid, train_many

    with pytest.raises(TypeError, match="config must be a jaxmlp.TrainConfig, got dict"):
        train_many({"arch": "a"}, Grid((0,), (0.1,), (0.9,)))
    assert not (tmp_path / "run").exists()
