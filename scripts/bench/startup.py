"""Start-up: wall time to a target accuracy, and process start to the first step, of
``jaxmlp train`` in fresh processes; then peak memory.

It runs ``jaxmlp train --arch ARCH --target-accuracy TARGET`` twice, each in a fresh
process with the same (initially empty) caches (``JAXMLP_CACHE_DIR``: the decoded dataset
and XLA's compilation cache): the first run fills them, the second shows what a repeated
command costs. Each run's figures come from its own ``metrics.jsonl`` (``startup_seconds``:
process start to the first step; ``compile_seconds``). Peak memory is the max RSS of the
benchmark process and of those training processes.

Reproduce: ``python scripts/benchmark.py --presets b --drivers scan-hand`` (the runs close
every one-model benchmark; ``--tta-arch``, ``--tta-target``, ``--tta-epochs`` change them,
``--no-tta`` skips them).
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_to_accuracy(arch: str, target: float, epochs: int, data_dir, cache_dir: Path,
                     out: Path) -> dict:
    """Runs ``jaxmlp train`` in a fresh process; wall time until it stops at ``target``."""
    env = {**os.environ, "JAXMLP_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "-m", "jaxmlp.app._cli", "train", "--overwrite", "--arch", arch,
               "--epochs", str(epochs), "--target-accuracy", str(target), "--out", str(out),
               "--no-progress", "--log-every", "1000000"]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall_seconds": wall, "reached": records[-1]["test_acc"] >= target,
            "test_acc": records[-1]["test_acc"], "epochs": len(records),
            "startup_seconds": records[0].get("startup_seconds"),
            "compile_seconds": records[0]["compile_seconds"]}


def measure(arch: str, target: float, epochs: int, data_dir=None) -> dict:
    """``{"arch", "target", "first_run", "second_run"}``: two runs sharing fresh caches."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        return {"arch": arch, "target": target,
                **{run: time_to_accuracy(arch, target, epochs, data_dir, tmp / "cache",
                                         tmp / run) for run in ("first_run", "second_run")}}


def peak_rss_mib() -> dict:
    """Max RSS of this process and of the largest child it waited for, in MiB."""
    return {"benchmark_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "training_processes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def print_table(report: dict) -> None:
    tta = report.get("time_to_accuracy")
    if tta:
        print()
        print(f"| {tta['arch']} to test accuracy >= {tta['target']} | wall (s) | epochs | "
              "process start to first step (s) | compile (s) |")
        print("|---|---|---|---|---|")
        for run in ("first_run", "second_run"):
            r = tta[run]
            reached = "" if r["reached"] else f" (not reached: {r['test_acc']:.4f})"
            print(f"| {run.replace('_', ' ')} | {r['wall_seconds']:.1f}{reached} | {r['epochs']} | "
                  f"{r['startup_seconds']:.2f} | {r['compile_seconds']:.2f} |")
    mem = report["peak_rss_mib"]
    print(f"\npeak memory (max RSS): benchmark process {mem['benchmark_process']:.0f} MiB, "
          f"training processes {mem['training_processes']:.0f} MiB")
