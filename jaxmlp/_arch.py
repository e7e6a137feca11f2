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


def weight_shapes(arch: Arch, in_dim: int) -> list[tuple[int, int]]:
    """Each layer's weight shape ``(fan_in, units)``: the first takes ``in_dim`` inputs,
    every other the units of the layer before (its bias is ``(units,)``)."""
    fans = [in_dim, *(units for units, _ in arch[:-1])]
    return [(fan_in, units) for fan_in, (units, _) in zip(fans, arch)]


class Summary(NamedTuple):
    """``summary``'s answer: one ``(layer, units, activation, weights, params,
    multiply_adds)`` row per layer, and the totals. ``str()`` is the table the trainer
    prints when a run starts."""

    in_dim: int
    rows: tuple[tuple[int, int, str, tuple[int, int], int, int], ...]
    params: int  # every weight and bias
    multiply_adds: int  # per example, forward pass: Σ fan_in · units

    def __str__(self) -> str:
        head = f"{'layer':>5}  {'units':>7}  {'activation':<10}  {'w':>13}  {'params':>11}"
        lines = [f"input: {self.in_dim} values an example", head]
        for i, units, activation, (fan_in, _), params, _ in self.rows:
            lines.append(f"{i:>5}  {units:>7,}  {activation:<10}  {f'{fan_in}×{units}':>13}  "
                         f"{params:>11,}")
        lines.append(f"total: {self.params:,} parameters, {self.multiply_adds:,} multiply-adds "
                     "an example (forward)")
        return "\n".join(lines)

    def line(self) -> str:
        """The summary in one line, as a run's log starts: ``784 → 50 relu → 10 linear:
        39,760 parameters, 39,700 multiply-adds an example``."""
        layers = " → ".join(f"{units} {activation}" for _, units, activation, *_ in self.rows)
        return (f"{self.in_dim} → {layers}: {self.params:,} parameters, "
                f"{self.multiply_adds:,} multiply-adds an example")


def summary(arch, in_dim: int = 784) -> Summary:
    """The layers of ``arch`` (an ``Arch`` or anything ``parse_arch`` reads) on inputs of
    ``in_dim`` values: each layer's weight shape ``(fan_in, units)``, its parameters
    ``fan_in·units + units`` and multiply-adds ``fan_in·units`` per example, and the totals.

    >>> jaxmlp.summary("c").params   # the seed's network (c): 784·70+70 + 70·70+70 + 70·10+10
    60630
    """
    layers = parse_arch(arch)
    _checks.integer(in_dim, "in_dim", low=1)
    rows = [(i, units, activation, (fan_in, units), fan_in * units + units, fan_in * units)
            for i, ((units, activation), (fan_in, _)) in
            enumerate(zip(layers, weight_shapes(layers, in_dim)))]
    return Summary(in_dim, tuple(rows), sum(r[4] for r in rows), sum(r[5] for r in rows))
