"""How fast jaxmlp trains an MLP, against the usual ways, measured in one process.

For each preset (a, b, c, wide by default) at one batch size it times whole training
epochs, the first apart (compilation) and then the median of the rest, for:

  scan-hand      jaxmlp: a whole epoch in one jitted lax.scan, hand-written backward pass
  scan-autodiff  the same with jax.grad
  step-loop      the way JAX's own MNIST examples train: one jitted step per batch, batches
                 cut from host numpy arrays by a Python loop (same step function as jaxmlp)
  torch-eager    PyTorch eager, data preloaded as tensors, same net, optimizer and batch
                 (when torch is importable)

and prints the ratios of scan-hand against each, measured in the same run. Between calls the script waits until the
process is idle (``_settle``), so no driver's threads run into the next one's time; checked
once by timing each driver alone (``--drivers NAME``) against the whole round-robin:
2026-12-01, 2-core AMD EPYC, preset b, ms per epoch, median (min) of 5: scan-hand 152 (146)
in the round-robin vs 153 (146) alone, step-loop 208 (206) vs 209 (201), torch-eager 342
(319) vs 314 (305), torch's own spread between runs. The sweep mode's rounds settle too. Then it runs
``jaxmlp train --arch wide --target-accuracy 0.98`` twice in fresh processes, first with
empty caches and then with warm ones, and reports the wall time to 98% test accuracy and
the time from process start to the first step. Peak memory (max RSS) of this process and
of those training processes closes the report. A table goes to stdout, everything to JSON.

With --sweep it measures instead how fast K models train at once, in model-epochs per
second (one epoch = 60,000 // batch steps), for presets b and wide and K = 1, 4, 16 (64
too on a GPU), all at batch 128, SGD momentum 0.9, cosine learning rate, hand backward pass:

  vmap_shared       jaxmlp.sweep.make_sweep_epoch, order "shared" (every model the same batch)
  vmap_independent  the same, order "independent" (each model its own data order)
  sequential        K single jaxmlp runs one after another (make_epoch compiled once)
  torch_eager       PyTorch eager, K models one after another
  torch_func        PyTorch's ensembling: stack_module_state + functional_call + torch.vmap
                    of torch.func.grad_and_value, every model the same batch

Each call trains every model `--sweep-steps` steps (100; 10 for wide), one whole epoch of
the first steps x batch examples; calls run round-robin, a warm-up round and then
`--sweep-rounds` (5) timed ones, and each driver's figure is its median call. On CPU the
script then re-runs itself with two forced CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=2) for the vmapped sweeps sharded over
both (vmap_shared_2dev, vmap_independent_2dev; K >= 2, even) and, as a control, the shared
sweep on one of them. Figures go under "sweep" in the JSON (sweep[preset][K][driver]),
beside what the file already holds.

Usage:
  python scripts/benchmark.py [--presets a,b,c,wide] [--batch-size 128] [--epochs 3]
                              [--json runs/benchmark.json] [--quick]
  python scripts/benchmark.py --sweep [--sweep-presets b,wide] [--sweep-k 1,4,16]
                              [--sweep-steps N] [--sweep-rounds 5] [--quick]
"""
import argparse
import itertools
import json
import os

import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp.arch import parse_arch
from jaxmlp.data import MNIST, load_mnist
from jaxmlp.mlp import init_params
from jaxmlp.train import TrainConfig, make_epoch, make_optimizer, make_step

ROOT = Path(__file__).resolve().parents[1]
_T0 = time.perf_counter()


def _fresh_state(arch, optimizer, seed=0):
    params = init_params(jax.random.key(seed), arch, MNIST.in_dim)
    return params, optimizer.init(params)


# Each driver: make_X(...) compiles what it needs and returns (compile_seconds, run_epoch,
# info), where run_epoch() trains one epoch and waits for it. main() runs the drivers' epochs
# round-robin, so a slow spell of the machine hits them all alike.


def make_scan(arch, grad, data, batch_size, lr, total_epochs):
    """jaxmlp's own driver: ``make_epoch`` compiled once, then one call per epoch."""
    config = TrainConfig(arch=arch, batch_size=batch_size, lr=lr, grad=grad)
    steps = len(data[1]) // batch_size
    optimizer = make_optimizer(config, steps * total_epochs)
    run = make_epoch(make_step(arch, optimizer, grad), batch_size)
    state = list(_fresh_state(arch, optimizer))
    x, y = jax.device_put(data[0]), jax.device_put(data[1])
    keys = iter(jax.random.split(jax.random.key(1), total_epochs + 1))
    start = time.perf_counter()
    compiled = run.lower(*state, x, y, next(keys), 0, steps).compile()
    compile_seconds = time.perf_counter() - start
    # How much work XLA kept: instructions in the optimised program (the epoch loop's body
    # dominates), to compare the hand and autodiff programs beyond timing noise.
    instructions = sum(" = " in line for line in compiled.as_text().splitlines())

    def run_epoch():
        state[0], state[1], metrics = compiled(*state, x, y, next(keys), 0)
        jax.block_until_ready(metrics)

    return compile_seconds, run_epoch, {"hlo_instructions": instructions}


