"""A trained MLP out of jaxmlp: ONNX (for onnxruntime and every tool that reads ONNX) or
StableHLO (``jax.export``: XLA's portable form, for JAX and IREE).

Both take what ``predict`` computes on: prepared images ``(N, in_dim)`` float32 in [0, 1]
(``prepare_images``: pixels / 255, flattened in (height, width, channels) order), N any
batch size, and give class probabilities ``(N, classes)``: ``softmax(forward(x))``, every
layer's own activation included (the weights are constants of the file).
"""
from pathlib import Path

import numpy as np

from jaxmlp._activations import LECUN_A, LECUN_S
from jaxmlp._checkpoint import write_atomic
from jaxmlp._run import Run, check_new_file, write_new_file

FORMATS = ("onnx", "stablehlo")
# ONNX's operator set and file version: what onnxruntime 1.20 and later read (opset 13 made
# Softmax act on one axis, as jaxmlp's does).
_OPSET, _IR_VERSION = 17, 9


def export(run, path, format: str = "onnx", *, overwrite: bool = False) -> Path:
    """Writes the model of ``run`` (``load_run``'s ``Run``) to the file ``path`` as
    ``format`` (``"onnx"`` or ``"stablehlo"``); returns the path.

    ``"onnx"`` needs the ``onnx`` package (``pip install onnx``); its checker passes the
    graph before anything is written. ``"stablehlo"`` is ``jax.export``'s serialized form:
    ``jax.export.deserialize(data).call(x)`` runs it. The file is written by a run folder's
    rules (``jaxmlp augment --out``'s): whole or not at all, never over an existing file
    unless ``overwrite``, a link replaced and never followed (``RunError`` says why not)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if not isinstance(run, Run):
        raise TypeError(f"run must be a jaxmlp.Run (load_run makes one), got "
                        f"{type(run).__name__}")
    path = check_new_file(path, overwrite=overwrite)  # before any work
    other = {".onnx": "onnx", ".stablehlo": "stablehlo"}.get(path.suffix.lower(), format)
    if other != format:  # a file named for one format holding the other: refused
        article = "an" if other == "onnx" else "a"
        raise ValueError(f"{path.name} names {article} {other} file, but the format is {format}: "
                         f"name it *.{format}, or pass `format` {other!r}")
    params = [{k: np.asarray(v, np.float32) for k, v in layer.items()} for layer in run.params]
    in_dim = run.info.in_dim
    data = (_onnx_bytes(params, run.arch, in_dim) if format == "onnx"
            else _stablehlo_bytes(params, run.arch, in_dim))
    write_new_file(path, lambda p: write_atomic(p, lambda f: f.write(data)), overwrite=overwrite)
    return path


def _onnx_bytes(params, arch, in_dim: int) -> bytes:
    """The network as an ONNX graph: per layer MatMul, Add and the activation's operators
    (LeCun's tanh as Mul, Tanh, Mul), then Softmax on the last axis."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ValueError("exporting to ONNX needs the onnx package (pip install onnx)") from None
    nodes, weights, x = [], [], "images"

    def constant(name, value):
        weights.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    for i, ((_, activation), layer) in enumerate(zip(arch, params)):
        z = f"z{i}"
        nodes.append(helper.make_node("MatMul", [x, constant(f"w{i}", layer["w"])], [f"xw{i}"]))
        nodes.append(helper.make_node("Add", [f"xw{i}", constant(f"b{i}", layer["b"])], [z]))
        ops = {"relu": ["Relu"], "sigmoid": ["Sigmoid"], "tanh": ["Tanh"], "linear": []}
        if activation == "lecun_tanh":  # A tanh(S z)
            nodes.append(helper.make_node("Mul", [z, constant("lecun_s", LECUN_S)], [f"s{i}"]))
            nodes.append(helper.make_node("Tanh", [f"s{i}"], [f"t{i}"]))
            nodes.append(helper.make_node("Mul", [f"t{i}", constant("lecun_a", LECUN_A)],
                                          [f"a{i}"]))
            x = f"a{i}"
        elif activation in ops:
            x = z
            for op in ops[activation]:
                nodes.append(helper.make_node(op, [x], [f"a{i}"]))
                x = f"a{i}"
        else:  # every activation of ACTIVATIONS has its operators above (tests check)
            raise ValueError(f"no ONNX operators for the activation {activation!r}")
    nodes.append(helper.make_node("Softmax", [x], ["probabilities"], axis=-1))
    unique = {w.name: w for w in weights}  # LeCun's constants once
    graph = helper.make_graph(
        nodes, "jaxmlp", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                        ["N", in_dim])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       ["N", arch[-1].units])],
        initializer=list(unique.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                              producer_name="jaxmlp", ir_version=_IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _stablehlo_bytes(params, arch, in_dim: int) -> bytes:
    """``jax.export`` of the forward pass and softmax, the batch size symbolic."""
    import jax
    import jax.numpy as jnp

    from jaxmlp._mlp import forward
    from jaxmlp._softmax import softmax

    weights = jax.tree.map(jnp.asarray, params)
    probabilities = jax.jit(lambda x: softmax(forward(weights, x, arch)))
    batch = jax.export.symbolic_shape("N")[0]
    exported = jax.export.export(probabilities)(
        jax.ShapeDtypeStruct((batch, in_dim), jnp.float32))
    return bytes(exported.serialize())
