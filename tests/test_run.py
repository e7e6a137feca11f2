"""The run folder: nothing is lost or overwritten, every failure is one line, runs load back."""
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxmlp
from jaxmlp.app._cli import main
from jaxmlp._run import _LOCK, RunError, RunFolder, load_run

QUICK = ["--arch", "a", "--steps", "60", "--no-progress", "--quiet"]


def _snapshot(folder):
    """Every file's bytes: to prove that a failure changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _train(capsys, *args):
    code = main(["train", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def done(env, tmp_path, capsys):
    """A finished 60-step preset-a run."""
    out = tmp_path / "done"
    assert _train(capsys, *QUICK, "--out", str(out))[0] == 0
    return out


def test_a_second_run_never_overwrites_a_run(done, tmp_path, capsys):
    before = _snapshot(done)
    code, err = _train(capsys, "--arch", "b", "--steps", "10", "--out", str(done))
    assert code == 2 and err.count("\n") == 1
    assert f"{done} already holds a run (config.json" in err and "--overwrite" in err
    # --resume "" (an unset shell variable) is refused, not taken as a fresh start.
    code, err = _train(capsys, "--resume", "", "--arch", "b")
    assert code == 2 and "--resume needs a run folder, got an empty string" in err
    # A replacement that fails in its first epoch leaves the old run whole.
    code, err = _train(capsys, "--lr", "1e30", "--schedule", "constant", "--steps", "60",
                       "--arch", "b", "--out", str(done), "--overwrite", "--no-progress")
    assert code == 1 and "training diverged" in err and "nothing was saved" in err
    assert _snapshot(done) == before


def test_overwrite_replaces_the_whole_run(done, capsys):
    (done / "eval.json").write_text("{}")  # a stale output of the old run
    assert _train(capsys, "--arch", "b", "--steps", "20", "--out", str(done), "--overwrite",
                  "--no-progress", "--quiet")[0] == 0
    run = load_run(done)
    assert run.config.arch == "b" and run.config.steps == 20 and run.evaluation is None
    assert not (done / "eval.json").exists()
    assert [h["step"] for h in run.history] == [20] and not (done / ".new").exists()


def test_a_failing_start_changes_nothing_on_disk(env, tmp_path, capsys):
    out = tmp_path / "new" / "run"
    for args, message in [
            (["--arch", "50:relu,5:linear"], "the output layer has 5 units but mnist has 10 classes"),
            (["--arch", "64:tanh"], "the output layer has 64 units but mnist has 10 classes"),
            (["--seed", str(2 ** 70)], "--seed must be in [0, 2**32), got 118… (22 digits)"),
            (["--seed", "-1"], "--seed must be in [0, 2**32)"),
            (["--nesterov", "--momentum", "0"], "--nesterov needs a --momentum above 0"),
            (["--batch-size", "60001"], "--batch-size 60001 is larger than the 60000"),
            (["--val-size", "60000"], "--val-size 60000 leaves no training examples"),
            (["--val-size", "59990"], "--batch-size 128 is larger than the 10 training examples "
                                      "(--val-size 59990 holds out the rest)"),
            (["--warmup-steps", "30"], "--warmup-steps 30 is not shorter than the run (30 steps)"),
            (["--dataset", "not_a_dataset"], "not_a_dataset is not a dataset tensorflow-datasets "
                                            "knows"),
            (["--lr", "1e30", "--schedule", "constant"], "training diverged: loss became")]:
        code, err = _train(capsys, "--steps", "30", "--no-progress", "--out", str(out), *args)
        assert code == (1 if "diverged" in message else 2) and message in err, err
        assert err.count("\n") == 1
        assert not out.exists() and not out.parent.exists()


def test_second_writer_is_stopped_and_stale_locks_are_taken_over(done, tmp_path, capsys):
    with RunFolder.open(done, resume=True):  # another trainer holds the folder
        code, err = _train(capsys, "--resume", str(done), "--steps", "120")
        assert code == 2 and f"{done} is in use by another jaxmlp process (pid {os.getpid()})" in err
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        with RunFolder.open(fresh):  # a new run, still in its first epoch
            # ... of another process: this one's own lock is its own (a run reads its folder
            # under its lock), so the lock file names another pid, as another process's would.
            (fresh / _LOCK).write_text("4242")
            code, err = _train(capsys, "--resume", str(fresh))
            assert code == 2 and "is in use by another jaxmlp process (pid 4242)" in err
    # A killed process's lock file stays behind but holds no lock: it is stale, taken over.
    (done / _LOCK).write_text("999999")
    assert _train(capsys, "--resume", str(done), "--steps", "120")[0] == 0
    assert not (done / _LOCK).exists()
    # Steps 60 and 120 both lie in epoch 1: its one line now says where it ended.
    assert [(h["epoch"], h["step"]) for h in load_run(done).history] == [(1, 120)]


def test_resume_rules(done, tmp_path, capsys):
    before = _snapshot(done)
    for args, message in [
            (["--steps", "30"], "the run is already at step 60; --steps 30 (30 steps) would end "
                                "before that"),
            (["--epochs", "3"], "this run is counted in steps (--steps 60); extend it with --steps"),
            (["--lr", "0.5"], "--resume cannot change --lr"),
            (["--out", str(tmp_path / "other")], "--resume DIR writes to DIR")]:
        code, err = _train(capsys, "--resume", str(done), *args)
        assert code == 2 and message in err, err
    # Asking for the length it has: nothing to do, nothing rewritten.
    assert main(["train", "--resume", str(done), "--steps", "60", "--no-progress"]) == 0
    assert "already complete at step 60" in capsys.readouterr().out
    assert _snapshot(done) == before
    epochs_run = tmp_path / "epochs"
    assert _train(capsys, "--arch", "a", "--epochs", "1", "--out", str(epochs_run),
                  "--no-progress", "--quiet")[0] == 0
    code, err = _train(capsys, "--resume", str(epochs_run), "--steps", "1000")
    assert code == 2 and "counted in epochs (--epochs 1); extend it with --epochs" in err
    # The Python API obeys the same rules, in its own words.
    with pytest.raises(ValueError, match="`resume` cannot change `seed`"):
        jaxmlp.train_and_evaluate(jaxmlp.TrainConfig(arch="a", steps=120, seed=1), done,
                                  resume=True)


def test_extending_mid_epoch_equals_the_straight_run(env, small, tmp_path):
    quiet = lambda _: None
    config = lambda steps: jaxmlp.TrainConfig(arch="b", steps=steps, schedule="constant",
                                              lr=0.05)
    straight = jaxmlp.train_and_evaluate(config(100), tmp_path / "straight", data=small,
                                         log=quiet)
    jaxmlp.train_and_evaluate(config(70), tmp_path / "split", data=small, log=quiet)
    resumed = jaxmlp.train_and_evaluate(config(100), tmp_path / "split", resume=True,
                                        data=small, log=quiet)
    for a, b in zip(jax.tree.leaves(straight["params"]), jax.tree.leaves(resumed["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # One line per epoch: epoch 2's partial line (step 70) was replaced when it finished.
    history = load_run(tmp_path / "split").history
    assert [(h["epoch"], h["step"]) for h in history] == [(1, 46), (2, 92), (3, 100)]


def test_load_run_gives_a_usable_model(done, mnist):
    run = jaxmlp.load_run(done)
    # The data folder it used is recorded, so eval finds the data from any shell.
    # (resolved: the data may be reached through a symbolic link, as CI's shared/ can be)
    recorded = str(Path(os.environ["TFDS_DATA_DIR"]).resolve())
    assert run.config == jaxmlp.TrainConfig(arch="a", steps=60, data_dir=recorded)
    assert run.arch == jaxmlp.parse_arch("a") and run.path == done
    with np.load(done / "checkpoint.npz") as f:
        assert {"params/0/w", "params/0/b", "opt_state/0/trace/0/w", "step", "key"} <= set(f.files)
        np.testing.assert_array_equal(f["params/0/w"], run.params[0]["w"])
        assert int(f["step"]) == 60
    probs = jaxmlp.predict(run.params, mnist.test_images.reshape(-1, 28, 28), run.arch)
    accuracy = np.mean(np.argmax(probs, -1) == mnist.test_labels)
    assert accuracy == pytest.approx(run.history[-1]["test_acc"], abs=1e-6)


def test_unusable_run_files_are_named(done, capsys):
    checkpoint = (done / "checkpoint.npz").read_bytes()
    cases = [("checkpoint.npz", checkpoint[:1000], "checkpoint.npz is not a readable .npz"),
             ("checkpoint.npz", os.urandom(3000), "checkpoint.npz is not a readable .npz"),
             ("config.json", b'{"arch": "a",', "config.json is not valid JSON (line 1"),
             # A file's key or value is never quoted (a link once led here to secrets).
             ("config.json", b'{"arch": "a", "epochz": 5}',
              "config.json: setting 2 of 2 is not a jaxmlp setting"),
             ("config.json", b'{"arch": "a", "lr": "fast"}', "`lr` has the wrong type"),
             ("metrics.jsonl", (done / "metrics.jsonl").read_bytes() + b'{"epo',
              "metrics.jsonl line 2 is not valid JSON")]
    for name, data, message in cases:
        good = (done / name).read_bytes()
        (done / name).write_bytes(data)
        code, err = _train(capsys, "--resume", str(done), "--steps", "120")
        assert code == 2 and message in err and str(done) in err, err
        assert "pickle" not in err and err.count("\n") == 1
        (done / name).write_bytes(good)
    (done / "model.npz").write_bytes(b"not a zip")
    with pytest.raises(RunError, match=r"model.npz is not a readable .npz of arrays \(not a zip "
                                       r"archive, or a damaged one\)"):
        load_run(done)
    code, err = _train(capsys, *QUICK, "--out", str(done / "config.json"))
    assert code == 2 and "config.json is a file, not a run folder" in err
    # A link to nothing: mkdir said only "cannot write to …: File exists", with status 1.
    (done.parent / "dangling").symlink_to(done.parent / "nothing")
    code, err = _train(capsys, *QUICK, "--out", str(done.parent / "dangling"))
    assert code == 2 and err.endswith(
        f"dangling is a symbolic link to {done.parent / 'nothing'}, which does not exist: "
        "create that folder, or choose another --out\n")
    assert not (done.parent / "nothing").exists()


def _jaxmlp(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "jaxmlp", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _signal_after_first_epoch(env, out, signum) -> tuple[int, str]:
    """Starts a run far too long to finish, sends ``signum`` once its first epoch is saved.

    Waits for a state, not a time: the "epoch 1," line comes after epoch 1's checkpoint is
    written (stdout is line-buffered even into this pipe), and a 1,000-epoch run is still
    training then however loaded the machine is.
    """
    proc = _jaxmlp(["train", "--arch", "b", "--epochs", "1000", "--out", str(out),
                    "--no-progress"], env)
    try:
        for line in proc.stdout:
            if line.startswith("epoch 1,"):
                assert proc.poll() is None and (out / "checkpoint.npz").is_file()
                proc.send_signal(signum)
                break
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return proc.returncode, err


def test_ctrl_c_saves_draws_and_says_how_to_resume(env, tmp_path):
    out = tmp_path / "run"
    code, err = _signal_after_first_epoch(env, out, signal.SIGINT)
    assert code == 130, err
    step = load_run(out).history[-1]["step"]
    assert err.strip() == (f"jaxmlp train: interrupted at step {step}; resume with "
                           f"`jaxmlp train --resume {out}`")
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and not (out / _LOCK).exists()


def test_file_too_large_is_one_line_and_leaves_nothing(env, tmp_path):
    out = tmp_path / "run"
    # ulimit -f 40: at most 20-40 kB a file (sh counts 512- or 1024-byte blocks), enough for
    # config.json, too little for preset a's 64 kB checkpoint.
    proc = subprocess.Popen(["sh", "-c", 'ulimit -f 40 && exec "$@"', "sh", sys.executable,
                             "-m", "jaxmlp", "train", *QUICK, "--out", str(out)], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip() == (f"jaxmlp train: error: cannot write {out}/checkpoint.npz: File too "
                           "large; no epoch had finished, so nothing was saved")
    assert not out.exists()


def test_read_only_folder_is_one_line(env, tmp_path):
    # root writes through permission bits, so as root use a folder no one may write in:
    # /sys/fs (sysfs refuses new files with EACCES).
    if os.geteuid() == 0:
        out = Path("/sys/fs")
        if not out.is_dir():
            pytest.skip("no /sys/fs here to stand for a read-only folder")
    else:
        out = tmp_path / "ro"
        out.mkdir(mode=0o555)
    before = sorted(out.iterdir())
    proc = _jaxmlp(["train", *QUICK, "--out", str(out)], env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # the README's rule: 1 for what cannot be written
    assert err.strip() == f"jaxmlp train: error: cannot write to {out}: Permission denied"
    assert sorted(out.iterdir()) == before


def test_a_failed_resume_keeps_the_run(done, env, capsys):
    """A resume whose checkpoint cannot be written (issue 15.7): the save is all or nothing,
    so config.json and metrics.jsonl stay as they were too (no newer settings or records
    than the model), and nothing of the attempt is left behind."""
    (done / "eval.json").write_text("{")  # unreadable: only a cache of `jaxmlp eval`
    assert load_run(done).evaluation is None
    before = _snapshot(done)
    for steps in ("120", "700"):  # within epoch 1, and past its end
        proc = subprocess.Popen(["sh", "-c", 'ulimit -f 40 && exec "$@"', "sh", sys.executable,
                                 "-m", "jaxmlp", "train", "--resume", str(done), "--steps",
                                 steps, "--no-progress"], env={**os.environ}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and err.count("\n") == 1 and err.strip().endswith(
            f"checkpoint.npz: File too large; the last good checkpoint (step 60) is kept in "
            f"{done}"), err
        assert _snapshot(done) == before  # no .saving leftovers, no newer metadata
    # The run resumes from its checkpoint; the old evaluation goes with the old model.
    assert _train(capsys, "--resume", str(done), "--steps", "120")[0] == 0
    assert load_run(done).history[-1]["step"] == 120 and not (done / "eval.json").exists()


def test_resume_names_what_changed_and_bad_lines(done, capsys):
    for args, message in [(["--arch", "c"], "--resume cannot change --arch"),
                          (["--schedule", "constant"], "--resume cannot change --schedule"),
                          (["--epochs", "2", "--steps", "90"], "give --epochs or --steps")]:
        code, err = _train(capsys, "--resume", str(done), *args)
        assert code == 2 and message in err, err
    # The same net by its spec is the same run.
    assert _train(capsys, "--resume", str(done), "--arch", "10:linear", "--steps", "70")[0] == 0
    lines = (done / "metrics.jsonl").read_text().splitlines()
    (done / "metrics.jsonl").write_text(lines[0].replace('"test_acc"', '"test_accuracy"') + "\n")
    code, err = _train(capsys, "--resume", str(done), "--steps", "90")
    assert code == 2 and "metrics.jsonl line 1 is not an epoch record" in err
    (done / "metrics.jsonl").write_bytes(os.urandom(200))
    code, err = _train(capsys, "--resume", str(done), "--steps", "90")
    assert code == 2 and f"cannot read {done}/metrics.jsonl" in err


def test_sigterm_and_broken_pipe_end_cleanly(env, tmp_path):
    out = tmp_path / "run"
    code, err = _signal_after_first_epoch(env, out, signal.SIGTERM)  # `kill`, `timeout`
    assert code == 130 and "interrupted at step" in err and err.count("\n") == 1
    assert not (out / _LOCK).exists()
    # `jaxmlp train | head -1`: the reader leaves; the command ends as SIGPIPE would, not 0.
    piped = subprocess.run(f"{sys.executable} -m jaxmlp train --arch a --epochs 2 --log-every 1 "
                           f"--out {tmp_path / 'pipe'} | head -1; exit ${{PIPESTATUS[0]}}",
                           shell=True, executable="/bin/bash", env=env, capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 141 and piped.stderr == ""
    assert piped.stdout == "model 784 → 10 linear: 7,850 parameters, 7,840 multiply-adds an example\n"


def test_no_link_in_a_run_folder_makes_jaxmlp_write_outside_it(done, tmp_path, capsys):
    """Issue 15.1: every file jaxmlp writes, the lock included, as a symbolic link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep")
    (done / _LOCK).symlink_to(victim)
    code, err = _train(capsys, "--resume", str(done), "--steps", "120")
    assert code == 2 and f"{done / _LOCK} is a symbolic link, not jaxmlp's lock file" in err
    assert main(["eval", str(done)]) == 2 and "is a symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "keep"
    (done / _LOCK).unlink()
    # Files only written: each link is replaced by the file, never followed.
    written = ["curves.png", "eval.json", "confusion.png", "mistakes.png", "weights.png"]
    for name in written:
        _remove_file(done / name)
        (done / name).symlink_to(victim)
    before = _snapshot(outside)
    assert main(["eval", str(done)]) == 0
    assert _train(capsys, "--resume", str(done), "--steps", "120", "--no-progress",
                  "--quiet")[0] == 0
    assert main(["eval", str(done)]) == 0
    assert _snapshot(outside) == before
    for name in written[:2]:
        assert (done / name).is_file() and not (done / name).is_symlink(), name
    assert load_run(done).history[-1]["step"] == 120
    # Files read (links to outside copies of them): refused by every reader (issue 24.1),
    # named, and nothing changes on either side.
    resume = ["train", "--resume", str(done), "--steps", "180", "--no-progress"]
    readers = {"metrics.jsonl": [resume, ["eval", str(done)]], "checkpoint.npz": [resume],
               "model.npz": [["eval", str(done)]], "config.json": [resume, ["eval", str(done)]]}
    for name, commands in readers.items():
        good = (done / name).read_bytes()
        (outside / name).write_bytes(good)
        (done / name).unlink()
        (done / name).symlink_to(outside / name)
        inside, before = _snapshot(done), _snapshot(outside)
        for command in commands:
            assert main(command) == 2, (name, command)
            err = capsys.readouterr().err
            assert f"{done / name} is a symbolic link" in err and err.count("\n") == 1, err
        assert _snapshot(done) == inside and _snapshot(outside) == before
        (done / name).unlink()
        (done / name).write_bytes(good)
    # A replacement stages its first epoch in .new/: a link there is removed, not followed.
    (done / ".new").symlink_to(outside)
    assert _train(capsys, *QUICK, "--out", str(done), "--overwrite")[0] == 0
    assert _snapshot(outside) == before and not (done / ".new").exists()