def make_step_loop(arch, data, batch_size, lr, total_epochs, *, step_fn=None):
    """The JAX-examples driver: a jitted step per batch, fed from host numpy in Python."""
    config = TrainConfig(arch=arch, batch_size=batch_size, lr=lr, grad="autodiff")
    steps = len(data[1]) // batch_size
    optimizer = make_optimizer(config, steps * total_epochs)
    step = jax.jit(step_fn or make_step(arch, optimizer, "autodiff"), donate_argnums=(0, 1))
    state = list(_fresh_state(arch, optimizer))
    images, labels = data
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    step = step.lower(*state, images[:batch_size], labels[:batch_size]).compile()
    compile_seconds = time.perf_counter() - start

    def run_epoch():
        order = rng.permutation(len(labels))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            state[0], state[1], metrics = step(*state, images[idx], labels[idx])
        jax.block_until_ready(metrics)

    return compile_seconds, run_epoch, {}


def make_dispatch_only(arch, data, batch_size, lr, total_epochs):
    """The step loop with an empty step: what driving from Python costs by itself."""
    return make_step_loop(arch, data, batch_size, lr, total_epochs,
                          step_fn=lambda p, o, x, y: (p, o, {"loss": jax.numpy.sum(y)}))


def _torch_net(arch, seed=0):
    """The same network in PyTorch (its default init), seeded."""
    import torch

    torch.manual_seed(seed)
    layers, fan_in = [], MNIST.in_dim
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
            "linear": torch.nn.Identity}
    for units, activation in parse_arch(arch):
        layers += [torch.nn.Linear(fan_in, units), acts[activation]()]
        fan_in = units
    return torch.nn.Sequential(*layers)


def _torch_data(data):
    """The dataset as float tensors in [0, 1] and int64 labels, preloaded."""
    import torch

    return torch.from_numpy(data[0]).float().div_(255.0), torch.from_numpy(data[1]).long()


def make_torch(arch, data, batch_size, lr, total_epochs, *, steps=None, seed=0, tensors=None):
    """PyTorch eager with the whole dataset preloaded as float tensors.

    ``run_epoch`` trains ``steps`` steps (default: a whole epoch of ``data``); ``tensors``
    shares one preloaded copy of the data between several models."""
    import torch

    model = _torch_net(arch, seed)
    steps = steps or len(data[1]) // batch_size
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * total_epochs)
    x, y = tensors or _torch_data(data)

    def run_epoch():
        order = torch.randperm(len(y))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()

    return 0.0, run_epoch, {}


def time_to_accuracy(arch, target, epochs, data_dir, cache_dir, out):
    """Runs ``jaxmlp train`` in a fresh process; wall time until it stops at ``target``."""
    env = {**os.environ, "JAXMLP_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "-m", "jaxmlp.cli", "train", "--overwrite", "--arch", arch, "--epochs", str(epochs),
               "--target-accuracy", str(target), "--out", str(out), "--no-progress",
               "--log-every", "1000000"]
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


# ---- --sweep: K models at once against K models one after another ---------------------------
#
# Each sweep driver: make_X(...) builds K models and compiles what it needs; it returns
# (compile_seconds, run_call, info), where run_call() trains `steps` steps of every one of
# the K models (the same steps for all drivers) and waits for them.

SWEEP_DRIVERS = ("vmap_shared", "vmap_independent", "sequential", "torch_eager", "torch_func")
SWEEP_STEPS = {"wide": 10}  # steps timed per call; 100 for any other preset
_INIT_MODELS = {}  # the last init_models result, on the host
_INIT_DIR = None  # where the parent leaves init_models results for the 2-device child
_K_MAX = 1  # the largest K of the sweep


def _sweep_config(arch, batch_size, lr):
    # jaxmlp's defaults otherwise: hand backward pass, SGD momentum 0.9, cosine schedule.
    return TrainConfig(arch=arch, batch_size=batch_size, lr=lr, momentum=0.9, grad="hand",
                       schedule="cosine")


