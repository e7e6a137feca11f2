"""Data parallelism with ``jax.sharding``: a 1-D ``data`` mesh, the batch split along it,
params and optimizer state replicated; multi-host through ``jax.distributed``.

Nothing here changes the math: under ``jit`` every array keeps its global shape, so the
hand backward pass's ``/ B`` and ``Σ_batch`` are over the global batch, and XLA inserts
the cross-device all-reduce where a contraction runs over the sharded batch axis.
"""
import json
import math
import os
import re
import select
import socket
import sys
import time
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmlp import _checks

DATA_AXIS = "data"
_joined: list[bool] = []  # holds True once this process has joined a multi-process run (``_leave``)


def check_timeout(timeout_s) -> None:
    """``ValueError`` unless ``timeout_s`` is a number of seconds in (0, ``_MAX_TIMEOUT_S``]
    (checked by the command line too, whether or not the run spans hosts)."""
    if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
            or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise ValueError(f"the init timeout must be a positive number of seconds, got "
                         f"{timeout_s!r} (`timeout_s`)")
    if timeout_s > _MAX_TIMEOUT_S:
        raise ValueError(f"the init timeout (`timeout_s`) must be at most "
                         f"{_MAX_TIMEOUT_S} seconds, got {timeout_s!r}")


def initialize_distributed(coordinator: str, num_processes: int, process_id: int, *,
                           timeout_s: float = 60, config_hash: str = "") -> None:
    """Joins a multi-process run; call before any other JAX computation.

    On CPU the processes talk through gloo. Process 0 serves as coordinator at
    ``coordinator`` (``HOST:PORT``); every process must arrive within ``timeout_s``.
    Before JAX starts, the processes meet on that port (``_host``/``_join``) and check that
    they agree on ``num_processes``, hold distinct ids and the same ``config_hash`` (a digest
    of the settings that must match, such as the training flags).

    Raises:
      ValueError: a malformed address, a process id outside ``[0, num_processes)``, or
        processes that disagree (settings, process count, the same id twice); in the last
        case every process that met raises the same message.
      RuntimeError: the coordinator could not be reached, or not all processes came, in
        time; or process 0 could not listen on the port.
    """
    if not isinstance(coordinator, str) or not re.fullmatch(r"[^\s:]+:\d{1,5}", coordinator):
        raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    if not 1 <= int(coordinator.rsplit(":", 1)[1]) <= 65535:
        raise ValueError(f"the coordinator's port must be 1 to 65535, got {coordinator!r}")
    check_timeout(timeout_s)
    _checks.positive_int(num_processes, "num_processes", limit=_checks.INDEX_LIMIT)
    _checks.integer(process_id, "process_id", low=-_checks.INDEX_LIMIT)
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is out of range for {num_processes} "
                         f"processes (expected 0 to {num_processes - 1})")
    if not isinstance(config_hash, str):
        raise TypeError(f"config_hash must be a string, got {type(config_hash).__name__}")
    if num_processes > 1:
        # JAX aborts the whole process (SIGABRT, no exception) when peers never register,
        # and happily joins processes started with different settings. So the processes
        # first meet over plain TCP on the same port, where any failure is still a clear
        # exception and nothing of JAX has started yet.
        me = {"id": process_id, "n": num_processes, "hash": str(config_hash)}
        deadline = time.monotonic() + timeout_s
        (_join if process_id else _host)(coordinator, me, timeout_s, deadline)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # Peers get here while process 0 may still be closing its listener: JAX's client keeps
    # retrying to reach the coordination service within initialization_timeout.
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id,
                               initialization_timeout=max(1, math.ceil(timeout_s)))
    _joined.append(True)


