"""Shared fixtures. Tests that need the real MNIST get the ``mnist`` mark from the fixtures
they use (``pytest -m "not mnist"`` runs without any data); ``env`` points a test's
subprocesses and the default folders at that data and a cache of the session's own."""
import contextlib
import os
import threading
from pathlib import Path

import jax
import pytest

# Every fixture that reaches ../shared/data; a test using any of them, directly or through
# another fixture, needs the real MNIST.
DATA_FIXTURES = {"shared_data", "tfds_dir", "idx_dir", "mnist"}


# The longest tests (pytest --durations, 2-core machine, 2026-12-01), started first in their
# tier: xdist's work stealing takes from the end of a worker's queue, so the run ends on
# short tests instead of one worker finishing a long one alone.
_LONGEST = ("test_every_command_runs_as_documented", "test_sweep_benchmark_reports_every_figure",
            "test_independent_models_equal_single_runs", "test_first_run_prints_nothing_but_its_lines",
            "test_sharded_sweep_equals_unsharded", "test_two_processes_match_one",
            "test_benchmark_reports_every_figure", "test_four_devices_match_one",
            "test_sweep_failures_are_one_line", "test_sweep_with_validation_split_and_lion",
            "test_dropout_resumes_exactly_mid_epoch_and_never_drops_in_evaluation")


def pytest_collection_modifyitems(items):
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mnist)
        if "browser" in getattr(item, "fixturenames", ()):  # tests/test_browser.py
            item.add_marker(pytest.mark.browser)
    # The production tests last: each process switches compiler modes once. The tests that
    # need the data before those that do not: xdist hands each worker a contiguous half, so
    # the second worker starts on tests without data while the first reads MNIST (~12 s;
    # a worker that needed it too would wait for the first's cache).
    def order(item):
        name = getattr(item, "originalname", item.name)
        return (item.get_closest_marker("production") is not None,
                _LONGEST.index(name) if name in _LONGEST else len(_LONGEST),
                item.get_closest_marker("mnist") is None)
    items.sort(key=order)  # stable: otherwise in file order


# XLA:CPU's older emitters compile small programs about a third faster than its fusion
# emitters (measured on this project's 2-core machine; every test passes under both). XLA
# reads its flags once per process: the test processes get them before they start XLA, and
# so does every process a test starts, but a ``production`` test's (``_light_compiles``).
_LIGHT_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"
_USER_XLA_FLAGS = os.environ.get("XLA_FLAGS")


def _with_light_xla_flags() -> str:
    return f"{os.environ.get('XLA_FLAGS', '')} {_LIGHT_XLA_FLAGS}".strip()


def pytest_configure(config):
    # Before collection: importing the tests starts XLA, which then has read its flags.
    # (Measured 2026-12-03, 2-core AMD EPYC: `make test` 8:04 with them in the offline tier
    # only, 6:08 with them everywhere.)
    os.environ["XLA_FLAGS"] = _with_light_xla_flags()


_LIGHT = {"on": False}  # the compiler mode this process is in


def _light(on: bool) -> None:
    if _LIGHT["on"] != on:
        # JAX's caches do not record the flag an executable was compiled under: without
        # this, a test that trains on MNIST could run a program compiled for a unit test.
        jax.clear_caches()
        jax.config.update("jax_disable_most_optimizations", on)  # read at each compile
        _LIGHT["on"] = on


@pytest.fixture(autouse=True)
def _light_compiles(request, monkeypatch):
    """A test's programs are small or few, and XLA's optimisation passes are most of their
    time: tests compile with those passes off, in this process and in the ones they start
    (every claim they test holds under both compilers). The tests marked ``production``
    compile with the passes on, and the processes they start with the user's XLA flags: a
    trajectory saved from the production compiler, a sharded program against its unsharded
    twin, programs that run long enough for XLA's optimisation to pay. They run last, so a
    process switches once."""
    production = request.node.get_closest_marker("production") is not None
    if production:  # the processes it starts too
        if _USER_XLA_FLAGS is None:
            monkeypatch.delenv("XLA_FLAGS", raising=False)
        else:
            monkeypatch.setenv("XLA_FLAGS", _USER_XLA_FLAGS)
    else:
        monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
        if _LIGHT_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
            monkeypatch.setenv("XLA_FLAGS", _with_light_xla_flags())
    _light(not production)
    yield