def _initial_models(config, k, horizon):
    """``init_models`` of seeds 0 to K-1, as host arrays (each driver puts its own copy on
    the devices: its buffers are donated).

    ``init_models`` compiles its vmapped init afresh on every call, seconds on a CPU, so it
    runs once per preset, for the largest K (``_K_MAX``); a smaller K takes its first K
    models, which are the same arrays (each model's init depends on its seed alone). The
    parent process leaves that result in ``_INIT_DIR`` for the 2-device child, whose XLA
    flags miss the persistent compilation cache."""
    from jaxmlp.sweep import Grid, init_models

    cache_key = (config.arch, _K_MAX, config.batch_size, config.lr, horizon)
    if cache_key not in _INIT_MODELS:
        _INIT_MODELS.clear()  # one preset at a time
        path = _INIT_DIR and Path(_INIT_DIR) / ("init-%s-%d-%d-%r-%d.pkl" % cache_key)
        if path and path.exists():
            _INIT_MODELS[cache_key] = pickle.loads(path.read_bytes())
        else:
            _INIT_MODELS[cache_key] = jax.tree.map(np.asarray, init_models(
                config, Grid(tuple(range(_K_MAX)), (config.lr,), (0.9,)), horizon))
            if path:
                path.write_bytes(pickle.dumps(_INIT_MODELS[cache_key]))
    return jax.tree.map(lambda a: a[:k] if a.ndim else a, _INIT_MODELS[cache_key])


