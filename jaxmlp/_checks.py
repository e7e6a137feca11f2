"""The small checks several modules make, each stated once."""
import jax
import numpy as np


def is_concrete(x) -> bool:
    """Whether ``x`` holds values that can be read now (not a tracer under ``jit``)."""
    return not isinstance(x, jax.core.Tracer)


def positive_int(value, name: str) -> None:
    """``ValueError`` unless ``value`` is an int (numpy's too, never a bool) of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def label_range(labels, n: int, units: str = "classes") -> None:
    """``ValueError`` unless every label lies in ``[0, n)``; read only where the values are
    concrete (under ``jit`` a label cannot be checked: the loss is then NaN instead)."""
    if not is_concrete(labels) or not np.size(labels):
        return
    values = np.asarray(labels)  # concrete: read on the host, even while jit traces around it
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"label out of range: labels must lie in [0, {n}) for {n} {units}, "
                         f"got values in [{lo}, {hi}]")
