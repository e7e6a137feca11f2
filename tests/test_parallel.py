"""Data-parallel training: many devices and many processes give one device's result."""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxmlp.app._cli import main
from jaxmlp._parallel import check_batch, make_mesh

# Few steps of a real run; float32 all-reduces sum in another order than one device does.
TOL = 1e-5

FOUR_DEVICES = r"""
import json, jax, numpy as np
from jaxmlp._data import _load_mnist
from jaxmlp import TrainConfig, train_and_evaluate
assert jax.device_count() == 4, jax.devices()
data = _load_mnist(download=False)
out = {}
for grad in ("hand", "autodiff"):
    runs = {n: train_and_evaluate(TrainConfig(arch="b", steps=40, batch_size=128, grad=grad,
                                              devices=n), data=data, log=lambda _: None)
            for n in (1, 4)}
    leaves = [jax.tree.leaves(runs[n]["params"]) for n in (1, 4)]
    out[grad] = {"max_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                 for a, b in zip(*leaves)),
                 "max_abs": max(float(np.max(np.abs(np.asarray(a)))) for a in leaves[0]),
                 "acc": [runs[n]["test_accuracy"] for n in (1, 4)]}
try:
    train_and_evaluate(TrainConfig(arch="b", steps=1, batch_size=130, devices=4), data=data)
except ValueError as e:
    out["indivisible"] = str(e)
print("RESULT", json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.production
def test_four_devices_match_one(env):
    proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES], capture_output=True, text=True,
                          timeout=300, env={**env, "XLA_FLAGS":
                                            "--xla_force_host_platform_device_count=4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ")[1])
    for grad in ("hand", "autodiff"):
        assert out[grad]["max_diff"] < TOL, out
        assert out[grad]["max_abs"] > 0.1  # real, trained parameters
        assert out[grad]["acc"][0] > 0.8
    assert out["indivisible"] == ("`batch_size` 130 does not divide evenly over 4 devices; "
                                  "use a multiple of 4")


@pytest.mark.production
def test_two_processes_match_one(env, tmp_path):
    # Every step feature that draws noise or keeps state (issue 29): the keys are the
    # one-process run's, and each process trains on its share of the same masks and fields.
    # Mixed precision too: bfloat16 rounds each operand alone, so only the float32 sums
    # over the batch differ in order, as they do in float32.
    args = ["--arch", "b", "--steps", "30", "--batch-size", "128", "--no-progress",
            "--no-download", "--dropout", "0.1,0.3", "--augment", "alpha=34,sigma=4,rotation=10",
            "--ema", "0.9", "--label-smoothing", "0.1", "--compute-dtype", "bfloat16"]
    # Launched as SLURM's srun would: `--distributed` finds the processes in the environment
    # (JAX's detection), on 127.0.0.1 (the explicit flags are tested below).
    port = _free_port()
    multi_env = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                 **_slurm(port)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxmlp", "train", *args, "--out", str(tmp_path / "multi"),
         "--distributed", "--init-timeout", "60"],
        env={**multi_env, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:  # bounded: nothing outlives the test
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run([sys.executable, "-m", "jaxmlp", "train", *args, "--devices", "1",
                             "--out", str(tmp_path / "single")], env=env, capture_output=True,
                            text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    # Only process 0 writes and reports.
    assert "final test accuracy" in outputs[0][0] and "final test accuracy" not in outputs[1][0]
    with np.load(tmp_path / "multi" / "checkpoint.npz") as a, \
            np.load(tmp_path / "single" / "checkpoint.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], atol=TOL, rtol=0, err_msg=k)
    lines = [json.loads(l) for l in (tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 30 and lines[-1]["test_acc"] > 0.5


@pytest.mark.production
def test_a_sweep_across_two_processes_is_the_sweep_in_one(env, tmp_path):
    # Issue 29: the model axis over every process's devices (one each here), no talk between
    # models while they train; process 0 writes the one folder. The same 4 models on 2
    # devices of one process: the same arithmetic, so the same bits. (The step's features
    # are a single run's, held equal across processes above and to single runs in
    # test_sweep.py; here the sweep's own gathering: figures, validation, summary.)
    # Both sweeps stop at 10 steps and are extended to 20 (`--resume`): a resume across
    # processes is the resume in one, bit for bit.
    args = ["sweep", "--arch", "a", "--seeds", "2", "--lr", "0.05,0.1", "--order",
            "independent", "--val-size", "1000", "--no-progress", "--no-download"]
    one_device = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}

    def two_processes(*more):
        procs = _start_two([*args, *more], one_device)
        outputs = _outputs(procs)
        for p, (_, err) in zip(procs, outputs):
            assert p.returncode == 0, err[-3000:]
        return outputs

    two_processes("--steps", "10", "--out", str(tmp_path / "multi"))
    outputs = two_processes("--steps", "20", "--resume", str(tmp_path / "multi"))
    two_devices = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    for more in (["--steps", "10", "--out"], ["--steps", "20", "--resume"]):
        single = subprocess.run([sys.executable, "-m", "jaxmlp", *args, *more,
                                 str(tmp_path / "single")], capture_output=True, text=True,
                                timeout=240, env=two_devices)
        assert single.returncode == 0, single.stderr[-3000:]
    assert "best setting" in outputs[0][0] and "model" not in outputs[1][0]  # process 0 speaks
    with np.load(tmp_path / "multi" / "checkpoint.npz") as a, \
            np.load(tmp_path / "single" / "checkpoint.npz") as b:
        assert a.files == b.files and a["params/0/w"].shape[0] == 4
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    summaries = [json.loads((tmp_path / f / "summary.json").read_text())
                 for f in ("multi", "single")]
    assert summaries[0] == summaries[1] and summaries[0]["best"]["ensemble_val_acc"] > 0.7


@pytest.mark.production
def test_a_killed_process_stops_the_run_in_one_line_and_it_resumes(env, tmp_path):
    # Issue 29: kill -9 one process mid-sweep. The other's next collective fails at once
    # (gloo's socket closed); it says so in one line and leaves without JAX's shutdown
    # barrier (which would wait 100 s for the dead, then abort with pages of C++ log). The
    # folder keeps its last saved epoch, and the same command with --resume finishes it.
    args = ["sweep", "--arch", "a", "--seeds", "2", "--lr", "0.05", "--epochs", "20",
            "--no-progress", "--no-download"]
    one_device = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    folder = tmp_path / "killed"

    procs = _start_two([*args, "--out", str(folder)], one_device)
    try:
        deadline = time.monotonic() + 120
        while not ((folder / "metrics.jsonl").is_file()
                   and (folder / "metrics.jsonl").read_text().count("\n") >= 1):
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.05)
        procs[1].kill()
        begin = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        waited = time.monotonic() - begin
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert procs[0].returncode == 1 and waited < 30, (procs[0].returncode, waited, err[-2000:])
    (line,) = err.strip().splitlines()
    assert line.startswith("jaxmlp sweep: error: another process of this run stopped (") and \
        line.endswith(" in a collective), so this one stops too; the run folder keeps its last "
                      "saved epoch: start every process again with --resume"), line
    saved = (folder / "metrics.jsonl").read_text().count("\n")
    assert 1 <= saved < 20
    procs = _start_two([*args, "--resume", str(folder)], one_device)
    outputs = _outputs(procs)
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 21))
    assert json.loads((folder / "summary.json").read_text())["best"]["ensemble_test_acc"] > 0.8


def _start_two(argv: list, env) -> list:
    """Processes 0 and 1 of one run on 127.0.0.1: ``jaxmlp *argv`` with the multi-host flags."""
    port = _free_port()
    return [subprocess.Popen(
        [sys.executable, "-m", "jaxmlp", *argv, "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i), "--init-timeout", "60"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]


def _outputs(procs: list, timeout: float = 240) -> list:
    """Each process's ``(stdout, stderr)``; bounded: nothing outlives the test."""
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()