def make_vmap_sweep(arch, order, k, data, batch_size, lr, steps, calls, devices):
    """jaxmlp's sweep epoch (``make_sweep_epoch``), K models sharded over ``devices``, driven
    as ``_SweepLoop.run`` drives it: one compiled call per `steps` steps of all K models."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxmlp.sweep import MODEL, make_sweep_epoch

    config = _sweep_config(arch, batch_size, lr)
    horizon = steps * calls
    mesh = Mesh(np.asarray(devices), (MODEL,))
    per_model, replicated = NamedSharding(mesh, P(MODEL)), NamedSharding(mesh, P())
    state, hyper = _initial_models(config, k, horizon)
    params, opt_state, hyper = jax.device_put((state["params"], state["opt_state"], hyper),
                                              per_model)
    images, labels = jax.device_put((data[0], data[1]), replicated)
    data_keys = jax.random.wrap_key_data(jnp.asarray(state["key"]))
    keys = [jax.device_put(jax.vmap(jax.random.fold_in, (0, None))(data_keys, epoch), per_model)
            for epoch in range(1, calls + 1)]
    run = make_sweep_epoch(config, horizon, order, mesh)
    start = time.perf_counter()
    compiled = run.lower(params, opt_state, hyper, images, labels, keys[0], 0, steps).compile()
    compile_seconds = time.perf_counter() - start
    box, calls_done = [params, opt_state], itertools.count()

    def run_call():
        key = keys[next(calls_done) % calls]
        box[0], box[1], metrics = compiled(box[0], box[1], hyper, images, labels, key, 0)
        np.asarray(metrics["loss"])  # the host sync of _SweepLoop.run

    return compile_seconds, run_call, {}


def make_sequential(arch, k, data, batch_size, lr, steps, calls):
    """K single jaxmlp runs one after another: ``make_epoch`` of ``make_step`` compiled once,
    called once per model, each with its own params, optimizer state and data order."""
    config = _sweep_config(arch, batch_size, lr)
    horizon = steps * calls
    optimizer = make_optimizer(config, horizon)
    run = make_epoch(make_step(parse_arch(arch), optimizer, "hand"), batch_size)
    # Model i starts as `jaxmlp train --seed i` would (init_models' params and data keys are
    # those of the single runs), from the same params as the vmapped drivers.
    state, _ = _initial_models(config, k, horizon)
    models, keys = [], []
    for i in range(k):
        params = jax.device_put(jax.tree.map(lambda a: a[i], state["params"]))
        data_key = jax.random.wrap_key_data(jnp.asarray(state["key"][i]))
        models.append([params, optimizer.init(params)])
        keys.append([jax.random.fold_in(data_key, epoch) for epoch in range(1, calls + 1)])
    x, y = jax.device_put(data[0]), jax.device_put(data[1])
    start = time.perf_counter()
    compiled = run.lower(*models[0], x, y, keys[0][0], 0, steps).compile()
    compile_seconds = time.perf_counter() - start
    calls_done = itertools.count()

    def run_call():
        call = next(calls_done) % calls
        for model, key in zip(models, keys):
            model[0], model[1], metrics = compiled(*model, x, y, key[call], 0)
            np.asarray(metrics["loss"])  # a single run's once-per-epoch host sync

    return compile_seconds, run_call, {}


def make_torch_sequential(arch, k, data, batch_size, lr, steps, calls):
    """PyTorch eager, K models one after another (``make_torch``'s loop), one data copy."""
    tensors = _torch_data(data)
    runs = [make_torch(arch, data, batch_size, lr, calls, steps=steps, seed=seed,
                       tensors=tensors)[1] for seed in range(k)]

    def run_call():
        for run in runs:
            run()

    return 0.0, run_call, {}


def make_torch_func(arch, k, data, batch_size, lr, steps, calls):
    """PyTorch's model ensembling: ``stack_module_state`` + ``functional_call`` under
    ``torch.vmap`` of ``torch.func.grad_and_value``, every model on the same batch (the
    analogue of vmap_shared); torch's SGD (momentum 0.9, cosine) on the stacked params."""
    import copy

    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state

    nets = [_torch_net(arch, seed) for seed in range(k)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")

    def loss(params, buffers, x, y):
        return torch.nn.functional.cross_entropy(functional_call(base, (params, buffers), (x,)), y)

    grads_and_losses = torch.vmap(grad_and_value(loss), in_dims=(0, 0, None, None))
    optimizer = torch.optim.SGD(list(params.values()), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * calls)
    x, y = _torch_data(data)

    def run_call():
        order = torch.randperm(len(y))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            grads, _ = grads_and_losses(params, buffers, x[idx], y[idx])
            for name, p in params.items():
                p.grad = grads[name]
            optimizer.step()
            schedule.step()

    return 0.0, run_call, {}


def _one_thread(driver):
    """The driver with PyTorch on one thread during its calls. Torch's default (one OpenMP
    thread per core) stalls at every parallel region when another process holds a core,
    which on a shared machine can make a step a hundred times slower; one thread cannot."""
    import torch

    compile_seconds, run_call, info = driver

    def call():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            run_call()
        finally:
            torch.set_num_threads(threads)

    return compile_seconds, call, info


def _settle(max_s: float = 2.0, window_s: float = 0.01) -> float:
    """Waits until this process's threads are idle; returns the seconds it waited.

    PyTorch's OpenMP threads spin after each parallel region waiting for more work (libgomp
    for about 10 ms here, Intel's OpenMP for KMP_BLOCKTIME, 200 ms by default), and XLA's
    pool may finish work late: the driver timed next would share the cores with them. Idle
    means one ``window_s`` with under 5% of a core busy. (OMP_WAIT_POLICY=PASSIVE would end
    the spinning too, but made torch-eager 2.7x slower on preset b: it is torch's own speed
    that is timed, with its default threads.)
    """
    start = time.perf_counter()
    while time.perf_counter() - start < max_s:
        cpu = time.process_time()
        time.sleep(window_s)
        if time.process_time() - cpu < 0.05 * window_s:
            break
    return time.perf_counter() - start


def round_robin(drivers: dict, rounds: int) -> dict:
    """Seconds of each driver's calls: a warm-up round, then `rounds` rounds, each starting
    one driver later. Returns {name: [(wall, CPU seconds of this process) of each timed
    call]}."""
    times = {name: [] for name in drivers}
    order = list(drivers)
    for r in range(rounds + 1):
        for name in order[r % len(order):] + order[:r % len(order)]:
            start, cpu = time.perf_counter(), time.process_time()
            drivers[name]()
            times[name].append((time.perf_counter() - start, time.process_time() - cpu))
            _settle()
    return {name: t[1:] for name, t in times.items()}


def _sweep_figures(makers: dict, k: int, steps: int, epoch_steps: int, rounds: int):
    """Builds the drivers, times them round-robin; model-epochs/s and the details."""
    built, build_seconds = {}, {}
    for name, make in makers.items():
        start = time.perf_counter()
        built[name] = make()
        build_seconds[name] = time.perf_counter() - start
    times = round_robin({name: b[1] for name, b in built.items()}, rounds)
    figures, details = {}, {}
    for name, calls in times.items():
        seconds = [wall for wall, _ in calls]
        median = statistics.median(seconds)
        figures[name] = k * steps / epoch_steps / median
        # CPU seconds per wall second: how many cores the driver kept busy (about 1 or 2 here)
        cores = statistics.median(cpu / wall for wall, cpu in calls)
        details[name] = {"seconds_per_call": median, "seconds_all": seconds, "cores_busy": cores,
                         "compile_seconds": built[name][0], "build_seconds": build_seconds[name]}
    return figures, details


def run_sweep(args, data, *, devices_2=False) -> tuple[dict, dict]:
    """The --sweep measurements: ({preset: {K: {driver: model-epochs/s}}}, details).

    With ``devices_2`` (the child process with two forced CPU devices), the vmapped sweeps
    sharded over both devices, timed round-robin beside controls on one device (the shared
    sweep, the sequential runs, torch eager), for even K."""
    global _K_MAX
    _K_MAX = max(args.sweep_k)
    epoch_steps = 60_000 // args.batch_size  # one MNIST epoch, whatever slice is timed
    figures, details = {}, {}
    for preset in args.sweep_presets.split(","):
        steps = args.sweep_steps or SWEEP_STEPS.get(preset, 100)
        calls = args.sweep_rounds + 1
        if steps * args.batch_size > len(data[1]):
            raise SystemExit(f"--sweep-steps {steps} needs {steps * args.batch_size} examples, "
                             f"have {len(data[1])}")
        # Each call is one whole epoch of the first steps * batch examples: the per-epoch
        # shuffle then weighs on a call as it does on a real epoch (timing `steps` steps of
        # 60,000 shuffled examples would charge a whole epoch's sort to each call).
        part = (data[0][:steps * args.batch_size], data[1][:steps * args.batch_size])
        common = dict(data=part, batch_size=args.batch_size, lr=args.lr, steps=steps,
                      calls=calls)
        figures[preset], details[preset] = {}, {}
        for k in args.sweep_k:
            if devices_2:
                if k % 2:
                    continue
                two, one = jax.devices()[:2], jax.devices()[:1]
                makers = {
                    "vmap_shared_2dev": lambda: make_vmap_sweep(preset, "shared", k, devices=two,
                                                                **common),
                    "vmap_independent_2dev": lambda: make_vmap_sweep(preset, "independent", k,
                                                                     devices=two, **common),
                    # Controls timed beside them, in the same process and rounds: the
                    # machine's other load then weighs on both sides of each ratio alike.
                    "vmap_shared_1dev_in_2dev_process": lambda: make_vmap_sweep(
                        preset, "shared", k, devices=one, **common),
                    "sequential_in_2dev_process": lambda: make_sequential(preset, k, **common),
                    "torch_eager_in_2dev_process": lambda: make_torch_sequential(
                        preset, k, **common)}
                if not args.has_torch:
                    del makers["torch_eager_in_2dev_process"]
            else:
                one = jax.devices()[:1]
                makers = {
                    "vmap_shared": lambda: make_vmap_sweep(preset, "shared", k, devices=one,
                                                           **common),
                    "vmap_independent": lambda: make_vmap_sweep(preset, "independent", k,
                                                                devices=one, **common),
                    "sequential": lambda: make_sequential(preset, k, **common),
                    "torch_eager": lambda: make_torch_sequential(preset, k, **common),
                    "torch_func": lambda: make_torch_func(preset, k, **common),
                    "torch_eager_1thread": lambda: _one_thread(make_torch_sequential(
                        preset, k, **common)),
                    "torch_func_1thread": lambda: _one_thread(make_torch_func(
                        preset, k, **common))}
                if not args.has_torch:
                    makers = {n: m for n, m in makers.items() if not n.startswith("torch")}
                elif jax.default_backend() != "cpu":  # only a CPU shared with JAX needs them
                    makers = {n: m for n, m in makers.items() if not n.endswith("_1thread")}
            fig, det = _sweep_figures(makers, k, steps, epoch_steps, args.sweep_rounds)
            figures[preset][str(k)], details[preset][str(k)] = fig, {"steps_per_call": steps,
                                                                     **det}
            print(f"  sweep {preset} K={k}{' (2 devices)' if devices_2 else ''}: done "
                  f"({time.perf_counter() - _T0:.0f} s)", file=sys.stderr, flush=True)
    return figures, details


def run_sweep_2dev(argv, tmp) -> dict:
    """Re-runs this script with two forced CPU devices (the flag only works before JAX
    starts) for the sharded sweeps, after this process's sweeps; returns the child's JSON."""
    out = Path(tmp) / "sweep2.json"
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                       " --xla_force_host_platform_device_count=2").strip()}
    proc = subprocess.run([sys.executable, __file__, *argv, "--sweep-child", str(out),
                           "--sweep-init-dir", str(tmp)], env=env, stdout=subprocess.PIPE,
                          text=True)
    if proc.returncode:
        raise RuntimeError(f"the 2-device sweep failed (exit {proc.returncode})")
    return json.loads(out.read_text())


