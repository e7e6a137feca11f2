"""Many models: how fast K models train at once, in model-epochs per second (one epoch =
60,000 // batch steps), against K models one after another and PyTorch.

For each preset (b and wide by default) and K (1, 4, 16; 64 too on a GPU), all at batch
128, SGD momentum 0.9, cosine learning rate, hand backward pass:

  vmap_shared       the trainer's own sweep epoch, ``jaxmlp._sweep.Stack.train`` (start,
                    place, train: what ``jaxmlp sweep`` runs), order "shared" (every model
                    the same batch)
  vmap_independent  the same, order "independent" (each model its own data order)
  sequential        K single runs one after another, each the trainer's single-run layout
                    ``jaxmlp._trainer._One`` (``jaxmlp train --seed i``), in this process
  torch_eager       PyTorch eager, K models one after another
  torch_func        PyTorch's ensembling: stack_module_state + functional_call + torch.vmap
                    of torch.func.grad_and_value, every model the same batch
  *_1thread         the two PyTorch drivers on one thread (CPU only)

Each call trains every model ``steps`` steps (100; 10 for wide), one whole epoch of the
first steps x batch examples (so the per-epoch shuffle weighs on a call as on a real
epoch); calls run round-robin (``bench.timing``), a warm-up round and then ``rounds`` (5)
timed ones, and each driver's figure is its median call. Model i starts as ``jaxmlp train
--seed i`` does in every jaxmlp driver. On CPU the benchmark then re-runs itself with two
forced CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2) for the sweeps
sharded over both (vmap_shared_2dev, vmap_independent_2dev; K even) and, timed beside them
as controls, the shared sweep on one of them, the sequential runs and torch eager. The
child gets its settings and returns its figures as JSON files.

Reproduce: ``python scripts/benchmark.py --sweep`` (``--sweep-presets``, ``--sweep-k``,
``--sweep-steps``, ``--sweep-rounds``; ``--quick``: preset b, K = 1 and 2, 3 steps).
"""
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax

from jaxmlp._config import Grid, TrainConfig
from jaxmlp._data import Dataset
from jaxmlp._parallel import make_mesh
from jaxmlp._sweep import Stack
from jaxmlp._layout import put_dataset
from jaxmlp._trainer import _One

from bench.timing import Driver, round_robin, summary

DRIVERS = ("vmap_shared", "vmap_independent", "sequential", "torch_eager", "torch_func")
STEPS = {"wide": 10}  # steps timed per call; 100 for any other preset
MNIST_EPOCH = 60_000  # examples of the epoch the figures are per
# The ratios reported: above 1, the first is faster. The 2-device sweep's are against the
# controls timed beside it, in the child process.
RATIOS = ("vmap_shared/sequential", "vmap_shared/torch_eager", "vmap_shared/torch_func",
          "vmap_shared/torch_eager_1thread", "vmap_shared/torch_func_1thread",
          "vmap_shared_2dev/vmap_shared_1dev", "vmap_shared_2dev/sequential",
          "vmap_shared_2dev/torch_eager")
CONTROLS = ("vmap_shared_1dev", "sequential", "torch_eager")


def steps_for(preset: str, steps=None) -> int:
    return steps or STEPS.get(preset, 100)


def config_for(arch: str, batch_size: int, lr: float, epochs: int, devices: int,
               **more) -> TrainConfig:
    """jaxmlp's defaults otherwise: hand backward pass, SGD momentum 0.9, cosine schedule
    over ``epochs`` calls."""
    return TrainConfig(arch=arch, batch_size=batch_size, lr=lr, momentum=0.9, grad="hand",
                       schedule="cosine", epochs=epochs, devices=devices, **more)


