"""The one timing helper of every measurement: calls run round-robin on idle cores.

``round_robin`` times the calls of several drivers in rounds, each round starting one
driver later (so none always follows the same one), and after every call waits until this
process is idle (``settle``) so that no driver's threads run into the next one's time. A
slow spell of a shared machine then hits every driver alike, and each figure is a median.

Checked once by timing each driver alone (``scripts/benchmark.py --drivers NAME``) against
the whole round-robin: 2026-12-01, 2-core AMD EPYC, preset b, ms per epoch, median (min) of
5: scan-hand 152 (146) in the round-robin vs 153 (146) alone, step-loop 208 (206) vs 209
(201), torch-eager 342 (319) vs 314 (305), torch's own spread between runs.
"""
import dataclasses
import statistics
import time
from typing import Callable, NamedTuple


@dataclasses.dataclass
class Driver:
    """What one way of training (or evaluating) gives the timer: ``run()`` does one timed
    unit of work and waits for it; ``compile_seconds`` it spent compiling beforehand;
    ``info`` any figure of its own (written beside its timings)."""

    run: Callable[[], object]
    compile_seconds: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)


class Call(NamedTuple):
    """One timed call: wall seconds, this process's CPU seconds, and the seconds waited
    after it until the cores were idle."""

    wall: float
    cpu: float
    settle: float


def settle(max_s: float = 2.0, window_s: float = 0.01) -> float:
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


def round_robin(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[Call]]:
    """``rounds`` rounds of one call of each of ``runs``, round r starting at driver r (mod
    their count); a ``settle`` after every call. Returns every call, in order, per name (the
    caller decides which are warm-up)."""
    calls: dict[str, list] = {name: [] for name in runs}
    order = list(runs)
    for r in range(rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            start, cpu = time.perf_counter(), time.process_time()
            runs[name]()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            calls[name].append(Call(wall, cpu, settle()))
    return calls


def summary(calls: list[Call]) -> dict:
    """The figures of a driver's timed calls: median and min seconds, all of them, the
    median cores kept busy (CPU seconds per wall second) and the longest settle after one."""
    seconds = [c.wall for c in calls]
    return {"median": statistics.median(seconds), "min": min(seconds), "all": seconds,
            "cores_busy": statistics.median(c.cpu / c.wall for c in calls),
            "settle_max": max(c.settle for c in calls)}


def seconds_per_call(runs: dict[str, Callable[[], object]], rounds: int,
                     scale: dict[str, float] | None = None) -> dict[str, list[float]]:
    """``round_robin`` of ``runs`` for a warm-up round and ``rounds`` timed ones: each run's
    wall seconds per timed call, times its ``scale`` (a part of an epoch timed, scaled to
    the epoch)."""
    calls = round_robin(runs, rounds + 1)
    return {name: [c.wall * (scale or {}).get(name, 1.0) for c in calls[name][1:]]
            for name in runs}


def print_ratios(title: str, seconds: dict[str, list[float]], reference: str,
                 digits: int) -> dict[str, float]:
    """Prints ``title`` and a table of each driver's median seconds and its ratio to
    ``reference``'s (``digits`` decimals); returns the medians."""
    med = {name: statistics.median(s) for name, s in seconds.items()}
    print(f"\n{title}")
    print(f"| driver | s/epoch | vs {reference} |")
    print("|---|---|---|")
    for name, s in med.items():
        print(f"| {name} | {s:.2f} | {s / med[reference]:.{digits}f}x |")
    return med
