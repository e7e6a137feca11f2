"""TrainConfig checks every setting's type and range when it is built (issue 15.4)."""
import dataclasses

import pytest

import jaxmlp
from jaxmlp import TrainConfig


@pytest.mark.parametrize("settings, error, message", [
    (dict(epochs=1.5), TypeError, r"`epochs` has the wrong type \(expected int\), got 1.5"),
    (dict(lr="0.1"), TypeError, r"`lr` has the wrong type \(expected float or None\), got .0.1."),
    (dict(seed=True), TypeError, r"`seed` has the wrong type \(expected int\), got True"),
    (dict(arch=3), TypeError, r"`arch` has the wrong type \(expected str\), got 3"),
    (dict(epochs=0), ValueError, "`epochs` must be >= 1, got 0"),
    (dict(lr=-1.0), ValueError, "`lr` must be positive, got -1.0"),
    (dict(momentum=1.0), ValueError, r"`momentum` must be in \[0, 1\)"),
    (dict(arch="5:nope"), ValueError, "unknown activation"),
])
def test_bad_settings_are_refused_on_construction(settings, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**settings)


def test_good_settings_and_ints_for_floats_are_kept():
    config = TrainConfig(arch="a", epochs=2, lr=1, momentum=0)  # 1 for 1.0, as JSON may write
    assert (config.epochs, config.lr, config.momentum) == (2, 1, 0)
    assert TrainConfig(optimizer="adam").lr == 1e-3  # an unset lr is the optimizer's
    assert str(TrainConfig(adversarial=-0.0).adversarial) == "0.0"  # -0 is 0 (config.json)


def test_training_takes_only_a_config(tmp_path):
    with pytest.raises(TypeError, match="config must be a jaxmlp.TrainConfig, got str"):
        jaxmlp.train_and_evaluate("x", tmp_path / "run")
    from jaxmlp._trainer import Grid, train_many

    with pytest.raises(TypeError, match="config must be a jaxmlp.TrainConfig, got dict"):
        train_many({"arch": "a"}, Grid((0,), (0.1,), (0.9,)))
    assert not (tmp_path / "run").exists()


def test_one_setting_spelled_two_ways_is_one_setting():
    # Issue 24.8: parsed once, when the config is built, and kept in one spelling; so a
    # resume that writes a setting another way changes nothing (_check_same_run compares).
    from jaxmlp._run import _check_same_run

    saved = TrainConfig(arch="a", augment="alpha=34,sigma=4", dropout="0,0.5")
    for augment, dropout in [("sigma=4,alpha=34", "0.0,0.5"), ("alpha=34.0", "0,.5"),
                             ("alpha=34,sigma=4.0", "0.00,0.50")]:
        again = TrainConfig(arch="10:linear", augment=augment, dropout=dropout)
        assert (again.augment, again.dropout) == ("alpha=34,sigma=4", "0,0.5")
        _check_same_run(saved, again)  # the same run
    assert TrainConfig(dropout="0.0,0.0").dropout is None      # no dropout is no dropout
    assert TrainConfig(augment="alpha=0,rotation=0").augment is None
    assert TrainConfig(dropout="0.2,0.5").dropout_rates == (0.2, 0.5)
    with pytest.raises(ValueError, match="`resume` cannot change `augment`"):
        _check_same_run(saved, TrainConfig(arch="a", augment="alpha=35,sigma=4",
                                           dropout="0,0.5"))


@pytest.mark.parametrize("settings, message", [
    (dict(steps=2 ** 31), r"`steps` must be in \[1, 2147483647\], got 2147483648"),
    (dict(epochs=10 ** 30), r"`epochs` must be at most 2147483647"),
    (dict(augment="alpha=1e39"), r"augment alpha must be in \[0, 10000\] pixels, got 1e\+39"),
    (dict(dropout="-0.1,0.5"), r"`dropout` takes IN,HIDDEN, two probabilities in \[0, 1\), got '-0.1,0.5'"),
    (dict(dropout="nan,0.5"), "`dropout` takes IN,HIDDEN"),
    (dict(adversarial=1.5), r"`adversarial` must be in \[0, 1\] \(a pixel's range\), got 1.5"),
    (dict(adversarial=float("inf")), "`adversarial` must be in"),
    (dict(adversarial=1e-50), r"`adversarial` must be in \[0, 1\] \(a pixel's range\), got 1e-50 \(0 as a float32"),
    (dict(arch="600000:relu,10:linear"), "layer width must be at most 524,288, got 600000"),
    (dict(arch=",".join(["4:relu"] * 300) + ",10:linear"), "architecture has 301 layers"),
])
def test_every_setting_has_a_range_that_keeps_the_run_bounded(settings, message):
    # Issue 24.3-5: sizes that overflow the step counter, distortions past float32, nets
    # no machine holds: refused when the config is built, before any work.
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_a_run_too_long_for_its_step_counter_is_refused():
    with pytest.raises(ValueError, match="the run would take 2147483648 steps, more than"):
        TrainConfig(epochs=2 ** 30).check_length(2 ** 31)


