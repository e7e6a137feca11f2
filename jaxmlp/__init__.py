"""jaxmlp: multilayer perceptrons in JAX as pure functions, with hand-derived gradients
proven equal to ``jax.grad``."""
from jaxmlp.activations import ACTIVATIONS, Activation
from jaxmlp.arch import PRESETS, Arch, Layer, parse_arch
from jaxmlp.backprop import hand_grad, hand_loss, hand_value_and_grad
from jaxmlp.config import TrainConfig
from jaxmlp.cross_entropy import cross_entropy, cross_entropy_grad
from jaxmlp.data import load_dataset
from jaxmlp.images import prepare_images
from jaxmlp.mlp import forward, forward_layers, init_params, loss
from jaxmlp.predict import predict
from jaxmlp.run import Run, RunError, load_run
from jaxmlp.softmax import log_softmax, softmax, softmax_jacobian
from jaxmlp.train import train_and_evaluate

__all__ = [
    "ACTIVATIONS", "Activation", "Arch", "Layer", "PRESETS", "parse_arch",
    "init_params", "forward", "forward_layers", "loss",
    "softmax", "log_softmax", "softmax_jacobian", "cross_entropy", "cross_entropy_grad",
    "hand_grad", "hand_loss", "hand_value_and_grad",
    "TrainConfig", "train_and_evaluate", "load_dataset", "load_run", "Run", "RunError", "predict",
    "prepare_images",
]
