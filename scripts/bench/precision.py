"""Mixed precision: seconds per training epoch in float32 and in bfloat16, jaxmlp beside PyTorch.

For each network (presets b and wide, the networks of the simard2003 and ciresan2010
recipes) at one batch size it times whole epochs of

  jaxmlp-float32   jaxmlp's epoch (``make_epoch``, hand backward pass), float32
  jaxmlp-bfloat16  the same with ``compute_dtype="bfloat16"``: every matmul of both passes
                   on bfloat16 operands, summed in float32 (``jaxmlp._mlp.matmul``)
  torch-float32    PyTorch eager, same net, optimizer and batch (when torch is importable)
  torch-autocast   the same under ``torch.autocast("cpu", torch.bfloat16)``

round-robin with a settle between calls (``bench.timing``), the first epoch apart, and
reports the median scaled to a 60,000-example epoch, with the ratios measured in this run:
each side's float32 time over its bfloat16 time, and jaxmlp's bfloat16 over PyTorch's.
The CPU's model and the flags that decide bfloat16's speed (``amx_bf16``, ``avx512_bf16``,
``avx512f``) are read from /proc/cpuinfo and printed with the table.

Reproduce: ``python scripts/benchmark.py --precision`` (12,800 examples an epoch, 2 timed
epochs; ``--examples``, ``--epochs``, ``--precision-nets`` change that).
"""
import sys
from pathlib import Path

from jaxmlp._recipes import RECIPES

from bench.epochs import make_scan
from bench.timing import round_robin, summary

NETS = {"b": "b", "wide": "wide", "simard2003": RECIPES["simard2003"].settings["arch"],
        "ciresan2010": RECIPES["ciresan2010"].settings["arch"]}
FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
FULL_EPOCH = 60_000


def cpu() -> dict:
    """The CPU's model name and which of ``FLAGS`` it has (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": None, "flags": {}}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), None)
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    return {"model": model, "flags": {f: f in flags for f in FLAGS}}


def _drivers(arch, images, labels, batch_size, lr, total, has_torch) -> dict:
    common = (images, labels, batch_size, lr, total)
    makers = {
        "jaxmlp-float32": lambda: make_scan(arch, "hand", *common),
        "jaxmlp-bfloat16": lambda: make_scan(arch, "hand", *common, compute_dtype="bfloat16")}
    if has_torch:
        from bench.torch_nets import make_torch

        makers["torch-float32"] = lambda: make_torch(arch, *common)
        makers["torch-autocast"] = lambda: make_torch(arch, *common, autocast=True)
    return makers


def measure(nets, images, labels, *, batch_size: int, lr: float, epochs: int,
            has_torch: bool) -> dict:
    """``{"cpu": cpu(), "nets": {net: {"arch", "runs": {driver: figures}, "ratios"}}}``."""
    total, scale = epochs + 1, FULL_EPOCH / len(labels)
    out: dict = {"cpu": cpu(), "nets": {}}
    for net in nets:
        arch = NETS.get(net, net)
        built = {name: make() for name, make in
                 _drivers(arch, images, labels, batch_size, lr, total, has_torch).items()}
        calls = round_robin({name: d.run for name, d in built.items()}, total)
        runs = {}
        for name, driver in built.items():
            timed = summary(calls[name][1:])
            runs[name] = {"epoch_seconds": timed["median"] * scale,
                          "epoch_seconds_min": timed["min"] * scale,
                          "compile_seconds": driver.compile_seconds,
                          "first_epoch_seconds": calls[name][0].wall}
        t = {name: row["epoch_seconds"] for name, row in runs.items()}
        ratios = {"jaxmlp_float32_over_bfloat16": t["jaxmlp-float32"] / t["jaxmlp-bfloat16"]}
        if has_torch:
            ratios["torch_float32_over_autocast"] = t["torch-float32"] / t["torch-autocast"]
            ratios["torch_autocast_over_jaxmlp_bfloat16"] = (t["torch-autocast"]
                                                             / t["jaxmlp-bfloat16"])
            ratios["torch_float32_over_jaxmlp_float32"] = t["torch-float32"] / t["jaxmlp-float32"]
        out["nets"][net] = {"arch": arch, "runs": runs, "ratios": ratios}
        print(f"  {net}: done", file=sys.stderr, flush=True)
    return out


def print_table(report: dict) -> None:
    part = report["precision"]
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in part["cpu"]["flags"].items())
    print(f"jaxmlp mixed-precision benchmark, {report['date']}: {report['backend']}, "
          f"{part['cpu']['model']} ({flags}); {report['machine']}; jax {report['jax']}, "
          f"torch {report['torch']}; batch {report['batch_size']}, seconds per "
          f"{FULL_EPOCH:,}-example epoch (median of {report['timed_epochs']} epochs of "
          f"{report['examples']:,} after the first, scaled)")
    print()
    names = ("jaxmlp-float32", "jaxmlp-bfloat16", "torch-float32", "torch-autocast")
    print("| net | " + " | ".join(names) + " | jaxmlp f32/bf16 | torch f32/autocast | "
          "torch autocast / jaxmlp bf16 |")
    print("|---|" + "---|" * (len(names) + 3))
    for net, entry in part["nets"].items():
        cells = [f"{entry['runs'][n]['epoch_seconds']:.2f}" if n in entry["runs"] else "-"
                 for n in names]
        ratios = [entry["ratios"].get(k) for k in ("jaxmlp_float32_over_bfloat16",
                                                    "torch_float32_over_autocast",
                                                    "torch_autocast_over_jaxmlp_bfloat16")]
        print(f"| {net} | " + " | ".join(cells) + " | " +
              " | ".join("-" if r is None else f"{r:.2f}x" for r in ratios) + " |")
    print()
    fast = [n for n, e in part["nets"].items()
            if e["ratios"]["jaxmlp_float32_over_bfloat16"] > 1.05]
    print("bfloat16 is faster here for: " + (", ".join(fast) if fast else "none of these nets")
          + ("" if fast else " (choose --compute-dtype float32 on this machine)"))

