"""The processes of a multi-host run meet before JAX starts: clear errors, never an abort."""
import os
import socket
import subprocess
import sys
import time

import pytest

# One process of a run: initialise, then prove the processes really work together.
PROCESS = r"""
import os, sys
import jax, numpy as np
from jax.experimental import multihost_utils
from jaxmlp._parallel import initialize_distributed
addr, n, i, timeout, config_hash = sys.argv[1:]
initialize_distributed(addr, int(n), int(i), timeout_s=float(timeout), config_hash=config_hash)
ids = multihost_utils.process_allgather(np.array([jax.process_index()]))
line = f"RESULT {jax.process_count()} {jax.device_count()} {sorted(np.ravel(ids).tolist())}\n"
os.write(1, line.encode())  # one write: gloo's own messages go to the same stdout
from jaxmlp.app import _entry
_entry._leave(0)  # as the jaxmlp command leaves: the interpreter's teardown can hang
"""

ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*processes, delay_s: float = 0.0, timeout_s: float = 60):
    """Starts each (addr, n, id, timeout, hash), ``delay_s`` apart; their (rc, out, err)."""
    procs = []
    try:
        for args in processes:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", PROCESS, *map(str, args)], env=ENV,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            time.sleep(delay_s)
        outputs = [p.communicate(timeout=timeout_s) for p in procs]
    finally:
        for p in procs:  # bounded: nothing outlives the test
            p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def _failed_clearly(result, message: str, kind: str = "ValueError"):
    rc, _, err = result
    assert rc == 1, (rc, err[-3000:])  # an uncaught exception, not a signal (SIGABRT is -6)
    assert f"{kind}: {message}" in err, err[-3000:]
    assert "Aborted" not in err and "SIGABRT" not in err and "core dumped" not in err


def test_same_settings_initialise_and_compute_together():
    # Process 1 first: it must wait for process 0, then survive the moment in which
    # process 0 hands the port from the rendezvous over to JAX's coordination service.
    addr = f"127.0.0.1:{_free_port()}"
    results = _run((addr, 2, 1, 30, "abc123"), (addr, 2, 0, 30, "abc123"), delay_s=0.5)
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
        assert "RESULT 2 4 [0, 1]" in out


@pytest.mark.parametrize("peer, message", [
    ((2, 1, 20, "3c4d5e6f7a8b"), "process 1 was started with different settings than process 0 "
     "(config hash 3c4d5e6f… vs 1a2b3c4d…): start every process with the same flags"),
    ((3, 1, 20, "1a2b3c4d5e6f"), "process 1 was started with 3 processes but process 0 with 2: "
     "start every process with the same `num_processes`"),
])
def test_mismatch_fails_on_both_sides(peer, message):
    addr = f"127.0.0.1:{_free_port()}"
    for result in _run((addr, 2, 0, 20, "1a2b3c4d5e6f"), (addr, *peer)):
        _failed_clearly(result, message)


def test_duplicate_process_id_fails_everywhere():
    addr = f"127.0.0.1:{_free_port()}"
    results = _run((addr, 3, 0, 20, "h"), (addr, 3, 1, 20, "h"), (addr, 3, 1, 20, "h"),
                   delay_s=0.3)
    message = "two processes were started as process 1: give each its own `process_id` (0 to 2)"
    for result in results:
        _failed_clearly(result, message)


def test_lonely_processes_fail_in_bounded_time():
    """Side by side: process 0 that nobody joins, process 1 that nothing answers, process 1
    at a listener that never speaks (not a jaxmlp process), and process 0 on a taken port."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        taken = f"127.0.0.1:{other.getsockname()[1]}"
        alone, nobody = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
        start = time.monotonic()
        results = _run((alone, 2, 0, 1, "h"), (nobody, 2, 1, 1, "h"), (taken, 2, 1, 1, "h"),
                       (taken, 2, 0, 1, "h"), timeout_s=30)
    assert time.monotonic() - start < 10
    _failed_clearly(results[0], f"process 0 waited 1s at {alone} for 1 other process to join; "
                    "none came (are the others started, with the same `coordinator`?)",
                    "RuntimeError")
    _failed_clearly(results[1], f"process 1 could not reach the coordinator at {nobody} "
                    "within 1s", "RuntimeError")
    _failed_clearly(results[2], f"process 1 reached the coordinator at {taken}, but not all "
                    "2 processes joined within 1s", "RuntimeError")
    _failed_clearly(results[3], "process 0 could not listen on port", "RuntimeError")


def _listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def _start_process_zero(addr: str, timeout: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", PROCESS, addr, "2", "0", str(timeout), "h"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + 60
    while not _listening_addresses(int(port)) and time.monotonic() < deadline:
        time.sleep(0.02)  # a state: process 0 listens
    return proc


def test_rendezvous_listens_on_its_address_and_strangers_cannot_stall_it():
    """Issue 15.2: only 127.0.0.1 (not every interface); a client trickling a byte every
    0.5 s and one sending garbage do not keep process 0 past its deadline, and are named
    once on stderr."""
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    proc = _start_process_zero(addr, 4)
    try:
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as junk:
            junk.sendall(b"[" * 4000 + b"\n")
        with socket.create_connection(("127.0.0.1", port)) as slow:
            while proc.poll() is None and time.monotonic() - start < 30:
                try:
                    slow.sendall(b"{")
                except OSError:  # dropped: it is not a peer
                    try:
                        slow = socket.create_connection(("127.0.0.1", port))
                    except OSError:  # process 0 has given up and closed its port
                        break
                time.sleep(0.5)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - start < 10, "a stranger kept process 0 past its deadline"
    _failed_clearly((proc.returncode, "", err), f"process 0 waited 4s at {addr} for 1 other "
                    "process to join; none came", "RuntimeError")
    assert err.count("ignored a connection") == 1 and "Traceback" in err  # the one raise


def test_malformed_greetings_are_not_peers_and_the_run_goes_on():
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    proc = _start_process_zero(addr, 30)
    try:
        for junk in (b"[" * 4000 + b"\n", b'{"id": 1e999, "n": 2, "hash": "h"}\n',
                     b'{"id": true, "n": 2, "hash": "h"}\n', b"x" * 10_000):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(junk)
        (peer,) = _run((addr, 2, 1, 30, "h"))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and peer[0] == 0, (err[-2000:], peer[2][-2000:])
    assert "RESULT 2 4 [0, 1]" in out and "RESULT 2 4 [0, 1]" in peer[1]
    assert "RecursionError" not in err and "OverflowError" not in err


@pytest.mark.parametrize("kwargs, message", [
    (dict(coordinator="127.0.0.1:99999"), "the coordinator's port must be 1 to 65535"),
    (dict(coordinator="127.0.0.1:0"), "the coordinator's port must be 1 to 65535"),
    (dict(timeout_s=-5), "the init timeout must be a positive number of seconds, got -5"),
    (dict(timeout_s=float("nan")), "the init timeout must be a positive number"),
])
def test_bad_ports_and_timeouts_are_refused_up_front(kwargs, message):
    from jaxmlp._parallel import initialize_distributed

    args = {"coordinator": "127.0.0.1:1234", "num_processes": 2, "process_id": 1,
            "timeout_s": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        initialize_distributed(args.pop("coordinator"), args.pop("num_processes"),
                               args.pop("process_id"), **args)
