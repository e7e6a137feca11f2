"""Shared fixtures. Tests that need the real MNIST get the ``mnist`` mark from the fixtures
they use (``pytest -m "not mnist"`` runs without any data); ``env`` points a test's
subprocesses and the default folders at that data and a cache of the session's own."""
import os
from pathlib import Path

import jax
import pytest

# Every fixture that reaches ../shared/data; a test using any of them, directly or through
# another fixture, needs the real MNIST.
DATA_FIXTURES = {"shared_data", "tfds_dir", "idx_dir", "mnist"}


def pytest_collection_modifyitems(items):
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mnist)
    # The unit tests first, then those on MNIST: each process switches compiler modes once.
    items.sort(key=lambda item: item.get_closest_marker("mnist") is not None)


# XLA:CPU's older emitters compile small programs about a third faster than its fusion
# emitters (measured on this project's 2-core machine; every test passes under both). XLA reads its
# flags once per process, so only the offline tier (`-m "not mnist"`), and every subprocess
# a unit test starts, gets them: tests that train on MNIST keep the production compiler.
_LIGHT_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"


def _with_light_xla_flags() -> str:
    return f"{os.environ.get('XLA_FLAGS', '')} {_LIGHT_XLA_FLAGS}".strip()


def pytest_configure(config):
    # Before collection: importing the tests starts XLA, which then has read its flags.
    if config.option.markexpr.replace("'", '"') == 'not mnist':
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
    """Tests without the real data prove math on tiny shapes, where XLA's optimisation passes
    are most of the time: they compile with those passes off, in this process and in the
    ones they start. Tests that train on MNIST keep the production compiler (they run after
    the others, so a process switches once)."""
    mnist = request.node.get_closest_marker("mnist") is not None
    if not mnist:
        monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
        if _LIGHT_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
            monkeypatch.setenv("XLA_FLAGS", _with_light_xla_flags())
    _light(not mnist)
    yield


@pytest.fixture
def light_compiler(_light_compiles, monkeypatch):
    """A test on MNIST whose speed does not matter (it times nothing it asserts on) may
    compile light too; the switch back clears the caches, as every switch does."""
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    _light(True)


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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jaxmlp-cache")


@pytest.fixture(scope="session")
def mnist(tfds_dir, cache_dir):
    """Real MNIST, read through TFDS once per session (never downloading)."""
    from jaxmlp.data import _load_mnist

    return _load_mnist(data_dir=tfds_dir, cache_dir=cache_dir, download=False)


@pytest.fixture
def env(tfds_dir, cache_dir, mnist, monkeypatch) -> dict:
    """The real MNIST and the session's filled cache as the default folders, for this process
    and, as the returned environment, for the jaxmlp subprocesses a test starts."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(cache_dir))
    return {**os.environ}