def detect_cluster(timeout_s: float = 60) -> tuple[str, int, int]:
    """``(coordinator, num_processes, process_id)`` as ``jax.distributed.initialize()``
    finds them in the environment of a launcher it knows (SLURM's ``srun``, Open MPI's
    ``mpirun``, Kubernetes, Cloud TPU): JAX's own detection, so that jaxmlp's rendezvous
    meets on the address JAX will use. ``JAX_COORDINATOR_PORT`` sets the port (else the
    launcher's rule: under SLURM one derived from the job id).

    Raises:
      ValueError: no such launcher in the environment, or one that leaves a value unknown.
    """
    from jax._src.clusters import ClusterEnv  # JAX's detection; no public name for it

    check_timeout(timeout_s)
    try:
        coordinator, num_processes, process_id, _ = (
            ClusterEnv.auto_detect_unset_distributed_params(
                None, None, None, None, None, max(1, math.ceil(timeout_s))))
    except (ValueError, TypeError, KeyError, IndexError) as e:  # a launcher's variable, garbled
        launchers = [c.__name__ for c in ClusterEnv._cluster_types if c.is_env_present()]
        raise ValueError(f"the cluster launcher's environment ({', '.join(launchers) or '?'}) "
                         f"does not parse: {e}") from None
    if coordinator is None or num_processes is None or process_id is None:
        raise ValueError("found no cluster launcher in the environment (SLURM's srun, Open "
                         "MPI's mpirun, ...): name the processes with `coordinator`, "
                         "`num_processes` and `process_id`")
    return str(coordinator), int(num_processes), int(process_id)


def _leave(code: int) -> None:
    """Ends a process that joined a multi-process run, with exit status ``code``.

    On success ``jax.distributed.shutdown`` (the processes wait for each other there, as at
    exit), then ``os._exit`` once the output is flushed: after the shutdown, the C++
    teardown at interpreter exit sometimes never ends on process 0 (XLA:CPU with gloo, jax
    0.10.2: about 1 run in 30 on a loaded 2-core machine; tests/test_rendezvous.py). On
    failure no shutdown: its barrier would wait for a process that may be gone until JAX's
    heartbeat timeout (100 s), then abort with pages of C++ log over the one line said.
    """
    if code == 0:
        jax.distributed.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def lost_process(error: BaseException) -> Optional[str]:
    """The line for ``error`` when it is a collective that failed because another process
    of this run stopped (gloo's socket to it closed), else None."""
    text = str(error)
    if not _joined or "Gloo" not in text:
        return None
    why = re.search(r"(Connection reset by peer|Connection closed by peer|Broken pipe|"
                    r"Connection refused|Timed out)", text)
    return (f"another process of this run stopped ({why[1] if why else text.splitlines()[0]} "
            f"in a collective), so this one stops too; the run folder keeps its last saved "
            f"epoch: start every process again with `resume`")


# The longest wait for the processes: JAX takes its initialization timeout as an int32 of
# seconds (68 years); sockets take far more.
_MAX_TIMEOUT_S = 2 ** 31 - 1
_GRACE_S = 2.0  # a peer waits this long past its own deadline, so process 0's reason wins
_HELLO_S = 2.0  # a peer sends its one line at once; a connection silent this long is dropped
_MAX_LINE = 4096  # a peer's line is ~100 bytes; anything longer is not one of ours