def test_a_files_settings_are_refused_without_quoting_the_file():
    # Issue 24.1: what a reader of config.json says names the setting and the rule, never a
    # value or key from the file (a link once led config.json to someone's secrets).
    from jaxmlp._errors import without_value

    for values in [{"arch": "TOPSECRET"}, {"TOPSECRET": 1}, {"lr": "TOPSECRET"},
                   {"augment": "TOPSECRET=1"}, {"dropout": "TOPSECRET"},
                   {"optimizer": "TOPSECRET"}, {"dataset": "TOPSECRET"}, {"seed": -1}]:
        with pytest.raises((TypeError, ValueError)) as e:
            TrainConfig.from_dict(values)
        safe = without_value(e.value, "?")
        assert "TOPSECRET" not in safe and safe != "?", (values, safe)
        assert "TOPSECRET" in str(e.value) or "seed" in str(e.value)  # the caller's own values


@pytest.mark.parametrize("fields, kind, message", [
    (((), (0.1,), (0.9,)), ValueError, "Grid seeds must hold at least one value"),
    ((("a",), (0.1,), (0.9,)), TypeError, r"Grid seeds\[0\] must be an int in \[0, 2\*\*32\), got 'a'"),
    (((0,), (-1.0,), (0.9,)), ValueError, r"Grid lrs\[0\] must be a positive number, got -1.0"),
    (((0,), (0.1,), (1.0,)), ValueError, r"Grid momenta\[0\] must be a number in \[0, 1\)"),
    (((0, 0), (0.1,), (0.9,)), ValueError, "Grid seeds must list each value once"),
    (("0", (0.1,), (0.9,)), TypeError, "Grid seeds must be a tuple of values"),
    ((tuple(range(1000)), tuple(0.01 * i for i in range(1, 102)), (0.9,)), ValueError,
     "the grid has 101000 models, more than 100000"),
])
def test_a_grid_checks_its_values_when_built(fields, kind, message):
    with pytest.raises(kind, match=message):
        jaxmlp.Grid(*fields)


def test_fit_trains_the_grid_it_is_given_each_model_its_single_run(tmp_path, mnist):
    # Issue 24.9: fit(config, grid) ignored its grid (six models asked, one trained); issue
    # 25: fit is the one entry for any grid, so the models asked are the models trained,
    # each the single run it stands for (to float32 rounding: vmap batches the sums).
    small = mnist._replace(train_images=mnist.train_images[:1280],
                           train_labels=mnist.train_labels[:1280])
    config = TrainConfig(arch="a", steps=5, train_eval_size=100)
    grid = jaxmlp.Grid(seeds=(3, 4, 5), lrs=(0.05, 0.2), momenta=(0.5,))
    result = jaxmlp.fit(config, grid, data=small, log=lambda _: None)
    assert [m["seed"] for m in result["summary"]["models"]] == [3, 4, 5] * 2
    assert [m["lr"] for m in result["summary"]["models"]] == [0.05] * 3 + [0.2] * 3
    assert result["params"][0]["w"].shape == (6, 784, 10)
    single = jaxmlp.train_and_evaluate(TrainConfig(arch="a", steps=5, train_eval_size=100,
                                                   seed=3, lr=0.05, momentum=0.5),
                                       data=small, log=lambda _: None)
    import numpy as np
    np.testing.assert_allclose(np.asarray(result["params"][0]["w"][0]),
                               np.asarray(single["params"][0]["w"]), atol=1e-6, rtol=0)
    assert result["summary"]["models"][0]["test_acc"] == pytest.approx(
        single["history"][-1]["test_acc"], abs=1e-3)
    for bad, message in [(dict(data="x"), "data must be a jaxmlp.Dataset"),
                         (dict(out=3), "out must be a folder"),
                         (dict(out=" "), "out must name a folder"),
                         (dict(log="print"), "log must be a function"),
                         (dict(resume="yes"), "resume must be True or False")]:
        with pytest.raises((TypeError, ValueError), match=message):
            jaxmlp.train_and_evaluate(TrainConfig(arch="a"), **{"out": tmp_path / "run", **bad})
    assert not (tmp_path / "run").exists()   # nothing was made


def test_only_fields_are_settings():
    # TrainConfig keeps its parsed augment and dropout beside its fields (``_parsed``): a
    # config.json naming it is refused like any other unknown key, and the field types
    # checked on construction are the fields' own.
    with pytest.raises(ValueError, match="unknown setting '_parsed'"):
        TrainConfig.from_dict({"_parsed": [None, None]})
    config = TrainConfig(augment="alpha=34,sigma=4", dropout="0.2,0.5")
    assert config.dropout_rates == (0.2, 0.5) and config.augmentation.alpha == 34
    assert "_parsed" not in dataclasses.asdict(config)  # (config.json is written from it)
