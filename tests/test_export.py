"""jaxmlp export (issue 26): a trained MLP as ONNX, run by onnxruntime, and as StableHLO,
run by jax.export: the probabilities jaxmlp.predict gives, for any batch size."""
import sys

import jax
import numpy as np
import pytest
from conftest import SERVED_ARCH

import jaxmlp
from jaxmlp import ACTIVATIONS, RunError, export, load_committee, load_run, predict
from jaxmlp.app._cli import main


def _images(n):
    return np.random.default_rng(n).random((n, 784)).astype(np.float32)


def test_every_activation_exports_to_onnx_and_stablehlo(served_runs, tmp_path):
    import onnxruntime

    root, _, _ = served_runs
    run = load_run(root / "one")
    assert {a for _, a in run.arch} == set(ACTIVATIONS)  # SERVED_ARCH: each activation once
    export(run, tmp_path / "m.onnx")
    export(run, tmp_path / "m.stablehlo", "stablehlo")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    exported = jax.export.deserialize(bytearray((tmp_path / "m.stablehlo").read_bytes()))
    for n in (1, 7, 64):  # the batch size is the file's one free dimension
        x = _images(n)
        want = np.asarray(predict(run.params, x, run.arch))
        got = session.run(["probabilities"], {"images": x})[0]
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(exported.call(x)), want, atol=1e-6, rtol=0)
    assert run.arch == jaxmlp.parse_arch(SERVED_ARCH)


def test_the_command_exports_a_run_or_a_sweep_s_model_and_never_overwrites(served_runs,
                                                                         tmp_path, capsys):
    import onnxruntime

    root, _, _ = served_runs
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    out = tmp_path / "deep" / "model.onnx"
    assert main(["export", str(root / "grid" / "sweep"), "--model", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out == (f"wrote {out} (onnx: images (N, 784) float32 in [0, 1] "
                                       "-> probabilities (N, 10))\n")
    run = load_run(root / "grid" / "sweep", model=1)
    x = _images(5)
    got = onnxruntime.InferenceSession(str(out)).run(None, {"images": x})[0]
    np.testing.assert_allclose(got, np.asarray(predict(run.params, x, run.arch)), atol=1e-5)
    first = out.read_bytes()
    for args, message in [
            ([str(root / "one"), "--out", str(out)], f"{out} exists (a file): pass --overwrite"),
            ([str(root / "grid" / "sweep"), "--out", str(tmp_path / "s.onnx")],
             "holds a sweep: name one of its models with --model I"),
            ([str(tmp_path / "nope"), "--out", str(tmp_path / "n.onnx")], "no run folder at"),
            ([str(root / "one"), "--out", str(tmp_path)], "is a folder, not a file to write")]:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert out.read_bytes() == first and not (tmp_path / "s.onnx").exists()
    assert main(["export", str(root / "one"), "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != first  # run one's model, not the sweep's model 1
    assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == before
    with pytest.raises(SystemExit):  # --out is required: a usage error
        main(["export", str(root / "one")])


def test_the_api_refuses_what_it_cannot_write(served_runs, tmp_path, monkeypatch):
    root, _, _ = served_runs
    run = load_run(root / "one")
    with pytest.raises(ValueError, match=r"format must be one of \('onnx', 'stablehlo'\), "
                                         "got 'tflite'"):
        export(run, tmp_path / "m", "tflite")
    with pytest.raises(TypeError, match="run must be a jaxmlp.Run"):
        export(str(root / "one"), tmp_path / "m")
    (tmp_path / "there").write_text("x")
    with pytest.raises(RunError, match="exists"):
        export(run, tmp_path / "there")
    # Found by a fresh-eyes test: pathlib's "expected str, bytes or os.PathLike object", and
    # overwrite="yes" taken as true (it would replace "there").
    with pytest.raises(TypeError, match=r"^path must be a file to write \(a str or path\), "
                                        r"got NoneType$"):
        export(run, None)
    with pytest.raises(TypeError, match=r"^overwrite must be True or False, got 'yes'$"):
        export(run, tmp_path / "there", overwrite="yes")
    assert (tmp_path / "there").read_text() == "x"
    with pytest.raises(TypeError, match=r"^folders\[1\] must be a run or sweep folder \(a str or "
                                        r"path\), got NoneType$"):
        load_committee([root / "one", None])
    monkeypatch.setitem(sys.modules, "onnx", None)  # not installed
    with pytest.raises(ValueError, match=r"needs the onnx package \(pip install onnx\)"):
        export(run, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]


def test_a_file_named_for_the_other_format_is_refused(served_runs, tmp_path):
    # Found by a fresh-eyes test: `--format stablehlo --out x.onnx` wrote a file
    # onnxruntime could not read.
    run = load_run(served_runs[0] / "one")
    for name, fmt, other in (("x.onnx", "stablehlo", "an onnx"), ("x.StableHLO", "onnx",
                                                                  "a stablehlo")):
        with pytest.raises(ValueError, match=f"{name} names {other} file, but the format is {fmt}"):
            export(run, tmp_path / name, fmt)
    export(run, tmp_path / "x.bin", "stablehlo")  # any other name: the format decides
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