def _host(coordinator: str, me: dict, timeout_s: float, deadline: float) -> None:
    """Process 0: accept the other processes, check them, answer each "ok" or the reason.

    One deadline bounds the whole wait, however slowly bytes arrive: connections are read
    side by side (``select``), each must send its line within ``_HELLO_S``, and a line that
    is too long or not a peer's greeting is dropped (said once on stderr); the wait goes on.
    """
    host, port_text = coordinator.rsplit(":", 1)
    port, others = int(port_text), me["n"] - 1
    try:  # only on the coordinator's own address, not on every interface
        listener = socket.create_server((host, port))
    except OSError as e:  # create_server sets SO_REUSEADDR, so this is a live socket
        reason = str(e.strerror or e).split(" (while attempting")[0]
        raise RuntimeError(f"process 0 could not listen on port {port} at {host} ({reason}): "
                           "is another run, or another program, using it (or is "
                           f"{host} not an address of this machine)?") from None
    listener.setblocking(False)
    peers: dict = {}  # process id -> its connection, held open until every process is checked
    pending: dict = {}  # connection -> [bytes so far, when it was accepted]
    told: list[str] = []  # the first stranger is named on stderr, the others only dropped

    def drop(conn, what: str) -> None:
        pending.pop(conn, None)
        conn.close()
        if not told:
            told.append(what)
            print(f"jaxmlp: process 0 ignored a connection to {coordinator} that is not a "
                  f"jaxmlp process ({what}); still waiting", file=sys.stderr)

    try:
        while len(peers) < others:
            for i, s in list(peers.items()):  # readable means closed: that peer gave up
                if select.select([s], [], [], 0)[0]:
                    peers.pop(i).close()
            now = time.monotonic()
            for conn, (_, since) in list(pending.items()):
                if now - since > _HELLO_S:
                    drop(conn, f"no line within {_HELLO_S:g}s")
            left = deadline - now
            if left <= 0:
                names = ", ".join(f"process {i}" for i in sorted(peers))
                came = f"only {len(peers)} came ({names})" if peers else "none came"
                raise RuntimeError(
                    f"process 0 waited {timeout_s:g}s at {coordinator} for {others} other "
                    f"process{'es' if others > 1 else ''} to join; {came} (are the others "
                    "started, with the same `coordinator`?)")
            readable = select.select([listener, *pending], [], [], min(left, 0.2))[0]
            for r in readable:
                if r is listener:
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    pending[conn] = [b"", time.monotonic()]
                    continue
                try:
                    chunk = r.recv(_MAX_LINE)
                except OSError:
                    chunk = b""
                data = pending[r][0] + chunk
                if not chunk or len(data) > _MAX_LINE:
                    drop(r, f"a line over {_MAX_LINE} bytes" if chunk else "closed at once")
                    continue
                pending[r][0] = data
                if b"\n" not in data:
                    continue
                del pending[r]
                hello = _greeting(data)
                if hello is None:  # a port scanner, a stale client: not a peer
                    drop(r, f"it sent {data[:40]!r}")
                    continue
                problem = _disagreement(*hello, me, peers)
                if problem:
                    _send(r, {"error": problem, "type": "ValueError"})
                    r.close()
                    raise ValueError(problem)
                r.setblocking(True)
                peers[hello[0]] = r
        for s in peers.values():
            _send(s, {"ok": True})
        # Each peer closes first, so TIME_WAIT stays on its side (an ephemeral port), not on
        # this port, which JAX's coordination service must bind next.
        end = time.monotonic() + 5
        for s in peers.values():
            try:
                s.settimeout(max(end - time.monotonic(), 0.01))
                s.recv(1)
            except OSError:
                pass
    except Exception as e:  # tell the peers already waiting why the run stops
        for s in peers.values():
            _send(s, {"error": str(e), "type": type(e).__name__})
        raise
    finally:
        for s in [*peers.values(), *pending]:
            s.close()
        listener.close()


def _greeting(line: bytes) -> Optional[tuple[int, int, str]]:
    """``(id, n, hash)`` of a peer's line, or None for anything else (bad JSON, nesting
    deep enough to overflow the parser, 1e999, wrong types)."""
    try:
        hello = json.loads(line)
        i, n, h = hello["id"], hello["n"], hello["hash"]
    except Exception:  # noqa: BLE001 - RecursionError, OverflowError, …: never a traceback
        return None
    if not (type(i) is int and type(n) is int and isinstance(h, str)):
        return None
    return i, n, h


def _disagreement(i: int, n: int, h: str, me: dict, peers: dict) -> Optional[str]:
    if n != me["n"]:
        return (f"process {i} was started with {n} processes but process 0 with {me['n']}: "
                "start every process with the same `num_processes`")
    if i in peers:
        return (f"two processes were started as process {i}: give each its own `process_id` "
                f"(0 to {n - 1})")
    if not 0 < i < n:
        return f"process id {i} is out of range for {n} processes (expected 0 to {n - 1})"
    if h != me["hash"]:
        short = lambda x: x[:8] + ("…" if len(x) > 8 else "")  # noqa: E731
        return (f"process {i} was started with different settings than process 0 (config "
                f"hash {short(h)} vs {short(me['hash'])}): start every process with the "
                "same flags")
    return None