def sweep_main(args, argv, data) -> dict:
    """--sweep: the sweep figures of this process and, on CPU, of the 2-device child."""
    global _INIT_DIR
    two_devices = jax.default_backend() == "cpu" and any(k % 2 == 0 for k in args.sweep_k)
    with tempfile.TemporaryDirectory() as tmp:
        _INIT_DIR = tmp if two_devices else None
        figures, details = run_sweep(args, data)
        report = {"sweep": figures, "sweep_details": details}
        _INIT_MODELS.clear()
        if two_devices:
            child = run_sweep_2dev(argv, tmp)
            for preset, per_k in child["sweep"].items():
                for k, fig in per_k.items():
                    report["sweep"][preset][k].update(fig)
                    report["sweep_details"][preset][k]["2dev_process"] = child[
                        "sweep_details"][preset][k]
        _INIT_DIR = None
    ratios = {}
    for preset, per_k in report["sweep"].items():
        ratios[preset] = {}
        for k, fig in per_k.items():
            r = {}
            for over in ("sequential", "torch_eager", "torch_func", "torch_eager_1thread",
                         "torch_func_1thread"):
                if over in fig:
                    r[f"vmap_shared/{over}"] = fig["vmap_shared"] / fig[over]
            if "vmap_shared_2dev" in fig:  # against the controls of its own process
                for over in ("vmap_shared_1dev", "sequential", "torch_eager"):
                    if f"{over}_in_2dev_process" in fig:
                        r[f"vmap_shared_2dev/{over}"] = (fig["vmap_shared_2dev"] /
                                                         fig[f"{over}_in_2dev_process"])
            ratios[preset][k] = r
    report["sweep_ratios"] = ratios
    return report


