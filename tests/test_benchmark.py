"""scripts/benchmark.py at tiny sizes: every figure present, finite, and the arithmetic of
the timings it reports (not the timings themselves, which only a quiet machine can judge).

The benchmark runs in this process (``main(argv)``, as ``python scripts/benchmark.py``
would), so only what it starts itself costs a process: the time-to-accuracy runs and the
2-device sweep child, which runs the script as ``python scripts/benchmark.py``. Its
compiles, and theirs, skip XLA's optimisation passes (as the unit tests' do): the speed of
the compiled code is never checked here, and compiling is most of a tiny benchmark's time.
"""
import importlib.util
import json
import math
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


@pytest.fixture
def script(monkeypatch):
    """``scripts/benchmark.py`` as a module (it puts scripts/ first on ``sys.path``, for
    ``bench``: undone after the test)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def benchmark(script, env, monkeypatch):
    """The script on the real MNIST, its compiles (and those of the processes it starts)
    without XLA's optimisation passes, as every test's (``conftest._light_compiles``)."""
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the 2-device child sets its own
    return script


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def test_timing_helper_rotates_the_rounds_and_settles_after_each_call(script):
    from bench.timing import round_robin, summary

    order = []
    calls = round_robin({name: (lambda n=name: order.append(n)) for name in "abc"}, 3)
    assert "".join(order) == "abcbcacab"  # each round starts one driver later
    assert all(len(c) == 3 for c in calls.values())
    assert all(c.wall >= 0 and 0 < c.settle < 2 for cs in calls.values() for c in cs)
    figures = summary(calls["a"])
    assert figures["median"] == statistics.median(c.wall for c in calls["a"])
    assert figures["min"] == min(figures["all"]) and len(figures["all"]) == 3


def test_flags_quick_and_unknown_drivers(script, capsys):
    args = script.parse_args(["--quick"])
    assert (args.presets, args.examples, args.epochs, args.tta_arch) == (["a", "b"], 4096, 1, "a")
    args = script.parse_args(["--sweep", "--quick"])
    assert (args.sweep_presets, args.sweep_k, args.sweep_steps, args.sweep_rounds,
            args.eval_k) == (["b"], [1, 2], 3, 1, 2)
    assert script.parse_args(["--drivers", "step-loop"]).drivers == ["step-loop"]
    with pytest.raises(SystemExit) as e:
        script.parse_args(["--drivers", "scan-hand,warp-drive"])
    assert e.value.code == 2 and "no driver warp-drive here" in capsys.readouterr().err


def test_benchmark_reports_every_figure(benchmark, tmp_path, capsys):
    """One preset on 1,024 examples (8 steps an epoch), 2 timed epochs, every driver (the
    time-to-accuracy runs: the next test)."""
    out = tmp_path / "bench.json"
    report = benchmark.main(["--presets", "a", "--examples", "1024", "--epochs", "2",
                             "--no-tta", "--json", str(out)])
    stdout = capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert set(report["presets"]) == {"a"} and report["examples"] == 1024
    assert "time_to_accuracy" not in report
    entry = report["presets"]["a"]
    drivers = {"scan-hand", "scan-autodiff", "step-loop", "dispatch-only"} | (
        {"torch-eager"} if _has_torch() else set())
    assert set(entry["runs"]) == drivers
    for name, run in entry["runs"].items():
        # The median and min of the timed epochs after the first; examples/s of 8 steps.
        assert len(run["epoch_seconds_all"]) == 2 and run["first_epoch_seconds"] > 0
        assert run["epoch_seconds"] == statistics.median(run["epoch_seconds_all"])
        assert run["epoch_seconds_min"] == min(run["epoch_seconds_all"])
        assert run["examples_per_second"] == pytest.approx(8 * 128 / run["epoch_seconds"])
        # Each driver left the cores idle before the next began (2 s: it never did).
        assert 0 < run["settle_seconds_after"] < 2
        assert (run["compile_seconds"] > 0) == (name != "torch-eager"), name
    assert entry["runs"]["scan-hand"]["hlo_instructions"] > 100
    assert entry["runs"]["scan-autodiff"]["hlo_instructions"] > 100
    # Ratios are the epoch times' quotients, measured in this run.
    hand = entry["runs"]["scan-hand"]["epoch_seconds"]
    assert set(entry["speedup_of_scan_hand"]) == drivers - {"scan-hand", "dispatch-only"}
    for name, ratio in entry["speedup_of_scan_hand"].items():
        assert ratio == pytest.approx(entry["runs"][name]["epoch_seconds"] / hand)
    assert entry["scan_hand_us_per_step"] == pytest.approx(hand / 8 * 1e6)
    assert entry["dispatch_us_per_step"] == pytest.approx(
        entry["runs"]["dispatch-only"]["epoch_seconds"] / 8 * 1e6)
    assert report["peak_rss_mib"]["benchmark_process"] > 0
    numbers = list(_numbers({k: v for k, v in report.items() if k != "torch"}))
    assert numbers and all(math.isfinite(x) and x >= 0 for x in numbers)
    # The printed table carries the same rows, and the numbers.
    table = [l for l in stdout.splitlines() if l.startswith("| a |")]
    assert len(table) == len(entry["runs"])
    assert f"| a | scan-hand | {hand * 1e3:.1f} |" in stdout
    assert "peak memory (max RSS): benchmark process" in stdout


def test_time_to_accuracy(benchmark, cache_dir, tmp_path, monkeypatch, capsys):
    """One real ``jaxmlp train`` to 85% in a fresh process (on the session's filled caches:
    the benchmark's first run, on empty ones, spends its seconds filling them), its figures
    read back from the run's metrics.jsonl; and the two runs of the measurement share one
    fresh cache folder."""
    from bench import startup

    r = startup.time_to_accuracy("a", 0.85, 2, None, cache_dir, tmp_path / "run")
    assert r["reached"] and r["test_acc"] >= 0.85 and 1 <= r["epochs"] <= 2
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert (r["test_acc"], r["epochs"]) == (records[-1]["test_acc"], len(records))
    assert 0 < r["compile_seconds"] and 0 < r["startup_seconds"] < r["wall_seconds"]
    runs = []

    def fake(arch, target, epochs, data_dir, cache, out):
        runs.append((cache, out, cache.exists()))
        cache.mkdir(exist_ok=True)  # what a run leaves for the next
        return {"wall_seconds": 2.0 / len(runs), "reached": True, "test_acc": 0.9,
                "epochs": 1, "startup_seconds": 1.0 / len(runs), "compile_seconds": 0.5}

    monkeypatch.setattr(startup, "time_to_accuracy", fake)
    tta = startup.measure("a", 0.85, 2)
    assert runs[0][0] == runs[1][0] and runs[0][1] != runs[1][1]  # one cache, two folders
    assert [exists for _, _, exists in runs] == [False, True]  # empty first, then filled
    assert (tta["arch"], tta["target"], tta["second_run"]["startup_seconds"]) == ("a", 0.85, 0.5)
    startup.print_table({"time_to_accuracy": tta, "peak_rss_mib": startup.peak_rss_mib()})
    stdout = capsys.readouterr().out
    assert "| first run | 2.0 | 1 | 1.00 | 0.50 |" in stdout
    assert "| second run | 1.0 | 1 | 0.50 | 0.50 |" in stdout


SWEEP_DRIVERS = {"vmap_shared", "vmap_independent", "sequential"}
TORCH_DRIVERS = {"torch_eager", "torch_func", "torch_eager_1thread", "torch_func_1thread"}
TWO_DEVICE = {"vmap_shared_2dev", "vmap_independent_2dev", "vmap_shared_1dev_in_2dev_process",
              "sequential_in_2dev_process"}
TWO_DEVICE_TORCH = {"torch_eager_in_2dev_process"}


def _counting(monkeypatch, cls, name, counts):
    original = getattr(cls, name)

    def counted(self, *args, **kwargs):
        counts[f"{cls.__name__}.{name}"] = counts.get(f"{cls.__name__}.{name}", 0) + 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)


def test_sweep_benchmark_reports_every_figure(benchmark, tmp_path, capsys, monkeypatch):
    """``--sweep`` of preset b, K = 2, 2 steps a call, 2 timed rounds, plus the 2-device
    child process; then training against evaluation for K = 2. The jaxmlp drivers
    run the trainer's own epochs and evaluation (``Stack.train``, ``_One.train``,
    ``Stack.evaluate``), counted here; the file's one-model figures stay beside them."""
    from jaxmlp._sweep import Stack
    from jaxmlp._trainer import _One

    counts = {}
    for cls, name in ((Stack, "train"), (Stack, "evaluate"), (_One, "train")):
        _counting(monkeypatch, cls, name, counts)
    out = tmp_path / "sweep.json"
    out.write_text(json.dumps({"presets": {"a": {"runs": {}}}, "date": "earlier"}))
    report = benchmark.main(["--sweep", "--sweep-presets", "b", "--sweep-k", "2",
                             "--sweep-steps", "2", "--sweep-rounds", "2", "--eval-k", "2",
                             "--examples", "1024", "--json", str(out)])
    stdout = capsys.readouterr().out
    saved = json.loads(out.read_text())
    # Written beside what the file held; --sweep measures the sweep alone.
    assert saved["presets"] == {"a": {"runs": {}}} and saved["date"] == "earlier"
    assert "presets" not in report
    for key in ("sweep_setup", "sweep", "sweep_details", "sweep_ratios", "sweep_evaluation"):
        assert saved[key] == json.loads(json.dumps(report[key])), key
    # 2 vmapped drivers and K = 2 single runs each train a first (compiling) epoch, a
    # warm-up and 2 timed ones; the evaluation part a first epoch and 2 timed ones.
    assert counts == {"Stack.train": 2 * 4 + 3, "_One.train": 2 * 4, "Stack.evaluate": 3}
    torch = _has_torch()
    drivers = SWEEP_DRIVERS | (TORCH_DRIVERS if torch else set())
    two_device = TWO_DEVICE | (TWO_DEVICE_TORCH if torch else set())
    assert set(report["sweep"]) == {"b"} and set(report["sweep"]["b"]) == {"2"}
    for k, figures in report["sweep"]["b"].items():
        assert set(figures) == drivers | two_device, k
        details = report["sweep_details"]["b"][k]
        assert details["steps_per_call"] == 2
        timed = {**details, **details.get("2dev_process", {})}
        for name, fig in figures.items():
            # Model-epochs per second: K * steps / 468 over the median call's seconds.
            d = timed[name]
            assert len(d["seconds_all"]) == 2
            assert d["seconds_per_call"] == statistics.median(d["seconds_all"])
            assert fig == pytest.approx(int(k) * 2 / 468 / d["seconds_per_call"]), name
            assert (d["compile_seconds"] > 0) == (not name.startswith("torch")), name
            assert d["build_seconds"] >= d["compile_seconds"]
            assert 0 < d["settle_seconds_after"] < 2
        ratios = report["sweep_ratios"]["b"][k]
        for ratio, value in ratios.items():
            top, bottom = ratio.split("/")
            bottom += "_in_2dev_process" if top.endswith("_2dev") else ""
            assert value == pytest.approx(figures[top] / figures[bottom]), ratio
        assert "vmap_shared_2dev/sequential" in ratios
        assert ("vmap_shared/torch_eager" in ratios) == torch
    # The 2-device sweep splits K models over two forced CPU devices: even K only.
    from bench import sweeps

    assert sweeps.measure(benchmark._load(1024, None), presets=["b"], ks=[1, 3], batch_size=128,
                          lr=0.05, steps=2, rounds=2, has_torch=torch,
                          two_devices=True) == ({"b": {}}, {"b": {}})
    ev = report["sweep_evaluation"]
    # 1,024 examples, the last sixth held out: 854 train (6 steps), 170 val; all 10,000 test.
    assert (ev["preset"], ev["k"], ev["steps_per_epoch"]) == ("b", 2, 6)
    assert ev["examples"] == {"train": 854, "val": 170, "test": 10000}
    assert ev["evaluate_calls_per_model_way"] == 2 * 3
    seconds = ev["seconds_all"]
    assert all(len(s) == 2 for s in seconds.values())
    t, e, old = (statistics.median(seconds[n]) for n in
                 ("train", "evaluate", "evaluate_per_model"))
    assert (ev["train_seconds"], ev["evaluate_seconds"], ev["evaluate_per_model_seconds"]) == (
        t, e, old)
    assert ev["eval_share"] == pytest.approx(e / (t + e))
    assert ev["eval_share_per_model"] == pytest.approx(old / (t + old))
    assert ev["evaluate_speedup"] == pytest.approx(old / e)
    assert ev["target_met"] == (ev["eval_share"] <= 0.2)
    assert ev["max_correct_difference"] <= 1  # both evaluations count the same predictions
    numbers = list(_numbers({k: v for k, v in report.items() if k != "torch"}))
    assert numbers and all(math.isfinite(x) and x >= 0 for x in numbers)
    # The printed tables (throughputs, ratios) have one row per preset and K; the
    # evaluation's lines its figures.
    rows = [l.split("|")[2].strip() for l in stdout.splitlines() if l.startswith("| b |")]
    assert rows == ["2"] * 3  # throughputs, ratios, 2-device process controls
    assert f"{t:8.3f} s\n" in stdout and f"{e:8.3f} s = {ev['eval_share']:.1%}" in stdout
    assert f"{old:8.3f} s = {ev['eval_share_per_model']:.1%}" in stdout