@pytest.fixture
def x64():
    """Runs a test in float64, where hand and autodiff gradients must agree to ~1e-12."""
    with jax.enable_x64(True):
        yield


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _require(path: Path, what: str) -> Path:
    """The path, or a skip with the reason; in CI (CI=true) a failure, since CI must run them."""
    if path.exists():
        return path
    message = (f"{what} not found at {path}: these tests need the real MNIST "
               "(set JAXMLP_TEST_DATA to the folder holding mnist/ and tensorflow_datasets/)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # Resolved: the data may be reached through a symbolic link, and runs record real paths.
    return Path(os.environ.get("JAXMLP_TEST_DATA") or SHARED_DATA).resolve()


@pytest.fixture(scope="session")
def tfds_dir(shared_data) -> Path:
    return _require(shared_data / "tensorflow_datasets" / "mnist", "the prepared TFDS MNIST").parent


@pytest.fixture(scope="session")
def idx_dir(shared_data) -> Path:
    return _require(shared_data / "mnist" / "train-images-idx3-ubyte.gz", "the MNIST .gz files").parent


def _session_dir(tmp_path_factory) -> Path:
    """The session's own folder, above every xdist worker's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """jaxmlp's cache (MNIST as .npz, XLA's compiled programs) for the session, one for all
    its xdist workers: MNIST is read through TFDS and TensorFlow (~12 s of CPU) once."""
    path = _session_dir(tmp_path_factory) / "jaxmlp-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def _shared_compilation_cache(cache_dir):
    """Every worker's compiled programs in one persistent cache (XLA's, as the jaxmlp command
    keeps one): a program two tests compile alike is compiled once a session. The key holds
    the compiler's options and XLA_FLAGS, so the light and production modes never mix."""
    if os.environ.get("JAXMLP_TEST_XLA_CACHE", "1") == "0":
        yield
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_dir / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield


@pytest.fixture(scope="session")
def mnist(tfds_dir, cache_dir):
    """Real MNIST, read through TFDS (never downloading) by the first worker that needs it,
    from its cache by the others (the cache file is written whole, then renamed in)."""
    import fcntl

    from jaxmlp._data import _load_mnist

    # Workers start together: without the lock each would read it through TensorFlow.
    with open(cache_dir / "mnist.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _load_mnist(data_dir=tfds_dir, cache_dir=cache_dir, download=False)


@pytest.fixture(scope="session")
def small(mnist):
    """A tenth of MNIST's training split and a fifth of its test split: for tests that
    compare runs (resume, both gradient paths, models of a sweep) and need not train well."""
    return mnist._replace(train_images=mnist.train_images[:6000],
                          train_labels=mnist.train_labels[:6000],
                          test_images=mnist.test_images[:2000], test_labels=mnist.test_labels[:2000])


@pytest.fixture
def env(tfds_dir, cache_dir, mnist, monkeypatch) -> dict:
    """The real MNIST and the session's filled cache as the default folders, for this process
    and, as the returned environment, for the jaxmlp subprocesses a test starts."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(cache_dir))
    return {**os.environ}


# A network with every activation jaxmlp has, so that the page's forward pass is held to
# jaxmlp's for each (test_serve checks the list is complete).
SERVED_ARCH = "24:relu,16:tanh,12:sigmoid,12:lecun_tanh,10:linear"


def _quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory):
    """``(root, data, config)``: a folder of runs for ``jaxmlp serve``'s tests, trained on
    random images in seconds: ``one`` (SERVED_ARCH, 2 epochs, with a validation split) and
    ``grid/sweep`` (2 learning rates × 2 seeds, 2 epochs); ``one`` has ``jaxmlp eval``'s
    files. Made once a session, by the first worker that needs it (the tests only read it:
    test_serve checks that serving writes nothing)."""
    import fcntl

    import numpy as np

    from jaxmlp import (Dataset, Grid, TrainConfig, evaluate_run, load_run, train_and_evaluate,
                        train_many)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (320, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, 320).astype(np.int32)
    data = Dataset(images[:256], labels[:256], images[256:], labels[256:])
    config = TrainConfig(arch=SERVED_ARCH, epochs=2, batch_size=32, val_size=32,
                         train_eval_size=64)
    root = _session_dir(tmp_path_factory) / "served"
    with open(_session_dir(tmp_path_factory) / ".served-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker making it: wait for it
        if not (root / "done").exists():
            train_and_evaluate(config, root / "one", data=data, log=_quiet)
            evaluate_run(load_run(root / "one"), data)  # eval.json and pictures, for the page
            train_many(TrainConfig(arch="16:relu,10:linear", epochs=2, batch_size=32,
                                   train_eval_size=64),
                       Grid(seeds=(0, 1), lrs=(0.05, 0.1), momenta=(0.9,)),
                       root / "grid" / "sweep", order="independent", data=data, log=_quiet)
            (root / "done").touch()
    return root, data, config


@contextlib.contextmanager
def serving(root, host="127.0.0.1"):
    """``jaxmlp serve``'s server of ``root`` on a free port, answering from a thread of this
    process while the block runs; ``server.server_address[1]`` is its port."""
    from jaxmlp.app._serve import make_server

    server = make_server(root, host, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