def _slurm(port: int) -> dict:
    """What srun sets for a job of 2 tasks on this host (less the per-task ids)."""
    return {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_NTASKS": "2",
            "SLURM_STEP_NUM_NODES": "1", "JAX_COORDINATOR_PORT": str(port)}


def test_the_launcher_s_environment_names_the_processes(monkeypatch, capsys):
    from jaxmlp._parallel import detect_cluster

    for name in [n for n in os.environ if n.startswith(("SLURM_", "OMPI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("JAX_COORDINATOR_PORT", raising=False)
    with pytest.raises(ValueError, match="found no cluster launcher in the environment"):
        detect_cluster()
    assert main(["train", "--distributed"]) == 2
    assert ("jaxmlp train: error: found no cluster launcher in the environment (SLURM's srun, "
            "Open MPI's mpirun, ...): name the processes with --coordinator, --num-processes "
            "and --process-id") in capsys.readouterr().err
    # SLURM: the first node of the step, a port from the job id (65535 - 4095 + 4242 % 4096).
    for k, v in {**_slurm(1), "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
                 "SLURM_STEP_NODELIST": "node[007-009],gpu1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("JAX_COORDINATOR_PORT")
    assert detect_cluster() == ("node007:61586", 2, 1)
    monkeypatch.setenv("JAX_COORDINATOR_PORT", "1234")
    assert detect_cluster() == ("node007:1234", 2, 1)
    for name in [n for n in os.environ if n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    # Open MPI's mpirun.
    for k, v in {"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.96.0.1,10.148.0.1:34911",
                 "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3",
                 "OMPI_COMM_WORLD_LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    assert detect_cluster() == ("10.96.0.1:1234", 4, 3)
    # A garbled variable is named by its launcher, in one line.
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "four")
    assert main(["train", "--distributed"]) == 2
    err = capsys.readouterr().err
    assert ("jaxmlp train: error: the cluster launcher's environment (OmpiCluster) does not "
            "parse: ") in err and len(err.strip().splitlines()) == 1, err


def test_process_id_out_of_range(capsys):
    assert main(["train", "--coordinator", "127.0.0.1:1234", "--num-processes", "2",
                 "--process-id", "2"]) == 2
    assert ("process id 2 is out of range for 2 processes (expected 0 to 1)"
            in capsys.readouterr().err)


def test_incomplete_multi_host_flags(capsys):
    assert main(["train", "--coordinator", "127.0.0.1:1234"]) == 2
    assert "need --coordinator, --num-processes and --process-id together" in capsys.readouterr().err


def test_mesh_and_batch_checks():
    mesh = make_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == 1
    with pytest.raises(ValueError, match="asked for 3 devices but only 1 is available"):
        make_mesh(3)
    check_batch(7, mesh)
    with pytest.raises(ValueError, match="`batch_size` 5 does not divide evenly over 2 devices"):
        check_batch(5, type("M", (), {"size": 2})())


def test_processes_with_different_settings_refuse_to_train(tmp_path):
    # Different --lr on the two processes would train to chance accuracy; the config hash
    # exchanged at start stops both, with a message, before any data is read.
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxmlp", "train", "--arch", "b", "--lr", lr,
         "--out", str(tmp_path / "run"), "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i), "--init-timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, lr in ((0, "0.1"), (1, "0.2"))]
    try:
        outputs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 2, err
        assert "was started with different settings than process 0" in err, err
        assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_lonely_processes_fail_with_a_message_in_bounded_time():
    # Run side by side (each waits out its 1 s): process 1 with nobody listening, and
    # process 0 with nobody joining. Both exit 2 with jaxmlp's line, not JAX's SIGABRT (-6).
    ports = _free_port(), _free_port()
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "jaxmlp", "train", "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                               str(i), "--init-timeout", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, port in zip((1, 0), ports)]
    try:
        errs = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [2, 2], errs
    assert (f"process 1 could not reach the coordinator at 127.0.0.1:{ports[0]} within 1s"
            in errs[0])
    assert "process 0 waited 1s" in errs[1] and "for 1 other process to join" in errs[1]
    assert all(err.count("\n") == 1 for err in errs), errs
    assert time.monotonic() - start < 30
