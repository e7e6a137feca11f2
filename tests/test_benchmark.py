"""The benchmark's --quick mode runs and reports a complete, sane table (not its timings)."""
import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.mnist


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
