"""The Python API keeps the command line's rules: every public function that takes values
refuses a bad one with a ``ValueError`` or ``TypeError`` that names the argument, before any
work (never a ``KeyError``, an ``IndexError``, an ``OverflowError`` or a silent acceptance),
and checks only shapes and dtypes of what ``jit`` traces."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmlp
from jaxmlp import _checks

ARCH = jaxmlp.parse_arch("3:relu,2:linear")
IN = 4
KEY = jax.random.key(0)
PARAMS = jaxmlp.init_params(KEY, ARCH, IN)
X = jnp.full((5, IN), 0.5)
Y = jnp.array([0, 1, 0, 1, 1])
U8 = np.zeros((5, IN), np.uint8)
STACK = jax.tree.map(lambda a: jnp.stack([a, a]), PARAMS)  # two models
TRANSPOSED = [{"w": p["w"].T, "b": p["b"]} for p in PARAMS]
INT_W = [{"w": p["w"].astype(jnp.int32), "b": p["b"]} for p in PARAMS]
OK = dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
          warmup_steps=0, schedule="cosine", clip_norm=None, max_norm=None, ema=None)
SGD = optax.sgd(0.1)


def _config(**changes):
    """A duck-typed config: make_optimizer reads its settings by TrainConfig's rules."""
    return types.SimpleNamespace(**{**OK, **changes})


