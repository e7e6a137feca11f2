"""Data parallelism with ``jax.sharding``: a 1-D ``data`` mesh, the batch split along it,
params and optimizer state replicated; multi-host through ``jax.distributed``.

Nothing here changes the math: under ``jit`` every array keeps its global shape, so the
hand backward pass's ``/ B`` and ``Σ_batch`` are over the global batch, and XLA inserts
the cross-device all-reduce where a contraction runs over the sharded batch axis.
"""
import re
import socket
import time
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def initialize_distributed(coordinator: str, num_processes: int, process_id: int, *,
                           timeout_s: int = 60) -> None:
    """Joins a multi-process run; call before any other JAX computation.

    On CPU the processes talk through gloo. Process 0 serves as coordinator at
    ``coordinator`` (``HOST:PORT``); every process must reach it within ``timeout_s``.

    Raises:
      ValueError: a malformed address, or a process id outside ``[0, num_processes)``.
      RuntimeError: the coordinator could not be reached in time.
    """
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", coordinator or ""):
        raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    if num_processes < 1:
        raise ValueError(f"number of processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is out of range for {num_processes} "
                         f"processes (expected 0 to {num_processes - 1})")
    if process_id:
        # JAX aborts the whole process (no exception) when it cannot register with the
        # coordinator, so first wait here, where a failure can still be a clear error.
        _wait_for(coordinator, process_id, timeout_s)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout_s)


def _wait_for(coordinator: str, process_id: int, timeout_s: float) -> None:
    host, port = coordinator.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"process {process_id} could not reach the coordinator at {coordinator} "
                    f"within {timeout_s}s ({e.strerror or e}): is process 0 running there, "
                    "and the port open?") from None
            time.sleep(0.2)


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
    """A 1-D mesh named ``data`` over the first ``num_devices`` devices (default: all).

    In a multi-process run the devices are the global ones, and the mesh must use all of
    them so that every process feeds its own share of each batch.
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"asked for {n} devices but {len(devices)} are available "
                         f"({jax.default_backend()}); on CPU, XLA_FLAGS="
                         "--xla_force_host_platform_device_count=N makes N")
    if jax.process_count() > 1 and n != len(devices):
        raise ValueError(f"a multi-process run trains on all {len(devices)} devices, got {n}")
    return Mesh(np.asarray(devices[:n]), (DATA,))


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """Raises unless the global batch splits evenly over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} does not divide evenly over {mesh.size} "
                         f"devices; use a multiple of {mesh.size}")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_replicated(tree, mesh: Mesh):
    """Every leaf on every device of the mesh (in each process, from its own identical copy)."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def put_batches(local: np.ndarray, global_shape: tuple, mesh: Mesh):
    """Pre-cut batches ``(steps, B, ...)`` sharded along B, from this process's columns.

    Each process passes only its own share ``(steps, B / processes, ...)``.
    """
    sharding = NamedSharding(mesh, P(None, DATA))
    return jax.make_array_from_process_local_data(sharding, local, global_shape)


def to_host(x) -> np.ndarray:
    """A replicated (or local) array as numpy, also when other processes hold parts of it."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    return np.asarray(x.addressable_data(0))