def _join(coordinator: str, me: dict, timeout_s: float, deadline: float) -> None:
    """Process 1 to K-1: reach process 0 (it may start later), say who it is, await the answer."""
    host, port = coordinator.rsplit(":", 1)
    while True:
        try:
            conn = socket.create_connection(
                (host, int(port)), timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            break
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"process {me['id']} could not reach the coordinator at {coordinator} "
                    f"within {timeout_s:g}s ({e.strerror or e}): is process 0 running there, "
                    "and the port open?") from None
            time.sleep(0.2)
    with conn:
        try:
            conn.sendall(json.dumps(me).encode() + b"\n")
            # Process 0 answers once all have come, or it gives up (then with its reason).
            reply = json.loads(_recv_line(conn, max(deadline, time.monotonic()) + _GRACE_S))
        except TimeoutError:
            raise RuntimeError(
                f"process {me['id']} reached the coordinator at {coordinator}, but not all "
                f"{me['n']} processes joined within {timeout_s:g}s: are the others started, "
                "with the same `coordinator`?") from None
        except (OSError, ValueError, RecursionError):
            reply = None
    if not isinstance(reply, dict) or not ("ok" in reply or "error" in reply):
        raise RuntimeError(
            f"process {me['id']} got no answer from process 0 at {coordinator}: did it stop, "
            "or is another program (another run) using that port?")
    if "error" in reply:
        raise (ValueError if reply.get("type") == "ValueError" else RuntimeError)(reply["error"])


def _recv_line(conn: socket.socket, until: float) -> bytes:
    """One line of at most ``_MAX_LINE`` bytes, read by the monotonic time ``until`` however
    slowly it trickles in (``TimeoutError`` after that)."""
    data = b""
    while not data.endswith(b"\n") and len(data) < _MAX_LINE:
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        conn.settimeout(left)
        chunk = conn.recv(_MAX_LINE)
        if not chunk:
            break
        data += chunk
    return data


def _send(conn: socket.socket, message: dict) -> None:
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass  # that peer is gone; it has nothing left to be told


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
    """A 1-D mesh named ``data`` over the first ``num_devices`` devices (default: all).

    In a multi-process run the devices are the global ones, and the mesh must use all of
    them so that every process feeds its own share of each batch.
    """
    if num_devices is not None:
        _checks.integer(num_devices, "num_devices", low=-_checks.INDEX_LIMIT, high=None)
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"asked for {n} devices but only {len(devices)} "
                         f"{'is' if len(devices) == 1 else 'are'} available "
                         f"({jax.default_backend()}): num_devices must be 1 to {len(devices)}; "
                         "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N")
    if jax.process_count() > 1 and n != len(devices):
        raise ValueError(f"a multi-process run trains on all {len(devices)} devices, got {n}")
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """Raises unless the global batch splits evenly over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(f"`batch_size` {batch_size} does not divide evenly over {mesh.size} "
                         f"devices; use a multiple of {mesh.size}")


def _replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_replicated(tree, mesh: Mesh):
    """Every leaf on every device of the mesh (in each process, from its own identical copy)."""
    sharding = _replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def _put_batches(local: np.ndarray, global_shape: tuple, mesh: Mesh):
    """Pre-cut batches ``(steps, B, ...)`` sharded along B, from this process's columns.

    Each process passes only its own share ``(steps, B / processes, ...)``.
    """
    sharding = NamedSharding(mesh, P(None, DATA_AXIS))
    return jax.make_array_from_process_local_data(sharding, local, global_shape)


def to_host(x) -> np.ndarray:
    """An array as numpy in every process: a local or replicated one as it is, one sharded
    over other processes' devices (a sweep's models) gathered from them (a collective:
    every process calls it)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def put_sharded(tree, sharding: NamedSharding):
    """Host (or local) arrays, the same in every process, onto ``sharding``: in several
    processes each places only the parts its devices hold."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def feed_batches(images, labels, order, batch_size: int, mesh):
    """This process's columns of the batches ``order`` cuts, as global sharded arrays.

    ``order`` holds the global order of ``n`` whole batches; process ``p`` of ``P`` feeds
    columns ``p`` of each batch split ``P`` ways (``_put_batches``).
    """
    processes, n = jax.process_count(), len(order) // batch_size
    mine = order.reshape(n, processes, -1)[:, jax.process_index()]
    return (_put_batches(images[mine], (n, batch_size, images.shape[-1]), mesh),
            _put_batches(labels[mine], (n, batch_size), mesh))