# (call, exception, what the message must name)
CASES = {
    # mlp
    "init_params key None": (lambda: jaxmlp.init_params(None, ARCH, IN), TypeError, "key"),
    "init_params key int": (lambda: jaxmlp.init_params(0, ARCH, IN), TypeError, "key"),
    "init_params two keys": (lambda: jaxmlp.init_params(jax.random.split(KEY), ARCH, IN),
                             ValueError, "key"),
    "init_params in_dim 0": (lambda: jaxmlp.init_params(KEY, ARCH, 0), ValueError, "in_dim"),
    "init_params in_dim huge": (lambda: jaxmlp.init_params(KEY, ARCH, 10 ** 30), ValueError,
                                "in_dim"),
    "init_params in_dim float": (lambda: jaxmlp.init_params(KEY, ARCH, 4.0), TypeError, "in_dim"),
    "init_params in_dim bool": (lambda: jaxmlp.init_params(KEY, ARCH, True), TypeError, "in_dim"),
    "init_params in_dim str": (lambda: jaxmlp.init_params(KEY, ARCH, "4"), TypeError, "in_dim"),
    "init_params dtype str": (lambda: jaxmlp.init_params(KEY, ARCH, IN, dtype="x"), TypeError,
                              "dtype"),
    "init_params dtype int": (lambda: jaxmlp.init_params(KEY, ARCH, IN, dtype=jnp.int32),
                              TypeError, "dtype"),
    "forward params {}": (lambda: jaxmlp.forward({}, X, ARCH), TypeError, "params"),
    "forward params None": (lambda: jaxmlp.forward(None, X, ARCH), TypeError, "params"),
    "forward params []": (lambda: jaxmlp.forward([], X, ARCH), ValueError, "params"),
    "forward params [{}]": (lambda: jaxmlp.forward([{}, {}], X, ARCH), TypeError, "params[0]"),
    "forward params strings": (lambda: jaxmlp.forward([{"w": "a", "b": "b"}] * 2, X, ARCH),
                               TypeError, "params[0]['w']"),
    "forward params transposed": (lambda: jaxmlp.forward(TRANSPOSED, X, ARCH), ValueError,
                                  "params layer 0"),
    "forward params int": (lambda: jaxmlp.forward(INT_W, X, ARCH), TypeError, "params[0]['w']"),
    "forward params stacked": (lambda: jaxmlp.forward(STACK, X, ARCH), ValueError, "params"),
    "forward x None": (lambda: jaxmlp.forward(PARAMS, None, ARCH), TypeError, "x"),
    "forward x list": (lambda: jaxmlp.forward(PARAMS, [[0.5] * IN], ARCH), TypeError, "x"),
    "forward x 1-D": (lambda: jaxmlp.forward(PARAMS, X[0], ARCH), ValueError, "x"),
    "forward x width": (lambda: jaxmlp.forward(PARAMS, X[:, :3], ARCH), ValueError, "x"),
    "forward x empty": (lambda: jaxmlp.forward(PARAMS, X[:0], ARCH), ValueError, "x"),
    "forward x uint8": (lambda: jaxmlp.forward(PARAMS, U8, ARCH), TypeError, "x"),
    "forward_layers masks short": (lambda: jaxmlp.forward_layers(PARAMS, X, ARCH, masks=[None]),
                                   TypeError, "masks"),
    "forward_layers masks shape": (
        lambda: jaxmlp.forward_layers(PARAMS, X, ARCH, masks=[jnp.ones((5, 3)), None]),
        ValueError, "masks[0]"),
    "loss y None": (lambda: jaxmlp.loss(PARAMS, X, None, ARCH), TypeError, "y"),
    "loss y shape": (lambda: jaxmlp.loss(PARAMS, X, Y[:3], ARCH), ValueError, "y"),
    "loss y range": (lambda: jaxmlp.loss(PARAMS, X, Y + 1, ARCH), ValueError, "y"),
    "loss y bool": (lambda: jaxmlp.loss(PARAMS, X, Y > 0, ARCH), TypeError, "y"),
    "loss y rows": (lambda: jaxmlp.loss(PARAMS, X, jnp.ones((5, 3)), ARCH), ValueError, "y"),
    "loss dropout (-0.5, 2)": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(-0.5, 2), key=KEY),
                               ValueError, "dropout"),
    "loss dropout (1, 1)": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(1, 1), key=KEY),
                            ValueError, "dropout"),
    "loss dropout str": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout="ab", key=KEY),
                         TypeError, "dropout"),
    "loss dropout one": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(0.5,), key=KEY),
                         TypeError, "dropout"),
    "loss dropout nan": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(np.nan, 0), key=KEY),
                         ValueError, "dropout"),
    "loss dropout bool": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(True, 0), key=KEY),
                          TypeError, "dropout"),
    "loss dropout without key": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(0.5, 0.5)),
                                 ValueError, "key"),
    "loss key int": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(0.5, 0.5), key=3),
                     TypeError, "key"),
    "loss params {}": (lambda: jaxmlp.loss({}, X, Y, ARCH), TypeError, "params"),
    "dropout_masks (1, 1)": (lambda: jaxmlp.dropout_masks(KEY, X, ARCH, (1, 1)), ValueError,
                             "dropout"),
    "dropout_masks three": (lambda: jaxmlp.dropout_masks(KEY, X, ARCH, (0.1, 0.1, 0.1)),
                            TypeError, "dropout"),
    "dropout_masks None": (lambda: jaxmlp.dropout_masks(KEY, X, ARCH, None), TypeError,
                           "dropout"),
    "dropout_masks key": (lambda: jaxmlp.dropout_masks(None, X, ARCH, (0.5, 0.5)), TypeError,
                          "key"),
    "dropout_masks x": (lambda: jaxmlp.dropout_masks(KEY, None, ARCH, (0.5, 0.5)), ValueError,
                        "x"),
    "loss adversarial": (lambda: jaxmlp.loss(PARAMS, X, Y, ARCH, adversarial=2), ValueError,
                         "adversarial"),
    "fast_gradient_sign epsilon": (lambda: jaxmlp.fast_gradient_sign(X, X, -1), ValueError,
                                   "epsilon"),
    "fast_gradient_sign epsilon 1e-50": (lambda: jaxmlp.fast_gradient_sign(X, X, 1e-50),
                                         ValueError, "epsilon must be 0 or a step float32"),
    "fast_gradient_sign x range": (lambda: jaxmlp.fast_gradient_sign(X * 255, X, 0.1),
                                   ValueError, "scaled to [0, 1]"),
    "fast_gradient_sign dx uint8": (lambda: jaxmlp.fast_gradient_sign(X, U8, 0.1), TypeError,
                                    "dx"),
    "fast_gradient_sign dx": (lambda: jaxmlp.fast_gradient_sign(X, X[:1], 0.1), ValueError,
                              "dx"),
    "fast_gradient_sign x": (lambda: jaxmlp.fast_gradient_sign(U8, U8, 0.1), TypeError, "x"),
    # backprop
    "matmul compute_dtype float16": (lambda: jaxmlp.matmul(X, PARAMS[0]["w"], "float16"),
                                     ValueError, "compute_dtype"),
    "matmul shapes": (lambda: jaxmlp.matmul(X, TRANSPOSED[0]["w"]), ValueError, "w (n, m)"),
    "matmul_backward delta": (lambda: jaxmlp.matmul_backward(X, PARAMS[0]["w"], X, "bfloat16"),
                              ValueError, "delta (B, m)"),
    "hand_grad params transposed": (lambda: jaxmlp.hand_grad(TRANSPOSED, X, Y, ARCH), ValueError,
                                    "params"),
    "hand_grad y range": (lambda: jaxmlp.hand_grad(PARAMS, X, Y - 1, ARCH), ValueError, "y"),
    "hand_grad dropout": (lambda: jaxmlp.hand_grad(PARAMS, X, Y, ARCH, dropout=(2, 0), key=KEY),
                          ValueError, "dropout"),
    "hand_loss params {}": (lambda: jaxmlp.hand_loss({}, X, Y, ARCH), TypeError, "params"),
    "hand_loss dropout": (lambda: jaxmlp.hand_loss(PARAMS, X, Y, ARCH, dropout=(0, 1), key=KEY),
                          ValueError, "dropout"),
    "hand_value_and_grad x": (lambda: jaxmlp.hand_value_and_grad(PARAMS, U8, Y, ARCH), TypeError,
                              "x"),
    "hand_value_and_grad y": (lambda: jaxmlp.hand_value_and_grad(PARAMS, X, "y", ARCH),
                              TypeError, "y"),
    # softmax, cross-entropy
    "softmax None": (lambda: jaxmlp.softmax(None), TypeError, "z"),
    "softmax list": (lambda: jaxmlp.softmax([1.0, 2.0]), TypeError, "z"),
    "softmax int": (lambda: jaxmlp.softmax(jnp.array([1, 2])), TypeError, "z"),
    "softmax scalar": (lambda: jaxmlp.softmax(jnp.float32(1)), ValueError, "z"),
    "softmax no classes": (lambda: jaxmlp.softmax(jnp.zeros((2, 0))), ValueError, "z"),
    "log_softmax str": (lambda: jaxmlp.log_softmax(np.array(["a"])), TypeError, "z"),
    "softmax_jacobian bool": (lambda: jaxmlp.softmax_jacobian(jnp.ones(3, bool)), TypeError, "z"),
    "cross_entropy z int": (lambda: jaxmlp.cross_entropy(jnp.ones((5, 2), int), Y), TypeError,
                            "z"),
    "cross_entropy y None": (lambda: jaxmlp.cross_entropy(X[:, :2], None), TypeError, "y"),
    "cross_entropy y range": (lambda: jaxmlp.cross_entropy(X[:, :2], Y * 2), ValueError, "y"),
    "cross_entropy_grad y shape": (lambda: jaxmlp.cross_entropy_grad(X[:, :2], Y[:2]), ValueError,
                                   "y"),
    "cross_entropy_grad z scalar": (lambda: jaxmlp.cross_entropy_grad(jnp.float32(0), Y),
                                    ValueError, "z"),
    "smooth_labels epsilon 1.5": (lambda: jaxmlp.smooth_labels(Y, 10, 1.5), ValueError, "epsilon"),
    "smooth_labels epsilon 1": (lambda: jaxmlp.smooth_labels(Y, 10, 1), ValueError, "epsilon"),
    "smooth_labels epsilon -0.1": (lambda: jaxmlp.smooth_labels(Y, 10, -0.1), ValueError,
                                   "epsilon"),
    "smooth_labels epsilon nan": (lambda: jaxmlp.smooth_labels(Y, 10, np.nan), ValueError,
                                  "epsilon"),
    "smooth_labels epsilon str": (lambda: jaxmlp.smooth_labels(Y, 10, "x"), TypeError, "epsilon"),
    "smooth_labels n 0": (lambda: jaxmlp.smooth_labels(Y, 0, 0.1), ValueError, "n"),
    "smooth_labels n float": (lambda: jaxmlp.smooth_labels(Y, 10.0, 0.1), TypeError, "n"),
    "smooth_labels n huge": (lambda: jaxmlp.smooth_labels(Y, 10 ** 30, 0.1), ValueError, "n"),
    "smooth_labels labels range": (lambda: jaxmlp.smooth_labels(jnp.array([0, 10]), 10, 0.1),
                                   ValueError, "labels"),
    "smooth_labels labels negative": (lambda: jaxmlp.smooth_labels(np.array([-1]), 10, 0.1),
                                      ValueError, "labels"),
    "smooth_labels labels float": (lambda: jaxmlp.smooth_labels(X[:, 0], 10, 0.1), TypeError,
                                   "labels"),
    "smooth_labels labels None": (lambda: jaxmlp.smooth_labels(None, 10, 0.1), TypeError,
                                  "labels"),
    # gradcheck, toy
    "gradcheck seed huge": (lambda: jaxmlp.gradcheck("a", seed=99999999999999999999999),
                            ValueError, "seed"),
    "gradcheck seed -1": (lambda: jaxmlp.gradcheck("a", seed=-1), ValueError, "seed"),
    "gradcheck seed float": (lambda: jaxmlp.gradcheck("a", seed=1.5), TypeError, "seed"),
    "gradcheck seed str": (lambda: jaxmlp.gradcheck("a", seed="a"), TypeError, "seed"),
    "gradcheck batch_size huge": (lambda: jaxmlp.gradcheck("a", batch_size=10 ** 30), ValueError,
                                  "batch_size"),
    "gradcheck batch_size 0": (lambda: jaxmlp.gradcheck("a", batch_size=0), ValueError,
                               "batch_size"),
    "gradcheck in_dim str": (lambda: jaxmlp.gradcheck("a", in_dim="x"), TypeError, "in_dim"),
    "gradcheck in_dim huge": (lambda: jaxmlp.gradcheck("a", in_dim=10 ** 30), ValueError,
                              "in_dim"),
    "gradcheck rtol nan": (lambda: jaxmlp.gradcheck("a", rtol=np.nan), ValueError, "rtol"),
    "gradcheck rtol negative": (lambda: jaxmlp.gradcheck("a", rtol=-1.0), ValueError, "rtol"),
    "gradcheck rtol str": (lambda: jaxmlp.gradcheck("a", rtol="x"), TypeError, "rtol"),
    "gradcheck hand": (lambda: jaxmlp.gradcheck("a", hand=3), TypeError, "hand"),
    "toy_trace w 1-D": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(2), np.zeros(2), np.zeros(2)),
                        ValueError, "w"),
    "toy_trace b": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(2), np.zeros((2, 2)),
                                             np.zeros(3)), ValueError, "b"),
    "toy_trace w int": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(2), np.zeros((2, 2), int),
                                                 np.zeros(2)), TypeError, "w"),
    "toy_trace x width": (lambda: jaxmlp.toy_trace(np.eye(3), np.eye(3)[:, :2], np.zeros((2, 2)),
                                                   np.zeros(2)), ValueError, "x"),
    "toy_trace x None": (lambda: jaxmlp.toy_trace(None, np.eye(2), np.zeros((2, 2)), np.zeros(2)),
                         TypeError, "x"),
    "toy_trace y": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(3), np.zeros((2, 2)), np.zeros(2)),
                    ValueError, "y"),
    "toy_trace lr 0": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(2), np.zeros((2, 2)),
                                                np.zeros(2), lr=0), ValueError, "lr"),
    "toy_trace lr str": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(2), np.zeros((2, 2)),
                                                  np.zeros(2), lr="2"), TypeError, "lr"),
    "toy_trace iterations 0": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(2), np.zeros((2, 2)),
                                                        np.zeros(2), iterations=0),
                               ValueError, "iterations"),
    "toy_trace iterations float": (lambda: jaxmlp.toy_trace(np.eye(2), np.eye(2),
                                                            np.zeros((2, 2)), np.zeros(2),
                                                            iterations=1.5),
                                   TypeError, "iterations"),
    # optim
    "ema 1.5": (lambda: jaxmlp.ema(1.5), ValueError, "decay"),
    "ema str": (lambda: jaxmlp.ema("x"), TypeError, "decay"),
    "ema 0": (lambda: jaxmlp.ema(0), ValueError, "decay"),
    "ema 1": (lambda: jaxmlp.ema(1.0), ValueError, "decay"),
    "ema 1 as float32": (lambda: jaxmlp.ema(0.99999999999), ValueError, "decay"),
    "ema nan": (lambda: jaxmlp.ema(np.nan), ValueError, "decay"),
    "ema None": (lambda: jaxmlp.ema(None), TypeError, "decay"),
    "ema array": (lambda: jaxmlp.ema(np.array([0.9, 0.9])), TypeError, "decay"),
    "max_norm -1": (lambda: jaxmlp.max_norm(-1), ValueError, "c"),
    "max_norm 0": (lambda: jaxmlp.max_norm(0.0), ValueError, "c"),
    "max_norm inf": (lambda: jaxmlp.max_norm(np.inf), ValueError, "c"),
    "max_norm 0 as float32": (lambda: jaxmlp.max_norm(1e-50), ValueError, "c"),
    "max_norm str": (lambda: jaxmlp.max_norm("1"), TypeError, "c"),
    "max_norm bool": (lambda: jaxmlp.max_norm(True), TypeError, "c"),
    "schedule peak 0": (lambda: jaxmlp.schedule(0.0, 10), ValueError, "peak"),
    "schedule peak str": (lambda: jaxmlp.schedule("0.1", 10), TypeError, "peak"),
    "schedule peak nan": (lambda: jaxmlp.schedule(np.nan, 10), ValueError, "peak"),
    "schedule num_steps 0": (lambda: jaxmlp.schedule(0.1, 0), ValueError, "num_steps"),
    "schedule num_steps huge": (lambda: jaxmlp.schedule(0.1, 10 ** 30), ValueError, "num_steps"),
    "schedule num_steps None": (lambda: jaxmlp.schedule(0.1, None), TypeError, "num_steps"),
    "schedule warmup_steps -1": (lambda: jaxmlp.schedule(0.1, 10, -1), ValueError,
                                 "warmup_steps"),
    "schedule warmup_steps float": (lambda: jaxmlp.schedule(0.1, 10, 1.5), TypeError,
                                    "warmup_steps"),
    "schedule kind": (lambda: jaxmlp.schedule(0.1, 10, kind="linear"), ValueError, "kind"),
    "make_optimizer config None": (lambda: jaxmlp.make_optimizer(None, 10), TypeError, "config"),
    "make_optimizer config.lr": (lambda: jaxmlp.make_optimizer(_config(lr=-1.0), 10), ValueError,
                                 "config.lr"),
    "make_optimizer config.optimizer": (lambda: jaxmlp.make_optimizer(_config(optimizer="x"), 10),
                                        ValueError, "config.optimizer"),
    "make_optimizer config.max_norm": (lambda: jaxmlp.make_optimizer(_config(max_norm=-1), 10),
                                       ValueError, "config.max_norm"),
    "make_optimizer config.ema": (lambda: jaxmlp.make_optimizer(_config(ema=1.5), 10), ValueError,
                                  "config.ema"),
    "make_optimizer config.momentum": (lambda: jaxmlp.make_optimizer(_config(momentum=1), 10),
                                       ValueError, "config.momentum"),
    "make_optimizer config.nesterov": (lambda: jaxmlp.make_optimizer(_config(nesterov=1), 10),
                                       TypeError, "config.nesterov"),
    "make_optimizer config.weight_decay": (
        lambda: jaxmlp.make_optimizer(_config(weight_decay=np.inf), 10), ValueError,
        "config.weight_decay"),
    "make_optimizer config.schedule": (lambda: jaxmlp.make_optimizer(_config(schedule="x"), 10),
                                       ValueError, "config.schedule"),
    "make_optimizer config.warmup_steps": (
        lambda: jaxmlp.make_optimizer(_config(warmup_steps=-1), 10), ValueError,
        "config.warmup_steps"),
    "make_optimizer config.clip_norm": (lambda: jaxmlp.make_optimizer(_config(clip_norm="x"), 10),
                                        TypeError, "config.clip_norm"),
    "make_optimizer num_steps": (lambda: jaxmlp.make_optimizer(_config(), 0), ValueError,
                                 "num_steps"),
    "make_optimizer lr": (lambda: jaxmlp.make_optimizer(_config(), 10, lr=-1), ValueError, "lr"),
    "make_optimizer momentum": (lambda: jaxmlp.make_optimizer(_config(), 10, momentum=1.5),
                                ValueError, "momentum"),
    # epoch
    "make_step grad": (lambda: jaxmlp.make_step(ARCH, SGD, "bogus"), ValueError, "grad"),
    "make_step label_smoothing 2": (lambda: jaxmlp.make_step(ARCH, SGD, "hand", label_smoothing=2),
                                    ValueError, "label_smoothing"),
    "make_step label_smoothing str": (
        lambda: jaxmlp.make_step(ARCH, SGD, "hand", label_smoothing="x"), TypeError,
        "label_smoothing"),
    "make_step adversarial": (lambda: jaxmlp.make_step(ARCH, SGD, "hand", adversarial=-0.1),
                              ValueError, "adversarial"),
    "make_step adversarial str": (lambda: jaxmlp.make_step(ARCH, SGD, "hand", adversarial="0.1"),
                                  TypeError, "adversarial"),
    "make_step optimizer": (lambda: jaxmlp.make_step(ARCH, None, "hand"), TypeError, "optimizer"),
    "make_step dropout": (lambda: jaxmlp.make_step(ARCH, SGD, "hand", dropout=(1, 1)), ValueError,
                          "dropout"),
    "make_step dropout number": (lambda: jaxmlp.make_step(ARCH, SGD, "hand", dropout=0.5),
                                 TypeError, "dropout"),
    "make_step augment": (lambda: jaxmlp.make_step(ARCH, SGD, "hand", augment="alpha=1"),
                          TypeError, "augment"),
    "make_step image_shape": (lambda: jaxmlp.make_step(ARCH, SGD, "hand", image_shape=(2, 2)),
                              ValueError, "image_shape"),
    "make_step augment without image_shape": (
        lambda: jaxmlp.make_step(ARCH, SGD, "hand", augment=jaxmlp.parse_augment("rotation=5")),
        ValueError, "image_shape"),
    "make_epoch step": (lambda: jaxmlp.make_epoch(None, 4), TypeError, "step"),
    "make_epoch batch_size 0": (lambda: jaxmlp.make_epoch(lambda *a: a, 0), ValueError,
                                "batch_size"),
    "make_epoch batch_size float": (lambda: jaxmlp.make_epoch(lambda *a: a, 4.0), TypeError,
                                    "batch_size"),
    "make_epoch batch_size huge": (lambda: jaxmlp.make_epoch(lambda *a: a, 10 ** 30), ValueError,
                                   "batch_size"),
    "make_epoch mesh": (lambda: jaxmlp.make_epoch(lambda *a: a, 4, mesh="x"), TypeError, "mesh"),
    "shuffle key": (lambda: jaxmlp.shuffle(None, 5), TypeError, "key"),
    "shuffle n -1": (lambda: jaxmlp.shuffle(KEY, -1), ValueError, "n"),
    "shuffle n huge": (lambda: jaxmlp.shuffle(KEY, 10 ** 30), ValueError, "n"),
    "shuffle n float": (lambda: jaxmlp.shuffle(KEY, 5.0), TypeError, "n"),
    # parallel
    "make_mesh str": (lambda: jaxmlp.make_mesh("x"), TypeError, "num_devices"),
    "make_mesh bool": (lambda: jaxmlp.make_mesh(True), TypeError, "num_devices"),
    "make_mesh 0": (lambda: jaxmlp.make_mesh(0), ValueError, "num_devices"),
    "make_mesh huge": (lambda: jaxmlp.make_mesh(10 ** 30), ValueError, "num_devices"),
    "initialize_distributed coordinator": (lambda: jaxmlp.initialize_distributed(None, 2, 1),
                                           ValueError, "coordinator"),
    "initialize_distributed num_processes": (
        lambda: jaxmlp.initialize_distributed("127.0.0.1:1234", "2", 1), TypeError,
        "num_processes"),
    "initialize_distributed num_processes 0": (
        lambda: jaxmlp.initialize_distributed("127.0.0.1:1234", 0, 0), ValueError,
        "num_processes"),
    "initialize_distributed process_id": (
        lambda: jaxmlp.initialize_distributed("127.0.0.1:1234", 2, 1.0), TypeError, "process_id"),
    "initialize_distributed process_id range": (
        lambda: jaxmlp.initialize_distributed("127.0.0.1:1234", 2, 2), ValueError, "process id"),
    "initialize_distributed timeout_s bool": (
        lambda: jaxmlp.initialize_distributed("127.0.0.1:1234", 2, 1, timeout_s=True), ValueError,
        "timeout_s"),
    "initialize_distributed timeout_s huge": (
        lambda: jaxmlp.initialize_distributed("127.0.0.1:1234", 2, 1, timeout_s=1e308),
        ValueError, "timeout_s"),
    "initialize_distributed config_hash": (
        lambda: jaxmlp.initialize_distributed("127.0.0.1:1234", 2, 1, config_hash=5), TypeError,
        "config_hash"),
    # images, metrics, predict
    "prepare_images in_dim 0": (lambda: jaxmlp.prepare_images(U8, in_dim=0), ValueError,
                                "in_dim"),
    "prepare_images in_dim str": (lambda: jaxmlp.prepare_images(U8, in_dim="4"), TypeError,
                                  "in_dim"),
    "prepare_images in_dim huge": (lambda: jaxmlp.prepare_images(U8, in_dim=10 ** 30),
                                   ValueError, "in_dim"),
    "prepare_images image_shape": (lambda: jaxmlp.prepare_images(U8, image_shape=(2, 2)),
                                   ValueError, "image_shape"),
    "prepare_images None": (lambda: jaxmlp.prepare_images(None, in_dim=IN), TypeError, "images"),
    "prepare_images ragged": (lambda: jaxmlp.prepare_images([[1, 2], [3]], in_dim=2), TypeError,
                              "images"),
    "prepare_images str": (lambda: jaxmlp.prepare_images([["a"] * IN], in_dim=IN), TypeError,
                           "images"),
    "prepare_images range": (lambda: jaxmlp.prepare_images(np.full((1, IN), np.nan), in_dim=IN),
                             ValueError, "images"),
    "evaluate params {}": (lambda: jaxmlp.evaluate({}, U8, np.zeros(5, int), ARCH), TypeError,
                           "params"),
    "evaluate params transposed": (lambda: jaxmlp.evaluate(TRANSPOSED, U8, np.zeros(5, int), ARCH),
                                   ValueError, "params"),
    "evaluate labels None": (lambda: jaxmlp.evaluate(PARAMS, U8, None, ARCH), TypeError, "labels"),
    "evaluate labels range": (lambda: jaxmlp.evaluate(PARAMS, U8, np.full(5, 2), ARCH),
                              ValueError, "labels"),
    "evaluate images None": (lambda: jaxmlp.evaluate(PARAMS, None, np.zeros(5, int), ARCH),
                             TypeError, "images"),
    "evaluate max_bytes 0": (lambda: jaxmlp.evaluate(PARAMS, U8, np.zeros(5, int), ARCH,
                                                     max_bytes=0), ValueError, "max_bytes"),
    "evaluate max_bytes str": (lambda: jaxmlp.evaluate(PARAMS, U8, np.zeros(5, int), ARCH,
                                                       max_bytes="1"), TypeError, "max_bytes"),
    "evaluate_models not stacked": (
        lambda: jaxmlp.evaluate_models(PARAMS, U8, np.zeros(5, int), ARCH), ValueError, "params"),
    "evaluate_models no models": (
        lambda: jaxmlp.evaluate_models(jax.tree.map(lambda a: a[:0], STACK), U8,
                                       np.zeros(5, int), ARCH), ValueError, "params"),
    "evaluate_models max_bytes": (
        lambda: jaxmlp.evaluate_models(STACK, U8, np.zeros(5, int), ARCH, max_bytes=-1),
        ValueError, "max_bytes"),
    "model_probabilities params {}": (lambda: jaxmlp.model_probabilities({}, U8, ARCH), TypeError,
                                      "params"),
    "model_probabilities range": (
        lambda: jaxmlp.model_probabilities(STACK, np.full((5, IN), 255.0), ARCH), ValueError,
        "images"),
    "evaluation_report mistakes -1": (
        lambda: jaxmlp.evaluation_report(PARAMS, U8, np.zeros(5, int), ARCH, mistakes=-1),
        ValueError, "mistakes"),
    "evaluation_report mistakes float": (
        lambda: jaxmlp.evaluation_report(PARAMS, U8, np.zeros(5, int), ARCH, mistakes=1.5),
        TypeError, "mistakes"),
    "evaluation_report params None": (
        lambda: jaxmlp.evaluation_report(None, U8, np.zeros(5, int), ARCH), TypeError, "params"),
    "predict_ensemble params not stacked": (lambda: jaxmlp.predict_ensemble(PARAMS, U8, ARCH),
                                            ValueError, "params"),
    "predict params {}": (lambda: jaxmlp.predict({}, U8, ARCH), TypeError, "params"),
    "predict params None": (lambda: jaxmlp.predict(None, U8, ARCH), TypeError, "params"),
    "predict params [{}]": (lambda: jaxmlp.predict([{}], U8, "2:linear"), TypeError, "params[0]"),
    "predict params transposed": (lambda: jaxmlp.predict(TRANSPOSED, U8, ARCH), ValueError,
                                  "params layer 0"),
    "predict chunk_size str": (lambda: jaxmlp.predict(PARAMS, U8, ARCH, chunk_size="9"),
                               TypeError, "chunk_size"),
    "predict image_shape": (lambda: jaxmlp.predict(PARAMS, U8, ARCH, image_shape="x"),
                            ValueError, "image_shape"),
    "predict images None": (lambda: jaxmlp.predict(PARAMS, None, ARCH), TypeError, "images"),
    "top_k probs None": (lambda: jaxmlp.top_k(None), TypeError, "probs"),
    "top_k probs str": (lambda: jaxmlp.top_k(np.array([["a", "b"]])), TypeError, "probs"),
    "top_k probs no classes": (lambda: jaxmlp.top_k(np.zeros((2, 0))), ValueError, "probs"),
    "top_k k float": (lambda: jaxmlp.top_k(np.eye(2), 1.5), TypeError, "k"),
    "top_k k bool": (lambda: jaxmlp.top_k(np.eye(2), True), TypeError, "k"),
    "load_inputs paths None": (lambda: jaxmlp.load_inputs(None), TypeError, "paths"),
    "load_inputs paths int": (lambda: jaxmlp.load_inputs(5), TypeError, "paths"),
    "load_inputs paths [int]": (lambda: jaxmlp.load_inputs([5]), TypeError, "paths"),
    "load_inputs paths bytes": (lambda: jaxmlp.load_inputs(b"x.png"), TypeError, "paths"),
    "load_inputs paths empty": (lambda: jaxmlp.load_inputs([]), ValueError, "paths"),
    "load_inputs paths ''": (lambda: jaxmlp.load_inputs(""), ValueError, "paths"),
    "load_inputs invert": (lambda: jaxmlp.load_inputs("x.png", invert="yes"), TypeError,
                           "invert"),
    "load_inputs digits": (lambda: jaxmlp.load_inputs("x.png", digits=1), TypeError, "digits"),
    "load_inputs image_shape": (lambda: jaxmlp.load_inputs("x.png", image_shape=(28, 28)),
                                ValueError, "image_shape"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_arguments_are_named(case):
    call, error, name = CASES[case]
    with pytest.raises(Exception) as caught:
        call()
    assert type(caught.value) is not AssertionError
    assert isinstance(caught.value, error), f"{type(caught.value).__name__}: {caught.value}"
    assert isinstance(caught.value, (ValueError, TypeError))
    assert name in str(caught.value), str(caught.value)


def test_every_public_function_of_these_modules_is_in_the_table():
    # A new public function of these modules gets its rows here.
    mine = {"_activations", "_mlp", "_optim", "_cross_entropy", "_softmax", "_backprop",
            "_epoch", "_predict", "_metrics", "_images", "_gradcheck", "_toy", "_parallel"}
    assert mine <= set(jaxmlp._API.values())  # each a module of the API
    takes_values = {n for n, module in jaxmlp._API.items()
                    if module in mine and callable(getattr(jaxmlp, n)) and n[0].islower()}
    covered = {case.split()[0] for case in CASES}
    assert takes_values - covered == set()


def test_issue_cases():
    # The cases the issue (#24, item 9) found accepted or crashing, one by one.
    images = np.zeros((2, 784), np.uint8)
    with pytest.raises(TypeError, match="params must be a list of one"):
        jaxmlp.predict({}, images, "a")
    w = jnp.zeros((10, 784))  # transposed: (units, in_dim)
    with pytest.raises(ValueError, match=r"params layer 0: expected w \(in_dim, 10\)") as caught:
        jaxmlp.predict([{"w": w, "b": jnp.zeros(10)}], images, "10:linear")
    assert "images" not in str(caught.value)
    with pytest.raises(ValueError, match=r"decay must be a number in \(0, 1\), got 1.5"):
        jaxmlp.ema(1.5)
    with pytest.raises(TypeError, match="decay must be a number, got 'x'"):
        jaxmlp.ema("x")
    with pytest.raises(ValueError, match="c must be a positive number, got -1"):
        jaxmlp.max_norm(-1)
    y = jnp.array([1, 2])
    with pytest.raises(ValueError, match=r"epsilon must be a number in \[0, 1\), got 1.5"):
        jaxmlp.smooth_labels(y, 10, 1.5)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        jaxmlp.smooth_labels(jnp.array([3, 10]), 10, 0.1)
    with pytest.raises(ValueError, match=r"dropout\[0\] \(the input rate\) must be a number in "
                                         r"\[0, 1\), got 1"):
        jaxmlp.dropout_masks(KEY, X, ARCH, (1, 1))
    with pytest.raises(ValueError, match=r"dropout\[0\] .* got -0.5"):
        jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(-0.5, 2), key=KEY)
    with pytest.raises(ValueError, match=r"grad must be one of \('hand', 'autodiff'\), got "
                                         "'bogus'"):
        jaxmlp.make_step(ARCH, SGD, "bogus", label_smoothing=2)
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\), got 2"):
        jaxmlp.make_step(ARCH, SGD, "hand", label_smoothing=2)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\)"):
        jaxmlp.gradcheck("a", seed=99999999999999999999999)


