"""Test-time augmentation and committees of different runs: hand values, and the commands."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import (TTA, Dataset, TrainConfig, augment, evaluate_committee, evaluate_run, forward,
                    init_params, load_committee, load_run, parse_augment, predict, softmax,
                    train_and_evaluate, tta_probabilities)
from jaxmlp._errors import RunError
from jaxmlp.app._cli import main

ARCH = "16:relu,10:linear"


def _by_hand(params, images, arch, tta: TTA):
    """The module docstring's p̄, one image and one distortion at a time."""
    x = jnp.asarray(images, jnp.float32) / 255.0
    root = jax.random.key(tta.seed)
    total = softmax(forward(params, x, arch))
    for t in range(1, tta.n + 1):
        rows = []
        for b in range(len(x)):
            key = jax.random.fold_in(jax.random.fold_in(root, t), b)
            rows.append(augment(key, x[b].reshape(1, 28, 28, 1), tta.distortion).reshape(-1))
        total = total + softmax(forward(params, jnp.stack(rows), arch))
    return np.asarray(total / (tta.n + 1))


@pytest.mark.parametrize("image_shape, message", [
    ((28, 27, 1), r"image_shape \(28, 27, 1\) has 756 pixels, but in_dim is 784"),
    (None, r"image_shape must be \(height, width, channels\), three positive ints, got None"),
    ((28, 28), r"image_shape must be \(height, width, channels\), three positive ints, got "
               r"\(28, 28\)"),
])
def test_tta_names_a_wrong_image_shape(image_shape, message):
    # Found by a fresh-eyes test: numpy's reshape error, "NoneType is not iterable", or a
    # message about the images instead.
    params = init_params(jax.random.key(1), ARCH, 784)
    with pytest.raises(ValueError, match=message):
        tta_probabilities(params, np.zeros((2, 784), np.uint8), ARCH, TTA(2),
                          image_shape=image_shape)


def test_tta_is_the_mean_over_the_image_and_its_distortions_whatever_the_chunks():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 784), dtype=np.uint8)
    params = init_params(jax.random.key(1), ARCH, 784)
    tta = TTA(3, "rotation=20,translation=2", seed=5)
    expected = _by_hand(params, images, ARCH, tta)
    whole = tta_probabilities(params, images, ARCH, tta, image_shape=(28, 28, 1))
    np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-6)
    # Chunks of 2 rows: every image keeps its own distortions.
    small = tta_probabilities(params, images, ARCH, tta, image_shape=(28, 28, 1),
                              max_bytes=2 * 784 * 4 * 4)
    np.testing.assert_allclose(small, whole, rtol=1e-6, atol=1e-7)
    # The distortions matter (the mean is not the plain prediction), and the seed does.
    plain = predict(params, images, ARCH)
    assert np.abs(whole - plain).max() > 1e-3
    other = tta_probabilities(params, images, ARCH, TTA(3, "rotation=20,translation=2"),
                              image_shape=(28, 28, 1))
    assert np.abs(other - whole).max() > 1e-4
    np.testing.assert_allclose(whole.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "TTA n must be a positive int below 1000, got 0"),
    (dict(n=1000), "TTA n must be a positive int below 1000, got 1000"),
    (dict(n=2.0), "TTA n must be a positive int"),
    (dict(n=2, seed=-1), "TTA seed must be an int in [0, 2**32), got -1"),
    (dict(n=2, augment="alpha=0"), "TTA augment distorts nothing"),
    (dict(n=2, augment="spin=3"), "augment takes NAME=VALUE pairs"),
    (dict(n=2, augment=3), "TTA augment must be an Augmentation or its text, got int"),
])
def test_tta_settings_are_checked_where_they_are_built(kwargs, message):
    with pytest.raises((ValueError, TypeError)) as e:
        TTA(**kwargs)
    assert message in str(e.value)


def test_the_default_distortion_is_a_one_pixel_shift():
    assert TTA(4).distortion == parse_augment("translation=1")
    assert TTA(4).record() == {"n": 4, "augment": "translation=1", "seed": 0}


@pytest.fixture(scope="module")
def two_runs(small, tmp_path_factory):
    """Two different architectures, trained briefly on the slice."""
    root = tmp_path_factory.mktemp("committee")
    for name, arch in (("a", "10:linear"), ("b", ARCH)):
        config = TrainConfig(arch=arch, steps=30, batch_size=100, seed=3)
        train_and_evaluate(config, root / name, data=small, log=lambda _: None)
    return root


@pytest.mark.mnist
def test_eval_with_tta_records_it_beside_the_plain_figures(small, two_runs, tmp_path):
    run = load_run(two_runs / "b")
    plain = evaluate_run(run, small)
    tta = TTA(2, "translation=2", seed=1)
    report = evaluate_run(run, small, tta)
    probs = tta_probabilities(run.params, small.test_images, run.arch, tta,
                              image_shape=(28, 28, 1))
    labels = np.asarray(small.test_labels)
    assert report["test_acc"] == np.mean(probs.argmax(axis=1) == labels)
    assert report["tta"] == {"n": 2, "augment": "translation=2", "seed": 1}
    assert report["without_tta"] == {"test_loss": plain["test_loss"],
                                     "test_acc": plain["test_acc"]}
    assert json.loads((two_runs / "b" / "eval.json").read_text())["tta"]["n"] == 2
    assert len(report["mistakes"]) == 36 and all(
        m["predicted"] != m["label"] for m in report["mistakes"])