def make_stack(arch, order, k, data: Dataset, batch_size, lr, steps, calls, devices) -> Driver:
    """The trainer's sweep epoch: a ``Stack`` of K models sharded over ``devices`` devices,
    started and placed as ``jaxmlp._trainer.fit`` does; ``run`` is one ``Stack.train`` (one
    compiled call of ``steps`` steps of all K models, then its host sync of the losses).
    The first epoch, which compiles, runs here."""
    config = config_for(arch, batch_size, lr, calls + 1, devices)
    stack = Stack(config, Grid(tuple(range(k)), (lr,), (0.9,)), order, data)
    state, _, num_steps = stack.start(None, None, steps)
    params, opt_state = stack.place(state, num_steps)
    epochs = itertools.count(1)
    params, opt_state, _, _, compile_s = stack.train(params, opt_state, next(epochs), 0, steps)
    box = [params, opt_state]

    def run():
        box[0], box[1], _, _, _ = stack.train(*box, next(epochs), 0, steps)

    return Driver(run, compile_s)


def make_sequential(arch, k, data: Dataset, batch_size, lr, steps, calls) -> Driver:
    """K single runs one after another: model i a ``_One`` of seed i (the layout of
    ``jaxmlp train --seed i``), each started and placed as ``fit`` does and trained one
    ``_One.train`` (one compiled epoch and its host sync) per call, on one device. The
    dataset goes to the device once, for all of them; each compiles its own epoch (as K
    separate runs would; the compilation cache makes that quick), here."""
    config = config_for(arch, batch_size, lr, calls + 1, 1)
    on_device = put_dataset(data, make_mesh(1))
    runs, compile_s = [], 0.0
    for seed in range(k):
        single = dataclasses.replace(config, seed=seed)
        one = _One(single, on_device)
        state, _, num_steps = one.start(None, None, steps)
        params, opt_state = one.place(state, num_steps)
        params, opt_state, _, _, seconds = one.train(params, opt_state, 1, 0, steps)
        compile_s += seconds
        runs.append((one, [params, opt_state], itertools.count(2)))

    def run():
        for one, box, epochs in runs:
            box[0], box[1], _, _, _ = one.train(*box, next(epochs), 0, steps)

    return Driver(run, compile_s)


def _makers(preset, k, data, batch_size, lr, steps, calls, *, two_devices, has_torch) -> dict:
    """The drivers of one preset and K, each a function that builds it."""
    common = dict(data=data, batch_size=batch_size, lr=lr, steps=steps, calls=calls)
    torch_args = (preset, k, data.train_images, data.train_labels, batch_size, lr, steps, calls)

    def torch(name, one_thread=False):
        def make():
            from bench import torch_nets

            driver = getattr(torch_nets, name)(*torch_args)
            return torch_nets.one_thread(driver) if one_thread else driver
        return make

    if two_devices:
        makers = {
            "vmap_shared_2dev": lambda: make_stack(preset, "shared", k, devices=2, **common),
            "vmap_independent_2dev": lambda: make_stack(preset, "independent", k, devices=2,
                                                        **common),
            # Controls timed beside them, in the same process and rounds: the machine's
            # other load then weighs on both sides of each ratio alike.
            "vmap_shared_1dev_in_2dev_process": lambda: make_stack(preset, "shared", k,
                                                                   devices=1, **common),
            "sequential_in_2dev_process": lambda: make_sequential(preset, k, **common),
            "torch_eager_in_2dev_process": torch("make_torch_sequential")}
        if not has_torch:
            del makers["torch_eager_in_2dev_process"]
        return makers
    makers = {
        "vmap_shared": lambda: make_stack(preset, "shared", k, devices=1, **common),
        "vmap_independent": lambda: make_stack(preset, "independent", k, devices=1, **common),
        "sequential": lambda: make_sequential(preset, k, **common),
        "torch_eager": torch("make_torch_sequential"),
        "torch_func": torch("make_torch_func"),
        "torch_eager_1thread": torch("make_torch_sequential", one_thread=True),
        "torch_func_1thread": torch("make_torch_func", one_thread=True)}
    if not has_torch:
        return {n: m for n, m in makers.items() if not n.startswith("torch")}
    if jax.default_backend() != "cpu":  # only a CPU shared with JAX needs them
        return {n: m for n, m in makers.items() if not n.endswith("_1thread")}
    return makers


