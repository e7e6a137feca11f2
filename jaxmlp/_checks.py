"""The checks the public API makes on its arguments, each rule stated once.

Every check raises ``TypeError`` (a value of the wrong kind: a string for a number, a float
for a count) or ``ValueError`` (the right kind, out of range), with a message that names the
argument, before any work: ``Invalid``/``WrongType`` (a ``ValueError``/``TypeError``) whose
``rule`` says what is wrong without the value, so that a reader of a file can report it
without quoting the file. Values are read only where they are concrete: under ``jit`` an
argument may be a tracer, whose shape and dtype are checked and whose value is not (reading
it would need a host round trip, and cannot be done while tracing).
"""
import functools
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp._errors import Invalid, WrongType

# Sizes and counts (widths, batch sizes, steps) stay below this: JAX indexes with int32.
INDEX_LIMIT = 2 ** 31
# Seeds: jax.random.key takes 32 bits; larger seeds would wrap or overflow.
SEED_LIMIT = 2 ** 32
_FLOAT32_MAX = float(np.finfo(np.float32).max)


# Numbers as text, in ASCII only: Python's int() and float() also read "١٢" (Arabic-Indic
# digits), "１０" (full width) and "1_0", which then reach config.json, a folder name or a
# plot's font as characters no one typed on purpose.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                         r"|inf|infinity|nan)", re.IGNORECASE)


def path(value, name: str, what: str) -> Path:
    """``value`` as a ``Path`` where it is a ``str`` or ``os.PathLike``, else ``WrongType``:
    "``name`` must be ``what`` (a str or path), got int"."""
    if not isinstance(value, (str, os.PathLike)):
        raise WrongType(f"{name} must be {what} (a str or path)", type(value).__name__)
    return Path(value)


def parse_int(text: str, name: str) -> int:
    """``text`` (ASCII digits, an optional sign) as an int, else ``ValueError`` naming it."""
    if not isinstance(text, str) or not _INT_TEXT.fullmatch(text.strip()):
        raise Invalid(f"{name} must be an integer written in ASCII digits", repr(text)[:60])
    return int(text)


class TooLarge(Invalid):
    """A number written past what a float holds (``1e400``): ``float()`` would read it as
    infinity, and a range check would then quote ``inf``, a value no one typed."""


def parse_float(text: str, name: str) -> float:
    """``text`` as a float (ASCII: ``0.5``, ``.5``, ``1e-3``; ``inf`` and ``nan`` too, for the
    range checks to name), else ``ValueError`` naming it."""
    if not isinstance(text, str) or not _FLOAT_TEXT.fullmatch(text.strip()):
        raise Invalid(f"{name} must be a number written in ASCII", repr(text)[:60])
    value = float(text)
    if math.isinf(value) and "inf" not in text.lower():  # 1e400: not what was written
        raise TooLarge(f"{name} is too large to hold as a number", repr(text.strip())[:60])
    return value


# The most values a function's output may hold: 1 GiB of float32. A larger one is refused
# before any is allocated (XLA would otherwise abort the process, or exhaust memory).
MAX_OUTPUT = 1 << 28


def output_size(size: int, what: str) -> None:
    """``ValueError`` unless an output of ``size`` values fits ``MAX_OUTPUT``."""
    if size > MAX_OUTPUT:
        raise Invalid(f"{what} would hold {size:,} values, more than {MAX_OUTPUT:,}: pass "
                       "fewer or smaller inputs")


def is_concrete(x) -> bool:
    """Whether ``x`` holds values that can be read now (not a tracer under ``jit``)."""
    return not isinstance(x, jax.core.Tracer)


