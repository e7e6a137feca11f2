"""The benchmark's --quick mode runs and reports a complete, sane table (not its timings)."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest



def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_quick_benchmark_reports_every_figure(tfds_dir, cache_dir, mnist, tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "TFDS_DATA_DIR": str(tfds_dir), "JAXMLP_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["presets"]) == {"a", "b"}
    drivers = {"scan-hand", "scan-autodiff", "step-loop", "dispatch-only"}
    for preset, entry in report["presets"].items():
        assert drivers <= set(entry["runs"])
        assert set(entry["speedup_of_scan_hand"]) == set(entry["runs"]) - {"scan-hand",
                                                                           "dispatch-only"}
        for run in entry["runs"].values():
            assert run["epoch_seconds"] > 0 and run["examples_per_second"] > 0
            # Each driver left the cores idle before the next began (2 s: it never did).
            assert 0 < run["settle_seconds_after"] < 2
        # Ratios are the epoch times' quotients, measured in this run.
        hand = entry["runs"]["scan-hand"]["epoch_seconds"]
        for name, ratio in entry["speedup_of_scan_hand"].items():
            assert ratio == pytest.approx(entry["runs"][name]["epoch_seconds"] / hand)
    tta = report["time_to_accuracy"]
    for run in ("first_run", "second_run"):
        assert tta[run]["reached"] and tta[run]["wall_seconds"] > 0
        assert tta[run]["startup_seconds"] > 0
    assert report["peak_rss_mib"]["benchmark_process"] > 0
    numbers = list(_numbers({k: v for k, v in report.items() if k != "torch"}))
    assert numbers and all(math.isfinite(x) and x >= 0 for x in numbers)
    # The printed table carries the same rows.
    table = [l for l in proc.stdout.splitlines() if l.startswith("| a |") or l.startswith("| b |")]
    assert len(table) == sum(len(e["runs"]) for e in report["presets"].values())
    assert "first run" in proc.stdout and "second run" in proc.stdout


SWEEP_DRIVERS = {"vmap_shared", "vmap_independent", "sequential"}
TORCH_DRIVERS = {"torch_eager", "torch_func", "torch_eager_1thread", "torch_func_1thread"}
TWO_DEVICE = {"vmap_shared_2dev", "vmap_independent_2dev", "vmap_shared_1dev_in_2dev_process",
              "sequential_in_2dev_process"}
TWO_DEVICE_TORCH = {"torch_eager_in_2dev_process"}


def test_quick_sweep_benchmark_reports_every_figure(tfds_dir, cache_dir, mnist, tmp_path):
    """``--sweep --quick``: preset b, K = 1 and 2, 3 steps a call, plus the 2-device child
    process; every throughput present, positive and finite."""
    out = tmp_path / "sweep.json"
    env = {**os.environ, "TFDS_DATA_DIR": str(tfds_dir), "JAXMLP_CACHE_DIR": str(cache_dir)}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "scripts/benchmark.py", "--sweep", "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=400,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "presets" not in report  # --sweep measures the sweep alone
    torch = importlib.util.find_spec("torch") is not None
    drivers = SWEEP_DRIVERS | (TORCH_DRIVERS if torch else set())
    two_device = TWO_DEVICE | (TWO_DEVICE_TORCH if torch else set())
    assert set(report["sweep"]) == {"b"} and set(report["sweep"]["b"]) == {"1", "2"}
    for k, figures in report["sweep"]["b"].items():
        # The 2-device sweep splits K models over two forced CPU devices: K >= 2 only.
        assert set(figures) == drivers | (two_device if k == "2" else set()), k
        assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
        ratios = report["sweep_ratios"]["b"][k]
        assert ratios["vmap_shared/sequential"] == pytest.approx(
            figures["vmap_shared"] / figures["sequential"])
        if k == "2":  # the 2-device sweep against the sequential runs timed beside it
            assert ratios["vmap_shared_2dev/sequential"] == pytest.approx(
                figures["vmap_shared_2dev"] / figures["sequential_in_2dev_process"])
        # Model-epochs per second are K * steps / 468 over the median call's seconds.
        details = report["sweep_details"]["b"][k]
        assert figures["sequential"] == pytest.approx(
            int(k) * details["steps_per_call"] / 468 / details["sequential"]["seconds_per_call"])
    numbers = list(_numbers({k: v for k, v in report.items() if k != "torch"}))
    assert numbers and all(math.isfinite(x) and x >= 0 for x in numbers)
    # The printed tables (throughputs, ratios) have one row per preset and K.
    rows = [l.split("|")[2].strip() for l in proc.stdout.splitlines() if l.startswith("| b |")]
    assert rows == ["1", "2"] * 2 + ["2"]  # throughputs, ratios, 2-device process controls


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