def test_good_values_at_the_edges_still_work():
    assert jaxmlp.ema(np.float32(0.999)) and jaxmlp.ema(jnp.asarray(0.5))
    assert jaxmlp.max_norm(3) and jaxmlp.max_norm(np.float64(1e30))
    np.testing.assert_allclose(jaxmlp.smooth_labels(np.array([1]), 2, 0.0), [[0.0, 1.0]])
    np.testing.assert_allclose(jaxmlp.smooth_labels(np.array([], int), 2, 0.5), np.zeros((0, 2)))
    assert jaxmlp.dropout_masks(KEY, X, ARCH, (0, 0.0)) == [None, None]
    assert jaxmlp.dropout_masks(KEY, X, ARCH, np.array([0.5, 0.0]))[1] is None
    np.testing.assert_array_equal(jaxmlp.loss(PARAMS, X, Y, ARCH, dropout=(0, 0)),
                                  jaxmlp.loss(PARAMS, X, Y, ARCH))
    # A warm-up longer than the run: the rate never leaves it (the trainer builds its
    # optimizer's structure with num_steps=1).
    assert float(jaxmlp.schedule(0.2, 1, 4, "constant")(2)) == pytest.approx(0.1)
    assert len(jaxmlp.shuffle(KEY, 0)) == 0
    assert jaxmlp.shuffle(jax.random.PRNGKey(0), np.int64(3)).shape == (3,)  # a raw key
    assert jaxmlp.gradcheck("2:linear", in_dim=3, seed=2 ** 32 - 1)["passed"]
    assert jaxmlp.make_mesh(np.int64(1)).size == 1
    # Duck-typed configs are fine; a TrainConfig, of course.
    jaxmlp.make_optimizer(_config(optimizer="adamw", ema=0.99, max_norm=2, clip_norm=1.0), 10)
    jaxmlp.make_optimizer(jaxmlp.TrainConfig(ema=0.999, max_norm=3.0, warmup_steps=5), 1)