def _is_int(value) -> bool:
    """A Python or numpy int; never a bool (an int to ``isinstance``, but not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def integer(value, name: str, *, low: int = 0, high: int | None = INDEX_LIMIT) -> int:
    """``value`` as an int in ``[low, high)`` (``high`` None: no upper bound); ``TypeError``
    for anything but an int (a bool, a float, a string), ``ValueError`` out of range."""
    if not _is_int(value):
        raise WrongType(f"{name} must be an int", _shown(value))
    if value < low:
        raise Invalid(f"{name} must be an int >= {low}", _shown(value))
    if high is not None and value >= high:
        raise Invalid(f"{name} must be an int below {_power(high)}", _shown(value))
    return int(value)


def positive_int(value, name: str, *, limit: int | None = None) -> int:
    """``value`` as an int of at least 1 (numpy's too, never a bool), below ``limit`` if
    given: ``TypeError`` for another kind of value, ``ValueError`` out of range."""
    # One message for both ends of the range, so a user sees the whole of it at once.
    rule = f"{name} must be a positive int" + ("" if limit is None else f" below {_power(limit)}")
    if not _is_int(value):
        raise WrongType(rule, _shown(value))
    if value < 1 or (limit is not None and value >= limit):
        raise Invalid(rule, _shown(value))
    return int(value)


def _power(n: int) -> str:
    """``2**31`` for a power of two, else the number."""
    return f"2**{n.bit_length() - 1}" if n > 2 and n & (n - 1) == 0 else str(n)


def seed(value, name: str = "seed") -> int:
    """A PRNG seed: an int in ``[0, 2**32)``."""
    if not _is_int(value):
        raise WrongType(f"{name} must be an int in [0, 2**32)", _shown(value))
    if not 0 <= value < SEED_LIMIT:
        raise Invalid(f"{name} must be an int in [0, 2**32)", _shown(value))
    return int(value)


def one_of(value, choices, name: str):
    """``value`` if it is one of ``choices`` (compared as strings are: no ``1 == True``)."""
    if not isinstance(value, str) or value not in choices:
        raise Invalid(f"{name} must be one of {tuple(choices)}", _shown(value))
    return value


def flag(value, name: str, *, none: bool = False):
    """A bool (or None where ``none``): never 0/1 or a string that reads as one."""
    if isinstance(value, (bool, np.bool_)) or (none and value is None):
        return value
    raise WrongType(f"{name} must be True or False{' or None' if none else ''}",
                     _shown(value))


@overload
def number(value, name: str, *, traced: Literal[False] = False) -> float: ...
@overload
def number(value, name: str, *, traced: bool) -> float | None: ...
def number(value, name: str, *, traced: bool = False) -> float | None:
    """``value`` as a finite float; ``None`` for a traced value where ``traced`` allows one.

    A number is a Python or numpy int or float (never a bool), or a 0-d real array. A JAX
    array is read only when concrete; a tracer is checked for its shape and dtype only.
    """
    if isinstance(value, (jax.Array, np.ndarray)):  # tracers included
        if np.ndim(value) != 0 or not _real_dtype(value.dtype):
            raise WrongType(f"{name} must be a number", f"an array of shape "
                             f"{np.shape(value)} and dtype {value.dtype}")
        if not is_concrete(value):
            if traced:
                return None
            raise WrongType(f"{name} must be a concrete number, not a value traced by jit")
    elif isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise WrongType(f"{name} must be a number", _shown(value))
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float64
        as_float = math.inf if value > 0 else -math.inf
    if not math.isfinite(as_float):
        raise Invalid(f"{name} must be a finite number", _shown(value))
    return as_float


def _real_dtype(dtype) -> bool:
    return (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)) \
        and not jnp.issubdtype(dtype, jnp.bool_)


def _shown(value) -> str:
    """A value for a message: Python numbers as written, one-element arrays by their value,
    others by their shape, a traced value as such, anything long cut short."""
    if isinstance(value, (np.ndarray, jax.Array)):
        if not is_concrete(value):
            return f"a value traced by jit (shape {np.shape(value)}, dtype {value.dtype})"
        if np.size(value) != 1:
            return f"an array of shape {np.shape(value)} and dtype {value.dtype}"
        value = value.item()
    if _is_int(value) and abs(int(value)).bit_length() > 4 * 4000:  # past str()'s limit
        return f"an int of about {int(abs(int(value)).bit_length() * math.log10(2)) + 1} digits"
    if _is_int(value) and len(digits := str(abs(int(value)))) > 20:  # 10**400: not all of it
        return f"{'-' if value < 0 else ''}{digits[:3]}… ({len(digits)} digits)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def int_as_float(value):
    """A Python or numpy int as a float (the same number: ints reach here checked, far below
    2**53), anything else as it is. JAX reads a Python int as an int32: ``10**30`` would
    overflow where ``1e30`` is a float32 like any other."""
    return float(value) if _is_int(value) else value


def float32_note(value: float) -> str:
    """`` (0 as a float32, …)`` where float32, the precision of training, turns ``value`` into
    0, 1 or infinity (a boundary the check refused); else ``""``."""
    with np.errstate(over="ignore"):
        as32 = float(np.float32(value))
    if as32 == value or (as32 not in (0.0, 1.0) and math.isfinite(as32)):
        return ""
    return f" ({as32:g} as a float32, the precision training runs in)"


def positive_number(value, name: str, *, traced: bool = False) -> float | None:
    """A number above 0 that stays above 0 and finite in float32 (``1e-50`` and ``1e39``
    are refused); a tracer where ``traced`` allows one (``None``)."""
    v = number(value, name, traced=traced)
    if v is not None and not (v > 0 and abs(v) <= _FLOAT32_MAX and np.float32(v) > 0):
        within = " within float32's range" if v > 0 else ""  # 1e39 is positive: say why not
        raise Invalid(f"{name} must be a positive number{within}", _shown(value) + float32_note(v))
    return v


def non_negative_number(value, name: str, *, traced: bool = False) -> float | None:
    """A number of at least 0, finite in float32."""
    v = number(value, name, traced=traced)
    if v is not None and not (0 <= v <= _FLOAT32_MAX):
        raise Invalid(f"{name} must be a number >= 0", _shown(value) + float32_note(v))
    return v


def probability(value, name: str, *, lower_open: bool = False, upper_open: bool = True,
                float32: bool = True, traced: bool = False) -> float | None:
    """A number in ``[0, 1)`` (by default; ``lower_open``: ``(0, …``, ``upper_open=False``:
    ``…, 1]``). With ``float32``, an open end must stay open in float32 too (``0.999999999``
    is 1 there: a decay that never decays, a rate that drops everything)."""
    v = number(value, name, traced=traced)
    if v is None:
        return None
    above = v > 0 if lower_open else v >= 0
    below = v < 1 if upper_open else v <= 1
    if float32:
        above = above and (not lower_open or bool(np.float32(v) > 0))
        below = below and (not upper_open or bool(np.float32(v) < 1))
    if not (above and below):
        interval = f"{'(' if lower_open else '['}0, 1{')' if upper_open else ']'}"
        raise Invalid(f"{name} must be a number in {interval}",
                       _shown(value) + (float32_note(v) if float32 else ""))
    return v


def rates(value, name: str = "dropout") -> tuple:
    """Dropout's ``(p_in, p_hidden)``: exactly two concrete numbers, each in ``[0, 1)``."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__") \
            or len(value) != 2:
        raise WrongType(f"{name} must be two rates (p_in, p_hidden)", _shown(value))
    p_in, p_hidden = value
    return (probability(p_in, f"{name}[0] (the input rate)"),
            probability(p_hidden, f"{name}[1] (the hidden rate)"))


def array(value, name: str):
    """``value`` itself if it has a shape and a dtype (numpy and JAX arrays, tracers,
    ``jax.ShapeDtypeStruct``), else ``np.asarray(value)``: ``TypeError`` naming ``name`` for
    what is no array (ragged lists, objects)."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    try:
        out = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be an array, got {type(value).__name__} ({e})") from None
    if out.dtype == object or out.dtype.kind in "USV":  # objects, text, bytes
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}")
    return out


def floating_dtype(dtype, name: str = "dtype"):
    """``dtype`` as a numpy dtype, which must be floating."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise WrongType(f"{name} must be a floating dtype", repr(dtype)) from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise WrongType(f"{name} must be a floating dtype", str(dt))
    return dt


@functools.cache
def _raw_key_shape() -> tuple:
    """The shape of a raw ``uint32`` key (``jax.random.PRNGKey``) of the default PRNG."""
    return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


def prng_key(key, name: str = "key") -> None:
    """One PRNG key: ``jax.random.key(seed)``, or a raw ``jax.random.PRNGKey(seed)``."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(key) != ():
            raise ValueError(f"{name} must be one PRNG key, got an array of keys of shape "
                             f"{np.shape(key)}")
        return
    if dtype is not None and np.dtype(dtype) == np.uint32 and np.shape(key) == _raw_key_shape():
        return
    got = (f"an array of shape {np.shape(key)} and dtype {dtype}" if dtype is not None
           else repr(key))
    raise WrongType(f"{name} must be a PRNG key (jax.random.key(seed))", got)


def label_range(labels, n: int, units: str = "classes", name: str = "labels") -> None:
    """``ValueError`` unless every label lies in ``[0, n)``; read only where the values are
    concrete (under ``jit`` a label cannot be checked: the loss is then NaN instead). An
    argument not called ``labels`` (``y``) is named first."""
    if not is_concrete(labels) or not np.size(labels):
        return
    values = np.asarray(labels)  # concrete: read on the host, even while jit traces around it
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"{'' if name == 'labels' else name + ': '}"
                         f"label out of range: labels must lie in [0, {n}) for {n} {units}, "
                         f"got values in [{lo}, {hi}]")


@overload
def params_fit(params, arch, *, in_dim: int | None = None, stacked: Literal[True],
               name: str = "params") -> int: ...
@overload
def params_fit(params, arch, *, in_dim: int | None = None, stacked: bool = False,
               name: str = "params") -> int | None: ...
def params_fit(params, arch, *, in_dim: int | None = None, stacked: bool = False,
               name: str = "params") -> int | None:
    """Raises unless ``params`` are a network of ``arch`` (a parsed ``Arch``): a list of one
    ``{"w": (fan_in, units), "b": (units,)}`` dict per layer, floating, each ``fan_in`` the
    previous layer's units (the first: ``in_dim``, when given). With ``stacked``, every array
    has a leading model axis ``K`` (a sweep's stack), the same for all; returns ``K``.

    Only shapes and dtypes are read (tracers and ``jax.ShapeDtypeStruct`` do), never values.
    """
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"{name} must be a list of one {{'w', 'b'}} dict per layer "
                        f"({len(arch)} for this architecture), got {type(params).__name__}")
    if len(params) != len(arch):
        raise ValueError(f"{name} have {len(params)} layers but the architecture has "
                         f"{len(arch)}")
    k = None
    for i, (layer, (units, activation)) in enumerate(zip(params, arch)):
        if not isinstance(layer, Mapping) or set(layer) != {"w", "b"}:
            got = sorted(map(str, layer)) if isinstance(layer, Mapping) else type(layer).__name__
            raise WrongType(f"{name}[{i}] must be a dict with keys 'w' and 'b'", got)
        for key in ("w", "b"):
            value = layer[key]
            if not (hasattr(value, "shape") and hasattr(value, "dtype")):
                raise TypeError(f"{name}[{i}]['{key}'] must be an array, got "
                                f"{type(value).__name__}")
            if not jnp.issubdtype(value.dtype, jnp.floating):
                raise TypeError(f"{name}[{i}]['{key}'] must be floating point, got dtype "
                                f"{value.dtype}")
        w_shape, b_shape = tuple(np.shape(layer["w"])), tuple(np.shape(layer["b"]))
        if stacked:
            if (not w_shape or not b_shape or w_shape[0] != b_shape[0]
                    or (k is not None and w_shape[0] != k)):
                raise ValueError(f"{name} must be a stack of models, every array with the same "
                                 f"leading model axis (K, ...): layer {i} has w {w_shape} and "
                                 f"b {b_shape}")
            k = w_shape[0]
            if k < 1:
                raise ValueError(f"{name} hold no models: the leading model axis is 0")
            w_shape, b_shape = w_shape[1:], b_shape[1:]
        fan_in = in_dim if i == 0 else arch[i - 1].units
        model = "(K, " if stacked else "("
        if len(w_shape) != 2 or w_shape[1] != units or b_shape != (units,):
            expected_in = "in_dim" if fan_in is None else fan_in
            raise ValueError(f"{name} layer {i}: expected w {model}{expected_in}, {units}) and "
                             f"b {model}{units},) for {units}:{activation}, got w "
                             f"{(k,) * stacked + w_shape} and b {(k,) * stacked + b_shape}")
        if fan_in is not None and w_shape[0] != fan_in:
            what = f"layer {i - 1} has {fan_in} units" if i else f"in_dim is {fan_in}"
            raise ValueError(f"{name} layer {i}: w has {w_shape[0]} inputs but {what}")
    return k