def test_optimizer_comparison_prints_its_table(tfds_dir, cache_dir, mnist, monkeypatch, capsys):
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(cache_dir))
    spec = importlib.util.spec_from_file_location("compare", "scripts/compare_optimizers.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    # 10,000 training examples (50,000 held out): short epochs, a table all the same.
    rows = compare.main(["--arch", "a", "--epochs", "2", "--seeds", "0,1", "--optimizer", "sgd",
                         "--optimizer", "adam", "--val-size", "50000", "--data-dir", str(tfds_dir)])
    assert [r["optimizer"] for r in rows] == ["sgd", "adam"]
    assert rows[1]["lr"] == 1e-3 and rows[0]["lr"] == 0.1  # each optimizer's default
    for r in rows:
        assert len(r["test"]) == 2 and r["test"][0] != r["test"][1]  # two seeds, two runs
        assert all(0.7 < a < 1 for a in r["val"] + r["test"]) and r["epoch_s"] > 0
    table = capsys.readouterr().out.split("| optimizer |")[1].splitlines()
    assert table[2].startswith("| sgd | 0.1 | 0 | 0.") and table[2].endswith("| 1.00× |")
    assert table[3].startswith("| adam | 0.001 | 0 | 0.")


def test_augment_benchmark_reports_every_driver(benchmark, tmp_path, capsys):
    report = benchmark.main(["--augment", "--quick", "--json",
                             str(tmp_path / "b.json")])["augment"]
    drivers = ["jaxmlp-plain", "jaxmlp-augment"] + (
        ["torch-per-image", "torch-batched"] if _has_torch() else [])
    assert [k for k in report if isinstance(report[k], list)] == drivers
    assert all(len(report[d]) == 1 and all(s > 0 for s in report[d]) for d in drivers)
    assert report["steps"] == 4096 // 128  # --quick: the first 4,096 examples
    out = capsys.readouterr().out
    plain, aug = (statistics.median(report[d]) for d in drivers[:2])
    assert f"augmentation costs {(aug - plain) / plain:.2f}x a plain epoch" in out
    assert json.loads((tmp_path / "b.json").read_text())["augment"]["augment"] == report["augment"]


def test_adversarial_benchmark_reports_every_driver(benchmark, tmp_path, capsys):
    report = benchmark.main(["--adversarial", "--quick", "--json",
                             str(tmp_path / "b.json")])["adversarial"]
    drivers = ["jaxmlp-plain", "jaxmlp-adversarial", "jaxmlp-adversarial-autodiff"] + (
        ["torch-adversarial"] if _has_torch() else [])
    assert [k for k in report if isinstance(report[k], list)] == drivers
    assert all(len(report[d]) == 1 and all(s > 0 for s in report[d]) for d in drivers)
    assert (report["arch"], report["steps"]) == ("b", 4096 // 128)
    out = capsys.readouterr().out
    plain, adv = (statistics.median(report[d]) for d in drivers[:2])
    assert f"adversarial training costs {adv / plain:.2f}x a plain epoch" in out
    assert f"| jaxmlp-adversarial | {adv:.2f} | {adv / plain:.2f}x |" in out
    assert json.loads((tmp_path / "b.json").read_text())["adversarial"]["epsilon"] == 0.1


def test_records_script_prints_its_table(env, monkeypatch, capsys, tmp_path):
    # --quick: 30 steps per recipe on a slice; the figures are the runs' own.
    monkeypatch.setattr(sys, "path", [str(ROOT / "scripts"), *sys.path])
    spec = importlib.util.spec_from_file_location("records", ROOT / "scripts" / "records.py")
    records = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(records)
    rows = records.main(["--quick", "--recipes", "simard2003", "--estimate", "keras_mlp",
                         "--tta", "1", "--committee", "--out", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# MNIST MLP records, ") and "cores, jax" in out[0]
    trained, timed = rows
    run = json.loads((tmp_path / "simard2003" / "metrics.jsonl").read_text().splitlines()[-1])
    assert trained["error"] == pytest.approx(100 * (1 - run["test_acc"]))
    assert "| `simard2003` | Simard" in out[3] and f"**{trained['error']:.2f}%**" in out[3]
    voted = json.loads((tmp_path / "simard2003" / "eval.json").read_text())
    assert voted["tta"]["n"] == 1 and f"with TTA {100 * (1 - voted['test_acc']):.2f}%" in out[3]
    # A committee of one recipe's one model votes as that model over the same shifts.
    assert out[4].startswith("| committee | every recipe above, 1 models voting") and \
        f"**{100 * (1 - voted['test_acc']):.2f}%**" in out[4]
    assert "s/epoch measured here over 8 steps" in timed["estimate"]
    assert out[5].startswith("| `keras_mlp` |") and "not trained here" in out[5]


def test_records_script_gives_a_single_models_mean_over_seeds(env, monkeypatch, capsys,
                                                              tmp_path):
    monkeypatch.setattr(sys, "path", [str(ROOT / "scripts"), *sys.path])
    spec = importlib.util.spec_from_file_location("records", ROOT / "scripts" / "records.py")
    records = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(records)
    (row,) = records.main(["--quick", "--recipes", "simard2003", "--estimate", "", "--seeds",
                           "2", "--tta", "1", "--out", str(tmp_path)])
    line = capsys.readouterr().out.splitlines()[3]
    summary = json.loads((tmp_path / "simard2003" / "summary.json").read_text())
    errors = [100 * (1 - m["test_acc"]) for m in summary["models"]]
    assert [m["seed"] for m in summary["models"]] == [0, 1] and errors[0] != errors[1]
    assert row["error"] == pytest.approx(sum(errors) / 2)
    assert f"**{row['error']:.2f}%** (mean ± std of 2 seeds: ± " in line
    assert f"{min(errors):.2f} to {max(errors):.2f}; the 2 voting " in line
    assert "; with TTA " in line and ", voting " in line
    # Again on the same folder: resumed, so loaded (nothing trained), the same figures.
    (again,) = records.main(["--quick", "--recipes", "simard2003", "--estimate", "", "--seeds",
                             "2", "--tta", "1", "--out", str(tmp_path)])
    assert again["error"] == row["error"] and capsys.readouterr().out.splitlines()[3] == \
        line.replace(f"{row['seconds'] / 60:.1f} min", f"{again['seconds'] / 60:.1f} min")
    history = [json.loads(r) for r in
               (tmp_path / "simard2003" / "metrics.jsonl").read_text().splitlines()]
    assert again["seconds"] == pytest.approx(sum(
        h["epoch_seconds"] + h["eval_seconds"] + h["compile_seconds"] for h in history))
    with pytest.raises(SystemExit):
        records.main(["--quick", "--seeds", "0", "--out", str(tmp_path / "no")])
    assert not (tmp_path / "no").exists()
    capsys.readouterr()
    # Without --seeds, the folder of seeds is refused in one line, status 2 (found by a
    # fresh-eyes test: it said "in use by another jaxmlp process", naming its own pid).
    monkeypatch.setattr(sys, "argv", ["records.py", "--quick", "--recipes", "simard2003",
                                      "--estimate", "", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        records._main_in_a_line()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith(
        f"records.py: {tmp_path / 'simard2003'} is not a run folder: it has no config.json (it "
        "holds a sweep"), err


def test_precision_benchmark_reports_both_dtypes_and_the_cpu(benchmark, tmp_path, capsys):
    report = benchmark.main(["--precision", "--quick", "--json", str(tmp_path / "p.json")])
    part = report["precision"]
    drivers = ["jaxmlp-float32", "jaxmlp-bfloat16"] + (
        ["torch-float32", "torch-autocast"] if _has_torch() else [])
    (net,) = part["nets"]  # --quick: preset b only
    runs = part["nets"][net]["runs"]
    assert list(runs) == drivers and all(r["epoch_seconds"] > 0 for r in runs.values())
    ratio = part["nets"][net]["ratios"]["jaxmlp_float32_over_bfloat16"]
    assert ratio == runs["jaxmlp-float32"]["epoch_seconds"] / runs["jaxmlp-bfloat16"]["epoch_seconds"]
    assert set(part["cpu"]["flags"]) == {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"}
    out = capsys.readouterr().out
    assert out.startswith("jaxmlp mixed-precision benchmark, ") and "amx_bf16 " in out
    assert f"| b | {runs['jaxmlp-float32']['epoch_seconds']:.2f} | " in out
    assert f"| {ratio:.2f}x |" in out
    assert json.loads((tmp_path / "p.json").read_text())["precision"]["cpu"] == part["cpu"]
    parts = part["step_parts"]  # --quick: preset b's step
    assert set(parts) == {"net", "step, float32", "step, bfloat16", "gradients, float32",
                          "gradients, bfloat16", "update", "cast"} and parts["net"] == "b"
    assert all(parts[k] > 0 for k in parts if k != "net")
    rest = parts["step, bfloat16"] - parts["gradients, bfloat16"]
    assert "One b training step by parts" in out and f"({rest:.2f} ms: the update" in out
    for name in ("step", "gradients"):  # each row its own figures, under its own label
        f32, bf16 = parts[f"{name}, float32"], parts[f"{name}, bfloat16"]
        assert f"| {name} | {f32:.2f} | {bf16:.2f} | {f32 / bf16:.2f}x |" in out
    assert f"| update (one float32 update in both) | {parts['update']:.2f} | - | - |" in out
    assert f"| cast of the weights | - | {parts['cast']:.2f} | - |" in out
    ways = part["layer"]
    assert list(ways) == ["float32", "bfloat16, transposed operands", "bfloat16, matmul_backward"]
    for way, row in ways.items():
        assert list(row) == ["forward a w", "δ wᵀ", "aᵀ δ"] and all(t > 0 for t in row.values())
        gflops = 2 * 128 * 2500 * 2000 / row["aᵀ δ"] / 1e6
        assert f"| {way} | " in out and f"{row['aᵀ δ']:.2f} ({gflops:.0f}) |" in out


def test_speedrun_reports_each_seed_and_the_mean(env, monkeypatch, capsys):
    # --quick: 2 seeds of 20 steps after a warm-up, on a slice; every figure is the runs' own.
    monkeypatch.setattr(sys, "path", [str(ROOT / "scripts"), *sys.path])
    spec = importlib.util.spec_from_file_location("speedrun", ROOT / "scripts" / "speedrun.py")
    speedrun = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speedrun)
    summary = speedrun.main(["--quick", "--tta", "1", "--target", "0.5", "--budget", "1000"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# speedrun: speedrun99, 2 seeds after a warm-up, ")
    assert out[0].endswith("; --quick: 20 steps a seed on 6,000 images, at most 2 seeds, "
                           "whatever --epochs and --seeds say")
    assert out[2].startswith("warm-up (seed 10000, not counted): ")
    rows = summary["rows"]
    assert [r["seed"] for r in rows] == [0, 1] and rows[0]["test_acc"] != rows[1]["test_acc"]
    for row, line in zip(rows, out[3:5]):
        assert line.startswith(f"seed {row['seed']}: test accuracy {row['test_acc']:.4f}, "
                               f"with TTA {row['tta_acc']:.4f}")
        assert 0 < row["train_s"] < row["wall_s"]
    accs = [r["test_acc"] for r in rows]
    assert summary["test_acc"] == {"mean": sum(accs) / 2, "min": min(accs), "max": max(accs)}
    assert summary["met"] == (summary["test_acc"]["mean"] >= 0.5)
    assert out[-1] == "target 50.00% mean in <= 1000 s of training: " + (
        "met" if summary["met"] else "not met")
    # Unless given, each recipe is judged by its own goal (issue 28's).
    assert [speedrun.goal(r) for r in ("speedrun99", "speedrun995", "simard2003")] == [
        (0.99, 10.0), (0.995, 300.0), (0.993, 3600.0)]
    # Bad settings: one line each, before any data is read or anything trained.
    for argv, message in ((["--tta", "0"], "--tta must be a positive int below 1000, got 0"),
                          (["--epochs", "0"], "--epochs must be >= 1, got 0"),
                          (["--target", "nan"], "--target must be an accuracy in (0, 1], got nan"),
                          (["--budget", "-5"], "--budget must be a positive number of seconds"),
                          (["--data-dir", "/nonexistent"], "--data-dir /nonexistent does not exist")):
        with pytest.raises(SystemExit) as exit_:
            speedrun.main(["--quick", *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_ctrl_c_ends_a_speedrun_in_one_line(env):
    # Ctrl-C while it trains: the one line `jaxmlp train` would give, exit 130, no traceback.
    import signal
    import subprocess

    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "speedrun.py"), "--quick"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not proc.stdout.readline().startswith("# settings:"):  # data loaded, training
            assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == ("speedrun.py: interrupted; nothing is saved; the seeds finished are "
                           "printed above"), err


def test_width_committee_trains_each_width_and_compares_with_seeds(env, monkeypatch, capsys,
                                                                    tmp_path):
    # --quick: 20 steps a member on slices; every figure is recomputed from the folders.
    from jaxmlp import load_dataset, load_run, predict
    from jaxmlp.app._cli import main as cli

    monkeypatch.setattr(sys, "path", [str(ROOT / "scripts"), *sys.path])
    spec = importlib.util.spec_from_file_location("wc", ROOT / "scripts" / "width_committee.py")
    wc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wc)
    rows = wc.main(["--quick", "--widths", "12,18", "--out", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# width committee, speedrun99, ") and len(out) == 3 + 5 + 2
    members = {"seed0": "original", "w12": "12", "w18": "18"}
    probs, labels = [], None
    for folder, key in members.items():
        run = load_run(tmp_path / folder)
        data = load_dataset(run.config.dataset)  # w12's records its npz file
        assert run.config.dataset == ("mnist" if folder == "seed0" else
                                      f"npz:{(tmp_path / f'mnist-w{key}.npz').resolve()}")
        labels = np.asarray(data.test_labels)[:1000]
        probs.append(predict(run.params, data.test_images[:1000], run.arch))
        assert rows["widths"][key]["test_acc"] == pytest.approx(
            np.mean(probs[-1].argmax(1) == labels))
    committee = rows["width_committee"]
    assert committee["test_acc"] == np.mean(np.mean(probs, 0).argmax(1) == labels)
    missed = sum(np.all([p.argmax(1) != labels for p in probs], axis=0))
    assert committee == {"test_acc": committee["test_acc"], "tta_acc": None,
                         "missed_by_all": missed}
    assert f"| **committee of the 3 widths** (originals included) | " \
           f"**{100 * committee['test_acc']:.2f}%**; every member misses {missed} | – |" in out
    assert list(rows["seeds"]) == ["0", "1", "2"] and list(rows["widths"]) == ["original", "12",
                                                                             "18"]
    # The normalised digits are the library's, rounded to uint8.
    npz = np.load(tmp_path / "mnist-w12.npz")
    original = load_dataset("mnist")
    np.testing.assert_array_equal(npz["x_test"][:5].reshape(5, -1), wc.normalised(
        original.test_images[:5], 12, (28, 28, 1)))
    assert not np.array_equal(npz["x_test"][:5].reshape(5, -1), original.test_images[:5])
    # Again: every member is loaded, not trained, and the figures are the same.
    again = wc.main(["--quick", "--widths", "12,18", "--out", str(tmp_path)])
    assert all(r["loaded"] for part in ("widths", "seeds") for r in again[part].values())
    assert again["width_committee"] == rows["width_committee"]
    capsys.readouterr()
    # Nothing wrong is loaded or trained: each case one line, naming the folder or file.
    for args, message in [
        (["--recipe", "simard2003"], f"{tmp_path / 'seed0'} holds a run this member cannot "
                                     f"continue: --resume cannot change --batch-size, --lr, "
                                     f"--augment"),
        (["--widths", "12,12.0000001"], "--widths names 12 twice"),
        (["--widths", "12,x"], "--widths takes numbers of pixels, comma-separated: 'x' is not one"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0")]:
        with pytest.raises(SystemExit) as e:
            wc.main(["--quick", *args, "--out", str(tmp_path)])
        err = capsys.readouterr().err  # one line, status 2, as jaxmlp ends a refusal
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err
    (tmp_path / "mnist-w18.npz").write_bytes(b"not a zip")
    with pytest.raises(SystemExit) as e:
        wc.main(["--quick", "--widths", "12,18", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "mnist-w18.npz" in err and err.endswith(
        "(a file this script wrote: remove it to have it written again)\n")
    (tmp_path / "mnist-w18.npz").unlink()  # written again, the same digits
    assert wc.main(["--quick", "--widths", "12,18", "--out", str(tmp_path)])[
        "width_committee"] == rows["width_committee"]
    capsys.readouterr()
    # `jaxmlp eval` of a member reads its normalised digits (the file its run records).
    assert cli(["eval", str(tmp_path / "w18")]) == 0
    assert json.loads((tmp_path / "w18" / "eval.json").read_text())["test_acc"] == \
        pytest.approx(rows["widths"]["18"]["test_acc"], abs=1e-3)
    # Found by a fresh-eyes test: a moved comparison said only "cannot change --dataset"; an
    # --out that is a file gave "[Errno 17] File exists"; a run's folder was written into.
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(tmp_path, moved)
    (tmp_path / "file").write_text("x")
    for out, message in [
            (moved, f"{moved / 'w12'} was trained on {(tmp_path / 'mnist-w12.npz').resolve()}: "
                    "a member records its digits' full path, so a comparison continues only in "
                    "the folder it was made in (move it back, or start again with another --out)"),
            (tmp_path / "file", f"--out {tmp_path / 'file'} is a file, not a folder"),
            (tmp_path / "w18", f"--out {tmp_path / 'w18'} holds a jaxmlp run, not a width "
                               "comparison: choose another folder")]:
        listed = sorted(moved.rglob("*"))
        with pytest.raises(SystemExit) as e:
            wc.main(["--quick", "--widths", "12,18", "--out", str(out)])
        assert (e.value.code, capsys.readouterr().err) == (2, f"width_committee.py: {message}\n")
        assert sorted(moved.rglob("*")) == listed


def test_stacked_dots_times_each_matmul_one_and_stacked(monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("stacked_dots",
                                                  ROOT / "scripts" / "stacked_dots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--k", "2", "--batch", "4", "--width", "8", "--rounds", "1"])
    assert [(r["dtype"], r["dot"]) for r in rows] == [
        (d, n) for d in ("bfloat16", "float32") for n in ("x @ W", "δ @ Wᵀ", "xᵀ @ δ")]
    assert all(0 < r[k] < 10 for r in rows for k in ("one", "stacked"))
    out = capsys.readouterr().out
    assert "K = 2, batch 4, 8 × 8" in out and out.count("\n|---|") == 1
    assert f"{rows[2]['stacked'] / 2 / rows[2]['one']:.2f}x |" in out  # the ratio is per model
    with pytest.raises(SystemExit):
        module.main(["--width", "0"])
    assert "--width must be in [1, 8192], got 0" in capsys.readouterr().err