def print_sweep(report: dict) -> None:
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
    cols = [*SWEEP_DRIVERS, "torch_eager_1thread", "torch_func_1thread", "vmap_shared_2dev",
            "vmap_independent_2dev"]
    print("model-epochs per second:")
    print()
    print("| preset | K | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for preset, per_k in report["sweep"].items():
        for k, fig in per_k.items():
            print(f"| {preset} | {k} | " + " | ".join(
                f"{fig[c]:.3g}" if c in fig else "-" for c in cols) + " |")
    ratios = ["vmap_shared/sequential", "vmap_shared/torch_eager", "vmap_shared/torch_func",
              "vmap_shared/torch_eager_1thread", "vmap_shared_2dev/vmap_shared_1dev",
              "vmap_shared_2dev/sequential", "vmap_shared_2dev/torch_eager"]
    print()
    print("ratios (above 1: the first is faster; vmap_shared_2dev against the controls timed "
          "beside it in the 2-device process):")
    print()
    print("| preset | K | " + " | ".join(r.replace("/", " / ") for r in ratios) + " |")
    print("|---|---|" + "---|" * len(ratios))
    for preset, per_k in report["sweep_ratios"].items():
        for k, r in per_k.items():
            print(f"| {preset} | {k} | " + " | ".join(
                f"{r[c]:.2f}x" if c in r else "-" for c in ratios) + " |")
    print()
    print("cores busy (this process's CPU seconds per wall second, median call): " + "; ".join(
        f"{preset} K={k}: " + ", ".join(
            f"{name} {d['cores_busy']:.2f}" for name, d in
            {**det, **det.get("2dev_process", {})}.items()
            if isinstance(d, dict) and "cores_busy" in d)
        for preset, per_k in report["sweep_details"].items() for k, det in per_k.items()))
    controls = [c for c in ("vmap_shared_1dev", "sequential", "torch_eager")]
    rows = [(p, k, fig) for p, per_k in report["sweep"].items() for k, fig in per_k.items()
            if "vmap_shared_2dev" in fig]
    if rows:
        print()
        print("controls timed in the 2-device process (model-epochs per second):")
        print()
        print("| preset | K | " + " | ".join(f"{c} (in 2-device process)" for c in controls) +
              " |")
        print("|---|---|" + "---|" * len(controls))
        for p, k, fig in rows:
            print(f"| {p} | {k} | " + " | ".join(
                f"{fig[f'{c}_in_2dev_process']:.3g}" if f"{c}_in_2dev_process" in fig else "-"
                for c in controls) + " |")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="a,b,c,wide")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--examples", type=int, help="train on the first N examples only")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--drivers", help="time only these drivers (comma-separated; "
                                          "default: all), e.g. to check one alone")
    parser.add_argument("--tta-arch", default="wide", help="net for the time-to-accuracy runs")
    parser.add_argument("--tta-target", type=float, default=0.98)
    parser.add_argument("--tta-epochs", type=int, default=10)
    parser.add_argument("--no-tta", action="store_true", help="skip the time-to-accuracy runs")
    parser.add_argument("--data-dir")
    parser.add_argument("--json", default="runs/benchmark.json")
    parser.add_argument("--quick", action="store_true",
                        help="seconds, not minutes: presets a,b on 4,096 examples, 1 timed "
                             "epoch, time-to-accuracy with preset a to 85%%; with --sweep: "
                             "preset b, K = 1 and 2, 3 steps a call, 1 timed round")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of the above: throughput of K models trained at once "
                             "(jaxmlp.sweep, vmapped) against K runs one after another and "
                             "PyTorch, in model-epochs per second; written under \"sweep\"")
    parser.add_argument("--sweep-presets", default="b,wide")
    parser.add_argument("--sweep-k", help="numbers of models (default 1,4,16; 64 too on GPU)")
    parser.add_argument("--sweep-steps", type=int,
                        help="steps timed per call (default 100; 10 for wide)")
    parser.add_argument("--sweep-rounds", type=int, default=5,
                        help="timed round-robin rounds after the warm-up round")
    parser.add_argument("--sweep-child", help=argparse.SUPPRESS)  # internal: 2-device part
    parser.add_argument("--sweep-init-dir", help=argparse.SUPPRESS)  # internal: its inputs
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.presets, args.examples, args.epochs = "a,b", 4096, 1
        args.tta_arch, args.tta_target, args.tta_epochs = "a", 0.85, 3
        if args.sweep:
            args.sweep_presets, args.sweep_k = "b", args.sweep_k or "1,2"
            args.sweep_steps, args.sweep_rounds = args.sweep_steps or 3, 1
    args.sweep_k = [int(k) for k in (args.sweep_k or (
        "1,4,16,64" if jax.default_backend() == "gpu" else "1,4,16")).split(",")]
    mnist = load_mnist(data_dir=args.data_dir)
    data = (mnist.train_images[:args.examples], mnist.train_labels[:args.examples])
    if args.sweep or args.sweep_child:  # compile times are not this mode's figures
        from jaxmlp.cli import enable_compilation_cache

        enable_compilation_cache()
    try:
        import torch
        has_torch = not args.no_torch
        torch_version = torch.__version__
    except ImportError:
        has_torch, torch_version = False, None
    args.has_torch = has_torch
    if args.sweep_child:  # two forced devices, started by sweep_main: JSON to the file named
        global _INIT_DIR
        _INIT_DIR = args.sweep_init_dir
        figures, details = run_sweep(args, data, devices_2=True)
        Path(args.sweep_child).write_text(json.dumps({"sweep": figures,
                                                      "sweep_details": details}))
        return {}
    report = {"date": time.strftime("%Y-%m-%d"), "backend": jax.default_backend(),
              "devices": [str(d.device_kind) for d in jax.devices()],
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(", "),
              "jax": jax.__version__, "torch": torch_version, "batch_size": args.batch_size,
              "examples": len(data[1]), "timed_epochs": args.epochs,
              "command": " ".join([Path(sys.argv[0]).name, *argv])}
    if args.sweep:
        return _sweep_report(args, argv, data, report)
    report["presets"] = {}
    total = args.epochs + 1
    for preset in args.presets.split(","):
        makers = {
            "scan-hand": lambda: make_scan(preset, "hand", data, args.batch_size, args.lr, total),
            "scan-autodiff": lambda: make_scan(preset, "autodiff", data, args.batch_size, args.lr,
                                               total),
            "step-loop": lambda: make_step_loop(preset, data, args.batch_size, args.lr, total),
            "dispatch-only": lambda: make_dispatch_only(preset, data, args.batch_size, args.lr,
                                                        total),
        }
        if has_torch:
            makers["torch-eager"] = lambda: make_torch(preset, data, args.batch_size, args.lr, total)
        if args.drivers:
            wanted = args.drivers.split(",")
            if unknown := set(wanted) - set(makers):
                parser.error(f"--drivers: no driver {', '.join(sorted(unknown))} here "
                             f"(have {', '.join(makers)})")
            makers = {name: makers[name] for name in wanted}
        drivers = {name: make() for name, make in makers.items()}
        times, settle = {name: [] for name in drivers}, {name: 0.0 for name in drivers}
        order = list(drivers)
        for r in range(total):  # round-robin, one epoch of each driver per round,
            # each round starting one driver later, so none always follows the same one
            for name in order[r % len(order):] + order[:r % len(order)]:
                start = time.perf_counter()
                drivers[name][1]()
                times[name].append(time.perf_counter() - start)
                settle[name] = max(settle[name], _settle())  # the next starts on idle cores
        steps = len(data[1]) // args.batch_size
        rows = {}
        for name, (compile_seconds, _, info) in drivers.items():
            epoch = statistics.median(times[name][1:])
            rows[name] = {"compile_seconds": compile_seconds, "first_epoch_seconds": times[name][0],
                          "settle_seconds_after": settle[name],
                          "epoch_seconds": epoch, "epoch_seconds_min": min(times[name][1:]),
                          "epoch_seconds_all": times[name][1:],
                          "examples_per_second": steps * args.batch_size / epoch, **info}
        report["presets"][preset] = entry = {"runs": rows, "speedup_of_scan_hand": {}}
        if "scan-hand" in rows:
            hand = rows["scan-hand"]["epoch_seconds"]
            entry["speedup_of_scan_hand"] = {name: row["epoch_seconds"] / hand
                                             for name, row in rows.items()
                                             if name not in ("scan-hand", "dispatch-only")}
            entry["scan_hand_us_per_step"] = hand / steps * 1e6
        if "dispatch-only" in rows:
            entry["dispatch_us_per_step"] = rows["dispatch-only"]["epoch_seconds"] / steps * 1e6
        print(f"  {preset}: done", file=sys.stderr)
    if not args.no_tta:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            report["time_to_accuracy"] = {
                "arch": args.tta_arch, "target": args.tta_target,
                "first_run": time_to_accuracy(args.tta_arch, args.tta_target, args.tta_epochs,
                                              args.data_dir, tmp / "cache", tmp / "run1"),
                "second_run": time_to_accuracy(args.tta_arch, args.tta_target, args.tta_epochs,
                                               args.data_dir, tmp / "cache", tmp / "run2")}
    report["peak_rss_mib"] = {
        "benchmark_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "training_processes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _sweep_report(args, argv, data, report) -> dict:
    """--sweep: measures, prints, and writes the figures into the JSON report (kept beside
    the other figures when the file already holds a benchmark report)."""
    report["sweep_setup"] = {
        "date": report["date"], "command": report["command"], "examples": len(data[1]),
        "ks": args.sweep_k, "lr": args.lr, "momentum": 0.9, "schedule": "cosine",
        "rounds": args.sweep_rounds, "epoch_steps": 60_000 // args.batch_size,
        "steps": {p: args.sweep_steps or SWEEP_STEPS.get(p, 100)
                  for p in args.sweep_presets.split(",")},
        "torch_threads": _torch_threads() if args.has_torch else None}
    # A shared machine's other work shows in the timings: its load, before and after.
    report["sweep_setup"]["load_average_before"] = os.getloadavg()[0]
    report.update(sweep_main(args, argv, data))
    report["sweep_setup"]["load_average_after"] = os.getloadavg()[0]
    print_sweep(report)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and "presets" in old:
            report = {**old, **{k: report[k] for k in ("sweep_setup", "sweep", "sweep_details",
                                                        "sweep_ratios")}}
        path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def print_report(report: dict) -> None:
    names = ["scan-hand", "scan-autodiff", "step-loop", "torch-eager", "dispatch-only"]
    print(f"jaxmlp benchmark, {report['date']}: {report['backend']} ({', '.join(report['devices'])}),"
          f" {report['machine']}; jax {report['jax']}, torch {report['torch']}; batch "
          f"{report['batch_size']}, {report['examples']} examples, median of "
          f"{report['timed_epochs']} epochs after the first")
    print()
    print("| preset | driver | ms / epoch (median) | min | examples / s | compile (s) | "
          "scan-hand speed-up |")
    print("|---|---|---|---|---|---|---|")
    for preset, entry in report["presets"].items():
        for name in names:
            if name not in entry["runs"]:
                continue
            row = entry["runs"][name]
            ratio = entry["speedup_of_scan_hand"].get(name)
            print(f"| {preset} | {name} | {row['epoch_seconds'] * 1e3:.1f} | "
                  f"{row['epoch_seconds_min'] * 1e3:.1f} | "
                  f"{row['examples_per_second']:,.0f} | {row['compile_seconds']:.2f} | "
                  f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    print()
    for preset, entry in report["presets"].items():
        runs = entry["runs"]
        print(f"{preset}: until the cores were idle after a call (longest wait, ms): " +
              ", ".join(f"{name} {row['settle_seconds_after'] * 1e3:.0f}"
                        for name, row in runs.items()))
        if not {"scan-hand", "scan-autodiff", "dispatch-only"} <= set(runs):
            continue
        print(f"{preset}: a scan-hand step takes {entry['scan_hand_us_per_step']:.0f} us; driving "
              f"an empty step from Python costs {entry['dispatch_us_per_step']:.0f} us, the most "
              "a per-step loop can lose to the scan; compiled epoch: "
              f"{runs['scan-hand']['hlo_instructions']} HLO instructions (hand), "
              f"{runs['scan-autodiff']['hlo_instructions']} (autodiff)")
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


if __name__ == "__main__":
    main()