def _figures(makers: dict, k: int, steps: int, epoch_steps: int, rounds: int):
    """Builds the drivers, times them round-robin; model-epochs/s and the details."""
    built, build_seconds = {}, {}
    for name, make in makers.items():
        start = time.perf_counter()
        built[name] = make()
        build_seconds[name] = time.perf_counter() - start
    calls = round_robin({name: d.run for name, d in built.items()}, rounds + 1)
    figures, details = {}, {}
    for name, driver in built.items():
        timed = summary(calls[name][1:])  # the first round warms up
        figures[name] = k * steps / epoch_steps / timed["median"]
        # CPU seconds per wall second: how many cores the driver kept busy (about 1 or 2 here)
        details[name] = {"seconds_per_call": timed["median"], "seconds_all": timed["all"],
                         "cores_busy": timed["cores_busy"],
                         "settle_seconds_after": timed["settle_max"],
                         "compile_seconds": driver.compile_seconds,
                         "build_seconds": build_seconds[name]}
    return figures, details


def measure(mnist: Dataset, *, presets, ks, batch_size: int, lr: float, steps, rounds: int,
            has_torch: bool, two_devices: bool = False) -> tuple[dict, dict]:
    """``({preset: {K: {driver: model-epochs/s}}}, details)`` of this process's drivers;
    ``two_devices``: the 2-device process's (even K only). ``steps`` None: ``STEPS``."""
    epoch_steps = MNIST_EPOCH // batch_size  # one MNIST epoch, whatever slice is timed
    figures: dict = {}
    details: dict = {}
    began = time.perf_counter()
    for preset in presets:
        n = steps_for(preset, steps)
        if n * batch_size > len(mnist.train_labels):
            raise SystemExit(f"--sweep-steps {n} needs {n * batch_size} examples, have "
                             f"{len(mnist.train_labels)}")
        part = mnist._replace(train_images=mnist.train_images[:n * batch_size],
                              train_labels=mnist.train_labels[:n * batch_size])
        figures[preset], details[preset] = {}, {}
        for k in ks:
            if two_devices and k % 2:
                continue
            makers = _makers(preset, k, part, batch_size, lr, n, rounds + 1,
                             two_devices=two_devices, has_torch=has_torch)
            fig, det = _figures(makers, k, n, epoch_steps, rounds)
            figures[preset][str(k)] = fig
            details[preset][str(k)] = {"steps_per_call": n, **det}
            print(f"  sweep {preset} K={k}{' (2 devices)' if two_devices else ''}: done "
                  f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    return figures, details


def child_settings(*, presets, ks, batch_size, lr, steps, rounds, has_torch, examples,
                   data_dir) -> dict:
    """What the 2-device child process needs to know (JSON)."""
    return {"presets": list(presets), "ks": list(ks), "batch_size": batch_size, "lr": lr,
            "steps": steps, "rounds": rounds, "has_torch": has_torch, "examples": examples,
            "data_dir": data_dir}


def run_child(entry: Path, settings: dict, folder: Path) -> dict:
    """Starts ``entry --sweep-child SETTINGS.json`` with two forced CPU devices (the flag only
    works before JAX starts); returns the figures it wrote to ``settings["out"]``."""
    settings = {**settings, "out": str(folder / "sweep-2dev.json")}
    path = folder / "sweep-2dev-settings.json"
    path.write_text(json.dumps(settings))
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                       " --xla_force_host_platform_device_count=2").strip()}
    proc = subprocess.run([sys.executable, str(entry), "--sweep-child", str(path)], env=env,
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise RuntimeError(f"the 2-device sweep failed (exit {proc.returncode})")
    return json.loads(Path(settings["out"]).read_text())


def child_main(settings_path: str, load) -> None:
    """The 2-device child: ``load(examples, data_dir)`` gives the data; figures as JSON."""
    settings = json.loads(Path(settings_path).read_text())
    mnist = load(settings["examples"], settings["data_dir"])
    figures, details = measure(mnist, presets=settings["presets"], ks=settings["ks"],
                               batch_size=settings["batch_size"], lr=settings["lr"],
                               steps=settings["steps"], rounds=settings["rounds"],
                               has_torch=settings["has_torch"], two_devices=True)
    Path(settings["out"]).write_text(json.dumps({"sweep": figures, "sweep_details": details}))


def merge_child(report: dict, child: dict) -> None:
    """The child's figures beside this process's: ``sweep[preset][K]`` gains its drivers,
    ``sweep_details[preset][K]["2dev_process"]`` its details."""
    for preset, per_k in child["sweep"].items():
        for k, fig in per_k.items():
            report["sweep"][preset][k].update(fig)
            report["sweep_details"][preset][k]["2dev_process"] = child["sweep_details"][preset][k]


def ratios(sweep: dict) -> dict:
    """``{preset: {K: {"a/b": a's figure over b's}}}`` for each of ``RATIOS`` measured;
    the 2-device sweep against the controls of its own process."""
    out: dict = {}
    for preset, per_k in sweep.items():
        out[preset] = {}
        for k, fig in per_k.items():
            r = {}
            for ratio in RATIOS:
                top, bottom = ratio.split("/")
                if top.endswith("_2dev"):
                    bottom = f"{bottom}_in_2dev_process"
                if top in fig and bottom in fig:
                    r[ratio] = fig[top] / fig[bottom]
            out[preset][k] = r
    return out


def print_table(report: dict) -> None:
    setup = report["sweep_setup"]
    print(f"jaxmlp sweep benchmark, {report['date']}: {report['backend']} "
          f"({', '.join(report['devices'])}), {report['machine']}; jax {report['jax']}, torch "
          f"{report['torch']} ({setup['torch_threads']} threads); batch {report['batch_size']}, "
          f"SGD momentum 0.9, cosine lr from {setup['lr']}; model-epochs per second (1 epoch = "
          f"{setup['epoch_steps']} steps), median of {setup['rounds']} calls of "
          f"{', '.join(f'{n} ({p})' for p, n in setup['steps'].items())} steps after a "
          f"warm-up call, each call a whole epoch of the first steps x {report['batch_size']} "
          "examples")
    print(f"load average (1 min) before {setup['load_average_before']:.2f}, after "
          f"{setup['load_average_after']:.2f}, on {os.cpu_count()} cores")
    print()
    cols = [*DRIVERS, "torch_eager_1thread", "torch_func_1thread", "vmap_shared_2dev",
            "vmap_independent_2dev"]
    print("model-epochs per second:")
    print()
    print("| preset | K | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for preset, per_k in report["sweep"].items():
        for k, fig in per_k.items():
            print(f"| {preset} | {k} | " + " | ".join(
                f"{fig[c]:.3g}" if c in fig else "-" for c in cols) + " |")
    shown = [r for r in RATIOS if r != "vmap_shared/torch_func_1thread"]
    print()
    print("ratios (above 1: the first is faster; vmap_shared_2dev against the controls timed "
          "beside it in the 2-device process):")
    print()
    print("| preset | K | " + " | ".join(r.replace("/", " / ") for r in shown) + " |")
    print("|---|---|" + "---|" * len(shown))
    for preset, per_k in report["sweep_ratios"].items():
        for k, r in per_k.items():
            print(f"| {preset} | {k} | " + " | ".join(
                f"{r[c]:.2f}x" if c in r else "-" for c in shown) + " |")
    print()
    print("cores busy (this process's CPU seconds per wall second, median call): " + "; ".join(
        f"{preset} K={k}: " + ", ".join(
            f"{name} {d['cores_busy']:.2f}" for name, d in
            {**det, **det.get("2dev_process", {})}.items()
            if isinstance(d, dict) and "cores_busy" in d)
        for preset, per_k in report["sweep_details"].items() for k, det in per_k.items()))
    rows = [(p, k, fig) for p, per_k in report["sweep"].items() for k, fig in per_k.items()
            if "vmap_shared_2dev" in fig]
    if rows:
        print()
        print("controls timed in the 2-device process (model-epochs per second):")
        print()
        print("| preset | K | " + " | ".join(f"{c} (in 2-device process)" for c in CONTROLS) +
              " |")
        print("|---|---|" + "---|" * len(CONTROLS))
        for p, k, fig in rows:
            print(f"| {p} | {k} | " + " | ".join(
                f"{fig[f'{c}_in_2dev_process']:.3g}" if f"{c}_in_2dev_process" in fig else "-"
                for c in CONTROLS) + " |")