def _remove_file(path):
    if path.exists() or path.is_symlink():
        path.unlink()


def test_start_up_faults_are_one_line(done, env, tmp_path, capsys):
    """Issue 15.8: usage errors, nested JSON, a vanished data folder, a huge gradcheck."""
    code = subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--schedule", "junk"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert code.returncode == 2 and code.stderr.count("\n") == 1, code.stderr
    assert code.stderr.startswith("jaxmlp train: error: argument --schedule: invalid choice")
    good = (done / "config.json").read_bytes()
    (done / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    code, err = _train(capsys, "--resume", str(done), "--steps", "120")
    assert code == 2 and f"{done}/config.json is nested too deeply" in err
    (done / "config.json").write_bytes(good)
    # The recorded data folder is gone: eval uses the default ($TFDS_DATA_DIR) instead.
    config = json.loads(good)
    (done / "config.json").write_text(json.dumps({**config, "data_dir": str(tmp_path / "gone")}))
    assert main(["eval", str(done)]) == 0 and "test accuracy" in capsys.readouterr().out
    assert main(["gradcheck", "b", "--in-dim", "100000000000"]) == 2
    err = capsys.readouterr().err
    assert "gradcheck takes at most 1e+08 numbers" in err and err.count("\n") == 1


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_jaxmlp_starts_is_one_line(env, tmp_path, signum):
    """Issue 15.5: Ctrl-C or SIGTERM while the heavy modules import (NumPy's core is loaded:
    a state, not a time) ends with exit 130 and one line, and leaves no folder."""
    out = tmp_path / "run"
    proc = _jaxmlp(["train", *QUICK, "--out", str(out)], env)
    try:
        deadline = time.monotonic() + 60
        while not _loaded(proc.pid, "_multiarray_umath") and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err == "jaxmlp: interrupted\n", err
    assert not out.exists()


def test_an_interrupted_start_leaves_no_folder(tmp_path, monkeypatch):
    import jaxmlp._run as run_module

    def interrupted(folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_lock", interrupted)
    out = tmp_path / "new" / "run"
    with pytest.raises(KeyboardInterrupt):
        RunFolder.open(out)
    assert not (tmp_path / "new").exists()


def test_a_swallowed_interrupt_is_raised_again():
    """A KeyboardInterrupt that lands in a callback Python only prints (a gc callback) is
    re-raised in the main code, so the run stops instead of finishing with exit 0."""
    from jaxmlp.app._entry import _unraisable

    seen = []
    hook = _unraisable(seen.append)
    hook(type("U", (), {"exc_type": ValueError})())
    assert len(seen) == 1  # other exceptions: the usual hook
    with pytest.raises(KeyboardInterrupt):
        hook(type("U", (), {"exc_type": KeyboardInterrupt})())
        for _ in range(10 ** 7):  # the interrupt arrives at the next bytecode boundary
            pass


# --- Issue 24: readers never follow a link, read archives by name and size, name the shape
# of a sweep's records. On copies of the session's served runs (random data, no MNIST).


def _copy_runs(served_runs, tmp_path):
    import shutil

    root, data, _ = served_runs
    shutil.copytree(root / "one", tmp_path / "one")
    shutil.copytree(root / "grid" / "sweep", tmp_path / "sweep")
    return tmp_path / "one", tmp_path / "sweep", data


SECRET = "TOPSECRET-9f2c"


def _secret_files(folder: Path, real: Path) -> dict:
    """Outside copies of ``real``'s files, each holding SECRET where a reader would quote it."""
    folder.mkdir()
    config = json.loads((real / "config.json").read_text())
    files = {"config.json": json.dumps({**config, "api_key": SECRET}),
             "metrics.jsonl": json.dumps({"epoch": 1, "step": 1, SECRET: 1}) + "\n",
             "eval.json": json.dumps({"test_acc": SECRET})}
    for name, text in files.items():
        (folder / name).write_text(text)
    with np.load(real / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(folder / "model.npz", **{**arrays, "arch": np.array(SECRET)})
    return {name: folder / name for name in (*files, "model.npz")}


def test_every_reader_refuses_a_run_file_that_is_a_link(served_runs, tmp_path, capsys):
    one, sweep, data = _copy_runs(served_runs, tmp_path)
    secrets = _secret_files(tmp_path / "outside", one)
    for name in ("config.json", "metrics.jsonl", "model.npz"):
        good = (one / name).read_bytes()
        for target in (secrets[name], one / "checkpoint.npz"):   # out of the run, and within
            (one / name).unlink()
            (one / name).symlink_to(target)
            with pytest.raises(RunError) as e:
                load_run(one)
            assert str(e.value) == (f"{one / name} is a symbolic link: jaxmlp reads only the "
                                    "files it wrote in a run folder, never a link (remove it)")
            for command in (["eval", str(one)], ["predict", str(one), str(tmp_path / "x.npy")]):
                assert main(command) == 2
                err = capsys.readouterr().err
                assert f"{one / name} is a symbolic link" in err and SECRET not in err
                assert err.count("\n") == 1
        (one / name).unlink()
        (one / name).write_bytes(good)
    # eval.json only caches `jaxmlp eval`'s answer: a link there is as good as none.
    (one / "eval.json").unlink()
    (one / "eval.json").symlink_to(secrets["eval.json"])
    assert load_run(one).evaluation is None
    # Resuming reads the checkpoint: a link there is refused before any step.
    config = load_run(sweep, model=0).config
    (one / "checkpoint.npz").rename(tmp_path / "real.npz")
    (one / "checkpoint.npz").symlink_to(tmp_path / "real.npz")
    run = load_run(one)
    with pytest.raises(RunError, match="checkpoint.npz is a symbolic link"):
        jaxmlp.train_and_evaluate(dataclasses_replace(run.config, epochs=3), one, resume=True,
                                  data=data, log=lambda _: None)
    # A sweep: sweep.json, and a model's eval.json behind a linked models/ folder.
    (sweep / "models" / "0").mkdir(parents=True)
    (tmp_path / "elsewhere" / "0").mkdir(parents=True)
    (tmp_path / "elsewhere" / "0" / "eval.json").write_text(json.dumps({"x": SECRET}))
    import shutil
    shutil.rmtree(sweep / "models")
    (sweep / "models").symlink_to(tmp_path / "elsewhere")
    assert load_run(sweep, model=0).evaluation is None and config.seed == 0
    (sweep / "sweep.json").rename(tmp_path / "sweep.json")
    (sweep / "sweep.json").symlink_to(tmp_path / "sweep.json")
    with pytest.raises(RunError, match="sweep.json is a symbolic link"):
        load_run(sweep, model=0)


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def _member(name: str, header_shape, data: bytes = b"", dtype="<f4") -> tuple[str, bytes]:
    """A ``.npy`` zip member whose header says ``header_shape``, followed by ``data``."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False,
                                                  "shape": tuple(header_shape)})
    return f"{name}.npy", buffer.getvalue() + data


def _rewrite(path: Path, changes: dict, compress: bool = False) -> None:
    """``path``'s archive with members replaced or added (``{member: bytes}``)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members.update(changes)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_a_model_archive_is_read_by_name_and_size(served_runs, tmp_path):
    one, sweep, _ = _copy_runs(served_runs, tmp_path)
    model = one / "model.npz"
    good = model.read_bytes()
    # An array the model does not need is never read: here one whose header promises a
    # terabyte and whose data is absent (reading it would fail, or take the memory).
    _rewrite(model, dict([_member("junk", (2 ** 40,), dtype="|u1")]))
    run = load_run(one)
    assert run.arch == jaxmlp.parse_arch(served_runs[2].arch)
    # An array the model needs is read only once its header shows the shape the
    # architecture implies: checked before any of its bytes are.
    w0 = run.params[0]["w"].shape
    for shape in [(2 ** 30, w0[1]), (w0[1], w0[0]), (w0[0],)]:
        model.write_bytes(good)
        _rewrite(model, dict([_member("params/0/w", shape)]))
        with pytest.raises(RunError, match=re.escape(
                f"{model}: params/0/w is {shape} float32, expected {w0} floats")):
            load_run(one)
    # Compressed members could hold more than the file: refused; a sweep's stack too.
    model.write_bytes(good)
    _rewrite(model, {}, compress=True)
    with pytest.raises(RunError, match="model.npz: arch is compressed"):
        load_run(one)
    checkpoint = sweep / "checkpoint.npz"
    _rewrite(checkpoint, dict([_member("params/0/w", (4, 784, 2 ** 20))]))
    with pytest.raises(RunError, match=r"checkpoint.npz: params/0/w is \(4, 784, 1048576\) "
                                       r"float32, expected \(4, 784, 16\) floats"):
        load_run(sweep, model=1)


def test_a_large_array_beside_a_model_costs_no_memory(served_runs, tmp_path):
    # Issue 24.3: a 1 MB model.npz with an extra 1 GiB array took predict to 1.24 GB.
    one, _, _ = _copy_runs(served_runs, tmp_path)
    # The process's own peak (VmHWM, kB): ru_maxrss would count the test's process, which
    # the child was forked from, too.
    script = ("import re, sys, jaxmlp; jaxmlp.load_run(sys.argv[1]); "
              "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])")
    peak = lambda: int(subprocess.run([sys.executable, "-c", script, str(one)], check=True,
                                      capture_output=True, text=True).stdout)
    before = peak()
    with np.load(one / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(one / "model.npz", **arrays, junk=np.zeros(2 ** 28, np.uint8))  # 256 MiB
    assert peak() - before < 64 * 1024  # kB: the junk (262,144 kB) is never read


@pytest.mark.parametrize("models", [[], {"a": 1}, [1, 2, 3, 4], [{}] * 3, "x"])
def test_a_sweeps_records_of_the_wrong_shape_are_named(served_runs, tmp_path, capsys, models):
    # Issue 24.4: IndexError/KeyError tracebacks from eval/predict --model 0 and load_run.
    _, sweep, _ = _copy_runs(served_runs, tmp_path)
    metrics = sweep / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    first = json.loads(lines[0])
    metrics.write_text("\n".join([json.dumps({**first, "models": models}), *lines[1:]]) + "\n")
    message = (f"{metrics} line 1 is not a sweep's epoch record (its models must be a list of "
               "4 records, one per model)")
    with pytest.raises(RunError) as e:
        load_run(sweep, model=0)
    assert str(e.value) == message
    for command in (["eval", str(sweep), "--model", "0"],
                    ["predict", str(sweep), "--model", "0", str(tmp_path / "x.npy")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err == f"jaxmlp {command[0]}: error: {message}\n"


def test_a_complete_sweep_resumed_writes_nothing(served_runs, tmp_path):
    # Found by a fresh-eyes test: the summary was rewritten and models/ (jaxmlp eval's) went.
    from jaxmlp._run import read_sweep

    _, sweep, data = _copy_runs(served_runs, tmp_path)
    jaxmlp.evaluate_run(load_run(sweep, model=0), data)
    before = {p: p.read_bytes() for p in sorted(sweep.rglob("*")) if p.is_file()}
    config, grid, order = read_sweep(sweep)
    jaxmlp.train_many(config, grid, sweep, order=order, resume=True, data=data,
                      log=lambda _: None)
    assert {p: p.read_bytes() for p in sorted(sweep.rglob("*")) if p.is_file()} == before


@pytest.mark.parametrize("name, edit, message", [
    ("config.json", lambda c: {**c, "lr": 10 ** 400}, "config.json: `lr` must be positive"),
    ("config.json", lambda c: {**c, "log_every": 10 ** 12}, "config.json: `log_every` must be at most"),
    ("config.json", lambda c: {**c, "epochs": "١٢"}, "config.json: `epochs` has the wrong type"),
    ("config.json", lambda c: {**c, "data_dir": ""}, "config.json: `data_dir` must name a folder"),
    ("config.json", lambda c: {**c, "arch": "b"}, "model.npz is not the model"),
])
def test_config_values_past_their_range_are_one_line(served_runs, tmp_path, name, edit, message):
    one, _, _ = _copy_runs(served_runs, tmp_path)
    (one / name).write_text(json.dumps(edit(json.loads((one / name).read_text()))))
    with pytest.raises(RunError, match=re.escape(message)) as e:
        load_run(one)
    assert "10000000000" not in str(e.value) and "١" not in str(e.value)


@pytest.mark.parametrize("line, message", [
    ('{"epoch": 1, "step": 1, "train_loss": 1, "train_acc": 1, "test_loss": 1, "test_acc": 1%s}'
     % ("0" * 5000), "metrics.jsonl line 1 holds a number too long to be jaxmlp's"),
    ('{"epoch": -1, "step": 5, "train_loss": 1, "train_acc": 1, "test_loss": 1, "test_acc": 1}',
     "metrics.jsonl line 1 is not an epoch record"),
    ('{"epoch": 1, "step": 0, "train_loss": 1, "train_acc": 1, "test_loss": 1, "test_acc": 1}',
     "metrics.jsonl line 1 is not an epoch record"),
    ('{"epoch": 1, "step": 5, "train_loss": 1, "train_acc": "x", "test_loss": 1, "test_acc": 1}',
     "metrics.jsonl line 1 is not an epoch record"),
    ('{"epoch": 1, "step": 5, "train_loss": 1, "train_acc": 1, "test_loss": 1, "test_acc": 1e999}',
     "metrics.jsonl line 1 is not an epoch record"),
    ('{"epoch": 1, "step": 5, "train_loss": NaN, "train_acc": 1, "test_loss": 1, "test_acc": 1}',
     "metrics.jsonl line 1 is not an epoch record"),
])
def test_records_out_of_range_are_named(served_runs, tmp_path, line, message):
    one, _, _ = _copy_runs(served_runs, tmp_path)
    (one / "metrics.jsonl").write_text(line + "\n")
    with pytest.raises(RunError, match=re.escape(message)):
        load_run(one)


@pytest.mark.parametrize("edit, message", [
    (lambda m: {**m, "api_key": "x"}, "sweep.json is not a jaxmlp sweep (it holds keys jaxmlp "
                                      "does not write)"),
    (lambda m: {**m, "dataset": {**m["dataset"], "image_shape": ["x", 28, 1]}},
     "sweep.json is not a jaxmlp sweep (its dataset is not"),
    (lambda m: {**m, "dataset": {**m["dataset"], "num_classes": 10 ** 12}},
     "sweep.json is not a jaxmlp sweep (its dataset is not"),
    (lambda m: {**m, "dataset": {**m["dataset"], "name": "Not A Name"}},
     "sweep.json is not a jaxmlp sweep (its dataset is not"),
    (lambda m: {**m, "seeds": [0, 0]}, "sweep.json is not a jaxmlp sweep (Grid seeds must list "
                                       "each value once)"),
])
def test_a_sweeps_settings_are_checked_by_every_reader(served_runs, tmp_path, edit, message):
    from jaxmlp._run import read_sweep

    _, sweep, _ = _copy_runs(served_runs, tmp_path)
    meta = json.loads((sweep / "sweep.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps(edit(meta)))
    for read in (lambda: load_run(sweep, model=0), lambda: read_sweep(sweep)):  # resume's
        with pytest.raises(RunError, match=re.escape(message)):
            read()


@pytest.mark.parametrize("models", [[{"test_acc": "x", "test_loss": 1}] * 4, [{}] * 4,
                                    [{"test_acc": 1, "test_loss": 1, "diverged": "no"}] * 4])
def test_a_sweeps_model_records_hold_numbers(served_runs, tmp_path, models):
    _, sweep, _ = _copy_runs(served_runs, tmp_path)
    lines = (sweep / "metrics.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    (sweep / "metrics.jsonl").write_text(json.dumps({**first, "models": models}) + "\n")
    with pytest.raises(RunError, match="line 1 is not a sweep's epoch record"):
        load_run(sweep, model=0)


def test_a_checkpoint_step_no_run_saves_is_refused(served_runs, tmp_path):
    one, _, data = _copy_runs(served_runs, tmp_path)
    with np.load(one / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files}
    for step in (-5, 0):
        np.savez(one / "checkpoint.npz", **{**arrays, "step": np.asarray(step, np.int32)})
        with pytest.raises(RunError, match="checkpoint.npz: its step is not a step a run saves"):
            jaxmlp.train_and_evaluate(dataclasses_replace(load_run(one).config, epochs=4), one,
                                      resume=True, data=data, log=lambda _: None)


def test_the_run_api_names_what_is_not_a_run(served_runs, tmp_path):
    one, _, data = _copy_runs(served_runs, tmp_path)
    with pytest.raises(TypeError, match="folder must be a run folder"):
        load_run(None)
    with pytest.raises(TypeError, match="run must be a jaxmlp.Run"):
        jaxmlp.evaluate_run(None, data)
    with pytest.raises(TypeError, match="data must be a jaxmlp.Dataset"):
        jaxmlp.evaluate_run(load_run(one), "x")
    # A model.npz that names a dataset no TFDS name could be: refused, not quoted.
    with np.load(one / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(one / "model.npz", **{**arrays, "dataset": np.array("ZQX SECRET")})
    with pytest.raises(RunError, match="its architecture, dataset or image shape") as e:
        load_run(one)
    assert "SECRET" not in str(e.value)


@pytest.mark.parametrize("what", ["empty", "missing", "ahead"])
def test_a_checkpoint_without_its_records_is_refused(served_runs, tmp_path, what):
    # Found by a second fresh-eyes test: an empty metrics.jsonl made a sweep's resume end in
    # an IndexError traceback and a single run's in "unsupported format string".
    from jaxmlp._run import read_sweep

    one, sweep, data = _copy_runs(served_runs, tmp_path)
    for folder in (one, sweep):
        metrics, checkpoint = folder / "metrics.jsonl", folder / "checkpoint.npz"
        with np.load(checkpoint) as f:
            arrays = {k: f[k] for k in f.files}
        step = int(arrays["step"])
        if what == "empty":
            metrics.write_text("")
        elif what == "missing":
            metrics.unlink()
        else:  # a checkpoint a step past its records
            np.savez(checkpoint, **{**arrays, "step": np.asarray(step + 1, np.int32)})
            step += 1
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        with pytest.raises(RunError, match=re.escape(
                f"{metrics} has no record of step {step}, where checkpoint.npz was saved")):
            if folder == one:
                jaxmlp.train_and_evaluate(load_run(one).config if what != "missing" else
                                          dataclasses_replace(read_config(one), epochs=2),
                                          one, resume=True, data=data, log=lambda _: None)
            else:
                config, grid, order = read_sweep(sweep)
                jaxmlp.train_many(config, grid, sweep, order=order, resume=True, data=data,
                                  log=lambda _: None)
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def read_config(folder):
    from jaxmlp._run import read_config as read

    return read(folder)


def test_a_sweeps_classes_are_its_output_width(served_runs, tmp_path):
    _, sweep, _ = _copy_runs(served_runs, tmp_path)
    meta = json.loads((sweep / "sweep.json").read_text())
    meta["dataset"]["num_classes"] = 11
    (sweep / "sweep.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="its dataset's class count is not its architecture's"):
        load_run(sweep, model=1)


def test_a_sweep_s_ensemble_is_evaluated_and_saved(served_runs, env, tmp_path, capsys):
    # Issue 26: `jaxmlp eval SWEEP` had no ensemble; summary.json's ensemble accuracy is now
    # one command away, with its confusion matrix.
    from jaxmlp import evaluate_ensemble

    one, sweep, data = _copy_runs(served_runs, tmp_path)
    summary = json.loads((sweep / "summary.json").read_text())
    for k in (0, 1):
        report = evaluate_ensemble(sweep, data, k)
        setting = summary["settings"][k]
        assert (report["lr"], report["momentum"], report["members"]) == (
            setting["lr"], setting["momentum"], [2 * k, 2 * k + 1])
        assert report["test_acc"] == setting["ensemble_test_acc"]
        assert report["member_test_acc"] == pytest.approx(
            [m["test_acc"] for m in summary["models"][2 * k:2 * k + 2]], abs=1e-6)
        assert np.sum(report["confusion"]) == len(data.test_labels)
        saved = json.loads((sweep / "ensembles" / str(k) / "eval.json").read_text())
        assert saved == report and (sweep / "ensembles" / str(k) / "confusion.png").is_file()
    best = summary["best"]
    assert evaluate_ensemble(sweep, data)["setting"] == best["setting"]  # the best by default
    assert summary["settings"][best["setting"]]["lr"] == best["lr"]
    for call, message in [(lambda: evaluate_ensemble(sweep, data, 2), "has settings 0 to 1, not 2"),
                          (lambda: evaluate_ensemble(one, data), "holds no sweep")]:
        with pytest.raises(RunError, match=message):
            call()
    # Each member over its distortions (issue 28), then the committee's mean.
    from jaxmlp import TTA, tta_probabilities

    voted = evaluate_ensemble(sweep, data, 1, TTA(2, "rotation=10", seed=4))
    each = [tta_probabilities(load_run(sweep, model=i).params, data.test_images,
                              load_run(sweep, model=i).arch, TTA(2, "rotation=10", 4),
                              image_shape=(28, 28, 1)) for i in (2, 3)]
    labels = np.asarray(data.test_labels)
    assert voted["test_acc"] == np.mean(np.mean(each, axis=0).argmax(1) == labels)
    assert voted["tta"] == {"n": 2, "augment": "rotation=10", "seed": 4}
    # The members' figures are theirs under the same distortions (as `jaxmlp ensemble`'s),
    # and the plain committee's stands beside.
    assert voted["member_test_acc"] == [float(np.mean(p.argmax(1) == labels)) for p in each]
    assert voted["without_tta"] == {"test_loss": report["test_loss"],
                                    "test_acc": report["test_acc"]}
    (sweep / "summary.json").unlink()  # not finished: the best is not known yet
    with pytest.raises(RunError, match="has no summary.json naming its best setting"):
        evaluate_ensemble(sweep, data)
    # The command: on the dataset the sweep names (here the real MNIST test split).
    assert main(["eval", str(sweep), "--ensemble", "--setting", "1", "--no-download"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{sweep}: ensemble of setting 1 (lr 0.1, momentum 0.9; models 2, "
                             "3): test loss ")
    assert out[1].startswith("per class: 0: ")  # as a single run's eval
    assert out[2] == "confusion (rows: true class, columns: predicted class):"
    assert out[-1] == f"wrote {sweep}/ensembles/1/eval.json, confusion.png"
    for args, message in [([str(one), "--ensemble"], "holds a single run: --ensemble needs a "
                                                      "sweep's folder"),
                          ([str(sweep), "--setting", "1"], "--setting names an ensemble's "
                                                           "setting: add --ensemble"),
                          ([str(sweep), "--ensemble", "--model", "1"], "drop --model")]:
        assert main(["eval", *args, "--no-download"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_sweep_s_committee_loads_and_predicts_without_its_diverged_seeds(served_runs, tmp_path,
                                                                          capsys):
    # Issue 26: a committee a user can load and predict with, from Python and the command.
    from jaxmlp import load_ensemble, predict, predict_ensemble, top_k

    one, sweep, data = _copy_runs(served_runs, tmp_path)
    images = data.test_images[:7]
    committee = load_ensemble(sweep, 1)
    assert (committee.members, committee.setting, committee.lr) == ((2, 3), 1, 0.1)
    assert committee.params[0]["w"].shape == (2, *load_run(sweep, model=2).params[0]["w"].shape)
    alone = [predict(load_run(sweep, model=i).params, images, committee.arch) for i in (2, 3)]
    probs = predict_ensemble(committee.params, images, committee.arch)
    np.testing.assert_allclose(probs, np.mean(alone, axis=0), rtol=0, atol=1e-7)
    assert not np.allclose(alone[0], alone[1])  # two votes, not one twice
    assert load_ensemble(sweep).lr == json.loads((sweep / "summary.json").read_text())["best"]["lr"]
    # The command prints what predict prints, from the committee's probabilities.
    np.save(tmp_path / "x.npy", images)
    assert main(["predict", str(sweep), "--ensemble", "--setting", "1", str(tmp_path / "x.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{tmp_path / 'x.npy'}[{i}]: {top[0][0]}  (" + ", ".join(f"{c}: {p:.3f}" for c, p in top) + ")"
                     for i, top in enumerate(top_k(probs, 3))]
    # --tta: each member over the images and their shifts, then the mean (issue 28).
    from jaxmlp import TTA, tta_probabilities

    assert main(["predict", str(sweep), "--ensemble", "--setting", "1", str(tmp_path / "x.npy"),
                 "--tta", "3", "--json"]) == 0
    shifted = np.mean([tta_probabilities(load_run(sweep, model=i).params, images, committee.arch,
                                         TTA(3), image_shape=(28, 28, 1)) for i in (2, 3)], axis=0)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["top3"][0]["prob"] for r in rows] == pytest.approx(shifted.max(axis=1), abs=1e-6)
    assert not np.allclose(shifted, probs, atol=1e-4)
    # A seed whose weights are not finite does not vote; a setting without a live seed is refused.
    with np.load(sweep / "checkpoint.npz") as f:
        arrays = {k: f[k].copy() for k in f.files}
    arrays["params/0/w"][3, 0, 0] = np.nan
    arrays["params/0/w"][0, 0, 0] = arrays["params/0/w"][1, 0, 0] = np.inf
    np.savez(sweep / "checkpoint.npz", **arrays)
    assert load_ensemble(sweep, 1).members == (2,)
    np.testing.assert_allclose(predict_ensemble(load_ensemble(sweep, 1).params, images,
                                                committee.arch), alone[0], atol=1e-7)
    for args, message in [([str(sweep), "--ensemble", "--setting", "0"],
                           "every model of setting 0 of the sweep in"),
                          ([str(one), "--ensemble"], "holds a single run: --ensemble needs"),
                          ([str(sweep), "--setting", "1"], "--setting names an ensemble's setting"),
                          ([str(sweep), "--ensemble", "--model", "2"], "drop --model")]:
        assert main(["predict", *args, str(tmp_path / "x.npy")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)
    with pytest.raises(TypeError, match="folder must be a sweep's folder"):
        load_ensemble(3)