def test_traced_values_are_checked_by_shape_and_dtype_only():
    # A sweep's per-model lr and momentum under vmap; labels and keys under jit.
    lrs = jnp.array([0.1, 0.2])
    params = jax.tree.map(lambda a: jnp.stack([a, a]), PARAMS)
    states = jax.vmap(lambda p, lr: jaxmlp.make_optimizer(_config(), 10, lr=lr,
                                                           momentum=lr).init(p))(params, lrs)
    assert jax.tree.leaves(states)
    rates = jax.vmap(lambda peak: jaxmlp.schedule(peak, 10, 2)(5))(lrs)
    np.testing.assert_allclose(rates, jnp.stack([jaxmlp.schedule(0.1, 10, 2)(5),
                                                 jaxmlp.schedule(0.2, 10, 2)(5)]))
    smooth = jax.jit(lambda y, e: jaxmlp.smooth_labels(y, 2, e))(Y, 0.1)
    np.testing.assert_allclose(smooth, jaxmlp.smooth_labels(Y, 2, 0.1))
    # Under jit, an out-of-range label cannot be read: the loss is NaN (documented), no error.
    assert np.isnan(jax.jit(jaxmlp.loss, static_argnums=3)(PARAMS, X, Y + 5, ARCH))
    grads = jax.jit(lambda k: jaxmlp.hand_grad(PARAMS, X, Y, ARCH, dropout=(0.2, 0.5), key=k))(KEY)
    assert jax.tree.structure(grads) == jax.tree.structure(PARAMS)
    # A traced rate is no concrete number: refused by name, not a tracer error.
    with pytest.raises(TypeError, match="decay must be a concrete number"):
        jax.jit(lambda d: jaxmlp.ema(d).init(PARAMS))(0.9)


