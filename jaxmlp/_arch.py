"""Architectures: a tuple of ``Layer(units, activation)``, parsed from ``"50:relu,10:linear"``."""
from collections.abc import Sequence
from typing import NamedTuple, Union

from jaxmlp import _checks
from jaxmlp._activations import ACTIVATIONS


class Layer(NamedTuple):
    """One dense layer: ``units`` outputs, then ``activation`` (a key of ``ACTIVATIONS``)."""

    units: int
    activation: str


Arch = tuple[Layer, ...]

# The largest net a spec may describe: 64 times the widest published MLP layer (Srivastava
# et al.'s 8,192 units is an eighth of it) and far deeper than any MLP trains. Widths and
# depth past these only overflow index arithmetic or memory; a run still checks that its
# net fits the machine (``layout.check_memory``).
MAX_UNITS = 1 << 19
_MAX_LAYERS = 256

PRESETS: dict[str, str] = {
    # The seed's three networks (HW2, Problem 4).
    "a": "10:linear",
    "b": "50:relu,50:relu,10:linear",
    "c": "70:relu,70:relu,10:relu",
    # A wide net for the >= 98% runs.
    "wide": "1024:relu,1024:relu,10:linear",
}


def parse_arch(spec: Union[str, Sequence]) -> Arch:
    """Returns a validated architecture.

    Args:
      spec: a preset name (``"a"``, ``"b"``, ``"c"``, ``"wide"``), a string of
        comma-separated ``units:activation`` pairs such as ``"50:relu,50:relu,10:linear"``,
        or a sequence of ``(units, activation)`` pairs.

    Returns:
      A tuple of ``Layer`` (hashable, so it can be a static argument of ``jax.jit``).

    Raises:
      ValueError: empty spec, malformed pair, non-positive width, unknown activation.
      TypeError: a spec that is neither a string nor a sequence of pairs.
    """
    if isinstance(spec, str):
        text = PRESETS.get(spec.strip(), spec)
        pairs: list = []
        for item in text.split(","):
            width, sep, activation = item.strip().partition(":")
            if not sep:
                raise ValueError(
                    f"bad layer {item.strip()!r} in architecture {spec!r}: expected "
                    f"'units:activation' (e.g. '50:relu'), or a preset among {sorted(PRESETS)}")
            try:  # ASCII digits only: int() also reads "１０" and "1_0"
                pairs.append((_checks.parse_int(width, "width"), activation.strip()))
            except ValueError:
                raise ValueError(
                    f"bad width {width!r} in architecture {spec!r}: expected an integer") from None
    elif isinstance(spec, Sequence):
        pairs = list(spec)
    else:
        raise TypeError(f"architecture must be a string or a sequence of (units, activation) "
                        f"pairs, got {type(spec).__name__}")
    if not pairs:
        raise ValueError("architecture has no layers")
    if len(pairs) > _MAX_LAYERS:
        raise ValueError(f"architecture has {len(pairs)} layers, more than {_MAX_LAYERS}")
    layers = []
    for pair in pairs:
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise TypeError(f"each layer must be a (units, activation) pair, got {pair!r}")
        units, activation = pair
        if isinstance(units, bool) or not isinstance(units, int):
            raise TypeError(f"layer width must be an int, got {units!r}")
        if units <= 0:
            raise ValueError(f"layer width must be positive, got {units}")
        if units > MAX_UNITS:
            raise ValueError(f"layer width must be at most {MAX_UNITS:,}, got {units}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        layers.append(Layer(units, activation))
    return tuple(layers)
