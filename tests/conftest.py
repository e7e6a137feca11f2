import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test in float64, where hand and autodiff gradients must agree to ~1e-12."""
    with jax.enable_x64(True):
        yield