def test_checks_keep_file_values_out_of_their_rule():
    # The checks' errors carry the rule without the value, for readers of files.
    with pytest.raises(ValueError) as caught:
        _checks.probability(7.5, "ema", lower_open=True)
    assert caught.value.rule == "ema must be a number in (0, 1)" and "7.5" in str(caught.value)
    with pytest.raises(TypeError) as caught:
        _checks.seed("secret", "seed")
    assert "secret" not in caught.value.rule


def test_outputs_too_large_for_memory_are_refused_before_any_is_made():
    # Found by a fresh-eyes test: inside the documented ranges these aborted the interpreter
    # (XLA's "buffer_.IsConcrete()") or exhausted memory.
    from jaxmlp import affine_field, elastic_field, smooth_labels, softmax_jacobian

    key = jax.random.key(0)
    cases = [(lambda: smooth_labels(np.arange(4), 2 ** 31 - 1, 0.1), "would hold 8,589,934,588"),
             (lambda: softmax_jacobian(jnp.zeros(10 ** 5)), "would hold 10,000,000,000 values"),
             (lambda: affine_field((10 ** 6, 10 ** 6), jnp.eye(2)[None], jnp.zeros((1, 2))),
              "a field of 1 images of 1000000x1000000 is too large"),
             (lambda: elastic_field(key, 10 ** 9, (28, 28), sigma=4, alpha=3),
              "a field of 1000000000 images of 28x28 is too large")]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    # A rate or smoothing that float32 makes 1 is refused as a decay of 0.999999999 is.
    with pytest.raises(ValueError, match=r"epsilon must be a number in \[0, 1\)"):
        smooth_labels(np.arange(4), 10, 0.99999999999)
    with pytest.raises(ValueError, match=r"dropout\[0\] \(the input rate\) must be a number"):
        jaxmlp.dropout_masks(key, jnp.zeros((2, 784)), "a", (0.99999999999, 0))


def test_a_step_takes_images_in_any_form_prepare_images_does():
    # A tester's find: (N, 28, 28) images were refused as "shape (N, 28)" (the step read the
    # pixel count from the images' last axis, not from the network).
    arch = jaxmlp.parse_arch("b")
    params = jaxmlp.init_params(jax.random.key(0), arch, 784)
    step = jax.jit(jaxmlp.make_step(arch, optax.sgd(0.1), "hand"))
    images = np.random.default_rng(0).integers(0, 256, (8, 784)).astype(np.uint8)
    labels = jnp.arange(8)
    flat = step(params, optax.sgd(0.1).init(params), images, labels, KEY)
    square = step(params, optax.sgd(0.1).init(params), images.reshape(8, 28, 28), labels, KEY)
    for a, b in zip(jax.tree.leaves(flat), jax.tree.leaves(square)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 784\)"):
        step(params, optax.sgd(0.1).init(params), images[:, :700], labels, KEY)