@pytest.mark.mnist
def test_a_committee_of_different_runs_votes_by_its_mean_probability(small, two_runs,
                                                                    monkeypatch, tmp_path):
    committee = load_committee([two_runs / "a", two_runs / "b"])
    report = evaluate_committee(committee, small)
    labels = np.asarray(small.test_labels)
    probs = [predict(load_run(two_runs / n).params, small.test_images, arch)
             for n, arch in (("a", "10:linear"), ("b", ARCH))]
    members = [float(np.mean(p.argmax(axis=1) == labels)) for p in probs]
    assert [m["test_acc"] for m in report["members"]] == members
    assert [m["arch"] for m in report["members"]] == ["10:linear", ARCH]
    assert report["test_acc"] == np.mean(np.mean(probs, axis=0).argmax(axis=1) == labels)
    assert report["member_std"] == pytest.approx(np.std(members, ddof=1))
    assert np.sum(report["confusion"]) == len(labels)
    with pytest.raises(RunError, match="named twice"):
        load_committee([two_runs / "a", two_runs / "a"])
    import shutil

    shutil.copytree(two_runs / "a", tmp_path / "copy")
    with pytest.raises(RunError, match=f"{tmp_path / 'copy'} holds the same model as "
                                       f"{two_runs / 'a'}: each model votes once"):
        load_committee([two_runs / "a", two_runs / "b", tmp_path / "copy"])
    with pytest.raises(RunError, match="1 to 1000 run folders"):
        load_committee([])
    import jaxmlp._committee

    monkeypatch.setattr(jaxmlp._committee, "MAX_BYTES", 40_000)  # preset a holds 31,400 B
    with pytest.raises(RunError, match=f"GiB by {two_runs / 'b'}, more than the"):
        load_committee([two_runs / "a", two_runs / "b"])
    # The same shape and classes but another dataset: its test split is not theirs.
    other = Dataset.from_arrays(np.asarray(small.train_images[:500]).reshape(-1, 28, 28),
                                small.train_labels[:500],
                                np.asarray(small.test_images[:100]).reshape(-1, 28, 28),
                                small.test_labels[:100], name="digits")
    train_and_evaluate(TrainConfig(arch="10:linear", steps=2, batch_size=100, dataset="digits"),
                       tmp_path / "digits", data=other, log=lambda _: None)
    with pytest.raises(RunError, match=f"{tmp_path / 'digits'} takes digits .*the committee "
                                       f"mnist"):
        load_committee([two_runs / "a", tmp_path / "digits"])
    # With test-time distortions the members' figures are theirs too, the plain vote beside.
    tta = TTA(1)
    voted = evaluate_committee(committee, small, tta)
    distorted = [tta_probabilities(load_run(two_runs / n).params, small.test_images, arch, tta,
                                   image_shape=(28, 28, 1))
                 for n, arch in (("a", "10:linear"), ("b", ARCH))]
    assert [m["test_acc"] for m in voted["members"]] == [
        float(np.mean(p.argmax(axis=1) == labels)) for p in distorted]
    assert voted["without_tta"] == {"test_loss": report["test_loss"],
                                    "test_acc": report["test_acc"]}


@pytest.mark.mnist
def test_the_ensemble_command_prints_and_writes_the_committee(env, small, two_runs, tmp_path,
                                                             capsys):
    out = tmp_path / "committee.json"
    argv = ["ensemble", str(two_runs / "a"), str(two_runs / "b"), "--tta", "1", "--out",
            str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert f"committee of 2: test loss {saved['test_loss']:.4f}, test accuracy " \
           f"{saved['test_acc']:.4f} over each image and 1 distortion (translation=1)" in printed
    assert saved["tta"] == {"n": 1, "augment": "translation=1", "seed": 0}
    assert f"(translation=1) (without it {saved['without_tta']['test_acc']:.4f})" in printed
    before = out.read_text()
    assert main(argv) == 2  # an existing file only with --overwrite
    assert "exists (a file): pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == before
    assert main(["ensemble", str(two_runs / "a"), "--tta", "0"]) == 2
    assert "jaxmlp ensemble: error: --tta must be a positive int below 1000, got 0" in capsys.readouterr().err
    assert main(["eval", str(two_runs / "a"), "--tta-seed", "2"]) == 2
    assert "--tta-augment and --tta-seed shape --tta: add --tta N" in capsys.readouterr().err
    assert main(["ensemble", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    # The report never lands in a run's folder, nor under a file, and it is refused first.
    model = (two_runs / "a" / "model.npz").read_bytes()
    for where, message in ((two_runs / "a" / "model.npz", "is inside the run folder"),
                           (two_runs / "b" / "new.json", "is inside the run folder"),
                           (out / "x.json", f"{out} is not a folder")):
        assert main(["ensemble", str(two_runs / "a"), str(two_runs / "b"), "--out", str(where),
                     "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert (two_runs / "a" / "model.npz").read_bytes() == model
    assert not (two_runs / "b" / "new.json").exists()
