"""Loss and accuracy: one definition per batch, and the same over a whole set in bounded memory.

``metrics`` is what a training step and an evaluation both report for a batch. ``evaluate``
and ``evaluation_report`` run a whole image set (60,000 MNIST images, say) through the
network in chunks whose activations fit ``max_bytes``, so a very wide layer
(``100000:relu,10:linear``) costs time, not memory. Each chunk is one jitted call that adds
its sums to accumulators kept on the device; the host reads them once, at the end.
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._checks import label_range
from jaxmlp._arch import Arch, parse_arch
from jaxmlp._cross_entropy import cross_entropy
from jaxmlp._images import check_images, check_range, prepare_images
from jaxmlp._mlp import Params, forward
from jaxmlp._parallel import to_host
from jaxmlp._softmax import softmax

_DEFAULT_MAX_BYTES = 64 * 2**20


def batch_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Mean cross-entropy and accuracy of one batch.

    ``loss = (1/B) Σ_b J(z_b, y_b)`` with ``J`` the cross-entropy of ``softmax(z_b)``, and
    ``accuracy = (1/B) Σ_b [argmax z_b = y_b]``. Jittable.

    Args:
      logits: ``(B, n)``.
      labels: integer ``(B,)`` in ``[0, n)``.

    Returns:
      ``{"loss": (), "accuracy": ()}``, float scalars.

    Raises:
      TypeError: labels that are not integers (accuracy needs a class per example).
    """
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must be integer classes, got dtype {jnp.result_type(labels)}")
    return {"loss": jnp.mean(cross_entropy(logits, labels)),
            "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}


def _chunk_rows(arch: Arch, in_dim: int, num_examples: int, max_bytes: int) -> int:
    """Rows per chunk: ``clamp(max_bytes // (4 · widest), 1, num_examples)``.

    ``widest`` is the widest layer, the input included: a chunk of ``r`` rows holds at most
    about ``r · widest`` float32 activations at a time.
    """
    widest = max(in_dim, *(layer.units for layer in arch))
    return int(min(max(max_bytes // (4 * widest), 1), num_examples))


def chunks(arch: Arch, in_dim: int, num_examples: int, max_bytes: int) -> list[tuple[int, int]]:
    """``(start, rows)`` of the consecutive chunks that cover ``num_examples`` examples,
    ``_chunk_rows`` rows each (the last may hold fewer): every chunked pass over a set."""
    rows = _chunk_rows(arch, in_dim, num_examples, max_bytes)
    return [(start, min(rows, num_examples - start)) for start in range(0, num_examples, rows)]


def _chunk_logits(params: Params, images, labels, start, rows: int, arch: Arch):
    """Logits ``(rows, n)`` and labels ``(rows,)`` of the rows ``[start, start + rows)``."""
    x = jax.lax.dynamic_slice_in_dim(images, start, rows)
    y = jax.lax.dynamic_slice_in_dim(labels, start, rows)
    in_dim = params[0]["w"].shape[0]
    return forward(params, prepare_images(x, in_dim=in_dim), arch), y


# ``start`` is traced, so every full-size chunk reuses one executable; ``rows`` is static,
# so the last, shorter chunk compiles once more.
@partial(jax.jit, static_argnames=("rows", "arch"))
def _add_sums(acc, params, images, labels, start, rows, arch):
    """``acc`` plus this chunk's summed loss and count of correct predictions."""
    z, y = _chunk_logits(params, images, labels, start, rows, arch)
    return {"loss": acc["loss"] + jnp.sum(cross_entropy(z, y)),
            "correct": acc["correct"] + jnp.sum(jnp.argmax(z, axis=-1) == y)}


@partial(jax.jit, static_argnames=("rows", "arch"))
def _add_report(acc, params, images, labels, start, rows, arch):
    """``acc`` plus this chunk's summed loss and confusion counts, and its predictions.

    Each example's prediction is ``argmax z`` and its confidence ``max softmax(z)``,
    written at its own index of the ``(N,)`` accumulators.
    """
    z, y = _chunk_logits(params, images, labels, start, rows, arch)
    predicted = jnp.argmax(z, axis=-1).astype(jnp.int32)
    confidence = jnp.max(softmax(z), axis=-1)
    return {"loss": acc["loss"] + jnp.sum(cross_entropy(z, y)),
            "confusion": acc["confusion"].at[y, predicted].add(1),
            "predicted": jax.lax.dynamic_update_slice_in_dim(acc["predicted"], predicted,
                                                             start, 0),
            "confidence": jax.lax.dynamic_update_slice_in_dim(acc["confidence"], confidence,
                                                              start, 0)}


def _check_set(params: Params, images, labels, arch: Arch):
    """Validates the set and returns ``(images, labels)`` as device arrays.

    Shapes and dtypes are always checked; values only where they are host numpy arrays
    (free to read), so evaluating arrays already on the device costs no extra host sync.
    """
    in_dim = np.shape(params[0]["w"])[0]
    images = _checks.array(images, "images")
    labels = _checks.array(labels, "labels")
    num_examples = np.shape(images)[0] if np.ndim(images) else 0
    if isinstance(images, np.ndarray) and np.issubdtype(images.dtype, np.floating):
        images = prepare_images(images, in_dim=in_dim)  # checks the range; float32 once
    else:  # shape and dtype checks only; uint8 stays uint8 (4x smaller) until each chunk
        check_images(images, in_dim=in_dim)
    if np.shape(labels) != (num_examples,):
        raise ValueError(f"labels must have shape ({num_examples},) for {num_examples} images, "
                         f"got {np.shape(labels)}")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must be integer classes, got dtype {jnp.result_type(labels)}")
    n = arch[-1].units
    if isinstance(labels, np.ndarray):  # free to read; device arrays are not read
        label_range(labels, n, "output units")
    return jnp.asarray(images), jnp.asarray(labels, jnp.int32)


def _fold_chunks(add, acc, params: Params, images, labels, arch: Arch, max_bytes: int):
    """Runs ``acc = add(acc, ..., start, rows, arch)`` over consecutive chunks of the set."""
    for start, rows in chunks(arch, params[0]["w"].shape[0], images.shape[0], max_bytes):
        acc = add(acc, params, images, labels, start, rows, arch)
    return acc


def evaluate(params: Params, images, labels, arch, *,
             max_bytes: int = _DEFAULT_MAX_BYTES) -> dict[str, float]:
    """Mean loss and accuracy over a whole set, in chunks of bounded memory.

    Equals ``batch_metrics(forward(params, prepare_images(images), arch), labels)`` up to float32
    rounding of the summed loss (the accuracy is an exact count), without holding all
    ``N × width`` activations at once.

    Args:
      params: the network's parameters.
      images: uint8 ``(N, 784)`` (or anything ``prepare_images`` takes), numpy or on the
        device; moved to the device once.
      labels: integer ``(N,)``.
      arch: anything ``parse_arch`` accepts.
      max_bytes: bound on one chunk's widest float32 activations, ``rows · widest · 4``.

    Returns:
      ``{"loss": float, "accuracy": float}``.
    """
    arch = parse_arch(arch)
    _checks.params_fit(params, arch)
    _checks.positive_int(max_bytes, "max_bytes")
    images, labels = _check_set(params, images, labels, arch)
    acc = {"loss": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32)}
    acc = jax.device_get(_fold_chunks(_add_sums, acc, params, images, labels, arch, max_bytes))
    n = labels.shape[0]
    return {"loss": float(acc["loss"]) / n, "accuracy": int(acc["correct"]) / n}


# The same sums for a stack of K models (a leading model axis on every leaf): one call per
# chunk for all of them, the chunk's images shared, sharded along the models like training.
_add_sums_models = partial(jax.jit, static_argnames=("rows", "arch"))(
    jax.vmap(_add_sums.__wrapped__,  # type: ignore[attr-defined]
             in_axes=(0, 0, None, None, None, None, None)))


def _unstacked(params: Params) -> Params:
    """One model's shapes and dtypes, for the checks: no device work per call."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), params)


def evaluate_models(params: Params, images, labels, arch, *,
                    max_bytes: int = _DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """``evaluate`` of K models at once: ``params`` has a leading model axis ``(K, ...)``
    on every leaf (a sweep's stack). Each chunk is one jitted call for all K models, and
    ``max_bytes`` bounds all K models' activations together.

    Returns:
      ``{"loss": (K,), "accuracy": (K,)}`` numpy arrays.
    """
    arch = parse_arch(arch)
    k = _checks.params_fit(params, arch, stacked=True)
    _checks.positive_int(max_bytes, "max_bytes")
    images, labels = _check_set(_unstacked(params), images, labels, arch)
    acc = {"loss": jnp.zeros((k,), jnp.float32), "correct": jnp.zeros((k,), jnp.int32)}
    # The K models share each chunk's budget: its rows are a K-th of a single model's.
    for start, rows in chunks(arch, params[0]["w"].shape[1], images.shape[0],
                               max(max_bytes // k, 1)):
        acc = _add_sums_models(acc, params, images, labels, start, rows, arch)
    # The one host sync (a sweep's models on several processes: gathered from them).
    acc = jax.tree.map(to_host, acc)
    n = labels.shape[0]
    return {"loss": np.asarray(acc["loss"], np.float64) / n,
            "accuracy": np.asarray(acc["correct"]) / n}


@partial(jax.jit, static_argnames=("rows", "arch"))
def _chunk_probs(params, images, start, rows, arch):
    x = jax.lax.dynamic_slice_in_dim(images, start, rows)
    in_dim = params[0]["w"].shape[1]
    return jax.vmap(lambda p: softmax(forward(p, prepare_images(x, in_dim=in_dim), arch)))(params)


def model_probabilities(params: Params, images, arch, *,
                        max_bytes: int = _DEFAULT_MAX_BYTES) -> np.ndarray:
    """``softmax(forward(...))`` of K stacked models on every image: ``(K, N, classes)``,
    in chunks as ``evaluate_models`` (for a sweep's ensembles)."""
    arch = parse_arch(arch)
    k = _checks.params_fit(params, arch, stacked=True)
    _checks.positive_int(max_bytes, "max_bytes")
    images = _checks.array(images, "images")
    check_images(images, in_dim=params[0]["w"].shape[1])
    if isinstance(images, np.ndarray):  # free to read; device arrays are not read
        check_range(images)
    images = jnp.asarray(images)
    parts = [_chunk_probs(params, images, start, rows, arch) for start, rows in
             chunks(arch, params[0]["w"].shape[1], images.shape[0], max(max_bytes // k, 1))]
    return np.array(to_host(jnp.concatenate(parts, axis=1)))  # a writable copy


def _per_class_accuracy(confusion: np.ndarray) -> list:
    """``confusion[c, c] / Σ_j confusion[c, j]`` per true class ``c``; None for an absent class."""
    totals = confusion.sum(axis=1)
    return [float(confusion[c, c] / totals[c]) if totals[c] else None
            for c in range(len(confusion))]


def _confident_mistakes(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                        k: int) -> list[dict]:
    """The ``k`` wrong predictions of highest confidence, highest first (ties: lower index)."""
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    return [{"index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
             "confidence": float(confidence[i])} for i in order]


def evaluation_report(params: Params, images, labels, arch, *,
                      max_bytes: int = _DEFAULT_MAX_BYTES, mistakes: int = 36) -> dict:
    """Loss, accuracy, per-class accuracy, confusion matrix and the most confident mistakes.

    One chunked pass over the set (as in ``evaluate``). With ``n`` the arch's output units,
    ``ŷ_b = argmax z_b`` and confidence ``max_i softmax(z_b)_i`` (the probability the network
    gives its own prediction):

    - ``test_loss``: ``(1/N) Σ_b J(z_b, y_b)``; ``test_acc``: ``(1/N) Σ_b [ŷ_b = y_b]``.
    - ``confusion``: ``n × n`` counts, ``confusion[t][p]`` = examples of true class ``t``
      predicted as ``p`` (rows true, columns predicted).
    - ``per_class_acc``: ``confusion[c][c] / Σ_p confusion[c][p]`` for each class ``c``, or
      ``None`` where class ``c`` has no examples in ``labels`` (its accuracy is undefined;
      ``None`` is JSON ``null``, where NaN would not be valid JSON).
    - ``mistakes``: up to ``mistakes`` examples with ``ŷ_b ≠ y_b``, by confidence
      descending (ties by index), each ``{"index", "label", "predicted", "confidence"}``.

    Args:
      params, images, labels, arch, max_bytes: as for ``evaluate``.
      mistakes: how many mistakes to list (0 for none).

    Returns:
      A dict of plain Python ints, floats, lists and None (JSON-serialisable).
    """
    arch = parse_arch(arch)
    _checks.params_fit(params, arch)
    _checks.positive_int(max_bytes, "max_bytes")
    _checks.integer(mistakes, "mistakes")
    images, labels = _check_set(params, images, labels, arch)
    num_examples, n = labels.shape[0], arch[-1].units
    acc = {"loss": jnp.zeros((), jnp.float32), "confusion": jnp.zeros((n, n), jnp.int32),
           "predicted": jnp.zeros((num_examples,), jnp.int32),
           "confidence": jnp.zeros((num_examples,), jnp.float32)}
    acc = _fold_chunks(_add_report, acc, params, images, labels, arch, max_bytes)
    acc, labels = jax.device_get((acc, labels))  # the one host sync
    confusion = np.asarray(acc["confusion"])
    return {"test_loss": float(acc["loss"]) / num_examples,
            "test_acc": int(np.trace(confusion)) / num_examples,
            "per_class_acc": _per_class_accuracy(confusion),
            "confusion": confusion.tolist(),
            "mistakes": _confident_mistakes(np.asarray(labels), np.asarray(acc["predicted"]),
                                            np.asarray(acc["confidence"]), mistakes)}


def probability_report(probs, labels, *, mistakes: int = 0) -> dict:
    """``evaluation_report``'s figures from class probabilities ``(N, classes)`` (a
    committee's mean, or a model's over distortions), not logits: ``test_loss``
    ``−(1/N) Σ_b log p_b[y_b]`` (a probability below float32's smallest normal counts as
    that), ``test_acc``, ``per_class_acc`` and ``confusion`` (rows true, columns
    predicted); with ``mistakes`` > 0 also that many ``mistakes`` (confidence ``max_i p_b``)."""
    _checks.integer(mistakes, "mistakes")
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],) or not len(labels):
        raise ValueError(f"probs must be (N, classes) beside labels (N,), N >= 1, got "
                         f"{probs.shape} and {labels.shape}")
    n = probs.shape[1]
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    chosen = np.maximum(probs[np.arange(len(labels)), labels], np.finfo(np.float32).tiny)
    report = {"test_loss": float(-np.mean(np.log(chosen))),
              "test_acc": int(np.trace(confusion)) / len(labels),
              "per_class_acc": _per_class_accuracy(confusion), "confusion": confusion.tolist()}
    if mistakes:
        report["mistakes"] = _confident_mistakes(labels, predicted, probs.max(axis=1), mistakes)
    return report
