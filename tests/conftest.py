import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test in float64, where hand and autodiff gradients must agree to ~1e-12."""
    with jax.enable_x64(True):
        yield


import os
from pathlib import Path

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
    return Path(os.environ.get("JAXMLP_TEST_DATA") or SHARED_DATA)


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
    from jaxmlp.data import load_mnist

    return load_mnist(data_dir=tfds_dir, cache_dir=cache_dir, download=False)
