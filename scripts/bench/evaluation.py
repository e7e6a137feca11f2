"""A sweep epoch's two halves: training against evaluation, and evaluation against the old
way of it.

For K models of one preset (b, K = 16 by default) on one device it times the three calls
a sweep's epoch is made of or was made of:

  train              ``Stack.train``: one jitted epoch of all K models (the trainer's own,
                     with its host sync of the losses)
  evaluate           ``Stack.evaluate``: every model on every split at once (one jitted
                     call per chunk for all K models, ``jaxmlp._metrics.evaluate_models``)
  evaluate_per_model the old way: per model and per split one ``jaxmlp._metrics.evaluate``
                     call from Python (K x 3 calls), from the host copy of the params (as
                     the old sweep loop had it; the copy, about a millisecond, included)

round-robin (``bench.timing``) after a first call of each (compilation), median of
``rounds`` calls. The last sixth of the training examples is held out as the validation
split (10,000 of 60,000, as ``jaxmlp sweep --val-size 10000``), so every epoch evaluates
three splits: train (its fixed sample of ``train_eval_size``, 10,000 by default), val and
test; both evaluations read the same sets. Reported: seconds per epoch of each,
evaluation's share of the epoch, eval / (train + eval), against the target that it be at
most a fifth, the same share the old way, and the speed-up of evaluating all K at once.
The two evaluations' accuracies are compared too (they count the same predictions).

Reproduce: ``python scripts/benchmark.py --sweep --sweep-k 16 --sweep-presets b``
(``--eval-preset``, ``--eval-k``; ``--no-eval`` skips it).
"""
import itertools

import jax

from jaxmlp._arch import parse_arch
from jaxmlp._config import Grid
from jaxmlp._data import Dataset, with_validation
from jaxmlp._metrics import evaluate
from jaxmlp._parallel import to_host
from jaxmlp._sweep import Stack

from bench.sweeps import config_for
from bench.timing import Driver, round_robin, summary

TARGET_SHARE = 0.2  # evaluation at most a fifth of a sweep epoch (issue 16)


def measure(mnist: Dataset, *, preset: str, k: int, batch_size: int, lr: float,
            rounds: int) -> dict:
    """Seconds per epoch of training and of the two evaluations, and their shares."""
    val_size = len(mnist.train_labels) // 6
    data = with_validation(mnist, val_size)
    spe = len(data.train_labels) // batch_size
    config = config_for(preset, batch_size, lr, rounds + 2, 1, val_size=val_size)
    stack = Stack(config, Grid(tuple(range(k)), (lr,), (0.9,)), "shared", data)
    state, _, num_steps = stack.start(None, None, spe)
    params, opt_state = stack.place(state, num_steps)
    epochs = itertools.count(1)
    box = [params, opt_state]
    arch = parse_arch(preset)
    splits = stack.sets  # on the device, as the trainer's evaluation reads them

    def train():
        box[0], box[1], _, _, compile_s = stack.train(*box, next(epochs), 0, spe)
        return compile_s

    def evaluate_stack():
        return stack.evaluate(box[0], None)

    def evaluate_per_model():
        host = jax.tree.map(to_host, box[0])
        return {split: [evaluate(jax.tree.map(lambda a, i=i: a[i], host), images, labels, arch)
                        for i in range(k)] for split, (images, labels) in splits.items()}

    # First calls: they compile (and tell whether the two evaluations agree).
    compile_s = train()
    ours, theirs = evaluate_stack(), evaluate_per_model()
    # Correct predictions (accuracy x examples) on which the two differ, at most.
    difference = max(round(abs(float(ours[s]["accuracy"][i]) - theirs[s][i]["accuracy"])
                           * len(splits[s][1])) for s in splits for i in range(k))
    drivers = {"train": Driver(train), "evaluate": Driver(evaluate_stack),
               "evaluate_per_model": Driver(evaluate_per_model)}
    calls = round_robin({name: d.run for name, d in drivers.items()}, rounds)
    timed = {name: summary(c) for name, c in calls.items()}
    t, e, old = (timed[n]["median"] for n in ("train", "evaluate", "evaluate_per_model"))
    return {"preset": preset, "k": k, "devices": 1, "order": "shared",
            "batch_size": batch_size, "steps_per_epoch": spe, "rounds": rounds,
            "examples": {split: len(labels) for split, (_, labels) in splits.items()},
            "evaluate_calls_per_model_way": k * len(splits),
            "train_seconds": t, "evaluate_seconds": e, "evaluate_per_model_seconds": old,
            "seconds_all": {name: s["all"] for name, s in timed.items()},
            "train_compile_seconds": compile_s,
            "eval_share": e / (t + e), "eval_share_per_model": old / (t + old),
            "target_share": TARGET_SHARE, "target_met": e / (t + e) <= TARGET_SHARE,
            "evaluate_speedup": old / e,
            "max_correct_difference": difference}


def print_table(ev: dict) -> None:
    sizes = " + ".join(f"{split} {n:,}" for split, n in ev["examples"].items())
    calls = ev["evaluate_calls_per_model_way"]
    rows = [("training (Stack.train)", ev["train_seconds"], ""),
            ("evaluation, all K at once (Stack.evaluate)", ev["evaluate_seconds"],
             f" = {ev['eval_share']:.1%} of the epoch (target <= {ev['target_share']:.0%}: "
             f"{'met' if ev['target_met'] else 'NOT met'})"),
            (f"evaluation, the old way ({calls} metrics.evaluate calls)",
             ev["evaluate_per_model_seconds"],
             f" = {ev['eval_share_per_model']:.1%} of the epoch")]
    same = ev["max_correct_difference"]
    print()
    print(f"a sweep epoch, training against evaluation: preset {ev['preset']}, K = {ev['k']} "
          f"models on {ev['devices']} device, order {ev['order']}, batch {ev['batch_size']}; "
          f"an epoch of {ev['steps_per_epoch']} steps, evaluation of {sizes} examples; seconds "
          f"per epoch, median of {ev['rounds']} calls after a first (compiling) one:")
    print()
    for label, seconds, note in rows:
        print(f"  {label + ':':<54} {seconds:8.3f} s{note}")
    print(f"  speed-up of evaluating all K at once over the old way: "
          f"{ev['evaluate_speedup']:.2f}x (" + ("the same correct predictions" if same == 0
                                               else f"correct predictions differ by up to "
                                               f"{same} per split") + ")")
